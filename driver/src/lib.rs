//! plait-driver: the one async driver of `plait-core`, generic over a small [`Runtime`]
//! trait.
//!
//! The runtime crates (`plait-tokio`, `plait-smol`, `plait-async-std`) implement [`Runtime`]
//! for their executor, sockets and timers and re-export [`Host`]; every protocol decision stays
//! in the core's [`Swarm`](plait_core::swarm::Swarm). A fourth runtime needs only another
//! implementation of [`Runtime`] (about 60 lines).
//!
//! Shape: the core's [`Coordinator`](plait_core::swarm::Coordinator) sits behind the host
//! lock, which only control operations take (dial, listen, `new_stream`'s routing, a
//! connection's start and end, events). Every connection is a task that owns its
//! [`ConnectionTask`](plait_core::swarm::ConnectionTask) machine and its socket outright: it
//! reads, decrypts, encrypts and writes with no lock held, runs the connection's timer, and
//! calls the stream handlers and matchers of its inbound streams (no lock held either). An
//! application [`Stream`] shares a small buffer state with its connection's task alone: a
//! read or write copies bytes under that stream's own lock and wakes the task. One timer task
//! serves the coordinator's deadlines (dial scheduling, connection trimming).

mod addr;
mod connection;
pub mod demo;
mod host;
mod io;
pub mod perf;
mod stream;

use std::future::Future;
use std::io as stdio;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

pub use addr::{multiaddr_to_socket, socket_to_multiaddr, Target};
pub use connection::MAX_UPGRADE_BUFFERED;
pub use host::{EventSubscription, Host, HostConfig, HostEvent};
pub use plait_core;
use plait_core::multiaddr::Multiaddr;
pub use stream::Stream;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a runtime provides: spawning, timers and TCP sockets.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A connected TCP socket.
    type Tcp: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static;
    /// A bound TCP listener.
    type Listener: Send + Sync + 'static;

    /// Runs `task` in the background.
    fn spawn(&self, task: BoxFuture<'static, ()>);
    /// Completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()>;
    /// Connects to `addr`.
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, stdio::Result<Self::Tcp>>;
    /// Binds a listener to `addr`; returns it with its bound address.
    fn bind(
        &self,
        addr: SocketAddr,
    ) -> BoxFuture<'static, stdio::Result<(Self::Listener, SocketAddr)>>;
    /// Accepts the next connection.
    fn accept(
        &self,
        listener: Arc<Self::Listener>,
    ) -> BoxFuture<'static, stdio::Result<(Self::Tcp, SocketAddr)>>;
    /// Resolves a host name.
    fn resolve(
        &self,
        host: String,
        port: u16,
    ) -> BoxFuture<'static, stdio::Result<Vec<SocketAddr>>>;
    /// The current time (overridable for tests).
    fn now(&self) -> Instant {
        Instant::now()
    }
    /// The wall clock, as time since the Unix epoch (TLS certificate validity).
    fn unix_time(&self) -> std::time::Duration {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// Why a host operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The swarm refused or failed the operation.
    #[error(transparent)]
    Swarm(#[from] plait_core::swarm::Error),
    /// The address names no peer (`/p2p/<peer id>`) where one is needed.
    #[error("{0} has no /p2p/<peer id>")]
    NoPeerId(Multiaddr),
    /// Reading or writing a stream failed.
    #[error("stream: {}", std::io::Error::from(*.0))]
    Stream(std::io::ErrorKind),
    /// A protocol id is not valid.
    #[error("invalid protocol id: {0}")]
    Protocol(#[from] plait_core::multistream::ProtocolError),
    /// Listening on an address failed.
    #[error("listening on {addr} failed: {error}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why (the OS error of `bind`, or why the address cannot be used).
        error: plait_core::dial::TransportError,
    },
    /// Dialing an address failed.
    #[error("dialing {addr} failed: {error}")]
    Dial {
        /// The address dialed.
        addr: Multiaddr,
        /// Why.
        error: plait_core::swarm::Error,
    },
    /// A perf run failed.
    #[error("perf run failed: {0}")]
    Perf(#[from] perf::RunError),
    /// The host configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A private key in the libp2p protobuf encoding could not be loaded (or saved: this
    /// build cannot encode RSA keys it did not load from that encoding).
    #[error("identity key: {0}")]
    Identity(#[source] Arc<plait_core::identity::DecodingError>),
    /// The host was shut down.
    #[error("host is closed")]
    Closed,
}
