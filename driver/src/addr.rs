//! Between multiaddrs and socket addresses.

use std::net::{IpAddr, SocketAddr};

use plait_core::multiaddr::{Multiaddr, Protocol};

/// Where a TCP multiaddr points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An IP address and port.
    Socket(SocketAddr),
    /// A host name to resolve, with the IP versions allowed (`/dns4`, `/dns6` or `/dns`).
    Dns {
        /// The name.
        host: String,
        /// The port.
        port: u16,
        /// Accept IPv4 results.
        v4: bool,
        /// Accept IPv6 results.
        v6: bool,
    },
}

/// Parses `/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>` with an optional trailing `/p2p/<id>`.
pub fn multiaddr_to_socket(addr: &Multiaddr) -> Option<Target> {
    let mut iter = addr.iter();
    let host = iter.next()?;
    let Protocol::Tcp(port) = iter.next()? else {
        return None;
    };
    match iter.next() {
        None | Some(Protocol::P2p(_)) => {}
        Some(_) => return None,
    }
    if iter.next().is_some() {
        return None;
    }
    Some(match host {
        Protocol::Ip4(ip) => Target::Socket(SocketAddr::new(IpAddr::V4(ip), port)),
        Protocol::Ip6(ip) => Target::Socket(SocketAddr::new(IpAddr::V6(ip), port)),
        Protocol::Dns(h) => Target::Dns {
            host: h.to_string(),
            port,
            v4: true,
            v6: true,
        },
        Protocol::Dns4(h) => Target::Dns {
            host: h.to_string(),
            port,
            v4: true,
            v6: false,
        },
        Protocol::Dns6(h) => Target::Dns {
            host: h.to_string(),
            port,
            v4: false,
            v6: true,
        },
        _ => return None,
    })
}

/// `/ip4|ip6/<ip>/tcp/<port>` for a socket address.
pub fn socket_to_multiaddr(addr: SocketAddr) -> Multiaddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    };
    Multiaddr::empty().with(ip).with(Protocol::Tcp(addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_addresses() {
        let a: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        assert_eq!(
            multiaddr_to_socket(&a),
            Some(Target::Socket("127.0.0.1:4001".parse().unwrap()))
        );
        let a: Multiaddr = "/ip6/::1/tcp/1".parse().unwrap();
        assert_eq!(
            multiaddr_to_socket(&a),
            Some(Target::Socket("[::1]:1".parse().unwrap()))
        );
        let a: Multiaddr = "/dns4/localhost/tcp/5".parse().unwrap();
        assert!(matches!(
            multiaddr_to_socket(&a),
            Some(Target::Dns {
                v4: true,
                v6: false,
                port: 5,
                ..
            })
        ));
        let a: Multiaddr = "/ip4/1.2.3.4/udp/5/quic-v1".parse().unwrap();
        assert_eq!(multiaddr_to_socket(&a), None);
        let a: Multiaddr = "/ip4/1.2.3.4/tcp/5/ws".parse().unwrap();
        assert_eq!(multiaddr_to_socket(&a), None);
        assert_eq!(
            socket_to_multiaddr("127.0.0.1:9".parse().unwrap()).to_string(),
            "/ip4/127.0.0.1/tcp/9"
        );
    }
}
