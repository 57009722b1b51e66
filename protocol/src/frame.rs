//! Length-prefixed frames: `u32 big-endian length | bytes`. The decoder tells
//! "need more bytes" apart from "invalid" and checks the announced length
//! against the configured maximum before anyone allocates; reading sockets is
//! left to the caller.

/// Bytes in a frame header.
pub const FRAME_HEADER_LEN: usize = 4;

/// Why a frame could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announced more than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A frame announced zero bytes; no message of this protocol is empty.
    #[error("empty frame")]
    Empty,
}

/// The outcome of looking for one frame at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole frame is present.
    Frame {
        /// The frame's payload, without its header.
        payload: &'a [u8],
        /// How many bytes of the input the frame occupies (header included).
        consumed: usize,
    },
    /// More bytes are needed; `needed` is how many in total make the frame whole.
    Incomplete {
        /// The number of buffered bytes the whole frame will occupy, when known.
        needed: usize,
    },
}

/// Looks for one frame at the start of `input`.
///
/// # Errors
///
/// [`FrameError::TooLarge`] as soon as the four header bytes announce more
/// than `max` bytes, before any payload is read; [`FrameError::Empty`] for a
/// zero length.
pub fn decode_frame(input: &[u8], max: usize) -> Result<Decoded<'_>, FrameError> {
    let Some(header) = input.get(..FRAME_HEADER_LEN) else {
        return Ok(Decoded::Incomplete {
            needed: FRAME_HEADER_LEN,
        });
    };
    let mut len_bytes = [0u8; FRAME_HEADER_LEN];
    len_bytes.copy_from_slice(header);
    let len = u32::from_be_bytes(len_bytes) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let end = FRAME_HEADER_LEN + len;
    match input.get(FRAME_HEADER_LEN..end) {
        Some(payload) => Ok(Decoded::Frame {
            payload,
            consumed: end,
        }),
        None => Ok(Decoded::Incomplete { needed: end }),
    }
}

/// Appends one frame holding `payload` to `out`.
///
/// # Errors
///
/// [`FrameError::TooLarge`] if `payload` is longer than `max` (the caller
/// misused the API), [`FrameError::Empty`] if it is empty.
pub fn encode_frame(payload: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let len = check_len(payload.len(), max)?;
    out.reserve(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Writes a frame header for `len` payload bytes into `header`.
///
/// # Errors
///
/// As [`encode_frame`].
pub fn write_frame_header(
    len: usize,
    max: usize,
    header: &mut [u8; FRAME_HEADER_LEN],
) -> Result<(), FrameError> {
    *header = check_len(len, max)?.to_be_bytes();
    Ok(())
}

fn check_len(len: usize, max: usize) -> Result<u32, FrameError> {
    if len == 0 {
        return Err(FrameError::Empty);
    }
    match u32::try_from(len) {
        Ok(l) if len <= max => Ok(l),
        _ => Err(FrameError::TooLarge { len, max }),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn oversized_frame_is_rejected_before_payload_read() {
        // Only the header is present: the decoder must refuse from it alone.
        let input = 0x0100_0000u32.to_be_bytes();
        assert_eq!(
            decode_frame(&input, 65_535),
            Err(FrameError::TooLarge {
                len: 0x0100_0000,
                max: 65_535
            })
        );
    }

    #[test]
    fn partial_header_needs_more_bytes() {
        assert_eq!(
            decode_frame(&[0, 0], 100),
            Ok(Decoded::Incomplete { needed: 4 })
        );
    }

    #[test]
    fn partial_payload_reports_total_needed() {
        assert_eq!(
            decode_frame(&[0, 0, 0, 5, 1, 2], 100),
            Ok(Decoded::Incomplete { needed: 9 })
        );
    }

    #[test]
    fn zero_length_frame_is_rejected() {
        assert_eq!(decode_frame(&[0, 0, 0, 0], 100), Err(FrameError::Empty));
    }

    #[test]
    fn known_vector_decodes() {
        let input = [0x00, 0x00, 0x00, 0x03, 0xaa, 0xbb, 0xcc, 0xdd];
        assert_eq!(
            decode_frame(&input, 100),
            Ok(Decoded::Frame {
                payload: &[0xaa, 0xbb, 0xcc],
                consumed: 7
            })
        );
    }

    #[test]
    fn encoding_more_than_max_is_a_caller_error() {
        let mut out = Vec::new();
        assert!(encode_frame(&[0; 10], 9, &mut out).is_err());
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn frames_round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..8)) {
            let mut wire = Vec::new();
            for p in &payloads {
                encode_frame(p, 300, &mut wire).unwrap();
            }
            let mut rest = &wire[..];
            for p in &payloads {
                match decode_frame(rest, 300).unwrap() {
                    Decoded::Frame { payload, consumed } => {
                        prop_assert_eq!(payload, &p[..]);
                        rest = &rest[consumed..];
                    }
                    Decoded::Incomplete { .. } => prop_assert!(false, "frame incomplete"),
                }
            }
            prop_assert!(rest.is_empty());
        }
    }
}
