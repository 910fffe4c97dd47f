//! Benchmarks of Plait side by side with rust-libp2p 0.57 and litep2p 0.16, in one run.
//!
//! ```text
//! cargo run --release -p plait-tests --bin bench -- all [--quick] [--bytes N] [--reps N] [--side ours|theirs|litep2p]
//! cargo run --release -p plait-tests --bin bench -- throughput streams16 conns64 connect open memory runtimes
//! ```
//!
//! Every figure is measured for three stacks (the columns): ours (a `plait_tokio::Host` pair,
//! Noise + Yamux over loopback TCP), theirs (rust-libp2p 0.57, the in-process peer of
//! `plait_tests::libp2p_peer`: TCP + Noise + Yamux, streams through its custom
//! `ConnectionHandler` that negotiates every stream concurrently) and litep2p 0.16 (the
//! `litep2p-bench` binary of the separate workspace `bench/litep2p`, which needs `protoc` to
//! build). Each repetition runs the three in turn, rotating which goes first; the table gives
//! the median of each side, the spread (min–max) and the ratios of the medians. Both ends of
//! every connection live in one process on one 2-worker tokio runtime (a multi-thread runtime
//! with as many workers as cores is what all three stacks are made for).
//!
//! Every measurement of a side runs in a fresh child process, one per repetition, all sides
//! speaking one protocol (this binary for ours and theirs, `litep2p-bench` for litep2p, the
//! same arguments and result lines):
//!
//! ```text
//! bulk-child SIDE STREAMS BYTES [CONNS]   -> GIB_S x          (throughput, streams16, conns64)
//! connect-child SIDE SEQ CONC             -> LAT_MS x, CONN_S y
//! open-child SIDE SEQ CONC                -> SEQ_S x, CONC_S y
//! mem-child SIDE conns|streams N          -> PER_ITEM_BYTES x
//! ```
//!
//! For bulk transfers a fresh process matters most: where a process's long-lived tasks settle
//! on the workers changes the figure more than anything else on a small machine. The memory
//! child holds both ends, so its figure is per connection (or stream) *pair*, dialer plus
//! listener.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use plait_driver::plait_core::identity::PeerId as PlaitPeerId;
use plait_driver::plait_core::multiaddr::{Multiaddr as PlaitAddr, Protocol};
use plait_driver::plait_core::swarm::Limits;
use plait_driver::plait_core::upgrade::Security;
use plait_driver::{Host, HostConfig, Runtime};
use plait_tests::libp2p_peer::{Libp2pPeer, PeerConfig, ECHO_PROTOCOL};

const SINK: &str = "/plait-bench/sink/1.0.0";
const IDLE: &str = "/plait-bench/idle/1.0.0";
const CHUNK: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Options and statistics

/// The stacks, in column order; the name is the child protocol's SIDE argument.
const SIDES: [&str; 3] = ["ours", "theirs", "litep2p"];
const OURS: usize = 0;
const LITEP2P: usize = 2;

#[derive(Clone, Debug)]
struct Opts {
    quick: bool,
    bytes: u64,
    reps: usize,
    /// One stack only (an index into [`SIDES`]), for profiling it alone.
    only: Option<usize>,
}

impl Opts {
    fn runs(&self, side: usize) -> bool {
        self.only.is_none_or(|o| o == side) && !(side == LITEP2P && tls())
    }
}

/// One measured quantity: samples of each side (ceilings and runtimes: ours only).
struct Row {
    name: String,
    unit: &'static str,
    /// Indexed like [`SIDES`].
    samples: [Vec<f64>; 3],
    /// Lower is better (memory, latency): the ratios are still ours/theirs, ours/litep2p.
    lower_better: bool,
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn spread(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let m = median(v);
    format!(
        "{}–{} (±{:.0} %)",
        fmt(min),
        fmt(max),
        50.0 * (max - min) / m
    )
}

fn fmt(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn print_rows(rows: &[Row]) {
    println!();
    println!(
        "| {:<44} | {:>9} | {:>8} | {:>8} | {:>8} | {:>11} | {:>12} | {:<26} | {:<26} | {:<26} |",
        "benchmark",
        "unit",
        "ours",
        "theirs",
        "litep2p",
        "ours/theirs",
        "ours/litep2p",
        "ours spread",
        "theirs spread",
        "litep2p spread"
    );
    let widths = [46, 11, 10, 10, 10, 13, 14, 28, 28, 28];
    let rule: String = widths.iter().map(|w| format!("|{:-<w$}", "")).collect();
    println!("{rule}|");
    for r in rows {
        let [o, t, l] = r.samples.each_ref().map(|v| median(v));
        let ratio = |v: &[f64], m: f64| {
            if v.is_empty() || r.samples[OURS].is_empty() {
                "-".to_string()
            } else {
                format!("{:.2}x", o / m)
            }
        };
        println!(
            "| {:<44} | {:>9} | {:>8} | {:>8} | {:>8} | {:>11} | {:>12} | {:<26} | {:<26} | {:<26} |",
            r.name,
            r.unit,
            fmt(o),
            fmt(t),
            fmt(l),
            ratio(&r.samples[1], t),
            ratio(&r.samples[2], l),
            spread(&r.samples[0]),
            spread(&r.samples[1]),
            spread(&r.samples[2]),
        );
        let _ = r.lower_better;
    }
    let _ = std::io::stdout().flush();
}

fn row(name: impl Into<String>, unit: &'static str, lower_better: bool) -> Row {
    Row {
        name: name.into(),
        unit,
        samples: Default::default(),
        lower_better,
    }
}

fn gib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / (1u64 << 30) as f64
}

// ---------------------------------------------------------------------------------------------
// Our stack, generic over the runtime

type Spawn = Arc<dyn Fn(BoxFuture<'static, ()>) + Send + Sync>;

fn big_limits() -> Limits {
    Limits {
        max_connections: 8192,
        max_connections_per_peer: 8192,
        max_pending_incoming: 128,
        max_streams_per_connection: 16384,
        ..Limits::default()
    }
}

/// Whether the stacks use TLS instead of Noise (`--tls`, passed to child processes as
/// `PLAIT_BENCH_TLS=1`; litep2p has no TLS over TCP and sits those runs out).
fn tls() -> bool {
    std::env::var_os("PLAIT_BENCH_TLS").is_some()
}

/// Ours: one security protocol, as the other stacks (a single one is proposed lazily).
fn plait_config() -> HostConfig {
    let security = if tls() {
        Security::Tls
    } else {
        Security::Noise
    };
    let mut c = HostConfig::random().with_security(security);
    c.limits = big_limits();
    c
}

/// A listening host serving the sink, echo and idle protocols.
struct PlaitServer<R: Runtime> {
    host: Host<R>,
    peer: PlaitPeerId,
    addr: PlaitAddr,
    held: Arc<Mutex<Vec<plait_driver::Stream<R>>>>,
}

async fn plait_server<R: Runtime>(rt: R, spawn: Spawn) -> PlaitServer<R> {
    let host = Host::new(rt, plait_config()).expect("host");
    let s = spawn.clone();
    host.set_stream_handler(SINK, move |mut stream| {
        s(Box::pin(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
            let _ = stream.write_all(b"k").await;
            let _ = stream.close().await;
        }))
    })
    .expect("handler");
    let s = spawn.clone();
    host.set_stream_handler(ECHO_PROTOCOL, move |mut stream| {
        s(Box::pin(async move {
            // go's echo example: one line in, the same line out, close.
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            loop {
                match stream.read(&mut b).await {
                    Ok(1) => {
                        line.push(b[0]);
                        if b[0] == b'\n' {
                            break;
                        }
                    }
                    _ => return,
                }
            }
            let _ = stream.write_all(&line).await;
            let _ = stream.close().await;
            let _ = stream.read(&mut b).await;
        }))
    })
    .expect("handler");
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    host.set_stream_handler(IDLE, move |stream| h.lock().unwrap().push(stream))
        .expect("handler");
    let addr = host
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .await
        .expect("listen");
    let peer = host.peer_id();
    let addr = addr.with(Protocol::P2p(peer));
    PlaitServer {
        host,
        peer,
        addr,
        held,
    }
}

async fn plait_client<R: Runtime>(rt: R, server: &PlaitServer<R>) -> Host<R> {
    let c = Host::new(rt, plait_config()).expect("host");
    c.dial(server.addr.clone()).await.expect("dial");
    c
}

/// Writes `bytes` on `streams` parallel sink streams; returns the time until every ack.
async fn plait_bulk<R: Runtime>(
    client: &Host<R>,
    server: PlaitPeerId,
    bytes: u64,
    streams: usize,
    spawn: &Spawn,
) -> Duration {
    let per = bytes / streams as u64;
    let start = Instant::now();
    // Every stream is written by its own spawned task, on the runtime's workers, as an
    // application would (the benchmark's own future runs on the main thread).
    let done = (0..streams).map(|_| {
        let client = client.clone();
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        spawn(Box::pin(async move {
            let s = client.new_stream(server, [SINK]).await.expect("open");
            sink_write(s, per).await;
            let _ = tx.send(());
        }));
        rx
    });
    for finished in futures::future::join_all(done).await {
        finished.expect("writer");
    }
    start.elapsed()
}

/// `conns` client hosts dial the server and open one sink stream each; then every stream
/// writes `bytes / conns` from its own spawned task at once. Returns the time from the first
/// write to the last ack.
async fn plait_bulk_conns<R: Runtime>(
    rt: R,
    server: &PlaitServer<R>,
    bytes: u64,
    conns: usize,
    spawn: &Spawn,
) -> Duration {
    let per = bytes / conns as u64;
    let clients =
        futures::future::join_all((0..conns).map(|_| plait_client(rt.clone(), server))).await;
    let opens = clients.iter().map(|c| c.new_stream(server.peer, [SINK]));
    let streams = futures::future::join_all(opens).await;
    let start = Instant::now();
    let done = streams.into_iter().map(|s| {
        let s = s.expect("open");
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        spawn(Box::pin(async move {
            sink_write(s, per).await;
            let _ = tx.send(());
        }));
        rx
    });
    for finished in futures::future::join_all(done).await {
        finished.expect("writer");
    }
    start.elapsed()
}

/// Writes `bytes` in `CHUNK`-byte writes, half-closes and waits for the 1-byte ack and the end.
async fn sink_write<S: futures::AsyncRead + futures::AsyncWrite + Unpin>(mut s: S, bytes: u64) {
    let buf = vec![0x5a_u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&buf[..n]).await.expect("write");
        left -= n as u64;
    }
    s.close().await.expect("close");
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).await.expect("ack");
    let _ = s.read(&mut ack).await;
}

async fn plait_echo_once<R: Runtime>(client: &Host<R>, server: PlaitPeerId) {
    let mut s = client
        .new_stream(server, [ECHO_PROTOCOL])
        .await
        .expect("open");
    s.write_all(b"\n").await.expect("write");
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.expect("echo");
    s.close().await.expect("close");
    // Read the remote's FIN: a plait stream dropped before its end was read stays in the
    // yamux session (see BENCHMARKS.md), so every reader here reads to the end.
    let _ = s.read(&mut b).await;
}

// ---------------------------------------------------------------------------------------------
// rust-libp2p 0.57

async fn libp2p_server() -> Arc<Libp2pPeer> {
    let server = Arc::new(
        Libp2pPeer::spawn(PeerConfig {
            extra_protocols: vec![SINK.into(), IDLE.into()],
            tls: tls(),
            ..PeerConfig::default()
        })
        .await,
    );
    let s = server.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(inbound) = s.accept().await {
            if inbound.protocol == IDLE {
                held.push(inbound.stream);
                IDLE_HELD.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut stream = inbound.stream;
            tokio::spawn(async move {
                let mut buf = vec![0u8; CHUNK];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
                let _ = stream.write_all(b"k").await;
                let _ = stream.close().await;
            });
        }
    });
    server
}

static IDLE_HELD: AtomicUsize = AtomicUsize::new(0);

async fn libp2p_client() -> Libp2pPeer {
    Libp2pPeer::spawn(PeerConfig {
        echo: false,
        listen_port: None,
        tls: tls(),
        ..PeerConfig::default()
    })
    .await
}

async fn libp2p_bulk(client: &Libp2pPeer, server: PeerIdL, bytes: u64, streams: usize) -> Duration {
    let per = bytes / streams as u64;
    let start = Instant::now();
    // Streams are opened here (the peer handle is borrowed) and written by spawned tasks,
    // like ours.
    let opened = (0..streams).map(|_| client.open_stream(server, SINK));
    let writers: Vec<_> = futures::future::join_all(opened)
        .await
        .into_iter()
        .map(|s| tokio::spawn(sink_write(s.expect("open"), per)))
        .collect();
    for t in futures::future::join_all(writers).await {
        t.expect("writer");
    }
    start.elapsed()
}

type PeerIdL = libp2p::PeerId;

/// As [`plait_bulk_conns`]: `conns` client peers, one sink stream each, timed from the first
/// write to the last ack.
async fn libp2p_bulk_conns(server: &Libp2pPeer, bytes: u64, conns: usize) -> Duration {
    let per = bytes / conns as u64;
    let clients = futures::future::join_all((0..conns).map(|_| async {
        let c = libp2p_client().await;
        c.dial(server.listen_addr()).await.expect("dial");
        c
    }))
    .await;
    let opens = clients
        .iter()
        .map(|c| c.open_stream(server.peer_id(), SINK));
    let streams = futures::future::join_all(opens).await;
    let start = Instant::now();
    let writers: Vec<_> = streams
        .into_iter()
        .map(|s| tokio::spawn(sink_write(s.expect("open"), per)))
        .collect();
    for t in futures::future::join_all(writers).await {
        t.expect("writer");
    }
    start.elapsed()
}

async fn libp2p_echo_once(client: &Libp2pPeer, server: PeerIdL) {
    let mut s = client
        .open_stream(server, ECHO_PROTOCOL)
        .await
        .expect("open");
    s.write_all(b"\n").await.expect("write");
    s.flush().await.expect("flush");
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.expect("echo");
    s.close().await.expect("close");
    let _ = s.read(&mut b).await;
}

// ---------------------------------------------------------------------------------------------
// Ceilings

async fn tcp_bulk(bytes: u64) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; CHUNK];
        while s.read(&mut buf).await.unwrap() > 0 {}
        s.write_all(b"k").await.unwrap();
    });
    let start = Instant::now();
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    let buf = vec![0x5a_u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        c.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    c.shutdown().await.unwrap();
    let mut ack = [0u8; 1];
    c.read_exact(&mut ack).await.unwrap();
    let d = start.elapsed();
    server.await.unwrap();
    d
}

/// snow resolver: ring for ChaCha20-Poly1305 and SHA-256, snow's own X25519 and RNG (what
/// our noise handshake uses).
struct RingCiphers;

impl snow::resolvers::CryptoResolver for RingCiphers {
    fn resolve_rng(&self) -> Option<Box<dyn snow::types::Random>> {
        snow::resolvers::DefaultResolver.resolve_rng()
    }
    fn resolve_dh(&self, c: &snow::params::DHChoice) -> Option<Box<dyn snow::types::Dh>> {
        snow::resolvers::DefaultResolver.resolve_dh(c)
    }
    fn resolve_hash(&self, c: &snow::params::HashChoice) -> Option<Box<dyn snow::types::Hash>> {
        snow::resolvers::RingResolver.resolve_hash(c)
    }
    fn resolve_cipher(
        &self,
        c: &snow::params::CipherChoice,
    ) -> Option<Box<dyn snow::types::Cipher>> {
        snow::resolvers::RingResolver.resolve_cipher(c)
    }
}

/// Bare ChaCha20-Poly1305 on one core: snow `TransportState` encrypt + decrypt of 65519-byte
/// frames, `bytes` of plaintext.
fn chacha_bulk(bytes: u64) -> Duration {
    let (mut a, mut b) = noise_pair();
    let mut m = vec![0u8; 65535];
    let mut p = vec![0u8; 65535];
    let plain = vec![0x5a_u8; NOISE_PLAIN];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let k = left.min(NOISE_PLAIN as u64) as usize;
        let n = a.write_message(&plain[..k], &mut m).unwrap();
        let got = b.read_message(&m[..n], &mut p).unwrap();
        assert_eq!(got, k);
        left -= k as u64;
    }
    start.elapsed()
}

/// Size of the plaintext in one Noise frame (65535 minus the 16-byte tag).
const NOISE_PLAIN: usize = 65519;

/// The Noise-over-TCP pipeline every libp2p stack needs at least: one task encrypts 65519-byte
/// frames (snow `TransportState`, ring) with their 2-byte length prefixes into 4-frame batches
/// and writes them to a loopback TCP socket; another reads and decrypts them. No muxer, no
/// multistream, no stream API: the ceiling for Noise over TCP on this machine and runtime.
async fn noise_tcp_bulk(bytes: u64) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut tx, mut rx) = noise_pair();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut input = bytes::BytesMut::with_capacity(1 << 20);
        let mut plain = vec![0u8; 65535];
        let mut got = 0u64;
        while got < bytes {
            while input.len() >= 2 {
                let len = u16::from_be_bytes([input[0], input[1]]) as usize;
                if input.len() < 2 + len {
                    break;
                }
                let frame = input.split_to(2 + len);
                got += rx.read_message(&frame[2..], &mut plain).unwrap() as u64;
            }
            if got < bytes && s.read_buf(&mut input).await.unwrap() == 0 {
                panic!("early end");
            }
        }
        s.write_all(b"k").await.unwrap();
    });
    let start = Instant::now();
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.set_nodelay(true).unwrap();
    let plain = vec![0x5a_u8; NOISE_PLAIN];
    let mut batch = vec![0u8; 4 * 65537];
    let mut left = bytes;
    while left > 0 {
        let mut at = 0;
        for _ in 0..4 {
            if left == 0 {
                break;
            }
            let k = left.min(NOISE_PLAIN as u64) as usize;
            let n = tx
                .write_message(&plain[..k], &mut batch[at + 2..at + 65537])
                .unwrap();
            batch[at..at + 2].copy_from_slice(&(n as u16).to_be_bytes());
            at += 2 + n;
            left -= k as u64;
        }
        c.write_all(&batch[..at]).await.unwrap();
    }
    let mut ack = [0u8; 1];
    c.read_exact(&mut ack).await.unwrap();
    let d = start.elapsed();
    server.await.unwrap();
    d
}

/// Two snow `TransportState`s (initiator, responder) after an NN handshake, ring ciphers.
fn noise_pair() -> (snow::TransportState, snow::TransportState) {
    let params: snow::params::NoiseParams = "Noise_NN_25519_ChaChaPoly_SHA256".parse().unwrap();
    let mut a = snow::Builder::with_resolver(params.clone(), Box::new(RingCiphers))
        .build_initiator()
        .unwrap();
    let mut b = snow::Builder::with_resolver(params, Box::new(RingCiphers))
        .build_responder()
        .unwrap();
    let mut m = vec![0u8; 65535];
    let mut p = vec![0u8; 65535];
    let n = a.write_message(&[], &mut m).unwrap();
    b.read_message(&m[..n], &mut p).unwrap();
    let n = b.write_message(&[], &mut m).unwrap();
    a.read_message(&m[..n], &mut p).unwrap();
    (
        a.into_transport_mode().unwrap(),
        b.into_transport_mode().unwrap(),
    )
}

// ---------------------------------------------------------------------------------------------
// The benchmarks

/// One bulk transfer measured in a fresh child process (`bulk-child KIND STREAMS BYTES CONNS`),
/// in GiB/s. A process's first thread placement decides a lot on a small machine (the same
/// transfer runs at 0.6 or 1.0 GiB/s depending on which worker threads the long-lived
/// connection tasks settle on), so every repetition gets its own process: the spread across
/// repetitions then shows that variation instead of hiding it in one process's luck.
fn bulk_child(kind: &str, streams: usize, bytes: u64, conns: usize) -> f64 {
    let (streams, bytes, conns) = (streams.to_string(), bytes.to_string(), conns.to_string());
    child(
        kind,
        &["bulk-child", kind, &streams, &bytes, &conns],
        &["GIB_S "],
    )[0]
}

/// Runs the child protocol's `args` in a fresh process of the binary that serves `kind` (the
/// litep2p binary for `litep2p`, this one for everything else) and returns the numbers its
/// output gives after each of `keys`.
fn child(kind: &str, args: &[&str], keys: &[&str]) -> Vec<f64> {
    let exe = if kind == SIDES[LITEP2P] {
        litep2p_exe().to_path_buf()
    } else {
        std::env::current_exe().unwrap()
    };
    let out = std::process::Command::new(&exe)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    keys.iter()
        .map(|key| {
            let Some(v) = text.lines().find_map(|l| l.strip_prefix(key)) else {
                panic!(
                    "child {} {args:?} failed ({}): {}\n{}",
                    exe.display(),
                    out.status,
                    text,
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            v.trim().parse().unwrap()
        })
        .collect()
}

/// The litep2p side's binary, `bench/litep2p/target/release/litep2p-bench`, built first (with
/// `cargo build --release --manifest-path bench/litep2p/Cargo.toml`) if it is missing or older
/// than its sources. Exits with instructions if protoc or the build is missing.
fn litep2p_exe() -> &'static Path {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let dir = root.join("bench/litep2p");
        let target = dir.join("target");
        let exe = target.join("release/litep2p-bench");
        let newest_source = ["Cargo.toml", "Cargo.lock", "src"]
            .iter()
            .filter_map(|p| newest_mtime(&dir.join(p)))
            .max();
        let built = std::fs::metadata(&exe).and_then(|m| m.modified()).ok();
        if built.is_some() && built >= newest_source {
            return exe;
        }
        let manifest = dir.join("Cargo.toml");
        let how = format!(
            "the litep2p column needs bench/litep2p built:\n  apt-get install -y protobuf-compiler   # litep2p's build needs protoc (or set PROTOC)\n  cargo build --release --manifest-path {} --target-dir {}\n(or leave litep2p out with --side ours|theirs)",
            manifest.display(),
            target.display()
        );
        let protoc = std::env::var_os("PROTOC").unwrap_or_else(|| "protoc".into());
        if !std::process::Command::new(&protoc)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            eprintln!("\nbench: no protoc ({}) found; {how}", protoc.to_string_lossy());
            std::process::exit(1);
        }
        eprintln!("bench: building {} ...", exe.display());
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let ok = std::process::Command::new(cargo)
            .args(["build", "--release", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target)
            .status()
            .is_ok_and(|s| s.success());
        if !ok || !exe.exists() {
            eprintln!("\nbench: building the litep2p side failed; {how}");
            std::process::exit(1);
        }
        exe
    })
}

/// The newest modification time of a file or of any file under a directory.
fn newest_mtime(p: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(p).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(p)
        .ok()?
        .filter_map(|e| newest_mtime(&e.ok()?.path()))
        .max()
}

/// The child's side of [`bulk_child`]: sets up, then measures one transfer of `bytes` over
/// `streams` streams on one connection, or (`conns` > 1) over one stream on each of `conns`
/// connections. Kinds: `ours` (tokio), `ours-smol`, `ours-async-std`, `theirs`, `tcp` (raw
/// loopback TCP), `noise` (bare Noise over TCP), `aead` (ChaCha20-Poly1305, 1 core).
fn bulk_child_run(
    kind: &str,
    streams: usize,
    bytes: u64,
    conns: usize,
    rt: &tokio::runtime::Runtime,
) -> f64 {
    assert!(
        conns == 1 || (streams == 1 && matches!(kind, "ours" | "theirs")),
        "bulk-child {kind}: several connections only for ours and theirs, one stream each"
    );
    let moved = bytes / (streams * conns) as u64 * (streams * conns) as u64;
    let d = match kind {
        "ours" => rt.block_on(async {
            let rt = plait_tokio::Tokio::current();
            let spawn: Spawn = Arc::new(|f| {
                tokio::spawn(f);
            });
            let ps = plait_server(rt.clone(), spawn.clone()).await;
            if conns > 1 {
                return plait_bulk_conns(rt, &ps, bytes, conns, &spawn).await;
            }
            let pc = plait_client(rt, &ps).await;
            plait_bulk(&pc, ps.peer, bytes, streams, &spawn).await
        }),
        "ours-smol" => {
            // smol's global executor: one thread per core, as tokio's.
            if std::env::var_os("SMOL_THREADS").is_none() {
                std::env::set_var("SMOL_THREADS", "2");
            }
            smol::block_on(async {
                let spawn: Spawn = Arc::new(|f| smol::spawn(f).detach());
                let ps = plait_server(plait_smol::Smol, spawn.clone()).await;
                let pc = plait_client(plait_smol::Smol, &ps).await;
                plait_bulk(&pc, ps.peer, bytes, streams, &spawn).await
            })
        }
        "ours-async-std" => async_std::task::block_on(async {
            let spawn: Spawn = Arc::new(|f| {
                async_std::task::spawn(f);
            });
            let ps = plait_server(plait_async_std::AsyncStd, spawn.clone()).await;
            let pc = plait_client(plait_async_std::AsyncStd, &ps).await;
            plait_bulk(&pc, ps.peer, bytes, streams, &spawn).await
        }),
        "theirs" => rt.block_on(async {
            let ls = libp2p_server().await;
            if conns > 1 {
                return libp2p_bulk_conns(&ls, bytes, conns).await;
            }
            let lc = libp2p_client().await;
            lc.dial(ls.listen_addr()).await.expect("dial");
            libp2p_bulk(&lc, ls.peer_id(), bytes, streams).await
        }),
        "tcp" => rt.block_on(tcp_bulk(bytes)),
        "noise" => rt.block_on(noise_tcp_bulk(bytes)),
        "aead" => chacha_bulk(bytes),
        other => panic!("unknown bulk kind {other}"),
    };
    gib_s(moved, d)
}

/// The order of the sides in repetition `rep`: ours, theirs, litep2p first in turn.
fn order(rep: usize) -> [usize; 3] {
    [rep % 3, (rep + 1) % 3, (rep + 2) % 3]
}

/// Every side, one fresh process each per repetition, rotating which goes first.
fn all_sides(o: &Opts, r: &mut Row, streams: usize, conns: usize) {
    for rep in 0..o.reps {
        for side in order(rep) {
            if o.runs(side) {
                r.samples[side].push(bulk_child(SIDES[side], streams, o.bytes, conns));
            }
        }
        eprint!(".");
    }
}

fn bench_throughput(o: &Opts, rows: &mut Vec<Row>) {
    let bytes = o.bytes;
    let mib = bytes >> 20;
    let mut r = row(format!("1 stream, {mib} MiB one way"), "GiB/s", false);
    let mut tcp = row("  ceiling: raw TCP loopback", "GiB/s", false);
    let mut pipe = row("  ceiling: bare Noise over TCP (no muxer)", "GiB/s", false);
    let mut aead = row(
        "  ceiling: ChaCha20-Poly1305 enc+dec, 1 core",
        "GiB/s",
        false,
    );
    all_sides(o, &mut r, 1, 1);
    if o.only.is_none() {
        for _ in 0..o.reps {
            tcp.samples[OURS].push(bulk_child("tcp", 1, bytes, 1));
            pipe.samples[OURS].push(bulk_child("noise", 1, bytes, 1));
            aead.samples[OURS].push(bulk_child("aead", 1, bytes, 1));
            eprint!(".");
        }
        let (bare, aead_1core) = (median(&pipe.samples[OURS]), median(&aead.samples[OURS]));
        let shares: Vec<String> = SIDES
            .iter()
            .zip(&r.samples)
            .map(|(name, v)| {
                let m = median(v);
                format!(
                    "{name} {:.0} % / {:.0} %",
                    100.0 * m / aead_1core,
                    100.0 * m / bare
                )
            })
            .collect();
        eprintln!(
            "\nthroughput, % of the bare ChaCha20-Poly1305 ceiling / of bare Noise over TCP: {}",
            shares.join(", ")
        );
    }
    rows.push(r);
    rows.push(tcp);
    rows.push(pipe);
    rows.push(aead);
}

fn bench_streams16(o: &Opts, rows: &mut Vec<Row>) {
    let mut r = row(
        format!("16 streams, {} MiB total", o.bytes >> 20),
        "GiB/s",
        false,
    );
    all_sides(o, &mut r, 16, 1);
    eprintln!();
    rows.push(r);
}

/// 64 connection pairs in one process (one listener, 64 dialer nodes), one stream each sending
/// `bytes / 64` at once; aggregate throughput from the first write to the last ack.
fn bench_conns64(o: &Opts, rows: &mut Vec<Row>) {
    let mut r = row(
        format!("64 conns streaming at once, {} MiB total", o.bytes >> 20),
        "GiB/s",
        false,
    );
    all_sides(o, &mut r, 1, 64);
    eprintln!();
    rows.push(r);
}

/// Connections made, and stream opens done, in a fresh child before anything is measured
/// (litep2p-bench uses the same numbers).
const WARMUP_CONNECTS: usize = 8;
const WARMUP_OPENS: usize = 64;

/// New connections: a fresh client node each time dials (TCP + Noise + Yamux), opens an echo
/// stream and gets one byte back. Latency: dial → echoed byte, sequential. Rate: 16 clients
/// in flight, node creation included. One fresh child per side and repetition.
fn bench_connect(o: &Opts, rows: &mut Vec<Row>) {
    let (seq, conc) = if o.quick { (40, 64) } else { (200, 512) };
    let mut lat = row(
        format!("connect → 1st echo byte, median of {seq}"),
        "ms",
        true,
    );
    let mut rate = row(
        format!("connections/s, {CONNECT_WORKERS} in flight"),
        "conn/s",
        false,
    );
    let (seq, conc) = (seq.to_string(), conc.to_string());
    for rep in 0..o.reps {
        for side in order(rep) {
            if o.runs(side) {
                let name = SIDES[side];
                let v = child(
                    name,
                    &["connect-child", name, &seq, &conc],
                    &["LAT_MS ", "CONN_S "],
                );
                lat.samples[side].push(v[0]);
                rate.samples[side].push(v[1]);
            }
        }
        eprint!(".");
    }
    eprintln!();
    rows.push(rate);
    rows.push(lat);
}

const CONNECT_WORKERS: usize = 16;

/// The child's side of [`bench_connect`] for ours and theirs: prints `LAT_MS` (median of `seq`
/// sequential connects) and `CONN_S` (rate of `conc` connects, 16 in flight).
async fn connect_child_run(side: &str, seq: usize, conc: usize) {
    let workers = CONNECT_WORKERS;
    let mut lats = Vec::new();
    let rate = if side == "ours" {
        let rt = plait_tokio::Tokio::current();
        let spawn: Spawn = Arc::new(|f| {
            tokio::spawn(f);
        });
        let ps = Arc::new(plait_server(rt.clone(), spawn).await);
        for i in 0..WARMUP_CONNECTS + seq {
            let c = Host::new(rt.clone(), plait_config()).unwrap();
            let t = Instant::now();
            c.dial(ps.addr.clone()).await.expect("dial");
            plait_echo_once(&c, ps.peer).await;
            if i >= WARMUP_CONNECTS {
                lats.push(t.elapsed().as_secs_f64() * 1e3);
            }
            c.close();
        }
        let start = Instant::now();
        let tasks = (0..workers).map(|_| {
            let ps = ps.clone();
            let rt = rt.clone();
            tokio::spawn(async move {
                for _ in 0..conc / workers {
                    let c = Host::new(rt.clone(), plait_config()).unwrap();
                    c.dial(ps.addr.clone()).await.expect("dial");
                    plait_echo_once(&c, ps.peer).await;
                    c.close();
                }
            })
        });
        futures::future::join_all(tasks).await;
        conc as f64 / start.elapsed().as_secs_f64()
    } else {
        let ls = libp2p_server().await;
        for i in 0..WARMUP_CONNECTS + seq {
            let c = libp2p_client().await;
            let t = Instant::now();
            let peer = c.dial(ls.listen_addr()).await.expect("dial");
            libp2p_echo_once(&c, peer).await;
            if i >= WARMUP_CONNECTS {
                lats.push(t.elapsed().as_secs_f64() * 1e3);
            }
            drop(c);
        }
        let start = Instant::now();
        let tasks = (0..workers).map(|_| {
            let ls = ls.clone();
            tokio::spawn(async move {
                for _ in 0..conc / workers {
                    let c = libp2p_client().await;
                    let peer = c.dial(ls.listen_addr()).await.expect("dial");
                    libp2p_echo_once(&c, peer).await;
                    drop(c);
                }
            })
        });
        futures::future::join_all(tasks).await;
        conc as f64 / start.elapsed().as_secs_f64()
    };
    println!("LAT_MS {}", median(&lats));
    println!("CONN_S {rate}");
}

/// Streams on one connection: open, negotiate `/echo/1.0.0`, 1-byte echo, close; sequential
/// and 64 in flight. One fresh child per side and repetition.
fn bench_open(o: &Opts, rows: &mut Vec<Row>) {
    let (seq, conc) = if o.quick { (200, 1024) } else { (2000, 8192) };
    let mut rs = row("stream open+echo+close, sequential", "streams/s", false);
    let mut rc = row(
        format!("stream open+echo+close, {OPEN_IN_FLIGHT} in flight"),
        "streams/s",
        false,
    );
    let (seq, conc) = (seq.to_string(), conc.to_string());
    for rep in 0..o.reps {
        for side in order(rep) {
            if o.runs(side) {
                let name = SIDES[side];
                let v = child(
                    name,
                    &["open-child", name, &seq, &conc],
                    &["SEQ_S ", "CONC_S "],
                );
                rs.samples[side].push(v[0]);
                rc.samples[side].push(v[1]);
            }
        }
        eprint!(".");
    }
    eprintln!();
    rows.push(rs);
    rows.push(rc);
}

const OPEN_IN_FLIGHT: usize = 64;

/// The child's side of [`bench_open`] for ours and theirs: prints `SEQ_S` (`seq` sequential)
/// and `CONC_S` (`conc` with 64 in flight), in streams/s.
async fn open_child_run(side: &str, seq: usize, conc: usize) {
    let inflight = OPEN_IN_FLIGHT;
    let (seq_s, conc_s);
    if side == "ours" {
        let rt = plait_tokio::Tokio::current();
        let spawn: Spawn = Arc::new(|f| {
            tokio::spawn(f);
        });
        let ps = plait_server(rt.clone(), spawn).await;
        let pc = plait_client(rt, &ps).await;
        for _ in 0..WARMUP_OPENS {
            plait_echo_once(&pc, ps.peer).await;
        }
        let t = Instant::now();
        for _ in 0..seq {
            plait_echo_once(&pc, ps.peer).await;
        }
        seq_s = seq as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let tasks = (0..inflight).map(|_| {
            let pc = pc.clone();
            let peer = ps.peer;
            tokio::spawn(async move {
                for _ in 0..conc / inflight {
                    plait_echo_once(&pc, peer).await;
                }
            })
        });
        futures::future::join_all(tasks).await;
        conc_s = conc as f64 / t.elapsed().as_secs_f64();
    } else {
        let ls = libp2p_server().await;
        let lc = Arc::new(libp2p_client().await);
        lc.dial(ls.listen_addr()).await.expect("dial");
        let lpeer = ls.peer_id();
        for _ in 0..WARMUP_OPENS {
            libp2p_echo_once(&lc, lpeer).await;
        }
        let t = Instant::now();
        for _ in 0..seq {
            libp2p_echo_once(&lc, lpeer).await;
        }
        seq_s = seq as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let tasks = (0..inflight).map(|_| {
            let lc = lc.clone();
            tokio::spawn(async move {
                for _ in 0..conc / inflight {
                    libp2p_echo_once(&lc, lpeer).await;
                }
            })
        });
        futures::future::join_all(tasks).await;
        conc_s = conc as f64 / t.elapsed().as_secs_f64();
    }
    println!("SEQ_S {seq_s}");
    println!("CONC_S {conc_s}");
}

/// Runs `mem-child SIDE WHAT N` in a fresh process; returns bytes per item.
fn mem_child(side: &str, what: &str, n: usize) -> f64 {
    child(
        side,
        &["mem-child", side, what, &n.to_string()],
        &["PER_ITEM_BYTES "],
    )[0]
}

fn bench_memory(o: &Opts, rows: &mut Vec<Row>) {
    let (conns, streams) = if o.quick { (200, 2000) } else { (1000, 10_000) };
    let reps = if o.quick { 1 } else { o.reps.min(3) };
    let mut rc = row(
        format!("RSS per idle connection, {conns} open"),
        "KiB",
        true,
    );
    let mut rs = row(format!("RSS per idle stream, {streams} open"), "KiB", true);
    for rep in 0..reps {
        for side in order(rep) {
            if o.runs(side) {
                let name = SIDES[side];
                rc.samples[side].push(mem_child(name, "conns", conns) / 1024.0);
                rs.samples[side].push(mem_child(name, "streams", streams) / 1024.0);
            }
        }
        eprint!(".");
    }
    eprintln!();
    rows.push(rc);
    rows.push(rs);
}

fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Connections are spread over this many client nodes when streams are measured (rust-libp2p's
/// Yamux allows 512 streams per connection and the test peer opens streams on the first
/// connection to a peer).
const STREAM_CLIENTS: usize = 25;

async fn mem_child_run(side: &str, what: &str, n: usize) {
    const IN_FLIGHT: usize = 64;
    let settle = || tokio::time::sleep(Duration::from_millis(1500));
    if side == "ours" {
        let rt = plait_tokio::Tokio::current();
        let spawn: Spawn = Arc::new(|f| {
            tokio::spawn(f);
        });
        let ps = plait_server(rt.clone(), spawn).await;
        if what == "conns" {
            let c = plait_client(rt, &ps).await;
            settle().await;
            let before = vm_rss();
            futures::stream::iter(0..n)
                .map(|_| {
                    let c = c.clone();
                    let a = ps.addr.clone();
                    async move { c.dial(a).await.expect("dial") }
                })
                .buffer_unordered(IN_FLIGHT)
                .collect::<Vec<_>>()
                .await;
            settle().await;
            assert!(c.num_connections() > n, "connections were reused");
            println!(
                "PER_ITEM_BYTES {}",
                (vm_rss() as f64 - before as f64) / n as f64
            );
        } else {
            let mut clients = Vec::new();
            for _ in 0..STREAM_CLIENTS {
                clients.push(plait_client(rt.clone(), &ps).await);
            }
            settle().await;
            let before = vm_rss();
            let per = n / STREAM_CLIENTS;
            let peer = ps.peer;
            let held: Vec<_> = futures::stream::iter(0..per * STREAM_CLIENTS)
                .map(|i| {
                    let c = clients[i % STREAM_CLIENTS].clone();
                    async move {
                        // Past 256 unacknowledged streams `new_stream` waits for the
                        // remote's acknowledgements (`swarm::Error::AckBacklogFull`).
                        c.new_stream(peer, [IDLE]).await.expect("open")
                    }
                })
                .buffer_unordered(IN_FLIGHT)
                .collect()
                .await;
            while ps.held.lock().unwrap().len() < held.len() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            settle().await;
            println!(
                "PER_ITEM_BYTES {}",
                (vm_rss() as f64 - before as f64) / held.len() as f64
            );
            drop(ps.host.clone());
        }
    } else {
        let ls = libp2p_server().await;
        if what == "conns" {
            let c = libp2p_client().await;
            c.dial(ls.listen_addr()).await.expect("dial");
            settle().await;
            let before = vm_rss();
            let c = &c;
            let ls = &ls;
            futures::stream::iter(0..n)
                .map(|_| async move { c.dial(ls.listen_addr()).await.expect("dial") })
                .buffer_unordered(IN_FLIGHT)
                .collect::<Vec<_>>()
                .await;
            settle().await;
            println!(
                "PER_ITEM_BYTES {}",
                (vm_rss() as f64 - before as f64) / n as f64
            );
        } else {
            let mut clients = Vec::new();
            for _ in 0..STREAM_CLIENTS {
                let c = libp2p_client().await;
                c.dial(ls.listen_addr()).await.expect("dial");
                clients.push(c);
            }
            settle().await;
            let before = vm_rss();
            let per = n / STREAM_CLIENTS;
            let peer = ls.peer_id();
            let clients = &clients;
            let held: Vec<_> = futures::stream::iter(0..per * STREAM_CLIENTS)
                .map(|i| async move {
                    clients[i % STREAM_CLIENTS]
                        .open_stream(peer, IDLE)
                        .await
                        .expect("open")
                })
                .buffer_unordered(IN_FLIGHT)
                .collect()
                .await;
            while IDLE_HELD.load(Ordering::Relaxed) < held.len() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            settle().await;
            println!(
                "PER_ITEM_BYTES {}",
                (vm_rss() as f64 - before as f64) / held.len() as f64
            );
        }
    }
}

fn bench_runtimes(o: &Opts, rows: &mut Vec<Row>) {
    let mib = o.bytes >> 20;
    let mut rows_by_kind = [
        (
            "ours",
            row(format!("1 stream, {mib} MiB: tokio (ref.)"), "GiB/s", false),
        ),
        (
            "ours-smol",
            row(format!("1 stream, {mib} MiB: smol"), "GiB/s", false),
        ),
        (
            "ours-async-std",
            row(format!("1 stream, {mib} MiB: async-std"), "GiB/s", false),
        ),
    ];
    for _ in 0..o.reps {
        for (kind, r) in &mut rows_by_kind {
            r.samples[OURS].push(bulk_child(kind, 1, o.bytes, 1));
        }
        eprint!(".");
    }
    eprintln!();
    rows.extend(rows_by_kind.into_iter().map(|(_, r)| r));
}

const ALL: &[&str] = &[
    "throughput",
    "streams16",
    "conns64",
    "connect",
    "open",
    "memory",
    "runtimes",
];

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The child protocol (see the module docs); litep2p-bench speaks it too.
    let num = |i: usize| -> usize { args[i].parse().expect("number") };
    let child_run = match args.first().map(String::as_str) {
        Some("bulk-child") => {
            let conns = if args.len() > 4 { num(4) } else { 1 };
            let g = bulk_child_run(&args[1], num(2), num(3) as u64, conns, &rt);
            println!("GIB_S {g}");
            true
        }
        Some("connect-child") => {
            rt.block_on(connect_child_run(&args[1], num(2), num(3)));
            true
        }
        Some("open-child") => {
            rt.block_on(open_child_run(&args[1], num(2), num(3)));
            true
        }
        Some("mem-child") => {
            rt.block_on(mem_child_run(&args[1], &args[2], num(3)));
            true
        }
        _ => false,
    };
    if child_run {
        // Skip orderly shutdown of the hosts and their (up to thousands of) connections.
        std::process::exit(0);
    }
    let mut o = Opts {
        quick: false,
        bytes: 1 << 30,
        reps: 5,
        only: None,
    };
    let mut names = Vec::new();
    let mut it = args.iter();
    let mut bytes = None;
    let mut reps = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            // Inherited by the child processes.
            "--tls" => std::env::set_var("PLAIT_BENCH_TLS", "1"),
            "--bytes" => bytes = Some(parse_size(it.next().expect("--bytes N"))),
            "--reps" => reps = Some(it.next().expect("--reps N").parse().expect("number")),
            "--side" => {
                let side = it.next().map(String::as_str).unwrap_or("");
                let Some(i) = SIDES.iter().position(|s| *s == side) else {
                    eprintln!("--side takes one of {}", SIDES.join("|"));
                    std::process::exit(2);
                };
                o.only = Some(i);
            }
            "all" => names.extend(ALL.iter().map(|s| s.to_string())),
            n if ALL.contains(&n) => names.push(n.to_string()),
            other => {
                eprintln!(
                    "usage: bench [all|{}]... [--quick] [--bytes N[K|M|G]] [--reps N] [--side ours|theirs|litep2p] [--tls]\nunknown argument {other}",
                    ALL.join("|")
                );
                std::process::exit(2);
            }
        }
    }
    if names.is_empty() {
        names.extend(ALL.iter().map(|s| s.to_string()));
    }
    if o.quick {
        o.bytes = 64 << 20;
        o.reps = 3;
    }
    if let Some(b) = bytes {
        o.bytes = b;
    }
    if let Some(r) = reps {
        o.reps = r;
    }
    if o.runs(LITEP2P) && names.iter().any(|n| n != "runtimes") {
        // Build (or find) the litep2p side before anything runs, so that a missing protoc
        // stops the run at once instead of after minutes of the other sides.
        litep2p_exe();
    }
    eprintln!(
        "plait vs rust-libp2p 0.57 vs litep2p 0.16 over {}: {} ({} bytes, {} reps)",
        if tls() {
            "TLS (litep2p: none)"
        } else {
            "Noise"
        },
        names.join(" "),
        o.bytes,
        o.reps
    );
    let mut rows = Vec::new();
    let mut printed = 0;
    for name in &names {
        eprint!("{name} ");
        match name.as_str() {
            "throughput" => bench_throughput(&o, &mut rows),
            "streams16" => bench_streams16(&o, &mut rows),
            "conns64" => bench_conns64(&o, &mut rows),
            "connect" => bench_connect(&o, &mut rows),
            "open" => bench_open(&o, &mut rows),
            "memory" => bench_memory(&o, &mut rows),
            "runtimes" => bench_runtimes(&o, &mut rows),
            _ => unreachable!(),
        }
        // Print as we go, so one failing benchmark does not lose the others' figures.
        print_rows(&rows[printed..]);
        printed = rows.len();
    }
    println!("\nAll results:");
    print_rows(&rows);
    std::process::exit(0);
}

fn parse_size(s: &str) -> u64 {
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().expect("size") * mult
}
