//! Fuzz entry points for `yamux`: raw peer bytes into one session of each mode, and an
//! operation sequence driving a connected pair with invariant checks.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::time::Instant;
use crate::yamux::{Config, Event, Mode, Session, StreamId};

fn small_config() -> Config {
    Config::default()
        .with_max_streams(8)
        .with_max_session_receive_window(4 * 256 * 1024)
        .with_max_stream_send_buffer(4096)
        .with_max_frame_payload(1500)
        .with_ping_interval(Some(Duration::from_secs(1)))
        .with_ping_timeout(Duration::from_secs(5))
}

/// Feeds `data` (first byte: chunk size) as peer input to one session, exercising reads,
/// writes and transmits in between.
fn session_from_bytes(mode: Mode, data: &[u8], start: Instant) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mut now = start;
    let mut s = Session::new(mode, small_config(), now);
    let _ = s.open_stream(now);
    let chunk = usize::from(first).max(1);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    for piece in rest.chunks(chunk) {
        input.extend_from_slice(piece);
        let _ = s.handle_input(now, &mut input);
        while let Some(ev) = s.poll_event() {
            match ev {
                Event::InboundStream(id) | Event::Readable(id) | Event::Writable(id) => {
                    if let Some(mut st) = s.stream(id) {
                        while let Ok(Some(_)) = st.read(700) {}
                        let _ = st.write(b"fuzz");
                    }
                }
                Event::StreamFinished(id) => {
                    if let Some(mut st) = s.stream(id) {
                        let _ = st.finish();
                    }
                }
                _ => {}
            }
        }
        out.clear();
        while s.poll_transmit(now, &mut out, 4096).is_some() {
            out.clear();
        }
        now += Duration::from_millis(u64::from(first) * 10);
        s.handle_timeout(now);
        assert!(s.recv_buffered() <= s.total_receive_window());
    }
}

/// Peer bytes into a client session.
pub fn yamux_session_client(data: &[u8], now: Instant) {
    session_from_bytes(Mode::Client, data, now);
}

/// Peer bytes into a server session.
pub fn yamux_session_server(data: &[u8], now: Instant) {
    session_from_bytes(Mode::Server, data, now);
}

/// Interprets `data` as operations on a connected client/server pair (two bytes per op:
/// opcode, argument) and checks that no protocol error occurs, buffered data stays within
/// the windows and budget, and every byte read is the next one written on that stream.
pub fn yamux_pair_ops(data: &[u8], now: Instant) {
    let mut now = now;
    let config = small_config();
    let budget = config.max_session_receive_window;
    let mut sess = [
        Session::new(Mode::Client, config.clone(), now),
        Session::new(Mode::Server, config, now),
    ];
    let mut wires = [BytesMut::new(), BytesMut::new()];
    let mut inputs = [BytesMut::new(), BytesMut::new()];
    // (stream id, bytes written by side 0, bytes written by side 1, read by 0, read by 1)
    let mut streams: Vec<(u32, [u64; 2], [u64; 2])> = Vec::new();
    let pat = |id: u32, side: usize, off: u64| (off ^ u64::from(id) ^ (side as u64 * 0x55)) as u8;
    for op in data.chunks(2) {
        let (code, arg) = match op {
            [c, a] => (*c, *a),
            _ => break,
        };
        let i = usize::from(code & 1);
        let j = 1 - i;
        let pick = (!streams.is_empty()).then(|| usize::from(arg) % streams.len());
        match code >> 1 {
            0 => {
                if let Ok(id) = sess[i].open_stream(now) {
                    streams.push((id.get(), [0; 2], [0; 2]));
                }
            }
            1 | 2 => {
                if let Some(k) = pick {
                    let (id, w, _) = &mut streams[k];
                    let len = usize::from(arg) * 37;
                    let bytes: Vec<u8> = (0..len as u64).map(|o| pat(*id, i, w[i] + o)).collect();
                    if let Some(mut st) = sess[i].stream(StreamId::from_wire(*id)) {
                        let r = if code >> 1 == 1 {
                            st.write(&bytes)
                        } else {
                            st.write_bytes(Bytes::from(bytes))
                        };
                        if let Ok(n) = r {
                            w[i] += n as u64;
                        }
                    }
                }
            }
            3 => {
                if let Some(k) = pick {
                    let (id, w, r) = &mut streams[k];
                    if let Some(mut st) = sess[i].stream(StreamId::from_wire(*id)) {
                        if let Ok(Some(b)) = st.read(usize::from(arg) * 64 + 1) {
                            for (o, &byte) in b.iter().enumerate() {
                                assert_eq!(byte, pat(*id, j, r[i] + o as u64));
                            }
                            r[i] += b.len() as u64;
                            assert!(r[i] <= w[j]);
                        }
                    }
                }
            }
            4 => {
                if let Some(k) = pick {
                    if let Some(mut st) = sess[i].stream(StreamId::from_wire(streams[k].0)) {
                        let _ = st.finish();
                    }
                }
            }
            5 => {
                if let Some(k) = pick {
                    if let Some(st) = sess[i].stream(StreamId::from_wire(streams[k].0)) {
                        let _ = st.reset();
                    }
                }
            }
            6 => {
                let _ = sess[i].poll_transmit(now, &mut wires[i], usize::from(arg) * 64 + 13);
            }
            7 => {
                let n = (usize::from(arg) * 31 + 1).min(wires[i].len());
                let chunk = wires[i].split_to(n);
                inputs[j].extend_from_slice(&chunk);
                assert_eq!(sess[j].handle_input(now, &mut inputs[j]), Ok(()));
            }
            8 => {
                let _ = sess[i].ping(now);
            }
            9 => {
                now += Duration::from_millis(u64::from(arg) * 4);
                sess[0].handle_timeout(now);
                sess[1].handle_timeout(now);
            }
            _ => {}
        }
        for (side, s) in sess.iter_mut().enumerate() {
            while let Some(ev) = s.poll_event() {
                match ev {
                    Event::InboundStream(id) if !streams.iter().any(|e| e.0 == id.get()) => {
                        streams.push((id.get(), [0; 2], [0; 2]));
                    }
                    Event::Error(e) if !matches!(e, crate::yamux::Error::PingTimeout) => {
                        panic!("side {side}: protocol error between two correct peers: {e}")
                    }
                    _ => {}
                }
            }
            assert!(s.total_receive_window() <= budget);
            assert!(s.recv_buffered() <= s.total_receive_window());
        }
        if streams.len() > 64 {
            streams.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::time::Instant;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn entry_points_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            super::yamux_session_client(&data, plait_testkit::start());
            super::yamux_session_server(&data, plait_testkit::start());
            super::yamux_pair_ops(&data, plait_testkit::start());
        }
    }

    #[test]
    fn corpus_replays() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus");
        for (name, f) in [
            (
                "yamux_session_client",
                super::yamux_session_client as fn(&[u8], Instant),
            ),
            ("yamux_session_server", super::yamux_session_server),
            ("yamux_pair_ops", super::yamux_pair_ops),
        ] {
            let Ok(dir) = std::fs::read_dir(format!("{root}/{name}")) else {
                continue;
            };
            for e in dir.flatten() {
                f(&std::fs::read(e.path()).unwrap(), plait_testkit::start());
            }
        }
    }
}
