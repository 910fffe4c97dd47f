//! Runs a Plait host on async-std.
//!
//! async-std is discontinued upstream (crates.io marks it deprecated in favour of smol,
//! RUSTSEC-2025-0052). Its sockets and timers are `async-io`'s, so this adapter is a thin alias
//! of the async-io path of `plait-smol`: the same sockets, timers and resolver, with tasks
//! spawned on async-std's executor. New code should use `plait-smol`. Streams implement the
//! `futures` `AsyncRead` and `AsyncWrite` traits.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use plait_driver::{BoxFuture, Runtime};
use plait_smol::Smol;

pub use plait_driver::{demo, plait_core, Error, HostConfig, HostEvent};

/// A host on async-std.
pub type Host = plait_driver::Host<AsyncStd>;
/// A stream of a [`Host`].
pub type Stream = plait_driver::Stream<AsyncStd>;
/// A subscription to a host's events.
pub type EventSubscription = plait_driver::EventSubscription<AsyncStd>;

/// The async-std [`Runtime`]: async-std's task spawner over smol's async-io sockets.
#[derive(Clone, Debug, Default)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    type Tcp = <Smol as Runtime>::Tcp;
    type Listener = <Smol as Runtime>::Listener;

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        async_std::task::spawn(task);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Smol.sleep_until(deadline)
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'static, io::Result<Self::Tcp>> {
        Smol.connect(addr)
    }

    fn bind(
        &self,
        addr: SocketAddr,
    ) -> BoxFuture<'static, io::Result<(Self::Listener, SocketAddr)>> {
        Smol.bind(addr)
    }

    fn accept(
        &self,
        listener: Arc<Self::Listener>,
    ) -> BoxFuture<'static, io::Result<(Self::Tcp, SocketAddr)>> {
        Smol.accept(listener)
    }

    fn resolve(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        Smol.resolve(host, port)
    }
}
