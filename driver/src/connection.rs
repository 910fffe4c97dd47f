//! One task per connection: it owns the connection's machine ([`ConnectionTask`]), its
//! socket and its streams' shared states, and nothing else.
//!
//! The task reads the socket into the machine, encrypts and writes what the machine
//! transmits, runs the connection's timer, moves bytes between the machine and its streams,
//! and runs the stream handlers and protocol matchers of its inbound streams. It takes the
//! host lock only to exchange messages with the coordinator (the connection's start and end,
//! stream counts, identify results) and to hand opened streams and ping results to the calls
//! waiting for them: never on the data path, and never around user code or crypto.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_io::{AsyncRead, AsyncWrite};
use plait_core::swarm::{
    ConnectionId, ConnectionTask, Error as SwarmError, Event, StreamRequestId, ToConnection,
    ToCoordinator,
};
use plait_core::yamux::StreamId;

use crate::host::{find_handler, Handler, Shared};
use crate::stream::{Failure, Stream, StreamShared, RECV_BUFFER, SEND_BUFFER};
use crate::{BoxFuture, Error, Runtime};

/// Bytes read from a socket per read call.
const READ_CHUNK: usize = 64 * 1024;
/// The task stops reading while this many received bytes wait to be consumed (the core
/// consumes everything within its windows, so this is only reached by a peer sending beyond
/// them).
const MAX_UNCONSUMED_INPUT: usize = 1024 * 1024;
/// While a connection is upgrading the task stops reading at this many unconsumed bytes: an
/// honest peer never has more than one handshake message (at most 64 KiB) waiting, and the
/// upgrade leaves input unconsumed only while it waits for the peer to read its answers
/// (`plait_core::upgrade::MAX_PENDING_OUTPUT`).
const MAX_UPGRADE_INPUT: usize = 128 * 1024;
/// The most a connection holds while it upgrades, counted in [`Host::buffered_bytes`]: the
/// task's unconsumed input (128 KiB, plus one read at most), the upgrade's own buffers, and
/// one batch of its output waiting for the socket.
///
/// [`Host::buffered_bytes`]: crate::Host::buffered_bytes
pub const MAX_UPGRADE_BUFFERED: usize =
    MAX_UPGRADE_INPUT + READ_CHUNK + 2 * plait_core::upgrade::MAX_BUFFERED;
/// How long a closing connection may take to flush its last bytes before the socket is closed
/// anyway: a peer that stops reading must not keep a socket (and its buffers) forever.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Reads and writes per wake-up before the task yields, so one busy connection cannot starve
/// the others on the same executor thread (quinn's work limiter).
const WORK_PER_WAKE: usize = 32;

thread_local! {
    /// Where connection tasks on this thread read their sockets into (one per thread rather
    /// than one per connection: idle connections hold no read buffer).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_CHUNK]);
}

/// What a connection's task, its streams and the host share: the coordinator's messages for
/// the task, the streams the application touched, and the connection's byte count.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    inner: Mutex<MailboxInner>,
    /// Bytes the connection buffers: its machine's, its socket buffers', its streams'.
    pub(crate) buffered: AtomicUsize,
    /// Streams the connection's machine has, as of the task's last round.
    pub(crate) streams: AtomicUsize,
}

#[derive(Debug, Default)]
struct MailboxInner {
    messages: VecDeque<ToConnection>,
    changed: Vec<StreamId>,
    /// Streams `new_stream` handed out before the task opened them, by request.
    opening: HashMap<StreamRequestId, Arc<StreamShared>>,
    /// The task has ended: messages are refused.
    closed: bool,
    waker: Option<Waker>,
}

impl Mailbox {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MailboxInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a message of the coordinator; gives it back if the task has ended.
    pub(crate) fn post(&self, message: ToConnection) -> Result<(), ToConnection> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(message);
        }
        inner.messages.push_back(message);
        let waker = inner.waker.take();
        drop(inner);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// A stream handed out before the task opens it for `request`; given back if the task
    /// has ended.
    pub(crate) fn add_opening(
        &self,
        request: StreamRequestId,
        stream: Arc<StreamShared>,
    ) -> Result<(), Arc<StreamShared>> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(stream);
        }
        inner.opening.insert(request, stream);
        Ok(())
    }

    fn take_opening(&self, request: StreamRequestId) -> Option<Arc<StreamShared>> {
        let mut inner = self.lock();
        let stream = inner.opening.remove(&request);
        // A burst of opens leaves no table behind on an idle connection.
        if inner.opening.is_empty() && inner.opening.capacity() > 16 {
            inner.opening = HashMap::new();
        }
        stream
    }

    /// The application read, wrote, closed, reset or dropped stream `id`.
    pub(crate) fn stream_changed(&self, id: StreamId) {
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        inner.changed.push(id);
        let waker = inner.waker.take();
        drop(inner);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Takes what arrived, registering the task's waker for what comes next.
    fn take(&self, waker: &Waker) -> (VecDeque<ToConnection>, Vec<StreamId>) {
        let mut inner = self.lock();
        if !inner.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            inner.waker = Some(waker.clone());
        }
        (
            std::mem::take(&mut inner.messages),
            std::mem::take(&mut inner.changed),
        )
    }

    /// The task ends: refuses further messages and returns those it did not take; streams
    /// it was still to open fail.
    pub(crate) fn close(&self) -> VecDeque<ToConnection> {
        let mut inner = self.lock();
        inner.closed = true;
        inner.waker = None;
        inner.changed.clear();
        let opening = std::mem::take(&mut inner.opening);
        let messages = std::mem::take(&mut inner.messages);
        drop(inner);
        for shared in opening.into_values() {
            fail_stream(&shared, Failure::Refused(Box::new(SwarmError::Closed)));
        }
        messages
    }
}

/// Something for the calls waiting in the host.
pub(crate) enum Completion<R: Runtime> {
    Stream(StreamRequestId, Result<Stream<R>, Error>),
    Ping(StreamRequestId, Result<Duration, Error>),
}

/// A stream of this connection as its task sees it.
struct Local {
    shared: Arc<StreamShared>,
    /// Our FIN was handed to the machine.
    fin_sent: bool,
    /// The stream's buffered bytes as last counted in the mailbox.
    counted: usize,
}

/// The task's state besides the socket.
struct Driver<R: Runtime> {
    host: Arc<Shared<R>>,
    rt: R,
    id: ConnectionId,
    task: ConnectionTask,
    mailbox: Arc<Mailbox>,
    streams: HashMap<StreamId, Local>,
    /// The coordinator (or the host's shutdown) asked the connection to close.
    closing: bool,
    /// The machine's and socket buffers' bytes last counted in the mailbox.
    machine_bytes: usize,
    to_coordinator: Vec<ToCoordinator>,
    completions: Vec<Completion<R>>,
    /// Handlers to call, with their streams, once this round's bookkeeping is done.
    calls: Vec<(Option<Handler<R>>, Stream<R>)>,
    /// The `Closed` message went to the coordinator.
    reported_closed: bool,
}

pub(crate) fn spawn<R: Runtime>(
    host: Arc<Shared<R>>,
    rt: &R,
    task: ConnectionTask,
    mailbox: Arc<Mailbox>,
    tcp: R::Tcp,
) {
    let driver = Driver {
        host,
        rt: rt.clone(),
        id: task.id(),
        task,
        mailbox,
        streams: HashMap::new(),
        closing: false,
        machine_bytes: 0,
        to_coordinator: Vec::new(),
        completions: Vec::new(),
        calls: Vec::new(),
        reported_closed: false,
    };
    rt.spawn(Box::pin(run(driver, tcp)));
}

/// Moves bytes between the socket and the machine until the connection ends.
async fn run<R: Runtime>(mut d: Driver<R>, mut tcp: R::Tcp) {
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    let mut read_open = true;
    let mut linger: Option<BoxFuture<'static, ()>> = None;
    let mut timer: Option<(Instant, BoxFuture<'static, ()>)> = None;
    let sockets = SocketCount::new(&d.host);
    poll_fn(|cx| {
        let mut work = 0;
        loop {
            let mut progress = false;
            let now = d.rt.now();
            // What the coordinator and the application asked for.
            let (messages, changed) = d.mailbox.take(cx.waker());
            for message in messages {
                d.closing |= matches!(message, ToConnection::Close);
                d.task.handle_coordinator_message(now, message);
            }
            for id in changed {
                d.sync(id);
            }
            // Read.
            let upgrading = !d.task.is_established();
            let max_input = if upgrading {
                MAX_UPGRADE_INPUT
            } else {
                MAX_UNCONSUMED_INPUT
            };
            if read_open && input.len() < max_input {
                // Read into this thread's scratch buffer and copy what arrived: no 64 KiB
                // zero-fill per read, and no buffer kept by an idle connection.
                let read = SCRATCH.with_borrow_mut(|scratch| {
                    let r = Pin::new(&mut tcp).poll_read(cx, scratch);
                    if let Poll::Ready(Ok(n)) = r {
                        // Frames split off `input` keep its buffer shared, so growing it
                        // allocates anew and copies the partial frame left in it: when reads
                        // come full (bulk), grow by several at once.
                        if input.capacity() - input.len() < n {
                            let room = if n == READ_CHUNK { 4 * READ_CHUNK } else { n };
                            input.reserve(room);
                        }
                        input.extend_from_slice(&scratch[..n]);
                    }
                    r
                });
                match read {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        read_open = false;
                        d.task.handle_closed(now);
                    }
                    Poll::Ready(Ok(_)) => {
                        d.task.handle_input(now, &mut input);
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }
            // Time.
            if d.task.poll_timeout().is_some_and(|t| t <= now) {
                d.task.handle_timeout(now);
            }
            // Streams opened for the application take what it wrote meanwhile, so their
            // first data leaves with their proposal.
            d.process_events();
            // Write.
            if output.is_empty() {
                if !d.task.is_established() && !input.is_empty() {
                    // An upgrade leaves input unconsumed while its answers wait for the peer
                    // to read them: they were just sent, so it may read on.
                    d.task.handle_input(now, &mut input);
                }
                d.task.poll_transmit(now, &mut output);
            }
            while !output.is_empty() {
                match Pin::new(&mut tcp).poll_write(cx, &output) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        output.clear();
                        read_open = false;
                        d.task.handle_closed(now);
                        break;
                    }
                    Poll::Ready(Ok(n)) => {
                        let _ = output.split_to(n);
                        progress = true;
                    }
                    Poll::Pending => break,
                }
            }
            // What the machine has to say, to the streams, the host and the handlers.
            d.process_events();
            d.exchange();
            d.run_handlers();
            d.report(input.len() + output.len());
            let ended = d.task.is_closed() || !read_open;
            if ended && !output.is_empty() {
                let t = linger.get_or_insert_with(|| d.rt.sleep_until(d.rt.now() + CLOSE_LINGER));
                if t.as_mut().poll(cx).is_ready() {
                    tracing::debug!(id = ?d.id, unsent = output.len(), "peer does not read; closing");
                    output.clear();
                }
            }
            if ended && output.is_empty() {
                let _ = Pin::new(&mut tcp).poll_close(cx);
                d.finish();
                return Poll::Ready(());
            }
            if !progress {
                // Going idle: give back buffers that hold nothing.
                if input.is_empty() && input.capacity() > 0 {
                    input = BytesMut::new();
                }
                if output.is_empty() && output.capacity() > 0 {
                    output = BytesMut::new();
                }
                d.task.release_idle_memory();
                // Sleep until the machine's next deadline (or a wake-up).
                match d.task.poll_timeout() {
                    Some(deadline) => {
                        if timer.as_ref().is_none_or(|(at, _)| *at != deadline) {
                            timer = Some((deadline, d.rt.sleep_until(deadline)));
                        }
                        if let Some((_, t)) = timer.as_mut() {
                            if t.as_mut().poll(cx).is_ready() {
                                timer = None;
                                continue;
                            }
                        }
                    }
                    None => timer = None,
                }
                return Poll::Pending;
            }
            work += 1;
            if work >= WORK_PER_WAKE {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    })
    .await;
    drop(sockets);
}

impl<R: Runtime> Driver<R> {
    /// Moves bytes between stream `id`'s shared state and the machine, and carries out what
    /// the application asked of it.
    fn sync(&mut self, id: StreamId) {
        let Some(local) = self.streams.get_mut(&id) else {
            return;
        };
        let shared = local.shared.clone();
        let mut st = shared.lock();
        st.queued = false;
        let gone;
        if st.reset {
            let _ = self.task.reset(id);
            st.recv.clear();
            st.recv_len = 0;
            st.send.clear();
            gone = true;
        } else if st.failed.is_some() || (st.dropped && self.closing) {
            // A stream dropped while its connection closes ends with it: no FIN, the remote
            // sees the connection's end.
            gone = true;
        } else {
            // Hand written bytes to the machine, as far as its window and buffer take them.
            let mut sent = false;
            while !st.send.is_empty() {
                let room = self.task.send_capacity(id);
                if room == 0 {
                    break;
                }
                let n = room.min(st.send.len());
                let chunk = st.send.split_to(n).freeze();
                if self.task.write_bytes(id, chunk).is_err() {
                    st.failed = Some(Failure::Reset);
                    st.send.clear();
                    break;
                }
                sent = true;
            }
            if sent && st.send.len() < SEND_BUFFER {
                if let Some(w) = st.write_waker.take() {
                    w.wake();
                }
            }
            if st.fin && st.send.is_empty() && !local.fin_sent && st.failed.is_none() {
                let _ = self.task.finish(id);
                local.fin_sent = true;
            }
            // Take what arrived, up to the stream's buffer (a dropped stream's is discarded).
            let mut got = false;
            while !st.eof && st.failed.is_none() {
                if st.recv_len >= RECV_BUFFER {
                    st.recv_blocked = true;
                    break;
                }
                match self.task.read(id, RECV_BUFFER - st.recv_len) {
                    Ok(Some(chunk)) if chunk.is_empty() => break,
                    Ok(Some(chunk)) => {
                        if !st.dropped {
                            st.recv_len += chunk.len();
                            st.recv.push_back(chunk);
                        }
                        got = true;
                    }
                    Ok(None) => {
                        st.eof = true;
                        got = true;
                    }
                    Err(_) => {
                        st.failed = Some(Failure::Reset);
                        got = true;
                    }
                }
            }
            if got {
                if let Some(w) = st.read_waker.take() {
                    w.wake();
                }
            }
            gone = st.failed.is_some() || (st.dropped && st.eof && local.fin_sent);
        }
        let now = if gone { 0 } else { st.buffered() };
        if gone {
            st.wake_all();
        }
        drop(st);
        let before = std::mem::replace(&mut local.counted, now);
        self.count(before, now);
        if gone {
            self.streams.remove(&id);
        }
    }

    /// Keeps the connection's byte count up to date for a stream whose buffers changed.
    fn count(&self, before: usize, after: usize) {
        if after > before {
            self.mailbox
                .buffered
                .fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.mailbox
                .buffered
                .fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// The stream failed (reset by the remote, or its connection ended).
    fn fail(&mut self, id: StreamId) {
        let Some(local) = self.streams.remove(&id) else {
            return;
        };
        self.count(local.counted, 0);
        fail_stream(&local.shared, Failure::Reset);
    }

    /// A new stream of this connection, for the application.
    fn new_stream(
        &mut self,
        stream: plait_core::swarm::StreamRef,
        peer: plait_core::identity::PeerId,
        protocol: plait_core::multistream::Protocol,
    ) -> Stream<R> {
        let shared = StreamShared::new(stream, self.mailbox.clone());
        self.streams.insert(
            stream.stream,
            Local {
                shared: shared.clone(),
                fin_sent: false,
                counted: 0,
            },
        );
        // What arrived with the negotiation is the stream's already.
        self.sync(stream.stream);
        Stream::new(shared, self.rt.clone(), peer, protocol)
    }

    /// Hands the machine's events to the streams and collects what the host must hear.
    fn process_events(&mut self) {
        while let Some(event) = self.task.poll_event() {
            match event {
                Event::InboundStream {
                    peer,
                    stream,
                    protocol,
                } => {
                    let handlers = self.host.handlers();
                    let handler = find_handler(&handlers, protocol.as_str());
                    let stream = self.new_stream(stream, peer, protocol);
                    self.calls.push((handler, stream));
                }
                Event::ProtocolQuery {
                    stream, protocol, ..
                } => {
                    // The matchers are user code: this task holds no lock while they run.
                    let accept = find_handler(&self.host.handlers(), protocol.as_str()).is_some();
                    let _ = self.task.answer_protocol_query(stream.stream, accept);
                }
                Event::StreamOpened {
                    request,
                    stream,
                    protocol,
                } => match self.mailbox.take_opening(request) {
                    // Handed out already: what its writer queued goes with the proposal.
                    Some(shared) => {
                        shared.opened(stream.stream);
                        self.streams.insert(
                            stream.stream,
                            Local {
                                shared,
                                fin_sent: false,
                                counted: 0,
                            },
                        );
                        self.sync(stream.stream);
                    }
                    None => {
                        let peer = self.task.peer().unwrap_or_else(|| self.host.local_peer);
                        let s = self.new_stream(stream, peer, protocol);
                        self.completions.push(Completion::Stream(request, Ok(s)));
                    }
                },
                Event::StreamOpenFailed { request, error } => {
                    match self.mailbox.take_opening(request) {
                        Some(shared) => fail_stream(&shared, Failure::Refused(Box::new(error))),
                        None => self
                            .completions
                            .push(Completion::Stream(request, Err(error.into()))),
                    }
                }
                Event::PingResult {
                    request, result, ..
                } => {
                    self.completions
                        .push(Completion::Ping(request, result.map_err(Error::Swarm)));
                }
                Event::Readable(s) | Event::Writable(s) => self.sync(s.stream),
                Event::StreamReset(s) => self.fail(s.stream),
                _ => {}
            }
        }
        while let Some(message) = self.task.poll_coordinator_message() {
            self.to_coordinator.push(message);
        }
    }

    /// Tells the coordinator what happened and completes the host's waiting calls, in one
    /// hold of the host lock (only when there is something to say).
    fn exchange(&mut self) {
        if self.to_coordinator.is_empty() && self.completions.is_empty() {
            return;
        }
        let messages = std::mem::take(&mut self.to_coordinator);
        let completions = std::mem::take(&mut self.completions);
        let closed = messages
            .iter()
            .any(|m| matches!(m, ToCoordinator::Closed { .. }));
        let mut host = self.host.lock();
        let now = self.rt.now();
        for message in messages {
            host.coordinator
                .handle_connection_message(now, self.id, message);
        }
        for completion in completions {
            host.complete(completion);
        }
        if closed {
            self.reported_closed = true;
            host.connection_ended(self.id, &self.mailbox);
        }
        host.pump(&self.host);
        // Streams nobody waited for any more are dropped by the guard, after the unlock.
    }

    /// Calls the handlers of new inbound streams (no lock held).
    fn run_handlers(&mut self) {
        for (handler, stream) in std::mem::take(&mut self.calls) {
            match handler {
                Some(handler) => handler(stream),
                None => stream.reset(),
            }
        }
    }

    /// Updates the connection's byte count with the machine's and the socket buffers'.
    fn report(&mut self, socket_bytes: usize) {
        self.mailbox
            .streams
            .store(self.task.num_streams(), Ordering::Relaxed);
        let bytes = self.task.buffered_bytes() as usize + socket_bytes;
        self.count(self.machine_bytes, bytes);
        self.machine_bytes = bytes;
    }

    /// The connection is over: the coordinator hears it (if the machine did not say so
    /// already) and every stream fails.
    fn finish(&mut self) {
        if !self.reported_closed {
            self.task.handle_closed(self.rt.now());
            self.process_events();
            if !self
                .to_coordinator
                .iter()
                .any(|m| matches!(m, ToCoordinator::Closed { .. }))
            {
                self.to_coordinator
                    .push(ToCoordinator::Closed { error: None });
            }
            self.exchange();
            self.run_handlers();
        }
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            self.fail(id);
        }
    }
}

/// Marks a stream failed (reset by the remote, its connection gone, or refused) and wakes
/// its users.
fn fail_stream(shared: &StreamShared, failure: Failure) {
    let mut st = shared.lock();
    if st.failed.is_none() {
        st.failed = Some(failure);
    }
    st.wake_all();
}

/// Counts the host's open sockets.
struct SocketCount<R: Runtime>(Arc<Shared<R>>);

impl<R: Runtime> SocketCount<R> {
    fn new(host: &Arc<Shared<R>>) -> Self {
        host.sockets.fetch_add(1, Ordering::Relaxed);
        Self(host.clone())
    }
}

impl<R: Runtime> Drop for SocketCount<R> {
    fn drop(&mut self) {
        self.0.sockets.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a failed open or ping is reported as closed.
pub(crate) fn closed() -> Error {
    Error::Swarm(SwarmError::Closed)
}
