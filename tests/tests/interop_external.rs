//! Interoperability with libp2p implementations in other languages, run as child processes
//! over real loopback TCP: the go-libp2p test peer (`tests/peers/go`, go-libp2p v0.52.0) and,
//! with the same scenarios, the js-libp2p one (`tests/peers/js`) once it lands.
//!
//! The peers follow one contract, `tests/peers/README.md`, driven by
//! [`plait_tests::external_peer`]. Every scenario runs our [`Host`] once per runtime of ours
//! (tokio, smol, async-std) against a fresh peer process, in both directions where it makes
//! sense. The scenarios are written once, generic over [`Runtime`] and [`PeerKind`]; the
//! `suite!` macro at the bottom instantiates them as `go::on_tokio::*`, `go::on_smol::*`,
//! `go::on_async_std::*` (and `go::*` for the few that do not involve a runtime of ours).
//! Capabilities differ per kind (js has no TLS and no ECDSA): the scenarios ask
//! [`Capabilities`], and each kind's invocation lists the key types it supports.
//!
//! Run: `cargo test -p plait-tests --test interop_external`. The first run builds the go
//! peer (`go build`, about two minutes with an empty Go module cache) into
//! `target/test-peers/go-peer`; later runs reuse it until a file under `tests/peers/go`
//! changes. Without `go` on PATH the suite fails, naming the tool.
//!
//! The js peer runs the same scenarios (`js::…`) with the key types js-libp2p has (no ECDSA).
//!
//! What the peers do that is worth knowing:
//! - go offers `/tls/1.0.0` before `/noise` by default. We do not speak TLS yet: our listener
//!   answers `na` and go proposes Noise next; every "they dial" scenario goes through that.
//! - Their handlers are the contract's (`echo`, `echo-all`, `sink`, `source`), so what they
//!   do to our streams is driven by control commands (`reset`, `halfclose`, `disconnect`,
//!   `write-until-error`, `read-until-error`), not by hand.
//! - A go-yamux stream that is reset discards what it had buffered: `read-until-error`
//!   reports at most what we wrote before our reset.
//! - go-libp2p's default resource manager resets inbound streams beyond a few dozen per
//!   protocol and peer; the go peer runs without limits (README).
//!
//! - js-libp2p reports the observed address with `/p2p/<our id>` appended, and closing a
//!   connection first half-closes every stream on it (a read may end cleanly), where go resets
//!   them: [`Capabilities`] says which, and the scenarios check each peer's own behaviour.
//!
//! # What this suite found in Plait (all fixed)
//!
//! - FIN on the last Data frame lost data at go-yamux and js-libp2p's yamux (both apply a
//!   frame's flags before its body): Plait now sends FIN on a frame of its own.
//! - Identify of RSA, secp256k1 and ECDSA peers failed (only Ed25519 keys were decoded).
//! - Identify failed about one connection in five when go's length prefix and message came in
//!   different reads (the built-in services dropped what they had not consumed).
//! - Identify failures were not reported to the host's user (now `HostEvent::IdentifyFailed`).

use std::{
    future::Future,
    io::{self, ErrorKind},
    time::{Duration, Instant},
};

use futures::{
    channel::mpsc, future::join_all, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _,
    StreamExt as _,
};
use plait_driver::{
    demo,
    plait_core::{
        identity::KeyType,
        multiaddr::{split_p2p, Multiaddr, Protocol},
        swarm::{AGENT_VERSION, PROTOCOL_VERSION},
        upgrade::Security,
    },
    Host, HostConfig, HostEvent, Runtime, Stream,
};
use plait_tests::{
    external_peer::{
        fill_pattern, key_type_of, pattern_sha256, Capabilities, ExternalPeer, PeerBuilder,
        PeerError, PeerKind, PeerSecurity, ReadEnd, START_TIMEOUT,
    },
    interop::{
        all_clean, our_host, run, security, send_and_receive, sleep, streams_back_to, within,
        TestRuntime,
    },
};
use sha2::Digest as _;

/// Bound of every single await on our side.
const T: Duration = Duration::from_secs(20);
/// Bound of a whole scenario.
const SCENARIO: Duration = Duration::from_secs(180);
/// Bound of a peer command as seen by a scenario (the harness bounds each command too).
const CMD: Duration = Duration::from_secs(60);
/// Bound of a peer command that moves [`BIG`] bytes.
const BIG_CMD: Duration = Duration::from_secs(150);
/// Bytes sent each way by the big-transfer scenarios.
const BIG: usize = 64 << 20;
/// Bytes of the sink and source scenarios.
const MEDIUM: u64 = 16 << 20;
/// Bytes each way of the perf scenario.
const PERF_BYTES: u64 = 8 << 20;
/// Streams of the concurrent-streams scenarios.
const STREAMS: usize = 100;
/// Bytes per stream of the concurrent-streams scenarios.
const STREAM_SIZE: u64 = 10_000;
/// The seed's line.
const HELLO: &[u8] = b"Hello, world!\n";
/// The seed of the key-type scenarios' identities.
const KEY_SEED: u64 = 20_261_203;

const ECHO: &str = "/echo/1.0.0";
const ECHO_ALL: &str = "/plait-test/echo-all/1.0.0";
const SINK: &str = "/plait-test/sink/1.0.0";
const SOURCE: &str = "/plait-test/source/1.0.0";
const PERF: &str = "/perf/1.0.0";
const PING: &str = "/ipfs/ping/1.0.0";
const IDENTIFY: &str = "/ipfs/id/1.0.0";

// ---------------------------------------------------------------------------------------------
// Set-up helpers

/// Unwraps a peer result, panicking with the error's `Display` (which carries the peer's
/// stderr).
trait OrPanic<T> {
    fn or_panic(self, what: &str) -> T;
}

impl<T> OrPanic<T> for Result<T, PeerError> {
    fn or_panic(self, what: &str) -> T {
        self.unwrap_or_else(|e| panic!("{what}: {e}"))
    }
}

/// Runs `body` on `T` after building the peer (the build is not part of the timed scenario).
fn scenario<T: TestRuntime, F: Future<Output = ()>>(kind: PeerKind, body: impl FnOnce(T::R) -> F) {
    kind.ensure_built();
    run::<T, F>(SCENARIO, body);
}

/// Runs `body` on a tokio runtime, for tests that involve no host of ours.
fn peer_only<F: Future<Output = ()>>(kind: PeerKind, body: F) {
    kind.ensure_built();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    tokio.block_on(async { within("the whole test", SCENARIO, body).await });
}

/// Whether to run plaintext (`true`) as well as Noise (`false`): where the peer has it.
fn securities(caps: Capabilities) -> Vec<bool> {
    if caps.plaintext {
        vec![false, true]
    } else {
        vec![false]
    }
}

async fn our_listener<R: Runtime>(rt: &R, insecure: bool) -> (Host<R>, Multiaddr) {
    plait_tests::interop::our_listener(rt, insecure, T).await
}

async fn spawn(builder: PeerBuilder) -> ExternalPeer {
    let what = format!("spawn the {} peer", builder.kind());
    within(&what, START_TIMEOUT + T, builder.spawn())
        .await
        .or_panic(&what)
}

/// A peer with the contract's defaults (RSA-2048 identity as the seed's, default security),
/// or plaintext.
async fn seed_peer(kind: PeerKind, insecure: bool) -> ExternalPeer {
    spawn(kind.builder().insecure(insecure)).await
}

/// A peer with an Ed25519 identity and default security, or plaintext. Scenarios other than
/// the seed's echo use it, so that their failures are about what they name; every key type
/// has its own scenarios (`key_*`).
async fn their_peer(kind: PeerKind, insecure: bool) -> ExternalPeer {
    spawn(kind.builder().key(KeyType::Ed25519).insecure(insecure)).await
}

/// Our host dials the peer.
async fn we_dial<R: Runtime>(host: &Host<R>, peer: &ExternalPeer) {
    let got = within("our dial", T, host.dial(peer.listen_addr()))
        .await
        .unwrap_or_else(|e| panic!("our dial of {}: {e}", peer.listen_addr()));
    assert_eq!(got, peer.peer_id());
}

/// The peer dials our host.
async fn they_dial<R: Runtime>(peer: &mut ExternalPeer, host: &Host<R>, addr: &Multiaddr) {
    let got = within("their dial", CMD, peer.dial(addr))
        .await
        .or_panic("their dial");
    assert_eq!(got, host.peer_id());
}

/// `addr` without its trailing `/p2p/…`.
fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

/// Whether `addr` is `/ip4/127.x.x.x/tcp/PORT` (with nothing else).
fn is_loopback_tcp(addr: &Multiaddr) -> bool {
    let parts: Vec<_> = addr.iter().collect();
    matches!(
        parts.as_slice(),
        [Protocol::Ip4(ip), Protocol::Tcp(port)] if ip.is_loopback() && *port != 0
    )
}

/// Waits until the connection is quiet: their identify of us completed and our identify
/// streams are gone (go-libp2p keeps no stream open between commands). Returns our stream
/// count then, the baseline later counts return to: 0, unless our identify of them is stuck
/// (a Plait bug `identify_they_dial` catches; see the report printed here), in which case
/// that one stream stays and the scenario still tests what it names.
async fn settle<R: Runtime>(host: &Host<R>, peer: &mut ExternalPeer) -> usize {
    within("their identify", CMD, peer.identify(host.peer_id()))
        .await
        .or_panic("their identify");
    let start = Instant::now();
    while host.num_streams() > 0 && start.elapsed() < Duration::from_secs(3) {
        sleep(Duration::from_millis(10)).await;
    }
    let baseline = host.num_streams();
    if baseline > 0 {
        eprintln!(
            "settle: {baseline} stream(s) left; we identified them: {}",
            host.peer_info(peer.peer_id()).is_some()
        );
    }
    baseline
}

/// Writes `payload`, half-closes, reads until EOF.
async fn write_close_read<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    payload: &[u8],
) -> io::Result<Vec<u8>> {
    s.write_all(payload).await?;
    s.close().await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(out)
}

/// `len` pattern bytes from offset `start`.
fn pattern(start: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill_pattern(start, &mut v);
    v
}

/// Serves `protocol` on our host with `f`, each stream in its own task; what `f` returns is
/// sent to the returned channel.
fn serve<R, Out, Fut>(
    host: &Host<R>,
    rt: &R,
    protocol: &str,
    f: impl Fn(Stream<R>) -> Fut + Send + Sync + 'static,
) -> mpsc::UnboundedReceiver<Out>
where
    R: Runtime,
    Out: Send + 'static,
    Fut: Future<Output = Out> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded();
    let rt2 = rt.clone();
    host.set_stream_handler(protocol, move |s| {
        let tx = tx.clone();
        let fut = f(s);
        rt2.spawn(Box::pin(async move {
            let _ = tx.unbounded_send(fut.await);
        }));
    })
    .unwrap();
    rx
}

async fn next<T>(reports: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    within(what, T, reports.next())
        .await
        .unwrap_or_else(|| panic!("{what}: the handler went away"))
}

/// Echoes every byte until EOF, then closes; returns the bytes echoed.
async fn echo_all<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).await?;
        total += n as u64;
    }
    s.close().await?;
    Ok(total)
}

/// The contract's sink: read to EOF, answer the count and SHA-256, close. Returns them.
async fn sink<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> io::Result<(u64, [u8; 32])> {
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
    let digest: [u8; 32] = hash.finalize().into();
    s.write_all(&total.to_be_bytes()).await?;
    s.write_all(&digest).await?;
    s.close().await?;
    Ok((total, digest))
}

/// Reads the 8-byte big-endian count of a source or perf request.
async fn read_count<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<u64> {
    let mut header = [0u8; 8];
    s.read_exact(&mut header).await?;
    Ok(u64::from_be_bytes(header))
}

/// Writes `len` pattern bytes from offset 0 in 64 KiB writes.
async fn write_pattern<S: AsyncWrite + Unpin>(s: &mut S, len: u64) -> io::Result<()> {
    let mut block = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(block.len() as u64) as usize;
        fill_pattern(done, &mut block[..n]);
        s.write_all(&block[..n]).await?;
        done += n as u64;
    }
    Ok(())
}

/// The contract's source: read the count N, write N pattern bytes, close. Returns N.
async fn source<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> io::Result<u64> {
    let n = read_count(&mut s).await?;
    write_pattern(&mut s, n).await?;
    s.close().await?;
    Ok(n)
}

/// Reads to EOF; returns the length and SHA-256 of what was read.
async fn read_all_hashed<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<(u64, [u8; 32])> {
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok((total, hash.finalize().into()));
        }
        hash.update(&buf[..n]);
        total += n as u64;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn report_rate(what: &str, bytes: u64, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{what}: {} MiB in {secs:.2} s ({:.1} MiB/s)",
        bytes >> 20,
        (bytes >> 20) as f64 / secs
    );
}

// ---------------------------------------------------------------------------------------------
// Echo (the seed), both securities

/// Our echo example's dialer (`demo::dial_echo`) against their `/echo/1.0.0`; their echo
/// answers one line only.
async fn echo_we_dial<R: Runtime>(rt: R, kind: PeerKind) {
    for insecure in securities(kind.capabilities()) {
        let peer = seed_peer(kind, insecure).await;
        let host = our_host(&rt, insecure);
        let reply = within("echo", T, demo::dial_echo(&host, peer.listen_addr()))
            .await
            .unwrap_or_else(|e| panic!("echo (insecure: {insecure}): {e}"));
        assert_eq!(reply.as_bytes(), HELLO, "insecure: {insecure}");
        // The seed's doEcho reads one line, answers it and closes.
        let s = within("open echo", T, host.new_stream(peer.peer_id(), [ECHO]))
            .await
            .unwrap();
        let reply = within("echo of two lines", T, write_close_read(s, b"one\ntwo\n"))
            .await
            .unwrap();
        assert_eq!(reply, b"one\n", "insecure: {insecure}");
        host.close();
    }
}

/// The seed's dialer (`-d`) and the control mode's `echo` against our `demo::serve_echo`.
/// With Noise, every security preference the peer has: go offers TLS first by default, gets
/// `na` from us and falls back to Noise.
async fn echo_they_dial<R: Runtime>(rt: R, kind: PeerKind) {
    let caps = kind.capabilities();
    for insecure in securities(caps) {
        let (host, addr) = our_listener(&rt, insecure).await;
        demo::serve_echo(&host, &rt).unwrap();

        let run = within(
            "their -d run",
            CMD,
            kind.builder().insecure(insecure).run_echo_client(&addr),
        )
        .await
        .or_panic("their -d run");
        assert!(
            run.status.success(),
            "-d run (insecure: {insecure}): {}\n{}",
            run.status,
            run.stderr
        );
        assert_eq!(
            run.stdout, HELLO,
            "-d prints the reply verbatim (insecure: {insecure}); stderr:\n{}",
            run.stderr
        );

        let mut preferences: Vec<Option<Vec<PeerSecurity>>> = vec![None];
        if !insecure && caps.default_security != [PeerSecurity::Noise] {
            preferences.push(Some(vec![PeerSecurity::Noise]));
        }
        for preference in preferences {
            let mut builder = kind.builder().insecure(insecure);
            if let Some(list) = preference.clone() {
                builder = builder.security(list);
            }
            let mut peer = spawn(builder).await;
            they_dial(&mut peer, &host, &addr).await;
            let reply = within("their echo", CMD, peer.echo(host.peer_id()))
                .await
                .or_panic("their echo");
            assert_eq!(
                reply, HELLO,
                "insecure: {insecure}, security: {preference:?}"
            );
        }
        host.close();
    }
}

// ---------------------------------------------------------------------------------------------
// Ping

/// We ping them (`Host::ping`), over Noise and plaintext, some pings after an idle pause: the
/// RTT is at most the wall time of the call.
async fn ping_we_ping_them<R: Runtime>(rt: R, kind: PeerKind) {
    for insecure in securities(kind.capabilities()) {
        let peer = their_peer(kind, insecure).await;
        let host = our_host(&rt, insecure);
        we_dial(&host, &peer).await;
        for i in 0..4 {
            if i % 2 == 1 {
                sleep(Duration::from_millis(200)).await;
            }
            let start = Instant::now();
            let rtt = within("our ping", T, host.ping(peer.peer_id()))
                .await
                .expect("our ping");
            let wall = start.elapsed();
            eprintln!("our ping {i} (insecure: {insecure}): rtt {rtt:?}, call {wall:?}");
            assert!(rtt <= wall, "rtt {rtt:?} > wall time {wall:?}");
        }
        host.close();
    }
}

/// They ping us (`ping PEER`): their RTT is at most the wall time of the command.
async fn ping_they_ping_us<R: Runtime>(rt: R, kind: PeerKind) {
    for insecure in securities(kind.capabilities()) {
        let (host, addr) = our_listener(&rt, insecure).await;
        let mut peer = their_peer(kind, insecure).await;
        they_dial(&mut peer, &host, &addr).await;
        for i in 0..3 {
            let start = Instant::now();
            let rtt = within("their ping", CMD, peer.ping(host.peer_id()))
                .await
                .or_panic("their ping");
            let wall = start.elapsed();
            eprintln!("their ping {i} (insecure: {insecure}): rtt {rtt:?}, command {wall:?}");
            assert!(rtt <= wall, "rtt {rtt:?} > wall time {wall:?}");
        }
        host.close();
    }
}

// ---------------------------------------------------------------------------------------------
// Identify

/// Checks what each side learned about the other. `we_dialed`: who opened the connection,
/// which decides whose observed address is known exactly (the dialer sees the listener at its
/// listen address; the listener sees an ephemeral or reused port).
async fn check_identify<R: Runtime>(
    host: &Host<R>,
    our_addr: &Multiaddr,
    peer: &mut ExternalPeer,
    we_dialed: bool,
) {
    let kind = peer.kind();
    let them = peer.peer_id();
    let their_addr = without_p2p(&peer.listen_addr());
    let our_addr = without_p2p(our_addr);

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
    // go-libp2p refreshes its identify snapshot asynchronously after handlers are added, so
    // the first answer may predate the test protocols; its identify push then brings them.
    let wanted = [ECHO, ECHO_ALL, SINK, SOURCE, PING, IDENTIFY];
    let start = Instant::now();
    let info = loop {
        let info = host.peer_info(them).expect("peer_info after Identified");
        let missing: Vec<_> = wanted
            .iter()
            .filter(|p| !info.protocols.iter().any(|q| q == *p))
            .collect();
        if missing.is_empty() {
            break info;
        }
        assert!(
            start.elapsed() < T,
            "after identify and {T:?} of pushes, we did not learn their {missing:?}: {:?}",
            info.protocols
        );
        sleep(Duration::from_millis(10)).await;
    };
    assert!(
        !info.protocols.iter().any(|q| q == PERF),
        "they announce {PERF} without --perf: {:?}",
        info.protocols
    );
    assert!(
        info.listen_addrs.contains(&their_addr),
        "we did not learn their listen address {their_addr}: {:?}",
        info.listen_addrs
    );
    let key = info.public_key.as_ref().expect("their identify public key");
    assert_eq!(key.to_peer_id(), them, "their identify public key");
    assert_eq!(key_type_of(key), KeyType::Ed25519, "their key type");
    let agent = info.agent_version.as_deref().unwrap_or_default();
    let prefix = kind.capabilities().agent_version_prefix;
    assert!(
        agent.starts_with(prefix),
        "their agent version {agent:?}, expected {prefix}…"
    );
    let observed = info
        .observed_addr
        .as_ref()
        .expect("their observed address of us");
    // js-libp2p appends our peer id to the address it observed (the real peer wins).
    let (bare, named) = split_p2p(observed);
    if kind.capabilities().observed_addr_has_p2p {
        assert_eq!(named, Some(host.peer_id()), "the peer id on {observed}");
    } else {
        assert_eq!(named, None, "no peer id on {observed}");
    }
    let observed = &bare;
    if we_dialed {
        assert!(is_loopback_tcp(observed), "they see us at {observed}");
    } else {
        assert_eq!(observed, &our_addr, "they dialed our listen address");
    }

    // Theirs.
    let report = within("their identify", CMD, peer.identify(host.peer_id()))
        .await
        .or_panic("their identify");
    eprintln!("their identify report: {report:?}");
    for p in [ECHO, PING, IDENTIFY] {
        assert!(
            report.protocols.iter().any(|q| q == p),
            "they did not learn our {p}: {:?}",
            report.protocols
        );
    }
    assert_eq!(report.agent_version, AGENT_VERSION);
    assert_eq!(report.protocol_version, PROTOCOL_VERSION);
    assert!(
        report.listen_addrs.contains(&our_addr),
        "they did not learn our listen address {our_addr}: {:?}",
        report.listen_addrs
    );
    assert_eq!(report.public_key_type, KeyType::Ed25519, "our key type");
    let observed = report
        .observed_addr
        .as_ref()
        .expect("our observed address of them");
    if we_dialed {
        assert_eq!(observed, &their_addr, "we dialed their listen address");
    } else {
        assert!(is_loopback_tcp(observed), "we see them at {observed}");
    }
}

async fn identify_we_dial<R: Runtime>(rt: R, kind: PeerKind) {
    let (host, addr) = our_listener(&rt, false).await;
    demo::serve_echo(&host, &rt).unwrap();
    let mut peer = their_peer(kind, false).await;
    we_dial(&host, &peer).await;
    check_identify(&host, &addr, &mut peer, true).await;
    drop(peer);
    all_clean(&host, T).await;
}

async fn identify_they_dial<R: Runtime>(rt: R, kind: PeerKind) {
    let (host, addr) = our_listener(&rt, false).await;
    demo::serve_echo(&host, &rt).unwrap();
    let mut peer = their_peer(kind, false).await;
    they_dial(&mut peer, &host, &addr).await;
    check_identify(&host, &addr, &mut peer, false).await;
    drop(peer);
    all_clean(&host, T).await;
}

// ---------------------------------------------------------------------------------------------
// 100 concurrent streams

/// We open 100 streams to their echo-all at once, then use them all concurrently.
async fn streams_100_we_open<R: Runtime>(rt: R, kind: PeerKind) {
    let mut peer = their_peer(kind, false).await;
    let host = our_host(&rt, false);
    we_dial(&host, &peer).await;
    let baseline = settle(&host, &mut peer).await;
    let them = peer.peer_id();
    let opened = within(
        "open 100 streams",
        T,
        join_all((0..STREAMS).map(|_| host.new_stream(them, [ECHO_ALL]))),
    )
    .await;
    let streams: Vec<_> = opened.into_iter().map(|s| s.expect("open")).collect();
    // Lazy streams are handed out at once; their connection's task opens them.
    plait_tests::interop::eventually("all 100 streams open", T, || host.num_streams() >= STREAMS)
        .await;
    let results = within(
        "100 concurrent echoes",
        T,
        join_all(streams.into_iter().enumerate().map(|(i, s)| async move {
            let payload = pattern(i as u64, STREAM_SIZE as usize);
            let reply = write_close_read(s, &payload).await;
            (i, reply.map(|r| r == payload))
        })),
    )
    .await;
    for (i, ok) in results {
        assert!(ok.expect("echo stream"), "stream {i} echoed wrong bytes");
    }
    streams_back_to(&host, baseline, T).await;
    drop(peer);
    all_clean(&host, T).await;
}

/// They open 100 streams to our echo-all at once (`streams PEER 100 SIZE`).
async fn streams_100_they_open<R: Runtime>(rt: R, kind: PeerKind) {
    let (host, addr) = our_listener(&rt, false).await;
    let mut reports = serve(&host, &rt, ECHO_ALL, echo_all);
    let mut peer = their_peer(kind, false).await;
    they_dial(&mut peer, &host, &addr).await;
    let baseline = settle(&host, &mut peer).await;
    let start = Instant::now();
    within(
        "their 100 streams",
        CMD,
        peer.streams(host.peer_id(), STREAMS, STREAM_SIZE),
    )
    .await
    .or_panic("their 100 streams");
    eprintln!(
        "their {STREAMS} streams of {STREAM_SIZE} bytes: {:?}",
        start.elapsed()
    );
    for i in 0..STREAMS {
        let echoed = next(&mut reports, "our echo-all handler").await;
        assert_eq!(
            echoed.unwrap_or_else(|e| panic!("our echo-all handler {i}: {e}")),
            STREAM_SIZE
        );
    }
    streams_back_to(&host, baseline, T).await;
    drop(peer);
    all_clean(&host, T).await;
}

// ---------------------------------------------------------------------------------------------
// Big transfers with checksums

/// Sends [`BIG`] pattern bytes through their echo-all on `s` and checks the echo's (length,
/// checksum); reports the rate as `what`.
async fn big_through_their_echo_all<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    peer: &ExternalPeer,
    what: &str,
) {
    let start = Instant::now();
    let (sent, received) = within("transfer", BIG_CMD, send_and_receive(s, BIG, 1))
        .await
        .unwrap_or_else(|e| panic!("transfer: {e}; their stderr: {}", peer.stderr_tail()));
    report_rate(what, BIG as u64, start);
    assert_eq!(sent.0, BIG as u64);
    assert_eq!(received, sent, "(length, checksum) of the echo");
}

/// They send [`BIG`] pattern bytes through our echo-all (`bulk`) and check the echo byte by
/// byte; the SHA-256 they report is the pattern's, and our handler saw every byte.
async fn big_through_our_echo_all<R: Runtime>(
    host: &Host<R>,
    peer: &mut ExternalPeer,
    reports: &mut mpsc::UnboundedReceiver<io::Result<u64>>,
    what: &str,
) {
    let start = Instant::now();
    let digest = within("their bulk", BIG_CMD, peer.bulk(host.peer_id(), BIG as u64))
        .await
        .or_panic("their bulk");
    report_rate(what, BIG as u64, start);
    assert_eq!(hex(&digest), hex(&pattern_sha256(BIG as u64)));
    let echoed = next(reports, "our echo-all handler").await;
    assert_eq!(echoed.expect("our echo-all handler"), BIG as u64);
}

/// We send [`BIG`] bytes through their echo-all and check the echo (length and checksum).
async fn transfer_we_send<R: Runtime>(rt: R, kind: PeerKind) {
    let peer = their_peer(kind, false).await;
    let host = our_host(&rt, false);
    we_dial(&host, &peer).await;
    let s = within("open", T, host.new_stream(peer.peer_id(), [ECHO_ALL]))
        .await
        .unwrap();
    big_through_their_echo_all(s, &peer, "we send through their echo-all, each way").await;
    drop(peer);
    all_clean(&host, T).await;
}

/// They send [`BIG`] pattern bytes through our echo-all (`bulk`) and check the echo byte by
/// byte; the SHA-256 they report is the pattern's.
async fn transfer_they_send<R: Runtime>(rt: R, kind: PeerKind) {
    let (host, addr) = our_listener(&rt, false).await;
    let mut reports = serve(&host, &rt, ECHO_ALL, echo_all);
    let mut peer = their_peer(kind, false).await;
    they_dial(&mut peer, &host, &addr).await;
    let what = "they send through our echo-all, each way";
    big_through_our_echo_all(&host, &mut peer, &mut reports, what).await;
    drop(peer);
    all_clean(&host, T).await;
}

/// We write [`MEDIUM`] bytes into their sink (count and hash come back after our FIN) and read
/// [`MEDIUM`] bytes from their source, keeping our side open: their FIN ends our read, and we
/// may still write and close afterwards.
async fn sink_source_we_open<R: Runtime>(rt: R, kind: PeerKind) {
    let mut peer = their_peer(kind, false).await;
    let host = our_host(&rt, false);
    we_dial(&host, &peer).await;
    let baseline = settle(&host, &mut peer).await;
    let them = peer.peer_id();
    let want = pattern_sha256(MEDIUM);

    let mut s = within("open sink", T, host.new_stream(them, [SINK]))
        .await
        .unwrap();
    let answer = within("their sink", CMD, async {
        write_pattern(&mut s, MEDIUM).await?;
        s.close().await?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await?;
        Ok::<_, io::Error>(answer)
    })
    .await
    .expect("their sink");
    assert_eq!(answer.len(), 40, "their sink's answer: count and SHA-256");
    assert_eq!(u64::from_be_bytes(answer[..8].try_into().unwrap()), MEDIUM);
    assert_eq!(hex(&answer[8..]), hex(&want));
    drop(s);

    let mut s = within("open source", T, host.new_stream(them, [SOURCE]))
        .await
        .unwrap();
    s.write_all(&MEDIUM.to_be_bytes()).await.unwrap();
    let (len, digest) = within("their source until their FIN", CMD, read_all_hashed(&mut s))
        .await
        .expect("their source");
    assert_eq!((len, hex(&digest)), (MEDIUM, hex(&want)));
    s.write_all(b"after your FIN")
        .await
        .expect("our write after their FIN");
    s.close().await.expect("our close after their FIN");
    drop(s);
    streams_back_to(&host, baseline, T).await;
    drop(peer);
    all_clean(&host, T).await;
}

/// They write [`MEDIUM`] bytes into our sink (`sink`) and read them from our source
/// (`source`); both sides check count and hash.
async fn sink_source_they_open<R: Runtime>(rt: R, kind: PeerKind) {
    let (host, addr) = our_listener(&rt, false).await;
    let mut sinks = serve(&host, &rt, SINK, sink);
    let mut sources = serve(&host, &rt, SOURCE, source);
    let mut peer = their_peer(kind, false).await;
    they_dial(&mut peer, &host, &addr).await;
    let us = host.peer_id();
    let want = hex(&pattern_sha256(MEDIUM));

    let digest = within("their sink", CMD, peer.sink(us, MEDIUM))
        .await
        .or_panic("their sink");
    assert_eq!(hex(&digest), want);
    let (count, digest) = next(&mut sinks, "our sink handler")
        .await
        .expect("our sink handler");
    assert_eq!((count, hex(&digest)), (MEDIUM, want.clone()));

    let digest = within("their source", CMD, peer.source(us, MEDIUM))
        .await
        .or_panic("their source");
    assert_eq!(hex(&digest), want);
    let written = next(&mut sources, "our source handler")
        .await
        .expect("our source handler");
    assert_eq!(written, MEDIUM);
    drop(peer);
    all_clean(&host, T).await;
}

// ---------------------------------------------------------------------------------------------
// Resets, half-closes and disconnects while reading and writing

/// They half-close a stream to our echo-all (`halfclose`: we read their data, then EOF, and
/// still answer), then reset one after reading their data back (`reset`: our handler, waiting
/// for more, fails with `ConnectionReset`). The connection stays usable.
async fn they_reset_or_half_close_our_inbound<R: Runtime>(rt: R, kind: PeerKind) {
    let (host, addr) = our_listener(&rt, false).await;
    demo::serve_echo(&host, &rt).unwrap();
    let mut reports = serve(&host, &rt, ECHO_ALL, echo_all);
    let mut peer = their_peer(kind, false).await;
    they_dial(&mut peer, &host, &addr).await;
    let baseline = settle(&host, &mut peer).await;
    let us = host.peer_id();

    within("their halfclose", CMD, peer.halfclose(us))
        .await
        .or_panic("their halfclose");
    let echoed = next(&mut reports, "our handler across their FIN").await;
    assert_eq!(echoed.expect("a clean end after their FIN"), 1024);

    within("their reset", CMD, peer.reset(us))
        .await
        .or_panic("their reset");
    let err = next(&mut reports, "our handler across their reset")
        .await
        .expect_err("our handler's read across their reset");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");

    streams_back_to(&host, baseline, T).await;
    let reply = within("their echo after the reset", CMD, peer.echo(us))
        .await
        .or_panic("their echo after the reset");
    assert_eq!(reply, HELLO);
    drop(peer);
    all_clean(&host, T).await;
}

/// They reset a stream we opened while we read it: their `/echo/1.0.0` resets a stream that
/// ends before a newline (README). Our read fails with `ConnectionReset`, it does not end
/// cleanly, and the connection stays usable.
async fn they_reset_our_outbound<R: Runtime>(rt: R, kind: PeerKind) {
    let mut peer = their_peer(kind, false).await;
    let host = our_host(&rt, false);
    we_dial(&host, &peer).await;
    let baseline = settle(&host, &mut peer).await;
    let them = peer.peer_id();
    let s = within("open echo", T, host.new_stream(them, [ECHO]))
        .await
        .unwrap();
    let read = within(
        "our read across their reset",
        T,
        write_close_read(s, b"no newline, then our FIN"),
    )
    .await;
    let err = read.expect_err("a read across their reset");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    streams_back_to(&host, baseline, T).await;
    let s = within("open echo", T, host.new_stream(them, [ECHO]))
        .await
        .unwrap();
    let reply = within("echo after the reset", T, write_close_read(s, HELLO))
        .await
        .expect("echo after the reset");
    assert_eq!(reply, HELLO);
    drop(peer);
    all_clean(&host, T).await;
}

/// Bytes our resetting sink reads before it resets.
const RESET_AFTER_READ: u64 = 256 * 1024;
/// Bytes our resetting source writes before it resets.
const RESET_AFTER_WRITE: u64 = 1 << 20;

/// We reset streams they write to (`write-until-error`: their write fails) and read from
/// (`read-until-error`: their read fails, it does not end cleanly).
async fn we_reset_their_streams<R: Runtime>(rt: R, kind: PeerKind) {
    let (host, addr) = our_listener(&rt, false).await;
    let mut sinks = serve(&host, &rt, SINK, |mut s: Stream<_>| async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut read = 0u64;
        while read < RESET_AFTER_READ {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "EOF before the reset",
                ));
            }
            read += n as u64;
        }
        s.reset();
        Ok::<_, io::Error>(read)
    });
    let mut sources = serve(&host, &rt, SOURCE, |mut s: Stream<_>| async move {
        let asked = read_count(&mut s).await?;
        write_pattern(&mut s, RESET_AFTER_WRITE).await?;
        s.reset();
        Ok::<_, io::Error>(asked)
    });
    let mut peer = their_peer(kind, false).await;
    they_dial(&mut peer, &host, &addr).await;
    let baseline = settle(&host, &mut peer).await;
    let us = host.peer_id();

    let written = within("their write-until-error", CMD, peer.write_until_error(us))
        .await
        .or_panic("their write-until-error");
    let read = next(&mut sinks, "our resetting sink")
        .await
        .expect("our resetting sink");
    eprintln!(
        "we read {read} bytes and reset; they wrote {written} bytes until their write failed"
    );
    assert!(
        written >= read,
        "they wrote {written} bytes, we read {read}"
    );

    let (got, end) = within("their read-until-error", CMD, peer.read_until_error(us))
        .await
        .or_panic("their read-until-error");
    let asked = next(&mut sources, "our resetting source")
        .await
        .expect("our resetting source");
    eprintln!("we wrote {RESET_AFTER_WRITE} bytes and reset; they read {got} bytes, then {end:?}");
    assert_eq!(asked, 1 << 62, "read-until-error asks for 2^62 bytes");
    assert_eq!(end, ReadEnd::Error, "a reset stream does not end cleanly");
    assert!(
        got <= RESET_AFTER_WRITE,
        "they read {got} bytes, we wrote {RESET_AFTER_WRITE}"
    );

    streams_back_to(&host, baseline, T).await;
    drop(peer);
    all_clean(&host, T).await;
}

/// Reads `s` until an error; a clean EOF (`Ok(0)`) is a failure, since data was due.
async fn read_until_error<S: AsyncRead + Unpin>(s: &mut S) -> Result<u64, String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match s.read(&mut buf).await {
            Ok(0) => return Err(format!("clean EOF after {total} bytes where data was due")),
            Ok(n) => total += n as u64,
            Err(_) => return Ok(total),
        }
    }
}

/// Writes `s` until an error; returns the bytes written before it.
async fn write_until_error<S: AsyncWrite + Unpin>(s: &mut S) -> u64 {
    let block = pattern(0, 64 * 1024);
    let mut total = 0u64;
    while s.write_all(&block).await.is_ok() {
        total += block.len() as u64;
    }
    total
}

/// They close the connection (`disconnect`) while we read from their source and write to
/// their sink: both fail, neither ends cleanly; then their process is killed in the middle of
/// a transfer: it fails too, and our host forgets everything.
async fn they_disconnect_while_we_read_and_write<R: Runtime>(rt: R, kind: PeerKind) {
    let mut peer = their_peer(kind, false).await;
    let host = our_host(&rt, false);
    we_dial(&host, &peer).await;
    let them = peer.peer_id();
    let us = host.peer_id();

    let mut reading = within("open source", T, host.new_stream(them, [SOURCE]))
        .await
        .unwrap();
    reading
        .write_all(&(1u64 << 62).to_be_bytes())
        .await
        .unwrap();
    let mut first = vec![0u8; 64 * 1024];
    within("their source starts", T, reading.read_exact(&mut first))
        .await
        .unwrap();
    assert_eq!(first, pattern(0, first.len()));
    let mut writing = within("open sink", T, host.new_stream(them, [SINK]))
        .await
        .unwrap();
    writing.write_all(&pattern(0, 64 * 1024)).await.unwrap();

    let (read, written, disconnected) = within(
        "our read and write across their disconnect",
        CMD,
        futures::future::join3(
            read_until_error(&mut reading),
            write_until_error(&mut writing),
            async {
                sleep(Duration::from_millis(100)).await;
                peer.disconnect(us).await
            },
        ),
    )
    .await;
    disconnected.or_panic("their disconnect");
    // js-libp2p half-closes every stream before it closes the connection, so our read may
    // end cleanly there; go-libp2p's streams are reset, so it must fail.
    let read = match read {
        Ok(n) => n,
        Err(e) if kind.capabilities().disconnect_finishes_streams => {
            eprintln!("our read across their disconnect ended at their FIN: {e}");
            0
        }
        Err(e) => panic!("our read across their disconnect: {e}"),
    };
    eprintln!("across their disconnect: we read {read} more bytes, wrote {written}");
    let mut buf = [0u8; 16];
    assert!(
        reading.read(&mut buf).await.is_err(),
        "read after the disconnect"
    );
    assert!(
        writing.write_all(b"more").await.is_err(),
        "write after the disconnect"
    );
    drop((reading, writing));
    all_clean(&host, T).await;
    assert!(!within("connected?", CMD, peer.connected(us))
        .await
        .or_panic("connected"));

    // Their process dies mid-transfer (SIGKILL: the kernel closes the socket).
    we_dial(&host, &peer).await;
    let s = within("open", T, host.new_stream(them, [ECHO_ALL]))
        .await
        .unwrap();
    let (transfer, ()) = within(
        "transfer across their death",
        CMD,
        futures::future::join(send_and_receive(s, BIG, 5), async move {
            sleep(Duration::from_millis(200)).await;
            peer.kill().await;
        }),
    )
    .await;
    assert!(transfer.is_err(), "transfer survived: {transfer:?}");
    all_clean(&host, T).await;
}

/// Bytes our endless sink or source moves before we close our host under it.
const CLOSE_AFTER: u64 = 1 << 20;

/// We close our host while they write to our sink (`write-until-error`) and while they read
/// from our source (`read-until-error`): their write fails, their read fails (no clean EOF).
async fn we_disconnect_while_they_read_and_write<R: Runtime>(rt: R, kind: PeerKind) {
    // They write, our handler reads; we close once it has read CLOSE_AFTER bytes.
    let (host, addr) = our_listener(&rt, false).await;
    let (progress_tx, mut progress) = mpsc::unbounded::<u64>();
    let _done = serve(&host, &rt, SINK, move |mut s: Stream<_>| {
        let progress = progress_tx.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut read = 0u64;
            let mut told = false;
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                read += n as u64;
                if read >= CLOSE_AFTER && !told {
                    let _ = progress.unbounded_send(read);
                    told = true;
                }
            }
        }
    });
    let mut peer = their_peer(kind, false).await;
    they_dial(&mut peer, &host, &addr).await;
    let us = host.peer_id();
    let (written, read) = within(
        "their write-until-error across our close",
        CMD,
        futures::future::join(peer.write_until_error(us), async {
            let read = next(&mut progress, "our sink's progress").await;
            host.close();
            read
        }),
    )
    .await;
    let written = written.or_panic("their write-until-error");
    eprintln!("we read {read} bytes and closed; they wrote {written} until their write failed");
    assert!(
        written >= read,
        "they wrote {written} bytes, we read {read}"
    );
    all_clean(&host, T).await;

    // They read, our handler writes; we close once it has written CLOSE_AFTER bytes.
    let (host, addr) = our_listener(&rt, false).await;
    let (progress_tx, mut progress) = mpsc::unbounded::<u64>();
    let _done = serve(&host, &rt, SOURCE, move |mut s: Stream<_>| {
        let progress = progress_tx.clone();
        async move {
            if read_count(&mut s).await.is_err() {
                return;
            }
            let mut block = vec![0u8; 64 * 1024];
            let mut written = 0u64;
            loop {
                fill_pattern(written, &mut block);
                if s.write_all(&block).await.is_err() {
                    return;
                }
                written += block.len() as u64;
                if written == CLOSE_AFTER {
                    let _ = progress.unbounded_send(written);
                }
            }
        }
    });
    they_dial(&mut peer, &host, &addr).await;
    let us = host.peer_id();
    let (result, written) = within(
        "their read-until-error across our close",
        CMD,
        futures::future::join(peer.read_until_error(us), async {
            let written = next(&mut progress, "our source's progress").await;
            host.close();
            written
        }),
    )
    .await;
    let (got, end) = result.or_panic("their read-until-error");
    eprintln!("we wrote {written} bytes and closed; they read {got}, then {end:?}");
    assert_eq!(
        end,
        ReadEnd::Error,
        "a closed connection does not end a stream cleanly"
    );
    all_clean(&host, T).await;
}

// ---------------------------------------------------------------------------------------------
// perf (`/perf/1.0.0`, shared/specs/perf.md)

/// The perf client of the spec on one of our streams: count, upload, half-close, download;
/// fails unless exactly `download` bytes arrive.
async fn perf_client<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    upload: u64,
    download: u64,
) -> io::Result<(Duration, Duration)> {
    s.write_all(&download.to_be_bytes()).await?;
    let start = Instant::now();
    let zeros = vec![0u8; 64 * 1024];
    let mut left = upload;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        s.write_all(&zeros[..n]).await?;
        left -= n as u64;
    }
    s.close().await?;
    let uploaded = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    if got != download {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("perf: {got} bytes downloaded, asked for {download}"),
        ));
    }
    Ok((uploaded - start, uploaded.elapsed()))
}

/// The perf server of the spec on one of our streams: count, drain to EOF, then send; returns
/// the bytes uploaded.
async fn perf_server<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> io::Result<u64> {
    let download = read_count(&mut s).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut uploaded = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        uploaded += n as u64;
    }
    buf.fill(0);
    let mut left = download;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    s.close().await?;
    Ok(uploaded)
}

/// Our perf client against their `--perf` server, and their perf client (`perf`) against our
/// perf server; prints the figures.
async fn perf_both_ways<R: Runtime>(rt: R, kind: PeerKind) {
    let host = our_host(&rt, false);
    let mut uploads = serve(&host, &rt, PERF, perf_server);
    let mut peer = spawn(kind.builder().key(KeyType::Ed25519).perf(true)).await;
    we_dial(&host, &peer).await;
    let s = within("open perf", T, host.new_stream(peer.peer_id(), [PERF]))
        .await
        .unwrap();
    let (up, down) = within("our perf run", CMD, perf_client(s, PERF_BYTES, PERF_BYTES))
        .await
        .expect("our perf run");
    eprintln!(
        "our perf client, {} MiB each way: upload {up:?}, download {down:?}",
        PERF_BYTES >> 20
    );

    let (up, down) = within(
        "their perf run",
        CMD,
        peer.perf(host.peer_id(), PERF_BYTES, PERF_BYTES),
    )
    .await
    .or_panic("their perf run");
    eprintln!(
        "their perf client, {} MiB each way: upload {up:?}, download {down:?}",
        PERF_BYTES >> 20
    );
    let uploaded = next(&mut uploads, "our perf server")
        .await
        .expect("our perf server");
    assert_eq!(uploaded, PERF_BYTES);
    drop(peer);
    all_clean(&host, T).await;
}

// ---------------------------------------------------------------------------------------------
// Identity key types

/// An echo each way with a peer whose identity is `key` (seeded), over Noise and plaintext.
/// The key the peer exports is the one it authenticates with, and identify (on both our
/// connections, checked after both echoes) tells us that key.
async fn echo_with_key<R: Runtime>(rt: R, kind: PeerKind, key: KeyType, rsa_bits: Option<u32>) {
    assert!(
        kind.capabilities().key_types.contains(&key),
        "{kind} has no {key:?} keys: leave this scenario out of its suite"
    );
    for insecure in securities(kind.capabilities()) {
        let mut builder = kind
            .builder()
            .key(key)
            .seed(KEY_SEED)
            .export_key(true)
            .insecure(insecure);
        if let Some(bits) = rsa_bits {
            builder = builder.rsa_bits(bits);
        }
        let start = Instant::now();
        let mut peer = spawn(builder).await;
        eprintln!(
            "{kind} peer with a {key:?} key (rsa bits {rsa_bits:?}) up in {:?}: {}",
            start.elapsed(),
            peer.peer_id()
        );
        let exported = peer.keypair().expect("exported key").public();
        assert_eq!(key_type_of(&exported), key, "the exported key's type");
        let them = peer.peer_id();

        // We dial.
        let dialer = our_host(&rt, insecure);
        let reply = within("our echo", T, demo::dial_echo(&dialer, peer.listen_addr()))
            .await
            .unwrap_or_else(|e| panic!("our echo ({key:?}, insecure: {insecure}): {e}"));
        assert_eq!(reply.as_bytes(), HELLO, "{key:?}, insecure: {insecure}");

        // They dial.
        let (listener, addr) = our_listener(&rt, insecure).await;
        demo::serve_echo(&listener, &rt).unwrap();
        they_dial(&mut peer, &listener, &addr).await;
        let reply = within("their echo", CMD, peer.echo(listener.peer_id()))
            .await
            .or_panic("their echo");
        assert_eq!(reply, HELLO, "{key:?}, insecure: {insecure}");

        // Identify is automatic after connecting. The host reports no identify failure, so
        // a failure shows as no peer_info.
        for (host, who) in [(&dialer, "we dialed"), (&listener, "they dialed")] {
            let start = Instant::now();
            while host.peer_info(them).is_none() {
                assert!(
                    start.elapsed() < T,
                    "echo worked both ways, but no identify result from a peer with a {key:?} \
                     key in {T:?} ({who}, insecure: {insecure})"
                );
                sleep(Duration::from_millis(10)).await;
            }
            let info = host.peer_info(them).unwrap();
            assert_eq!(
                info.public_key,
                Some(exported.clone()),
                "their identify key ({who})"
            );
        }
        dialer.close();
        listener.close();

        // Their identity, loaded from the key they exported (go's `MarshalPrivateKey`), serves
        // our host: a second peer of theirs dials it expecting that peer id, and echoes.
        let identity = peer.identity().expect("exported key").clone();
        let saved = identity.private_key_protobuf().expect("saved back");
        let reloaded = HostConfig::from_private_key_protobuf(&saved).expect("reloaded");
        assert_eq!(reloaded.keypair.public().to_peer_id(), them);
        drop(peer);
        let host = Host::new(rt.clone(), identity.with_security(security(insecure))).expect("host");
        demo::serve_echo(&host, &rt).unwrap();
        let addr = within(
            "listen",
            T,
            host.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()),
        )
        .await
        .expect("listen")
        .with(Protocol::P2p(them));
        let mut other = spawn(kind.builder().insecure(insecure)).await;
        they_dial(&mut other, &host, &addr).await;
        assert_eq!(host.peer_id(), them);
        let reply = within("their echo to our borrowed identity", CMD, other.echo(them))
            .await
            .or_panic("their echo");
        assert_eq!(reply, HELLO, "{key:?} identity loaded from their key");
        host.close();
    }
}

async fn key_rsa_2048<R: Runtime>(rt: R, kind: PeerKind) {
    echo_with_key(rt, kind, KeyType::Rsa, Some(2048)).await;
}

async fn key_rsa_4096<R: Runtime>(rt: R, kind: PeerKind) {
    echo_with_key(rt, kind, KeyType::Rsa, Some(4096)).await;
}

async fn key_ed25519<R: Runtime>(rt: R, kind: PeerKind) {
    echo_with_key(rt, kind, KeyType::Ed25519, None).await;
}

async fn key_secp256k1<R: Runtime>(rt: R, kind: PeerKind) {
    echo_with_key(rt, kind, KeyType::Secp256k1, None).await;
}

async fn key_ecdsa<R: Runtime>(rt: R, kind: PeerKind) {
    echo_with_key(rt, kind, KeyType::Ecdsa, None).await;
}

// ---------------------------------------------------------------------------------------------
// The peer itself (no host of ours)

/// `--seed N` gives the same peer id in two runs (and without `-l`, through `--export-key`),
/// for every key type the peer has; another seed, or none, gives another.
async fn seed_is_deterministic(kind: PeerKind) {
    for &key in kind.capabilities().key_types {
        let id = |seed: Option<u64>| async move {
            let mut b = kind.builder().key(key);
            if let Some(seed) = seed {
                b = b.seed(seed);
            }
            spawn(b).await.peer_id()
        };
        let (a, b) = (id(Some(7)).await, id(Some(7)).await);
        assert_eq!(a, b, "{key:?}: seed 7 twice");
        // Without -l the harness learns the id from the exported key.
        let quiet = spawn(kind.builder().key(key).seed(7).listen(false)).await;
        assert_eq!(quiet.peer_id(), a, "{key:?}: seed 7 without listening");
        assert_ne!(a, id(Some(8)).await, "{key:?}: seeds 7 and 8");
        assert_ne!(a, id(None).await, "{key:?}: seed 7 and random");
    }
}

/// Options the peer does not support are usage errors (exit 2), as the contract says.
async fn unsupported_options_are_usage_errors(kind: PeerKind) {
    let caps = kind.capabilities();
    let mut cases: Vec<Vec<String>> =
        vec![vec!["-l".into(), "0".into(), "--no-such-option".into()]];
    for (key, name) in [
        (KeyType::Rsa, "rsa"),
        (KeyType::Ed25519, "ed25519"),
        (KeyType::Secp256k1, "secp256k1"),
        (KeyType::Ecdsa, "ecdsa"),
    ] {
        if !caps.key_types.contains(&key) {
            cases.push(vec!["-l".into(), "0".into(), "--key".into(), name.into()]);
        }
    }
    if !caps.tls {
        cases.push(vec![
            "-l".into(),
            "0".into(),
            "--security".into(),
            "tls".into(),
        ]);
    }
    for args in cases {
        let run = within("a run with bad options", CMD, kind.run(&args))
            .await
            .or_panic("a run with bad options");
        assert_eq!(
            run.status.code(),
            Some(2),
            "{kind} {args:?}: {}\n{}",
            run.status,
            run.stderr
        );
        assert!(
            run.stdout.is_empty(),
            "{kind} {args:?} printed {:?}",
            run.stdout
        );
    }
}

/// Sanity of the pattern helpers against a trivially correct implementation.
#[test]
fn pattern_sha256_matches_naive() {
    let naive: Vec<u8> = (0..200_000u64)
        .map(|i| ((i * 31 + 7) % 251) as u8)
        .collect();
    assert_eq!(
        pattern_sha256(naive.len() as u64),
        <[u8; 32]>::from(sha2::Sha256::digest(&naive))
    );
    assert_eq!(pattern(1000, 5000), naive[1000..6000]);
}

// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// TLS (`/tls/1.0.0`): both sides TLS only, so nothing else can be negotiated

/// A host of ours speaking TLS only.
fn our_tls_host<R: Runtime>(rt: &R) -> Host<R> {
    Host::new(
        rt.clone(),
        HostConfig::random().with_security(Security::Tls),
    )
    .expect("host")
}

/// A TLS-only peer of theirs (Ed25519 identity).
async fn their_tls_peer(kind: PeerKind) -> ExternalPeer {
    assert!(kind.capabilities().tls, "{} has no TLS", kind.name());
    spawn(
        kind.builder()
            .key(KeyType::Ed25519)
            .security([PeerSecurity::Tls]),
    )
    .await
}

/// Over TLS, we dial: echo, ping, identify, and [`BIG`] bytes through their echo-all.
async fn tls_we_dial<R: Runtime>(rt: R, kind: PeerKind) {
    let peer = their_tls_peer(kind).await;
    let host = our_tls_host(&rt);
    we_dial(&host, &peer).await;
    let s = within("open echo", T, host.new_stream(peer.peer_id(), [ECHO]))
        .await
        .unwrap();
    let reply = within("echo", T, write_close_read(s, HELLO)).await.unwrap();
    assert_eq!(reply, HELLO);
    let rtt = within("our ping", T, host.ping(peer.peer_id()))
        .await
        .expect("our ping");
    eprintln!("our ping over TLS: {rtt:?}");
    let caps = kind.capabilities();
    let identified = within("identify", T, async {
        loop {
            if let Some(info) = host.peer_info(peer.peer_id()) {
                return info;
            }
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let agent = identified.agent_version.unwrap_or_default();
    assert!(
        agent.starts_with(caps.agent_version_prefix),
        "agent {agent}"
    );
    let s = within(
        "open echo-all",
        T,
        host.new_stream(peer.peer_id(), [ECHO_ALL]),
    )
    .await
    .unwrap();
    big_through_their_echo_all(s, &peer, "over TLS, we send through their echo-all").await;
    drop(peer);
    all_clean(&host, T).await;
}

/// Over TLS, they dial: their echo, their ping, identify both ways, and [`BIG`] bytes
/// through our echo-all.
async fn tls_they_dial<R: Runtime>(rt: R, kind: PeerKind) {
    let host = our_tls_host(&rt);
    within(
        "our listen",
        T,
        host.listen("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")),
    )
    .await
    .expect("listen");
    let addr = host.listen_addrs().into_iter().next().expect("an address");
    demo::serve_echo(&host, &rt).unwrap();
    let mut reports = serve(&host, &rt, ECHO_ALL, echo_all);
    let mut peer = their_tls_peer(kind).await;
    they_dial(&mut peer, &host, &addr).await;
    let reply = within("their echo", CMD, peer.echo(host.peer_id()))
        .await
        .or_panic("their echo");
    assert_eq!(reply, HELLO);
    let rtt = within("their ping", CMD, peer.ping(host.peer_id()))
        .await
        .or_panic("their ping");
    eprintln!("their ping over TLS: {rtt:?}");
    check_identify(&host, &addr, &mut peer, false).await;
    let what = "over TLS, they send through our echo-all";
    big_through_our_echo_all(&host, &mut peer, &mut reports, what).await;
    drop(peer);
    all_clean(&host, T).await;
}

/// Their default security list (TLS first for go-libp2p) against our default one (Noise,
/// then TLS): both directions connect, and ours accepts their first choice.
async fn default_security_both_ways<R: Runtime>(rt: R, kind: PeerKind) {
    let (host, addr) = our_listener(&rt, false).await;
    demo::serve_echo(&host, &rt).unwrap();
    let mut peer = their_peer(kind, false).await;
    they_dial(&mut peer, &host, &addr).await;
    let reply = within("their echo", CMD, peer.echo(host.peer_id()))
        .await
        .or_panic("their echo");
    assert_eq!(reply, HELLO);
    let other = Host::new(rt.clone(), HostConfig::random()).expect("host");
    we_dial(&other, &peer).await;
    other.close();
    drop(peer);
    all_clean(&host, T).await;
}

macro_rules! suite {
    ($module:ident, $kind:expr, keys: [$($key:ident),* $(,)?]) => {
        suite!(@runtimes $module, $kind, [
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
            sink_source_we_open,
            sink_source_they_open,
            they_reset_or_half_close_our_inbound,
            they_reset_our_outbound,
            we_reset_their_streams,
            they_disconnect_while_we_read_and_write,
            we_disconnect_while_they_read_and_write,
            perf_both_ways,
            default_security_both_ways,
            $($key,)*
        ]);
    };
    ($module:ident, $kind:expr, keys: [$($key:ident),* $(,)?], tls) => {
        suite!($module, $kind, keys: [tls_we_dial, tls_they_dial, $($key),*]);
    };
    (@runtimes $module:ident, $kind:expr, [$($name:ident),* $(,)?]) => {
        /// Scenarios against one kind of peer.
        mod $module {
            /// `--seed` is deterministic (no host of ours involved).
            #[test]
            fn seed_is_deterministic() {
                crate::peer_only($kind, crate::seed_is_deterministic($kind));
            }
            /// Unsupported options are usage errors (no host of ours involved).
            #[test]
            fn unsupported_options_are_usage_errors() {
                crate::peer_only($kind, crate::unsupported_options_are_usage_errors($kind));
            }
            /// Our host on tokio.
            mod on_tokio {
                $( #[test] fn $name() {
                    crate::scenario::<plait_tests::interop::OnTokio, _>($kind, |rt| crate::$name(rt, $kind))
                } )*
                /// RSA-4096 once: its key generation is the slowest start-up of all.
                #[test] fn key_rsa_4096() {
                    crate::scenario::<plait_tests::interop::OnTokio, _>($kind, |rt| crate::key_rsa_4096(rt, $kind))
                }
            }
            /// Our host on smol.
            mod on_smol {
                $( #[test] fn $name() {
                    crate::scenario::<plait_tests::interop::OnSmol, _>($kind, |rt| crate::$name(rt, $kind))
                } )*
            }
            /// Our host on async-std.
            mod on_async_std {
                $( #[test] fn $name() {
                    crate::scenario::<plait_tests::interop::OnAsyncStd, _>($kind, |rt| crate::$name(rt, $kind))
                } )*
            }
        }
    };
}

suite!(
    go,
    plait_tests::external_peer::PeerKind::Go,
    keys: [key_rsa_2048, key_ed25519, key_secp256k1, key_ecdsa],
    tls
);

suite!(
    js,
    plait_tests::external_peer::PeerKind::Js,
    keys: [key_rsa_2048, key_ed25519, key_secp256k1]
);
