//! The sans-IO heart of a host, in two kinds of machines that share no state.
//!
//! - The [`Coordinator`] (one per host) owns what spans connections: listeners, the peers and
//!   their connections, the dial scheduler, the address book, the connection manager, which
//!   connection a stream request goes to, and what identify told us about each peer.
//! - A [`ConnectionTask`] (one per connection) owns everything of its connection: the upgrade,
//!   security, the muxer, every stream and its negotiation, and the built-in services on its
//!   streams (ping, identify).
//!
//! They talk only through typed messages, as quinn-proto's `Endpoint` and `Connection` do:
//! [`Coordinator::poll_connection_message`] yields a [`ToConnection`] for a connection, which
//! its owner hands to [`ConnectionTask::handle_coordinator_message`];
//! [`ConnectionTask::poll_coordinator_message`] yields a [`ToCoordinator`], handed to
//! [`Coordinator::handle_connection_message`]. A driver can therefore run every connection in
//! its own task, owning its machine outright, and touch the coordinator only for what spans
//! connections (a connection's start and end, stream requests, identify results).
//!
//! # The I/O contract
//!
//! | who | says | the driver does, then reports |
//! |---|---|---|
//! | coordinator | [`Command::Listen`] `{ listener, addr }` | bind; [`Coordinator::handle_listening`] or [`Coordinator::handle_listen_failed`] |
//! | coordinator | [`Command::Dial`] `{ connection, addr }` | connect; [`Coordinator::handle_connected`] (which returns the connection's task) or [`Coordinator::handle_dial_failed`] |
//! | coordinator | [`Command::CloseListener`] `{ listener }` | stop accepting |
//! | coordinator | [`Coordinator::poll_timeout`] | [`Coordinator::handle_timeout`] at that instant |
//! | task | [`ConnectionTask::poll_transmit`] | write the bytes to the socket |
//! | task | [`ConnectionTask::poll_timeout`] | [`ConnectionTask::handle_timeout`] at that instant |
//! | task | [`ConnectionTask::is_closed`] | flush what it transmitted, close the socket |
//!
//! and in between: an accepted socket → [`Coordinator::handle_incoming`] (which returns the
//! connection's task); bytes read → [`ConnectionTask::handle_input`]; end of file or error →
//! [`ConnectionTask::handle_closed`]. After each call into a task, drain its
//! [`poll_event`](ConnectionTask::poll_event) (stream events for the application) and its
//! [`poll_coordinator_message`](ConnectionTask::poll_coordinator_message); after each call
//! into the coordinator, drain [`Coordinator::poll_command`], [`Coordinator::poll_event`] and
//! [`Coordinator::poll_connection_message`].
//!
//! A single-threaded driver (a simulator, a small custom event loop) can use [`Swarm`]
//! instead: the coordinator and all tasks in one value that routes the messages itself.

mod coordinator;
mod limits;
mod local;
mod message;
mod services;
mod task;

use std::sync::Arc;

use libp2p_identity::{Keypair, PeerId};

use crate::connection;
use crate::dial::{self, DialError, TransportError};
use crate::multiaddr::Multiaddr;
use crate::multistream::{self, Protocol};
use crate::upgrade::{Security, UpgradeConfig};
use crate::yamux::{self, StreamId};

pub use coordinator::{ConnectionInfo, Coordinator};
pub use limits::{ConnManagerConfig, Limit, Limits};
pub use local::Swarm;
pub use message::{ToConnection, ToCoordinator};
pub use services::{AGENT_VERSION, PROTOCOL_VERSION};
pub use task::ConnectionTask;

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
    /// Flush what is left to send, then close the socket (only [`Swarm`] says this: a
    /// driver of separate tasks closes a socket when its task [`is_closed`](ConnectionTask::is_closed)).
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
        error: Option<TransportError>,
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
        error: Option<Error>,
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
        result: Result<std::time::Duration, Error>,
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
        error: Error,
    },
}

/// Why a swarm operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// We would dial ourselves (go-libp2p's `ErrDialToSelf`).
    #[error("dial to self attempted")]
    DialToSelf,
    /// Dialing the peer failed; the error lists every address and why.
    #[error(transparent)]
    Dial(Box<DialError>),
    /// Opening the socket failed, or the connection failed before it was established.
    #[error(transparent)]
    Transport(TransportError),
    /// The established connection failed.
    #[error("connection: {0}")]
    Connection(Arc<connection::Error>),
    /// The remote supports none of the protocols.
    #[error("protocol negotiation failed: {0}")]
    Negotiation(multistream::Error),
    /// A configured limit was hit.
    #[error("limit reached: {0}")]
    Limit(Limit),
    /// The remote reset the stream.
    #[error("stream reset by the remote")]
    StreamReset,
    /// The remote did not answer in time.
    #[error("timed out")]
    Timeout,
    /// The remote's ping answer was wrong.
    #[error("ping: {0}")]
    Ping(crate::ping::Error),
    /// The remote's identify message was malformed or did not match its identity.
    #[error("identify: {0}")]
    Identify(crate::identify::Error),
    /// No such connection or stream.
    #[error("unknown connection or stream")]
    Unknown,
    /// The connection closed before the request completed.
    #[error("connection closed")]
    Closed,
}

impl From<connection::Error> for Error {
    fn from(e: connection::Error) -> Self {
        match e {
            connection::Error::UnknownStream(_) => Self::Unknown,
            connection::Error::NotEstablished => Self::Closed,
            connection::Error::Negotiation(e) => Self::Negotiation(e),
            other => Self::Connection(Arc::new(other)),
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
