//! `/perf/1.0.0` on a [`Host`]: the core's [`perf`](plait_core::perf) machines driven over
//! [`Stream`]s.
//!
//! - [`serve`] registers the server. Perf is **off by default** (the spec says it should not
//!   be enabled on public nodes): call [`serve`] yourself, or set
//!   [`HostConfig::perf`](crate::HostConfig::perf).
//! - [`run`] (and [`run_with_progress`]) is the client: one run over a new stream.
//!
//! A server run that fails (a stream that ends before the 8-byte header, an I/O error, the
//! 5-minute [`RUN_TIMEOUT`]) resets its stream. At most [`MAX_PARALLEL_RUNS_PER_CONNECTION`]
//! runs are served at once per connection; further perf streams on that connection are reset
//! at once.

pub mod runner;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use plait_core::identity::PeerId;
use plait_core::perf::{Client, Event, Server, ServerEvent, ServerReport, BLOCK_SIZE};
use plait_core::swarm::ConnectionId;

pub use plait_core::perf::{
    Progress, Report as PerfReport, MAX_PARALLEL_RUNS_PER_CONNECTION, PROTOCOL, RUN_TIMEOUT,
};

use crate::{BoxFuture, Error, Host, Runtime, Stream};

/// Bytes a server run reads per call while draining the upload. Smaller than the client's
/// buffer because up to [`MAX_PARALLEL_RUNS_PER_CONNECTION`] runs per connection each hold
/// one while they wait for input (the stream hands out up to 64 KiB per lock anyway).
const SERVER_READ_BUFFER: usize = 16 * 1024;

/// Bytes the client reads per call while downloading.
const CLIENT_READ_BUFFER: usize = 64 * 1024;

/// Why a perf run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The peer broke the protocol (short download, too many bytes, short header).
    #[error(transparent)]
    Protocol(#[from] plait_core::perf::Error),
    /// Reading or writing the stream failed; a reset by the peer is
    /// [`io::ErrorKind::ConnectionReset`].
    #[error("stream {kind}: {message}")]
    Io {
        /// The kind of error.
        kind: io::ErrorKind,
        /// What the stream said.
        message: String,
    },
    /// The server run reached [`RUN_TIMEOUT`].
    #[error("perf run timed out")]
    TimedOut,
}

impl From<io::Error> for RunError {
    fn from(e: io::Error) -> Self {
        Self::Io {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// Perf runs in progress per connection, shared by a server's handler and its run tasks.
type Runs = Arc<Mutex<HashMap<ConnectionId, usize>>>;

/// One of a connection's [`MAX_PARALLEL_RUNS_PER_CONNECTION`] run slots, given back on drop.
struct RunSlot {
    runs: Runs,
    connection: ConnectionId,
}

impl RunSlot {
    /// A slot on `connection`, if it has one free.
    fn take(runs: &Runs, connection: ConnectionId) -> Option<Self> {
        let mut map = runs.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(connection).or_insert(0);
        if *count >= MAX_PARALLEL_RUNS_PER_CONNECTION {
            return None;
        }
        *count += 1;
        Some(Self {
            runs: runs.clone(),
            connection,
        })
    }
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        let mut map = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&self.connection) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.connection);
            }
        }
    }
}

/// Serves `/perf/1.0.0` on `host`: each inbound stream runs the core [`Server`] on a task of
/// `runtime`. Like every handler it applies to connections opened after the call (a
/// connection keeps the protocols it started with); it replaces an earlier perf handler.
pub fn serve<R: Runtime>(host: &Host<R>, runtime: &R) -> Result<(), Error> {
    let runs: Runs = Arc::default();
    let rt = runtime.clone();
    host.set_stream_handler(PROTOCOL, move |stream| {
        let Some(slot) = RunSlot::take(&runs, stream.connection()) else {
            tracing::debug!(peer = %stream.peer(), "perf: too many parallel runs, resetting");
            stream.reset();
            return;
        };
        let task_rt = rt.clone();
        rt.spawn(Box::pin(async move {
            let _slot = slot;
            serve_stream(task_rt, stream).await;
        }));
    })
}

/// One server run; resets the stream if it fails.
async fn serve_stream<R: Runtime>(rt: R, mut stream: Stream<R>) {
    let peer = stream.peer();
    match drive_server(&rt, &mut stream).await {
        Ok(r) => tracing::debug!(
            %peer, received = r.received, sent = r.sent, upload = ?r.upload,
            download = ?r.download, "perf run served"
        ),
        Err(e) => {
            tracing::debug!(%peer, %e, "perf run failed, resetting");
            stream.reset();
        }
    }
}

async fn drive_server<R: Runtime>(
    rt: &R,
    stream: &mut Stream<R>,
) -> Result<ServerReport, RunError> {
    let mut server = Server::new(rt.now());
    let mut timer = Timer::new(rt.clone());
    let mut input = BytesMut::new();
    loop {
        timer.set(server.poll_timeout());
        input.resize(SERVER_READ_BUFFER, 0);
        match timer.race(stream.read(&mut input[..])).await {
            Some(Ok(0)) => {
                server.handle_eof(rt.now())?;
                break;
            }
            Some(Ok(n)) => {
                input.truncate(n);
                server.handle_input(rt.now(), &mut input)?;
            }
            Some(Err(e)) => return Err(e.into()),
            None => {
                server.handle_timeout(rt.now());
                server_events(&mut server)?;
            }
        }
    }
    drop(input);
    let mut out = BytesMut::with_capacity(BLOCK_SIZE);
    loop {
        out.clear();
        if server.poll_transmit(rt.now(), &mut out).is_none() {
            break;
        }
        let mut written = 0;
        while let Some(rest) = out.get(written..).filter(|r| !r.is_empty()) {
            timer.set(server.poll_timeout());
            match timer.race(stream.write(rest)).await {
                Some(Ok(0)) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Some(Ok(n)) => written += n,
                Some(Err(e)) => return Err(e.into()),
                None => {
                    server.handle_timeout(rt.now());
                    server_events(&mut server)?;
                }
            }
        }
    }
    if !server.poll_finish(rt.now()) {
        return Err(plait_core::perf::Error::Closed.into());
    }
    stream.close().await?;
    match server_events(&mut server)? {
        Some(report) => Ok(report),
        None => Err(plait_core::perf::Error::Closed.into()),
    }
}

/// Drains a server's events: its report, or [`RunError::TimedOut`].
fn server_events(server: &mut Server) -> Result<Option<ServerReport>, RunError> {
    let mut report = None;
    while let Some(event) = server.poll_event() {
        match event {
            ServerEvent::Finished(r) => report = Some(r),
            ServerEvent::TimedOut => return Err(RunError::TimedOut),
            _ => {}
        }
    }
    Ok(report)
}

/// Runs one perf client over a new `/perf/1.0.0` stream to `peer` (dialing a known address
/// if not connected): uploads `upload` bytes, then downloads `download` bytes.
pub async fn run<R: Runtime>(
    host: &Host<R>,
    peer: PeerId,
    upload: u64,
    download: u64,
) -> Result<PerfReport, Error> {
    run_with_progress(host, peer, upload, download, |_| {}).await
}

/// Like [`run`], calling `on_progress` with the bytes moved about every second
/// ([`REPORT_INTERVAL`](plait_core::perf::REPORT_INTERVAL)), also while nothing moves.
pub async fn run_with_progress<R: Runtime>(
    host: &Host<R>,
    peer: PeerId,
    upload: u64,
    download: u64,
    mut on_progress: impl FnMut(Progress),
) -> Result<PerfReport, Error> {
    let mut stream = host.new_stream(peer, [PROTOCOL]).await?;
    match drive_client(&mut stream, upload, download, &mut on_progress).await {
        Ok(report) => Ok(report),
        Err(e) => {
            stream.reset();
            Err(Error::Perf(e))
        }
    }
}

async fn drive_client<R: Runtime>(
    stream: &mut Stream<R>,
    upload: u64,
    download: u64,
    on_progress: &mut impl FnMut(Progress),
) -> Result<PerfReport, RunError> {
    let rt = stream.runtime();
    let mut client = Client::new(upload, download, rt.now());
    let mut timer = Timer::new(rt.clone());
    let mut out = BytesMut::with_capacity(BLOCK_SIZE);
    loop {
        out.clear();
        if client.poll_transmit(rt.now(), &mut out).is_none() {
            break;
        }
        client_events(&mut client, on_progress);
        let mut written = 0;
        while let Some(rest) = out.get(written..).filter(|r| !r.is_empty()) {
            timer.set(client.poll_timeout());
            match timer.race(stream.write(rest)).await {
                Some(Ok(0)) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                Some(Ok(n)) => written += n,
                Some(Err(e)) => return Err(e.into()),
                None => {
                    client.handle_timeout(rt.now());
                    client_events(&mut client, on_progress);
                }
            }
        }
    }
    if !client.poll_finish(rt.now()) {
        return Err(plait_core::perf::Error::Closed.into());
    }
    stream.close().await?;
    let mut input = BytesMut::new();
    loop {
        if let Some(report) = client_events(&mut client, on_progress) {
            return Ok(report);
        }
        timer.set(client.poll_timeout());
        input.resize(CLIENT_READ_BUFFER, 0);
        match timer.race(stream.read(&mut input[..])).await {
            Some(Ok(0)) => client.handle_eof(rt.now())?,
            Some(Ok(n)) => {
                input.truncate(n);
                client.handle_input(rt.now(), &mut input)?;
            }
            Some(Err(e)) => return Err(e.into()),
            None => client.handle_timeout(rt.now()),
        }
    }
}

/// Hands a client's progress to `on_progress`; returns its report once finished.
fn client_events(
    client: &mut Client,
    on_progress: &mut impl FnMut(Progress),
) -> Option<PerfReport> {
    let mut report = None;
    while let Some(event) = client.poll_event() {
        match event {
            Event::Progress(p) => on_progress(p),
            Event::Finished(r) => report = Some(r),
            _ => {}
        }
    }
    report
}

/// A machine's next deadline as a runtime timer, kept across I/O calls while the deadline
/// stays the same.
struct Timer<R: Runtime> {
    rt: R,
    at: Option<Instant>,
    sleep: Option<BoxFuture<'static, ()>>,
}

impl<R: Runtime> Timer<R> {
    fn new(rt: R) -> Self {
        Self {
            rt,
            at: None,
            sleep: None,
        }
    }

    /// Arms the timer for `at` (`None`: no deadline).
    fn set(&mut self, at: Option<Instant>) {
        if at != self.at || self.sleep.is_none() {
            self.at = at;
            self.sleep = at.map(|at| self.rt.sleep_until(at));
        }
    }

    /// `io`'s output, or `None` if the deadline passed first (the timer is then disarmed;
    /// [`set`](Self::set) rearms it). Dropping `io` must be harmless: `Stream`'s single
    /// reads and writes are.
    async fn race<T>(&mut self, io: impl Future<Output = T>) -> Option<T> {
        let Some(sleep) = self.sleep.as_mut() else {
            return Some(io.await);
        };
        let result = futures_lite::future::or(async { Some(io.await) }, async {
            sleep.await;
            None
        })
        .await;
        if result.is_none() {
            self.sleep = None;
        }
        result
    }
}
