//! Interoperability with rust-libp2p 0.57, proven over real loopback TCP.
//!
//! Every scenario runs our [`Host`] against the in-process rust-libp2p peer
//! ([`plait_tests::libp2p_peer`]: TCP + Noise or `/plaintext/2.0.0` + Yamux, ping, identify) in
//! both directions where it makes sense (we dial / they dial), once per runtime of ours: tokio
//! (sharing the peer's runtime), smol and async-std (the peer on its own tokio runtime's
//! threads). The scenarios are written once, generic over [`Runtime`]; the `scenarios!` macro at
//! the bottom instantiates them as `on_tokio::*`, `on_smol::*`, `on_async_std::*`.
//!
//! Run: `cargo test -p plait-tests --test interop_rust_libp2p`.
//!
//! The big transfers move [`BIG`] = 64 MiB each way (through an echo-all stream, checked with
//! a length and an order-sensitive checksum), in debug builds too.
//!
//! # The echo example against rust-libp2p, by hand
//!
//! Our listener, their dialer (copy the `/p2p/…` address our example prints):
//!
//! ```text
//! cargo run -p plait-tokio --example echo -- -l 4001
//! cargo run -p plait-tests --bin libp2p_echo -- -d /ip4/127.0.0.1/tcp/4001/p2p/<PEER ID>
//! ```
//!
//! Their listener, our dialer (`libp2p_echo -l` prints its full address as its first line):
//!
//! ```text
//! cargo run -p plait-tests --bin libp2p_echo -- -l 4002
//! cargo run -p plait-tokio --example echo -- -d /ip4/127.0.0.1/tcp/4002/p2p/<PEER ID>
//! ```
//!
//! Add `--insecure` to both commands of a pair for `/plaintext/2.0.0` instead of Noise. The
//! dialer prints the reply: `Hello, world!` (`libp2p_echo`, verbatim) or
//! `read reply: "Hello, world!\n"` (ours).
//!
//! # What this suite found, and behaviour worth knowing
//!
//! Fixed on our side (rust-libp2p and the specs agreed; each fix is its own commit):
//! - a multistream dialer offering several protocols never sent its next proposal after `na`;
//! - `Host::new_stream` with several protocols and `Host::ping` did not wake the connection, so
//!   the proposal waited for unrelated traffic (up to the next timer, ≥ 10 s);
//! - `Swarm::ping` started the RTT clock at the last time the swarm saw, inflating the RTT by
//!   the idle time before the call;
//! - a lazy stream whose echo, reply and FIN arrived in one flight lost its state before the
//!   application read the end (reads failed with "unknown stream");
//! - a stream reset by the remote could lose its `StreamReset` (reads failed with "unknown
//!   stream" instead of `ConnectionReset`);
//! - finished ping and identify streams were never released (`num_streams` never returned to
//!   0 while connected).
//!
//! Behaviour, not bugs:
//! - rust-libp2p keeps its outbound ping stream open between pings (every 15 s), so a settled
//!   connection has one stream on our side; stream counts are compared to that baseline, and
//!   are 0 only once disconnected. Its ping responder keeps one inbound stream per connection.
//! - rust-yamux resets a stream dropped while open (that is how these tests reset), and sends
//!   FIN for one dropped after our FIN.
//! - When the connection goes away, a read or write on its streams fails with
//!   `ConnectionReset` (waiting or started afterwards), never a clean EOF.

use std::time::{Duration, Instant};

use futures::{future::join_all, AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::multiaddr::Protocol as LpProtocol;
use plait_driver::{
    demo,
    plait_core::multiaddr::{Multiaddr, Protocol},
    plait_core::upgrade::Security,
    Host, HostConfig, HostEvent, Runtime,
};
use plait_tests::{
    interop::{
        all_clean, bytes, echo_all, eventually, our_host, run, send_and_receive, sleep,
        streams_back_to, within, GateProxy, OnAsyncStd, OnSmol, OnTokio,
    },
    libp2p_peer::{
        Libp2pPeer, PeerConfig, PeerEvent, ECHO_ALL_PROTOCOL, ECHO_PROTOCOL, PING_PROTOCOL,
    },
};

/// Bound of every single await.
const T: Duration = Duration::from_secs(10);
/// Bound of steps that are quick unless a wake-up is lost (the host's next timer is ≥ 10 s
/// away: identify's deadline, rust's 15 s ping).
const QUICK: Duration = Duration::from_secs(3);
/// Bound of a whole scenario.
const SCENARIO: Duration = Duration::from_secs(50);
/// Bytes sent each way by the big-transfer scenarios (debug builds too: about 1.5 s each).
const BIG: usize = 64 << 20;
/// A protocol of the rust peer whose streams the test drives by hand ([`Libp2pPeer::accept`]),
/// and that our host serves with a handler that reports what it saw.
const SINK: &str = "/plait-test/sink/1.0.0";
const IDENTIFY: &str = "/ipfs/id/1.0.0";
const UNSUPPORTED: &str = "/plait-test/unsupported/1.0.0";
const HELLO: &[u8] = b"Hello, world!\n";

// ---------------------------------------------------------------------------------------------
// Set-up helpers

async fn our_listener<R: Runtime>(rt: &R, insecure: bool) -> (Host<R>, Multiaddr) {
    plait_tests::interop::our_listener(rt, insecure, T).await
}

async fn their_peer(insecure: bool) -> Libp2pPeer {
    their_peer_with(PeerConfig {
        insecure,
        extra_protocols: vec![SINK.to_owned()],
        ..PeerConfig::default()
    })
    .await
}

async fn their_peer_with(cfg: PeerConfig) -> Libp2pPeer {
    within("spawn the rust-libp2p peer", T, Libp2pPeer::spawn(cfg)).await
}

/// Our host dials the rust peer.
async fn we_dial<R: Runtime>(host: &Host<R>, peer: &Libp2pPeer) {
    let got = within("our dial", T, host.dial(peer.listen_addr()))
        .await
        .expect("our dial");
    assert_eq!(got, peer.peer_id());
}

/// The rust peer dials our host.
async fn they_dial<R: Runtime>(peer: &Libp2pPeer, host: &Host<R>, addr: &Multiaddr) {
    let got = within("their dial", T, peer.dial(addr.clone()))
        .await
        .expect("their dial");
    assert_eq!(got, host.peer_id());
}

/// Serves [`ECHO_ALL_PROTOCOL`] on our host.
fn serve_echo_all<R: Runtime>(host: &Host<R>, rt: &R) {
    let rt2 = rt.clone();
    host.set_stream_handler(ECHO_ALL_PROTOCOL, move |s| {
        rt2.spawn(Box::pin(async move {
            let _ = echo_all(s).await;
        }));
    })
    .unwrap();
}

/// Writes `payload`, half-closes, reads until EOF.
async fn write_close_read<S: futures::AsyncRead + futures::AsyncWrite + Unpin>(
    mut s: S,
    payload: &[u8],
) -> std::io::Result<Vec<u8>> {
    let ctx = |what: &'static str| {
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    s.write_all(payload).await.map_err(ctx("write"))?;
    s.close().await.map_err(ctx("close"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.map_err(ctx("read"))?;
    Ok(out)
}

/// `addr` without its trailing `/p2p/…`.
fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

/// Waits until the connection's housekeeping is over: both identify exchanges and rust's
/// first automatic ping (`events` subscribed before connecting). Returns how many streams our
/// host has then: rust-libp2p keeps its outbound ping stream open between pings, so 1.
async fn settle<R: Runtime>(
    host: &Host<R>,
    peer: &Libp2pPeer,
    events: &mut tokio::sync::broadcast::Receiver<PeerEvent>,
) -> usize {
    let (us, them) = (host.peer_id(), peer.peer_id());
    within("their first automatic ping", T, async {
        loop {
            match events.recv().await.expect("events") {
                PeerEvent::Ping { peer, result } if peer == us => {
                    result.expect("automatic ping");
                    break;
                }
                _ => {}
            }
        }
    })
    .await;
    eventually("we identify them", T, || host.peer_info(them).is_some()).await;
    within("they identify us", T, peer.identify_info(us))
        .await
        .expect("their identify");
    // Our identify answer is released once their FIN arrives.
    let mut n = host.num_streams();
    let start = Instant::now();
    while n > 1 && start.elapsed() < Duration::from_secs(2) {
        sleep(Duration::from_millis(10)).await;
        n = host.num_streams();
    }
    assert_eq!(n, 1, "streams of a settled connection (their ping stream)");
    n
}

// ---------------------------------------------------------------------------------------------
// Echo (go-libp2p's echo example), both securities

/// Our echo example's dialer (`demo::dial_echo`) against their `/echo/1.0.0` listener.
async fn echo_we_dial<R: Runtime>(rt: R) {
    for insecure in [false, true] {
        let peer = their_peer(insecure).await;
        let host = our_host(&rt, insecure);
        let reply = within("echo", T, demo::dial_echo(&host, peer.listen_addr()))
            .await
            .unwrap_or_else(|e| panic!("echo (insecure: {insecure}): {e}"));
        assert_eq!(reply.as_bytes(), HELLO, "insecure: {insecure}");
        host.close();
        peer.shutdown().await;
    }
}

/// Their dialer against our echo example's handler (`demo::serve_echo`).
async fn echo_they_dial<R: Runtime>(rt: R) {
    for insecure in [false, true] {
        let (host, addr) = our_listener(&rt, insecure).await;
        demo::serve_echo(&host, &rt).unwrap();
        let peer = their_peer(insecure).await;
        let reply = within("echo", T, peer.echo(host.peer_id(), Some(addr), HELLO))
            .await
            .unwrap_or_else(|e| panic!("echo (insecure: {insecure}): {e}"));
        assert_eq!(reply, HELLO, "insecure: {insecure}");
        // go's doEcho answers one line and closes without waiting for more.
        let reply = within(
            "echo of two lines",
            T,
            peer.exchange(host.peer_id(), ECHO_PROTOCOL, b"one\ntwo\n"),
        )
        .await
        .unwrap();
        assert_eq!(reply, b"one\n");
        peer.shutdown().await;
        host.close();
    }
}

// ---------------------------------------------------------------------------------------------
// Ping

/// We ping them (`Host::ping`), over Noise and plaintext.
async fn ping_we_ping_them<R: Runtime>(rt: R) {
    for insecure in [false, true] {
        let peer = their_peer(insecure).await;
        let host = our_host(&rt, insecure);
        we_dial(&host, &peer).await;
        // Several pings, each on a fresh stream, some after an idle pause: the RTT must not
        // include the idle time (it is at most the wall time of the call).
        for i in 0..4 {
            if i % 2 == 1 {
                sleep(Duration::from_millis(200)).await;
            }
            let start = Instant::now();
            let rtt = within("our ping", QUICK, host.ping(peer.peer_id()))
                .await
                .expect("ping");
            assert!(rtt <= start.elapsed(), "rtt {rtt:?} > wall time");
        }
        host.close();
        peer.shutdown().await;
    }
}

/// They ping us: on demand over a fresh stream, and rust-libp2p's automatic pings.
async fn ping_they_ping_us<R: Runtime>(rt: R) {
    for insecure in [false, true] {
        let (host, addr) = our_listener(&rt, insecure).await;
        let peer = their_peer(insecure).await;
        let mut events = peer.subscribe();
        they_dial(&peer, &host, &addr).await;
        let us = host.peer_id();
        // rust's ping behaviour pings right after connecting.
        within("their automatic ping", T, async {
            loop {
                match events.recv().await.expect("events") {
                    PeerEvent::Ping { peer, result } if peer == us => {
                        result.expect("automatic ping");
                        break;
                    }
                    _ => {}
                }
            }
        })
        .await;
        for _ in 0..3 {
            let rtt = within("their ping", T, peer.ping(us))
                .await
                .expect("their ping");
            assert!(rtt < T);
        }
        peer.shutdown().await;
        host.close();
    }
}

// ---------------------------------------------------------------------------------------------
// Identify

/// Checks what each side learned about the other.
async fn check_identify<R: Runtime>(host: &Host<R>, our_addr: &Multiaddr, peer: &Libp2pPeer) {
    let them = peer.peer_id();
    // Ours: the Identified event, then peer_info.
    within("our Identified event", T, async {
        loop {
            if let HostEvent::Identified { peer, .. } = host.next_event().await {
                if peer == them {
                    break;
                }
            }
        }
    })
    .await;
    let info = host.peer_info(them).expect("peer_info after Identified");
    for p in [
        ECHO_PROTOCOL,
        ECHO_ALL_PROTOCOL,
        SINK,
        PING_PROTOCOL,
        IDENTIFY,
    ] {
        assert!(
            info.protocols.iter().any(|q| q == p),
            "we did not learn their {p}: {:?}",
            info.protocols
        );
    }
    let their_addr = without_p2p(&peer.listen_addr());
    assert!(
        info.listen_addrs.contains(&their_addr),
        "we did not learn their listen address {their_addr}: {:?}",
        info.listen_addrs
    );
    assert_eq!(
        info.public_key.as_ref().map(|k| k.to_peer_id()),
        Some(them),
        "their identify public key"
    );
    assert!(info.agent_version.is_some());

    // Theirs.
    let info = within("their identify", T, peer.identify_info(host.peer_id()))
        .await
        .expect("their identify info");
    for p in [ECHO_PROTOCOL, PING_PROTOCOL, IDENTIFY] {
        assert!(
            info.protocols.iter().any(|q| q.as_ref() == p),
            "they did not learn our {p}: {:?}",
            info.protocols
        );
    }
    let our_addr = without_p2p(our_addr);
    assert!(
        info.listen_addrs.contains(&our_addr),
        "they did not learn our listen address {our_addr}: {:?}",
        info.listen_addrs
    );
    assert_eq!(info.public_key.to_peer_id(), host.peer_id());
    assert!(
        matches!(
            info.observed_addr.iter().next(),
            Some(LpProtocol::Ip4(ip)) if ip.is_loopback()
        ),
        "observed address {}",
        info.observed_addr
    );
}

async fn identify_we_dial<R: Runtime>(rt: R) {
    let (host, addr) = our_listener(&rt, false).await;
    demo::serve_echo(&host, &rt).unwrap();
    let peer = their_peer(false).await;
    we_dial(&host, &peer).await;
    check_identify(&host, &addr, &peer).await;
    peer.shutdown().await;
    all_clean(&host, T).await;
}

async fn identify_they_dial<R: Runtime>(rt: R) {
    let (host, addr) = our_listener(&rt, false).await;
    demo::serve_echo(&host, &rt).unwrap();
    let peer = their_peer(false).await;
    they_dial(&peer, &host, &addr).await;
    check_identify(&host, &addr, &peer).await;
    peer.shutdown().await;
    all_clean(&host, T).await;
}

// ---------------------------------------------------------------------------------------------
// 100 concurrent streams

const STREAMS: usize = 100;

fn stream_payload(i: usize) -> Vec<u8> {
    bytes(1000 + 37 * i, i as u64)
}

/// We open 100 streams to their echo-all at once, then use them all concurrently.
async fn streams_100_we_open<R: Runtime>(rt: R) {
    let peer = their_peer(false).await;
    let host = our_host(&rt, false);
    let mut events = peer.subscribe();
    we_dial(&host, &peer).await;
    let baseline = settle(&host, &peer, &mut events).await;
    let them = peer.peer_id();
    let opened = within(
        "open 100 streams",
        T,
        join_all((0..STREAMS).map(|_| host.new_stream(them, [ECHO_ALL_PROTOCOL]))),
    )
    .await;
    let streams: Vec<_> = opened.into_iter().map(|s| s.expect("open")).collect();
    // Lazy streams are handed out at once; their connection's task opens them.
    eventually("all 100 streams open", T, || host.num_streams() >= STREAMS).await;
    let results = within(
        "100 concurrent echoes",
        T,
        join_all(streams.into_iter().enumerate().map(|(i, s)| async move {
            let payload = stream_payload(i);
            let reply = write_close_read(s, &payload).await;
            (i, reply.map(|r| r == payload))
        })),
    )
    .await;
    for (i, ok) in results {
        assert!(ok.expect("echo stream"), "stream {i} echoed wrong bytes");
    }
    streams_back_to(&host, baseline, T).await;
    peer.shutdown().await;
    all_clean(&host, T).await;
}

/// They open 100 streams to our echo-all at once.
async fn streams_100_they_open<R: Runtime>(rt: R) {
    let (host, addr) = our_listener(&rt, false).await;
    serve_echo_all(&host, &rt);
    let peer = their_peer(false).await;
    let mut events = peer.subscribe();
    they_dial(&peer, &host, &addr).await;
    let baseline = settle(&host, &peer, &mut events).await;
    let us = host.peer_id();
    let results = within(
        "100 concurrent echoes",
        T,
        join_all((0..STREAMS).map(|i| {
            let peer = &peer;
            async move {
                let payload = stream_payload(i);
                (
                    i,
                    peer.echo_all(us, None, &payload)
                        .await
                        .map(|r| r == payload),
                )
            }
        })),
    )
    .await;
    for (i, ok) in results {
        assert!(ok.expect("echo stream"), "stream {i} echoed wrong bytes");
    }
    streams_back_to(&host, baseline, T).await;
    peer.shutdown().await;
    all_clean(&host, T).await;
}

// ---------------------------------------------------------------------------------------------
// Big transfer with checksum

fn report_rate(what: &str, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{what}: {} MiB each way in {secs:.2} s ({:.1} MiB/s each way)",
        BIG >> 20,
        (BIG >> 20) as f64 / secs
    );
}

/// Sends [`BIG`] pattern bytes (`seed`) through an echo-all stream and checks the echo's
/// (length, checksum); reports the rate as `what`.
async fn big_through_echo_all<S>(s: S, seed: u64, what: &str)
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    let start = Instant::now();
    let (sent, received) = within("transfer", SCENARIO, send_and_receive(s, BIG, seed))
        .await
        .expect("transfer");
    report_rate(what, start);
    assert_eq!(sent.0, BIG as u64);
    assert_eq!(received, sent, "(length, checksum) of the echo");
}

/// We send [`BIG`] bytes through their echo-all and check the echo.
async fn transfer_we_send<R: Runtime>(rt: R) {
    let peer = their_peer(false).await;
    let host = our_host(&rt, false);
    we_dial(&host, &peer).await;
    let s = within(
        "open",
        T,
        host.new_stream(peer.peer_id(), [ECHO_ALL_PROTOCOL]),
    )
    .await
    .unwrap();
    big_through_echo_all(s, 1, "we send").await;
    peer.shutdown().await;
    all_clean(&host, T).await;
}

/// They send [`BIG`] bytes through our echo-all and check the echo.
async fn transfer_they_send<R: Runtime>(rt: R) {
    let (host, addr) = our_listener(&rt, false).await;
    serve_echo_all(&host, &rt);
    let peer = their_peer(false).await;
    they_dial(&peer, &host, &addr).await;
    let s = within(
        "open",
        T,
        peer.open_stream(host.peer_id(), ECHO_ALL_PROTOCOL),
    )
    .await
    .unwrap();
    big_through_echo_all(s, 2, "they send").await;
    peer.shutdown().await;
    all_clean(&host, T).await;
}

// ---------------------------------------------------------------------------------------------
// They close or reset streams and connections while we read and write

/// On streams we opened: they reset while we read, reset while we are blocked writing, and
/// half-close while we read (we still write afterwards).
async fn they_reset_or_close_our_streams<R: Runtime>(rt: R) {
    use std::io::ErrorKind;
    let peer = their_peer(false).await;
    let host = our_host(&rt, false);
    let mut events = peer.subscribe();
    we_dial(&host, &peer).await;
    let baseline = settle(&host, &peer, &mut events).await;
    let them = peer.peer_id();

    // Reset while we read.
    let mut ours = within("open", T, host.new_stream(them, [SINK]))
        .await
        .unwrap();
    ours.write_all(b"hello\n").await.unwrap();
    let mut theirs = peer.accept_timeout(T).await.unwrap();
    let mut buf = [0u8; 6];
    within("their read", T, theirs.stream.read_exact(&mut buf))
        .await
        .unwrap();
    let (read, ()) = within(
        "our read across their reset",
        T,
        futures::future::join(ours.read(&mut buf), async {
            sleep(Duration::from_millis(50)).await;
            drop(theirs); // rust-yamux resets a stream dropped while open
        }),
    )
    .await;
    let err = read.expect_err("read after their reset");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    let err = ours
        .write_all(b"more")
        .await
        .expect_err("write after reset");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    drop(ours);

    // Reset while we are blocked writing (they stop reading; flow control stalls us).
    let mut ours = within("open", T, host.new_stream(them, [SINK]))
        .await
        .unwrap();
    let big = bytes(4 << 20, 3);
    let (write, ()) = within(
        "our write across their reset",
        T,
        futures::future::join(ours.write_all(&big), async {
            let mut theirs = peer.accept_timeout(T).await.unwrap();
            let mut buf = vec![0u8; 1000];
            theirs.stream.read_exact(&mut buf).await.unwrap();
            sleep(Duration::from_millis(100)).await;
            drop(theirs);
        }),
    )
    .await;
    let err = write.expect_err("write across their reset");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    drop(ours);

    // Half-close while we read: we see EOF after their data and may still write.
    let mut ours = within("open", T, host.new_stream(them, [SINK]))
        .await
        .unwrap();
    ours.flush().await.unwrap();
    let mut theirs = peer.accept_timeout(T).await.unwrap();
    let (read, ()) = within(
        "our read until their FIN",
        T,
        futures::future::join(
            async {
                let mut out = Vec::new();
                ours.read_to_end(&mut out).await.map(|_| out)
            },
            async {
                theirs.stream.write_all(b"bye").await.unwrap();
                theirs.stream.close().await.unwrap();
            },
        ),
    )
    .await;
    assert_eq!(read.unwrap(), b"bye");
    ours.write_all(b"after their FIN").await.unwrap();
    ours.close().await.unwrap();
    let mut got = Vec::new();
    within("their read", T, theirs.stream.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(got, b"after their FIN");
    drop(theirs);
    drop(ours);

    streams_back_to(&host, baseline, T).await;
    // Still usable afterwards.
    let reply = within("echo after resets", T, async {
        let s = host.new_stream(them, [ECHO_PROTOCOL]).await.unwrap();
        write_close_read(s, HELLO).await
    })
    .await
    .unwrap();
    assert_eq!(reply, HELLO);
    peer.shutdown().await;
    all_clean(&host, T).await;
}

/// They close the connection while we read on one stream and write on another; then their
/// whole peer goes away in the middle of a transfer.
async fn they_disconnect_while_we_read_and_write<R: Runtime>(rt: R) {
    let peer = their_peer(false).await;
    let host = our_host(&rt, false);
    we_dial(&host, &peer).await;
    let them = peer.peer_id();

    let mut reading = within("open", T, host.new_stream(them, [SINK]))
        .await
        .unwrap();
    reading.write_all(b"x").await.unwrap();
    let mut writing = within("open", T, host.new_stream(them, [SINK]))
        .await
        .unwrap();
    let _a = peer.accept_timeout(T).await.unwrap();
    let big = bytes(4 << 20, 4);
    let mut buf = [0u8; 16];
    let (read, write, disconnected) = within(
        "our read and write across their disconnect",
        T,
        futures::future::join3(reading.read(&mut buf), writing.write_all(&big), async {
            sleep(Duration::from_millis(100)).await;
            peer.disconnect(host.peer_id()).await
        }),
    )
    .await;
    assert!(disconnected, "they had a connection to close");
    // A read on a connection that went away is an error, never a clean EOF.
    assert!(read.is_err(), "read across disconnect: {read:?}");
    assert!(write.is_err(), "write across disconnect: {write:?}");
    assert!(reading.read(&mut buf).await.is_err());
    assert!(writing.write_all(b"more").await.is_err());
    drop((reading, writing));
    all_clean(&host, T).await;

    // Their peer disappears mid-transfer (swarm dropped: the TCP connection closes).
    we_dial(&host, &peer).await;
    let s = within("open", T, host.new_stream(them, [ECHO_ALL_PROTOCOL]))
        .await
        .unwrap();
    let (transfer, ()) = within(
        "transfer across their shutdown",
        T,
        futures::future::join(send_and_receive(s, 64 << 20, 5), async {
            sleep(Duration::from_millis(200)).await;
            peer.shutdown().await;
        }),
    )
    .await;
    assert!(transfer.is_err(), "transfer survived: {transfer:?}");
    all_clean(&host, T).await;
}

/// What our [`SINK`] handler saw.
#[derive(Debug)]
enum SinkReport {
    Read(std::io::Result<Vec<u8>>),
    Write(std::io::Result<()>),
}

/// Serves [`SINK`] on our host: streams whose first byte is `w` are written to without end,
/// others are read to the end; the outcome is sent to the returned channel.
fn serve_sink<R: Runtime>(
    host: &Host<R>,
    rt: &R,
) -> futures::channel::mpsc::UnboundedReceiver<SinkReport> {
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let rt2 = rt.clone();
    host.set_stream_handler(SINK, move |mut s| {
        let tx = tx.clone();
        rt2.spawn(Box::pin(async move {
            let mut first = [0u8; 1];
            if let Err(e) = s.read_exact(&mut first).await {
                // E.g. the connection went away before this task first ran.
                let _ = tx.unbounded_send(SinkReport::Read(Err(e)));
                return;
            }
            let report = if first[0] == b'w' {
                let chunk = vec![7u8; 64 * 1024];
                SinkReport::Write(
                    async {
                        loop {
                            s.write_all(&chunk).await?;
                        }
                    }
                    .await,
                )
            } else {
                let mut out = Vec::new();
                SinkReport::Read(s.read_to_end(&mut out).await.map(|_| out))
            };
            let _ = tx.unbounded_send(report);
        }));
    })
    .unwrap();
    rx
}

async fn next_report(
    reports: &mut futures::channel::mpsc::UnboundedReceiver<SinkReport>,
    what: &str,
) -> SinkReport {
    within(what, T, reports.next()).await.expect("a report")
}

/// On streams they opened to us: they reset while our handler reads, half-close, and close
/// the connection while our handler writes.
async fn they_reset_or_disconnect_our_inbound<R: Runtime>(rt: R) {
    use std::io::ErrorKind;
    let (host, addr) = our_listener(&rt, false).await;
    let mut reports = serve_sink(&host, &rt);
    let peer = their_peer(false).await;
    they_dial(&peer, &host, &addr).await;
    let us = host.peer_id();

    // Reset while our handler reads.
    let mut s = within("open", T, peer.open_stream(us, SINK)).await.unwrap();
    s.write_all(b"rpartial").await.unwrap();
    s.flush().await.unwrap();
    sleep(Duration::from_millis(50)).await;
    drop(s);
    match next_report(&mut reports, "our reader across their reset").await {
        SinkReport::Read(Err(e)) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        other => panic!("our reader across their reset: {other:?}"),
    }

    // Half-close: our handler reads to a clean end.
    let s = within("open", T, peer.open_stream(us, SINK)).await.unwrap();
    let (mut r, mut w) = s.split();
    w.write_all(b"rall of it").await.unwrap();
    w.close().await.unwrap();
    match next_report(&mut reports, "our reader across their FIN").await {
        SinkReport::Read(Ok(data)) => assert_eq!(data, b"all of it"),
        other => panic!("our reader across their FIN: {other:?}"),
    }
    let mut rest = Vec::new();
    within("their read of our FIN", T, r.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty());
    drop((r, w));

    // Reset while our handler is blocked writing.
    let mut s = within("open", T, peer.open_stream(us, SINK)).await.unwrap();
    s.write_all(b"w").await.unwrap();
    let mut buf = vec![0u8; 100_000];
    within("their read", T, s.read_exact(&mut buf))
        .await
        .unwrap();
    drop(s);
    match next_report(&mut reports, "our writer across their reset").await {
        SinkReport::Write(Err(e)) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        other => panic!("our writer across their reset: {other:?}"),
    }

    // Connection closed while our handler writes on one stream and reads on another.
    let mut w = within("open", T, peer.open_stream(us, SINK)).await.unwrap();
    w.write_all(b"w").await.unwrap();
    let mut r = within("open", T, peer.open_stream(us, SINK)).await.unwrap();
    r.write_all(b"r").await.unwrap();
    r.flush().await.unwrap();
    let mut buf = vec![0u8; 100_000];
    within("their read", T, w.read_exact(&mut buf))
        .await
        .unwrap();
    assert!(within("disconnect", T, peer.disconnect(us)).await);
    let mut got = [
        next_report(&mut reports, "disconnect report 1").await,
        next_report(&mut reports, "disconnect report 2").await,
    ];
    got.sort_by_key(|r| matches!(r, SinkReport::Read(_)));
    assert!(matches!(got[0], SinkReport::Write(Err(_))), "{got:?}");
    assert!(matches!(got[1], SinkReport::Read(Err(_))), "{got:?}");
    drop((w, r));
    all_clean(&host, T).await;
    peer.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Multistream-select: our lazy dialer, their multi-protocol and lazy dialers

/// With one protocol our dialer is lazy: the first data leaves before their listener answered.
/// A relay holds every byte from them until our data passed, which only a lazy dialer survives.
async fn lazy_dialer_sends_data_with_proposal<R: Runtime>(rt: R) {
    const LINE: &[u8] = b"lazy data rides with the proposal\n";
    let peer = their_peer(true).await; // plaintext, so the relay can see our bytes
    let target = format!("127.0.0.1:{}", peer.listen_port()).parse().unwrap();
    let proxy = within("proxy", T, GateProxy::start(target, LINE))
        .await
        .unwrap();
    let host = our_host(&rt, true);
    let via: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", proxy.port(), peer.peer_id())
        .parse()
        .unwrap();
    assert_eq!(
        within("dial via relay", T, host.dial(via)).await.unwrap(),
        peer.peer_id()
    );
    proxy.arm();
    let mut s = within(
        "lazy open (answer held back)",
        T,
        host.new_stream(peer.peer_id(), [ECHO_PROTOCOL]),
    )
    .await
    .expect("a lazy open does not wait for the listener");
    s.write_all(LINE).await.unwrap();
    let mut reply = Vec::new();
    within("echo", T, s.read_to_end(&mut reply)).await.unwrap();
    assert!(proxy.released());
    assert_eq!(reply, LINE);
    drop(s);
    peer.shutdown().await;
    all_clean(&host, T).await;
}

/// A lazy proposal they reject: the open succeeds, our first read fails.
async fn lazy_rejection_fails_first_read<R: Runtime>(rt: R) {
    let peer = their_peer(false).await;
    let host = our_host(&rt, false);
    let mut events = peer.subscribe();
    we_dial(&host, &peer).await;
    let baseline = settle(&host, &peer, &mut events).await;
    let mut s = within(
        "lazy open",
        T,
        host.new_stream(peer.peer_id(), [UNSUPPORTED]),
    )
    .await
    .expect("lazy open succeeds at once");
    // The write may or may not fail, depending on whether the rejection arrived already.
    let _ = s.write_all(b"data for nobody").await;
    let mut buf = [0u8; 16];
    let read = within("read of a rejected stream", T, s.read(&mut buf)).await;
    let err = read.expect_err("read on a rejected lazy stream");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    drop(s);
    streams_back_to(&host, baseline, T).await;
    // Our strict dialer (several protocols) gets `na` for the first and agrees on the second.
    let s = within(
        "open [unsupported, echo]",
        QUICK,
        host.new_stream(peer.peer_id(), [UNSUPPORTED, ECHO_PROTOCOL]),
    )
    .await
    .unwrap();
    assert_eq!(s.protocol().as_str(), ECHO_PROTOCOL);
    assert_eq!(
        within("echo", T, write_close_read(s, HELLO)).await.unwrap(),
        HELLO
    );
    // None supported: the open fails.
    let err = within(
        "open [unsupported, unsupported]",
        QUICK,
        host.new_stream(peer.peer_id(), [UNSUPPORTED, "/plait-test/nope/1.0.0"]),
    )
    .await;
    assert!(err.is_err(), "open of unsupported protocols succeeded");
    peer.shutdown().await;
    all_clean(&host, T).await;
}

/// Their multistream dialer offers protocols we only partly support: `na`, then agreement.
/// Their lazy dialer (`V1Lazy`) works against our listener too.
async fn their_dialer_offers_several_protocols<R: Runtime>(rt: R) {
    let (host, addr) = our_listener(&rt, false).await;
    demo::serve_echo(&host, &rt).unwrap();
    let us = host.peer_id();
    let peer = their_peer(false).await;
    they_dial(&peer, &host, &addr).await;
    let (s, protocol) = within(
        "their open [unsupported, echo]",
        T,
        peer.open_stream_any(us, &[UNSUPPORTED, ECHO_PROTOCOL]),
    )
    .await
    .expect("agreement on the second protocol");
    assert_eq!(protocol, ECHO_PROTOCOL);
    assert_eq!(
        within("echo", T, write_close_read(s, HELLO)).await.unwrap(),
        HELLO
    );
    let err = within(
        "their open [unsupported, unsupported]",
        T,
        peer.open_stream_any(us, &[UNSUPPORTED, "/plait-test/nope/1.0.0"]),
    )
    .await
    .expect_err("nothing we support");
    assert!(err.starts_with("unsupported protocol"), "{err}");
    peer.shutdown().await;

    let lazy = their_peer_with(PeerConfig {
        lazy_stream_negotiation: true,
        ..PeerConfig::default()
    })
    .await;
    let reply = within("their lazy echo", T, lazy.echo(us, Some(addr), HELLO))
        .await
        .unwrap();
    assert_eq!(reply, HELLO);
    // Their lazy proposal we reject: their open succeeds, their read fails.
    let mut s = within("their lazy open", T, lazy.open_stream(us, UNSUPPORTED))
        .await
        .expect("lazy open");
    let _ = s.write_all(b"x").await;
    let _ = s.flush().await;
    let mut buf = [0u8; 4];
    let read = within("their read of a rejected stream", T, s.read(&mut buf)).await;
    assert!(
        read.is_err(),
        "their read on a stream we rejected: {read:?}"
    );
    drop(s);
    lazy.shutdown().await;
    all_clean(&host, T).await;
}

// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// TLS (`/tls/1.0.0`, rust-libp2p's `libp2p-tls`): both sides TLS only

/// A host of ours speaking TLS only.
fn our_tls_host<R: Runtime>(rt: &R) -> Host<R> {
    let config = HostConfig::random().with_security(Security::Tls);
    Host::new(rt.clone(), config).expect("host")
}

async fn their_tls_peer() -> Libp2pPeer {
    their_peer_with(PeerConfig {
        tls: true,
        extra_protocols: vec![SINK.to_owned()],
        ..PeerConfig::default()
    })
    .await
}

/// Over TLS, we dial: echo, ping, identify, [`BIG`] bytes each way through their echo-all.
async fn tls_we_dial<R: Runtime>(rt: R) {
    let peer = their_tls_peer().await;
    let host = our_tls_host(&rt);
    we_dial(&host, &peer).await;
    let s = within(
        "open echo",
        T,
        host.new_stream(peer.peer_id(), [ECHO_PROTOCOL]),
    )
    .await
    .expect("open");
    let reply = within("echo", T, write_close_read(s, HELLO))
        .await
        .expect("echo");
    assert_eq!(reply, HELLO);
    within("our ping", T, host.ping(peer.peer_id()))
        .await
        .expect("ping");
    let info = within("identify", T, async {
        loop {
            if let Some(info) = host.peer_info(peer.peer_id()) {
                return info;
            }
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(
        info.public_key.map(|k| k.to_peer_id()),
        Some(peer.peer_id())
    );
    let s = within(
        "open echo-all",
        T,
        host.new_stream(peer.peer_id(), [ECHO_ALL_PROTOCOL]),
    )
    .await
    .expect("open");
    big_through_echo_all(s, 1, "over TLS, 64 MiB each way (we dial)").await;
    peer.shutdown().await;
    all_clean(&host, T).await;
}

/// Over TLS, they dial: their echo, their ping, identify, [`BIG`] bytes each way through our
/// echo-all.
async fn tls_they_dial<R: Runtime>(rt: R) {
    let host = our_tls_host(&rt);
    within(
        "listen",
        T,
        host.listen("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")),
    )
    .await
    .expect("listen");
    let addr = host.listen_addrs().into_iter().next().expect("an address");
    demo::serve_echo(&host, &rt).expect("echo");
    serve_echo_all(&host, &rt);
    let peer = their_tls_peer().await;
    they_dial(&peer, &host, &addr).await;
    let reply = within("their echo", T, peer.echo(host.peer_id(), None, HELLO))
        .await
        .expect("their echo");
    assert_eq!(reply, HELLO);
    within("their ping", T, peer.ping(host.peer_id()))
        .await
        .expect("their ping");
    check_identify(&host, &addr, &peer).await;
    let s = within(
        "open echo-all",
        T,
        peer.open_stream(host.peer_id(), ECHO_ALL_PROTOCOL),
    )
    .await
    .expect("open");
    big_through_echo_all(s, 1, "over TLS, 64 MiB each way (they dial)").await;
    peer.shutdown().await;
    all_clean(&host, T).await;
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        /// Our host on tokio, sharing the rust peer's runtime.
        mod on_tokio {
            $( #[test] fn $name() { super::run::<super::OnTokio, _>(super::SCENARIO, |rt| super::$name(rt)) } )*
        }
        /// Our host on smol.
        mod on_smol {
            $( #[test] fn $name() { super::run::<super::OnSmol, _>(super::SCENARIO, |rt| super::$name(rt)) } )*
        }
        /// Our host on async-std.
        mod on_async_std {
            $( #[test] fn $name() { super::run::<super::OnAsyncStd, _>(super::SCENARIO, |rt| super::$name(rt)) } )*
        }
    };
}

scenarios!(
    echo_we_dial,
    echo_they_dial,
    ping_we_ping_them,
    ping_they_ping_us,
    identify_we_dial,
    identify_they_dial,
    streams_100_we_open,
    streams_100_they_open,
    transfer_we_send,
    transfer_they_send,
    they_reset_or_close_our_streams,
    they_disconnect_while_we_read_and_write,
    they_reset_or_disconnect_our_inbound,
    lazy_dialer_sends_data_with_proposal,
    lazy_rejection_fails_first_read,
    their_dialer_offers_several_protocols,
    tls_we_dial,
    tls_they_dial,
);
