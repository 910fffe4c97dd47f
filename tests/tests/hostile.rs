//! The hostile-peer suite: a real listening host over loopback TCP survives malicious peers
//! without crashing, leaking, or growing memory without bound. After every attack the host
//! still serves a normal echo dialer and its connections, sockets, streams and buffered bytes
//! return to their baseline (measured, with a bounded wait).
//!
//! Run with `cargo test -p plait-tests --test hostile -- --nocapture` to see the numbers.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use plait_async_std::AsyncStd;
use plait_core::swarm::Limits;
use plait_core::upgrade::Security;
use plait_driver::MAX_UPGRADE_BUFFERED;
use plait_driver::{Host, HostEvent};
use plait_smol::Smol;
use plait_tests::hostile::{
    block_on_timeout, garbage_noise_frame, ms_message, or_deadlock, process_cpu_time, raw_connect,
    rss_kib, serial, target_config, wait_closed, yamux, Channel, Closed, FailingAccept, Frame,
    SecurePeer, Target, TestRuntime, ECHO, MS_HEADER, MS_NOISE, UPGRADE_TIMEOUT,
};
use plait_tokio::Tokio;

/// "Promptly": well before the upgrade timeout.
const PROMPT: Duration = Duration::from_millis(500);

// ---- 1. garbage from the first byte ----

fn garbage<R: TestRuntime>() {
    let _g = serial();
    let target = Target::<R>::start();
    // (bytes, whether the host can tell at once: a Noise frame length of 0xffff is a valid
    // prefix of a frame still arriving, so that one ends at the upgrade timeout)
    let inputs: Vec<(Vec<u8>, bool)> = vec![
        (b"GET / HTTP/1.1\r\nHost: example\r\n\r\n".repeat(20), true),
        ((0..2048).map(|_| rand::random::<u8>()).collect(), true),
        ([MS_HEADER, b"\x07/nois\xff\n"].concat(), true),
        ([MS_HEADER, MS_NOISE, &[0xff; 600][..]].concat(), false),
    ];
    for (input, prompt) in inputs {
        let mut tcp = raw_connect(target.addr);
        let start = Instant::now();
        let _ = tcp.write_all(&input);
        let closed = wait_closed(&mut tcp, start, UPGRADE_TIMEOUT * 3);
        let limit = if prompt { PROMPT } else { UPGRADE_TIMEOUT * 2 };
        match closed {
            Closed::After(t) => assert!(t < limit, "garbage closed only after {t:?}"),
            Closed::StillOpen => panic!("garbage connection not closed"),
        }
        println!(
            "[garbage/{}] {} bytes starting {:02x?}: closed in {closed:?}",
            R::name(),
            input.len(),
            &input[..4]
        );
    }
    target.assert_serves_and_recovers("garbage");
}

#[test]
fn garbage_tokio() {
    garbage::<Tokio>();
}

#[test]
fn garbage_smol() {
    garbage::<Smol>();
}

#[test]
fn garbage_async_std() {
    garbage::<AsyncStd>();
}

// ---- 2. a multistream length prefix claiming gigabytes ----

/// After `/tls/1.0.0` is agreed: bytes that are no TLS record and a record header over TLS's
/// limit end the connection at once (each a typed error of the TLS machine), a record that
/// never completes and a client that never speaks end at the upgrade timeout; nothing grows.
#[test]
fn tls_garbage_and_stalls() {
    let _g = serial();
    let target = Target::<Tokio>::start();
    assert!(
        target.security.contains(&Security::Tls),
        "{:?}",
        target.security
    );
    let tls = [MS_HEADER, &ms_message("/tls/1.0.0")[..]].concat();
    let inputs: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "not a record",
            [&tls[..], b"GET / HTTP/1.1\r\n\r\n"].concat(),
            true,
        ),
        (
            "a 65535-byte record",
            [&tls[..], &[0x16, 0x03, 0x01, 0xff, 0xff][..]].concat(),
            true,
        ),
        (
            "a record that never completes",
            [&tls[..], &[0x16, 0x03, 0x01, 0x10, 0x00][..], &[0; 100][..]].concat(),
            false,
        ),
        ("silence", tls.clone(), false),
    ];
    for (what, input, prompt) in inputs {
        let mut tcp = raw_connect(target.addr);
        let start = Instant::now();
        tcp.write_all(&input).unwrap();
        let during = target.snapshot();
        let closed = wait_closed(&mut tcp, start, UPGRADE_TIMEOUT * 3);
        let limit = if prompt { PROMPT } else { UPGRADE_TIMEOUT * 2 };
        match closed {
            Closed::After(t) => assert!(t < limit, "{what}: closed only after {t:?}"),
            Closed::StillOpen => panic!("{what}: not closed"),
        }
        assert!(during.buffered < 64 * 1024, "{what}: buffered {during}");
        println!("[tls-garbage/tokio] {what}: closed in {closed:?}; during: {during}");
    }
    target.assert_serves_and_recovers("tls-garbage");
}

#[test]
fn huge_length_prefix() {
    let _g = serial();
    let target = Target::<Tokio>::start();
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        // 2^32 as the very first varint.
        ("4 GiB header", vec![0x80, 0x80, 0x80, 0x80, 0x10]),
        // A varint that never ends (overflows u64).
        ("endless varint", vec![0xff; 16]),
        // A valid header, then a protocol proposal claiming 1 GiB.
        (
            "1 GiB proposal",
            [MS_HEADER, &[0x80, 0x80, 0x80, 0x80, 0x04][..], b"/noise"].concat(),
        ),
        // Just over the 1 KiB message limit, with the bytes to back it.
        (
            "1025-byte message",
            [MS_HEADER, &[0x81, 0x08][..], &[b'a'; 1025][..]].concat(),
        ),
    ];
    for (what, input) in inputs {
        let mut tcp = raw_connect(target.addr);
        let start = Instant::now();
        tcp.write_all(&input).unwrap();
        let during = target.snapshot();
        let closed = wait_closed(&mut tcp, start, UPGRADE_TIMEOUT * 3);
        match closed {
            Closed::After(t) => assert!(t < PROMPT, "{what}: closed only after {t:?}"),
            Closed::StillOpen => panic!("{what}: not closed"),
        }
        assert!(during.buffered < 64 * 1024, "{what}: buffered {during}");
        println!("[huge-length/tokio] {what}: closed in {closed:?}; during: {during}");
    }
    target.assert_serves_and_recovers("huge-length");
}

// ---- 3. slowloris: a handshake one byte per 100 ms ----

fn slowloris<R: TestRuntime>() {
    let _g = serial();
    let target = Target::<R>::start();
    // A valid start: header, /noise and a Noise message 1 (length 32, an ephemeral key).
    let mut bytes = [MS_HEADER, MS_NOISE].concat();
    bytes.extend_from_slice(&[0x00, 0x20]);
    bytes.extend((0..32).map(|_| rand::random::<u8>()));
    let mut tcp = raw_connect(target.addr);
    tcp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut sent = 0;
    let mut closed_at = None;
    let mut buf = [0u8; 1024];
    let mut during = target.snapshot();
    while start.elapsed() < UPGRADE_TIMEOUT * 4 {
        if sent < bytes.len() && tcp.write_all(&bytes[sent..=sent]).is_ok() {
            sent += 1;
        }
        if sent == 5 {
            during = target.snapshot();
        }
        use std::io::Read;
        match tcp.read(&mut buf) {
            Ok(0) => {
                closed_at = Some(start.elapsed());
                break;
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed_at = Some(start.elapsed());
                break;
            }
        }
    }
    let t = closed_at.expect("slowloris connection never closed");
    assert!(
        t >= UPGRADE_TIMEOUT.mul_f32(0.9) && t < UPGRADE_TIMEOUT * 2,
        "closed after {t:?}, upgrade timeout {UPGRADE_TIMEOUT:?}"
    );
    assert_eq!(during.connections, 1);
    println!(
        "[slowloris/{}] {sent} bytes sent one per 100 ms; closed after {t:?} (timeout {UPGRADE_TIMEOUT:?}); during: {during}",
        R::name()
    );
    target.assert_serves_and_recovers("slowloris");
}

#[test]
fn slowloris_tokio() {
    slowloris::<Tokio>();
}

#[test]
fn slowloris_smol() {
    slowloris::<Smol>();
}

#[test]
fn slowloris_async_std() {
    slowloris::<AsyncStd>();
}

// ---- 4. thousands of idle half-open connections ----

#[test]
fn idle_connection_flood() {
    let _g = serial();
    let limits = Limits::default();
    let max_pending = limits.max_pending_incoming;
    let target = Target::<Tokio>::with_limits(limits);
    const TOTAL: usize = 2000;
    const THREADS: usize = 4;
    // (socket, connected at, closed by the host at)
    type Idle = (TcpStream, Instant, Option<Duration>);
    let sockets: Arc<Mutex<Vec<Idle>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A monitor sweeps every socket every few ms and notes when the host closed it.
    let monitor = {
        let sockets = sockets.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            loop {
                let mut open = 0;
                for (tcp, at, closed) in sockets.lock().unwrap().iter_mut() {
                    if closed.is_some() {
                        continue;
                    }
                    let mut buf = [0u8; 256];
                    match std::io::Read::read(tcp, &mut buf) {
                        Ok(n) if n > 0 => open += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
                        _ => *closed = Some(at.elapsed()),
                    }
                }
                if (done.load(Ordering::Relaxed) && open == 0)
                    || start.elapsed() > Duration::from_secs(15)
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let start = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let sockets = sockets.clone();
            let addr = target.addr;
            std::thread::spawn(move || {
                for _ in 0..TOTAL / THREADS {
                    let tcp = TcpStream::connect(addr).expect("connect");
                    tcp.set_nonblocking(true).unwrap();
                    sockets.lock().unwrap().push((tcp, Instant::now(), None));
                    // ~1000 connects per second over all threads.
                    std::thread::sleep(Duration::from_millis(4));
                }
            })
        })
        .collect();
    // Mid-flood: the host holds at most the pending limit and still serves a normal dialer.
    std::thread::sleep(Duration::from_millis(700));
    let mid = target.snapshot();
    let echo_mid = target.echo_check();
    let mut peak = mid;
    for w in workers {
        while !w.is_finished() {
            let s = target.snapshot();
            peak.connections = peak.connections.max(s.connections);
            peak.sockets = peak.sockets.max(s.sockets);
            peak.buffered = peak.buffered.max(s.buffered);
            std::thread::sleep(Duration::from_millis(20));
        }
        w.join().unwrap();
    }
    let flood_time = start.elapsed();
    done.store(true, Ordering::Relaxed);
    monitor.join().unwrap();
    let sockets = std::mem::take(&mut *sockets.lock().unwrap());
    let closed: Vec<Duration> = sockets.iter().filter_map(|(_, _, c)| *c).collect();
    let latest = closed.iter().max().copied().unwrap_or_default();
    let mut sorted = closed.clone();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    println!(
        "[idle-flood/tokio] {TOTAL} idle connections in {flood_time:?}; mid-flood {mid}, peak {peak}; \
         echo during flood ok in {echo_mid:?}; closed by the host: {} of {TOTAL}, median {median:?}, \
         latest {latest:?} after connecting (timeout {UPGRADE_TIMEOUT:?})",
        closed.len()
    );
    assert!(
        peak.connections <= max_pending + 1,
        "pending limit not enforced: {peak}"
    );
    assert_eq!(
        closed.len(),
        TOTAL,
        "idle connections outlived the upgrade timeout"
    );
    // None outlives the upgrade timeout (plus scheduling slack and time in the accept queue).
    assert!(
        latest < UPGRADE_TIMEOUT + Duration::from_millis(500),
        "latest close {latest:?}"
    );
    drop(sockets);
    target.assert_serves_and_recovers("idle-flood");
}

// ---- 5. a flood of yamux SYNs beyond the stream limit and the backlogs ----

#[test]
fn syn_flood() {
    let _g = serial();
    let target = Target::<Tokio>::start();
    let mut peer = SecurePeer::connect(target.addr).expect("handshake");
    const SYNS: u32 = 3000;
    let mut frames: Vec<Frame> = Vec::new();
    let mut peak = target.snapshot();
    for batch in 0..(SYNS / 100) {
        let mut plain = Vec::new();
        for i in 0..100 {
            let id = 2 * (batch * 100 + i) + 1;
            plain.extend_from_slice(&yamux::header(yamux::WINDOW_UPDATE, yamux::SYN, id, 0));
        }
        peer.send(&plain).expect("send SYNs");
        frames.extend(peer.read_frames(Duration::from_millis(5), |_| false));
        let s = target.snapshot();
        peak.streams = peak.streams.max(s.streams);
        peak.buffered = peak.buffered.max(s.buffered);
    }
    let refused = |f: &[Frame]| {
        f.iter()
            .filter(|f| f.flags & yamux::RST != 0 && f.id % 2 == 1)
            .count()
    };
    let mut more = peer.read_frames(Duration::from_secs(3), |f| {
        refused(&frames) + refused(f) >= (SYNS as usize - peak.streams)
    });
    frames.append(&mut more);
    let during = target.snapshot();
    let rsts = refused(&frames);
    let go_away = frames.iter().find(|f| f.ty == yamux::GO_AWAY);
    assert!(!peer.eof, "host dropped the connection: {go_away:?}");
    assert!(
        during.streams <= 1024 + 2,
        "streams beyond the session budget: {during}"
    );
    assert_eq!(
        rsts + during.streams.saturating_sub(1),
        SYNS as usize,
        "every SYN beyond the limit is refused with RST ({during})"
    );
    assert!(
        peak.buffered < 1024 * 1024,
        "buffered bytes grew: {}",
        peak.buffered
    );
    println!(
        "[syn-flood/tokio] {SYNS} SYNs: {} accepted (streams peak {}), {rsts} RST, go away {go_away:?}; peak buffered {}B; rss {} KiB",
        during.streams, peak.streams, peak.buffered, rss_kib()
    );
    drop(peer);
    target.wait_baseline(Duration::from_secs(5));
    target.assert_serves_and_recovers("syn-flood");
}

// ---- 6. a peer that never reads while the host writes to it ----

fn open_stream(peer: &mut SecurePeer, id: u32, protocol: &str, data: &[u8], fin: bool) {
    let mut body = MS_HEADER.to_vec();
    body.extend(ms_message(protocol));
    body.extend_from_slice(data);
    let flags = yamux::SYN | if fin { yamux::FIN } else { 0 };
    peer.send(&yamux::data(flags, id, &body))
        .expect("open stream");
}

#[test]
fn never_reading_peer() {
    let _g = serial();
    let target = Target::<Tokio>::start();
    // (a) no window updates: the host may send one initial window, then must wait.
    // (b) a huge window, but the socket is never read: TCP backpressure must stop the writer.
    for huge_window in [false, true] {
        let written_before = target.firehose_written.load(Ordering::Relaxed);
        let mut peer = SecurePeer::connect(target.addr).expect("handshake");
        open_stream(&mut peer, 1, plait_tests::hostile::FIREHOSE, b"", false);
        if huge_window {
            peer.send(&yamux::header(yamux::WINDOW_UPDATE, 0, 1, 0x7fff_0000))
                .unwrap();
        }
        let mut samples = Vec::new();
        let mut peak = target.snapshot();
        for _ in 0..15 {
            std::thread::sleep(Duration::from_millis(100));
            let s = target.snapshot();
            peak.buffered = peak.buffered.max(s.buffered);
            samples.push(target.firehose_written.load(Ordering::Relaxed) - written_before);
        }
        let last = *samples.last().unwrap();
        let earlier = samples[samples.len() - 5];
        assert_eq!(
            earlier, last,
            "the writer never got backpressure: {samples:?}"
        );
        assert!(
            peak.buffered <= 2 * 1024 * 1024,
            "host buffers {}B for a peer that does not read",
            peak.buffered
        );
        if !huge_window {
            // One 256 KiB window plus the 1 MiB stream send buffer.
            assert!(last <= 256 * 1024 + 1024 * 1024 + 16 * 1024, "wrote {last}");
        }
        let stalled = target.snapshot();
        assert_eq!(
            stalled.connections, 1,
            "connection lost while stalled: {stalled}"
        );
        println!(
            "[never-reading/tokio] huge window {huge_window}: writer stalled after {last} bytes; peak buffered {}B; stalled: {stalled}",
            peak.buffered
        );
        // The host ends the connection itself (a protocol violation) while we still do not
        // read: the socket must not stay open forever waiting for a flush.
        peer.send(&yamux::header(yamux::DATA, 0, 0, 0)).unwrap();
        let start = Instant::now();
        let mut gone = None;
        while start.elapsed() < Duration::from_secs(6) {
            let s = target.snapshot();
            if s.connections == target.baseline.connections && s.sockets == target.baseline.sockets
            {
                gone = Some(start.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let s = target.snapshot();
        assert!(
            gone.is_some(),
            "a failed connection to a non-reading peer is never released: {s}"
        );
        println!("[never-reading/tokio] socket released {gone:?} after the violation");
        drop(peer);
    }
    target.assert_serves_and_recovers("never-reading");
}

// ---- 7. window updates that overflow ----

#[test]
fn window_overflow() {
    let _g = serial();
    let target = Target::<Tokio>::start();
    let cases: [(&str, Vec<u8>); 2] = [
        ("update on an open stream", {
            let mut v = Vec::new();
            let mut body = MS_HEADER.to_vec();
            body.extend(ms_message(ECHO));
            v.extend(yamux::data(yamux::SYN, 1, &body));
            v.extend(yamux::header(yamux::WINDOW_UPDATE, 0, 1, u32::MAX));
            v
        }),
        (
            "SYN with an overflowing delta",
            yamux::header(yamux::WINDOW_UPDATE, yamux::SYN, 1, u32::MAX - 1000).to_vec(),
        ),
    ];
    for (what, plain) in cases {
        let mut peer = SecurePeer::connect(target.addr).expect("handshake");
        let start = Instant::now();
        peer.send(&plain).unwrap();
        let frames = peer.read_frames(Duration::from_secs(3), |_| false);
        let elapsed = start.elapsed();
        assert!(peer.eof, "{what}: connection not closed");
        let go_away: Vec<&Frame> = frames.iter().filter(|f| f.ty == yamux::GO_AWAY).collect();
        assert!(
            go_away.len() == 1 && go_away[0].length == 1,
            "{what}: expected one Go Away(protocol error), got {go_away:?}"
        );
        assert!(elapsed < PROMPT, "{what}: closed after {elapsed:?}");
        println!("[window-overflow/tokio] {what}: Go Away(1), closed in {elapsed:?}");
    }
    target.assert_serves_and_recovers("window-overflow");
}

// ---- 8. data on reset streams ----

#[test]
fn data_on_reset_streams() {
    let _g = serial();
    let target = Target::<Tokio>::start();
    let mut peer = SecurePeer::connect(target.addr).expect("handshake");
    // Stream 1: open echo, then reset it.
    open_stream(&mut peer, 1, ECHO, b"x", false);
    peer.read_frames(Duration::from_millis(200), |_| false);
    peer.send(&yamux::header(yamux::WINDOW_UPDATE, yamux::RST, 1, 0))
        .unwrap();
    // Then data on the reset stream, and on a stream that never existed, within the window.
    let chunk = vec![0xab_u8; 60 * 1024];
    let mut peak = target.snapshot();
    for i in 0..40 {
        let id = if i % 2 == 0 { 1 } else { 7 };
        peer.send(&yamux::data(0, id, &chunk)).unwrap();
        if i % 10 == 9 {
            peer.send(&yamux::data(yamux::FIN, id, b"")).unwrap();
            peer.send(&yamux::header(yamux::WINDOW_UPDATE, 0, id, 1 << 20))
                .unwrap();
        }
        let s = target.snapshot();
        peak.buffered = peak.buffered.max(s.buffered);
        peak.streams = peak.streams.max(s.streams);
    }
    let frames = peer.read_frames(Duration::from_millis(300), |_| false);
    let rsts = frames
        .iter()
        .filter(|f| f.flags & yamux::RST != 0 && (f.id == 1 || f.id == 7))
        .count();
    assert!(
        !peer.eof,
        "host closed the connection over ignorable frames"
    );
    assert!(rsts <= 1, "RST storm: {rsts} RSTs for dead streams");
    assert!(
        peak.buffered < 512 * 1024,
        "data for dead streams was buffered: {peak}"
    );
    // The same connection still works: echo on stream 9.
    open_stream(&mut peer, 9, ECHO, b"still alive\n", true);
    let mut frames = Vec::new();
    let reply = loop {
        frames.extend(peer.read_frames(Duration::from_millis(100), |_| false));
        let body: Vec<u8> = frames
            .iter()
            .filter(|f| f.id == 9 && f.ty == yamux::DATA)
            .flat_map(|f| f.body.to_vec())
            .collect();
        let fin = frames
            .iter()
            .any(|f| f.id == 9 && f.flags & yamux::FIN != 0);
        if fin || peer.eof || body.len() > 1000 {
            break body;
        }
    };
    let expected = [MS_HEADER, &ms_message(ECHO), b"still alive\n"].concat();
    assert_eq!(reply, expected, "echo on the attacked connection");
    println!(
        "[reset-data/tokio] 40 x 60 KiB on reset/unknown streams: {rsts} RST back, peak {peak}; echo on the same connection ok"
    );
    drop(peer);
    target.assert_serves_and_recovers("reset-data");
}

// ---- 9. invalid Noise frames after the handshake ----

#[test]
fn invalid_noise_frames() {
    let _g = serial();
    let target = Target::<Tokio>::start();
    let cases: [(&str, Vec<u8>); 4] = [
        ("bad tag", garbage_noise_frame(100)),
        ("shorter than a tag", garbage_noise_frame(5)),
        ("empty frame", garbage_noise_frame(0)),
        ("65535-byte garbage frame", garbage_noise_frame(u16::MAX)),
    ];
    for (what, raw) in cases {
        let mut peer = SecurePeer::connect(target.addr).expect("handshake");
        let start = Instant::now();
        peer.send_raw(&raw).unwrap();
        let closed = peer.wait_closed(Duration::from_secs(3));
        let t = closed.unwrap_or_else(|| panic!("{what}: not closed"));
        assert!(t < PROMPT, "{what}: closed after {t:?}");
        println!(
            "[noise-frames/tokio] {what}: closed in {:?}",
            start.elapsed()
        );
    }
    // A frame whose length promises 65535 bytes, then silence: held at most the frame size.
    let mut peer = SecurePeer::connect(target.addr).expect("handshake");
    peer.send_raw(&garbage_noise_frame(u16::MAX)[..1000])
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let during = target.snapshot();
    assert!(during.buffered < 128 * 1024, "partial frame: {during}");
    println!("[noise-frames/tokio] partial 65535-byte frame: {during}");
    drop(peer);
    target.assert_serves_and_recovers("noise-frames");
}

// ---- 10. 10,000 connect-disconnect cycles ----

#[test]
fn connect_disconnect_cycles() {
    let _g = serial();
    // Handshakes in a debug build on a loaded machine can take longer than the 1 s test
    // timeout: give them 5 s so every one must succeed.
    let target = Target::<Tokio>::with_config(Limits::default(), Duration::from_secs(5));
    const CYCLES: usize = 10_000;
    const THREADS: usize = 8;
    const HANDSHAKE_EVERY: usize = 200;
    const PACE: Duration = Duration::from_millis(6);
    let rss_before = rss_kib();
    let start = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let addr = target.addr;
            std::thread::spawn(move || {
                let mut handshakes = 0;
                let mut slow = 0;
                let begin = Instant::now();
                for i in 0..CYCLES / THREADS {
                    let n = i * THREADS + t;
                    // Paced: each thread one cycle per PACE, so the listen backlog never
                    // overflows (an overflow costs the client a 1 s SYN retry).
                    let due = begin + PACE * i as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    if n.is_multiple_of(HANDSHAKE_EVERY) {
                        match SecurePeer::connect(addr) {
                            Ok(peer) => {
                                handshakes += 1;
                                drop(peer);
                            }
                            Err(e) => panic!("handshake {n} failed: {e}"),
                        }
                    } else {
                        let t0 = Instant::now();
                        let tcp = TcpStream::connect(addr).expect("connect");
                        if t0.elapsed() > Duration::from_millis(500) {
                            slow += 1;
                        }
                        if n.is_multiple_of(2) {
                            // Some send a byte first; some leave with a RST.
                            let _ = (&tcp).write_all(b"\x13");
                        }
                        drop(tcp);
                    }
                }
                (handshakes, slow)
            })
        })
        .collect();
    let mut peak = target.snapshot();
    let mut handshakes = 0;
    let mut slow = 0;
    for w in workers {
        while !w.is_finished() {
            let s = target.snapshot();
            peak.connections = peak.connections.max(s.connections);
            peak.sockets = peak.sockets.max(s.sockets);
            peak.buffered = peak.buffered.max(s.buffered);
            std::thread::sleep(Duration::from_millis(20));
        }
        let (h, s) = w.join().unwrap();
        handshakes += h;
        slow += s;
    }
    let elapsed = start.elapsed();
    let back = target.wait_baseline(Duration::from_secs(5));
    println!(
        "[cycles/tokio] {CYCLES} connect-disconnect cycles ({handshakes} with a full Noise handshake) in {elapsed:?}; \
         peak {peak}; {slow} connects took over 500 ms (SYN retry); back to baseline in {back:?}; rss {rss_before} -> {} KiB",
        rss_kib()
    );
    target.assert_serves_and_recovers("cycles");
}

// ---- 11. an `ls` flood during muxer negotiation, never read ----

/// After the security handshake (Noise without early muxer negotiation, or plaintext), the
/// attacker sends the multistream header and then `ls` requests in 64 KiB writes, never
/// reading. The host must hold at most [`MAX_UPGRADE_BUFFERED`] for it and end the connection
/// (each `ls` counts toward the rejection limit).
fn ls_flood<R: TestRuntime>(channel: Channel) {
    let _g = serial();
    let security = match channel {
        Channel::Plaintext => Security::Plaintext,
        Channel::Noise | Channel::NoiseEarlyMuxer => Security::Noise,
    };
    let target = Target::<R>::with_host_config(target_config().with_security(security));
    let rss_before = rss_kib();
    let mut peer = SecurePeer::connect_with(target.addr, channel).expect("handshake");
    let mut batch = MS_HEADER.to_vec();
    let ls = ms_message("ls");
    while batch.len() < 64 * 1024 - ls.len() {
        batch.extend_from_slice(&ls);
    }
    const FLOOD: usize = 64 * 1024 * 1024;
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let host = target.host.clone();
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(host.buffered_bytes());
                std::thread::sleep(Duration::from_millis(1));
            }
            peak
        })
    };
    let start = Instant::now();
    let mut written = 0;
    while written < FLOOD {
        if peer.send(&batch).is_err() {
            break;
        }
        written += batch.len();
    }
    let stopped = start.elapsed();
    let closed = peer.wait_closed(UPGRADE_TIMEOUT * 3);
    sampling.store(false, Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");
    println!(
        "[ls-flood/{channel:?}/{}] wrote {written} bytes in {stopped:?} before the host cut us off; \
         closed {closed:?}; peak buffered {peak} B (bound {MAX_UPGRADE_BUFFERED}); rss {rss_before} -> {} KiB",
        R::name(),
        rss_kib()
    );
    assert!(
        written < FLOOD,
        "the host read a {FLOOD}-byte ls flood to the end"
    );
    assert!(closed.is_some(), "the flooding connection was not closed");
    assert!(
        peak <= target.baseline.buffered + MAX_UPGRADE_BUFFERED as u64,
        "the host buffered {peak} B for one upgrading connection (bound {MAX_UPGRADE_BUFFERED})"
    );
    target.assert_serves_and_recovers("ls-flood");
}

#[test]
fn ls_flood_noise_tokio() {
    ls_flood::<Tokio>(Channel::Noise);
}

#[test]
fn ls_flood_noise_smol() {
    ls_flood::<Smol>(Channel::Noise);
}

#[test]
fn ls_flood_noise_async_std() {
    ls_flood::<AsyncStd>(Channel::Noise);
}

#[test]
fn ls_flood_plaintext_tokio() {
    ls_flood::<Tokio>(Channel::Plaintext);
}

#[test]
fn ls_flood_plaintext_smol() {
    ls_flood::<Smol>(Channel::Plaintext);
}

#[test]
fn ls_flood_plaintext_async_std() {
    ls_flood::<AsyncStd>(Channel::Plaintext);
}

// ---- 12. handlers and matchers that call back into the host ----

/// A protocol whose handler drops the stream at once.
const DROP: &str = "/drop/1.0.0";
/// A protocol whose handler calls `peer_info`, `num_connections` and `ping`, then drops it.
const QUERY: &str = "/query/1.0.0";
/// A protocol whose handler opens a stream back to the caller.
const CALLBACK: &str = "/callback/1.0.0";

/// Every way a handler (or a matcher) can re-enter the host it runs on: dropping its stream,
/// calling host methods, polling `ping` and `new_stream` from inside the handler. Before
/// handlers ran outside the host lock, each of these froze the whole host.
fn reentrant_handlers<R: TestRuntime>() {
    let _g = serial();
    let server = Target::<R>::start();
    let client = Target::<R>::start();
    let (pinged_tx, pinged) = std::sync::mpsc::channel();
    let (called_back_tx, called_back) = std::sync::mpsc::channel();
    server
        .host
        .set_stream_handler(DROP, |_stream| {})
        .expect("drop");
    let (host, rt) = (server.host.clone(), server.rt.clone());
    server
        .host
        .set_stream_handler(QUERY, move |stream| {
            let peer = stream.peer();
            let known = host.peer_info(peer).is_some();
            let connections = host.num_connections();
            let pinger = host.clone();
            let mut ping = Box::pin(async move { pinger.ping(peer).await });
            // Polled here, inside the handler (it cannot finish yet: the pong is not in).
            let early = futures_lite::future::block_on(futures_lite::future::poll_once(&mut ping));
            drop(stream);
            let tx = pinged_tx.clone();
            rt.spawn(Box::pin(async move {
                let _ = tx.send((known, connections, early.is_some(), ping.await.is_ok()));
            }));
        })
        .expect("query");
    let (host, rt) = (server.host.clone(), server.rt.clone());
    server
        .host
        .set_stream_handler(CALLBACK, move |stream| {
            let peer = stream.peer();
            let opener = host.clone();
            let mut open = Box::pin(async move { opener.new_stream(peer, [ECHO]).await });
            let early = futures_lite::future::block_on(futures_lite::future::poll_once(&mut open));
            let tx = called_back_tx.clone();
            rt.spawn(Box::pin(async move {
                let _keep = stream;
                let reply = match early {
                    Some(opened) => opened,
                    None => open.await,
                };
                let reply = match reply {
                    Ok(mut back) => {
                        let mut reply = Vec::new();
                        let sent =
                            back.write_all(b"back").await.is_ok() && back.close().await.is_ok();
                        let read = back.read_to_end(&mut reply).await.is_ok();
                        (sent && read).then_some(reply)
                    }
                    Err(_) => None,
                };
                let _ = tx.send(reply);
            }));
        })
        .expect("callback");
    let host = server.host.clone();
    server.host.set_stream_handler_match(
        move |protocol| host.num_connections() > 0 && protocol.starts_with("/match/"),
        |_stream| {},
    );

    let (client_host, client_rt, server_addr, server_peer) = (
        client.host.clone(),
        client.rt.clone(),
        server.maddr.clone(),
        server.peer,
    );
    let outcomes = or_deadlock(Duration::from_secs(30), "re-entrant handlers", move || {
        block_on_timeout(&client_rt, Duration::from_secs(20), "client", async move {
            client_host.dial(server_addr).await.expect("dial");
            let mut results = Vec::new();
            for protocol in [DROP, QUERY, CALLBACK, "/match/1.0.0", "/nomatch/1.0.0"] {
                // Lazy negotiation: the stream is handed out before the remote confirms it; a
                // refusal shows on the first read. The handlers drop their stream, so ours
                // ends (end of file), never hangs.
                let mut stream = client_host
                    .new_stream(server_peer, [protocol])
                    .await
                    .expect("open");
                let _ = stream.write_all(b"x").await;
                let _ = stream.close().await;
                let mut rest = Vec::new();
                results.push((protocol, stream.read_to_end(&mut rest).await.is_ok()));
            }
            results
        })
    });
    println!(
        "[reentrant/{}] stream read to its end: {outcomes:?}",
        R::name()
    );
    for (protocol, served) in outcomes {
        let refused = protocol == "/nomatch/1.0.0";
        assert_eq!(served, !refused, "{protocol}: served {served}");
    }
    let limit = Duration::from_secs(20);
    let (known, connections, early, ping_ok) = pinged.recv_timeout(limit).expect("query handler");
    assert!(known || connections > 0, "handler saw no connection");
    assert!(!early, "a ping cannot complete before its pong arrives");
    assert!(ping_ok, "the ping started inside a handler failed");
    let reply = called_back.recv_timeout(limit).expect("callback handler");
    assert_eq!(
        reply.as_deref(),
        Some(&b"back"[..]),
        "the stream back to the caller"
    );
    // The server still answers, and still echoes.
    let host = server.host.clone();
    let count = or_deadlock(Duration::from_secs(10), "num_connections", move || {
        host.num_connections()
    });
    assert!(count >= 1);
    server.echo_check();
    client.host.close();
    server.assert_serves_and_recovers("reentrant");
    // The handlers hold host handles: close explicitly.
    server.host.close();
}

#[test]
fn reentrant_handlers_tokio() {
    reentrant_handlers::<Tokio>();
}

#[test]
fn reentrant_handlers_smol() {
    reentrant_handlers::<Smol>();
}

#[test]
fn reentrant_handlers_async_std() {
    reentrant_handlers::<AsyncStd>();
}

// ---- 13. accept errors (a full descriptor table) ----

/// A listener whose first six accepts fail with EMFILE reports each failure with a doubling
/// pause (5 ms, 10 ms, ... ), keeps listening, and then serves a dialer.
fn accept_failures_back_off_and_are_reported<R: TestRuntime>() {
    let _g = serial();
    const FAILURES: u64 = 6;
    let rt = FailingAccept::new(R::get(), FAILURES);
    let host = Host::new(rt.clone(), target_config()).expect("host");
    plait_driver::demo::serve_echo(&host, &rt).expect("echo");
    let runtime = R::get();
    let start = Instant::now();
    let (addr, failures) = block_on_timeout(&runtime, Duration::from_secs(20), "listen", async {
        let addr = host
            .listen("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
            .await
            .expect("listen");
        let mut failures = Vec::new();
        while failures.len() < FAILURES as usize {
            match host.next_event().await {
                HostEvent::AcceptFailed {
                    os_error, retry_in, ..
                } => failures.push((os_error, retry_in)),
                HostEvent::Listening(_) => {}
                other => panic!("unexpected event {other:?}"),
            }
        }
        (addr, failures)
    });
    let reported = start.elapsed();
    let pauses: Vec<Duration> = failures.iter().map(|(_, pause)| *pause).collect();
    println!(
        "[accept-failures/{}] {FAILURES} failures reported in {reported:?}, pauses {pauses:?}",
        R::name()
    );
    let expected: Vec<Duration> = (0..FAILURES as u32)
        .map(|i| Duration::from_millis(5) * 2u32.pow(i))
        .collect();
    assert_eq!(pauses, expected, "exponential backoff from 5 ms");
    assert!(
        failures.iter().all(|(os_error, _)| *os_error == Some(24)),
        "{failures:?}"
    );
    // The pauses were taken before the next attempt (a lower bound, not a deadline).
    let slept: Duration = expected[..expected.len() - 1].iter().sum();
    assert!(
        reported >= slept,
        "failures reported in {reported:?}, pauses of {slept:?}"
    );
    // The listener survived: a dialer is served.
    let client = Host::new(R::get(), target_config()).expect("client");
    let addr = addr.with(plait_core::multiaddr::Protocol::P2p(host.peer_id()));
    let reply = block_on_timeout(&runtime, Duration::from_secs(20), "echo", async {
        plait_driver::demo::dial_echo(&client, addr).await
    })
    .expect("echo after accept failures");
    assert_eq!(reply, "Hello, world!\n");
    client.close();
    host.close();
}

#[test]
fn accept_failures_back_off_and_are_reported_tokio() {
    accept_failures_back_off_and_are_reported::<Tokio>();
}

#[test]
fn accept_failures_back_off_and_are_reported_smol() {
    accept_failures_back_off_and_are_reported::<Smol>();
}

#[test]
fn accept_failures_back_off_and_are_reported_async_std() {
    accept_failures_back_off_and_are_reported::<AsyncStd>();
}

/// The echo demo in a child process limited to 64 descriptors, with 100 connections held open
/// against it: accepting fails with EMFILE until connections end. The listener must not spin
/// (its CPU over three seconds is measured), and it serves again once descriptors free up.
fn full_descriptor_table(runtime: &str) {
    let _g = serial();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec {} {runtime} -l 0",
            env!("CARGO_BIN_EXE_echo_host")
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the echo host");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let first = lines.next().expect("a line").expect("stdout");
    let addr: plait_core::multiaddr::Multiaddr = first
        .strip_prefix("I am ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .expect("listen address");
    let Some(plait_driver::Target::Socket(socket)) = plait_driver::multiaddr_to_socket(&addr)
    else {
        panic!("not a socket address: {addr}");
    };
    let held: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(socket).expect("connect"))
        .collect();
    // Let the child accept what it can and run out of descriptors.
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id();
    let (cpu_before, wall) = (process_cpu_time(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let (cpu, wall) = (process_cpu_time(pid) - cpu_before, wall.elapsed());
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    println!(
        "[emfile/{runtime}] 100 connections held against a 64-descriptor listener: \
         {cpu:?} CPU in {wall:?} ({:.1} % of a core)",
        share * 100.0
    );
    drop(held);
    // Descriptors come back: the listener serves a dialer again.
    let rt = Tokio::get();
    let client = Host::new(rt.clone(), target_config()).expect("client");
    let reply = block_on_timeout(&rt, Duration::from_secs(30), "echo after EMFILE", async {
        plait_driver::demo::dial_echo(&client, addr.clone()).await
    });
    client.close();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        share < 0.25,
        "a listener out of descriptors used {:.1} % of a core",
        share * 100.0
    );
    assert_eq!(reply.expect("echo"), "Hello, world!\n");
}

#[test]
fn full_descriptor_table_tokio() {
    full_descriptor_table("tokio");
}

#[test]
fn full_descriptor_table_smol() {
    full_descriptor_table("smol");
}

#[test]
fn full_descriptor_table_async_std() {
    full_descriptor_table("async-std");
}
