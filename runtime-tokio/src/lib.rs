//! Runs a Plait host on tokio.
//!
//! ```no_run
//! # async fn demo() -> Result<(), plait_tokio::Error> {
//! use plait_tokio::{Host, HostConfig};
//! let host = Host::new(plait_tokio::Tokio::current(), HostConfig::random())?;
//! let addr = host.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()).await?;
//! println!("listening on {addr}/p2p/{}", host.peer_id());
//! # Ok(()) }
//! ```
//!
//! Streams implement tokio's `AsyncRead` and `AsyncWrite`. Everything but the sockets, the
//! timers and spawning lives in `plait-core` and `plait-driver`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use plait_driver::{BoxFuture, Runtime};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

pub use plait_driver::{demo, plait_core, Error, HostConfig, HostEvent};

/// A host on tokio.
pub type Host = plait_driver::Host<Tokio>;
/// A stream of a [`Host`]; implements tokio's `AsyncRead` and `AsyncWrite`.
pub type Stream = plait_driver::Stream<Tokio>;
/// A subscription to a host's events.
pub type EventSubscription = plait_driver::EventSubscription<Tokio>;

/// The tokio [`Runtime`]: spawns on a runtime handle, uses tokio's TCP and timers.
#[derive(Clone, Debug)]
pub struct Tokio(tokio::runtime::Handle);

impl Tokio {
    /// The runtime the caller runs on.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn current() -> Self {
        Self(tokio::runtime::Handle::current())
    }

    /// A specific runtime.
    pub fn new(handle: tokio::runtime::Handle) -> Self {
        Self(handle)
    }
}

impl Runtime for Tokio {
    type Tcp = Compat<tokio::net::TcpStream>;
    type Listener = tokio::net::TcpListener;

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.0.spawn(task);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Self::Tcp>> {
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok(tcp.compat())
        })
    }

    fn bind(
        &self,
        addr: SocketAddr,
    ) -> BoxFuture<'static, io::Result<(Self::Listener, SocketAddr)>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let local = listener.local_addr()?;
            Ok((listener, local))
        })
    }

    fn accept(
        &self,
        listener: Arc<Self::Listener>,
    ) -> BoxFuture<'static, io::Result<(Self::Tcp, SocketAddr)>> {
        Box::pin(async move {
            let (tcp, remote) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            Ok((tcp.compat(), remote))
        })
    }

    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    }
}
