//! A coordinator and all its connection tasks in one value, for single-threaded drivers.
//!
//! [`Swarm`] routes the messages between the [`Coordinator`] and the [`ConnectionTask`]s
//! itself, keeps the tasks' deadlines in a timer queue, and offers the whole host through one
//! set of calls addressed by [`ConnectionId`] and [`StreamRef`]. The simulator and the custom
//! event loop example drive it; a driver that runs every connection in its own task (as
//! `plait-driver` does) uses the coordinator and the tasks directly instead.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use bytes::{Bytes, BytesMut};
use libp2p_identity::PeerId;

use super::{
    Command, ConnectionId, ConnectionTask, Coordinator, Error, Event, ListenerId, StreamRef,
    StreamRequestId, SwarmConfig, ToConnection, ToCoordinator,
};
use crate::dial::TransportError;
use crate::multiaddr::Multiaddr;
use crate::multistream::Protocol;
use crate::time::Instant;

/// The coordinator and its connection tasks in one value, which routes their messages itself
/// (see the [`swarm`](crate::swarm) module documentation).
pub struct Swarm {
    coordinator: Coordinator,
    tasks: HashMap<ConnectionId, ConnectionTask>,
    /// Tasks that may have events or messages since the last routing.
    touched: Vec<ConnectionId>,
    /// The tasks' deadlines, earliest first, and each task's entry in it.
    deadlines: BTreeSet<(Instant, ConnectionId)>,
    deadline_of: HashMap<ConnectionId, Instant>,
    /// Connections with new output caused by something other than their own transmit call.
    wants_transmit: Vec<ConnectionId>,
    /// Connections already told to the driver as closing.
    close_commanded: HashSet<ConnectionId>,
    commands: VecDeque<Command>,
    events: VecDeque<Event>,
    /// The latest instant passed in.
    now: Option<Instant>,
}

impl Swarm {
    /// A swarm with `config`, handling no protocols yet (but ping and identify).
    pub fn new(config: SwarmConfig) -> Self {
        Self {
            coordinator: Coordinator::new(config),
            tasks: HashMap::new(),
            touched: Vec::new(),
            deadlines: BTreeSet::new(),
            deadline_of: HashMap::new(),
            wants_transmit: Vec::new(),
            close_commanded: HashSet::new(),
            commands: VecDeque::new(),
            events: VecDeque::new(),
            now: None,
        }
    }

    /// The coordinator.
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// The task of `connection`, while it runs.
    pub fn task(&self, connection: ConnectionId) -> Option<&ConnectionTask> {
        self.tasks.get(&connection)
    }

    /// Our peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.coordinator.local_peer_id()
    }

    fn at(&mut self, now: Instant) -> Instant {
        let now = self.now.map_or(now, |t| t.max(now));
        self.now = Some(now);
        now
    }

    fn touch(&mut self, connection: ConnectionId) {
        if !self.touched.contains(&connection) {
            self.touched.push(connection);
        }
    }

    fn mark_output(&mut self, connection: ConnectionId) {
        if self.tasks.contains_key(&connection) && !self.wants_transmit.contains(&connection) {
            self.wants_transmit.push(connection);
        }
    }

    /// Delivers messages both ways until there are none, collecting events and commands.
    fn route(&mut self) {
        let Some(now) = self.now else {
            self.collect_coordinator();
            return;
        };
        loop {
            let mut progress = false;
            while let Some((id, message)) = self.coordinator.poll_connection_message() {
                progress = true;
                let Some(task) = self.tasks.get_mut(&id) else {
                    continue;
                };
                let close = matches!(message, ToConnection::Close);
                task.handle_coordinator_message(now, message);
                self.touch(id);
                self.mark_output(id);
                if close && self.close_commanded.insert(id) {
                    self.commands.push_back(Command::Close { connection: id });
                }
            }
            while let Some(id) = self.touched.pop() {
                progress = true;
                self.collect_task(now, id);
            }
            self.collect_coordinator();
            if !progress {
                return;
            }
        }
    }

    /// Hands a task's messages to the coordinator and takes its events; forgets it once it
    /// ended.
    fn collect_task(&mut self, now: Instant, id: ConnectionId) {
        let Some(task) = self.tasks.get_mut(&id) else {
            return;
        };
        let mut closed = None;
        while let Some(message) = task.poll_coordinator_message() {
            match message {
                ToCoordinator::Closed { .. } => closed = Some(message),
                other => self.coordinator.handle_connection_message(now, id, other),
            }
        }
        // The coordinator's events of these messages (`Connected`) come before the task's.
        while let Some(event) = self.coordinator.poll_event() {
            self.events.push_back(event);
        }
        while let Some(event) = task.poll_event() {
            self.events.push_back(event);
        }
        let deadline = task.poll_timeout();
        if let Some(old) = self.deadline_of.remove(&id) {
            self.deadlines.remove(&(old, id));
        }
        if let Some(closed) = closed {
            self.tasks.remove(&id);
            self.wants_transmit.retain(|c| *c != id);
            self.coordinator.handle_connection_message(now, id, closed);
            if !self.close_commanded.remove(&id) {
                self.commands.push_back(Command::Close { connection: id });
            }
            return;
        }
        if let Some(deadline) = deadline {
            self.deadlines.insert((deadline, id));
            self.deadline_of.insert(id, deadline);
        }
    }

    fn collect_coordinator(&mut self) {
        while let Some(command) = self.coordinator.poll_command() {
            self.commands.push_back(command);
        }
        while let Some(event) = self.coordinator.poll_event() {
            self.events.push_back(event);
        }
    }

    fn with_task<T>(
        &mut self,
        connection: ConnectionId,
        f: impl FnOnce(&mut ConnectionTask) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let task = self.tasks.get_mut(&connection).ok_or(Error::Unknown)?;
        let result = f(task);
        self.touch(connection);
        self.mark_output(connection);
        self.route();
        result
    }

    // ---- protocols ----

    /// Accepts inbound streams for `protocol` (exact match), on every connection.
    pub fn add_protocol(&mut self, protocol: Protocol) {
        self.coordinator.add_protocol(protocol);
        self.route();
    }

    /// See [`Coordinator::set_ask_about_other_protocols`]; answer with
    /// [`Swarm::answer_protocol_query`].
    pub fn set_ask_about_other_protocols(&mut self, ask: bool) {
        self.coordinator.set_ask_about_other_protocols(ask);
        self.route();
    }

    /// Answers an [`Event::ProtocolQuery`].
    pub fn answer_protocol_query(
        &mut self,
        now: Instant,
        stream: StreamRef,
        accept: bool,
    ) -> Result<(), Error> {
        self.at(now);
        self.with_task(stream.connection, |t| {
            t.answer_protocol_query(stream.stream, accept)
        })
    }

    /// The exact protocols inbound streams may negotiate.
    pub fn protocols(&self) -> Vec<Protocol> {
        self.coordinator.protocols()
    }

    // ---- listeners ----

    /// Asks the driver to listen on `addr`.
    pub fn listen(&mut self, addr: Multiaddr) -> ListenerId {
        let id = self.coordinator.listen(addr);
        self.route();
        id
    }

    /// Driver: the listener is bound to `addr`.
    pub fn handle_listening(&mut self, listener: ListenerId, addr: Multiaddr) {
        self.coordinator.handle_listening(listener, addr);
        self.route();
    }

    /// Driver: the listener failed or closed.
    pub fn handle_listen_failed(&mut self, listener: ListenerId, error: TransportError) {
        self.coordinator.handle_listen_failed(listener, error);
        self.route();
    }

    /// Stops a listener.
    pub fn close_listener(&mut self, listener: ListenerId) {
        self.coordinator.close_listener(listener);
        self.route();
    }

    /// Addresses we listen on.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.coordinator.listen_addrs()
    }

    /// Driver: a socket was accepted. Returns its connection id, or an error when a limit
    /// refuses it (then close the socket at once).
    pub fn handle_incoming(
        &mut self,
        now: Instant,
        local: Multiaddr,
        remote: Multiaddr,
    ) -> Result<ConnectionId, Error> {
        let now = self.at(now);
        let result = self.coordinator.handle_incoming(now, local, remote);
        let result = result.map(|task| {
            let id = task.id();
            self.tasks.insert(id, task);
            self.touch(id);
            id
        });
        self.route();
        result
    }

    // ---- dialing ----

    /// See [`Coordinator::add_addresses`].
    pub fn add_addresses(
        &mut self,
        now: Instant,
        peer: PeerId,
        addrs: impl IntoIterator<Item = Multiaddr>,
        ttl: std::time::Duration,
    ) {
        let now = self.at(now);
        self.coordinator.add_addresses(now, peer, addrs, ttl);
    }

    /// The known, unexpired addresses of `peer`.
    pub fn addresses(&self, now: Instant, peer: PeerId) -> Vec<Multiaddr> {
        self.coordinator.addresses(now, peer)
    }

    /// Dials `addr`; a trailing `/p2p/<id>` makes the upgrade check the remote's identity.
    pub fn dial(&mut self, now: Instant, addr: Multiaddr) -> Result<ConnectionId, Error> {
        let now = self.at(now);
        let result = self.coordinator.dial(now, addr);
        self.route();
        result
    }

    /// Driver: the socket of a dialed connection is open.
    pub fn handle_connected(&mut self, now: Instant, connection: ConnectionId) {
        let now = self.at(now);
        match self.coordinator.handle_connected(now, connection) {
            Some(task) => {
                self.tasks.insert(connection, task);
                self.touch(connection);
                self.mark_output(connection);
            }
            None => self.commands.push_back(Command::Close { connection }),
        }
        self.route();
    }

    /// Driver: opening the socket of a dialed connection failed.
    pub fn handle_dial_failed(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        error: TransportError,
    ) {
        let now = self.at(now);
        self.coordinator.handle_dial_failed(now, connection, error);
        self.route();
    }

    // ---- streams ----

    /// See [`Coordinator::open_stream`].
    pub fn open_stream(
        &mut self,
        now: Instant,
        peer: PeerId,
        protocols: Vec<Protocol>,
    ) -> StreamRequestId {
        let now = self.at(now);
        let id = self.coordinator.open_stream(now, peer, protocols);
        self.route();
        id
    }

    /// See [`Coordinator::ping`].
    pub fn ping(&mut self, now: Instant, peer: PeerId) -> StreamRequestId {
        let now = self.at(now);
        let id = self.coordinator.ping(now, peer);
        self.route();
        id
    }

    /// See [`Coordinator::best_connection`].
    pub fn best_connection(&self, peer: PeerId) -> Option<ConnectionId> {
        self.coordinator.best_connection(peer)
    }

    /// Reads up to `max` bytes; `Ok(None)` is the end of the stream, an empty chunk means
    /// nothing is buffered (wait for [`Event::Readable`]).
    pub fn read(&mut self, stream: StreamRef, max: usize) -> Result<Option<Bytes>, Error> {
        self.with_task(stream.connection, |t| t.read(stream.stream, max))
    }

    /// Writes to a stream; returns how many bytes were taken (0: wait for
    /// [`Event::Writable`]).
    pub fn write(&mut self, stream: StreamRef, data: &[u8]) -> Result<usize, Error> {
        self.with_task(stream.connection, |t| t.write(stream.stream, data))
    }

    /// Half-closes a stream (FIN).
    pub fn finish(&mut self, stream: StreamRef) -> Result<(), Error> {
        self.with_task(stream.connection, |t| t.finish(stream.stream))
    }

    /// Resets a stream.
    pub fn reset(&mut self, stream: StreamRef) -> Result<(), Error> {
        self.with_task(stream.connection, |t| t.reset(stream.stream))
    }

    // ---- connections ----

    /// Driver: bytes arrived on a connection. Bytes not consumed stay in `input`.
    pub fn handle_input(&mut self, now: Instant, connection: ConnectionId, input: &mut BytesMut) {
        let now = self.at(now);
        let Some(task) = self.tasks.get_mut(&connection) else {
            input.clear();
            return;
        };
        task.handle_input(now, input);
        self.touch(connection);
        self.route();
    }

    /// Driver: the socket reached end of file or failed.
    pub fn handle_closed(&mut self, now: Instant, connection: ConnectionId) {
        let now = self.at(now);
        if let Some(task) = self.tasks.get_mut(&connection) {
            task.handle_closed(now);
            self.touch(connection);
        }
        self.route();
    }

    /// Closes a connection gracefully.
    pub fn close_connection(&mut self, now: Instant, connection: ConnectionId) {
        let now = self.at(now);
        self.coordinator.close_connection(now, connection);
        self.route();
    }

    /// Marks `peer` as protected from connection trimming (or not).
    pub fn protect(&mut self, peer: PeerId, protected: bool) {
        self.coordinator.protect(peer, protected);
    }

    /// Appends bytes to send on `connection` to `out`; returns how many, `None` if nothing.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        out: &mut BytesMut,
    ) -> Option<usize> {
        let now = self.at(now);
        let task = self.tasks.get_mut(&connection)?;
        let n = task.poll_transmit(now, out);
        self.touch(connection);
        self.route();
        n
    }

    /// Connections with a socket: a simple driver calls [`poll_transmit`](Self::poll_transmit)
    /// for each after every input.
    pub fn connections_with_output(&self) -> impl Iterator<Item = ConnectionId> + '_ {
        self.tasks.keys().copied()
    }

    /// Driver: a deadline passed. Only the tasks whose deadline passed are called.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.at(now);
        if self.coordinator.poll_timeout().is_some_and(|t| t <= now) {
            self.coordinator.handle_timeout(now);
        }
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            self.deadline_of.remove(&id);
            if let Some(task) = self.tasks.get_mut(&id) {
                task.handle_timeout(now);
                self.touch(id);
                self.mark_output(id);
            }
        }
        self.route();
    }

    /// The earliest deadline of the coordinator and every task.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tasks = self.deadlines.first().map(|(t, _)| *t);
        [self.coordinator.poll_timeout(), tasks]
            .into_iter()
            .flatten()
            .min()
    }

    /// A connection that has new bytes to send because of something other than its own input
    /// (an application write, a built-in service, a timer): the driver calls
    /// [`poll_transmit`](Self::poll_transmit) for it. Each connection is listed at most once
    /// until drained.
    pub fn poll_wants_transmit(&mut self) -> Option<ConnectionId> {
        self.wants_transmit.pop()
    }

    /// The next command for the driver.
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// The next event (the coordinator's and every task's).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- queries ----

    /// What `peer` told us through identify, while connected.
    pub fn peer_info(&self, peer: PeerId) -> Option<&crate::identify::Info> {
        self.coordinator.peer_info(peer)
    }

    /// The peer of an established connection.
    pub fn connection_peer(&self, connection: ConnectionId) -> Option<PeerId> {
        self.coordinator.connection_peer(connection)
    }

    /// Established connections to `peer`.
    pub fn connections_to(&self, peer: PeerId) -> &[ConnectionId] {
        self.coordinator.connections_to(peer)
    }

    /// All connections, established or not.
    pub fn num_connections(&self) -> usize {
        self.coordinator.num_connections()
    }

    /// Established connections.
    pub fn num_established(&self) -> usize {
        self.coordinator.num_established()
    }

    /// Streams with state, over all connections.
    pub fn num_streams(&self) -> usize {
        self.tasks.values().map(ConnectionTask::num_streams).sum()
    }

    /// Bytes buffered by all connections (see [`ConnectionTask::buffered_bytes`]).
    pub fn buffered_bytes(&self) -> u64 {
        self.tasks
            .values()
            .map(ConnectionTask::buffered_bytes)
            .sum()
    }
}
