//! Multiaddresses: a re-export of the `multiaddr` crate, `/p2p/<peer id>` helpers and the
//! address classification that dialing needs (transport kind, IP version, IP scope).
//!
//! The scope predicates follow go-multiaddr's `net/private.go` exactly
//! ([`is_private_addr`], [`is_public_addr`]) because go-libp2p's dial ranker, dial timeouts and
//! black-hole detector are defined in terms of them; [`ip_scope`] is a finer, descriptive view.
//!
//! Like go-multiaddr, every IP predicate looks at the *first* component only (after skipping
//! `/ip6zone`): `/ip4/1.2.3.4/tcp/1/p2p/R/p2p-circuit` is classified by `1.2.3.4`.

use core::net::{Ipv4Addr, Ipv6Addr};

pub use ::multiaddr::{Multiaddr, Protocol};
use libp2p_identity::PeerId;

/// Errors of the `/p2p` helpers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address already ends in `/p2p/<id>` naming a different peer.
    #[error("address {addr} already names another peer {found}")]
    OtherPeer {
        /// The address as given.
        addr: Multiaddr,
        /// The peer the address names.
        found: PeerId,
    },
}

/// Appends `/p2p/<peer>` to `addr`.
///
/// An address already ending in `/p2p/<peer>` is returned unchanged; one ending in a
/// different `/p2p/…` is an error (rust-libp2p `Multiaddr::with_p2p`).
pub fn with_p2p(addr: Multiaddr, peer: PeerId) -> Result<Multiaddr, Error> {
    match addr.iter().last() {
        Some(Protocol::P2p(found)) if found == peer => Ok(addr),
        Some(Protocol::P2p(found)) => Err(Error::OtherPeer { addr, found }),
        _ => Ok(addr.with(Protocol::P2p(peer))),
    }
}

/// Strips a trailing `/p2p/<id>` (go `peer.SplitAddr`): returns the transport part and the
/// peer id if there was one. Only the last component is looked at, so the relay's `/p2p` in
/// `/…/p2p/<relay>/p2p-circuit` stays.
pub fn split_p2p(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut transport = addr.clone();
    match transport.pop() {
        Some(Protocol::P2p(peer)) => (transport, Some(peer)),
        _ => (addr.clone(), None),
    }
}

/// What transport an address asks for, from its most specific component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// Plain `/tcp` (including `/tcp/…/tls` or `/noise` suffixes without a websocket).
    Tcp,
    /// `/quic` — QUIC draft-29, removed from go-libp2p and rust-libp2p.
    QuicDraft29,
    /// `/quic-v1` (RFC 9000).
    QuicV1,
    /// `/ws` (not preceded by `/tls`).
    Ws,
    /// `/wss`, or `/ws` after a `/tls` (`/tls/ws`, `/tls/sni/<host>/ws`).
    Wss,
    /// `/quic-v1/webtransport`.
    WebTransport,
    /// `/webrtc` (browser-to-browser, always behind a relay for signalling).
    WebRtc,
    /// `/webrtc-direct`.
    WebRtcDirect,
    /// Anything containing `/p2p-circuit` (a circuit relay v2 address).
    Relay,
    /// Anything else (`/memory`, `/onion3`, `/unix`, bare IPs, …).
    Other,
}

/// Classifies the transport of `addr`; `/p2p-circuit` anywhere wins (go `isRelayAddr`).
pub fn transport_kind(addr: &Multiaddr) -> TransportKind {
    let mut kind = TransportKind::Other;
    let mut tls_seen = false;
    for p in addr.iter() {
        let next = match p {
            Protocol::P2pCircuit => return TransportKind::Relay,
            Protocol::WebTransport => Some(TransportKind::WebTransport),
            Protocol::WebRTCDirect => Some(TransportKind::WebRtcDirect),
            Protocol::WebRTC => Some(TransportKind::WebRtc),
            Protocol::QuicV1 if kind != TransportKind::WebTransport => Some(TransportKind::QuicV1),
            Protocol::Quic => Some(TransportKind::QuicDraft29),
            Protocol::Ws(_) if tls_seen => Some(TransportKind::Wss),
            Protocol::Ws(_) => Some(TransportKind::Ws),
            Protocol::Wss(_) => Some(TransportKind::Wss),
            Protocol::Tcp(_) if kind == TransportKind::Other => Some(TransportKind::Tcp),
            _ => None,
        };
        tls_seen |= matches!(p, Protocol::Tls);
        // Later, more specific components refine the kind (tcp → ws, quic-v1 → webtransport),
        // but a websocket or webtransport is not demoted by a following component.
        if let Some(next) = next {
            let keep = matches!(
                (kind, next),
                (TransportKind::Ws | TransportKind::Wss, TransportKind::Tcp)
                    | (TransportKind::WebTransport, TransportKind::QuicV1)
            );
            if !keep {
                kind = next;
            }
        }
    }
    kind
}

/// True if `addr` contains `/p2p-circuit` (go `isRelayAddr`).
pub fn is_relay(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// True for QUIC addresses as go's ranker sees them: `/quic` or `/quic-v1` anywhere, so
/// WebTransport counts too (go `isQUICAddr`).
pub fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::Quic | Protocol::QuicV1))
}

/// True if the dial of `addr` consumes a file descriptor (go limiter `shouldConsumeFd`): not a
/// relay address, and contains `/tcp` or `/unix`. QUIC, WebRTC and other UDP transports share
/// one socket; relay dials go through the limiter again for the relay connection itself.
pub fn is_fd_consuming(addr: &Multiaddr) -> bool {
    !is_relay(addr)
        && addr
            .iter()
            .any(|p| matches!(p, Protocol::Tcp(_) | Protocol::Unix(_)))
}

/// IP version of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpVersion {
    /// `/ip4` or `/dns4`.
    V4,
    /// `/ip6` or `/dns6`.
    V6,
}

/// The first host component, skipping `/ip6zone` as go-multiaddr does.
fn host(addr: &Multiaddr) -> Option<Protocol<'_>> {
    addr.iter().find(|p| !matches!(p, Protocol::Ip6zone(_)))
}

/// IP version from the first host component (`/ip4`, `/dns4` → V4; `/ip6`, `/dns6` → V6);
/// `None` for `/dns`, `/dnsaddr` and non-IP addresses.
pub fn ip_version(addr: &Multiaddr) -> Option<IpVersion> {
    match host(addr)? {
        Protocol::Ip4(_) | Protocol::Dns4(_) => Some(IpVersion::V4),
        Protocol::Ip6(_) | Protocol::Dns6(_) => Some(IpVersion::V6),
        _ => None,
    }
}

/// True if `addr` contains an `/ip4` component anywhere (go ranker `isProtocolAddr(a, P_IP4)`).
pub fn has_ip4(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Ip4(_)))
}

/// True if `addr` contains an `/ip6` component anywhere (go `isProtocolAddr(a, P_IP6)`).
pub fn has_ip6(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Ip6(_)))
}

/// True if `addr` contains a `/tcp` component anywhere.
pub fn has_tcp(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Tcp(_)))
}

/// True if `addr` contains a `/udp` component anywhere.
pub fn has_udp(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Udp(_)))
}

/// Where an address points, descriptively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpScope {
    /// `0.0.0.0` or `::` (listen-only).
    Unspecified,
    /// `127/8`, `::1`, or a `localhost` DNS name.
    Loopback,
    /// `169.254/16`, `fe80::/10`, or link-local multicast `ff02::/16`.
    LinkLocal,
    /// RFC 1918, CGNAT `100.64/10`, ULA `fc00::/7`.
    Private,
    /// Publicly routable IP, or a DNS name go treats as public (not localhost, not a
    /// special-use domain).
    Public,
    /// Reserved, documentation, multicast or broadcast ranges: never routable.
    Unroutable,
    /// No IP or DNS host, a special-use DNS name (`.local`, `.invalid`, …), or an IPv6 address
    /// outside every range above (e.g. IPv4-mapped).
    Unknown,
}

fn v4_in(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn v6_in(ip: Ipv6Addr, net: Ipv6Addr, bits: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
    (u128::from(ip) & mask) == (u128::from(net) & mask)
}

/// go-multiaddr `Private4`.
fn v4_private(ip: Ipv4Addr) -> bool {
    v4_in(ip, [127, 0, 0, 0], 8)
        || v4_in(ip, [10, 0, 0, 0], 8)
        || v4_in(ip, [100, 64, 0, 0], 10)
        || v4_in(ip, [172, 16, 0, 0], 12)
        || v4_in(ip, [192, 168, 0, 0], 16)
        || v4_in(ip, [169, 254, 0, 0], 16)
}

/// go-multiaddr `Unroutable4`.
fn v4_unroutable(ip: Ipv4Addr) -> bool {
    v4_in(ip, [0, 0, 0, 0], 8)
        || v4_in(ip, [192, 0, 0, 0], 26)
        || v4_in(ip, [192, 0, 2, 0], 24)
        || v4_in(ip, [192, 88, 99, 0], 24)
        || v4_in(ip, [198, 18, 0, 0], 15)
        || v4_in(ip, [198, 51, 100, 0], 24)
        || v4_in(ip, [203, 0, 113, 0], 24)
        || v4_in(ip, [224, 0, 0, 0], 4)
        || v4_in(ip, [240, 0, 0, 0], 4)
        || ip == Ipv4Addr::BROADCAST
}

fn v6(s: [u16; 8]) -> Ipv6Addr {
    Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
}

/// go-multiaddr `Private6`.
fn v6_private(ip: Ipv6Addr) -> bool {
    ip == Ipv6Addr::LOCALHOST
        || v6_in(ip, v6([0xfc00, 0, 0, 0, 0, 0, 0, 0]), 7)
        || v6_in(ip, v6([0xfe80, 0, 0, 0, 0, 0, 0, 0]), 10)
}

/// go-multiaddr: (global unicast `2000::/3` or NAT64) and not unroutable.
fn v6_public(ip: Ipv6Addr) -> bool {
    let global = v6_in(ip, v6([0x2000, 0, 0, 0, 0, 0, 0, 0]), 3);
    let nat64 = v6_in(ip, v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0]), 48)
        || v6_in(ip, v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0]), 96);
    let unroutable = v6_in(ip, v6([0xff00, 0, 0, 0, 0, 0, 0, 0]), 8)
        || v6_in(ip, v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 32);
    (global || nat64) && !unroutable
}

/// go `isSubdomain(child, parent)` with `parent` given without its leading dot.
fn is_subdomain(name: &str, parent: &str) -> bool {
    name == parent
        || name
            .strip_suffix(parent)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// Names that never resolve (RFC 6761 and reverse zones).
const UNRESOLVABLE_DOMAINS: [&str; 3] = ["in-addr.arpa", "ip6.arpa", "invalid"];
/// Names without a central authority (RFC 8375, mDNS, RFC 6761).
const PRIVATE_USE_DOMAINS: [&str; 3] = ["home.arpa", "local", "test"];

/// go-multiaddr `IsPrivateAddr`: the first host is in a private range (including loopback and
/// link-local) or is a `localhost` name.
pub fn is_private_addr(addr: &Multiaddr) -> bool {
    match host(addr) {
        Some(Protocol::Ip4(ip)) => v4_private(ip),
        Some(Protocol::Ip6(ip)) => v6_private(ip),
        Some(
            Protocol::Dns(name)
            | Protocol::Dns4(name)
            | Protocol::Dns6(name)
            | Protocol::Dnsaddr(name),
        ) => is_subdomain(&name, "localhost"),
        _ => false,
    }
}

/// go-multiaddr `IsPublicAddr`: the first host is a publicly routable IP, or a DNS name that
/// is not `localhost`, not unresolvable and not a private-use domain.
pub fn is_public_addr(addr: &Multiaddr) -> bool {
    match host(addr) {
        Some(Protocol::Ip4(ip)) => !v4_private(ip) && !v4_unroutable(ip),
        Some(Protocol::Ip6(ip)) => v6_public(ip),
        Some(
            Protocol::Dns(name)
            | Protocol::Dns4(name)
            | Protocol::Dns6(name)
            | Protocol::Dnsaddr(name),
        ) => dns_scope(&name) == IpScope::Public,
        _ => false,
    }
}

fn dns_scope(name: &str) -> IpScope {
    if is_subdomain(name, "localhost") {
        IpScope::Loopback
    } else if UNRESOLVABLE_DOMAINS
        .iter()
        .chain(PRIVATE_USE_DOMAINS.iter())
        .any(|d| is_subdomain(name, d))
    {
        IpScope::Unknown
    } else {
        IpScope::Public
    }
}

/// Descriptive scope of the first host component of `addr`.
pub fn ip_scope(addr: &Multiaddr) -> IpScope {
    match host(addr) {
        Some(Protocol::Ip4(ip)) => {
            if ip.is_unspecified() {
                IpScope::Unspecified
            } else if ip.is_loopback() {
                IpScope::Loopback
            } else if ip.is_link_local() {
                IpScope::LinkLocal
            } else if v4_private(ip) {
                IpScope::Private
            } else if v4_unroutable(ip) {
                IpScope::Unroutable
            } else {
                IpScope::Public
            }
        }
        Some(Protocol::Ip6(ip)) => {
            if ip.is_unspecified() {
                IpScope::Unspecified
            } else if ip.is_loopback() {
                IpScope::Loopback
            } else if is_ip6_link_local_ip(ip) {
                IpScope::LinkLocal
            } else if v6_private(ip) {
                IpScope::Private
            } else if v6_public(ip) {
                IpScope::Public
            } else if v6_in(ip, v6([0xff00, 0, 0, 0, 0, 0, 0, 0]), 8)
                || v6_in(ip, v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 32)
            {
                IpScope::Unroutable
            } else {
                IpScope::Unknown
            }
        }
        Some(
            Protocol::Dns(name)
            | Protocol::Dns4(name)
            | Protocol::Dns6(name)
            | Protocol::Dnsaddr(name),
        ) => dns_scope(&name),
        _ => IpScope::Unknown,
    }
}

fn is_ip6_link_local_ip(ip: Ipv6Addr) -> bool {
    v6_in(ip, v6([0xfe80, 0, 0, 0, 0, 0, 0, 0]), 10)
        || v6_in(ip, v6([0xff02, 0, 0, 0, 0, 0, 0, 0]), 16)
}

/// go-multiaddr `IsIPUnspecified`: the first host is `0.0.0.0` or `::`.
pub fn is_ip_unspecified(addr: &Multiaddr) -> bool {
    match host(addr) {
        Some(Protocol::Ip4(ip)) => ip.is_unspecified(),
        Some(Protocol::Ip6(ip)) => ip.is_unspecified(),
        _ => false,
    }
}

/// go-multiaddr `IsIP6LinkLocal`: the first host is an IPv6 link-local unicast (`fe80::/10`)
/// or link-local multicast (`ff02::/16`) address. IPv4 link-local is *not* matched (go keeps
/// dialing `169.254/16`).
pub fn is_ip6_link_local(addr: &Multiaddr) -> bool {
    matches!(host(addr), Some(Protocol::Ip6(ip)) if is_ip6_link_local_ip(ip))
}

/// True for exactly `/{ip4,ip6,dns,dns4,dns6}/<host>/tcp/<port>` with an optional trailing
/// `/p2p/<id>`: what a plain TCP transport can dial.
pub fn is_dialable_tcp(addr: &Multiaddr) -> bool {
    let mut it = addr.iter();
    let host_ok = matches!(
        it.next(),
        Some(
            Protocol::Ip4(_)
                | Protocol::Ip6(_)
                | Protocol::Dns(_)
                | Protocol::Dns4(_)
                | Protocol::Dns6(_)
        )
    );
    let tcp_ok = matches!(it.next(), Some(Protocol::Tcp(_)));
    let rest_ok = match it.next() {
        None => true,
        Some(Protocol::P2p(_)) => it.next().is_none(),
        Some(_) => false,
    };
    host_ok && tcp_ok && rest_ok
}

/// The port of the first `/udp` component.
pub fn udp_port(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        Protocol::Udp(port) => Some(port),
        _ => None,
    })
}

/// The port of the first `/tcp` component.
pub fn tcp_port(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some(port),
        _ => None,
    })
}

/// The IP of the first component when it is `/ip4` or `/ip6` (go `manet.ToIP`, loosely).
pub fn ip_addr(addr: &Multiaddr) -> Option<core::net::IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    fn peer(seed: u8) -> PeerId {
        let mut bytes = [seed; 32];
        let key = libp2p_identity::Keypair::ed25519_from_bytes(&mut bytes).unwrap();
        key.public().to_peer_id()
    }

    #[test]
    fn with_p2p_appends_keeps_and_rejects() {
        let (a, b) = (peer(1), peer(2));
        let base = ma("/ip4/1.2.3.4/tcp/1");
        let with = with_p2p(base.clone(), a).unwrap();
        assert_eq!(with, base.clone().with(Protocol::P2p(a)));
        assert_eq!(with_p2p(with.clone(), a).unwrap(), with);
        assert!(matches!(
            with_p2p(with.clone(), b),
            Err(Error::OtherPeer { found, .. }) if found == a
        ));
        assert_eq!(split_p2p(&with), (base.clone(), Some(a)));
        assert_eq!(split_p2p(&base), (base.clone(), None));
        // Only the trailing /p2p is split: the relay id stays.
        let relay = ma(&format!("/ip4/1.2.3.4/tcp/1/p2p/{a}/p2p-circuit"));
        assert_eq!(split_p2p(&relay), (relay.clone(), None));
        let full = relay.clone().with(Protocol::P2p(b));
        assert_eq!(split_p2p(&full), (relay, Some(b)));
    }

    #[test]
    fn transport_kinds() {
        let id = peer(3);
        let cases: &[(&str, TransportKind)] = &[
            ("/ip4/1.2.3.4/tcp/1", TransportKind::Tcp),
            ("/dns4/example.com/tcp/443/tls", TransportKind::Tcp),
            ("/ip4/1.2.3.4/udp/1/quic", TransportKind::QuicDraft29),
            ("/ip4/1.2.3.4/udp/1/quic-v1", TransportKind::QuicV1),
            ("/ip6/::1/tcp/1/ws", TransportKind::Ws),
            ("/ip4/1.2.3.4/tcp/443/wss", TransportKind::Wss),
            ("/ip4/1.2.3.4/tcp/443/tls/ws", TransportKind::Wss),
            (
                "/dns/example.com/tcp/443/tls/sni/example.com/ws",
                TransportKind::Wss,
            ),
            (
                "/ip4/1.2.3.4/udp/1/quic-v1/webtransport",
                TransportKind::WebTransport,
            ),
            (
                "/ip4/1.2.3.4/udp/1/webrtc-direct",
                TransportKind::WebRtcDirect,
            ),
            (
                "/ip4/1.2.3.4/tcp/1/p2p-circuit/webrtc",
                TransportKind::Relay,
            ),
            (
                "/ip4/1.2.3.4/udp/1/quic-v1/p2p-circuit",
                TransportKind::Relay,
            ),
            ("/memory/5", TransportKind::Other),
            ("/ip4/1.2.3.4", TransportKind::Other),
            ("/unix/sock", TransportKind::Other),
        ];
        for (s, kind) in cases {
            assert_eq!(transport_kind(&ma(s)), *kind, "{s}");
        }
        let with_id = ma(&format!("/ip4/1.2.3.4/tcp/1/ws/p2p/{id}"));
        assert_eq!(transport_kind(&with_id), TransportKind::Ws);
    }

    #[test]
    fn versions_and_scopes() {
        let cases: &[(&str, Option<IpVersion>, IpScope, bool, bool)] = &[
            // addr, version, scope, go private, go public
            (
                "/ip4/0.0.0.0/tcp/1",
                Some(IpVersion::V4),
                IpScope::Unspecified,
                false,
                false,
            ),
            (
                "/ip4/127.0.0.1/tcp/1",
                Some(IpVersion::V4),
                IpScope::Loopback,
                true,
                false,
            ),
            (
                "/ip4/10.1.2.3/tcp/1",
                Some(IpVersion::V4),
                IpScope::Private,
                true,
                false,
            ),
            (
                "/ip4/100.64.0.1/tcp/1",
                Some(IpVersion::V4),
                IpScope::Private,
                true,
                false,
            ),
            (
                "/ip4/172.31.0.1/tcp/1",
                Some(IpVersion::V4),
                IpScope::Private,
                true,
                false,
            ),
            (
                "/ip4/172.32.0.1/tcp/1",
                Some(IpVersion::V4),
                IpScope::Public,
                false,
                true,
            ),
            (
                "/ip4/192.168.1.1/tcp/1",
                Some(IpVersion::V4),
                IpScope::Private,
                true,
                false,
            ),
            (
                "/ip4/169.254.1.1/tcp/1",
                Some(IpVersion::V4),
                IpScope::LinkLocal,
                true,
                false,
            ),
            (
                "/ip4/192.0.2.1/tcp/1",
                Some(IpVersion::V4),
                IpScope::Unroutable,
                false,
                false,
            ),
            (
                "/ip4/224.0.0.1/udp/1",
                Some(IpVersion::V4),
                IpScope::Unroutable,
                false,
                false,
            ),
            (
                "/ip4/255.255.255.255/udp/1",
                Some(IpVersion::V4),
                IpScope::Unroutable,
                false,
                false,
            ),
            (
                "/ip4/1.2.3.4/tcp/1",
                Some(IpVersion::V4),
                IpScope::Public,
                false,
                true,
            ),
            (
                "/ip6/::/tcp/1",
                Some(IpVersion::V6),
                IpScope::Unspecified,
                false,
                false,
            ),
            (
                "/ip6/::1/tcp/1",
                Some(IpVersion::V6),
                IpScope::Loopback,
                true,
                false,
            ),
            (
                "/ip6/fe80::1/tcp/1",
                Some(IpVersion::V6),
                IpScope::LinkLocal,
                true,
                false,
            ),
            (
                "/ip6/fd00::1/tcp/1",
                Some(IpVersion::V6),
                IpScope::Private,
                true,
                false,
            ),
            (
                "/ip6/2001:db8::1/tcp/1",
                Some(IpVersion::V6),
                IpScope::Unroutable,
                false,
                false,
            ),
            (
                "/ip6/2604:1380::1/tcp/1",
                Some(IpVersion::V6),
                IpScope::Public,
                false,
                true,
            ),
            (
                "/ip6/64:ff9b::1.2.3.4/tcp/1",
                Some(IpVersion::V6),
                IpScope::Public,
                false,
                true,
            ),
            (
                "/ip6/::ffff:1.2.3.4/tcp/1",
                Some(IpVersion::V6),
                IpScope::Unknown,
                false,
                false,
            ),
            (
                "/ip6/1::2/tcp/1",
                Some(IpVersion::V6),
                IpScope::Unknown,
                false,
                false,
            ),
            (
                "/ip6zone/eth0/ip6/fe80::1/tcp/1",
                Some(IpVersion::V6),
                IpScope::LinkLocal,
                true,
                false,
            ),
            (
                "/dns4/example.com/tcp/1",
                Some(IpVersion::V4),
                IpScope::Public,
                false,
                true,
            ),
            (
                "/dns6/example.com/tcp/1",
                Some(IpVersion::V6),
                IpScope::Public,
                false,
                true,
            ),
            ("/dns/example.com/tcp/1", None, IpScope::Public, false, true),
            ("/dns/localhost/tcp/1", None, IpScope::Loopback, true, false),
            (
                "/dns/a.localhost/tcp/1",
                None,
                IpScope::Loopback,
                true,
                false,
            ),
            (
                "/dns/notlocalhost/tcp/1",
                None,
                IpScope::Public,
                false,
                true,
            ),
            (
                "/dns/printer.local/tcp/1",
                None,
                IpScope::Unknown,
                false,
                false,
            ),
            ("/dns/x.invalid/tcp/1", None, IpScope::Unknown, false, false),
            (
                "/dnsaddr/bootstrap.libp2p.io",
                None,
                IpScope::Public,
                false,
                true,
            ),
            (
                "/onion3/vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd:1234",
                None,
                IpScope::Unknown,
                false,
                false,
            ),
        ];
        for (s, version, scope, private, public) in cases {
            let a = ma(s);
            assert_eq!(ip_version(&a), *version, "{s}");
            assert_eq!(ip_scope(&a), *scope, "{s}");
            assert_eq!(is_private_addr(&a), *private, "{s} private");
            assert_eq!(is_public_addr(&a), *public, "{s} public");
        }
    }

    #[test]
    fn tcp_dialability_and_fd() {
        let id = peer(4);
        let cases: &[(String, bool, bool)] = &[
            // addr, dialable TCP, fd consuming
            ("/ip4/1.2.3.4/tcp/1".into(), true, true),
            ("/ip6/::1/tcp/1".into(), true, true),
            ("/dns/example.com/tcp/1".into(), true, true),
            ("/dns4/example.com/tcp/1".into(), true, true),
            ("/dns6/example.com/tcp/1".into(), true, true),
            (format!("/ip4/1.2.3.4/tcp/1/p2p/{id}"), true, true),
            ("/dnsaddr/example.com/tcp/1".into(), false, true),
            ("/ip4/1.2.3.4/tcp/1/ws".into(), false, true),
            ("/ip4/1.2.3.4/udp/1/quic-v1".into(), false, false),
            ("/ip4/1.2.3.4/udp/1/webrtc-direct".into(), false, false),
            ("/ip4/1.2.3.4/tcp/1/p2p-circuit".into(), false, false),
            ("/tcp/1".into(), false, true),
            ("/unix/sock".into(), false, true),
            ("/ip4/1.2.3.4".into(), false, false),
            (format!("/ip4/1.2.3.4/tcp/1/p2p/{id}/p2p/{id}"), false, true),
        ];
        for (s, dialable, fd) in cases {
            let a = ma(s);
            assert_eq!(is_dialable_tcp(&a), *dialable, "{s}");
            assert_eq!(is_fd_consuming(&a), *fd, "{s}");
        }
        assert!(is_ip_unspecified(&ma("/ip6/::/udp/1")));
        assert!(is_ip6_link_local(&ma("/ip6/fe80::1/udp/1")));
        assert!(!is_ip6_link_local(&ma("/ip4/169.254.0.1/udp/1")));
        assert_eq!(udp_port(&ma("/ip4/1.2.3.4/udp/7/quic-v1")), Some(7));
        assert_eq!(tcp_port(&ma("/ip4/1.2.3.4/tcp/9/ws")), Some(9));
        assert!(is_quic(&ma("/ip4/1.2.3.4/udp/1/quic-v1/webtransport")));
    }
}
