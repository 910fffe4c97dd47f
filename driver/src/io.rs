//! The tasks that move bytes and time between the runtime and the swarm.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_io::{AsyncRead, AsyncWrite};
use plait_core::dial::TransportError;
use plait_core::multiaddr::Multiaddr;
use plait_core::swarm::{ConnectionId, ListenerId};

use crate::addr::{multiaddr_to_socket, socket_to_multiaddr, Target};
use crate::host::{HostEvent, Shared};
use crate::{BoxFuture, Runtime};

/// Bytes read from a socket per read call.
const READ_CHUNK: usize = 64 * 1024;
/// The connection task stops reading while this many received bytes wait to be consumed
/// (the core consumes everything within its windows, so this is only reached by a peer
/// sending beyond them).
const MAX_UNCONSUMED_INPUT: usize = 1024 * 1024;
/// While a connection is upgrading the task stops reading at this many unconsumed bytes: an
/// honest peer never has more than one handshake message (at most 64 KiB) waiting, and the
/// upgrade leaves input unconsumed only while it waits for the peer to read its answers
/// (`plait_core::upgrade::MAX_PENDING_OUTPUT`).
const MAX_UPGRADE_INPUT: usize = 128 * 1024;
/// The most a connection holds while it upgrades, counted in [`Host::buffered_bytes`]: the
/// task's unconsumed input (128 KiB, plus one read at most), the upgrade's own
/// buffers, and one batch of its output waiting for the socket.
///
/// [`Host::buffered_bytes`]: crate::Host::buffered_bytes
pub const MAX_UPGRADE_BUFFERED: usize =
    MAX_UPGRADE_INPUT + READ_CHUNK + 2 * plait_core::upgrade::MAX_BUFFERED;
/// The first pause after a failed `accept`; it doubles with each failure in a row.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// The longest pause between two `accept` attempts after failures (go's `net/http` too).
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a closing connection may take to flush its last bytes before the socket is closed
/// anyway: a peer that stops reading must not keep a socket (and its buffers) forever.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Received batches at least this large are decrypted with the host lock released.
const OPEN_UNLOCKED_FROM: usize = 16 * 1024;
/// Reads and writes per wake-up before the task yields, so one busy connection cannot starve
/// the others on the same executor thread (quinn's work limiter).
const WORK_PER_WAKE: usize = 32;

thread_local! {
    /// Where connection tasks on this thread read their sockets into (one per thread rather
    /// than one per connection: idle connections hold no read buffer).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_CHUNK]);
}

async fn resolve<R: Runtime>(
    runtime: &R,
    addr: &Multiaddr,
) -> Result<Vec<std::net::SocketAddr>, TransportError> {
    match multiaddr_to_socket(addr) {
        Some(Target::Socket(s)) => Ok(vec![s]),
        Some(Target::Dns { host, port, v4, v6 }) => {
            let all = runtime
                .resolve(host.clone(), port)
                .await
                .map_err(|e| TransportError::Address(format!("resolving {host}: {e}")))?;
            let filtered: Vec<_> = all
                .into_iter()
                .filter(|a| (a.is_ipv4() && v4) || (a.is_ipv6() && v6))
                .collect();
            if filtered.is_empty() {
                Err(TransportError::Address(format!(
                    "{host} has no address of the right family"
                )))
            } else {
                Ok(filtered)
            }
        }
        None => Err(TransportError::Address(format!(
            "unsupported address {addr}"
        ))),
    }
}

pub(crate) fn spawn_listener<R: Runtime>(
    shared: Arc<Shared<R>>,
    runtime: &R,
    listener: ListenerId,
    addr: Multiaddr,
) {
    let rt = runtime.clone();
    runtime.spawn(Box::pin(async move {
        let bound = match resolve(&rt, &addr).await {
            Ok(addrs) => match rt.bind(addrs[0]).await {
                Ok(b) => Ok(b),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        let (socket, local) = match bound {
            Ok(b) => b,
            Err(e) => {
                let mut inner = shared.lock();
                inner.swarm.handle_listen_failed(listener, e);
                inner.pump(&shared);
                return;
            }
        };
        let local = socket_to_multiaddr(local);
        {
            let mut inner = shared.lock();
            inner.swarm.handle_listening(listener, local.clone());
            inner.pump(&shared);
        }
        let socket = Arc::new(socket);
        let mut backoff = AcceptBackoff::default();
        loop {
            let mut accept = rt.accept(socket.clone());
            // Registered under the lock that `close`/shutdown take, so the task wakes and
            // ends (dropping the socket) when the listener or the host closes.
            let Some(result) = until_closed(&shared, listener, &mut accept).await else {
                return;
            };
            let (tcp, remote) = match result {
                Ok(x) => {
                    backoff.succeeded();
                    x
                }
                Err(e) => {
                    // Out of descriptors (or memory): retrying at once would only spin.
                    let retry_in = backoff.failed();
                    tracing::warn!(%e, ?retry_in, addr = %local, "accept failed");
                    shared.lock().push_event(HostEvent::AcceptFailed {
                        addr: local.clone(),
                        error: e.kind(),
                        os_error: e.raw_os_error(),
                        retry_in,
                    });
                    let mut pause = rt.sleep_until(rt.now() + retry_in);
                    if until_closed(&shared, listener, &mut pause).await.is_none() {
                        return;
                    }
                    continue;
                }
            };
            let id = {
                let mut inner = shared.lock();
                let now = rt.now();
                let r =
                    inner
                        .swarm
                        .handle_incoming(now, local.clone(), socket_to_multiaddr(remote));
                inner.pump(&shared);
                r
            };
            match id {
                Ok(id) => spawn_connection(shared.clone(), &rt, id, tcp),
                Err(e) => tracing::debug!(%e, %remote, "refused inbound connection"),
            }
            // Let the accepted connections read before accepting more: under a connect storm
            // the pending-incoming limit should see their progress (or their end of file).
            yield_now().await;
        }
    }));
}

/// Polls `fut` until it completes (`Some`) or the listener or the host closes (`None`). The
/// waker is registered under the lock that closing takes, so no close is missed.
async fn until_closed<R: Runtime, T>(
    shared: &Arc<Shared<R>>,
    listener: ListenerId,
    fut: &mut BoxFuture<'static, T>,
) -> Option<T> {
    poll_fn(|cx| {
        let mut inner = shared.lock();
        if inner.shut_down || inner.closed_listeners.remove(&listener) {
            inner.listener_wakers.remove(&listener);
            return Poll::Ready(None);
        }
        inner.listener_wakers.insert(listener, cx.waker().clone());
        drop(inner);
        fut.as_mut().poll(cx).map(Some)
    })
    .await
}

/// The pause before the next `accept` after failures in a row: [`ACCEPT_BACKOFF_MIN`],
/// doubling up to [`ACCEPT_BACKOFF_MAX`]; back to none after a success.
#[derive(Debug, Default)]
struct AcceptBackoff {
    next: Option<Duration>,
}

impl AcceptBackoff {
    /// An accept failed: how long to wait before the next.
    fn failed(&mut self) -> Duration {
        let delay = self.next.unwrap_or(ACCEPT_BACKOFF_MIN);
        self.next = Some((delay * 2).min(ACCEPT_BACKOFF_MAX));
        delay
    }

    /// An accept succeeded.
    fn succeeded(&mut self) {
        self.next = None;
    }
}

/// Yields to the executor once.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

pub(crate) fn spawn_dial<R: Runtime>(
    shared: Arc<Shared<R>>,
    runtime: &R,
    connection: ConnectionId,
    addr: Multiaddr,
) {
    let rt = runtime.clone();
    runtime.spawn(Box::pin(async move {
        let result = match resolve(&rt, &addr).await {
            Ok(addrs) => {
                let mut last = TransportError::Address("no address".into());
                let mut tcp = None;
                for a in addrs {
                    match rt.connect(a).await {
                        Ok(t) => {
                            tcp = Some(t);
                            break;
                        }
                        Err(e) => last = TransportError::Io(e.kind()),
                    }
                }
                tcp.ok_or(last)
            }
            Err(e) => Err(e),
        };
        let mut inner = shared.lock();
        let now = rt.now();
        match result {
            Ok(tcp) => {
                inner.swarm.handle_connected(now, connection);
                inner.pump(&shared);
                drop(inner);
                spawn_connection(shared.clone(), &rt, connection, tcp);
            }
            Err(e) => {
                inner.swarm.handle_dial_failed(now, connection, e);
                inner.pump(&shared);
            }
        }
    }));
}

fn spawn_connection<R: Runtime>(
    shared: Arc<Shared<R>>,
    runtime: &R,
    id: ConnectionId,
    tcp: R::Tcp,
) {
    let rt = runtime.clone();
    runtime.spawn(Box::pin(run_connection(shared, rt, id, tcp)));
}

/// Reads into the swarm and writes what it transmits until the connection ends.
async fn run_connection<R: Runtime>(
    shared: Arc<Shared<R>>,
    rt: R,
    id: ConnectionId,
    mut tcp: R::Tcp,
) {
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    let mut read_open = true;
    let mut metrics = SocketMetrics::new(&shared);
    let mut linger: Option<BoxFuture<'static, ()>> = None;
    // Whether the connection may still be upgrading (refreshed with every transmit poll).
    let mut upgrading = true;
    poll_fn(|cx| {
        let mut work = 0;
        loop {
            let mut progress = false;
            // Read.
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
                        // come full (bulk), grow by several at once. Small reads (and polls
                        // that find nothing) allocate only what they need.
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
                        report_closed(&shared, &rt, id);
                    }
                    Poll::Ready(Ok(_)) => {
                        feed_input(&shared, &rt, id, &mut input);
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }
            // Write.
            let (closing, transmit) = {
                let mut inner = shared.lock();
                // Register before polling, under the same lock: a stream that queues data, or
                // a close that arrives, after this finds the waker, so no wake-up is lost
                // (also while a write to a peer that does not read is pending).
                inner.conn_wakers.insert(id, cx.waker().clone());
                let transmit = output.is_empty().then(|| {
                    let now = rt.now();
                    upgrading = inner.swarm.connection_peer(id).is_none();
                    if upgrading && !input.is_empty() {
                        // An upgrade leaves input unconsumed while its answers wait for the
                        // peer to read them: they were just sent, so it may read on.
                        inner.swarm.handle_input(now, id, &mut input);
                    }
                    let t =
                        inner
                            .swarm
                            .poll_transmit_unsealed(now, id, std::mem::take(&mut output));
                    inner.pump(&shared);
                    t
                });
                let gone = inner.swarm.connection_peer(id).is_none()
                    && !inner.swarm.connections_with_output().any(|c| c == id);
                (
                    inner.closing.contains(&id) || gone || inner.shut_down,
                    transmit,
                )
            };
            // Encrypt outside the lock, so the host's other tasks (the application writing the
            // next bytes) are not held up by it.
            if let Some(transmit) = transmit {
                match transmit.seal() {
                    Ok(sealed) => output = sealed,
                    Err(e) => {
                        tracing::warn!(?id, %e, "sealing failed; closing the connection");
                        read_open = false;
                        report_closed(&shared, &rt, id);
                    }
                }
            }
            while !output.is_empty() {
                match Pin::new(&mut tcp).poll_write(cx, &output) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                        output.clear();
                        read_open = false;
                        report_closed(&shared, &rt, id);
                        break;
                    }
                    Poll::Ready(Ok(n)) => {
                        let _ = output.split_to(n);
                        progress = true;
                    }
                    Poll::Pending => break,
                }
            }
            if !output.is_empty() && (closing || !read_open) {
                let timer = linger.get_or_insert_with(|| rt.sleep_until(rt.now() + CLOSE_LINGER));
                if timer.as_mut().poll(cx).is_ready() {
                    tracing::debug!(?id, unsent = output.len(), "peer does not read; closing");
                    output.clear();
                }
            }
            if output.is_empty() && (closing || !read_open) {
                let _ = Pin::new(&mut tcp).poll_close(cx);
                let mut inner = shared.lock();
                inner.closing.remove(&id);
                inner.conn_wakers.remove(&id);
                if read_open {
                    let now = rt.now();
                    inner.swarm.handle_closed(now, id);
                    inner.pump(&shared);
                }
                metrics.report(input.len() + output.len());
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
                // The waker was registered before the last transmit poll (or the socket
                // write is pending and will wake us).
                let closing = {
                    let inner = shared.lock();
                    inner.closing.contains(&id) || inner.shut_down
                };
                if !closing || !output.is_empty() {
                    metrics.report(input.len() + output.len());
                    return Poll::Pending;
                }
            }
            work += 1;
            if work >= WORK_PER_WAKE {
                cx.waker().wake_by_ref();
                metrics.report(input.len() + output.len());
                return Poll::Pending;
            }
        }
    })
    .await;
}

/// Tells the swarm the connection's socket is gone (end of file, an I/O error, or a transmit
/// that could not be sealed).
fn report_closed<R: Runtime>(shared: &Arc<Shared<R>>, rt: &R, id: ConnectionId) {
    let mut inner = shared.lock();
    let now = rt.now();
    inner.swarm.handle_closed(now, id);
    inner.pump(shared);
}

/// Hands received bytes to the swarm. Large batches of Noise frames are decrypted between two
/// short holds of the lock, not under it, so the application reading the previous bytes is not
/// held up.
fn feed_input<R: Runtime>(shared: &Arc<Shared<R>>, rt: &R, id: ConnectionId, input: &mut BytesMut) {
    loop {
        let mut inner = shared.lock();
        let now = rt.now();
        let Some(batch) = inner.swarm.take_unopened(now, id, input) else {
            // Handshake, plaintext, or the rest of a frame: handled under the lock.
            inner.swarm.handle_input(now, id, input);
            inner.pump(shared);
            inner.wake_backlog();
            return;
        };
        if batch.len() < OPEN_UNLOCKED_FROM {
            // Small: releasing and retaking the lock would cost more than it frees.
            inner.swarm.handle_opened(now, id, batch.open());
            inner.pump(shared);
            inner.wake_backlog();
            continue;
        }
        drop(inner);
        let opened = batch.open();
        let mut inner = shared.lock();
        let now = rt.now();
        inner.swarm.handle_opened(now, id, opened);
        inner.pump(shared);
        inner.wake_backlog();
    }
}

/// Keeps [`Shared::io_buffered`] and [`Shared::sockets`] up to date for one connection task.
struct SocketMetrics<'a, R: Runtime> {
    shared: &'a Shared<R>,
    reported: usize,
}

impl<'a, R: Runtime> SocketMetrics<'a, R> {
    fn new(shared: &'a Shared<R>) -> Self {
        shared.sockets.fetch_add(1, Ordering::Relaxed);
        Self {
            shared,
            reported: 0,
        }
    }

    fn report(&mut self, buffered: usize) {
        if buffered > self.reported {
            let d = buffered - self.reported;
            self.shared.io_buffered.fetch_add(d, Ordering::Relaxed);
        } else {
            let d = self.reported - buffered;
            self.shared.io_buffered.fetch_sub(d, Ordering::Relaxed);
        }
        self.reported = buffered;
    }
}

impl<R: Runtime> Drop for SocketMetrics<'_, R> {
    fn drop(&mut self) {
        self.report(0);
        self.shared.sockets.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn spawn_timer<R: Runtime>(shared: Arc<Shared<R>>, runtime: &R) {
    let rt = runtime.clone();
    runtime.spawn(Box::pin(async move {
        let mut sleep: Option<(Instant, BoxFuture<'static, ()>)> = None;
        poll_fn(|cx: &mut Context<'_>| loop {
            let mut inner = shared.lock();
            if inner.shut_down && inner.swarm.num_connections() == 0 {
                return Poll::Ready(());
            }
            let now = rt.now();
            if inner.swarm.poll_timeout().is_some_and(|t| t <= now) {
                // Wakes only the connections the timeout gave something to do (`pump` wakes
                // those with output or a close).
                inner.swarm.handle_timeout(now);
                inner.pump(&shared);
            }
            inner.timer_waker = Some(cx.waker().clone());
            let next = inner.swarm.poll_timeout();
            drop(inner);
            let Some(deadline) = next else {
                sleep = None;
                return Poll::Pending;
            };
            if sleep.as_ref().is_none_or(|(at, _)| *at != deadline) {
                sleep = Some((deadline, rt.sleep_until(deadline)));
            }
            if let Some((_, fut)) = sleep.as_mut() {
                if fut.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                sleep = None;
            }
        })
        .await;
    }));
}
