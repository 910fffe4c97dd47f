//! yamux (`/yamux/1.0.0`) stream multiplexer as a sans-IO [`Session`].
//!
//! Feed received bytes to [`Session::handle_input`], then drain [`Session::poll_transmit`] and
//! [`Session::poll_event`], and sleep until [`Session::poll_timeout`] or more input. Streams are
//! used through borrowed handles from [`Session::stream`].
//!
//! Behaviour follows go-yamux / rust yamux (see the spec digest): 256 KiB initial windows,
//! window updates after half the window was consumed, receive windows auto-tuned from the
//! ping RTT up to [`Config::max_stream_window`] within a session budget, SYN carried by the
//! first frame of a stream we open (a Data frame if data is already queued, else a Window
//! Update), ACK sent when the application accepts, reads or writes an inbound stream.
//! FIN is always sent on a Window Update of its own after the stream's last data, as go-yamux
//! does (js-libp2p drops the data of a frame that carries FIN); FIN on data from a peer is
//! accepted. Protocol violations send Go Away(1) and end the session.

mod config;
mod flow;
pub mod frame;
mod stream;

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

pub use config::{
    Config, Mode, INITIAL_WINDOW, MAX_ACCEPT_BACKLOG, MAX_ACK_BACKLOG, MAX_EVENTS,
    MAX_PENDING_RESETS, MAX_PONG_BACKLOG,
};
use frame::{
    Flags, FrameType, Header, HeaderError, GO_AWAY_INTERNAL_ERROR, GO_AWAY_NORMAL,
    GO_AWAY_PROTOCOL_ERROR, HEADER_LEN,
};
pub use stream::StreamMut;
use stream::{bits, Stream};

use crate::time::Instant;

/// Largest Data payload accepted for a stream we do not know (closed or reset streams may still
/// receive up to their window in flight): the largest window we ever grant, 16 MiB by default,
/// bounded here so a forged length cannot make us skip 4 GiB.
pub const MAX_UNKNOWN_STREAM_FRAME: u32 = 16 * 1024 * 1024;

/// Data frame bodies shorter than this are copied out of the input instead of kept as views
/// of it (see where they are received).
const COPY_BELOW: usize = 16 * 1024;

/// A stream id (odd: opened by the client, even: by the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(u32);

impl StreamId {
    /// The id with wire value `id` (for tests, fuzzers and logs; sessions hand out their own).
    pub const fn from_wire(id: u32) -> Self {
        Self(id)
    }

    /// The wire value.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What went wrong: fatal protocol violations, refused inbound streams and API misuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame header had a version other than 0 (fatal).
    #[error("unsupported yamux version {0}")]
    InvalidVersion(u8),
    /// A frame header had a type other than 0–3 (fatal).
    #[error("unknown yamux frame type {0}")]
    InvalidType(u8),
    /// A Data frame announced more bytes than any window we grant (fatal).
    #[error("data frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Announced payload length, in bytes.
        len: u32,
        /// The limit, in bytes.
        max: u32,
    },
    /// A Data or Window Update frame named stream 0 (fatal).
    #[error("stream frame on the session id 0")]
    StreamZero,
    /// The peer opened a stream with our id parity (fatal).
    #[error("peer opened stream {0} with our id parity")]
    WrongParity(u32),
    /// The peer opened a stream whose id is in use (fatal).
    #[error("peer reopened stream {0} that is in use")]
    DuplicateStream(u32),
    /// The peer sent more data than the window we granted (fatal).
    #[error("{len} bytes on stream {id} exceed its receive window of {window} bytes")]
    WindowExceeded {
        /// The stream.
        id: u32,
        /// Payload length, in bytes.
        len: u32,
        /// Remaining window, in bytes.
        window: u32,
    },
    /// A window update overflowed the 32-bit send window (fatal).
    #[error("window update overflows the send window of stream {0}")]
    WindowOverflow(u32),
    /// The peer did not answer a ping in time (fatal).
    #[error("ping not answered within the timeout")]
    PingTimeout,
    /// Too many RSTs queued while our output is not drained (fatal).
    #[error("control queue full")]
    ControlQueueFull,
    /// Inbound stream refused: the stream limit is reached.
    #[error("too many streams (limit {max})")]
    TooManyStreams {
        /// The configured limit.
        max: usize,
    },
    /// Inbound stream refused: 256 streams wait for the application to accept them.
    #[error("accept backlog full")]
    AcceptBacklogFull,
    /// Stream refused: its window would exceed the session receive budget.
    #[error("session receive budget exhausted")]
    BudgetExhausted,
    /// Inbound stream refused, or open failed: the session is closing.
    #[error("session is closing")]
    GoingAway,
    /// `open_stream`: 256 of our streams are not acknowledged yet; retry later.
    #[error("ack backlog full")]
    AckBacklogFull,
    /// `open_stream`: no stream ids left.
    #[error("stream ids exhausted")]
    StreamIdsExhausted,
    /// The session is closed.
    #[error("session closed")]
    Closed,
    /// The stream does not exist (any more).
    #[error("unknown stream")]
    UnknownStream,
    /// Nothing to read yet; wait for `Readable`.
    #[error("no data buffered")]
    Blocked,
    /// Write after `finish`.
    #[error("stream already finished")]
    StreamFinished,
}

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The peer opened a stream; accept it by reading, writing or [`StreamMut::accept`].
    InboundStream(StreamId),
    /// An inbound stream was refused with RST (limit or budget reached).
    InboundRejected {
        /// The refused stream.
        id: StreamId,
        /// Why.
        reason: Error,
    },
    /// Data (or the end of the stream) can be read.
    Readable(StreamId),
    /// A short write can be retried: send capacity is available again.
    Writable(StreamId),
    /// The peer half-closed the stream (FIN); reads end after the buffered data.
    StreamFinished(StreamId),
    /// The peer reset the stream, or the session ended with it open; it no longer exists.
    StreamReset(StreamId),
    /// The peer sent Go Away with this code; the session is closed.
    GoAwayReceived(u32),
    /// A fatal error; [`Event::Closed`] follows.
    Error(Error),
    /// The session is closed: nothing more will be sent or received.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// `close` called: no new streams; Go Away(0) after the queued data is flushed.
    Closing,
    /// Go Away `code` must go out, then closed.
    Terminating(u32),
    Closed,
}

/// Hasher for stream ids: one multiply (ids are small integers; the table holds at most
/// `max_streams` entries, so even adversarial collisions stay bounded) and a zero-sized
/// builder, keeping the session small.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (u64::from(n) ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type StreamMap = HashMap<u32, Stream, BuildHasherDefault<IdHasher>>;

/// A queued control frame.
#[derive(Debug, Clone, Copy)]
enum Ctrl {
    /// Answer a ping with this opaque value.
    Pong(u32),
    /// RST for a stream that no longer exists.
    Reset(u32),
    /// SYN/ACK/FIN/window update for a live stream, computed when sent.
    Stream(u32),
}

#[derive(Debug, Default)]
struct Ping {
    /// When the next keepalive/RTT ping is due.
    next_at: Option<Instant>,
    /// Opaque value of the ping in flight, and when it was queued (until sent) or sent.
    outstanding: Option<(u32, Instant)>,
    /// The outstanding ping still needs transmitting.
    to_send: bool,
    counter: u32,
}

/// A yamux session over one secured connection.
#[derive(Debug)]
pub struct Session {
    mode: Mode,
    config: config::Tuning,
    state: State,
    streams: StreamMap,
    /// Next id we open (u64 so exhaustion is a comparison, not an overflow).
    next_id: u64,
    /// Inbound streams not yet accepted.
    accept_backlog: u16,
    /// Our streams not yet acknowledged.
    ack_backlog: u16,
    /// Sum of all streams' receive window sizes (bounded by the budget).
    total_recv_max: u64,
    /// Control frames to send before any data (bounded: pongs by `MAX_PONG_BACKLOG`, resets
    /// by `MAX_PENDING_RESETS`, stream entries by the number of streams).
    ctrl: VecDeque<Ctrl>,
    pongs_queued: u8,
    resets_queued: u16,
    /// Streams with data to send (round robin).
    sendq: VecDeque<u32>,
    ping: Ping,
    /// Smoothed round-trip time in microseconds, 0 while unknown (4 bytes instead of 16: idle
    /// memory per connection counts).
    rtt_micros: u32,
    events: VecDeque<Event>,
    /// Payload bytes of an ignored Data frame still to discard.
    skip: u32,
    last_now: Instant,
}

impl Session {
    /// A session in `mode`; the first RTT ping is queued at once when pings are enabled.
    pub fn new(mode: Mode, config: Config, now: Instant) -> Self {
        let mut s = Self {
            mode,
            state: State::Open,
            streams: StreamMap::default(),
            next_id: match mode {
                Mode::Client => 1,
                Mode::Server => 2,
            },
            accept_backlog: 0,
            ack_backlog: 0,
            total_recv_max: 0,

            ctrl: VecDeque::new(),
            sendq: VecDeque::new(),
            pongs_queued: 0,
            resets_queued: 0,
            ping: Ping::default(),
            rtt_micros: 0,
            events: VecDeque::new(),
            skip: 0,
            last_now: now,
            config: config::Tuning::new(&config),
        };
        if s.config.ping_interval().is_some() {
            s.send_ping(now);
        }
        s
    }

    /// This session's side.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Number of open streams (both directions).
    pub fn num_streams(&self) -> usize {
        self.streams.len()
    }

    /// Received bytes buffered over all streams, not yet read.
    pub fn recv_buffered(&self) -> u64 {
        self.streams
            .values()
            .map(|s| u64::from(s.recv_buffered))
            .sum()
    }

    /// Outgoing bytes buffered over all streams, not yet transmitted.
    pub fn send_buffered(&self) -> u64 {
        self.streams
            .values()
            .map(|s| u64::from(s.send_buffered))
            .sum()
    }

    /// Sum of all streams' current receive window sizes, in bytes; never above
    /// [`Config::max_session_receive_window`] (plus 256 KiB per stream if the budget is set
    /// below that protocol minimum).
    pub fn total_receive_window(&self) -> u64 {
        self.total_recv_max
    }

    /// The smoothed round-trip time measured by pings, if any.
    pub fn rtt(&self) -> Option<Duration> {
        (self.rtt_micros > 0).then(|| Duration::from_micros(self.rtt_micros.into()))
    }

    /// The configuration.
    pub fn config(&self) -> Config {
        self.config.to_config()
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        if now > self.last_now {
            self.last_now = now;
        }
        self.last_now
    }

    fn push_event(&mut self, e: Event) {
        self.events.push_back(e);
    }

    // ----- input -----

    /// Consumes complete frames from the front of `input`; a partial frame stays there. Data
    /// payloads are handed to streams as `Bytes` split off `input` (no copy). A fatal error
    /// is returned once (and as [`Event::Error`]); afterwards input is discarded.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut) -> Result<(), Error> {
        let now = self.clamp(now);
        loop {
            if !matches!(self.state, State::Open | State::Closing) {
                input.clear();
                return Ok(());
            }
            if self.skip > 0 {
                let n = (self.skip as usize).min(input.len());
                input.advance(n);
                // n <= skip
                self.skip -= n as u32;
                if self.skip > 0 {
                    return Ok(());
                }
                continue;
            }
            let hdr = match Header::decode(input) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(()),
                Err(HeaderError::Version(v)) => {
                    return Err(self.fail(Error::InvalidVersion(v), GO_AWAY_PROTOCOL_ERROR))
                }
                Err(HeaderError::Type(t)) => {
                    return Err(self.fail(Error::InvalidType(t), GO_AWAY_PROTOCOL_ERROR))
                }
            };
            match hdr.ty {
                FrameType::Ping => {
                    input.advance(HEADER_LEN);
                    self.on_ping(now, hdr);
                }
                FrameType::GoAway => {
                    input.advance(HEADER_LEN);
                    self.on_go_away(hdr.length);
                }
                FrameType::WindowUpdate => {
                    if hdr.stream_id == 0 {
                        return Err(self.fail(Error::StreamZero, GO_AWAY_PROTOCOL_ERROR));
                    }
                    self.precheck(hdr)?;
                    input.advance(HEADER_LEN);
                    if let Err(e) = self.on_stream_frame(now, hdr, None) {
                        return Err(self.fail(e, GO_AWAY_PROTOCOL_ERROR));
                    }
                }
                FrameType::Data => {
                    if hdr.stream_id == 0 {
                        return Err(self.fail(Error::StreamZero, GO_AWAY_PROTOCOL_ERROR));
                    }
                    let known = self.precheck(hdr)?;
                    if !known {
                        // Unknown or refused stream: discard the body as it arrives (spec §5).
                        input.advance(HEADER_LEN);
                        if let Err(e) = self.on_stream_frame(now, hdr, None) {
                            return Err(self.fail(e, GO_AWAY_PROTOCOL_ERROR));
                        }
                        self.skip = hdr.length;
                        continue;
                    }
                    let total = HEADER_LEN + hdr.length as usize;
                    if input.len() < total {
                        return Ok(());
                    }
                    input.advance(HEADER_LEN);
                    let body = input.split_to(hdr.length as usize).freeze();
                    // A small body kept as a view would pin the whole receive buffer it came
                    // in (hundreds of KiB) for as long as the stream keeps it unread: copy it.
                    let body = if body.len() < COPY_BELOW {
                        Bytes::copy_from_slice(&body)
                    } else {
                        body
                    };
                    if let Err(e) = self.on_stream_frame(now, hdr, Some(body)) {
                        return Err(self.fail(e, GO_AWAY_PROTOCOL_ERROR));
                    }
                }
            }
        }
    }

    /// Checks a stream frame's header before its body is complete, so a bad length is
    /// rejected without buffering it. Returns whether the frame's payload will be kept
    /// (known stream or a SYN we accept); `false` means discard it.
    fn precheck(&mut self, hdr: Header) -> Result<bool, Error> {
        let id = hdr.stream_id;
        let is_data = hdr.ty == FrameType::Data;
        if hdr.flags.contains(Flags::SYN) {
            if self.is_ours(id) {
                return Err(self.fail(Error::WrongParity(id), GO_AWAY_PROTOCOL_ERROR));
            }
            if self.streams.contains_key(&id) {
                return Err(self.fail(Error::DuplicateStream(id), GO_AWAY_PROTOCOL_ERROR));
            }
            if is_data && hdr.length > INITIAL_WINDOW {
                let e = Error::WindowExceeded {
                    id,
                    len: hdr.length,
                    window: INITIAL_WINDOW,
                };
                return Err(self.fail(e, GO_AWAY_PROTOCOL_ERROR));
            }
            return Ok(self.refusal().is_none());
        }
        match self.streams.get(&id) {
            Some(s) => {
                if is_data && hdr.length > s.recv_window {
                    let e = Error::WindowExceeded {
                        id,
                        len: hdr.length,
                        window: s.recv_window,
                    };
                    return Err(self.fail(e, GO_AWAY_PROTOCOL_ERROR));
                }
                Ok(true)
            }
            None => {
                let max = MAX_UNKNOWN_STREAM_FRAME.max(self.config.max_stream_window);
                if is_data && hdr.length > max {
                    let e = Error::FrameTooLarge {
                        len: hdr.length,
                        max,
                    };
                    return Err(self.fail(e, GO_AWAY_PROTOCOL_ERROR));
                }
                Ok(false)
            }
        }
    }

    /// Why a new inbound stream would be refused right now, if it would.
    fn refusal(&self) -> Option<Error> {
        if self.state != State::Open {
            Some(Error::GoingAway)
        } else if self.streams.len() >= self.config.max_streams {
            Some(Error::TooManyStreams {
                max: self.config.max_streams,
            })
        } else if usize::from(self.accept_backlog) >= MAX_ACCEPT_BACKLOG {
            Some(Error::AcceptBacklogFull)
        } else if self.total_recv_max + u64::from(INITIAL_WINDOW)
            > self.config.max_session_receive_window
        {
            Some(Error::BudgetExhausted)
        } else {
            None
        }
    }

    fn is_ours(&self, id: u32) -> bool {
        let odd = id % 2 == 1;
        match self.mode {
            Mode::Client => odd,
            Mode::Server => !odd,
        }
    }

    /// Applies a Data (with body) or Window Update frame. Errors are fatal.
    fn on_stream_frame(
        &mut self,
        now: Instant,
        hdr: Header,
        body: Option<Bytes>,
    ) -> Result<(), Error> {
        let _ = now;
        let id = hdr.stream_id;
        let flags = hdr.flags;
        if flags.contains(Flags::SYN) {
            if let Some(reason) = self.refusal() {
                self.queue_reset(id)?;
                if self.events.len() < MAX_EVENTS {
                    self.push_event(Event::InboundRejected {
                        id: StreamId(id),
                        reason,
                    });
                }
                return Ok(());
            }
            let mut send_window = INITIAL_WINDOW;
            if hdr.ty == FrameType::WindowUpdate && !flags.contains(Flags::RST) {
                send_window = send_window
                    .checked_add(hdr.length)
                    .ok_or(Error::WindowOverflow(id))?;
            }
            self.streams
                .insert(id, Stream::new(bits::NOT_ACCEPTED, send_window));
            self.accept_backlog += 1;
            self.total_recv_max += u64::from(INITIAL_WINDOW);
            self.push_event(Event::InboundStream(StreamId(id)));
        } else if !self.streams.contains_key(&id) {
            return Ok(());
        }
        let max_buf = self.config.max_stream_send_buffer;
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        if flags.contains(Flags::RST) {
            self.remove_stream(id);
            self.push_event(Event::StreamReset(StreamId(id)));
            return Ok(());
        }
        if flags.contains(Flags::ACK) && s.has(bits::UNACKED) {
            s.bits &= !bits::UNACKED;
            self.ack_backlog = self.ack_backlog.saturating_sub(1);
        }
        let mut readable = false;
        let mut writable = false;
        match (hdr.ty, body) {
            (FrameType::Data, Some(body)) => {
                let len = hdr.length;
                // precheck guaranteed len <= recv_window; re-check without panicking.
                s.recv_window = s
                    .recv_window
                    .checked_sub(len)
                    .ok_or(Error::WindowExceeded {
                        id,
                        len,
                        window: s.recv_window,
                    })?;
                if len > 0 && !s.has(bits::FIN_RECEIVED) {
                    s.recv_buf.push_back(body);
                    s.recv_buffered += len;
                    readable = true;
                }
            }
            (FrameType::WindowUpdate, _) if !flags.contains(Flags::SYN) => {
                let before = s.send_capacity(max_buf);
                s.send_window = s
                    .send_window
                    .checked_add(hdr.length)
                    .ok_or(Error::WindowOverflow(id))?;
                writable = s.has(bits::WANT_WRITABLE) && s.send_capacity(max_buf) > before;
            }
            _ => {}
        }
        let mut finished = false;
        if flags.contains(Flags::FIN) && !s.has(bits::FIN_RECEIVED) {
            s.bits |= bits::FIN_RECEIVED;
            readable = true;
            finished = true;
        }
        if readable && !s.has(bits::READABLE_SIGNALLED) {
            s.bits |= bits::READABLE_SIGNALLED;
            self.events.push_back(Event::Readable(StreamId(id)));
        }
        if writable {
            s.bits &= !bits::WANT_WRITABLE;
            self.events.push_back(Event::Writable(StreamId(id)));
        }
        if finished {
            self.push_event(Event::StreamFinished(StreamId(id)));
        }
        Ok(())
    }

    fn on_ping(&mut self, now: Instant, hdr: Header) {
        if hdr.flags.contains(Flags::SYN) {
            // go PingBacklog: extra pings beyond the queue are not answered.
            if usize::from(self.pongs_queued) < MAX_PONG_BACKLOG {
                self.pongs_queued += 1;
                self.ctrl.push_back(Ctrl::Pong(hdr.length));
            }
        } else if hdr.flags.contains(Flags::ACK) {
            // Unexpected pongs are ignored (go behaviour).
            if let Some((value, sent)) = self.ping.outstanding {
                if value == hdr.length && !self.ping.to_send {
                    let sample = now.saturating_duration_since(sent);
                    let rtt = flow::smooth_rtt(self.rtt(), sample);
                    self.rtt_micros = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX).max(1);
                    self.ping.outstanding = None;
                }
            }
        }
    }

    fn on_go_away(&mut self, code: u32) {
        self.push_event(Event::GoAwayReceived(code));
        self.reset_all();
        self.set_closed();
    }

    // ----- fatal errors and closing -----

    /// Records a fatal error: streams reset, Go Away `code` queued, error event.
    fn fail(&mut self, err: Error, code: u32) -> Error {
        if matches!(self.state, State::Open | State::Closing) {
            self.reset_all();
            self.push_event(Event::Error(err.clone()));
            self.state = State::Terminating(code);
        }
        err
    }

    fn reset_all(&mut self) {
        let mut ids: Vec<u32> = self.streams.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.remove_stream(id);
            self.push_event(Event::StreamReset(StreamId(id)));
        }
        self.ctrl.clear();
        self.sendq.clear();
        self.pongs_queued = 0;
        self.resets_queued = 0;
    }

    fn set_closed(&mut self) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.ctrl.clear();
            self.pongs_queued = 0;
            self.resets_queued = 0;
            self.ping = Ping::default();
            self.push_event(Event::Closed);
        }
    }

    /// Graceful close: no new streams; queued stream data is flushed, then Go Away(0) is sent
    /// and the session is closed (streams still open then are reset).
    pub fn close(&mut self, now: Instant) {
        self.clamp(now);
        if self.state == State::Open {
            self.state = State::Closing;
        }
    }

    /// Abrupt termination: streams reset now, Go Away `code` (0 normal, 1 protocol error,
    /// 2 internal error) goes out first, then the session is closed.
    pub fn abort(&mut self, now: Instant, code: u32) {
        self.clamp(now);
        if matches!(self.state, State::Open | State::Closing) {
            self.reset_all();
            self.state = State::Terminating(code);
        }
    }

    /// Whether the session has ended (after Go Away was sent or received, or a ping timeout).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    // ----- timers -----

    fn send_ping(&mut self, now: Instant) {
        self.ping.counter = self.ping.counter.wrapping_add(1);
        self.ping.outstanding = Some((self.ping.counter, now));
        self.ping.to_send = true;
        self.ping.next_at = self.config.ping_interval().and_then(|i| now.checked_add(i));
    }

    fn ping_deadline(&self) -> Option<Instant> {
        let (_, at) = self.ping.outstanding?;
        at.checked_add(self.config.ping_timeout())
    }

    /// Sends a keepalive/RTT ping when due; fails the session when a ping timed out.
    /// Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        if !matches!(self.state, State::Open | State::Closing) {
            return;
        }
        if let Some(deadline) = self.ping_deadline() {
            if now >= deadline {
                self.fail(Error::PingTimeout, GO_AWAY_INTERNAL_ERROR);
                // A dead peer gets no Go Away (go-yamux keepalive behaviour).
                self.set_closed();
                return;
            }
        }
        if self.ping.outstanding.is_none() && self.ping.next_at.is_some_and(|t| now >= t) {
            self.send_ping(now);
        }
    }

    /// Sends an RTT ping now unless one is in flight.
    pub fn ping(&mut self, now: Instant) -> Result<(), Error> {
        let now = self.clamp(now);
        if !matches!(self.state, State::Open | State::Closing) {
            return Err(Error::Closed);
        }
        if self.ping.outstanding.is_none() {
            let next = self.ping.next_at;
            self.send_ping(now);
            self.ping.next_at = next;
        }
        Ok(())
    }

    /// The earliest deadline (next ping or ping timeout); `None` when closed or pings are off.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !matches!(self.state, State::Open | State::Closing) {
            return None;
        }
        // While a ping is in flight only its deadline matters: the next one waits for it.
        self.ping_deadline().or(self.ping.next_at)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- streams -----

    /// Opens a stream with the next id of our parity; its SYN goes out with its first frame.
    pub fn open_stream(&mut self, now: Instant) -> Result<StreamId, Error> {
        self.clamp(now);
        match self.state {
            State::Open => {}
            State::Closing => return Err(Error::GoingAway),
            _ => return Err(Error::Closed),
        }
        if self.streams.len() >= self.config.max_streams {
            return Err(Error::TooManyStreams {
                max: self.config.max_streams,
            });
        }
        if usize::from(self.ack_backlog) >= MAX_ACK_BACKLOG {
            return Err(Error::AckBacklogFull);
        }
        if self.total_recv_max + u64::from(INITIAL_WINDOW) > self.config.max_session_receive_window
        {
            return Err(Error::BudgetExhausted);
        }
        let id = u32::try_from(self.next_id).map_err(|_| Error::StreamIdsExhausted)?;
        self.next_id += 2;
        self.streams.insert(
            id,
            Stream::new(bits::SYN_PENDING | bits::UNACKED, INITIAL_WINDOW),
        );
        self.ack_backlog += 1;
        self.total_recv_max += u64::from(INITIAL_WINDOW);
        self.queue_ctrl(id);
        Ok(StreamId(id))
    }

    /// A handle on stream `id`, or `None` if it does not exist (never opened, reset, or
    /// closed in both directions with the end read).
    pub fn stream(&mut self, id: StreamId) -> Option<StreamMut<'_>> {
        if self.streams.contains_key(&id.0) {
            Some(StreamMut {
                session: self,
                id: id.0,
            })
        } else {
            None
        }
    }

    fn queue_ctrl(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            if !s.has(bits::IN_CTRL) {
                s.bits |= bits::IN_CTRL;
                self.ctrl.push_back(Ctrl::Stream(id));
            }
        }
    }

    fn queue_reset(&mut self, id: u32) -> Result<(), Error> {
        if usize::from(self.resets_queued) >= MAX_PENDING_RESETS {
            return Err(Error::ControlQueueFull);
        }
        self.resets_queued += 1;
        self.ctrl.push_back(Ctrl::Reset(id));
        Ok(())
    }

    fn accept_stream(&mut self, id: u32) -> Result<(), Error> {
        let s = self.streams.get_mut(&id).ok_or(Error::UnknownStream)?;
        if s.has(bits::NOT_ACCEPTED) {
            s.bits = (s.bits & !bits::NOT_ACCEPTED) | bits::ACK_PENDING;
            self.accept_backlog = self.accept_backlog.saturating_sub(1);
            self.queue_ctrl(id);
        }
        Ok(())
    }

    fn queue_send(&mut self, id: u32, chunk: Bytes) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let n = chunk.len() as u32;
        s.send_buf.push_back(chunk);
        s.send_buffered += n;
        if !s.has(bits::IN_SEND) {
            s.bits |= bits::IN_SEND;
            self.sendq.push_back(id);
        }
    }

    fn read_stream(&mut self, id: u32, max: usize) -> Result<Option<Bytes>, Error> {
        let s = self.streams.get_mut(&id).ok_or(Error::UnknownStream)?;
        s.bits &= !bits::READABLE_SIGNALLED;
        let Some(front) = s.recv_buf.front_mut() else {
            if s.has(bits::FIN_RECEIVED) {
                s.bits |= bits::FIN_READ;
                self.maybe_remove(id);
                return Ok(None);
            }
            return Err(Error::Blocked);
        };
        let chunk = if front.len() > max {
            front.split_to(max)
        } else {
            s.recv_buf.pop_front().unwrap_or_default()
        };
        let n = chunk.len() as u32;
        s.recv_buffered = s.recv_buffered.saturating_sub(n);
        if s.recv_buf.is_empty() {
            // Give the memory back when idle.
            s.recv_buf = VecDeque::new();
        }
        if s.update_due() {
            self.queue_ctrl(id);
        }
        Ok(Some(chunk))
    }

    fn finish_stream(&mut self, id: u32) -> Result<(), Error> {
        let s = self.streams.get_mut(&id).ok_or(Error::UnknownStream)?;
        if s.has(bits::FIN_QUEUED) {
            return Err(Error::StreamFinished);
        }
        s.bits |= bits::FIN_QUEUED;
        if s.send_buffered == 0 {
            self.queue_ctrl(id);
        }
        Ok(())
    }

    fn reset_stream(&mut self, id: u32) -> Result<(), Error> {
        let s = self.streams.get(&id).ok_or(Error::UnknownStream)?;
        // A stream the peer never heard of needs no RST.
        let announced = !s.has(bits::SYN_PENDING);
        self.remove_stream(id);
        if announced {
            // Application resets are bounded by the streams it has; never refused.
            self.resets_queued = self.resets_queued.saturating_add(1);
            self.ctrl.push_back(Ctrl::Reset(id));
        }
        Ok(())
    }

    fn maybe_remove(&mut self, id: u32) {
        if let Some(s) = self.streams.get(&id) {
            if s.has(bits::FIN_SENT) && s.has(bits::FIN_READ) {
                self.remove_stream(id);
            }
        }
    }

    fn remove_stream(&mut self, id: u32) {
        if let Some(s) = self.streams.remove(&id) {
            self.total_recv_max = self.total_recv_max.saturating_sub(u64::from(s.recv_max));

            if s.has(bits::NOT_ACCEPTED) {
                self.accept_backlog = self.accept_backlog.saturating_sub(1);
            }
            if s.has(bits::UNACKED) {
                self.ack_backlog = self.ack_backlog.saturating_sub(1);
            }
        }
    }

    // ----- output -----

    /// Appends frames to `out`, at most `max_bytes`: control frames first (Go Away, pongs,
    /// ping, RSTs, SYN/ACK/FIN/window updates), then data round robin over streams, split to
    /// fit. Returns the bytes appended, `None` if nothing was.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        out: &mut BytesMut,
        max_bytes: usize,
    ) -> Option<usize> {
        let now = self.clamp(now);
        let start = out.len();
        let mut budget = max_bytes;
        self.transmit(now, out, &mut budget);
        let n = out.len() - start;
        (n > 0).then_some(n)
    }

    fn put(out: &mut BytesMut, budget: &mut usize, h: Header) -> bool {
        if *budget < HEADER_LEN {
            return false;
        }
        h.encode(out);
        *budget -= HEADER_LEN;
        true
    }

    fn transmit(&mut self, now: Instant, out: &mut BytesMut, budget: &mut usize) {
        match self.state {
            State::Closed => return,
            State::Terminating(code) => {
                let h = Header::new(FrameType::GoAway, Flags::NONE, 0, code);
                if Self::put(out, budget, h) {
                    self.set_closed();
                }
                return;
            }
            State::Open | State::Closing => {}
        }
        out.reserve((*budget).min(256 * 1024));
        if self.ping.to_send {
            if let Some((v, _)) = self.ping.outstanding {
                let h = Header::new(FrameType::Ping, Flags::SYN, 0, v);
                if !Self::put(out, budget, h) {
                    return;
                }
                // The RTT sample and the timeout count from the moment it is sent.
                self.ping.outstanding = Some((v, now));
            }
            self.ping.to_send = false;
        }
        while let Some(&c) = self.ctrl.front() {
            if *budget < HEADER_LEN {
                return;
            }
            self.ctrl.pop_front();
            match c {
                Ctrl::Pong(v) => {
                    self.pongs_queued = self.pongs_queued.saturating_sub(1);
                    Self::put(out, budget, Header::new(FrameType::Ping, Flags::ACK, 0, v));
                }
                Ctrl::Reset(id) => {
                    self.resets_queued = self.resets_queued.saturating_sub(1);
                    let h = Header::new(FrameType::WindowUpdate, Flags::RST, id, 0);
                    Self::put(out, budget, h);
                }
                Ctrl::Stream(id) => self.emit_ctrl(now, id, out, budget),
            }
        }
        if self.ctrl.is_empty() && self.ctrl.capacity() > 64 {
            self.ctrl = VecDeque::new();
        }
        // Data, one frame per stream per turn.
        while *budget > HEADER_LEN {
            let Some(id) = self.sendq.pop_front() else {
                break;
            };
            self.emit_data(id, out, budget);
        }
        if self.state == State::Closing && self.sendq.is_empty() && self.ctrl.is_empty() {
            let h = Header::new(FrameType::GoAway, Flags::NONE, 0, GO_AWAY_NORMAL);
            if Self::put(out, budget, h) {
                self.reset_all();
                self.set_closed();
            }
        }
    }

    fn emit_ctrl(&mut self, now: Instant, id: u32, out: &mut BytesMut, budget: &mut usize) {
        let rtt = self.rtt();
        let cap = self.config.max_stream_window;
        let budget_left = self
            .config
            .max_session_receive_window
            .saturating_sub(self.total_recv_max);
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.bits &= !bits::IN_CTRL;
        let mut flags = Flags::NONE;
        if s.has(bits::SYN_PENDING) {
            flags = flags.with(Flags::SYN);
        }
        if s.has(bits::ACK_PENDING) {
            flags = flags.with(Flags::ACK);
        }
        let fin = s.has(bits::FIN_QUEUED) && !s.has(bits::FIN_SENT) && s.send_buffered == 0;
        if fin {
            flags = flags.with(Flags::FIN);
        }
        let due = s.update_due();
        if !due && !fin && (flags == Flags::NONE || s.send_buffered > 0) {
            // Nothing to say, or the SYN/ACK rides on the data frame already queued.
            return;
        }
        let mut delta = 0;
        if due {
            let old = s.recv_max;
            let starved = flow::sender_starved(old, s.recv_window, s.recv_buffered);
            s.recv_max = flow::tuned_max(old, now, s.last_update, rtt, starved, cap, budget_left);
            self.total_recv_max += u64::from(s.recv_max - old);
            s.last_update = Some(now);
            delta = flow::pending_credit(s.recv_max, s.recv_window, s.recv_buffered);
            s.recv_window += delta;
        }
        let h = Header::new(FrameType::WindowUpdate, flags, id, delta);
        h.encode(out);
        *budget -= HEADER_LEN;
        s.bits &= !(bits::SYN_PENDING | bits::ACK_PENDING);
        if fin {
            s.bits |= bits::FIN_SENT;
            self.maybe_remove(id);
        }
    }

    fn emit_data(&mut self, id: u32, out: &mut BytesMut, budget: &mut usize) {
        let max_payload = self.config.max_frame_payload as usize;
        let max_buf = self.config.max_stream_send_buffer;
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.bits &= !bits::IN_SEND;
        let room = budget.saturating_sub(HEADER_LEN);
        let len = (s.send_buffered as usize).min(max_payload).min(room);
        if len == 0 && s.send_buffered > 0 {
            s.bits |= bits::IN_SEND;
            self.sendq.push_front(id);
            return;
        }
        let cap_before = s.send_capacity(max_buf);
        let mut flags = Flags::NONE;
        if s.has(bits::SYN_PENDING) {
            flags = flags.with(Flags::SYN);
        }
        if s.has(bits::ACK_PENDING) {
            flags = flags.with(Flags::ACK);
        }
        // len <= send_buffered (a u32)
        let len32 = len as u32;
        // FIN never rides on data: it follows on a frame of its own (a window update, as
        // go-yamux sends it), because js-libp2p's yamux applies a frame's flags before its
        // body and drops the data of a frame that carries FIN.
        let fin_next = len32 == s.send_buffered && s.has(bits::FIN_QUEUED);
        Header::new(FrameType::Data, flags, id, len32).encode(out);
        let mut left = len;
        while left > 0 {
            let Some(front) = s.send_buf.front_mut() else {
                break;
            };
            if front.len() <= left {
                left -= front.len();
                out.extend_from_slice(front);
                s.send_buf.pop_front();
            } else {
                out.extend_from_slice(front.get(..left).unwrap_or_default());
                front.advance(left);
                left = 0;
            }
        }
        *budget -= HEADER_LEN + len;
        s.send_buffered -= len32;
        s.send_window = s.send_window.saturating_sub(len32);

        s.bits &= !(bits::SYN_PENDING | bits::ACK_PENDING);
        if s.send_buffered > 0 {
            s.bits |= bits::IN_SEND;
            self.sendq.push_back(id);
        } else {
            // Idle streams hold no buffers (allocation is per write burst, not per frame).
            s.send_buf = VecDeque::new();
            s.staging = BytesMut::new();
        }
        if s.has(bits::WANT_WRITABLE) && s.send_capacity(max_buf) > cap_before {
            s.bits &= !bits::WANT_WRITABLE;
            self.events.push_back(Event::Writable(StreamId(id)));
        }
        if fin_next {
            self.queue_ctrl(id);
        }
    }
}

#[cfg(test)]
mod tests;
