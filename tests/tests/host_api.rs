//! Host operations beside streams (go-libp2p's `Network()` and `ConnManager()` calls): the
//! peers and connections a host has, closing a peer's connections, removing a handler. On
//! every runtime.

use std::time::Duration;

use plait_core::swarm::{Endpoint, Error as SwarmError};
use plait_driver::{Error, Host, HostEvent};
use plait_tests::hostile::{block_on_timeout, serial, target_config, Target, TestRuntime, ECHO};
use plait_tests::on_every_runtime;

const LIMIT: Duration = Duration::from_secs(30);

fn peers_connections_disconnect_and_handler_removal<R: TestRuntime>() {
    let _g = serial();
    let server = Target::<R>::start();
    let client = Host::new(R::get(), target_config()).expect("client");
    let rt = R::get();
    block_on_timeout(&rt, LIMIT, "host operations", async {
        assert!(client.peers().is_empty());
        client.dial(server.maddr.clone()).await.expect("dial");
        assert_eq!(client.peers(), vec![server.peer]);
        let ours = client.connections(server.peer);
        assert_eq!(ours.len(), 1, "{ours:?}");
        assert!(
            matches!(ours[0].endpoint, Endpoint::Dialer { .. }),
            "{ours:?}"
        );
        assert_eq!(ours[0].peer, server.peer);
        // The listener's task reports the connection on its own time.
        let theirs = loop {
            let theirs = server.host.connections(client.peer_id());
            if !theirs.is_empty() {
                break theirs;
            }
            async_io::Timer::after(Duration::from_millis(5)).await;
        };
        assert_eq!(theirs.len(), 1, "{theirs:?}");
        assert!(
            matches!(theirs[0].endpoint, Endpoint::Listener { .. }),
            "{theirs:?}"
        );

        // Without its handler the echo protocol is refused (two candidates: negotiated
        // before the stream is handed out).
        assert!(server.host.remove_stream_handler(ECHO));
        assert!(!server.host.remove_stream_handler(ECHO), "removed twice");
        let refused = client
            .new_stream(server.peer, [ECHO, "/plait/test/none/1.0.0"])
            .await;
        assert!(
            matches!(refused, Err(Error::Swarm(SwarmError::Negotiation(_)))),
            "{:?}",
            refused.map(|_| ())
        );

        // Closing the peer: the connection goes on both sides.
        assert_eq!(client.disconnect(server.peer), 1);
        while !client.peers().is_empty() || !server.host.peers().is_empty() {
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
        assert!(client.connections(server.peer).is_empty());
        assert_eq!(client.disconnect(server.peer), 0);
    });
    client.close();
}

/// Two subscribers and `next_event` each see every event (a subscription dropped before
/// leaves nothing that blocks the others).
fn every_subscriber_sees_every_event<R: TestRuntime>() {
    let rt = R::get();
    let host = Host::new(R::get(), target_config()).expect("host");
    let a = host.subscribe();
    let b = host.subscribe();
    let dropped = host.subscribe();
    drop(dropped);
    block_on_timeout(&rt, LIMIT, "subscribers", async {
        let addr = host
            .listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .await
            .expect("listen");
        for event in [a.next().await, b.next().await, host.next_event().await] {
            assert!(
                matches!(&event, HostEvent::Listening(at) if *at == addr),
                "{event:?}"
            );
        }
    });
    host.close();
}

on_every_runtime!(
    peers_connections_disconnect_and_handler_removal,
    every_subscriber_sees_every_event
);
