//! Benchmarks of Plait side by side with rust-libp2p 0.57, in one run.
//!
//! ```text
//! cargo run --release -p plait-tests --bin bench -- all [--quick] [--bytes N] [--reps N] [--side ours|theirs]
//! cargo run --release -p plait-tests --bin bench -- throughput streams16 connect open memory runtimes
//! ```
//!
//! Every figure is measured for our stack (tokio runtime, Noise + Yamux over loopback TCP) and
//! for rust-libp2p 0.57 (the in-process peer of `plait_tests::libp2p_peer`: TCP + Noise + Yamux,
//! streams through its custom `ConnectionHandler` that negotiates every stream concurrently), in
//! the same run, alternating which side goes first, several repetitions; the table gives the
//! median of each side, the spread (min–max) and the ratio of the medians. Both ends of every
//! connection live in one process on one 2-worker tokio runtime (a multi-thread runtime with
//! as many workers as cores is what both stacks are made for).
//!
//! Bulk transfers (throughput, 16 streams, their ceilings, the runtimes) run one repetition per
//! fresh child process (`bench bulk-child ...`): where a process's long-lived tasks settle on
//! the workers changes the figure more than anything else on a small machine.
//!
//! Memory is measured in fresh child processes (`bench mem-child ...`), one per measurement,
//! run one after the other: the child holds both ends, so the figure is per connection (or
//! stream) *pair*, dialer plus listener.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use plait_driver::plait_core::identity::PeerId as PlaitPeerId;
use plait_driver::plait_core::multiaddr::{Multiaddr as PlaitAddr, Protocol};
use plait_driver::plait_core::swarm::Limits;
use plait_driver::{Host, HostConfig, Runtime};
use plait_tests::libp2p_peer::{Libp2pPeer, PeerConfig, ECHO_PROTOCOL};

const SINK: &str = "/plait-bench/sink/1.0.0";
const IDLE: &str = "/plait-bench/idle/1.0.0";
const CHUNK: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Options and statistics

#[derive(Clone, Debug)]
struct Opts {
    quick: bool,
    bytes: u64,
    reps: usize,
    /// Which stacks the benchmarks run (for profiling one of them alone; not memory).
    side: Side,
}

/// The stacks a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Both,
    Ours,
    Theirs,
}

impl Side {
    fn runs(self, side: u8) -> bool {
        match self {
            Self::Both => true,
            Self::Ours => side == 0,
            Self::Theirs => side == 1,
        }
    }
}

/// One measured quantity: samples of ours, theirs, and ceilings.
struct Row {
    name: String,
    unit: &'static str,
    ours: Vec<f64>,
    theirs: Vec<f64>,
    /// Lower is better (memory, latency): the ratio is still ours/theirs.
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
        "| {:<44} | {:>9} | {:>10} | {:>10} | {:>7} | {:<30} | {:<30} |",
        "benchmark", "unit", "ours", "theirs", "ratio", "ours spread", "theirs spread"
    );
    println!(
        "|{:-<46}|{:-<11}|{:-<12}|{:-<12}|{:-<9}|{:-<32}|{:-<32}|",
        "", "", "", "", "", "", ""
    );
    for r in rows {
        let o = median(&r.ours);
        let t = median(&r.theirs);
        let ratio = if r.theirs.is_empty() {
            "-".to_string()
        } else {
            format!("{:.2}x", o / t)
        };
        println!(
            "| {:<44} | {:>9} | {:>10} | {:>10} | {:>7} | {:<30} | {:<30} |",
            r.name,
            r.unit,
            fmt(o),
            fmt(t),
            ratio,
            spread(&r.ours),
            spread(&r.theirs)
        );
        let _ = r.lower_better;
    }
    let _ = std::io::stdout().flush();
}

fn row(name: impl Into<String>, unit: &'static str, lower_better: bool) -> Row {
    Row {
        name: name.into(),
        unit,
        ours: Vec::new(),
        theirs: Vec::new(),
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

fn plait_config() -> HostConfig {
    let mut c = HostConfig::random();
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

/// One bulk transfer measured in a fresh child process (`bench bulk-child KIND STREAMS BYTES`),
/// in GiB/s. A process's first thread placement decides a lot on a small machine (the same
/// transfer runs at 0.6 or 1.0 GiB/s depending on which worker threads the long-lived
/// connection tasks settle on), so every repetition gets its own process: the spread across
/// repetitions then shows that variation instead of hiding it in one process's luck.
fn bulk_child(kind: &str, streams: usize, bytes: u64) -> f64 {
    let (streams, bytes) = (streams.to_string(), bytes.to_string());
    child_figure(&["bulk-child", kind, &streams, &bytes], "GIB_S ")
}

/// Runs this binary with `args` and returns the number its output gives after `key`.
fn child_figure(args: &[&str], key: &str) -> f64 {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(args)
        .output()
        .expect("run child");
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(v) = text.lines().find_map(|l| l.strip_prefix(key)) else {
        panic!(
            "child {args:?} failed: {}\n{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    v.trim().parse().unwrap()
}

/// The child's side of [`bulk_child`]: sets up, then measures one transfer of `bytes` over
/// `streams` streams. Kinds: `ours` (tokio), `ours-smol`, `ours-async-std`, `theirs`,
/// `tcp` (raw loopback TCP), `noise` (bare Noise over TCP), `aead` (ChaCha20-Poly1305, 1 core).
fn bulk_child_run(kind: &str, streams: usize, bytes: u64, rt: &tokio::runtime::Runtime) -> f64 {
    let d = match kind {
        "ours" => rt.block_on(async {
            let rt = plait_tokio::Tokio::current();
            let spawn: Spawn = Arc::new(|f| {
                tokio::spawn(f);
            });
            let ps = plait_server(rt.clone(), spawn.clone()).await;
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
            let lc = libp2p_client().await;
            lc.dial(ls.listen_addr()).await.expect("dial");
            libp2p_bulk(&lc, ls.peer_id(), bytes, streams).await
        }),
        "tcp" => rt.block_on(tcp_bulk(bytes)),
        "noise" => rt.block_on(noise_tcp_bulk(bytes)),
        "aead" => chacha_bulk(bytes),
        other => panic!("unknown bulk kind {other}"),
    };
    gib_s(bytes, d)
}

/// Ours and theirs, one fresh process each per repetition, alternating which goes first.
fn ours_vs_theirs(o: &Opts, r: &mut Row, streams: usize) {
    for rep in 0..o.reps {
        for side in order(rep) {
            if !o.side.runs(side) {
                continue;
            }
            if side == 0 {
                r.ours.push(bulk_child("ours", streams, o.bytes));
            } else {
                r.theirs.push(bulk_child("theirs", streams, o.bytes));
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
    ours_vs_theirs(o, &mut r, 1);
    if o.side == Side::Both {
        for _ in 0..o.reps {
            tcp.ours.push(bulk_child("tcp", 1, bytes));
            pipe.ours.push(bulk_child("noise", 1, bytes));
            aead.ours.push(bulk_child("aead", 1, bytes));
            eprint!(".");
        }
        let (ours, theirs) = (median(&r.ours), median(&r.theirs));
        let (bare, aead_1core) = (median(&pipe.ours), median(&aead.ours));
        eprintln!(
            "\nthroughput: ours is {:.0} % of the bare ChaCha20-Poly1305 ceiling (theirs {:.0} %), \
             {:.0} % of bare Noise over TCP (theirs {:.0} %)",
            100.0 * ours / aead_1core,
            100.0 * theirs / aead_1core,
            100.0 * ours / bare,
            100.0 * theirs / bare,
        );
    }
    rows.push(r);
    rows.push(tcp);
    rows.push(pipe);
    rows.push(aead);
}

/// Even repetitions run ours first, odd ones theirs first.
fn order(rep: usize) -> [u8; 2] {
    if rep.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

fn bench_streams16(o: &Opts, rows: &mut Vec<Row>) {
    let mut r = row(
        format!("16 streams, {} MiB total", o.bytes >> 20),
        "GiB/s",
        false,
    );
    ours_vs_theirs(o, &mut r, 16);
    eprintln!();
    rows.push(r);
}

/// New connections: a fresh client node each time dials (TCP + Noise + Yamux), opens an echo
/// stream and gets one byte back. Latency: dial → echoed byte, sequential. Rate: 16 clients
/// in flight, node creation included.
async fn bench_connect(o: &Opts, rows: &mut Vec<Row>) {
    let (seq, conc) = if o.quick { (40, 64) } else { (200, 512) };
    let workers = 16;
    let mut lat = row(
        format!("connect → 1st echo byte, median of {seq}"),
        "ms",
        true,
    );
    let mut rate = row(
        format!("connections/s, {workers} in flight"),
        "conn/s",
        false,
    );
    let rt = plait_tokio::Tokio::current();
    let spawn: Spawn = Arc::new(|f| {
        tokio::spawn(f);
    });
    let ps = Arc::new(plait_server(rt.clone(), spawn).await);
    let ls = libp2p_server().await;
    for rep in 0..o.reps {
        for side in order(rep) {
            if !o.side.runs(side) {
                continue;
            }
            let mut lats = Vec::new();
            if side == 0 {
                for _ in 0..seq {
                    let c = Host::new(rt.clone(), plait_config()).unwrap();
                    let t = Instant::now();
                    c.dial(ps.addr.clone()).await.expect("dial");
                    plait_echo_once(&c, ps.peer).await;
                    lats.push(t.elapsed().as_secs_f64() * 1e3);
                    c.close();
                }
                lat.ours.push(median(&lats));
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
                rate.ours.push(conc as f64 / start.elapsed().as_secs_f64());
            } else {
                for _ in 0..seq {
                    let c = libp2p_client().await;
                    let t = Instant::now();
                    let peer = c.dial(ls.listen_addr()).await.expect("dial");
                    libp2p_echo_once(&c, peer).await;
                    lats.push(t.elapsed().as_secs_f64() * 1e3);
                    drop(c);
                }
                lat.theirs.push(median(&lats));
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
                rate.theirs
                    .push(conc as f64 / start.elapsed().as_secs_f64());
            }
            // Let closed connections drain before the other side runs.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprint!(".");
    }
    eprintln!();
    rows.push(rate);
    rows.push(lat);
}

/// Streams on one connection: open, negotiate `/echo/1.0.0`, 1-byte echo, close.
async fn bench_open(o: &Opts, rows: &mut Vec<Row>) {
    let (seq, conc) = if o.quick { (200, 1024) } else { (2000, 8192) };
    let inflight = 64;
    let mut rs = row("stream open+echo+close, sequential", "streams/s", false);
    let mut rc = row(
        format!("stream open+echo+close, {inflight} in flight"),
        "streams/s",
        false,
    );
    let rt = plait_tokio::Tokio::current();
    let spawn: Spawn = Arc::new(|f| {
        tokio::spawn(f);
    });
    let ps = plait_server(rt.clone(), spawn).await;
    let pc = plait_client(rt, &ps).await;
    let ls = libp2p_server().await;
    let lc = Arc::new(libp2p_client().await);
    lc.dial(ls.listen_addr()).await.expect("dial");
    let lpeer = ls.peer_id();
    for rep in 0..o.reps {
        for side in order(rep) {
            if !o.side.runs(side) {
                continue;
            }
            if side == 0 {
                let t = Instant::now();
                for _ in 0..seq {
                    plait_echo_once(&pc, ps.peer).await;
                }
                rs.ours.push(seq as f64 / t.elapsed().as_secs_f64());
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
                rc.ours.push(conc as f64 / t.elapsed().as_secs_f64());
            } else {
                let t = Instant::now();
                for _ in 0..seq {
                    libp2p_echo_once(&lc, lpeer).await;
                }
                rs.theirs.push(seq as f64 / t.elapsed().as_secs_f64());
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
                rc.theirs.push(conc as f64 / t.elapsed().as_secs_f64());
            }
        }
        eprint!(".");
    }
    eprintln!();
    rows.push(rs);
    rows.push(rc);
}

/// Runs `bench mem-child SIDE WHAT N` in a fresh process; returns bytes per item.
fn mem_child(side: &str, what: &str, n: usize) -> f64 {
    child_figure(
        &["mem-child", side, what, &n.to_string()],
        "PER_ITEM_BYTES ",
    )
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
            let name = if side == 0 { "ours" } else { "theirs" };
            let c = mem_child(name, "conns", conns) / 1024.0;
            let s = mem_child(name, "streams", streams) / 1024.0;
            if side == 0 {
                rc.ours.push(c);
                rs.ours.push(s);
            } else {
                rc.theirs.push(c);
                rs.theirs.push(s);
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
            r.ours.push(bulk_child(kind, 1, o.bytes));
        }
        eprint!(".");
    }
    eprintln!();
    rows.extend(rows_by_kind.into_iter().map(|(_, r)| r));
}

const ALL: &[&str] = &[
    "throughput",
    "streams16",
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
    if args.first().map(String::as_str) == Some("bulk-child") {
        let streams = args[2].parse().unwrap();
        let bytes = args[3].parse().unwrap();
        println!("GIB_S {}", bulk_child_run(&args[1], streams, bytes, &rt));
        // Skip orderly shutdown of the hosts.
        std::process::exit(0);
    }
    if args.first().map(String::as_str) == Some("mem-child") {
        let n = args[3].parse().unwrap();
        rt.block_on(mem_child_run(&args[1], &args[2], n));
        // Skip orderly shutdown of thousands of connections.
        std::process::exit(0);
    }
    let mut o = Opts {
        quick: false,
        bytes: 1 << 30,
        reps: 5,
        side: Side::Both,
    };
    let mut names = Vec::new();
    let mut it = args.iter();
    let mut bytes = None;
    let mut reps = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--bytes" => bytes = Some(parse_size(it.next().expect("--bytes N"))),
            "--reps" => reps = Some(it.next().expect("--reps N").parse().expect("number")),
            "--side" => {
                o.side = match it.next().map(String::as_str) {
                    Some("ours") => Side::Ours,
                    Some("theirs") => Side::Theirs,
                    _ => Side::Both,
                }
            }
            "all" => names.extend(ALL.iter().map(|s| s.to_string())),
            n if ALL.contains(&n) => names.push(n.to_string()),
            other => {
                eprintln!(
                    "usage: bench [all|{}]... [--quick] [--bytes N[K|M|G]] [--reps N] [--side ours|theirs]\nunknown argument {other}",
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
    eprintln!(
        "plait vs rust-libp2p 0.57: {} ({} bytes, {} reps)",
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
            "connect" => rt.block_on(bench_connect(&o, &mut rows)),
            "open" => rt.block_on(bench_open(&o, &mut rows)),
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
