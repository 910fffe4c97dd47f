//! The host: the coordinator behind the host lock, connection tasks that own their
//! connections, and the calls that wait for either.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

use plait_core::dial::peerstore::PERMANENT_ADDR_TTL;
use plait_core::dial::TransportError;
use plait_core::identity::{Keypair, PeerId};
use plait_core::multiaddr::{Multiaddr, Protocol as AddrProtocol};
use plait_core::multistream::Protocol;
use plait_core::swarm::{
    Command, ConnectionId, Coordinator, Error as SwarmError, Event, Limits, ListenerId,
    StreamRequestId, SwarmConfig, ToConnection,
};
use plait_core::upgrade::Security;

use crate::connection::{self, Completion, Mailbox};
use crate::stream::{Stream, StreamShared};
use crate::{io, Error, Runtime};

/// How many [`HostEvent`]s are kept for [`Host::next_event`] before the oldest are dropped, so
/// a host whose owner never reads events does not grow.
const MAX_QUEUED_EVENTS: usize = 1024;

/// A host's settings.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Our identity: Ed25519 (the default for new identities), secp256k1, ECDSA P-256 or RSA.
    pub keypair: Keypair,
    /// The libp2p protobuf encoding `keypair` was loaded from, if it was, with its peer id
    /// (what [`HostConfig::private_key_protobuf`] returns for RSA keys, which cannot be
    /// re-encoded, while `keypair` is still that key).
    private_key_protobuf: Option<(Vec<u8>, PeerId)>,
    /// The security protocols, in order of preference: a dialer proposes them in this order
    /// (lazily, one round trip less, when there is only one), a listener accepts any of them.
    /// Default Noise, then TLS ([`DEFAULT_SECURITY`](plait_core::upgrade::DEFAULT_SECURITY));
    /// `/plaintext/2.0.0` for tests only.
    pub security: Vec<Security>,
    /// Connection and stream limits.
    pub limits: Limits,
    /// How long a connection may take to upgrade. Default 15 s.
    pub upgrade_timeout: Duration,
    /// Serve `/perf/1.0.0` ([`crate::perf::serve`]). Default false: the perf spec says it
    /// should not be enabled by default, nor on public nodes.
    pub perf: bool,
}

impl HostConfig {
    /// Defaults for `keypair`.
    pub fn new(keypair: Keypair) -> Self {
        Self {
            keypair,
            private_key_protobuf: None,
            security: plait_core::upgrade::DEFAULT_SECURITY.to_vec(),
            limits: Limits::default(),
            upgrade_timeout: plait_core::upgrade::DEFAULT_UPGRADE_TIMEOUT,
            perf: false,
        }
    }

    /// A fresh random identity.
    pub fn random() -> Self {
        Self::new(Keypair::generate_ed25519())
    }

    /// Defaults for an existing identity: a private key in the libp2p protobuf encoding, of any
    /// key type (what go-libp2p's `crypto.MarshalPrivateKey` and rust-libp2p's
    /// `Keypair::to_protobuf_encoding` write), so a node keeps its peer id.
    pub fn from_private_key_protobuf(bytes: &[u8]) -> Result<Self, Error> {
        let keypair =
            Keypair::from_protobuf_encoding(bytes).map_err(|e| Error::Identity(Arc::new(e)))?;
        let peer = keypair.public().to_peer_id();
        let mut config = Self::new(keypair);
        config.private_key_protobuf = Some((bytes.to_vec(), peer));
        Ok(config)
    }

    /// The identity's private key in the libp2p protobuf encoding, to save and load again with
    /// [`HostConfig::from_private_key_protobuf`]. Keep it secret: it is the node's identity.
    pub fn private_key_protobuf(&self) -> Result<Vec<u8>, Error> {
        match &self.private_key_protobuf {
            Some((bytes, peer)) if *peer == self.keypair.public().to_peer_id() => Ok(bytes.clone()),
            _ => self
                .keypair
                .to_protobuf_encoding()
                .map_err(|e| Error::Identity(Arc::new(e))),
        }
    }

    /// Uses `security` alone.
    pub fn with_security(mut self, security: Security) -> Self {
        self.security = vec![security];
        self
    }

    /// Uses these security protocols, in this order of preference.
    pub fn with_securities(mut self, security: impl IntoIterator<Item = Security>) -> Self {
        self.security = security.into_iter().collect();
        self
    }
}

/// What happened to a host's connections and listeners.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HostEvent {
    /// Listening on an address.
    Listening(Multiaddr),
    /// A connection to a peer is established.
    Connected {
        /// The peer.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
    },
    /// A connection to a peer ended.
    Disconnected {
        /// The peer.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
    },
    /// A peer told us about itself through identify.
    Identified {
        /// The peer.
        peer: PeerId,
        /// Its agent version.
        agent_version: Option<String>,
        /// The protocols it serves.
        protocols: Vec<String>,
        /// The addresses it listens on.
        listen_addrs: Vec<Multiaddr>,
    },
    /// Asking a peer about itself through identify failed (what it sent was malformed, did
    /// not match its identity, or did not come in time).
    IdentifyFailed {
        /// The peer.
        peer: PeerId,
        /// Why.
        error: SwarmError,
    },
    /// A connection failed before it was established.
    ConnectionFailed {
        /// The connection.
        connection: ConnectionId,
        /// Why.
        error: SwarmError,
    },
    /// The consumer of [`Host::next_event`] fell behind: this many older events were dropped.
    Lagged(u64),
    /// Accepting on a listener failed (e.g. the process ran out of file descriptors). The
    /// listener keeps going: it retries after `retry_in`, which doubles on each failure in a
    /// row (5 ms up to 1 s).
    AcceptFailed {
        /// The listen address.
        addr: Multiaddr,
        /// The kind of OS error.
        error: std::io::ErrorKind,
        /// The OS error number (EMFILE, ENFILE, ENOBUFS, ...), when there is one.
        os_error: Option<i32>,
        /// When the listener tries again.
        retry_in: Duration,
    },
}

/// A stream handler.
pub(crate) type Handler<R> = Arc<dyn Fn(Stream<R>) + Send + Sync>;

/// What a handler serves.
#[derive(Clone)]
pub(crate) enum Matcher {
    Exact(Protocol),
    Predicate(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl Matcher {
    fn matches(&self, protocol: &str) -> bool {
        match self {
            Self::Exact(p) => p.as_str() == protocol,
            Self::Predicate(f) => f(protocol),
        }
    }
}

/// The stream handlers, newest last, copied on write.
pub(crate) type Handlers<R> = Arc<Vec<(Matcher, Handler<R>)>>;

/// The handler of `protocol`: the newest whose matcher accepts it. Runs user code (matchers):
/// never call it with a lock held.
pub(crate) fn find_handler<R: Runtime>(
    handlers: &Handlers<R>,
    protocol: &str,
) -> Option<Handler<R>> {
    handlers
        .iter()
        .rev()
        .find(|(m, _)| m.matches(protocol))
        .map(|(_, h)| h.clone())
}

/// Events for one consumer: bounded, with the count of those dropped since it last read.
#[derive(Default)]
struct EventQueue {
    events: VecDeque<HostEvent>,
    /// Every call waiting for an event.
    wakers: Vec<Waker>,
    /// Events dropped (oldest first) since the consumer last read, reported as
    /// [`HostEvent::Lagged`].
    lagged: u64,
}

impl EventQueue {
    fn push(&mut self, event: HostEvent) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.lagged += 1;
        }
        self.events.push_back(event);
        for w in self.wakers.drain(..) {
            w.wake();
        }
    }

    fn poll(&mut self, waker: &Waker) -> Poll<HostEvent> {
        if self.lagged > 0 {
            return Poll::Ready(HostEvent::Lagged(std::mem::take(&mut self.lagged)));
        }
        match self.events.pop_front() {
            Some(e) => Poll::Ready(e),
            None => {
                if !self.wakers.iter().any(|w| w.will_wake(waker)) {
                    self.wakers.push(waker.clone());
                }
                Poll::Pending
            }
        }
    }
}

/// A subscription to a host's events ([`Host::subscribe`]); dropping it unsubscribes.
pub struct EventSubscription<R: Runtime> {
    shared: Arc<Shared<R>>,
    id: u64,
}

impl<R: Runtime> EventSubscription<R> {
    /// The next event of this subscription, or [`HostEvent::Lagged`] first when it fell
    /// behind. Concurrent calls each get different events of this subscription.
    pub async fn next(&self) -> HostEvent {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            match inner.subscribers.get_mut(&self.id) {
                Some(queue) => queue.poll(cx.waker()),
                None => Poll::Pending,
            }
        })
        .await
    }
}

impl<R: Runtime> Drop for EventSubscription<R> {
    fn drop(&mut self) {
        let removed = self.shared.lock().subscribers.remove(&self.id);
        drop(removed);
    }
}

/// An answer some task waits for.
struct Waiter<T> {
    result: Option<T>,
    waker: Option<Waker>,
}

impl<T> Default for Waiter<T> {
    fn default() -> Self {
        Self {
            result: None,
            waker: None,
        }
    }
}

impl<T> Waiter<T> {
    /// Stores the answer (the first one: a later one is dropped) and wakes the caller.
    fn complete(&mut self, value: T) {
        if self.result.is_some() {
            return;
        }
        self.result = Some(value);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// What the host lock guards: the coordinator, the connections' mailboxes, and the calls
/// that wait. No connection's machine and no stream's bytes are here.
pub(crate) struct HostState<R: Runtime> {
    pub(crate) coordinator: Coordinator,
    pub(crate) runtime: R,
    /// The mailbox of every running connection task.
    mailboxes: HashMap<ConnectionId, Arc<Mailbox>>,
    pub(crate) timer_waker: Option<Waker>,
    pub(crate) closed_listeners: HashSet<ListenerId>,
    /// Listener tasks waiting in `accept`, woken when their listener or the host closes.
    pub(crate) listener_wakers: HashMap<ListenerId, Waker>,
    streams: HashMap<StreamRequestId, Waiter<Result<Stream<R>, Error>>>,
    dials: HashMap<ConnectionId, Waiter<Result<PeerId, Error>>>,
    listens: HashMap<ListenerId, Waiter<Result<Multiaddr, Error>>>,
    /// The address each pending `listen` asked for, to name it in errors.
    listen_requests: HashMap<ListenerId, Multiaddr>,
    pings: HashMap<StreamRequestId, Waiter<Result<Duration, Error>>>,
    /// The events for [`Host::next_event`].
    events: EventQueue,
    /// The queues of the [`Host::subscribe`] subscriptions.
    subscribers: HashMap<u64, EventQueue>,
    next_subscriber: u64,
    pub(crate) shut_down: bool,
}

/// What a host's tasks and handles share.
pub(crate) struct Shared<R: Runtime> {
    state: Mutex<HostState<R>>,
    /// The stream handlers, newest last (their own lock: connection tasks look them up
    /// without the host lock).
    handlers: Mutex<Handlers<R>>,
    pub(crate) local_peer: PeerId,
    /// Connection tasks alive, each owning one socket.
    pub(crate) sockets: AtomicUsize,
}

impl<R: Runtime> Shared<R> {
    /// Takes the host lock. Nothing holding it calls user code.
    pub(crate) fn lock(&self) -> MutexGuard<'_, HostState<R>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current stream handlers.
    pub(crate) fn handlers(&self) -> Handlers<R> {
        self.handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Removes the exact-protocol handlers of `protocol`; returns them, to be dropped after
    /// every lock is released.
    fn remove_handler(&self, protocol: &str) -> Vec<Handler<R>> {
        let mut handlers = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        let is_it = |m: &Matcher| matches!(m, Matcher::Exact(p) if p.as_str() == protocol);
        let (removed, kept): (Vec<_>, Vec<_>) =
            handlers.iter().cloned().partition(|(m, _)| is_it(m));
        let old = std::mem::replace(&mut *handlers, Arc::new(kept));
        drop(handlers);
        drop(old);
        removed.into_iter().map(|(_, h)| h).collect()
    }

    fn add_handler(&self, matcher: Matcher, handler: Handler<R>) {
        let mut handlers = self.handlers.lock().unwrap_or_else(|e| e.into_inner());
        let mut list = (**handlers).clone();
        list.push((matcher, handler));
        // The old list is dropped here, the handlers lock held but no host lock: a handler
        // holding the last `Host` may shut the host down from its drop.
        let old = std::mem::replace(&mut *handlers, Arc::new(list));
        drop(handlers);
        drop(old);
    }
}

impl<R: Runtime> HostState<R> {
    /// Carries out the coordinator's commands, hands its events to whoever waits for them and
    /// its messages to the connections. Called after every change to the coordinator.
    pub(crate) fn pump(&mut self, shared: &Arc<Shared<R>>) {
        while let Some(command) = self.coordinator.poll_command() {
            match command {
                Command::Listen { listener, addr } => {
                    io::spawn_listener(shared.clone(), &self.runtime, listener, addr);
                }
                Command::Dial { connection, addr } => {
                    io::spawn_dial(shared.clone(), &self.runtime, connection, addr);
                }
                Command::CloseListener { listener } => {
                    self.closed_listeners.insert(listener);
                    if let Some(w) = self.listener_wakers.remove(&listener) {
                        w.wake();
                    }
                }
                _ => {}
            }
        }
        while let Some(event) = self.coordinator.poll_event() {
            self.dispatch(event);
        }
        while let Some((connection, message)) = self.coordinator.poll_connection_message() {
            let refused = match self.mailboxes.get(&connection) {
                Some(mailbox) => mailbox.post(message).err(),
                None => Some(message),
            };
            if let Some(message) = refused {
                self.bounce(message);
            }
        }
        if let Some(w) = &self.timer_waker {
            w.wake_by_ref();
        }
    }

    /// A message for a connection whose task has ended: what it asked for fails.
    fn bounce(&mut self, message: ToConnection) {
        match message {
            ToConnection::OpenStream { request, .. } => {
                self.complete(Completion::Stream(request, Err(connection::closed())))
            }
            ToConnection::Ping { request } => {
                self.complete(Completion::Ping(request, Err(connection::closed())))
            }
            _ => {}
        }
    }

    /// Asks the coordinator for a stream; a waiter receives the answer.
    fn request_stream(
        &mut self,
        shared: &Arc<Shared<R>>,
        now: std::time::Instant,
        peer: PeerId,
        protocols: Vec<Protocol>,
    ) -> StreamRequestId {
        let id = self.coordinator.open_stream(now, peer, protocols);
        self.streams.insert(id, Waiter::default());
        self.pump(shared);
        id
    }

    /// A connection task starts: its mailbox receives the coordinator's messages.
    pub(crate) fn connection_started(&mut self, connection: ConnectionId, mailbox: Arc<Mailbox>) {
        self.mailboxes.insert(connection, mailbox);
    }

    /// A connection task ends: messages still queued for it fail what they asked for.
    pub(crate) fn connection_ended(&mut self, connection: ConnectionId, mailbox: &Mailbox) {
        self.mailboxes.remove(&connection);
        for message in mailbox.close() {
            self.bounce(message);
        }
    }

    /// Completes a waiting `new_stream` or `ping` (a stream nobody waits for any more is
    /// dropped: that finishes it).
    pub(crate) fn complete(&mut self, completion: Completion<R>) {
        match completion {
            Completion::Stream(request, result) => {
                if let Some(waiter) = self.streams.get_mut(&request) {
                    waiter.complete(result);
                }
            }
            Completion::Ping(request, result) => {
                if let Some(waiter) = self.pings.get_mut(&request) {
                    waiter.complete(result);
                }
            }
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::ListenStarted { listener, addr } => {
                self.listen_requests.remove(&listener);
                self.listens
                    .entry(listener)
                    .or_default()
                    .complete(Ok(addr.clone()));
                self.push_event(HostEvent::Listening(addr));
            }
            Event::ListenClosed { listener, error } => {
                let addr = self.listen_requests.remove(&listener);
                if let Some(w) = self.listens.get_mut(&listener) {
                    if w.result.is_none() {
                        w.complete(Err(Error::Listen {
                            addr: addr.unwrap_or_else(Multiaddr::empty),
                            error: error.unwrap_or(TransportError::Cancelled),
                        }));
                    }
                }
            }
            Event::Connected {
                peer, connection, ..
            } => {
                if let Some(w) = self.dials.get_mut(&connection) {
                    w.complete(Ok(peer));
                }
                self.push_event(HostEvent::Connected { peer, connection });
            }
            Event::Disconnected {
                peer, connection, ..
            } => {
                self.push_event(HostEvent::Disconnected { peer, connection });
            }
            Event::ConnectionFailed {
                connection, error, ..
            } => {
                if let Some(w) = self.dials.get_mut(&connection) {
                    w.complete(Err(error.clone().into()));
                }
                self.push_event(HostEvent::ConnectionFailed { connection, error });
            }
            Event::StreamOpenFailed { request, error } => {
                self.complete(Completion::Stream(request, Err(error.into())));
            }
            Event::PingResult {
                request, result, ..
            } => {
                self.complete(Completion::Ping(request, result.map_err(Error::Swarm)));
            }
            Event::Identified { peer, info } => {
                self.push_event(HostEvent::Identified {
                    peer,
                    agent_version: info.agent_version.clone(),
                    protocols: info.protocols.clone(),
                    listen_addrs: info.listen_addrs.clone(),
                });
            }
            Event::IdentifyFailed { peer, error } => {
                self.push_event(HostEvent::IdentifyFailed { peer, error });
            }
            _ => {}
        }
    }

    pub(crate) fn push_event(&mut self, event: HostEvent) {
        for queue in self.subscribers.values_mut() {
            queue.push(event.clone());
        }
        self.events.push(event);
    }

    /// Streams of every connection, as their tasks last counted them.
    fn num_streams(&self) -> usize {
        self.mailboxes
            .values()
            .map(|m| m.streams.load(Ordering::Relaxed))
            .sum()
    }

    /// Bytes every connection buffers (its machine, socket buffers and streams).
    fn buffered_bytes(&self) -> u64 {
        self.mailboxes
            .values()
            .map(|m| m.buffered.load(Ordering::Relaxed) as u64)
            .sum()
    }
}

/// A libp2p host: listens, dials, opens and accepts streams. Cloning gives another handle to
/// the same host; [`Host::close`] (or dropping the last handle) closes everything.
pub struct Host<R: Runtime> {
    shared: Arc<Shared<R>>,
    _owner: Arc<Owner<R>>,
}

impl<R: Runtime> Clone for Host<R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            _owner: self._owner.clone(),
        }
    }
}

/// Closes the host when the last [`Host`] handle goes away.
struct Owner<R: Runtime>(Arc<Shared<R>>);

impl<R: Runtime> Drop for Owner<R> {
    fn drop(&mut self) {
        shutdown(&self.0);
    }
}

fn shutdown<R: Runtime>(shared: &Arc<Shared<R>>) {
    let mut inner = shared.lock();
    if inner.shut_down {
        return;
    }
    inner.shut_down = true;
    let now = inner.runtime.now();
    for c in inner.coordinator.connection_ids() {
        inner.coordinator.close_connection(now, c);
    }
    let listeners: Vec<ListenerId> = inner.listens.keys().copied().collect();
    for l in listeners {
        inner.coordinator.close_listener(l);
    }
    inner.pump(shared);
    // Calls waiting for an answer see the shutdown.
    for w in inner.streams.values_mut().filter_map(|w| w.waker.take()) {
        w.wake();
    }
    for w in inner.pings.values_mut().filter_map(|w| w.waker.take()) {
        w.wake();
    }
    for w in inner.dials.values_mut().filter_map(|w| w.waker.take()) {
        w.wake();
    }
    for (_, w) in inner.listener_wakers.drain() {
        w.wake();
    }
    if let Some(w) = inner.timer_waker.take() {
        w.wake();
    }
}

impl<R: Runtime> Host<R> {
    /// Starts a host on `runtime`.
    pub fn new(runtime: R, config: HostConfig) -> Result<Self, Error> {
        let seed: [u8; 32] = rand::random();
        if config.security.is_empty() {
            return Err(Error::Config("no security protocol".into()));
        }
        let mut swarm_config =
            SwarmConfig::new(config.keypair, seed).map_err(|e| Error::Config(e.to_string()))?;
        swarm_config.upgrade = swarm_config.upgrade.with_securities(config.security);
        swarm_config.limits = config.limits;
        swarm_config.upgrade = swarm_config.upgrade.with_timeout(config.upgrade_timeout);
        let coordinator = Coordinator::new(swarm_config);
        let shared = Arc::new(Shared {
            local_peer: coordinator.local_peer_id(),
            state: Mutex::new(HostState {
                coordinator,
                runtime: runtime.clone(),
                mailboxes: HashMap::new(),
                timer_waker: None,
                closed_listeners: HashSet::new(),
                listener_wakers: HashMap::new(),
                streams: HashMap::new(),
                dials: HashMap::new(),
                listens: HashMap::new(),
                listen_requests: HashMap::new(),
                pings: HashMap::new(),
                events: EventQueue::default(),
                subscribers: HashMap::new(),
                next_subscriber: 0,
                shut_down: false,
            }),
            handlers: Mutex::new(Arc::new(Vec::new())),
            sockets: AtomicUsize::new(0),
        });
        io::spawn_timer(shared.clone(), &runtime);
        let host = Self {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        };
        if config.perf {
            crate::perf::serve(&host, &runtime)?;
        }
        Ok(host)
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.shared.local_peer
    }

    /// Listens on `addr` (e.g. `/ip4/127.0.0.1/tcp/0`); returns the bound address.
    pub async fn listen(&self, addr: Multiaddr) -> Result<Multiaddr, Error> {
        let listener = {
            let mut inner = self.shared.lock();
            if inner.shut_down {
                return Err(Error::Closed);
            }
            let id = inner.coordinator.listen(addr.clone());
            inner.listens.insert(id, Waiter::default());
            inner.listen_requests.insert(id, addr);
            inner.pump(&self.shared);
            id
        };
        self.wait(|inner| &mut inner.listens, listener, false).await
    }

    /// Our listen addresses, each with `/p2p/<our id>` appended (go's `getHostAddress`).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        let inner = self.shared.lock();
        let me = inner.coordinator.local_peer_id();
        inner
            .coordinator
            .listen_addrs()
            .into_iter()
            .map(|a| a.with(AddrProtocol::P2p(me)))
            .collect()
    }

    /// Dials `addr` (with `/p2p/<id>` to check the remote's identity); returns the peer once
    /// the connection is established.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, Error> {
        let connection = {
            let mut inner = self.shared.lock();
            if inner.shut_down {
                return Err(Error::Closed);
            }
            let now = inner.runtime.now();
            if let (_, Some(peer)) = plait_core::multiaddr::split_p2p(&addr) {
                inner
                    .coordinator
                    .add_addresses(now, peer, [addr.clone()], PERMANENT_ADDR_TTL);
            }
            let id = inner
                .coordinator
                .dial(now, addr.clone())
                .map_err(|error| Error::Dial {
                    addr: addr.clone(),
                    error,
                })?;
            inner.dials.insert(id, Waiter::default());
            inner.pump(&self.shared);
            id
        };
        self.wait(|inner| &mut inner.dials, connection, true)
            .await
            .map_err(|e| match e {
                Error::Swarm(error) => Error::Dial { addr, error },
                other => other,
            })
    }

    /// Remembers addresses of `peer` for [`new_stream`](Self::new_stream), permanently (go's
    /// `Peerstore().AddAddrs(.., PermanentAddrTTL)`).
    pub fn add_addresses(&self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        let mut inner = self.shared.lock();
        let now = inner.runtime.now();
        inner
            .coordinator
            .add_addresses(now, peer, addrs, PERMANENT_ADDR_TTL);
    }

    /// Opens a stream to `peer` proposing `protocols` in order, dialing a known address when
    /// there is no connection (go-libp2p's `NewStream`).
    ///
    /// With one protocol and a connection already up, the stream is lazy and returned at
    /// once: what is written before the connection's task opens it leaves with its proposal.
    /// A refusal then shows on the stream: a remote that does not speak the protocol resets
    /// it, and a stream the connection cannot open (its stream limit) fails its reads and
    /// writes with `ConnectionReset` whose source is the [`SwarmError`]. Opens also wait,
    /// inside the connection, while the peer has not acknowledged 256 earlier streams
    /// (yamux's ack backlog), as go-yamux's `OpenStream` does. Otherwise (several protocols,
    /// or a dial first) this returns once the stream is open, or its error.
    pub async fn new_stream<P: AsRef<str>>(
        &self,
        peer: PeerId,
        protocols: impl IntoIterator<Item = P>,
    ) -> Result<Stream<R>, Error> {
        let protocols = protocols
            .into_iter()
            .map(|p| Protocol::try_from(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let request = {
            let mut inner = self.shared.lock();
            if inner.shut_down {
                return Err(Error::Closed);
            }
            let now = inner.runtime.now();
            // One protocol and a connection already: the stream is lazy, so it is handed out
            // at once and its connection's task opens it with whatever was written by then
            // (go-libp2p's NewStream returns at once too). A refusal resets it.
            if let [protocol] = protocols.as_slice() {
                let protocol = protocol.clone();
                let mailbox = inner
                    .coordinator
                    .best_connection(peer)
                    .and_then(|c| Some((c, inner.mailboxes.get(&c)?.clone())));
                if let Some((connection, mailbox)) = mailbox {
                    let request = inner.coordinator.open_stream(now, peer, protocols);
                    let shared = StreamShared::opening(connection, mailbox.clone());
                    if mailbox.add_opening(request, shared.clone()).is_ok() {
                        inner.pump(&self.shared);
                        let runtime = inner.runtime.clone();
                        return Ok(Stream::new(shared, runtime, peer, protocol));
                    }
                    // Its task has just ended: the request fails like any other.
                    inner.streams.insert(request, Waiter::default());
                    inner.pump(&self.shared);
                    request
                } else {
                    inner.request_stream(&self.shared, now, peer, protocols)
                }
            } else {
                inner.request_stream(&self.shared, now, peer, protocols)
            }
        };
        self.wait(|inner| &mut inner.streams, request, true).await
    }

    /// Pings `peer` over `/ipfs/ping/1.0.0` (dialing if needed); returns the round-trip time.
    /// Every call sends its own ping on its own stream, so concurrent calls are independent.
    pub async fn ping(&self, peer: PeerId) -> Result<Duration, Error> {
        let request = {
            let mut inner = self.shared.lock();
            if inner.shut_down {
                return Err(Error::Closed);
            }
            let now = inner.runtime.now();
            let request = inner.coordinator.ping(now, peer);
            inner.pings.insert(request, Waiter::default());
            inner.pump(&self.shared);
            request
        };
        self.wait(|inner| &mut inner.pings, request, true).await
    }

    /// What `peer` told us through identify, while we are connected to it.
    pub fn peer_info(&self, peer: PeerId) -> Option<plait_core::identify::Info> {
        self.shared.lock().coordinator.peer_info(peer).cloned()
    }

    /// Serves inbound streams that negotiate `protocol` with `handler` (which typically
    /// spawns a task). A later handler for the same protocol replaces the earlier one.
    /// Handlers run outside the host's lock: they may call any method of the host, and may
    /// drop the stream.
    pub fn set_stream_handler(
        &self,
        protocol: &str,
        handler: impl Fn(Stream<R>) + Send + Sync + 'static,
    ) -> Result<(), Error> {
        let protocol = Protocol::try_from(protocol)?;
        self.shared
            .add_handler(Matcher::Exact(protocol.clone()), Arc::new(handler));
        let mut inner = self.shared.lock();
        inner.coordinator.add_protocol(protocol);
        inner.pump(&self.shared);
        Ok(())
    }

    /// Serves inbound streams whose proposed protocol satisfies `matcher` (go-libp2p's
    /// `SetStreamHandlerMatch`). Matchers, like handlers, run outside the host's lock.
    pub fn set_stream_handler_match(
        &self,
        matcher: impl Fn(&str) -> bool + Send + Sync + 'static,
        handler: impl Fn(Stream<R>) + Send + Sync + 'static,
    ) {
        self.shared
            .add_handler(Matcher::Predicate(Arc::new(matcher)), Arc::new(handler));
        let mut inner = self.shared.lock();
        inner.coordinator.set_ask_about_other_protocols(true);
        inner.pump(&self.shared);
    }

    /// The next connection or listener event. The host keeps the latest 1024 events for
    /// this; when more arrive before they are read, the oldest are dropped and the next call
    /// returns [`HostEvent::Lagged`] with how many, before the events that were kept.
    /// Concurrent callers each get different events; dropping a call loses nothing. For
    /// several independent consumers, use [`Host::subscribe`].
    pub async fn next_event(&self) -> HostEvent {
        poll_fn(|cx| self.shared.lock().events.poll(cx.waker())).await
    }

    /// A subscription to every event from now on, with its own queue (1024 events, then
    /// [`HostEvent::Lagged`] as for [`Host::next_event`]): any number of subscribers each see
    /// every event. Dropping it unsubscribes.
    pub fn subscribe(&self) -> EventSubscription<R> {
        let mut inner = self.shared.lock();
        let id = inner.next_subscriber;
        inner.next_subscriber += 1;
        inner.subscribers.insert(id, EventQueue::default());
        EventSubscription {
            shared: self.shared.clone(),
            id,
        }
    }

    /// Closes every connection to `peer` (go's `Network().ClosePeer`); returns how many there
    /// were. Its streams fail with `ConnectionReset`.
    pub fn disconnect(&self, peer: PeerId) -> usize {
        let mut inner = self.shared.lock();
        let now = inner.runtime.now();
        let connections = inner.coordinator.connections_to(peer).to_vec();
        for c in &connections {
            inner.coordinator.close_connection(now, *c);
        }
        inner.pump(&self.shared);
        connections.len()
    }

    /// Closes one connection (go's `Conn.Close`); `false` if there is no such connection.
    pub fn close_connection(&self, connection: ConnectionId) -> bool {
        let mut inner = self.shared.lock();
        let known = inner.coordinator.connection_ids().contains(&connection);
        let now = inner.runtime.now();
        inner.coordinator.close_connection(now, connection);
        inner.pump(&self.shared);
        known
    }

    /// Protects `peer`'s connections from the connection manager's trimming (go's
    /// `ConnManager().Protect`), or stops protecting them.
    pub fn protect(&self, peer: PeerId, protected: bool) {
        self.shared.lock().coordinator.protect(peer, protected);
    }

    /// The peers we have established connections to (go's `Network().Peers`).
    pub fn peers(&self) -> Vec<PeerId> {
        self.shared.lock().coordinator.peers()
    }

    /// The established connections to `peer`, with their direction, addresses, age and
    /// stream count (go's `Network().ConnsToPeer`).
    pub fn connections(&self, peer: PeerId) -> Vec<plait_core::swarm::ConnectionInfo> {
        let inner = self.shared.lock();
        inner
            .coordinator
            .connections_to(peer)
            .iter()
            .filter_map(|c| inner.coordinator.connection_info(*c))
            .collect()
    }

    /// Stops serving inbound streams for `protocol` (go's `RemoveStreamHandler`); its handler
    /// is dropped. Returns whether there was one.
    pub fn remove_stream_handler(&self, protocol: &str) -> bool {
        let removed = self.shared.remove_handler(protocol);
        let mut inner = self.shared.lock();
        inner.coordinator.remove_protocol(protocol);
        inner.pump(&self.shared);
        drop(inner);
        let any = !removed.is_empty();
        // Dropped here, with no lock held: a handler may own the last handle of its host.
        drop(removed);
        any
    }

    /// Number of connections (established or upgrading).
    pub fn num_connections(&self) -> usize {
        self.shared.lock().coordinator.num_connections()
    }

    /// Number of streams with state.
    pub fn num_streams(&self) -> usize {
        self.shared.lock().num_streams()
    }

    /// Bytes the host buffers for its connections: each connection machine's (upgrades'
    /// pending output and decrypted input, decrypted input, encrypted output, yamux receive
    /// and send buffers, negotiation buffers), the connection tasks' socket buffers and the
    /// streams' read and write buffers. A memory metric for tests and monitoring; an
    /// upgrading connection holds at most [`MAX_UPGRADE_BUFFERED`](crate::MAX_UPGRADE_BUFFERED).
    pub fn buffered_bytes(&self) -> u64 {
        self.shared.lock().buffered_bytes()
    }

    /// Open sockets (connection tasks still running). Can exceed
    /// [`num_connections`](Self::num_connections) while closed connections flush their last
    /// bytes.
    pub fn num_sockets(&self) -> usize {
        self.shared.sockets.load(Ordering::Relaxed)
    }

    /// Closes every connection and listener. Streams fail afterwards.
    pub fn close(&self) {
        shutdown(&self.shared);
    }

    /// Waits for the answer stored under `key`. With `remove`, the waiter is removed once
    /// answered, and also when this future is dropped first (a cancelled call leaves nothing a
    /// later call could see).
    async fn wait<K: std::hash::Hash + Eq + Copy, T>(
        &self,
        map: WaiterMap<R, K, Result<T, Error>>,
        key: K,
        remove: bool,
    ) -> Result<T, Error> {
        let mut cancel = CancelWaiter {
            shared: &self.shared,
            map,
            key: remove.then_some(key),
        };
        let result = poll_fn(|cx| {
            let mut inner = self.shared.lock();
            let shut_down = inner.shut_down;
            let waiters = map(&mut inner);
            let Some(waiter) = waiters.get_mut(&key) else {
                return Poll::Ready(Err(Error::Closed));
            };
            if waiter.result.is_some() {
                let result = if remove {
                    waiters.remove(&key).and_then(|w| w.result)
                } else {
                    waiter.result.take()
                };
                return Poll::Ready(result.unwrap_or(Err(Error::Closed)));
            }
            if shut_down {
                waiters.remove(&key);
                return Poll::Ready(Err(Error::Closed));
            }
            waiter.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        cancel.key = None;
        result
    }
}

/// Where the waiters of one kind of call live in [`HostState`].
type WaiterMap<R, K, T> = fn(&mut HostState<R>) -> &mut HashMap<K, Waiter<T>>;

/// Removes a waiter whose call was dropped before its answer came.
struct CancelWaiter<'a, R: Runtime, K: std::hash::Hash + Eq, T> {
    shared: &'a Shared<R>,
    map: WaiterMap<R, K, T>,
    key: Option<K>,
}

impl<R: Runtime, K: std::hash::Hash + Eq, T> Drop for CancelWaiter<'_, R, K, T> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let removed = (self.map)(&mut self.shared.lock()).remove(&key);
        // An answer that came meanwhile (a stream) is dropped here, the lock released.
        drop(removed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_load_from_and_save_to_the_protobuf_encoding() {
        let rsa = HostConfig::from_private_key_protobuf(plait_testkit::rsa_keys::RSA_2048_PROTOBUF)
            .expect("go-style RSA key");
        let from_pkcs8 = Keypair::rsa_from_pkcs8(&mut plait_testkit::rsa_keys::RSA_2048.to_vec())
            .expect("pkcs8");
        assert_eq!(rsa.keypair.public(), from_pkcs8.public());
        assert_eq!(
            rsa.private_key_protobuf().expect("saved"),
            plait_testkit::rsa_keys::RSA_2048_PROTOBUF
        );
        for keypair in [
            Keypair::generate_ed25519(),
            Keypair::generate_secp256k1(),
            Keypair::generate_ecdsa(),
        ] {
            let bytes = HostConfig::new(keypair.clone())
                .private_key_protobuf()
                .expect("encode");
            let loaded = HostConfig::from_private_key_protobuf(&bytes).expect("decode");
            assert_eq!(loaded.keypair.public(), keypair.public());
            assert_eq!(loaded.private_key_protobuf().expect("again"), bytes);
        }
        // An RSA key that was not loaded from the encoding cannot be saved in it.
        assert!(matches!(
            HostConfig::new(from_pkcs8).private_key_protobuf(),
            Err(Error::Identity(_))
        ));
        assert!(matches!(
            HostConfig::from_private_key_protobuf(b"\x08\x09\x12\x00"),
            Err(Error::Identity(_))
        ));
    }
}
