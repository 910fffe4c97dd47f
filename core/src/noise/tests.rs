use bytes::BytesMut;
use libp2p_identity::{Keypair, PeerId};
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, RngCore, SeedableRng};

use super::payload::{NoiseExtensions, NoiseHandshakePayload};
use super::*;
use prost::Message as _;

pub(crate) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn key(seed: u8) -> Keypair {
    Keypair::ed25519_from_bytes([seed; 32]).unwrap()
}

fn config(seed: u8) -> Config {
    Config::new(key(seed), [seed; 32]).unwrap()
}

const YAMUX: &str = "/yamux/1.0.0";

/// Everything one handshake run produced.
#[derive(Debug)]
struct Run {
    to_resp: Vec<u8>,
    to_init: Vec<u8>,
    init: Result<(Transport, Outcome), Error>,
    resp: Result<(Transport, Outcome), Error>,
    /// Bytes left in the responder's input (pipelined data after msg3).
    resp_leftover: Vec<u8>,
}

/// Runs a handshake in memory; `chunk` picks how many bytes of the pending wire to deliver
/// next (at least one). `extra` is appended by the initiator right after message 3.
fn run_with(
    a: &Config,
    b: &Config,
    expected: Option<PeerId>,
    extra: &[u8],
    mut chunk: impl FnMut(usize) -> usize,
) -> Run {
    let mut init = Handshake::initiator(a, expected).unwrap();
    let mut resp = Handshake::responder(b).unwrap();
    let (mut wire_ir, mut wire_ri) = (BytesMut::new(), BytesMut::new());
    let (mut in_r, mut in_i) = (BytesMut::new(), BytesMut::new());
    let (mut to_resp, mut to_init) = (Vec::new(), Vec::new());
    let (mut err_i, mut err_r) = (None, None);
    let mut extra_sent = false;
    for _ in 0..100_000 {
        if err_i.is_none() {
            let before = wire_ir.len();
            while init.poll_transmit(&mut wire_ir).is_some() {}
            if init.is_finished() && !extra_sent {
                wire_ir.extend_from_slice(extra);
                extra_sent = true;
            }
            to_resp.extend_from_slice(&wire_ir[before..]);
        }
        if err_r.is_none() {
            let before = wire_ri.len();
            while resp.poll_transmit(&mut wire_ri).is_some() {}
            to_init.extend_from_slice(&wire_ri[before..]);
        }
        let mut progressed = false;
        if !wire_ir.is_empty() && err_r.is_none() {
            let n = chunk(wire_ir.len()).clamp(1, wire_ir.len());
            in_r.extend_from_slice(&wire_ir.split_to(n));
            if let Err(e) = resp.handle_input(&mut in_r) {
                err_r = Some(e);
            }
            progressed = true;
        }
        if !wire_ri.is_empty() && err_i.is_none() {
            let n = chunk(wire_ri.len()).clamp(1, wire_ri.len());
            in_i.extend_from_slice(&wire_ri.split_to(n));
            if let Err(e) = init.handle_input(&mut in_i) {
                err_i = Some(e);
            }
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    Run {
        to_resp,
        to_init,
        init: match err_i {
            Some(e) => Err(e),
            None => init.into_transport(),
        },
        resp: match err_r {
            Some(e) => Err(e),
            None => resp.into_transport(),
        },
        resp_leftover: in_r.to_vec(),
    }
}

fn run(a: &Config, b: &Config, expected: Option<PeerId>) -> Run {
    run_with(a, b, expected, b"", |n| n)
}

fn vector_configs() -> (Config, Config) {
    let init_id = Keypair::ed25519_from_bytes(hex(
        "7e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d",
    ))
    .unwrap();
    let resp_id = Keypair::ed25519_from_bytes(hex(
        "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
    ))
    .unwrap();
    let a = Config::with_fixed_keys_for_testing(init_id, [0x11; 32], [0x22; 32])
        .unwrap()
        .with_muxers(vec![YAMUX.into()]);
    let b = Config::with_fixed_keys_for_testing(resp_id, [0x33; 32], [0x44; 32])
        .unwrap()
        .with_muxers(vec![YAMUX.into()]);
    (a, b)
}

const VEC_MSG1: &str = "00200faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20";
const VEC_MSG2: &str = "00d8ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c1fff
  3e6b5cda1c2d8029877d73fad62823946ccd0c5da35c129100f43d33a59cf19e
  a8fcdcc0e3e57a6099ef8d8c471633442810f7b53910cdb568608dceb335efe5
  9e99cd72a7e3f71f051074f0f30d8ec0596ba171c53aa7bb6d6cff0a53f2c69c
  3b98b399af732ddd8a4a736a09e3cddd2e6ecd51dabdd1a4f6c487ba59f408c8
  3d2c3501f722dbd6473392aef49acd9827b423d58ce4ed4d5152e02de5f6ec38
  d2feae8b1261809b01688bbc64c353ea344802bfef9bf7b7632e";
const VEC_MSG3: &str = "00b8f4e4988e97bdcbf0f799d02dd2242624bda72d200e97e322c4f723213896
  a31e6ca4a149b79d24e5536f79dea6184e5ff12958cf4fae33dc7cc01e0b0926
  c339a132aa50eb838c843ab9ae222208e6f96a090e2b5c9caff5050c9cd53507
  02b99f25fb5f3de39b10866b126eba41d4fa2630eb7f70f3e3fce8c871bd932b
  7fc8b59f485ad3969ea774aa2df5c3e357829d0a8f860e7976e3cb53c556766e
  9dbdb180b847a167b49fa02913799d963d54800797961b0c5259";

#[test]
fn vector_b_payload_encodings() {
    let (a, b) = vector_configs();
    let payload2 = hex(
        "0a240801122079b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3
        910bad0496641240de2b99931398acf316c7b60a94b85ba87593408c32b61fef
        7c1b62bcb74efee9aa5367f8470c5934331004eeb2b45be50c1f793818c48725
        1fb9b897e87be403220e120c2f79616d75782f312e302e30",
    );
    let payload3 = hex(
        "0a24080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e
        42d474fce27e1240a32c5aaa2b9fd56ceb93f81f7dfaef0e32c2a504eee17d4d
        c53911da77267942bdf29f2336f2e33b0c45d8c687fec4015321e8d984e8eb71
        a369f6352664960d220e120c2f79616d75782f312e302e30",
    );
    assert_eq!(b.encode_payload().unwrap(), payload2);
    assert_eq!(a.encode_payload().unwrap(), payload3);
    assert_eq!(
        a.static_public_key(),
        &hex("7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13")[..]
    );
    let decoded = NoiseHandshakePayload::decode(&payload2[..]).unwrap();
    assert_eq!(
        decoded.extensions.unwrap().stream_muxers,
        vec![YAMUX.to_string()]
    );
}

#[test]
fn vector_b_full_handshake() {
    let (a, b) = vector_configs();
    let init_peer: PeerId = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
        .parse()
        .unwrap();
    let resp_peer: PeerId = "12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf"
        .parse()
        .unwrap();
    let mut init = Handshake::initiator(&a, Some(resp_peer)).unwrap();
    let mut resp = Handshake::responder(&b).unwrap();

    let mut msg1 = BytesMut::new();
    init.poll_transmit(&mut msg1).unwrap();
    assert_eq!(&msg1[..], &hex(VEC_MSG1)[..]);
    resp.handle_input(&mut msg1).unwrap();
    let mut msg2 = BytesMut::new();
    resp.poll_transmit(&mut msg2).unwrap();
    assert_eq!(&msg2[..], &hex(VEC_MSG2)[..]);
    init.handle_input(&mut msg2).unwrap();
    let mut msg3 = BytesMut::new();
    init.poll_transmit(&mut msg3).unwrap();
    assert_eq!(&msg3[..], &hex(VEC_MSG3)[..]);
    resp.handle_input(&mut msg3).unwrap();
    let hash = hex("a4e75811206b07c6f2984318e8fe7eeccf905e1e5c62b79c813877d8309262e0");
    assert_eq!(init.handshake_hash(), &hash[..]);
    assert_eq!(resp.handshake_hash(), &hash[..]);

    let (mut ti, oi) = init.into_transport().unwrap();
    let (mut tr, or) = resp.into_transport().unwrap();
    assert_eq!(oi.remote_peer, resp_peer);
    assert_eq!(or.remote_peer, init_peer);
    assert_eq!(oi.muxer.as_deref(), Some(YAMUX));
    assert_eq!(or.muxer.as_deref(), Some(YAMUX));

    let mut wire = BytesMut::new();
    ti.encrypt(b"hello", &mut wire).unwrap();
    assert_eq!(
        &wire[..],
        &hex("00154f23d4cceed53e005a02bcf1d61ad3d8bb14b64f64")[..]
    );
    assert_eq!(&tr.decrypt(&mut wire).unwrap().unwrap()[..], b"hello");
    tr.encrypt(b"world", &mut wire).unwrap();
    assert_eq!(
        &wire[..],
        &hex("00150ff17e24cec34aa3a376b974c8e8519dc15d63ffa9")[..]
    );
    assert_eq!(&ti.decrypt(&mut wire).unwrap().unwrap()[..], b"world");
}

/// Vector A (cacophony) through the same resolver setup: validates the raw Noise layer.
#[test]
fn vector_a_raw_noise() {
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse().unwrap();
    let prologue = hex("4a6f686e2047616c74");
    let is = hex("e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1");
    let ie = hex("893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a");
    let rs = hex("4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893");
    let re = hex("bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b");
    let mut i = snow::Builder::new(params.clone())
        .local_private_key(&is)
        .unwrap()
        .prologue(&prologue)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&ie)
        .build_initiator()
        .unwrap();
    let mut r = snow::Builder::new(params)
        .local_private_key(&rs)
        .unwrap()
        .prologue(&prologue)
        .unwrap()
        .fixed_ephemeral_key_for_testing_only(&re)
        .build_responder()
        .unwrap();
    let mut buf = [0u8; 1024];
    let mut out = [0u8; 1024];
    let steps = [
        ("4c756477696720766f6e204d69736573", "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79444c756477696720766f6e204d69736573"),
        ("4d757272617920526f746862617264", "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884381cbad1f276e038c48378ffce2b65285e08d6b68aaa3629a5a8639392490e5b9bd5269c2f1e4f488ed8831161f19b7815528f8982ffe09be9b5c412f8a0db50f8814c7194e83f23dbd8d162c9326ad"),
        ("462e20412e20486179656b", "c7195ffacac1307ff99046f219750fc47693e23c3cb08b89c2af808b444850a80ae475b9df0f169ae80a89be0865b57f58c9fea0d4ec82a286427402f113e4b6ae769a1d95941d49b25030"),
    ];
    for (n, (payload, ct)) in steps.iter().enumerate() {
        let (w, rd) = if n % 2 == 0 {
            (&mut i, &mut r)
        } else {
            (&mut r, &mut i)
        };
        let len = w.write_message(&hex(payload), &mut buf).unwrap();
        assert_eq!(&buf[..len], &hex(ct)[..]);
        let plen = rd.read_message(&buf[..len], &mut out).unwrap();
        assert_eq!(&out[..plen], &hex(payload)[..]);
    }
    assert_eq!(
        i.get_handshake_hash(),
        &hex("c8e5f64e846193be2a834104c2a009868d6c9f3bd3c186299888b488b2f1f58e")[..]
    );
    let (i2r, r2i) = i.dangerously_get_raw_split();
    let mut ti = Transport::new(&i2r, &r2i).unwrap();
    let mut tr = Transport::new(&r2i, &i2r).unwrap();
    let mut wire = BytesMut::new();
    tr.encrypt(&hex("4361726c204d656e676572"), &mut wire)
        .unwrap();
    assert_eq!(
        &wire[2..],
        &hex("96763ed773f8e47bb3712f0e29b3060ffc956ffc146cee53d5e1df")[..]
    );
    ti.decrypt(&mut wire).unwrap().unwrap();
    ti.encrypt(&hex("4a65616e2d426170746973746520536179"), &mut wire)
        .unwrap();
    assert_eq!(
        &wire[2..],
        &hex("3e40f15f6f3a46ae446b253bf8b1d9ffb6ed9b174d272328ff91a7e2e5c79c07f5")[..]
    );
}

#[test]
fn handshake_both_roles_and_leftover_bytes_kept() {
    let (a, b) = (config(1), config(2));
    let r = run_with(&a, &b, Some(b.local_peer_id()), b"pipelined", |n| n);
    let (mut ti, oi) = r.init.unwrap();
    let (mut tr, or) = r.resp.unwrap();
    assert_eq!(oi.remote_peer, b.local_peer_id());
    assert_eq!(or.remote_peer, a.local_peer_id());
    assert_eq!(oi.remote_key, key(2).public());
    assert_eq!(oi.muxer, None);
    assert_eq!(r.resp_leftover, b"pipelined");
    // msg1 is exactly `00 20 ‖ e`.
    assert_eq!(&r.to_resp[..2], &[0x00, 0x20]);
    let mut wire = BytesMut::new();
    tr.encrypt(b"pong", &mut wire).unwrap();
    assert_eq!(&ti.decrypt(&mut wire).unwrap().unwrap()[..], b"pong");
}

/// One identity of each libp2p key type (RSA 2048 and 4096 bits, from the test kit's keys).
pub(crate) fn every_key_type() -> Vec<(&'static str, Keypair)> {
    use plait_testkit::rsa_keys::{RSA_2048, RSA_4096};
    vec![
        ("ed25519", key(9)),
        ("secp256k1", Keypair::generate_secp256k1()),
        ("ecdsa", Keypair::generate_ecdsa()),
        (
            "rsa2048",
            Keypair::rsa_from_pkcs8(&mut RSA_2048.to_vec()).unwrap(),
        ),
        (
            "rsa4096",
            Keypair::rsa_from_pkcs8(&mut RSA_4096.to_vec()).unwrap(),
        ),
    ]
}

#[test]
fn every_key_type_authenticates_in_both_roles() {
    let keys = every_key_type();
    for (name_a, a) in &keys {
        for (name_b, b) in &keys {
            let (ca, cb) = (
                Config::new(a.clone(), [1; 32]).unwrap(),
                Config::new(b.clone(), [2; 32]).unwrap(),
            );
            if ca.local_peer_id() == cb.local_peer_id() {
                continue;
            }
            let r = run(&ca, &cb, Some(cb.local_peer_id()));
            let (_, oi) = r
                .init
                .unwrap_or_else(|e| panic!("{name_a} -> {name_b}: {e}"));
            let (_, or) = r
                .resp
                .unwrap_or_else(|e| panic!("{name_a} -> {name_b}: {e}"));
            assert_eq!(oi.remote_key, b.public(), "{name_a} -> {name_b}");
            assert_eq!(or.remote_key, a.public(), "{name_a} -> {name_b}");
            assert_eq!(or.remote_peer, a.public().to_peer_id());
        }
    }
}

#[test]
fn handshakes_from_one_config_use_fresh_ephemerals() {
    let a = config(1);
    let mut out1 = BytesMut::new();
    let mut out2 = BytesMut::new();
    Handshake::initiator(&a, None)
        .unwrap()
        .poll_transmit(&mut out1);
    Handshake::initiator(&a, None)
        .unwrap()
        .poll_transmit(&mut out2);
    assert_ne!(out1, out2);
    // ... yet the same seed reproduces the same sequence.
    let mut out3 = BytesMut::new();
    Handshake::initiator(&config(1), None)
        .unwrap()
        .poll_transmit(&mut out3);
    assert_eq!(out1, out3);
}

#[test]
fn wrong_expected_peer_fails_before_msg3() {
    let (a, b, c) = (config(1), config(2), config(3));
    let r = run(&a, &b, Some(c.local_peer_id()));
    match r.init {
        Err(Error::PeerIdMismatch { expected, actual }) => {
            assert_eq!(*expected, c.local_peer_id());
            assert_eq!(*actual, b.local_peer_id());
        }
        other => panic!("{other:?}"),
    }
    // Only message 1 reached the responder: our identity was never revealed.
    assert_eq!(r.to_resp.len(), 34);
    assert!(matches!(r.resp, Err(Error::NotFinished)));
}

#[test]
fn tampered_signature_rejected_by_responder() {
    let (mut a, b) = (config(1), config(2));
    let last = a.signature.len() - 1;
    a.signature[last] ^= 1;
    let r = run(&a, &b, None);
    assert!(matches!(r.resp, Err(Error::BadSignature)), "{:?}", r.resp);
}

#[test]
fn tampered_signature_rejected_by_initiator() {
    let (a, mut b) = (config(1), config(2));
    b.signature[0] ^= 0x80;
    let r = run(&a, &b, None);
    assert!(matches!(r.init, Err(Error::BadSignature)), "{:?}", r.init);
}

#[test]
fn swapped_static_key_rejected() {
    // The responder signs one static key but runs the handshake with another.
    let (a, mut b) = (config(1), config(2));
    b.static_secret = [0x55; 32];
    let r = run(&a, &b, None);
    assert!(matches!(r.init, Err(Error::BadSignature)), "{:?}", r.init);
    // Another peer's (valid) signature does not fit our static key either.
    let (mut a, b) = (config(1), config(2));
    let c = Config::new(key(1), [9; 32]).unwrap();
    a.signature = c.signature.clone();
    let r = run(&a, &b, None);
    assert!(matches!(r.resp, Err(Error::BadSignature)), "{:?}", r.resp);
}

#[test]
fn self_connection_rejected() {
    let (a, b) = (config(1), Config::new(key(1), [7; 32]).unwrap());
    let r = run(&a, &b, None);
    assert!(matches!(r.init, Err(Error::LocalPeerId(_))), "{:?}", r.init);
}

#[test]
fn prologue_mismatch_fails_at_msg2() {
    let a = config(1).with_prologue(b"x".to_vec());
    let b = config(2);
    let r = run(&a, &b, None);
    assert!(matches!(r.init, Err(Error::Noise(_))), "{:?}", r.init);
}

#[test]
fn early_muxer_agreement_and_fallback() {
    let m = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases: &[(&[&str], &[&str], Option<&str>)] = &[
        (
            &["/yamux/1.0.0", "/mplex/6.7.0"],
            &["/mplex/6.7.0", "/yamux/1.0.0"],
            Some("/yamux/1.0.0"),
        ),
        (
            &["/mplex/6.7.0", "/yamux/1.0.0"],
            &["/yamux/1.0.0", "/mplex/6.7.0"],
            Some("/mplex/6.7.0"),
        ),
        (&["/yamux/1.0.0"], &["/mplex/6.7.0"], None),
        (&["/yamux/1.0.0"], &[], None),
        (&[], &["/yamux/1.0.0"], None),
    ];
    for (i_list, r_list, want) in cases {
        let a = config(1).with_muxers(m(i_list));
        let b = config(2).with_muxers(m(r_list));
        let r = run(&a, &b, None);
        assert_eq!(
            r.init.unwrap().1.muxer.as_deref(),
            *want,
            "{i_list:?} {r_list:?}"
        );
        assert_eq!(r.resp.unwrap().1.muxer.as_deref(), *want);
    }
    // A list longer than MAX_REMOTE_MUXERS is ignored.
    let mut long: Vec<String> = (0..MAX_REMOTE_MUXERS).map(|i| format!("/m/{i}")).collect();
    long.push(YAMUX.into());
    let a = config(1).with_muxers(vec![YAMUX.into()]);
    let b = config(2).with_muxers(long);
    let r = run(&a, &b, None);
    assert_eq!(r.init.unwrap().1.muxer, None);
    assert_eq!(r.resp.unwrap().1.muxer, None);
}

#[test]
fn oversized_local_payload_rejected() {
    let a = config(1).with_muxers(vec!["x".repeat(70_000)]);
    assert!(matches!(
        Handshake::responder(&a),
        Err(Error::PayloadTooLarge { .. })
    ));
}

#[test]
fn non_empty_msg1_payload_rejected() {
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse().unwrap();
    let mut hs = snow::Builder::new(params)
        .local_private_key(&[1; 32])
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut buf = [0u8; 100];
    let n = hs.write_message(b"early", &mut buf).unwrap();
    let mut input = BytesMut::new();
    input.extend_from_slice(&(n as u16).to_be_bytes());
    input.extend_from_slice(&buf[..n]);
    let mut resp = Handshake::responder(&config(2)).unwrap();
    assert!(matches!(
        resp.handle_input(&mut input),
        Err(Error::NonEmptyFirstPayload { len: 5 })
    ));
    assert!(matches!(resp.handle_input(&mut input), Err(Error::Failed)));
}

/// Builds the responder's msg2 carrying an arbitrary payload, to test payload validation.
fn msg2_with_payload(payload: &[u8], msg1: &[u8]) -> BytesMut {
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse().unwrap();
    let mut hs = snow::Builder::new(params)
        .local_private_key(&[3; 32])
        .unwrap()
        .build_responder()
        .unwrap();
    let mut buf = vec![0u8; 65535];
    hs.read_message(msg1.get(2..).unwrap(), &mut buf).unwrap();
    let n = hs.write_message(payload, &mut buf).unwrap();
    let mut out = BytesMut::new();
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&buf[..n]);
    out
}

#[test]
fn malformed_payloads_rejected_by_initiator() {
    let good_key = key(2).public().encode_protobuf();
    let sig = vec![0u8; 64];
    type Check = fn(&Error) -> bool;
    let cases: Vec<(Vec<u8>, Check)> = vec![
        (vec![0xff, 0xff, 0xff], |e| {
            matches!(e, Error::MalformedPayload(_))
        }),
        (Vec::new(), |e| matches!(e, Error::MissingIdentityKey)),
        (
            NoiseHandshakePayload {
                identity_key: Some(vec![0x08, 0x09, 0x12, 0x01, 0x00]),
                identity_sig: Some(sig.clone()),
                extensions: None,
            }
            .encode_to_vec(),
            |e| matches!(e, Error::InvalidKey(_)),
        ),
        (
            NoiseHandshakePayload {
                identity_key: Some(good_key.clone()),
                identity_sig: None,
                extensions: None,
            }
            .encode_to_vec(),
            |e| matches!(e, Error::MissingSignature),
        ),
        (
            NoiseHandshakePayload {
                identity_key: Some(good_key.clone()),
                identity_sig: Some(sig.clone()),
                extensions: Some(NoiseExtensions {
                    webtransport_certhashes: vec![],
                    stream_muxers: vec![YAMUX.into()],
                }),
            }
            .encode_to_vec(),
            |e| matches!(e, Error::BadSignature),
        ),
    ];
    for (payload, check) in cases {
        let mut init = Handshake::initiator(&config(1), None).unwrap();
        let mut msg1 = BytesMut::new();
        init.poll_transmit(&mut msg1).unwrap();
        let mut msg2 = msg2_with_payload(&payload, &msg1);
        let err = init.handle_input(&mut msg2).unwrap_err();
        assert!(check(&err), "{err:?}");
        assert!(init.poll_transmit(&mut BytesMut::new()).is_none());
    }
}

#[test]
fn garbage_at_every_stage() {
    let (a, b) = (config(1), config(2));
    let good = run(&a, &b, None);
    let msg1 = &good.to_resp[..34];
    let msg3 = &good.to_resp[34..];
    let msg2 = &good.to_init[..];
    // Flip every byte position of each message body (sampled) → typed error, never panic.
    for pos in (2..msg1.len()).step_by(3) {
        // msg1 is unauthenticated: a flipped `e` only breaks msg3 later, never panics.
        let mut m = BytesMut::from(msg1);
        m[pos] ^= 1;
        let mut resp = Handshake::responder(&b).unwrap();
        let _ = resp.handle_input(&mut m);
    }
    for pos in (2..msg2.len()).step_by(7) {
        let mut init = Handshake::initiator(&a, None).unwrap();
        init.poll_transmit(&mut BytesMut::new());
        let mut m = BytesMut::from(msg2);
        m[pos] ^= 1;
        assert!(init.handle_input(&mut m).is_err(), "msg2 flip at {pos}");
    }
    for pos in (2..msg3.len()).step_by(7) {
        let mut resp = Handshake::responder(&b).unwrap();
        resp.handle_input(&mut BytesMut::from(msg1)).unwrap();
        let mut m = BytesMut::from(msg3);
        m[pos] ^= 1;
        assert!(resp.handle_input(&mut m).is_err(), "msg3 flip at {pos}");
    }
    // Random garbage in place of each message.
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let len = rng.gen_range(0..300usize);
        let mut g = vec![0u8; len];
        rng.fill_bytes(&mut g);
        let mut resp = Handshake::responder(&b).unwrap();
        let _ = resp.handle_input(&mut BytesMut::from(&g[..]));
        let mut init = Handshake::initiator(&a, None).unwrap();
        let _ = init.handle_input(&mut BytesMut::from(&g[..]));
        let mut resp = Handshake::responder(&b).unwrap();
        resp.handle_input(&mut BytesMut::from(msg1)).unwrap();
        let _ = resp.handle_input(&mut BytesMut::from(&g[..]));
    }
}

#[test]
fn truncated_and_oversize_handshake_frames() {
    let b = config(2);
    // Truncated: nothing consumed, no progress, no error.
    let mut resp = Handshake::responder(&b).unwrap();
    let mut m = BytesMut::from(&[0x00, 0x20, 1, 2, 3][..]);
    resp.handle_input(&mut m).unwrap();
    assert_eq!(m.len(), 5);
    assert!(resp.poll_transmit(&mut BytesMut::new()).is_none());
    // Short frame: a 3-byte msg1 cannot hold `e`.
    let mut m = BytesMut::from(&[0x00, 0x03, 1, 2, 3][..]);
    assert!(matches!(resp.handle_input(&mut m), Err(Error::Noise(_))));
    // Maximum-size frame (65535) as msg1: a non-empty payload.
    let mut resp = Handshake::responder(&b).unwrap();
    let mut m = BytesMut::from(&[0xff, 0xff][..]);
    m.resize(2 + 65535, 7);
    assert!(matches!(
        resp.handle_input(&mut m),
        Err(Error::NonEmptyFirstPayload { len: 65503 })
    ));
    // Maximum-size frame as msg2.
    let mut init = Handshake::initiator(&config(1), None).unwrap();
    let mut m = BytesMut::from(&[0xff, 0xff][..]);
    m.resize(2 + 65535, 7);
    assert!(init.handle_input(&mut m).is_err());
}

#[test]
fn into_transport_misuse() {
    let init = Handshake::initiator(&config(1), None).unwrap();
    assert!(matches!(init.into_transport(), Err(Error::NotFinished)));
    // Finished but msg3 not yet drained.
    let (a, b) = (config(1), config(2));
    let mut init = Handshake::initiator(&a, None).unwrap();
    let mut resp = Handshake::responder(&b).unwrap();
    let mut w = BytesMut::new();
    init.poll_transmit(&mut w);
    resp.handle_input(&mut w).unwrap();
    resp.poll_transmit(&mut w);
    init.handle_input(&mut w).unwrap();
    assert!(init.is_finished());
    assert!(matches!(
        init.into_transport(),
        Err(Error::UnsentHandshakeData)
    ));
}

fn transports() -> (Transport, Transport) {
    let r = run(&config(1), &config(2), None);
    (r.init.unwrap().0, r.resp.unwrap().0)
}

#[test]
fn transport_auth_failure_poisons() {
    let (mut a, mut b) = transports();
    let mut w = BytesMut::new();
    a.encrypt(b"secret", &mut w).unwrap();
    w[5] ^= 1;
    assert!(matches!(b.decrypt(&mut w), Err(Error::Decrypt)));
    assert!(b.is_failed());
    a.encrypt(b"again", &mut w).unwrap();
    assert!(matches!(b.decrypt(&mut w), Err(Error::Failed)));
    assert!(matches!(b.encrypt(b"x", &mut w), Err(Error::Failed)));
}

#[test]
fn transport_frames_short_truncated_reordered() {
    let (mut a, mut b) = transports();
    // Truncated frame: Ok(None), input untouched.
    let mut w = BytesMut::new();
    a.encrypt(b"hello", &mut w).unwrap();
    let mut part = BytesMut::from(&w[..10]);
    assert!(b.decrypt(&mut part).unwrap().is_none());
    assert_eq!(part.len(), 10);
    assert!(b.decrypt(&mut BytesMut::from(&w[..1])).unwrap().is_none());
    // Frame shorter than the tag.
    let mut short = BytesMut::from(&[0x00, 0x05, 1, 2, 3, 4, 5][..]);
    assert!(matches!(
        b.decrypt(&mut short),
        Err(Error::FrameTooShort { len: 5 })
    ));
    // Reordered frames fail authentication.
    let (mut a, mut b) = transports();
    let (mut w1, mut w2) = (BytesMut::new(), BytesMut::new());
    a.encrypt(b"one", &mut w1).unwrap();
    a.encrypt(b"two", &mut w2).unwrap();
    assert!(matches!(b.decrypt(&mut w2), Err(Error::Decrypt)));
    // Empty frame (tag only) is legal.
    let (mut a, mut b) = transports();
    let mut w = BytesMut::new();
    let start = a.begin_frame(&mut w);
    a.seal_frame(&mut w, start).unwrap();
    assert_eq!(w.len(), 2 + TAG_LEN);
    assert_eq!(b.decrypt(&mut w).unwrap().unwrap().len(), 0);
}

#[test]
fn nonce_exhaustion_is_typed() {
    let (mut a, mut b) = transports();
    a.set_nonces_for_testing(u64::MAX - 1, 0);
    b.set_nonces_for_testing(0, u64::MAX - 1);
    let mut w = BytesMut::new();
    a.encrypt(b"last", &mut w).unwrap();
    assert_eq!(&b.decrypt(&mut w).unwrap().unwrap()[..], b"last");
    let before = w.len();
    assert!(matches!(
        a.encrypt(b"one more", &mut w),
        Err(Error::NonceExhausted)
    ));
    assert_eq!(w.len(), before, "no plaintext left behind");
    assert!(matches!(a.encrypt(b"x", &mut w), Err(Error::Failed)));
    // Receiving side.
    let (mut a, mut b) = transports();
    b.set_nonces_for_testing(0, u64::MAX);
    a.encrypt(b"x", &mut w).unwrap();
    assert!(matches!(b.decrypt(&mut w), Err(Error::NonceExhausted)));
}

#[test]
fn coalescing_and_zero_copy_path() {
    let (mut a, mut b) = transports();
    let small = [7u8; 100];
    let parts: Vec<&[u8]> = (0..1000).map(|_| &small[..]).collect();
    let mut w = BytesMut::new();
    a.encrypt_vectored(&parts, &mut w).unwrap();
    // 100 000 bytes → one full frame + one of 34 481 bytes.
    assert_eq!(w.len(), 100_000 + 2 * (2 + TAG_LEN));
    let f1 = b.decrypt(&mut w).unwrap().unwrap();
    let f2 = b.decrypt(&mut w).unwrap().unwrap();
    assert_eq!(
        (f1.len(), f2.len()),
        (MAX_PLAINTEXT, 100_000 - MAX_PLAINTEXT)
    );
    assert!(w.is_empty());

    // begin/seal: the caller writes straight into the buffer.
    let mut w = BytesMut::from(&b"prefix"[..]);
    let start = a.begin_frame(&mut w);
    w.extend_from_slice(b"yamux frame 1");
    w.extend_from_slice(b"yamux frame 2");
    a.seal_frame(&mut w, start).unwrap();
    let _ = w.split_to(6);
    assert_eq!(
        &b.decrypt(&mut w).unwrap().unwrap()[..],
        b"yamux frame 1yamux frame 2"
    );

    // Oversize frame: typed error, frame removed, transport still usable.
    let mut w = BytesMut::new();
    let start = a.begin_frame(&mut w);
    w.resize(2 + MAX_PLAINTEXT + 1, 0);
    assert!(matches!(
        a.seal_frame(&mut w, start),
        Err(Error::PlaintextTooLarge { len }) if len == MAX_PLAINTEXT + 1
    ));
    assert!(w.is_empty());
    assert!(matches!(
        a.seal_frame(&mut w, FrameStart { offset: 5 }),
        Err(Error::InvalidFrameStart)
    ));
    a.encrypt(b"ok", &mut w).unwrap();
    assert_eq!(&b.decrypt(&mut w).unwrap().unwrap()[..], b"ok");
}

#[test]
fn many_messages_both_directions_random_sizes() {
    let (mut a, mut b) = transports();
    let mut rng = StdRng::seed_from_u64(42);
    for round in 0..24 {
        let len = if round % 4 == 0 {
            rng.gen_range(0..=1 << 20)
        } else {
            rng.gen_range(0..70_000)
        };
        let mut msg = vec![0u8; len];
        rng.fill_bytes(&mut msg);
        let (tx, rx) = if round % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let mut wire = BytesMut::new();
        tx.encrypt(&msg, &mut wire).unwrap();
        assert_eq!(
            wire.len(),
            len + len.div_ceil(MAX_PLAINTEXT) * (2 + TAG_LEN)
        );
        // Deliver in random chunks.
        let mut input = BytesMut::new();
        let mut got = Vec::with_capacity(len);
        while !wire.is_empty() {
            let n = rng.gen_range(1..=wire.len().min(100_000));
            input.extend_from_slice(&wire.split_to(n));
            while let Some(p) = rx.decrypt(&mut input).unwrap() {
                got.extend_from_slice(&p);
            }
        }
        assert!(input.is_empty());
        assert_eq!(got, msg);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Feeding handshake bytes in random chunks (down to one byte) gives the same transcript,
    /// outcome, keys and leftover bytes as delivering everything at once.
    #[test]
    fn handshake_chunking_invariance(
        chunks in proptest::collection::vec(1usize..40, 1..64),
        muxers in any::<bool>(),
    ) {
        let mk = |seed: u8| {
            let c = config(seed);
            if muxers { c.with_muxers(vec![YAMUX.into()]) } else { c }
        };
        let (a, b) = (mk(1), mk(2));
        let whole = run_with(&a, &b, Some(b.local_peer_id()), b"after", |n| n);
        let (a, b) = (mk(1), mk(2));
        let mut i = 0;
        let chunked = run_with(&a, &b, Some(b.local_peer_id()), b"after", |_| {
            i += 1;
            chunks[i % chunks.len()]
        });
        prop_assert_eq!(&whole.to_resp, &chunked.to_resp);
        prop_assert_eq!(&whole.to_init, &chunked.to_init);
        prop_assert_eq!(&whole.resp_leftover, &chunked.resp_leftover);
        let (mut wi, wo) = whole.init.unwrap();
        let (mut ci, co) = chunked.init.unwrap();
        prop_assert_eq!(&wo, &co);
        prop_assert_eq!(whole.resp.unwrap().1, chunked.resp.unwrap().1);
        let (mut x, mut y) = (BytesMut::new(), BytesMut::new());
        wi.encrypt(b"same keys", &mut x).unwrap();
        ci.encrypt(b"same keys", &mut y).unwrap();
        prop_assert_eq!(x, y);
    }

    /// Transport frames decrypt identically however the ciphertext is chunked.
    #[test]
    fn transport_chunking_invariance(
        sizes in proptest::collection::vec(0usize..5000, 1..8),
        cut in 1usize..3000,
    ) {
        let (mut a, mut b) = transports();
        let mut wire = BytesMut::new();
        let msgs: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![n as u8; n]).collect();
        for m in &msgs { a.encrypt(m, &mut wire).unwrap(); }
        let mut input = BytesMut::new();
        let mut got = Vec::new();
        while !wire.is_empty() {
            let n = cut.min(wire.len());
            input.extend_from_slice(&wire.split_to(n));
            while let Some(p) = b.decrypt(&mut input).unwrap() { got.extend_from_slice(&p); }
        }
        prop_assert_eq!(got, msgs.concat());
    }
}
