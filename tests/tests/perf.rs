//! `/perf/1.0.0` between Plait hosts over real loopback TCP, on all three runtimes: runs of
//! several sizes (one and many at once on one connection), the server against a hand-written
//! client (the spec's byte example, a short header → reset), the client against hand-written
//! servers (short and long answers are typed errors), the per-connection run cap, the run
//! timeout (on a server whose clock jumps), perf being off by default, and the runner's
//! in-process mode.
//!
//! Every wait is bounded by [`HANG_GUARD`], which only turns a hang into a failure: it is far
//! above what any of these runs takes on a loaded machine and no result depends on timing.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use plait_async_std::AsyncStd;
use plait_core::identity::PeerId;
use plait_core::multiaddr::Multiaddr;
use plait_core::perf::Error as PerfError;
use plait_core::swarm::Error as SwarmError;
use plait_driver::perf::runner::{run_cli, PerfArgs};
use plait_driver::perf::{self, RunError, MAX_PARALLEL_RUNS_PER_CONNECTION, PROTOCOL, RUN_TIMEOUT};
use plait_driver::{BoxFuture, Error, Host, HostConfig, Runtime, Stream};
use plait_smol::Smol;
use plait_tests::hostile::{block_on_timeout, TestRuntime};
use plait_tokio::Tokio;

/// Turns a hang into a test failure; never a performance threshold.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// A protocol no host serves, to make a stream open wait for the remote's answer (with two
/// candidates negotiation is not lazy).
const NOTHING: &str = "/plait-test/nothing/1.0.0";

/// A listening host and a client host connected to it.
struct Pair<R: TestRuntime> {
    rt: R,
    server: Host<R>,
    client: Host<R>,
    peer: PeerId,
}

fn listen<R: TestRuntime>(rt: &R, host: &Host<R>) -> Multiaddr {
    block_on_timeout(rt, HANG_GUARD, "listen", async {
        host.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .await
            .unwrap()
    });
    host.listen_addrs().into_iter().next().unwrap()
}

impl<R: TestRuntime> Pair<R> {
    /// `server_config` for the listener; the client dials it.
    fn new(server_config: HostConfig) -> Self {
        Self::with_setup(server_config, |_, _| {})
    }

    /// Like [`Pair::new`], running `setup` on the server before the client connects (a
    /// connection keeps the protocols its host served when it was opened).
    fn with_setup(server_config: HostConfig, setup: impl FnOnce(&R, &Host<R>)) -> Self {
        let rt = R::get();
        let server = Host::new(rt.clone(), server_config).unwrap();
        setup(&rt, &server);
        let addr = listen(&rt, &server);
        let client = Host::new(rt.clone(), HostConfig::random()).unwrap();
        let peer = block_on_timeout(&rt, HANG_GUARD, "dial", client.dial(addr)).unwrap();
        assert_eq!(peer, server.peer_id());
        Self {
            rt,
            server,
            client,
            peer,
        }
    }

    /// A pair whose server serves perf through [`HostConfig::perf`].
    fn perf() -> Self {
        let mut config = HostConfig::random();
        config.perf = true;
        Self::new(config)
    }

    fn block_on<T>(&self, what: &str, f: impl std::future::Future<Output = T>) -> T {
        block_on_timeout(&self.rt, HANG_GUARD, what, f)
    }

    fn run(&self, upload: u64, download: u64) -> Result<perf::PerfReport, Error> {
        self.block_on(
            "perf run",
            perf::run(&self.client, self.peer, upload, download),
        )
    }

    /// A stream to the server's perf handler whose negotiation has completed.
    fn negotiated_stream(&self) -> Stream<R> {
        let stream = self
            .block_on(
                "open",
                self.client.new_stream(self.peer, [PROTOCOL, NOTHING]),
            )
            .unwrap();
        assert_eq!(stream.protocol().as_str(), PROTOCOL);
        stream
    }
}

macro_rules! on_all_runtimes {
    ($($name:ident),* $(,)?) => {
        mod tokio_rt { $( #[test] fn $name() { super::$name::<super::Tokio>(); } )* }
        mod smol_rt { $( #[test] fn $name() { super::$name::<super::Smol>(); } )* }
        mod async_std_rt { $( #[test] fn $name() { super::$name::<super::AsyncStd>(); } )* }
    };
}

on_all_runtimes!(
    runs_move_the_requested_bytes,
    parallel_runs_on_one_connection,
    server_answers_the_spec_byte_example,
    server_resets_a_short_header,
    client_rejects_a_short_answer,
    client_rejects_a_long_answer,
    perf_is_off_by_default,
    runner_in_process_mode_prints_runner_lines,
);

fn runs_move_the_requested_bytes<R: TestRuntime>() {
    let pair = Pair::<R>::perf();
    let block = plait_core::perf::BLOCK_SIZE as u64;
    for (upload, download) in [
        (3, 5),
        (0, 0),
        (0, 1),
        (1, 0),
        (block, block),
        (3 * block + 1, 5 * block + 7),
        (8 << 20, 0),
        (0, 8 << 20),
    ] {
        let report = pair.run(upload, download).unwrap();
        assert_eq!(
            (report.uploaded, report.downloaded),
            (upload, download),
            "{}",
            R::name()
        );
    }
}

fn parallel_runs_on_one_connection<R: TestRuntime>() {
    let pair = Pair::<R>::perf();
    let runs: Vec<(u64, u64)> = (0..16u64)
        .map(|i| (i * 100_003, (16 - i) * 70_001))
        .collect();
    let reports = pair.block_on(
        "parallel runs",
        futures::future::join_all(
            runs.iter()
                .map(|&(up, down)| perf::run(&pair.client, pair.peer, up, down)),
        ),
    );
    for (report, &(up, down)) in reports.into_iter().zip(&runs) {
        let report = report.unwrap();
        assert_eq!((report.uploaded, report.downloaded), (up, down));
    }
    assert_eq!(pair.client.num_connections(), 1, "all on one connection");
}

/// The server against a hand-written client: the bytes of `specs/perf.md` §1.
fn server_answers_the_spec_byte_example<R: TestRuntime>() {
    let pair = Pair::<R>::perf();
    let mut stream = pair.negotiated_stream();
    let reply = pair.block_on("spec example", async {
        stream
            .write_all(&[0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0])
            .await
            .unwrap();
        stream.close().await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        reply
    });
    assert_eq!(reply, [0; 5]);

    // The header split across writes, then a large upload: the count still comes back.
    let mut stream = pair.negotiated_stream();
    let reply = pair.block_on("split header", async {
        stream.write_all(&[0, 0, 0]).await.unwrap();
        stream.flush().await.unwrap();
        stream.write_all(&[0, 0, 1, 0, 1]).await.unwrap();
        stream.write_all(&vec![7u8; 3 << 20]).await.unwrap();
        stream.close().await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        reply
    });
    assert_eq!(reply.len(), (1 << 16) + 1);
    assert!(reply.iter().all(|b| *b == 0));
}

fn server_resets_a_short_header<R: TestRuntime>() {
    let pair = Pair::<R>::perf();
    for header in [&[][..], &[0, 0, 0][..], &[0, 0, 0, 0, 0, 0, 9][..]] {
        let mut stream = pair.negotiated_stream();
        let read = pair.block_on("short header", async {
            stream.write_all(header).await.unwrap();
            stream.close().await.unwrap();
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply).await.map(|_| reply)
        });
        let err = read.expect_err("a short header must not get an answer");
        assert_eq!(
            err.kind(),
            ErrorKind::ConnectionReset,
            "{} bytes",
            header.len()
        );
    }
    // The server still serves the same connection.
    let report = pair.run(10, 10).unwrap();
    assert_eq!((report.uploaded, report.downloaded), (10, 10));
    assert_eq!(pair.client.num_connections(), 1);
}

/// A hand-written perf server that answers `count + extra - short` bytes.
fn misbehaving_server<R: TestRuntime>(extra: usize, short: usize) -> Pair<R> {
    Pair::<R>::with_setup(HostConfig::random(), |rt, server| {
        let rt = rt.clone();
        server
            .set_stream_handler(PROTOCOL, move |mut stream| {
                rt.spawn(Box::pin(async move {
                    let mut request = Vec::new();
                    if stream.read_to_end(&mut request).await.is_err() {
                        return;
                    }
                    let Some(header) = request.get(..8) else {
                        return;
                    };
                    let count = u64::from_be_bytes(header.try_into().unwrap()) as usize;
                    let answer = vec![0u8; (count + extra).saturating_sub(short)];
                    if stream.write_all(&answer).await.is_ok() {
                        let _ = stream.close().await;
                    }
                }));
            })
            .unwrap();
    })
}

fn client_rejects_a_short_answer<R: TestRuntime>() {
    let pair = misbehaving_server::<R>(0, 1);
    let err = pair.run(100, 100_000).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Perf(RunError::Protocol(PerfError::ShortDownload {
                expected: 100_000,
                received: 99_999
            }))
        ),
        "{err:?}"
    );
}

fn client_rejects_a_long_answer<R: TestRuntime>() {
    let pair = misbehaving_server::<R>(1, 0);
    let err = pair.run(0, 100_000).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Perf(RunError::Protocol(PerfError::TooMuchData {
                expected: 100_000
            }))
        ),
        "{err:?}"
    );
}

fn perf_is_off_by_default<R: TestRuntime>() {
    assert!(!HostConfig::random().perf);
    let pair = Pair::<R>::new(HostConfig::random());
    let open = pair.block_on(
        "open",
        pair.client.new_stream(pair.peer, [PROTOCOL, NOTHING]),
    );
    assert!(
        matches!(open, Err(Error::Swarm(SwarmError::Negotiation(_)))),
        "{:?}",
        open.map(|s| s.protocol().clone())
    );
    // Served once asked for, on connections opened from then on.
    perf::serve(&pair.server, &pair.rt).unwrap();
    let client = Host::new(pair.rt.clone(), HostConfig::random()).unwrap();
    let addr = pair.server.listen_addrs().into_iter().next().unwrap();
    let report = pair
        .block_on("run after serve", async {
            client.dial(addr).await?;
            perf::run(&client, pair.peer, 1, 1).await
        })
        .unwrap();
    assert_eq!((report.uploaded, report.downloaded), (1, 1));
}

fn runner_in_process_mode_prints_runner_lines<R: TestRuntime>() {
    let rt = R::get();
    let args = PerfArgs::parse(
        ["--upload-bytes", "1000000", "--download-bytes", "2000000"].map(String::from),
    )
    .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    block_on_timeout(
        &rt,
        HANG_GUARD,
        "runner",
        run_cli(rt.clone(), args, move |l| {
            sink.lock().unwrap().push(l.to_owned())
        }),
    )
    .unwrap();
    let lines = lines.lock().unwrap();
    let (last, intermediary) = lines.split_last().expect("a final line");
    assert!(
        last.starts_with(r#"{"type":"final","timeSeconds":"#)
            && last.ends_with(r#","uploadBytes":1000000,"downloadBytes":2000000}"#),
        "{last}"
    );
    for line in intermediary {
        assert!(line.starts_with(r#"{"type":"intermediary","#), "{line}");
    }
}

/// [`MAX_PARALLEL_RUNS_PER_CONNECTION`] runs held open at once (header sent, upload never
/// closed): the next perf stream on that connection is reset; once they end, runs are
/// served again. Tokio only: it is a thousand streams, and the cap is runtime-independent
/// code.
#[test]
fn parallel_runs_are_capped_per_connection() {
    let pair = Pair::<Tokio>::perf();
    let mut held = Vec::new();
    for _ in 0..MAX_PARALLEL_RUNS_PER_CONNECTION {
        let mut stream = pair
            .block_on("open", pair.client.new_stream(pair.peer, [PROTOCOL]))
            .unwrap();
        pair.block_on("header", stream.write_all(&[0; 8])).unwrap();
        held.push(stream);
    }
    // The server's connection task runs the handlers of the streams in the order they
    // arrive, so the held runs all hold their slots when this one comes.
    // (Lazy negotiation: the reset may overtake the protocol's acceptance.)
    let mut over = pair
        .block_on("open", pair.client.new_stream(pair.peer, [PROTOCOL]))
        .unwrap();
    let read = pair.block_on("one too many", async {
        over.write_all(&[0; 8]).await.unwrap();
        over.close().await.unwrap();
        let mut reply = Vec::new();
        over.read_to_end(&mut reply).await.map(|_| reply)
    });
    assert_eq!(
        read.expect_err("run over the cap must be reset").kind(),
        ErrorKind::ConnectionReset
    );
    // The held runs complete normally (download 0: EOF right after our FIN).
    for mut stream in held {
        let reply = pair.block_on("finish held run", async {
            stream.close().await.unwrap();
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply).await.map(|_| reply)
        });
        assert_eq!(reply.unwrap(), Vec::<u8>::new());
    }
    let report = pair.run(5, 5).unwrap();
    assert_eq!((report.uploaded, report.downloaded), (5, 5));
    assert_eq!(pair.client.num_connections(), 1);
}

/// A runtime whose clock can jump forward; its timers follow the jumps (they re-check the
/// moved clock every 10 ms).
#[derive(Clone)]
struct Jumpy<R> {
    inner: R,
    offset: Arc<Mutex<Duration>>,
}

impl<R: Runtime> Jumpy<R> {
    fn jump(&self, by: Duration) {
        *self.offset.lock().unwrap() += by;
    }
}

impl<R: Runtime> Runtime for Jumpy<R> {
    type Tcp = R::Tcp;
    type Listener = R::Listener;
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.inner.spawn(task);
    }
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        let this = self.clone();
        Box::pin(async move {
            loop {
                let now = this.now();
                if now >= deadline {
                    return;
                }
                let step = (deadline - now).min(Duration::from_millis(10));
                this.inner.sleep_until(this.inner.now() + step).await;
            }
        })
    }
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<R::Tcp>> {
        self.inner.connect(addr)
    }
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<(R::Listener, SocketAddr)>> {
        self.inner.bind(addr)
    }
    fn accept(
        &self,
        listener: Arc<R::Listener>,
    ) -> BoxFuture<'static, io::Result<(R::Tcp, SocketAddr)>> {
        self.inner.accept(listener)
    }
    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        self.inner.resolve(host, port)
    }
    fn now(&self) -> Instant {
        self.inner.now() + *self.offset.lock().unwrap()
    }
}

/// A run whose client stalls (half a header, never closed) is reset by the server once the
/// server's clock passes [`RUN_TIMEOUT`]; the connection survives. The server's clock jumps
/// instead of waiting five minutes. Tokio only: the run timer is runtime-independent code.
#[test]
fn server_resets_a_stalled_run_after_the_run_timeout() {
    let tokio = Tokio::get();
    let jumpy = Jumpy {
        inner: tokio.clone(),
        offset: Arc::default(),
    };
    let mut config = HostConfig::random();
    config.perf = true;
    let server = Host::new(jumpy.clone(), config).unwrap();
    let addr = block_on_timeout(&tokio, HANG_GUARD, "listen", async {
        server
            .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .await
            .unwrap();
        server.listen_addrs().into_iter().next().unwrap()
    });
    let client = Host::new(tokio.clone(), HostConfig::random()).unwrap();
    let peer = block_on_timeout(&tokio, HANG_GUARD, "dial", client.dial(addr)).unwrap();

    let mut stalled = block_on_timeout(&tokio, HANG_GUARD, "open", async {
        let mut s = client.new_stream(peer, [PROTOCOL, NOTHING]).await.unwrap();
        s.write_all(&[0, 0, 0]).await.unwrap();
        s
    });
    // A complete run after it: by then the stalled run's task has long been running.
    let report =
        block_on_timeout(&tokio, HANG_GUARD, "run", perf::run(&client, peer, 7, 7)).unwrap();
    assert_eq!((report.uploaded, report.downloaded), (7, 7));

    let read = block_on_timeout(&tokio, HANG_GUARD, "stalled run", async {
        let mut byte = [0u8; 1];
        loop {
            jumpy.jump(RUN_TIMEOUT + Duration::from_secs(1));
            // Another jump if the reset has not come within 2 s (a run that had not started
            // at the first jump); each jump alone is past the run's limit.
            let read =
                futures_lite::future::or(async { Some(stalled.read(&mut byte).await) }, async {
                    async_io::Timer::after(Duration::from_secs(2)).await;
                    None
                })
                .await;
            if let Some(read) = read {
                break read;
            }
        }
    });
    assert_eq!(
        read.expect_err("a stalled run must be reset").kind(),
        ErrorKind::ConnectionReset
    );
    assert_eq!(client.num_connections(), 1, "the connection survives");
    let report = block_on_timeout(
        &tokio,
        HANG_GUARD,
        "run after",
        perf::run(&client, peer, 3, 3),
    )
    .unwrap();
    assert_eq!((report.uploaded, report.downloaded), (3, 3));
}
