//! `/ipfs/ping/1.0.0`: the payload of one ping stream, as two sans-IO machines.
//!
//! The stream carries raw 32-byte blocks, no framing. The dialer ([`Pinger`]) writes 32 random
//! bytes and expects the same 32 bytes back; the listener ([`Responder`]) echoes every 32-byte
//! block until the stream ends. Both reuse one stream for every ping (go and rust do).
//!
//! Defaults follow rust-libp2p for the pinger (one ping every 15 s, 20 s timeout) and
//! go-libp2p for the responder (close after 10 s without a ping, 30 s in total). Spec:
//! `ping/ping.md` (digest `specs/ping-identify.md`, part A).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::time::Instant;

/// The protocol id negotiated with multistream-select.
pub const PROTOCOL: &str = "/ipfs/ping/1.0.0";

/// Size of a ping payload, in bytes (go `PingSize`, rust `PING_SIZE`).
pub const PING_SIZE: usize = 32;

/// Inbound ping streams a listener should accept per peer (spec: "at most two"); enforced by
/// whoever accepts streams, not by these machines.
pub const MAX_INBOUND_STREAMS_PER_PEER: usize = 2;

/// Blocks a [`Responder`] holds for echoing before it stops reading, in 32-byte blocks.
///
/// A well-behaved pinger has one ping in flight; a few more absorb a pipelining peer. Past
/// that, unread input stays in the caller's buffer (backpressure) instead of growing ours.
pub const MAX_PENDING_ECHOES: usize = 4;

/// Something went wrong on a ping stream. The stream should be reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The echoed bytes differ from the payload sent (go "ping packet was incorrect").
    #[error("ping payload mismatch")]
    WrongEcho,
    /// The responder sent bytes while no ping was outstanding.
    #[error("unsolicited bytes from the responder")]
    UnexpectedData,
    /// The stream ended while a ping was outstanding.
    #[error("stream ended before the echo was complete")]
    UnexpectedEof,
    /// The machine is closed (after an error, a timeout or `close`).
    #[error("ping stream is closed")]
    Closed,
}

/// Settings of a [`Pinger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    interval: Duration,
    timeout: Duration,
}

impl Default for Config {
    /// 15 s interval, 20 s timeout (rust-libp2p defaults).
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(20),
        }
    }
}

impl Config {
    /// Time from a successful pong to the next ping (default 15 s).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Time a ping may take before it fails with [`Event::Timeout`] (default 20 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The interval between pings.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The per-ping timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// What a [`Pinger`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A ping was echoed correctly; `rtt` runs from the `poll_transmit` that produced it to the
    /// `handle_input` that completed the echo.
    Pong {
        /// Round-trip time.
        rtt: Duration,
    },
    /// No complete echo within the timeout. The machine is closed: a late echo could no longer
    /// be matched, so the stream should be reset and a new one opened for the next ping.
    Timeout,
}

#[derive(Debug, Clone)]
enum PingerState {
    /// Next ping due at `next`.
    Idle {
        next: Instant,
    },
    /// `payload` sent at `sent_at`; `received` bytes of the echo checked so far.
    Sent {
        payload: [u8; PING_SIZE],
        sent_at: Instant,
        deadline: Option<Instant>,
        received: usize,
    },
    Closed,
}

/// The dialer side of a ping stream: sends a 32-byte random payload every interval, checks
/// the echo and reports the round-trip time.
#[derive(Debug)]
pub struct Pinger {
    config: Config,
    rng: StdRng,
    state: PingerState,
    events: VecDeque<Event>,
}

impl Pinger {
    /// A pinger whose first ping is due at `now`; payloads come from an RNG seeded with `seed`.
    pub fn new(now: Instant, config: Config, seed: u64) -> Self {
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
            state: PingerState::Idle { next: now },
            events: VecDeque::new(),
        }
    }

    /// Consumes echoed bytes from the front of `input`.
    ///
    /// Any byte that differs from the payload is [`Error::WrongEcho`]; bytes while no ping is
    /// outstanding are [`Error::UnexpectedData`]. Both close the machine.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut) -> Result<(), Error> {
        while !input.is_empty() {
            let next_state = match &mut self.state {
                PingerState::Closed => return Err(Error::Closed),
                PingerState::Idle { .. } => {
                    self.state = PingerState::Closed;
                    return Err(Error::UnexpectedData);
                }
                PingerState::Sent {
                    payload,
                    sent_at,
                    received,
                    ..
                } => {
                    let n = input.len().min(PING_SIZE.saturating_sub(*received));
                    let expected = payload.get(*received..*received + n);
                    let got = input.split_to(n);
                    if expected != Some(&got[..]) {
                        self.state = PingerState::Closed;
                        return Err(Error::WrongEcho);
                    }
                    *received += n;
                    if *received < PING_SIZE {
                        continue;
                    }
                    let rtt = now.saturating_duration_since(*sent_at);
                    self.events.push_back(Event::Pong { rtt });
                    match now.checked_add(self.config.interval) {
                        Some(next) => PingerState::Idle { next },
                        // An interval too large to represent: never ping again.
                        None => PingerState::Closed,
                    }
                }
            };
            self.state = next_state;
        }
        Ok(())
    }

    /// The remote closed its side of the stream. An outstanding ping is
    /// [`Error::UnexpectedEof`]; either way the machine is closed afterwards.
    pub fn handle_eof(&mut self) -> Result<(), Error> {
        let outstanding = matches!(self.state, PingerState::Sent { .. });
        self.state = PingerState::Closed;
        if outstanding {
            Err(Error::UnexpectedEof)
        } else {
            Ok(())
        }
    }

    /// Fails the outstanding ping with [`Event::Timeout`] if its deadline has passed.
    /// Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let PingerState::Sent {
            deadline: Some(deadline),
            ..
        } = self.state
        {
            if now >= deadline {
                self.state = PingerState::Closed;
                self.events.push_back(Event::Timeout);
            }
        }
    }

    /// Appends the next ping payload (32 bytes) to `out` when one is due at `now`.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut BytesMut) -> Option<usize> {
        let PingerState::Idle { next } = self.state else {
            return None;
        };
        if now < next {
            return None;
        }
        let mut payload = [0u8; PING_SIZE];
        self.rng.fill_bytes(&mut payload);
        out.extend_from_slice(&payload);
        self.state = PingerState::Sent {
            payload,
            sent_at: now,
            deadline: now.checked_add(self.config.timeout),
            received: 0,
        };
        Some(PING_SIZE)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the next ping is due, or when the outstanding one times out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            PingerState::Idle { next } => Some(next),
            PingerState::Sent { deadline, .. } => deadline,
            PingerState::Closed => None,
        }
    }

    /// Stops pinging; the driver should half-close the stream. An outstanding ping is dropped.
    pub fn close(&mut self) {
        self.state = PingerState::Closed;
    }

    /// Whether the machine is closed (after `close`, an error, a timeout or EOF).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, PingerState::Closed)
    }
}

/// Settings of a [`Responder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponderConfig {
    idle_timeout: Duration,
    max_duration: Duration,
}

impl Default for ResponderConfig {
    /// 10 s idle timeout, 30 s total (go-libp2p `pingTimeout`, `pingDuration`).
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(10),
            max_duration: Duration::from_secs(30),
        }
    }
}

impl ResponderConfig {
    /// Close the stream if no complete ping arrives for this long (default 10 s).
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Close the stream this long after it opened, however active (default 30 s).
    pub fn with_max_duration(mut self, max_duration: Duration) -> Self {
        self.max_duration = max_duration;
        self
    }
}

/// What a [`Responder`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponderEvent {
    /// No complete ping within the idle timeout; the machine is closed.
    IdleTimeout,
    /// The stream reached its maximum duration; the machine is closed.
    DurationExceeded,
}

/// The listener side of a ping stream: echoes each 32-byte block.
#[derive(Debug)]
pub struct Responder {
    idle_deadline: Option<Instant>,
    total_deadline: Option<Instant>,
    idle_timeout: Duration,
    /// Complete blocks waiting to be echoed, split from the input without copying.
    pending: VecDeque<BytesMut>,
    remote_finished: bool,
    closed: bool,
    events: VecDeque<ResponderEvent>,
}

impl Responder {
    /// A responder for a stream opened at `now`.
    pub fn new(now: Instant, config: ResponderConfig) -> Self {
        Self {
            idle_deadline: now.checked_add(config.idle_timeout),
            total_deadline: now.checked_add(config.max_duration),
            idle_timeout: config.idle_timeout,
            pending: VecDeque::new(),
            remote_finished: false,
            closed: false,
            events: VecDeque::new(),
        }
    }

    /// Takes complete 32-byte blocks from the front of `input` for echoing. A partial block
    /// stays in `input`; so do blocks beyond [`MAX_PENDING_ECHOES`] until `poll_transmit`
    /// drains the backlog.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut) -> Result<(), Error> {
        if self.closed || self.remote_finished {
            return if input.is_empty() {
                Ok(())
            } else {
                Err(Error::Closed)
            };
        }
        while input.len() >= PING_SIZE && self.pending.len() < MAX_PENDING_ECHOES {
            self.pending.push_back(input.split_to(PING_SIZE));
            self.idle_deadline = now.checked_add(self.idle_timeout);
        }
        Ok(())
    }

    /// The remote half-closed the stream: pending echoes are still sent, then the machine is
    /// closed (the driver closes the stream).
    pub fn handle_eof(&mut self) {
        self.remote_finished = true;
    }

    /// Closes the stream when the idle timeout or the maximum duration has passed. Spurious
    /// calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        let passed = |d: Option<Instant>| d.is_some_and(|d| now >= d);
        let event = if passed(self.total_deadline) {
            ResponderEvent::DurationExceeded
        } else if passed(self.idle_deadline) {
            ResponderEvent::IdleTimeout
        } else {
            return;
        };
        self.closed = true;
        self.pending.clear();
        self.events.push_back(event);
    }

    /// Appends every pending echo to `out`; returns how many bytes, `None` if nothing.
    pub fn poll_transmit(&mut self, _now: Instant, out: &mut BytesMut) -> Option<usize> {
        if self.closed || self.pending.is_empty() {
            return None;
        }
        let mut n = 0;
        for block in self.pending.drain(..) {
            n += block.len();
            out.extend_from_slice(&block);
        }
        Some(n)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ResponderEvent> {
        self.events.pop_front()
    }

    /// The earliest of the idle and total deadlines; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        match (self.idle_deadline, self.total_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Stops echoing; pending echoes are dropped.
    pub fn close(&mut self) {
        self.closed = true;
        self.pending.clear();
    }

    /// Whether the machine is done: closed, timed out, or the remote finished and every echo
    /// has been sent.
    pub fn is_closed(&self) -> bool {
        self.closed || (self.remote_finished && self.pending.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: Duration = Duration::from_secs(1);

    fn pong(p: &mut Pinger) -> Option<Event> {
        p.poll_event()
    }

    #[test]
    fn ping_echo_yields_rtt_then_waits_interval() {
        let t0 = plait_testkit::start();
        let mut p = Pinger::new(t0, Config::default(), 1);
        assert_eq!(p.poll_timeout(), Some(t0));
        let mut wire = BytesMut::new();
        assert_eq!(p.poll_transmit(t0, &mut wire), Some(32));
        assert_eq!(p.poll_transmit(t0, &mut wire), None, "one ping in flight");
        assert_eq!(p.poll_timeout(), Some(t0 + 20 * SEC));

        let mut r = Responder::new(t0, ResponderConfig::default());
        r.handle_input(t0, &mut wire).unwrap();
        assert!(wire.is_empty());
        let mut back = BytesMut::new();
        assert_eq!(r.poll_transmit(t0, &mut back), Some(32));

        let t1 = t0 + Duration::from_millis(42);
        p.handle_input(t1, &mut back).unwrap();
        assert_eq!(
            pong(&mut p),
            Some(Event::Pong {
                rtt: Duration::from_millis(42)
            })
        );
        assert_eq!(p.poll_timeout(), Some(t1 + 15 * SEC));
        assert_eq!(p.poll_transmit(t1 + 14 * SEC, &mut back), None);
        assert_eq!(p.poll_transmit(t1 + 15 * SEC, &mut back), Some(32));
        assert!(!p.is_closed());
    }

    #[test]
    fn payloads_are_seeded_and_random() {
        let t0 = plait_testkit::start();
        let out = |seed| {
            let mut p = Pinger::new(t0, Config::default(), seed);
            let mut b = BytesMut::new();
            p.poll_transmit(t0, &mut b);
            b
        };
        assert_eq!(out(5), out(5));
        assert_ne!(out(5), out(6));
        assert_ne!(out(5)[..], [0u8; 32]);
    }

    #[test]
    fn wrong_echo_is_an_error_and_closes() {
        let t0 = plait_testkit::start();
        let mut p = Pinger::new(t0, Config::default(), 1);
        let mut wire = BytesMut::new();
        p.poll_transmit(t0, &mut wire);
        wire[31] ^= 1;
        // The first 31 bytes are fine.
        let mut head = wire.split_to(31);
        p.handle_input(t0, &mut head).unwrap();
        assert_eq!(p.handle_input(t0, &mut wire), Err(Error::WrongEcho));
        assert!(p.is_closed());
        assert_eq!(p.poll_timeout(), None);
        assert_eq!(
            p.handle_input(t0, &mut BytesMut::from(&b"x"[..])),
            Err(Error::Closed)
        );
    }

    #[test]
    fn unsolicited_bytes_and_eof() {
        let t0 = plait_testkit::start();
        let mut p = Pinger::new(t0, Config::default(), 1);
        assert_eq!(
            p.handle_input(t0, &mut BytesMut::from(&b"x"[..])),
            Err(Error::UnexpectedData)
        );

        let mut p = Pinger::new(t0, Config::default(), 1);
        let mut wire = BytesMut::new();
        p.poll_transmit(t0, &mut wire);
        wire.extend_from_slice(b"extra");
        assert_eq!(p.handle_input(t0, &mut wire), Err(Error::UnexpectedData));
        assert!(matches!(p.poll_event(), Some(Event::Pong { .. })));

        let mut p = Pinger::new(t0, Config::default(), 1);
        p.poll_transmit(t0, &mut BytesMut::new());
        assert_eq!(p.handle_eof(), Err(Error::UnexpectedEof));
        let mut p = Pinger::new(t0, Config::default(), 1);
        assert_eq!(p.handle_eof(), Ok(()));
        assert!(p.is_closed());
    }

    #[test]
    fn timeout_fires_at_deadline_only() {
        let t0 = plait_testkit::start();
        let cfg = Config::default().with_timeout(5 * SEC);
        let mut p = Pinger::new(t0, cfg, 1);
        p.handle_timeout(t0 + 100 * SEC); // spurious: nothing outstanding
        assert_eq!(p.poll_event(), None);
        let mut wire = BytesMut::new();
        p.poll_transmit(t0, &mut wire);
        p.handle_timeout(t0 + 4 * SEC);
        assert_eq!(p.poll_event(), None);
        assert_eq!(p.poll_timeout(), Some(t0 + 5 * SEC));
        p.handle_timeout(t0 + 5 * SEC);
        assert_eq!(p.poll_event(), Some(Event::Timeout));
        assert!(p.is_closed());
        assert_eq!(p.handle_input(t0, &mut wire), Err(Error::Closed));
    }

    #[test]
    fn responder_limits_backlog_and_keeps_partial_blocks() {
        let t0 = plait_testkit::start();
        let mut r = Responder::new(t0, ResponderConfig::default());
        let data: Vec<u8> = (0..=255u8).cycle().take(32 * 6 + 5).collect();
        let mut input = BytesMut::from(&data[..]);
        r.handle_input(t0, &mut input).unwrap();
        assert_eq!(input.len(), 32 * 2 + 5);
        let mut out = BytesMut::new();
        assert_eq!(r.poll_transmit(t0, &mut out), Some(32 * 4));
        r.handle_input(t0, &mut input).unwrap();
        assert_eq!(input.len(), 5);
        assert_eq!(r.poll_transmit(t0, &mut out), Some(32 * 2));
        assert_eq!(out[..], data[..32 * 6]);
        assert_eq!(r.poll_transmit(t0, &mut out), None);
    }

    #[test]
    fn responder_timeouts() {
        let t0 = plait_testkit::start();
        let mut r = Responder::new(t0, ResponderConfig::default());
        assert_eq!(r.poll_timeout(), Some(t0 + 10 * SEC));
        // A ping at 8 s pushes the idle deadline to 18 s.
        r.handle_input(t0 + 8 * SEC, &mut BytesMut::from(&[0u8; 32][..]))
            .unwrap();
        assert_eq!(r.poll_timeout(), Some(t0 + 18 * SEC));
        r.handle_timeout(t0 + 10 * SEC);
        assert_eq!(r.poll_event(), None);
        r.handle_timeout(t0 + 18 * SEC);
        assert_eq!(r.poll_event(), Some(ResponderEvent::IdleTimeout));
        assert!(r.is_closed());

        let mut r = Responder::new(t0, ResponderConfig::default());
        for s in (5..30).step_by(5) {
            r.handle_input(t0 + s * SEC, &mut BytesMut::from(&[0u8; 32][..]))
                .unwrap();
        }
        assert_eq!(r.poll_timeout(), Some(t0 + 30 * SEC));
        r.handle_timeout(t0 + 30 * SEC);
        assert_eq!(r.poll_event(), Some(ResponderEvent::DurationExceeded));
        assert_eq!(r.poll_transmit(t0, &mut BytesMut::new()), None);
    }

    #[test]
    fn responder_finishes_after_eof() {
        let t0 = plait_testkit::start();
        let mut r = Responder::new(t0, ResponderConfig::default());
        r.handle_input(t0, &mut BytesMut::from(&[7u8; 32][..]))
            .unwrap();
        r.handle_eof();
        assert!(!r.is_closed());
        assert_eq!(r.poll_transmit(t0, &mut BytesMut::new()), Some(32));
        assert!(r.is_closed());
        assert_eq!(
            r.handle_input(t0, &mut BytesMut::from(&b"x"[..])),
            Err(Error::Closed)
        );
    }

    proptest! {
        #[test]
        fn responder_is_chunking_invariant(
            data in proptest::collection::vec(any::<u8>(), 0..400),
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
        ) {
            let t0 = plait_testkit::start();
            let mut r = Responder::new(t0, ResponderConfig::default());
            let mut input = BytesMut::new();
            let mut out = BytesMut::new();
            for c in plait_testkit::chunks(&data, &cuts) {
                input.extend_from_slice(&c);
                // Drive as a driver would: drain output, then offer the rest again.
                loop {
                    r.handle_input(t0, &mut input).unwrap();
                    if r.poll_transmit(t0, &mut out).is_none() { break; }
                }
            }
            let whole = data.len() / PING_SIZE * PING_SIZE;
            prop_assert_eq!(&out[..], &data[..whole]);
            prop_assert_eq!(&input[..], &data[whole..]);
        }

        #[test]
        fn pinger_is_chunking_invariant(
            seed in any::<u64>(),
            rounds in 1usize..4,
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
            flip in proptest::option::of(0usize..96),
        ) {
            let t0 = plait_testkit::start();
            let cfg = Config::default().with_interval(Duration::ZERO);
            let mut p = Pinger::new(t0, cfg, seed);
            // Reference: the payloads the same seed produces, echoed back.
            let mut reference = Pinger::new(t0, cfg, seed);
            let mut echo = BytesMut::new();
            for _ in 0..rounds {
                let mut one = BytesMut::new();
                reference.poll_transmit(t0, &mut one);
                let mut copy = one.clone();
                reference.handle_input(t0, &mut copy).unwrap();
                echo.extend_from_slice(&one);
            }
            let flip = flip.filter(|f| *f < echo.len());
            if let Some(f) = flip { echo[f] ^= 0x80; }
            let mut pongs = 0;
            let mut result = Ok(());
            // Each echo can only arrive after its ping was sent: chunk it per round.
            'rounds: for round in echo.chunks(PING_SIZE) {
                p.poll_transmit(t0, &mut BytesMut::new());
                let mut input = BytesMut::new();
                for c in plait_testkit::chunks(round, &cuts) {
                    input.extend_from_slice(&c);
                    result = p.handle_input(t0, &mut input);
                    while let Some(e) = p.poll_event() {
                        prop_assert!(matches!(e, Event::Pong { .. }), "unexpected event {:?}", e);
                        pongs += 1;
                    }
                    if result.is_err() { break 'rounds; }
                }
            }
            match flip {
                Some(f) => {
                    prop_assert_eq!(result, Err(Error::WrongEcho));
                    prop_assert_eq!(pongs, f / PING_SIZE);
                }
                None => {
                    prop_assert_eq!(result, Ok(()));
                    prop_assert_eq!(pongs, rounds);
                }
            }
        }
    }
}
