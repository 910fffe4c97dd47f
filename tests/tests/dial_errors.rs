//! Dial and listen errors a person can act on: a failed dial names every address tried and why
//! it failed (refused, wrong peer id, negotiation failed, upgrade timeout), and a failed listen
//! names its address. Checked on the typed errors and on what their `Display` prints.

use std::time::Duration;

use plait_core::dial::{AddrError, DialFailure, TransportError};
use plait_core::identity::Keypair;
use plait_core::multiaddr::Multiaddr;
use plait_core::swarm::Error as SwarmError;
use plait_core::upgrade::Security;
use plait_driver::{Error, HostConfig};
use plait_tokio::{Host, Tokio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn tcp_addr(port: u16) -> Multiaddr {
    format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr")
}

#[test]
fn a_failed_dial_names_every_address_and_its_cause() {
    let rt = runtime();
    rt.block_on(async {
        let tokio = Tokio::new(rt.handle().clone());
        // Noise only: the refusing listener below answers `na` to it (with TLS offered too,
        // the dialer would propose `/tls/1.0.0` next and wait).
        let mut config = HostConfig::random().with_security(Security::Noise);
        config.upgrade_timeout = Duration::from_secs(1);
        let host = Host::new(tokio.clone(), config).expect("host");
        // Refused: a port nobody listens on any more.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let refused = tcp_addr(closed.local_addr().expect("addr").port());
        drop(closed);
        // Wrong peer id: another host listens there.
        let other = Host::new(tokio.clone(), HostConfig::random()).expect("other");
        let wrong = other.listen(tcp_addr(0)).await.expect("listen");
        // Negotiation failed: a listener that answers `na` to `/noise` (as a go-libp2p host
        // configured for other security protocols does), then waits.
        let refusing = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let no_noise = tcp_addr(refusing.local_addr().expect("addr").port());
        let answer = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = refusing.accept().await {
                let mut header = [0u8; 20];
                if socket.read_exact(&mut header).await.is_ok() {
                    let _ = socket.write_all(b"\x13/multistream/1.0.0\n\x03na\n").await;
                }
                held.push(socket);
            }
        });
        // Upgrade timeout: accepts and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mute = tcp_addr(silent.local_addr().expect("addr").port());
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
            }
        });

        let claimed = Keypair::generate_ed25519().public().to_peer_id();
        let addrs = [
            refused.clone(),
            wrong.clone(),
            no_noise.clone(),
            mute.clone(),
        ];
        host.add_addresses(claimed, addrs.clone());
        let error = tokio::time::timeout(
            Duration::from_secs(30),
            host.new_stream(claimed, ["/echo/1.0.0"]),
        )
        .await
        .expect("the dial ends")
        .err()
        .expect("no address can work");
        let text = error.to_string();
        println!("{text}");
        let Error::Swarm(SwarmError::Dial(dial)) = &error else {
            panic!("not a dial error: {error:?}");
        };
        assert_eq!(dial.peer, claimed);
        assert_eq!(dial.cause, DialFailure::AllDialsFailed);
        let cause_of = |addr: &Multiaddr| {
            dial.addrs
                .iter()
                .find(|(a, _)| a == addr)
                .map(|(_, e)| e.clone())
                .unwrap_or_else(|| panic!("{addr} not reported in {dial:?}"))
        };
        let expected = [
            (
                &refused,
                TransportError::Io(std::io::ErrorKind::ConnectionRefused),
            ),
            (
                &wrong,
                TransportError::PeerIdMismatch {
                    obtained: Box::new(other.peer_id()),
                },
            ),
            (&mute, TransportError::UpgradeTimeout),
        ];
        for (addr, cause) in expected {
            assert_eq!(
                cause_of(addr),
                AddrError::Transport(cause.clone()),
                "{addr}"
            );
            let shown = format!("{addr}: {cause}");
            assert!(text.contains(&shown), "{shown:?} missing from {text:?}");
        }
        let negotiation = cause_of(&no_noise);
        assert!(
            matches!(
                negotiation,
                AddrError::Transport(TransportError::Negotiation(_))
            ),
            "{negotiation:?}"
        );
        assert!(
            text.contains(&format!("{no_noise}: {negotiation}")),
            "{text}"
        );
        hold.abort();
        answer.abort();
        host.close();
        other.close();
    });
}

#[test]
fn a_failed_listen_names_its_address() {
    let rt = runtime();
    rt.block_on(async {
        let tokio = Tokio::new(rt.handle().clone());
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = tcp_addr(taken.local_addr().expect("addr").port());
        let host = Host::new(tokio, HostConfig::random()).expect("host");
        let error = host.listen(addr.clone()).await.expect_err("address in use");
        let Error::Listen { addr: named, .. } = &error else {
            panic!("not a listen error: {error:?}");
        };
        assert_eq!(*named, addr);
        assert!(error.to_string().contains(&addr.to_string()), "{error}");
        host.close();
    });
}
