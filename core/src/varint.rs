//! Unsigned-varint length-prefixed frames (`uvarint(len) ‖ payload`).
//!
//! Used by multistream-select, `/plaintext/2.0.0`, identify and others. The decoder is
//! stateless: it peeks at the caller's buffer and splits off one complete frame, or leaves the
//! buffer untouched when more bytes are needed. So partial input is simply kept by the caller,
//! and the result cannot depend on how the input was chunked. A length above the limit, a
//! varint longer than the limit needs, or a non-minimal varint is an error, and nothing is ever
//! allocated for a claimed length.

use bytes::{BufMut, BytesMut};

/// A frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announced more bytes than the limit allows.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced length, in bytes.
        len: u64,
        /// The limit, in bytes.
        max: usize,
    },
    /// The length prefix used more bytes than any length within the limit needs.
    #[error("length prefix longer than {max_prefix} bytes")]
    PrefixTooLong {
        /// The longest prefix, in bytes, a length within the limit can need.
        max_prefix: usize,
    },
    /// The length prefix was not minimally encoded (trailing `0x80`/`0x00` groups).
    #[error("length prefix is not minimally encoded")]
    NotMinimal,
}

/// The number of bytes the unsigned-varint encoding of `value` takes.
pub const fn encoded_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Decodes `uvarint(len) ‖ payload` frames whose payload is at most `max_len` bytes.
#[derive(Debug, Clone, Copy)]
pub struct LengthPrefixed {
    max_len: usize,
    max_prefix: usize,
}

impl LengthPrefixed {
    /// A decoder accepting payloads of at most `max_len` bytes.
    pub const fn new(max_len: usize) -> Self {
        Self {
            max_len,
            max_prefix: encoded_len(max_len as u64),
        }
    }

    /// The largest payload this decoder accepts, in bytes.
    pub const fn max_len(&self) -> usize {
        self.max_len
    }

    /// Reads the length prefix at the front of `buf`.
    ///
    /// Returns `Ok(Some((prefix_len, payload_len)))`, or `Ok(None)` when `buf` ends inside the
    /// prefix.
    pub fn peek_len(&self, buf: &[u8]) -> Result<Option<(usize, usize)>, FrameError> {
        let mut value: u64 = 0;
        for (i, &byte) in buf.iter().enumerate() {
            if i >= self.max_prefix {
                return Err(FrameError::PrefixTooLong {
                    max_prefix: self.max_prefix,
                });
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if byte == 0 && i > 0 {
                    return Err(FrameError::NotMinimal);
                }
                return match usize::try_from(value) {
                    Ok(len) if len <= self.max_len => Ok(Some((i + 1, len))),
                    _ => Err(FrameError::TooLarge {
                        len: value,
                        max: self.max_len,
                    }),
                };
            }
        }
        if buf.len() >= self.max_prefix {
            return Err(FrameError::PrefixTooLong {
                max_prefix: self.max_prefix,
            });
        }
        Ok(None)
    }

    /// Splits one complete frame's payload off the front of `buf`.
    ///
    /// `Ok(None)` means `buf` holds no complete frame yet; it is left untouched. The payload
    /// shares `buf`'s allocation (no copy).
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let Some((prefix, len)) = self.peek_len(buf)? else {
            return Ok(None);
        };
        if buf.len() - prefix < len {
            return Ok(None);
        }
        let _ = buf.split_to(prefix);
        Ok(Some(buf.split_to(len)))
    }
}

/// Appends `uvarint(payload.len()) ‖ payload` to `out`.
pub fn encode_frame(payload: &[u8], out: &mut BytesMut) {
    encode_len(payload.len(), out);
    out.put_slice(payload);
}

/// Appends the unsigned-varint encoding of `len` to `out`.
pub fn encode_len(len: usize, out: &mut BytesMut) {
    let mut buf = unsigned_varint::encode::usize_buffer();
    out.put_slice(unsigned_varint::encode::usize(len, &mut buf));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encoded_len_matches_encoder() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut b = unsigned_varint::encode::u64_buffer();
            assert_eq!(
                encoded_len(v),
                unsigned_varint::encode::u64(v, &mut b).len(),
                "{v}"
            );
        }
    }

    #[test]
    fn spec_length_vectors() {
        for (len, bytes) in [
            (201usize, &[0xc9, 0x01][..]),
            (1024, &[0x80, 0x08]),
            (16383, &[0xff, 0x7f]),
            (16384, &[0x80, 0x80, 0x01]),
        ] {
            let mut out = BytesMut::new();
            encode_len(len, &mut out);
            assert_eq!(&out[..], bytes);
            let dec = LengthPrefixed::new(1 << 20);
            assert_eq!(dec.peek_len(bytes), Ok(Some((bytes.len(), len))));
        }
    }

    #[test]
    fn partial_input_is_kept() {
        let dec = LengthPrefixed::new(1024);
        let mut buf = BytesMut::from(&[0x05, b'a', b'b'][..]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 3);
        buf.extend_from_slice(b"cdeX");
        assert_eq!(dec.decode(&mut buf).unwrap().unwrap(), &b"abcde"[..]);
        assert_eq!(&buf[..], b"X");
    }

    #[test]
    fn over_limit_length_is_an_error_without_allocation() {
        let dec = LengthPrefixed::new(1024);
        // 1025 = 0x81 0x08
        let mut buf = BytesMut::from(&[0x81, 0x08][..]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(FrameError::TooLarge {
                len: 1025,
                max: 1024
            })
        );
        // A claimed gigabyte is rejected from its prefix alone.
        let mut buf = BytesMut::from(&[0x80, 0x80, 0x80, 0x80, 0x04][..]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(FrameError::PrefixTooLong { max_prefix: 2 })
        );
        // An unfinished prefix already longer than allowed is rejected too.
        assert_eq!(
            dec.peek_len(&[0x80, 0x80]),
            Err(FrameError::PrefixTooLong { max_prefix: 2 })
        );
    }

    #[test]
    fn non_minimal_prefix_is_an_error() {
        let dec = LengthPrefixed::new(1024);
        assert_eq!(dec.peek_len(&[0x81, 0x00]), Err(FrameError::NotMinimal));
    }

    #[test]
    fn zero_length_frame() {
        let dec = LengthPrefixed::new(10);
        let mut buf = BytesMut::from(&[0x00, 0x01][..]);
        assert_eq!(dec.decode(&mut buf).unwrap().unwrap().len(), 0);
        assert_eq!(&buf[..], &[0x01]);
    }

    proptest! {
        #[test]
        fn roundtrip_any_chunking(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            split in any::<prop::sample::Index>(),
        ) {
            let mut wire = BytesMut::new();
            for p in &payloads { encode_frame(p, &mut wire); }
            let wire = wire.freeze();
            let cut = split.index(wire.len() + 1);
            let dec = LengthPrefixed::new(300);
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(f) = dec.decode(&mut buf).unwrap() { got.push(f.to_vec()); }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(f) = dec.decode(&mut buf).unwrap() { got.push(f.to_vec()); }
            prop_assert_eq!(got, payloads);
            prop_assert!(buf.is_empty());
        }
    }
}
