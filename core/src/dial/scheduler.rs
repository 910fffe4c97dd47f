//! The per-peer dial worker (go `dialSync` + `dialWorker.loop`) as a machine on virtual time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use libp2p_identity::PeerId;

use super::backoff::{Backoff, BACKOFF_MAX};
use super::blackhole::BlackHoleDetector;
use super::limiter::Limiter;
use super::rank::{DialRanker, NoDelayDialRanker, PUBLIC_TCP_DELAY};
use super::{
    AddrError, AttemptId, AttemptProgress, Config, DialError, DialFailure, DialOpts, DialRequestId,
    Error, Event, TransportError, MAX_DIAL_ADDRS,
};
use crate::multiaddr::{
    has_tcp, ip_addr, is_fd_consuming, is_ip6_link_local, is_ip_unspecified, is_private_addr,
    is_public_addr, is_relay, split_p2p, transport_kind, udp_port, Multiaddr, Protocol,
    TransportKind,
};
use crate::time::Instant;

/// One running or queued connection attempt.
#[derive(Debug, Clone)]
struct Attempt {
    peer: PeerId,
    key: Vec<u8>,
    addr: Multiaddr,
    timeout: Duration,
    /// Set when the limiter starts the attempt ([`Event::Connect`] emitted).
    deadline: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AddrState {
    /// In the dial queue, not dialed yet.
    Queued,
    /// Handed to the limiter (waiting for tokens or running).
    Dialing(AttemptId),
    /// Connected.
    Connected(AttemptId),
    /// Failed (or refused before dialing).
    Failed(AddrError),
}

/// go `addrDial`.
#[derive(Debug, Clone)]
struct AddrDial {
    addr: Multiaddr,
    force_direct: bool,
    simultaneous_connect: bool,
    state: AddrState,
    expected_tcp_upgrade: Option<Instant>,
}

/// go `pendRequest`.
#[derive(Debug, Clone)]
struct PendingRequest {
    id: DialRequestId,
    addrs: BTreeSet<Vec<u8>>,
    errors: Vec<(Multiaddr, AddrError)>,
    ignored: usize,
    deadline: Instant,
    force_direct: bool,
}

/// The dial worker of one peer; exists while it has pending requests.
#[derive(Debug, Clone)]
struct Worker {
    start: Instant,
    pending: Vec<PendingRequest>,
    tracked: BTreeMap<Vec<u8>, AddrDial>,
    /// go `dialQueue`: sorted by delay, FIFO among equal delays.
    queue: Vec<(Duration, Vec<u8>)>,
    in_flight: usize,
    connected: bool,
    /// When the next batch is due (go `dialTimer`).
    timer: Option<Instant>,
}

impl Worker {
    fn new(start: Instant) -> Self {
        Self {
            start,
            pending: Vec::new(),
            tracked: BTreeMap::new(),
            queue: Vec::new(),
            in_flight: 0,
            connected: false,
            timer: None,
        }
    }

    fn queue_add(&mut self, delay: Duration, key: Vec<u8>) {
        let pos = self.queue.partition_point(|(d, _)| *d <= delay);
        self.queue.insert(pos, (delay, key));
    }

    fn queue_update_or_add(&mut self, delay: Duration, key: Vec<u8>) {
        if self.queue.iter().any(|(d, k)| *k == key && *d == delay) {
            return;
        }
        self.queue.retain(|(_, k)| *k != key);
        self.queue_add(delay, key);
    }

    fn next_batch(&mut self) -> Vec<Vec<u8>> {
        let Some(first) = self.queue.first().map(|(d, _)| *d) else {
            return Vec::new();
        };
        let n = self.queue.iter().take_while(|(d, _)| *d == first).count();
        self.queue.drain(..n).map(|(_, k)| k).collect()
    }

    /// go `scheduleNextDial`.
    fn schedule_next_dial(&mut self) {
        self.timer = None;
        let Some(top) = self.queue.first().map(|(d, _)| *d) else {
            return;
        };
        if self.in_flight == 0 && !self.connected {
            self.timer = Some(self.start);
            return;
        }
        let mut at = self.start.checked_add(top).unwrap_or(self.start);
        for ad in self.tracked.values() {
            if let Some(t) = ad.expected_tcp_upgrade {
                at = at.max(t);
            }
        }
        self.timer = Some(at);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let req = self.pending.iter().map(|r| r.deadline).min();
        match (self.timer, req) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Dial scheduler for all peers: per-peer workers, limiter, backoff, black-hole detection.
///
/// See the [module documentation](super) for how a swarm drives it.
pub struct DialScheduler {
    config: Config,
    listen_addrs: Vec<Multiaddr>,
    workers: BTreeMap<PeerId, Worker>,
    attempts: BTreeMap<AttemptId, Attempt>,
    limiter: Limiter<AttemptId>,
    backoff: Backoff,
    black_hole: BlackHoleDetector,
    events: VecDeque<Event>,
    next_request: u64,
    next_attempt: u64,
    last_backoff_cleanup: Option<Instant>,
    last_now: Option<Instant>,
}

impl std::fmt::Debug for DialScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DialScheduler")
            .field("workers", &self.workers.len())
            .field("attempts", &self.attempts.len())
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

/// `(ip, port)` for the low-priority filter.
type IpPort = (core::net::IpAddr, u16);

impl DialScheduler {
    /// A scheduler with `config`.
    pub fn new(mut config: Config) -> Self {
        let black_hole = std::mem::take(&mut config.black_hole);
        Self {
            limiter: Limiter::new(config.per_peer_limit, config.fd_limit),
            config,
            listen_addrs: Vec::new(),
            workers: BTreeMap::new(),
            attempts: BTreeMap::new(),
            backoff: Backoff::new(),
            black_hole,
            events: VecDeque::new(),
            next_request: 0,
            next_attempt: 0,
            last_backoff_cleanup: None,
            last_now: None,
        }
    }

    /// Our interface listen addresses; dialing one of them is refused
    /// ([`AddrError::OwnListenAddr`]). Only `/ip4` and `/ip6` ones are considered, as in go.
    pub fn set_listen_addrs(&mut self, addrs: Vec<Multiaddr>) {
        self.listen_addrs = addrs
            .into_iter()
            .filter(|a| matches!(a.iter().next(), Some(Protocol::Ip4(_) | Protocol::Ip6(_))))
            .collect();
    }

    /// The backoff table (read-only).
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// The black-hole detector (read-only).
    pub fn black_hole(&self) -> &BlackHoleDetector {
        &self.black_hole
    }

    /// True if a dial worker for `peer` is active (some request is pending).
    pub fn is_dialing(&self, peer: &PeerId) -> bool {
        self.workers.contains_key(peer)
    }

    /// Number of attempts of `peer` that are running (between `Connect` and their end).
    pub fn running_attempts(&self, peer: &PeerId) -> usize {
        self.limiter.running_for_peer(peer)
    }

    /// Time is monotonic input: an earlier `now` than already seen is clamped.
    fn clamp(&mut self, now: Instant) -> Instant {
        let now = match self.last_now {
            Some(last) if now < last => last,
            _ => now,
        };
        self.last_now = Some(now);
        now
    }

    /// Asks for a connection to `peer` over `addrs` (the swarm has checked that none exists).
    /// Trailing `/p2p/<peer>` is stripped. The returned id is answered by exactly one
    /// [`Event::DialSucceeded`] or [`Event::DialFailed`], possibly queued before this returns.
    pub fn dial(
        &mut self,
        now: Instant,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        opts: DialOpts,
    ) -> DialRequestId {
        let now = self.clamp(now);
        let id = DialRequestId(self.next_request);
        self.next_request = self.next_request.wrapping_add(1);
        self.cleanup_backoff(now);

        let fail = |cause, addrs, ignored| Event::DialFailed {
            request: id,
            peer,
            error: DialError {
                peer,
                cause,
                addrs,
                ignored,
            },
        };
        if peer == self.config.local_peer {
            self.events
                .push_back(fail(DialFailure::DialToSelf, Vec::new(), 0));
            return id;
        }
        if addrs.is_empty() {
            self.events
                .push_back(fail(DialFailure::NoAddresses, Vec::new(), 0));
            return id;
        }
        let ignored = addrs.len().saturating_sub(MAX_DIAL_ADDRS);
        let (good, mut errors) = self.filter(peer, addrs, opts);
        if good.is_empty() {
            self.events
                .push_back(fail(DialFailure::NoGoodAddresses, errors, ignored));
            return id;
        }

        let ranked = if opts.simultaneous_connect {
            NoDelayDialRanker.rank(&good)
        } else {
            self.config.ranker.rank(&good)
        };
        let good_keys: BTreeSet<Vec<u8>> = good.iter().map(|a| a.to_vec()).collect();

        let worker = self.workers.entry(peer).or_insert_with(|| Worker::new(now));
        let mut req_addrs = BTreeSet::new();
        let mut to_dial: Vec<(Duration, Multiaddr)> = Vec::new();
        let mut to_join: Vec<(Duration, Vec<u8>)> = Vec::new();
        for (delay, addr) in ranked {
            let key = addr.to_vec();
            // A custom ranker must not invent or repeat addresses.
            if !good_keys.contains(&key) || !req_addrs.insert(key.clone()) {
                continue;
            }
            match worker.tracked.get(&key).map(|ad| ad.state.clone()) {
                None => to_dial.push((delay, addr)),
                Some(AddrState::Connected(attempt)) => {
                    self.events.push_back(Event::DialSucceeded {
                        request: id,
                        peer,
                        attempt: Some(attempt),
                    });
                    self.reap(now, peer);
                    return id;
                }
                Some(AddrState::Failed(err)) => {
                    errors.push((addr, err));
                    req_addrs.remove(&key);
                }
                Some(AddrState::Queued | AddrState::Dialing(_)) => to_join.push((delay, key)),
            }
        }
        if to_dial.is_empty() && to_join.is_empty() {
            self.events
                .push_back(fail(DialFailure::AllDialsFailed, errors, ignored));
            self.reap(now, peer);
            return id;
        }
        worker.pending.push(PendingRequest {
            id,
            addrs: req_addrs,
            errors,
            ignored,
            deadline: now
                .checked_add(self.config.dial_peer_timeout)
                .unwrap_or(now),
            force_direct: opts.force_direct,
        });
        for (delay, key) in to_join {
            if let Some(ad) = worker.tracked.get_mut(&key) {
                if ad.state == AddrState::Queued
                    && opts.simultaneous_connect
                    && !ad.simultaneous_connect
                {
                    ad.simultaneous_connect = true;
                    worker.queue_update_or_add(delay, key);
                }
            }
        }
        for (delay, addr) in to_dial {
            let key = addr.to_vec();
            worker.tracked.insert(
                key.clone(),
                AddrDial {
                    addr,
                    force_direct: opts.force_direct,
                    simultaneous_connect: opts.simultaneous_connect,
                    state: AddrState::Queued,
                    expected_tcp_upgrade: None,
                },
            );
            worker.queue_add(delay, key);
        }
        worker.schedule_next_dial();
        self.drive(now, peer);
        self.reap(now, peer);
        id
    }

    /// go `addrsForDial` minus resolution: returns the good addresses and every dropped one.
    fn filter(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        opts: DialOpts,
    ) -> (Vec<Multiaddr>, Vec<(Multiaddr, AddrError)>) {
        let mut errors = Vec::new();
        let mut seen = BTreeSet::new();
        let mut good = Vec::new();
        for addr in addrs.into_iter().take(MAX_DIAL_ADDRS) {
            let addr = match split_p2p(&addr) {
                (_, Some(other)) if other != peer => {
                    errors.push((addr, AddrError::OtherPeer(other)));
                    continue;
                }
                (stripped, _) => stripped,
            };
            if !seen.insert(addr.to_vec()) {
                continue;
            }
            if addr.is_empty() || !(self.config.can_dial)(&addr) {
                let e = if transport_kind(&addr) == TransportKind::QuicDraft29 {
                    AddrError::QuicDraft29
                } else {
                    AddrError::NoTransport
                };
                errors.push((addr, e));
                continue;
            }
            good.push(addr);
        }

        let (good, low) = low_priority_split(good);
        errors.extend(low.into_iter().map(|a| (a, AddrError::LowPriority)));

        let (good, holed) = self.black_hole.filter(good);
        errors.extend(holed.into_iter().map(|a| (a, AddrError::BlackHole)));

        let mut kept = Vec::with_capacity(good.len());
        for addr in good {
            let err = if is_ip_unspecified(&addr) {
                Some(AddrError::Unspecified)
            } else if self.listen_addrs.contains(&addr) {
                Some(AddrError::OwnListenAddr)
            } else if is_ip6_link_local(&addr) {
                Some(AddrError::Ip6LinkLocal)
            } else if opts.force_direct && is_relay(&addr) {
                Some(AddrError::RelayExcluded)
            } else {
                None
            };
            match err {
                Some(e) => errors.push((addr, e)),
                None => kept.push(addr),
            }
        }
        (kept, errors)
    }

    fn cleanup_backoff(&mut self, now: Instant) {
        let due = self
            .last_backoff_cleanup
            .is_none_or(|last| now.saturating_duration_since(last) >= BACKOFF_MAX);
        if due {
            self.backoff.cleanup(now);
            self.last_backoff_cleanup = Some(now);
        }
    }

    /// Fires every due batch of `peer`'s worker.
    fn drive(&mut self, now: Instant, peer: PeerId) {
        loop {
            let Some(worker) = self.workers.get_mut(&peer) else {
                return;
            };
            if worker.pending.is_empty() || worker.timer.is_none_or(|t| t > now) {
                return;
            }
            worker.timer = None;
            let batch = worker.next_batch();
            for key in batch {
                let Some(worker) = self.workers.get_mut(&peer) else {
                    return;
                };
                if worker.pending.is_empty() {
                    return;
                }
                let Some(ad) = worker.tracked.get_mut(&key) else {
                    continue;
                };
                if !ad.force_direct && self.backoff.is_backed_off(now, &peer, &ad.addr) {
                    self.dispatch_error(peer, &key, AddrError::Backoff);
                    continue;
                }
                let attempt = AttemptId(self.next_attempt);
                self.next_attempt = self.next_attempt.wrapping_add(1);
                ad.state = AddrState::Dialing(attempt);
                worker.in_flight += 1;
                let addr = ad.addr.clone();
                let timeout = if is_private_addr(&addr) {
                    self.config.dial_timeout_local.min(self.config.dial_timeout)
                } else {
                    self.config.dial_timeout
                };
                let fd = is_fd_consuming(&addr);
                self.attempts.insert(
                    attempt,
                    Attempt {
                        peer,
                        key,
                        addr,
                        timeout,
                        deadline: None,
                    },
                );
                let started = self.limiter.add(attempt, peer, fd);
                self.start(now, started);
            }
            if let Some(worker) = self.workers.get_mut(&peer) {
                worker.schedule_next_dial();
            }
        }
    }

    /// Emits `Connect` for attempts the limiter started.
    fn start(&mut self, now: Instant, started: Vec<AttemptId>) {
        for id in started {
            if let Some(a) = self.attempts.get_mut(&id) {
                a.deadline = Some(now.checked_add(a.timeout).unwrap_or(now));
                self.events.push_back(Event::Connect {
                    attempt: id,
                    peer: a.peer,
                    addr: a.addr.clone(),
                });
            }
        }
    }

    /// go `dispatchError`.
    fn dispatch_error(&mut self, peer: PeerId, key: &[u8], err: AddrError) {
        let Some(worker) = self.workers.get_mut(&peer) else {
            return;
        };
        let Some(ad) = worker.tracked.get_mut(key) else {
            return;
        };
        ad.state = AddrState::Failed(err.clone());
        ad.expected_tcp_upgrade = None;
        let addr = ad.addr.clone();
        let mut i = 0;
        while let Some(req) = worker.pending.get_mut(i) {
            if req.addrs.remove(key) {
                req.errors.push((addr.clone(), err.clone()));
                if req.addrs.is_empty() {
                    let req = worker.pending.remove(i);
                    self.events.push_back(Event::DialFailed {
                        request: req.id,
                        peer,
                        error: DialError {
                            peer,
                            cause: DialFailure::AllDialsFailed,
                            addrs: req.errors,
                            ignored: req.ignored,
                        },
                    });
                    continue;
                }
            }
            i += 1;
        }
        if err == AddrError::Backoff {
            worker.tracked.remove(key);
        }
    }

    /// Ends `peer`'s worker if nobody waits any more: aborts its running attempts.
    fn reap(&mut self, now: Instant, peer: PeerId) {
        if !self
            .workers
            .get(&peer)
            .is_some_and(|w| w.pending.is_empty())
        {
            return;
        }
        self.workers.remove(&peer);
        let ids: Vec<AttemptId> = self
            .attempts
            .iter()
            .filter(|(_, a)| a.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            if let Some(a) = self.attempts.remove(id) {
                if a.deadline.is_some() {
                    // go counts the cancelled dial as a failure for black-hole detection.
                    self.black_hole.record(&a.addr, false);
                    self.events.push_back(Event::Abort {
                        attempt: *id,
                        peer,
                        addr: a.addr,
                    });
                }
            }
        }
        let started = self.limiter.remove_peer(&peer);
        self.start(now, started);
    }

    /// Removes a running attempt; releases its tokens (starting queued ones).
    fn finish(&mut self, now: Instant, attempt: AttemptId) -> Result<Attempt, Error> {
        match self.attempts.get(&attempt) {
            Some(a) if a.deadline.is_some() => {}
            _ => return Err(Error::UnknownAttempt(attempt)),
        }
        let a = self
            .attempts
            .remove(&attempt)
            .ok_or(Error::UnknownAttempt(attempt))?;
        let started = self.limiter.remove(attempt);
        self.start(now, started);
        if let Some(w) = self.workers.get_mut(&a.peer) {
            w.in_flight = w.in_flight.saturating_sub(1);
            if let Some(ad) = w.tracked.get_mut(&a.key) {
                ad.expected_tcp_upgrade = None;
            }
        }
        Ok(a)
    }

    /// A running attempt made progress (not a completion).
    pub fn handle_attempt_progress(
        &mut self,
        now: Instant,
        attempt: AttemptId,
        progress: AttemptProgress,
    ) -> Result<(), Error> {
        let now = self.clamp(now);
        let a = match self.attempts.get(&attempt) {
            Some(a) if a.deadline.is_some() => a,
            _ => return Err(Error::UnknownAttempt(attempt)),
        };
        match progress {
            AttemptProgress::TcpConnected => {
                // Only public addresses hold back further dials; private ones are fast anyway.
                if is_public_addr(&a.addr) && has_tcp(&a.addr) {
                    let (peer, key) = (a.peer, a.key.clone());
                    if let Some(w) = self.workers.get_mut(&peer) {
                        if let Some(ad) = w.tracked.get_mut(&key) {
                            ad.expected_tcp_upgrade = now.checked_add(PUBLIC_TCP_DELAY);
                        }
                        w.schedule_next_dial();
                    }
                    self.drive(now, peer);
                }
            }
        }
        Ok(())
    }

    /// A running attempt produced a usable connection to the expected peer. Answers every
    /// pending request that includes its address; other attempts continue only while some
    /// request still waits.
    pub fn handle_attempt_succeeded(
        &mut self,
        now: Instant,
        attempt: AttemptId,
    ) -> Result<(), Error> {
        let now = self.clamp(now);
        let a = self.finish(now, attempt)?;
        self.black_hole.record(&a.addr, true);
        self.backoff.clear(&a.peer);
        let peer = a.peer;
        if let Some(w) = self.workers.get_mut(&peer) {
            if let Some(ad) = w.tracked.get_mut(&a.key) {
                ad.state = AddrState::Connected(attempt);
            }
            w.connected = true;
            let events = &mut self.events;
            w.pending.retain(|req| {
                let hit = req.addrs.contains(&a.key);
                if hit {
                    events.push_back(Event::DialSucceeded {
                        request: req.id,
                        peer,
                        attempt: Some(attempt),
                    });
                }
                !hit
            });
        }
        self.reap(now, peer);
        Ok(())
    }

    /// A running attempt failed.
    pub fn handle_attempt_failed(
        &mut self,
        now: Instant,
        attempt: AttemptId,
        cause: TransportError,
    ) -> Result<(), Error> {
        let now = self.clamp(now);
        let add_backoff = cause != TransportError::Cancelled;
        self.fail(now, attempt, AddrError::Transport(cause), add_backoff)
    }

    fn fail(
        &mut self,
        now: Instant,
        attempt: AttemptId,
        err: AddrError,
        add_backoff: bool,
    ) -> Result<(), Error> {
        let a = self.finish(now, attempt)?;
        self.black_hole.record(&a.addr, false);
        let peer = a.peer;
        let connected = self.workers.get(&peer).is_some_and(|w| w.connected);
        if add_backoff && !connected {
            self.backoff.add(now, peer, &a.addr);
        }
        self.dispatch_error(peer, &a.key, err);
        if let Some(w) = self.workers.get_mut(&peer) {
            w.schedule_next_dial();
        }
        self.drive(now, peer);
        self.reap(now, peer);
        Ok(())
    }

    /// The swarm established a connection to `peer` that the scheduler did not produce
    /// (inbound, or another dialer). Clears the peer's backoff and answers its pending
    /// requests with `DialSucceeded { attempt: None }` (force-direct requests only when
    /// `direct`).
    pub fn handle_peer_connected(&mut self, now: Instant, peer: PeerId, direct: bool) {
        let now = self.clamp(now);
        self.backoff.clear(&peer);
        if let Some(w) = self.workers.get_mut(&peer) {
            let events = &mut self.events;
            w.pending.retain(|req| {
                let ok = direct || !req.force_direct;
                if ok {
                    events.push_back(Event::DialSucceeded {
                        request: req.id,
                        peer,
                        attempt: None,
                    });
                }
                !ok
            });
        }
        self.reap(now, peer);
    }

    /// Withdraws a pending request; it is answered with [`DialFailure::Cancelled`].
    pub fn cancel(&mut self, now: Instant, request: DialRequestId) -> Result<(), Error> {
        let now = self.clamp(now);
        let found = self.workers.iter_mut().find_map(|(peer, w)| {
            let i = w.pending.iter().position(|r| r.id == request)?;
            Some((*peer, w.pending.remove(i)))
        });
        let Some((peer, req)) = found else {
            return Err(Error::UnknownRequest(request));
        };
        self.events.push_back(Event::DialFailed {
            request,
            peer,
            error: DialError {
                peer,
                cause: DialFailure::Cancelled,
                addrs: req.errors,
                ignored: req.ignored,
            },
        });
        self.reap(now, peer);
        Ok(())
    }

    /// Earliest instant at which [`Self::handle_timeout`] has work; `None` when idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let attempts = self.attempts.values().filter_map(|a| a.deadline).min();
        let workers = self
            .workers
            .values()
            .filter_map(Worker::next_deadline)
            .min();
        match (attempts, workers) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires attempts ([`AddrError::Timeout`], with an [`Event::Abort`]) and requests
    /// ([`DialFailure::Timeout`]), and fires due dial batches. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        let expired: Vec<AttemptId> = self
            .attempts
            .iter()
            .filter(|(_, a)| a.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(a) = self.attempts.get(&id) {
                let (peer, addr) = (a.peer, a.addr.clone());
                if a.deadline.is_some() {
                    self.events.push_back(Event::Abort {
                        attempt: id,
                        peer,
                        addr,
                    });
                    // go: context.DeadlineExceeded is not Canceled, so it adds backoff.
                    let _ = self.fail(now, id, AddrError::Timeout, true);
                }
            }
        }
        let peers: Vec<PeerId> = self.workers.keys().copied().collect();
        for peer in peers {
            if let Some(w) = self.workers.get_mut(&peer) {
                let mut i = 0;
                while let Some(req) = w.pending.get(i) {
                    if req.deadline <= now {
                        let req = w.pending.remove(i);
                        self.events.push_back(Event::DialFailed {
                            request: req.id,
                            peer,
                            error: DialError {
                                peer,
                                cause: DialFailure::Timeout,
                                addrs: req.errors,
                                ignored: req.ignored,
                            },
                        });
                    } else {
                        i += 1;
                    }
                }
            }
            self.drive(now, peer);
            self.reap(now, peer);
        }
    }

    /// Next output event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

/// go `filterLowPriorityAddresses`: drop `/webtransport` and draft-29 `/quic` when a
/// `/quic-v1` address has the same IP and UDP port; drop `/ws`, `/wss` when a plain `/tcp`
/// address has the same IP and TCP port. Returns (kept, dropped).
fn low_priority_split(addrs: Vec<Multiaddr>) -> (Vec<Multiaddr>, Vec<Multiaddr>) {
    let tcp_port = |a: &Multiaddr| {
        a.iter().find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
    };
    let ip_port =
        |a: &Multiaddr, port: Option<u16>| -> Option<IpPort> { Some((ip_addr(a)?, port?)) };
    let has = |a: &Multiaddr, f: fn(&Protocol<'_>) -> bool| a.iter().any(|p| f(&p));
    let is_wt = |p: &Protocol<'_>| matches!(p, Protocol::WebTransport);
    let is_v1 = |p: &Protocol<'_>| matches!(p, Protocol::QuicV1);
    let is_draft = |p: &Protocol<'_>| matches!(p, Protocol::Quic);
    let is_ws = |p: &Protocol<'_>| matches!(p, Protocol::Ws(_) | Protocol::Wss(_));

    let mut quic_v1 = BTreeSet::new();
    let mut tcp = BTreeSet::new();
    for a in &addrs {
        if has(a, is_wt) {
        } else if has(a, is_v1) {
            if let Some(ap) = ip_port(a, udp_port(a)) {
                quic_v1.insert(ap);
            }
        } else if has(a, is_ws) {
        } else if has_tcp(a) {
            if let Some(ap) = ip_port(a, tcp_port(a)) {
                tcp.insert(ap);
            }
        }
    }
    let mut kept = Vec::with_capacity(addrs.len());
    let mut dropped = Vec::new();
    for a in addrs {
        let drop = if has(&a, is_wt) || has(&a, is_draft) {
            ip_port(&a, udp_port(&a)).is_some_and(|ap| quic_v1.contains(&ap))
        } else if has(&a, is_ws) {
            ip_port(&a, tcp_port(&a)).is_some_and(|ap| tcp.contains(&ap))
        } else {
            false
        };
        if drop {
            dropped.push(a);
        } else {
            kept.push(a);
        }
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests;
