//! Helpers for the hostile-peer suite (`tests/tests/hostile.rs`): a real listening host on any
//! of the three runtimes, a normal echo dialer, baseline measurements, and attackers built from
//! blocking `std::net` sockets, hand-crafted bytes and `plait_core`'s Noise machines.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use plait_core::identity::{Keypair, PeerId};
use plait_core::multiaddr::{Multiaddr, Protocol};
use plait_core::noise;
use plait_core::swarm::Limits;
use plait_driver::{Host, HostConfig, Runtime};

/// The protocol of the echo service: reads until end of stream, writes everything back.
pub const ECHO: &str = "/echo/1.0.0";
/// A service that writes to the stream as fast as it is allowed, forever.
pub const FIREHOSE: &str = "/firehose/1.0.0";
/// The upgrade timeout of test hosts: short so slow attacks end quickly.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serialises the hostile tests: they measure time and memory and share two cores.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A runtime the tests can block on.
pub trait TestRuntime: Runtime {
    /// A handle to the runtime.
    fn get() -> Self;
    /// Runs `f` to completion on this runtime.
    fn block_on<F: Future>(&self, f: F) -> F::Output;
    /// Name for reports.
    fn name() -> &'static str;
}

fn tokio_rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

impl TestRuntime for plait_tokio::Tokio {
    fn get() -> Self {
        Self::new(tokio_rt().handle().clone())
    }
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        tokio_rt().block_on(f)
    }
    fn name() -> &'static str {
        "tokio"
    }
}

impl TestRuntime for plait_smol::Smol {
    fn get() -> Self {
        Self
    }
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        smol::block_on(f)
    }
    fn name() -> &'static str {
        "smol"
    }
}

impl TestRuntime for plait_async_std::AsyncStd {
    fn get() -> Self {
        Self
    }
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        async_std::task::block_on(f)
    }
    fn name() -> &'static str {
        "async-std"
    }
}

/// Runs `f` on `rt`, panicking with `what` if it takes longer than `limit`.
pub fn block_on_timeout<R: TestRuntime, T>(
    rt: &R,
    limit: Duration,
    what: &str,
    f: impl Future<Output = T>,
) -> T {
    let timed = futures_lite::future::or(async { Some(f.await) }, async {
        async_io::Timer::after(limit).await;
        None
    });
    rt.block_on(timed)
        .unwrap_or_else(|| panic!("timed out after {limit:?}: {what}"))
}

/// What a host holds at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Swarm connections (established or upgrading).
    pub connections: usize,
    /// Open sockets (driver connection tasks).
    pub sockets: usize,
    /// Streams with state.
    pub streams: usize,
    /// Buffered bytes (swarm + driver socket buffers).
    pub buffered: u64,
}

impl std::fmt::Display for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "conns={} sockets={} streams={} buffered={}B",
            self.connections, self.sockets, self.streams, self.buffered
        )
    }
}

/// The configuration of test hosts: a random identity and [`UPGRADE_TIMEOUT`].
pub fn target_config() -> HostConfig {
    let mut config = HostConfig::random();
    config.upgrade_timeout = UPGRADE_TIMEOUT;
    config
}

/// A listening host under attack, with an echo and a firehose service.
pub struct Target<R: TestRuntime> {
    /// The runtime.
    pub rt: R,
    /// The host.
    pub host: Host<R>,
    /// Its socket address.
    pub addr: SocketAddr,
    /// Its full address with `/p2p`.
    pub maddr: Multiaddr,
    /// Its peer id.
    pub peer: PeerId,
    /// Bytes the firehose handlers have written so far.
    pub firehose_written: Arc<AtomicU64>,
    /// The state before any attack.
    pub baseline: Snapshot,
    /// The security protocols the host speaks.
    pub security: Vec<plait_core::upgrade::Security>,
}

impl<R: TestRuntime> Target<R> {
    /// A host with default limits and [`UPGRADE_TIMEOUT`].
    pub fn start() -> Self {
        Self::with_limits(Limits::default())
    }

    /// A host with `limits` and [`UPGRADE_TIMEOUT`].
    pub fn with_limits(limits: Limits) -> Self {
        Self::with_config(limits, UPGRADE_TIMEOUT)
    }

    /// A host with `limits` and `upgrade_timeout`.
    pub fn with_config(limits: Limits, upgrade_timeout: Duration) -> Self {
        let mut config = target_config();
        config.limits = limits;
        config.upgrade_timeout = upgrade_timeout;
        Self::with_host_config(config)
    }

    /// A host with `config` (see [`target_config`]).
    pub fn with_host_config(config: HostConfig) -> Self {
        let rt = R::get();
        let security = config.security.clone();
        let host = Host::new(rt.clone(), config).expect("host");
        let spawner = rt.clone();
        host.set_stream_handler(ECHO, move |mut stream| {
            spawner.spawn(Box::pin(async move {
                let mut data = Vec::new();
                if stream.read_to_end(&mut data).await.is_ok() {
                    let _ = stream.write_all(&data).await;
                    let _ = stream.close().await;
                }
            }));
        })
        .expect("echo handler");
        let written = Arc::new(AtomicU64::new(0));
        let counter = written.clone();
        let spawner = rt.clone();
        host.set_stream_handler(FIREHOSE, move |mut stream| {
            let counter = counter.clone();
            spawner.spawn(Box::pin(async move {
                let chunk = vec![0x5a_u8; 16 * 1024];
                loop {
                    match stream.write(&chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            counter.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                }
            }));
        })
        .expect("firehose handler");
        let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr");
        let bound = block_on_timeout(&rt, Duration::from_secs(5), "listen", host.listen(listen))
            .expect("listen");
        let Some(plait_driver::Target::Socket(addr)) = plait_driver::multiaddr_to_socket(&bound)
        else {
            panic!("not a socket address: {bound}");
        };
        let peer = host.peer_id();
        let maddr = bound.with(Protocol::P2p(peer));
        let mut target = Self {
            rt,
            host,
            addr,
            maddr,
            peer,
            firehose_written: written,
            baseline: Snapshot::default(),
            security,
        };
        target.baseline = target.snapshot();
        target
    }

    /// The host's state now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connections: self.host.num_connections(),
            sockets: self.host.num_sockets(),
            streams: self.host.num_streams(),
            buffered: self.host.buffered_bytes(),
        }
    }

    /// Waits (at most `limit`) until the host is back at its baseline; returns how long it
    /// took and the final snapshot. Panics with the last snapshot when it does not return.
    pub fn wait_baseline(&self, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let now = self.snapshot();
            if now == self.baseline {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "host did not return to baseline ({}) within {limit:?}: {now}",
                self.baseline
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A normal client: a fresh host on the same runtime dials, echoes `payload` on a new
    /// stream and closes. Returns the round trip time.
    pub fn echo_check(&self) -> Duration {
        let start = Instant::now();
        let mut config = HostConfig::random().with_securities(self.security.clone());
        config.upgrade_timeout = Duration::from_secs(5);
        let client = Host::new(self.rt.clone(), config).expect("client host");
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let reply = block_on_timeout(&self.rt, Duration::from_secs(10), "echo dialer", async {
            client.dial(self.maddr.clone()).await.expect("dial");
            let mut s = client.new_stream(self.peer, [ECHO]).await.expect("stream");
            s.write_all(&payload).await.expect("write");
            s.close().await.expect("close");
            let mut reply = Vec::new();
            s.read_to_end(&mut reply).await.expect("read");
            reply
        });
        assert_eq!(reply, payload, "echo reply differs");
        client.close();
        start.elapsed()
    }

    /// The echo check, then the wait for the baseline; prints both.
    pub fn assert_serves_and_recovers(&self, scenario: &str) {
        let echo = self.echo_check();
        let back = self.wait_baseline(Duration::from_secs(5));
        println!(
            "[{scenario}/{}] echo ok in {echo:?}; back to baseline ({}) in {back:?}",
            R::name(),
            self.baseline
        );
    }
}

/// Connects a raw socket with a read timeout.
pub fn raw_connect(addr: SocketAddr) -> TcpStream {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    tcp.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    tcp
}

/// How a socket ended when we waited for the host to close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// End of file (or reset) after this long.
    After(Duration),
    /// Still open when we gave up.
    StillOpen,
}

/// Reads (and discards) until the host closes `tcp` or `limit` passes; returns how long it
/// took from `since`.
pub fn wait_closed(tcp: &mut TcpStream, since: Instant, limit: Duration) -> Closed {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return Closed::After(since.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Closed::After(since.elapsed()),
        }
        if since.elapsed() > limit {
            return Closed::StillOpen;
        }
    }
}

/// The multistream header message.
pub const MS_HEADER: &[u8] = b"\x13/multistream/1.0.0\n";
/// The multistream proposal of `/noise`.
pub const MS_NOISE: &[u8] = b"\x07/noise\n";

/// A multistream message: varint length, `text`, newline.
pub fn ms_message(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut len = text.len() + 1;
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
    out
}

/// Yamux frame types.
pub mod yamux {
    /// Data.
    pub const DATA: u8 = 0;
    /// Window Update.
    pub const WINDOW_UPDATE: u8 = 1;
    /// Ping.
    pub const PING: u8 = 2;
    /// Go Away.
    pub const GO_AWAY: u8 = 3;
    /// SYN flag.
    pub const SYN: u16 = 1;
    /// ACK flag.
    pub const ACK: u16 = 2;
    /// FIN flag.
    pub const FIN: u16 = 4;
    /// RST flag.
    pub const RST: u16 = 8;

    /// A 12-byte yamux header.
    pub fn header(ty: u8, flags: u16, id: u32, length: u32) -> [u8; 12] {
        let mut h = [0u8; 12];
        h[1] = ty;
        h[2..4].copy_from_slice(&flags.to_be_bytes());
        h[4..8].copy_from_slice(&id.to_be_bytes());
        h[8..12].copy_from_slice(&length.to_be_bytes());
        h
    }

    /// A Data frame with `body`.
    pub fn data(flags: u16, id: u32, body: &[u8]) -> Vec<u8> {
        let mut f = header(DATA, flags, id, body.len() as u32).to_vec();
        f.extend_from_slice(body);
        f
    }
}

/// A yamux frame the host sent us.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Type.
    pub ty: u8,
    /// Flags.
    pub flags: u16,
    /// Stream id.
    pub id: u32,
    /// Length field.
    pub length: u32,
    /// Data payload (Data frames only).
    pub body: Bytes,
}

/// How a [`SecurePeer`] sets up its secure channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Noise XX, agreeing on yamux inside the handshake (so yamux frames may follow at once).
    NoiseEarlyMuxer,
    /// Noise XX without early muxer negotiation: multistream inside the channel comes next.
    Noise,
    /// `/plaintext/2.0.0`: multistream in the clear comes next.
    Plaintext,
}

/// A peer that completed a real security handshake and then speaks hand-built yamux frames,
/// multistream messages, or raw garbage, over a blocking socket.
pub struct SecurePeer {
    /// The socket.
    pub tcp: TcpStream,
    /// `None` on a plaintext channel.
    transport: Option<noise::Transport>,
    raw: BytesMut,
    plain: BytesMut,
    /// Set once the host closed the socket.
    pub eof: bool,
}

/// Reads from `tcp` until `raw` holds at least `len` bytes.
fn read_at_least(tcp: &mut TcpStream, raw: &mut BytesMut, len: usize) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    while raw.len() < len {
        let n = tcp.read(&mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

/// Sends `out` (multistream header, proposal, first handshake message), checks that the answer
/// starts with `expect` (header and the proposal's echo), then feeds what follows to the
/// handshake (`step` returns whether it finished) until it is done.
fn run_handshake(
    tcp: &mut TcpStream,
    out: &[u8],
    expect: &[u8],
    raw: &mut BytesMut,
    mut step: impl FnMut(&mut BytesMut) -> io::Result<bool>,
) -> io::Result<()> {
    tcp.write_all(out)?;
    read_at_least(tcp, raw, expect.len())?;
    if raw[..expect.len()] != *expect {
        return Err(io::Error::other("unexpected multistream answer"));
    }
    raw.advance(expect.len());
    while !step(raw)? {
        let len = raw.len() + 1;
        read_at_least(tcp, raw, len)?;
    }
    Ok(())
}

impl SecurePeer {
    /// Connects and runs multistream + Noise with early yamux negotiation.
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        Self::connect_with(addr, Channel::NoiseEarlyMuxer)
    }

    /// Connects and sets up `channel`.
    pub fn connect_with(addr: SocketAddr, channel: Channel) -> io::Result<Self> {
        let mut tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        let keypair = Keypair::generate_ed25519();
        let protocol = match channel {
            Channel::Plaintext => plait_core::plaintext::PROTOCOL,
            Channel::Noise | Channel::NoiseEarlyMuxer => noise::PROTOCOL,
        };
        let proposal = ms_message(protocol);
        let mut out = BytesMut::new();
        out.extend_from_slice(MS_HEADER);
        out.extend_from_slice(&proposal);
        let expect = [MS_HEADER, &proposal[..]].concat();
        let mut raw = BytesMut::new();
        let transport = if channel == Channel::Plaintext {
            let config = plait_core::plaintext::Config::new(keypair.public());
            let mut exchange = plait_core::plaintext::Plaintext::new(&config, None);
            exchange.poll_transmit(&mut out);
            run_handshake(&mut tcp, &out, &expect, &mut raw, |raw| {
                exchange.handle_input(raw).map_err(io::Error::other)?;
                Ok(exchange.is_finished())
            })?;
            None
        } else {
            let seed: [u8; 32] = rand::random();
            let mut config = noise::Config::new(keypair, seed).map_err(io::Error::other)?;
            if channel == Channel::NoiseEarlyMuxer {
                config = config.with_muxers(vec!["/yamux/1.0.0".into()]);
            }
            let mut hs = noise::Handshake::initiator(&config, None).map_err(io::Error::other)?;
            hs.poll_transmit(&mut out);
            run_handshake(&mut tcp, &out, &expect, &mut raw, |raw| {
                hs.handle_input(raw).map_err(io::Error::other)?;
                Ok(hs.is_finished())
            })?;
            out.clear();
            hs.poll_transmit(&mut out);
            tcp.write_all(&out)?;
            let (transport, outcome) = hs.into_transport().map_err(io::Error::other)?;
            let early = outcome.muxer.as_deref() == Some("/yamux/1.0.0");
            if early != (channel == Channel::NoiseEarlyMuxer) {
                return Err(io::Error::other("unexpected early muxer outcome"));
            }
            Some(transport)
        };
        tcp.set_read_timeout(Some(Duration::from_millis(20)))?;
        Ok(Self {
            tcp,
            transport,
            raw,
            plain: BytesMut::new(),
            eof: false,
        })
    }

    /// Encrypts `plain` (if the channel is Noise) and sends it.
    pub fn send(&mut self, plain: &[u8]) -> io::Result<()> {
        let Some(transport) = &mut self.transport else {
            return self.tcp.write_all(plain);
        };
        let mut out = BytesMut::new();
        transport
            .encrypt(plain, &mut out)
            .map_err(io::Error::other)?;
        self.tcp.write_all(&out)
    }

    /// Sends raw bytes (no encryption).
    pub fn send_raw(&mut self, raw: &[u8]) -> io::Result<()> {
        self.tcp.write_all(raw)
    }

    /// Reads for up to `limit` (or until the host closes), decrypting and parsing the yamux
    /// frames received. Stops early when `done` says so.
    pub fn read_frames(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&[Frame]) -> bool,
    ) -> Vec<Frame> {
        let start = Instant::now();
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while !self.eof && start.elapsed() < limit && !done(&frames) {
            match self.tcp.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.raw.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => self.eof = true,
            }
            match &mut self.transport {
                Some(transport) => {
                    while let Ok(Some(p)) = transport.decrypt(&mut self.raw) {
                        self.plain.extend_from_slice(&p);
                    }
                }
                None => {
                    let raw = self.raw.split();
                    self.plain.extend_from_slice(&raw);
                }
            }
            while self.plain.len() >= 12 {
                let h = &self.plain[..12];
                let ty = h[1];
                let flags = u16::from_be_bytes([h[2], h[3]]);
                let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                let length = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
                let body_len = if ty == yamux::DATA {
                    length as usize
                } else {
                    0
                };
                if self.plain.len() < 12 + body_len {
                    break;
                }
                self.plain.advance(12);
                let body = self.plain.split_to(body_len).freeze();
                frames.push(Frame {
                    ty,
                    flags,
                    id,
                    length,
                    body,
                });
            }
        }
        frames
    }

    /// Waits (at most `limit`) for the host to close the socket; how long it took.
    pub fn wait_closed(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        self.read_frames(limit, |_| false);
        self.eof.then(|| start.elapsed())
    }
}

/// A plausible encrypted-looking frame: a 2-byte length and `len` bytes of noise.
pub fn garbage_noise_frame(len: u16) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u16(len);
    for _ in 0..len {
        out.put_u8(rand::random());
    }
    out.to_vec()
}

/// Resident set size of this process, in KiB (Linux), for reports.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

/// Runs `f` on its own thread and returns its result; panics if it does not finish within
/// `limit`. Guards tests whose failure mode is a deadlocked host (which would also stall the
/// runtime's own timers, so no timeout inside the runtime could fire).
pub fn or_deadlock<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no answer within {limit:?} (the host is deadlocked)")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// CPU time (user + system) a process has used, from `/proc/PID/stat` (Linux).
pub fn process_cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name (which is in parentheses and may contain spaces):
    // state is field 3, utime field 14, stime field 15 (1-based), in clock ticks of 1/100 s.
    let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields[i].parse::<u64>().expect("tick count");
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// A runtime whose listeners' `accept` fails with "too many open files" (EMFILE) the first
/// `failures` times, as when the process has run out of descriptors.
#[derive(Clone)]
pub struct FailingAccept<R> {
    inner: R,
    failures_left: Arc<AtomicU64>,
}

impl<R: Runtime> FailingAccept<R> {
    /// `inner`, failing its first `failures` accepts.
    pub fn new(inner: R, failures: u64) -> Self {
        Self {
            inner,
            failures_left: Arc::new(AtomicU64::new(failures)),
        }
    }
}

/// The errno of "too many open files".
const EMFILE: i32 = 24;

impl<R: Runtime> Runtime for FailingAccept<R> {
    type Tcp = R::Tcp;
    type Listener = R::Listener;
    fn spawn(&self, task: plait_driver::BoxFuture<'static, ()>) {
        self.inner.spawn(task);
    }
    fn sleep_until(&self, deadline: Instant) -> plait_driver::BoxFuture<'static, ()> {
        self.inner.sleep_until(deadline)
    }
    fn connect(&self, addr: SocketAddr) -> plait_driver::BoxFuture<'static, io::Result<R::Tcp>> {
        self.inner.connect(addr)
    }
    fn bind(
        &self,
        addr: SocketAddr,
    ) -> plait_driver::BoxFuture<'static, io::Result<(R::Listener, SocketAddr)>> {
        self.inner.bind(addr)
    }
    fn accept(
        &self,
        listener: Arc<R::Listener>,
    ) -> plait_driver::BoxFuture<'static, io::Result<(R::Tcp, SocketAddr)>> {
        let fail = self
            .failures_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Box::pin(async { Err(io::Error::from_raw_os_error(EMFILE)) });
        }
        self.inner.accept(listener)
    }
    fn resolve(
        &self,
        host: String,
        port: u16,
    ) -> plait_driver::BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        self.inner.resolve(host, port)
    }
    fn now(&self) -> Instant {
        self.inner.now()
    }
}

/// Instantiates test scenarios `fn name<R: TestRuntime>()` as `#[test]`s on each runtime:
/// `tokio_runtime::name`, `smol_runtime::name`, `async_std_runtime::name`.
#[macro_export]
macro_rules! on_every_runtime {
    ($($name:ident),* $(,)?) => {
        mod tokio_runtime {
            $( #[test] fn $name() { super::$name::<plait_tokio::Tokio>() } )*
        }
        mod smol_runtime {
            $( #[test] fn $name() { super::$name::<plait_smol::Smol>() } )*
        }
        mod async_std_runtime {
            $( #[test] fn $name() { super::$name::<plait_async_std::AsyncStd>() } )*
        }
    };
}
