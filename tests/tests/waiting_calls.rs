//! Every waiting call of the host supports concurrent callers and cancellation: concurrent
//! pings, stream opens, dials and `next_event`s each get their own answer; a dropped call
//! leaves nothing behind that a later call could see; events beyond the queue's bound are
//! reported as `Lagged`, never dropped silently. On all three runtimes.

use std::time::Duration;

use futures_lite::future;
use plait_core::multiaddr::Multiaddr;
use plait_driver::{Host, HostEvent};
use plait_tests::hostile::{block_on_timeout, serial, target_config, Target, TestRuntime, ECHO};
use plait_tests::on_every_runtime;

const LIMIT: Duration = Duration::from_secs(30);

fn concurrent_pings<R: TestRuntime>() {
    let _g = serial();
    let server = Target::<R>::start();
    let client = Host::new(R::get(), target_config()).expect("client");
    let rt = R::get();
    block_on_timeout(&rt, LIMIT, "pings", async {
        client.dial(server.maddr.clone()).await.expect("dial");
        let (a, b) = future::zip(client.ping(server.peer), client.ping(server.peer)).await;
        assert!(a.is_ok() && b.is_ok(), "two joined pings: {a:?} {b:?}");
    });
    // From spawned tasks: every one is answered.
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..8 {
        let (client, peer, tx) = (client.clone(), server.peer, tx.clone());
        rt.spawn(Box::pin(async move {
            let _ = tx.send(client.ping(peer).await.is_ok());
        }));
    }
    for i in 0..8 {
        assert_eq!(rx.recv_timeout(LIMIT), Ok(true), "spawned ping {i}");
    }
    client.close();
    server.assert_serves_and_recovers("concurrent-pings");
}

fn cancelled_calls_leave_nothing_behind<R: TestRuntime>() {
    let _g = serial();
    let server = Target::<R>::start();
    let client = Host::new(R::get(), target_config()).expect("client");
    let rt = R::get();
    block_on_timeout(&rt, LIMIT, "cancelled ping", async {
        client.dial(server.maddr.clone()).await.expect("dial");
        // A ping and a stream open polled once, then dropped.
        let mut ping = Box::pin(client.ping(server.peer));
        assert!(future::poll_once(&mut ping).await.is_none());
        drop(ping);
        let mut open = Box::pin(client.new_stream(server.peer, [ECHO]));
        let _ = future::poll_once(&mut open).await;
        drop(open);
    });
    // The server goes away: a new ping must fail, not return the cancelled one's answer.
    server.host.close();
    let result = block_on_timeout(&rt, LIMIT, "ping after the peer left", async {
        while client.num_connections() > 0 {
            async_io::Timer::after(Duration::from_millis(10)).await;
        }
        client.ping(server.peer).await
    });
    assert!(
        result.is_err(),
        "a ping to a peer that is gone returned {result:?}"
    );
    // Nothing of the cancelled stream is left.
    assert_eq!(client.num_streams(), 0, "streams left");
    client.close();
}

fn concurrent_streams_and_dials<R: TestRuntime>() {
    let _g = serial();
    let server = Target::<R>::start();
    let client = Host::new(R::get(), target_config()).expect("client");
    let rt = R::get();
    block_on_timeout(&rt, LIMIT, "concurrent dials and streams", async {
        let (a, b) = future::zip(
            client.dial(server.maddr.clone()),
            client.dial(server.maddr.clone()),
        )
        .await;
        assert_eq!(a.expect("first dial"), server.peer);
        assert_eq!(b.expect("second dial"), server.peer);
        let opens: Vec<_> = (0..16)
            .map(|i| {
                let client = client.clone();
                let peer = server.peer;
                async move {
                    use futures_lite::{AsyncReadExt, AsyncWriteExt};
                    let mut s = client.new_stream(peer, [ECHO]).await.expect("open");
                    let payload = format!("stream {i}\n");
                    s.write_all(payload.as_bytes()).await.expect("write");
                    s.close().await.expect("close");
                    let mut reply = Vec::new();
                    s.read_to_end(&mut reply).await.expect("read");
                    assert_eq!(reply, payload.as_bytes());
                }
            })
            .collect();
        for open in opens {
            open.await;
        }
    });
    client.close();
    server.assert_serves_and_recovers("concurrent-streams");
}

fn concurrent_and_lagging_events<R: TestRuntime>() {
    let _g = serial();
    let rt = R::get();
    let host = Host::new(R::get(), target_config()).expect("host");
    let any: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("addr");
    block_on_timeout(&rt, LIMIT, "events", async {
        // Two callers waiting at once each get an event.
        let waiting = future::zip(host.next_event(), host.next_event());
        let listening = async {
            host.listen(any.clone()).await.expect("listen");
            host.listen(any.clone()).await.expect("listen");
        };
        let ((a, b), ()) = future::zip(waiting, listening).await;
        assert!(matches!(a, HostEvent::Listening(_)), "{a:?}");
        assert!(matches!(b, HostEvent::Listening(_)), "{b:?}");
        // 1030 events nobody reads: the oldest 6 are dropped, and that is said first.
        for _ in 0..1030 {
            host.listen(any.clone()).await.expect("listen");
        }
        let event = host.next_event().await;
        assert!(matches!(event, HostEvent::Lagged(6)), "{event:?}");
        for _ in 0..1024 {
            assert!(matches!(host.next_event().await, HostEvent::Listening(_)));
        }
    });
    host.close();
}

/// A handler may drop its stream and the last handle of its own host: the host shuts down
/// from inside its connection's task (no lock is held there), the remote sees the connection
/// end, and nothing hangs.
fn handler_drops_the_last_host<R: TestRuntime>() {
    let _g = serial();
    let rt = R::get();
    let host = Host::new(R::get(), target_config()).expect("host");
    let client = Host::new(R::get(), target_config()).expect("client");
    let kept = std::sync::Arc::new(std::sync::Mutex::new(Some(host.clone())));
    let in_handler = kept.clone();
    host.set_stream_handler("/plait/test/suicide/1.0.0", move |stream| {
        drop(stream);
        let last = in_handler.lock().map(|mut h| h.take()).ok().flatten();
        drop(last);
    })
    .expect("handler");
    let addr = block_on_timeout(&rt, LIMIT, "listen", async {
        host.listen("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .await
            .expect("listen")
    });
    let peer = host.peer_id();
    drop(host);
    block_on_timeout(&rt, LIMIT, "the host goes away from its handler", async {
        client
            .dial(addr.with(plait_core::multiaddr::Protocol::P2p(peer)))
            .await
            .expect("dial");
        use futures_lite::AsyncReadExt;
        let mut s = client
            .new_stream(peer, ["/plait/test/suicide/1.0.0"])
            .await
            .expect("open");
        let mut buf = [0u8; 8];
        // Ends (FIN, reset or the connection's end), never hangs.
        let _ = s.read(&mut buf).await;
        while client.num_connections() > 0 {
            async_io::Timer::after(Duration::from_millis(10)).await;
        }
    });
    assert!(
        kept.lock().map(|h| h.is_none()).unwrap_or(false),
        "the handler ran"
    );
    client.close();
}

on_every_runtime!(
    concurrent_pings,
    cancelled_calls_leave_nothing_behind,
    concurrent_streams_and_dials,
    concurrent_and_lagging_events,
    handler_drops_the_last_host
);
