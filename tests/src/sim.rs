//! `NetSim`: a deterministic in-memory network of [`Swarm`]s over virtual time.
//!
//! Time is a base [`Instant`] plus an offset; nothing sleeps and nothing touches a socket.
//! The sim plays the driver of the swarm's I/O contract for every node:
//!
//! - [`Command::Listen`] binds `/ip4/<node ip>/tcp/<port>` (port 0: an ephemeral one).
//! - [`Command::Dial`] models TCP's handshake: the SYN reaches the listener after one
//!   latency ([`Swarm::handle_incoming`]), the SYN-ACK is back after a second one
//!   ([`Swarm::handle_connected`]): connecting costs one round trip. Nobody listening:
//!   [`Swarm::handle_dial_failed`] after the round trip. A refused accept closes the socket:
//!   the dialer sees it connect, then end of file.
//! - Bytes from [`Swarm::poll_transmit`] arrive after the link latency (plus serialization
//!   at the configured bandwidth), in order, split into random chunks drawn from the seeded
//!   RNG when chunking is on.
//! - [`Command::Close`] flushes what is left, then the remote gets end of file (after the
//!   data); the closing side gets [`Swarm::handle_closed`] at once.
//! - [`NetSim::cut`] breaks a link: both sides get [`Swarm::handle_closed`] now, bytes in
//!   flight are lost.
//!
//! After every input the sim drains every swarm's commands and events (handing events to the
//! node's [`EchoApp`] first, then logging them) and flushes every connection, until nothing
//! moves. [`NetSim::step`] jumps to the earliest queued delivery or swarm deadline. The same
//! seed gives the same run: [`NetSim::log_hash`] hashes every logged event with its time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use plait_core::dial::TransportError;
use plait_core::identity::{keypair_from_seed, PeerId};
use plait_core::multiaddr::{Multiaddr, Protocol as AddrProto};
use plait_core::multistream::Protocol;
use plait_core::swarm::{
    Command, ConnectionId, Error, Event, StreamRef, StreamRequestId, Swarm, SwarmConfig,
};
use plait_core::time::Instant;
use plait_core::upgrade::Security;

/// A node of the simulation (index into [`NetSim::nodes`]).
pub type NodeId = usize;

/// The echo protocol of the tests (go-libp2p's echo example).
pub const ECHO: Protocol = Protocol::from_static("/echo/1.0.0");

/// SplitMix64: small, seedable, good enough for schedules.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (`lo` if `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// A link between two endpoints (one TCP connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// A raw endpoint driven by the test (no swarm), e.g. a peer that stalls an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Swarm { node: NodeId, conn: ConnectionId },
    Raw(RawId),
}

/// Traffic in one direction of a link.
#[derive(Debug, Clone, Default)]
pub struct DirStats {
    /// Bytes sent.
    pub bytes: u64,
    /// Flights: sends at distinct instants.
    pub flights: u64,
    /// Every send: (virtual time, bytes).
    pub sends: Vec<(Duration, usize)>,
}

#[derive(Debug)]
struct Link {
    /// 0: the dialer, 1: the listener (set once accepted).
    ends: [Option<End>; 2],
    /// Whether each side still receives (its socket is open).
    recv_open: [bool; 2],
    latency: Duration,
    busy_until: [Duration; 2],
    stats: [DirStats; 2],
}

/// A raw endpoint's state.
#[derive(Debug, Default, Clone)]
pub struct Raw {
    /// Bytes received.
    pub received: Vec<u8>,
    /// When the socket connected.
    pub connected_at: Option<Duration>,
    /// When end of file (or a refusal) arrived.
    pub eof_at: Option<Duration>,
    link: Option<LinkId>,
}

#[derive(Debug)]
enum Action {
    /// The SYN reaches the listening address.
    Accept { link: LinkId, addr: (Ipv4Addr, u16) },
    /// The dialer's socket is connected.
    Connected { link: LinkId },
    /// The dial failed.
    DialFailed {
        link: LinkId,
        reason: TransportError,
    },
    /// Bytes arrive at side `to`.
    Data {
        link: LinkId,
        to: usize,
        bytes: Bytes,
    },
    /// End of file arrives at side `to`.
    Eof { link: LinkId, to: usize },
}

/// Outcome of an echo stream this node opened.
#[derive(Debug, Default, Clone)]
pub struct ClientStream {
    /// The payload to send.
    pub payload: Vec<u8>,
    /// How much of it the swarm took.
    pub written: usize,
    /// The stream, once opened.
    pub stream: Option<StreamRef>,
    /// How many answers (`StreamOpened` / `StreamOpenFailed`) the request got.
    pub answers: u32,
    /// The failure, if the request failed.
    pub failed: Option<Error>,
    /// Echoed bytes received so far.
    pub received: Vec<u8>,
    /// We finished our side.
    pub finished: bool,
    /// The remote finished the stream.
    pub eof: bool,
    /// The stream was reset or its connection died.
    pub reset: bool,
    /// When the first echoed byte arrived.
    pub first_byte_at: Option<Duration>,
    /// When the request was made.
    pub requested_at: Duration,
}

impl ClientStream {
    /// The echo came back complete.
    pub fn complete(&self) -> bool {
        self.eof && !self.reset && self.received == self.payload
    }

    /// The request reached an end (echoed, failed or reset).
    pub fn settled(&self) -> bool {
        self.eof || self.reset || self.failed.is_some()
    }
}

#[derive(Debug, Default)]
struct ServerStream {
    pending: BytesMut,
    eof: bool,
    finished: bool,
}

/// The application of a node: serves echo on every inbound stream and drives the echo
/// requests made with [`NetSim::open_echo`].
#[derive(Debug, Default)]
pub struct EchoApp {
    /// Finish an inbound stream after echoing a newline (go's `doEcho`), not only at the
    /// remote's end.
    pub line_mode: bool,
    /// Do not finish echo requests after writing their payload (keeps streams open until
    /// [`NetSim::finish_all`]).
    pub hold_finish: bool,
    /// Stream requests made by this node.
    pub requests: BTreeMap<StreamRequestId, ClientStream>,
    streams: HashMap<StreamRef, StreamRequestId>,
    served: HashMap<StreamRef, ServerStream>,
    /// Inbound streams accepted.
    pub inbound: u64,
    /// Bytes echoed by the server side.
    pub echoed: u64,
    /// Nodes this one knows (free for tests to use: topology bookkeeping).
    pub known: Vec<NodeId>,
}

impl EchoApp {
    fn on_event(&mut self, at: Duration, now: Instant, swarm: &mut Swarm, event: &Event) {
        let _ = now;
        match event {
            Event::StreamOpened {
                request, stream, ..
            } => {
                if let Some(req) = self.requests.get_mut(request) {
                    req.answers += 1;
                    req.stream = Some(*stream);
                    self.streams.insert(*stream, *request);
                    self.client_write(swarm, *stream);
                }
            }
            Event::StreamOpenFailed { request, error } => {
                if let Some(req) = self.requests.get_mut(request) {
                    req.answers += 1;
                    req.failed = Some(error.clone());
                }
            }
            Event::InboundStream { stream, .. } => {
                self.inbound += 1;
                self.served.insert(*stream, ServerStream::default());
                self.server_read(swarm, *stream);
            }
            Event::Readable(stream) => {
                if self.served.contains_key(stream) {
                    self.server_read(swarm, *stream);
                } else if let Some(request) = self.streams.get(stream).copied() {
                    self.client_read(at, swarm, *stream, request);
                }
            }
            Event::Writable(stream) => {
                if self.served.contains_key(stream) {
                    self.server_flush(swarm, *stream);
                } else if self.streams.contains_key(stream) {
                    self.client_write(swarm, *stream);
                }
            }
            Event::StreamReset(stream) => {
                self.served.remove(stream);
                if let Some(request) = self.streams.remove(stream) {
                    if let Some(req) = self.requests.get_mut(&request) {
                        req.reset = true;
                    }
                }
            }
            Event::Disconnected { connection, .. } => {
                self.served.retain(|s, _| s.connection != *connection);
                let requests = &mut self.requests;
                self.streams.retain(|s, request| {
                    if s.connection != *connection {
                        return true;
                    }
                    if let Some(req) = requests.get_mut(request) {
                        if !req.eof {
                            req.reset = true;
                        }
                    }
                    false
                });
            }
            _ => {}
        }
    }

    fn client_write(&mut self, swarm: &mut Swarm, stream: StreamRef) {
        let Some(req) = self
            .streams
            .get(&stream)
            .and_then(|r| self.requests.get_mut(r))
        else {
            return;
        };
        while req.written < req.payload.len() {
            match swarm.write(stream, &req.payload[req.written..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => req.written += n,
            }
        }
        if !self.hold_finish && !req.finished {
            req.finished = true;
            let _ = swarm.finish(stream);
        }
    }

    fn client_read(
        &mut self,
        at: Duration,
        swarm: &mut Swarm,
        stream: StreamRef,
        request: StreamRequestId,
    ) {
        let Some(req) = self.requests.get_mut(&request) else {
            return;
        };
        loop {
            match swarm.read(stream, 64 * 1024) {
                Ok(Some(chunk)) if chunk.is_empty() => return,
                Ok(Some(chunk)) => {
                    req.first_byte_at.get_or_insert(at);
                    req.received.extend_from_slice(&chunk);
                }
                Ok(None) => {
                    req.eof = true;
                    self.streams.remove(&stream);
                    return;
                }
                Err(_) => {
                    req.reset = true;
                    self.streams.remove(&stream);
                    return;
                }
            }
        }
    }

    fn server_read(&mut self, swarm: &mut Swarm, stream: StreamRef) {
        let Some(s) = self.served.get_mut(&stream) else {
            return;
        };
        loop {
            match swarm.read(stream, 64 * 1024) {
                Ok(Some(chunk)) if chunk.is_empty() => break,
                Ok(Some(chunk)) => {
                    if self.line_mode && chunk.contains(&b'\n') {
                        s.eof = true;
                    }
                    s.pending.extend_from_slice(&chunk);
                }
                Ok(None) => {
                    s.eof = true;
                    break;
                }
                Err(_) => {
                    self.served.remove(&stream);
                    return;
                }
            }
        }
        self.server_flush(swarm, stream);
    }

    fn server_flush(&mut self, swarm: &mut Swarm, stream: StreamRef) {
        let Some(s) = self.served.get_mut(&stream) else {
            return;
        };
        while !s.pending.is_empty() {
            match swarm.write(stream, &s.pending) {
                Ok(0) => return,
                Ok(n) => {
                    self.echoed += n as u64;
                    let _ = s.pending.split_to(n);
                }
                Err(_) => {
                    self.served.remove(&stream);
                    return;
                }
            }
        }
        if s.eof && !s.finished {
            s.finished = true;
            let _ = swarm.finish(stream);
        }
        if s.finished {
            self.served.remove(&stream);
        }
    }
}

/// A node: a swarm, its application and what it saw.
pub struct Node {
    /// The swarm.
    pub swarm: Swarm,
    /// The application reacting to its events.
    pub app: EchoApp,
    /// Every event, with its virtual time (when [`NetSim::keep_events`] is on).
    pub events: Vec<(Duration, Event)>,
    /// Still part of the network.
    pub alive: bool,
    ip: Ipv4Addr,
    inputs: HashMap<ConnectionId, BytesMut>,
    timer_fired_at: Option<Duration>,
    timer: Option<Duration>,
}

/// The simulated network.
pub struct NetSim {
    base: Instant,
    now: Duration,
    seq: u64,
    /// The RNG behind chunking and any randomness a test draws with [`NetSim::rng`].
    pub rng: Rng,
    /// The nodes.
    pub nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<(Duration, u64, usize)>>,
    actions: HashMap<usize, Action>,
    listeners: HashMap<(Ipv4Addr, u16), NodeId>,
    node_listeners: HashMap<(NodeId, plait_core::swarm::ListenerId), (Ipv4Addr, u16)>,
    links: BTreeMap<LinkId, Link>,
    conn_links: HashMap<(NodeId, ConnectionId), (LinkId, usize)>,
    raws: BTreeMap<RawId, Raw>,
    next_link: u64,
    next_port: u16,
    /// One-way latency of links without an override.
    pub default_latency: Duration,
    latencies: HashMap<(NodeId, NodeId), Duration>,
    /// Largest chunk bytes are delivered in (random sizes from 1); `None`: whole sends.
    pub max_chunk: Option<usize>,
    /// Link bandwidth in bytes per second per direction; `None`: unlimited.
    pub bandwidth: Option<u64>,
    /// Keep events in [`Node::events`] (the hash is always computed).
    pub keep_events: bool,
    hash: u64,
    /// Nodes with inputs since they were last drained.
    dirty: BTreeSet<NodeId>,
    /// Each node's next deadline, as recorded after it was last drained.
    timers: BTreeSet<(Duration, NodeId)>,
    /// Events logged so far.
    pub num_events: u64,
}

fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

/// `/ip4/a.b.c.d/tcp/port` → its parts.
fn socket_of(addr: &Multiaddr) -> Option<(Ipv4Addr, u16)> {
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            AddrProto::Ip4(a) => ip = Some(a),
            AddrProto::Tcp(t) => port = Some(t),
            _ => {}
        }
    }
    Some((ip?, port?))
}

fn addr_of(ip: Ipv4Addr, port: u16) -> Multiaddr {
    Multiaddr::empty()
        .with(AddrProto::Ip4(ip))
        .with(AddrProto::Tcp(port))
}

/// A default swarm configuration for node seed `seed`: identity and handshake randomness from
/// the seed, `security`, pings off (they would keep virtual time busy).
pub fn node_config(seed: u64, security: Security) -> SwarmConfig {
    let mut hs = [0u8; 32];
    hs[..8].copy_from_slice(&seed.to_le_bytes());
    hs[8] = 0xA5;
    let mut config = SwarmConfig::new(keypair_from_seed(seed), hs)
        .expect("seeded config")
        .with_security(security);
    config.yamux = config.yamux.with_ping_interval(None);
    config.upgrade.unix_time = SIM_UNIX_TIME;
    config
}

/// The wall clock of every simulated node (2026-01-01T00:00:00Z), for TLS certificates.
pub const SIM_UNIX_TIME: Duration = Duration::from_secs(1_767_225_600);

impl NetSim {
    /// Everything `node` has to send on `connection` now.
    fn transmit_all(&mut self, node: NodeId, now: Instant, connection: ConnectionId) -> BytesMut {
        let swarm = &mut self.nodes[node].swarm;
        let mut out = BytesMut::new();
        while swarm.poll_transmit(now, connection, &mut out).is_some() {}
        out
    }

    /// An empty network: 10 ms one-way latency, no chunking, unlimited bandwidth.
    pub fn new(seed: u64) -> Self {
        Self {
            base: Instant::now(),
            now: Duration::ZERO,
            seq: 0,
            rng: Rng::new(seed),
            nodes: Vec::new(),
            queue: BinaryHeap::new(),
            actions: HashMap::new(),
            listeners: HashMap::new(),
            node_listeners: HashMap::new(),
            links: BTreeMap::new(),
            conn_links: HashMap::new(),
            raws: BTreeMap::new(),
            next_link: 1,
            next_port: 40000,
            default_latency: Duration::from_millis(10),
            latencies: HashMap::new(),
            max_chunk: None,
            bandwidth: None,
            keep_events: true,
            hash: 0xcbf2_9ce4_8422_2325,
            dirty: BTreeSet::new(),
            timers: BTreeSet::new(),
            num_events: 0,
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.base + self.now
    }

    /// The hash of every event logged so far, with node and time.
    pub fn log_hash(&self) -> u64 {
        self.hash
    }

    /// Adds a node with `config`; its address is `10.0.x.y` from its index.
    pub fn add_node(&mut self, config: SwarmConfig) -> NodeId {
        let id = self.nodes.len();
        let n = id + 1;
        let ip = Ipv4Addr::new(10, 0, (n / 250) as u8, (n % 250) as u8 + 1);
        let mut swarm = Swarm::new(config);
        swarm.add_protocol(ECHO);
        self.nodes.push(Node {
            swarm,
            app: EchoApp::default(),
            events: Vec::new(),
            alive: true,
            ip,
            inputs: HashMap::new(),
            timer_fired_at: None,
            timer: None,
        });
        self.dirty.insert(id);
        id
    }

    /// The node's IP address.
    pub fn ip(&self, node: NodeId) -> Ipv4Addr {
        self.nodes[node].ip
    }

    /// The node's swarm.
    pub fn swarm(&self, node: NodeId) -> &Swarm {
        &self.nodes[node].swarm
    }

    /// Tells `node` the addresses of `peer`, permanently (go's `PermanentAddrTTL`).
    pub fn add_addresses(
        &mut self,
        node: NodeId,
        peer: PeerId,
        addrs: impl IntoIterator<Item = Multiaddr>,
    ) {
        let now = self.now();
        self.swarm_mut(node).add_addresses(
            now,
            peer,
            addrs,
            plait_core::dial::peerstore::PERMANENT_ADDR_TTL,
        );
    }

    /// The node's swarm, to act on; call [`pump`](Self::pump) afterwards.
    pub fn swarm_mut(&mut self, node: NodeId) -> &mut Swarm {
        self.dirty.insert(node);
        &mut self.nodes[node].swarm
    }

    /// The node's peer id.
    pub fn peer(&self, node: NodeId) -> PeerId {
        self.nodes[node].swarm.local_peer_id()
    }

    /// Sets the one-way latency between `a` and `b` (both directions).
    pub fn set_latency(&mut self, a: NodeId, b: NodeId, latency: Duration) {
        self.latencies.insert((a.min(b), a.max(b)), latency);
    }

    fn latency(&self, a: Option<NodeId>, b: Option<NodeId>) -> Duration {
        match (a, b) {
            (Some(a), Some(b)) => self
                .latencies
                .get(&(a.min(b), a.max(b)))
                .copied()
                .unwrap_or(self.default_latency),
            _ => self.default_latency,
        }
    }

    /// Makes `node` listen on `port` (0: ephemeral); returns its address with `/p2p`.
    pub fn listen(&mut self, node: NodeId, port: u16) -> Multiaddr {
        let ip = self.nodes[node].ip;
        let listener = self.nodes[node].swarm.listen(addr_of(ip, port));
        self.dirty.insert(node);
        self.pump();
        let (ip, port) = self.node_listeners[&(node, listener)];
        addr_of(ip, port).with(AddrProto::P2p(self.peer(node)))
    }

    /// The first address `node` listens on, with `/p2p`.
    pub fn listen_addrs_of(&self, node: NodeId) -> Multiaddr {
        let addr = self.swarm(node).listen_addrs().into_iter().next();
        addr.expect("node listens")
            .with(AddrProto::P2p(self.peer(node)))
    }

    /// The swarm at `node` dials `addr`.
    pub fn dial(&mut self, node: NodeId, addr: Multiaddr) -> Result<ConnectionId, Error> {
        let now = self.now();
        let r = self.nodes[node].swarm.dial(now, addr);
        self.dirty.insert(node);
        self.pump();
        r
    }

    /// `node` opens an echo stream to `peer` proposing `protocols` and will send `payload`,
    /// finish, and collect the echo in [`EchoApp::requests`].
    pub fn open_echo(
        &mut self,
        node: NodeId,
        peer: PeerId,
        protocols: Vec<Protocol>,
        payload: Vec<u8>,
    ) -> StreamRequestId {
        let now = self.now();
        let n = &mut self.nodes[node];
        // Register before the swarm answers (it may answer at once).
        let request = n.swarm.open_stream(now, peer, protocols);
        n.app.requests.insert(
            request,
            ClientStream {
                payload,
                requested_at: self.now,
                ..ClientStream::default()
            },
        );
        // Answers queued by open_stream are delivered by pump, after the registration.
        self.dirty.insert(node);
        self.pump();
        request
    }

    /// Finishes every open echo request of `node` whose payload is written (see
    /// [`EchoApp::hold_finish`]).
    pub fn finish_all(&mut self, node: NodeId) {
        let n = &mut self.nodes[node];
        n.app.hold_finish = false;
        for req in n.app.requests.values_mut() {
            if let Some(stream) = req.stream {
                if !req.finished && !req.reset && req.written == req.payload.len() {
                    req.finished = true;
                    let _ = n.swarm.finish(stream);
                }
            }
        }
        self.dirty.insert(node);
        self.pump();
    }

    /// The echo request's state.
    pub fn request(&self, node: NodeId, request: StreamRequestId) -> &ClientStream {
        &self.nodes[node].app.requests[&request]
    }

    /// A raw endpoint connects to `addr`: the test sends with [`raw_send`](Self::raw_send)
    /// and reads [`raw`](Self::raw).
    pub fn raw_connect(&mut self, addr: &Multiaddr) -> RawId {
        let id = RawId(self.next_link);
        self.raws.insert(id, Raw::default());
        let link = self.new_link(End::Raw(id), None, addr);
        if let Some(r) = self.raws.get_mut(&id) {
            r.link = Some(link);
        }
        id
    }

    /// What a raw endpoint has seen.
    pub fn raw(&self, raw: RawId) -> &Raw {
        &self.raws[&raw]
    }

    /// Sends bytes from a raw endpoint (once connected; earlier sends leave on connect).
    pub fn raw_send(&mut self, raw: RawId, bytes: &[u8]) {
        let Some(link) = self.raws.get(&raw).and_then(|r| r.link) else {
            return;
        };
        self.send(link, 0, Bytes::copy_from_slice(bytes));
    }

    fn new_link(&mut self, dialer: End, dialer_node: Option<NodeId>, addr: &Multiaddr) -> LinkId {
        let link = LinkId(self.next_link);
        self.next_link += 1;
        let target = socket_of(addr);
        let listener_node = target.and_then(|t| self.listeners.get(&t).copied());
        let latency = self.latency(dialer_node, listener_node);
        self.links.insert(
            link,
            Link {
                ends: [Some(dialer), None],
                recv_open: [true, true],
                latency,
                busy_until: [self.now + 2 * latency, self.now + latency],
                stats: Default::default(),
            },
        );
        if let End::Swarm { node, conn } = dialer {
            self.conn_links.insert((node, conn), (link, 0));
        }
        match target {
            Some(addr) => self.schedule(latency, Action::Accept { link, addr }),
            None => self.schedule(
                Duration::ZERO,
                Action::DialFailed {
                    link,
                    reason: TransportError::Address(plait_core::dial::AddressError::Unsupported),
                },
            ),
        }
        link
    }

    fn schedule(&mut self, after: Duration, action: Action) {
        self.schedule_at(self.now + after, action);
    }

    fn schedule_at(&mut self, at: Duration, action: Action) {
        let seq = self.seq;
        self.seq += 1;
        self.actions.insert(seq as usize, action);
        self.queue.push(Reverse((at, seq, seq as usize)));
    }

    fn send(&mut self, link_id: LinkId, from: usize, bytes: Bytes) {
        let to = 1 - from;
        let now = self.now;
        let bandwidth = self.bandwidth;
        let max_chunk = self.max_chunk;
        let Some(link) = self.links.get_mut(&link_id) else {
            return;
        };
        let stats = &mut link.stats[from];
        if stats.sends.last().is_none_or(|(t, _)| *t != now) {
            stats.flights += 1;
        }
        stats.bytes += bytes.len() as u64;
        stats.sends.push((now, bytes.len()));
        if !link.recv_open[to] {
            return;
        }
        let start = link.busy_until[from].max(now);
        let serialize = bandwidth.map_or(Duration::ZERO, |bw| {
            Duration::from_nanos((bytes.len() as u64).saturating_mul(1_000_000_000) / bw.max(1))
        });
        link.busy_until[from] = start + serialize;
        let at = start + serialize + link.latency;
        let mut bytes = bytes;
        match max_chunk {
            None => self.schedule_at(
                at,
                Action::Data {
                    link: link_id,
                    to,
                    bytes,
                },
            ),
            Some(max) => {
                while !bytes.is_empty() {
                    let n = (self.rng.range(1, max as u64) as usize).min(bytes.len());
                    let chunk = bytes.split_to(n);
                    self.schedule_at(
                        at,
                        Action::Data {
                            link: link_id,
                            to,
                            bytes: chunk,
                        },
                    );
                }
            }
        }
    }

    fn send_eof(&mut self, link_id: LinkId, from: usize) {
        let to = 1 - from;
        let now = self.now;
        let Some(link) = self.links.get_mut(&link_id) else {
            return;
        };
        link.recv_open[from] = false;
        if !link.recv_open[to] {
            return;
        }
        let at = link.busy_until[from].max(now) + link.latency;
        self.schedule_at(at, Action::Eof { link: link_id, to });
    }

    /// Breaks a link: both ends get end of file now; bytes in flight are lost.
    pub fn cut(&mut self, link_id: LinkId) {
        let Some(link) = self.links.get_mut(&link_id) else {
            return;
        };
        let ends = link.ends;
        let open = link.recv_open;
        link.recv_open = [false, false];
        for (side, end) in ends.iter().enumerate() {
            if open[side] {
                if let Some(end) = end {
                    self.deliver_eof(*end);
                }
            }
        }
        self.pump();
    }

    /// Links between swarm nodes `a` and `b` that are open on both sides.
    pub fn links_between(&self, a: NodeId, b: NodeId) -> Vec<LinkId> {
        self.links
            .iter()
            .filter(|(_, l)| {
                let nodes: Vec<Option<NodeId>> = l
                    .ends
                    .iter()
                    .map(|e| match e {
                        Some(End::Swarm { node, .. }) => Some(*node),
                        _ => None,
                    })
                    .collect();
                l.recv_open[0]
                    && l.recv_open[1]
                    && ((nodes[0] == Some(a) && nodes[1] == Some(b))
                        || (nodes[0] == Some(b) && nodes[1] == Some(a)))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Every link open on both sides.
    pub fn open_links(&self) -> Vec<LinkId> {
        self.links
            .iter()
            .filter(|(_, l)| l.recv_open[0] && l.recv_open[1] && l.ends[1].is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Traffic statistics of a link: `[dialer → listener, listener → dialer]`.
    pub fn link_stats(&self, link: LinkId) -> &[DirStats; 2] {
        &self.links[&link].stats
    }

    /// Every link created so far.
    pub fn links(&self) -> Vec<LinkId> {
        self.links.keys().copied().collect()
    }

    /// The node leaves abruptly: its links break, its listeners go away.
    pub fn remove_node(&mut self, node: NodeId) {
        let links: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| {
                l.ends
                    .iter()
                    .any(|e| matches!(e, Some(End::Swarm { node: n, .. }) if *n == node))
            })
            .map(|(id, _)| *id)
            .collect();
        for link in links {
            self.cut(link);
        }
        self.listeners.retain(|_, n| *n != node);
        self.nodes[node].alive = false;
        self.update_timer(node);
    }

    fn deliver_eof(&mut self, end: End) {
        match end {
            End::Swarm { node, conn } => {
                self.conn_links.remove(&(node, conn));
                let now = self.now();
                let n = &mut self.nodes[node];
                n.inputs.remove(&conn);
                if n.alive {
                    n.swarm.handle_closed(now, conn);
                    self.dirty.insert(node);
                }
            }
            End::Raw(raw) => {
                if let Some(r) = self.raws.get_mut(&raw) {
                    r.eof_at.get_or_insert(self.now);
                }
            }
        }
    }

    fn run_action(&mut self, action: Action) {
        let now = self.now();
        match action {
            Action::Accept { link, addr } => {
                let target = self.listeners.get(&addr).copied();
                let (dialer_addr, dialer_alive) = match self.links[&link].ends[0] {
                    Some(End::Swarm { node, .. }) => (
                        addr_of(self.nodes[node].ip, self.ephemeral()),
                        self.nodes[node].alive,
                    ),
                    _ => (
                        addr_of(Ipv4Addr::new(10, 255, 0, 1), self.ephemeral()),
                        true,
                    ),
                };
                let latency = self.links[&link].latency;
                let Some(node) = target.filter(|n| self.nodes[*n].alive) else {
                    self.schedule(
                        latency,
                        Action::DialFailed {
                            link,
                            reason: TransportError::Io(std::io::ErrorKind::ConnectionRefused),
                        },
                    );
                    return;
                };
                if !dialer_alive {
                    return;
                }
                let local = addr_of(addr.0, addr.1);
                match self.nodes[node]
                    .swarm
                    .handle_incoming(now, local, dialer_addr)
                {
                    Ok(conn) => {
                        if let Some(l) = self.links.get_mut(&link) {
                            l.ends[1] = Some(End::Swarm { node, conn });
                        }
                        self.conn_links.insert((node, conn), (link, 1));
                        self.dirty.insert(node);
                        self.schedule(latency, Action::Connected { link });
                    }
                    Err(_) => {
                        // Accepted, then closed at once: the dialer connects, then reads EOF.
                        self.schedule(latency, Action::Connected { link });
                        if let Some(l) = self.links.get_mut(&link) {
                            l.recv_open[1] = false;
                        }
                        self.schedule(latency, Action::Eof { link, to: 0 });
                    }
                }
            }
            Action::Connected { link } => {
                let Some(l) = self.links.get(&link) else {
                    return;
                };
                if !l.recv_open[0] {
                    return;
                }
                match l.ends[0] {
                    Some(End::Swarm { node, conn }) if self.nodes[node].alive => {
                        self.nodes[node].swarm.handle_connected(now, conn);
                        self.dirty.insert(node);
                    }
                    Some(End::Raw(raw)) => {
                        if let Some(r) = self.raws.get_mut(&raw) {
                            r.connected_at = Some(self.now);
                        }
                    }
                    _ => {}
                }
            }
            Action::DialFailed { link, reason } => {
                let Some(l) = self.links.get_mut(&link) else {
                    return;
                };
                l.recv_open = [false, false];
                match l.ends[0] {
                    Some(End::Swarm { node, conn }) => {
                        self.conn_links.remove(&(node, conn));
                        if self.nodes[node].alive {
                            self.nodes[node].swarm.handle_dial_failed(now, conn, reason);
                            self.dirty.insert(node);
                        }
                    }
                    Some(End::Raw(raw)) => {
                        if let Some(r) = self.raws.get_mut(&raw) {
                            r.eof_at = Some(self.now);
                        }
                    }
                    None => {}
                }
            }
            Action::Data { link, to, bytes } => {
                let Some(l) = self.links.get(&link) else {
                    return;
                };
                if !l.recv_open[to] {
                    return;
                }
                match l.ends[to] {
                    Some(End::Swarm { node, conn }) => {
                        let n = &mut self.nodes[node];
                        if !n.alive {
                            return;
                        }
                        let input = n.inputs.entry(conn).or_default();
                        input.extend_from_slice(&bytes);
                        n.swarm.handle_input(now, conn, input);
                        self.dirty.insert(node);
                    }
                    Some(End::Raw(raw)) => {
                        if let Some(r) = self.raws.get_mut(&raw) {
                            r.received.extend_from_slice(&bytes);
                        }
                    }
                    None => {}
                }
            }
            Action::Eof { link, to } => {
                let Some(l) = self.links.get_mut(&link) else {
                    return;
                };
                if !l.recv_open[to] {
                    return;
                }
                // The reader sees end of file; it answers with its own close (Command::Close).
                let end = l.ends[to];
                if let Some(end) = end {
                    if let End::Raw(_) = end {
                        l.recv_open[to] = false;
                    }
                    self.deliver_eof(end);
                }
            }
        }
    }

    fn ephemeral(&mut self) -> u16 {
        self.next_port = self.next_port.wrapping_add(1).max(40000);
        self.next_port
    }

    fn handle_command(&mut self, node: NodeId, command: Command) {
        let now = self.now();
        match command {
            Command::Listen { listener, addr } => {
                let ip = self.nodes[node].ip;
                let bound = match socket_of(&addr) {
                    Some((a, port)) if a == ip || a.is_unspecified() => {
                        let port = if port == 0 { self.ephemeral() } else { port };
                        if self.listeners.contains_key(&(ip, port)) {
                            Err(TransportError::Io(std::io::ErrorKind::AddrInUse))
                        } else {
                            Ok((ip, port))
                        }
                    }
                    _ => Err(TransportError::Io(std::io::ErrorKind::AddrNotAvailable)),
                };
                match bound {
                    Ok(sock) => {
                        self.listeners.insert(sock, node);
                        self.node_listeners.insert((node, listener), sock);
                        self.nodes[node]
                            .swarm
                            .handle_listening(listener, addr_of(sock.0, sock.1));
                    }
                    Err(e) => self.nodes[node].swarm.handle_listen_failed(listener, e),
                }
            }
            Command::CloseListener { listener } => {
                if let Some(sock) = self.node_listeners.remove(&(node, listener)) {
                    self.listeners.remove(&sock);
                }
            }
            Command::Dial { connection, addr } => {
                self.new_link(
                    End::Swarm {
                        node,
                        conn: connection,
                    },
                    Some(node),
                    &addr,
                );
            }
            Command::Close { connection } => {
                if let Some((link, side)) = self.conn_links.get(&(node, connection)).copied() {
                    let out = self.transmit_all(node, now, connection);
                    if !out.is_empty() {
                        self.send(link, side, out.freeze());
                    }
                    self.send_eof(link, side);
                    self.conn_links.remove(&(node, connection));
                }
                self.nodes[node].inputs.remove(&connection);
                self.nodes[node].swarm.handle_closed(now, connection);
                self.dirty.insert(node);
            }
            _ => {}
        }
    }

    /// Drains the commands and events of every swarm that had input and flushes its
    /// connections, until nothing moves; then records each such swarm's next deadline.
    pub fn pump(&mut self) {
        while let Some(node) = self.dirty.pop_first() {
            if self.nodes[node].alive {
                self.drain(node);
            }
            self.update_timer(node);
        }
    }

    fn drain(&mut self, node: NodeId) {
        let now = self.now();
        loop {
            let mut progress = false;
            while let Some(command) = self.nodes[node].swarm.poll_command() {
                progress = true;
                self.handle_command(node, command);
            }
            while let Some(event) = self.nodes[node].swarm.poll_event() {
                progress = true;
                let n = &mut self.nodes[node];
                n.app.on_event(self.now, now, &mut n.swarm, &event);
                let line = format!("{} {} {:?}", self.now.as_nanos(), node, event);
                self.hash = fnv(self.hash, line.as_bytes());
                self.num_events += 1;
                if self.keep_events {
                    self.nodes[node].events.push((self.now, event));
                }
            }
            let mut conns: Vec<ConnectionId> =
                self.nodes[node].swarm.connections_with_output().collect();
            conns.sort();
            for conn in conns {
                let out = self.transmit_all(node, now, conn);
                if out.is_empty() {
                    continue;
                }
                progress = true;
                if let Some((link, side)) = self.conn_links.get(&(node, conn)).copied() {
                    self.send(link, side, out.freeze());
                }
            }
            if !progress {
                break;
            }
        }
    }

    fn update_timer(&mut self, node: NodeId) {
        let n = &mut self.nodes[node];
        if let Some(t) = n.timer.take() {
            self.timers.remove(&(t, node));
        }
        if !n.alive {
            return;
        }
        let Some(t) = n.swarm.poll_timeout() else {
            return;
        };
        let t = t.saturating_duration_since(self.base);
        // A deadline that stays in the past after firing: look again a little later.
        let t = if t <= self.now && n.timer_fired_at == Some(self.now) {
            self.now + Duration::from_millis(1)
        } else {
            t.max(self.now)
        };
        n.timer = Some(t);
        self.timers.insert((t, node));
    }

    fn next_timer(&self) -> Option<Duration> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// When the next thing happens, if anything is scheduled.
    pub fn next_event_time(&self) -> Option<Duration> {
        let delivery = self.queue.peek().map(|Reverse((t, _, _))| *t);
        match (delivery, self.next_timer()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances to the next delivery or deadline (deliveries first on a tie) and handles it.
    /// Returns `false` when nothing is scheduled.
    pub fn step(&mut self) -> bool {
        let delivery = self.queue.peek().map(|Reverse((t, _, _))| *t);
        let timer = self.next_timer();
        match (delivery, timer) {
            (Some(d), t) if t.is_none_or(|t| d <= t) => {
                let Some(Reverse((at, _, key))) = self.queue.pop() else {
                    return false;
                };
                self.now = self.now.max(at);
                if let Some(action) = self.actions.remove(&key) {
                    self.run_action(action);
                }
            }
            (_, Some(t)) => {
                self.now = self.now.max(t);
                let now = self.now();
                while let Some(&(at, node)) = self.timers.first() {
                    if at > self.now {
                        break;
                    }
                    self.timers.remove(&(at, node));
                    let n = &mut self.nodes[node];
                    n.timer = None;
                    if n.alive {
                        n.timer_fired_at = Some(self.now);
                        n.swarm.handle_timeout(now);
                    }
                    self.dirty.insert(node);
                }
            }
            _ => return false,
        }
        self.pump();
        true
    }

    /// Steps until `done` holds (returns `true`) or nothing is scheduled before `limit`
    /// of virtual time since the start (returns `done`'s value then).
    pub fn run_until(&mut self, mut done: impl FnMut(&Self) -> bool, limit: Duration) -> bool {
        loop {
            if done(self) {
                return true;
            }
            match self.next_event_time() {
                Some(t) if t <= limit => {
                    self.step();
                }
                _ => return done(self),
            }
        }
    }

    /// Handles everything scheduled in the next `d`, then moves the clock to its end.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.next_event_time().is_some_and(|t| t <= end) {
            self.step();
        }
        self.now = end;
    }

    /// Steps until nothing is scheduled (or `limit` is reached).
    pub fn run_idle(&mut self, limit: Duration) {
        while self.next_event_time().is_some_and(|t| t <= limit) {
            self.step();
        }
    }
}
