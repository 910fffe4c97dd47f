//! One connection, from its first raw byte to negotiated streams.
//!
//! A [`Connection`] runs the [`Upgrade`], then a yamux
//! [`Session`] inside the secure channel, and multistream-select on
//! every stream: outbound streams propose their protocols (lazily when there is one, so the
//! first data rides with the proposal), inbound streams are matched against the host's
//! [`ProtocolSet`] and surface as [`Event::InboundStream`] only once a protocol is agreed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use libp2p_identity::PeerId;

use crate::multistream::{
    self, Dialer, DialerMode, DialerStatus, Listener, ListenerConfig, ListenerStatus, Protocol,
    ProtocolSet,
};
use crate::time::Instant;
use crate::upgrade::{self, Channel, Remote, Role, Upgrade, UpgradeConfig, UpgradeStatus};
use crate::yamux::{self, Session, StreamId};

/// How many bytes a stream may buffer while its protocol is being negotiated. Negotiation
/// messages are at most 1 KiB; a peer that sends more before agreeing is misbehaving.
pub const MAX_NEGOTIATION_BUFFER: usize = 4096;

/// How many bytes [`Connection::poll_transmit`] appends per call at most (before encryption
/// overhead): large enough that a bulk sender makes few socket writes and wake-ups (512 KiB
/// measured 7 % faster than 256 KiB, 64 KiB 17 % slower, single-stream benchmark), small enough
/// to interleave connections. A connection holds this buffer only while it has bytes to send.
pub const TRANSMIT_BUDGET: usize = 512 * 1024;
/// How long a connection whose peer violated the yamux protocol waits for its Go Away to be
/// sent before it ends anyway: a peer that stops reading must not keep it forever (go-yamux
/// gives the Go Away a short write deadline too).
pub const GO_AWAY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Settings of a connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// The upgrade (identity, security, timeout).
    pub upgrade: UpgradeConfig,
    /// The yamux session settings.
    pub yamux: yamux::Config,
    /// The protocols inbound streams may negotiate.
    pub protocols: Arc<ProtocolSet>,
    /// Inbound streams still negotiating, at most; more are reset at once.
    pub max_negotiating_inbound_streams: usize,
    /// How long an inbound stream may negotiate before it is reset.
    pub inbound_negotiation_timeout: std::time::Duration,
}

/// Something that happened on a connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The upgrade finished: the peer is authenticated and streams can be opened.
    Established {
        /// The authenticated peer.
        peer: PeerId,
    },
    /// The remote opened a stream and a protocol was agreed on it.
    InboundStream {
        /// The stream.
        id: StreamId,
        /// The agreed protocol.
        protocol: Protocol,
    },
    /// The remote proposed, on an inbound stream, a protocol that is not an exact id of the
    /// connection's [`ProtocolSet`], whose owner decides on other ids: answer with
    /// [`Connection::answer_protocol_query`]. The stream waits (reading nothing more) until then.
    ProtocolQuery {
        /// The stream.
        id: StreamId,
        /// The proposed protocol.
        protocol: Protocol,
    },
    /// An outbound stream's protocol was confirmed by the remote.
    OutboundStreamAgreed {
        /// The stream.
        id: StreamId,
        /// The agreed protocol.
        protocol: Protocol,
    },
    /// Negotiating a stream's protocol failed; the stream was reset.
    StreamNegotiationFailed {
        /// The stream.
        id: StreamId,
        /// Why.
        error: multistream::Error,
    },
    /// A stream has data (or its end) to read.
    Readable(StreamId),
    /// A stream can take more data.
    Writable(StreamId),
    /// The remote reset a stream.
    StreamReset(StreamId),
    /// The connection ended; `error` says why when it was not a clean close.
    Closed {
        /// The failure, if any.
        error: Option<Error>,
    },
}

/// Why a connection or a stream operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The upgrade failed.
    #[error(transparent)]
    Upgrade(#[from] upgrade::Error),
    /// The muxer failed.
    #[error("yamux: {0}")]
    Yamux(#[from] yamux::Error),
    /// Negotiating the muxer or a stream protocol failed.
    #[error("negotiation: {0}")]
    Negotiation(#[from] multistream::Error),
    /// The connection is not established (yet, or any more).
    #[error("connection is not established")]
    NotEstablished,
    /// No such stream.
    #[error("unknown stream {0:?}")]
    UnknownStream(StreamId),
    /// The stream's protocol is not agreed yet; wait for its event.
    #[error("stream {0:?} is still negotiating")]
    Negotiating(StreamId),
}

/// Per-stream protocol negotiation state.
enum Negotiation {
    Outbound(Dialer),
    Inbound(Listener),
    Done,
}

struct StreamState {
    negotiation: Negotiation,
    /// Bytes read from the stream during negotiation; what is left after it belongs to the
    /// application and is served before anything else.
    buffer: BytesMut,
    /// The end of the stream was read during negotiation: reads end after `buffer`.
    eof: bool,
    /// A [`Event::ProtocolQuery`] was reported and not answered yet.
    asked: bool,
}

impl StreamState {
    fn new(negotiation: Negotiation) -> Self {
        Self {
            negotiation,
            buffer: BytesMut::new(),
            eof: false,
            asked: false,
        }
    }

    /// An inbound stream still agreeing on its protocol.
    fn negotiating_inbound(&self) -> bool {
        matches!(self.negotiation, Negotiation::Inbound(_))
    }

    /// Negotiated, with data or the end read during negotiation still to hand out: kept
    /// even once the session has forgotten the stream.
    fn has_pending_read(&self) -> bool {
        matches!(self.negotiation, Negotiation::Done) && (self.eof || !self.buffer.is_empty())
    }
}

/// The established part of a connection.
struct Live {
    channel: Channel,
    remote: Remote,
    plain_in: BytesMut,
    raw_out: BytesMut,
    pending_muxer: Option<Dialer>,
    session: Session,
    streams: HashMap<StreamId, StreamState>,
    /// Inbound streams negotiating their protocol, with their deadlines, oldest first (the
    /// timeout is the same for all, so also earliest deadline first). Entries whose stream has
    /// finished negotiating are dropped before each insertion and at their deadline.
    negotiating: VecDeque<(Instant, StreamId)>,
}

enum State {
    Upgrading(Box<Upgrade>),
    Live(Box<Live>),
    Closed,
}

/// A connection machine: bytes from the socket in, bytes to the socket and events out.
pub struct Connection {
    role: Role,
    config: Arc<ConnectionConfig>,
    state: State,
    events: VecDeque<Event>,
    /// A session error reported before the session's `Closed` event.
    pending_error: Option<Error>,
    /// After a protocol violation: when to give up sending Go Away.
    terminate_by: Option<Instant>,
    /// The latest instant passed in (for deadlines set while handling events).
    now: Instant,
}

impl Connection {
    /// A connection we dialed (expecting `peer` if known) or accepted.
    pub fn new(
        config: Arc<ConnectionConfig>,
        role: Role,
        expected_peer: Option<PeerId>,
        now: Instant,
    ) -> Result<Self, Error> {
        let upgrade = Upgrade::new(&config.upgrade, role, expected_peer, now)?;
        Ok(Self {
            role,
            config,
            state: State::Upgrading(Box::new(upgrade)),
            events: VecDeque::new(),
            pending_error: None,
            terminate_by: None,
            now,
        })
    }

    /// The authenticated remote peer, once known.
    pub fn remote_peer(&self) -> Option<PeerId> {
        match &self.state {
            State::Upgrading(u) => u.remote().map(|r| r.peer),
            State::Live(l) => Some(l.remote.peer),
            State::Closed => None,
        }
    }

    /// Whether streams can be opened.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Live(_))
    }

    /// How far the upgrade got (see [`Upgrade::progress`]); 3 once established.
    pub fn upgrade_progress(&self) -> u8 {
        match &self.state {
            State::Upgrading(u) => u.progress(),
            State::Live(_) => 3,
            State::Closed => 0,
        }
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Inbound streams negotiate `protocols` from now on (streams already negotiating keep
    /// the set they started with).
    pub fn set_protocols(&mut self, protocols: Arc<ProtocolSet>) {
        let mut config = (*self.config).clone();
        config.protocols = protocols;
        self.config = Arc::new(config);
    }

    /// Our identity's public key.
    pub fn local_public_key(&self) -> libp2p_identity::PublicKey {
        self.config.upgrade.keypair.public()
    }

    /// The protocols inbound streams negotiate.
    pub fn protocols(&self) -> &Arc<ProtocolSet> {
        &self.config.protocols
    }

    /// Our role on this connection.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Feeds bytes received from the socket. Bytes not consumed stay in `input`.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut) {
        if let Err(error) = self.try_input(now, input) {
            self.fail(error);
        }
    }

    fn try_input(&mut self, now: Instant, input: &mut BytesMut) -> Result<(), Error> {
        self.now = self.now.max(now);
        if let State::Upgrading(upgrade) = &mut self.state {
            let status = upgrade.handle_input(now, input, &self.config.upgrade)?;
            if status == UpgradeStatus::Done || upgrade.is_usable() {
                self.establish(now);
            }
        }
        let State::Live(live) = &mut self.state else {
            return Ok(());
        };
        // One frame at a time: yamux consumes each frame's plaintext before the next arrives,
        // so `plain_in` is usually empty and frames are taken over without a copy.
        // Plaintext left over from the upgrade is fed even when no new frame is complete.
        let mut feed = !live.plain_in.is_empty();
        let mut violated = false;
        loop {
            feed |= live.channel.decrypt_one(input, &mut live.plain_in)?;
            if !std::mem::take(&mut feed) {
                break;
            }
            violated |= live.feed_muxer(now)?;
        }
        self.after_input(now, violated);
        Ok(())
    }

    /// After input: a yamux violation starts the Go Away timeout; session events are handled.
    fn after_input(&mut self, now: Instant, violated: bool) {
        if violated {
            self.terminate_by.get_or_insert(now + GO_AWAY_TIMEOUT);
        }
        self.process_session_events();
    }

    /// Turns a usable upgrade into a live yamux session.
    fn establish(&mut self, now: Instant) {
        let State::Upgrading(upgrade) = std::mem::replace(&mut self.state, State::Closed) else {
            return;
        };
        let Some(parts) = upgrade.into_parts() else {
            return;
        };
        let mode = match self.role {
            Role::Dialer => yamux::Mode::Client,
            Role::Listener => yamux::Mode::Server,
        };
        let peer = parts.remote.peer;
        self.state = State::Live(Box::new(Live {
            channel: parts.channel,
            remote: parts.remote,
            plain_in: parts.plain_in,
            raw_out: parts.raw_out,
            pending_muxer: parts.pending_muxer,
            session: Session::new(mode, self.config.yamux.clone(), now),
            streams: HashMap::new(),
            negotiating: VecDeque::new(),
        }));
        self.events.push_back(Event::Established { peer });
    }

    /// Handles the session's events: negotiates new streams, forwards the rest.
    fn process_session_events(&mut self) {
        let State::Live(live) = &mut self.state else {
            return;
        };
        while let Some(event) = live.session.poll_event() {
            match event {
                yamux::Event::InboundStream(id) => {
                    let streams = &live.streams;
                    live.negotiating.retain(|(_, s)| {
                        streams.get(s).is_some_and(StreamState::negotiating_inbound)
                    });
                    if live.negotiating.len() >= self.config.max_negotiating_inbound_streams {
                        tracing::debug!(?id, "too many inbound streams negotiating: reset");
                        if let Some(s) = live.session.stream(id) {
                            let _ = s.reset();
                        }
                        continue;
                    }
                    let deadline = self.now + self.config.inbound_negotiation_timeout;
                    live.negotiating.push_back((deadline, id));
                    let listener =
                        Listener::new(self.config.protocols.clone(), ListenerConfig::default());
                    live.streams
                        .insert(id, StreamState::new(Negotiation::Inbound(listener)));
                    if let Some(mut s) = live.session.stream(id) {
                        let _ = s.accept();
                    }
                    negotiate(live, id, &mut self.events);
                }
                // The remote's end is read like data: the application's next read returns it.
                yamux::Event::Readable(id) | yamux::Event::StreamFinished(id) => {
                    let done = live
                        .streams
                        .get(&id)
                        .is_some_and(|s| matches!(s.negotiation, Negotiation::Done));
                    if done {
                        self.events.push_back(Event::Readable(id));
                    } else {
                        negotiate(live, id, &mut self.events);
                    }
                }
                yamux::Event::Writable(id) => {
                    if live.streams.contains_key(&id) {
                        self.events.push_back(Event::Writable(id));
                    }
                }
                yamux::Event::StreamReset(id) => {
                    if let Some(state) = live.streams.remove(&id) {
                        if matches!(state.negotiation, Negotiation::Done) {
                            self.events.push_back(Event::StreamReset(id));
                        } else if let Negotiation::Outbound(_) = state.negotiation {
                            self.events.push_back(Event::StreamNegotiationFailed {
                                id,
                                error: multistream::Error::NotSupported,
                            });
                        }
                    }
                }

                yamux::Event::InboundRejected { id, reason } => {
                    tracing::debug!(?id, %reason, "inbound stream refused");
                }
                yamux::Event::Error(error) => {
                    tracing::debug!(%error, "yamux session failed");
                    self.pending_error = Some(error.into());
                }
                yamux::Event::Closed => {
                    let error = self.pending_error.take();
                    self.state = State::Closed;
                    self.events.push_back(Event::Closed { error });
                    return;
                }
                yamux::Event::GoAwayReceived(code) => {
                    tracing::debug!(code, "remote sent Go Away");
                }
            }
        }
        // After the events: a reset stream is gone from the session, and pruning it first
        // would swallow its StreamReset.
        live.prune();
    }

    /// Opens a stream proposing `protocols` in order. With one protocol the stream is
    /// writable at once (lazy negotiation); otherwise wait for
    /// [`Event::OutboundStreamAgreed`].
    pub fn open_stream(
        &mut self,
        now: Instant,
        protocols: Vec<Protocol>,
    ) -> Result<StreamId, Error> {
        let State::Live(live) = &mut self.state else {
            return Err(Error::NotEstablished);
        };
        let mut dialer = Dialer::new(protocols, DialerMode::Lazy)?;
        let id = live.session.open_stream(now)?;
        let mut proposal = BytesMut::new();
        dialer.poll_transmit(&mut proposal);
        if let Some(mut stream) = live.session.stream(id) {
            stream.write_bytes(proposal.freeze())?;
        }
        live.streams
            .insert(id, StreamState::new(Negotiation::Outbound(dialer)));
        Ok(id)
    }

    /// The protocol a stream may use now: agreed, or optimistically proposed.
    pub fn stream_protocol(&self, id: StreamId) -> Option<Protocol> {
        let State::Live(live) = &self.state else {
            return None;
        };
        match &live.streams.get(&id)?.negotiation {
            Negotiation::Outbound(d) => d.optimistic_protocol().cloned(),
            Negotiation::Inbound(l) => l.agreed().cloned(),
            Negotiation::Done => None,
        }
    }

    /// Reads up to `max` bytes from a stream. `Ok(None)` is the end of the stream (the
    /// remote finished); `Ok(Some(empty))` means nothing is buffered: wait for
    /// [`Event::Readable`].
    pub fn read(&mut self, id: StreamId, max: usize) -> Result<Option<Bytes>, Error> {
        let live = self.live()?;
        let state = live.streams.get_mut(&id).ok_or(Error::UnknownStream(id))?;
        if !matches!(state.negotiation, Negotiation::Done) {
            return Ok(Some(Bytes::new()));
        }
        if !state.buffer.is_empty() {
            let n = state.buffer.len().min(max);
            return Ok(Some(state.buffer.split_to(n).freeze()));
        }
        if state.eof {
            state.eof = false;
            live.prune();
            return Ok(None);
        }
        let mut stream = live.session.stream(id).ok_or(Error::UnknownStream(id))?;
        match stream.read(max) {
            Err(yamux::Error::Blocked) => Ok(Some(Bytes::new())),
            Ok(None) => {
                if live.session.stream(id).is_none() {
                    live.streams.remove(&id);
                }
                live.prune();
                Ok(None)
            }
            other => Ok(other?),
        }
    }

    /// Writes to a stream; returns how many bytes were accepted (0: wait for
    /// [`Event::Writable`]).
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, Error> {
        Ok(self.writable_stream(id)?.write(data)?)
    }

    /// Like [`Connection::write`], without copying: the accepted prefix of `data` is queued
    /// as it is (the rest is not taken; see [`Connection::send_capacity`]).
    pub fn write_bytes(&mut self, id: StreamId, data: Bytes) -> Result<usize, Error> {
        Ok(self.writable_stream(id)?.write_bytes(data)?)
    }

    /// How many bytes a write to stream `id` would accept now (0 while it negotiates or its
    /// send buffer is full, or if there is no such stream). After 0 from a full buffer, the
    /// stream reports [`Event::Writable`] once it has room.
    pub fn send_capacity(&mut self, id: StreamId) -> usize {
        self.writable_stream(id)
            .map_or(0, |mut s| s.send_capacity())
    }

    /// The yamux stream `id`, if the application may write to it.
    fn writable_stream(&mut self, id: StreamId) -> Result<yamux::StreamMut<'_>, Error> {
        let live = self.live()?;
        let state = live.streams.get(&id).ok_or(Error::UnknownStream(id))?;
        let ready = match &state.negotiation {
            Negotiation::Outbound(d) => d.optimistic_protocol().is_some(),
            Negotiation::Inbound(_) => false,
            Negotiation::Done => true,
        };
        if !ready {
            return Err(Error::Negotiating(id));
        }
        live.session.stream(id).ok_or(Error::UnknownStream(id))
    }

    /// Half-closes a stream: we send no more (FIN).
    pub fn finish(&mut self, id: StreamId) -> Result<(), Error> {
        let live = self.live()?;
        let Some(mut stream) = live.session.stream(id) else {
            // Already closed both ways, its end not read yet (see `StreamState::eof`).
            return match live.streams.remove(&id) {
                Some(_) => Ok(()),
                None => Err(Error::UnknownStream(id)),
            };
        };
        stream.finish()?;
        live.prune();
        Ok(())
    }

    /// Resets a stream in both directions.
    pub fn reset(&mut self, id: StreamId) -> Result<(), Error> {
        let live = self.live()?;
        let known = live.streams.remove(&id).is_some();
        let Some(stream) = live.session.stream(id) else {
            // Already closed both ways (see `StreamState::eof`): nothing to send.
            return if known {
                Ok(())
            } else {
                Err(Error::UnknownStream(id))
            };
        };
        Ok(stream.reset()?)
    }

    /// Answers the [`Event::ProtocolQuery`] of inbound stream `id`: agree on the proposed
    /// protocol, or refuse it (`na`; the remote may propose another). A stream whose remote
    /// has been refused too often is reset.
    pub fn answer_protocol_query(&mut self, id: StreamId, accept: bool) -> Result<(), Error> {
        let State::Live(live) = &mut self.state else {
            return Err(Error::NotEstablished);
        };
        let state = live.streams.get_mut(&id).ok_or(Error::UnknownStream(id))?;
        let Negotiation::Inbound(listener) = &mut state.negotiation else {
            return Err(multistream::Error::NoQuery.into());
        };
        let answered = listener.answer(accept);
        state.asked = false;
        match answered {
            Ok(()) => negotiate(live, id, &mut self.events),
            Err(multistream::Error::NoQuery) => return Err(multistream::Error::NoQuery.into()),
            Err(error) => {
                tracing::debug!(?id, %error, "inbound stream negotiation failed");
                live.streams.remove(&id);
                if let Some(stream) = live.session.stream(id) {
                    let _ = stream.reset();
                }
            }
        }
        self.process_session_events();
        Ok(())
    }

    fn live(&mut self) -> Result<&mut Live, Error> {
        match &mut self.state {
            State::Live(live) => Ok(live),
            _ => Err(Error::NotEstablished),
        }
    }

    /// Appends bytes for the socket to `out` (at most about [`TRANSMIT_BUDGET`] per call);
    /// returns how many, or `None` if there are none.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut BytesMut) -> Option<usize> {
        let start = out.len();
        let result = match &mut self.state {
            State::Upgrading(upgrade) => {
                upgrade.poll_transmit(out);
                Ok(0)
            }
            State::Closed => Ok(0),
            State::Live(live) => {
                out.extend_from_slice(&live.raw_out);
                live.raw_out.clear();
                live.channel.poll_transmit(out);
                let session = &mut live.session;
                let mut fills = 0;
                let mut first_full = false;
                live.channel.encrypt_with(out, TRANSMIT_BUDGET, |buf, max| {
                    fills += 1;
                    if fills == 2 && first_full {
                        // A batch (the first frame came full): room for all of it at once,
                        // as growing `buf` frame by frame would copy the frames already laid
                        // out in it again. Small transmits allocate only what they use.
                        buf.reserve(TRANSMIT_BUDGET + 2 * 64 * 1024);
                    }
                    let n = session.poll_transmit(now, buf, max).unwrap_or(0);
                    first_full |= fills == 1 && n == max;
                    n
                })
            }
        };
        self.process_session_events();
        if let Err(e) = result {
            self.fail(e.into());
        }
        (out.len() > start).then(|| out.len() - start)
    }

    /// Handles a timer expiry (spurious calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::Upgrading(upgrade) => {
                if let Err(e) = upgrade.check_deadline(now) {
                    self.fail(e.into());
                }
            }
            State::Live(live) => {
                self.now = self.now.max(now);
                // Inbound streams that did not negotiate in time are reset.
                while let Some(&(deadline, id)) = live.negotiating.front() {
                    if deadline > now {
                        break;
                    }
                    live.negotiating.pop_front();
                    if live
                        .streams
                        .get(&id)
                        .is_some_and(StreamState::negotiating_inbound)
                    {
                        tracing::debug!(?id, "inbound stream negotiation timed out: reset");
                        live.streams.remove(&id);
                        if let Some(s) = live.session.stream(id) {
                            let _ = s.reset();
                        }
                    }
                }
                live.session.handle_timeout(now);
                self.process_session_events();
                if self.terminate_by.is_some_and(|t| now >= t) && !self.is_closed() {
                    let error = self.pending_error.take();
                    self.state = State::Closed;
                    self.events.push_back(Event::Closed { error });
                }
            }
            State::Closed => {}
        }
    }

    /// The earliest deadline of the connection.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Upgrading(upgrade) => upgrade.poll_timeout(),
            State::Live(live) => [
                live.session.poll_timeout(),
                self.terminate_by,
                live.negotiating.front().map(|(deadline, _)| *deadline),
            ]
            .into_iter()
            .flatten()
            .min(),
            State::Closed => None,
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Closes gracefully (yamux GoAway); the driver closes the socket once
    /// [`poll_transmit`](Self::poll_transmit) has nothing more.
    pub fn close(&mut self, now: Instant) {
        if let State::Live(live) = &mut self.state {
            live.session.close(now);
        } else {
            self.state = State::Closed;
            self.events.push_back(Event::Closed { error: None });
        }
    }

    /// The socket reached end of file or failed: the connection is gone.
    pub fn handle_closed(&mut self) {
        if !self.is_closed() {
            self.state = State::Closed;
            self.events.push_back(Event::Closed { error: None });
        }
    }

    fn fail(&mut self, error: Error) {
        tracing::debug!(%error, "connection failed");
        self.state = State::Closed;
        self.events.push_back(Event::Closed { error: Some(error) });
    }

    /// Bytes this connection buffers: while upgrading, the upgrade's pending output and
    /// decrypted input (at most [`upgrade::MAX_BUFFERED`]); once established, decrypted input
    /// not yet parsed, encrypted output not yet handed out, yamux receive and send buffers and
    /// stream negotiation buffers. A memory metric.
    pub fn buffered_bytes(&self) -> u64 {
        match &self.state {
            State::Upgrading(upgrade) => upgrade.buffered_bytes() as u64,
            State::Live(live) => {
                let negotiation: usize = live.streams.values().map(|s| s.buffer.len()).sum();
                (live.plain_in.len() + live.raw_out.len() + negotiation) as u64
                    + live.session.recv_buffered()
                    + live.session.send_buffered()
            }
            State::Closed => 0,
        }
    }

    /// Gives back the memory of queues that are empty (see
    /// [`ConnectionTask::release_idle_memory`](crate::swarm::ConnectionTask::release_idle_memory)).
    pub fn release_idle_memory(&mut self) {
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
        if let State::Live(live) = &mut self.state {
            if live.negotiating.is_empty() {
                live.negotiating = VecDeque::new();
            }
            if live.streams.is_empty() {
                live.streams = HashMap::new();
            }
            live.channel.release_idle_memory();
        }
    }

    /// Whether the connection still has state for stream `id`.
    pub fn has_stream(&self, id: StreamId) -> bool {
        match &self.state {
            State::Live(live) => live.streams.contains_key(&id),
            _ => false,
        }
    }

    /// Number of streams with state on this connection.
    pub fn num_streams(&self) -> usize {
        match &self.state {
            State::Live(live) => live.streams.len(),
            _ => 0,
        }
    }
}

impl Live {
    /// Feeds `plain_in` to the muxer negotiation still in progress, then to yamux. Returns
    /// whether yamux saw a protocol violation (not fatal: the session queues Go Away, spec:
    /// "send Go Away(1) once, then close", and reports `Closed` once it went out).
    fn feed_muxer(&mut self, now: Instant) -> Result<bool, Error> {
        if let Some(dialer) = &mut self.pending_muxer {
            if let DialerStatus::InProgress = dialer.handle_input(&mut self.plain_in)? {
                return Ok(false);
            }
            self.pending_muxer = None;
        }
        let violated = self.session.handle_input(now, &mut self.plain_in);
        if self.plain_in.is_empty() {
            // An empty view still pins the receive buffer it was split from.
            self.plain_in = BytesMut::new();
        }
        if let Err(error) = violated {
            tracing::debug!(%error, "yamux protocol violation");
            return Ok(true);
        }
        Ok(false)
    }

    /// Forgets streams the session no longer has (both directions closed), unless data or the
    /// end read during negotiation is still to be handed out. Cheap when
    /// nothing ended: the session's count is compared first.
    fn prune(&mut self) {
        if self.streams.len() > self.session.num_streams() {
            let session = &mut self.session;
            self.streams
                .retain(|id, s| s.has_pending_read() || session.stream(*id).is_some());
        }
    }
}

/// Moves a negotiating stream forward with whatever it has received.
fn negotiate(live: &mut Live, id: StreamId, events: &mut VecDeque<Event>) {
    let Some(state) = live.streams.get_mut(&id) else {
        return;
    };
    let Some(mut stream) = live.session.stream(id) else {
        return;
    };
    let mut eof = false;
    while state.buffer.len() < MAX_NEGOTIATION_BUFFER {
        match stream.read(MAX_NEGOTIATION_BUFFER - state.buffer.len()) {
            Ok(Some(chunk)) => state.buffer.extend_from_slice(&chunk),
            Err(yamux::Error::Blocked) => break,
            Ok(None) | Err(_) => {
                eof = true;
                break;
            }
        }
    }
    state.eof |= eof;
    // What negotiation answers (an echo, `na`, the next proposal after `na`) goes out on the
    // stream before anything else.
    let mut reply = BytesMut::new();
    let mut query = None;
    let outcome = match &mut state.negotiation {
        Negotiation::Outbound(dialer) => {
            let status = dialer.handle_input(&mut state.buffer);
            dialer.poll_transmit(&mut reply);
            status.map(|s| match s {
                DialerStatus::Agreed(protocol) => Some((protocol, false)),
                DialerStatus::InProgress => None,
            })
        }
        Negotiation::Inbound(listener) => {
            let status = listener.handle_input(&mut state.buffer);
            listener.poll_transmit(&mut reply);
            status.map(|s| match s {
                ListenerStatus::Agreed(protocol) => Some((protocol, true)),
                ListenerStatus::InProgress => None,
                ListenerStatus::Query(protocol) => {
                    query = Some(protocol);
                    None
                }
            })
        }
        Negotiation::Done => return,
    };
    if !reply.is_empty() {
        let _ = stream.write_bytes(reply.freeze());
    }
    if let Some(protocol) = query {
        // Waiting for the owner's answer, however much more the remote sent.
        if !std::mem::replace(&mut state.asked, true) {
            events.push_back(Event::ProtocolQuery { id, protocol });
        }
        return;
    }
    match outcome {
        Ok(Some((protocol, inbound))) => {
            state.negotiation = Negotiation::Done;
            state.eof = eof;
            let pending = !state.buffer.is_empty() || eof;
            events.push_back(if inbound {
                Event::InboundStream { id, protocol }
            } else {
                Event::OutboundStreamAgreed { id, protocol }
            });
            if pending {
                events.push_back(Event::Readable(id));
            }
        }
        Ok(None) if eof || state.buffer.len() >= MAX_NEGOTIATION_BUFFER => {
            let outbound = matches!(state.negotiation, Negotiation::Outbound(_));
            live.streams.remove(&id);
            let _ = stream.reset();
            if outbound {
                events.push_back(Event::StreamNegotiationFailed {
                    id,
                    error: multistream::Error::NotSupported,
                });
            }
        }
        Ok(None) => {}
        Err(error) => {
            let outbound = matches!(state.negotiation, Negotiation::Outbound(_));
            live.streams.remove(&id);
            let _ = stream.reset();
            if outbound {
                events.push_back(Event::StreamNegotiationFailed { id, error });
            }
        }
    }
}
