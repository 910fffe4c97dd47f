//! Harness of the rust-libp2p interop suite (`tests/tests/interop_rust_libp2p.rs`).
//!
//! - [`TestRuntime`] and [`run`]: every scenario is written once, generic over Plait's
//!   [`Runtime`], and run on tokio, smol and async-std. The rust-libp2p peer
//!   ([`crate::libp2p_peer`]) always lives on a multi-threaded tokio runtime whose context is
//!   entered on the test thread, so the test body can spawn it and use tokio timers whatever
//!   runtime drives our host. (Tasks our host spawns on smol or async-std do *not* see that
//!   context: handlers must not use tokio.)
//! - [`within`]: every await of the suite is bounded.
//! - [`Payload`] and [`Checksum`]: large deterministic transfers checked without keeping them.
//! - [`GateProxy`]: a TCP relay that holds back server-to-client bytes until the client sent a
//!   marker, to prove that a dialer sends data without waiting for the listener.

use std::{
    future::Future,
    io,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use plait_driver::plait_core::multiaddr::Multiaddr;
use plait_driver::plait_core::upgrade::Security;
use plait_driver::{Host, HostConfig, Runtime};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// A runtime our host can run on, and how to run a test body on it.
pub trait TestRuntime {
    /// Plait's runtime type.
    type R: Runtime;
    /// Runs the future `body(runtime)` to completion on this runtime, with `tokio`'s context
    /// entered on the calling thread.
    fn block_on<F: Future<Output = ()>>(
        tokio: &tokio::runtime::Runtime,
        body: impl FnOnce(Self::R) -> F,
    );
}

/// Our host on tokio, sharing the rust-libp2p peer's runtime.
#[derive(Debug)]
pub struct OnTokio;
/// Our host on smol; the rust-libp2p peer on its own tokio runtime's threads.
#[derive(Debug)]
pub struct OnSmol;
/// Our host on async-std; the rust-libp2p peer on its own tokio runtime's threads.
#[derive(Debug)]
pub struct OnAsyncStd;

impl TestRuntime for OnTokio {
    type R = plait_tokio::Tokio;
    fn block_on<F: Future<Output = ()>>(
        tokio: &tokio::runtime::Runtime,
        body: impl FnOnce(Self::R) -> F,
    ) {
        tokio.block_on(body(plait_tokio::Tokio::new(tokio.handle().clone())));
    }
}

impl TestRuntime for OnSmol {
    type R = plait_smol::Smol;
    fn block_on<F: Future<Output = ()>>(
        tokio: &tokio::runtime::Runtime,
        body: impl FnOnce(Self::R) -> F,
    ) {
        let _context = tokio.enter();
        smol::block_on(body(plait_smol::Smol));
    }
}

impl TestRuntime for OnAsyncStd {
    type R = plait_async_std::AsyncStd;
    fn block_on<F: Future<Output = ()>>(
        tokio: &tokio::runtime::Runtime,
        body: impl FnOnce(Self::R) -> F,
    ) {
        let _context = tokio.enter();
        async_std::task::block_on(body(plait_async_std::AsyncStd));
    }
}

/// Runs one scenario on `T`, failing it if it takes longer than `limit`. `RUST_LOG` enables
/// logs (of both sides).
pub fn run<T: TestRuntime, F: Future<Output = ()>>(limit: Duration, body: impl FnOnce(T::R) -> F) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    T::block_on(&tokio, |rt| async move {
        within("the whole scenario", limit, body(rt)).await;
    });
    tokio.shutdown_timeout(Duration::from_secs(1));
}

/// Awaits `fut`, panicking with `what` if it takes longer than `limit`. Needs a tokio context.
/// Plaintext when `insecure`, else Noise.
pub fn security(insecure: bool) -> Security {
    if insecure {
        Security::Plaintext
    } else {
        Security::Noise
    }
}

/// A host of ours with a random identity.
pub fn our_host<R: Runtime>(rt: &R, insecure: bool) -> Host<R> {
    Host::new(
        rt.clone(),
        HostConfig::random().with_security(security(insecure)),
    )
    .expect("host")
}

/// Our host listening on loopback (within `limit`); returns it with its address (ending in
/// `/p2p/<id>`).
pub async fn our_listener<R: Runtime>(
    rt: &R,
    insecure: bool,
    limit: Duration,
) -> (Host<R>, Multiaddr) {
    let host = our_host(rt, insecure);
    within(
        "our listen",
        limit,
        host.listen("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")),
    )
    .await
    .expect("listen");
    let addr = host.listen_addrs().into_iter().next().expect("an address");
    (host, addr)
}

/// Awaits `fut`, panicking with `what` if it takes longer than `limit`.
pub async fn within<F: Future>(what: &str, limit: Duration, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Sleeps on tokio's timer (needs a tokio context).
pub async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Waits until `cond()` holds, checking every 10 ms; panics with `what` after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    within(what, limit, async {
        while !cond() {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Waits (at most `limit`) until `host` has no more than `n` streams.
pub async fn streams_back_to<R: Runtime>(host: &Host<R>, n: usize, limit: Duration) {
    eventually(&format!("our host back to {n} streams"), limit, || {
        host.num_streams() <= n
    })
    .await;
}

/// Waits (at most `limit`) until `host` has no connection and no stream left.
pub async fn all_clean<R: Runtime>(host: &Host<R>, limit: Duration) {
    eventually("our host drops every connection and stream", limit, || {
        host.num_connections() == 0 && host.num_streams() == 0
    })
    .await;
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Size of one [`Payload`] chunk.
pub const CHUNK: usize = 64 * 1024;

/// `len` deterministic bytes in chunks of [`CHUNK`]: a random block whose first 8 bytes are
/// replaced by the chunk's index, so lost, duplicated or reordered chunks change the checksum.
#[derive(Debug)]
pub struct Payload {
    block: Vec<u8>,
    index: u64,
    left: usize,
}

impl Payload {
    /// `len` bytes derived from `seed`.
    pub fn new(len: usize, seed: u64) -> Self {
        Self {
            block: bytes(CHUNK, seed),
            index: 0,
            left: len,
        }
    }

    /// The next chunk, or `None` at the end.
    pub fn next_chunk(&mut self) -> Option<&[u8]> {
        if self.left == 0 {
            return None;
        }
        let n = self.left.min(CHUNK);
        self.block[..8].copy_from_slice(&self.index.to_le_bytes());
        self.index += 1;
        self.left -= n;
        Some(&self.block[..n])
    }
}

/// An order-sensitive 64-bit checksum over a byte stream fed in arbitrary pieces (FNV-1a over
/// little-endian 64-bit words, the final partial word zero-padded), plus the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksum {
    hash: u64,
    len: u64,
    tail: [u8; 8],
    tail_len: usize,
}

impl Default for Checksum {
    fn default() -> Self {
        Self {
            hash: 0xcbf2_9ce4_8422_2325,
            len: 0,
            tail: [0; 8],
            tail_len: 0,
        }
    }
}

impl Checksum {
    /// Feeds `data`.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.tail_len > 0 {
            let n = (8 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + n].copy_from_slice(&data[..n]);
            self.tail_len += n;
            data = &data[n..];
            if self.tail_len < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.tail));
            self.tail_len = 0;
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            self.word(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    fn word(&mut self, w: u64) {
        self.hash = (self.hash ^ w).wrapping_mul(0x100_0000_01b3);
    }

    /// `(length, hash)` of everything fed.
    pub fn finish(mut self) -> (u64, u64) {
        if self.tail_len > 0 {
            self.tail[self.tail_len..].fill(0);
            let w = u64::from_le_bytes(self.tail);
            self.word(w);
        }
        (self.len, self.hash)
    }
}

/// Writes [`Payload::new(len, seed)`](Payload) to `stream` and closes the write side while
/// reading the reply until EOF; returns the checksums `(sent, received)`. Works for our streams
/// and rust-libp2p's (both are futures `AsyncRead + AsyncWrite`).
pub async fn send_and_receive<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    len: usize,
    seed: u64,
) -> io::Result<((u64, u64), (u64, u64))> {
    let (mut reader, mut writer) = stream.split();
    let write = async {
        let mut sum = Checksum::default();
        let mut payload = Payload::new(len, seed);
        while let Some(chunk) = payload.next_chunk() {
            writer.write_all(chunk).await?;
            sum.update(chunk);
        }
        writer.close().await?;
        Ok::<_, io::Error>(sum.finish())
    };
    let read = async {
        let mut sum = Checksum::default();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            sum.update(&buf[..n]);
        }
        Ok::<_, io::Error>(sum.finish())
    };
    let (sent, received) = futures::join!(write, read);
    Ok((sent?, received?))
}

/// Echoes every byte until EOF, then closes (the server side of
/// [`crate::libp2p_peer::ECHO_ALL_PROTOCOL`]). Returns the number of bytes echoed.
pub async fn echo_all<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        stream.write_all(&buf[..n]).await?;
        total += n as u64;
    }
    stream.close().await?;
    Ok(total)
}

/// A one-connection TCP relay on 127.0.0.1 in front of `target`. While [armed](Self::arm),
/// bytes from the server to the client are held back until the client-to-server direction
/// carried `marker` (search is done on the raw bytes, so use it with plaintext security).
#[derive(Debug)]
pub struct GateProxy {
    port: u16,
    armed: Arc<AtomicBool>,
    released: watch::Receiver<bool>,
}

impl GateProxy {
    /// Starts the relay (on the current tokio runtime).
    pub async fn start(target: std::net::SocketAddr, marker: &[u8]) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let armed = Arc::new(AtomicBool::new(false));
        let (release_tx, released) = watch::channel(false);
        let marker = marker.to_vec();
        let armed2 = armed.clone();
        let mut released2 = released.clone();
        tokio::spawn(async move {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (mut client_r, mut client_w) = client.into_split();
            let (mut server_r, mut server_w) = server.into_split();
            let armed_c2s = armed2.clone();
            let c2s = async move {
                let mut window: Vec<u8> = Vec::new();
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = client_r.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        let _ = server_w.shutdown().await;
                        break;
                    }
                    if armed_c2s.load(Ordering::SeqCst) {
                        window.extend_from_slice(&buf[..n]);
                        if window.windows(marker.len()).any(|w| w == marker) {
                            let _ = release_tx.send(true);
                        }
                        let keep = window.len().saturating_sub(marker.len());
                        window.drain(..keep);
                    }
                    if server_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            };
            let s2c = async move {
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = server_r.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        let _ = client_w.shutdown().await;
                        break;
                    }
                    if armed2.load(Ordering::SeqCst) && released2.wait_for(|r| *r).await.is_err() {
                        break;
                    }
                    if client_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            };
            tokio::join!(c2s, s2c);
        });
        Ok(Self {
            port,
            armed,
            released,
        })
    }

    /// The port to dial instead of the target's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// From now on, hold server-to-client bytes until the marker passes client-to-server.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Whether the marker was seen since [`Self::arm`].
    pub fn released(&self) -> bool {
        *self.released.borrow()
    }
}
