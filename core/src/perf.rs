//! `/perf/1.0.0`: one benchmark run over one stream, as two sans-IO machines.
//!
//! The client ([`Client`]) writes an 8-byte big-endian count `N`, then its upload bytes, then
//! half-closes; the server ([`Server`]) reads the count, drains everything to EOF, and only then
//! writes `N` bytes and half-closes. There is no other framing: the upload and the download are
//! delimited by the half-closes. Payload bytes are zeros and are never checked. Spec:
//! `perf/perf.md` (digest `specs/perf.md`).
//!
//! Both machines stream their payload lazily in blocks of at most [`BLOCK_SIZE`] bytes written
//! into the caller's buffer: nothing is ever allocated for a claimed count (`N` comes from the
//! peer and may be `2^64 − 1`).
//!
//! # Driving a run
//!
//! Besides the usual `handle_input` / `poll_transmit` / `poll_event` / `poll_timeout` /
//! `handle_timeout`, each machine has two calls for the stream's half-closes:
//!
//! - `handle_eof(now)`: the remote half-closed (a read returned end of stream);
//! - `poll_finish(now) -> bool`: `true` once, when everything has been transmitted: half-close
//!   the stream now (yamux FIN).
//!
//! Call `poll_transmit` only when the bytes of the previous call have been written (each call
//! appends one block), and `poll_finish` when `poll_transmit` returned `None` and its bytes are
//! written: the instants of those calls are what the durations measure.
//!
//! ```
//! use bytes::BytesMut;
//! use plait_core::perf::{Client, Event, Server, ServerEvent};
//!
//! let now = plait_testkit::start();
//! let (mut client, mut server) = (Client::new(3, 5, now), Server::new(now));
//! let mut wire = BytesMut::new();
//! while client.poll_transmit(now, &mut wire).is_some() {}
//! assert_eq!(&wire[..], &[0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0]);
//! assert!(client.poll_finish(now)); // client → FIN
//! server.handle_input(now, &mut wire)?;
//! server.handle_eof(now)?;
//! while server.poll_transmit(now, &mut wire).is_some() {}
//! assert!(server.poll_finish(now)); // server → FIN
//! assert!(matches!(server.poll_event(), Some(ServerEvent::Finished(r)) if r.received == 3));
//! client.handle_input(now, &mut wire)?;
//! client.handle_eof(now)?;
//! assert!(matches!(client.poll_event(), Some(Event::Finished(r)) if r.downloaded == 5));
//! # Ok::<(), plait_core::perf::Error>(())
//! ```
//!
//! Limits follow rust-libp2p's `libp2p-perf` ([`RUN_TIMEOUT`],
//! [`MAX_PARALLEL_RUNS_PER_CONNECTION`], [`REPORT_INTERVAL`]) and go-libp2p's block size.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{BufMut, BytesMut};

use crate::time::Instant;

/// The protocol id negotiated with multistream-select.
pub const PROTOCOL: &str = "/perf/1.0.0";

/// Length of the request header (the big-endian `u64` count the server must send back), in
/// bytes.
pub const HEADER_LEN: usize = 8;

/// The largest block either machine appends per `poll_transmit`, in bytes: 64 KiB, go-libp2p's
/// perf block size (rust-libp2p writes 1 KiB). Big enough to amortise a call per block, small
/// enough that a run holds one block, never the amount it was asked for.
pub const BLOCK_SIZE: usize = 64 * 1024;

/// How long one inbound run may take in total before the [`Server`] gives up (rust-libp2p's
/// `RUN_TIMEOUT`, 5 minutes): a client that never half-closes, or never reads, cannot hold a
/// run forever.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The most runs a server serves at once on one connection (rust-libp2p's
/// `MAX_PARALLEL_RUNS_PER_CONNECTION`). Each run holds a stream, a task and buffers; past this,
/// further perf streams on that connection are reset. Enforced by whoever accepts the streams
/// (`plait-driver`'s perf service), not by these machines, which each see one stream.
pub const MAX_PARALLEL_RUNS_PER_CONNECTION: usize = 1000;

/// The shortest interval between two [`Event::Progress`] reports of a [`Client`] (rust-libp2p's
/// `REPORT_INTERVAL`; the test-plans runner prints one JSON line per report).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Something went wrong in a perf run. The stream should be reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server ended the stream before sending all the bytes the client asked for.
    #[error("server sent {received} of {expected} bytes, then ended the stream")]
    ShortDownload {
        /// Bytes the client asked for.
        expected: u64,
        /// Bytes that arrived.
        received: u64,
    },
    /// The server sent more bytes than the client asked for.
    #[error("server sent more than the {expected} bytes asked for")]
    TooMuchData {
        /// Bytes the client asked for.
        expected: u64,
    },
    /// The client ended the stream before the 8-byte request header was complete.
    #[error("stream ended after {received} of the 8 header bytes")]
    ShortHeader {
        /// Header bytes that arrived (0 to 7).
        received: usize,
    },
    /// The machine takes no more input: the run finished, failed, timed out, or its remote
    /// already ended the stream.
    #[error("perf run is closed")]
    Closed,
}

/// Bytes moved by a [`Client`] since its previous report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Length of the interval the counts cover (at least [`REPORT_INTERVAL`] when reported
    /// by the machine).
    pub interval: Duration,
    /// Upload bytes produced in the interval (the header not counted).
    pub uploaded: u64,
    /// Download bytes received in the interval.
    pub downloaded: u64,
}

/// The result of a complete client run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Bytes uploaded (the header not counted): the `upload` the client was created with.
    pub uploaded: u64,
    /// Bytes downloaded: the `download` the client was created with.
    pub downloaded: u64,
    /// From the first output call after the header to [`Client::poll_finish`].
    pub upload: Duration,
    /// From [`Client::poll_finish`] to [`Client::handle_eof`] (zero if the server's end of
    /// stream came first).
    pub download: Duration,
}

/// What a [`Client`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// At least [`REPORT_INTERVAL`] passed since the previous report (or the start).
    Progress(Progress),
    /// The run completed: exactly the requested bytes arrived, then the end of the stream.
    /// The machine is closed.
    Finished(Report),
}

/// The client side of a perf run: asks for `download` bytes, uploads `upload` bytes.
#[derive(Debug)]
pub struct Client {
    upload: u64,
    download: u64,
    header_sent: bool,
    /// Upload bytes produced so far.
    sent: u64,
    upload_start: Option<Instant>,
    write_closed_at: Option<Instant>,
    received: u64,
    eof_at: Option<Instant>,
    /// Finished or failed.
    closed: bool,
    last_report: Instant,
    interval_sent: u64,
    interval_received: u64,
    events: VecDeque<Event>,
}

impl Client {
    /// A run started at `now` that uploads `upload` bytes and asks for `download` bytes.
    pub fn new(upload: u64, download: u64, now: Instant) -> Self {
        Self {
            upload,
            download,
            header_sent: false,
            sent: 0,
            upload_start: None,
            write_closed_at: None,
            received: 0,
            eof_at: None,
            closed: false,
            last_report: now,
            interval_sent: 0,
            interval_received: 0,
            events: VecDeque::new(),
        }
    }

    /// Appends the next output to `out`: first the 8-byte header alone, then upload blocks
    /// of zeros, each at most [`BLOCK_SIZE`] bytes. Returns how many bytes were appended;
    /// `None` once the whole upload has been produced (call [`poll_finish`](Self::poll_finish)
    /// then) or the machine is closed.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut BytesMut) -> Option<usize> {
        if self.closed || self.write_closed_at.is_some() {
            return None;
        }
        if !self.header_sent {
            self.header_sent = true;
            out.put_u64(self.download);
            return Some(HEADER_LEN);
        }
        self.upload_start.get_or_insert(now);
        let left = self.upload.saturating_sub(self.sent);
        let n = usize::try_from(left).map_or(BLOCK_SIZE, |left| left.min(BLOCK_SIZE));
        if n == 0 {
            return None;
        }
        out.resize(out.len().saturating_add(n), 0);
        self.sent = self.sent.saturating_add(n as u64);
        self.interval_sent = self.interval_sent.saturating_add(n as u64);
        self.maybe_report(now);
        Some(n)
    }

    /// `true` exactly once, when the header and the whole upload have been produced: the
    /// driver half-closes the stream now. `now` ends the upload and starts the download.
    pub fn poll_finish(&mut self, now: Instant) -> bool {
        if self.closed
            || !self.header_sent
            || self.sent < self.upload
            || self.write_closed_at.is_some()
        {
            return false;
        }
        self.upload_start.get_or_insert(now);
        self.write_closed_at = Some(now);
        self.maybe_report(now);
        self.try_finish();
        true
    }

    /// Consumes downloaded bytes from `input` (all of it) and counts them. More bytes than
    /// the `download` asked for are [`Error::TooMuchData`]; input after the end of the stream
    /// or once the machine is closed is [`Error::Closed`]. Errors close the machine.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut) -> Result<(), Error> {
        if input.is_empty() {
            return Ok(());
        }
        if self.closed || self.eof_at.is_some() {
            self.closed = true;
            return Err(Error::Closed);
        }
        let len = input.len() as u64;
        let left = self.download.saturating_sub(self.received);
        input.clear();
        if len > left {
            self.closed = true;
            return Err(Error::TooMuchData {
                expected: self.download,
            });
        }
        self.received = self.received.saturating_add(len);
        self.interval_received = self.interval_received.saturating_add(len);
        self.maybe_report(now);
        Ok(())
    }

    /// The server ended the stream. Before all requested bytes arrived this is
    /// [`Error::ShortDownload`]; otherwise the run is [`Event::Finished`] (at once, or when
    /// [`poll_finish`](Self::poll_finish) comes if it has not yet).
    pub fn handle_eof(&mut self, now: Instant) -> Result<(), Error> {
        if self.closed || self.eof_at.is_some() {
            self.closed = true;
            return Err(Error::Closed);
        }
        if self.received < self.download {
            self.closed = true;
            return Err(Error::ShortDownload {
                expected: self.download,
                received: self.received,
            });
        }
        self.eof_at = Some(now);
        self.maybe_report(now);
        self.try_finish();
        Ok(())
    }

    /// Emits an [`Event::Progress`] if [`REPORT_INTERVAL`] has passed since the last one, even
    /// if no bytes moved. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.maybe_report(now);
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the next progress report is due; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.last_report.checked_add(REPORT_INTERVAL)
    }

    /// Whether the run is over: finished, or failed with an error.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Upload bytes produced so far (the header not counted).
    pub fn uploaded(&self) -> u64 {
        self.sent
    }

    /// Download bytes received so far.
    pub fn downloaded(&self) -> u64 {
        self.received
    }

    fn maybe_report(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let interval = now.saturating_duration_since(self.last_report);
        if interval < REPORT_INTERVAL {
            return;
        }
        self.events.push_back(Event::Progress(Progress {
            interval,
            uploaded: std::mem::take(&mut self.interval_sent),
            downloaded: std::mem::take(&mut self.interval_received),
        }));
        self.last_report = now;
    }

    fn try_finish(&mut self) {
        let (Some(closed_at), Some(eof_at)) = (self.write_closed_at, self.eof_at) else {
            return;
        };
        let start = self.upload_start.unwrap_or(closed_at);
        self.events.push_back(Event::Finished(Report {
            uploaded: self.sent,
            downloaded: self.received,
            upload: closed_at.saturating_duration_since(start),
            download: eof_at.saturating_duration_since(closed_at),
        }));
        self.closed = true;
    }
}

/// The result of a complete server run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerReport {
    /// Bytes the client uploaded after the header.
    pub received: u64,
    /// Bytes sent back: the count in the header.
    pub sent: u64,
    /// From [`Server::new`] to the client's end of stream.
    pub upload: Duration,
    /// From the client's end of stream to [`Server::poll_finish`].
    pub download: Duration,
}

/// What a [`Server`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// Every requested byte was produced; the driver half-closes the stream. The machine is
    /// closed.
    Finished(ServerReport),
    /// The run reached [`RUN_TIMEOUT`]; the machine is closed and the stream should be reset.
    TimedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    /// Reading the header, then draining the upload.
    Reading,
    /// The client half-closed; sending the requested bytes.
    Sending { eof_at: Instant },
    /// Finished, failed or timed out.
    Closed,
}

/// The server side of a perf run: reads the count, drains to EOF, then sends the count's
/// worth of zeros.
#[derive(Debug)]
pub struct Server {
    started: Instant,
    deadline: Option<Instant>,
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// Upload bytes after the header.
    received: u64,
    /// The count from the header (valid once the header is complete).
    to_send: u64,
    sent: u64,
    state: ServerState,
    events: VecDeque<ServerEvent>,
}

impl Server {
    /// A server for a stream accepted at `now`; the run must end by `now + RUN_TIMEOUT`.
    pub fn new(now: Instant) -> Self {
        Self {
            started: now,
            deadline: now.checked_add(RUN_TIMEOUT),
            header: [0; HEADER_LEN],
            header_len: 0,
            received: 0,
            to_send: 0,
            sent: 0,
            state: ServerState::Reading,
            events: VecDeque::new(),
        }
    }

    /// Consumes the client's bytes from `input` (all of it): the header however it is split,
    /// then upload bytes, counted and discarded. Input after the client's end of stream, or
    /// once the machine is closed, is [`Error::Closed`] (and closes it).
    pub fn handle_input(&mut self, _now: Instant, input: &mut BytesMut) -> Result<(), Error> {
        if input.is_empty() {
            return Ok(());
        }
        if self.state != ServerState::Reading {
            self.state = ServerState::Closed;
            return Err(Error::Closed);
        }
        if let Some(missing) = self
            .header
            .get_mut(self.header_len..)
            .filter(|m| !m.is_empty())
        {
            let n = missing.len().min(input.len());
            let head = input.split_to(n);
            if let Some(dst) = missing.get_mut(..n) {
                dst.copy_from_slice(&head);
            }
            self.header_len += n;
            if self.header_len == HEADER_LEN {
                self.to_send = u64::from_be_bytes(self.header);
            }
        }
        self.received = self.received.saturating_add(input.len() as u64);
        input.clear();
        Ok(())
    }

    /// The client half-closed. Before the 8-byte header was complete this is
    /// [`Error::ShortHeader`] (the driver resets the stream); otherwise sending starts.
    pub fn handle_eof(&mut self, now: Instant) -> Result<(), Error> {
        if self.state != ServerState::Reading {
            self.state = ServerState::Closed;
            return Err(Error::Closed);
        }
        if self.header_len < HEADER_LEN {
            self.state = ServerState::Closed;
            return Err(Error::ShortHeader {
                received: self.header_len,
            });
        }
        self.state = ServerState::Sending { eof_at: now };
        Ok(())
    }

    /// Appends the next block of zeros (at most [`BLOCK_SIZE`] bytes) once the client has
    /// half-closed; `None` before that, once the count has been sent, or once closed.
    pub fn poll_transmit(&mut self, _now: Instant, out: &mut BytesMut) -> Option<usize> {
        let ServerState::Sending { .. } = self.state else {
            return None;
        };
        let left = self.to_send.saturating_sub(self.sent);
        let n = usize::try_from(left).map_or(BLOCK_SIZE, |left| left.min(BLOCK_SIZE));
        if n == 0 {
            return None;
        }
        out.resize(out.len().saturating_add(n), 0);
        self.sent = self.sent.saturating_add(n as u64);
        Some(n)
    }

    /// `true` exactly once, when every requested byte has been produced: the driver
    /// half-closes the stream now. Emits [`ServerEvent::Finished`].
    pub fn poll_finish(&mut self, now: Instant) -> bool {
        let ServerState::Sending { eof_at } = self.state else {
            return false;
        };
        if self.sent < self.to_send {
            return false;
        }
        self.state = ServerState::Closed;
        self.events.push_back(ServerEvent::Finished(ServerReport {
            received: self.received,
            sent: self.sent,
            upload: eof_at.saturating_duration_since(self.started),
            download: now.saturating_duration_since(eof_at),
        }));
        true
    }

    /// Ends the run with [`ServerEvent::TimedOut`] once [`RUN_TIMEOUT`] has passed. Spurious
    /// calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == ServerState::Closed {
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            self.state = ServerState::Closed;
            self.events.push_back(ServerEvent::TimedOut);
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// The end of the run's time limit; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            ServerState::Closed => None,
            _ => self.deadline,
        }
    }

    /// Whether the run is over: finished, failed or timed out.
    pub fn is_closed(&self) -> bool {
        self.state == ServerState::Closed
    }

    /// The count the client asked for, once the 8-byte header is complete.
    pub fn requested(&self) -> Option<u64> {
        (self.header_len == HEADER_LEN).then_some(self.to_send)
    }

    /// Upload bytes received after the header so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Bytes produced for sending so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: Duration = Duration::from_secs(1);

    fn drain_client(c: &mut Client, now: Instant) -> BytesMut {
        let mut out = BytesMut::new();
        while c.poll_transmit(now, &mut out).is_some() {}
        out
    }

    fn drain_server(s: &mut Server, now: Instant) -> BytesMut {
        let mut out = BytesMut::new();
        while s.poll_transmit(now, &mut out).is_some() {}
        out
    }

    fn finished(c: &mut Client) -> Option<Report> {
        std::iter::from_fn(|| c.poll_event()).find_map(|e| match e {
            Event::Finished(r) => Some(r),
            Event::Progress(_) => None,
        })
    }

    #[test]
    fn spec_byte_example() {
        // specs/perf.md §1: the client asks for 5 bytes and uploads 3 zero bytes.
        let t0 = plait_testkit::start();
        let mut c = Client::new(3, 5, t0);
        let mut wire = BytesMut::new();
        assert_eq!(c.poll_transmit(t0, &mut wire), Some(8), "the header alone");
        assert_eq!(c.poll_transmit(t0, &mut wire), Some(3));
        assert_eq!(c.poll_transmit(t0, &mut wire), None);
        assert_eq!(&wire[..], &[0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0]);
        assert!(c.poll_finish(t0));
        assert!(!c.poll_finish(t0), "only once");

        let mut s = Server::new(t0);
        s.handle_input(t0, &mut wire).unwrap();
        assert!(wire.is_empty());
        assert_eq!(s.requested(), Some(5));
        assert_eq!(s.received(), 3);
        assert_eq!(s.poll_transmit(t0, &mut wire), None, "nothing before EOF");
        assert!(!s.poll_finish(t0));
        s.handle_eof(t0).unwrap();
        let mut back = drain_server(&mut s, t0);
        assert_eq!(&back[..], &[0, 0, 0, 0, 0]);
        assert!(s.poll_finish(t0));
        assert!(s.is_closed());
        assert!(matches!(
            s.poll_event(),
            Some(ServerEvent::Finished(ServerReport {
                received: 3,
                sent: 5,
                ..
            }))
        ));

        c.handle_input(t0, &mut back).unwrap();
        assert!(!c.is_closed());
        c.handle_eof(t0).unwrap();
        let r = finished(&mut c).unwrap();
        assert_eq!((r.uploaded, r.downloaded), (3, 5));
        assert!(c.is_closed());
    }

    #[test]
    fn blocks_are_at_most_64_kib() {
        let t0 = plait_testkit::start();
        let upload = 3 * BLOCK_SIZE as u64 + 7;
        let mut c = Client::new(upload, 0, t0);
        let mut out = BytesMut::new();
        assert_eq!(c.poll_transmit(t0, &mut out), Some(HEADER_LEN));
        let mut sizes = Vec::new();
        loop {
            out.clear();
            match c.poll_transmit(t0, &mut out) {
                Some(n) => {
                    assert_eq!(out.len(), n);
                    assert!(out.iter().all(|b| *b == 0));
                    sizes.push(n);
                }
                None => break,
            }
        }
        assert_eq!(sizes, [BLOCK_SIZE, BLOCK_SIZE, BLOCK_SIZE, 7]);
        assert_eq!(c.uploaded(), upload);
    }

    #[test]
    fn huge_counts_stream_lazily() {
        // 2^64 - 1 is legal on both sides; one block at a time, nothing allocated for it.
        let t0 = plait_testkit::start();
        let mut c = Client::new(u64::MAX, u64::MAX, t0);
        let mut out = BytesMut::new();
        c.poll_transmit(t0, &mut out);
        assert_eq!(&out[..], &[0xff; 8]);
        let mut s = Server::new(t0);
        s.handle_input(t0, &mut out).unwrap();
        assert_eq!(s.requested(), Some(u64::MAX));
        s.handle_eof(t0).unwrap();
        for _ in 0..3 {
            out.clear();
            assert_eq!(s.poll_transmit(t0, &mut out), Some(BLOCK_SIZE));
            out.clear();
            assert_eq!(c.poll_transmit(t0, &mut out), Some(BLOCK_SIZE));
        }
        assert!(!s.poll_finish(t0));
        assert!(!c.poll_finish(t0));
        assert_eq!(s.sent(), 3 * BLOCK_SIZE as u64);
    }

    #[test]
    fn zero_upload_and_download() {
        let t0 = plait_testkit::start();
        let mut c = Client::new(0, 0, t0);
        assert!(!c.poll_finish(t0), "the header comes first");
        let mut wire = drain_client(&mut c, t0);
        assert_eq!(&wire[..], &[0; 8]);
        assert!(c.poll_finish(t0));
        let mut s = Server::new(t0);
        s.handle_input(t0, &mut wire).unwrap();
        s.handle_eof(t0).unwrap();
        assert_eq!(s.poll_transmit(t0, &mut wire), None);
        assert!(s.poll_finish(t0));
        c.handle_eof(t0).unwrap();
        let r = finished(&mut c).unwrap();
        assert_eq!((r.uploaded, r.downloaded), (0, 0));
    }

    #[test]
    fn durations_come_from_the_instants_passed_in() {
        let t0 = plait_testkit::start();
        let ms = Duration::from_millis;
        let mut c = Client::new(10, 4, t0);
        c.poll_transmit(t0, &mut BytesMut::new()); // header at t0
        c.poll_transmit(t0 + ms(100), &mut BytesMut::new()); // upload starts at 100 ms
        assert_eq!(c.poll_transmit(t0 + ms(200), &mut BytesMut::new()), None);
        assert!(c.poll_finish(t0 + ms(350)));
        c.handle_input(t0 + ms(400), &mut BytesMut::from(&[0u8; 4][..]))
            .unwrap();
        c.handle_eof(t0 + ms(600)).unwrap();
        let r = finished(&mut c).unwrap();
        assert_eq!(r.upload, ms(250));
        assert_eq!(r.download, ms(250));

        let mut s = Server::new(t0);
        s.handle_input(t0, &mut BytesMut::from(&[0, 0, 0, 0, 0, 0, 0, 1][..]))
            .unwrap();
        s.handle_eof(t0 + ms(30)).unwrap();
        drain_server(&mut s, t0 + ms(40));
        assert!(s.poll_finish(t0 + ms(70)));
        let Some(ServerEvent::Finished(r)) = s.poll_event() else {
            panic!("no report");
        };
        assert_eq!((r.upload, r.download), (ms(30), ms(40)));
    }

    #[test]
    fn progress_at_most_every_second() {
        let t0 = plait_testkit::start();
        let ms = Duration::from_millis;
        let upload = 4 * BLOCK_SIZE as u64;
        let mut c = Client::new(upload, 100, t0);
        assert_eq!(c.poll_timeout(), Some(t0 + SEC));
        let mut out = BytesMut::new();
        c.poll_transmit(t0, &mut out);
        c.poll_transmit(t0 + ms(500), &mut out);
        assert_eq!(c.poll_event(), None, "not a second yet");
        c.poll_transmit(t0 + ms(1000), &mut out);
        assert_eq!(
            c.poll_event(),
            Some(Event::Progress(Progress {
                interval: SEC,
                uploaded: 2 * BLOCK_SIZE as u64,
                downloaded: 0,
            }))
        );
        assert_eq!(c.poll_timeout(), Some(t0 + 2 * SEC));
        c.poll_transmit(t0 + ms(1900), &mut out);
        c.handle_timeout(t0 + ms(1950)); // spurious
        assert_eq!(c.poll_event(), None);
        // A stall: the timer alone reports, with what moved since.
        c.handle_timeout(t0 + ms(2500));
        assert_eq!(
            c.poll_event(),
            Some(Event::Progress(Progress {
                interval: ms(1500),
                uploaded: BLOCK_SIZE as u64,
                downloaded: 0,
            }))
        );
        c.poll_transmit(t0 + ms(2600), &mut out);
        assert!(c.poll_finish(t0 + ms(2600)));
        c.handle_input(t0 + ms(3600), &mut BytesMut::from(&[0u8; 100][..]))
            .unwrap();
        assert_eq!(
            c.poll_event(),
            Some(Event::Progress(Progress {
                interval: ms(1100),
                uploaded: BLOCK_SIZE as u64,
                downloaded: 100,
            }))
        );
        c.handle_eof(t0 + ms(3600)).unwrap();
        assert!(matches!(c.poll_event(), Some(Event::Finished(_))));
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn client_short_download_is_an_error() {
        let t0 = plait_testkit::start();
        let mut c = Client::new(0, 10, t0);
        drain_client(&mut c, t0);
        assert!(c.poll_finish(t0));
        c.handle_input(t0, &mut BytesMut::from(&[0u8; 9][..]))
            .unwrap();
        assert_eq!(
            c.handle_eof(t0),
            Err(Error::ShortDownload {
                expected: 10,
                received: 9
            })
        );
        assert!(c.is_closed());
        assert_eq!(finished(&mut c), None);
        assert_eq!(c.handle_eof(t0), Err(Error::Closed));
    }

    #[test]
    fn client_too_much_data_is_an_error() {
        let t0 = plait_testkit::start();
        let mut c = Client::new(0, 10, t0);
        drain_client(&mut c, t0);
        assert!(c.poll_finish(t0));
        c.handle_input(t0, &mut BytesMut::from(&[0u8; 10][..]))
            .unwrap();
        assert_eq!(
            c.handle_input(t0, &mut BytesMut::from(&[0u8; 1][..])),
            Err(Error::TooMuchData { expected: 10 })
        );
        assert!(c.is_closed());
        assert_eq!(finished(&mut c), None);

        // Over the count within one chunk.
        let mut c = Client::new(0, 0, t0);
        assert_eq!(
            c.handle_input(t0, &mut BytesMut::from(&[0u8; 3][..])),
            Err(Error::TooMuchData { expected: 0 })
        );
    }

    #[test]
    fn client_input_after_eof_or_close_is_closed() {
        let t0 = plait_testkit::start();
        let mut c = Client::new(0, 0, t0);
        drain_client(&mut c, t0);
        assert!(c.poll_finish(t0));
        c.handle_eof(t0).unwrap();
        assert_eq!(
            c.handle_input(t0, &mut BytesMut::from(&[0u8][..])),
            Err(Error::Closed)
        );
        assert_eq!(c.poll_transmit(t0, &mut BytesMut::new()), None);
        assert!(!c.poll_finish(t0));
        // An empty read is not input.
        assert_eq!(c.handle_input(t0, &mut BytesMut::new()), Ok(()));
    }

    #[test]
    fn client_early_eof_with_full_count_finishes_at_close() {
        // A server that ends its side before ours: the count is what matters.
        let t0 = plait_testkit::start();
        let mut c = Client::new(5, 0, t0);
        c.poll_transmit(t0, &mut BytesMut::new());
        c.handle_eof(t0 + SEC).unwrap();
        assert_eq!(finished(&mut c), None);
        drain_client(&mut c, t0 + SEC);
        assert!(c.poll_finish(t0 + 2 * SEC));
        let r = finished(&mut c).unwrap();
        assert_eq!((r.uploaded, r.download), (5, Duration::ZERO));
    }

    #[test]
    fn server_short_header_is_an_error() {
        let t0 = plait_testkit::start();
        for n in 0..HEADER_LEN {
            let mut s = Server::new(t0);
            s.handle_input(t0, &mut BytesMut::from(&[1u8; 8][..n]))
                .unwrap();
            assert_eq!(s.requested(), None);
            assert_eq!(s.handle_eof(t0), Err(Error::ShortHeader { received: n }));
            assert!(s.is_closed());
            assert_eq!(s.poll_transmit(t0, &mut BytesMut::new()), None);
            assert!(!s.poll_finish(t0));
            assert_eq!(s.poll_event(), None);
        }
    }

    #[test]
    fn server_input_after_eof_is_closed() {
        let t0 = plait_testkit::start();
        let mut s = Server::new(t0);
        s.handle_input(t0, &mut BytesMut::from(&[0u8; 8][..]))
            .unwrap();
        s.handle_eof(t0).unwrap();
        assert_eq!(
            s.handle_input(t0, &mut BytesMut::from(&[0u8][..])),
            Err(Error::Closed)
        );
        assert!(s.is_closed());
        assert_eq!(s.handle_eof(t0), Err(Error::Closed));
    }

    #[test]
    fn server_times_out_after_five_minutes() {
        let t0 = plait_testkit::start();
        let mut s = Server::new(t0);
        assert_eq!(s.poll_timeout(), Some(t0 + RUN_TIMEOUT));
        s.handle_timeout(t0 + RUN_TIMEOUT - SEC);
        assert_eq!(s.poll_event(), None);
        s.handle_input(t0, &mut BytesMut::from(&[0, 0, 0, 0, 0, 0, 0, 9][..]))
            .unwrap();
        s.handle_eof(t0 + SEC).unwrap();
        // Still sending when the limit comes (a client that never reads).
        assert_eq!(s.poll_timeout(), Some(t0 + RUN_TIMEOUT));
        s.handle_timeout(t0 + RUN_TIMEOUT);
        assert_eq!(s.poll_event(), Some(ServerEvent::TimedOut));
        assert!(s.is_closed());
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.poll_transmit(t0, &mut BytesMut::new()), None);
        assert!(!s.poll_finish(t0));
        s.handle_timeout(t0 + 2 * RUN_TIMEOUT);
        assert_eq!(s.poll_event(), None, "only once");
    }

    /// What a run looked like from outside: every event and error of both machines, and the
    /// bytes that crossed each way.
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        client_events: Vec<Event>,
        server_events: Vec<ServerEvent>,
        client_result: Result<(), Error>,
        server_result: Result<(), Error>,
        upstream: usize,
        downstream: usize,
    }

    /// A client and a server paired in memory, each one's output fed to the other cut at
    /// `up_cuts` / `down_cuts` (no cuts: everything at once). `extra` bytes are appended to
    /// the server's output, `short` removed from its end (a misbehaving server).
    fn paired(
        upload: u64,
        download: u64,
        up_cuts: &[usize],
        down_cuts: &[usize],
        extra: usize,
        short: usize,
    ) -> Outcome {
        let t0 = plait_testkit::start();
        let mut c = Client::new(upload, download, t0);
        let mut s = Server::new(t0);
        let upstream = drain_client(&mut c, t0);
        assert!(c.poll_finish(t0));
        let mut server_result = Ok(());
        let mut input = BytesMut::new();
        for piece in plait_testkit::chunks(&upstream, up_cuts) {
            input.extend_from_slice(&piece);
            server_result = s.handle_input(t0, &mut input);
            assert!(input.is_empty());
        }
        let mut downstream = BytesMut::new();
        if server_result.is_ok() {
            server_result = s.handle_eof(t0);
            downstream = drain_server(&mut s, t0);
            s.poll_finish(t0);
        }
        downstream.extend_from_slice(&vec![0; extra]);
        downstream.truncate(downstream.len().saturating_sub(short));
        let mut client_result = Ok(());
        for piece in plait_testkit::chunks(&downstream, down_cuts) {
            input.extend_from_slice(&piece);
            client_result = c.handle_input(t0, &mut input);
            if client_result.is_err() {
                break;
            }
        }
        if client_result.is_ok() {
            client_result = c.handle_eof(t0);
        }
        Outcome {
            client_events: std::iter::from_fn(|| c.poll_event()).collect(),
            server_events: std::iter::from_fn(|| s.poll_event()).collect(),
            client_result,
            server_result,
            upstream: upstream.len(),
            downstream: downstream.len(),
        }
    }

    proptest! {
        #[test]
        fn pair_is_chunking_invariant(
            upload in 0u64..200_000,
            download in 0u64..200_000,
            up_cuts in proptest::collection::vec(any::<usize>(), 0..64),
            down_cuts in proptest::collection::vec(any::<usize>(), 0..64),
            misbehave in 0usize..3,
            by in 1usize..100,
        ) {
            let (extra, short) = match misbehave {
                0 => (0, 0),
                1 => (by, 0),
                _ => (0, by.min(download as usize)),
            };
            let whole = paired(upload, download, &[], &[], extra, short);
            let cut = paired(upload, download, &up_cuts, &down_cuts, extra, short);
            prop_assert_eq!(&cut, &whole);
            prop_assert_eq!(whole.upstream as u64, HEADER_LEN as u64 + upload);
            prop_assert_eq!(&whole.server_result, &Ok(()));
            let expected = match (extra, short) {
                (0, 0) => Ok(()),
                (_, 0) => Err(Error::TooMuchData { expected: download }),
                (_, s) if s > 0 => Err(Error::ShortDownload {
                    expected: download,
                    received: download - s as u64,
                }),
                _ => Ok(()),
            };
            prop_assert_eq!(&whole.client_result, &expected);
            let report = whole.client_events.iter().find_map(|e| match e {
                Event::Finished(r) => Some(*r),
                Event::Progress(_) => None,
            });
            prop_assert_eq!(report.is_some(), expected.is_ok());
            if let Some(r) = report {
                prop_assert_eq!((r.uploaded, r.downloaded), (upload, download));
            }
        }

        #[test]
        fn every_byte_split_is_the_same(
            upload in 0u64..64,
            download in 0u64..64,
        ) {
            // Down to one byte per call, both ways.
            let ones: Vec<usize> = (0..200).collect();
            let whole = paired(upload, download, &[], &[], 0, 0);
            prop_assert_eq!(paired(upload, download, &ones, &ones, 0, 0), whole);
        }

        #[test]
        fn server_reads_any_input_the_same_way(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
        ) {
            let t0 = plait_testkit::start();
            let run = |pieces: Vec<Vec<u8>>| {
                let mut s = Server::new(t0);
                let mut input = BytesMut::new();
                for p in pieces {
                    input.extend_from_slice(&p);
                    s.handle_input(t0, &mut input).unwrap();
                }
                (s.requested(), s.received(), s.handle_eof(t0))
            };
            let whole = run(vec![data.clone()]);
            prop_assert_eq!(run(plait_testkit::chunks(&data, &cuts)), whole.clone());
            match data.get(..HEADER_LEN) {
                Some(h) => {
                    let n = u64::from_be_bytes(h.try_into().unwrap());
                    prop_assert_eq!(whole, (Some(n), (data.len() - HEADER_LEN) as u64, Ok(())));
                }
                None => prop_assert_eq!(
                    whole,
                    (None, 0, Err(Error::ShortHeader { received: data.len() }))
                ),
            }
        }
    }
}
