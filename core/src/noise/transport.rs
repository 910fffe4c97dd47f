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
    /// Received frames taken off by [`Transport::take_unopened`] whose plaintext has not come
    /// back through [`Transport::accept_opened`]: nothing else is decrypted meanwhile.
    recv_outstanding: bool,
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

/// Frames finished by [`Transport::defer_frame`]: length prefix, plaintext and room for the
/// tag laid out in an output buffer, nonces reserved, encryption still to do.
///
/// The buffer must not be sent before [`Unsealed::seal`] succeeded on it: until then it holds
/// plaintext. Frames of later batches use later nonces, so batches go out in the order they
/// were made.
#[must_use = "unsealed frames hold plaintext: seal them before sending"]
pub struct Unsealed {
    key: LessSafeKey,
    start: usize,
    end: usize,
    first_nonce: u64,
    frames: u64,
}

impl std::fmt::Debug for Unsealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsealed")
            .field("start", &self.start)
            .field("end", &self.end)
            .field("first_nonce", &self.first_nonce)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl Unsealed {
    /// Where the batch starts in the buffer.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Encrypts the batch's frames in `buf` (the buffer they were laid out in) in place.
    ///
    /// Fails with [`Error::InvalidFrameStart`] if `buf` does not hold the batch's frames;
    /// the buffer must then be discarded, and the connection closed (its nonces are spent).
    pub fn seal(self, buf: &mut [u8]) -> Result<(), Error> {
        let end = for_each_frame(buf, self.start, self.frames, |i, frame| {
            let (body, tag_room) = frame.split_at_mut(frame.len() - TAG_LEN);
            let tag = self
                .key
                .seal_in_place_separate_tag(nonce(self.first_nonce + i), Aad::empty(), body)
                .map_err(|_| Error::Failed)?;
            tag_room.copy_from_slice(tag.as_ref());
            Ok(())
        })?;
        if end == self.end {
            Ok(())
        } else {
            Err(Error::InvalidFrameStart)
        }
    }
}

/// Received frames taken off the input by [`Transport::take_unopened`], still encrypted.
#[must_use = "the connection waits for these frames to come back opened"]
pub struct Unopened {
    key: LessSafeKey,
    frames: BytesMut,
    first_nonce: u64,
    count: u64,
}

impl std::fmt::Debug for Unopened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unopened")
            .field("bytes", &self.frames.len())
            .field("first_nonce", &self.first_nonce)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Unopened {
    /// The bytes taken (frames with their length prefixes and tags).
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether no bytes were taken (never the case for a batch `take_unopened` returned).
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Decrypts and authenticates the frames in place. [`Error::Decrypt`] if any frame fails
    /// authentication: the connection must then be closed.
    pub fn open(mut self) -> Result<Opened, Error> {
        for_each_frame(&mut self.frames, 0, self.count, |i, frame| {
            self.key
                .open_in_place(nonce(self.first_nonce + i), Aad::empty(), frame)
                .map(|_| ())
                .map_err(|_| Error::Decrypt)
        })?;
        Ok(Opened {
            frames: self.frames,
            end_nonce: self.first_nonce + self.count,
        })
    }
}

/// Authenticated plaintext of an [`Unopened`] batch, frame by frame. Only
/// [`Unopened::open`] makes one.
#[derive(Debug)]
pub struct Opened {
    /// `len ‖ plaintext ‖ tag` frames, plaintext decrypted in place.
    frames: BytesMut,
    /// The nonce after the batch's last frame.
    end_nonce: u64,
}

impl Opened {
    /// The next frame's plaintext (split off, no copy).
    pub fn next_frame(&mut self) -> Option<BytesMut> {
        let len = frame_len(&self.frames)?;
        let plain_len = len.checked_sub(TAG_LEN)?;
        if self.frames.len() < 2 + len {
            return None;
        }
        self.frames.advance(2);
        let plain = self.frames.split_to(plain_len);
        self.frames.advance(TAG_LEN);
        Some(plain)
    }
}

/// Calls `f(i, body ‖ tag)` for each of the `count` `len ‖ body ‖ tag` frames laid out in
/// `buf` from `start`; returns where the last one ends. [`Error::InvalidFrameStart`] if `buf`
/// does not hold that many frames (or one is shorter than a tag).
fn for_each_frame(
    buf: &mut [u8],
    start: usize,
    count: u64,
    mut f: impl FnMut(u64, &mut [u8]) -> Result<(), Error>,
) -> Result<usize, Error> {
    let mut at = start;
    for i in 0..count {
        let len = buf.get(at..).and_then(frame_len).filter(|l| *l >= TAG_LEN);
        let frame = len.and_then(|len| buf.get_mut(at + 2..at + 2 + len));
        let Some(frame) = frame else {
            return Err(Error::InvalidFrameStart);
        };
        at += 2 + frame.len();
        f(i, frame)?;
    }
    Ok(at)
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
            recv_outstanding: false,
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
        let mut batch = None;
        self.defer_frame(out, start, &mut batch)?;
        let result = batch.map_or(Ok(()), |b| b.seal(out));
        if result.is_err() {
            out.truncate(start.offset);
        }
        result
    }

    /// Finishes the frame begun at `start` without encrypting it: reserves its nonce, makes
    /// room for its tag, fills in its length and adds it to `batch`, whose
    /// [`Unsealed::seal`] encrypts every frame of the batch later (for example outside a
    /// lock). The frames of one batch must follow each other in `out`.
    ///
    /// On error the frame (plaintext included) is removed from `out`.
    pub fn defer_frame(
        &mut self,
        out: &mut BytesMut,
        start: FrameStart,
        batch: &mut Option<Unsealed>,
    ) -> Result<(), Error> {
        let result = self.try_defer(out, start, batch);
        if result.is_err() {
            out.truncate(start.offset);
        }
        result
    }

    fn try_defer(
        &mut self,
        out: &mut BytesMut,
        start: FrameStart,
        batch: &mut Option<Unsealed>,
    ) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        let Some(len) = out.len().checked_sub(start.offset + 2) else {
            return Err(Error::InvalidFrameStart);
        };
        if len > MAX_PLAINTEXT {
            return Err(Error::PlaintextTooLarge { len });
        }
        if batch.as_ref().is_some_and(|b| b.end != start.offset) {
            return Err(Error::InvalidFrameStart);
        }
        if self.send_nonce == u64::MAX {
            self.failed = true;
            return Err(Error::NonceExhausted);
        }
        out.put_bytes(0, TAG_LEN);
        let frame_len = (len + TAG_LEN) as u16; // len ≤ MAX_PLAINTEXT, so this fits.
        if let Some(prefix) = out.get_mut(start.offset..start.offset + 2) {
            prefix.copy_from_slice(&frame_len.to_be_bytes());
        }
        let batch = batch.get_or_insert_with(|| Unsealed {
            key: self.send.clone(),
            start: start.offset,
            end: start.offset,
            first_nonce: self.send_nonce,
            frames: 0,
        });
        batch.end = out.len();
        batch.frames += 1;
        self.send_nonce += 1;
        Ok(())
    }

    /// Decrypts one complete frame from the front of `input`, if there is one.
    ///
    /// `Ok(None)`: `input` holds no complete frame yet and is untouched. The returned plaintext
    /// is split off `input` and decrypted in place (no copy, no allocation).
    /// While frames taken by [`Transport::take_unopened`] are out, nothing is decrypted
    /// (`Ok(None)`): they come first.
    pub fn decrypt(&mut self, input: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        if self.recv_outstanding {
            return Ok(None);
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

    /// Takes every complete frame off the front of `input` (up to about `budget` bytes, at
    /// least one frame) with their nonces reserved, to be decrypted by [`Unopened::open`]
    /// without access to this transport (for example outside a lock); their plaintext comes
    /// back through [`Transport::accept_opened`]. `Ok(None)`: no complete frame, or a batch
    /// is already out.
    pub fn take_unopened(
        &mut self,
        input: &mut BytesMut,
        budget: usize,
    ) -> Result<Option<Unopened>, Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        if self.recv_outstanding {
            return Ok(None);
        }
        let mut at = 0usize;
        let mut frames = 0u64;
        while at < budget.max(1) {
            let Some(len) = input.get(at..).and_then(frame_len) else {
                break;
            };
            if input.len() - at - 2 < len {
                break;
            }
            if len < TAG_LEN {
                self.failed = true;
                return Err(Error::FrameTooShort { len });
            }
            if self.recv_nonce.saturating_add(frames) == u64::MAX {
                self.failed = true;
                return Err(Error::NonceExhausted);
            }
            at += 2 + len;
            frames += 1;
        }
        if frames == 0 {
            return Ok(None);
        }
        let batch = Unopened {
            key: self.recv.clone(),
            frames: input.split_to(at),
            first_nonce: self.recv_nonce,
            count: frames,
        };
        self.recv_nonce += frames;
        self.recv_outstanding = true;
        Ok(Some(batch))
    }

    /// Takes back the frames of the batch out, decrypted: fails (and fails the transport) if
    /// `opened` is not that batch, or if opening it failed.
    pub fn accept_opened(&mut self, opened: Result<Opened, Error>) -> Result<Opened, Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        let result = match opened {
            Ok(o) if self.recv_outstanding && o.end_nonce == self.recv_nonce => Ok(o),
            Ok(_) => Err(Error::Failed),
            Err(e) => Err(e),
        };
        self.recv_outstanding = false;
        if result.is_err() {
            self.failed = true;
        }
        result
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
            recv_outstanding: self.recv_outstanding,
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
