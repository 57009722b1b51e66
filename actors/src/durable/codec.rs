//! How a durable actor's events and snapshots are stored: a small header
//! (format version, kind, the actor's journal tag) then the value in
//! MessagePack. The tag is checked on the way back, so a journal written by
//! another type (or a renamed one) is refused as corrupt instead of
//! decoding into the wrong state.
//!
//! ```text
//! [1: version = 1][1: kind (0 event, 1 snapshot)][1: tag length][tag][MessagePack]
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StoreError;

/// The record format's version.
const VERSION: u8 = 1;

/// The longest journal tag.
pub const MAX_TAG: usize = 255;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One event.
    Event = 0,
    /// A snapshot of the whole state.
    Snapshot = 1,
}

/// Encodes `value` as a record of `kind` under `tag`.
///
/// # Errors
///
/// [`StoreError::Corrupt`] if the tag is longer than [`MAX_TAG`] or the
/// value does not encode.
pub fn encode<T: Serialize>(kind: Kind, tag: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    let tag_len = u8::try_from(tag.len()).map_err(|_| StoreError::Corrupt {
        reason: format!("the journal tag {tag:?} is longer than {MAX_TAG} bytes"),
    })?;
    let mut out = Vec::with_capacity(3 + tag.len() + 16);
    out.extend_from_slice(&[VERSION, kind as u8, tag_len]);
    out.extend_from_slice(tag.as_bytes());
    rmp_serde::encode::write(&mut out, value).map_err(|e| StoreError::Corrupt {
        reason: format!("a {kind:?} of {tag} does not encode: {e}"),
    })?;
    Ok(out)
}

/// Decodes a record of `kind` under `tag`.
///
/// # Errors
///
/// [`StoreError::Corrupt`] for a record of another version, kind or tag,
/// or one whose value does not decode (never a panic).
pub fn decode<T: DeserializeOwned>(kind: Kind, tag: &str, record: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { reason };
    let [version, got_kind, tag_len, rest @ ..] = record else {
        return Err(corrupt(format!(
            "a record of {} bytes has no header",
            record.len()
        )));
    };
    if *version != VERSION {
        return Err(corrupt(format!(
            "record format version {version}, expected {VERSION}"
        )));
    }
    if *got_kind != kind as u8 {
        return Err(corrupt(format!(
            "record kind {got_kind}, expected {kind:?}"
        )));
    }
    let tag_len = usize::from(*tag_len);
    let Some((got_tag, body)) = rest.split_at_checked(tag_len) else {
        return Err(corrupt("the record ends inside its tag".to_owned()));
    };
    if got_tag != tag.as_bytes() {
        return Err(corrupt(format!(
            "a record of {:?}, expected {tag:?}",
            String::from_utf8_lossy(got_tag)
        )));
    }
    rmp_serde::from_slice(body)
        .map_err(|e| corrupt(format!("a {kind:?} of {tag} does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_decodes_only_as_its_kind_and_tag() {
        let record = encode(Kind::Event, "t.E", &(7u64, "x".to_owned())).unwrap();
        let back: (u64, String) = decode(Kind::Event, "t.E", &record).unwrap();
        assert_eq!(back, (7, "x".to_owned()));
        assert!(matches!(
            decode::<(u64, String)>(Kind::Snapshot, "t.E", &record),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<(u64, String)>(Kind::Event, "t.F", &record),
            Err(StoreError::Corrupt { .. })
        ));
        for cut in 0..record.len() {
            assert!(decode::<(u64, String)>(Kind::Event, "t.E", &record[..cut]).is_err());
        }
        let mut flipped = record.clone();
        flipped[0] ^= 0xff;
        assert!(decode::<(u64, String)>(Kind::Event, "t.E", &flipped).is_err());
        assert!(encode(Kind::Event, &"x".repeat(256), &1u8).is_err());
    }
}
