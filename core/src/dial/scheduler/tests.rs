//! Scheduler tests on virtual time: exact dial times, joining, limits, backoff, black holes.

use std::time::Duration;

use libp2p_identity::PeerId;
use proptest::prelude::*;

use super::super::blackhole::{BlackHoleState, BLACK_HOLE_WINDOW};
use super::super::check::Checker;
use super::super::limiter::PER_PEER_DIAL_LIMIT;
use super::*;
use crate::dial::NoDelayDialRanker;

fn ma(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A driver on virtual time that records `(ms since t0, event)`.
struct H {
    s: DialScheduler,
    t0: Instant,
    now: Instant,
    log: Vec<(u64, Event)>,
    check: Checker,
}

impl H {
    fn new(config: Config) -> Self {
        let t0 = plait_testkit::start();
        let check = Checker::new(config.per_peer_limit, config.fd_limit);
        Self {
            s: DialScheduler::new(config),
            t0,
            now: t0,
            log: Vec::new(),
            check,
        }
    }

    fn open() -> Self {
        Self::new(Config::new(PeerId::random()).with_transport_filter(|_| true))
    }

    fn elapsed(&self) -> u64 {
        (self.now - self.t0).as_millis() as u64
    }

    fn drain(&mut self) {
        while let Some(e) = self.s.poll_event() {
            self.check.on_event(&e);
            self.log.push((self.elapsed(), e));
        }
    }

    fn dial(&mut self, peer: PeerId, addrs: &[&str], opts: DialOpts) -> DialRequestId {
        let addrs = addrs.iter().map(|s| ma(s)).collect();
        let id = self.s.dial(self.now, peer, addrs, opts);
        self.check.on_dial(id, peer);
        self.drain();
        id
    }

    /// Advances virtual time to `t0 + ms`, firing every timeout on the way.
    fn run_to(&mut self, at_ms: u64) {
        let target = self.t0 + ms(at_ms);
        assert!(target >= self.now, "virtual time goes forward only");
        while let Some(t) = self.s.poll_timeout() {
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            self.s.handle_timeout(self.now);
            self.drain();
        }
        self.now = target;
    }

    fn attempt(&self, addr: &str) -> AttemptId {
        let want = ma(addr);
        self.log
            .iter()
            .rev()
            .find_map(|(_, e)| match e {
                Event::Connect { attempt, addr, .. } if *addr == want => Some(*attempt),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{addr} never dialed"))
    }

    fn succeed(&mut self, addr: &str) {
        let a = self.attempt(addr);
        self.check.on_report(a);
        self.s.handle_attempt_succeeded(self.now, a).unwrap();
        self.drain();
    }

    fn fail(&mut self, addr: &str) {
        let a = self.attempt(addr);
        self.check.on_report(a);
        self.s
            .handle_attempt_failed(
                self.now,
                a,
                TransportError::Io(std::io::ErrorKind::ConnectionRefused),
            )
            .unwrap();
        self.drain();
    }

    fn progress(&mut self, addr: &str) {
        let a = self.attempt(addr);
        self.s
            .handle_attempt_progress(self.now, a, AttemptProgress::TcpConnected)
            .unwrap();
        self.drain();
    }

    /// `(ms, addr)` of every Connect so far.
    fn connects(&self) -> Vec<(u64, String)> {
        self.log
            .iter()
            .filter_map(|(t, e)| match e {
                Event::Connect { addr, .. } => Some((*t, addr.to_string())),
                _ => None,
            })
            .collect()
    }

    fn aborts(&self) -> Vec<(u64, String)> {
        self.log
            .iter()
            .filter_map(|(t, e)| match e {
                Event::Abort { addr, .. } => Some((*t, addr.to_string())),
                _ => None,
            })
            .collect()
    }

    fn outcome(&self, id: DialRequestId) -> Option<(u64, Result<Option<AttemptId>, DialError>)> {
        self.log.iter().find_map(|(t, e)| match e {
            Event::DialSucceeded {
                request, attempt, ..
            } if *request == id => Some((*t, Ok(*attempt))),
            Event::DialFailed { request, error, .. } if *request == id => {
                Some((*t, Err(error.clone())))
            }
            _ => None,
        })
    }

    fn failed(&self, id: DialRequestId) -> (u64, DialError) {
        match self.outcome(id) {
            Some((t, Err(e))) => (t, e),
            other => panic!("{id} not failed: {other:?}"),
        }
    }
}

fn c(t: u64, a: &str) -> (u64, String) {
    (t, ma(a).to_string())
}

const Q1V1: &str = "/ip4/1.2.3.4/udp/1/quic-v1";
const Q2V1: &str = "/ip4/1.2.3.4/udp/2/quic-v1";
const Q1V16: &str = "/ip6/2604::2/udp/1/quic-v1";
const T1: &str = "/ip4/1.2.3.5/tcp/1";
const T2: &str = "/ip4/1.2.3.4/tcp/2";
const T1V6: &str = "/ip6/2604::2/tcp/1";
const LAN_T: &str = "/ip4/192.168.1.2/tcp/1";
const LAN_T2: &str = "/ip4/192.168.1.2/tcp/2";

#[test]
fn ranked_dial_times_and_success_aborts_the_rest() {
    let mut h = H::open();
    let p = PeerId::random();
    let id = h.dial(p, &[T1, T1V6, Q1V1, Q1V16], DialOpts::default());
    h.run_to(800);
    assert_eq!(
        h.connects(),
        vec![c(0, Q1V16), c(250, Q1V1), c(500, T1V6), c(750, T1)]
    );
    h.succeed(T1V6);
    assert_eq!(h.outcome(id).unwrap(), (800, Ok(Some(h.attempt(T1V6)))));
    let mut aborted: Vec<String> = h.aborts().into_iter().map(|(_, a)| a).collect();
    aborted.sort();
    let mut want = vec![
        ma(Q1V16).to_string(),
        ma(Q1V1).to_string(),
        ma(T1).to_string(),
    ];
    want.sort();
    assert_eq!(aborted, want);
    assert!(!h.s.is_dialing(&p));
    assert_eq!(h.s.poll_timeout(), None);
    h.check.assert_all_answered();
}

#[test]
fn failure_of_everything_in_flight_fires_next_batch_immediately() {
    let mut h = H::open();
    let p = PeerId::random();
    let id = h.dial(p, &[Q1V1, Q2V1, T1], DialOpts::default());
    h.run_to(10);
    h.fail(Q1V1); // at 10 ms: nothing in flight -> Q2V1 (due at 250) now
    h.run_to(100);
    h.fail(Q2V1); // at 100 ms -> T1 (due at 500) now
    h.run_to(120);
    h.fail(T1);
    assert_eq!(h.connects(), vec![c(0, Q1V1), c(10, Q2V1), c(100, T1)]);
    let (t, err) = h.failed(id);
    assert_eq!(t, 120);
    assert_eq!(err.cause, DialFailure::AllDialsFailed);
    assert_eq!(err.addrs.len(), 3);
    assert!(err
        .addrs
        .iter()
        .all(|(_, e)| matches!(e, AddrError::Transport(_))));
    h.check.assert_all_answered();
}

#[test]
fn public_tcp_handshake_progress_holds_next_batch() {
    let mut h = H::open();
    let p = PeerId::random();
    h.dial(p, &[T1V6, T1, T2], DialOpts::default());
    // ranks: T1V6 0, T1 250, T2 500
    h.run_to(100);
    h.progress(T1V6); // hold until 350
    h.run_to(349);
    assert_eq!(h.connects(), vec![c(0, T1V6)]);
    h.run_to(350);
    assert_eq!(h.connects(), vec![c(0, T1V6), c(350, T1)]);
    // Progress on T1 at 400 holds T2 (due 500) until 650.
    h.run_to(400);
    h.progress(T1);
    h.run_to(649);
    assert_eq!(h.connects().len(), 2);
    h.run_to(650);
    assert_eq!(h.connects().last().unwrap(), &c(650, T2));
}

#[test]
fn private_tcp_progress_does_not_hold() {
    let mut h = H::open();
    let p = PeerId::random();
    h.dial(p, &[LAN_T, LAN_T2], DialOpts::default());
    h.run_to(10);
    h.progress(LAN_T);
    h.run_to(100);
    assert_eq!(h.connects(), vec![c(0, LAN_T), c(30, LAN_T2)]);
}

#[test]
fn progress_then_failure_releases_hold() {
    let mut h = H::open();
    let p = PeerId::random();
    h.dial(p, &[T1V6, T1], DialOpts::default());
    h.run_to(100);
    h.progress(T1V6); // hold to 350
    h.run_to(200);
    h.fail(T1V6); // nothing in flight -> T1 immediately
    assert_eq!(h.connects(), vec![c(0, T1V6), c(200, T1)]);
}

#[test]
fn concurrent_requests_join_one_worker() {
    let mut h = H::open();
    let p = PeerId::random();
    let a = h.dial(p, &[Q1V1, T1], DialOpts::default());
    h.run_to(100);
    let b = h.dial(p, &[T1, Q1V1], DialOpts::default());
    h.run_to(300);
    // T1 fires at worker start + 250 for both; each address dialed once.
    assert_eq!(h.connects(), vec![c(0, Q1V1), c(250, T1)]);
    h.succeed(Q1V1);
    let att = h.attempt(Q1V1);
    assert_eq!(h.outcome(a).unwrap(), (300, Ok(Some(att))));
    assert_eq!(h.outcome(b).unwrap(), (300, Ok(Some(att))));
    assert_eq!(h.aborts(), vec![c(300, T1)]);
    // A later request starts a fresh worker.
    let d = h.dial(p, &[Q1V1], DialOpts::default());
    assert_eq!(h.connects().last().unwrap(), &c(300, Q1V1));
    assert!(h.outcome(d).is_none());
}

#[test]
fn joining_request_sees_earlier_failures() {
    let mut h = H::open();
    let p = PeerId::random();
    let a = h.dial(p, &[Q1V1, T1], DialOpts::default());
    h.run_to(10);
    h.fail(Q1V1); // T1 fires now
    let b = h.dial(p, &[Q1V1, T1], DialOpts::default());
    h.fail(T1);
    for id in [a, b] {
        let (_, e) = h.failed(id);
        assert_eq!(e.cause, DialFailure::AllDialsFailed);
        let addrs: Vec<String> = e.addrs.iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(addrs, vec![ma(Q1V1).to_string(), ma(T1).to_string()]);
    }
}

#[test]
fn request_with_only_failed_addresses_fails_at_once() {
    let mut h = H::open();
    let p = PeerId::random();
    let a = h.dial(p, &[Q1V1, T1], DialOpts::default());
    h.fail(Q1V1);
    let b = h.dial(p, &[Q1V1], DialOpts::default());
    let (_, e) = h.failed(b);
    assert_eq!(e.cause, DialFailure::AllDialsFailed);
    assert!(h.outcome(a).is_none());
}

#[test]
fn per_peer_limit_queues_beyond_eight() {
    let mut h = H::new(
        Config::new(PeerId::random())
            .with_transport_filter(|_| true)
            .with_ranker(NoDelayDialRanker),
    );
    let p = PeerId::random();
    let addrs: Vec<String> = (1..=12)
        .map(|i| format!("/ip4/1.2.3.4/udp/{i}/quic-v1"))
        .collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    h.dial(p, &refs, DialOpts::default());
    assert_eq!(h.connects().len(), PER_PEER_DIAL_LIMIT);
    assert_eq!(h.s.running_attempts(&p), 8);
    h.run_to(5);
    h.fail(&addrs[0]);
    assert_eq!(h.connects().len(), 9);
    assert_eq!(h.connects()[8], (5, ma(&addrs[8]).to_string()));
    assert_eq!(h.s.running_attempts(&p), 8);
}

#[test]
fn fd_limit_is_global() {
    let mut config = Config::new(PeerId::random()).with_transport_filter(|_| true);
    config.fd_limit = 3;
    let mut h = H::new(config);
    let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
    for p in &peers {
        h.dial(*p, &[T1, Q1V1], DialOpts::default());
    }
    h.run_to(300);
    // QUIC needs no fd: all five at 0. TCP at 250: only three get fd tokens.
    let tcp: Vec<u64> = h
        .connects()
        .into_iter()
        .filter(|(_, a)| a.contains("tcp"))
        .map(|(t, _)| t)
        .collect();
    assert_eq!(tcp, vec![250, 250, 250]);
    h.run_to(400);
    let tcp_connects = |h: &H| -> Vec<(u64, PeerId, AttemptId)> {
        h.log
            .iter()
            .filter_map(|(t, e)| match e {
                Event::Connect {
                    attempt,
                    peer,
                    addr,
                } if *addr == ma(T1) => Some((*t, *peer, *attempt)),
                _ => None,
            })
            .collect()
    };
    // Fail one running TCP dial: its fd token goes to the first waiting TCP dial.
    let (_, _, running) = tcp_connects(&h)[0];
    h.check.on_report(running);
    h.s.handle_attempt_failed(h.now, running, TransportError::Closed)
        .unwrap();
    h.drain();
    let now_running = tcp_connects(&h);
    assert_eq!(now_running.len(), 4);
    assert_eq!(now_running[3].0, 400);
    // The peer whose TCP dial still waits connects over QUIC: its waiting job is dropped
    // silently and no fd token changes hands.
    let waiting_peer = *peers
        .iter()
        .find(|p| !now_running.iter().any(|(_, q, _)| q == *p))
        .unwrap();
    let quic = h
        .log
        .iter()
        .find_map(|(_, e)| match e {
            Event::Connect { attempt, peer, .. } if *peer == waiting_peer => Some(*attempt),
            _ => None,
        })
        .unwrap();
    h.check.on_report(quic);
    h.s.handle_attempt_succeeded(h.now, quic).unwrap();
    h.drain();
    assert_eq!(tcp_connects(&h).len(), 4);
    assert_eq!(h.aborts(), vec![], "the waiting TCP job never started");
}

#[test]
fn backoff_blocks_then_expires_and_force_direct_skips_it() {
    let mut h = H::open();
    let p = PeerId::random();
    let a = h.dial(p, &[T1], DialOpts::default());
    h.fail(T1); // backoff 5 s from t = 0
    assert_eq!(h.failed(a).1.cause, DialFailure::AllDialsFailed);
    assert!(h.s.backoff().is_backed_off(h.now, &p, &ma(T1)));

    h.run_to(1_000);
    let b = h.dial(p, &[T1], DialOpts::default());
    let (_, e) = h.failed(b);
    assert_eq!(e.addrs, vec![(ma(T1), AddrError::Backoff)]);
    assert_eq!(h.connects().len(), 1);

    let forced = h.dial(
        p,
        &[T1],
        DialOpts {
            force_direct: true,
            ..DialOpts::default()
        },
    );
    assert_eq!(h.connects().last().unwrap(), &c(1_000, T1));
    h.fail(T1); // second failure: backoff 5 + 1 = 6 s from 1 s
    assert!(h.outcome(forced).is_some());

    h.run_to(6_999);
    let d = h.dial(p, &[T1], DialOpts::default());
    assert_eq!(h.failed(d).1.addrs, vec![(ma(T1), AddrError::Backoff)]);
    h.run_to(7_000);
    h.dial(p, &[T1], DialOpts::default());
    assert_eq!(h.connects().last().unwrap(), &c(7_000, T1));
    // success clears the peer's backoff
    h.succeed(T1);
    assert!(h.s.backoff().is_empty());
}

#[test]
fn cancelled_failure_adds_no_backoff() {
    let mut h = H::open();
    let p = PeerId::random();
    h.dial(p, &[T1], DialOpts::default());
    let a = h.attempt(T1);
    h.check.on_report(a);
    h.s.handle_attempt_failed(h.now, a, TransportError::Cancelled)
        .unwrap();
    h.drain();
    assert!(!h.s.backoff().is_backed_off(h.now, &p, &ma(T1)));
}

#[test]
fn attempt_timeouts_public_15s_private_5s() {
    let mut h = H::open();
    let p = PeerId::random();
    let id = h.dial(p, &[LAN_T, T1], DialOpts::default());
    h.run_to(100_000);
    // LAN_T at 0 times out at 5 s -> nothing in flight -> T1 (ranked 0 in its group) ...
    // both groups start at 0: LAN_T and T1 at 0.
    assert_eq!(h.connects(), vec![c(0, LAN_T), c(0, T1)]);
    assert_eq!(h.aborts(), vec![c(5_000, LAN_T), c(15_000, T1)]);
    let (t, e) = h.failed(id);
    assert_eq!(t, 15_000);
    assert_eq!(
        e.addrs,
        vec![
            (ma(LAN_T), AddrError::Timeout),
            (ma(T1), AddrError::Timeout)
        ]
    );
    assert!(h.s.backoff().is_backed_off(h.now - ms(90_000), &p, &ma(T1)));
    h.check.assert_all_answered();
}

#[test]
fn request_timeout_60s() {
    let mut config = Config::new(PeerId::random()).with_transport_filter(|_| true);
    config.dial_timeout = Duration::from_secs(600);
    let mut h = H::new(config);
    let p = PeerId::random();
    let id = h.dial(p, &[T1], DialOpts::default());
    h.run_to(59_999);
    assert!(h.outcome(id).is_none());
    h.run_to(60_000);
    let (t, e) = h.failed(id);
    assert_eq!((t, e.cause), (60_000, DialFailure::Timeout));
    assert_eq!(h.aborts(), vec![c(60_000, T1)]);
    assert_eq!(h.s.poll_timeout(), None);
}

#[test]
fn filtering_reports_every_dropped_address() {
    let local = PeerId::random();
    let mut h = H::new(Config::new(local));
    let p = PeerId::random();
    let other = PeerId::random();
    h.s.set_listen_addrs(vec![ma("/ip4/10.0.0.1/tcp/4001"), ma("/dns/x/tcp/1")]);
    let named = format!("/ip4/1.2.3.4/tcp/9/p2p/{p}");
    let wrong = format!("/ip4/1.2.3.4/tcp/8/p2p/{other}");
    let relay = format!("/ip4/1.2.3.4/tcp/1/p2p/{other}/p2p-circuit");
    let id = h.dial(
        p,
        &[
            &named,
            &wrong,
            "/ip4/1.2.3.4/udp/1/quic-v1",
            "/ip4/1.2.3.4/udp/1/quic",
            "/ip4/0.0.0.0/tcp/1",
            "/ip4/10.0.0.1/tcp/4001",
            "/ip6/fe80::1/tcp/1",
            &relay,
            "/ip4/1.2.3.4/tcp/9",
        ],
        DialOpts::default(),
    );
    // With the default TCP-only filter the relay address has no transport either.
    assert_eq!(h.connects(), vec![c(0, "/ip4/1.2.3.4/tcp/9")]);
    h.fail("/ip4/1.2.3.4/tcp/9");
    let (_, e) = h.failed(id);
    let got: Vec<(String, AddrError)> = e
        .addrs
        .into_iter()
        .map(|(a, e)| (a.to_string(), e))
        .collect();
    let want: Vec<(String, AddrError)> = vec![
        (wrong.clone(), AddrError::OtherPeer(other)),
        ("/ip4/1.2.3.4/udp/1/quic-v1".into(), AddrError::NoTransport),
        ("/ip4/1.2.3.4/udp/1/quic".into(), AddrError::QuicDraft29),
        (relay.clone(), AddrError::NoTransport),
        ("/ip4/0.0.0.0/tcp/1".into(), AddrError::Unspecified),
        ("/ip4/10.0.0.1/tcp/4001".into(), AddrError::OwnListenAddr),
        ("/ip6/fe80::1/tcp/1".into(), AddrError::Ip6LinkLocal),
        (
            "/ip4/1.2.3.4/tcp/9".into(),
            AddrError::Transport(TransportError::Io(std::io::ErrorKind::ConnectionRefused)),
        ),
    ];
    assert_eq!(got, want);

    let none = h.dial(p, &[], DialOpts::default());
    assert_eq!(h.failed(none).1.cause, DialFailure::NoAddresses);
    let bad = h.dial(p, &["/ip4/0.0.0.0/tcp/1"], DialOpts::default());
    assert_eq!(h.failed(bad).1.cause, DialFailure::NoGoodAddresses);
    let me = h.dial(local, &["/ip4/1.2.3.4/tcp/1"], DialOpts::default());
    assert_eq!(h.failed(me).1.cause, DialFailure::DialToSelf);
}

#[test]
fn low_priority_and_force_direct_relay() {
    let mut h = H::open();
    let p = PeerId::random();
    let relay = format!("/ip4/5.6.7.8/tcp/1/p2p/{}/p2p-circuit", PeerId::random());
    let id = h.dial(
        p,
        &[
            "/ip4/1.2.3.4/udp/1/quic-v1",
            "/ip4/1.2.3.4/udp/1/quic-v1/webtransport",
            "/ip4/1.2.3.4/udp/1/quic",
            "/ip4/1.2.3.4/udp/2/quic-v1/webtransport",
            "/ip4/1.2.3.4/tcp/1",
            "/ip4/1.2.3.4/tcp/1/ws",
            "/ip4/1.2.3.4/tcp/2/wss",
            &relay,
        ],
        DialOpts {
            force_direct: true,
            ..DialOpts::default()
        },
    );
    h.run_to(5_000);
    let mut dialed: Vec<String> = h.connects().into_iter().map(|(_, a)| a).collect();
    dialed.sort();
    let mut want = vec![
        "/ip4/1.2.3.4/udp/1/quic-v1".to_string(),
        "/ip4/1.2.3.4/udp/2/quic-v1/webtransport".into(),
        "/ip4/1.2.3.4/tcp/1".into(),
        "/ip4/1.2.3.4/tcp/2/wss".into(),
    ];
    want.sort();
    assert_eq!(dialed, want);
    h.s.cancel(h.now, id).unwrap();
    h.drain();
    let (_, e) = h.failed(id);
    assert_eq!(e.cause, DialFailure::Cancelled);
    let reasons: Vec<AddrError> = e.addrs.into_iter().map(|(_, e)| e).collect();
    assert_eq!(
        reasons,
        vec![
            AddrError::LowPriority,
            AddrError::LowPriority,
            AddrError::LowPriority,
            AddrError::RelayExcluded
        ]
    );
    assert_eq!(h.aborts().len(), 4);
    assert_eq!(h.s.cancel(h.now, id), Err(Error::UnknownRequest(id)));
}

#[test]
fn simultaneous_connect_requeues_with_no_delay() {
    let mut h = H::open();
    let p = PeerId::random();
    h.dial(p, &[Q1V1, Q2V1, T1], DialOpts::default());
    h.run_to(10);
    h.dial(
        p,
        &[Q1V1, Q2V1, T1],
        DialOpts {
            simultaneous_connect: true,
            force_direct: true,
        },
    );
    assert_eq!(h.connects(), vec![c(0, Q1V1), c(10, Q2V1), c(10, T1)]);
}

#[test]
fn peer_connected_answers_and_clears_backoff() {
    let mut h = H::open();
    let p = PeerId::random();
    let a = h.dial(p, &[T1, T2], DialOpts::default());
    h.fail(T1);
    assert!(h.s.backoff().until(&p, &ma(T1)).is_some());
    let forced = h.dial(
        p,
        &[T2],
        DialOpts {
            force_direct: true,
            ..DialOpts::default()
        },
    );
    h.s.handle_peer_connected(h.now, p, false);
    h.drain();
    assert!(h.s.backoff().is_empty());
    assert_eq!(h.outcome(a).unwrap().1, Ok(None));
    assert!(
        h.outcome(forced).is_none(),
        "relayed conn does not satisfy force-direct"
    );
    h.s.handle_peer_connected(h.now, p, true);
    h.drain();
    assert_eq!(h.outcome(forced).unwrap().1, Ok(None));
    assert_eq!(h.aborts(), vec![c(0, T2)]);
    h.check.assert_all_answered();
}

#[test]
fn reports_for_unknown_attempts_are_errors() {
    let mut h = H::open();
    let p = PeerId::random();
    h.dial(p, &[T1], DialOpts::default());
    let a = h.attempt(T1);
    h.succeed(T1);
    assert_eq!(
        h.s.handle_attempt_succeeded(h.now, a),
        Err(Error::UnknownAttempt(a))
    );
    assert_eq!(
        h.s.handle_attempt_failed(h.now, a, TransportError::Cancelled),
        Err(Error::UnknownAttempt(a))
    );
    assert_eq!(
        h.s.handle_attempt_progress(h.now, a, AttemptProgress::TcpConnected),
        Err(Error::UnknownAttempt(a))
    );
}

#[test]
fn black_hole_blocks_udp_then_probes_and_recovers() {
    let mut h = H::open();
    // 100 failed public QUIC dials -> UDP Blocked.
    for _ in 0..BLACK_HOLE_WINDOW {
        let p = PeerId::random();
        h.dial(p, &[Q1V1], DialOpts::default());
        h.fail(Q1V1);
    }
    let udp = |h: &H| h.s.black_hole().udp.as_ref().unwrap().state();
    assert_eq!(udp(&h), BlackHoleState::Blocked);
    // requests so far: 100 (all probing). Next 99 refused, the 200th is a probe.
    let mut refused = 0;
    let mut probe_at = None;
    for i in 1..=BLACK_HOLE_WINDOW {
        let p = PeerId::random();
        let id = h.dial(p, &[Q1V1, T1], DialOpts::default());
        match h.outcome(id) {
            None => {
                // not refused: is the QUIC address being dialed?
                if h.connects()
                    .last()
                    .map(|(_, a)| a.contains("quic"))
                    .unwrap_or(false)
                {
                    probe_at = Some(i);
                    h.succeed(Q1V1);
                    break;
                }
                h.s.cancel(h.now, id).unwrap();
                h.drain();
                refused += 1;
            }
            Some(_) => unreachable!("T1 keeps the request alive"),
        }
    }
    assert_eq!(refused, 99);
    assert_eq!(probe_at, Some(100));
    // A success while blocked resets to probing.
    assert_eq!(udp(&h), BlackHoleState::Probing);
    // Private addresses are never filtered.
    let p = PeerId::random();
    h.dial(p, &["/ip4/192.168.1.1/udp/1/quic-v1"], DialOpts::default());
    assert!(h.connects().last().unwrap().1.contains("192.168"));
}

#[test]
fn black_hole_refusal_is_reported() {
    let mut config = Config::new(PeerId::random()).with_transport_filter(|_| true);
    config.black_hole = BlackHoleDetector {
        udp: Some(super::super::BlackHoleCounter::new(2, 1)),
        ipv6: None,
        read_only: false,
    };
    let mut h = H::new(config);
    for _ in 0..2 {
        h.dial(PeerId::random(), &[Q1V1], DialOpts::default());
        h.fail(Q1V1);
    }
    let id = h.dial(PeerId::random(), &[Q1V1], DialOpts::default()); // request 3: refused
    let (_, e) = h.failed(id);
    assert_eq!(e.cause, DialFailure::NoGoodAddresses);
    assert_eq!(e.addrs, vec![(ma(Q1V1), AddrError::BlackHole)]);
    h.dial(PeerId::random(), &[Q1V1], DialOpts::default()); // request 4: probe
    assert_eq!(h.connects().len(), 3);
}

#[derive(Debug, Clone)]
enum Op {
    Dial {
        peer: usize,
        addrs: Vec<usize>,
        force: bool,
        sim: bool,
    },
    Succeed(usize),
    Fail(usize, bool),
    Progress(usize),
    Cancel(usize),
    Connected(usize, bool),
    Advance(u64),
}

const POOL: [&str; 12] = [
    "/ip4/1.2.3.4/udp/1/quic-v1",
    "/ip4/1.2.3.4/udp/2/quic-v1",
    "/ip6/2604::1/udp/1/quic-v1",
    "/ip4/1.2.3.4/tcp/1",
    "/ip4/1.2.3.4/tcp/2",
    "/ip6/2604::1/tcp/1",
    "/ip4/192.168.0.1/tcp/1",
    "/ip4/192.168.0.1/udp/1/quic-v1",
    "/ip4/1.2.3.4/udp/1/webrtc-direct",
    "/ip4/1.2.3.4/tcp/3/ws",
    "/ip4/5.6.7.8/tcp/1/p2p-circuit",
    "/dns/example.com/tcp/1",
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, proptest::collection::vec(0..POOL.len(), 0..12), any::<bool>(), any::<bool>())
            .prop_map(|(peer, addrs, force, sim)| Op::Dial { peer, addrs, force, sim }),
        2 => (0..16usize).prop_map(Op::Succeed),
        3 => (0..16usize, any::<bool>()).prop_map(|(i, c)| Op::Fail(i, c)),
        1 => (0..16usize).prop_map(Op::Progress),
        1 => (0..8usize).prop_map(Op::Cancel),
        1 => (0..3usize, any::<bool>()).prop_map(|(p, d)| Op::Connected(p, d)),
        3 => (0..20_000u64).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn invariants_hold_for_random_drivers(ops in proptest::collection::vec(op(), 1..60), no_delay in any::<bool>()) {
        let mut config = Config::new(PeerId::random()).with_transport_filter(|_| true);
        if no_delay {
            config = config.with_ranker(NoDelayDialRanker);
        }
        config.fd_limit = 4;
        let mut h = H::new(config);
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        for op in ops {
            match op {
                Op::Dial { peer, addrs, force, sim } => {
                    let addrs: Vec<&str> = addrs.into_iter().map(|i| POOL[i]).collect();
                    h.dial(peers[peer], &addrs, DialOpts { force_direct: force, simultaneous_connect: sim });
                }
                Op::Succeed(i) | Op::Fail(i, _) | Op::Progress(i) => {
                    let running = h.check.running();
                    if running.is_empty() { continue; }
                    let a = running[i % running.len()];
                    match op {
                        Op::Succeed(_) => {
                            h.check.on_report(a);
                            h.s.handle_attempt_succeeded(h.now, a).unwrap();
                        }
                        Op::Fail(_, cancelled) => {
                            h.check.on_report(a);
                            let cause = if cancelled { TransportError::Cancelled } else { TransportError::Closed };
                            h.s.handle_attempt_failed(h.now, a, cause).unwrap();
                        }
                        _ => h.s.handle_attempt_progress(h.now, a, AttemptProgress::TcpConnected).unwrap(),
                    }
                    h.drain();
                }
                Op::Cancel(i) => {
                    let pending = h.check.pending();
                    if pending.is_empty() { continue; }
                    h.s.cancel(h.now, pending[i % pending.len()]).unwrap();
                    h.drain();
                }
                Op::Connected(p, direct) => {
                    h.s.handle_peer_connected(h.now, peers[p], direct);
                    h.drain();
                }
                Op::Advance(d) => {
                    let at = h.elapsed() + d;
                    h.run_to(at);
                }
            }
        }
        let end = h.elapsed() + 120_000;
        h.run_to(end);
        h.check.assert_all_answered();
        prop_assert_eq!(h.s.poll_timeout(), None);
    }
}
