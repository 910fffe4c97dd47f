//! Ping and identify are served by every host by default.

use std::time::Duration;

use plait_tokio::{Host, HostConfig, HostEvent, Tokio};

async fn pair() -> (Host, Host, plait_tokio::plait_core::identity::PeerId) {
    let listener = Host::new(Tokio::current(), HostConfig::random()).unwrap();
    listener.set_stream_handler("/app/1.0.0", |_| {}).unwrap();
    listener
        .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.listen_addrs().remove(0);
    let dialer = Host::new(Tokio::current(), HostConfig::random()).unwrap();
    let peer = dialer.dial(addr).await.unwrap();
    (listener, dialer, peer)
}

#[tokio::test]
async fn ping_measures_a_round_trip() {
    let (listener, dialer, peer) = pair().await;
    let rtt = tokio::time::timeout(Duration::from_secs(10), dialer.ping(peer))
        .await
        .expect("ping answered in time")
        .expect("ping succeeded");
    assert!(rtt < Duration::from_secs(5), "loopback rtt {rtt:?}");
    // And the other way round, on the same connection.
    let back = tokio::time::timeout(Duration::from_secs(10), listener.ping(dialer.peer_id()))
        .await
        .unwrap();
    assert!(back.is_ok(), "{back:?}");
}

#[tokio::test]
async fn identify_runs_on_every_connection() {
    let (listener, dialer, peer) = pair().await;
    let event = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let HostEvent::Identified { peer: p, .. } = dialer.next_event().await {
                if p == peer {
                    break;
                }
            }
        }
    })
    .await;
    assert!(event.is_ok(), "identify answer arrived");
    let info = dialer.peer_info(peer).expect("info kept while connected");
    assert!(
        info.protocols.iter().any(|p| p == "/app/1.0.0"),
        "{:?}",
        info.protocols
    );
    assert!(info.protocols.iter().any(|p| p == "/ipfs/ping/1.0.0"));
    assert_eq!(
        info.listen_addrs,
        vec![listener.listen_addrs()[0]
            .iter()
            .take(2)
            .collect::<plait_tokio::plait_core::multiaddr::Multiaddr>()]
    );
    assert!(info.agent_version.unwrap().starts_with("plait/"));
    assert_eq!(info.public_key.map(|k| k.to_peer_id()), Some(peer));
}
