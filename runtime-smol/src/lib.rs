//! Runs a Plait host on smol.
//!
//! Sockets and timers come from `async-io` (through `smol`), tasks run on smol's global
//! executor. Streams implement the `futures` `AsyncRead` and `AsyncWrite` traits.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use plait_driver::{BoxFuture, Runtime};

pub use plait_driver::{demo, plait_core, Error, HostConfig, HostEvent};

/// A host on smol.
pub type Host = plait_driver::Host<Smol>;
/// A stream of a [`Host`].
pub type Stream = plait_driver::Stream<Smol>;
/// A subscription to a host's events.
pub type EventSubscription = plait_driver::EventSubscription<Smol>;

/// The smol [`Runtime`].
#[derive(Clone, Debug, Default)]
pub struct Smol;

impl Runtime for Smol {
    type Tcp = smol::net::TcpStream;
    type Listener = smol::net::TcpListener;

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        smol::spawn(task).detach();
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            smol::Timer::at(deadline).await;
        })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Self::Tcp>> {
        Box::pin(async move {
            let tcp = smol::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok(tcp)
        })
    }

    fn bind(
        &self,
        addr: SocketAddr,
    ) -> BoxFuture<'static, io::Result<(Self::Listener, SocketAddr)>> {
        Box::pin(async move {
            let listener = smol::net::TcpListener::bind(addr).await?;
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
            Ok((tcp, remote))
        })
    }

    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { smol::net::resolve((host.as_str(), port)).await })
    }
}
