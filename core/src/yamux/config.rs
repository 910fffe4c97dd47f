//! Session configuration with documented defaults.

use std::time::Duration;

/// Initial window of every stream in each direction, in bytes (spec §2: 256 KiB, fixed by the
/// protocol; go `initialStreamWindow`, rust `DEFAULT_CREDIT`).
pub const INITIAL_WINDOW: u32 = 256 * 1024;

/// Most inbound streams the application has not accepted yet; a SYN beyond it is answered with
/// RST (go `AcceptBacklog`, libp2p spec "ACK backlog").
pub const MAX_ACCEPT_BACKLOG: usize = 256;

/// Most streams we opened that the peer has not acknowledged; `open_stream` fails beyond it
/// (libp2p spec "ACK backlog", rust `MAX_ACK_BACKLOG`).
pub const MAX_ACK_BACKLOG: usize = 256;

/// Most pong replies queued; further pings are not answered until the queue drains
/// (go `PingBacklog`), so a ping flood cannot grow memory.
pub const MAX_PONG_BACKLOG: usize = 32;

/// Most queued RST frames for streams that no longer exist (refused SYNs, local resets); a
/// peer that makes us queue more than this while not reading our output is a protocol error.
pub const MAX_PENDING_RESETS: usize = 1024;

/// Most queued events; further `InboundRejected` notices are dropped beyond it (every other
/// event is deduplicated per stream and so bounded by the number of streams).
pub const MAX_EVENTS: usize = 4096;

/// Which side of the connection this session is (spec §1: client ids are odd, server even).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The dialer / Noise initiator: opens odd stream ids from 1.
    Client,
    /// The listener / Noise responder: opens even stream ids from 2.
    Server,
}

/// Session settings. Build with [`Config::default`] and the `with_*` setters.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most open streams, both directions together (default 512, rust `max_num_streams`).
    pub max_streams: usize,
    /// Upper bound of a stream's auto-tuned receive window, in bytes (default 16 MiB, as
    /// go-yamux / go-libp2p).
    pub max_stream_window: u32,
    /// Memory budget for received, unread data over all streams, in bytes (default 256 MiB).
    /// The sum of all streams' receive windows never exceeds it, so neither can the buffered
    /// data; a new stream that would not fit is refused.
    pub max_session_receive_window: u64,
    /// Most outgoing bytes a stream buffers before `write` accepts no more (default 1 MiB).
    pub max_stream_send_buffer: u32,
    /// Largest Data payload we send in one frame, in bytes (default 64 KiB − 12, go
    /// `MaxMessageSize`; rust accepts up to 1 MiB).
    pub max_frame_payload: u32,
    /// Keepalive and RTT ping interval; `None` disables pings (default 30 s, as go-yamux).
    pub ping_interval: Option<Duration>,
    /// How long a ping may stay unanswered before the session fails (default 10 s, go
    /// `ConnectionWriteTimeout`).
    pub ping_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_streams: 512,
            max_stream_window: 16 * 1024 * 1024,
            max_session_receive_window: 256 * 1024 * 1024,
            max_stream_send_buffer: 1024 * 1024,
            max_frame_payload: 64 * 1024 - 12,
            ping_interval: Some(Duration::from_secs(30)),
            ping_timeout: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Sets [`Config::max_streams`].
    #[must_use]
    pub fn with_max_streams(mut self, n: usize) -> Self {
        self.max_streams = n;
        self
    }

    /// Sets [`Config::max_stream_window`] (clamped to at least [`INITIAL_WINDOW`]).
    #[must_use]
    pub fn with_max_stream_window(mut self, bytes: u32) -> Self {
        self.max_stream_window = bytes.max(INITIAL_WINDOW);
        self
    }

    /// Sets [`Config::max_session_receive_window`].
    #[must_use]
    pub fn with_max_session_receive_window(mut self, bytes: u64) -> Self {
        self.max_session_receive_window = bytes;
        self
    }

    /// Sets [`Config::max_stream_send_buffer`] (clamped to at least 1).
    #[must_use]
    pub fn with_max_stream_send_buffer(mut self, bytes: u32) -> Self {
        self.max_stream_send_buffer = bytes.max(1);
        self
    }

    /// Sets [`Config::max_frame_payload`] (clamped to 1 ..= 1 MiB).
    #[must_use]
    pub fn with_max_frame_payload(mut self, bytes: u32) -> Self {
        self.max_frame_payload = bytes.clamp(1, 1024 * 1024);
        self
    }

    /// Sets [`Config::ping_interval`].
    #[must_use]
    pub fn with_ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Sets [`Config::ping_timeout`].
    #[must_use]
    pub fn with_ping_timeout(mut self, timeout: Duration) -> Self {
        self.ping_timeout = timeout;
        self
    }
}

/// [`Config`] as a session keeps it: the same limits in a third of the bytes (durations in
/// milliseconds), because every connection holds one and idle memory per connection counts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    pub(crate) max_session_receive_window: u64,
    pub(crate) max_streams: usize,
    pub(crate) max_stream_window: u32,
    pub(crate) max_stream_send_buffer: u32,
    pub(crate) max_frame_payload: u32,
    /// 0: no pings.
    ping_interval_ms: u32,
    ping_timeout_ms: u32,
}

/// A duration in whole milliseconds, rounded up, saturating at `u32::MAX` (about 49 days).
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u32::MAX)
}

impl Tuning {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            max_session_receive_window: config.max_session_receive_window,
            max_streams: config.max_streams,
            max_stream_window: config.max_stream_window,
            max_stream_send_buffer: config.max_stream_send_buffer,
            max_frame_payload: config.max_frame_payload,
            ping_interval_ms: config.ping_interval.map_or(0, |d| millis(d).max(1)),
            ping_timeout_ms: millis(config.ping_timeout),
        }
    }

    /// The keepalive interval, `None` when pings are off.
    pub(crate) fn ping_interval(&self) -> Option<Duration> {
        (self.ping_interval_ms > 0).then(|| Duration::from_millis(self.ping_interval_ms.into()))
    }

    /// How long a ping may stay unanswered.
    pub(crate) fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms.into())
    }

    /// The configuration this was made from (durations rounded up to milliseconds).
    pub(crate) fn to_config(self) -> Config {
        Config {
            max_streams: self.max_streams,
            max_stream_window: self.max_stream_window,
            max_session_receive_window: self.max_session_receive_window,
            max_stream_send_buffer: self.max_stream_send_buffer,
            max_frame_payload: self.max_frame_payload,
            ping_interval: self.ping_interval(),
            ping_timeout: self.ping_timeout(),
        }
    }
}
