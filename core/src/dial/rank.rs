//! Address ranking: which address to dial when, relative to the start of a peer's dial.
//!
//! [`DefaultDialRanker`] is go-libp2p's `DefaultDialRanker` (p2p/net/swarm/dial_ranker.go):
//! QUIC before TCP, IPv6 before IPv4 with happy-eyeballs staggering, private and public
//! addresses ranked in parallel, relays after direct addresses, anything else last.
//! [`NoDelayDialRanker`] dials everything at once (simultaneous connect / hole punching).

use std::time::Duration;

use crate::multiaddr::{
    has_ip4, has_ip6, has_tcp, is_private_addr, is_quic, is_relay, Multiaddr, Protocol,
};

/// TCP dials are delayed by this much after the last QUIC dial, and successive TCP dials by
/// this much (public addresses; RFC 8305 happy eyeballs, roughly one RTT).
pub const PUBLIC_TCP_DELAY: Duration = Duration::from_millis(250);
/// [`PUBLIC_TCP_DELAY`] for private addresses.
pub const PRIVATE_TCP_DELAY: Duration = Duration::from_millis(30);
/// Delay between successive QUIC dials (public addresses).
pub const PUBLIC_QUIC_DELAY: Duration = Duration::from_millis(250);
/// [`PUBLIC_QUIC_DELAY`] for private addresses.
pub const PRIVATE_QUIC_DELAY: Duration = Duration::from_millis(30);
/// Relay addresses are delayed by this much when a public direct address exists.
pub const RELAY_DELAY: Duration = Duration::from_millis(500);
/// Delay of WebRTC-direct and other transports after the last QUIC/TCP dial (public).
pub const PUBLIC_OTHER_DELAY: Duration = Duration::from_secs(1);
/// [`PUBLIC_OTHER_DELAY`] for private addresses.
pub const PRIVATE_OTHER_DELAY: Duration = Duration::from_millis(100);

/// Decides when each address of a peer is dialed.
///
/// `rank` is a pure function: every input address appears exactly once in the output, paired
/// with its delay from the start of the peer's dial. The output order is the dial order among
/// equal delays.
pub trait DialRanker: Send + Sync {
    /// Ranks `addrs` (already filtered, de-duplicated, without trailing `/p2p`).
    fn rank(&self, addrs: &[Multiaddr]) -> Vec<(Duration, Multiaddr)>;
}

/// go-libp2p's default ranking with its exact constants.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultDialRanker;

/// Dials every address immediately.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDelayDialRanker;

impl DialRanker for NoDelayDialRanker {
    fn rank(&self, addrs: &[Multiaddr]) -> Vec<(Duration, Multiaddr)> {
        addrs.iter().map(|a| (Duration::ZERO, a.clone())).collect()
    }
}

impl DialRanker for DefaultDialRanker {
    fn rank(&self, addrs: &[Multiaddr]) -> Vec<(Duration, Multiaddr)> {
        let mut relay = Vec::new();
        let mut private = Vec::new();
        let mut public = Vec::new();
        let mut other = Vec::new();
        for a in addrs {
            if is_relay(a) {
                relay.push(a.clone());
            } else if is_private_addr(a) {
                private.push(a.clone());
            } else if has_ip4(a) || has_ip6(a) {
                public.push(a.clone());
            } else {
                other.push(a.clone());
            }
        }
        let relay_offset = if public.is_empty() {
            Duration::ZERO
        } else {
            RELAY_DELAY
        };
        let mut res = Vec::with_capacity(addrs.len());
        res.extend(group_delays(
            private,
            PRIVATE_TCP_DELAY,
            PRIVATE_QUIC_DELAY,
            PRIVATE_OTHER_DELAY,
            Duration::ZERO,
        ));
        res.extend(group_delays(
            public,
            PUBLIC_TCP_DELAY,
            PUBLIC_QUIC_DELAY,
            PUBLIC_OTHER_DELAY,
            Duration::ZERO,
        ));
        res.extend(group_delays(
            relay,
            PUBLIC_TCP_DELAY,
            PUBLIC_QUIC_DELAY,
            PUBLIC_OTHER_DELAY,
            relay_offset,
        ));
        // go takes the delay of the *last* element so far, not the maximum.
        let last = res.last().map_or(Duration::ZERO, |(d, _)| *d);
        res.extend(other.into_iter().map(|a| (last + PUBLIC_OTHER_DELAY, a)));
        res
    }
}

/// go `score`: lower is dialed first; the low 16 bits are the port so low ports go first.
/// QUICv1-IPv6 < QUIC-draft29-IPv6 < QUICv1-IPv4 < draft29-IPv4 < WebTransport-IPv6 <
/// WebTransport-IPv4 < TCP-IPv6 < TCP-IPv4 < WebRTC-direct < others.
fn score(a: &Multiaddr) -> u32 {
    let ip4_weight = if has_ip4(a) { 1 << 18 } else { 0 };
    let mut udp = None;
    let mut tcp = None;
    let (mut wt, mut quic, mut quic_v1, mut webrtc_direct) = (false, false, false, false);
    for p in a.iter() {
        match p {
            Protocol::Udp(port) if udp.is_none() => udp = Some(port),
            Protocol::Tcp(port) if tcp.is_none() => tcp = Some(port),
            Protocol::WebTransport => wt = true,
            Protocol::Quic => quic = true,
            Protocol::QuicV1 => quic_v1 = true,
            Protocol::WebRTCDirect => webrtc_direct = true,
            _ => {}
        }
    }
    let udp = u32::from(udp.unwrap_or(0));
    if wt {
        ip4_weight + (1 << 19) + udp
    } else if quic {
        ip4_weight + (1 << 17) + udp
    } else if quic_v1 {
        ip4_weight + udp
    } else if let Some(port) = tcp {
        ip4_weight + (1 << 20) + u32::from(port)
    } else if webrtc_direct {
        1 << 21
    } else {
        1 << 30
    }
}

/// go `getAddrDelay` for one group (private, public or relay).
fn group_delays(
    mut addrs: Vec<Multiaddr>,
    tcp_delay: Duration,
    quic_delay: Duration,
    other_delay: Duration,
    offset: Duration,
) -> Vec<(Duration, Multiaddr)> {
    if addrs.is_empty() {
        return Vec::new();
    }
    // Stable, so equal scores keep the caller's order (go's sort.Slice is unstable; its tests
    // never depend on the order of equal scores).
    addrs.sort_by_key(score);

    let mut happy_eyeballs_quic = false;
    let mut happy_eyeballs_tcp = false;
    let mut search_from = 0;
    if addrs.first().is_some_and(|a| is_quic(a) && has_ip6(a)) {
        if let Some(j) = (1..addrs.len()).find(|&j| is_quic(&addrs[j]) && has_ip4(&addrs[j])) {
            // Move the first QUIC IPv4 address to position 1.
            addrs[1..=j].rotate_right(1);
            happy_eyeballs_quic = true;
            search_from = j + 1;
        }
    }
    let tcp_start = (search_from..addrs.len())
        .find(|&i| has_tcp(&addrs[i]))
        .unwrap_or(addrs.len());
    if tcp_start < addrs.len() && has_ip6(&addrs[tcp_start]) {
        if let Some(j) =
            (tcp_start + 1..addrs.len()).find(|&j| has_tcp(&addrs[j]) && has_ip4(&addrs[j]))
        {
            // Move the first TCP IPv4 address right after the first TCP address.
            addrs[tcp_start + 1..=j].rotate_right(1);
            happy_eyeballs_tcp = true;
        }
    }

    let mut tcp_first_dial_delay = Duration::ZERO;
    let mut last_quic_or_tcp_delay = Duration::ZERO;
    let mut res = Vec::with_capacity(addrs.len());
    for (i, addr) in addrs.into_iter().enumerate() {
        let delay = if is_quic(&addr) {
            let d = match i {
                0 => Duration::ZERO,
                1 => quic_delay,
                _ if happy_eyeballs_quic => 2 * quic_delay,
                _ => quic_delay,
            };
            last_quic_or_tcp_delay = d;
            tcp_first_dial_delay = d + tcp_delay;
            d
        } else if has_tcp(&addr) {
            // go compares against tcp_start even for TCP addresses sorted before it (possible
            // only when the QUIC happy-eyeballs move skipped past them); those get 0 + offset.
            let base = if i == tcp_start + 1 {
                tcp_delay
            } else if i > tcp_start + 1 {
                if happy_eyeballs_tcp {
                    2 * tcp_delay
                } else {
                    tcp_delay
                }
            } else {
                Duration::ZERO
            };
            let d = base + tcp_first_dial_delay;
            last_quic_or_tcp_delay = d;
            d
        } else {
            last_quic_or_tcp_delay + other_delay
        };
        res.push((offset + delay, addr));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p_identity::PeerId;

    const P: Duration = PUBLIC_QUIC_DELAY; // == PUBLIC_TCP_DELAY
    const O: Duration = PUBLIC_OTHER_DELAY;

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    /// Compares as go's tests do: sort both sides by (delay, string form).
    fn check(name: &str, ranker: &dyn DialRanker, input: &[&str], expected: &[(&str, Duration)]) {
        let addrs: Vec<Multiaddr> = input.iter().map(|s| ma(s)).collect();
        let mut got: Vec<(Duration, String)> = ranker
            .rank(&addrs)
            .into_iter()
            .map(|(d, a)| (d, a.to_string()))
            .collect();
        let mut want: Vec<(Duration, String)> = expected
            .iter()
            .map(|(s, d)| (*d, ma(s).to_string()))
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{name}");
    }

    const Q1V1: &str = "/ip4/1.2.3.4/udp/1/quic-v1";
    const Q2V1: &str = "/ip4/1.2.3.4/udp/2/quic-v1";
    const Q3V1: &str = "/ip4/1.2.3.4/udp/3/quic-v1";
    const Q4V1: &str = "/ip4/1.2.3.4/udp/4/quic-v1";
    const WT1: &str = "/ip4/1.2.3.4/udp/1/quic-v1/webtransport";
    const Q1V16: &str = "/ip6/1::2/udp/1/quic-v1";
    const Q2V16: &str = "/ip6/1::2/udp/2/quic-v1";
    const Q3V16: &str = "/ip6/1::2/udp/3/quic-v1";
    const T1: &str = "/ip4/1.2.3.5/tcp/1";
    const T1V6: &str = "/ip6/1::2/tcp/1";
    const T2: &str = "/ip4/1.2.3.4/tcp/2";
    const T3: &str = "/ip4/1.2.3.4/tcp/3";
    const WRTC1: &str = "/ip4/1.2.3.4/udp/1/webrtc-direct";
    const WRTC1V6: &str = "/ip6/1::2/udp/1/webrtc-direct";
    const ONION: &str = "/onion3/vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd:1234";
    const ONLY_IP: &str = "/ip4/1.2.3.4";

    #[test]
    fn go_no_delay_ranker() {
        let all = [
            Q1V1,
            Q2V1,
            Q3V1,
            Q4V1,
            WT1,
            T1,
            "/ip4/1.1.1.1/udp/1/webrtc-direct",
        ];
        let want: Vec<(&str, Duration)> = all.iter().map(|a| (*a, Duration::ZERO)).collect();
        check("no delay", &NoDelayDialRanker, &all, &want);
    }

    #[test]
    fn go_quic_delay() {
        let r = &DefaultDialRanker;
        check(
            "quic-ipv4",
            r,
            &[Q1V1, Q2V1, Q3V1],
            &[(Q1V1, Duration::ZERO), (Q2V1, P), (Q3V1, P)],
        );
        check(
            "quic-ipv6",
            r,
            &[Q1V16, Q2V16, Q3V16],
            &[(Q1V16, Duration::ZERO), (Q2V16, P), (Q3V16, P)],
        );
        check(
            "quic-ip4-ip6",
            r,
            &[Q1V16, Q2V1],
            &[(Q1V16, Duration::ZERO), (Q2V1, P)],
        );
        check(
            "quic-quic-v1-webtransport",
            r,
            &[Q1V16, Q1V1, Q2V1, Q3V1, WT1],
            &[
                (Q1V16, Duration::ZERO),
                (Q1V1, P),
                (Q2V1, 2 * P),
                (Q3V1, 2 * P),
                (WT1, 2 * P),
            ],
        );
        check(
            "wt-ranking",
            r,
            &[Q1V16, Q2V16, Q3V16, WT1],
            &[
                (Q1V16, Duration::ZERO),
                (WT1, P),
                (Q2V16, 2 * P),
                (Q3V16, 2 * P),
            ],
        );
    }

    #[test]
    fn go_tcp_delay() {
        let r = &DefaultDialRanker;
        check(
            "quic-with-tcp-ip6-ip4",
            r,
            &[Q1V1, Q1V16, Q2V16, Q3V16, Q2V1, T1, T1V6, T2, T3],
            &[
                (Q1V16, Duration::ZERO),
                (Q1V1, P),
                (Q2V16, 2 * P),
                (Q3V16, 2 * P),
                (Q2V1, 2 * P),
                (T1V6, 3 * P),
                (T1, 4 * P),
                (T2, 5 * P),
                (T3, 5 * P),
            ],
        );
        check(
            "quic-ip4-with-tcp",
            r,
            &[Q1V1, T2, T1V6, T1],
            &[(Q1V1, Duration::ZERO), (T1V6, P), (T1, 2 * P), (T2, 3 * P)],
        );
        check(
            "quic-ip4-with-tcp-ipv4",
            r,
            &[Q1V1, T2, T3, T1],
            &[(Q1V1, Duration::ZERO), (T1, P), (T2, 2 * P), (T3, 2 * P)],
        );
        check(
            "quic-ip4-with-two-tcp",
            r,
            &[Q1V1, T1V6, T2],
            &[(Q1V1, Duration::ZERO), (T1V6, P), (T2, 2 * P)],
        );
        check(
            "tcp-ip4-ip6",
            r,
            &[T1, T2, T1V6, T3],
            &[(T1V6, Duration::ZERO), (T1, P), (T2, 2 * P), (T3, 2 * P)],
        );
        check("empty", r, &[], &[]);
    }

    #[test]
    fn go_relay_delay() {
        let pid = PeerId::random();
        let r1 = format!("/ip4/1.2.3.4/tcp/1/p2p-circuit/p2p/{pid}");
        let r2 = format!("/ip4/1.2.3.4/udp/1/quic/p2p-circuit/p2p/{pid}");
        check(
            "relay address delayed",
            &DefaultDialRanker,
            &[Q1V1, Q2V1, &r1, &r2],
            &[
                (Q1V1, Duration::ZERO),
                (Q2V1, P),
                (&r2, RELAY_DELAY),
                (&r1, PUBLIC_TCP_DELAY + RELAY_DELAY),
            ],
        );
        // Without a public direct address relays are not delayed.
        check(
            "relay only",
            &DefaultDialRanker,
            &[&r1, &r2],
            &[(&r2, Duration::ZERO), (&r1, PUBLIC_TCP_DELAY)],
        );
    }

    #[test]
    fn go_other_transport_delay() {
        let r = &DefaultDialRanker;
        check(
            "quic-with-other",
            r,
            &[Q1V1, Q1V16, WRTC1, WRTC1V6, ONION, ONLY_IP],
            &[
                (Q1V16, Duration::ZERO),
                (Q1V1, P),
                (WRTC1, P + O),
                (WRTC1V6, P + O),
                (ONLY_IP, P + O),
                (ONION, P + 2 * O),
            ],
        );
        check(
            "quic-and-tcp-with-other",
            r,
            &[Q1V1, T1, T1V6, WRTC1, WRTC1V6, ONION, ONLY_IP],
            &[
                (Q1V1, Duration::ZERO),
                (T1V6, P),
                (T1, 2 * P),
                (WRTC1, 2 * P + O),
                (WRTC1V6, 2 * P + O),
                (ONLY_IP, 2 * P + O),
                (ONION, 2 * P + 2 * O),
            ],
        );
        check("only-non-ip-addr", r, &[ONION], &[(ONION, O)]);
    }

    #[test]
    fn private_and_public_in_parallel() {
        let r = &DefaultDialRanker;
        let pq = "/ip4/192.168.1.2/udp/1/quic-v1";
        let pt = "/ip4/192.168.1.2/tcp/1";
        let pt2 = "/ip4/192.168.1.2/tcp/2";
        let lo = "/ip4/127.0.0.1/tcp/5";
        check(
            "private group uses 30 ms steps, public 250 ms, both from 0",
            r,
            &[T1, pq, pt, Q1V1, pt2, lo],
            &[
                (pq, Duration::ZERO),
                (pt, PRIVATE_QUIC_DELAY),
                (pt2, 2 * PRIVATE_TCP_DELAY),
                (lo, 2 * PRIVATE_TCP_DELAY),
                (Q1V1, Duration::ZERO),
                (T1, PUBLIC_TCP_DELAY),
            ],
        );
        check(
            "private other delay",
            r,
            &["/ip4/10.0.0.1/udp/1/webrtc-direct"],
            &[("/ip4/10.0.0.1/udp/1/webrtc-direct", PRIVATE_OTHER_DELAY)],
        );
        check(
            "dns is other",
            r,
            &["/dns/example.com/tcp/1", T1],
            &[("/dns/example.com/tcp/1", O), (T1, Duration::ZERO)],
        );
    }

    #[test]
    fn output_is_permutation_and_order_is_dial_order() {
        let input: Vec<Multiaddr> = [Q1V1, Q1V16, T1, T1V6, T2, WRTC1, ONION]
            .iter()
            .map(|s| ma(s))
            .collect();
        let out = DefaultDialRanker.rank(&input);
        assert_eq!(out.len(), input.len());
        for a in &input {
            assert_eq!(out.iter().filter(|(_, b)| b == a).count(), 1);
        }
        // happy eyeballs order inside the public group
        let order: Vec<String> = out.iter().map(|(_, a)| a.to_string()).collect();
        assert_eq!(order[0], Q1V16);
        assert_eq!(order[1], Q1V1);
        assert_eq!(order[2], T1V6);
        assert_eq!(order[3], T1);
    }
}
