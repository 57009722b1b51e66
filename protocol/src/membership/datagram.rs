//! The kinds of plaintext gossip datagrams: the first byte says what
//! follows. 0 a foca message, 1 a metadata request, 2 a metadata item,
//! 3 a member-list request, 4 part of a member list (`count u16 | members`,
//! in foca's member encoding).

/// The first byte of every plaintext gossip datagram.
pub(super) mod kind {
    pub(in crate::membership) const FOCA: u8 = 0;
    pub(in crate::membership) const META_REQUEST: u8 = 1;
    pub(in crate::membership) const META_REPLY: u8 = 2;
    pub(in crate::membership) const SYNC_REQUEST: u8 = 3;
    pub(in crate::membership) const SYNC_REPLY: u8 = 4;
}
