//! Per-stream state and the borrowed stream handle [`StreamMut`].

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::config::INITIAL_WINDOW;
use super::{flow, Error, Session, StreamId};
use crate::time::Instant;

/// Stream state bits (one `u32` keeps an idle stream small).
pub(crate) mod bits {
    /// We opened it and have not sent the SYN yet.
    pub(crate) const SYN_PENDING: u32 = 1 << 0;
    /// The application accepted it and the ACK is not sent yet.
    pub(crate) const ACK_PENDING: u32 = 1 << 1;
    /// Inbound and not yet accepted by the application (counts against the accept backlog).
    pub(crate) const NOT_ACCEPTED: u32 = 1 << 2;
    /// We opened it and the peer has not acknowledged it (counts against the ACK backlog).
    pub(crate) const UNACKED: u32 = 1 << 3;
    /// The application called `finish`.
    pub(crate) const FIN_QUEUED: u32 = 1 << 4;
    /// Our FIN went out.
    pub(crate) const FIN_SENT: u32 = 1 << 5;
    /// The peer's FIN arrived.
    pub(crate) const FIN_RECEIVED: u32 = 1 << 6;
    /// The application read the end of the stream.
    pub(crate) const FIN_READ: u32 = 1 << 7;
    /// The id is in the session's control queue.
    pub(crate) const IN_CTRL: u32 = 1 << 8;
    /// The id is in the session's send queue.
    pub(crate) const IN_SEND: u32 = 1 << 9;
    /// A `Readable` event is queued and not consumed by a read yet.
    pub(crate) const READABLE_SIGNALLED: u32 = 1 << 10;
    /// A write was short; emit `Writable` once capacity returns.
    pub(crate) const WANT_WRITABLE: u32 = 1 << 11;
}

/// One stream's buffers and windows. Buffers allocate only when data flows.
#[derive(Debug)]
pub(crate) struct Stream {
    /// Received payloads not yet read, as slices of the session input.
    pub(crate) recv_buf: VecDeque<Bytes>,
    /// Outgoing payloads not yet transmitted.
    pub(crate) send_buf: VecDeque<Bytes>,
    /// Reusable copy target for `write(&[u8])`.
    pub(crate) staging: BytesMut,
    /// Bytes in `recv_buf`.
    pub(crate) recv_buffered: u32,
    /// Credit the peer still has for sending to us.
    pub(crate) recv_window: u32,
    /// Current (auto-tuned) receive window size.
    pub(crate) recv_max: u32,
    /// Bytes in `send_buf`.
    pub(crate) send_buffered: u32,
    /// Credit the peer granted us, minus what we transmitted. Always `>= send_buffered`.
    pub(crate) send_window: u32,
    /// State bits, see [`bits`].
    pub(crate) bits: u32,
    /// When the previous window update went out (auto-tuning epoch).
    pub(crate) last_update: Option<Instant>,
}

impl Stream {
    pub(crate) fn new(bits: u32, send_window: u32) -> Self {
        Self {
            recv_buf: VecDeque::new(),
            send_buf: VecDeque::new(),
            staging: BytesMut::new(),
            recv_buffered: 0,
            recv_window: INITIAL_WINDOW,
            recv_max: INITIAL_WINDOW,
            send_buffered: 0,
            send_window,
            bits,
            last_update: None,
        }
    }

    pub(crate) fn has(&self, b: u32) -> bool {
        self.bits & b != 0
    }

    /// Bytes `write` accepts now: bounded by the peer's window and the send buffer limit.
    pub(crate) fn send_capacity(&self, max_buffer: u32) -> u32 {
        if self.has(bits::FIN_QUEUED) {
            return 0;
        }
        self.send_window
            .min(max_buffer)
            .saturating_sub(self.send_buffered)
    }

    /// Whether a window update should be sent.
    pub(crate) fn update_due(&self) -> bool {
        !self.has(bits::FIN_RECEIVED)
            && flow::update_due(self.recv_max, self.recv_window, self.recv_buffered)
    }
}

/// A borrowed handle on one stream, from [`Session::stream`].
#[derive(Debug)]
pub struct StreamMut<'a> {
    pub(crate) session: &'a mut Session,
    pub(crate) id: u32,
}

impl StreamMut<'_> {
    /// This stream's id.
    pub fn id(&self) -> StreamId {
        StreamId(self.id)
    }

    fn get(&mut self) -> Result<&mut Stream, Error> {
        self.session
            .streams
            .get_mut(&self.id)
            .ok_or(Error::UnknownStream)
    }

    /// Accepts an inbound stream: its ACK goes out with the next transmit (go `AcceptStream`).
    /// Reading or writing accepts implicitly. No-op for accepted or outbound streams.
    pub fn accept(&mut self) -> Result<(), Error> {
        self.session.accept_stream(self.id)
    }

    /// Bytes [`StreamMut::write`] would accept now. When that is none, the stream reports
    /// [`super::Event::Writable`] once it can take more (as after a short write).
    pub fn send_capacity(&mut self) -> usize {
        let max = self.session.config.max_stream_send_buffer;
        self.get().map_or(0, |s| {
            let capacity = s.send_capacity(max) as usize;
            if capacity == 0 {
                s.bits |= bits::WANT_WRITABLE;
            }
            capacity
        })
    }

    /// Received bytes waiting to be read.
    pub fn read_buffered(&mut self) -> usize {
        self.get().map_or(0, |s| s.recv_buffered as usize)
    }

    /// Copies as much of `data` as the send window and buffer allow; returns the bytes
    /// accepted. `Ok(0)` (or a short count) means wait for [`super::Event::Writable`].
    pub fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.session.accept_stream(self.id)?;
        let max = self.session.config.max_stream_send_buffer;
        let s = self.get()?;
        if s.has(bits::FIN_QUEUED) {
            return Err(Error::StreamFinished);
        }
        let cap = s.send_capacity(max) as usize;
        let n = cap.min(data.len());
        if n < data.len() {
            s.bits |= bits::WANT_WRITABLE;
        }
        let Some(accepted) = data.get(..n) else {
            return Ok(0);
        };
        if n == 0 {
            return Ok(0);
        }
        s.staging.extend_from_slice(accepted);
        let chunk = s.staging.split().freeze();
        self.session.queue_send(self.id, chunk);
        Ok(n)
    }

    /// Queues a prefix of `data` without copying, as much as the window and buffer allow;
    /// returns the bytes accepted (slice the rest off `data` to retry after `Writable`).
    pub fn write_bytes(&mut self, mut data: Bytes) -> Result<usize, Error> {
        self.session.accept_stream(self.id)?;
        let max = self.session.config.max_stream_send_buffer;
        let s = self.get()?;
        if s.has(bits::FIN_QUEUED) {
            return Err(Error::StreamFinished);
        }
        let cap = s.send_capacity(max) as usize;
        let n = cap.min(data.len());
        if n < data.len() {
            s.bits |= bits::WANT_WRITABLE;
            data.truncate(n);
        }
        if n > 0 {
            self.session.queue_send(self.id, data);
        }
        Ok(n)
    }

    /// Reads up to `max` bytes: `Ok(Some(bytes))`, `Ok(None)` at the end of the stream (peer
    /// sent FIN), or `Err(Error::Blocked)` when nothing is buffered yet (wait for `Readable`).
    pub fn read(&mut self, max: usize) -> Result<Option<Bytes>, Error> {
        self.session.accept_stream(self.id)?;
        self.session.read_stream(self.id, max)
    }

    /// Half-closes our direction: FIN goes out after the buffered data.
    pub fn finish(&mut self) -> Result<(), Error> {
        self.session.accept_stream(self.id)?;
        self.session.finish_stream(self.id)
    }

    /// Aborts both directions; buffered data is dropped and the id becomes unknown.
    pub fn reset(self) -> Result<(), Error> {
        self.session.reset_stream(self.id)
    }
}
