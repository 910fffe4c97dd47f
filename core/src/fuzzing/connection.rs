//! Fuzz entry point for a listener-side [`Connection`]: arbitrary bytes from the very first
//! raw byte (multistream, the security handshake, muxer negotiation, yamux, per-stream
//! multistream), fed in chunks, with every transmit and event drained.
//!
//! Keys and handshake randomness are fixed, so a dialer transcript recorded against this
//! listener ([`dialer_transcript`]) replays exactly and the seeds reach the streams.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use libp2p_identity::Keypair;

use crate::connection::{Connection, ConnectionConfig, Event};
use crate::multistream::{Protocol, ProtocolSet};
use crate::time::Instant;
use crate::upgrade::{Role, Security, UpgradeConfig};
use crate::yamux;

/// The protocol the fuzzed listener serves (echo).
const ECHO: Protocol = Protocol::from_static("/echo/1.0.0");

fn config(seed: u8, security: Security) -> Option<Arc<ConnectionConfig>> {
    let keypair = Keypair::ed25519_from_bytes([seed; 32]).ok()?;
    let upgrade = UpgradeConfig::new(keypair, [seed; 32])
        .ok()?
        .with_security(security);
    Some(Arc::new(ConnectionConfig {
        upgrade,
        yamux: yamux::Config::default()
            .with_max_streams(16)
            .with_ping_interval(None),
        protocols: Arc::new(ProtocolSet::from_protocols([ECHO])),
        max_negotiating_inbound_streams: 8,
        inbound_negotiation_timeout: Duration::from_secs(10),
    }))
}

/// A fresh listener configuration: the Noise config counts handshakes to derive their
/// randomness, so a shared one would make runs differ.
fn listener_config(security: Security) -> Option<Arc<ConnectionConfig>> {
    config(2, security)
}

/// Drains a connection's events (echoing inbound streams and finishing them at their end)
/// and appends its transmits to `out` (sealed after the poll when `deferred`). Returns how
/// many bytes were echoed.
fn drain(conn: &mut Connection, now: Instant, out: &mut BytesMut) -> usize {
    let mut echoed = 0;
    loop {
        let mut progress = false;
        while let Some(event) = conn.poll_event() {
            progress = true;
            let (Event::InboundStream { id, .. } | Event::Readable(id) | Event::Writable(id)) =
                event
            else {
                continue;
            };
            loop {
                match conn.read(id, 4096) {
                    Ok(Some(data)) if !data.is_empty() => {
                        echoed += conn.write(id, &data).unwrap_or(0);
                    }
                    Ok(None) => {
                        let _ = conn.finish(id);
                        break;
                    }
                    _ => break,
                }
            }
        }
        while conn.poll_transmit(now, out).is_some() {
            progress = true;
        }
        if !progress {
            return echoed;
        }
    }
}

/// Runs the listener over `data`; returns how many bytes it echoed on streams.
fn run(data: &[u8], start: Instant) -> usize {
    let Some((&first, rest)) = data.split_first() else {
        return 0;
    };
    let security = if first & 1 == 1 {
        Security::Plaintext
    } else {
        Security::Noise
    };
    let chunk = usize::from(first >> 1) * 8 + 1;
    let Some(config) = listener_config(security) else {
        return 0;
    };
    let mut now = start;
    let Ok(mut conn) = Connection::new(config, Role::Listener, None, now) else {
        return 0;
    };
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    let mut echoed = drain(&mut conn, now, &mut out);
    for piece in rest.chunks(chunk) {
        input.extend_from_slice(piece);
        conn.handle_input(now, &mut input);
        if !conn.is_established() {
            assert!(
                conn.buffered_bytes() <= crate::upgrade::MAX_BUFFERED as u64,
                "an upgrading connection holds {} bytes",
                conn.buffered_bytes()
            );
        }
        echoed += drain(&mut conn, now, &mut out);
        out.clear();
        now += Duration::from_millis(10);
        if conn.poll_timeout().is_some_and(|t| t <= now) {
            conn.handle_timeout(now);
            echoed += drain(&mut conn, now, &mut out);
        }
    }
    conn.handle_closed();
    echoed + drain(&mut conn, now, &mut out)
}

/// Fuzz target: a listener-side connection (Noise; plaintext when the first byte is odd; the
/// deferred encryption API when its bit 1 is set; its upper bits set the chunk size) fed the
/// rest of `data`.
pub fn connection_listener(data: &[u8], now: Instant) {
    run(data, now);
}

/// What a dialer (fixed identity) sends to the fuzzed listener to open one `/echo/1.0.0`
/// stream carrying `payload` and finish it, recorded from a real in-memory exchange: a seed
/// for [`connection_listener`] once prefixed with a first byte.
pub fn dialer_transcript(security: Security, payload: &[u8], now: Instant) -> Vec<u8> {
    let (Some(dialer_config), Some(listener_config)) =
        (config(1, security), listener_config(security))
    else {
        return Vec::new();
    };
    let (Ok(mut dialer), Ok(mut listener)) = (
        Connection::new(dialer_config, Role::Dialer, None, now),
        Connection::new(listener_config, Role::Listener, None, now),
    ) else {
        return Vec::new();
    };
    let mut transcript = Vec::new();
    let (mut to_listener, mut to_dialer) = (BytesMut::new(), BytesMut::new());
    let mut opened = false;
    let mut out = BytesMut::new();
    for _ in 0..16 {
        while dialer.poll_transmit(now, &mut out).is_some() {}
        transcript.extend_from_slice(&out);
        to_listener.extend_from_slice(&out);
        out.clear();
        listener.handle_input(now, &mut to_listener);
        drain(&mut listener, now, &mut to_dialer);
        dialer.handle_input(now, &mut to_dialer);
        while dialer.poll_event().is_some() {}
        if dialer.is_established() && !opened {
            opened = true;
            if let Ok(id) = dialer.open_stream(now, vec![ECHO]) {
                let _ = dialer.write(id, payload);
                let _ = dialer.finish(id);
            }
        }
    }
    transcript
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcripts_reach_the_echo_stream() {
        for (first, security) in [(0u8, Security::Noise), (1, Security::Plaintext)] {
            // Immediate (bit 1 clear) and deferred (bit 1 set) encryption.
            for deferred in [0u8, 2] {
                let mut data = vec![first | deferred | (62 << 1)];
                data.extend(dialer_transcript(
                    security,
                    b"Hello, world!\n",
                    plait_testkit::start(),
                ));
                assert_eq!(
                    run(&data, plait_testkit::start()),
                    14,
                    "{security:?} {deferred}"
                );
                // In 1-byte (immediate) or 9-byte (deferred) chunks too.
                data[0] = first | deferred;
                assert_eq!(
                    run(&data, plait_testkit::start()),
                    14,
                    "{security:?} {deferred} small"
                );
            }
        }
    }
}
