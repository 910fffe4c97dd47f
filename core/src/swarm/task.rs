//! One connection's machine, as a host runs it: the [`Connection`] (upgrade, security, muxer,
//! streams and their negotiation) plus the built-in services on its streams (ping, identify)
//! and the stream requests the coordinator routed to it.
//!
//! A task owns all of that state; nothing of it is shared with the coordinator or with other
//! connections. Its owner feeds it bytes, instants and [`ToConnection`] messages, and takes
//! bytes, [`Event`]s (for the application: the connection's streams) and [`ToCoordinator`]
//! messages from it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use libp2p_identity::PeerId;

use super::services::{self, Outcome, Running, Service};
use super::{ConnectionId, Endpoint, Error, Event, StreamRef, StreamRequestId};
use super::{ToConnection, ToCoordinator};
use crate::connection::{self, Connection, ConnectionConfig};
use crate::multiaddr::Multiaddr;
use crate::multistream::Protocol;
use crate::time::Instant;
use crate::upgrade::Role;
use crate::yamux::{self, StreamId};

/// What a stream request asks for.
#[derive(Debug)]
enum Open {
    /// An application stream proposing these protocols.
    Stream(Vec<Protocol>),
    /// One ping on its own stream.
    Ping,
}

/// A connection's machine: see the [`swarm`](crate::swarm) module documentation.
pub struct ConnectionTask {
    id: ConnectionId,
    conn: Connection,
    /// The peer a dialed connection expects (known before the upgrade authenticates it).
    expected_peer: Option<PeerId>,
    endpoint: Endpoint,
    listen_addrs: Arc<[Multiaddr]>,
    /// Built-in protocols (ping, identify) running on streams.
    services: HashMap<StreamId, Running>,
    /// Streams whose built-in service ended but that still exist: their late events are not
    /// the application's business.
    retired: HashSet<StreamId>,
    /// Our pings' streams, with the request each answers.
    pings: HashMap<StreamId, StreamRequestId>,
    /// Outbound streams proposing several protocols, until the remote agrees on one.
    requests: HashMap<StreamId, StreamRequestId>,
    /// Requests waiting for the upgrade, or for the peer to acknowledge our streams.
    pending: VecDeque<(StreamRequestId, Open)>,
    events: VecDeque<Event>,
    messages: VecDeque<ToCoordinator>,
    /// The stream count and upgrade progress last told to the coordinator.
    reported_streams: usize,
    reported_progress: u8,
    /// The `Closed` message was queued: the task is finished.
    finished: bool,
    now: Instant,
}

impl ConnectionTask {
    /// A task for connection `id` (made by the [`Coordinator`](super::Coordinator)).
    pub(super) fn new(
        id: ConnectionId,
        config: Arc<ConnectionConfig>,
        role: Role,
        expected_peer: Option<PeerId>,
        endpoint: Endpoint,
        listen_addrs: Arc<[Multiaddr]>,
        now: Instant,
    ) -> Result<Self, connection::Error> {
        Ok(Self {
            id,
            conn: Connection::new(config, role, expected_peer, now)?,
            expected_peer,
            endpoint,
            listen_addrs,
            services: HashMap::new(),
            retired: HashSet::new(),
            pings: HashMap::new(),
            requests: HashMap::new(),
            pending: VecDeque::new(),
            events: VecDeque::new(),
            messages: VecDeque::new(),
            reported_streams: 0,
            reported_progress: 0,
            finished: false,
            now,
        })
    }

    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// The authenticated remote peer, once known.
    pub fn peer(&self) -> Option<PeerId> {
        self.conn.remote_peer()
    }

    /// How the connection came about.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether the upgrade finished and the connection is open.
    pub fn is_established(&self) -> bool {
        self.conn.is_established()
    }

    /// Whether the connection has ended: flush what [`poll_transmit`](Self::poll_transmit)
    /// gave, then close the socket.
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    fn sref(&self, stream: StreamId) -> StreamRef {
        StreamRef {
            connection: self.id,
            stream,
        }
    }

    fn tick(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    // ---- socket side ----

    /// Bytes arrived on the socket. Bytes not consumed stay in `input`.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut) {
        self.tick(now);
        self.conn.handle_input(now, input);
        self.process();
    }

    /// Appends bytes to send to `out`; returns how many, `None` if nothing.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut BytesMut) -> Option<usize> {
        self.tick(now);
        let n = self.conn.poll_transmit(now, out);
        self.process();
        n
    }

    /// The socket reached end of file or failed.
    pub fn handle_closed(&mut self, now: Instant) {
        self.tick(now);
        self.conn.handle_closed();
        self.process();
    }

    /// A deadline passed (spurious calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        if self.conn.poll_timeout().is_some_and(|t| t <= now) {
            self.conn.handle_timeout(now);
        }
        let due: Vec<StreamId> = self
            .services
            .iter()
            .filter(|(_, s)| s.service.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for stream in due {
            self.drive_service(stream);
        }
        self.process();
    }

    /// The earliest deadline of the connection and its services (always after the `now` of
    /// the last [`handle_timeout`](Self::handle_timeout): what was due then was handled).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let services = self
            .services
            .values()
            .filter_map(|r| r.service.poll_timeout());
        self.conn.poll_timeout().into_iter().chain(services).min()
    }

    /// Closes the connection gracefully (yamux Go Away once established).
    pub fn close(&mut self, now: Instant) {
        self.tick(now);
        self.conn.close(now);
        self.process();
    }

    // ---- coordinator side ----

    /// Carries out a message of the coordinator.
    pub fn handle_coordinator_message(&mut self, now: Instant, message: ToConnection) {
        self.tick(now);
        match message {
            ToConnection::OpenStream { request, protocols } => {
                self.pending.push_back((request, Open::Stream(protocols)));
            }
            ToConnection::Ping { request } => self.pending.push_back((request, Open::Ping)),
            ToConnection::Close => self.conn.close(now),
            ToConnection::Protocols(protocols) => self.conn.set_protocols(protocols),
            ToConnection::ListenAddrs(addrs) => self.listen_addrs = addrs,
        }
        self.process();
    }

    /// The next message for the coordinator.
    pub fn poll_coordinator_message(&mut self) -> Option<ToCoordinator> {
        self.process();
        if !self.finished {
            if self.conn.is_established() {
                // The coordinator uses the count to choose among a peer's connections and to
                // trim: a count within a quarter of the truth serves as well, and a connection
                // whose streams come and go does not report every one.
                let streams = self.conn.num_streams();
                let step = (self.reported_streams / 4).max(1);
                let changed = streams.abs_diff(self.reported_streams) >= step
                    || (streams == 0) != (self.reported_streams == 0);
                if changed && streams != self.reported_streams {
                    self.reported_streams = streams;
                    return Some(ToCoordinator::Streams(streams));
                }
            } else {
                let progress = self.conn.upgrade_progress();
                if progress > self.reported_progress {
                    self.reported_progress = progress;
                    return Some(ToCoordinator::UpgradeProgress(progress));
                }
            }
        }
        self.messages.pop_front()
    }

    // ---- application side ----

    /// The next event for the application: its streams' openings, data and ends, answers to
    /// its pings. Events of the built-in services are handled here and never come out.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.process();
        self.events.pop_front()
    }

    /// Reads up to `max` bytes; `Ok(None)` is the end of the stream, an empty chunk means
    /// nothing is buffered (wait for [`Event::Readable`]).
    pub fn read(&mut self, stream: StreamId, max: usize) -> Result<Option<Bytes>, Error> {
        Ok(self.conn.read(stream, max)?)
    }

    /// Writes to a stream; returns how many bytes were taken (0: wait for
    /// [`Event::Writable`]).
    pub fn write(&mut self, stream: StreamId, data: &[u8]) -> Result<usize, Error> {
        Ok(self.conn.write(stream, data)?)
    }

    /// Like [`write`](Self::write), without a copy: the accepted prefix of `data` is queued as
    /// it is (see [`send_capacity`](Self::send_capacity)).
    pub fn write_bytes(&mut self, stream: StreamId, data: Bytes) -> Result<usize, Error> {
        Ok(self.conn.write_bytes(stream, data)?)
    }

    /// How many bytes a write to `stream` would take now.
    pub fn send_capacity(&mut self, stream: StreamId) -> usize {
        self.conn.send_capacity(stream)
    }

    /// Half-closes a stream (FIN).
    pub fn finish(&mut self, stream: StreamId) -> Result<(), Error> {
        self.conn.finish(stream)?;
        Ok(())
    }

    /// Resets a stream.
    pub fn reset(&mut self, stream: StreamId) -> Result<(), Error> {
        self.requests.remove(&stream);
        self.conn.reset(stream)?;
        self.process();
        Ok(())
    }

    /// Answers an [`Event::ProtocolQuery`]: whether `stream` may use the protocol its remote
    /// proposed. A refused remote may propose another.
    pub fn answer_protocol_query(&mut self, stream: StreamId, accept: bool) -> Result<(), Error> {
        let result = self.conn.answer_protocol_query(stream, accept);
        self.process();
        Ok(result?)
    }

    /// Gives back the memory of queues that are empty (an idle connection then holds none);
    /// for a driver to call when the connection goes idle.
    pub fn release_idle_memory(&mut self) {
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
        if self.messages.is_empty() {
            self.messages = VecDeque::new();
        }
        if self.pending.is_empty() {
            self.pending = VecDeque::new();
        }
        // A connection's first streams (identify, pings) come and go: keep no room for them.
        if self.services.is_empty() {
            self.services = HashMap::new();
        }
        if self.pings.is_empty() {
            self.pings = HashMap::new();
        }
        if self.requests.is_empty() {
            self.requests = HashMap::new();
        }
        self.retired.shrink_to_fit();
        self.conn.release_idle_memory();
    }

    /// Whether the connection still has state for `stream`.
    pub fn has_stream(&self, stream: StreamId) -> bool {
        self.conn.has_stream(stream)
    }

    /// Streams with state.
    pub fn num_streams(&self) -> usize {
        self.conn.num_streams()
    }

    /// Bytes this connection buffers (see [`Connection::buffered_bytes`]), its services'
    /// unconsumed input included.
    pub fn buffered_bytes(&self) -> u64 {
        let services: usize = self.services.values().map(Running::pending).sum();
        self.conn.buffered_bytes() + services as u64
    }

    // ---- internals ----

    /// Handles what the connection reported and starts what waits for it.
    fn process(&mut self) {
        if self.finished {
            return;
        }
        while let Some(event) = self.conn.poll_event() {
            self.handle_connection_event(event);
            if self.finished {
                return;
            }
        }
        if self.conn.is_established() {
            self.start_pending();
            // Starting requests writes proposals: their events (a refusal) come next time.
        }
    }

    fn handle_connection_event(&mut self, event: connection::Event) {
        let peer = self.conn.remote_peer();
        match event {
            connection::Event::Established { peer } => {
                tracing::debug!(%peer, connection = ?self.id, "connected");
                self.messages.push_back(ToCoordinator::Established { peer });
                // The application's requests first: they are what someone waits for.
                self.start_pending();
                self.start_identify(peer);
            }
            connection::Event::InboundStream { id, protocol } => {
                if protocol.as_str() == crate::ping::PROTOCOL {
                    self.start_service(id, Service::ping_responder(self.now));
                } else if protocol.as_str() == crate::identify::PROTOCOL {
                    self.answer_identify(id);
                } else if protocol.as_str() == crate::identify::PUSH_PROTOCOL {
                    if let Some(peer) = peer {
                        self.start_service(id, Service::identify_push(self.now, peer));
                    }
                } else if let Some(peer) = peer {
                    let stream = self.sref(id);
                    self.events.push_back(Event::InboundStream {
                        peer,
                        stream,
                        protocol,
                    });
                }
            }
            connection::Event::ProtocolQuery { id, protocol } => {
                if let Some(peer) = peer {
                    let stream = self.sref(id);
                    self.events.push_back(Event::ProtocolQuery {
                        peer,
                        stream,
                        protocol,
                    });
                }
            }
            connection::Event::OutboundStreamAgreed { id, protocol } => {
                if let Some(request) = self.requests.remove(&id) {
                    let stream = self.sref(id);
                    self.events.push_back(Event::StreamOpened {
                        request,
                        stream,
                        protocol,
                    });
                }
            }
            connection::Event::StreamNegotiationFailed { id, error } => {
                if let Some(request) = self.requests.remove(&id) {
                    self.events.push_back(Event::StreamOpenFailed {
                        request,
                        error: Error::Negotiation(error),
                    });
                } else if self.services.contains_key(&id) {
                    self.end_service(id, Error::Negotiation(error));
                } else {
                    let stream = self.sref(id);
                    self.events.push_back(Event::StreamReset(stream));
                }
            }
            connection::Event::Readable(id) | connection::Event::Writable(id)
                if self.retired.contains(&id) =>
            {
                self.drain(id)
            }
            connection::Event::Readable(id) | connection::Event::Writable(id)
                if self.services.contains_key(&id) =>
            {
                self.drive_service(id)
            }
            connection::Event::Readable(id) => {
                let stream = self.sref(id);
                self.events.push_back(Event::Readable(stream));
            }
            connection::Event::Writable(id) => {
                let stream = self.sref(id);
                self.events.push_back(Event::Writable(stream));
            }
            connection::Event::StreamReset(id) => {
                if self.retired.remove(&id) {
                    return;
                }
                if self.services.contains_key(&id) {
                    self.end_service(id, Error::StreamReset);
                    return;
                }
                self.requests.remove(&id);
                let stream = self.sref(id);
                self.events.push_back(Event::StreamReset(stream));
            }
            connection::Event::Closed { error } => self.finish_task(error),
        }
    }

    /// The connection ended: every request still open fails, and the coordinator hears last.
    fn finish_task(&mut self, error: Option<connection::Error>) {
        let error = error.map(Arc::new);
        let failure = || match &error {
            Some(e) => Error::Connection(e.clone()),
            None => Error::Closed,
        };
        let mut requests: Vec<StreamRequestId> = self.requests.drain().map(|(_, r)| r).collect();
        requests.sort();
        for request in requests {
            self.events.push_back(Event::StreamOpenFailed {
                request,
                error: failure(),
            });
        }
        let mut pings: Vec<StreamRequestId> = self.pings.drain().map(|(_, r)| r).collect();
        pings.sort();
        let peer = self.conn.remote_peer();
        for request in pings {
            if let Some(peer) = peer {
                self.events.push_back(Event::PingResult {
                    request,
                    peer,
                    result: Err(failure()),
                });
            }
        }
        for (request, open) in std::mem::take(&mut self.pending) {
            self.fail_request(request, open, failure());
        }
        self.services.clear();
        self.retired.clear();
        self.messages.push_back(ToCoordinator::Closed { error });
        self.finished = true;
    }

    fn fail_request(&mut self, request: StreamRequestId, open: Open, error: Error) {
        match (open, self.conn.remote_peer().or(self.expected_peer)) {
            (Open::Ping, Some(peer)) => self.events.push_back(Event::PingResult {
                request,
                peer,
                result: Err(error),
            }),
            _ => self
                .events
                .push_back(Event::StreamOpenFailed { request, error }),
        }
    }

    /// Opens the streams that waited for the upgrade or for acknowledgements.
    fn start_pending(&mut self) {
        while let Some((request, open)) = self.pending.pop_front() {
            let protocols = match &open {
                Open::Stream(protocols) => protocols.clone(),
                Open::Ping => vec![Protocol::from_static(crate::ping::PROTOCOL)],
            };
            match self.conn.open_stream(self.now, protocols) {
                Ok(stream) => self.opened(request, open, stream),
                // go-yamux's `OpenStream` waits for the peer's acknowledgements: so do we.
                Err(connection::Error::Yamux(yamux::Error::AckBacklogFull)) => {
                    self.pending.push_front((request, open));
                    return;
                }
                Err(e) => self.fail_request(request, open, e.into()),
            }
        }
    }

    fn opened(&mut self, request: StreamRequestId, open: Open, stream: StreamId) {
        match open {
            Open::Ping => {
                self.pings.insert(stream, request);
                self.start_service(stream, Service::ping(self.now, request.0));
            }
            Open::Stream(_) => match self.conn.stream_protocol(stream) {
                // Lazy: usable at once; a later rejection resets the stream.
                Some(protocol) => {
                    let stream = self.sref(stream);
                    self.events.push_back(Event::StreamOpened {
                        request,
                        stream,
                        protocol,
                    });
                }
                // Several candidates: answered when the remote agrees.
                None => {
                    self.requests.insert(stream, request);
                }
            },
        }
    }

    /// Asks the remote about itself on a new `/ipfs/id/1.0.0` stream.
    fn start_identify(&mut self, peer: PeerId) {
        let protocols = vec![Protocol::from_static(crate::identify::PROTOCOL)];
        match self.conn.open_stream(self.now, protocols) {
            Ok(stream) => self.start_service(stream, Service::identify(self.now, peer)),
            Err(e) => self
                .messages
                .push_back(ToCoordinator::IdentifyFailed(e.into())),
        }
    }

    fn start_service(&mut self, stream: StreamId, service: Service) {
        self.services.insert(stream, Running::new(service));
        self.drive_service(stream);
    }

    /// A service's stream failed: report what the service was for.
    fn end_service(&mut self, stream: StreamId, error: Error) {
        let Some(running) = self.services.remove(&stream) else {
            return;
        };
        match running.service {
            Service::Ping(_) => {
                if let (Some(request), Some(peer)) =
                    (self.pings.remove(&stream), self.conn.remote_peer())
                {
                    self.events.push_back(Event::PingResult {
                        request,
                        peer,
                        result: Err(error),
                    });
                }
            }
            Service::Identify { .. } => self
                .messages
                .push_back(ToCoordinator::IdentifyFailed(error)),
            Service::PingResponder(_) | Service::Drain { .. } => {}
        }
    }

    /// Moves a built-in service forward with what its stream has received.
    fn drive_service(&mut self, stream: StreamId) {
        let now = self.now;
        let Some(service) = self.services.get_mut(&stream) else {
            return;
        };
        let mut input = BytesMut::new();
        let mut eof = false;
        while input.len() < service.room() {
            match self.conn.read(stream, service.room() - input.len()) {
                Ok(Some(chunk)) if chunk.is_empty() => break,
                Ok(Some(chunk)) => input.extend_from_slice(&chunk),
                Ok(None) | Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        let step = service.drive(now, &input, eof);
        if !step.output.is_empty() {
            let _ = self.conn.write(stream, &step.output);
        }
        let Some(outcome) = step.outcome else {
            return;
        };
        self.services.remove(&stream);
        self.retired.insert(stream);
        if let Outcome::Abandoned = outcome {
            let _ = self.conn.reset(stream);
            return;
        }
        let _ = self.conn.finish(stream);
        self.drain(stream);
        let Some(peer) = self.conn.remote_peer() else {
            return;
        };
        match outcome {
            Outcome::Done | Outcome::Abandoned => {}
            Outcome::Ping(result) => {
                if let Some(request) = self.pings.remove(&stream) {
                    self.events.push_back(Event::PingResult {
                        request,
                        peer,
                        result,
                    });
                }
            }
            Outcome::Identify(Ok(info)) => {
                self.messages.push_back(ToCoordinator::Identified(info));
            }
            Outcome::Identify(Err(error)) => {
                self.messages
                    .push_back(ToCoordinator::IdentifyFailed(error));
            }
            Outcome::IdentifyPush(info) => {
                self.messages.push_back(ToCoordinator::IdentifyPushed(info));
            }
        }
    }

    /// Reads a retired stream (its service ended and half-closed it) until the remote's end,
    /// which releases it; data instead of the end resets it. Entries are pruned once the
    /// connection forgot the stream.
    fn drain(&mut self, stream: StreamId) {
        if let Ok(Some(chunk)) = self.conn.read(stream, 1) {
            if !chunk.is_empty() {
                let _ = self.conn.reset(stream);
            }
        }
        if self.retired.len() > 64 {
            let conn = &self.conn;
            self.retired.retain(|s| conn.has_stream(*s));
        }
    }

    /// Writes our identify message on an inbound `/ipfs/id/1.0.0` stream and finishes it.
    fn answer_identify(&mut self, stream: StreamId) {
        let protocols = self
            .conn
            .protocols()
            .protocols()
            .iter()
            .map(|p| p.to_string())
            .collect();
        let observed = match &self.endpoint {
            Endpoint::Dialer { addr } => addr.clone(),
            Endpoint::Listener { remote, .. } => remote.clone(),
        };
        let info = services::local_info(
            self.conn.local_public_key(),
            self.listen_addrs.to_vec(),
            protocols,
            Some(observed),
        );
        let mut out = BytesMut::new();
        if crate::identify::encode(&info, &mut out).is_ok() {
            let _ = self.conn.write(stream, &out);
        }
        let _ = self.conn.finish(stream);
        // The stream is gone only once the requester's end is read too.
        self.start_service(stream, Service::drain(self.now));
    }
}
