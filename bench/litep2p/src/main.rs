//! The litep2p 0.16 side of Plait's side-by-side benchmark (`tests/src/bin/bench.rs`).
//!
//! `bench` runs this binary as a child process, one process per measurement, exactly as it runs
//! itself for its own two sides, with the same arguments and the same result lines:
//!
//! ```text
//! litep2p-bench bulk-child litep2p STREAMS BYTES [CONNS]   -> GIB_S x
//! litep2p-bench connect-child litep2p SEQ CONC             -> LAT_MS x, CONN_S y
//! litep2p-bench open-child litep2p SEQ CONC                -> SEQ_S x, CONC_S y
//! litep2p-bench mem-child litep2p conns|streams N          -> PER_ITEM_BYTES x
//! ```
//!
//! Every node is a `litep2p::Litep2p` with TCP (Noise + Yamux, litep2p's defaults except
//! `nodelay` on, no `SO_REUSEPORT` on dialers and a 1-hour keep-alive so that idle connections
//! stay open), ping and identify, and three user protocols
//! (`/plait-bench/sink/1.0.0`, `/echo/1.0.0`, `/plait-bench/idle/1.0.0`) implemented on
//! litep2p's raw substream API: a [`UserProtocol`] with `ProtocolCodec::Unspecified`, whose
//! event loop opens substreams on request (`TransportService::open_substream`) and hands every
//! inbound substream to a spawned handler. Substreams are read and written through their
//! `tokio::io::AsyncRead`/`AsyncWrite` implementations. Both ends of every connection run in
//! this one process on one 2-worker multi-thread tokio runtime.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use litep2p::codec::ProtocolCodec;
use litep2p::config::ConfigBuilder;
use litep2p::error::SubstreamError;
use litep2p::protocol::libp2p::{identify, ping};
use litep2p::protocol::{Direction, TransportEvent, TransportService, UserProtocol};
use litep2p::substream::Substream;
use litep2p::transport::tcp::config::Config as TcpConfig;
use litep2p::types::multiaddr::{Multiaddr, Protocol};
use litep2p::types::SubstreamId;
use litep2p::{Litep2p, PeerId, ProtocolName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};

const SINK: &str = "/plait-bench/sink/1.0.0";
const ECHO: &str = "/echo/1.0.0";
const IDLE: &str = "/plait-bench/idle/1.0.0";
const CHUNK: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// A user protocol on litep2p's raw substream API

/// Requests to a protocol's event loop.
enum Cmd {
    /// Dial `Multiaddr` (ending in `/p2p/PeerId`); answered once this protocol sees the
    /// connection.
    Dial(Multiaddr, PeerId, oneshot::Sender<Result<(), String>>),
    /// Open (and negotiate) a substream to the peer.
    Open(PeerId, oneshot::Sender<Result<Substream, String>>),
    /// Close the connection to the peer.
    Close(PeerId),
}

/// What a protocol does with an inbound substream (it spawns a task where it needs one).
type Handler = Arc<dyn Fn(Substream) + Send + Sync>;

struct BenchProtocol {
    name: &'static str,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    /// For retrying an open whose connection channel was full.
    retry: mpsc::UnboundedSender<Cmd>,
    inbound: Handler,
}

/// The application's handle on one protocol of one node.
#[derive(Clone)]
struct ProtocolHandle(mpsc::UnboundedSender<Cmd>);

impl ProtocolHandle {
    async fn dial(&self, addr: &Multiaddr, peer: PeerId) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(Cmd::Dial(addr.clone(), peer, tx))
            .map_err(|_| "node gone")?;
        rx.await.map_err(|_| "node gone")?
    }

    async fn open(&self, peer: PeerId) -> Result<Substream, String> {
        let (tx, rx) = oneshot::channel();
        self.0.send(Cmd::Open(peer, tx)).map_err(|_| "node gone")?;
        rx.await.map_err(|_| "node gone")?
    }

    fn close(&self, peer: PeerId) {
        let _ = self.0.send(Cmd::Close(peer));
    }
}

fn bench_protocol(name: &'static str, inbound: Handler) -> (BenchProtocol, ProtocolHandle) {
    let (tx, rx) = mpsc::unbounded_channel();
    let protocol = BenchProtocol {
        name,
        cmds: rx,
        retry: tx.clone(),
        inbound,
    };
    (protocol, ProtocolHandle(tx))
}

type OpenReply = oneshot::Sender<Result<Substream, String>>;

/// The state of a protocol's event loop.
#[derive(Default)]
struct Loop {
    connected: HashSet<PeerId>,
    dialing: HashMap<PeerId, Vec<oneshot::Sender<Result<(), String>>>>,
    opening: HashMap<SubstreamId, OpenReply>,
    /// Opens asked for before this protocol saw the connection.
    parked: HashMap<PeerId, Vec<OpenReply>>,
}

impl Loop {
    fn open(
        &mut self,
        service: &mut TransportService,
        retry: &mpsc::UnboundedSender<Cmd>,
        peer: PeerId,
        reply: OpenReply,
    ) {
        match service.open_substream(peer) {
            Ok(id) => {
                self.opening.insert(id, reply);
            }
            Err(SubstreamError::PeerDoesNotExist(_)) => {
                self.parked.entry(peer).or_default().push(reply)
            }
            Err(SubstreamError::ChannelClogged) => {
                let retry = retry.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let _ = retry.send(Cmd::Open(peer, reply));
                });
            }
            Err(e) => {
                let _ = reply.send(Err(format!("open: {e}")));
            }
        }
    }
}

#[async_trait::async_trait]
impl UserProtocol for BenchProtocol {
    fn protocol(&self) -> ProtocolName {
        ProtocolName::from(self.name)
    }

    /// `Unspecified`: litep2p hands over the raw substream (`AsyncRead + AsyncWrite`).
    fn codec(&self) -> ProtocolCodec {
        ProtocolCodec::Unspecified
    }

    async fn run(mut self: Box<Self>, mut service: TransportService) -> litep2p::Result<()> {
        let mut st = Loop::default();
        loop {
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    None => return Ok(()),
                    Some(Cmd::Dial(addr, peer, reply)) => {
                        if st.connected.contains(&peer) {
                            let _ = reply.send(Ok(()));
                        } else {
                            match service.dial_address(addr) {
                                Ok(()) => st.dialing.entry(peer).or_default().push(reply),
                                Err(e) => {
                                    let _ = reply.send(Err(format!("dial: {e:?}")));
                                }
                            }
                        }
                    }
                    Some(Cmd::Open(peer, reply)) => st.open(&mut service, &self.retry, peer, reply),
                    Some(Cmd::Close(peer)) => {
                        let _ = service.force_close(peer);
                    }
                },
                event = service.next() => match event {
                    None => return Ok(()),
                    Some(TransportEvent::ConnectionEstablished { peer, .. }) => {
                        st.connected.insert(peer);
                        for reply in st.dialing.remove(&peer).unwrap_or_default() {
                            let _ = reply.send(Ok(()));
                        }
                        for reply in st.parked.remove(&peer).unwrap_or_default() {
                            st.open(&mut service, &self.retry, peer, reply);
                        }
                    }
                    Some(TransportEvent::ConnectionClosed { peer }) => {
                        st.connected.remove(&peer);
                    }
                    Some(TransportEvent::DialFailure { peer, addresses }) => {
                        for reply in st.dialing.remove(&peer).unwrap_or_default() {
                            let _ = reply.send(Err(format!("dial {addresses:?} failed")));
                        }
                    }
                    Some(TransportEvent::SubstreamOpened { substream, direction, .. }) => {
                        match direction {
                            Direction::Inbound => (self.inbound)(substream),
                            Direction::Outbound(id) => {
                                if let Some(reply) = st.opening.remove(&id) {
                                    let _ = reply.send(Ok(substream));
                                }
                            }
                        }
                    }
                    Some(TransportEvent::SubstreamOpenFailure { substream, error }) => {
                        if let Some(reply) = st.opening.remove(&substream) {
                            let _ = reply.send(Err(format!("open: {error}")));
                        }
                    }
                },
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes

/// Inbound idle substreams, held open by the listener.
#[derive(Clone, Default)]
struct Held(Arc<Mutex<Vec<Substream>>>);

/// One litep2p node: its event loop runs in a spawned task until the node is dropped.
struct Node {
    peer: PeerId,
    /// Listen address with `/p2p/PeerId` (listening nodes only).
    addr: Option<Multiaddr>,
    sink: ProtocolHandle,
    echo: ProtocolHandle,
    idle: ProtocolHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A node serving sink, echo and idle; `listen` binds 127.0.0.1 on a free port, otherwise the
/// node only dials (no listener, so no `SO_REUSEPORT` dialing from a listen port either).
fn node(listen: bool, held: Held) -> Node {
    let sink_handler: Handler = Arc::new(|mut s: Substream| {
        tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match s.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
            let _ = s.write_all(b"k").await;
            let _ = s.shutdown().await;
        });
    });
    let echo_handler: Handler = Arc::new(|mut s: Substream| {
        tokio::spawn(async move {
            // go's echo example: one line in, the same line out, close.
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            loop {
                match s.read(&mut b).await {
                    Ok(1) => {
                        line.push(b[0]);
                        if b[0] == b'\n' {
                            break;
                        }
                    }
                    _ => return,
                }
            }
            let _ = s.write_all(&line).await;
            let _ = s.shutdown().await;
            let _ = s.read(&mut b).await;
        });
    });
    let idle_handler: Handler = Arc::new(move |s| held.0.lock().unwrap().push(s));
    let (sink_p, sink) = bench_protocol(SINK, sink_handler);
    let (echo_p, echo) = bench_protocol(ECHO, echo_handler);
    let (idle_p, idle) = bench_protocol(IDLE, idle_handler);
    let (ping_cfg, mut ping_events) = ping::Config::default();
    let (identify_cfg, mut identify_events) =
        identify::Config::new("ipfs/0.1.0".into(), Some("litep2p-bench".into()));
    let tcp = TcpConfig {
        listen_addresses: if listen {
            vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]
        } else {
            Vec::new()
        },
        reuse_port: false,
        nodelay: true,
        ..TcpConfig::default()
    };
    let config = ConfigBuilder::new()
        .with_tcp(tcp)
        .with_libp2p_ping(ping_cfg)
        .with_libp2p_identify(identify_cfg)
        .with_user_protocol(Box::new(sink_p))
        .with_user_protocol(Box::new(echo_p))
        .with_user_protocol(Box::new(idle_p))
        // Idle connections stay open, as on the other sides.
        .with_keep_alive_timeout(Duration::from_secs(3600))
        .build();
    let mut litep2p = Litep2p::new(config).expect("litep2p");
    let peer = *litep2p.local_peer_id();
    let addr = litep2p.listen_addresses().next().cloned().map(|a| {
        if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
            a
        } else {
            a.with(Protocol::P2p(peer.into()))
        }
    });
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                event = litep2p.next_event() => if event.is_none() { break },
                Some(_) = ping_events.next() => {}
                Some(_) = identify_events.next() => {}
            }
        }
    });
    Node {
        peer,
        addr,
        sink,
        echo,
        idle,
        task,
    }
}

fn server() -> Node {
    node(true, Held::default())
}

/// A dialer connected to `server` (through the sink protocol's view of the connection).
async fn client(server: &Node) -> Node {
    let c = node(false, Held::default());
    c.sink
        .dial(server.addr.as_ref().unwrap(), server.peer)
        .await
        .expect("dial");
    c
}

// ---------------------------------------------------------------------------------------------
// The benchmarks' operations, as in bench.rs

/// Writes `bytes` in `CHUNK`-byte writes, half-closes and waits for the 1-byte ack and the end.
async fn sink_write(mut s: Substream, bytes: u64) {
    let buf = vec![0x5a_u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&buf[..n]).await.expect("write");
        left -= n as u64;
    }
    s.shutdown().await.expect("close");
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).await.expect("ack");
    let _ = s.read(&mut ack).await;
}

async fn echo_once(client: &ProtocolHandle, server: PeerId) {
    let mut s = client.open(server).await.expect("open");
    s.write_all(b"\n").await.expect("write");
    s.flush().await.expect("flush");
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.expect("echo");
    s.shutdown().await.expect("close");
    let _ = s.read(&mut b).await;
}

/// A fresh client node dials `server` and gets one echo byte; the clock starts once the node
/// exists. Returns the time from the dial to the echoed byte.
async fn connect_echo(server: &Node) -> Duration {
    let c = node(false, Held::default());
    let t = Instant::now();
    c.echo
        .dial(server.addr.as_ref().unwrap(), server.peer)
        .await
        .expect("dial");
    echo_once(&c.echo, server.peer).await;
    let d = t.elapsed();
    c.echo.close(server.peer);
    d
}

// ---------------------------------------------------------------------------------------------
// Children

/// `bulk-child litep2p STREAMS BYTES [CONNS]`. One connection: `STREAMS` streams, each opened
/// and written by its own spawned task, timed from before the opens to the last ack (bench.rs's
/// `plait_bulk`). `CONNS` > 1: one client node per connection (litep2p keeps one connection per
/// peer pair), `STREAMS` streams on each, all opened first; timed from the first write to the
/// last ack.
async fn bulk(streams: usize, bytes: u64, conns: usize) -> f64 {
    let s = server();
    let peer = s.peer;
    let total = (conns * streams) as u64;
    let per = bytes / total;
    let start;
    if conns == 1 {
        let c = client(&s).await;
        start = Instant::now();
        let writers: Vec<_> = (0..streams)
            .map(|_| {
                let sink = c.sink.clone();
                tokio::spawn(async move {
                    let st = sink.open(peer).await.expect("open");
                    sink_write(st, per).await;
                })
            })
            .collect();
        for w in writers {
            w.await.expect("writer");
        }
    } else {
        let clients = futures::future::join_all((0..conns).map(|_| client(&s))).await;
        let opens = clients
            .iter()
            .flat_map(|c| (0..streams).map(|_| c.sink.open(peer)));
        let opened: Vec<_> = futures::future::join_all(opens)
            .await
            .into_iter()
            .map(|s| s.expect("open"))
            .collect();
        start = Instant::now();
        let writers: Vec<_> = opened
            .into_iter()
            .map(|st| tokio::spawn(sink_write(st, per)))
            .collect();
        for w in writers {
            w.await.expect("writer");
        }
    }
    let d = start.elapsed();
    (per * total) as f64 / d.as_secs_f64() / (1u64 << 30) as f64
}

/// `connect-child litep2p SEQ CONC`: latency median of `seq` sequential fresh-node connects,
/// then the rate of `conc` connects with 16 in flight (node creation included).
async fn connect(seq: usize, conc: usize) {
    const WORKERS: usize = 16;
    let s = Arc::new(server());
    for _ in 0..WARMUP_CONNECTS {
        connect_echo(&s).await;
    }
    let mut lats = Vec::new();
    for _ in 0..seq {
        lats.push(connect_echo(&s).await.as_secs_f64() * 1e3);
    }
    println!("LAT_MS {}", median(&mut lats));
    let start = Instant::now();
    let tasks: Vec<_> = (0..WORKERS)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..conc / WORKERS {
                    connect_echo(&s).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("worker");
    }
    println!("CONN_S {}", conc as f64 / start.elapsed().as_secs_f64());
}

/// Connections made (and stream opens done) before anything is measured in a fresh process;
/// bench.rs uses the same numbers.
const WARMUP_CONNECTS: usize = 8;
const WARMUP_OPENS: usize = 64;

/// `open-child litep2p SEQ CONC`: on one connection, `seq` sequential open + echo + close, then
/// `conc` with 64 in flight.
async fn open(seq: usize, conc: usize) {
    const IN_FLIGHT: usize = 64;
    let s = server();
    let c = client(&s).await;
    let peer = s.peer;
    for _ in 0..WARMUP_OPENS {
        echo_once(&c.echo, peer).await;
    }
    let t = Instant::now();
    for _ in 0..seq {
        echo_once(&c.echo, peer).await;
    }
    println!("SEQ_S {}", seq as f64 / t.elapsed().as_secs_f64());
    let t = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let echo = c.echo.clone();
            tokio::spawn(async move {
                for _ in 0..conc / IN_FLIGHT {
                    echo_once(&echo, peer).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    println!("CONC_S {}", conc as f64 / t.elapsed().as_secs_f64());
}

fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Connections are spread over this many client nodes when streams are measured (as in
/// bench.rs: litep2p's Yamux, rust-yamux 0.13, allows 512 streams per connection).
const STREAM_CLIENTS: usize = 25;

/// `mem-child litep2p conns|streams N`: RSS per idle connection pair or per idle stream pair.
///
/// litep2p keeps at most one connection per peer pair (plus a secondary one), so the `n`
/// connections come from `n` dialer nodes. As on the other sides, where the one dialer has
/// made a connection before the baseline is read, every dialer node first connects to a
/// second listener; RSS is read after that, so the figure counts the `n` connections to the
/// measured listener (both ends), not the nodes or what a node sets up on its first dial.
async fn memory(what: &str, n: usize) {
    const IN_FLIGHT: usize = 64;
    let settle = || tokio::time::sleep(Duration::from_millis(1500));
    let held = Held::default();
    let s = node(true, held.clone());
    let (addr, peer) = (s.addr.clone().unwrap(), s.peer);
    if what == "conns" {
        let nodes: Vec<_> = (0..n).map(|_| node(false, Held::default())).collect();
        let warm = server();
        let (warm_addr, warm_peer) = (warm.addr.clone().unwrap(), warm.peer);
        futures::stream::iter(&nodes)
            .map(|c| c.idle.dial(&warm_addr, warm_peer))
            .buffer_unordered(IN_FLIGHT)
            .for_each(|r| async move { r.expect("dial") })
            .await;
        settle().await;
        let before = vm_rss();
        futures::stream::iter(&nodes)
            .map(|c| c.idle.dial(&addr, peer))
            .buffer_unordered(IN_FLIGHT)
            .for_each(|r| async move { r.expect("dial") })
            .await;
        settle().await;
        println!(
            "PER_ITEM_BYTES {}",
            (vm_rss() as f64 - before as f64) / n as f64
        );
    } else {
        let mut clients = Vec::new();
        for _ in 0..STREAM_CLIENTS {
            let c = node(false, Held::default());
            c.idle.dial(&addr, peer).await.expect("dial");
            clients.push(c);
        }
        settle().await;
        let before = vm_rss();
        let per = n / STREAM_CLIENTS;
        let clients = &clients;
        let opened: Vec<_> = futures::stream::iter(0..per * STREAM_CLIENTS)
            .map(|i| clients[i % STREAM_CLIENTS].idle.open(peer))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let opened: Vec<_> = opened.into_iter().map(|s| s.expect("open")).collect();
        while held.0.lock().unwrap().len() < opened.len() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        settle().await;
        println!(
            "PER_ITEM_BYTES {}",
            (vm_rss() as f64 - before as f64) / opened.len() as f64
        );
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

static USAGE: &str = "usage: litep2p-bench bulk-child litep2p STREAMS BYTES [CONNS]
       litep2p-bench connect-child litep2p SEQ CONC
       litep2p-bench open-child litep2p SEQ CONC
       litep2p-bench mem-child litep2p conns|streams N
(run by tests/src/bin/bench.rs; see BENCHMARKS.md)";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> usize {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{USAGE}"))
    };
    if args.len() < 3 || args[1] != "litep2p" {
        eprintln!("{USAGE}");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match args[0].as_str() {
        "bulk-child" => {
            let conns = if args.len() > 4 { num(4) } else { 1 };
            let g = rt.block_on(bulk(num(2), num(3) as u64, conns));
            println!("GIB_S {g}");
        }
        "connect-child" => rt.block_on(connect(num(2), num(3))),
        "open-child" => rt.block_on(open(num(2), num(3))),
        "mem-child" => rt.block_on(memory(&args[2], num(3))),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
    // Skip orderly shutdown of the nodes and their connections.
    std::process::exit(0);
}
