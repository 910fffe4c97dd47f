//! Runtime-independent pieces of the runtime conformance suite (`tests/tests/conformance.rs`):
//! a [`Runtime`] wrapper that counts live tasks, timeouts that turn hangs into failures, and
//! the stream handlers the suite serves.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use plait_driver::{BoxFuture, Host, Runtime, Stream};
use sha2::{Digest, Sha256};

/// Reads until end of stream, replies with the SHA-256 of what it read (32 bytes), closes.
pub const SHA_SINK: &str = "/test/sha-sink/1.0.0";
/// Reads until end of stream, then replies with the byte count (8 bytes, big endian) and
/// closes: the remote half-closed and still reads.
pub const COUNT_AFTER_EOF: &str = "/test/count-after-eof/1.0.0";
/// Writes [`GREETING`] and half-closes at once, then reads until end of stream and records
/// what it read in [`Probe`]: we half-closed and still read.
pub const GREET_THEN_READ: &str = "/test/greet-then-read/1.0.0";
/// Reads one line, then resets the stream.
pub const RESET_AFTER_LINE: &str = "/test/reset-after-line/1.0.0";
/// Reads one line, then keeps reading and writing until that fails; records the errors.
pub const EXPECT_RESET: &str = "/test/expect-reset/1.0.0";
/// Writes an endless stream of bytes until writing fails; records the error.
pub const SOURCE: &str = "/test/source/1.0.0";
/// Reads until the stream ends or fails; records how.
pub const SINK: &str = "/test/sink/1.0.0";
/// What [`GREET_THEN_READ`] writes.
pub const GREETING: &[u8] = b"hello from the listener\n";

/// How long one network step may take before the test fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(20);

/// A [`Runtime`] that counts the tasks it spawned that are still alive, so a test can assert
/// that a closed host leaves no task behind.
#[derive(Clone)]
pub struct Counted<R> {
    inner: R,
    live: Arc<AtomicUsize>,
}

impl<R> Counted<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            live: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Tasks spawned through this runtime (or its clones) that have not ended.
    pub fn live_tasks(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

/// Decrements the live count when a task ends (completes or is dropped).
struct TaskGuard(Arc<AtomicUsize>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<R: Runtime> Runtime for Counted<R> {
    type Tcp = R::Tcp;
    type Listener = R::Listener;

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.live.fetch_add(1, Ordering::SeqCst);
        let guard = TaskGuard(self.live.clone());
        self.inner.spawn(Box::pin(async move {
            let _guard = guard;
            task.await;
        }));
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        self.inner.sleep_until(deadline)
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Self::Tcp>> {
        self.inner.connect(addr)
    }

    fn bind(
        &self,
        addr: SocketAddr,
    ) -> BoxFuture<'static, io::Result<(Self::Listener, SocketAddr)>> {
        self.inner.bind(addr)
    }

    fn accept(
        &self,
        listener: Arc<Self::Listener>,
    ) -> BoxFuture<'static, io::Result<(Self::Tcp, SocketAddr)>> {
        self.inner.accept(listener)
    }

    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        self.inner.resolve(host, port)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }
}

/// `fut`, or `None` once `limit` has passed. Uses `async-io`'s timer, which works under
/// every executor.
pub async fn timeout<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        async_io::Timer::after(limit).await;
        None
    })
    .await
}

/// `fut`, bounded by [`STEP`]; panics naming `what` when it takes longer.
pub async fn step<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match timeout(STEP, fut).await {
        Some(v) => v,
        None => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// Polls `cond` every few milliseconds until it holds; panics after `limit` with `what` and
/// the last value `describe` gives.
pub async fn eventually(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= deadline {
            panic!("{what}: not true after {limit:?} ({})", describe());
        }
        async_io::Timer::after(Duration::from_millis(5)).await;
    }
}

/// What a handler observed, for the test to check after the fact.
#[derive(Clone, Default)]
pub struct Probe(Arc<Mutex<Vec<String>>>);

impl Probe {
    /// Records one observation.
    pub fn record(&self, what: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what.into());
    }

    /// Everything recorded so far.
    pub fn get(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The error kind of a result, or `"ok(n)"`, for probes.
pub fn outcome<T: std::fmt::Debug>(r: &io::Result<T>) -> String {
    match r {
        Ok(v) => format!("ok({v:?})"),
        Err(e) => format!("{:?}", e.kind()),
    }
}

/// Deterministic filler: `len` bytes from a xorshift generator seeded with `seed`.
pub fn fill(seed: u64, buf: &mut [u8]) {
    let mut x = seed | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

/// SHA-256 of `len` bytes of [`fill`]`(seed)`, produced in `chunk`-sized pieces, also
/// written to `stream` when given.
pub async fn send_pattern<R: Runtime>(
    stream: &mut Stream<R>,
    seed: u64,
    len: usize,
) -> io::Result<[u8; 32]> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0;
    let mut n = 0u64;
    while sent < len {
        let k = buf.len().min(len - sent);
        fill(seed.wrapping_add(n), &mut buf[..k]);
        hash.update(&buf[..k]);
        stream.write_all(&buf[..k]).await?;
        sent += k;
        n += 1;
    }
    Ok(hash.finalize().into())
}

async fn read_to_eof<R: Runtime>(
    stream: &mut Stream<R>,
    mut f: impl FnMut(&[u8]),
) -> io::Result<usize> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
        f(&buf[..n]);
    }
}

async fn read_line<R: Runtime>(stream: &mut Stream<R>) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        if stream.read(&mut byte).await? == 0 {
            break;
        }
        line.push(byte[0]);
    }
    Ok(line)
}

/// Registers `protocol` on `host`, running `body` as a task on `rt` for every inbound stream.
pub fn serve<R, F, Fut>(host: &Host<R>, rt: &R, protocol: &str, body: F)
where
    R: Runtime,
    F: Fn(Stream<R>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let spawner = rt.clone();
    host.set_stream_handler(protocol, move |stream| {
        spawner.spawn(Box::pin(body(stream)))
    })
    .expect("valid protocol id");
}

/// Serves every test protocol on `host`; handlers report into `probe`.
pub fn serve_all<R: Runtime>(host: &Host<R>, rt: &R, probe: &Probe) {
    plait_driver::demo::serve_echo(host, rt).expect("echo handler");
    serve(host, rt, SHA_SINK, |mut s| async move {
        let mut hash = Sha256::new();
        if read_to_eof(&mut s, |b| hash.update(b)).await.is_ok() {
            let digest: [u8; 32] = hash.finalize().into();
            let _ = s.write_all(&digest).await;
            let _ = s.close().await;
        }
    });
    serve(host, rt, COUNT_AFTER_EOF, |mut s| async move {
        if let Ok(n) = read_to_eof(&mut s, |_| ()).await {
            let _ = s.write_all(&(n as u64).to_be_bytes()).await;
            let _ = s.close().await;
        }
    });
    let p = probe.clone();
    serve(host, rt, GREET_THEN_READ, move |mut s| {
        let p = p.clone();
        async move {
            let greeted = s.write_all(GREETING).await;
            let closed = s.close().await;
            let mut got = Vec::new();
            let read = read_to_eof(&mut s, |b| got.extend_from_slice(b)).await;
            p.record(format!(
                "greet {} close {} read {} {:?}",
                outcome(&greeted),
                outcome(&closed),
                outcome(&read),
                String::from_utf8_lossy(&got)
            ));
        }
    });
    serve(host, rt, RESET_AFTER_LINE, |mut s| async move {
        if read_line(&mut s).await.is_ok() {
            s.reset();
        }
    });
    let p = probe.clone();
    serve(host, rt, EXPECT_RESET, move |mut s| {
        let p = p.clone();
        async move {
            let line = read_line(&mut s).await;
            p.record(format!("line {}", outcome(&line.map(|l| l.len()))));
            let mut buf = [0u8; 64];
            let read = s.read(&mut buf).await;
            let mut write = Ok(());
            // The first writes may be buffered; keep writing until the reset shows.
            for _ in 0..1000 {
                write = s.write_all(b"x").await;
                if write.is_err() {
                    break;
                }
                async_io::Timer::after(Duration::from_millis(1)).await;
            }
            p.record(format!("read {} write {}", outcome(&read), outcome(&write)));
        }
    });
    let p = probe.clone();
    serve(host, rt, SOURCE, move |mut s| {
        let p = p.clone();
        async move {
            let buf = vec![7u8; 16 * 1024];
            let mut sent = 0usize;
            let err = loop {
                match s.write_all(&buf).await {
                    Ok(()) => sent += buf.len(),
                    Err(e) => break e,
                }
            };
            p.record(format!("source ended {:?} after {sent}", err.kind()));
        }
    });
    let p = probe.clone();
    serve(host, rt, SINK, move |mut s| {
        let p = p.clone();
        async move {
            let r = read_to_eof(&mut s, |_| ()).await;
            p.record(format!("sink ended {}", outcome(&r.map(|_| ()))));
        }
    });
}

/// Reads one line written by the echo handler (go-style: it replies and closes).
pub async fn echo_once<R: Runtime>(stream: &mut Stream<R>, line: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(line).await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    Ok(reply)
}

/// Reads until end of stream, returning everything read.
pub async fn read_all<R: Runtime>(stream: &mut Stream<R>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    read_to_eof(stream, |b| out.extend_from_slice(b)).await?;
    Ok(out)
}
