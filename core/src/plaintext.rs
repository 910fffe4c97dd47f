//! `/plaintext/2.0.0`: an unauthenticated, unencrypted identity exchange for tests and
//! debugging only.
//!
//! Each side sends one `uvarint(len) ‖ Exchange { id = 1: PeerId bytes, pubkey = 2: PublicKey }`
//! message as soon as the protocol is selected (no roles), and accepts the peer's message if
//! the claimed id is the id of the sent key (rust-libp2p `libp2p-plaintext` behaviour). After
//! the exchange the connection carries raw bytes; whatever follows the peer's message stays in
//! the caller's input buffer.

use bytes::BytesMut;
use libp2p_identity::{PeerId, PublicKey};
use prost::Message as _;

use crate::varint::{self, FrameError, LengthPrefixed};

/// Multistream-select protocol id.
pub const PROTOCOL: &str = "/plaintext/2.0.0";

/// Largest `Exchange` message we accept, in bytes. The largest legitimate one carries an RSA
/// key (an 8192-bit PKIX key is about 1.1 KiB) plus a 34-byte id; 16 KiB leaves room without
/// letting a peer make us buffer much.
pub const MAX_EXCHANGE_LEN: usize = 16 * 1024;

const DECODER: LengthPrefixed = LengthPrefixed::new(MAX_EXCHANGE_LEN);

/// The `Exchange` protobuf. `pubkey` is an embedded `PublicKey` message, which is wire-identical
/// to a bytes field holding its encoding.
#[derive(Clone, PartialEq, prost::Message)]
struct Exchange {
    #[prost(bytes = "vec", optional, tag = "1")]
    id: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pubkey: Option<Vec<u8>>,
}

/// What went wrong in the exchange.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The length prefix is malformed or announces more than [`MAX_EXCHANGE_LEN`] bytes.
    #[error("bad exchange frame: {0}")]
    Frame(#[from] FrameError),
    /// The message is not a valid `Exchange` protobuf.
    #[error("malformed exchange message: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// The message carries no peer id.
    #[error("exchange carries no peer id")]
    MissingId,
    /// The message carries no public key.
    #[error("exchange carries no public key")]
    MissingKey,
    /// The peer id bytes are not a valid peer id.
    #[error("invalid peer id: {0}")]
    InvalidPeerId(#[from] libp2p_identity::ParseError),
    /// The public key is malformed or of an unsupported type.
    #[error("invalid or unsupported public key: {0}")]
    InvalidKey(#[from] libp2p_identity::DecodingError),
    /// The public key decodes but is not acceptable (an RSA key outside 2048 to 8192 bits).
    #[error("public key rejected: {0}")]
    RejectedKey(#[source] crate::identity::Error),
    /// The claimed peer id is not the id of the sent key.
    #[error("claimed peer id {claimed} does not match the key's peer id {actual}")]
    IdKeyMismatch {
        /// The id the peer claimed.
        claimed: Box<PeerId>,
        /// The id of the key it sent.
        actual: Box<PeerId>,
    },
    /// The remote is not the peer we expected.
    #[error("peer id mismatch: expected {expected}, got {actual}")]
    PeerIdMismatch {
        /// The peer we dialed.
        expected: Box<PeerId>,
        /// The peer that answered.
        actual: Box<PeerId>,
    },
    /// `into_outcome` was called before the exchange finished.
    #[error("the exchange is not finished")]
    NotFinished,
    /// An earlier error made this exchange unusable.
    #[error("used after a previous error")]
    Failed,
}

/// Configuration: the local identity's public key.
#[derive(Debug, Clone)]
pub struct Config {
    local_key: PublicKey,
}

impl Config {
    /// A configuration announcing `local_key`.
    pub fn new(local_key: PublicKey) -> Self {
        Self { local_key }
    }
}

/// What the exchange established (nothing is authenticated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The peer id the remote claimed, checked against its key.
    pub remote_peer: PeerId,
    /// The remote public key.
    pub remote_key: PublicKey,
}

/// One side of a `/plaintext/2.0.0` exchange.
#[derive(Debug)]
pub struct Plaintext {
    expected: Option<PeerId>,
    pending: BytesMut,
    outcome: Option<Outcome>,
    failed: bool,
}

impl Plaintext {
    /// Starts an exchange and queues our `Exchange` message. With `expected_peer`, any other
    /// remote is rejected ([`Error::PeerIdMismatch`]).
    pub fn new(config: &Config, expected_peer: Option<PeerId>) -> Self {
        let msg = Exchange {
            id: Some(config.local_key.to_peer_id().to_bytes()),
            pubkey: Some(config.local_key.encode_protobuf()),
        }
        .encode_to_vec();
        let mut pending = BytesMut::with_capacity(msg.len() + 3);
        varint::encode_frame(&msg, &mut pending);
        Self {
            expected: expected_peer,
            pending,
            outcome: None,
            failed: false,
        }
    }

    /// Consumes the peer's `Exchange` from the front of `input` once it is complete; a partial
    /// message and every byte after the message stay in `input`.
    pub fn handle_input(&mut self, input: &mut BytesMut) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        if self.outcome.is_some() {
            return Ok(());
        }
        let result = Self::parse(input, self.expected);
        match result {
            Ok(Some(outcome)) => self.outcome = Some(outcome),
            Ok(None) => {}
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        }
        Ok(())
    }

    fn parse(input: &mut BytesMut, expected: Option<PeerId>) -> Result<Option<Outcome>, Error> {
        let Some(msg) = DECODER.decode(input)? else {
            return Ok(None);
        };
        let msg = Exchange::decode(msg)?;
        let remote_key = PublicKey::try_decode_protobuf(&msg.pubkey.ok_or(Error::MissingKey)?)?;
        crate::identity::check_remote_key(&remote_key).map_err(Error::RejectedKey)?;
        let claimed = PeerId::from_bytes(&msg.id.ok_or(Error::MissingId)?)?;
        let actual = remote_key.to_peer_id();
        if claimed != actual {
            return Err(Error::IdKeyMismatch {
                claimed: Box::new(claimed),
                actual: Box::new(actual),
            });
        }
        if let Some(expected) = expected {
            if expected != actual {
                return Err(Error::PeerIdMismatch {
                    expected: Box::new(expected),
                    actual: Box::new(actual),
                });
            }
        }
        Ok(Some(Outcome {
            remote_peer: actual,
            remote_key,
        }))
    }

    /// Appends our queued `Exchange` to `out`; returns how many bytes, `None` if nothing.
    pub fn poll_transmit(&mut self, out: &mut BytesMut) -> Option<usize> {
        crate::buffer::drain_into(&mut self.pending, out)
    }

    /// True once our message is queued and the peer's is accepted.
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// The result, once finished.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Consumes the machine, returning the result ([`Error::NotFinished`] before that).
    pub fn into_outcome(self) -> Result<Outcome, Error> {
        self.outcome.ok_or(Error::NotFinished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p_identity::Keypair;
    use proptest::prelude::*;

    fn key(seed: u8) -> Keypair {
        Keypair::ed25519_from_bytes([seed; 32]).unwrap()
    }

    fn machine(seed: u8, expected: Option<PeerId>) -> Plaintext {
        Plaintext::new(&Config::new(key(seed).public()), expected)
    }

    fn exchange_bytes(id: Option<Vec<u8>>, pubkey: Option<Vec<u8>>) -> BytesMut {
        let mut out = BytesMut::new();
        varint::encode_frame(&Exchange { id, pubkey }.encode_to_vec(), &mut out);
        out
    }

    #[test]
    fn exchange_both_ways_keeps_trailing_bytes() {
        let (pa, pb) = (key(1).public().to_peer_id(), key(2).public().to_peer_id());
        let mut a = machine(1, Some(pb));
        let mut b = machine(2, None);
        let (mut ab, mut ba) = (BytesMut::new(), BytesMut::new());
        a.poll_transmit(&mut ab).unwrap();
        b.poll_transmit(&mut ba).unwrap();
        assert!(a.poll_transmit(&mut ab).is_none());
        ab.extend_from_slice(b"/yamux/1.0.0\n");
        b.handle_input(&mut ab).unwrap();
        a.handle_input(&mut ba).unwrap();
        assert!(a.is_finished() && b.is_finished());
        assert_eq!(&ab[..], b"/yamux/1.0.0\n");
        // Further input is left alone.
        b.handle_input(&mut ab).unwrap();
        assert_eq!(&ab[..], b"/yamux/1.0.0\n");
        assert_eq!(a.into_outcome().unwrap().remote_peer, pb);
        let ob = b.into_outcome().unwrap();
        assert_eq!(ob.remote_peer, pa);
        assert_eq!(ob.remote_key, key(1).public());
    }

    #[test]
    fn every_key_type_is_exchanged_and_checked() {
        let keys = crate::noise::tests::every_key_type();
        for (name_a, a) in &keys {
            for (name_b, b) in &keys {
                let (pa, pb) = (a.public().to_peer_id(), b.public().to_peer_id());
                if pa == pb {
                    continue;
                }
                let mut ma = Plaintext::new(&Config::new(a.public()), Some(pb));
                let mut mb = Plaintext::new(&Config::new(b.public()), None);
                let (mut ab, mut ba) = (BytesMut::new(), BytesMut::new());
                ma.poll_transmit(&mut ab).unwrap();
                mb.poll_transmit(&mut ba).unwrap();
                mb.handle_input(&mut ab).unwrap();
                ma.handle_input(&mut ba).unwrap();
                let (oa, ob) = (ma.into_outcome().unwrap(), mb.into_outcome().unwrap());
                assert_eq!(oa.remote_key, b.public(), "{name_a} -> {name_b}");
                assert_eq!(ob.remote_peer, pa, "{name_a} -> {name_b}");
            }
        }
        // A 1024-bit RSA key is refused.
        let small = crate::identity::encode_public_key_protobuf(
            crate::identity::KeyType::Rsa,
            plait_testkit::rsa_keys::RSA_1024_PUBLIC,
        );
        let small = PublicKey::try_decode_protobuf(&small).unwrap();
        let mut theirs = BytesMut::new();
        Plaintext::new(&Config::new(small), None).poll_transmit(&mut theirs);
        let mut ours = machine(1, None);
        assert!(matches!(
            ours.handle_input(&mut theirs),
            Err(Error::RejectedKey(crate::identity::Error::RsaKeySize {
                bits: 1024
            }))
        ));
    }

    #[test]
    fn wire_format() {
        let mut a = machine(1, None);
        let mut out = BytesMut::new();
        a.poll_transmit(&mut out).unwrap();
        // uvarint(78) ‖ 0a 26 <38-byte identity multihash> 12 24 <36-byte PublicKey>
        let pk = key(1).public();
        let mut want = vec![78u8, 0x0a, 38];
        want.extend_from_slice(&pk.to_peer_id().to_bytes());
        want.extend_from_slice(&[0x12, 36]);
        want.extend_from_slice(&pk.encode_protobuf());
        assert_eq!(&out[..], &want[..]);
    }

    #[test]
    fn lying_id_is_rejected() {
        let mut m = machine(1, None);
        let mut input = exchange_bytes(
            Some(key(3).public().to_peer_id().to_bytes()),
            Some(key(2).public().encode_protobuf()),
        );
        match m.handle_input(&mut input) {
            Err(Error::IdKeyMismatch { claimed, actual }) => {
                assert_eq!(*claimed, key(3).public().to_peer_id());
                assert_eq!(*actual, key(2).public().to_peer_id());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(m.handle_input(&mut input), Err(Error::Failed)));
    }

    #[test]
    fn wrong_expected_peer() {
        let mut m = machine(1, Some(key(3).public().to_peer_id()));
        let mut b = machine(2, None);
        let mut w = BytesMut::new();
        b.poll_transmit(&mut w);
        assert!(matches!(
            m.handle_input(&mut w),
            Err(Error::PeerIdMismatch { .. })
        ));
    }

    #[test]
    fn malformed_inputs() {
        let pk = key(2).public();
        type Check = fn(&Error) -> bool;
        let cases: Vec<(BytesMut, Check)> = vec![
            (exchange_bytes(None, Some(pk.encode_protobuf())), |e| {
                matches!(e, Error::MissingId)
            }),
            (
                exchange_bytes(Some(pk.to_peer_id().to_bytes()), None),
                |e| matches!(e, Error::MissingKey),
            ),
            (
                exchange_bytes(Some(vec![1, 2, 3]), Some(pk.encode_protobuf())),
                |e| matches!(e, Error::InvalidPeerId(_)),
            ),
            (
                exchange_bytes(Some(pk.to_peer_id().to_bytes()), Some(vec![8, 1])),
                |e| matches!(e, Error::InvalidKey(_)),
            ),
            (BytesMut::from(&[3u8, 0xff, 0xff, 0xff][..]), |e| {
                matches!(e, Error::Malformed(_))
            }),
            (BytesMut::from(&[0x81u8, 0x80, 0x01][..]), |e| {
                matches!(e, Error::Frame(FrameError::TooLarge { .. }))
            }),
        ];
        for (mut input, check) in cases {
            let err = machine(1, None).handle_input(&mut input).unwrap_err();
            assert!(check(&err), "{err:?}");
        }
        // Truncated: waits, consumes nothing.
        let mut m = machine(1, None);
        let mut input = BytesMut::from(&[10u8, 1, 2][..]);
        m.handle_input(&mut input).unwrap();
        assert_eq!(input.len(), 3);
        assert!(!m.is_finished());
        assert!(matches!(m.into_outcome(), Err(Error::NotFinished)));
    }

    proptest! {
        #[test]
        fn chunking_invariance(chunks in proptest::collection::vec(1usize..20, 1..20), tail in proptest::collection::vec(any::<u8>(), 0..20)) {
            let mut wire = BytesMut::new();
            machine(2, None).poll_transmit(&mut wire);
            wire.extend_from_slice(&tail);
            let mut whole = machine(1, None);
            let mut all = wire.clone();
            whole.handle_input(&mut all).unwrap();
            let mut m = machine(1, None);
            let mut input = BytesMut::new();
            let mut i = 0;
            while !wire.is_empty() {
                let n = chunks[i % chunks.len()].min(wire.len());
                i += 1;
                input.extend_from_slice(&wire.split_to(n));
                m.handle_input(&mut input).unwrap();
            }
            prop_assert_eq!(whole.outcome(), m.outcome());
            prop_assert_eq!(all, input);
        }
    }
}
