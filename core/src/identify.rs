//! Identify: `/ipfs/id/1.0.0` (query) and `/ipfs/id/push/1.0.0` (push).
//!
//! One side writes its [`Info`] as uvarint-length-prefixed protobuf `Identify` messages and
//! closes the stream; the other reads until EOF. In a query the stream listener writes (the
//! dialer sends nothing); in a push the dialer writes.
//!
//! - Sending: [`encode`] writes one message of at most [`MAX_SEND_SIZE`] bytes, dropping
//!   listen addresses from the end if needed (go trims its own message to 4 KiB so that
//!   rust-libp2p, which reads one message of at most 4 KiB, accepts it).
//! - Receiving: [`Decoder`] accepts up to [`MAX_MESSAGES`] parts of at most
//!   [`MAX_MESSAGE_SIZE`] bytes each and merges them as go does (`proto.Merge`: repeated fields
//!   append, other fields last-wins), so go's two-part messages (signed peer record sent
//!   separately) are understood. Invalid listen addresses and protocol ids are skipped one by
//!   one (rust `parse_listen_addrs`, `parse_protocols`); a public key that does not match the
//!   authenticated remote peer is fatal.
//!
//! Spec: `identify/README.md` (digest `specs/ping-identify.md`, part B).

use ::multiaddr::Multiaddr;
use bytes::{Bytes, BytesMut};
use prost::Message as _;

use crate::identity::{self, PeerId, PublicKey};
use crate::varint::{self, FrameError, LengthPrefixed};

/// Protocol id of an identify query.
pub const PROTOCOL: &str = "/ipfs/id/1.0.0";

/// Protocol id of an identify push.
pub const PUSH_PROTOCOL: &str = "/ipfs/id/push/1.0.0";

/// Largest message part we accept, in bytes (go `signedIDSize` = 8 KiB: a full message plus a
/// signed peer record).
pub const MAX_MESSAGE_SIZE: usize = 8 * 1024;

/// Most message parts we accept on one stream (go `maxMessages`). With [`MAX_MESSAGE_SIZE`]
/// this bounds what one identify stream can make us hold to 80 KiB, which also bounds the
/// number of addresses and protocols.
pub const MAX_MESSAGES: usize = 10;

/// Largest message we send, in bytes (rust-libp2p reads at most 4096 bytes,
/// `MAX_MESSAGE_SIZE_BYTES`; go trims to `maxOwnIdentifyMsgSize` = 4 KiB for that reason).
pub const MAX_SEND_SIZE: usize = 4096;

/// The protobuf messages, as on the wire.
pub mod proto {
    use bytes::Bytes;

    /// The `Identify` message (proto2; every field optional or repeated).
    ///
    /// The string fields are decoded as bytes so that one invalid UTF-8 entry is skipped
    /// instead of failing the whole message (go does not validate UTF-8 in proto2 strings).
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct Identify {
        /// Field 5: protocol family version, e.g. `ipfs/0.1.0`.
        #[prost(bytes = "bytes", optional, tag = "5")]
        pub protocol_version: Option<Bytes>,
        /// Field 6: implementation name and version, e.g. `go-libp2p/0.36.0`.
        #[prost(bytes = "bytes", optional, tag = "6")]
        pub agent_version: Option<Bytes>,
        /// Field 1: the sender's `PublicKey` protobuf.
        #[prost(bytes = "bytes", optional, tag = "1")]
        pub public_key: Option<Bytes>,
        /// Field 2: the sender's listen addresses, binary multiaddrs.
        #[prost(bytes = "bytes", repeated, tag = "2")]
        pub listen_addrs: Vec<Bytes>,
        /// Field 4: the receiver's address as the sender sees it, binary multiaddr.
        #[prost(bytes = "bytes", optional, tag = "4")]
        pub observed_addr: Option<Bytes>,
        /// Field 3: protocol ids the sender accepts inbound streams for (UTF-8).
        #[prost(bytes = "bytes", repeated, tag = "3")]
        pub protocols: Vec<Bytes>,
        /// Field 8: a serialized `SignedEnvelope` holding a `PeerRecord`.
        #[prost(bytes = "bytes", optional, tag = "8")]
        pub signed_peer_record: Option<Bytes>,
    }
}

/// Identify failed. The stream should be reset and the information discarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A length prefix was bad or announced more than [`MAX_MESSAGE_SIZE`] bytes.
    #[error("bad identify frame: {0}")]
    Frame(#[from] FrameError),
    /// More than [`MAX_MESSAGES`] parts.
    #[error("more than {max} identify message parts", max = MAX_MESSAGES)]
    TooManyParts,
    /// A part is not a valid `Identify` protobuf.
    #[error("bad identify protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The stream ended inside a message part.
    #[error("stream ended with {0} bytes of an unfinished message")]
    Truncated(usize),
    /// A query response carried no public key.
    #[error("identify response without a public key")]
    MissingPublicKey,
    /// The public key is malformed or of a type this build cannot use.
    #[error("bad public key: {0}")]
    BadPublicKey(#[source] identity::Error),
    /// The public key belongs to another peer than the authenticated remote.
    #[error("public key of {actual} sent by {expected}")]
    PublicKeyMismatch {
        /// The authenticated remote peer (boxed: keeps `Error` small).
        expected: Box<PeerId>,
        /// The peer id of the key received.
        actual: Box<PeerId>,
    },
    /// Our own message exceeds [`MAX_SEND_SIZE`] even without listen addresses.
    #[error("identify message of {0} bytes exceeds {max} bytes", max = MAX_SEND_SIZE)]
    MessageTooLarge(usize),
}

/// What a peer tells about itself, with typed fields.
///
/// In a push, absent fields mean "unchanged" (see [`Info::apply_push`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Info {
    /// The sender's public key (required in a query response).
    pub public_key: Option<PublicKey>,
    /// Protocol family version, e.g. `ipfs/0.1.0`; a mismatch is no reason to disconnect.
    pub protocol_version: Option<String>,
    /// Implementation name and version.
    pub agent_version: Option<String>,
    /// Addresses the sender listens on (invalid ones were skipped).
    pub listen_addrs: Vec<Multiaddr>,
    /// Protocol ids the sender accepts inbound streams for (invalid ones were skipped).
    pub protocols: Vec<String>,
    /// The receiver's address as observed by the sender (`None` if absent or invalid).
    pub observed_addr: Option<Multiaddr>,
    /// The signed peer record envelope, unverified and opaque here.
    pub signed_peer_record: Option<Bytes>,
}

impl Info {
    /// Merges a push into what we knew: fields present in `push` (non-empty lists) replace
    /// ours, absent ones leave ours unchanged.
    pub fn apply_push(&mut self, push: Self) {
        let Self {
            public_key,
            protocol_version,
            agent_version,
            listen_addrs,
            protocols,
            observed_addr,
            signed_peer_record,
        } = push;
        if public_key.is_some() {
            self.public_key = public_key;
        }
        if protocol_version.is_some() {
            self.protocol_version = protocol_version;
        }
        if agent_version.is_some() {
            self.agent_version = agent_version;
        }
        if !listen_addrs.is_empty() {
            self.listen_addrs = listen_addrs;
        }
        if !protocols.is_empty() {
            self.protocols = protocols;
        }
        if observed_addr.is_some() {
            self.observed_addr = observed_addr;
        }
        if signed_peer_record.is_some() {
            self.signed_peer_record = signed_peer_record;
        }
    }

    fn to_proto(&self) -> proto::Identify {
        proto::Identify {
            protocol_version: self.protocol_version.clone().map(Bytes::from),
            agent_version: self.agent_version.clone().map(Bytes::from),
            public_key: self
                .public_key
                .as_ref()
                .map(|k| Bytes::from(k.encode_protobuf())),
            listen_addrs: self
                .listen_addrs
                .iter()
                .map(|a| Bytes::from(a.to_vec()))
                .collect(),
            observed_addr: self.observed_addr.as_ref().map(|a| Bytes::from(a.to_vec())),
            protocols: self
                .protocols
                .iter()
                .map(|p| Bytes::from(p.clone()))
                .collect(),
            signed_peer_record: self.signed_peer_record.clone(),
        }
    }
}

/// Appends `info` to `out` as one length-prefixed `Identify` message of at most
/// [`MAX_SEND_SIZE`] bytes, dropping listen addresses from the end until it fits.
///
/// Returns the number of bytes appended. Nothing is appended on error.
pub fn encode(info: &Info, out: &mut BytesMut) -> Result<usize, Error> {
    let mut msg = info.to_proto();
    let mut len = msg.encoded_len();
    while len > MAX_SEND_SIZE && msg.listen_addrs.pop().is_some() {
        len = msg.encoded_len();
    }
    if len > MAX_SEND_SIZE {
        return Err(Error::MessageTooLarge(len));
    }
    if msg.listen_addrs.len() < info.listen_addrs.len() {
        tracing::debug!(
            dropped = info.listen_addrs.len() - msg.listen_addrs.len(),
            "identify: listen addresses trimmed to fit {MAX_SEND_SIZE} bytes"
        );
    }
    let before = out.len();
    out.reserve(varint::encoded_len(len as u64) + len);
    varint::encode_len(len, out);
    msg.encode_raw(out);
    Ok(out.len() - before)
}

/// Which protocol a [`Decoder`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/ipfs/id/1.0.0` response: the public key is required.
    Query,
    /// `/ipfs/id/push/1.0.0`: every field is optional.
    Push,
}

/// Incremental reader of one identify stream: feed bytes with [`Decoder::handle_input`] as
/// they arrive, then call [`Decoder::finish`] at EOF.
///
/// The result does not depend on how the input is chunked: only complete parts are consumed.
/// After an error the decoder should be dropped.
#[derive(Debug, Clone)]
pub struct Decoder {
    kind: Kind,
    remote: Option<PeerId>,
    frames: LengthPrefixed,
    parts: usize,
    msg: proto::Identify,
}

impl Decoder {
    /// A decoder for a stream of `kind` from `remote`, the peer authenticated by the security
    /// handshake. `remote: None` skips the key check (only for tests and fuzzing).
    pub fn new(kind: Kind, remote: Option<PeerId>) -> Self {
        Self {
            kind,
            remote,
            frames: LengthPrefixed::new(MAX_MESSAGE_SIZE),
            parts: 0,
            msg: proto::Identify::default(),
        }
    }

    /// Consumes every complete message part at the front of `input` and merges it; an
    /// incomplete part stays in `input`.
    pub fn handle_input(&mut self, input: &mut BytesMut) -> Result<(), Error> {
        while !input.is_empty() {
            if self.parts >= MAX_MESSAGES {
                return Err(Error::TooManyParts);
            }
            let Some(part) = self.frames.decode(input)? else {
                return Ok(());
            };
            self.parts += 1;
            self.msg.merge(part.freeze())?;
        }
        Ok(())
    }

    /// Message parts merged so far.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// The stream ended; `unconsumed` is what [`Decoder::handle_input`] left in the input
    /// buffer (must be empty). Validates and converts the merged message.
    pub fn finish(self, unconsumed: &[u8]) -> Result<Info, Error> {
        if !unconsumed.is_empty() {
            return Err(Error::Truncated(unconsumed.len()));
        }
        from_proto(self.msg, self.kind, self.remote)
    }
}

/// Decodes a complete identify stream (every byte up to EOF) in one call.
pub fn decode(kind: Kind, remote: Option<PeerId>, stream: &[u8]) -> Result<Info, Error> {
    let mut decoder = Decoder::new(kind, remote);
    let mut input = BytesMut::from(stream);
    decoder.handle_input(&mut input)?;
    decoder.finish(&input)
}

/// Validates a merged message and converts it to [`Info`].
fn from_proto(msg: proto::Identify, kind: Kind, remote: Option<PeerId>) -> Result<Info, Error> {
    let public_key = match msg.public_key {
        Some(bytes) => {
            let actual =
                identity::peer_id_from_public_key_protobuf(&bytes).map_err(Error::BadPublicKey)?;
            if let Some(expected) = remote {
                if expected != actual {
                    return Err(Error::PublicKeyMismatch {
                        expected: Box::new(expected),
                        actual: Box::new(actual),
                    });
                }
            }
            Some(identity::decode_public_key(&bytes).map_err(Error::BadPublicKey)?)
        }
        None if kind == Kind::Query => return Err(Error::MissingPublicKey),
        None => None,
    };
    let text = |b: Bytes| String::from_utf8_lossy(&b).into_owned();
    let listen_addrs = msg
        .listen_addrs
        .into_iter()
        .filter_map(|b| match Multiaddr::try_from(b.to_vec()) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::debug!(error = %e, "identify: skipping invalid listen address");
                None
            }
        })
        .collect();
    let protocols = msg
        .protocols
        .into_iter()
        .filter_map(|b| match String::from_utf8(b.to_vec()) {
            // rust-libp2p `StreamProtocol` requires the leading `/`.
            Ok(p) if p.starts_with('/') => Some(p),
            _ => {
                tracing::debug!("identify: skipping invalid protocol id");
                None
            }
        })
        .collect();
    let observed_addr = msg
        .observed_addr
        .and_then(|b| Multiaddr::try_from(b.to_vec()).ok());
    Ok(Info {
        public_key,
        protocol_version: msg.protocol_version.map(text),
        agent_version: msg.agent_version.map(text),
        listen_addrs,
        protocols,
        observed_addr,
        signed_peer_record: msg.signed_peer_record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keypair_from_seed;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const VECTOR: &str = "72
        0a24080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e
        1208047f000001060fa1
        1a0e2f697066732f69642f312e302e30
        1a102f697066732f70696e672f312e302e30
        2208047f00000106cf08
        2a0a697066732f302e312e30
        3208746573742f312e30";

    fn vector_info() -> Info {
        let key = hex("080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e");
        Info {
            public_key: Some(PublicKey::try_decode_protobuf(&key).unwrap()),
            protocol_version: Some("ipfs/0.1.0".into()),
            agent_version: Some("test/1.0".into()),
            listen_addrs: vec![Multiaddr::from_str("/ip4/127.0.0.1/tcp/4001").unwrap()],
            protocols: vec![PROTOCOL.into(), crate::ping::PROTOCOL.into()],
            observed_addr: Some(Multiaddr::from_str("/ip4/127.0.0.1/tcp/53000").unwrap()),
            signed_peer_record: None,
        }
    }

    fn vector_peer() -> PeerId {
        identity::parse_peer_id("12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq").unwrap()
    }

    #[test]
    fn digest_vector_decodes_and_encodes_byte_exact() {
        let wire = hex(VECTOR);
        assert_eq!(wire.len(), 1 + 0x72);
        let info = decode(Kind::Query, Some(vector_peer()), &wire).unwrap();
        assert_eq!(info, vector_info());
        let mut out = BytesMut::new();
        assert_eq!(encode(&info, &mut out), Ok(wire.len()));
        assert_eq!(out[..], wire[..]);
    }

    #[test]
    fn field_order_does_not_matter() {
        // Same fields in rust/prost declaration order 5,6,1,2,4,3.
        let body = hex("2a0a697066732f302e312e30 3208746573742f312e30
             0a24080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e
             1208047f000001060fa1 2208047f00000106cf08
             1a0e2f697066732f69642f312e302e30 1a102f697066732f70696e672f312e302e30");
        let mut wire = vec![body.len() as u8];
        wire.extend(body);
        let info = decode(Kind::Query, Some(vector_peer()), &wire).unwrap();
        assert_eq!(info, vector_info());
    }

    #[test]
    fn multi_part_messages_merge() {
        let full = vector_info();
        let first = Info {
            signed_peer_record: None,
            ..full.clone()
        };
        let second = Info {
            signed_peer_record: Some(Bytes::from_static(b"envelope")),
            protocols: vec!["/extra/1".into()],
            agent_version: Some("later/2".into()),
            ..Info::default()
        };
        let mut wire = BytesMut::new();
        encode(&first, &mut wire).unwrap();
        encode(&second, &mut wire).unwrap();
        let mut d = Decoder::new(Kind::Query, Some(vector_peer()));
        d.handle_input(&mut wire).unwrap();
        assert_eq!(d.parts(), 2);
        let info = d.finish(&wire).unwrap();
        assert_eq!(info.agent_version.as_deref(), Some("later/2"), "last wins");
        assert_eq!(info.protocols.len(), 3, "repeated fields append");
        assert_eq!(info.signed_peer_record, second.signed_peer_record);
        assert_eq!(info.listen_addrs, full.listen_addrs);
    }

    #[test]
    fn size_and_part_limits() {
        // A part announcing 8193 bytes is rejected from its prefix.
        let mut wire = BytesMut::new();
        varint::encode_len(MAX_MESSAGE_SIZE + 1, &mut wire);
        let mut d = Decoder::new(Kind::Push, None);
        assert!(matches!(
            d.handle_input(&mut wire),
            Err(Error::Frame(FrameError::TooLarge { .. }))
        ));
        // Exactly 10 parts are fine, an 11th is not.
        let mut wire = BytesMut::from(&[0u8; MAX_MESSAGES][..]);
        let mut d = Decoder::new(Kind::Push, None);
        d.handle_input(&mut wire).unwrap();
        assert_eq!(d.clone().finish(&wire), Ok(Info::default()));
        assert_eq!(
            d.handle_input(&mut BytesMut::from(&[0u8][..])),
            Err(Error::TooManyParts)
        );
        // Truncated part at EOF.
        let mut wire = BytesMut::from(&hex(VECTOR)[..50]);
        let mut d = Decoder::new(Kind::Query, None);
        d.handle_input(&mut wire).unwrap();
        assert_eq!(d.finish(&wire), Err(Error::Truncated(50)));
        // Garbage protobuf (field 1 declared length past the end of the part).
        assert!(matches!(
            decode(Kind::Push, None, &[0x02, 0x0a, 0x05]),
            Err(Error::Protobuf(_))
        ));
    }

    #[test]
    fn public_key_rules() {
        let wire = hex(VECTOR);
        // Another remote: mismatch.
        let other = keypair_from_seed(1).public().to_peer_id();
        assert!(matches!(
            decode(Kind::Query, Some(other), &wire),
            Err(Error::PublicKeyMismatch { expected, actual })
                if *expected == other && *actual == vector_peer()
        ));
        // A query without a key fails; a push without one is fine.
        let no_key = Info {
            public_key: None,
            ..vector_info()
        };
        let mut wire = BytesMut::new();
        encode(&no_key, &mut wire).unwrap();
        assert_eq!(
            decode(Kind::Query, Some(vector_peer()), &wire),
            Err(Error::MissingPublicKey)
        );
        assert_eq!(decode(Kind::Push, Some(vector_peer()), &wire), Ok(no_key));
        // A non-deterministic key encoding is rejected.
        let msg = proto::Identify {
            public_key: Some(Bytes::from(hex(
                "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e1801",
            ))),
            ..Default::default()
        };
        let mut wire = BytesMut::new();
        varint::encode_frame(&msg.encode_to_vec(), &mut wire);
        assert!(matches!(
            decode(Kind::Push, None, &wire),
            Err(Error::BadPublicKey(identity::Error::BadKeyProtobuf(_)))
        ));
        // A secp256k1 key matching its remote is accepted (every libp2p key type is).
        let secp =
            hex("08021221037777e994e452c21604f91de093ce415f5432f701dd8cd1a7a6fea0e630bfca99");
        let secp_peer = identity::peer_id_from_public_key_protobuf(&secp).unwrap();
        let msg = proto::Identify {
            public_key: Some(Bytes::from(secp.clone())),
            ..Default::default()
        };
        let mut wire = BytesMut::new();
        varint::encode_frame(&msg.encode_to_vec(), &mut wire);
        let info = decode(Kind::Push, Some(secp_peer), &wire).unwrap();
        assert_eq!(info.public_key.map(|k| k.encode_protobuf()), Some(secp));
    }

    #[test]
    fn invalid_addrs_and_protocols_are_skipped() {
        let msg = proto::Identify {
            listen_addrs: vec![
                Bytes::from_static(&[0x04, 1, 2]),          // truncated ip4
                Bytes::from(hex("047f000001060fa1")),       // valid
                Bytes::from_static(&[0xff, 0xff, 0x03, 0]), // unknown code
            ],
            protocols: vec![
                Bytes::from_static(b"/ok/1"),
                Bytes::from_static(b"no-slash"),
                Bytes::from_static(&[b'/', 0xff]),
            ],
            observed_addr: Some(Bytes::from_static(&[0x06])),
            agent_version: Some(Bytes::from_static(&[b'a', 0xff])),
            ..Default::default()
        };
        let mut wire = BytesMut::new();
        varint::encode_frame(&msg.encode_to_vec(), &mut wire);
        let info = decode(Kind::Push, None, &wire).unwrap();
        assert_eq!(
            info.listen_addrs,
            vec![Multiaddr::from_str("/ip4/127.0.0.1/tcp/4001").unwrap()]
        );
        assert_eq!(info.protocols, vec!["/ok/1".to_string()]);
        assert_eq!(info.observed_addr, None);
        assert_eq!(info.agent_version.as_deref(), Some("a\u{fffd}"));
    }

    #[test]
    fn encode_trims_addresses_to_fit() {
        let addr =
            Multiaddr::from_str("/dns4/a-rather-long-host-name.example.com/tcp/4001/ws").unwrap();
        let info = Info {
            listen_addrs: vec![addr; 200],
            ..vector_info()
        };
        let mut out = BytesMut::new();
        let n = encode(&info, &mut out).unwrap();
        assert!(n <= MAX_SEND_SIZE + 2);
        let got = decode(Kind::Query, Some(vector_peer()), &out).unwrap();
        assert!(!got.listen_addrs.is_empty() && got.listen_addrs.len() < 200);
        assert_eq!(
            got.listen_addrs[..],
            info.listen_addrs[..got.listen_addrs.len()]
        );

        let huge = Info {
            protocols: vec!["/p".repeat(3000)],
            ..Info::default()
        };
        let mut out = BytesMut::new();
        assert!(matches!(
            encode(&huge, &mut out),
            Err(Error::MessageTooLarge(_))
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn apply_push_keeps_absent_fields() {
        let mut known = vector_info();
        known.apply_push(Info {
            protocols: vec!["/new/1".into()],
            ..Info::default()
        });
        assert_eq!(known.protocols, vec!["/new/1".to_string()]);
        assert_eq!(known.listen_addrs, vector_info().listen_addrs);
        assert_eq!(known.agent_version, vector_info().agent_version);
    }

    fn arb_info() -> impl Strategy<Value = Info> {
        (
            proptest::option::of(any::<u64>()),
            proptest::option::of("[ -~]{0,20}"),
            proptest::option::of("[ -~]{0,20}"),
            proptest::collection::vec((any::<[u8; 4]>(), any::<u16>()), 0..6),
            proptest::collection::vec("/[a-z0-9/._-]{0,20}", 0..6),
            proptest::option::of((any::<[u8; 4]>(), any::<u16>())),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        )
            .prop_map(|(seed, pv, av, addrs, protocols, observed, spr)| {
                let addr = |(ip, port): ([u8; 4], u16)| {
                    Multiaddr::empty()
                        .with(::multiaddr::Protocol::Ip4(ip.into()))
                        .with(::multiaddr::Protocol::Tcp(port))
                };
                Info {
                    public_key: seed.map(|s| keypair_from_seed(s).public()),
                    protocol_version: pv,
                    agent_version: av,
                    listen_addrs: addrs.into_iter().map(addr).collect(),
                    protocols,
                    observed_addr: observed.map(addr),
                    signed_peer_record: spr.map(Bytes::from),
                }
            })
    }

    fn decode_chunked(wire: &[u8], cuts: &[usize]) -> Result<Info, Error> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        cuts.sort_unstable();
        let mut d = Decoder::new(Kind::Push, None);
        let mut input = BytesMut::new();
        let mut prev = 0;
        for c in cuts.into_iter().chain([wire.len()]) {
            input.extend_from_slice(&wire[prev..c]);
            prev = c;
            d.handle_input(&mut input)?;
        }
        d.finish(&input)
    }

    proptest! {
        #[test]
        fn encode_decode_roundtrip(info in arb_info()) {
            let mut wire = BytesMut::new();
            encode(&info, &mut wire).unwrap();
            let remote = info.public_key.as_ref().map(PublicKey::to_peer_id);
            prop_assert_eq!(decode(Kind::Push, remote, &wire), Ok(info.clone()));
            if remote.is_some() {
                prop_assert_eq!(decode(Kind::Query, remote, &wire), Ok(info));
            }
        }

        #[test]
        fn decoding_is_chunking_invariant(
            parts in proptest::collection::vec(arb_info(), 0..4),
            cuts in proptest::collection::vec(any::<usize>(), 0..30),
        ) {
            let mut wire = BytesMut::new();
            for p in &parts { encode(p, &mut wire).unwrap(); }
            let whole = decode(Kind::Push, None, &wire);
            prop_assert!(whole.is_ok());
            prop_assert_eq!(decode_chunked(&wire, &cuts), whole);
        }

        #[test]
        fn arbitrary_bytes_are_chunking_invariant(
            wire in proptest::collection::vec(any::<u8>(), 0..200),
            cuts in proptest::collection::vec(any::<usize>(), 0..30),
        ) {
            prop_assert_eq!(decode_chunked(&wire, &cuts), decode(Kind::Push, None, &wire));
        }
    }
}
