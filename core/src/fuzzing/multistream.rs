//! Fuzz entry points for multistream-select and the length-prefixed decoder.

use crate::time::Instant;
use std::sync::Arc;

use bytes::BytesMut;

use crate::multistream::{
    Dialer, DialerMode, DialerStatus, Listener, ListenerConfig, ListenerStatus, Protocol,
    ProtocolSet,
};
use crate::varint::LengthPrefixed;

/// Splits `data` into input chunks: the first byte picks a chunk size (1..=256), so the
/// fuzzer explores chunkings as well as contents.
fn chunks(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let (size, rest) = match data.split_first() {
        Some((&s, rest)) => (usize::from(s) + 1, rest),
        None => (1, data),
    };
    rest.chunks(size)
}

/// A listener supporting a few protocols (and, when asked, any `/ipfs/` id) fed arbitrary
/// bytes. Its pending output never exceeds its bound by more than one answer.
pub fn multistream_listener(data: &[u8], _now: Instant) {
    let mut protocols = ProtocolSet::from_protocols([
        Protocol::from_static("/echo/1.0.0"),
        Protocol::from_static("/yamux/1.0.0"),
    ]);
    protocols.set_ask_others(true);
    let config = ListenerConfig::default();
    let bound = config.max_pending_output + crate::multistream::MAX_MESSAGE_LEN + 2;
    let mut listener = Listener::new(Arc::new(protocols), config);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    for (i, chunk) in chunks(data).enumerate() {
        input.extend_from_slice(chunk);
        loop {
            match listener.handle_input(&mut input) {
                Ok(ListenerStatus::InProgress) => break,
                Ok(ListenerStatus::Query(p)) => {
                    if listener.answer(p.as_str().starts_with("/ipfs/")).is_err() {
                        return;
                    }
                }
                Ok(ListenerStatus::Agreed(_)) | Err(_) => return,
            }
        }
        // Drain only every other chunk, so the bound on pending output is exercised.
        if i % 2 == 1 {
            listener.poll_transmit(&mut out);
            assert!(out.len() <= bound, "listener holds {} bytes", out.len());
            out.clear();
        }
    }
}

/// A dialer proposing three protocols fed arbitrary answers, in both modes.
pub fn multistream_dialer(data: &[u8], _now: Instant) {
    for mode in [DialerMode::Strict, DialerMode::Lazy] {
        let Ok(mut dialer) = Dialer::new(
            [
                Protocol::from_static("/noise"),
                Protocol::from_static("/tls/1.0.0"),
                Protocol::from_static("/plaintext/2.0.0"),
            ],
            mode,
        ) else {
            return;
        };
        let mut input = BytesMut::new();
        let mut out = BytesMut::new();
        for chunk in chunks(data) {
            input.extend_from_slice(chunk);
            match dialer.handle_input(&mut input) {
                Ok(DialerStatus::InProgress) => {}
                Ok(DialerStatus::Agreed(_)) | Err(_) => break,
            }
            dialer.poll_transmit(&mut out);
            out.clear();
        }
    }
}

/// The length-prefixed decoder fed arbitrary bytes with a limit taken from the input.
pub fn length_prefixed(data: &[u8], _now: Instant) {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let decoder = LengthPrefixed::new(usize::from(limit) * 64);
    let mut input = BytesMut::new();
    for chunk in chunks(rest) {
        input.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(frame)) => assert!(frame.len() <= decoder.max_len()),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}
