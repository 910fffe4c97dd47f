//! Fuzz entry point for `perf`: a [`Server`] fed an arbitrary client stream.

use bytes::BytesMut;

use crate::perf::{Error, Server, ServerEvent, BLOCK_SIZE, HEADER_LEN, RUN_TIMEOUT};
use crate::time::Instant;

/// The most response bytes one fuzz run lets the server produce, so that a header asking
/// for 2^64 − 1 bytes keeps a run short; beyond it the run ends by its time limit.
pub const MAX_FUZZ_OUTPUT: u64 = 4 * BLOCK_SIZE as u64;

/// The server side of `/perf/1.0.0` on arbitrary input.
///
/// The first byte sets the chunking: its low 7 bits + 1 are the chunk size the rest is fed in;
/// its top bit makes the run time out before the client's end of stream. The rest is what the
/// client sent, followed by its end of stream. Checks: reading never fails, nothing is sent
/// before the end of stream, a stream shorter than the header is [`Error::ShortHeader`], and
/// otherwise exactly the count from the header comes back in zero blocks of at most
/// [`BLOCK_SIZE`] bytes (up to [`MAX_FUZZ_OUTPUT`], then the time limit ends the run).
pub fn perf_server(data: &[u8], now: Instant) {
    let (chunk, time_out, stream) = match data.split_first() {
        Some((first, rest)) => (usize::from(first & 0x7f) + 1, first & 0x80 != 0, rest),
        None => (1, false, data),
    };
    let mut server = Server::new(now);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    for piece in stream.chunks(chunk) {
        input.extend_from_slice(piece);
        assert_eq!(server.handle_input(now, &mut input), Ok(()));
        assert!(input.is_empty(), "the server consumes everything");
        assert_eq!(server.poll_transmit(now, &mut out), None, "sent before EOF");
        assert!(!server.poll_finish(now));
    }
    let header = stream.get(..HEADER_LEN);
    assert_eq!(
        server.requested(),
        header
            .and_then(|h| h.try_into().ok())
            .map(u64::from_be_bytes)
    );
    let body = stream.len().saturating_sub(HEADER_LEN) as u64;
    assert_eq!(server.received(), body);
    let end = now + RUN_TIMEOUT;
    if time_out {
        server.handle_timeout(end);
        assert_eq!(server.poll_event(), Some(ServerEvent::TimedOut));
        assert!(server.is_closed());
        assert_eq!(server.handle_eof(now), Err(Error::Closed));
        assert_eq!(server.poll_transmit(now, &mut out), None);
        return;
    }
    let Some(requested) = server.requested() else {
        assert_eq!(
            server.handle_eof(now),
            Err(Error::ShortHeader {
                received: stream.len()
            })
        );
        assert!(server.is_closed());
        return;
    };
    assert_eq!(server.handle_eof(now), Ok(()));
    let mut sent = 0u64;
    while sent < MAX_FUZZ_OUTPUT {
        out.clear();
        let Some(n) = server.poll_transmit(now, &mut out) else {
            break;
        };
        assert!(n > 0 && n <= BLOCK_SIZE && n == out.len());
        assert!(out.iter().all(|b| *b == 0));
        sent += n as u64;
    }
    if requested <= MAX_FUZZ_OUTPUT {
        assert_eq!(sent, requested);
        assert!(server.poll_finish(now));
        match server.poll_event() {
            Some(ServerEvent::Finished(r)) => assert_eq!((r.received, r.sent), (body, requested)),
            other => panic!("expected a report, got {other:?}"),
        }
    } else {
        assert!(!server.poll_finish(now));
        server.handle_timeout(end);
        assert_eq!(server.poll_event(), Some(ServerEvent::TimedOut));
    }
    assert!(server.is_closed());
    assert_eq!(server.poll_timeout(), None);
}
