//! Self-test of the rust-libp2p test peer (`plait_tests::libp2p_peer`) and the `libp2p_echo`
//! binary: two rust-libp2p peers against each other over loopback TCP. If these fail, the test
//! peer is broken, not Plait.

use std::{process::Stdio, time::Duration};

use futures::{future::join_all, AsyncReadExt as _, AsyncWriteExt as _};
use libp2p::multiaddr::Protocol;
use plait_tests::libp2p_peer::{
    keypair_from_seed, Libp2pPeer, PeerConfig, PeerEvent, ECHO_ALL_PROTOCOL, ECHO_PROTOCOL,
    PERF_BLOCK, PERF_PROTOCOL,
};
use tokio::io::AsyncBufReadExt as _;

const T: Duration = Duration::from_secs(10);

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("timed out")
}

/// Two peers, `a` connected to `b`.
async fn pair(a_cfg: PeerConfig, b_cfg: PeerConfig) -> (Libp2pPeer, Libp2pPeer) {
    let b = Libp2pPeer::spawn(b_cfg).await;
    let a = Libp2pPeer::spawn(a_cfg).await;
    let got = within(a.dial(b.listen_addr())).await.expect("dial");
    assert_eq!(got, b.peer_id());
    (a, b)
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// FNV-1a 64.
fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_line_like_go_example() {
    let (a, b) = pair(PeerConfig::default(), PeerConfig::default()).await;
    let reply = within(a.echo(b.peer_id(), None, b"Hello, world!\n"))
        .await
        .unwrap();
    assert_eq!(reply, b"Hello, world!\n");

    // Only the first line comes back, and the server closes without waiting for our EOF.
    let mut s = within(a.open_stream(b.peer_id(), ECHO_PROTOCOL))
        .await
        .unwrap();
    s.write_all(b"one\ntwo\n").await.unwrap();
    s.flush().await.unwrap();
    let mut out = Vec::new();
    within(s.read_to_end(&mut out)).await.unwrap();
    assert_eq!(out, b"one\n");

    // A large payload after the first line: the server still answers with the line and closes;
    // our unread-by-the-server write does not turn into an error.
    let mut big = b"first\n".to_vec();
    big.extend(bytes(1 << 20, 1));
    let reply = within(a.echo(b.peer_id(), None, &big)).await.unwrap();
    assert_eq!(reply, b"first\n");

    // Echo dials by itself when given an address.
    let c = Libp2pPeer::spawn(PeerConfig::default()).await;
    let reply = within(c.echo(b.peer_id(), Some(b.listen_addr()), b"x\n"))
        .await
        .unwrap();
    assert_eq!(reply, b"x\n");
    for p in [a, b, c] {
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_echo_one_mib_with_checksum() {
    let (a, b) = pair(PeerConfig::default(), PeerConfig::default()).await;
    let payload = bytes(1 << 20, 42);
    let reply = within(a.echo_all(b.peer_id(), None, &payload))
        .await
        .unwrap();
    assert_eq!(reply.len(), payload.len());
    assert_eq!(checksum(&reply), checksum(&payload));
    assert!(reply == payload);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_streams_both_directions() {
    let (a, b) = pair(PeerConfig::default(), PeerConfig::default()).await;
    let payloads: Vec<Vec<u8>> = (0..100u64).map(|i| bytes(4096 + i as usize, i)).collect();

    // a -> b: 100 raw-echo streams opened and served at once on one connection.
    let replies = within(join_all(
        payloads.iter().map(|p| a.echo_all(b.peer_id(), None, p)),
    ))
    .await;
    for (p, r) in payloads.iter().zip(replies) {
        assert_eq!(&r.unwrap(), p);
    }
    // b -> a: 100 line-echo streams, the other direction.
    let lines: Vec<Vec<u8>> = (0..100)
        .map(|i| format!("line {i}\n").into_bytes())
        .collect();
    let replies = within(join_all(lines.iter().map(|l| b.echo(a.peer_id(), None, l)))).await;
    for (l, r) in lines.iter().zip(replies) {
        assert_eq!(&r.unwrap(), l);
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_streams_are_queued_not_dropped() {
    const SINK: &str = "/plait-test/sink/1.0.0";
    let b_cfg = PeerConfig {
        extra_protocols: vec![SINK.into()],
        ..PeerConfig::default()
    };
    let (a, b) = pair(PeerConfig::default(), b_cfg).await;

    // Open 100 streams and write on each before `b` accepts any of them.
    let mut streams = within(join_all((0..100).map(|_| a.open_stream(b.peer_id(), SINK)))).await;
    for (i, s) in streams.iter_mut().enumerate() {
        let s = s.as_mut().expect("open");
        s.write_all(format!("{i}\n").as_bytes()).await.unwrap();
        s.close().await.unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..100 {
        let mut inbound = b.accept_timeout(T).await.unwrap();
        assert_eq!(inbound.protocol, SINK);
        assert_eq!(inbound.peer, a.peer_id());
        let mut text = String::new();
        inbound.stream.read_to_string(&mut text).await.unwrap();
        seen.push(text.trim_end().parse::<usize>().unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_on_demand_and_automatic() {
    let b = Libp2pPeer::spawn(PeerConfig::default()).await;
    let a = Libp2pPeer::spawn(PeerConfig::default()).await;
    let mut events = a.subscribe();
    within(a.dial(b.listen_addr())).await.unwrap();

    // rust-libp2p's ping behaviour pings once as soon as the connection is up.
    let rtt = within(async {
        loop {
            if let PeerEvent::Ping { peer, result } = events.recv().await.unwrap() {
                assert_eq!(peer, b.peer_id());
                break result.unwrap();
            }
        }
    })
    .await;
    assert!(rtt < Duration::from_secs(1), "{rtt:?}");

    // On-demand ping on a fresh stream, after the automatic one: a rust-libp2p responder keeps
    // only one inbound ping stream per connection, so doing this *first* would make the automatic
    // ping fail silently and retry only after the 15 s interval.
    let rtt = within(a.ping(b.peer_id())).await.unwrap();
    assert!(rtt < Duration::from_secs(1), "{rtt:?}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_reports_the_remote() {
    let b_cfg = PeerConfig {
        extra_protocols: vec!["/plait-test/extra/1.0.0".into()],
        ..PeerConfig::default()
    };
    let (a, b) = pair(PeerConfig::default(), b_cfg).await;
    let info = within(a.identify_info(b.peer_id())).await.unwrap();
    assert_eq!(info.public_key.to_peer_id(), b.peer_id());
    assert_eq!(info.protocol_version, "ipfs/0.1.0");
    assert!(
        info.agent_version.starts_with("rust-libp2p/"),
        "{}",
        info.agent_version
    );
    for p in [
        ECHO_PROTOCOL,
        ECHO_ALL_PROTOCOL,
        "/plait-test/extra/1.0.0",
        "/ipfs/ping/1.0.0",
        "/ipfs/id/1.0.0",
    ] {
        assert!(
            info.protocols.iter().any(|q| q.as_ref() == p),
            "{p} not in {:?}",
            info.protocols
        );
    }
    let mut b_addr = b.listen_addr();
    b_addr.pop(); // drop /p2p
    assert!(
        info.listen_addrs.contains(&b_addr),
        "{:?}",
        info.listen_addrs
    );
    assert!(
        matches!(info.observed_addr.iter().next(), Some(Protocol::Ip4(ip)) if ip.is_loopback())
    );

    // And b learned about a.
    let info = within(b.identify_info(a.peer_id())).await.unwrap();
    assert_eq!(info.public_key.to_peer_id(), a.peer_id());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_mismatch() {
    let insecure = || PeerConfig {
        insecure: true,
        ..PeerConfig::default()
    };
    let b = Libp2pPeer::spawn(insecure()).await;
    let a = Libp2pPeer::spawn(insecure()).await;
    let mut events = a.subscribe();
    within(a.dial(b.listen_addr())).await.unwrap();
    let reply = within(a.echo(b.peer_id(), None, b"plain\n")).await.unwrap();
    assert_eq!(reply, b"plain\n");
    // The on-demand ping goes after the automatic one: a rust-libp2p responder keeps one
    // inbound ping stream per connection and drops the older, so an automatic ping delayed
    // past ours (a loaded machine) would reset ours (seen once in CI).
    within(async { while !matches!(events.recv().await.unwrap(), PeerEvent::Ping { .. }) {} })
        .await;
    within(a.ping(b.peer_id())).await.unwrap();

    // Noise against plaintext: no common security protocol.
    let n = Libp2pPeer::spawn(PeerConfig::default()).await;
    assert!(within(n.dial(b.listen_addr())).await.is_err());
    for p in [a, b, n] {
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiation_identity_and_lazy_mode() {
    let b = Libp2pPeer::spawn(PeerConfig {
        seed: Some(7),
        ..PeerConfig::default()
    })
    .await;
    assert_eq!(b.peer_id(), keypair_from_seed(7).public().to_peer_id());
    let a = Libp2pPeer::spawn(PeerConfig {
        lazy_stream_negotiation: true,
        listen_port: None,
        ..PeerConfig::default()
    })
    .await;

    // Wrong /p2p suffix is refused.
    let mut wrong = b.listen_addr();
    wrong.pop();
    let wrong = wrong.with(Protocol::P2p(keypair_from_seed(8).public().to_peer_id()));
    assert!(within(a.dial(wrong)).await.is_err());

    assert_eq!(
        within(a.connect(b.listen_addr())).await.unwrap(),
        b.peer_id()
    );
    // Several protocols offered: the first the remote supports wins.
    let (_, chosen) = within(a.open_stream_any(b.peer_id(), &["/nope/1.0.0", ECHO_PROTOCOL]))
        .await
        .unwrap();
    assert_eq!(chosen, ECHO_PROTOCOL);
    // With lazy negotiation a single unsupported protocol only shows up on the first read.
    let mut s = within(a.open_stream(b.peer_id(), "/nope/1.0.0"))
        .await
        .unwrap();
    let mut buf = [0u8; 1];
    assert!(within(s.read(&mut buf)).await.is_err());
    // Without it, opening fails outright.
    let strict = Libp2pPeer::spawn(PeerConfig::default()).await;
    within(strict.dial(b.listen_addr())).await.unwrap();
    let err = within(strict.open_stream(b.peer_id(), "/nope/1.0.0"))
        .await
        .unwrap_err();
    assert!(err.starts_with("unsupported protocol"), "{err}");
    strict.shutdown().await;
    // Lazy (V1Lazy) negotiation still echoes.
    let reply = within(a.echo(b.peer_id(), None, b"lazy\n")).await.unwrap();
    assert_eq!(reply, b"lazy\n");

    assert!(a.disconnect(b.peer_id()).await);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_binary_both_modes() {
    let exe = env!("CARGO_BIN_EXE_libp2p_echo");

    // Listener mode: first stdout line is the full address.
    let mut child = tokio::process::Command::new(exe)
        .args(["-l", "0", "--seed", "9"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = within(lines.next_line()).await.unwrap().unwrap();
    let addr: libp2p::Multiaddr = line.parse().unwrap();
    let peer = keypair_from_seed(9).public().to_peer_id();
    assert_eq!(addr.iter().last(), Some(Protocol::P2p(peer)));
    let a = Libp2pPeer::spawn(PeerConfig::default()).await;
    let reply = within(a.echo(peer, Some(addr), b"Hello, world!\n"))
        .await
        .unwrap();
    assert_eq!(reply, b"Hello, world!\n");
    child.kill().await.unwrap();

    // Dialer mode, plaintext, against an in-process peer.
    let b = Libp2pPeer::spawn(PeerConfig {
        insecure: true,
        ..PeerConfig::default()
    })
    .await;
    let out = within(
        tokio::process::Command::new(exe)
            .args(["--insecure", "-d", &b.listen_addr().to_string()])
            .stderr(Stdio::null())
            .output(),
    )
    .await
    .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, b"Hello, world!\n");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_client_and_server() {
    let server = Libp2pPeer::spawn(PeerConfig {
        perf: true,
        ..PeerConfig::default()
    })
    .await;
    let (a, b) = (Libp2pPeer::spawn(PeerConfig::default()).await, server);
    within(a.dial(b.listen_addr())).await.unwrap();
    // Sizes around the 64 KiB write block, and both directions empty.
    for (up, down) in [
        (0, 0),
        (1, 1),
        (PERF_BLOCK as u64 + 1, 3 * PERF_BLOCK as u64 - 1),
    ] {
        within(a.perf(b.peer_id(), up, down))
            .await
            .unwrap_or_else(|e| panic!("{up} up, {down} down: {e}"));
    }
    // Without `perf` the protocol is not served.
    let err = within(b.perf(a.peer_id(), 1, 1)).await.unwrap_err();
    assert!(err.starts_with("unsupported protocol"), "{err}");
    a.shutdown().await;
    b.shutdown().await;
}

/// A server that sends one byte fewer, or one more, than asked: the client fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_client_rejects_a_wrong_download() {
    let b = Libp2pPeer::spawn(PeerConfig {
        extra_protocols: vec![PERF_PROTOCOL.into()],
        ..PeerConfig::default()
    })
    .await;
    let a = Libp2pPeer::spawn(PeerConfig::default()).await;
    within(a.dial(b.listen_addr())).await.unwrap();
    for wrong in [99u64, 101] {
        let client = a.perf(b.peer_id(), 5, 100);
        let server = async {
            let mut s = within(b.accept()).await.unwrap().stream;
            let mut header = [0u8; 8];
            s.read_exact(&mut header).await.unwrap();
            assert_eq!(u64::from_be_bytes(header), 100);
            let mut upload = Vec::new();
            s.read_to_end(&mut upload).await.unwrap();
            assert_eq!(upload, [0; 5]);
            s.write_all(&vec![0; wrong as usize]).await.unwrap();
            s.close().await.unwrap();
        };
        let (result, ()) = within(futures::future::join(client, server)).await;
        let err = result.unwrap_err();
        assert_eq!(err, format!("perf: expected 100 bytes, got {wrong}"));
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_binary_server_and_client() {
    let exe = env!("CARGO_BIN_EXE_libp2p_echo");
    let mut child = tokio::process::Command::new(exe)
        .args(["-l", "0", "--perf"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = within(lines.next_line()).await.unwrap().unwrap();
    let run = |up: &str, down: &str| {
        tokio::process::Command::new(exe)
            .args(["--perf-client", &addr, "--upload-bytes", up])
            .args(["--download-bytes", down])
            .stderr(Stdio::null())
            .output()
    };
    let out = within(run("100000", "200000")).await.unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let secs: Vec<f64> = text
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    assert_eq!(secs.len(), 2, "{text:?}");
    assert!(secs.iter().all(|s| *s >= 0.0), "{text:?}");
    child.kill().await.unwrap();
    // Nobody listening any more: the client fails with exit code 1.
    let out = within(run("1", "1")).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
}
