//! Runtime conformance: one suite, written once over [`TestRuntime`], run on every runtime
//! (`tokio`, `smol`, `async_std` modules: both hosts on that runtime) and across runtimes
//! (`tokio_to_smol`: tokio listener ↔ smol dialer; `smol_to_async_std`;
//! `async_std_to_tokio`). In the cross modules the dialer's test body runs on the dialer's
//! executor and the listener's handlers on the listener's.
//!
//! Every network await is bounded ([`step`], [`eventually`]), so a bug fails a test instead
//! of hanging it. Every test ends with [`Pair::shutdown`]: after `close()` both hosts report
//! zero connections and zero streams, and every task either host (or its handlers) spawned
//! has ended — tasks are counted by the [`Counted`] runtime wrapper.
//!
//! `large_transfer` sends 256 MiB (override with `PLAIT_CONFORMANCE_BYTES`) and checks the
//! SHA-256 the remote echoes back.

use std::future::Future;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use plait_core::identity::PeerId;
use plait_core::multiaddr::Multiaddr;
use plait_core::swarm::Limits;
use plait_core::upgrade::Security;
use plait_driver::demo::ECHO;
use plait_driver::{Host, HostConfig, Runtime, Stream};
use plait_tests::conformance::*;

/// A runtime the suite can run on: a [`Runtime`] plus a way to block on a future.
trait TestRuntime: Runtime {
    /// A handle to the runtime.
    fn handle() -> Self;
    /// Runs `fut` to completion on this runtime's executor.
    fn block_on<T>(fut: impl Future<Output = T>) -> T;
}

fn tokio_runtime() -> &'static ::tokio::runtime::Runtime {
    static RT: OnceLock<::tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        ::tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

impl TestRuntime for plait_tokio::Tokio {
    fn handle() -> Self {
        Self::new(tokio_runtime().handle().clone())
    }
    fn block_on<T>(fut: impl Future<Output = T>) -> T {
        tokio_runtime().block_on(fut)
    }
}

impl TestRuntime for plait_smol::Smol {
    fn handle() -> Self {
        Self
    }
    fn block_on<T>(fut: impl Future<Output = T>) -> T {
        ::smol::block_on(fut)
    }
}

impl TestRuntime for plait_async_std::AsyncStd {
    fn handle() -> Self {
        Self
    }
    fn block_on<T>(fut: impl Future<Output = T>) -> T {
        ::async_std::task::block_on(fut)
    }
}

/// Runs a test body on the dialer's runtime, bounded as a whole.
fn run<D: TestRuntime>(body: impl Future<Output = ()>) {
    D::block_on(async {
        if timeout(Duration::from_secs(240), body).await.is_none() {
            panic!("test did not finish in 240 s");
        }
    });
}

const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";

fn config(security: Security) -> HostConfig {
    HostConfig::random().with_security(security)
}

fn with_limits(security: Security, f: impl FnOnce(&mut Limits)) -> HostConfig {
    let mut c = config(security);
    f(&mut c.limits);
    c
}

type LHost<L> = Host<Counted<L>>;
type DHost<D> = Host<Counted<D>>;

/// A listener host on `L` serving every test protocol, and a dialer host on `D` that knows
/// its address.
struct Pair<L: TestRuntime, D: TestRuntime> {
    lrt: Counted<L>,
    drt: Counted<D>,
    listener: LHost<L>,
    dialer: DHost<D>,
    addr: Multiaddr,
    peer: PeerId,
    probe: Probe,
}

async fn listener_host<L: TestRuntime>(
    cfg: HostConfig,
    probe: &Probe,
) -> (Counted<L>, LHost<L>, Multiaddr) {
    let rt = Counted::new(L::handle());
    let host = Host::new(rt.clone(), cfg).expect("listener host");
    serve_all(&host, &rt, probe);
    let addr = step("listen", host.listen(LOOPBACK.parse().unwrap()))
        .await
        .expect("listen");
    (rt, host, addr)
}

impl<L: TestRuntime, D: TestRuntime> Pair<L, D> {
    async fn new(lcfg: HostConfig, dcfg: HostConfig) -> Self {
        let probe = Probe::default();
        let (lrt, listener, addr) = listener_host::<L>(lcfg, &probe).await;
        let drt = Counted::new(D::handle());
        let dialer = Host::new(drt.clone(), dcfg).expect("dialer host");
        let peer = listener.peer_id();
        dialer.add_addresses(peer, [addr.clone()]);
        Self {
            lrt,
            drt,
            listener,
            dialer,
            addr,
            peer,
            probe,
        }
    }

    async fn with(security: Security) -> Self {
        Self::new(config(security), config(security)).await
    }

    async fn open(&self, protocol: &str) -> Stream<Counted<D>> {
        step(
            &format!("open {protocol}"),
            self.dialer.new_stream(self.peer, [protocol]),
        )
        .await
        .unwrap_or_else(|e| panic!("open {protocol}: {e}"))
    }

    async fn probe_has(&self, what: &str) {
        let probe = self.probe.clone();
        eventually(
            &format!("probe records {what:?}"),
            STEP,
            || probe.get().iter().any(|s| s.contains(what)),
            || format!("{:?}", self.probe.get()),
        )
        .await;
    }

    /// Both hosts forget streams that both sides closed (no leak while connected).
    /// Connects and waits until identify, which runs on every new connection and holds a
    /// stream on each side for a round trip, has finished both ways, so that stream counts
    /// and limits see only the test's own streams.
    async fn connect_quietly(&self) {
        step("connect", self.dialer.dial(self.addr.clone()))
            .await
            .expect("dial");
        let me = self.dialer.peer_id();
        eventually(
            "identify done both ways",
            STEP,
            || self.dialer.peer_info(self.peer).is_some() && self.listener.peer_info(me).is_some(),
            || "not yet".to_string(),
        )
        .await;
        self.streams_drained().await;
    }

    async fn streams_drained(&self) {
        eventually(
            "streams drained on both hosts",
            STEP,
            || self.listener.num_streams() == 0 && self.dialer.num_streams() == 0,
            || {
                format!(
                    "listener {} dialer {}",
                    self.listener.num_streams(),
                    self.dialer.num_streams()
                )
            },
        )
        .await;
    }

    /// Closes both hosts and checks that nothing is left: no connection, no stream, no task.
    async fn shutdown(self) {
        self.dialer.close();
        self.listener.close();
        expect_clean(&self.listener, &self.lrt, "listener").await;
        expect_clean(&self.dialer, &self.drt, "dialer").await;
    }
}

async fn expect_clean<R: Runtime>(host: &Host<Counted<R>>, rt: &Counted<R>, who: &str) {
    eventually(
        &format!("{who}: no connections, streams or tasks left"),
        STEP,
        || host.num_connections() == 0 && host.num_streams() == 0 && rt.live_tasks() == 0,
        || {
            format!(
                "connections {} streams {} tasks {}",
                host.num_connections(),
                host.num_streams(),
                rt.live_tasks()
            )
        },
    )
    .await;
}

// ---- the suite ----

/// go's echo: the handler reads one line, writes it back and closes.
async fn echo<L: TestRuntime, D: TestRuntime>(security: Security) {
    let pair = Pair::<L, D>::with(security).await;
    let mut s = pair.open(ECHO).await;
    let reply = step("echo", echo_once(&mut s, b"Hello, world!\n")).await;
    assert_eq!(reply.expect("echo"), b"Hello, world!\n");
    drop(s);
    pair.streams_drained().await;
    pair.shutdown().await;
}

/// 1000 streams at once on one connection, each echoing its own line.
async fn concurrent_streams<L: TestRuntime, D: TestRuntime>() {
    const STREAMS: usize = 1000;
    let pair = Pair::<L, D>::with(Security::Noise).await;
    // Connect first so all streams share one connection.
    let first = pair.open(ECHO).await;
    drop(first);
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Probe::default();
    for i in 0..STREAMS {
        let (dialer, peer, ok, failures) =
            (pair.dialer.clone(), pair.peer, ok.clone(), failures.clone());
        pair.drt.spawn(Box::pin(async move {
            let line = format!("stream {i}\n");
            let result = match timeout(STEP, dialer.new_stream(peer, [ECHO])).await {
                Some(Ok(mut s)) => timeout(STEP, echo_once(&mut s, line.as_bytes())).await,
                Some(Err(e)) => Some(Err(std::io::Error::other(e))),
                None => None,
            };
            match result {
                Some(Ok(reply)) if reply == line.as_bytes() => {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                other => failures.record(format!("{i}: {other:?}")),
            }
        }));
    }
    eventually(
        "1000 concurrent echoes",
        Duration::from_secs(120),
        || ok.load(Ordering::SeqCst) + failures.get().len() == STREAMS,
        || {
            format!(
                "{} ok, failures {:?}",
                ok.load(Ordering::SeqCst),
                failures.get()
            )
        },
    )
    .await;
    assert_eq!(failures.get(), Vec::<String>::new());
    assert_eq!(
        pair.dialer.num_connections(),
        1,
        "all streams on one connection"
    );
    pair.streams_drained().await;
    pair.shutdown().await;
}

fn transfer_len() -> usize {
    if let Some(n) = std::env::var("PLAIT_CONFORMANCE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    256 << 20
}

/// A large one-way transfer; the remote replies with the SHA-256 of what it received.
async fn large_transfer<L: TestRuntime, D: TestRuntime>() {
    let len = transfer_len();
    let pair = Pair::<L, D>::with(Security::Noise).await;
    let mut s = pair.open(SHA_SINK).await;
    let started = Instant::now();
    let limit = Duration::from_secs(180);
    let sent = timeout(limit, send_pattern(&mut s, 42, len))
        .await
        .expect("transfer timed out")
        .expect("send");
    step("close", s.close()).await.expect("close");
    let digest = step("digest", read_all(&mut s)).await.expect("digest");
    assert_eq!(digest, sent, "SHA-256 of {len} bytes");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{len} bytes in {secs:.2} s ({:.0} MiB/s)",
        len as f64 / secs / (1 << 20) as f64
    );
    drop(s);
    pair.streams_drained().await;
    pair.shutdown().await;
}

/// The dialer half-closes and still reads what the listener sends afterwards.
async fn half_close_dialer<L: TestRuntime, D: TestRuntime>() {
    let pair = Pair::<L, D>::with(Security::Noise).await;
    let mut s = pair.open(COUNT_AFTER_EOF).await;
    let data = vec![3u8; 100_000];
    step("write", s.write_all(&data)).await.expect("write");
    step("close", s.close()).await.expect("close");
    assert!(
        s.write_all(b"late").await.is_err(),
        "write after close must fail"
    );
    let reply = step("read after close", read_all(&mut s))
        .await
        .expect("read");
    assert_eq!(reply, 100_000u64.to_be_bytes());
    drop(s);
    pair.streams_drained().await;
    pair.shutdown().await;
}

/// The listener half-closes and still reads what the dialer sends afterwards.
async fn half_close_listener<L: TestRuntime, D: TestRuntime>() {
    let pair = Pair::<L, D>::with(Security::Noise).await;
    let mut s = pair.open(GREET_THEN_READ).await;
    let greeting = step("read greeting", read_all(&mut s)).await.expect("read");
    assert_eq!(greeting, GREETING);
    let payload = b"sent after the listener closed its side\n";
    step("write", s.write_all(payload)).await.expect("write");
    step("close", s.close()).await.expect("close");
    pair.probe_has(&format!(
        "greet ok(()) close ok(()) read ok({}) {:?}",
        payload.len(),
        String::from_utf8_lossy(payload)
    ))
    .await;
    drop(s);
    pair.streams_drained().await;
    pair.shutdown().await;
}

/// The listener resets: the dialer's reads and writes fail with `ConnectionReset`.
async fn reset_by_listener<L: TestRuntime, D: TestRuntime>() {
    let pair = Pair::<L, D>::with(Security::Noise).await;
    let mut s = pair.open(RESET_AFTER_LINE).await;
    step("write", s.write_all(b"reset me\n"))
        .await
        .expect("write");
    let mut buf = [0u8; 16];
    let read = step("read after reset", s.read(&mut buf)).await;
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset),
        "read"
    );
    let write = step("write after reset", s.write_all(b"more")).await;
    assert_eq!(
        write.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset),
        "write"
    );
    let read = step("read again", s.read(&mut buf)).await;
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset),
        "read again"
    );
    drop(s);
    pair.streams_drained().await;
    pair.shutdown().await;
}

/// The dialer resets: the listener's reads and writes fail with `ConnectionReset`.
async fn reset_by_dialer<L: TestRuntime, D: TestRuntime>() {
    let pair = Pair::<L, D>::with(Security::Noise).await;
    let mut s = pair.open(EXPECT_RESET).await;
    step("write", s.write_all(b"about to reset\n"))
        .await
        .expect("write");
    pair.probe_has("line ok(15)").await;
    s.reset();
    pair.probe_has("read ConnectionReset write ConnectionReset")
        .await;
    pair.streams_drained().await;
    pair.shutdown().await;
}

/// The listener host closes while the dialer reads an endless stream from it: the dialer's
/// read ends or fails (no hang), the listener's writer fails, connections go away.
async fn remote_closes_mid_transfer<L: TestRuntime, D: TestRuntime>() {
    let pair = Pair::<L, D>::with(Security::Noise).await;
    let mut s = pair.open(SOURCE).await;
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < 1 << 20 {
        got += step("read source", s.read(&mut buf)).await.expect("read");
    }
    pair.listener.close();
    let ended = step("read until the vanished remote shows", async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return "eof".to_string(),
                Ok(_) => {}
                Err(e) => return format!("{:?}", e.kind()),
            }
        }
    })
    .await;
    println!("dialer read ended: {ended}");
    pair.probe_has("source ended").await;
    drop(s);
    eventually(
        "dialer forgets the connection and its streams",
        STEP,
        || pair.dialer.num_connections() == 0 && pair.dialer.num_streams() == 0,
        || {
            format!(
                "{} {}",
                pair.dialer.num_connections(),
                pair.dialer.num_streams()
            )
        },
    )
    .await;
    pair.shutdown().await;
}

/// The dialer host is dropped (every handle) while a task of it writes: the listener's
/// reader ends or fails, and both hosts end all their tasks.
async fn remote_dropped_mid_transfer<L: TestRuntime, D: TestRuntime>() {
    let pair = Pair::<L, D>::with(Security::Noise).await;
    let mut s = pair.open(SINK).await;
    let writer_done = Probe::default();
    let done = writer_done.clone();
    pair.drt.spawn(Box::pin(async move {
        let buf = vec![1u8; 16 * 1024];
        let err = loop {
            if let Err(e) = s.write_all(&buf).await {
                break e;
            }
        };
        done.record(format!("{:?}", err.kind()));
    }));
    async_io::Timer::after(Duration::from_millis(100)).await;
    let Pair {
        lrt,
        drt,
        listener,
        dialer,
        probe,
        ..
    } = pair;
    drop(dialer);
    eventually(
        "listener's sink ends",
        STEP,
        || probe.get().iter().any(|s| s.starts_with("sink ended")),
        || format!("{:?}", probe.get()),
    )
    .await;
    eventually(
        "dialer's writer fails and every dialer task ends",
        STEP,
        || drt.live_tasks() == 0,
        || format!("{} tasks, writer {:?}", drt.live_tasks(), writer_done.get()),
    )
    .await;
    assert_eq!(writer_done.get().len(), 1);
    eventually(
        "listener forgets the connection",
        STEP,
        || listener.num_connections() == 0 && listener.num_streams() == 0,
        || format!("{}", listener.num_connections()),
    )
    .await;
    listener.close();
    expect_clean(&listener, &lrt, "listener").await;
}

/// `max_connections` on both ends: the listener refuses a second inbound connection, a
/// dialer refuses to dial a second one; both are reported as errors.
async fn connection_limit<L: TestRuntime, D: TestRuntime>() {
    let lcfg = with_limits(Security::Noise, |l| l.max_connections = 1);
    let dcfg = with_limits(Security::Noise, |l| l.max_connections = 1);
    let pair = Pair::<L, D>::new(lcfg, dcfg).await;
    let p = step("first dial", pair.dialer.dial(pair.addr.clone())).await;
    assert_eq!(p.expect("first dial"), pair.peer);

    // Listener side: a second dialer is refused.
    let drt2 = Counted::new(D::handle());
    let dialer2 = Host::new(drt2.clone(), config(Security::Noise)).unwrap();
    let refused = step("refused dial", dialer2.dial(pair.addr.clone())).await;
    assert!(refused.is_err(), "listener over its limit: {refused:?}");

    // Dialer side: a second connection (to another listener) is refused before dialing.
    let probe = Probe::default();
    let (lrt2, listener2, addr2) = listener_host::<L>(config(Security::Noise), &probe).await;
    let over = step("dial over limit", pair.dialer.dial(addr2)).await;
    match over {
        Err(plait_driver::Error::Dial {
            error: plait_core::swarm::Error::Limit(_),
            ..
        }) => {}
        other => panic!("expected a limit error, got {other:?}"),
    }
    // The first connection still works.
    let mut s = pair.open(ECHO).await;
    let reply = step("echo", echo_once(&mut s, b"still here\n")).await;
    assert_eq!(reply.expect("echo"), b"still here\n");
    drop(s);
    dialer2.close();
    listener2.close();
    expect_clean(&dialer2, &drt2, "second dialer").await;
    expect_clean(&listener2, &lrt2, "second listener").await;
    pair.shutdown().await;
}

/// `max_streams_per_connection`: the dialer refuses to open more (an error from
/// `new_stream`); the listener resets inbound streams beyond its limit (`ConnectionReset`).
async fn stream_limit<L: TestRuntime, D: TestRuntime>() {
    const LIMIT: usize = 4;
    // The listener's limit: streams beyond it are reset by the remote.
    let lcfg = with_limits(Security::Noise, |l| l.max_streams_per_connection = LIMIT);
    let dcfg = with_limits(Security::Noise, |l| {
        l.max_streams_per_connection = 2 * LIMIT
    });
    let pair = Pair::<L, D>::new(lcfg, dcfg).await;
    pair.connect_quietly().await;
    let held = fill(&pair, LIMIT).await;
    eventually(
        "listener holds the streams",
        STEP,
        || pair.listener.num_streams() == LIMIT,
        || pair.listener.num_streams().to_string(),
    )
    .await;
    let mut extra = pair.open(ECHO).await;
    let r = step("over the listener's limit", echo_once(&mut extra, b"no\n")).await;
    assert_eq!(r.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
    drop(extra);
    // Closing streams frees room again.
    close_all(&pair, held).await;
    let mut s = pair.open(ECHO).await;
    let reply = step("echo after freeing", echo_once(&mut s, b"room\n")).await;
    assert_eq!(reply.expect("echo"), b"room\n");
    drop(s);
    pair.streams_drained().await;
    pair.shutdown().await;

    // The dialer's own limit: one more stream is refused locally.
    let lcfg = with_limits(Security::Noise, |l| {
        l.max_streams_per_connection = 2 * LIMIT
    });
    let dcfg = with_limits(Security::Noise, |l| l.max_streams_per_connection = LIMIT);
    let pair = Pair::<L, D>::new(lcfg, dcfg).await;
    pair.connect_quietly().await;
    let held = fill(&pair, LIMIT).await;
    // One protocol on an open connection: the stream is handed out at once and the refusal
    // shows on its first read, typed.
    let mut over = step(
        "over the dialer's limit",
        pair.dialer.new_stream(pair.peer, [SINK]),
    )
    .await
    .expect("a lazy stream is handed out");
    let mut buf = [0u8; 1];
    let refused = step("read the refusal", over.read(&mut buf)).await;
    let error = refused.expect_err("the connection cannot open it");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    let source = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<plait_core::swarm::Error>());
    assert!(
        matches!(
            source,
            Some(plait_core::swarm::Error::Connection(e))
                if matches!(**e, plait_core::connection::Error::Yamux(
                    plait_core::yamux::Error::TooManyStreams { .. }
                ))
        ),
        "{error:?}"
    );
    drop(over);
    close_all(&pair, held).await;
    pair.shutdown().await;
}

/// Opens `n` sink streams and writes a byte on each.
async fn fill<L: TestRuntime, D: TestRuntime>(
    pair: &Pair<L, D>,
    n: usize,
) -> Vec<Stream<Counted<D>>> {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = pair.open(SINK).await;
        step("write", s.write_all(b"x")).await.expect("write");
        held.push(s);
    }
    held
}

/// Closes `held` and waits until both hosts forgot them.
async fn close_all<L: TestRuntime, D: TestRuntime>(
    pair: &Pair<L, D>,
    held: Vec<Stream<Counted<D>>>,
) {
    for mut s in held {
        step("close", s.close()).await.expect("close");
    }
    pair.probe_has("sink ended ok(())").await;
    pair.streams_drained().await;
}

/// Dropping every handle of both hosts (no `close()`) ends every task and connection.
async fn shutdown_by_drop<L: TestRuntime, D: TestRuntime>() {
    let pair = Pair::<L, D>::with(Security::Noise).await;
    let mut s = pair.open(ECHO).await;
    let reply = step("echo", echo_once(&mut s, b"bye\n")).await;
    assert_eq!(reply.expect("echo"), b"bye\n");
    // A stream still open while its host goes away.
    let mut open = pair.open(SINK).await;
    step("write", open.write_all(b"pending"))
        .await
        .expect("write");
    let Pair {
        lrt,
        drt,
        listener,
        dialer,
        ..
    } = pair;
    drop(dialer);
    drop(listener);
    let mut buf = [0u8; 8];
    let r = step("read on a dropped host's stream", open.read(&mut buf)).await;
    assert!(!matches!(r, Ok(n) if n > 0), "read after drop: {r:?}");
    drop(open);
    drop(s);
    eventually(
        "every task ends after drop",
        STEP,
        || lrt.live_tasks() == 0 && drt.live_tasks() == 0,
        || format!("listener {} dialer {}", lrt.live_tasks(), drt.live_tasks()),
    )
    .await;
}

/// One module per (listener runtime, dialer runtime), each with the whole suite.
macro_rules! suite {
    ($($module:ident: $l:ty => $d:ty;)*) => {$(
        mod $module {
            use super::*;
            type L = $l;
            type D = $d;

            #[test]
            fn echo_noise() { run::<D>(super::echo::<L, D>(Security::Noise)) }
            #[test]
            fn echo_plaintext() { run::<D>(super::echo::<L, D>(Security::Plaintext)) }
            #[test]
            fn concurrent_streams() { run::<D>(super::concurrent_streams::<L, D>()) }
            #[test]
            fn large_transfer() { run::<D>(super::large_transfer::<L, D>()) }
            #[test]
            fn half_close_dialer() { run::<D>(super::half_close_dialer::<L, D>()) }
            #[test]
            fn half_close_listener() { run::<D>(super::half_close_listener::<L, D>()) }
            #[test]
            fn reset_by_listener() { run::<D>(super::reset_by_listener::<L, D>()) }
            #[test]
            fn reset_by_dialer() { run::<D>(super::reset_by_dialer::<L, D>()) }
            #[test]
            fn remote_closes_mid_transfer() {
                run::<D>(super::remote_closes_mid_transfer::<L, D>())
            }
            #[test]
            fn remote_dropped_mid_transfer() {
                run::<D>(super::remote_dropped_mid_transfer::<L, D>())
            }
            #[test]
            fn connection_limit() { run::<D>(super::connection_limit::<L, D>()) }
            #[test]
            fn stream_limit() { run::<D>(super::stream_limit::<L, D>()) }
            #[test]
            fn shutdown_by_drop() { run::<D>(super::shutdown_by_drop::<L, D>()) }
        }
    )*};
}

suite! {
    tokio: plait_tokio::Tokio => plait_tokio::Tokio;
    smol: plait_smol::Smol => plait_smol::Smol;
    async_std: plait_async_std::AsyncStd => plait_async_std::AsyncStd;
    tokio_to_smol: plait_tokio::Tokio => plait_smol::Smol;
    smol_to_async_std: plait_smol::Smol => plait_async_std::AsyncStd;
    async_std_to_tokio: plait_async_std::AsyncStd => plait_tokio::Tokio;
}
