//! Fuzz entry points for `tls`.
//!
//! The machines are built from fixed seeds and a fixed wall clock, so a run is reproducible
//! and the committed seed corpus (a real handshake transcript) stays valid: the configs are
//! made afresh for every input, so every run's handshake is the config's first.

use std::time::Duration;

use bytes::BytesMut;
use libp2p_identity::Keypair;

use crate::time::Instant;
use crate::tls::{certificate, Config, Handshake, Received};

/// The wall clock of the fuzz targets (2025-06-15), inside the period of valid certificates.
pub const NOW_UNIX: Duration = Duration::from_secs(1_750_000_000);

/// The deterministic client configuration of the fuzz targets.
pub fn client_config() -> Option<Config> {
    let id = Keypair::ed25519_from_bytes([1u8; 32]).ok()?;
    Config::new(id, [1; 32])
        .ok()?
        .with_muxers(vec!["/yamux/1.0.0".into()])
        .ok()
}

/// The deterministic server configuration of the fuzz targets.
pub fn server_config() -> Option<Config> {
    let id = Keypair::ed25519_from_bytes([2u8; 32]).ok()?;
    Config::new(id, [2; 32])
        .ok()?
        .with_muxers(vec!["/yamux/1.0.0".into()])
        .ok()
}

/// Feeds `rest` in chunks of `chunk` bytes to `hs`, then what remains to its transport,
/// which also sends and closes. Returns whether the handshake finished (for the seed tests).
fn drive(mut hs: Handshake, chunk: usize, rest: &[u8]) -> bool {
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    let mut fed = 0;
    for piece in rest.chunks(chunk) {
        input.extend_from_slice(piece);
        fed += piece.len();
        let result = hs.handle_input(NOW_UNIX, &mut input);
        while hs.poll_transmit(&mut out).is_some() {}
        if result.is_err() {
            return false;
        }
        if hs.is_finished() {
            break;
        }
    }
    let Ok((mut t, _)) = hs.into_transport() else {
        return false;
    };
    input.extend_from_slice(rest.get(fed..).unwrap_or_default());
    while let Ok(Some(Received::Data(_))) = t.decrypt(&mut input) {}
    while t.poll_transmit(&mut out).is_some() {}
    let _ = t.encrypt(b"/multistream/1.0.0\n", &mut out);
    let _ = t.close(&mut out);
    true
}

/// Arbitrary bytes fed to a TLS machine: the first byte picks the role (top bit set: server,
/// else client expecting the server's peer) and the chunk size (low 7 bits + 1); the rest is
/// the peer's records, handshake then transport.
pub fn tls_handshake(data: &[u8], _now: Instant) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first & 0x7f) + 1;
    let (Some(client), Some(server)) = (client_config(), server_config()) else {
        return;
    };
    let hs = if first & 0x80 != 0 {
        Handshake::server(&server, NOW_UNIX)
    } else {
        Handshake::client(&client, Some(server.local_peer_id()), NOW_UNIX)
    };
    if let Ok(hs) = hs {
        let _ = drive(hs, chunk, rest);
    }
}

/// Arbitrary bytes parsed and verified as a libp2p certificate; an accepted one must name the
/// peer of its identity key and refuse a CertificateVerify that is not a signature.
pub fn tls_certificate(data: &[u8], _now: Instant) {
    if let Ok(cert) = certificate::parse(data, NOW_UNIX) {
        assert_eq!(cert.peer_id(), cert.public_key().to_peer_id());
        let result = cert.verify_signature(cert.signature_scheme(), b"message", b"signature");
        assert!(result.is_err(), "a garbage CertificateVerify verified");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, RngCore, SeedableRng};

    /// The fixed handshake's bytes: (client → server incl. data after its last flight,
    /// server → client).
    fn transcript() -> (Vec<u8>, Vec<u8>) {
        let (a, b) = (client_config().unwrap(), server_config().unwrap());
        let mut c = Handshake::client(&a, Some(b.local_peer_id()), NOW_UNIX).unwrap();
        let mut s = Handshake::server(&b, NOW_UNIX).unwrap();
        let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
        let (mut cs, mut sc) = (BytesMut::new(), BytesMut::new());
        while !c.is_finished() {
            c.poll_transmit(&mut cs);
            to_server.extend_from_slice(&cs);
            s.handle_input(NOW_UNIX, &mut cs).unwrap();
            s.poll_transmit(&mut sc);
            to_client.extend_from_slice(&sc);
            c.handle_input(NOW_UNIX, &mut sc).unwrap();
        }
        c.poll_transmit(&mut cs);
        let (mut t, _) = c.into_transport().unwrap();
        t.encrypt(b"/yamux/1.0.0\n", &mut cs).unwrap();
        to_server.extend_from_slice(&cs);
        (to_server, to_client)
    }

    fn spec_vector(n: usize) -> Vec<u8> {
        let hex = [
            include_str!("../tls/vectors/1.hex"),
            include_str!("../tls/vectors/2.hex"),
            include_str!("../tls/vectors/3.hex"),
            include_str!("../tls/vectors/4.hex"),
            include_str!("../tls/vectors/5.hex"),
            include_str!("../tls/vectors/6.hex"),
            include_str!("../tls/vectors/7.hex"),
            include_str!("../tls/vectors/8.hex"),
        ][n]
            .trim();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
        let (to_server, to_client) = transcript();
        let cat = |parts: &[&[u8]]| parts.concat();
        let mut seeds = vec![
            (
                "tls_handshake",
                "server_full".into(),
                cat(&[&[0xff], &to_server]),
            ),
            (
                "tls_handshake",
                "server_bytewise".into(),
                cat(&[&[0x80], &to_server]),
            ),
            (
                "tls_handshake",
                "client_full".into(),
                cat(&[&[0x7f], &to_client]),
            ),
            (
                "tls_handshake",
                "client_chunk7".into(),
                cat(&[&[0x06], &to_client]),
            ),
            (
                "tls_certificate",
                "generated".into(),
                client_config().unwrap().certificate().to_vec(),
            ),
        ];
        for n in 0..8 {
            seeds.push((
                "tls_certificate",
                format!("spec_vector_{}", n + 1),
                spec_vector(n),
            ));
        }
        seeds
    }

    #[test]
    fn entries_accept_seeds_and_random_bytes() {
        type Target = fn(&[u8], Instant);
        let targets: [(&str, Target); 2] = [
            ("tls_handshake", tls_handshake),
            ("tls_certificate", tls_certificate),
        ];
        let seeds = seeds();
        let mut rng = StdRng::seed_from_u64(1);
        for (name, f) in targets {
            for (_, _, data) in seeds.iter().filter(|s| s.0 == name) {
                f(data, plait_testkit::start());
                for _ in 0..20 {
                    let mut d = data.clone();
                    if !d.is_empty() {
                        let i = rng.gen_range(0..d.len());
                        d[i] ^= 1 << rng.gen_range(0..8);
                    }
                    d.truncate(rng.gen_range(0..=d.len()));
                    f(&d, plait_testkit::start());
                }
            }
            for _ in 0..20 {
                let mut d = vec![0u8; rng.gen_range(0..400)];
                rng.fill_bytes(&mut d);
                f(&d, plait_testkit::start());
            }
        }
    }

    #[test]
    fn full_seeds_complete_the_handshake() {
        let (to_server, to_client) = transcript();
        let server = Handshake::server(&server_config().unwrap(), NOW_UNIX).unwrap();
        assert!(drive(server, 1, &to_server));
        let b = server_config().unwrap();
        let client =
            Handshake::client(&client_config().unwrap(), Some(b.local_peer_id()), NOW_UNIX)
                .unwrap();
        assert!(drive(client, 7, &to_client));
        for n in [0, 1, 2, 4, 6, 7] {
            assert!(certificate::parse(&spec_vector(n), NOW_UNIX).is_ok());
        }
    }

    /// Committed corpus files still match the seeds (regenerate with `PLAIT_WRITE_CORPUS=1`).
    #[test]
    fn corpus_seeds() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let write = std::env::var_os("PLAIT_WRITE_CORPUS").is_some();
        for (target, name, data) in seeds() {
            let path = root.join(target).join(&name);
            if write {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &data).unwrap();
            } else if let Ok(on_disk) = std::fs::read(&path) {
                assert_eq!(on_disk, data, "{target}/{name} is stale");
            }
        }
    }
}
