//! The encrypted transport: `len: u16 BE ‖ ChaCha20-Poly1305(plaintext) ‖ tag` frames.
//!
//! Why ring directly instead of snow's `TransportState`: snow's `write_message`/`read_message`
//! need distinct input and output slices and its ring backend copies the input into the output
//! before sealing/opening in place. That costs one extra 64 KiB `memcpy` per frame and a
//! scratch buffer, and it makes the zero-copy path (the layer above writes plaintext straight
//! into our output buffer) impossible without copying the plaintext out and back. We take the
//! two cipher keys from snow's `dangerously_get_raw_split` (feature `risky-raw-split`) once the
//! handshake is verified and use ring's `LessSafeKey::seal_in_place_separate_tag` /
//! `open_in_place` directly on the caller's buffers: encryption copies the plaintext once (into
//! `out`, or not at all through [`Transport::begin_frame`]), decryption copies nothing and hands
//! out a slice of the input buffer. Nonces follow the Noise ChaChaPoly rule (4 zero bytes ‖
//! 64-bit little-endian counter, 2^64 - 1 reserved), exactly as snow's cipher state does.

use bytes::{Buf, BufMut, BytesMut};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

use super::{Error, MAX_FRAME_LEN, MAX_PLAINTEXT, TAG_LEN};

/// The secure channel after a successful handshake: one cipher and nonce per direction.
///
/// After any error (authentication failure, exhausted nonces) every further call returns
/// [`Error::Failed`]: the connection must be closed.
pub struct Transport {
    send: LessSafeKey,
    recv: LessSafeKey,
    send_nonce: u64,
    recv_nonce: u64,
    failed: bool,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("send_nonce", &self.send_nonce)
            .field("recv_nonce", &self.recv_nonce)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// Where a frame begun with [`Transport::begin_frame`] starts in the output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a begun frame must be sealed with Transport::seal_frame"]
pub struct FrameStart {
    pub(super) offset: usize,
}

impl FrameStart {
    /// The position in the output buffer where the frame begins; truncating the buffer to it
    /// abandons the frame.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    for (dst, src) in bytes.iter_mut().skip(4).zip(counter.to_le_bytes()) {
        *dst = src;
    }
    Nonce::assume_unique_for_key(bytes)
}

impl Transport {
    /// Builds a transport from the two raw split keys of a finished handshake.
    pub(crate) fn new(send_key: &[u8; 32], recv_key: &[u8; 32]) -> Result<Self, Error> {
        let key = |k: &[u8; 32]| {
            UnboundKey::new(&CHACHA20_POLY1305, k)
                .map(LessSafeKey::new)
                .map_err(|_| Error::Failed)
        };
        Ok(Self {
            send: key(send_key)?,
            recv: key(recv_key)?,
            send_nonce: 0,
            recv_nonce: 0,
            failed: false,
        })
    }

    /// Whether an earlier error made this transport unusable.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Encrypts `plaintext` into `ceil(len / MAX_PLAINTEXT)` frames appended to `out`
    /// (nothing for an empty slice).
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), Error> {
        self.encrypt_vectored(&[plaintext], out)
    }

    /// Encrypts the concatenation of `parts` into as few frames as possible: every frame but
    /// the last carries exactly [`MAX_PLAINTEXT`] bytes, however small the parts are.
    pub fn encrypt_vectored(&mut self, parts: &[&[u8]], out: &mut BytesMut) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            return Ok(());
        }
        let frames = total.div_ceil(MAX_PLAINTEXT);
        out.reserve(total + frames * (2 + TAG_LEN));
        let mut start = self.begin_frame(out);
        let mut in_frame = 0usize;
        for part in parts {
            let mut part: &[u8] = part;
            while !part.is_empty() {
                if in_frame == MAX_PLAINTEXT {
                    self.seal_frame(out, start)?;
                    start = self.begin_frame(out);
                    in_frame = 0;
                }
                let take = part.len().min(MAX_PLAINTEXT - in_frame);
                let (now, rest) = part.split_at(take);
                out.extend_from_slice(now);
                in_frame += take;
                part = rest;
            }
        }
        self.seal_frame(out, start)
    }

    /// Starts a frame in `out`: writes a 2-byte length placeholder. Append at most
    /// [`MAX_PLAINTEXT`] plaintext bytes to `out`, then call [`Transport::seal_frame`], which
    /// encrypts them in place (no copy).
    pub fn begin_frame(&self, out: &mut BytesMut) -> FrameStart {
        let offset = out.len();
        out.put_u16(0);
        FrameStart { offset }
    }

    /// Seals the frame begun at `start`: encrypts everything appended to `out` since
    /// [`Transport::begin_frame`] in place, appends the tag and fills in the length.
    ///
    /// On error the frame (plaintext included) is removed from `out`, so plaintext never stays
    /// in an output buffer.
    pub fn seal_frame(&mut self, out: &mut BytesMut, start: FrameStart) -> Result<(), Error> {
        let result = self.try_seal(out, start);
        if result.is_err() {
            out.truncate(start.offset);
        }
        result
    }

    fn try_seal(&mut self, out: &mut BytesMut, start: FrameStart) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        let Some(len) = out.len().checked_sub(start.offset + 2) else {
            return Err(Error::InvalidFrameStart);
        };
        if len > MAX_PLAINTEXT {
            return Err(Error::PlaintextTooLarge { len });
        }
        if self.send_nonce == u64::MAX {
            self.failed = true;
            return Err(Error::NonceExhausted);
        }
        let frame_len = (len + TAG_LEN) as u16; // len ≤ MAX_PLAINTEXT, so this fits.
        let Some(frame) = out.get_mut(start.offset..) else {
            return Err(Error::InvalidFrameStart);
        };
        let (prefix, body) = frame.split_at_mut(2);
        prefix.copy_from_slice(&frame_len.to_be_bytes());
        let tag = self
            .send
            .seal_in_place_separate_tag(nonce(self.send_nonce), Aad::empty(), body)
            .map_err(|_| Error::Failed)?;
        self.send_nonce += 1;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypts one complete frame from the front of `input`, if there is one.
    ///
    /// `Ok(None)`: `input` holds no complete frame yet and is untouched. The returned plaintext
    /// is split off `input` and decrypted in place (no copy, no allocation).
    pub fn decrypt(&mut self, input: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        let Some(len) = frame_len(input) else {
            return Ok(None);
        };
        if input.len() - 2 < len {
            return Ok(None);
        }
        if len < TAG_LEN {
            self.failed = true;
            return Err(Error::FrameTooShort { len });
        }
        if self.recv_nonce == u64::MAX {
            self.failed = true;
            return Err(Error::NonceExhausted);
        }
        input.advance(2);
        let mut frame = input.split_to(len);
        let plain_len =
            match self
                .recv
                .open_in_place(nonce(self.recv_nonce), Aad::empty(), &mut frame)
            {
                Ok(plain) => plain.len(),
                Err(_) => {
                    self.failed = true;
                    return Err(Error::Decrypt);
                }
            };
        self.recv_nonce += 1;
        frame.truncate(plain_len);
        Ok(Some(frame))
    }

    /// A copy sharing keys and nonces, for the fuzz targets only: two live copies would reuse
    /// nonces, which is why `Transport` is not `Clone`.
    #[cfg(any(fuzzing, feature = "fuzzing"))]
    pub(crate) fn clone_for_fuzzing(&self) -> Self {
        Self {
            send: self.send.clone(),
            recv: self.recv.clone(),
            send_nonce: self.send_nonce,
            recv_nonce: self.recv_nonce,
            failed: self.failed,
        }
    }

    #[cfg(test)]
    pub(crate) fn set_nonces_for_testing(&mut self, send: u64, recv: u64) {
        self.send_nonce = send;
        self.recv_nonce = recv;
    }
}

/// Reads the 2-byte big-endian length prefix at the front of `buf`, if complete.
pub(crate) fn frame_len(buf: &[u8]) -> Option<usize> {
    match buf {
        [hi, lo, ..] => Some(usize::from(u16::from_be_bytes([*hi, *lo]))),
        _ => None,
    }
}

/// Splits one complete `len ‖ message` frame off `input`, returning the message.
pub(crate) fn take_frame(input: &mut BytesMut) -> Option<BytesMut> {
    let len = frame_len(input)?;
    debug_assert!(len <= MAX_FRAME_LEN);
    if input.len() - 2 < len {
        return None;
    }
    input.advance(2);
    Some(input.split_to(len))
}
