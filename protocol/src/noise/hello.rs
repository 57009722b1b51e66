//! The payloads the handshake carries: the initiator's first message
//! announces only its protocol version (it travels before any key is
//! agreed); the two later messages, encrypted, carry version, cluster name,
//! certificate and the address the sender's mesh listens on.

use crate::codec::{self, Reader};
use crate::identity::MAX_CERT_LEN;
use crate::noise::HandshakeError;

/// The longest cluster name or advertised address accepted.
pub const MAX_HELLO_FIELD: usize = 255;

/// The payload of handshake messages 2 and 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello<'a> {
    /// The sender's protocol version.
    pub version: u64,
    /// The cluster the sender belongs to.
    pub cluster: &'a str,
    /// The sender's encoded certificate.
    pub cert: &'a [u8],
    /// Where the sender's mesh listens (empty if it accepts no connections).
    pub listen: &'a str,
}

impl<'a> Hello<'a> {
    /// The wire form `[version, cluster, cert, listen]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.cert.len() + 64);
        codec::write_array_len(&mut out, 4);
        codec::write_u64(&mut out, self.version);
        codec::write_str(&mut out, self.cluster);
        codec::write_bin(&mut out, self.cert);
        codec::write_str(&mut out, self.listen);
        out
    }

    /// Decodes a hello.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::Malformed`] unless `input` is exactly one hello.
    pub fn decode(input: &'a [u8]) -> Result<Self, HandshakeError> {
        let malformed = |_| HandshakeError::Malformed {
            reason: "invalid hello payload",
        };
        let mut r = Reader::new(input);
        if r.read_array_len(4).map_err(malformed)? != 4 {
            return Err(HandshakeError::Malformed {
                reason: "hello needs 4 fields",
            });
        }
        let hello = Hello {
            version: r.read_u64().map_err(malformed)?,
            cluster: r.read_str(MAX_HELLO_FIELD).map_err(malformed)?,
            cert: r.read_bin().map_err(malformed)?,
            listen: r.read_str(MAX_HELLO_FIELD).map_err(malformed)?,
        };
        r.finish().map_err(malformed)?;
        if hello.cert.len() > MAX_CERT_LEN {
            return Err(HandshakeError::Malformed {
                reason: "certificate too large",
            });
        }
        Ok(hello)
    }
}

/// The payload of handshake message 1: `[version]`.
pub fn encode_version(version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(4);
    codec::write_array_len(&mut out, 1);
    codec::write_u64(&mut out, version);
    out
}

/// Decodes the payload of handshake message 1.
///
/// # Errors
///
/// [`HandshakeError::Malformed`] unless `input` is exactly `[version]`.
pub fn decode_version(input: &[u8]) -> Result<u64, HandshakeError> {
    let malformed = |_| HandshakeError::Malformed {
        reason: "invalid first handshake payload",
    };
    let mut r = Reader::new(input);
    if r.read_array_len(1).map_err(malformed)? != 1 {
        return Err(HandshakeError::Malformed {
            reason: "first handshake payload needs 1 field",
        });
    }
    let version = r.read_u64().map_err(malformed)?;
    r.finish().map_err(malformed)?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn hellos_round_trip(version in any::<u64>(), cluster in ".{0,50}", cert in proptest::collection::vec(any::<u8>(), 0..500), listen in "[0-9.:]{0,30}") {
            let hello = Hello { version, cluster: &cluster, cert: &cert, listen: &listen };
            let wire = hello.encode();
            prop_assert_eq!(Hello::decode(&wire).unwrap(), hello);
        }

        #[test]
        fn versions_round_trip(version in any::<u64>()) {
            prop_assert_eq!(decode_version(&encode_version(version)).unwrap(), version);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_hello_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Hello::decode(&bytes);
            let _ = decode_version(&bytes);
        }
    }
}
