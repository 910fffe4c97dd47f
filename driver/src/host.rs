//! The host: a swarm behind a mutex, driven by connection, listener and timer tasks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::poll_fn;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Duration;

use plait_core::dial::peerstore::PERMANENT_ADDR_TTL;
use plait_core::identity::{Keypair, PeerId};
use plait_core::multiaddr::{Multiaddr, Protocol as AddrProtocol};
use plait_core::multistream::Protocol;
use plait_core::swarm::{
    Command, ConnectionId, Error as SwarmError, Event, Limits, ListenerId, StreamRef,
    StreamRequestId, Swarm, SwarmConfig,
};
use plait_core::upgrade::Security;

use crate::stream::Stream;
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
    /// Noise (default) or insecure plaintext.
    pub security: Security,
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
            security: Security::Noise,
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

    /// Uses `security`.
    pub fn with_security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }
}

/// What happened to a host's connections and listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        error: String,
    },
    /// A connection failed before it was established.
    ConnectionFailed {
        /// The connection.
        connection: ConnectionId,
        /// Why.
        error: String,
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

type Handler<R> = Arc<dyn Fn(Stream<R>) + Send + Sync>;

/// User code to run once the host lock is released (see [`Guard`]).
type Deferred = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
enum Matcher {
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

/// The stream handlers, newest last. Shared with the deferred calls that run them, and
/// copied on write.
type Handlers<R> = Arc<Vec<(Matcher, Handler<R>)>>;

/// The handler of `protocol`: the newest whose matcher accepts it. Runs user code (matchers):
/// never call it with the host lock held.
fn find_handler<R: Runtime>(handlers: &Handlers<R>, protocol: &str) -> Option<Handler<R>> {
    handlers
        .iter()
        .rev()
        .find(|(m, _)| m.matches(protocol))
        .map(|(_, h)| h.clone())
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

pub(crate) struct Inner<R: Runtime> {
    pub(crate) swarm: Swarm,
    pub(crate) runtime: R,
    /// Connection tasks to wake when their connection has output or must close.
    pub(crate) conn_wakers: HashMap<ConnectionId, Waker>,
    pub(crate) closing: HashSet<ConnectionId>,
    pub(crate) read_wakers: HashMap<StreamRef, Waker>,
    pub(crate) write_wakers: HashMap<StreamRef, Waker>,
    pub(crate) reset_streams: HashSet<StreamRef>,
    /// Streams the application dropped before reading their end: the driver reads and
    /// discards what still arrives until the remote's FIN, so the core can forget them.
    pub(crate) detached: HashSet<StreamRef>,
    pub(crate) timer_waker: Option<Waker>,
    pub(crate) closed_listeners: HashSet<ListenerId>,
    /// Listener tasks waiting in `accept`, woken when their listener or the host closes.
    pub(crate) listener_wakers: HashMap<ListenerId, Waker>,
    /// `new_stream` calls waiting for the peer to acknowledge earlier streams (yamux's ack
    /// backlog); woken when a connection receives input or ends.
    backlog_wakers: Vec<Waker>,
    handlers: Handlers<R>,
    /// Handlers and matchers to call once the lock is released (by [`Guard`]'s drop).
    deferred: Vec<Deferred>,
    streams: HashMap<StreamRequestId, Waiter<Result<Stream<R>, Error>>>,
    dials: HashMap<ConnectionId, Waiter<Result<PeerId, Error>>>,
    listens: HashMap<ListenerId, Waiter<Result<Multiaddr, Error>>>,
    /// The address each pending `listen` asked for, to name it in errors.
    listen_requests: HashMap<ListenerId, Multiaddr>,
    pings: HashMap<StreamRequestId, Waiter<Result<Duration, Error>>>,
    events: VecDeque<HostEvent>,
    /// Every `next_event` call waiting for an event.
    event_wakers: Vec<Waker>,
    /// Events dropped (oldest first) since `next_event` last ran, reported as
    /// [`HostEvent::Lagged`].
    lagged: u64,
    pub(crate) shut_down: bool,
}

pub(crate) struct Shared<R: Runtime> {
    pub(crate) inner: Mutex<Inner<R>>,
    /// Bytes held in the connection tasks' socket buffers (read, not yet consumed by the
    /// swarm; taken from the swarm, not yet written).
    pub(crate) io_buffered: AtomicUsize,
    /// Connection tasks alive, each owning one socket.
    pub(crate) sockets: AtomicUsize,
}

impl<R: Runtime> Shared<R> {
    /// Takes the host lock. User code that the work done under it calls for (stream handlers,
    /// protocol matchers) runs when the guard is dropped, after the lock is released.
    pub(crate) fn lock(&self) -> Guard<'_, R> {
        Guard(Some(self.inner.lock().unwrap_or_else(|e| e.into_inner())))
    }
}

/// The host lock, held. Dropping it releases the lock, then runs the calls into user code
/// queued while it was held, so a handler may call any [`Host`] method or drop its stream.
pub(crate) struct Guard<'a, R: Runtime>(Option<MutexGuard<'a, Inner<R>>>);

impl<R: Runtime> Deref for Guard<'_, R> {
    type Target = Inner<R>;
    fn deref(&self) -> &Inner<R> {
        self.0
            .as_deref()
            .unwrap_or_else(|| unreachable!("held until dropped"))
    }
}

impl<R: Runtime> DerefMut for Guard<'_, R> {
    fn deref_mut(&mut self) -> &mut Inner<R> {
        self.0
            .as_deref_mut()
            .unwrap_or_else(|| unreachable!("held until dropped"))
    }
}

impl<R: Runtime> Drop for Guard<'_, R> {
    fn drop(&mut self) {
        let Some(mut inner) = self.0.take() else {
            return;
        };
        let deferred = std::mem::take(&mut inner.deferred);
        drop(inner);
        if std::thread::panicking() {
            return;
        }
        for call in deferred {
            call();
        }
    }
}

impl<R: Runtime> Inner<R> {
    /// Carries out the swarm's commands and hands its events to whoever waits for them.
    /// Called after every change to the swarm, with the lock held.
    pub(crate) fn pump(&mut self, shared: &Arc<Shared<R>>) {
        while let Some(command) = self.swarm.poll_command() {
            match command {
                Command::Listen { listener, addr } => {
                    io::spawn_listener(shared.clone(), &self.runtime, listener, addr);
                }
                Command::Dial { connection, addr } => {
                    io::spawn_dial(shared.clone(), &self.runtime, connection, addr);
                }
                Command::Close { connection } => {
                    self.closing.insert(connection);
                    self.wake_connection(connection);
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
        while let Some(event) = self.swarm.poll_event() {
            self.dispatch(shared, event);
        }
        self.wake_ready();
        if let Some(w) = &self.timer_waker {
            w.wake_by_ref();
        }
    }

    fn dispatch(&mut self, shared: &Arc<Shared<R>>, event: Event) {
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
                            reason: error.unwrap_or_else(|| "listener closed".into()),
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
                self.forget_connection(connection);
                self.push_event(HostEvent::Disconnected { peer, connection });
            }
            Event::ConnectionFailed {
                connection, error, ..
            } => {
                self.forget_connection(connection);
                if let Some(w) = self.dials.get_mut(&connection) {
                    w.complete(Err(error.clone().into()));
                }
                self.push_event(HostEvent::ConnectionFailed {
                    connection,
                    error: error.to_string(),
                });
            }
            Event::InboundStream {
                peer,
                stream,
                protocol,
            } => {
                let handlers = self.handlers.clone();
                let stream = Stream::new(shared.clone(), stream, peer, protocol);
                self.deferred.push(Box::new(move || {
                    match find_handler(&handlers, stream.protocol().as_str()) {
                        Some(handler) => handler(stream),
                        None => stream.reset(),
                    }
                }));
            }
            Event::ProtocolQuery {
                stream, protocol, ..
            } => {
                let handlers = self.handlers.clone();
                let shared = shared.clone();
                self.deferred.push(Box::new(move || {
                    let accept = find_handler(&handlers, protocol.as_str()).is_some();
                    let mut inner = shared.lock();
                    let now = inner.runtime.now();
                    // The stream or its connection may be gone by now: nothing to answer then.
                    let _ = inner.swarm.answer_protocol_query(now, stream, accept);
                    inner.pump(&shared);
                }));
            }
            Event::StreamOpened {
                request,
                stream,
                protocol,
            } => {
                let peer = self
                    .swarm
                    .connection_peer(stream.connection)
                    .unwrap_or_else(|| self.swarm.local_peer_id());
                self.wake_connection(stream.connection);
                let s = Stream::new(shared.clone(), stream, peer, protocol);
                match self.streams.get_mut(&request) {
                    Some(waiter) => waiter.complete(Ok(s)),
                    // Its `new_stream` was cancelled: close the stream (its drop takes the
                    // lock, so after it is released).
                    None => self.deferred.push(Box::new(move || drop(s))),
                }
            }
            Event::StreamOpenFailed { request, error } => {
                if let Some(waiter) = self.streams.get_mut(&request) {
                    waiter.complete(Err(error.into()));
                }
            }
            Event::PingResult {
                request, result, ..
            } => {
                if let Some(w) = self.pings.get_mut(&request) {
                    w.complete(result.map_err(Error::Ping));
                }
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
            Event::Readable(s) if self.detached.contains(&s) => self.drain_detached(s),
            Event::Readable(s) => {
                if let Some(w) = self.read_wakers.remove(&s) {
                    w.wake();
                }
            }
            Event::Writable(s) => {
                if let Some(w) = self.write_wakers.remove(&s) {
                    w.wake();
                }
            }
            Event::StreamReset(s) if self.detached.remove(&s) => {}
            Event::StreamReset(s) => {
                self.reset_streams.insert(s);
                for w in [self.read_wakers.remove(&s), self.write_wakers.remove(&s)]
                    .into_iter()
                    .flatten()
                {
                    w.wake();
                }
            }
            _ => {}
        }
    }

    /// Wakes every stream of a connection that ended, so their reads and writes fail.
    fn forget_connection(&mut self, connection: ConnectionId) {
        let streams: Vec<StreamRef> = self
            .read_wakers
            .keys()
            .chain(self.write_wakers.keys())
            .filter(|s| s.connection == connection)
            .copied()
            .collect();
        for s in streams {
            self.reset_streams.insert(s);
            for w in [self.read_wakers.remove(&s), self.write_wakers.remove(&s)]
                .into_iter()
                .flatten()
            {
                w.wake();
            }
        }
        self.detached.retain(|s| s.connection != connection);
        self.wake_backlog();
        self.closing.remove(&connection);
        self.wake_connection(connection);
    }

    /// Reads and discards what a dropped stream has received; forgets it at its end.
    pub(crate) fn drain_detached(&mut self, s: StreamRef) {
        loop {
            match self.swarm.read(s, 64 * 1024) {
                Ok(Some(chunk)) if chunk.is_empty() => {
                    self.detached.insert(s);
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    self.detached.remove(&s);
                    break;
                }
            }
        }
        // Reading freed window or ended the stream: the connection may owe the peer a frame.
        self.wake_connection(s.connection);
    }

    pub(crate) fn push_event(&mut self, event: HostEvent) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.lagged += 1;
        }
        self.events.push_back(event);
        for w in self.event_wakers.drain(..) {
            w.wake();
        }
    }

    /// Wakes the tasks of the connections the swarm has new output for.
    pub(crate) fn wake_ready(&mut self) {
        while let Some(connection) = self.swarm.poll_wants_transmit() {
            self.wake_connection(connection);
        }
    }

    pub(crate) fn wake_connection(&mut self, connection: ConnectionId) {
        if let Some(w) = self.conn_wakers.remove(&connection) {
            w.wake();
        }
    }

    /// Wakes `new_stream` calls waiting for stream acknowledgements (the caller received
    /// input, which may carry them, or a connection ended).
    pub(crate) fn wake_backlog(&mut self) {
        for w in self.backlog_wakers.drain(..) {
            w.wake();
        }
    }

    pub(crate) fn wake_all_connections(&mut self) {
        for (_, w) in self.conn_wakers.drain() {
            w.wake();
        }
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
    let connections: Vec<ConnectionId> = inner.swarm.connections_with_output().collect();
    for c in connections {
        inner.swarm.close_connection(now, c);
    }
    let listeners: Vec<ListenerId> = inner.listens.keys().copied().collect();
    for l in listeners {
        inner.swarm.close_listener(l);
    }
    inner.pump(shared);
    inner.wake_all_connections();
    inner.wake_backlog();
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
        let mut swarm_config = SwarmConfig::new(config.keypair, seed)
            .map_err(|e| Error::Config(e.to_string()))?
            .with_security(config.security);
        swarm_config.limits = config.limits;
        swarm_config.upgrade = swarm_config.upgrade.with_timeout(config.upgrade_timeout);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                swarm: Swarm::new(swarm_config),
                runtime: runtime.clone(),
                conn_wakers: HashMap::new(),
                closing: HashSet::new(),
                read_wakers: HashMap::new(),
                write_wakers: HashMap::new(),
                reset_streams: HashSet::new(),
                detached: HashSet::new(),
                timer_waker: None,
                closed_listeners: HashSet::new(),
                listener_wakers: HashMap::new(),
                backlog_wakers: Vec::new(),
                handlers: Arc::new(Vec::new()),
                deferred: Vec::new(),
                streams: HashMap::new(),
                dials: HashMap::new(),
                listens: HashMap::new(),
                listen_requests: HashMap::new(),
                pings: HashMap::new(),
                events: VecDeque::new(),
                event_wakers: Vec::new(),
                lagged: 0,
                shut_down: false,
            }),
            io_buffered: AtomicUsize::new(0),
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
        self.shared.lock().swarm.local_peer_id()
    }

    /// Listens on `addr` (e.g. `/ip4/127.0.0.1/tcp/0`); returns the bound address.
    pub async fn listen(&self, addr: Multiaddr) -> Result<Multiaddr, Error> {
        let listener = {
            let mut inner = self.shared.lock();
            if inner.shut_down {
                return Err(Error::Closed);
            }
            let id = inner.swarm.listen(addr.clone());
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
        let me = inner.swarm.local_peer_id();
        inner
            .swarm
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
                    .swarm
                    .add_addresses(now, peer, [addr.clone()], PERMANENT_ADDR_TTL);
            }
            let id = inner
                .swarm
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
            .swarm
            .add_addresses(now, peer, addrs, PERMANENT_ADDR_TTL);
    }

    /// Opens a stream to `peer` proposing `protocols` in order, dialing a known address when
    /// there is no connection (go-libp2p's `NewStream`). While the peer has not yet
    /// acknowledged 256 earlier streams (yamux's ack backlog) this waits, as go-yamux's
    /// `OpenStream` does, instead of failing.
    pub async fn new_stream<P: AsRef<str>>(
        &self,
        peer: PeerId,
        protocols: impl IntoIterator<Item = P>,
    ) -> Result<Stream<R>, Error> {
        let protocols = protocols
            .into_iter()
            .map(|p| Protocol::try_from(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        loop {
            let request = {
                let mut inner = self.shared.lock();
                if inner.shut_down {
                    return Err(Error::Closed);
                }
                let now = inner.runtime.now();
                let id = inner.swarm.open_stream(now, peer, protocols.clone());
                inner.streams.insert(id, Waiter::default());
                inner.pump(&self.shared);
                id
            };
            match self.wait(|inner| &mut inner.streams, request, true).await {
                Err(Error::Swarm(SwarmError::AckBacklogFull)) => {
                    self.backlog_changed().await;
                }
                other => return other,
            }
        }
    }

    /// Completes after the next input on any connection (or a connection's end).
    async fn backlog_changed(&self) {
        let mut registered = false;
        poll_fn(|cx| {
            if registered {
                return Poll::Ready(());
            }
            registered = true;
            self.shared.lock().backlog_wakers.push(cx.waker().clone());
            Poll::Pending
        })
        .await;
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
            let request = inner.swarm.ping(now, peer);
            inner.pings.insert(request, Waiter::default());
            inner.pump(&self.shared);
            request
        };
        self.wait(|inner| &mut inner.pings, request, true).await
    }

    /// What `peer` told us through identify, while we are connected to it.
    pub fn peer_info(&self, peer: PeerId) -> Option<plait_core::identify::Info> {
        self.shared.lock().swarm.peer_info(peer).cloned()
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
        let mut inner = self.shared.lock();
        inner.swarm.add_protocol(protocol.clone());
        Arc::make_mut(&mut inner.handlers).push((Matcher::Exact(protocol), Arc::new(handler)));
        Ok(())
    }

    /// Serves inbound streams whose proposed protocol satisfies `matcher` (go-libp2p's
    /// `SetStreamHandlerMatch`). Matchers, like handlers, run outside the host's lock.
    pub fn set_stream_handler_match(
        &self,
        matcher: impl Fn(&str) -> bool + Send + Sync + 'static,
        handler: impl Fn(Stream<R>) + Send + Sync + 'static,
    ) {
        let mut inner = self.shared.lock();
        inner.swarm.set_ask_about_other_protocols(true);
        Arc::make_mut(&mut inner.handlers)
            .push((Matcher::Predicate(Arc::new(matcher)), Arc::new(handler)));
    }

    /// The next connection or listener event. The host keeps the latest 1024 events for
    /// this; when more arrive before they are read, the oldest are dropped and the next call
    /// returns [`HostEvent::Lagged`] with how many, before the events that were kept.
    /// Concurrent callers each get different events; dropping a call loses nothing.
    pub async fn next_event(&self) -> HostEvent {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if inner.lagged > 0 {
                return Poll::Ready(HostEvent::Lagged(std::mem::take(&mut inner.lagged)));
            }
            match inner.events.pop_front() {
                Some(e) => Poll::Ready(e),
                None => {
                    let waker = cx.waker();
                    if !inner.event_wakers.iter().any(|w| w.will_wake(waker)) {
                        inner.event_wakers.push(waker.clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Number of connections (established or upgrading).
    pub fn num_connections(&self) -> usize {
        self.shared.lock().swarm.num_connections()
    }

    /// Number of streams with state.
    pub fn num_streams(&self) -> usize {
        self.shared.lock().swarm.num_streams()
    }

    /// Bytes the host buffers for its connections: the swarm's (upgrades' pending output and
    /// decrypted input, decrypted input, encrypted output, yamux receive and send buffers,
    /// negotiation buffers) plus the connection tasks' socket buffers. A memory metric for
    /// tests and monitoring; an upgrading connection holds at most
    /// [`MAX_UPGRADE_BUFFERED`](crate::MAX_UPGRADE_BUFFERED).
    pub fn buffered_bytes(&self) -> u64 {
        let swarm = self.shared.lock().swarm.buffered_bytes();
        swarm + self.shared.io_buffered.load(Ordering::Relaxed) as u64
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

/// Where the waiters of one kind of call live in [`Inner`].
type WaiterMap<R, K, T> = fn(&mut Inner<R>) -> &mut HashMap<K, Waiter<T>>;

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
