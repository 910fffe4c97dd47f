//! The listener, dial and timer tasks: sockets and time for the coordinator.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use plait_core::dial::{AddressError, TransportError};
use plait_core::multiaddr::Multiaddr;
use plait_core::swarm::{ConnectionId, ListenerId};

use crate::addr::{multiaddr_to_socket, socket_to_multiaddr, Target};
use crate::connection::{self, Mailbox};
use crate::host::{HostEvent, Shared};
use crate::{BoxFuture, Runtime};

/// The first pause after a failed `accept`; it doubles with each failure in a row.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// The longest pause between two `accept` attempts after failures (go's `net/http` too).
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
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
                .map_err(|e| TransportError::Address(AddressError::Resolve(e.kind())))?;
            let filtered: Vec<_> = all
                .into_iter()
                .filter(|a| (a.is_ipv4() && v4) || (a.is_ipv6() && v6))
                .collect();
            if filtered.is_empty() {
                Err(TransportError::Address(AddressError::NoAddressOfFamily))
            } else {
                Ok(filtered)
            }
        }
        None => Err(TransportError::Address(AddressError::Unsupported)),
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
                Err(e) => Err(TransportError::Io(e.kind())),
            },
            Err(e) => Err(e),
        };
        let (socket, local) = match bound {
            Ok(b) => b,
            Err(e) => {
                let mut inner = shared.lock();
                inner.coordinator.handle_listen_failed(listener, e);
                inner.pump(&shared);
                return;
            }
        };
        let local = socket_to_multiaddr(local);
        {
            let mut inner = shared.lock();
            inner.coordinator.handle_listening(listener, local.clone());
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
            let accepted = {
                let mut inner = shared.lock();
                let now = rt.now();
                let remote = socket_to_multiaddr(remote);
                inner.coordinator.set_unix_time(rt.unix_time());
                let r = inner
                    .coordinator
                    .handle_incoming(now, local.clone(), remote);
                let r = r.map(|task| {
                    let mailbox = Mailbox::new();
                    inner.connection_started(task.id(), mailbox.clone());
                    (task, mailbox)
                });
                inner.pump(&shared);
                r
            };
            match accepted {
                Ok((task, mailbox)) => connection::spawn(shared.clone(), &rt, task, mailbox, tcp),
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
                let mut last = TransportError::Address(AddressError::NoAddressOfFamily);
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
                inner.coordinator.set_unix_time(rt.unix_time());
                let task = inner.coordinator.handle_connected(now, connection);
                let started = task.map(|task| {
                    let mailbox = Mailbox::new();
                    inner.connection_started(connection, mailbox.clone());
                    (task, mailbox)
                });
                inner.pump(&shared);
                drop(inner);
                // `None`: the coordinator dropped the dial meanwhile; the socket closes here.
                if let Some((task, mailbox)) = started {
                    connection::spawn(shared.clone(), &rt, task, mailbox, tcp);
                }
            }
            Err(e) => {
                inner.coordinator.handle_dial_failed(now, connection, e);
                inner.pump(&shared);
            }
        }
    }));
}

pub(crate) fn spawn_timer<R: Runtime>(shared: Arc<Shared<R>>, runtime: &R) {
    let rt = runtime.clone();
    runtime.spawn(Box::pin(async move {
        let mut sleep: Option<(Instant, BoxFuture<'static, ()>)> = None;
        poll_fn(|cx: &mut Context<'_>| loop {
            let mut inner = shared.lock();
            if inner.shut_down && inner.coordinator.num_connections() == 0 {
                return Poll::Ready(());
            }
            let now = rt.now();
            if inner.coordinator.poll_timeout().is_some_and(|t| t <= now) {
                // The coordinator's deadlines only (dials, trimming): each connection task
                // keeps its own connection's timer.
                inner.coordinator.handle_timeout(now);
                inner.pump(&shared);
            }
            inner.timer_waker = Some(cx.waker().clone());
            let next = inner.coordinator.poll_timeout();
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
