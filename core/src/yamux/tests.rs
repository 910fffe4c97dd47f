use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::frame::{Flags, FrameType, Header};
use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn cfg() -> Config {
    Config::default().with_ping_interval(None)
}

fn session(mode: Mode) -> (Session, Instant) {
    let now = plait_testkit::start();
    (Session::new(mode, cfg(), now), now)
}

fn drain_tx(s: &mut Session, now: Instant) -> Vec<u8> {
    let mut out = BytesMut::new();
    while s.poll_transmit(now, &mut out, 64 * 1024).is_some() {}
    out.to_vec()
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn feed(s: &mut Session, now: Instant, bytes: &[u8]) -> Result<(), Error> {
    let mut input = BytesMut::from(bytes);
    s.handle_input(now, &mut input)
}

fn hdr(ty: FrameType, flags: Flags, id: u32, len: u32) -> Vec<u8> {
    Header::new(ty, flags, id, len).to_bytes().to_vec()
}

// ---------- byte-exact vectors from the digest ----------

#[test]
fn header_vectors() {
    use FrameType::*;
    let cases: &[(Header, &str)] = &[
        (
            Header::new(WindowUpdate, Flags::SYN, 1, 0),
            "00 01 00 01 00 00 00 01 00 00 00 00",
        ),
        (
            Header::new(Data, Flags::SYN, 1, 5),
            "00 00 00 01 00 00 00 01 00 00 00 05",
        ),
        (
            Header::new(Data, Flags::NONE, 1, 5),
            "00 00 00 00 00 00 00 01 00 00 00 05",
        ),
        (
            Header::new(WindowUpdate, Flags::ACK, 1, 0),
            "00 01 00 02 00 00 00 01 00 00 00 00",
        ),
        (
            Header::new(Data, Flags::SYN, 2, 0),
            "00 00 00 01 00 00 00 02 00 00 00 00",
        ),
        (
            Header::new(WindowUpdate, Flags::NONE, 1, 262_144),
            "00 01 00 00 00 00 00 01 00 04 00 00",
        ),
        (
            Header::new(WindowUpdate, Flags::SYN, 1, 0xfc_0000),
            "00 01 00 01 00 00 00 01 00 fc 00 00",
        ),
        (
            Header::new(WindowUpdate, Flags::FIN, 1, 0),
            "00 01 00 04 00 00 00 01 00 00 00 00",
        ),
        (
            Header::new(Data, Flags::FIN, 1, 0),
            "00 00 00 04 00 00 00 01 00 00 00 00",
        ),
        (
            Header::new(WindowUpdate, Flags::RST, 1, 0),
            "00 01 00 08 00 00 00 01 00 00 00 00",
        ),
        (
            Header::new(Data, Flags::RST, 1, 0),
            "00 00 00 08 00 00 00 01 00 00 00 00",
        ),
        (
            Header::new(Ping, Flags::SYN, 0, 1),
            "00 02 00 01 00 00 00 00 00 00 00 01",
        ),
        (
            Header::new(Ping, Flags::ACK, 0, 1),
            "00 02 00 02 00 00 00 00 00 00 00 01",
        ),
        (
            Header::new(GoAway, Flags::NONE, 0, 0),
            "00 03 00 00 00 00 00 00 00 00 00 00",
        ),
        (
            Header::new(GoAway, Flags::NONE, 0, 1),
            "00 03 00 00 00 00 00 00 00 00 00 01",
        ),
        (
            Header::new(GoAway, Flags::NONE, 0, 2),
            "00 03 00 00 00 00 00 00 00 00 00 02",
        ),
    ];
    for (h, bytes) in cases {
        let b = hex(bytes);
        assert_eq!(h.to_bytes().to_vec(), b, "{h:?}");
        assert_eq!(Header::decode(&b), Ok(Some(*h)));
    }
    assert_eq!(Header::decode(&hex("00 01 00")), Ok(None));
}

#[test]
fn session_emits_digest_bytes() {
    let (mut c, now) = session(Mode::Client);
    let id = c.open_stream(now).unwrap();
    assert_eq!(id.get(), 1);
    // go-style eager SYN when no data is queued
    assert_eq!(
        drain_tx(&mut c, now),
        hex("00 01 00 01 00 00 00 01 00 00 00 00")
    );
    c.stream(id).unwrap().write(b"hello").unwrap();
    assert_eq!(
        drain_tx(&mut c, now),
        hex("00 00 00 00 00 00 00 01 00 00 00 05 68656c6c6f")
    );
    c.stream(id).unwrap().finish().unwrap();
    assert_eq!(
        drain_tx(&mut c, now),
        hex("00 01 00 04 00 00 00 01 00 00 00 00")
    );
    c.ping(now).unwrap();
    assert_eq!(
        drain_tx(&mut c, now),
        hex("00 02 00 01 00 00 00 00 00 00 00 01")
    );
    c.close(now);
    assert_eq!(
        drain_tx(&mut c, now),
        hex("00 03 00 00 00 00 00 00 00 00 00 00")
    );
    assert!(c.is_closed());
    assert_eq!(events(&mut c).last(), Some(&Event::Closed));
}

#[test]
fn fin_goes_on_a_frame_of_its_own() {
    use FrameType::*;
    // Write then close before anything is sent (the echo reply): the data frame must not
    // carry FIN (js-libp2p would drop its data); a window update with FIN follows it.
    let (mut c, now) = session(Mode::Client);
    let id = c.open_stream(now).unwrap();
    let mut stream = c.stream(id).unwrap();
    stream.write(b"hello").unwrap();
    stream.finish().unwrap();
    let mut expect = hdr(Data, Flags::SYN, 1, 5);
    expect.extend_from_slice(b"hello");
    expect.extend(hdr(WindowUpdate, Flags::FIN, 1, 0));
    assert_eq!(drain_tx(&mut c, now), expect);
    // Data split over several frames: none of them carries FIN.
    let (mut s, _) = session(Mode::Server);
    let big = vec![7u8; 200_000];
    let sid = {
        let id = c.open_stream(now).unwrap();
        let mut stream = c.stream(id).unwrap();
        assert_eq!(stream.write(&big).unwrap(), big.len());
        stream.finish().unwrap();
        id
    };
    let wire = drain_tx(&mut c, now);
    let mut rest = &wire[..];
    let mut frames = Vec::new();
    while let Ok(Some(h)) = Header::decode(rest) {
        let body = if h.ty == Data { h.length as usize } else { 0 };
        frames.push(h);
        rest = &rest[HEADER_LEN + body..];
    }
    assert!(rest.is_empty());
    let (last, data) = frames.split_last().unwrap();
    assert!(data.len() > 1, "split into several data frames: {frames:?}");
    assert!(data
        .iter()
        .all(|h| h.ty == Data && !h.flags.contains(Flags::FIN)));
    assert_eq!(*last, Header::new(WindowUpdate, Flags::FIN, sid.get(), 0));
    // And a peer that does put FIN on data is still understood.
    let mut wire = hdr(Data, Flags::SYN.with(Flags::FIN), 1, 2);
    wire.extend_from_slice(b"hi");
    feed(&mut s, now, &wire).unwrap();
    let sid = StreamId(1);
    assert_eq!(
        &s.stream(sid).unwrap().read(10).unwrap().unwrap()[..],
        b"hi"
    );
    assert_eq!(s.stream(sid).unwrap().read(10), Ok(None));
}

#[test]
fn ping_echo_scenario() {
    // Digest scenario: lazy SYN on data, ACK on the echo, FIN both ways.
    let (mut c, now) = session(Mode::Client);
    let (mut s, _) = session(Mode::Server);
    let payload =
        hex("132f6d756c746973747265616d2f312e302e300a 112f697066732f70696e672f312e302e300a");
    let id = c.open_stream(now).unwrap();
    assert_eq!(c.stream(id).unwrap().write(&payload).unwrap(), 38);
    let wire = drain_tx(&mut c, now);
    let mut expect = hex("00 00 00 01 00 00 00 01 00 00 00 26");
    expect.extend_from_slice(&payload);
    assert_eq!(wire, expect);
    feed(&mut s, now, &wire).unwrap();
    let sid = StreamId(1);
    assert_eq!(
        events(&mut s),
        vec![Event::InboundStream(sid), Event::Readable(sid)]
    );
    let got = s.stream(sid).unwrap().read(usize::MAX).unwrap().unwrap();
    assert_eq!(&got[..], &payload[..]);
    s.stream(sid).unwrap().write(&got).unwrap();
    let wire = drain_tx(&mut s, now);
    let mut expect = hex("00 00 00 02 00 00 00 01 00 00 00 26");
    expect.extend_from_slice(&payload);
    assert_eq!(wire, expect);
    feed(&mut c, now, &wire).unwrap();
    assert_eq!(c.ack_backlog, 0);
    c.stream(id).unwrap().finish().unwrap();
    let wire = drain_tx(&mut c, now);
    assert_eq!(wire, hex("00 01 00 04 00 00 00 01 00 00 00 00"));
    feed(&mut s, now, &wire).unwrap();
    assert_eq!(s.stream(sid).unwrap().read(10), Ok(None));
    s.stream(sid).unwrap().finish().unwrap();
    let wire = drain_tx(&mut s, now);
    assert_eq!(wire, hex("00 01 00 04 00 00 00 01 00 00 00 00"));
    assert_eq!(s.num_streams(), 0, "both FINs, end read: stream gone");
    feed(&mut c, now, &wire).unwrap();
    assert_eq!(
        c.stream(id).unwrap().read(100).unwrap().unwrap(),
        Bytes::from(payload)
    );
    assert_eq!(c.stream(id).unwrap().read(100), Ok(None));
    assert_eq!(c.num_streams(), 0);
}

#[test]
fn accepts_go_style_open_and_acks_on_accept() {
    let (mut s, now) = session(Mode::Server);
    feed(&mut s, now, &hex("00 01 00 01 00 00 00 01 00 00 00 00")).unwrap();
    assert_eq!(events(&mut s), vec![Event::InboundStream(StreamId(1))]);
    assert!(drain_tx(&mut s, now).is_empty(), "no ACK before accept");
    s.stream(StreamId(1)).unwrap().accept().unwrap();
    assert_eq!(
        drain_tx(&mut s, now),
        hex("00 01 00 02 00 00 00 01 00 00 00 00")
    );
    // go-style data without flags, then ping answered first
    let mut wire = hex("00 00 00 00 00 00 00 01 00 00 00 05 68656c6c6f");
    wire.extend(hex("00 02 00 01 00 00 00 00 00 00 00 07"));
    feed(&mut s, now, &wire).unwrap();
    assert_eq!(
        drain_tx(&mut s, now),
        hex("00 02 00 02 00 00 00 00 00 00 00 07")
    );
    assert_eq!(
        &s.stream(StreamId(1)).unwrap().read(99).unwrap().unwrap()[..],
        b"hello"
    );
}

// ---------- violations ----------

fn expect_fatal(mode: Mode, wire: &[u8], err: Error, code: u32) {
    let (mut s, now) = session(mode);
    if mode == Mode::Server {
        // one open inbound stream 1 for the stream-level cases
        feed(&mut s, now, &hex("00 01 00 01 00 00 00 01 00 00 00 00")).unwrap();
    }
    assert_eq!(feed(&mut s, now, wire), Err(err.clone()));
    let ev = events(&mut s);
    assert!(ev.contains(&Event::Error(err)), "{ev:?}");
    let out = drain_tx(&mut s, now);
    assert_eq!(out, hdr(FrameType::GoAway, Flags::NONE, 0, code));
    assert!(s.is_closed());
    assert_eq!(events(&mut s), vec![Event::Closed]);
    // further input is ignored
    assert_eq!(feed(&mut s, now, wire), Ok(()));
    assert!(drain_tx(&mut s, now).is_empty());
}

#[test]
fn invalid_version_and_type() {
    expect_fatal(
        Mode::Client,
        &hex("01 00 00 00 00 00 00 01 00 00 00 00"),
        Error::InvalidVersion(1),
        1,
    );
    expect_fatal(
        Mode::Client,
        &hex("00 04 00 00 00 00 00 01 00 00 00 00"),
        Error::InvalidType(4),
        1,
    );
}

#[test]
fn wrong_parity_and_duplicate() {
    // server receiving a SYN with an even (server) id
    expect_fatal(
        Mode::Server,
        &hex("00 00 00 01 00 00 00 02 00 00 00 00"),
        Error::WrongParity(2),
        1,
    );
    expect_fatal(
        Mode::Server,
        &hex("00 01 00 01 00 00 00 01 00 00 00 00"),
        Error::DuplicateStream(1),
        1,
    );
    expect_fatal(
        Mode::Server,
        &hdr(FrameType::Data, Flags::NONE, 0, 0),
        Error::StreamZero,
        1,
    );
}

#[test]
fn data_beyond_window() {
    let (mut s, now) = session(Mode::Server);
    // first Data SYN body above 256 KiB is rejected from the header alone
    let err = Error::WindowExceeded {
        id: 1,
        len: INITIAL_WINDOW + 1,
        window: INITIAL_WINDOW,
    };
    assert_eq!(
        feed(
            &mut s,
            now,
            &hdr(FrameType::Data, Flags::SYN, 1, INITIAL_WINDOW + 1)
        ),
        Err(err)
    );
    // exactly the window is fine, one more byte is not
    let (mut s, now) = session(Mode::Server);
    let mut wire = hdr(FrameType::Data, Flags::SYN, 1, INITIAL_WINDOW);
    wire.extend(vec![0u8; INITIAL_WINDOW as usize]);
    feed(&mut s, now, &wire).unwrap();
    let wire = hdr(FrameType::Data, Flags::NONE, 1, 1);
    let err = Error::WindowExceeded {
        id: 1,
        len: 1,
        window: 0,
    };
    assert_eq!(feed(&mut s, now, &wire), Err(err));
    assert_eq!(
        drain_tx(&mut s, now),
        hdr(FrameType::GoAway, Flags::NONE, 0, 1)
    );
    assert!(s.recv_buffered() == 0 && s.num_streams() == 0);
}

#[test]
fn window_update_overflow() {
    expect_fatal(
        Mode::Server,
        &hdr(FrameType::WindowUpdate, Flags::NONE, 1, u32::MAX),
        Error::WindowOverflow(1),
        1,
    );
}

#[test]
fn oversized_unknown_frame_and_unknown_stream_ignored() {
    expect_fatal(
        Mode::Client,
        &hdr(FrameType::Data, Flags::NONE, 9, u32::MAX),
        Error::FrameTooLarge {
            len: u32::MAX,
            max: MAX_UNKNOWN_STREAM_FRAME,
        },
        1,
    );
    let (mut c, now) = session(Mode::Client);
    let mut wire = hdr(FrameType::Data, Flags::NONE, 9, 3);
    wire.extend(b"abc");
    wire.extend(hdr(FrameType::WindowUpdate, Flags::NONE, 11, 5));
    wire.extend(hdr(FrameType::Data, Flags::RST, 13, 0));
    // body of an ignored frame arriving in pieces is skipped too
    feed(&mut c, now, &wire[..14]).unwrap();
    feed(&mut c, now, &wire[14..]).unwrap();
    assert!(events(&mut c).is_empty());
    assert!(
        drain_tx(&mut c, now).is_empty(),
        "no RST storm for unknown streams"
    );
}

#[test]
fn too_many_streams_rst() {
    let now = plait_testkit::start();
    let mut s = Session::new(Mode::Server, cfg().with_max_streams(2), now);
    for id in [1u32, 3, 5] {
        feed(
            &mut s,
            now,
            &hdr(FrameType::WindowUpdate, Flags::SYN, id, 0),
        )
        .unwrap();
    }
    let ev = events(&mut s);
    assert_eq!(
        ev[2],
        Event::InboundRejected {
            id: StreamId(5),
            reason: Error::TooManyStreams { max: 2 }
        }
    );
    assert_eq!(
        drain_tx(&mut s, now),
        hdr(FrameType::WindowUpdate, Flags::RST, 5, 0)
    );
    // a Data SYN with body is refused and its body skipped
    let mut wire = hdr(FrameType::Data, Flags::SYN, 7, 4);
    wire.extend(b"xxxx");
    wire.extend(hdr(FrameType::Ping, Flags::SYN, 0, 3));
    feed(&mut s, now, &wire).unwrap();
    let mut expect = hdr(FrameType::WindowUpdate, Flags::RST, 7, 0);
    expect.extend(hdr(FrameType::Ping, Flags::ACK, 0, 3));
    assert_eq!(drain_tx(&mut s, now), expect);
}

#[test]
fn accept_backlog_limit() {
    let now = plait_testkit::start();
    let mut s = Session::new(Mode::Server, cfg().with_max_streams(1000), now);
    let mut wire = Vec::new();
    for i in 0..=MAX_ACCEPT_BACKLOG as u32 {
        wire.extend(hdr(FrameType::WindowUpdate, Flags::SYN, 2 * i + 1, 0));
    }
    feed(&mut s, now, &wire).unwrap();
    let last = 2 * MAX_ACCEPT_BACKLOG as u32 + 1;
    assert!(events(&mut s).contains(&Event::InboundRejected {
        id: StreamId(last),
        reason: Error::AcceptBacklogFull
    }));
    assert_eq!(
        drain_tx(&mut s, now),
        hdr(FrameType::WindowUpdate, Flags::RST, last, 0)
    );
    // accepting one frees a slot
    s.stream(StreamId(1)).unwrap().accept().unwrap();
    feed(
        &mut s,
        now,
        &hdr(FrameType::WindowUpdate, Flags::SYN, last + 2, 0),
    )
    .unwrap();
    assert_eq!(
        events(&mut s),
        vec![Event::InboundStream(StreamId(last + 2))]
    );
}

#[test]
fn ack_backlog_and_budget_limit_open() {
    let (mut c, now) = session(Mode::Client);
    for _ in 0..MAX_ACK_BACKLOG {
        c.open_stream(now).unwrap();
    }
    assert_eq!(c.open_stream(now), Err(Error::AckBacklogFull));
    feed(&mut c, now, &hdr(FrameType::WindowUpdate, Flags::ACK, 1, 0)).unwrap();
    assert!(c.open_stream(now).is_ok());
    let mut c = Session::new(
        Mode::Client,
        cfg().with_max_session_receive_window(u64::from(INITIAL_WINDOW) * 2),
        now,
    );
    c.open_stream(now).unwrap();
    c.open_stream(now).unwrap();
    assert_eq!(c.open_stream(now), Err(Error::BudgetExhausted));
}

#[test]
fn pings_pongs_keepalive_timeout() {
    let now = plait_testkit::start();
    let config = Config::default()
        .with_ping_interval(Some(Duration::from_secs(30)))
        .with_ping_timeout(Duration::from_secs(10));
    let mut c = Session::new(Mode::Client, config, now);
    // RTT ping at start
    assert_eq!(
        drain_tx(&mut c, now),
        hdr(FrameType::Ping, Flags::SYN, 0, 1)
    );
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(10)));
    // unexpected pong ignored; right pong gives an RTT
    feed(&mut c, now, &hdr(FrameType::Ping, Flags::ACK, 0, 99)).unwrap();
    let t = now + Duration::from_millis(40);
    feed(&mut c, t, &hdr(FrameType::Ping, Flags::ACK, 0, 1)).unwrap();
    assert_eq!(c.rtt(), Some(Duration::from_millis(40)));
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(30)));
    c.handle_timeout(t); // spurious: nothing
    assert!(drain_tx(&mut c, t).is_empty());
    let t = now + Duration::from_secs(30);
    c.handle_timeout(t);
    assert_eq!(drain_tx(&mut c, t), hdr(FrameType::Ping, Flags::SYN, 0, 2));
    c.handle_timeout(t + Duration::from_secs(10));
    assert!(c.is_closed());
    assert!(events(&mut c).contains(&Event::Error(Error::PingTimeout)));
    assert_eq!(c.poll_timeout(), None);
    // ping backlog: at most 32 pongs queued
    let (mut s, now) = session(Mode::Server);
    let wire: Vec<u8> = (0..40)
        .flat_map(|i| hdr(FrameType::Ping, Flags::SYN, 0, i))
        .collect();
    feed(&mut s, now, &wire).unwrap();
    assert_eq!(drain_tx(&mut s, now).len(), MAX_PONG_BACKLOG * 12);
}

#[test]
fn go_away_received_resets_streams() {
    let (mut c, now) = session(Mode::Client);
    let id = c.open_stream(now).unwrap();
    drain_tx(&mut c, now);
    feed(&mut c, now, &hdr(FrameType::GoAway, Flags::NONE, 0, 2)).unwrap();
    assert_eq!(
        events(&mut c),
        vec![
            Event::GoAwayReceived(2),
            Event::StreamReset(id),
            Event::Closed
        ]
    );
    assert!(c.is_closed());
    assert_eq!(c.open_stream(now), Err(Error::Closed));
}

#[test]
fn abort_sends_go_away_first() {
    let (mut c, now) = session(Mode::Client);
    let id = c.open_stream(now).unwrap();
    c.stream(id).unwrap().write(b"data").unwrap();
    c.abort(now, 2);
    assert_eq!(
        drain_tx(&mut c, now),
        hdr(FrameType::GoAway, Flags::NONE, 0, 2)
    );
    assert!(c.is_closed());
}

#[test]
fn graceful_close_flushes_then_go_away() {
    let (mut c, now) = session(Mode::Client);
    let id = c.open_stream(now).unwrap();
    c.stream(id).unwrap().write(b"abc").unwrap();
    c.close(now);
    assert_eq!(c.open_stream(now), Err(Error::GoingAway));
    let mut expect = hdr(FrameType::Data, Flags::SYN, 1, 3);
    expect.extend(b"abc");
    expect.extend(hdr(FrameType::GoAway, Flags::NONE, 0, 0));
    assert_eq!(drain_tx(&mut c, now), expect);
    // inbound SYN while closing is refused
    let (mut s, now) = session(Mode::Server);
    s.close(now);
    feed(&mut s, now, &hdr(FrameType::WindowUpdate, Flags::SYN, 1, 0)).unwrap();
    let mut expect = hdr(FrameType::WindowUpdate, Flags::RST, 1, 0);
    expect.extend(hdr(FrameType::GoAway, Flags::NONE, 0, 0));
    assert_eq!(drain_tx(&mut s, now), expect);
}

#[test]
fn reset_both_ways() {
    let (mut c, now) = session(Mode::Client);
    let (mut s, _) = session(Mode::Server);
    let id = c.open_stream(now).unwrap();
    c.stream(id).unwrap().write(b"x").unwrap();
    feed(&mut s, now, &drain_tx(&mut c, now)).unwrap();
    events(&mut s);
    s.stream(id).unwrap().reset().unwrap();
    assert!(s.stream(id).is_none());
    let wire = drain_tx(&mut s, now);
    assert_eq!(wire, hdr(FrameType::WindowUpdate, Flags::RST, 1, 0));
    feed(&mut c, now, &wire).unwrap();
    assert_eq!(events(&mut c), vec![Event::StreamReset(id)]);
    assert_eq!(c.num_streams(), 0);
    assert_eq!(c.ack_backlog, 0);
    // resetting a never-announced stream sends nothing
    let id = c.open_stream(now).unwrap();
    c.stream(id).unwrap().write(b"y").unwrap();
    c.stream(id).unwrap().reset().unwrap();
    assert!(drain_tx(&mut c, now).is_empty());
}

#[test]
fn backpressure_and_window_updates() {
    let (mut c, now) = session(Mode::Client);
    let (mut s, _) = session(Mode::Server);
    let id = c.open_stream(now).unwrap();
    let data = vec![7u8; 400_000];
    let n = c.stream(id).unwrap().write(&data).unwrap();
    assert_eq!(
        n, INITIAL_WINDOW as usize,
        "write bounded by the send window"
    );
    assert_eq!(c.stream(id).unwrap().write(&data).unwrap(), 0);
    let wire = drain_tx(&mut c, now);
    // frames of at most 64 KiB - 12 payload
    assert_eq!(wire.len(), INITIAL_WINDOW as usize + 5 * 12);
    feed(&mut s, now, &wire).unwrap();
    assert!(
        drain_tx(&mut s, now).is_empty(),
        "no update before the app reads"
    );
    let mut got = 0;
    while let Ok(Some(b)) = s.stream(id).unwrap().read(100_000) {
        got += b.len();
    }
    assert_eq!(got, INITIAL_WINDOW as usize);
    let wire = drain_tx(&mut s, now);
    // ACK + credit for all consumed bytes. No RTT is known yet, but the sender used up its
    // whole window while the reader kept up (starved): the window doubles to 512 KiB.
    assert_eq!(
        wire,
        hdr(FrameType::WindowUpdate, Flags::ACK, 1, 2 * INITIAL_WINDOW)
    );
    feed(&mut c, now, &wire).unwrap();
    assert_eq!(events(&mut c), vec![Event::Writable(id)]);
    assert_eq!(
        c.stream(id).unwrap().send_capacity(),
        2 * INITIAL_WINDOW as usize
    );
}

#[test]
fn window_grows_for_a_starved_sender_not_for_a_slow_reader() {
    let (mut c, now) = session(Mode::Client);
    let (mut s, _) = session(Mode::Server);
    let id = c.open_stream(now).unwrap();
    let data = vec![7u8; INITIAL_WINDOW as usize];
    // Slow reader: the window is full and the reader takes half of it: the credit it
    // returns is what it read, the window stays 256 KiB.
    c.stream(id).unwrap().write(&data).unwrap();
    feed(&mut s, now, &drain_tx(&mut c, now)).unwrap();
    let mut got = 0;
    while got < INITIAL_WINDOW as usize / 2 {
        got += s
            .stream(id)
            .unwrap()
            .read(16 * 1024)
            .unwrap()
            .unwrap()
            .len();
    }
    let read = got as u32;
    assert_eq!(
        drain_tx(&mut s, now),
        hdr(FrameType::WindowUpdate, Flags::ACK, 1, read)
    );
    assert_eq!(s.streams.get(&id.get()).unwrap().recv_max, INITIAL_WINDOW);
    // The reader catches up while the sender has nearly no credit left: starved, it doubles.
    feed(
        &mut c,
        now,
        &hdr(FrameType::WindowUpdate, Flags::ACK, 1, read),
    )
    .unwrap();
    c.stream(id).unwrap().write(&data[..read as usize]).unwrap();
    feed(&mut s, now, &drain_tx(&mut c, now)).unwrap();
    while let Ok(Some(b)) = s.stream(id).unwrap().read(usize::MAX) {
        if b.is_empty() {
            break;
        }
    }
    assert_eq!(
        drain_tx(&mut s, now),
        hdr(
            FrameType::WindowUpdate,
            Flags::NONE,
            1,
            INITIAL_WINDOW + INITIAL_WINDOW
        )
    );
    assert_eq!(
        s.streams.get(&id.get()).unwrap().recv_max,
        2 * INITIAL_WINDOW
    );
}

#[test]
fn window_auto_tuning_grows_to_cap() {
    let mut p = Pair::new(
        Config::default()
            .with_ping_interval(Some(Duration::from_secs(30)))
            .with_max_stream_window(1024 * 1024),
    );
    // pings cross in 5 ms each way: RTT 10 ms on both sides
    let mut c_out = BytesMut::new();
    p.c.poll_transmit(p.now, &mut c_out, 1000);
    p.s.poll_transmit(p.now, &mut p.c_in, 1000);
    p.step(Duration::from_millis(5));
    p.s.handle_input(p.now, &mut c_out).unwrap();
    p.c.handle_input(p.now, &mut p.c_in).unwrap();
    p.step(Duration::from_millis(5));
    p.pump(usize::MAX);
    assert_eq!(p.s.rtt(), Some(Duration::from_millis(10)));
    let id = p.c.open_stream(p.now).unwrap();
    // reader keeps up: updates come much faster than 2 RTT -> doubling
    for _ in 0..40 {
        while p.c.stream(id).unwrap().write(&[1u8; 65536]).unwrap_or(0) > 0 {}
        p.pump(usize::MAX);
        while let Some(Ok(Some(_))) = p.s.stream(id).map(|mut s| s.read(usize::MAX)) {}
        p.pump(usize::MAX);
    }
    let st = p.s.streams.get(&id.get()).unwrap();
    assert_eq!(st.recv_max, 1024 * 1024);
    assert!(p.s.total_receive_window() <= p.s.config().max_session_receive_window);
}

// ---------- two sessions wired together ----------

struct Pair {
    c: Session,
    s: Session,
    c_in: BytesMut,
    s_in: BytesMut,
    now: Instant,
}

impl Pair {
    fn new(config: Config) -> Self {
        let now = plait_testkit::start();
        Self {
            c: Session::new(Mode::Client, config.clone(), now),
            s: Session::new(Mode::Server, config, now),
            c_in: BytesMut::new(),
            s_in: BytesMut::new(),
            now,
        }
    }

    fn step(&mut self, d: Duration) {
        self.now += d;
    }

    /// Moves all output across, feeding at most `chunk` bytes at a time.
    fn pump(&mut self, chunk: usize) {
        for _ in 0..1000 {
            let mut moved = false;
            let mut out = BytesMut::new();
            while self
                .c
                .poll_transmit(self.now, &mut out, 64 * 1024)
                .is_some()
            {}
            while self
                .s
                .poll_transmit(self.now, &mut self.c_in, 64 * 1024)
                .is_some()
            {
                moved = true;
            }
            if !out.is_empty() {
                moved = true;
            }
            let mut rest = &out[..];
            while !rest.is_empty() {
                let n = chunk.min(rest.len());
                self.s_in.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                self.s.handle_input(self.now, &mut self.s_in).unwrap();
            }
            self.c.handle_input(self.now, &mut self.c_in).unwrap();
            if !moved {
                return;
            }
        }
        panic!("pair did not settle");
    }
}

// ---------- property tests ----------

#[derive(Debug, Clone)]
enum Op {
    Open(bool),
    Write(bool, usize, usize),
    Read(bool, usize, usize),
    Finish(bool, usize),
    Reset(bool, usize),
    Ping(bool),
    Transmit(bool, usize),
    Deliver(bool, usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => any::<bool>().prop_map(Op::Open),
        4 => (any::<bool>(), any::<usize>(), 0usize..300_000).prop_map(|(a, b, c)| Op::Write(a, b, c)),
        4 => (any::<bool>(), any::<usize>(), 1usize..200_000).prop_map(|(a, b, c)| Op::Read(a, b, c)),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(a, b)| Op::Finish(a, b)),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(a, b)| Op::Reset(a, b)),
        1 => any::<bool>().prop_map(Op::Ping),
        3 => (any::<bool>(), 13usize..200_000).prop_map(|(a, b)| Op::Transmit(a, b)),
        4 => (any::<bool>(), 1usize..100_000).prop_map(|(a, b)| Op::Deliver(a, b)),
        1 => (0u64..2000).prop_map(Op::Advance),
    ]
}

/// Byte at `offset` of the stream `id` written by side `side`.
fn pattern(id: u32, side: usize, offset: u64) -> u8 {
    (offset.wrapping_mul(31) ^ u64::from(id).wrapping_mul(7) ^ side as u64) as u8
}

#[derive(Default)]
struct Side {
    /// stream id -> (bytes written, bytes read, fin read, broken by reset)
    streams: HashMap<u32, (u64, u64, bool)>,
    ids: Vec<u32>,
    wire: Vec<u8>,
    input: BytesMut,
}

struct Model {
    sess: [Session; 2],
    side: [Side; 2],
    now: Instant,
    reset: std::collections::HashSet<u32>,
}

impl Model {
    fn new(config: Config) -> Self {
        let now = plait_testkit::start();
        Self {
            sess: [
                Session::new(Mode::Client, config.clone(), now),
                Session::new(Mode::Server, config, now),
            ],
            side: [Side::default(), Side::default()],
            now,
            reset: Default::default(),
        }
    }

    fn pick(&self, i: usize, k: usize) -> Option<u32> {
        let ids = &self.side[i].ids;
        (!ids.is_empty()).then(|| ids[k % ids.len()])
    }

    fn events(&mut self, i: usize) {
        while let Some(e) = self.sess[i].poll_event() {
            match e {
                Event::InboundStream(id) => {
                    self.side[i].ids.push(id.get());
                }
                Event::StreamReset(id) => {
                    self.reset.insert(id.get());
                }
                Event::Error(e) => panic!("side {i}: {e}"),
                _ => {}
            }
        }
    }

    fn read(&mut self, i: usize, id: u32, max: usize) {
        let Some(mut st) = self.sess[i].stream(StreamId(id)) else {
            return;
        };
        match st.read(max) {
            Ok(Some(b)) => {
                assert!(!b.is_empty() && b.len() <= max);
                let e = self.side[i].streams.entry(id).or_default();
                for (k, &byte) in b.iter().enumerate() {
                    assert_eq!(
                        byte,
                        pattern(id, 1 - i, e.1 + k as u64),
                        "stream {id} order"
                    );
                }
                e.1 += b.len() as u64;
            }
            Ok(None) => self.side[i].streams.entry(id).or_default().2 = true,
            Err(Error::Blocked) => {}
            Err(e) => panic!("{e}"),
        }
    }

    fn write(&mut self, i: usize, id: u32, len: usize, zero_copy: bool) {
        let max_buf = self.sess[i].config().max_stream_send_buffer as usize;
        let off = self.side[i].streams.get(&id).map_or(0, |e| e.0);
        let data: Vec<u8> = (0..len as u64).map(|k| pattern(id, i, off + k)).collect();
        let Some(mut st) = self.sess[i].stream(StreamId(id)) else {
            return;
        };
        let r = if zero_copy {
            st.write_bytes(Bytes::from(data))
        } else {
            st.write(&data)
        };
        if let Ok(n) = r {
            self.side[i].streams.entry(id).or_default().0 += n as u64;
            let st = self.sess[i].streams.get(&id).unwrap();
            assert!(st.send_buffered as usize <= max_buf);
            assert!(
                st.send_buffered <= st.send_window,
                "never queue beyond the window"
            );
        }
    }

    fn transmit(&mut self, i: usize, max: usize) {
        let mut out = BytesMut::new();
        if let Some(n) = self.sess[i].poll_transmit(self.now, &mut out, max) {
            assert!(n <= max && n == out.len());
        }
        self.side[i].wire.extend_from_slice(&out);
    }

    fn deliver(&mut self, i: usize, max: usize) {
        let n = max.min(self.side[i].wire.len());
        let chunk: Vec<u8> = self.side[i].wire.drain(..n).collect();
        let j = 1 - i;
        self.side[j].input.extend_from_slice(&chunk);
        let r = self.sess[j].handle_input(self.now, &mut self.side[j].input);
        assert_eq!(r, Ok(()));
        self.events(j);
    }

    fn check(&self) {
        for s in &self.sess {
            let budget = s.config().max_session_receive_window;
            assert!(s.total_receive_window() <= budget);
            assert!(s.recv_buffered() <= s.total_receive_window());
            for st in s.streams.values() {
                assert!(
                    u64::from(st.recv_window) + u64::from(st.recv_buffered)
                        <= u64::from(st.recv_max)
                );
            }
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Open(a) => {
                let i = usize::from(a);
                if let Ok(id) = self.sess[i].open_stream(self.now) {
                    self.side[i].ids.push(id.get());
                }
            }
            Op::Write(a, k, len) => {
                let i = usize::from(a);
                if let Some(id) = self.pick(i, k) {
                    self.write(i, id, len, k % 2 == 0);
                }
            }
            Op::Read(a, k, max) => {
                let i = usize::from(a);
                if let Some(id) = self.pick(i, k) {
                    self.read(i, id, max);
                }
            }
            Op::Finish(a, k) => {
                let i = usize::from(a);
                if let Some(id) = self.pick(i, k) {
                    if let Some(mut st) = self.sess[i].stream(StreamId(id)) {
                        let _ = st.finish();
                    }
                }
            }
            Op::Reset(a, k) => {
                let i = usize::from(a);
                if let Some(id) = self.pick(i, k) {
                    if let Some(st) = self.sess[i].stream(StreamId(id)) {
                        st.reset().unwrap();
                        self.reset.insert(id);
                    }
                }
            }
            Op::Ping(a) => {
                let _ = self.sess[usize::from(a)].ping(self.now);
            }
            Op::Transmit(a, max) => self.transmit(usize::from(a), max),
            Op::Deliver(a, max) => self.deliver(usize::from(a), max),
            Op::Advance(ms) => {
                self.now += Duration::from_millis(ms);
                for i in 0..2 {
                    self.sess[i].handle_timeout(self.now);
                    self.events(i);
                }
            }
        }
        self.events(0);
        self.events(1);
        self.check();
    }

    /// Finishes every stream and moves everything until quiet; every non-reset stream must
    /// have arrived completely.
    fn settle(&mut self) {
        for i in 0..2 {
            for id in self.side[i].ids.clone() {
                if let Some(mut st) = self.sess[i].stream(StreamId(id)) {
                    let _ = st.finish();
                }
            }
        }
        for _ in 0..100_000 {
            let mut busy = false;
            for i in 0..2 {
                for id in self.side[i].ids.clone() {
                    if let Some(mut st) = self.sess[i].stream(StreamId(id)) {
                        let _ = st.finish();
                    }
                    while self.sess[i]
                        .stream(StreamId(id))
                        .is_some_and(|mut s| s.read_buffered() > 0)
                    {
                        self.read(i, id, usize::MAX);
                    }
                    self.read(i, id, usize::MAX);
                }
                self.transmit(i, 64 * 1024);
                if !self.side[i].wire.is_empty() {
                    busy = true;
                    self.deliver(i, usize::MAX);
                }
                self.check();
            }
            if !busy {
                break;
            }
        }
        for i in 0..2 {
            for (&id, &(written, _, _)) in &self.side[i].streams {
                if self.reset.contains(&id) {
                    continue;
                }
                let (_, read, fin) = self.side[1 - i]
                    .streams
                    .get(&id)
                    .copied()
                    .unwrap_or_default();
                assert_eq!(
                    read, written,
                    "stream {id} from side {i}: every byte exactly once"
                );
                assert!(fin, "stream {id} from side {i}: FIN read");
            }
            assert_eq!(self.sess[i].num_streams(), 0, "all streams closed");
            assert_eq!(self.sess[i].recv_buffered(), 0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn model_pair(ops in proptest::collection::vec(op(), 1..150), small in any::<bool>()) {
        let mut config = Config::default()
            .with_ping_interval(Some(Duration::from_secs(1)))
            .with_ping_timeout(Duration::from_secs(3600))
            .with_max_stream_window(4 * 1024 * 1024);
        if small {
            config = config
                .with_max_streams(4)
                .with_max_session_receive_window(u64::from(INITIAL_WINDOW) * 3)
                .with_max_stream_send_buffer(10_000)
                .with_max_frame_payload(1000);
        }
        let mut m = Model::new(config);
        for op in ops {
            m.apply(op);
        }
        m.settle();
    }

    #[test]
    fn chunking_invariance(cuts in proptest::collection::vec(1usize..5000, 1..400)) {
        // A scripted client output: opens, data, FIN, ping, window update, reset.
        let (mut c, now) = session(Mode::Client);
        let mut wire = Vec::new();
        for k in 0..5u8 {
            let id = c.open_stream(now).unwrap();
            c.stream(id).unwrap().write(&vec![k; 3000 * usize::from(k)]).unwrap();
            if k % 2 == 0 {
                c.stream(id).unwrap().finish().unwrap();
            }
            wire.extend(drain_tx(&mut c, now));
        }
        c.stream(StreamId(3)).unwrap().reset().unwrap();
        c.ping(now).unwrap();
        wire.extend(drain_tx(&mut c, now));
        wire.extend(hdr(FrameType::Data, Flags::NONE, 101, 700));
        wire.extend(vec![9u8; 700]);
        let run = |chunks: &[usize]| {
            let (mut s, now) = session(Mode::Server);
            let mut input = BytesMut::new();
            let mut rest = &wire[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = chunks.get(i).copied().unwrap_or(usize::MAX).min(rest.len());
                i += 1;
                input.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                s.handle_input(now, &mut input).unwrap();
            }
            let ev = events(&mut s);
            let mut data = Vec::new();
            for e in &ev {
                if let Event::InboundStream(id) = e {
                    while let Ok(Some(b)) = s.stream(*id).map_or(Ok(None), |mut st| st.read(usize::MAX)) {
                        data.push((id.get(), b));
                    }
                }
            }
            (ev, data, drain_tx(&mut s, now), input.len())
        };
        prop_assert_eq!(run(&[usize::MAX]), run(&cuts));
        prop_assert_eq!(run(&[usize::MAX]), run(&[1; 100_000]));
    }
}

#[test]
fn idle_sizes_are_small() {
    let st = size_of::<Stream>();
    let sess = size_of::<Session>();
    assert!(st <= 160, "Stream is {st} bytes");
    assert!(sess <= 640, "Session is {sess} bytes");
}

#[test]
fn small_bodies_do_not_pin_the_receive_buffer() {
    let (mut c, now) = session(Mode::Client);
    let (mut s, _) = session(Mode::Server);
    let small = c.open_stream(now).unwrap();
    c.stream(small).unwrap().write(&[1u8; 32]).unwrap();
    let big = c.open_stream(now).unwrap();
    c.stream(big).unwrap().write(&[2u8; 32 * 1024]).unwrap();
    let wire = drain_tx(&mut c, now);
    let split_at = wire.len() - (12 + 32 * 1024);
    // The small body arrives alone in a large receive buffer and stays unread: the buffer must
    // not stay shared with it.
    let mut input = BytesMut::with_capacity(256 * 1024);
    input.extend_from_slice(&wire[..split_at]);
    s.handle_input(now, &mut input).unwrap();
    assert!(input.is_empty());
    assert!(
        input.try_reclaim(256 * 1024),
        "a 32-byte body pins the buffer"
    );
    // A large body is kept as a view (no copy).
    input.extend_from_slice(&wire[split_at..]);
    s.handle_input(now, &mut input).unwrap();
    assert!(!input.try_reclaim(256 * 1024), "the 32 KiB body was copied");
    assert_eq!(
        &s.stream(small).unwrap().read(64).unwrap().unwrap()[..],
        &[1u8; 32]
    );
}
