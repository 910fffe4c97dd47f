//! The sans-IO heart of a host: listeners, connections per peer, streams routed to protocol
//! handlers.
//!
//! # The I/O contract
//!
//! The swarm never touches a socket or a clock. A driver (a runtime adapter, a simulator or
//! your own event loop) carries out its [`Command`]s and reports what happened:
//!
//! | the swarm says ([`Swarm::poll_command`]) | the driver does, then reports |
//! |---|---|
//! | [`Command::Listen`] `{ listener, addr }` | bind; [`Swarm::handle_listening`] or [`Swarm::handle_listen_failed`] |
//! | [`Command::Dial`] `{ connection, addr }` | connect; [`Swarm::handle_connected`] or [`Swarm::handle_dial_failed`] |
//! | [`Command::Close`] `{ connection }` | flush [`Swarm::poll_transmit`], close the socket |
//! | [`Command::CloseListener`] `{ listener }` | stop accepting |
//! | [`Swarm::poll_timeout`] | call [`Swarm::handle_timeout`] at that instant |
//!
//! and in between: an accepted socket → [`Swarm::handle_incoming`]; bytes read →
//! [`Swarm::handle_input`]; socket writable → [`Swarm::poll_transmit`] for that connection;
//! end of file or error → [`Swarm::handle_closed`]. After each input, drain
//! [`Swarm::poll_command`] and [`Swarm::poll_event`], then call [`Swarm::poll_transmit`] for
//! the connection that received input and for every connection
//! [`Swarm::poll_wants_transmit`] names (output caused by application writes, built-in
//! services and timers). A simple driver may instead flush every connection
//! ([`Swarm::connections_with_output`]) after every call.

mod limits;
mod services;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use libp2p_identity::{Keypair, PeerId};

use crate::connection::{self, Connection, ConnectionConfig};
use crate::dial::peerstore::AddressBook;
use crate::dial::{
    self, AttemptId, DialError, DialOpts, DialRequestId, DialScheduler, TransportError,
};
use crate::multiaddr::{split_p2p, Multiaddr};
use crate::multistream::{Protocol, ProtocolSet};
use crate::noise;
use crate::time::Instant;
use crate::upgrade::{Role, Security, UpgradeConfig};
use crate::yamux::{self, StreamId};

pub use crate::connection::Transmit;
pub use limits::{ConnManagerConfig, Limits};
pub use services::{AGENT_VERSION, PROTOCOL_VERSION};

use services::{Outcome, Running, Service};

/// Identifies a connection of a swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Identifies a listener of a swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub u64);

/// Identifies a request to open a stream to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamRequestId(pub u64);

/// A stream on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamRef {
    /// The connection carrying the stream.
    pub connection: ConnectionId,
    /// The yamux stream.
    pub stream: StreamId,
}

/// How a connection came about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// We dialed `addr`.
    Dialer {
        /// The dialed address (without `/p2p`).
        addr: Multiaddr,
    },
    /// We accepted it on a listener.
    Listener {
        /// Our local address.
        local: Multiaddr,
        /// The remote's address.
        remote: Multiaddr,
    },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Start listening on `addr`.
    Listen {
        /// The listener to report about.
        listener: ListenerId,
        /// Where to listen.
        addr: Multiaddr,
    },
    /// Stop listening.
    CloseListener {
        /// The listener.
        listener: ListenerId,
    },
    /// Open a connection to `addr` (without `/p2p`).
    Dial {
        /// The connection to report about.
        connection: ConnectionId,
        /// Where to connect.
        addr: Multiaddr,
    },
    /// Flush what is left to send, then close the socket.
    Close {
        /// The connection.
        connection: ConnectionId,
    },
}

/// Something that happened (go-libp2p's notifiee events plus streams).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A listener is bound.
    ListenStarted {
        /// The listener.
        listener: ListenerId,
        /// The bound address (the port resolved).
        addr: Multiaddr,
    },
    /// A listener stopped.
    ListenClosed {
        /// The listener.
        listener: ListenerId,
        /// Why, if it failed.
        error: Option<String>,
    },
    /// A connection finished its upgrade.
    Connected {
        /// The remote peer.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
        /// How it came about.
        endpoint: Endpoint,
    },
    /// An established connection ended.
    Disconnected {
        /// The remote peer.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
        /// Why, if it failed.
        error: Option<String>,
    },
    /// A connection failed before it was established.
    ConnectionFailed {
        /// The connection.
        connection: ConnectionId,
        /// The peer we dialed, if known.
        peer: Option<PeerId>,
        /// Why.
        error: Error,
    },
    /// The remote opened a stream with a protocol we handle.
    InboundStream {
        /// The remote peer.
        peer: PeerId,
        /// The stream.
        stream: StreamRef,
        /// The agreed protocol.
        protocol: Protocol,
    },
    /// The remote proposed on an inbound stream a protocol that is not an exact protocol of
    /// the swarm (only after [`Swarm::set_ask_about_other_protocols`]): answer with
    /// [`Swarm::answer_protocol_query`].
    ProtocolQuery {
        /// The remote peer.
        peer: PeerId,
        /// The stream.
        stream: StreamRef,
        /// The proposed protocol.
        protocol: Protocol,
    },
    /// A stream requested with [`Swarm::open_stream`] is open and writable.
    StreamOpened {
        /// The request.
        request: StreamRequestId,
        /// The stream.
        stream: StreamRef,
        /// The protocol (optimistic until the remote confirms it).
        protocol: Protocol,
    },
    /// A stream request failed.
    StreamOpenFailed {
        /// The request.
        request: StreamRequestId,
        /// Why.
        error: Error,
    },
    /// A stream has data or its end to read.
    Readable(StreamRef),
    /// A stream can take more data.
    Writable(StreamRef),
    /// The remote reset a stream.
    StreamReset(StreamRef),
    /// The answer to [`Swarm::ping`].
    PingResult {
        /// The ping, as [`Swarm::ping`] returned it.
        request: StreamRequestId,
        /// The pinged peer.
        peer: PeerId,
        /// The round-trip time, or why the ping failed.
        result: Result<std::time::Duration, String>,
    },
    /// The remote answered our identify query (sent on every new connection).
    Identified {
        /// The peer.
        peer: PeerId,
        /// What it told us.
        info: Box<crate::identify::Info>,
    },
    /// Reading the remote's identify answer failed.
    IdentifyFailed {
        /// The peer.
        peer: PeerId,
        /// Why.
        error: String,
    },
}

/// Why a swarm operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address cannot be dialed or lacks what is needed.
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// We would dial ourselves (go-libp2p's `ErrDialToSelf`).
    #[error("dial to self attempted")]
    DialToSelf,
    /// Dialing the peer failed; the error lists every address and why.
    #[error(transparent)]
    Dial(Box<DialError>),
    /// Opening the socket failed, or the connection failed before it was established.
    #[error(transparent)]
    Transport(TransportError),
    /// The upgrade or the connection failed.
    #[error("connection: {0}")]
    Connection(String),
    /// The remote supports none of the protocols.
    #[error("protocol negotiation failed: {0}")]
    Negotiation(String),
    /// A configured limit was hit.
    #[error("limit reached: {0}")]
    Limit(&'static str),
    /// The peer has not yet acknowledged yamux's limit of unacknowledged streams we opened
    /// (256, [`crate::yamux::MAX_ACK_BACKLOG`]): open the stream again once it has (go-yamux's
    /// `OpenStream` waits for that).
    #[error("the peer has not acknowledged the streams already opened")]
    AckBacklogFull,
    /// No such connection or stream.
    #[error("unknown connection or stream")]
    Unknown,
    /// The connection closed before the request completed.
    #[error("connection closed")]
    Closed,
}

/// Why a connection that was not established yet failed, in the terms of a dial attempt.
fn transport_cause(error: &connection::Error) -> TransportError {
    use crate::upgrade::Error as U;
    match error {
        connection::Error::Upgrade(U::WrongPeer { actual, .. }) => {
            TransportError::PeerIdMismatch { obtained: **actual }
        }
        connection::Error::Upgrade(U::Noise(noise::Error::PeerIdMismatch { actual, .. }))
        | connection::Error::Upgrade(U::Plaintext(crate::plaintext::Error::PeerIdMismatch {
            actual,
            ..
        })) => TransportError::PeerIdMismatch { obtained: **actual },
        connection::Error::Upgrade(U::Noise(
            e @ (noise::Error::InvalidKey(_) | noise::Error::RejectedKey(_)),
        )) => TransportError::IdentityKey(e.to_string()),
        connection::Error::Upgrade(U::Plaintext(
            e @ (crate::plaintext::Error::InvalidKey(_) | crate::plaintext::Error::RejectedKey(_)),
        )) => TransportError::IdentityKey(e.to_string()),
        connection::Error::Upgrade(U::Negotiation(e)) | connection::Error::Negotiation(e) => {
            TransportError::Negotiation(e.to_string())
        }
        connection::Error::Upgrade(U::Timeout(_)) => TransportError::UpgradeTimeout,
        other => TransportError::Upgrade(other.to_string()),
    }
}

impl From<connection::Error> for Error {
    fn from(e: connection::Error) -> Self {
        match e {
            connection::Error::UnknownStream(_) => Self::Unknown,
            connection::Error::Yamux(yamux::Error::AckBacklogFull) => Self::AckBacklogFull,
            other => Self::Connection(other.to_string()),
        }
    }
}

/// A swarm's settings.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Identity, security and upgrade timeout.
    pub upgrade: UpgradeConfig,
    /// yamux settings for every connection.
    pub yamux: yamux::Config,
    /// Limits on connections and streams.
    pub limits: Limits,
    /// Connection trimming.
    pub conn_manager: ConnManagerConfig,
    /// How peers are dialed: ranking, limits, timeouts, backoff, black holes.
    pub dial: dial::Config,
}

impl SwarmConfig {
    /// Defaults for `keypair`: Noise, yamux, default limits. `seed` seeds handshake
    /// randomness (see [`UpgradeConfig::new`]).
    pub fn new(keypair: Keypair, seed: [u8; 32]) -> Result<Self, crate::upgrade::Error> {
        let dial = dial::Config::new(keypair.public().to_peer_id());
        Ok(Self {
            upgrade: UpgradeConfig::new(keypair, seed)?,
            yamux: yamux::Config::default(),
            limits: Limits::default(),
            conn_manager: ConnManagerConfig::default(),
            dial,
        })
    }

    /// Uses `security` for every connection.
    pub fn with_security(mut self, security: Security) -> Self {
        self.upgrade = self.upgrade.with_security(security);
        self
    }
}

struct ConnEntry {
    conn: Connection,
    endpoint: Endpoint,
    peer: Option<PeerId>,
    expected_peer: Option<PeerId>,
    /// When the connection was established (for the grace period and "newest").
    established_at: Option<Instant>,
    /// The socket is open (dialed connections wait for it).
    socket_open: bool,
    /// Stream requests waiting for this connection to be established.
    waiting: Vec<(StreamRequestId, Vec<Protocol>)>,
    /// The dial scheduler's attempt this connection carries out.
    attempt: Option<AttemptId>,
    /// Outbound streams opened for requests, until their protocol is confirmed.
    requests: HashMap<StreamId, StreamRequestId>,
    closing: bool,
}

/// A stream the swarm opens for itself.
#[derive(Debug, Clone, Copy)]
enum Internal {
    Ping,
    Identify,
}

/// The swarm: see the [module documentation](self) for the I/O contract.
pub struct Swarm {
    local_peer: PeerId,
    config: Arc<ConnectionConfig>,
    limits: Limits,
    conn_manager: ConnManagerConfig,
    connections: HashMap<ConnectionId, ConnEntry>,
    peers: HashMap<PeerId, Vec<ConnectionId>>,
    listeners: HashMap<ListenerId, Vec<Multiaddr>>,
    protected: HashSet<PeerId>,
    addresses: AddressBook,
    dialer: DialScheduler,
    /// Stream requests waiting for a dial of the scheduler.
    waiting_for_dial: HashMap<DialRequestId, (StreamRequestId, Vec<Protocol>)>,
    /// Connections carrying out the scheduler's attempts.
    attempts: HashMap<AttemptId, ConnectionId>,
    /// Built-in protocols (ping, identify) running on streams.
    services: HashMap<StreamRef, Running>,
    /// Streams whose built-in service ended but that still exist: their late events (the
    /// remote's end, a reset) are not the application's business.
    retired: HashSet<StreamRef>,
    /// Stream requests the swarm made for its own services.
    internal: HashMap<StreamRequestId, (PeerId, Internal)>,
    /// A trim is under way: connections are closed, as their grace periods end, until the low
    /// watermark is reached.
    trimming: bool,
    /// When the next connection leaves its grace period during a trim (always a future
    /// instant when set: it is computed from connections still in grace).
    next_trim: Option<Instant>,
    /// The open streams of our pings, with the request each answers.
    ping_streams: HashMap<StreamRef, StreamRequestId>,
    /// What each connected peer told us through identify.
    peer_info: HashMap<PeerId, Box<crate::identify::Info>>,
    /// Connections that got output to send outside their own input and transmit calls (a
    /// stream write, a built-in service, a timer), for [`Swarm::poll_wants_transmit`].
    wants_transmit: Vec<ConnectionId>,
    /// The latest instant seen, for work done while handing out events.
    last_now: Option<Instant>,
    commands: VecDeque<Command>,
    events: VecDeque<Event>,
    next_id: u64,
}

impl Swarm {
    /// A swarm with `config`, handling no protocols yet.
    pub fn new(config: SwarmConfig) -> Self {
        let local_peer = config.upgrade.keypair.public().to_peer_id();
        let yamux = config
            .yamux
            .clone()
            .with_max_streams(config.limits.max_streams_per_connection);
        Self {
            local_peer,
            config: Arc::new(ConnectionConfig {
                upgrade: config.upgrade,
                yamux,
                protocols: Arc::new(ProtocolSet::from_protocols([
                    Protocol::from_static(crate::ping::PROTOCOL),
                    Protocol::from_static(crate::identify::PROTOCOL),
                ])),
                max_negotiating_inbound_streams: config.limits.max_negotiating_inbound_streams,
                inbound_negotiation_timeout: config.limits.inbound_negotiation_timeout,
            }),
            limits: config.limits,
            conn_manager: config.conn_manager,
            connections: HashMap::new(),
            peers: HashMap::new(),
            listeners: HashMap::new(),
            protected: Default::default(),
            addresses: AddressBook::new(),
            dialer: DialScheduler::new(config.dial),
            waiting_for_dial: HashMap::new(),
            attempts: HashMap::new(),
            services: HashMap::new(),
            retired: Default::default(),
            internal: HashMap::new(),
            ping_streams: HashMap::new(),
            trimming: false,
            next_trim: None,
            peer_info: HashMap::new(),
            wants_transmit: Vec::new(),
            last_now: None,
            commands: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Our peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer
    }

    // ---- handlers ----

    /// Accepts inbound streams for `protocol` (exact match). Connections opened later use the
    /// new set; existing ones keep theirs.
    pub fn add_protocol(&mut self, protocol: Protocol) {
        self.update_protocols(|set| {
            set.add(protocol);
        });
    }

    /// Puts inbound proposals of ids that are not exact protocols to the caller as
    /// [`Event::ProtocolQuery`] instead of refusing them (go-libp2p's
    /// `SetStreamHandlerMatch`: the caller runs its matchers, outside the swarm, and answers
    /// with [`Swarm::answer_protocol_query`]). Connections opened later use the new setting.
    pub fn set_ask_about_other_protocols(&mut self, ask: bool) {
        self.update_protocols(|set| {
            set.set_ask_others(ask);
        });
    }

    /// Answers an [`Event::ProtocolQuery`]: whether `stream` may use the protocol its remote
    /// proposed. A refused remote may propose another.
    pub fn answer_protocol_query(
        &mut self,
        now: Instant,
        stream: StreamRef,
        accept: bool,
    ) -> Result<(), Error> {
        let entry = self
            .connections
            .get_mut(&stream.connection)
            .ok_or(Error::Unknown)?;
        let result = entry.conn.answer_protocol_query(stream.stream, accept);
        self.process_connection(now, stream.connection);
        self.mark_output(stream.connection);
        Ok(result?)
    }

    fn update_protocols(&mut self, f: impl FnOnce(&mut ProtocolSet)) {
        let mut config = (*self.config).clone();
        let mut set = (*config.protocols).clone();
        f(&mut set);
        config.protocols = Arc::new(set);
        self.config = Arc::new(config);
    }

    /// The exact protocols inbound streams may negotiate.
    pub fn protocols(&self) -> Vec<Protocol> {
        self.config.protocols.protocols().to_vec()
    }

    // ---- listeners ----

    /// Asks the driver to listen on `addr`.
    pub fn listen(&mut self, addr: Multiaddr) -> ListenerId {
        let listener = ListenerId(self.next_id());
        self.listeners.insert(listener, Vec::new());
        self.commands.push_back(Command::Listen { listener, addr });
        listener
    }

    /// Driver: the listener is bound to `addr`.
    pub fn handle_listening(&mut self, listener: ListenerId, addr: Multiaddr) {
        if let Some(addrs) = self.listeners.get_mut(&listener) {
            addrs.push(addr.clone());
            self.events
                .push_back(Event::ListenStarted { listener, addr });
            let all = self.listen_addrs();
            self.dialer.set_listen_addrs(all);
        }
    }

    /// Driver: the listener failed or closed.
    pub fn handle_listen_failed(&mut self, listener: ListenerId, error: String) {
        if self.listeners.remove(&listener).is_some() {
            self.events.push_back(Event::ListenClosed {
                listener,
                error: Some(error),
            });
        }
    }

    /// Stops a listener.
    pub fn close_listener(&mut self, listener: ListenerId) {
        if self.listeners.remove(&listener).is_some() {
            self.commands.push_back(Command::CloseListener { listener });
            self.events.push_back(Event::ListenClosed {
                listener,
                error: None,
            });
        }
    }

    /// Addresses we listen on.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        let mut addrs: Vec<Multiaddr> = self.listeners.values().flatten().cloned().collect();
        addrs.sort();
        addrs
    }

    /// Driver: a socket was accepted. Returns its connection id, or an error when a limit
    /// refuses it (then close the socket at once).
    pub fn handle_incoming(
        &mut self,
        now: Instant,
        local: Multiaddr,
        remote: Multiaddr,
    ) -> Result<ConnectionId, Error> {
        let pending_inbound = || {
            self.connections.iter().filter(|(_, c)| {
                c.peer.is_none() && !c.closing && matches!(c.endpoint, Endpoint::Listener { .. })
            })
        };
        if pending_inbound().count() >= self.limits.max_pending_incoming {
            // Drop an upgrading connection rather than the new one: the least advanced, the
            // oldest of those (it has had the longest to finish its handshake, while an honest
            // dialer needs only a few round trips). Refusing instead would let a peer holding
            // `max_pending_incoming` idle sockets lock every dialer out until the upgrade
            // timeout.
            let victim = pending_inbound().min_by_key(|(id, c)| (c.conn.upgrade_progress(), **id));
            let Some(oldest) = victim.map(|(id, _)| *id) else {
                return Err(Error::Limit("pending incoming connections"));
            };
            tracing::debug!(
                ?oldest,
                "too many pending incoming connections; dropping the oldest"
            );
            self.remove_connection(
                now,
                oldest,
                Some(Error::Limit("pending incoming connections")),
            );
        }
        if self.connections.len() >= self.limits.max_connections {
            return Err(Error::Limit("connections"));
        }
        let conn = Connection::new(self.config.clone(), Role::Listener, None, now)?;
        let id = ConnectionId(self.next_id());
        self.connections.insert(
            id,
            ConnEntry {
                conn,
                endpoint: Endpoint::Listener { local, remote },
                peer: None,
                expected_peer: None,
                established_at: None,
                socket_open: true,
                waiting: Vec::new(),
                attempt: None,
                requests: HashMap::new(),
                closing: false,
            },
        );
        Ok(id)
    }

    // ---- dialing ----

    /// Remembers addresses of `peer` for `ttl` (go's peerstore `AddAddrs`); a trailing `/p2p`
    /// naming another peer drops the address. Use
    /// [`PERMANENT_ADDR_TTL`](crate::dial::peerstore::PERMANENT_ADDR_TTL) to keep them for good.
    pub fn add_addresses(
        &mut self,
        now: Instant,
        peer: PeerId,
        addrs: impl IntoIterator<Item = Multiaddr>,
        ttl: std::time::Duration,
    ) {
        let addrs: Vec<Multiaddr> = addrs.into_iter().collect();
        for (addr, why) in self.addresses.add_addrs(now, peer, &addrs, ttl) {
            tracing::debug!(%peer, %addr, ?why, "address not added");
        }
    }

    /// The known, unexpired addresses of `peer`.
    pub fn addresses(&self, now: Instant, peer: PeerId) -> Vec<Multiaddr> {
        self.addresses.addrs(now, &peer)
    }

    /// Dials `addr`; a trailing `/p2p/<id>` makes the upgrade check the remote's identity.
    pub fn dial(&mut self, now: Instant, addr: Multiaddr) -> Result<ConnectionId, Error> {
        let (addr, peer) = split_p2p(&addr);
        if peer == Some(self.local_peer) {
            return Err(Error::DialToSelf);
        }
        if self.listen_addrs().contains(&addr) {
            return Err(Error::DialToSelf);
        }
        if self.connections.len() >= self.limits.max_connections {
            return Err(Error::Limit("connections"));
        }
        if let Some(peer) = peer {
            if self.peers.get(&peer).map_or(0, Vec::len) >= self.limits.max_connections_per_peer {
                return Err(Error::Limit("connections per peer"));
            }
        }
        let conn = Connection::new(self.config.clone(), Role::Dialer, peer, now)?;
        let id = ConnectionId(self.next_id());
        self.connections.insert(
            id,
            ConnEntry {
                conn,
                endpoint: Endpoint::Dialer { addr: addr.clone() },
                peer: None,
                expected_peer: peer,
                established_at: None,
                socket_open: false,
                waiting: Vec::new(),
                attempt: None,
                requests: HashMap::new(),
                closing: false,
            },
        );
        self.commands.push_back(Command::Dial {
            connection: id,
            addr,
        });
        Ok(id)
    }

    /// Driver: the socket of a dialed connection is open.
    pub fn handle_connected(&mut self, now: Instant, connection: ConnectionId) {
        if let Some(entry) = self.connections.get_mut(&connection) {
            entry.socket_open = true;
            if let Some(attempt) = entry.attempt {
                let _ = self.dialer.handle_attempt_progress(
                    now,
                    attempt,
                    dial::AttemptProgress::TcpConnected,
                );
                self.process_dialer(now);
            }
        }
    }

    /// Driver: opening the socket of a dialed connection failed.
    pub fn handle_dial_failed(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        error: TransportError,
    ) {
        self.remove_connection(now, connection, Some(Error::Transport(error)));
    }

    // ---- streams ----

    /// Opens a stream to `peer` proposing `protocols` in order, on the best existing
    /// connection or, failing that, on a connection dialed to a known address (go-libp2p's
    /// `NewStream`). Answered exactly once by [`Event::StreamOpened`] or
    /// [`Event::StreamOpenFailed`].
    pub fn open_stream(
        &mut self,
        now: Instant,
        peer: PeerId,
        protocols: Vec<Protocol>,
    ) -> StreamRequestId {
        let request = StreamRequestId(self.next_id());
        if peer == self.local_peer {
            self.events.push_back(Event::StreamOpenFailed {
                request,
                error: Error::DialToSelf,
            });
            return request;
        }
        if let Some(connection) = self.best_connection(peer) {
            self.open_on(now, connection, request, protocols);
            return request;
        }
        // A direct dial to this peer in flight (`dial(addr/p2p/peer)`): join it rather than
        // opening a second connection.
        if let Some(entry) = self.connections.values_mut().find(|c| {
            c.expected_peer == Some(peer) && c.peer.is_none() && c.attempt.is_none() && !c.closing
        }) {
            entry.waiting.push((request, protocols));
            return request;
        }
        // Dial through the scheduler: one worker per peer, later requests join it.
        let addrs = self.addresses.addrs(now, &peer);
        let dial = self.dialer.dial(now, peer, addrs, DialOpts::default());
        self.waiting_for_dial.insert(dial, (request, protocols));
        self.process_dialer(now);
        request
    }

    /// Carries out the dial scheduler's decisions.
    fn process_dialer(&mut self, now: Instant) {
        self.last_now = Some(self.last_now.map_or(now, |t| t.max(now)));
        while let Some(event) = self.dialer.poll_event() {
            match event {
                dial::Event::Connect {
                    attempt,
                    peer,
                    addr,
                } => {
                    let addr = addr.with(crate::multiaddr::Protocol::P2p(peer));
                    match self.dial(now, addr) {
                        Ok(connection) => {
                            if let Some(entry) = self.connections.get_mut(&connection) {
                                entry.attempt = Some(attempt);
                            }
                            self.attempts.insert(attempt, connection);
                        }
                        Err(e) => {
                            let cause = match e {
                                Error::Transport(cause) => cause,
                                other => TransportError::Other(other.to_string()),
                            };
                            let _ = self.dialer.handle_attempt_failed(now, attempt, cause);
                        }
                    }
                }
                dial::Event::Abort { attempt, .. } => {
                    if let Some(connection) = self.attempts.remove(&attempt) {
                        if let Some(entry) = self.connections.get_mut(&connection) {
                            entry.attempt = None;
                        }
                        self.close_connection(now, connection);
                    }
                }
                dial::Event::DialSucceeded { request, peer, .. } => {
                    let Some((stream_request, protocols)) = self.waiting_for_dial.remove(&request)
                    else {
                        continue;
                    };
                    match self.best_connection(peer) {
                        Some(connection) => {
                            self.open_on(now, connection, stream_request, protocols)
                        }
                        None => self.events.push_back(Event::StreamOpenFailed {
                            request: stream_request,
                            error: Error::Closed,
                        }),
                    }
                }
                dial::Event::DialFailed { request, error, .. } => {
                    if let Some((stream_request, _)) = self.waiting_for_dial.remove(&request) {
                        self.events.push_back(Event::StreamOpenFailed {
                            request: stream_request,
                            error: Error::Dial(Box::new(error)),
                        });
                    }
                }
            }
        }
    }

    fn open_on(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        request: StreamRequestId,
        protocols: Vec<Protocol>,
    ) {
        let Some(entry) = self.connections.get_mut(&connection) else {
            self.events.push_back(Event::StreamOpenFailed {
                request,
                error: Error::Closed,
            });
            return;
        };
        let opened = entry.conn.open_stream(now, protocols);
        if !self.wants_transmit.contains(&connection) {
            self.wants_transmit.push(connection);
        }
        let Some(entry) = self.connections.get_mut(&connection) else {
            return;
        };
        match opened {
            Ok(stream) => match entry.conn.stream_protocol(stream) {
                // Lazy: usable at once; a later rejection resets the stream.
                Some(protocol) => self.events.push_back(Event::StreamOpened {
                    request,
                    stream: StreamRef { connection, stream },
                    protocol,
                }),
                // Several candidates: answered when the remote agrees.
                None => {
                    entry.requests.insert(stream, request);
                }
            },
            Err(e) => self.events.push_back(Event::StreamOpenFailed {
                request,
                error: e.into(),
            }),
        }
    }

    /// The connection to use for a new stream to `peer`, by go-libp2p's `isBetterConn`:
    /// (not limited and direct — all our connections are) more streams, then the newest.
    pub fn best_connection(&self, peer: PeerId) -> Option<ConnectionId> {
        self.peers
            .get(&peer)?
            .iter()
            .filter_map(|id| Some((*id, self.connections.get(id)?)))
            .filter(|(_, c)| c.conn.is_established() && !c.closing)
            .max_by_key(|(id, c)| (c.conn.num_streams(), c.established_at, *id))
            .map(|(id, _)| id)
    }

    /// Reads up to `max` bytes; `Ok(None)` is the end of the stream, an empty chunk means
    /// nothing is buffered (wait for [`Event::Readable`]).
    pub fn read(&mut self, stream: StreamRef, max: usize) -> Result<Option<Bytes>, Error> {
        let entry = self
            .connections
            .get_mut(&stream.connection)
            .ok_or(Error::Unknown)?;
        let result = entry.conn.read(stream.stream, max);
        self.mark_output(stream.connection);
        Ok(result?)
    }

    /// Writes to a stream; returns how many bytes were taken (0: wait for
    /// [`Event::Writable`]).
    pub fn write(&mut self, stream: StreamRef, data: &[u8]) -> Result<usize, Error> {
        let entry = self
            .connections
            .get_mut(&stream.connection)
            .ok_or(Error::Unknown)?;
        let result = entry.conn.write(stream.stream, data);
        self.mark_output(stream.connection);
        Ok(result?)
    }

    /// Half-closes a stream (FIN).
    pub fn finish(&mut self, stream: StreamRef) -> Result<(), Error> {
        let entry = self
            .connections
            .get_mut(&stream.connection)
            .ok_or(Error::Unknown)?;
        let result = entry.conn.finish(stream.stream);
        self.mark_output(stream.connection);
        Ok(result?)
    }

    /// Resets a stream.
    pub fn reset(&mut self, stream: StreamRef) -> Result<(), Error> {
        let entry = self
            .connections
            .get_mut(&stream.connection)
            .ok_or(Error::Unknown)?;
        entry.requests.remove(&stream.stream);
        let result = entry.conn.reset(stream.stream);
        self.mark_output(stream.connection);
        Ok(result?)
    }

    // ---- connections ----

    /// Driver: bytes arrived on a connection. Bytes not consumed stay in `input`; stop reading
    /// the socket while `input` holds more than the connection's receive budget.
    pub fn handle_input(&mut self, now: Instant, connection: ConnectionId, input: &mut BytesMut) {
        let Some(entry) = self.connections.get_mut(&connection) else {
            input.clear();
            return;
        };
        entry.conn.handle_input(now, input);
        self.process_connection(now, connection);
    }

    /// Driver: takes the complete Noise frames at the front of `input` for decryption by
    /// [`Unopened::open`](crate::noise::Unopened::open), which needs no access to the swarm:
    /// a driver that shares the swarm behind a lock decrypts after releasing it, then hands
    /// the result to [`handle_opened`](Self::handle_opened). `None`: nothing to take that way
    /// (no complete frame, still upgrading, plaintext, a batch already out); feed `input` to
    /// [`handle_input`](Self::handle_input) as usual.
    pub fn take_unopened(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        input: &mut BytesMut,
    ) -> Option<noise::Unopened> {
        let entry = self.connections.get_mut(&connection)?;
        let batch = entry.conn.take_unopened(input);
        if batch.is_none() && entry.conn.is_closed() {
            self.process_connection(now, connection);
        }
        batch
    }

    /// Driver: the frames of [`take_unopened`](Self::take_unopened), opened, or the error
    /// opening them gave (which closes the connection).
    pub fn handle_opened(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        opened: Result<noise::Opened, noise::Error>,
    ) {
        let Some(entry) = self.connections.get_mut(&connection) else {
            return;
        };
        entry.conn.handle_opened(now, opened);
        self.process_connection(now, connection);
    }

    /// Driver: the socket reached end of file or failed.
    pub fn handle_closed(&mut self, now: Instant, connection: ConnectionId) {
        if let Some(entry) = self.connections.get_mut(&connection) {
            entry.conn.handle_closed();
        }
        self.process_connection(now, connection);
    }

    /// Closes a connection gracefully.
    pub fn close_connection(&mut self, now: Instant, connection: ConnectionId) {
        if let Some(entry) = self.connections.get_mut(&connection) {
            entry.closing = true;
            entry.conn.close(now);
            self.mark_output(connection);
            self.commands.push_back(Command::Close { connection });
        }
        self.process_connection(now, connection);
    }

    /// Marks `peer` as protected from connection trimming (or not).
    pub fn protect(&mut self, peer: PeerId, protected: bool) {
        if protected {
            self.protected.insert(peer);
        } else {
            self.protected.remove(&peer);
        }
    }

    /// Appends bytes to send on `connection` to `out`; returns how many, `None` if nothing.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        out: &mut BytesMut,
    ) -> Option<usize> {
        let entry = self.connections.get_mut(&connection)?;
        if !entry.socket_open {
            return None;
        }
        let n = entry.conn.poll_transmit(now, out);
        self.process_connection(now, connection);
        n
    }

    /// Like [`poll_transmit`](Self::poll_transmit), but leaves the encryption to
    /// [`Transmit::seal`], which needs no access to the swarm: a driver that shares the swarm
    /// behind a lock seals after releasing it, so the lock is not held while encrypting.
    /// `out` comes back inside the [`Transmit`], with the bytes to send appended. Seal and
    /// send each connection's transmits in the order they were polled.
    pub fn poll_transmit_unsealed(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        out: BytesMut,
    ) -> Transmit {
        let Some(entry) = self
            .connections
            .get_mut(&connection)
            .filter(|e| e.socket_open)
        else {
            return Transmit::from_sealed(out);
        };
        let transmit = entry.conn.poll_transmit_unsealed(now, out);
        self.process_connection(now, connection);
        transmit
    }

    /// Connections that may have bytes to send: the driver calls
    /// [`poll_transmit`](Self::poll_transmit) for each after every input.
    pub fn connections_with_output(&self) -> impl Iterator<Item = ConnectionId> + '_ {
        self.connections
            .iter()
            .filter(|(_, c)| c.socket_open)
            .map(|(id, _)| *id)
    }

    /// Driver: a deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|(_, c)| c.conn.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(entry) = self.connections.get_mut(&id) {
                entry.conn.handle_timeout(now);
            }
            self.mark_output(id);
            self.process_connection(now, id);
        }
        if self.dialer.poll_timeout().is_some_and(|t| t <= now) {
            self.dialer.handle_timeout(now);
            self.process_dialer(now);
        }
        let due: Vec<StreamRef> = self
            .services
            .iter()
            .filter(|(_, s)| s.service.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for stream in due {
            self.drive_service(now, stream);
        }
        self.addresses.remove_expired(now);
        self.trim_connections(now);
    }

    /// The earliest deadline of any connection.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self
            .connections
            .values()
            .filter_map(|c| c.conn.poll_timeout());
        let services = self
            .services
            .values()
            .filter_map(|r| r.service.poll_timeout());
        conns
            .chain(self.next_trim)
            .chain(self.dialer.poll_timeout())
            .chain(services)
            .min()
    }

    /// A connection that has new bytes to send because of something other than its own input
    /// (an application write, a built-in service, a timer): the driver calls
    /// [`poll_transmit`](Self::poll_transmit) for it. Each connection is listed at most once
    /// until drained.
    pub fn poll_wants_transmit(&mut self) -> Option<ConnectionId> {
        self.wants_transmit.pop()
    }

    fn mark_output(&mut self, connection: ConnectionId) {
        if !self.wants_transmit.contains(&connection) {
            self.wants_transmit.push(connection);
        }
    }

    /// The next command for the driver.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// The next event. Events of the built-in services (ping, identify streams) are handled
    /// here and never reach the caller.
    pub fn poll_event(&mut self) -> Option<Event> {
        while let Some(event) = self.events.pop_front() {
            if let Some(event) = self.intercept(event) {
                return Some(event);
            }
        }
        None
    }

    /// Pings `peer` once on a new `/ipfs/ping/1.0.0` stream (dialing if needed); answered by
    /// [`Event::PingResult`] with the id returned here. Concurrent pings are independent.
    pub fn ping(&mut self, now: Instant, peer: PeerId) -> StreamRequestId {
        // The pinger starts its clock when the opened stream is intercepted in `poll_event`,
        // which uses `last_now`: make it current, or the RTT includes the idle time before.
        self.last_now = Some(self.last_now.map_or(now, |t| t.max(now)));
        let request = self.open_stream(
            now,
            peer,
            vec![Protocol::from_static(crate::ping::PROTOCOL)],
        );
        self.internal.insert(request, (peer, Internal::Ping));
        request
    }

    /// What `peer` told us through identify, while connected.
    pub fn peer_info(&self, peer: PeerId) -> Option<&crate::identify::Info> {
        self.peer_info.get(&peer).map(|b| &**b)
    }

    /// Handles events that belong to the built-in services; returns the others.
    fn intercept(&mut self, event: Event) -> Option<Event> {
        let Some(now) = self.last_now else {
            return Some(event);
        };
        match event {
            Event::InboundStream {
                stream, protocol, ..
            } if protocol.as_str() == crate::ping::PROTOCOL => {
                self.services
                    .insert(stream, Running::new(Service::ping_responder(now)));
                self.drive_service(now, stream);
                None
            }
            Event::InboundStream {
                stream, protocol, ..
            } if protocol.as_str() == crate::identify::PROTOCOL => {
                self.answer_identify(stream);
                None
            }
            Event::StreamOpened {
                request, stream, ..
            } if self.internal.contains_key(&request) => {
                let (peer, kind) = self.internal.remove(&request)?;
                let service = match kind {
                    Internal::Ping => {
                        self.ping_streams.insert(stream, request);
                        Service::ping(now, self.next_id())
                    }
                    Internal::Identify => Service::identify(now, peer),
                };
                self.services.insert(stream, Running::new(service));
                self.drive_service(now, stream);
                None
            }
            Event::StreamOpenFailed { request, error } if self.internal.contains_key(&request) => {
                let (peer, kind) = self.internal.remove(&request)?;
                match kind {
                    Internal::Ping => Some(Event::PingResult {
                        request,
                        peer,
                        result: Err(error.to_string()),
                    }),
                    Internal::Identify => Some(Event::IdentifyFailed {
                        peer,
                        error: error.to_string(),
                    }),
                }
            }
            Event::Readable(stream) | Event::Writable(stream) | Event::StreamReset(stream)
                if self.retired.contains(&stream) =>
            {
                self.drain(stream);
                None
            }
            Event::Readable(stream) | Event::Writable(stream)
                if self.services.contains_key(&stream) =>
            {
                self.drive_service(now, stream);
                None
            }

            Event::StreamReset(stream) if self.services.contains_key(&stream) => {
                let service = self.services.remove(&stream)?.service;
                let peer = self.connection_peer(stream.connection)?;
                match service {
                    Service::Ping(_) => Some(Event::PingResult {
                        request: self.ping_streams.remove(&stream)?,
                        peer,
                        result: Err("stream reset".into()),
                    }),
                    Service::Identify { .. } => Some(Event::IdentifyFailed {
                        peer,
                        error: "stream reset".into(),
                    }),
                    Service::PingResponder(_) | Service::Drain { .. } => None,
                }
            }
            Event::Connected {
                peer,
                connection,
                endpoint,
            } => {
                if self.connections.contains_key(&connection) {
                    let request = StreamRequestId(self.next_id());
                    self.internal.insert(request, (peer, Internal::Identify));
                    let protocols = vec![Protocol::from_static(crate::identify::PROTOCOL)];
                    self.open_on(now, connection, request, protocols);
                }
                Some(Event::Connected {
                    peer,
                    connection,
                    endpoint,
                })
            }
            Event::Disconnected {
                peer,
                connection,
                error,
            } => {
                self.services.retain(|s, _| s.connection != connection);
                self.retired.retain(|s| s.connection != connection);
                if !self.peers.contains_key(&peer) {
                    self.peer_info.remove(&peer);
                }
                Some(Event::Disconnected {
                    peer,
                    connection,
                    error,
                })
            }
            other => Some(other),
        }
    }

    /// Reads a retired stream (its service ended and half-closed it) until the remote's end,
    /// which releases it; data instead of the end resets it. The stream stays in `retired`
    /// (ids are never reused on a connection) so that events still queued for it are
    /// swallowed; entries are pruned once the connection forgot the stream and no event for
    /// it is queued, which keeps the set as small as the streams that exist.
    fn drain(&mut self, stream: StreamRef) {
        if let Some(entry) = self.connections.get_mut(&stream.connection) {
            if let Ok(Some(chunk)) = entry.conn.read(stream.stream, 1) {
                if !chunk.is_empty() {
                    let _ = entry.conn.reset(stream.stream);
                }
            }
        }
        if self.retired.len() > 64 {
            let connections = &self.connections;
            let queued: HashSet<StreamRef> = self
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::Readable(s) | Event::Writable(s) | Event::StreamReset(s) => Some(*s),
                    _ => None,
                })
                .collect();
            self.retired.retain(|s| {
                queued.contains(s)
                    || connections
                        .get(&s.connection)
                        .is_some_and(|c| c.conn.has_stream(s.stream))
            });
        }
    }

    /// Writes our identify message on an inbound `/ipfs/id/1.0.0` stream and finishes it.
    fn answer_identify(&mut self, stream: StreamRef) {
        let listen_addrs = self.listen_addrs();
        let protocols = self
            .config
            .protocols
            .protocols()
            .iter()
            .map(|p| p.to_string())
            .collect();
        let public_key = self.config.upgrade.keypair.public();
        let Some(entry) = self.connections.get_mut(&stream.connection) else {
            return;
        };
        let observed = match &entry.endpoint {
            Endpoint::Dialer { addr } => addr.clone(),
            Endpoint::Listener { remote, .. } => remote.clone(),
        };
        let info = services::local_info(public_key, listen_addrs, protocols, Some(observed));
        let mut out = BytesMut::new();
        if crate::identify::encode(&info, &mut out).is_ok() {
            let _ = entry.conn.write(stream.stream, &out);
        }
        let _ = entry.conn.finish(stream.stream);
        self.mark_output(stream.connection);
        // The stream is gone only once the requester's end is read too.
        let now = self.last_now;
        if let Some(now) = now {
            self.services
                .insert(stream, Running::new(Service::drain(now)));
            self.drive_service(now, stream);
        }
    }

    /// Moves a built-in service forward with what its stream has received.
    fn drive_service(&mut self, now: Instant, stream: StreamRef) {
        let Some(entry) = self.connections.get_mut(&stream.connection) else {
            self.services.remove(&stream);
            return;
        };
        let Some(service) = self.services.get_mut(&stream) else {
            return;
        };
        let mut input = BytesMut::new();
        let mut eof = false;
        while input.len() < service.room() {
            match entry.conn.read(stream.stream, service.room() - input.len()) {
                Ok(Some(chunk)) if chunk.is_empty() => break,
                Ok(Some(chunk)) => input.extend_from_slice(&chunk),
                Ok(None) | Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        let step = service.drive(now, &input, eof);
        if !self.wants_transmit.contains(&stream.connection) {
            self.wants_transmit.push(stream.connection);
        }
        if !step.output.is_empty() {
            let _ = entry.conn.write(stream.stream, &step.output);
        }
        let Some(outcome) = step.outcome else {
            return;
        };
        self.services.remove(&stream);
        self.retired.insert(stream);
        if let Outcome::Abandoned = outcome {
            let _ = entry.conn.reset(stream.stream);
            return;
        }
        let _ = entry.conn.finish(stream.stream);
        let peer = entry.peer;
        self.drain(stream);
        let Some(peer) = peer else {
            return;
        };
        match outcome {
            Outcome::Done | Outcome::Abandoned => {}
            Outcome::Ping(result) => {
                if let Some(request) = self.ping_streams.remove(&stream) {
                    self.events.push_back(Event::PingResult {
                        request,
                        peer,
                        result,
                    });
                }
            }
            Outcome::Identify(Ok(info)) => {
                let addrs = info.listen_addrs.clone();
                self.add_addresses(
                    now,
                    peer,
                    addrs,
                    dial::peerstore::RECENTLY_CONNECTED_ADDR_TTL,
                );
                self.peer_info.insert(peer, info.clone());
                self.events.push_back(Event::Identified { peer, info });
            }
            Outcome::Identify(Err(error)) => {
                self.events.push_back(Event::IdentifyFailed { peer, error })
            }
        }
    }

    /// The peer of an established connection.
    pub fn connection_peer(&self, connection: ConnectionId) -> Option<PeerId> {
        self.connections.get(&connection)?.peer
    }

    /// Established connections to `peer`.
    pub fn connections_to(&self, peer: PeerId) -> &[ConnectionId] {
        self.peers.get(&peer).map_or(&[], Vec::as_slice)
    }

    /// All connections, established or not.
    pub fn num_connections(&self) -> usize {
        self.connections.len()
    }

    /// Established connections.
    pub fn num_established(&self) -> usize {
        self.peers.values().map(Vec::len).sum()
    }

    /// Streams with state, over all connections.
    pub fn num_streams(&self) -> usize {
        self.connections
            .values()
            .map(|c| c.conn.num_streams())
            .sum()
    }

    /// Bytes buffered by all connections (see [`Connection::buffered_bytes`]): a memory metric.
    pub fn buffered_bytes(&self) -> u64 {
        let services: usize = self.services.values().map(Running::pending).sum();
        self.connections
            .values()
            .map(|c| c.conn.buffered_bytes())
            .sum::<u64>()
            + services as u64
    }

    /// Forwards a connection's events and reacts to its state changes.
    fn process_connection(&mut self, now: Instant, connection: ConnectionId) {
        self.last_now = Some(self.last_now.map_or(now, |t| t.max(now)));
        loop {
            let Some(entry) = self.connections.get_mut(&connection) else {
                return;
            };
            let Some(event) = entry.conn.poll_event() else {
                return;
            };
            match event {
                connection::Event::Established { peer } => {
                    entry.peer = Some(peer);
                    entry.established_at = Some(now);
                    let over_peer_limit = self.peers.get(&peer).map_or(0, Vec::len)
                        >= self.limits.max_connections_per_peer;
                    if over_peer_limit {
                        self.remove_connection(
                            now,
                            connection,
                            Some(Error::Limit("connections per peer")),
                        );
                        return;
                    }
                    self.peers.entry(peer).or_default().push(connection);
                    let endpoint = entry.endpoint.clone();
                    let waiting = std::mem::take(&mut entry.waiting);
                    tracing::debug!(%peer, ?connection, "connected");
                    self.events.push_back(Event::Connected {
                        peer,
                        connection,
                        endpoint,
                    });
                    let attempt = entry.attempt.take();
                    for (request, protocols) in waiting {
                        self.open_on(now, connection, request, protocols);
                    }
                    match attempt {
                        Some(attempt) => {
                            self.attempts.remove(&attempt);
                            // A late success (attempt already aborted) keeps the connection.
                            let _ = self.dialer.handle_attempt_succeeded(now, attempt);
                        }
                        None => self.dialer.handle_peer_connected(now, peer, true),
                    }
                    self.process_dialer(now);
                    self.trim_connections(now);
                }
                connection::Event::InboundStream { id, protocol } => {
                    let peer = entry.peer.unwrap_or(self.local_peer);
                    self.events.push_back(Event::InboundStream {
                        peer,
                        stream: StreamRef {
                            connection,
                            stream: id,
                        },
                        protocol,
                    });
                }
                connection::Event::ProtocolQuery { id, protocol } => {
                    let peer = entry.peer.unwrap_or(self.local_peer);
                    self.events.push_back(Event::ProtocolQuery {
                        peer,
                        stream: StreamRef {
                            connection,
                            stream: id,
                        },
                        protocol,
                    });
                }
                connection::Event::OutboundStreamAgreed { id, protocol } => {
                    if let Some(request) = entry.requests.remove(&id) {
                        self.events.push_back(Event::StreamOpened {
                            request,
                            stream: StreamRef {
                                connection,
                                stream: id,
                            },
                            protocol,
                        });
                    }
                }
                connection::Event::StreamNegotiationFailed { id, error } => {
                    let stream = StreamRef {
                        connection,
                        stream: id,
                    };
                    self.events.push_back(match entry.requests.remove(&id) {
                        Some(request) => Event::StreamOpenFailed {
                            request,
                            error: Error::Negotiation(error.to_string()),
                        },
                        None => Event::StreamReset(stream),
                    });
                }
                connection::Event::Readable(id) => {
                    self.events.push_back(Event::Readable(StreamRef {
                        connection,
                        stream: id,
                    }))
                }
                connection::Event::Writable(id) => {
                    self.events.push_back(Event::Writable(StreamRef {
                        connection,
                        stream: id,
                    }))
                }
                connection::Event::StreamReset(id) => {
                    entry.requests.remove(&id);
                    self.events.push_back(Event::StreamReset(StreamRef {
                        connection,
                        stream: id,
                    }))
                }
                connection::Event::Closed { error } => {
                    // Before it was established, a connection's end is a failed attempt: say
                    // why in transport terms (wrong peer, key, negotiation, timeout).
                    let error = match (entry.established_at, error) {
                        (None, Some(e)) => Some(Error::Transport(transport_cause(&e))),
                        (_, e) => e.map(Into::into),
                    };
                    self.remove_connection(now, connection, error);
                    return;
                }
            }
        }
    }

    /// Removes every piece of state of a connection and reports its end.
    fn remove_connection(&mut self, now: Instant, connection: ConnectionId, error: Option<Error>) {
        let Some(entry) = self.connections.remove(&connection) else {
            return;
        };
        self.wants_transmit.retain(|c| *c != connection);
        if let Some(attempt) = entry.attempt {
            self.attempts.remove(&attempt);
            let cause = match &error {
                Some(Error::Transport(e)) => e.clone(),
                Some(Error::Connection(e)) => TransportError::Upgrade(e.clone()),
                Some(other) => TransportError::Other(other.to_string()),
                None => TransportError::Other("connection closed during upgrade".into()),
            };
            let _ = self.dialer.handle_attempt_failed(now, attempt, cause);
        }
        if !entry.closing && entry.socket_open {
            self.commands.push_back(Command::Close { connection });
        }
        // Pings running on the connection end with it.
        let mut pings: Vec<(StreamRef, StreamRequestId)> = self
            .ping_streams
            .iter()
            .filter(|(s, _)| s.connection == connection)
            .map(|(s, r)| (*s, *r))
            .collect();
        pings.sort_by_key(|(_, r)| *r);
        for (stream, request) in pings {
            self.ping_streams.remove(&stream);
            if let Some(peer) = entry.peer {
                self.events.push_back(Event::PingResult {
                    request,
                    peer,
                    result: Err("connection closed".into()),
                });
            }
        }
        let mut negotiating: Vec<StreamRequestId> = entry.requests.into_values().collect();
        negotiating.sort();
        let requests = entry.waiting.into_iter().map(|(r, _)| r).chain(negotiating);
        for request in requests {
            self.events.push_back(Event::StreamOpenFailed {
                request,
                error: error.clone().unwrap_or(Error::Closed),
            });
        }
        match entry.peer {
            Some(peer)
                if self
                    .peers
                    .get(&peer)
                    .is_some_and(|c| c.contains(&connection)) =>
            {
                if let Some(conns) = self.peers.get_mut(&peer) {
                    conns.retain(|c| *c != connection);
                    if conns.is_empty() {
                        self.peers.remove(&peer);
                    }
                }
                self.events.push_back(Event::Disconnected {
                    peer,
                    connection,
                    error: error.map(|e| e.to_string()),
                });
            }
            _ => self.events.push_back(Event::ConnectionFailed {
                connection,
                peer: entry.expected_peer.or(entry.peer),
                error: error.unwrap_or(Error::Closed),
            }),
        }
        self.process_dialer(now);
    }

    /// go-libp2p's connection manager: above the high watermark, close connections down to
    /// the low watermark, sparing protected peers and connections in their grace period, and
    /// closing those with the fewest streams, oldest first.
    fn trim_connections(&mut self, now: Instant) {
        let open = |c: &ConnEntry| c.established_at.is_some() && !c.closing;
        let established = self.connections.values().filter(|c| open(c)).count();
        // A trim starts above the high watermark and goes on (as grace periods end) down to
        // the low one, as go-libp2p's connection manager does.
        if established > self.conn_manager.high_water {
            self.trimming = true;
        }
        self.next_trim = None;
        if !self.trimming || established <= self.conn_manager.low_water {
            self.trimming = false;
            return;
        }
        let grace = self.conn_manager.grace_period;
        let mut candidates: Vec<(usize, Instant, ConnectionId)> = Vec::new();
        for (id, c) in &self.connections {
            let (Some(peer), Some(at)) = (c.peer, c.established_at) else {
                continue;
            };
            if c.closing || self.protected.contains(&peer) {
                continue;
            }
            if now < at + grace {
                // A candidate later: come back when its grace period ends (a future instant).
                self.next_trim = Some(self.next_trim.map_or(at + grace, |t| t.min(at + grace)));
                continue;
            }
            candidates.push((c.conn.num_streams(), at, *id));
        }
        candidates.sort();
        let excess = established - self.conn_manager.low_water;
        let trimmed = candidates.len().min(excess);
        for (_, _, id) in candidates.into_iter().take(excess) {
            tracing::debug!(?id, "trimming connection");
            self.close_connection(now, id);
        }
        if trimmed == excess {
            self.trimming = false;
            self.next_trim = None;
        }
    }
}
