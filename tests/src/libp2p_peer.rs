//! An in-process [rust-libp2p](https://github.com/libp2p/rust-libp2p) peer: the *other side* of
//! Plait's interop tests.
//!
//! [`Libp2pPeer::spawn`] builds a real rust-libp2p `Swarm` (TCP + Noise, TLS or `/plaintext/2.0.0` +
//! Yamux, with ping and identify) on the current tokio runtime, listening on
//! `/ip4/127.0.0.1/tcp/0`, and drives it on a background task. Tests talk to it through async
//! methods: dial, open streams, echo, ping, read what identify learned.
//!
//! Protocols served inbound (when [`PeerConfig::echo`] is set):
//! - [`ECHO_PROTOCOL`] (`/echo/1.0.0`), with the semantics of go-libp2p's echo example
//!   (`doEcho`): read one line up to and including `\n`, write it back, close the stream. It does
//!   not wait for the remote to close its write side. A stream that ends before a `\n` is reset
//!   (go returns the read error and resets the stream).
//! - [`ECHO_ALL_PROTOCOL`] (`/plait-test/echo-all/1.0.0`): echo every byte until EOF, then close.
//!   Meant for bulk and flow-control tests.
//! - [`PERF_PROTOCOL`] (`/perf/1.0.0`), only with [`PeerConfig::perf`]: the perf spec's server
//!   (`shared/specs/perf.md`) in [`PERF_BLOCK`] writes; [`Libp2pPeer::perf`] is its client.
//!   Written here on the stream API because crates.io's `libp2p-perf` (0.3.0) needs libp2p 0.53.
//! - `/ipfs/ping/1.0.0` and `/ipfs/id/1.0.0` (and `/ipfs/id/push/1.0.0`) via rust-libp2p's own
//!   `ping` and `identify` behaviours.
//! - every id in [`PeerConfig::extra_protocols`]: the negotiated streams are handed to the test
//!   through [`Libp2pPeer::accept`].
//!
//! # Concurrent streams
//!
//! This module does **not** use `libp2p-stream`: its 0.5 handler negotiates one outbound stream at
//! a time per connection and its inbound channels have a capacity of one, silently dropping
//! (resetting) further inbound streams when the application is not polling fast enough. Instead a
//! small custom `NetworkBehaviour`/`ConnectionHandler` (`StreamBehaviour` here) is used:
//! - every outbound open request becomes its own `OutboundSubstreamRequest` immediately, so any
//!   number of outbound streams negotiate in parallel on one connection;
//! - every negotiated inbound stream is pushed into an **unbounded** channel, read by a dispatcher
//!   task which spawns one tokio task per echo stream (or queues it for [`Libp2pPeer::accept`]);
//!   nothing is ever dropped for lack of buffer space;
//! - the swarm allows 1024 inbound streams to negotiate at once per connection (rust-libp2p's
//!   default is 128; excess streams are reset), and Yamux allows 512 open streams per connection.
//!
//! Not part of Plait's product: test code only.

use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    future::{ready, Ready},
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::{
    core::{transport::PortUse, upgrade, Endpoint, UpgradeInfo},
    identify,
    identity::Keypair,
    multiaddr::Protocol,
    noise, ping, plaintext,
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        handler::{
            ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
        },
        ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
        NetworkBehaviour, NotifyHandler, StreamUpgradeError, SubstreamProtocol, Swarm, SwarmEvent,
        THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    tcp, yamux, Multiaddr, PeerId, Stream, StreamProtocol, SwarmBuilder,
};
use tokio::{
    sync::{broadcast, mpsc, oneshot, Mutex},
    task::JoinHandle,
};

/// go-libp2p's echo example protocol: one line in, the same line out, then close.
pub const ECHO_PROTOCOL: &str = "/echo/1.0.0";
/// Raw echo: every byte is echoed until EOF, then the stream is closed.
pub const ECHO_ALL_PROTOCOL: &str = "/plait-test/echo-all/1.0.0";
/// The ping protocol id (served by rust-libp2p's `ping` behaviour).
pub const PING_PROTOCOL: &str = "/ipfs/ping/1.0.0";
/// The perf protocol id (`shared/specs/perf.md`), served with [`PeerConfig::perf`].
pub const PERF_PROTOCOL: &str = "/perf/1.0.0";
/// Size of every perf write and read buffer: 64 KiB, as go-libp2p's perf and Plait's.
/// (rust-libp2p's own `libp2p-perf` writes 1 KiB blocks.)
pub const PERF_BLOCK: usize = 64 * 1024;

/// How long [`Libp2pPeer::identify_info`] and similar waits give up after.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of a [`Libp2pPeer`].
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Deterministic Ed25519 identity: secret key bytes `[seed, 0, 0, …, 0]` (the convention of
    /// rust-libp2p's examples, e.g. `--secret-key-seed`). `None` and no [`Self::keypair`] means a
    /// random identity.
    pub seed: Option<u8>,
    /// Explicit identity; takes precedence over [`Self::seed`].
    pub keypair: Option<Keypair>,
    /// Secure channel: `/plaintext/2.0.0` instead of `/noise`.
    pub insecure: bool,
    /// Secure channel: libp2p TLS (`/tls/1.0.0`, `libp2p-tls`) instead of `/noise`.
    pub tls: bool,
    /// Serve [`ECHO_PROTOCOL`] and [`ECHO_ALL_PROTOCOL`] inbound.
    pub echo: bool,
    /// Serve [`PERF_PROTOCOL`] inbound (off by default, as the perf spec asks).
    pub perf: bool,
    /// More protocol ids to accept inbound (each must start with `/`); streams for them are
    /// delivered through [`Libp2pPeer::accept`]. They are advertised in identify.
    pub extra_protocols: Vec<String>,
    /// TCP port to listen on at [`Self::listen_host`] (`Some(0)`: any free port); `None`: do not
    /// listen.
    pub listen_port: Option<u16>,
    /// IPv4 address to listen on (default 127.0.0.1).
    pub listen_host: std::net::Ipv4Addr,
    /// Interval of the rust-libp2p ping behaviour's automatic pings (rust default: 15 s).
    pub ping_interval: Duration,
    /// How long an idle connection (no streams) is kept open (rust default: 10 s; ours: 120 s so
    /// that a connection from the system under test survives a slow test).
    pub idle_timeout: Duration,
    /// Propose protocols with multistream-select `V1Lazy` on outbound streams (the proposal and
    /// the first data go out without waiting for the echo) instead of rust's default `V1`.
    pub lazy_stream_negotiation: bool,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            seed: None,
            keypair: None,
            insecure: false,
            tls: false,
            echo: true,
            perf: false,
            extra_protocols: Vec::new(),
            listen_port: Some(0),
            listen_host: std::net::Ipv4Addr::LOCALHOST,
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(120),
            lazy_stream_negotiation: false,
        }
    }
}

/// The Ed25519 keypair [`PeerConfig::seed`] stands for: secret key `[seed, 0, …, 0]`.
pub fn keypair_from_seed(seed: u8) -> Keypair {
    let mut bytes = [0u8; 32];
    bytes[0] = seed;
    Keypair::ed25519_from_bytes(bytes).expect("32 bytes are a valid ed25519 secret key")
}

/// Something that happened in the swarm, for tests that want to watch (see
/// [`Libp2pPeer::subscribe`]).
#[derive(Debug, Clone)]
pub enum PeerEvent {
    /// A connection is up (after security and muxer negotiation).
    ConnectionEstablished {
        /// Remote peer.
        peer: PeerId,
        /// Id of the connection.
        connection: ConnectionId,
        /// Whether we dialed it.
        outbound: bool,
        /// The remote's address.
        remote_addr: Multiaddr,
    },
    /// A connection was closed.
    ConnectionClosed {
        /// Remote peer.
        peer: PeerId,
        /// Id of the connection.
        connection: ConnectionId,
        /// Why, if it was an error.
        cause: Option<String>,
    },
    /// An inbound connection failed during the upgrade (e.g. security or muxer negotiation).
    IncomingConnectionError {
        /// The remote's address.
        remote_addr: Multiaddr,
        /// The error.
        error: String,
    },
    /// An outbound connection failed.
    OutgoingConnectionError {
        /// The peer we meant to reach, if known.
        peer: Option<PeerId>,
        /// The error.
        error: String,
    },
    /// Result of an automatic ping by rust-libp2p's ping behaviour.
    Ping {
        /// Remote peer.
        peer: PeerId,
        /// Round-trip time, or the failure.
        result: Result<Duration, String>,
    },
    /// Identify information received from a peer.
    IdentifyReceived {
        /// Remote peer.
        peer: PeerId,
        /// What it said.
        info: Box<identify::Info>,
    },
    /// We answered a peer's identify request.
    IdentifySent {
        /// Remote peer.
        peer: PeerId,
    },
    /// Identify with a peer failed (e.g. it sent an invalid message).
    IdentifyError {
        /// Remote peer.
        peer: PeerId,
        /// The error.
        error: String,
    },
}

/// A negotiated inbound stream for one of [`PeerConfig::extra_protocols`].
#[derive(Debug)]
pub struct InboundStream {
    /// Remote peer.
    pub peer: PeerId,
    /// The protocol the remote selected.
    pub protocol: String,
    /// The stream (futures `AsyncRead` + `AsyncWrite`; `close` half-closes the write side).
    pub stream: Stream,
}

/// A running rust-libp2p peer. See the [module docs](self).
///
/// Dropping it stops the swarm too (without waiting); [`Self::shutdown`] waits.
pub struct Libp2pPeer {
    peer_id: PeerId,
    listen_addr: Option<Multiaddr>,
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<PeerEvent>,
    accepted: Mutex<mpsc::UnboundedReceiver<InboundStream>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Libp2pPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Libp2pPeer")
            .field("peer_id", &self.peer_id)
            .field("listen_addr", &self.listen_addr)
            .finish_non_exhaustive()
    }
}

type Reply<T> = oneshot::Sender<Result<T, String>>;

enum Command {
    Dial {
        addr: Multiaddr,
        reuse: bool,
        reply: Reply<PeerId>,
    },
    Open {
        peer: PeerId,
        protocols: Vec<StreamProtocol>,
        reply: Reply<(Stream, StreamProtocol)>,
    },
    Identify {
        peer: PeerId,
        reply: Reply<identify::Info>,
    },
    ConnectedPeers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
    Shutdown,
}

impl Libp2pPeer {
    /// Builds the swarm and starts it on a tokio task. Panics if the configuration is invalid
    /// (bad protocol id, listen failure): this is test code.
    pub async fn spawn(cfg: PeerConfig) -> Self {
        let keypair = match (&cfg.keypair, cfg.seed) {
            (Some(k), _) => k.clone(),
            (None, Some(seed)) => keypair_from_seed(seed),
            (None, None) => Keypair::generate_ed25519(),
        };
        let peer_id = keypair.public().to_peer_id();

        let mut inbound_protocols = Vec::new();
        if cfg.echo {
            inbound_protocols.push(StreamProtocol::new(ECHO_PROTOCOL));
            inbound_protocols.push(StreamProtocol::new(ECHO_ALL_PROTOCOL));
        }
        if cfg.perf {
            inbound_protocols.push(StreamProtocol::new(PERF_PROTOCOL));
        }
        for p in &cfg.extra_protocols {
            inbound_protocols.push(
                StreamProtocol::try_from_owned(p.clone())
                    .unwrap_or_else(|e| panic!("invalid protocol id {p:?}: {e}")),
            );
        }
        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
        let streams = StreamBehaviour::new(inbound_protocols, inbound_tx);

        let mut swarm = build_swarm(&cfg, keypair, streams);

        let mut listen_addr = None;
        if let Some(port) = cfg.listen_port {
            let addr: Multiaddr = format!("/ip4/{}/tcp/{port}", cfg.listen_host)
                .parse()
                .expect("valid");
            swarm.listen_on(addr).expect("listen on loopback");
            let deadline = tokio::time::sleep(WAIT_TIMEOUT);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    ev = swarm.select_next_some() => {
                        if let SwarmEvent::NewListenAddr { address, .. } = ev {
                            listen_addr = Some(address.with(Protocol::P2p(peer_id)));
                            break;
                        }
                    }
                    () = &mut deadline => panic!("libp2p peer: no listen address after {WAIT_TIMEOUT:?}"),
                }
            }
        }

        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(4096);
        let (accepted_tx, accepted_rx) = mpsc::unbounded_channel();

        let driver = Driver {
            swarm,
            events: events.clone(),
            pending_dials: HashMap::new(),
            identified: HashMap::new(),
            identify_waiters: HashMap::new(),
        };
        let tasks = vec![
            tokio::spawn(driver.run(command_rx)),
            tokio::spawn(dispatch_inbound(inbound_rx, accepted_tx, cfg.perf)),
        ];

        Self {
            peer_id,
            listen_addr,
            commands,
            events,
            accepted: Mutex::new(accepted_rx),
            tasks,
        }
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// `/ip4/127.0.0.1/tcp/PORT/p2p/PEERID`. Panics if the peer was configured not to listen.
    pub fn listen_addr(&self) -> Multiaddr {
        self.listen_addr
            .clone()
            .expect("this libp2p peer does not listen")
    }

    /// The TCP port we listen on. Panics if the peer does not listen.
    pub fn listen_port(&self) -> u16 {
        self.listen_addr()
            .iter()
            .find_map(|p| match p {
                Protocol::Tcp(port) => Some(port),
                _ => None,
            })
            .expect("tcp listen address")
    }

    /// Receives [`PeerEvent`]s from now on (buffer of 4096; a slow receiver loses the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.events.subscribe()
    }

    /// Opens a **new** connection to `addr` (even if one to that peer exists) and waits until it
    /// is established. If `addr` ends in `/p2p/ID` the remote must authenticate as `ID`.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, String> {
        self.request(|reply| Command::Dial {
            addr,
            reuse: false,
            reply,
        })
        .await
    }

    /// Like [`Self::dial`], but if `addr` ends in `/p2p/ID` and we are already connected to `ID`,
    /// returns at once.
    pub async fn connect(&self, addr: Multiaddr) -> Result<PeerId, String> {
        self.request(|reply| Command::Dial {
            addr,
            reuse: true,
            reply,
        })
        .await
    }

    /// Peers we have at least one connection to.
    pub async fn connected_peers(&self) -> Vec<PeerId> {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::ConnectedPeers { reply })
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Whether we have a connection to `peer`.
    pub async fn is_connected(&self, peer: PeerId) -> bool {
        self.connected_peers().await.contains(&peer)
    }

    /// Closes all connections to `peer`; false if there were none.
    pub async fn disconnect(&self, peer: PeerId) -> bool {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Disconnect { peer, reply })
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Opens a stream to a connected `peer` and negotiates `protocol` (multistream-select).
    pub async fn open_stream(&self, peer: PeerId, protocol: &str) -> Result<Stream, String> {
        self.open_stream_any(peer, &[protocol])
            .await
            .map(|(s, _)| s)
    }

    /// Opens a stream proposing `protocols` in order; returns the stream and the protocol the
    /// remote accepted. Fails with a message starting `unsupported protocol` if it accepted none. With [`PeerConfig::lazy_stream_negotiation`] and a single protocol the open succeeds
    /// at once and a rejection shows up as an I/O error on the first read instead.
    pub async fn open_stream_any(
        &self,
        peer: PeerId,
        protocols: &[&str],
    ) -> Result<(Stream, String), String> {
        let protocols = protocols
            .iter()
            .map(|p| {
                StreamProtocol::try_from_owned((*p).to_owned())
                    .map_err(|e| format!("invalid protocol id {p:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (stream, protocol) = self
            .request(|reply| Command::Open {
                peer,
                protocols,
                reply,
            })
            .await?;
        Ok((stream, protocol.to_string()))
    }

    /// Sends `payload` on a new [`ECHO_PROTOCOL`] stream, closes our write side, and reads the
    /// reply until EOF. If not connected to `peer`, dials `addr` first (when given).
    pub async fn echo(
        &self,
        peer: PeerId,
        addr: Option<Multiaddr>,
        payload: &[u8],
    ) -> Result<Vec<u8>, String> {
        self.ensure_connected(peer, addr).await?;
        self.exchange(peer, ECHO_PROTOCOL, payload).await
    }

    /// Like [`Self::echo`] over [`ECHO_ALL_PROTOCOL`]: writes all of `payload` while reading the
    /// reply concurrently (so large payloads cannot deadlock on flow control).
    pub async fn echo_all(
        &self,
        peer: PeerId,
        addr: Option<Multiaddr>,
        payload: &[u8],
    ) -> Result<Vec<u8>, String> {
        self.ensure_connected(peer, addr).await?;
        self.exchange(peer, ECHO_ALL_PROTOCOL, payload).await
    }

    /// Opens `protocol`, writes `payload`, half-closes, reads everything until EOF (writing and
    /// reading run concurrently). If the remote closes before taking all of `payload`, the rest is
    /// not sent and the reply so far is returned; compare it.
    pub async fn exchange(
        &self,
        peer: PeerId,
        protocol: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, String> {
        let stream = self.open_stream(peer, protocol).await?;
        write_and_read_to_end(stream, payload).await
    }

    /// One ping on demand: opens a fresh `/ipfs/ping/1.0.0` stream, writes 32 random bytes, reads
    /// 32 back, checks them, half-closes. Returns the round-trip time (from flush to last byte).
    ///
    /// This is in addition to the rust ping behaviour's own periodic pings (reported as
    /// [`PeerEvent::Ping`], first one right after connecting), so the remote sees up to two inbound
    /// ping streams from us. Caveat when the remote is rust-libp2p: its responder keeps only one
    /// inbound ping stream per connection and drops the older one, so our automatic ping fails
    /// (silently, the first failure is not reported) and is retried after the ping interval.
    pub async fn ping(&self, peer: PeerId) -> Result<Duration, String> {
        let mut stream = self.open_stream(peer, PING_PROTOCOL).await?;
        let payload = pseudo_random_32();
        stream
            .write_all(&payload)
            .await
            .map_err(|e| format!("ping write: {e}"))?;
        stream
            .flush()
            .await
            .map_err(|e| format!("ping flush: {e}"))?;
        let start = Instant::now();
        let mut back = [0u8; 32];
        stream
            .read_exact(&mut back)
            .await
            .map_err(|e| format!("ping read: {e}"))?;
        let rtt = start.elapsed();
        let _ = stream.close().await;
        if back != payload {
            return Err("ping payload mismatch".into());
        }
        Ok(rtt)
    }

    /// One perf client run on a new [`PERF_PROTOCOL`] stream to a connected `peer`: write the
    /// 8-byte big-endian `download` count, upload `upload` zero bytes in [`PERF_BLOCK`] writes,
    /// close the write side, read to EOF. Fails unless exactly `download` bytes arrive.
    pub async fn perf(
        &self,
        peer: PeerId,
        upload: u64,
        download: u64,
    ) -> Result<PerfTimes, String> {
        let mut stream = self.open_stream(peer, PERF_PROTOCOL).await?;
        stream
            .write_all(&download.to_be_bytes())
            .await
            .map_err(|e| format!("perf header: {e}"))?;
        let start = Instant::now();
        write_zeros(&mut stream, upload)
            .await
            .map_err(|e| format!("perf upload: {e}"))?;
        stream
            .close()
            .await
            .map_err(|e| format!("perf close: {e}"))?;
        let uploaded = Instant::now();
        let received = drain(&mut stream)
            .await
            .map_err(|e| format!("perf download: {e}"))?;
        if received != download {
            return Err(format!("perf: expected {download} bytes, got {received}"));
        }
        Ok(PerfTimes {
            upload: uploaded - start,
            download: uploaded.elapsed(),
        })
    }

    /// What identify learned about `peer` (waits up to 10 s for the first identify exchange).
    pub async fn identify_info(&self, peer: PeerId) -> Result<identify::Info, String> {
        self.request(|reply| Command::Identify { peer, reply })
            .await
    }

    /// Next inbound stream for one of [`PeerConfig::extra_protocols`] (`None` once the peer is
    /// shut down). Streams are queued without limit until taken.
    pub async fn accept(&self) -> Option<InboundStream> {
        self.accepted.lock().await.recv().await
    }

    /// Like [`Self::accept`] with a timeout.
    pub async fn accept_timeout(&self, timeout: Duration) -> Result<InboundStream, String> {
        match tokio::time::timeout(timeout, self.accept()).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err("libp2p peer shut down".into()),
            Err(_) => Err(format!("no inbound stream within {timeout:?}")),
        }
    }

    /// Stops the swarm (closing all connections) and waits for its tasks to end.
    pub async fn shutdown(mut self) {
        let _ = self.commands.send(Command::Shutdown);
        let mut tasks = std::mem::take(&mut self.tasks);
        if let Some(driver) = tasks.first_mut() {
            let _ = driver.await;
        }
        for t in tasks.iter().skip(1) {
            t.abort();
        }
    }

    async fn ensure_connected(&self, peer: PeerId, addr: Option<Multiaddr>) -> Result<(), String> {
        if self.is_connected(peer).await {
            return Ok(());
        }
        let Some(addr) = addr else {
            return Err(format!("not connected to {peer} and no address given"));
        };
        let got = self.dial(addr).await?;
        if got == peer {
            Ok(())
        } else {
            Err(format!("dialed {got}, expected {peer}"))
        }
    }

    async fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, String> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(make(reply))
            .map_err(|_| "libp2p peer is shut down".to_owned())?;
        rx.await
            .map_err(|_| "libp2p peer dropped the request".to_owned())?
    }
}

impl Drop for Libp2pPeer {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        // tasks[0] is the swarm driver, which ends on `Shutdown`; the dispatcher is aborted.
        for t in self.tasks.iter().skip(1) {
            t.abort();
        }
    }
}

/// Writes `payload` and closes the write side while reading until EOF. If the reply ends first
/// (the remote closed early, as `/echo/1.0.0` does after one line), the rest of the write is
/// abandoned: rust-yamux never resets a stream the remote dropped, so the write could otherwise
/// block forever on flow control. A write error is only reported if reading failed too.
async fn write_and_read_to_end(stream: Stream, payload: &[u8]) -> Result<Vec<u8>, String> {
    use futures::future::Either;
    let (mut reader, mut writer) = stream.split();
    let write = async {
        writer
            .write_all(payload)
            .await
            .map_err(|e| format!("write: {e}"))?;
        writer.close().await.map_err(|e| format!("close: {e}"))
    };
    let read = async {
        let mut out = Vec::new();
        reader
            .read_to_end(&mut out)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(out)
    };
    futures::pin_mut!(write, read);
    match futures::future::select(write, read).await {
        Either::Left((w, read)) => match (w, read.await) {
            (_, Ok(out)) => Ok(out),
            (Ok(()), Err(r)) => Err(r),
            (Err(w), Err(r)) => Err(format!("{r} ({w})")),
        },
        Either::Right((r, _abandoned_write)) => r,
    }
}

/// 32 unpredictable bytes (std's randomly keyed SipHash over a counter; no `rand` dependency).
fn pseudo_random_32() -> [u8; 32] {
    use std::hash::{BuildHasher as _, Hasher as _};
    let state = std::collections::hash_map::RandomState::new();
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

fn build_swarm(cfg: &PeerConfig, keypair: Keypair, streams: StreamBehaviour) -> Swarm<Behaviour> {
    let ping_cfg = ping::Config::new().with_interval(cfg.ping_interval);
    let make_behaviour = move |key: &Keypair| Behaviour {
        streams,
        ping: ping::Behaviour::new(ping_cfg),
        identify: identify::Behaviour::new(identify::Config::new(
            "ipfs/0.1.0".to_owned(),
            key.public(),
        )),
    };
    let idle = cfg.idle_timeout;
    let lazy = cfg.lazy_stream_negotiation;
    let swarm_cfg = move |c: libp2p::swarm::Config| {
        let c = c
            .with_idle_connection_timeout(idle)
            .with_max_negotiating_inbound_streams(1024);
        if lazy {
            c.with_substream_upgrade_protocol_override(upgrade::Version::V1Lazy)
        } else {
            c
        }
    };
    let builder = SwarmBuilder::with_existing_identity(keypair).with_tokio();
    if cfg.insecure {
        builder
            .with_tcp(
                tcp::Config::default(),
                |k: &Keypair| Ok::<_, Infallible>(plaintext::Config::new(k)),
                yamux::Config::default,
            )
            .expect("plaintext transport")
            .with_behaviour(make_behaviour)
            .expect("behaviour")
            .with_swarm_config(swarm_cfg)
            .build()
    } else if cfg.tls {
        builder
            .with_tcp(
                tcp::Config::default(),
                libp2p::tls::Config::new,
                yamux::Config::default,
            )
            .expect("tls transport")
            .with_behaviour(make_behaviour)
            .expect("behaviour")
            .with_swarm_config(swarm_cfg)
            .build()
    } else {
        builder
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("noise transport")
            .with_behaviour(make_behaviour)
            .expect("behaviour")
            .with_swarm_config(swarm_cfg)
            .build()
    }
}

/// The composed behaviour of the test peer.
#[derive(NetworkBehaviour)]
struct Behaviour {
    streams: StreamBehaviour,
    ping: ping::Behaviour,
    identify: identify::Behaviour,
}

/// Drives the swarm and answers [`Command`]s.
struct Driver {
    swarm: Swarm<Behaviour>,
    events: broadcast::Sender<PeerEvent>,
    pending_dials: HashMap<ConnectionId, Reply<PeerId>>,
    identified: HashMap<PeerId, identify::Info>,
    identify_waiters: HashMap<PeerId, Vec<(Instant, Reply<identify::Info>)>>,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Shutdown) => break,
                    Some(cmd) => self.on_command(cmd),
                },
                ev = self.swarm.select_next_some() => self.on_event(ev),
                _ = tick.tick() => self.expire_identify_waiters(),
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Dial { addr, reuse, reply } => {
                let peer = match addr.iter().last() {
                    Some(Protocol::P2p(p)) => Some(p),
                    _ => None,
                };
                if let (true, Some(p)) = (reuse, peer) {
                    if self.swarm.is_connected(&p) {
                        let _ = reply.send(Ok(p));
                        return;
                    }
                }
                let opts = match peer {
                    Some(p) => DialOpts::peer_id(p)
                        .addresses(vec![addr])
                        .condition(PeerCondition::Always)
                        .build(),
                    None => DialOpts::unknown_peer_id().address(addr).build(),
                };
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("dial: {e}")));
                    }
                }
            }
            Command::Open {
                peer,
                protocols,
                reply,
            } => {
                self.swarm
                    .behaviour_mut()
                    .streams
                    .open(peer, protocols, reply);
            }
            Command::Identify { peer, reply } => {
                if let Some(info) = self.identified.get(&peer) {
                    let _ = reply.send(Ok(info.clone()));
                } else {
                    self.identify_waiters
                        .entry(peer)
                        .or_default()
                        .push((Instant::now() + WAIT_TIMEOUT, reply));
                }
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::Disconnect { peer, reply } => {
                let _ = reply.send(self.swarm.disconnect_peer_id(peer).is_ok());
            }
            Command::Shutdown => {}
        }
    }

    /// Answers identify waiters that waited longer than [`WAIT_TIMEOUT`] with an error.
    fn expire_identify_waiters(&mut self) {
        let now = Instant::now();
        for (peer, waiters) in &mut self.identify_waiters {
            let (expired, kept): (Vec<_>, Vec<_>) = waiters
                .drain(..)
                .partition(|(deadline, _)| *deadline <= now);
            *waiters = kept;
            for (_, w) in expired {
                let _ = w.send(Err(format!(
                    "no identify info from {peer} within {WAIT_TIMEOUT:?}"
                )));
            }
        }
        self.identify_waiters.retain(|_, w| !w.is_empty());
    }

    fn emit(&self, ev: PeerEvent) {
        let _ = self.events.send(ev);
    }

    fn on_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                self.emit(PeerEvent::ConnectionEstablished {
                    peer: peer_id,
                    connection: connection_id,
                    outbound: endpoint.is_dialer(),
                    remote_addr: endpoint.get_remote_address().clone(),
                });
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    // A later connection must run identify again before `identify_info` answers.
                    self.identified.remove(&peer_id);
                }
                self.emit(PeerEvent::ConnectionClosed {
                    peer: peer_id,
                    connection: connection_id,
                    cause: cause.map(|c| c.to_string()),
                });
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                let error = error.to_string();
                if let Some(reply) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(error.clone()));
                }
                self.emit(PeerEvent::OutgoingConnectionError {
                    peer: peer_id,
                    error,
                });
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                self.emit(PeerEvent::IncomingConnectionError {
                    remote_addr: send_back_addr,
                    error: error.to_string(),
                });
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, result, .. })) => {
                self.emit(PeerEvent::Ping {
                    peer,
                    result: result.map_err(|e| e.to_string()),
                });
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(ev)) => self.on_identify(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Streams(never)) => match never {},
            _ => {}
        }
    }

    fn on_identify(&mut self, ev: identify::Event) {
        match ev {
            identify::Event::Received { peer_id, info, .. } => {
                for (_, w) in self.identify_waiters.remove(&peer_id).unwrap_or_default() {
                    let _ = w.send(Ok(info.clone()));
                }
                self.identified.insert(peer_id, info.clone());
                self.emit(PeerEvent::IdentifyReceived {
                    peer: peer_id,
                    info: Box::new(info),
                });
            }
            identify::Event::Sent { peer_id, .. } => {
                self.emit(PeerEvent::IdentifySent { peer: peer_id });
            }
            identify::Event::Error { peer_id, error, .. } => {
                let error = error.to_string();
                for (_, w) in self.identify_waiters.remove(&peer_id).unwrap_or_default() {
                    let _ = w.send(Err(format!("identify failed: {error}")));
                }
                self.emit(PeerEvent::IdentifyError {
                    peer: peer_id,
                    error,
                });
            }
            identify::Event::Pushed { .. } => {}
        }
    }
}

/// The timings of one [`Libp2pPeer::perf`] run, with the boundaries of go-libp2p's and
/// rust-libp2p's perf clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerfTimes {
    /// From after the 8-byte header to our write side's close completing.
    pub upload: Duration,
    /// From there to the server's end of stream (after the last download byte).
    pub download: Duration,
}

/// Serves inbound streams: one task per echo (and, if `perf`, perf) stream; extra protocols go
/// to the test.
async fn dispatch_inbound(
    mut inbound: mpsc::UnboundedReceiver<InboundStream>,
    accepted: mpsc::UnboundedSender<InboundStream>,
    perf: bool,
) {
    while let Some(s) = inbound.recv().await {
        match s.protocol.as_str() {
            ECHO_PROTOCOL => {
                tokio::spawn(serve_echo_line(s.stream));
            }
            ECHO_ALL_PROTOCOL => {
                tokio::spawn(serve_echo_all(s.stream));
            }
            PERF_PROTOCOL if perf => {
                tokio::spawn(serve_perf(s.stream));
            }
            _ => {
                let _ = accepted.send(s);
            }
        }
    }
}

/// go-libp2p echo example `doEcho`: read one line (up to `\n`), write it back, close.
async fn serve_echo_line(mut stream: Stream) {
    const MAX_LINE: usize = 1 << 20;
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return, // EOF before '\n': dropping resets the stream, like go.
            Ok(n) => {
                if let Some(pos) = buf[..n].iter().position(|&b| b == b'\n') {
                    line.extend_from_slice(&buf[..=pos]);
                    break;
                }
                line.extend_from_slice(&buf[..n]);
                if line.len() > MAX_LINE {
                    return;
                }
            }
        }
    }
    if stream.write_all(&line).await.is_ok() {
        let _ = stream.close().await;
    }
}

/// The perf server: read the 8-byte count N, drain to EOF, only then write N zero bytes in
/// [`PERF_BLOCK`] writes and close. On any error the stream is dropped (as rust-libp2p's
/// `libp2p-perf` server does).
async fn serve_perf(mut stream: Stream) {
    let mut header = [0u8; 8];
    if stream.read_exact(&mut header).await.is_err() || drain(&mut stream).await.is_err() {
        return;
    }
    if write_zeros(&mut stream, u64::from_be_bytes(header))
        .await
        .is_ok()
    {
        let _ = stream.close().await;
    }
}

/// Writes `n` zero bytes in writes of at most [`PERF_BLOCK`] bytes.
async fn write_zeros(stream: &mut Stream, mut n: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; PERF_BLOCK];
    while n > 0 {
        let m = n.min(PERF_BLOCK as u64) as usize;
        stream.write_all(&zeros[..m]).await?;
        n -= m as u64;
    }
    Ok(())
}

/// Reads and discards until EOF; returns the number of bytes read.
async fn drain(stream: &mut Stream) -> std::io::Result<u64> {
    let mut buf = vec![0u8; PERF_BLOCK];
    let mut total = 0;
    loop {
        match stream.read(&mut buf).await? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

/// Raw echo: copy everything until EOF, then close.
async fn serve_echo_all(stream: Stream) {
    let (mut reader, mut writer) = stream.split();
    if futures::io::copy(&mut reader, &mut writer).await.is_ok() {
        let _ = writer.close().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Custom stream behaviour: unlimited parallel outbound negotiation, unbounded inbound delivery.

/// Request from the behaviour to a connection handler: open one outbound stream.
#[derive(Debug)]
struct OpenRequest {
    protocols: Vec<StreamProtocol>,
    reply: Reply<(Stream, StreamProtocol)>,
}

struct StreamBehaviour {
    inbound_protocols: Arc<Vec<StreamProtocol>>,
    inbound_tx: mpsc::UnboundedSender<InboundStream>,
    connections: HashMap<PeerId, Vec<ConnectionId>>,
    pending: VecDeque<ToSwarm<Infallible, OpenRequest>>,
}

impl StreamBehaviour {
    fn new(
        inbound_protocols: Vec<StreamProtocol>,
        inbound_tx: mpsc::UnboundedSender<InboundStream>,
    ) -> Self {
        Self {
            inbound_protocols: Arc::new(inbound_protocols),
            inbound_tx,
            connections: HashMap::new(),
            pending: VecDeque::new(),
        }
    }

    fn open(
        &mut self,
        peer: PeerId,
        protocols: Vec<StreamProtocol>,
        reply: Reply<(Stream, StreamProtocol)>,
    ) {
        let Some(&conn) = self.connections.get(&peer).and_then(|c| c.first()) else {
            let _ = reply.send(Err(format!("not connected to {peer}")));
            return;
        };
        self.pending.push_back(ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::One(conn),
            event: OpenRequest { protocols, reply },
        });
    }

    fn handler(&self, remote: PeerId) -> StreamHandler {
        StreamHandler {
            remote,
            inbound_protocols: self.inbound_protocols.clone(),
            inbound_tx: self.inbound_tx.clone(),
            pending: VecDeque::new(),
        }
    }
}

impl NetworkBehaviour for StreamBehaviour {
    type ConnectionHandler = StreamHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                self.connections
                    .entry(e.peer_id)
                    .or_default()
                    .push(e.connection_id);
            }
            FromSwarm::ConnectionClosed(e) => {
                if let Some(conns) = self.connections.get_mut(&e.peer_id) {
                    conns.retain(|c| *c != e.connection_id);
                    if conns.is_empty() {
                        self.connections.remove(&e.peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.pending.pop_front() {
            Some(ev) => Poll::Ready(ev),
            None => Poll::Pending,
        }
    }
}

struct StreamHandler {
    remote: PeerId,
    inbound_protocols: Arc<Vec<StreamProtocol>>,
    inbound_tx: mpsc::UnboundedSender<InboundStream>,
    pending: VecDeque<OpenRequest>,
}

impl ConnectionHandler for StreamHandler {
    type FromBehaviour = OpenRequest;
    type ToBehaviour = Infallible;
    type InboundProtocol = Negotiate;
    type OutboundProtocol = Negotiate;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Reply<(Stream, StreamProtocol)>;

    fn listen_protocol(&self) -> SubstreamProtocol<Negotiate> {
        SubstreamProtocol::new(Negotiate((*self.inbound_protocols).clone()), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Negotiate, Self::OutboundOpenInfo, Infallible>> {
        match self.pending.pop_front() {
            Some(OpenRequest { protocols, reply }) => {
                Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                    protocol: SubstreamProtocol::new(Negotiate(protocols), reply),
                })
            }
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, event: OpenRequest) {
        self.pending.push_back(event);
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<'_, Negotiate, Negotiate, (), Self::OutboundOpenInfo>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, protocol),
                ..
            }) => {
                let _ = self.inbound_tx.send(InboundStream {
                    peer: self.remote,
                    protocol: protocol.to_string(),
                    stream,
                });
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol,
                info: reply,
            }) => {
                let _ = reply.send(Ok(protocol));
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { info: reply, error }) => {
                let error = match error {
                    StreamUpgradeError::NegotiationFailed => {
                        "unsupported protocol: the remote accepted none of the proposals".to_owned()
                    }
                    other => format!("open stream: {other}"),
                };
                let _ = reply.send(Err(error));
            }
            _ => {}
        }
    }
}

/// Upgrade that only negotiates one of a list of protocols and hands the raw stream over.
#[derive(Debug, Clone)]
struct Negotiate(Vec<StreamProtocol>);

impl UpgradeInfo for Negotiate {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.clone().into_iter()
    }
}

impl upgrade::InboundUpgrade<Stream> for Negotiate {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_inbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}

impl upgrade::OutboundUpgrade<Stream> for Negotiate {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Infallible>>;

    fn upgrade_outbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}
