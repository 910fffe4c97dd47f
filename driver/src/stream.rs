//! An application stream: `AsyncRead` + `AsyncWrite` over one stream of a connection.
//!
//! A stream shares a small state with its connection's task (received chunks, bytes to send,
//! its end), locked only for the moment a read or write copies bytes: the yamux machine, the
//! crypto and the socket belong to the task alone, and no stream operation touches the host
//! or any other connection.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use futures_io::{AsyncRead, AsyncWrite};
use plait_core::identity::PeerId;
use plait_core::multistream::Protocol;
use plait_core::swarm::{ConnectionId, StreamRef};
use plait_core::yamux::StreamId;

use crate::connection::Mailbox;
use crate::Runtime;

/// Bytes a stream holds for its reader beyond what yamux buffers: the task reads from the
/// connection until this much waits (yamux's window then holds back the remote).
pub(crate) const RECV_BUFFER: usize = 256 * 1024;
/// Bytes a writer may queue before `poll_write` waits for the task to hand them to yamux.
pub(crate) const SEND_BUFFER: usize = 256 * 1024;

/// Why a stream cannot be used any more.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The remote reset it, or its connection ended.
    Reset,
    /// We reset it.
    LocalReset,
    /// Its connection could not open it (a stream handed out before it was opened). Boxed:
    /// every stream carries this state.
    Refused(Box<plait_core::swarm::Error>),
}

impl Failure {
    /// The I/O error of a read or write: `ConnectionReset`, with the refusal as its source.
    fn io_error(&self) -> io::Error {
        match self {
            Self::Refused(e) => io::Error::new(io::ErrorKind::ConnectionReset, (**e).clone()),
            _ => io::Error::new(io::ErrorKind::ConnectionReset, "stream reset"),
        }
    }
}

/// What a stream and its connection's task share.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// Received chunks not yet read, and their total length.
    pub(crate) recv: VecDeque<Bytes>,
    pub(crate) recv_len: usize,
    /// The remote finished: reads end once `recv` is empty.
    pub(crate) eof: bool,
    /// The task stopped reading from the connection because `recv` was full.
    pub(crate) recv_blocked: bool,
    /// Bytes written and not yet handed to the connection.
    pub(crate) send: BytesMut,
    /// The application closed its side: FIN after `send`.
    pub(crate) fin: bool,
    /// The application reset the stream.
    pub(crate) reset: bool,
    /// The handle was dropped: the task finishes the stream and discards what still arrives.
    pub(crate) dropped: bool,
    pub(crate) failed: Option<Failure>,
    /// Listed in the connection's mailbox for the task to look at.
    pub(crate) queued: bool,
    pub(crate) read_waker: Option<Waker>,
    pub(crate) write_waker: Option<Waker>,
}

impl StreamState {
    /// Bytes the stream holds (both directions).
    pub(crate) fn buffered(&self) -> usize {
        self.recv_len + self.send.len()
    }

    /// Wakes whoever waits on the stream.
    pub(crate) fn wake_all(&mut self) {
        for w in [self.read_waker.take(), self.write_waker.take()]
            .into_iter()
            .flatten()
        {
            w.wake();
        }
    }
}

/// The shared part of one stream.
#[derive(Debug)]
pub(crate) struct StreamShared {
    pub(crate) connection: ConnectionId,
    /// The stream's id, once its connection's task opened it (a stream handed out by
    /// `new_stream` before that buffers what is written meanwhile).
    stream: OnceLock<StreamId>,
    state: Mutex<StreamState>,
    mailbox: Arc<Mailbox>,
}

impl StreamShared {
    pub(crate) fn new(id: StreamRef, mailbox: Arc<Mailbox>) -> Arc<Self> {
        let shared = Self::opening(id.connection, mailbox);
        let _ = shared.stream.set(id.stream);
        shared
    }

    /// A stream its connection's task is still to open ([`StreamShared::opened`]).
    pub(crate) fn opening(connection: ConnectionId, mailbox: Arc<Mailbox>) -> Arc<Self> {
        Arc::new(Self {
            connection,
            stream: OnceLock::new(),
            state: Mutex::new(StreamState::default()),
            mailbox,
        })
    }

    /// The connection's task opened the stream as `id`.
    pub(crate) fn opened(&self, id: StreamId) {
        let _ = self.stream.set(id);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the connection's task to look at this stream (call with the state locked). A
    /// stream not opened yet is looked at when it is.
    fn notify(&self, state: &mut StreamState) {
        let Some(id) = self.stream.get() else {
            return;
        };
        if !state.queued {
            state.queued = true;
            self.mailbox.stream_changed(*id);
        }
    }
}

/// A negotiated stream to a peer. Reads end (`Ok(0)`) when the remote half-closes; `close`
/// half-closes our side (FIN); [`Stream::reset`] aborts both directions. Dropping a stream
/// closes our side if it was not closed and discards whatever the remote still sends until
/// its FIN, so the stream's state is freed once both sides are done.
pub struct Stream<R: Runtime> {
    shared: Arc<StreamShared>,
    runtime: R,
    peer: PeerId,
    protocol: Protocol,
    /// Received bytes not yet handed to the reader.
    pending: Bytes,
    write_closed: bool,
}

impl<R: Runtime> Stream<R> {
    pub(crate) fn new(
        shared: Arc<StreamShared>,
        runtime: R,
        peer: PeerId,
        protocol: Protocol,
    ) -> Self {
        Self {
            shared,
            runtime,
            peer,
            protocol,
            pending: Bytes::new(),
            write_closed: false,
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

    /// The connection carrying the stream.
    pub fn connection(&self) -> ConnectionId {
        self.shared.connection
    }

    /// The stream's id on its connection, once the connection's task opened it (a stream
    /// `new_stream` returns may be written to before that).
    pub fn stream_id(&self) -> Option<StreamId> {
        self.shared.stream.get().copied()
    }

    /// The runtime of the stream's host (for drivers of stream protocols, e.g. perf).
    pub(crate) fn runtime(&self) -> R {
        self.runtime.clone()
    }

    /// Aborts the stream in both directions.
    pub fn reset(self) {
        let mut state = self.shared.lock();
        if state.failed.is_none() {
            state.reset = true;
            state.failed = Some(Failure::LocalReset);
            self.shared.notify(&mut state);
        }
    }
}

// Nothing of a stream is pinned (the runtime handle is only cloned).
impl<R: Runtime> Unpin for Stream<R> {}

impl<R: Runtime> AsyncRead for Stream<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.is_empty() {
            let shared = self.shared.clone();
            let mut state = shared.lock();
            match state.recv.pop_front() {
                Some(chunk) => {
                    state.recv_len -= chunk.len();
                    if state.recv_blocked && state.recv_len < RECV_BUFFER / 2 {
                        // Room again: the task reads on (and yamux reopens the window).
                        state.recv_blocked = false;
                        shared.notify(&mut state);
                    }
                    drop(state);
                    self.pending = chunk;
                }
                None => {
                    if let Some(failure) = &state.failed {
                        return Poll::Ready(Err(failure.io_error()));
                    }
                    if state.eof {
                        return Poll::Ready(Ok(0));
                    }
                    state.read_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
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
        let mut state = self.shared.lock();
        if let Some(failure) = &state.failed {
            return Poll::Ready(Err(failure.io_error()));
        }
        if state.fin {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after close",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let room = SEND_BUFFER.saturating_sub(state.send.len());
        if room == 0 {
            state.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        state.send.extend_from_slice(&buf[..n]);
        self.shared.notify(&mut state);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_closed {
            return Poll::Ready(Ok(()));
        }
        self.write_closed = true;
        let mut state = self.shared.lock();
        if let Some(failure) = &state.failed {
            return Poll::Ready(Err(failure.io_error()));
        }
        state.fin = true;
        self.shared.notify(&mut state);
        Poll::Ready(Ok(()))
    }
}

impl<R: Runtime> Drop for Stream<R> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.read_waker = None;
        state.write_waker = None;
        if state.failed.is_none() {
            state.dropped = true;
            state.fin = true;
            self.shared.notify(&mut state);
        }
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
