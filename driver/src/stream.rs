//! An application stream: `AsyncRead` + `AsyncWrite` over one yamux stream.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_io::{AsyncRead, AsyncWrite};
use plait_core::identity::PeerId;
use plait_core::multistream::Protocol;
use plait_core::swarm::StreamRef;

use crate::host::Shared;
use crate::Runtime;

/// The largest chunk taken from the core per read.
const READ_CHUNK: usize = 64 * 1024;

/// A negotiated stream to a peer. Reads end (`Ok(0)`) when the remote half-closes; `close`
/// half-closes our side (FIN); [`Stream::reset`] aborts both directions. Dropping a stream
/// closes our side if it was not closed and discards whatever the remote still sends until
/// its FIN, so the stream's state is freed once both sides are done.
pub struct Stream<R: Runtime> {
    shared: Arc<Shared<R>>,
    id: StreamRef,
    peer: PeerId,
    protocol: Protocol,
    /// Received bytes not yet handed to the reader.
    pending: Bytes,
    write_closed: bool,
    done: bool,
}

impl<R: Runtime> Stream<R> {
    pub(crate) fn new(
        shared: Arc<Shared<R>>,
        id: StreamRef,
        peer: PeerId,
        protocol: Protocol,
    ) -> Self {
        Self {
            shared,
            id,
            peer,
            protocol,
            pending: Bytes::new(),
            write_closed: false,
            done: false,
        }
    }

    /// The remote peer.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The negotiated protocol.
    pub fn protocol(&self) -> &Protocol {
        &self.protocol
    }

    /// The stream's identity within the host.
    pub fn id(&self) -> StreamRef {
        self.id
    }

    /// The runtime of the stream's host (for drivers of stream protocols, e.g. perf).
    pub(crate) fn runtime(&self) -> R {
        self.shared.lock().runtime.clone()
    }

    /// Aborts the stream in both directions.
    pub fn reset(mut self) {
        self.done = true;
        let mut inner = self.shared.lock();
        let _ = inner.swarm.reset(self.id);
        inner.wake_ready();
    }

    fn reset_error(&self) -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionReset, "stream reset")
    }
}

/// The I/O error for a failed stream operation: `ConnectionReset` when the stream or its
/// connection is gone (reset, closed, unknown), `BrokenPipe` for misuse of a live stream (a
/// write after `close`).
fn io_error(error: plait_core::swarm::Error) -> io::Error {
    use plait_core::swarm::Error as E;
    let kind = match error {
        E::Unknown | E::Closed | E::Connection(_) | E::Transport(_) => {
            io::ErrorKind::ConnectionReset
        }
        _ => io::ErrorKind::BrokenPipe,
    };
    io::Error::new(kind, error)
}

impl<R: Runtime> AsyncRead for Stream<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.is_empty() {
            let id = self.id;
            let shared = self.shared.clone();
            let mut inner = shared.lock();
            if inner.reset_streams.contains(&id) {
                return Poll::Ready(Err(self.reset_error()));
            }
            match inner.swarm.read(id, READ_CHUNK.max(buf.len())) {
                Ok(Some(chunk)) if chunk.is_empty() => {
                    inner.read_wakers.insert(id, cx.waker().clone());
                    return Poll::Pending;
                }
                Ok(Some(chunk)) => {
                    // Reading freed window: the connection may owe the peer an update.
                    inner.wake_ready();
                    drop(inner);
                    self.pending = chunk;
                }
                Ok(None) => return Poll::Ready(Ok(0)),
                Err(e) => return Poll::Ready(Err(io_error(e))),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Poll::Ready(Ok(n))
    }
}

impl<R: Runtime> AsyncWrite for Stream<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.shared.lock();
        if inner.reset_streams.contains(&self.id) {
            return Poll::Ready(Err(self.reset_error()));
        }
        match inner.swarm.write(self.id, buf) {
            Ok(0) if !buf.is_empty() => {
                inner.write_wakers.insert(self.id, cx.waker().clone());
                Poll::Pending
            }
            Ok(n) => {
                inner.wake_ready();
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(io_error(e))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.lock().wake_ready();
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_closed {
            return Poll::Ready(Ok(()));
        }
        self.write_closed = true;
        let mut inner = self.shared.lock();
        let result = inner.swarm.finish(self.id);
        inner.wake_ready();
        Poll::Ready(result.map_err(io_error))
    }
}

impl<R: Runtime> Drop for Stream<R> {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.read_wakers.remove(&self.id);
        inner.write_wakers.remove(&self.id);
        let was_reset = inner.reset_streams.remove(&self.id);
        // A stream dropped because its connection (or the host) is closing must not end
        // cleanly: no FIN, the remote sees the connection's end as an error.
        let closing = inner.shut_down || inner.closing.contains(&self.id.connection);
        if !self.done && !was_reset && !closing {
            if !self.write_closed {
                let _ = inner.swarm.finish(self.id);
            }
            // The core keeps a stream until its end is read: read it for the application.
            inner.drain_detached(self.id);
        }
        inner.wake_ready();
    }
}

#[cfg(feature = "tokio")]
impl<R: Runtime> tokio::io::AsyncRead for Stream<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = std::task::ready!(AsyncRead::poll_read(self, cx, buf.initialize_unfilled()))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(feature = "tokio")]
impl<R: Runtime> tokio::io::AsyncWrite for Stream<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(self, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(self, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_close(self, cx)
    }
}
