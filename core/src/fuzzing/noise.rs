//! Fuzz entry points for `noise` and `plaintext`.
//!
//! Every machine is built from fixed seeds, so a run is reproducible and the committed seed
//! corpus (real handshake messages) stays valid. The handshake targets read the first input
//! byte as a chunk size and feed the rest in chunks of that size, so chunking is fuzzed too.

use crate::time::Instant;
use std::sync::OnceLock;

use bytes::BytesMut;
use libp2p_identity::Keypair;

use crate::noise::{Config, Handshake, Transport, MAX_PLAINTEXT};
use crate::plaintext::{self, Plaintext};

/// The deterministic initiator configuration of the fuzz targets.
pub fn initiator_config() -> Option<Config> {
    let id = Keypair::ed25519_from_bytes([1u8; 32]).ok()?;
    Some(
        Config::new(id, [1; 32])
            .ok()?
            .with_muxers(vec!["/yamux/1.0.0".into()]),
    )
}

/// The deterministic responder configuration of the fuzz targets.
pub fn responder_config() -> Option<Config> {
    let id = Keypair::ed25519_from_bytes([2u8; 32]).ok()?;
    Some(
        Config::new(id, [2; 32])
            .ok()?
            .with_muxers(vec!["/yamux/1.0.0".into()]),
    )
}

/// Splits `data` into (chunk size from the first byte, rest).
fn chunking(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((first, rest)) => (usize::from(*first) + 1, rest),
        None => (1, data),
    }
}

/// Feeds `rest` in chunks to a handshake, then what remains to its transport. Returns whether
/// the handshake finished (for the seed tests).
fn drive(mut hs: Handshake, data: &[u8]) -> bool {
    let (chunk, rest) = chunking(data);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    let mut fed = 0;
    for piece in rest.chunks(chunk) {
        input.extend_from_slice(piece);
        fed += piece.len();
        if hs.handle_input(&mut input).is_err() {
            return false;
        }
        while hs.poll_transmit(&mut out).is_some() {}
        if hs.is_finished() {
            break;
        }
    }
    let Ok((mut t, _)) = hs.into_transport() else {
        return false;
    };
    input.extend_from_slice(rest.get(fed..).unwrap_or_default());
    while let Ok(Some(_)) = t.decrypt(&mut input) {}
    true
}

/// Arbitrary bytes fed to a responder (messages 1 and 3, then transport frames).
pub fn noise_responder(data: &[u8], _now: Instant) {
    let Some(config) = responder_config() else {
        return;
    };
    if let Ok(hs) = Handshake::responder(&config) {
        let _ = drive(hs, data);
    }
}

/// Arbitrary bytes fed to an initiator (message 2, then transport frames).
pub fn noise_initiator(data: &[u8], _now: Instant) {
    let Some(config) = initiator_config() else {
        return;
    };
    if let Ok(hs) = Handshake::initiator(&config, None) {
        let _ = drive(hs, data);
    }
}

/// The transports of the fixed handshake between [`initiator_config`] and
/// [`responder_config`].
pub fn fixed_transports() -> Option<(Transport, Transport)> {
    let (a, b) = (initiator_config()?, responder_config()?);
    let mut init = Handshake::initiator(&a, None).ok()?;
    let mut resp = Handshake::responder(&b).ok()?;
    let mut wire = BytesMut::new();
    for _ in 0..2 {
        init.poll_transmit(&mut wire);
        resp.handle_input(&mut wire).ok()?;
        resp.poll_transmit(&mut wire);
        init.handle_input(&mut wire).ok()?;
    }
    init.poll_transmit(&mut wire);
    resp.handle_input(&mut wire).ok()?;
    Some((init.into_transport().ok()?.0, resp.into_transport().ok()?.0))
}

/// Arbitrary frames decrypted by the responder's transport of a fixed handshake; the same
/// bytes are also encrypted by the initiator and must decrypt back unchanged.
pub fn noise_transport(data: &[u8], _now: Instant) {
    static CACHE: OnceLock<Option<(Transport, Transport)>> = OnceLock::new();
    let Some((a, b)) = CACHE.get_or_init(fixed_transports) else {
        return;
    };
    let mut rx = b.clone_for_fuzzing();
    let mut input = BytesMut::from(data);
    let mut immediate = Vec::new();
    while let Ok(Some(p)) = rx.decrypt(&mut input) {
        immediate.extend_from_slice(&p);
    }
    let (mut a2, mut b2) = (a.clone_for_fuzzing(), b.clone_for_fuzzing());
    let mut wire = BytesMut::new();
    let (chunk, rest) = chunking(data);
    let parts: Vec<&[u8]> = rest.chunks(chunk).collect();
    if a2.encrypt_vectored(&parts, &mut wire).is_err() {
        return;
    }
    let mut got = Vec::with_capacity(rest.len());
    let mut received = wire.clone();
    while let Ok(Some(p)) = b2.decrypt(&mut received) {
        got.extend_from_slice(&p);
    }
    assert_eq!(got, rest, "transport round trip changed the data");
    // Frame by frame through `begin_frame`/`seal_frame` gives the same bytes.
    let mut a3 = a.clone_for_fuzzing();
    let mut sealed = BytesMut::new();
    for frame in rest.chunks(MAX_PLAINTEXT) {
        let start = a3.begin_frame(&mut sealed);
        sealed.extend_from_slice(frame);
        if a3.seal_frame(&mut sealed, start).is_err() {
            return;
        }
    }
    assert_eq!(
        sealed, wire,
        "sealing frame by frame differs from encryption"
    );
}

/// Arbitrary bytes fed to a `/plaintext/2.0.0` exchange.
pub fn plaintext(data: &[u8], _now: Instant) {
    let Ok(id) = Keypair::ed25519_from_bytes([1u8; 32]) else {
        return;
    };
    let mut m = Plaintext::new(&plaintext::Config::new(id.public()), None);
    let (chunk, rest) = chunking(data);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    for piece in rest.chunks(chunk) {
        input.extend_from_slice(piece);
        if m.handle_input(&mut input).is_err() {
            return;
        }
        while m.poll_transmit(&mut out).is_some() {}
    }
    let _ = m.into_outcome();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, RngCore, SeedableRng};

    /// Real messages of the fixed handshake: (msg1, msg2, msg3, a transport frame i→r).
    fn transcript() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
        let (a, b) = (initiator_config().unwrap(), responder_config().unwrap());
        let mut init = Handshake::initiator(&a, None).unwrap();
        let mut resp = Handshake::responder(&b).unwrap();
        let (mut m1, mut m2, mut m3) = (BytesMut::new(), BytesMut::new(), BytesMut::new());
        init.poll_transmit(&mut m1);
        let msg1 = m1.to_vec();
        resp.handle_input(&mut m1).unwrap();
        resp.poll_transmit(&mut m2);
        let msg2 = m2.to_vec();
        init.handle_input(&mut m2).unwrap();
        init.poll_transmit(&mut m3);
        let msg3 = m3.to_vec();
        resp.handle_input(&mut m3).unwrap();
        let (mut t, _) = init.into_transport().unwrap();
        let mut frame = BytesMut::new();
        t.encrypt(b"/multistream/1.0.0\n", &mut frame).unwrap();
        (msg1, msg2, msg3, frame.to_vec())
    }

    fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
        let (msg1, msg2, msg3, frame) = transcript();
        let cat = |parts: &[&[u8]]| parts.concat();
        let mut plain = BytesMut::new();
        Plaintext::new(
            &plaintext::Config::new(Keypair::ed25519_from_bytes([2u8; 32]).unwrap().public()),
            None,
        )
        .poll_transmit(&mut plain);
        vec![
            ("noise_responder", "msg1", cat(&[&[255], &msg1])),
            (
                "noise_responder",
                "msg1_msg3_frame",
                cat(&[&[255], &msg1, &msg3, &frame]),
            ),
            ("noise_responder", "msg1_bytewise", cat(&[&[0], &msg1])),
            ("noise_initiator", "msg2", cat(&[&[255], &msg2])),
            ("noise_initiator", "msg2_chunk7", cat(&[&[6], &msg2])),
            (
                "noise_transport",
                "empty_frame",
                vec![0x00, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
            ("noise_transport", "frame", frame.clone()),
            ("noise_transport", "two_frames", cat(&[&frame, &frame])),
            ("plaintext", "exchange", cat(&[&[255], &plain])),
            (
                "plaintext",
                "exchange_bytewise_trailing",
                cat(&[&[0], &plain, b"/yamux/1.0.0\n"]),
            ),
        ]
    }

    #[test]
    fn entries_accept_seeds_and_random_bytes() {
        type Target = fn(&[u8], Instant);
        let targets: [(&str, Target); 4] = [
            ("noise_responder", noise_responder),
            ("noise_initiator", noise_initiator),
            ("noise_transport", noise_transport),
            ("plaintext", plaintext),
        ];
        let seeds = seeds();
        let mut rng = StdRng::seed_from_u64(1);
        for (name, f) in targets {
            for (_, _, data) in seeds.iter().filter(|s| s.0 == name) {
                f(data, plait_testkit::start());
                if name == "noise_responder" && data.len() > 100 {
                    let hs = Handshake::responder(&responder_config().unwrap()).unwrap();
                    assert!(drive(hs, data), "the full seed completes the handshake");
                }
                // Mutations of the seed.
                for _ in 0..30 {
                    let mut d = data.clone();
                    if !d.is_empty() {
                        let i = rng.gen_range(0..d.len());
                        d[i] ^= 1 << rng.gen_range(0..8);
                    }
                    d.truncate(rng.gen_range(0..=d.len()));
                    f(&d, plait_testkit::start());
                }
            }
            for _ in 0..30 {
                let mut d = vec![0u8; rng.gen_range(0..400)];
                rng.fill_bytes(&mut d);
                f(&d, plait_testkit::start());
            }
        }
    }

    /// Committed corpus files still match the seeds (regenerate with `PLAIT_WRITE_CORPUS=1`).
    #[test]
    fn corpus_seeds() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let write = std::env::var_os("PLAIT_WRITE_CORPUS").is_some();
        for (target, name, data) in seeds() {
            let path = root.join(target).join(name);
            if write {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &data).unwrap();
            } else if let Ok(on_disk) = std::fs::read(&path) {
                assert_eq!(on_disk, data, "{target}/{name} is stale");
            }
        }
    }
}
