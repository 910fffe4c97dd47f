//! Tests of the TLS machine and the certificate rules (spec digest `tls.md`).
//!
//! No clock is read: wall-clock inputs are fixed durations since the Unix epoch.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use libp2p_identity::{Keypair, PeerId};
use plait_testkit::rsa_keys::RSA_2048;
use proptest::prelude::*;

use super::certificate::{self, der, extension, libp2p_extension, p256_spki, signed_key};
use super::*;

/// The wall clock of the tests: 2025-06-15, inside every valid certificate's period.
const NOW: Duration = Duration::from_secs(1_750_000_000);
const YAMUX: &str = "/yamux/1.0.0";

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ed25519,
    Secp256k1,
    Ecdsa,
    Rsa,
}

const KINDS: [Kind; 4] = [Kind::Ed25519, Kind::Secp256k1, Kind::Ecdsa, Kind::Rsa];

/// A deterministic identity of `kind` (the RSA one is the testkit's 2048-bit key).
fn identity(kind: Kind, seed: u8) -> Keypair {
    match kind {
        Kind::Ed25519 => crate::identity::keypair_from_seed(u64::from(seed)),
        Kind::Secp256k1 => {
            let sk = libp2p_identity::secp256k1::SecretKey::try_from_bytes([seed; 32]).unwrap();
            libp2p_identity::secp256k1::Keypair::from(sk).into()
        }
        Kind::Ecdsa => {
            let sk = libp2p_identity::ecdsa::SecretKey::try_from_bytes([seed; 32]).unwrap();
            libp2p_identity::ecdsa::Keypair::from(sk).into()
        }
        Kind::Rsa => Keypair::rsa_from_pkcs8(&mut RSA_2048.to_vec()).unwrap(),
    }
}

fn config(seed: u8) -> Config {
    Config::new(identity(Kind::Ed25519, seed), [seed; 32]).unwrap()
}

/// Everything one handshake (plus some transport data) produced.
struct Run {
    client: Result<(Transport, Outcome), Error>,
    server: Result<(Transport, Outcome), Error>,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    /// What the server's transport decrypted of the client's data sent right after its
    /// last handshake flight (in the same input).
    server_got: Vec<u8>,
}

/// Moves `src` into `input` in pieces of `chunk()` bytes, feeding the handshake after each.
fn deliver(
    hs: &mut Handshake,
    src: &mut BytesMut,
    input: &mut BytesMut,
    chunk: &mut dyn FnMut() -> usize,
) -> Result<(), Error> {
    while !src.is_empty() {
        let n = chunk().clamp(1, src.len());
        input.extend_from_slice(&src.split_to(n));
        hs.handle_input(NOW, input)?;
    }
    Ok(())
}

/// Runs a handshake between a client of `a` and a server of `b`; the client sends `after`
/// right behind its last flight.
fn run(
    a: &Config,
    b: &Config,
    expected: Option<PeerId>,
    after: &[u8],
    mut chunk: impl FnMut() -> usize,
) -> Run {
    let mut c = Some(Handshake::client(a, expected, NOW).unwrap());
    let mut s = Handshake::server(b, NOW).unwrap();
    let (mut cs, mut sc) = (BytesMut::new(), BytesMut::new());
    let (mut s_in, mut c_in) = (BytesMut::new(), BytesMut::new());
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    let (mut c_err, mut s_err) = (None, None);
    let mut client_t = None;
    for _ in 0..8 {
        if let Some(c) = c.as_mut() {
            while c.poll_transmit(&mut cs).is_some() {}
        }
        if c_err.is_none() && c.as_ref().is_some_and(Handshake::is_finished) {
            client_t = c.take().map(Handshake::into_transport);
            if let Some(Ok((t, _))) = client_t.as_mut() {
                t.encrypt(after, &mut cs).unwrap();
            }
        }
        to_server.extend_from_slice(&cs);
        if s_err.is_none() && !s.is_finished() {
            if let Err(e) = deliver(&mut s, &mut cs, &mut s_in, &mut chunk) {
                s_err = Some(e);
            }
        }
        while s.poll_transmit(&mut sc).is_some() {}
        to_client.extend_from_slice(&sc);
        if let (None, Some(c)) = (&c_err, c.as_mut()) {
            if let Err(e) = deliver(c, &mut sc, &mut c_in, &mut chunk) {
                c_err = Some(e);
            }
        }
        if (client_t.is_some() || c_err.is_some()) && (s.is_finished() || s_err.is_some()) {
            break;
        }
    }
    // A client whose flight the server refused learns it from the alert, on its transport.
    if let (Some(Ok((t, _))), Some(_)) = (client_t.as_mut(), &s_err) {
        c_in.extend_from_slice(&sc);
        if let Err(e) = t.decrypt(&mut c_in) {
            c_err = Some(e);
        }
    }
    let client = match (c_err, client_t) {
        (Some(e), _) => Err(e),
        (None, Some(r)) => r,
        (None, None) => Err(Error::NotFinished),
    };
    let mut server_got = Vec::new();
    let server = match s_err {
        Some(e) => Err(e),
        None => s.into_transport(),
    };
    let server = server.map(|(mut t, o)| {
        s_in.extend_from_slice(&cs);
        while let Some(Received::Data(d)) = t.decrypt(&mut s_in).unwrap() {
            server_got.extend_from_slice(&d);
        }
        (t, o)
    });
    Run {
        client,
        server,
        to_server,
        to_client,
        server_got,
    }
}

fn whole(a: &Config, b: &Config, expected: Option<PeerId>) -> Run {
    run(a, b, expected, b"", || usize::MAX)
}

/// Both transports of a successful run, checked to carry data both ways and close cleanly.
fn check_transports(r: Run, a: &Config, b: &Config) -> (Outcome, Outcome) {
    let (mut tc, oc) = r.client.unwrap();
    let (mut ts, os) = r.server.unwrap();
    assert_eq!(oc.remote_peer, b.local_peer_id());
    assert_eq!(os.remote_peer, a.local_peer_id());
    assert_eq!(oc.remote_key.to_peer_id(), b.local_peer_id());
    let mut wire = BytesMut::new();
    tc.encrypt(b"ping", &mut wire).unwrap();
    let Some(Received::Data(d)) = ts.decrypt(&mut wire).unwrap() else {
        panic!("no data")
    };
    assert_eq!(&d[..], b"ping");
    ts.encrypt(b"pong", &mut wire).unwrap();
    ts.close(&mut wire).unwrap();
    assert_eq!(
        tc.decrypt(&mut wire).unwrap(),
        Some(Received::Data(BytesMut::from(&b"pong"[..])))
    );
    assert_eq!(tc.decrypt(&mut wire).unwrap(), Some(Received::Closed));
    assert_eq!(tc.decrypt(&mut wire).unwrap(), Some(Received::Closed));
    assert!(tc.is_peer_closed());
    assert!(matches!(ts.encrypt(b"late", &mut wire), Err(Error::Closed)));
    (oc, os)
}

#[test]
fn handshake_every_key_type_pair() {
    for (i, ck) in KINDS.into_iter().enumerate() {
        for (j, sk) in KINDS.into_iter().enumerate() {
            let a = Config::new(identity(ck, 10 + i as u8), [1; 32]).unwrap();
            let b = Config::new(identity(sk, 20 + j as u8), [2; 32]).unwrap();
            if a.local_peer_id() == b.local_peer_id() {
                continue; // RSA against RSA: the testkit has one 2048-bit key
            }
            let r = whole(&a, &b, Some(b.local_peer_id()));
            let (oc, os) = check_transports(r, &a, &b);
            assert_eq!((oc.muxer, os.muxer), (None, None), "{ck:?} -> {sk:?}");
        }
    }
}

#[test]
fn rsa_against_rsa() {
    let a = Config::new(identity(Kind::Rsa, 0), [1; 32]).unwrap();
    let b = Config::new(
        Keypair::rsa_from_pkcs8(&mut plait_testkit::rsa_keys::RSA_4096.to_vec()).unwrap(),
        [2; 32],
    )
    .unwrap();
    check_transports(whole(&a, &b, Some(b.local_peer_id())), &a, &b);
}

fn with_muxers(seed: u8, muxers: &[&str]) -> Config {
    config(seed)
        .with_muxers(muxers.iter().map(|m| m.to_string()).collect())
        .unwrap()
}

#[test]
fn early_muxer_through_alpn() {
    let a = with_muxers(1, &[YAMUX]);
    let b = with_muxers(2, &[YAMUX]);
    let (oc, os) = check_transports(whole(&a, &b, None), &a, &b);
    assert_eq!(oc.muxer.as_deref(), Some(YAMUX));
    assert_eq!(os.muxer.as_deref(), Some(YAMUX));
}

#[test]
fn alpn_falls_back_to_libp2p() {
    // go's matrix (tls.md §7): no common muxer, or no list on one side → none.
    for (client, server) in [
        (&[YAMUX][..], &[][..]),
        (&[][..], &[YAMUX][..]),
        (&["/mplex/6.7.0"][..], &[YAMUX][..]),
        (&[][..], &[][..]),
    ] {
        let a = with_muxers(1, client);
        let b = with_muxers(2, server);
        let (oc, os) = check_transports(whole(&a, &b, None), &a, &b);
        assert_eq!(
            (oc.muxer, os.muxer),
            (None, None),
            "{client:?} / {server:?}"
        );
    }
}

#[test]
fn alpn_server_order_wins() {
    // rustls picks by the server's preference; go by the client's (tls.md §7).
    let a = with_muxers(1, &["/m1", "/m2"]);
    let b = with_muxers(2, &["/m2", "/m1"]);
    let (oc, os) = check_transports(whole(&a, &b, None), &a, &b);
    assert_eq!(oc.muxer.as_deref(), Some("/m2"));
    assert_eq!(os.muxer.as_deref(), Some("/m2"));
}

#[test]
fn invalid_muxer_ids_are_refused() {
    assert!(matches!(
        config(1).with_muxers(vec![String::new()]),
        Err(Error::InvalidMuxerId { len: 0 })
    ));
    assert!(matches!(
        config(1).with_muxers(vec!["x".repeat(256)]),
        Err(Error::InvalidMuxerId { len: 256 })
    ));
}

#[test]
fn client_hello_has_no_sni_and_alpn_as_specified() {
    let a = with_muxers(1, &[YAMUX]);
    let mut c = Handshake::client(&a, None, NOW).unwrap();
    let mut hello = BytesMut::new();
    c.poll_transmit(&mut hello).unwrap();
    // server_name extension type 0x0000 would appear as "00 00 00 .." in the extensions;
    // look for the exact ALPN extension of tls.md §7 instead, and for no SNI host name.
    let alpn = hex("0010 0016 0014 0c2f79616d75782f312e302e30 066c6962703270");
    assert!(hello.windows(alpn.len()).any(|w| w == alpn));
    assert!(!hello.windows(7).any(|w| w == b"0.0.0.0"));
    // Only TLS 1.3 in supported_versions: extension 0x002b, length 3, list length 2, 0x0304.
    assert!(hello.windows(7).any(|w| w == hex("002b0003020304")));
}

#[test]
fn handshakes_are_deterministic_and_distinct() {
    let (a, b) = (config(1), config(2));
    let r1 = whole(&a, &b, None);
    let (a2, b2) = (config(1), config(2));
    let r2 = whole(&a2, &b2, None);
    assert_eq!(r1.to_server, r2.to_server);
    assert_eq!(r1.to_client, r2.to_client);
    assert_eq!(a.certificate(), a2.certificate());
    // The second handshake of a config draws fresh randomness.
    let r3 = whole(&a, &b, None);
    assert_ne!(r1.to_server, r3.to_server);
}

// ---- certificates ----

/// The spec's vectors (tls.md A and B): DER hex and the expected peer id, `None` if invalid.
const VECTORS: &[(&str, Option<&str>)] = &[
    (
        include_str!("vectors/1.hex"),
        Some("12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv"),
    ),
    (
        include_str!("vectors/2.hex"),
        Some("QmfXbAwNjJLXfesgztEHe8HwgVDCMMpZ9Eax1HYq6hn9uE"),
    ),
    (
        include_str!("vectors/3.hex"),
        Some("16Uiu2HAkutTMoTzDw1tCvSRtu6YoixJwS46S1ZFxW8hSx9fWHiPs"),
    ),
    (include_str!("vectors/4.hex"), None),
    (
        include_str!("vectors/5.hex"),
        Some("12D3KooWJRSrypvnpHgc6ZAgyCni4KcSmbV7uGRaMw5LgMKT18fq"),
    ),
    (include_str!("vectors/6.hex"), None),
    (
        include_str!("vectors/7.hex"),
        Some("QmZcrvr3r4S3QvwFdae3c2EWTfo792Y14UpzCZurhmiWeX"),
    ),
    (
        include_str!("vectors/8.hex"),
        Some("16Uiu2HAm2dSCBFxuge46aEt7U1oejtYuBUZXxASHqmcfVmk4gsbx"),
    ),
];

#[test]
fn spec_vectors() {
    for (i, (der, peer)) in VECTORS.iter().enumerate() {
        let result = certificate::parse(&hex(der), NOW);
        match peer {
            Some(peer) => {
                let cert = result.unwrap_or_else(|e| panic!("vector {}: {e}", i + 1));
                assert_eq!(cert.peer_id().to_string(), *peer, "vector {}", i + 1);
                assert_eq!(
                    cert.signature_scheme(),
                    rustls::SignatureScheme::ECDSA_NISTP256_SHA256
                );
            }
            // Vectors 4 and 6: the identity signature over the SPKI does not verify.
            None => assert!(
                matches!(result, Err(Error::BadExtensionSignature)),
                "vector {}: {result:?}",
                i + 1
            ),
        }
    }
}

#[test]
fn spec_vectors_validity_is_checked() {
    // The spec certificates are valid from 1975 (vector 1: 13:00, vector 5: 00:00).
    let der = hex(VECTORS[0].0);
    let early = Duration::from_secs(157_813_200 - 1); // 1975-01-01T12:59:59Z
    assert!(matches!(
        certificate::parse(&der, early),
        Err(Error::NotYetValid)
    ));
    let start = Duration::from_secs(157_813_200); // 1975-01-01T13:00:00Z
    assert!(certificate::parse(&der, start).is_ok());
    // 4096-01-01T13:00:00Z + 1 s
    let end = Duration::from_secs(67_090_165_200);
    assert!(certificate::parse(&der, end).is_ok());
    let late = Duration::from_secs(67_090_165_200 + 1);
    assert!(matches!(
        certificate::parse(&der, late),
        Err(Error::Expired)
    ));
}

#[test]
fn generated_certificate_verifies_for_every_key_type() {
    for kind in KINDS {
        let id = identity(kind, 7);
        let cert = Certificate::generate(&id, [3; 32]).unwrap();
        let parsed = certificate::parse(cert.der(), NOW).unwrap();
        assert_eq!(parsed.peer_id(), id.public().to_peer_id(), "{kind:?}");
        assert_eq!(parsed.public_key(), &id.public());
        // Deterministic for a seed, different for another.
        assert_eq!(
            Certificate::generate(&id, [3; 32]).unwrap().der(),
            cert.der()
        );
        assert_ne!(
            Certificate::generate(&id, [4; 32]).unwrap().der(),
            cert.der()
        );
    }
}

#[test]
fn generated_certificate_shape() {
    let id = identity(Kind::Ed25519, 1);
    let cert = Certificate::generate(&id, [3; 32]).unwrap();
    let der = cert.der();
    // Critical libp2p extension (rust-libp2p's encoding), validity 1975 → 4096, P-256 SPKI.
    let oid_critical = hex("060a2b0601040183a25a01010101ff");
    assert!(der.windows(oid_critical.len()).any(|w| w == oid_critical));
    assert!(der
        .windows(certificate::DER_VALIDITY.len())
        .any(|w| w == certificate::DER_VALIDITY));
    assert!(der.windows(5).any(|w| w == hex("3059301306").as_slice()));
}

/// A key seed for hostile certificates.
const KEY: [u8; 32] = [9; 32];

/// The SPKI of the [`KEY`] certificate key.
fn key_spki() -> Vec<u8> {
    let key = p256::ecdsa::SigningKey::from_slice(
        ring::digest::digest(&ring::digest::SHA256, &{
            let mut m = b"plait-tls-certificate-key".to_vec();
            m.extend_from_slice(&KEY);
            m.push(0);
            m
        })
        .as_ref(),
    )
    .unwrap();
    p256_spki(&key)
}

/// A certificate of the [`KEY`] key with `extensions`, valid 1975 → 4096.
fn custom(extensions: &[Vec<u8>]) -> Vec<u8> {
    Certificate::custom(KEY, certificate::DER_VALIDITY, extensions)
        .der()
        .to_vec()
}

fn good_extension(critical: bool) -> Vec<u8> {
    libp2p_extension(&identity(Kind::Ed25519, 5), &key_spki(), critical).unwrap()
}

/// `UTCTime` validity from `from` to `to` (`YYMMDDhhmmssZ`).
fn validity(from: &str, to: &str) -> Vec<u8> {
    der(
        0x30,
        &[der(0x17, from.as_bytes()), der(0x17, to.as_bytes())].concat(),
    )
}

fn parse(der: &[u8]) -> Result<PeerCertificate, Error> {
    certificate::parse(der, NOW)
}

#[test]
fn custom_certificate_baseline_is_valid() {
    // The builder itself makes valid certificates: critical or not.
    let peer = identity(Kind::Ed25519, 5).public().to_peer_id();
    assert_eq!(
        parse(&custom(&[good_extension(true)])).unwrap().peer_id(),
        peer
    );
    assert_eq!(
        parse(&custom(&[good_extension(false)])).unwrap().peer_id(),
        peer
    );
}

#[test]
fn certificate_without_extension() {
    assert!(matches!(parse(&custom(&[])), Err(Error::MissingExtension)));
    // An unrelated non-critical extension does not stand in for it.
    let other = extension(&[0x55, 0x1d, 0x0e], false, &der(0x04, &[1, 2, 3]));
    assert!(matches!(
        parse(&custom(&[other])),
        Err(Error::MissingExtension)
    ));
}

#[test]
fn certificate_with_duplicate_extension() {
    let ext = good_extension(true);
    assert!(matches!(
        parse(&custom(&[ext.clone(), ext])),
        Err(Error::DuplicateExtension)
    ));
}

#[test]
fn unknown_extensions() {
    // Non-critical unknown: ignored. Critical unknown (any other OID): refused.
    let unknown = |critical| extension(&[0x2a, 0x03, 0x04], critical, &[0x05, 0x00]);
    assert!(parse(&custom(&[good_extension(true), unknown(false)])).is_ok());
    match parse(&custom(&[good_extension(true), unknown(true)])) {
        Err(Error::UnknownCriticalExtension { oid }) => assert_eq!(oid, "1.2.3.4"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn certificate_validity_period() {
    let ext = [good_extension(true)];
    let past = Certificate::custom(KEY, &validity("200101000000Z", "210101000000Z"), &ext);
    assert!(matches!(parse(past.der()), Err(Error::Expired)));
    let future = Certificate::custom(KEY, &validity("300101000000Z", "310101000000Z"), &ext);
    assert!(matches!(parse(future.der()), Err(Error::NotYetValid)));
}

#[test]
fn malformed_signed_key() {
    let ext = |value: &[u8]| custom(&[extension(certificate::LIBP2P_OID_DER, true, value)]);
    // go's TestInvalidCerts: "foobar" as the value; SignedKey{publicKey: "foobar"}.
    assert!(matches!(
        parse(&ext(b"foobar")),
        Err(Error::MalformedSignedKey)
    ));
    assert!(matches!(
        parse(&ext(&signed_key(b"foobar", &[0; 64]))),
        Err(Error::InvalidIdentityKey(_))
    ));
    // Trailing bytes after the SignedKey are refused (as rust-libp2p, unlike go).
    let mut trailing = good_extension_value();
    trailing.push(0);
    assert!(matches!(
        parse(&ext(&trailing)),
        Err(Error::MalformedSignedKey)
    ));
}

/// The value (DER `SignedKey`) of [`good_extension`].
fn good_extension_value() -> Vec<u8> {
    let id = identity(Kind::Ed25519, 5);
    let mut msg = certificate::SIGNATURE_PREFIX.to_vec();
    msg.extend_from_slice(&key_spki());
    signed_key(&id.public().encode_protobuf(), &id.sign(&msg).unwrap())
}

#[test]
fn unsupported_identity_key_type() {
    let mut key = vec![0x08, 0x09, 0x12, 0x20];
    key.extend_from_slice(&[7; 32]);
    let value = signed_key(&key, &[0; 64]);
    let der = custom(&[extension(certificate::LIBP2P_OID_DER, true, &value)]);
    assert!(matches!(
        parse(&der),
        Err(Error::UnsupportedKeyType { key_type: 9 })
    ));
}

#[test]
fn bad_extension_signatures() {
    let id = identity(Kind::Ed25519, 5);
    let key = id.public().encode_protobuf();
    let ext = |sig: &[u8]| {
        custom(&[extension(
            certificate::LIBP2P_OID_DER,
            true,
            &signed_key(&key, sig),
        )])
    };
    // A 6-byte signature; a valid-format signature over the wrong message.
    assert!(matches!(
        parse(&ext(b"foobar")),
        Err(Error::BadExtensionSignature)
    ));
    let wrong = id.sign(b"libp2p-tls-handshake:something else").unwrap();
    assert!(matches!(
        parse(&ext(&wrong)),
        Err(Error::BadExtensionSignature)
    ));
    // Signed by another identity than the one named.
    let mut msg = certificate::SIGNATURE_PREFIX.to_vec();
    msg.extend_from_slice(&key_spki());
    let other = identity(Kind::Ed25519, 6).sign(&msg).unwrap();
    assert!(matches!(
        parse(&ext(&other)),
        Err(Error::BadExtensionSignature)
    ));
}

#[test]
fn bad_self_signature() {
    let mut der = custom(&[good_extension(true)]);
    // The last byte belongs to the signature's `s`.
    *der.last_mut().unwrap() ^= 1;
    assert!(matches!(parse(&der), Err(Error::BadSelfSignature)));
}

#[test]
fn unsupported_signature_algorithm() {
    // ecdsa-with-SHA384 over a P-256 key: curve and hash must match (rust-libp2p's rule).
    let mut der = custom(&[good_extension(true)]);
    let sha256 = hex("2a8648ce3d040302");
    let at = der.windows(8).rposition(|w| w == sha256).unwrap();
    der[at + 7] = 0x03;
    match parse(&der) {
        Err(Error::UnsupportedSignatureAlgorithm { oid }) => assert_eq!(oid, "1.2.840.10045.4.3.3"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_and_oversized_certificates() {
    assert!(matches!(
        parse(b"garbage"),
        Err(Error::MalformedCertificate)
    ));
    assert!(matches!(parse(&[]), Err(Error::MalformedCertificate)));
    let mut der = custom(&[good_extension(true)]);
    der.truncate(der.len() - 1);
    assert!(matches!(parse(&der), Err(Error::MalformedCertificate)));
    let mut der = custom(&[good_extension(true)]);
    der.extend_from_slice(&[0, 0]);
    assert!(matches!(
        parse(&der),
        Err(Error::TrailingCertificateBytes { len: 2 })
    ));
    let big = vec![0x30; certificate::MAX_CERTIFICATE_LEN + 1];
    assert!(matches!(
        parse(&big),
        Err(Error::CertificateTooLarge { len }) if len == certificate::MAX_CERTIFICATE_LEN + 1
    ));
}

// ---- hostile peers in the handshake ----

/// A server config presenting `cert` (for the identity of seed 5) and `extra` certificates.
fn hostile(cert: Certificate, extra: Vec<Vec<u8>>) -> Config {
    let peer = identity(Kind::Ed25519, 5).public().to_peer_id();
    Config::with_certificate(peer, cert, extra, [5; 32]).unwrap()
}

#[test]
fn client_refuses_hostile_server_certificates() {
    let ext = good_extension(true);
    type Check = fn(&Error) -> bool;
    let cases: Vec<(Config, Check)> = vec![
        (
            hostile(
                Certificate::custom(KEY, certificate::DER_VALIDITY, &[]),
                vec![],
            ),
            |e| matches!(e, Error::MissingExtension),
        ),
        (
            hostile(
                Certificate::custom(
                    KEY,
                    &validity("200101000000Z", "210101000000Z"),
                    std::slice::from_ref(&ext),
                ),
                vec![],
            ),
            |e| matches!(e, Error::Expired),
        ),
        (
            hostile(
                Certificate::custom(
                    KEY,
                    &validity("300101000000Z", "310101000000Z"),
                    std::slice::from_ref(&ext),
                ),
                vec![],
            ),
            |e| matches!(e, Error::NotYetValid),
        ),
        (
            hostile(
                Certificate::custom(KEY, certificate::DER_VALIDITY, std::slice::from_ref(&ext)),
                vec![custom(std::slice::from_ref(&ext))],
            ),
            |e| matches!(e, Error::NotOneCertificate { count: 2 }),
        ),
        (
            // The certificate of KEY, but the CertificateVerify signed by another key.
            hostile(
                Certificate::custom([8; 32], certificate::DER_VALIDITY, &[])
                    .with_der(custom(std::slice::from_ref(&ext))),
                vec![],
            ),
            |e| matches!(e, Error::BadHandshakeSignature),
        ),
    ];
    for (i, (server, check)) in cases.iter().enumerate() {
        let client = config(1);
        let r = whole(&client, server, None);
        let err = r.client.err().unwrap();
        assert!(check(&err), "case {i}: {err:?}");
        // The server learns of it through the client's alert.
        assert!(
            matches!(r.server, Err(Error::AlertReceived(_))),
            "case {i}: {:?}",
            r.server.err()
        );
    }
}

#[test]
fn server_refuses_hostile_client_certificates() {
    let ext = good_extension(true);
    let expired = Certificate::custom(KEY, &validity("200101000000Z", "210101000000Z"), &[ext]);
    let client = hostile(expired, vec![]);
    let server = config(2);
    let r = whole(&client, &server, Some(server.local_peer_id()));
    assert!(
        matches!(r.server, Err(Error::Expired)),
        "{:?}",
        r.server.err()
    );
    // TLS 1.3: the client finished first and learns of the refusal on its transport.
    assert!(
        matches!(r.client, Err(Error::AlertReceived(_))),
        "{:?}",
        r.client.err()
    );
}

#[test]
fn peer_id_mismatch_carries_the_actual_peer() {
    let (a, b, c) = (config(1), config(2), config(3));
    let r = whole(&a, &b, Some(c.local_peer_id()));
    match r.client {
        Err(Error::PeerIdMismatch { expected, actual }) => {
            assert_eq!(*expected, c.local_peer_id());
            assert_eq!(*actual, b.local_peer_id());
        }
        other => panic!("{:?}", other.err()),
    }
    assert!(matches!(
        r.server,
        Err(Error::AlertReceived(rustls::AlertDescription::AccessDenied))
    ));
    // The client refused before sending its certificate: the server never saw it.
    assert!(r.to_server.len() < 600, "{}", r.to_server.len());
}

#[test]
fn remote_with_our_own_identity_is_refused() {
    let (a, b) = (config(1), config(1));
    let r = whole(&a, &b, None);
    assert!(matches!(r.client, Err(Error::LocalPeerId(p)) if p == a.local_peer_id()));
}

#[test]
fn server_refuses_client_without_certificate() {
    let server = config(2);
    let mut client_config = rustls::ClientConfig::builder_with_details(
        Arc::new(provider::provider()),
        Arc::new(provider::CallerTime),
    )
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(provider::Verifier))
    .with_no_client_auth();
    client_config.alpn_protocols = vec![ALPN_LIBP2P.to_vec()];
    let a = config(1);
    let mut ctx = Some(a.context(NOW, None));
    let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into());
    let conn = provider::with_context(&mut ctx, || {
        rustls::ClientConnection::new(Arc::new(client_config), name)
    })
    .unwrap();
    let mut c = Handshake::start(rustls::Connection::Client(conn), ctx).unwrap();
    let mut s = Handshake::server(&server, NOW).unwrap();
    let mut wire = BytesMut::new();
    let mut result = Ok(());
    for _ in 0..3 {
        c.poll_transmit(&mut wire);
        result = s.handle_input(NOW, &mut wire);
        if result.is_err() {
            break;
        }
        s.poll_transmit(&mut wire);
        c.handle_input(NOW, &mut wire).unwrap();
    }
    assert!(matches!(result, Err(Error::NoCertificate)), "{result:?}");
}

#[test]
fn garbage_is_not_tls() {
    let b = config(2);
    let mut s = Handshake::server(&b, NOW).unwrap();
    let mut input = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
    assert!(matches!(
        s.handle_input(NOW, &mut input),
        Err(Error::NotTlsRecord {
            content_type: b'G',
            ..
        })
    ));
    assert!(matches!(
        s.handle_input(NOW, &mut input),
        Err(Error::Failed)
    ));
    // A record header of a wrong version.
    let mut s = Handshake::server(&b, NOW).unwrap();
    let mut input = BytesMut::from(&[22, 0x02, 0x00, 0x00, 0x01][..]);
    assert!(matches!(
        s.handle_input(NOW, &mut input),
        Err(Error::NotTlsRecord {
            content_type: 22,
            version: 0x0200
        })
    ));
    // A well-framed record that is no ClientHello.
    let mut s = Handshake::server(&b, NOW).unwrap();
    let mut input = BytesMut::from(&[22, 3, 1, 0, 4, 0xff, 0, 0, 0][..]);
    assert!(matches!(
        s.handle_input(NOW, &mut input),
        Err(Error::InvalidMessage(_)) | Err(Error::Tls(_))
    ));
    // rustls queued an alert for the peer.
    assert!(s.poll_transmit(&mut BytesMut::new()).is_some());
}

#[test]
fn oversized_record_is_refused_before_its_body() {
    let b = config(2);
    let mut s = Handshake::server(&b, NOW).unwrap();
    let len = (MAX_RECORD_LEN + 1) as u16;
    let mut input = BytesMut::from(&[22, 3, 1, (len >> 8) as u8, len as u8][..]);
    assert!(matches!(
        s.handle_input(NOW, &mut input),
        Err(Error::RecordTooLarge { len }) if len == MAX_RECORD_LEN + 1
    ));
    // Exactly the limit is waited for.
    let mut s = Handshake::server(&b, NOW).unwrap();
    let len = MAX_RECORD_LEN as u16;
    let mut input = BytesMut::from(&[22, 3, 1, (len >> 8) as u8, len as u8][..]);
    s.handle_input(NOW, &mut input).unwrap();
    assert_eq!(input.len(), 5);
}

#[test]
fn endless_handshake_is_bounded() {
    // A ClientHello announcing 65000 bytes, streamed in 16 KiB fragments: rustls would wait
    // for all of it; we stop at MAX_HANDSHAKE_INPUT.
    let b = config(2);
    let mut s = Handshake::server(&b, NOW).unwrap();
    let mut input = BytesMut::new();
    let mut first = vec![1u8, 0x00, 0xfd, 0xe8];
    first.resize(MAX_PLAINTEXT, 0);
    let record = |body: &[u8]| {
        let mut r = vec![22, 3, 1, (body.len() >> 8) as u8, body.len() as u8];
        r.extend_from_slice(body);
        r
    };
    input.extend_from_slice(&record(&first));
    let mut result = s.handle_input(NOW, &mut input);
    let mut fed = 1;
    while result.is_ok() && fed < 8 {
        input.extend_from_slice(&record(&[0; MAX_PLAINTEXT]));
        result = s.handle_input(NOW, &mut input);
        fed += 1;
    }
    assert!(
        matches!(result, Err(Error::HandshakeTooLarge { len }) if len > MAX_HANDSHAKE_INPUT),
        "{result:?}"
    );
    assert_eq!(fed, 4);
}

#[test]
fn into_transport_misuse() {
    let (a, b) = (config(1), config(2));
    let c = Handshake::client(&a, None, NOW).unwrap();
    assert!(matches!(
        c.into_transport(),
        Err(Error::UnsentHandshakeData)
    ));
    let mut c = Handshake::client(&a, None, NOW).unwrap();
    c.poll_transmit(&mut BytesMut::new());
    assert!(matches!(c.into_transport(), Err(Error::NotFinished)));
    let s = Handshake::server(&b, NOW).unwrap();
    assert!(matches!(s.into_transport(), Err(Error::NotFinished)));
}

// ---- transport ----

fn transports() -> (Transport, Transport) {
    let (a, b) = (config(1), config(2));
    let r = whole(&a, &b, None);
    (r.client.unwrap().0, r.server.unwrap().0)
}

#[test]
fn data_right_after_the_handshake_stays_for_the_transport() {
    let (a, b) = (config(1), config(2));
    let r = run(&a, &b, None, b"early data", || usize::MAX);
    assert_eq!(r.server_got, b"early data");
}

#[test]
fn large_writes_are_split_into_records_and_partial_records_wait() {
    let (mut tc, mut ts) = transports();
    let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let mut wire = BytesMut::new();
    tc.encrypt(&data, &mut wire).unwrap();
    assert_eq!(wire.len(), data.len() + 7 * 22); // ceil(100000 / 16384) = 7 records
    let mut got = Vec::new();
    let mut input = BytesMut::new();
    for piece in wire.chunks(1000) {
        input.extend_from_slice(piece);
        while let Some(Received::Data(d)) = ts.decrypt(&mut input).unwrap() {
            assert!(d.len() <= MAX_PLAINTEXT);
            got.extend_from_slice(&d);
        }
        assert!(input.len() < MAX_RECORD_LEN + 5);
    }
    assert_eq!(got, data);
    assert!(input.is_empty());
}

#[test]
fn tampered_and_oversized_records_fail_the_transport() {
    let (a, b) = (config(1), config(2));
    let r = whole(&a, &b, None);
    let (mut tc, mut ts) = (r.client.unwrap().0, r.server.unwrap().0);
    let mut wire = BytesMut::new();
    tc.encrypt(b"secret", &mut wire).unwrap();
    wire[8] ^= 0x80;
    assert!(matches!(
        ts.decrypt(&mut wire),
        Err(Error::Tls(rustls::Error::DecryptError))
    ));
    assert!(ts.is_failed());
    assert!(matches!(ts.decrypt(&mut wire), Err(Error::Failed)));
    // The alert for the peer is queued.
    assert!(ts.poll_transmit(&mut BytesMut::new()).is_some());

    let mut big = BytesMut::from(&[23, 3, 3, 0x41, 0x01][..]);
    assert!(matches!(
        tc.decrypt(&mut big),
        Err(Error::RecordTooLarge { len: 0x4101 })
    ));
}

#[test]
fn close_notify_ends_the_stream_and_later_bytes_stay() {
    let (a, b) = (config(1), config(2));
    let r = whole(&a, &b, None);
    let (mut tc, mut ts) = (r.client.unwrap().0, r.server.unwrap().0);
    let mut wire = BytesMut::new();
    tc.close(&mut wire).unwrap();
    tc.close(&mut wire).unwrap(); // idempotent
    wire.extend_from_slice(b"after close");
    assert_eq!(ts.decrypt(&mut wire).unwrap(), Some(Received::Closed));
    assert_eq!(&wire[..], b"after close");
    // The server may still send.
    let mut back = BytesMut::new();
    ts.encrypt(b"bye", &mut back).unwrap();
    assert_eq!(
        tc.decrypt(&mut back).unwrap(),
        Some(Received::Data(BytesMut::from(&b"bye"[..])))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Feeding handshake and transport bytes in random chunks (down to one byte) gives the
    /// same transcripts, outcomes and data as delivering everything at once.
    #[test]
    fn chunking_invariance(
        chunks in proptest::collection::vec(1usize..64, 1..64),
        muxers in any::<bool>(),
        data in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        let mk = |seed: u8| {
            let c = config(seed);
            if muxers { c.with_muxers(vec![YAMUX.into()]).unwrap() } else { c }
        };
        let (a, b) = (mk(1), mk(2));
        let whole = run(&a, &b, Some(b.local_peer_id()), &data, || usize::MAX);
        let (a, b) = (mk(1), mk(2));
        let mut i = 0;
        let chunked = run(&a, &b, Some(b.local_peer_id()), &data, || {
            i += 1;
            chunks[i % chunks.len()]
        });
        prop_assert_eq!(&whole.to_server, &chunked.to_server);
        prop_assert_eq!(&whole.to_client, &chunked.to_client);
        prop_assert_eq!(&whole.server_got, &data);
        prop_assert_eq!(&chunked.server_got, &data);
        let (_, wo) = whole.client.unwrap();
        let (_, co) = chunked.client.unwrap();
        prop_assert_eq!(&wo, &co);
        prop_assert_eq!(whole.server.unwrap().1, chunked.server.unwrap().1);
    }
}

#[test]
fn one_byte_chunks() {
    let (a, b) = (config(1), config(2));
    let whole = run(&a, &b, None, b"tail", || usize::MAX);
    let (a, b) = (config(1), config(2));
    let bytes = run(&a, &b, None, b"tail", || 1);
    assert_eq!(whole.to_server, bytes.to_server);
    assert_eq!(whole.to_client, bytes.to_client);
    assert_eq!(bytes.server_got, b"tail");
}
