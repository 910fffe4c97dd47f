//! Fuzz entry points for `identity` and `identify`: peer id text/binary parsing, public key
//! protobuf parsing, identify stream decoding. Each also checks round-trip invariants.

use crate::time::Instant;
use bytes::BytesMut;

use crate::identify::{self, Decoder, Kind};
use crate::identity::{self, KeyType, PublicKey};

/// Peer id parsing: `data` as binary multihash and as binary CID, and, if it is UTF-8, as
/// text. Whatever parses must survive both text forms unchanged.
pub fn peer_id_parse(data: &[u8], _now: Instant) {
    let mut parsed = vec![
        identity::peer_id_from_bytes(data),
        identity::peer_id_from_cid_bytes(data),
    ];
    if let Ok(text) = std::str::from_utf8(data) {
        parsed.push(identity::parse_peer_id(text));
    }
    for peer in parsed.into_iter().flatten() {
        let b58 = peer.to_base58();
        assert_eq!(identity::parse_peer_id(&b58), Ok(peer), "{b58}");
        let cid = identity::peer_id_to_cid_string(&peer);
        assert_eq!(identity::parse_peer_id(&cid), Ok(peer), "{cid}");
        assert_eq!(identity::peer_id_from_bytes(&peer.to_bytes()), Ok(peer));
        let _ = identity::public_key_from_peer_id(&peer);
    }
}

/// `PublicKey` protobuf parsing: strict decoding must re-encode to the same bytes, derive a
/// peer id, and agree with `libp2p-identity` on Ed25519 keys.
pub fn public_key_parse(data: &[u8], _now: Instant) {
    let Ok((key_type, key_data)) = identity::decode_public_key_protobuf(data) else {
        return;
    };
    assert_eq!(
        identity::encode_public_key_protobuf(key_type, key_data),
        data,
        "strict parse must be the deterministic encoding"
    );
    let peer = identity::peer_id_from_public_key_protobuf(data);
    match identity::decode_public_key(data) {
        Ok(key) => {
            assert_eq!(
                PublicKey::try_decode_protobuf(data).ok().as_ref(),
                Some(&key)
            );
            // Fixed-size encodings re-encode to the same bytes (DER ones may be re-encoded
            // canonically, so only these are compared).
            if matches!(key_type, KeyType::Ed25519 | KeyType::Secp256k1) {
                assert_eq!(key.encode_protobuf(), data);
                assert_eq!(peer, Ok(key.to_peer_id()));
            }
        }
        Err(_) if key_type == KeyType::Ed25519 => {
            assert!(PublicKey::try_decode_protobuf(data).is_err());
            assert!(peer.is_err());
        }
        Err(_) => {
            let peer = match peer {
                Ok(p) => p,
                Err(e) => panic!("well-formed {key_type:?} key without a peer id: {e}"),
            };
            assert_eq!(
                identity::inline_public_key_protobuf(&peer).is_some(),
                data.len() <= identity::MAX_INLINE_KEY_LENGTH
            );
        }
    }
}

/// Identify stream decoding: whole input and byte-by-byte input must agree, and a decoded
/// [`identify::Info`] must survive encode → decode (up to trimmed listen addresses).
pub fn identify_decode(data: &[u8], _now: Instant) {
    let whole = identify::decode(Kind::Push, None, data);

    let mut decoder = Decoder::new(Kind::Push, None);
    let mut input = BytesMut::new();
    let mut bytewise = Ok(());
    for &b in data {
        input.extend_from_slice(&[b]);
        bytewise = decoder.handle_input(&mut input);
        if bytewise.is_err() {
            break;
        }
    }
    let bytewise = bytewise.and_then(|()| decoder.finish(&input));
    assert_eq!(whole, bytewise, "chunking changed the result");

    let _ = identify::decode(Kind::Query, None, data);
    let Ok(info) = whole else { return };
    let mut wire = BytesMut::new();
    if identify::encode(&info, &mut wire).is_err() {
        return;
    }
    let Ok(mut again) = identify::decode(Kind::Push, None, &wire) else {
        panic!("our own encoding does not decode");
    };
    let mut expected = info;
    expected.listen_addrs.truncate(again.listen_addrs.len());
    again.listen_addrs.truncate(expected.listen_addrs.len());
    assert_eq!(again, expected, "encode/decode round trip");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Replays this module's committed seed corpora (the workspace replay test covers them
    /// too once the targets are listed in `fuzz/targets.txt`).
    #[test]
    fn seed_corpora_replay() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        type Target = fn(&[u8], Instant);
        let targets: [(&str, Target); 3] = [
            ("peer_id_parse", peer_id_parse),
            ("public_key_parse", public_key_parse),
            ("identify_decode", identify_decode),
        ];
        for (name, f) in targets {
            let dir = root.join(name);
            let mut n = 0;
            for entry in std::fs::read_dir(&dir).unwrap() {
                f(
                    &std::fs::read(entry.unwrap().path()).unwrap(),
                    plait_testkit::start(),
                );
                n += 1;
            }
            assert!(n >= 2, "{name}: {n} seeds");
        }
    }

    #[test]
    fn no_panics_on_edge_inputs() {
        for data in [
            &b""[..],
            &[0x00],
            &[0xff; 16],
            b"bafz",
            b"Qm",
            b"1",
            &[0x08, 0x01, 0x12, 0x20],
            &[
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            ],
        ] {
            peer_id_parse(data, plait_testkit::start());
            public_key_parse(data, plait_testkit::start());
            identify_decode(data, plait_testkit::start());
        }
    }

    fn seeds() -> Vec<Vec<u8>> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let mut out = Vec::new();
        for name in ["peer_id_parse", "public_key_parse", "identify_decode"] {
            for entry in std::fs::read_dir(root.join(name)).unwrap() {
                out.push(std::fs::read(entry.unwrap().path()).unwrap());
            }
        }
        out
    }

    proptest::proptest! {
        /// A poor man's fuzzer for stable test runs: mutated seeds through every target.
        #[test]
        fn mutated_seeds_do_not_panic(
            which in proptest::prelude::any::<proptest::sample::Index>(),
            edits in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>(), 0u8..4),
                0..6,
            ),
        ) {
            let all = seeds();
            let mut data = which.get(&all).clone();
            for (at, byte, op) in edits {
                let i = at.index(data.len() + 1);
                match op {
                    0 => { if let Some(b) = data.get_mut(i) { *b = byte; } }
                    1 => data.insert(i, byte),
                    2 => { data.truncate(i); }
                    _ => { if i < data.len() { data.remove(i); } }
                }
            }
            peer_id_parse(&data, plait_testkit::start());
            public_key_parse(&data, plait_testkit::start());
            identify_decode(&data, plait_testkit::start());
        }
    }
}
