//! Fuzz entry points for `dial` and `multiaddr`: `dial_scheduler` and `multiaddr_parse`.

use std::time::Duration;

use libp2p_identity::PeerId;

use crate::dial::check::Checker;
use crate::dial::{
    AttemptId, AttemptProgress, Config, DefaultDialRanker, DialOpts, DialRanker, DialScheduler,
    NoDelayDialRanker, TransportError,
};
use crate::multiaddr::{
    has_ip4, has_ip6, has_tcp, has_udp, ip_addr, ip_scope, ip_version, is_dialable_tcp,
    is_fd_consuming, is_ip6_link_local, is_ip_unspecified, is_private_addr, is_public_addr,
    is_quic, is_relay, split_p2p, tcp_port, transport_kind, udp_port, with_p2p, Multiaddr,
};
use crate::time::Instant;

/// Addresses the scheduler target picks from (public/private, QUIC/TCP/WebRTC/relay/DNS).
const POOL: [&str; 14] = [
    "/ip4/1.2.3.4/udp/1/quic-v1",
    "/ip4/1.2.3.4/udp/2/quic-v1",
    "/ip6/2604::1/udp/1/quic-v1",
    "/ip4/1.2.3.4/tcp/1",
    "/ip4/1.2.3.4/tcp/2",
    "/ip6/2604::1/tcp/1",
    "/ip4/192.168.0.1/tcp/1",
    "/ip4/192.168.0.1/udp/1/quic-v1",
    "/ip4/1.2.3.4/udp/1/webrtc-direct",
    "/ip4/1.2.3.4/tcp/1/ws",
    "/ip4/5.6.7.8/tcp/1/p2p-circuit",
    "/dns/example.com/tcp/1",
    "/ip4/0.0.0.0/tcp/1",
    "/ip6/fe80::1/tcp/1",
];

struct Cursor<'a> {
    data: &'a [u8],
}

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }
}

/// Deterministic peer ids (ed25519 keys from fixed seeds) so inputs replay identically.
fn peer(i: u8) -> PeerId {
    let mut seed = [i.wrapping_add(1); 32];
    match libp2p_identity::Keypair::ed25519_from_bytes(&mut seed) {
        Ok(k) => k.public().to_peer_id(),
        Err(_) => PeerId::random(),
    }
}

fn pick<T: Copy>(items: &[T], b: u8) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        items.get(usize::from(b) % items.len()).copied()
    }
}

/// Interprets `data` as a driver of a [`DialScheduler`]: dial requests (pool addresses or raw
/// multiaddr bytes), attempt progress/success/failure, cancellations, inbound connections,
/// bogus reports and clock advances. Asserts the scheduler's invariants (see
/// `dial::check`): at most the per-peer limit in flight, the fd limit, no address dialed
/// twice per worker, every request answered exactly once — and, after the request timeout
/// elapses at the end, nothing left pending or running.
pub fn dial_scheduler(data: &[u8], start: Instant) {
    let mut cur = Cursor { data };
    let Some(setup) = cur.byte() else {
        return;
    };
    let local = peer(3);
    let mut config = Config::new(local).with_transport_filter(|_| true);
    config.fd_limit = usize::from(setup & 0x07) + 1;
    config.per_peer_limit = usize::from((setup >> 3) & 0x07) + 1;
    if setup & 0x40 != 0 {
        config = config.with_ranker(NoDelayDialRanker);
    }
    let mut check = Checker::new(config.per_peer_limit, config.fd_limit);
    let mut s = DialScheduler::new(config);
    let mut now = start;
    let peers = [peer(0), peer(1), peer(2), local];
    s.set_listen_addrs(vec!["/ip4/1.2.3.4/tcp/2"
        .parse()
        .unwrap_or(Multiaddr::empty())]);

    let drain = |s: &mut DialScheduler, check: &mut Checker| {
        while let Some(e) = s.poll_event() {
            check.on_event(&e);
        }
    };
    let advance = |s: &mut DialScheduler, check: &mut Checker, now: &mut Instant, to: Instant| {
        while let Some(t) = s.poll_timeout() {
            if t > to {
                break;
            }
            *now = (*now).max(t);
            s.handle_timeout(*now);
            drain(s, check);
        }
        *now = (*now).max(to);
    };

    let mut steps = 0;
    while let Some(op) = cur.byte() {
        steps += 1;
        if steps > 512 {
            break;
        }
        let arg = cur.byte().unwrap_or(0);
        match op % 9 {
            0 => {
                let n = usize::from(arg >> 4);
                let flags = arg & 0x0f;
                let addrs: Vec<Multiaddr> = cur
                    .bytes(n)
                    .iter()
                    .filter_map(|b| pick(&POOL, *b))
                    .filter_map(|s| s.parse().ok())
                    .collect();
                let p = peers.get(usize::from(flags & 3)).copied().unwrap_or(local);
                let opts = DialOpts {
                    force_direct: flags & 4 != 0,
                    simultaneous_connect: flags & 8 != 0,
                };
                let id = s.dial(now, p, addrs, opts);
                check.on_dial(id, p);
                drain(&mut s, &mut check);
            }
            1..=3 => {
                let Some(a) = pick(&check.running(), arg) else {
                    continue;
                };
                let r = match op % 9 {
                    1 => {
                        check.on_report(a);
                        s.handle_attempt_succeeded(now, a)
                    }
                    2 => {
                        check.on_report(a);
                        let cause = match arg % 3 {
                            0 => TransportError::Cancelled,
                            1 => TransportError::Io(std::io::ErrorKind::ConnectionRefused),
                            _ => TransportError::Closed,
                        };
                        s.handle_attempt_failed(now, a, cause)
                    }
                    _ => s.handle_attempt_progress(now, a, AttemptProgress::TcpConnected),
                };
                assert!(r.is_ok(), "report for running attempt refused: {r:?}");
                drain(&mut s, &mut check);
            }
            4 => {
                if let Some(r) = pick(&check.pending(), arg) {
                    assert!(s.cancel(now, r).is_ok());
                    drain(&mut s, &mut check);
                }
            }
            5 => {
                let p = peers.get(usize::from(arg & 3)).copied().unwrap_or(local);
                s.handle_peer_connected(now, p, arg & 4 != 0);
                drain(&mut s, &mut check);
            }
            6 => {
                let ms = u64::from(cur.u16().unwrap_or(0)) * u64::from(arg % 8 + 1);
                let to = now + Duration::from_millis(ms);
                advance(&mut s, &mut check, &mut now, to);
            }
            7 => {
                // A report for an attempt the driver does not know must be refused.
                let a = AttemptId(u64::from(arg));
                if !check.running().contains(&a) {
                    assert!(s.handle_attempt_succeeded(now, a).is_err());
                    assert!(s
                        .handle_attempt_failed(now, a, TransportError::Cancelled)
                        .is_err());
                }
                drain(&mut s, &mut check);
            }
            _ => {
                let raw = cur.bytes(usize::from(arg % 64)).to_vec();
                if let Ok(addr) = Multiaddr::try_from(raw) {
                    let p = peers.get(usize::from(arg & 3)).copied().unwrap_or(local);
                    let id = s.dial(now, p, vec![addr], DialOpts::default());
                    check.on_dial(id, p);
                    drain(&mut s, &mut check);
                }
            }
        }
    }
    let end = now + Duration::from_secs(200);
    advance(&mut s, &mut check, &mut now, end);
    check.assert_all_answered();
    assert!(s.poll_timeout().is_none());
}

/// Parses `data` as binary and (if UTF-8) text multiaddr, then runs every classification
/// helper and the rankers on the result; checks the binary round trip and `/p2p` helpers.
pub fn multiaddr_parse(data: &[u8], _now: Instant) {
    let mut parsed = Vec::new();
    if let Ok(a) = Multiaddr::try_from(data.to_vec()) {
        assert_eq!(Multiaddr::try_from(a.to_vec()).ok().as_ref(), Some(&a));
        parsed.push(a);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(a) = text.parse::<Multiaddr>() {
            assert_eq!(Multiaddr::try_from(a.to_vec()).ok().as_ref(), Some(&a));
            parsed.push(a);
        }
    }
    for a in &parsed {
        let _ = a.to_string();
        let _ = (
            transport_kind(a),
            ip_version(a),
            ip_scope(a),
            is_dialable_tcp(a),
            is_fd_consuming(a),
            is_relay(a),
            is_quic(a),
            is_ip_unspecified(a),
            is_ip6_link_local(a),
            has_ip4(a) || has_ip6(a) || has_tcp(a) || has_udp(a),
            udp_port(a),
            tcp_port(a),
            ip_addr(a),
        );
        assert!(
            !(is_private_addr(a) && is_public_addr(a)),
            "{a} private and public"
        );
        let (base, id) = split_p2p(a);
        if let Some(id) = id {
            let back = with_p2p(base.clone(), id);
            match base.iter().last() {
                // `…/p2p/X/p2p/X`: `with_p2p` keeps an address already naming the peer.
                Some(crate::multiaddr::Protocol::P2p(prev)) if prev == id => {
                    assert_eq!(back.ok().as_ref(), Some(&base), "{a}");
                }
                // `…/p2p/A/p2p/B`: the rest names another peer, which `with_p2p` refuses
                // (as rust-libp2p's `Multiaddr::with_p2p` does).
                Some(crate::multiaddr::Protocol::P2p(_)) => assert!(back.is_err(), "{a}"),
                _ => assert_eq!(back.ok().as_ref(), Some(a)),
            }
        }
        let p = peer(0);
        if let Ok(with) = with_p2p(base.clone(), p) {
            assert_eq!(split_p2p(&with), (base, Some(p)));
        }
        let list = vec![a.clone(), a.clone()];
        assert_eq!(DefaultDialRanker.rank(&list).len(), 2);
        assert_eq!(NoDelayDialRanker.rank(&list).len(), 2);
    }
    if parsed.len() == 2 {
        let _ = DefaultDialRanker.rank(&parsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(name: &str, f: fn(&[u8], Instant)) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(name);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            f(&data, plait_testkit::start());
            n += 1;
        }
        assert!(n >= 2, "{name}: {n} seeds");
    }

    #[test]
    fn replay_dial_scheduler_corpus() {
        replay("dial_scheduler", dial_scheduler);
    }

    #[test]
    fn replay_multiaddr_parse_corpus() {
        replay("multiaddr_parse", multiaddr_parse);
    }

    #[test]
    fn smoke() {
        for len in 0..64u8 {
            let data: Vec<u8> = (0..len)
                .map(|i| i.wrapping_mul(37).wrapping_add(len))
                .collect();
            dial_scheduler(&data, plait_testkit::start());
            multiaddr_parse(&data, plait_testkit::start());
        }
    }

    #[test]
    fn seeded_random_inputs() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..2_000 {
            let len = rng.gen_range(0..160);
            let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            dial_scheduler(&data, plait_testkit::start());
            multiaddr_parse(&data, plait_testkit::start());
        }
    }
}
