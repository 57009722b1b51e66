//! A bounded, zero-copy MessagePack reader and a few writers used by the
//! hand-written envelope codec. Every read checks the remaining input first;
//! nothing here allocates on behalf of the peer.

use rmp::Marker;

/// Why a MessagePack value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input ended inside a value.
    #[error("input ended inside a value")]
    Truncated,
    /// A value had a different type than the format requires.
    #[error("unexpected MessagePack marker {marker:#04x} for {expected}")]
    UnexpectedType {
        /// The first byte of the value that was found.
        marker: u8,
        /// What the format requires at this place.
        expected: &'static str,
    },
    /// A string was not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A length exceeded what the format allows at this place.
    #[error("{what} of {len} exceeds the limit of {max}")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// The length that was announced.
        len: usize,
        /// The largest accepted length.
        max: usize,
    },
    /// Bytes were left over after the value.
    #[error("{count} trailing bytes after the value")]
    TrailingBytes {
        /// How many bytes were left.
        count: usize,
    },
}

/// Reads MessagePack values from a borrowed slice, returning sub-slices of it.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), CodecError> {
        match self.rest.len() {
            0 => Ok(()),
            count => Err(CodecError::TrailingBytes { count }),
        }
    }

    pub(crate) fn peek_marker(&self) -> Result<Marker, CodecError> {
        self.rest
            .first()
            .map(|b| Marker::from_u8(*b))
            .ok_or(CodecError::Truncated)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.rest.len() {
            return Err(CodecError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn marker(&mut self, expected: &'static str) -> Result<Marker, CodecError> {
        let byte = self.take_array::<1>()?[0];
        let marker = Marker::from_u8(byte);
        if matches!(marker, Marker::Reserved) {
            return Err(CodecError::UnexpectedType {
                marker: byte,
                expected,
            });
        }
        Ok(marker)
    }

    /// Reads an unsigned integer of any width.
    pub(crate) fn read_u64(&mut self) -> Result<u64, CodecError> {
        let marker = self.marker("unsigned integer")?;
        Ok(match marker {
            Marker::FixPos(v) => u64::from(v),
            Marker::U8 => u64::from(self.take_array::<1>()?[0]),
            Marker::U16 => u64::from(u16::from_be_bytes(self.take_array()?)),
            Marker::U32 => u64::from(u32::from_be_bytes(self.take_array()?)),
            Marker::U64 => u64::from_be_bytes(self.take_array()?),
            other => {
                return Err(CodecError::UnexpectedType {
                    marker: other.to_u8(),
                    expected: "unsigned integer",
                })
            }
        })
    }

    /// Reads an array header and returns its element count, which MUST be at
    /// most `max` (checked before the caller allocates anything).
    pub(crate) fn read_array_len(&mut self, max: usize) -> Result<usize, CodecError> {
        let marker = self.marker("array")?;
        let len = match marker {
            Marker::FixArray(n) => usize::from(n),
            Marker::Array16 => usize::from(u16::from_be_bytes(self.take_array()?)),
            Marker::Array32 => u32::from_be_bytes(self.take_array()?) as usize,
            other => {
                return Err(CodecError::UnexpectedType {
                    marker: other.to_u8(),
                    expected: "array",
                })
            }
        };
        if len > max {
            return Err(CodecError::TooLong {
                what: "array",
                len,
                max,
            });
        }
        Ok(len)
    }

    /// Reads a string without copying it.
    pub(crate) fn read_str(&mut self, max: usize) -> Result<&'a str, CodecError> {
        let marker = self.marker("string")?;
        let len = match marker {
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 => usize::from(self.take_array::<1>()?[0]),
            Marker::Str16 => usize::from(u16::from_be_bytes(self.take_array()?)),
            Marker::Str32 => u32::from_be_bytes(self.take_array()?) as usize,
            other => {
                return Err(CodecError::UnexpectedType {
                    marker: other.to_u8(),
                    expected: "string",
                })
            }
        };
        if len > max {
            return Err(CodecError::TooLong {
                what: "string",
                len,
                max,
            });
        }
        std::str::from_utf8(self.take(len)?).map_err(|_| CodecError::InvalidUtf8)
    }

    /// Reads a binary value without copying it.
    pub(crate) fn read_bin(&mut self) -> Result<&'a [u8], CodecError> {
        let marker = self.marker("binary")?;
        let len = match marker {
            Marker::Bin8 => usize::from(self.take_array::<1>()?[0]),
            Marker::Bin16 => usize::from(u16::from_be_bytes(self.take_array()?)),
            Marker::Bin32 => u32::from_be_bytes(self.take_array()?) as usize,
            other => {
                return Err(CodecError::UnexpectedType {
                    marker: other.to_u8(),
                    expected: "binary",
                })
            }
        };
        self.take(len)
    }
}

/// Writes an unsigned integer in its shortest MessagePack form.
pub(crate) fn write_u64(out: &mut Vec<u8>, v: u64) {
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_uint(out, v);
}

/// Writes a string header and the string.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    let _ = rmp::encode::write_str(out, s);
}

/// Writes a binary header and the bytes.
pub(crate) fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    let _ = rmp::encode::write_bin(out, b);
}

/// Writes an array header.
pub(crate) fn write_array_len(out: &mut Vec<u8>, len: u32) {
    let _ = rmp::encode::write_array_len(out, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_of_every_width_round_trip() {
        for v in [
            0,
            1,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write_u64(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.read_u64().unwrap(), v);
            r.finish().unwrap();
        }
    }

    #[test]
    fn announced_string_longer_than_input_is_truncated_not_allocated() {
        // str32 announcing 4 GiB with three bytes behind it.
        let input = [0xdb, 0xff, 0xff, 0xff, 0xff, b'a', b'b', b'c'];
        assert_eq!(
            Reader::new(&input).read_str(usize::MAX),
            Err(CodecError::Truncated)
        );
    }

    #[test]
    fn array_longer_than_limit_is_rejected_before_elements_are_read() {
        let mut out = Vec::new();
        write_array_len(&mut out, 1_000_000);
        assert!(matches!(
            Reader::new(&out).read_array_len(10),
            Err(CodecError::TooLong { len: 1_000_000, .. })
        ));
    }

    #[test]
    fn reserved_marker_is_an_error() {
        assert!(matches!(
            Reader::new(&[0xc1]).read_u64(),
            Err(CodecError::UnexpectedType { marker: 0xc1, .. })
        ));
    }
}
