//! Runs a Plait host on async-std.
//!
//! async-std is discontinued upstream (crates.io marks it deprecated in favour of smol,
//! RUSTSEC-2025-0052). Its sockets and timers are `async-io`'s, the same that `plait-smol`
//! uses, so this adapter is the async-io path with async-std's task spawner; new code should
//! use `plait-smol`. Streams implement the `futures` `AsyncRead` and `AsyncWrite` traits.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_std::net::ToSocketAddrs;
use plait_driver::{BoxFuture, Runtime};

pub use plait_driver::{demo, plait_core, Error, HostConfig, HostEvent};

/// A host on async-std.
pub type Host = plait_driver::Host<AsyncStd>;
/// A stream of a [`Host`].
pub type Stream = plait_driver::Stream<AsyncStd>;

/// The async-std [`Runtime`].
#[derive(Clone, Debug, Default)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    type Tcp = async_std::net::TcpStream;
    type Listener = async_std::net::TcpListener;

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        async_std::task::spawn(task);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            async_io::Timer::at(deadline).await;
        })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Self::Tcp>> {
        Box::pin(async move {
            let tcp = async_std::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok(tcp)
        })
    }

    fn bind(
        &self,
        addr: SocketAddr,
    ) -> BoxFuture<'static, io::Result<(Self::Listener, SocketAddr)>> {
        Box::pin(async move {
            let listener = async_std::net::TcpListener::bind(addr).await?;
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
        Box::pin(async move { Ok((host.as_str(), port).to_socket_addrs().await?.collect()) })
    }
}
