//! The coordinator: what spans a host's connections.
//!
//! It owns the listeners, the peers and which connections they have, the dial scheduler and
//! the address book, the connection manager (protected peers, trimming), the routing of
//! stream requests to connections, and what identify told us about each peer. It holds no
//! connection's state: each connection is a [`ConnectionTask`] that the driver owns, and the
//! two exchange [`ToConnection`] and [`ToCoordinator`] messages.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use libp2p_identity::PeerId;

use super::{
    Command, ConnManagerConfig, ConnectionId, ConnectionTask, Endpoint, Error, Event, Limit,
    Limits, ListenerId, StreamRequestId, SwarmConfig, ToConnection, ToCoordinator,
};
use crate::connection::{self, ConnectionConfig};
use crate::dial::peerstore::{AddressBook, RECENTLY_CONNECTED_ADDR_TTL};
use crate::dial::{
    self, AttemptId, DialOpts, DialRequestId, DialScheduler, KeyError, TransportError, UpgradeStage,
};
use crate::multiaddr::{split_p2p, Multiaddr};
use crate::multistream::{Protocol, ProtocolSet};
use crate::noise;
use crate::time::Instant;
use crate::upgrade::Role;

/// What the coordinator knows of an established connection ([`Coordinator::connection_info`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The connection.
    pub id: ConnectionId,
    /// The remote peer.
    pub peer: PeerId,
    /// Who dialed, and the addresses.
    pub endpoint: Endpoint,
    /// When it was established.
    pub established_at: Instant,
    /// About how many streams it has (see [`ToCoordinator::Streams`]).
    pub streams: usize,
    /// It is being closed.
    pub closing: bool,
}

/// What a stream request asks a connection for.
#[derive(Debug, Clone)]
enum Request {
    Stream(Vec<Protocol>),
    Ping,
}

impl Request {
    fn into_message(self, request: StreamRequestId) -> ToConnection {
        match self {
            Self::Stream(protocols) => ToConnection::OpenStream { request, protocols },
            Self::Ping => ToConnection::Ping { request },
        }
    }
}

/// What the coordinator knows of one connection.
struct ConnEntry {
    endpoint: Endpoint,
    peer: Option<PeerId>,
    expected_peer: Option<PeerId>,
    /// When the connection was established (for the grace period and "newest").
    established_at: Option<Instant>,
    /// The socket is open and the task exists (dialed connections wait for it).
    socket_open: bool,
    /// Stream requests waiting for this connection to be established.
    waiting: Vec<(StreamRequestId, Request)>,
    /// The dial scheduler's attempt this connection carries out.
    attempt: Option<AttemptId>,
    /// We asked the connection to close.
    closing: bool,
    /// Why we closed it (a limit), to report when it ends.
    close_reason: Option<Error>,
    /// Streams, as the connection last reported.
    streams: usize,
    /// Upgrade progress, as the connection last reported.
    progress: u8,
}

/// The coordinator machine: see the [`swarm`](crate::swarm) module documentation.
pub struct Coordinator {
    local_peer: PeerId,
    config: Arc<ConnectionConfig>,
    limits: Limits,
    conn_manager: ConnManagerConfig,
    connections: HashMap<ConnectionId, ConnEntry>,
    /// Inbound connections still upgrading (bounded by `max_pending_incoming`).
    upgrading_inbound: HashSet<ConnectionId>,
    peers: HashMap<PeerId, Vec<ConnectionId>>,
    listeners: HashMap<ListenerId, Vec<Multiaddr>>,
    listen_addrs: Arc<[Multiaddr]>,
    protected: HashSet<PeerId>,
    addresses: AddressBook,
    dialer: DialScheduler,
    /// Stream requests waiting for a dial of the scheduler.
    waiting_for_dial: HashMap<DialRequestId, (StreamRequestId, PeerId, Request)>,
    /// Connections carrying out the scheduler's attempts.
    attempts: HashMap<AttemptId, ConnectionId>,
    /// A trim is under way: connections are closed, as their grace periods end, until the low
    /// watermark is reached.
    trimming: bool,
    /// When the next connection leaves its grace period during a trim (always a future
    /// instant when set).
    next_trim: Option<Instant>,
    /// What each connected peer told us through identify.
    peer_info: HashMap<PeerId, Box<crate::identify::Info>>,
    messages: VecDeque<(ConnectionId, ToConnection)>,
    commands: VecDeque<Command>,
    events: VecDeque<Event>,
    next_id: u64,
}

impl Coordinator {
    /// A coordinator with `config`, handling no protocols yet (but ping and identify).
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
                    Protocol::from_static(crate::identify::PUSH_PROTOCOL),
                ])),
                max_negotiating_inbound_streams: config.limits.max_negotiating_inbound_streams,
                inbound_negotiation_timeout: config.limits.inbound_negotiation_timeout,
            }),
            limits: config.limits,
            conn_manager: config.conn_manager,
            connections: HashMap::new(),
            upgrading_inbound: HashSet::new(),
            peers: HashMap::new(),
            listeners: HashMap::new(),
            listen_addrs: Arc::from(Vec::new()),
            protected: HashSet::new(),
            addresses: AddressBook::new(),
            dialer: DialScheduler::new(config.dial),
            waiting_for_dial: HashMap::new(),
            attempts: HashMap::new(),
            trimming: false,
            next_trim: None,
            peer_info: HashMap::new(),
            messages: VecDeque::new(),
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

    /// The wall clock (time since the Unix epoch), for the validity of the TLS certificates
    /// of connections made from now on: the driver keeps it current (the core reads no
    /// clock). Changes under a second are ignored.
    pub fn set_unix_time(&mut self, unix_time: std::time::Duration) {
        if unix_time.abs_diff(self.config.upgrade.unix_time) >= std::time::Duration::from_secs(1) {
            Arc::make_mut(&mut self.config).upgrade.unix_time = unix_time;
        }
    }

    /// Our peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer
    }

    // ---- protocols ----

    /// Accepts inbound streams for `protocol` (exact match), on every connection.
    pub fn add_protocol(&mut self, protocol: Protocol) {
        self.update_protocols(|set| {
            set.add(protocol);
        });
    }

    /// Stops accepting inbound streams for `protocol` on every connection (the built-in ping
    /// and identify stay). Returns whether it was accepted.
    pub fn remove_protocol(&mut self, protocol: &str) -> bool {
        let builtin = [
            crate::ping::PROTOCOL,
            crate::identify::PROTOCOL,
            crate::identify::PUSH_PROTOCOL,
        ];
        if builtin.contains(&protocol)
            || !self
                .config
                .protocols
                .protocols()
                .iter()
                .any(|p| p.as_str() == protocol)
        {
            return false;
        }
        self.update_protocols(|set| {
            set.remove(protocol);
        });
        true
    }

    /// Puts inbound proposals of ids that are not exact protocols to the application as
    /// [`Event::ProtocolQuery`] instead of refusing them (go-libp2p's `SetStreamHandlerMatch`:
    /// the application runs its matchers and answers with
    /// [`ConnectionTask::answer_protocol_query`]).
    pub fn set_ask_about_other_protocols(&mut self, ask: bool) {
        self.update_protocols(|set| {
            set.set_ask_others(ask);
        });
    }

    fn update_protocols(&mut self, f: impl FnOnce(&mut ProtocolSet)) {
        let mut config = (*self.config).clone();
        let mut set = (*config.protocols).clone();
        f(&mut set);
        let set = Arc::new(set);
        config.protocols = set.clone();
        self.config = Arc::new(config);
        self.broadcast(|| ToConnection::Protocols(set.clone()));
    }

    /// Sends a message to every connection with a task.
    fn broadcast(&mut self, message: impl Fn() -> ToConnection) {
        let mut ids: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|(_, c)| c.socket_open)
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        for id in ids {
            self.messages.push_back((id, message()));
        }
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
            self.listen_addrs_changed();
        }
    }

    /// Driver: the listener failed or closed.
    pub fn handle_listen_failed(&mut self, listener: ListenerId, error: TransportError) {
        if self.listeners.remove(&listener).is_some() {
            self.events.push_back(Event::ListenClosed {
                listener,
                error: Some(error),
            });
            self.listen_addrs_changed();
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
            self.listen_addrs_changed();
        }
    }

    fn listen_addrs_changed(&mut self) {
        let mut addrs: Vec<Multiaddr> = self.listeners.values().flatten().cloned().collect();
        addrs.sort();
        self.dialer.set_listen_addrs(addrs.clone());
        let addrs: Arc<[Multiaddr]> = Arc::from(addrs);
        self.listen_addrs = addrs.clone();
        self.broadcast(|| ToConnection::ListenAddrs(addrs.clone()));
    }

    /// Addresses we listen on.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs.to_vec()
    }

    /// Driver: a socket was accepted. Returns the task of its connection, or an error when a
    /// limit refuses it (then close the socket at once). To make room, the least advanced
    /// upgrading inbound connection may be told to close (a [`ToConnection::Close`]).
    pub fn handle_incoming(
        &mut self,
        now: Instant,
        local: Multiaddr,
        remote: Multiaddr,
    ) -> Result<ConnectionTask, Error> {
        if self.upgrading_inbound.len() >= self.limits.max_pending_incoming {
            // Drop an upgrading connection rather than the new one: the least advanced, the
            // oldest of those (it has had the longest to finish its handshake, while an honest
            // dialer needs only a few round trips). Refusing instead would let a peer holding
            // `max_pending_incoming` idle sockets lock every dialer out until the upgrade
            // timeout.
            let connections = &self.connections;
            let victim = self
                .upgrading_inbound
                .iter()
                .filter_map(|id| Some((connections.get(id)?.progress, *id)))
                .min();
            let Some((_, victim)) = victim else {
                return Err(Error::Limit(Limit::PendingIncoming));
            };
            tracing::debug!(
                ?victim,
                "too many pending incoming connections; dropping the least advanced"
            );
            self.messages.push_back((victim, ToConnection::Close));
            self.remove_connection(now, victim, Some(Error::Limit(Limit::PendingIncoming)));
        }
        if self.connections.len() >= self.limits.max_connections {
            return Err(Error::Limit(Limit::Connections));
        }
        let id = ConnectionId(self.next_id());
        let endpoint = Endpoint::Listener { local, remote };
        let task = ConnectionTask::new(
            id,
            self.config.clone(),
            Role::Listener,
            None,
            endpoint.clone(),
            self.listen_addrs.clone(),
            now,
        )?;
        self.connections
            .insert(id, ConnEntry::new(endpoint, None, true));
        self.upgrading_inbound.insert(id);
        Ok(task)
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
        let _ = now;
        let (addr, peer) = split_p2p(&addr);
        if peer == Some(self.local_peer) || self.listen_addrs.contains(&addr) {
            return Err(Error::DialToSelf);
        }
        if self.connections.len() >= self.limits.max_connections {
            return Err(Error::Limit(Limit::Connections));
        }
        if let Some(peer) = peer {
            if self.peers.get(&peer).map_or(0, Vec::len) >= self.limits.max_connections_per_peer {
                return Err(Error::Limit(Limit::ConnectionsPerPeer));
            }
        }
        let id = ConnectionId(self.next_id());
        let endpoint = Endpoint::Dialer { addr: addr.clone() };
        self.connections
            .insert(id, ConnEntry::new(endpoint, peer, false));
        self.commands.push_back(Command::Dial {
            connection: id,
            addr,
        });
        Ok(id)
    }

    /// Driver: the socket of a dialed connection is open. Returns the connection's task, or
    /// `None` if the coordinator no longer wants it (close the socket).
    pub fn handle_connected(
        &mut self,
        now: Instant,
        connection: ConnectionId,
    ) -> Option<ConnectionTask> {
        let entry = self.connections.get_mut(&connection)?;
        let task = ConnectionTask::new(
            connection,
            self.config.clone(),
            Role::Dialer,
            entry.expected_peer,
            entry.endpoint.clone(),
            self.listen_addrs.clone(),
            now,
        );
        let task = match task {
            Ok(task) => task,
            Err(e) => {
                let error = Error::Transport(transport_cause(&e));
                self.remove_connection(now, connection, Some(error));
                return None;
            }
        };
        entry.socket_open = true;
        if let Some(attempt) = entry.attempt {
            let _ = self.dialer.handle_attempt_progress(
                now,
                attempt,
                dial::AttemptProgress::TcpConnected,
            );
            self.process_dialer(now);
        }
        Some(task)
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

    // ---- stream requests ----

    /// Opens a stream to `peer` proposing `protocols` in order, on the best existing
    /// connection or, failing that, on a connection dialed to a known address (go-libp2p's
    /// `NewStream`). Answered exactly once, by [`Event::StreamOpened`] or
    /// [`Event::StreamOpenFailed`] from the connection's task, or by
    /// [`Event::StreamOpenFailed`] from here when no connection could be had.
    pub fn open_stream(
        &mut self,
        now: Instant,
        peer: PeerId,
        protocols: Vec<Protocol>,
    ) -> StreamRequestId {
        self.request(now, peer, Request::Stream(protocols))
    }

    /// Pings `peer` once on a new `/ipfs/ping/1.0.0` stream (dialing if needed); answered by
    /// [`Event::PingResult`] with the id returned here. Concurrent pings are independent.
    pub fn ping(&mut self, now: Instant, peer: PeerId) -> StreamRequestId {
        self.request(now, peer, Request::Ping)
    }

    fn request(&mut self, now: Instant, peer: PeerId, request: Request) -> StreamRequestId {
        let id = StreamRequestId(self.next_id());
        if peer == self.local_peer {
            self.fail_request(id, peer, request, Error::DialToSelf);
            return id;
        }
        if let Some(connection) = self.best_connection(peer) {
            self.messages
                .push_back((connection, request.into_message(id)));
            return id;
        }
        // A direct dial to this peer in flight (`dial(addr/p2p/peer)`): join it rather than
        // opening a second connection.
        if let Some(entry) = self.connections.values_mut().find(|c| {
            c.expected_peer == Some(peer) && c.peer.is_none() && c.attempt.is_none() && !c.closing
        }) {
            entry.waiting.push((id, request));
            return id;
        }
        // Dial through the scheduler: one worker per peer, later requests join it.
        let addrs = self.addresses.addrs(now, &peer);
        let dial = self.dialer.dial(now, peer, addrs, DialOpts::default());
        self.waiting_for_dial.insert(dial, (id, peer, request));
        self.process_dialer(now);
        id
    }

    fn fail_request(&mut self, id: StreamRequestId, peer: PeerId, request: Request, error: Error) {
        self.events.push_back(match request {
            Request::Ping => Event::PingResult {
                request: id,
                peer,
                result: Err(error),
            },
            Request::Stream(_) => Event::StreamOpenFailed { request: id, error },
        });
    }

    /// Carries out the dial scheduler's decisions.
    fn process_dialer(&mut self, now: Instant) {
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
                                Error::Limit(limit) => TransportError::Limit(limit),
                                _ => TransportError::DialToSelf,
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
                    let Some((id, _, request)) = self.waiting_for_dial.remove(&request) else {
                        continue;
                    };
                    match self.best_connection(peer) {
                        Some(connection) => self
                            .messages
                            .push_back((connection, request.into_message(id))),
                        None => self.fail_request(id, peer, request, Error::Closed),
                    }
                }
                dial::Event::DialFailed { request, error, .. } => {
                    if let Some((id, peer, request)) = self.waiting_for_dial.remove(&request) {
                        self.fail_request(id, peer, request, Error::Dial(Box::new(error)));
                    }
                }
            }
        }
    }

    /// The connection to use for a new stream to `peer`, by go-libp2p's `isBetterConn`:
    /// (not limited and direct — all our connections are) more streams, then the newest.
    pub fn best_connection(&self, peer: PeerId) -> Option<ConnectionId> {
        self.peers
            .get(&peer)?
            .iter()
            .filter_map(|id| Some((*id, self.connections.get(id)?)))
            .filter(|(_, c)| c.established_at.is_some() && !c.closing)
            .max_by_key(|(id, c)| (c.streams, c.established_at, *id))
            .map(|(id, _)| id)
    }

    // ---- connections ----

    /// Closes a connection gracefully: its task is told to (a [`ToConnection::Close`]); a
    /// dial whose socket is not open yet is dropped at once.
    pub fn close_connection(&mut self, now: Instant, connection: ConnectionId) {
        let Some(entry) = self.connections.get_mut(&connection) else {
            return;
        };
        if !entry.socket_open {
            self.remove_connection(now, connection, Some(Error::Closed));
            return;
        }
        if !entry.closing {
            entry.closing = true;
            self.messages.push_back((connection, ToConnection::Close));
        }
    }

    /// Marks `peer` as protected from connection trimming (or not).
    pub fn protect(&mut self, peer: PeerId, protected: bool) {
        if protected {
            self.protected.insert(peer);
        } else {
            self.protected.remove(&peer);
        }
    }

    /// A message of `connection`'s task (see [`ConnectionTask::poll_coordinator_message`]).
    /// Messages of a connection the coordinator already dropped are ignored.
    pub fn handle_connection_message(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        message: ToCoordinator,
    ) {
        let Some(entry) = self.connections.get_mut(&connection) else {
            return;
        };
        match message {
            ToCoordinator::UpgradeProgress(progress) => entry.progress = progress,
            ToCoordinator::Streams(n) => entry.streams = n,
            ToCoordinator::Established { peer } => self.established(now, connection, peer),
            ToCoordinator::Identified(info) => {
                let Some(peer) = entry.peer else {
                    return;
                };
                let addrs = info.listen_addrs.clone();
                self.add_addresses(now, peer, addrs, RECENTLY_CONNECTED_ADDR_TTL);
                self.peer_info.insert(peer, info.clone());
                self.events.push_back(Event::Identified { peer, info });
            }
            ToCoordinator::IdentifyPushed(push) => {
                let Some(peer) = entry.peer else {
                    return;
                };
                let addrs = push.listen_addrs.clone();
                self.add_addresses(now, peer, addrs, RECENTLY_CONNECTED_ADDR_TTL);
                let info = match self.peer_info.remove(&peer) {
                    Some(mut known) => {
                        known.apply_push(*push);
                        known
                    }
                    None => push,
                };
                self.peer_info.insert(peer, info.clone());
                self.events.push_back(Event::Identified { peer, info });
            }
            ToCoordinator::IdentifyFailed(error) => {
                if let Some(peer) = entry.peer {
                    self.events.push_back(Event::IdentifyFailed { peer, error });
                }
            }
            ToCoordinator::Closed { error } => {
                // Before it was established, a connection's end is a failed attempt: say why
                // in transport terms (wrong peer, key, negotiation, timeout).
                let error = match (entry.close_reason.take(), entry.established_at, error) {
                    (Some(reason), _, _) => Some(reason),
                    (None, None, Some(e)) => Some(Error::Transport(transport_cause(&e))),
                    (None, None, None) if !entry.closing => {
                        Some(Error::Transport(TransportError::Closed))
                    }
                    (None, _, e) => e.map(Error::Connection),
                };
                self.remove_connection(now, connection, error);
            }
        }
    }

    fn established(&mut self, now: Instant, connection: ConnectionId, peer: PeerId) {
        self.upgrading_inbound.remove(&connection);
        let over_limit =
            self.peers.get(&peer).map_or(0, Vec::len) >= self.limits.max_connections_per_peer;
        let Some(entry) = self.connections.get_mut(&connection) else {
            return;
        };
        entry.peer = Some(peer);
        if over_limit {
            entry.close_reason = Some(Error::Limit(Limit::ConnectionsPerPeer));
            self.close_connection(now, connection);
            return;
        }
        entry.established_at = Some(now);
        self.peers.entry(peer).or_default().push(connection);
        let endpoint = entry.endpoint.clone();
        let waiting = std::mem::take(&mut entry.waiting);
        let attempt = entry.attempt.take();
        self.events.push_back(Event::Connected {
            peer,
            connection,
            endpoint,
        });
        for (id, request) in waiting {
            self.messages
                .push_back((connection, request.into_message(id)));
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

    /// Removes every piece of state of a connection and reports its end.
    fn remove_connection(&mut self, now: Instant, connection: ConnectionId, error: Option<Error>) {
        let Some(entry) = self.connections.remove(&connection) else {
            return;
        };
        self.upgrading_inbound.remove(&connection);
        if let Some(attempt) = entry.attempt {
            self.attempts.remove(&attempt);
            let cause = match &error {
                Some(Error::Transport(e)) => e.clone(),
                Some(Error::Limit(limit)) => TransportError::Limit(*limit),
                _ => TransportError::Closed,
            };
            let _ = self.dialer.handle_attempt_failed(now, attempt, cause);
        }
        let failure = error.clone().unwrap_or(Error::Closed);
        let peer = entry.expected_peer.or(entry.peer);
        for (id, request) in entry.waiting {
            match peer {
                Some(peer) => self.fail_request(id, peer, request, failure.clone()),
                None => self.events.push_back(Event::StreamOpenFailed {
                    request: id,
                    error: failure.clone(),
                }),
            }
        }
        let known = entry
            .peer
            .and_then(|p| self.peers.get_mut(&p).map(|c| (p, c)))
            .filter(|(_, conns)| conns.contains(&connection));
        match known {
            Some((peer, conns)) => {
                conns.retain(|c| *c != connection);
                if conns.is_empty() {
                    self.peers.remove(&peer);
                    self.peer_info.remove(&peer);
                }
                self.events.push_back(Event::Disconnected {
                    peer,
                    connection,
                    error,
                });
            }
            None => self.events.push_back(Event::ConnectionFailed {
                connection,
                peer,
                error: failure,
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
            candidates.push((c.streams, at, *id));
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

    // ---- time and output ----

    /// A deadline passed (spurious calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.dialer.poll_timeout().is_some_and(|t| t <= now) {
            self.dialer.handle_timeout(now);
            self.process_dialer(now);
        }
        self.addresses.remove_expired(now);
        if self.next_trim.is_some_and(|t| t <= now) || self.trimming {
            self.trim_connections(now);
        }
    }

    /// The coordinator's earliest deadline (the dial scheduler's, the connection manager's):
    /// connections keep their own. Never at or before the `now` of the last
    /// [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.dialer.poll_timeout(), self.next_trim]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next message for a connection's task.
    pub fn poll_connection_message(&mut self) -> Option<(ConnectionId, ToConnection)> {
        self.messages.pop_front()
    }

    /// The next command for the driver.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- queries ----

    /// What `peer` told us through identify, while connected.
    pub fn peer_info(&self, peer: PeerId) -> Option<&crate::identify::Info> {
        self.peer_info.get(&peer).map(|b| &**b)
    }

    /// The peer of an established connection.
    pub fn connection_peer(&self, connection: ConnectionId) -> Option<PeerId> {
        self.connections.get(&connection)?.peer
    }

    /// Established connections to `peer`.
    pub fn connections_to(&self, peer: PeerId) -> &[ConnectionId] {
        self.peers.get(&peer).map_or(&[], Vec::as_slice)
    }

    /// The peers we have established connections to.
    pub fn peers(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self.peers.keys().copied().collect();
        peers.sort();
        peers
    }

    /// What we know of an established connection.
    pub fn connection_info(&self, connection: ConnectionId) -> Option<ConnectionInfo> {
        let entry = self.connections.get(&connection)?;
        Some(ConnectionInfo {
            id: connection,
            peer: entry.peer?,
            endpoint: entry.endpoint.clone(),
            established_at: entry.established_at?,
            streams: entry.streams,
            closing: entry.closing,
        })
    }

    /// Whether `peer` is protected from trimming.
    pub fn is_protected(&self, peer: PeerId) -> bool {
        self.protected.contains(&peer)
    }

    /// Every connection, established or not.
    pub fn connection_ids(&self) -> Vec<ConnectionId> {
        let mut ids: Vec<ConnectionId> = self.connections.keys().copied().collect();
        ids.sort();
        ids
    }

    /// All connections, established or not.
    pub fn num_connections(&self) -> usize {
        self.connections.len()
    }

    /// Established connections.
    pub fn num_established(&self) -> usize {
        self.peers.values().map(Vec::len).sum()
    }

    /// Streams over all connections, as they last reported.
    pub fn num_streams(&self) -> usize {
        self.connections.values().map(|c| c.streams).sum()
    }
}

impl ConnEntry {
    fn new(endpoint: Endpoint, expected_peer: Option<PeerId>, socket_open: bool) -> Self {
        Self {
            endpoint,
            peer: None,
            expected_peer,
            established_at: None,
            socket_open,
            waiting: Vec::new(),
            attempt: None,
            closing: false,
            close_reason: None,
            streams: 0,
            progress: 0,
        }
    }
}

/// Why a connection that was not established yet failed, in the terms of a dial attempt.
fn transport_cause(error: &connection::Error) -> TransportError {
    use crate::upgrade::Error as U;
    match error {
        connection::Error::Upgrade(U::WrongPeer { actual, .. }) => TransportError::PeerIdMismatch {
            obtained: actual.clone(),
        },
        connection::Error::Upgrade(U::Noise(noise::Error::PeerIdMismatch { actual, .. }))
        | connection::Error::Upgrade(U::Plaintext(crate::plaintext::Error::PeerIdMismatch {
            actual,
            ..
        })) => TransportError::PeerIdMismatch {
            obtained: actual.clone(),
        },
        connection::Error::Upgrade(
            U::Noise(noise::Error::InvalidKey(_))
            | U::Plaintext(crate::plaintext::Error::InvalidKey(_))
            | U::Tls(crate::tls::Error::UnsupportedKeyType { .. }),
        ) => TransportError::IdentityKey(KeyError::Malformed),
        connection::Error::Upgrade(
            U::Noise(noise::Error::RejectedKey(e))
            | U::Plaintext(crate::plaintext::Error::RejectedKey(e))
            | U::Tls(crate::tls::Error::InvalidIdentityKey(e)),
        ) => TransportError::IdentityKey(KeyError::Rejected(e.clone())),
        connection::Error::Upgrade(U::Tls(crate::tls::Error::PeerIdMismatch {
            actual, ..
        })) => TransportError::PeerIdMismatch {
            obtained: actual.clone(),
        },
        connection::Error::Upgrade(U::Negotiation(e)) | connection::Error::Negotiation(e) => {
            TransportError::Negotiation(e.clone())
        }
        connection::Error::Upgrade(U::Timeout(_)) => TransportError::UpgradeTimeout,
        connection::Error::Upgrade(U::Noise(_)) => TransportError::Upgrade(UpgradeStage::Noise),
        connection::Error::Upgrade(U::Tls(_)) => TransportError::Upgrade(UpgradeStage::Tls),
        connection::Error::Upgrade(U::Plaintext(_)) => {
            TransportError::Upgrade(UpgradeStage::Plaintext)
        }
        connection::Error::Upgrade(U::DialedSelf) => TransportError::DialToSelf,
        _ => TransportError::Upgrade(UpgradeStage::Muxer),
    }
}
