//! Keys and peer ids, over [`libp2p_identity`].
//!
//! [`Keypair`], [`PublicKey`] and [`PeerId`] are re-exported unchanged: there is exactly one
//! `PeerId` type in the stack. This module adds what `libp2p-identity` lacks:
//!
//! - [`keypair_from_seed`]: deterministic Ed25519 keys for demos and tests;
//! - the CIDv1 text form ([`peer_id_to_cid_string`]) and a parser accepting both text forms
//!   ([`parse_peer_id`], like go-libp2p's `peer.Decode`);
//! - strict parsing of the `PublicKey` protobuf for all four key types
//!   ([`decode_public_key_protobuf`]), including those this build cannot verify (RSA,
//!   secp256k1, ECDSA), so their peer ids can still be derived
//!   ([`peer_id_from_public_key_protobuf`]) and displayed;
//! - strict binary peer id parsing with typed errors ([`peer_id_from_bytes`]).
//!
//! Spec: `peer-ids/peer-ids.md` (digest `specs/peer-id.md`).

use multihash::Multihash;
use sha2::{Digest, Sha256};

pub use libp2p_identity::{DecodingError, Keypair, PeerId, PublicKey};

/// Encoded public keys up to this many bytes are inlined in the peer id with the identity
/// multihash; longer ones are hashed with sha2-256 (spec §2, go `maxInlineKeyLength`, rust
/// `MAX_INLINE_KEY_LENGTH`).
pub const MAX_INLINE_KEY_LENGTH: usize = 42;

/// Largest `Data` field of a `PublicKey` protobuf we accept, in bytes.
///
/// go-libp2p refuses RSA keys above 8192 bits (`MaxRsaKeyBits`), whose PKIX encoding is about
/// 1.1 KiB; every other key type is under 100 bytes. 4 KiB leaves room while keeping a peer
/// from making us hash arbitrary amounts of data (rust identify messages are capped at 4 KiB
/// as a whole anyway).
pub const MAX_PUBLIC_KEY_DATA_LEN: usize = 4096;

/// Longest text form of a peer id [`parse_peer_id`] looks at, in characters.
///
/// The longest valid peer id is a CIDv1 of 2 + 2 + 42 = 46 bytes; in base2, the most verbose
/// multibase, that is 1 + 368 characters. Base58/base36/base10 decoding is quadratic, so longer
/// input is rejected before decoding.
pub const MAX_PEER_ID_TEXT_LEN: usize = 512;

/// Multihash code of the identity "hash" (the digest is the data itself).
pub const MULTIHASH_IDENTITY: u64 = 0x00;
/// Multihash code of sha2-256.
pub const MULTIHASH_SHA2_256: u64 = 0x12;
/// Multicodec of CID version 1.
pub const CID_V1: u64 = 0x01;
/// Multicodec `libp2p-key`: the content type of a peer id CID.
pub const LIBP2P_KEY_CODEC: u64 = 0x72;

/// Digest length of sha2-256, in bytes.
const SHA2_256_LEN: usize = 32;

/// Something could not be parsed or derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is empty or longer than [`MAX_PEER_ID_TEXT_LEN`].
    #[error("peer id text of {len} characters (must be 1..={max})", max = MAX_PEER_ID_TEXT_LEN)]
    BadTextLength {
        /// Length of the text, in bytes.
        len: usize,
    },
    /// A `1…`/`Qm…` peer id is not valid base58btc.
    #[error("invalid base58btc peer id")]
    BadBase58,
    /// The text is neither base58btc nor a valid multibase string.
    #[error("invalid multibase text: {0}")]
    BadMultibase(String),
    /// The CID's version is not 1.
    #[error("unsupported CID version {0} (peer ids are CIDv1)")]
    BadCidVersion(u64),
    /// The CID's content codec is not `libp2p-key` (0x72).
    #[error("CID codec {0:#x} is not libp2p-key (0x72)")]
    WrongCodec(u64),
    /// A CID or multihash varint is truncated, overlong or not minimally encoded.
    #[error("bad varint in {0}")]
    BadVarint(&'static str),
    /// The multihash's digest length does not match the bytes that follow it.
    #[error("multihash digest length {declared} but {actual} bytes follow")]
    BadMultihashLength {
        /// The declared digest length, in bytes.
        declared: u64,
        /// The bytes actually present, in bytes.
        actual: usize,
    },
    /// The multihash is well formed but is not a valid peer id: not sha2-256 with a 32-byte
    /// digest, nor identity with at most [`MAX_INLINE_KEY_LENGTH`] bytes.
    #[error("multihash code {code:#x} with a {len}-byte digest is not a peer id")]
    UnsupportedMultihash {
        /// The multihash code.
        code: u64,
        /// The digest length, in bytes.
        len: usize,
    },
    /// A `PublicKey` protobuf does not follow the deterministic encoding (spec §1): missing
    /// or out-of-order fields, non-minimal varints, extra fields or bytes.
    #[error("public key protobuf: {0}")]
    BadKeyProtobuf(&'static str),
    /// A `PublicKey` protobuf names a key type outside 0..=3.
    #[error("unknown key type {0}")]
    UnknownKeyType(u64),
    /// A `PublicKey` protobuf's `Data` exceeds [`MAX_PUBLIC_KEY_DATA_LEN`].
    #[error("public key data of {0} bytes exceeds {max} bytes", max = MAX_PUBLIC_KEY_DATA_LEN)]
    KeyDataTooLong(u64),
    /// The key bytes are not a valid key of their type.
    #[error("invalid {key_type:?} key data: {reason}")]
    BadKeyData {
        /// The key type named by the protobuf.
        key_type: KeyType,
        /// What is wrong.
        reason: &'static str,
    },
    /// The key is well formed but this build cannot represent it as a [`PublicKey`].
    #[error("{0:?} keys are not supported by this build")]
    UnsupportedKeyType(KeyType),
    /// An RSA key outside the sizes go-libp2p accepts ([`MIN_RSA_BITS`] to [`MAX_RSA_BITS`]).
    #[error("RSA key of {bits} bits (accepted: {MIN_RSA_BITS} to {MAX_RSA_BITS})")]
    RsaKeySize {
        /// The modulus size, in bits.
        bits: usize,
    },
}

/// The smallest RSA identity accepted (go-libp2p's `MinRsaKeyBits`; smaller keys are
/// forgeable).
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA identity accepted (go-libp2p's `maxRsaKeyBits`: verifying a bigger key
/// costs a remote's CPU for nothing).
pub const MAX_RSA_BITS: usize = 8192;

/// The `KeyType` of the `PublicKey` protobuf (spec §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyType {
    /// RSA; `Data` is a DER PKIX `SubjectPublicKeyInfo`.
    Rsa,
    /// Ed25519; `Data` is the raw 32-byte key.
    Ed25519,
    /// secp256k1; `Data` is the 33-byte compressed SEC1 point.
    Secp256k1,
    /// ECDSA; `Data` is a DER PKIX `SubjectPublicKeyInfo`.
    Ecdsa,
}

impl KeyType {
    /// The protobuf enum value.
    pub const fn code(self) -> u64 {
        match self {
            Self::Rsa => 0,
            Self::Ed25519 => 1,
            Self::Secp256k1 => 2,
            Self::Ecdsa => 3,
        }
    }

    /// The key type of a protobuf enum value, `None` if unknown.
    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(Self::Rsa),
            1 => Some(Self::Ed25519),
            2 => Some(Self::Secp256k1),
            3 => Some(Self::Ecdsa),
            _ => None,
        }
    }
}

/// A deterministic Ed25519 keypair derived from `seed`. **Not for production**: anyone who
/// knows the seed has the private key. For demos and tests only (like go-libp2p echo's
/// `-seed`).
///
/// The secret key is the 32 bytes `seed.to_le_bytes() ‖ [0; 24]`, so seeds below 256 give the
/// same keys as rust-libp2p's examples (`bytes[0] = seed`).
pub fn keypair_from_seed(seed: u64) -> Keypair {
    let mut secret = [0u8; 32];
    for (dst, src) in secret.iter_mut().zip(seed.to_le_bytes()) {
        *dst = src;
    }
    match Keypair::ed25519_from_bytes(secret) {
        Ok(k) => k,
        // Any 32 bytes are a valid Ed25519 secret key, so this cannot happen; fall back to a
        // random key rather than panic.
        Err(_) => Keypair::generate_ed25519(),
    }
}

/// The CIDv1 text form of a peer id: multibase base32 lower-case (prefix `b`) of
/// `0x01 ‖ 0x72 ‖ multihash` (spec §3, RFC 0001). sha2-256 ids start with `bafz`, Ed25519
/// (identity) ids with `bafzaa`.
pub fn peer_id_to_cid_string(peer: &PeerId) -> String {
    let mh = peer.to_bytes();
    let mut cid = Vec::with_capacity(2 + mh.len());
    cid.push(CID_V1 as u8);
    cid.push(LIBP2P_KEY_CODEC as u8);
    cid.extend_from_slice(&mh);
    multibase::encode(multibase::Base::Base32Lower, cid)
}

/// Parses a peer id from text: base58btc multihash (`12D3KooW…`, `Qm…`, any `1…`) or a CIDv1
/// with codec `libp2p-key` in any multibase, as go-libp2p's `peer.Decode`.
pub fn parse_peer_id(text: &str) -> Result<PeerId, Error> {
    if text.is_empty() || text.len() > MAX_PEER_ID_TEXT_LEN {
        return Err(Error::BadTextLength { len: text.len() });
    }
    if text.starts_with('1') || text.starts_with("Qm") {
        let bytes = bs58::decode(text)
            .into_vec()
            .map_err(|_| Error::BadBase58)?;
        return peer_id_from_bytes(&bytes);
    }
    let (_base, bytes) = multibase::decode(text).map_err(|e| Error::BadMultibase(e.to_string()))?;
    peer_id_from_cid_bytes(&bytes)
}

/// Parses the binary CID form `uvarint(1) ‖ uvarint(0x72) ‖ multihash` of a peer id.
pub fn peer_id_from_cid_bytes(bytes: &[u8]) -> Result<PeerId, Error> {
    let (version, rest) = read_varint(bytes, "CID version")?;
    if version != CID_V1 {
        return Err(Error::BadCidVersion(version));
    }
    let (codec, rest) = read_varint(rest, "CID codec")?;
    if codec != LIBP2P_KEY_CODEC {
        return Err(Error::WrongCodec(codec));
    }
    peer_id_from_bytes(rest)
}

/// Parses the binary form of a peer id (a multihash), strictly: minimal varints, digest length
/// exact, sha2-256 with 32 bytes or identity with at most [`MAX_INLINE_KEY_LENGTH`] bytes
/// (spec §2).
pub fn peer_id_from_bytes(bytes: &[u8]) -> Result<PeerId, Error> {
    let (code, rest) = read_varint(bytes, "multihash code")?;
    let (len, digest) = read_varint(rest, "multihash length")?;
    if u64::try_from(digest.len()).ok() != Some(len) {
        return Err(Error::BadMultihashLength {
            declared: len,
            actual: digest.len(),
        });
    }
    peer_id_from_multihash_parts(code, digest)
}

/// Builds a peer id from a multihash code and digest, checking the peer id rules.
fn peer_id_from_multihash_parts(code: u64, digest: &[u8]) -> Result<PeerId, Error> {
    let unsupported = Error::UnsupportedMultihash {
        code,
        len: digest.len(),
    };
    let ok = match code {
        MULTIHASH_SHA2_256 => digest.len() == SHA2_256_LEN,
        MULTIHASH_IDENTITY => digest.len() <= MAX_INLINE_KEY_LENGTH,
        _ => false,
    };
    if !ok {
        return Err(unsupported);
    }
    let mh = Multihash::<64>::wrap(code, digest).map_err(|_| unsupported.clone())?;
    PeerId::from_multihash(mh).map_err(|_| unsupported)
}

/// Reads one minimal unsigned varint (at most 9 bytes) from the front of `bytes`.
fn read_varint<'a>(bytes: &'a [u8], what: &'static str) -> Result<(u64, &'a [u8]), Error> {
    unsigned_varint::decode::u64(bytes).map_err(|_| Error::BadVarint(what))
}

/// Parses a `PublicKey` protobuf strictly per the deterministic encoding rules (spec §1):
/// exactly `0x08 <minimal varint type> 0x12 <minimal varint len> <data>`, nothing else.
///
/// Returns the key type and the borrowed `Data` bytes. Checks the data's shape per type
/// (Ed25519: 32 bytes; secp256k1: 33-byte compressed point prefix; RSA and ECDSA: one DER
/// `SEQUENCE` spanning the data) but not that it is a valid key, which needs the key type's
/// implementation (see [`decode_public_key`]).
pub fn decode_public_key_protobuf(bytes: &[u8]) -> Result<(KeyType, &[u8]), Error> {
    let Some((&0x08, rest)) = bytes.split_first() else {
        return Err(Error::BadKeyProtobuf(
            "expected field 1 (Type, varint) first",
        ));
    };
    let (code, rest) =
        unsigned_varint::decode::u64(rest).map_err(|_| Error::BadKeyProtobuf("bad Type varint"))?;
    let key_type = KeyType::from_code(code).ok_or(Error::UnknownKeyType(code))?;
    let Some((&0x12, rest)) = rest.split_first() else {
        return Err(Error::BadKeyProtobuf(
            "expected field 2 (Data, bytes) right after Type",
        ));
    };
    let (len, data) = unsigned_varint::decode::u64(rest)
        .map_err(|_| Error::BadKeyProtobuf("bad Data length varint"))?;
    if len > MAX_PUBLIC_KEY_DATA_LEN as u64 {
        return Err(Error::KeyDataTooLong(len));
    }
    match usize::try_from(len) {
        Ok(len) if len == data.len() => {}
        Ok(len) if len < data.len() => {
            return Err(Error::BadKeyProtobuf("extra bytes after Data"));
        }
        _ => return Err(Error::BadKeyProtobuf("Data truncated")),
    }
    check_key_data(key_type, data)?;
    Ok((key_type, data))
}

/// Checks the shape of a key's `Data` for its type.
fn check_key_data(key_type: KeyType, data: &[u8]) -> Result<(), Error> {
    let bad = |reason| Error::BadKeyData { key_type, reason };
    match key_type {
        KeyType::Ed25519 if data.len() != 32 => Err(bad("Ed25519 keys are 32 bytes")),
        KeyType::Secp256k1 if data.len() != 33 => {
            Err(bad("secp256k1 keys are 33-byte compressed points"))
        }
        KeyType::Secp256k1 if !matches!(data.first(), Some(0x02 | 0x03)) => {
            Err(bad("compressed point must start with 0x02 or 0x03"))
        }
        KeyType::Rsa | KeyType::Ecdsa => check_der_sequence(data).map_err(bad),
        _ => Ok(()),
    }
}

/// Checks that `data` is exactly one DER `SEQUENCE` (tag and minimal definite length).
fn check_der_sequence(data: &[u8]) -> Result<(), &'static str> {
    let [0x30, first, rest @ ..] = data else {
        return Err("not a DER SEQUENCE");
    };
    let (len, body) = if *first < 0x80 {
        (usize::from(*first), rest)
    } else {
        // Long form: 1 or 2 length bytes cover MAX_PUBLIC_KEY_DATA_LEN.
        match (*first, rest) {
            (0x81, [l, body @ ..]) if *l >= 0x80 => (usize::from(*l), body),
            (0x82, [h, l, body @ ..]) if *h != 0 => {
                ((usize::from(*h) << 8) | usize::from(*l), body)
            }
            _ => return Err("bad or non-minimal DER length"),
        }
    };
    if len != body.len() {
        return Err("DER length does not span the data");
    }
    Ok(())
}

/// Encodes a `PublicKey` protobuf deterministically: `0x08 type 0x12 len data` (the `Type`
/// field is written even for RSA = 0).
pub fn encode_public_key_protobuf(key_type: KeyType, data: &[u8]) -> Vec<u8> {
    let mut t = unsigned_varint::encode::u64_buffer();
    let mut l = unsigned_varint::encode::usize_buffer();
    let t = unsigned_varint::encode::u64(key_type.code(), &mut t);
    let l = unsigned_varint::encode::usize(data.len(), &mut l);
    let mut out = Vec::with_capacity(2 + t.len() + l.len() + data.len());
    out.push(0x08);
    out.extend_from_slice(t);
    out.push(0x12);
    out.extend_from_slice(l);
    out.extend_from_slice(data);
    out
}

/// Derives the peer id of a `PublicKey` protobuf of any key type (spec §2): the identity
/// multihash of the bytes if they are at most [`MAX_INLINE_KEY_LENGTH`] long, else their
/// sha2-256 multihash.
///
/// The protobuf is checked with [`decode_public_key_protobuf`] first, since the bytes hashed
/// must be the deterministic encoding; Ed25519 keys are also checked to be valid points.
pub fn peer_id_from_public_key_protobuf(bytes: &[u8]) -> Result<PeerId, Error> {
    let (key_type, _) = decode_public_key_protobuf(bytes)?;
    if key_type == KeyType::Ed25519 {
        decode_public_key(bytes)?;
    }
    if bytes.len() <= MAX_INLINE_KEY_LENGTH {
        peer_id_from_multihash_parts(MULTIHASH_IDENTITY, bytes)
    } else {
        peer_id_from_multihash_parts(MULTIHASH_SHA2_256, &Sha256::digest(bytes))
    }
}

/// Decodes a `PublicKey` protobuf of any key type (Ed25519, secp256k1, ECDSA P-256, RSA)
/// into a [`PublicKey`] that can verify signatures, after the strict checks of
/// [`decode_public_key_protobuf`] and [`check_remote_key`].
pub fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, Error> {
    let (key_type, _) = decode_public_key_protobuf(bytes)?;
    let key = PublicKey::try_decode_protobuf(bytes).map_err(|_| Error::BadKeyData {
        key_type,
        reason: match key_type {
            KeyType::Ed25519 => "not a valid Ed25519 point",
            KeyType::Secp256k1 => "not a valid secp256k1 point",
            KeyType::Ecdsa => "not a valid ECDSA P-256 public key",
            KeyType::Rsa => "not a valid RSA public key",
        },
    })?;
    check_remote_key(&key)?;
    Ok(key)
}

/// Checks what decoding alone does not: an RSA key's size is within [`MIN_RSA_BITS`] and
/// [`MAX_RSA_BITS`], as go-libp2p requires of every remote identity.
pub fn check_remote_key(key: &PublicKey) -> Result<(), Error> {
    let Ok(rsa) = key.clone().try_into_rsa() else {
        return Ok(());
    };
    let bits = rsa_modulus_bits(&rsa.encode_pkcs1()).ok_or(Error::BadKeyData {
        key_type: KeyType::Rsa,
        reason: "not a DER RSAPublicKey",
    })?;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(Error::RsaKeySize { bits });
    }
    Ok(())
}

/// The bit length of the modulus of a DER `RSAPublicKey` (`SEQUENCE { INTEGER n, INTEGER e }`).
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    let (sequence, _) = crate::der::element(0x30, der)?;
    let (modulus, _) = crate::der::element(0x02, sequence)?;
    let digits = match modulus.iter().position(|b| *b != 0) {
        Some(i) => modulus.get(i..)?,
        None => return Some(0),
    };
    let leading = usize::try_from(digits.first()?.leading_zeros()).ok()?;
    Some(digits.len() * 8 - leading)
}

/// The `PublicKey` protobuf inlined in an identity-multihash peer id (Ed25519, secp256k1),
/// or `None` for hashed (sha2-256) peer ids.
pub fn inline_public_key_protobuf(peer: &PeerId) -> Option<&[u8]> {
    let mh: &Multihash<64> = peer.as_ref();
    (mh.code() == MULTIHASH_IDENTITY).then(|| mh.digest())
}

/// The public key carried inside an identity peer id: `Ok(None)` for hashed peer ids,
/// `Err` if the inlined bytes are not a key this build supports.
pub fn public_key_from_peer_id(peer: &PeerId) -> Result<Option<PublicKey>, Error> {
    inline_public_key_protobuf(peer)
        .map(decode_public_key)
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const ED25519_PUB: &str =
        "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e";
    const ED25519_PRIV: &str = "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e";
    const SECP_PUB: &str =
        "08021221037777e994e452c21604f91de093ce415f5432f701dd8cd1a7a6fea0e630bfca99";
    const ECDSA_PUB: &str = "0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004de3d300fa36ae0e8f5d530899d83abab44abf3161f162a4bc901d8e6ecda020e8b6d5f8da30525e71d6851510c098e5c47c646a597fb4dcec034e9f77c409e62";
    const RSA_PUB: &str = "080012a60430820222300d06092a864886f70d01010105000382020f003082020a0282020100e1beab071d08200bde24eef00d049449b07770ff9910257b2d7d5dda242ce8f0e2f12e1af4b32d9efd2c090f66b0f29986dbb645dae9880089704a94e5066d594162ae6ee8892e6ec70701db0a6c445c04778eb3de1293aa1a23c3825b85c6620a2bc3f82f9b0c309bc0ab3aeb1873282bebd3da03c33e76c21e9beb172fd44c9e43be32e2c99827033cf8d0f0c606f4579326c930eb4e854395ad941256542c793902185153c474bed109d6ff5141ebf9cd256cf58893a37f83729f97e7cb435ec679d2e33901d27bb35aa0d7e20561da08885ef0abbf8e2fb48d6a5487047a9ecb1ad41fa7ed84f6e3e8ecd5d98b3982d2a901b4454991766da295ab78822add5612a2df83bcee814cf50973e80d7ef38111b1bd87da2ae92438a2c8cbcc70b31ee319939a3b9c761dbc13b5c086d6b64bf7ae7dacc14622375d92a8ff9af7eb962162bbddebf90acb32adb5e4e4029f1c96019949ecfbfeffd7ac1e3fbcc6b6168c34be3d5a2e5999fcbb39bba7adbca78eab09b9bc39f7fa4b93411f4cc175e70c0a083e96bfaefb04a9580b4753c1738a6a760ae1afd851a1a4bdad231cf56e9284d832483df215a46c1c21bdf0c6cfe951c18f1ee4078c79c13d63edb6e14feaeffabc90ad317e4875fe648101b0864097e998f0ca3025ef9638cd2b0caecd3770ab54a1d9c6ca959b0f5dcbc90caeefc4135baca6fd475224269bbe1b0203010001";

    /// (protobuf hex, key type, data len, base58, CIDv1) from the digest's derived table.
    const KEY_VECTORS: [(&str, KeyType, usize, &str, &str); 4] = [
        (
            ED25519_PUB,
            KeyType::Ed25519,
            32,
            "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq",
            "bafzaajaiaejcahwr5d5ofrfbis4l5d6uwr57hu5tjodrypfm6yaq6dsc2r2pzyt6",
        ),
        (
            SECP_PUB,
            KeyType::Secp256k1,
            33,
            "16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY",
            "bafzaajiiaijcca3xo7uzjzcsyilaj6i54cj44qk7kqzpoao5rti2pjx6udtdbp6kte",
        ),
        (
            ECDSA_PUB,
            KeyType::Ecdsa,
            91,
            "QmVMT29id3TUASyfZZ6k9hmNyc2nYabCo4uMSpDw4zrgDk",
            "bafzbeidigywdclqvl5hxfefwp5onbffcfife7pza57mmfb4tiqmtkdjw64",
        ),
        (
            RSA_PUB,
            KeyType::Rsa,
            550,
            "QmaeANgBs1DTSxWSrPPtobgQuxW8XTfsS4ydbK4rCHzqxG",
            "bafzbeifwzcumbiyql7bhv7fe7mixg6i7aohegq75k234m63bnw6dbicmzu",
        ),
    ];

    #[test]
    fn spec_key_vectors_derive_peer_ids_in_both_text_forms() {
        for (pb, key_type, data_len, b58, cid) in KEY_VECTORS {
            let pb = hex(pb);
            let (t, data) = decode_public_key_protobuf(&pb).unwrap();
            assert_eq!((t, data.len()), (key_type, data_len), "{b58}");
            assert_eq!(encode_public_key_protobuf(t, data), pb, "{b58}");
            let id = peer_id_from_public_key_protobuf(&pb).unwrap();
            assert_eq!(id.to_base58(), b58);
            assert_eq!(id.to_string(), b58);
            assert_eq!(peer_id_to_cid_string(&id), cid);
            assert_eq!(parse_peer_id(b58).unwrap(), id);
            assert_eq!(parse_peer_id(cid).unwrap(), id);
            assert_eq!(peer_id_from_bytes(&id.to_bytes()).unwrap(), id);
            let inline = inline_public_key_protobuf(&id);
            if pb.len() <= MAX_INLINE_KEY_LENGTH {
                assert_eq!(inline, Some(&pb[..]));
                assert_eq!(id.to_bytes()[..2], [0x00, pb.len() as u8]);
            } else {
                assert_eq!(inline, None);
                assert_eq!(id.to_bytes()[..2], [0x12, 0x20]);
            }
        }
    }

    #[test]
    fn ed25519_agrees_with_libp2p_identity() {
        let pb = hex(ED25519_PUB);
        let ours = decode_public_key(&pb).unwrap();
        let theirs = PublicKey::try_decode_protobuf(&pb).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(ours.encode_protobuf(), pb);
        assert_eq!(
            peer_id_from_public_key_protobuf(&pb).unwrap(),
            theirs.to_peer_id()
        );
        let id = theirs.to_peer_id();
        assert_eq!(public_key_from_peer_id(&id).unwrap(), Some(theirs));
    }

    #[test]
    fn ed25519_private_vector_matches_public() {
        let kp = Keypair::from_protobuf_encoding(&hex(ED25519_PRIV)).unwrap();
        assert_eq!(kp.public().encode_protobuf(), hex(ED25519_PUB));
    }

    #[test]
    fn every_key_type_decodes() {
        for (pb, key_type) in [
            (SECP_PUB, KeyType::Secp256k1),
            (ECDSA_PUB, KeyType::Ecdsa),
            (RSA_PUB, KeyType::Rsa),
            (ED25519_PUB, KeyType::Ed25519),
        ] {
            let pb = hex(pb);
            let key = decode_public_key(&pb).unwrap();
            assert_eq!(key.encode_protobuf(), pb, "{key_type:?} round trip");
        }
        let secp = parse_peer_id("16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY").unwrap();
        let key = public_key_from_peer_id(&secp).unwrap().unwrap();
        assert_eq!(key.to_peer_id(), secp);
        let ecdsa = parse_peer_id("QmVMT29id3TUASyfZZ6k9hmNyc2nYabCo4uMSpDw4zrgDk").unwrap();
        assert_eq!(public_key_from_peer_id(&ecdsa), Ok(None));
    }

    #[test]
    fn rsa_key_sizes_outside_go_bounds_are_refused() {
        // The spec's RSA vector is a 4096-bit key.
        let key = PublicKey::try_decode_protobuf(&hex(RSA_PUB)).unwrap();
        let rsa = key.clone().try_into_rsa().unwrap();
        assert_eq!(rsa_modulus_bits(&rsa.encode_pkcs1()), Some(4096));
        assert_eq!(check_remote_key(&key), Ok(()));
        // A real 1024-bit key decodes, and is refused.
        let small =
            encode_public_key_protobuf(KeyType::Rsa, plait_testkit::rsa_keys::RSA_1024_PUBLIC);
        let small_key = PublicKey::try_decode_protobuf(&small).unwrap();
        assert_eq!(
            check_remote_key(&small_key),
            Err(Error::RsaKeySize { bits: 1024 })
        );
        assert_eq!(
            decode_public_key(&small),
            Err(Error::RsaKeySize { bits: 1024 })
        );
        // DER RSAPublicKey shapes: a 1024-bit and a 8200-bit modulus.
        let modulus = |bytes: usize| {
            let mut n = vec![0x00, 0x80];
            n.resize(bytes + 1, 0x01);
            n
        };
        // DER's minimal length encoding (what every real key uses; the parser is strict).
        let tlv = |tag: u8, body: Vec<u8>| {
            let len = body.len();
            let mut out = vec![tag];
            match len {
                0..=0x7f => out.push(len as u8),
                0x80..=0xff => out.extend([0x81, len as u8]),
                _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
            }
            out.extend(body);
            out
        };
        let der = |n: Vec<u8>| {
            let mut ints = tlv(0x02, n);
            ints.extend([0x02, 0x03, 0x01, 0x00, 0x01]);
            tlv(0x30, ints)
        };
        assert_eq!(rsa_modulus_bits(&der(modulus(128))), Some(1024));
        assert_eq!(rsa_modulus_bits(&der(modulus(1025))), Some(8200));
        assert_eq!(rsa_modulus_bits(&[0x30, 0x03, 0x02, 0x05, 0x00]), None);
        assert_eq!(rsa_modulus_bits(&[]), None);
    }

    #[test]
    fn spec_text_form_examples() {
        let a =
            parse_peer_id("bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe").unwrap();
        let b = parse_peer_id("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.to_bytes(),
            hex("12209dff3b17d74cf4d38a50d8b6383e92d181a10395a5e73a726dcccbd21bf6f0b9")
        );
        assert_eq!(
            peer_id_to_cid_string(&a),
            "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"
        );

        let e = parse_peer_id("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA").unwrap();
        assert_eq!(
            e.to_bytes(),
            hex("002408011220 2ffa35a99d3a3cfbb17bb7c1dc5561b18a8dcca4df38dc613ea859c37eb1336b")
        );
        assert_eq!(
            peer_id_to_cid_string(&e),
            "bafzaajaiaejcal72gwuz2or47oyxxn6b3rkwdmmkrxgkjxzy3rqt5kczyn7lcm3l"
        );
        let pk = public_key_from_peer_id(&e).unwrap().unwrap();
        assert_eq!(
            pk.try_into_ed25519().unwrap().to_bytes().to_vec(),
            hex("2ffa35a99d3a3cfbb17bb7c1dc5561b18a8dcca4df38dc613ea859c37eb1336b")
        );
        // PeerId's own FromStr (base58 only) agrees.
        assert_eq!(
            "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
                .parse::<PeerId>()
                .unwrap(),
            e
        );
    }

    #[test]
    fn cid_in_other_multibases() {
        let id = parse_peer_id("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N").unwrap();
        let mut cid = vec![0x01, 0x72];
        cid.extend(id.to_bytes());
        for base in [
            multibase::Base::Base32Upper,
            multibase::Base::Base36Lower,
            multibase::Base::Base58Btc,
            multibase::Base::Base64Url,
            multibase::Base::Base16Lower,
            multibase::Base::Base2,
        ] {
            let text = multibase::encode(base, &cid);
            assert_eq!(parse_peer_id(&text), Ok(id), "{text}");
        }
    }

    #[test]
    fn multiaddr_p2p_vectors() {
        use std::str::FromStr;
        let id = parse_peer_id("QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC").unwrap();
        let wire =
            hex("A503221220D52EBB89D85B02A284948203A62FF28389C57C9F42BEEC4EC20DB76A68911C0B");
        // `a5 03` = 421 (p2p), `22` = 34-byte length prefix, then the peer id bytes.
        assert_eq!(wire[3..], id.to_bytes()[..]);
        assert_eq!(peer_id_from_bytes(&wire[3..]), Ok(id));
        let ma =
            multiaddr::Multiaddr::from_str("/p2p/QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC")
                .unwrap();
        assert_eq!(ma.to_vec(), wire);
        assert_eq!(ma.iter().next(), Some(multiaddr::Protocol::P2p(id)));

        let ed = peer_id_from_public_key_protobuf(&hex(ED25519_PUB)).unwrap();
        let ma = multiaddr::Multiaddr::empty()
            .with(multiaddr::Protocol::Ip4([127, 0, 0, 1].into()))
            .with(multiaddr::Protocol::Tcp(4001))
            .with(multiaddr::Protocol::P2p(ed));
        assert_eq!(
            ma.to_vec(),
            hex("047f000001060fa1a503260024080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e")
        );
        assert_eq!(
            ma.to_string(),
            "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
        );

        let dnsaddr = hex("3819736A632D312E626F6F7473747261702E6C69627032702E696F0604D2A50322122006B3608AA000274049EB28AD8E793A26FF6FAB281A7D3BD77CD18EB745DFAABB");
        let id = parse_peer_id("QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN").unwrap();
        assert!(dnsaddr.ends_with(&id.to_bytes()));
    }

    #[test]
    fn seeded_keys_are_deterministic() {
        let a = keypair_from_seed(7);
        assert_eq!(a.public(), keypair_from_seed(7).public());
        assert_ne!(a.public(), keypair_from_seed(8).public());
        assert_ne!(a.public(), keypair_from_seed(7 << 40).public());
        // Same as rust-libp2p examples' `generate_ed25519(7)`.
        let mut bytes = [0u8; 32];
        bytes[0] = 7;
        let theirs = Keypair::ed25519_from_bytes(bytes).unwrap();
        assert_eq!(a.public(), theirs.public());
        assert!(a.public().to_peer_id().to_base58().starts_with("12D3KooW"));
    }

    #[test]
    fn text_parse_errors() {
        assert_eq!(parse_peer_id(""), Err(Error::BadTextLength { len: 0 }));
        let long = "b".repeat(MAX_PEER_ID_TEXT_LEN + 1);
        assert!(matches!(
            parse_peer_id(&long),
            Err(Error::BadTextLength { .. })
        ));
        assert_eq!(parse_peer_id("Qm0OIl"), Err(Error::BadBase58));
        assert!(matches!(parse_peer_id("!abc"), Err(Error::BadMultibase(_))));
        assert!(matches!(parse_peer_id("b!!!"), Err(Error::BadMultibase(_))));
        // base58 of an identity multihash truncated by one byte (still starts with `1`).
        let ed = parse_peer_id("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA").unwrap();
        let ed = ed.to_bytes();
        let short = bs58::encode(&ed[..ed.len() - 1]).into_string();
        assert_eq!(
            parse_peer_id(&short),
            Err(Error::BadMultihashLength {
                declared: 36,
                actual: 35
            })
        );
        let id = parse_peer_id("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N").unwrap();
        let bytes = id.to_bytes();
        // CIDv1 with the dag-pb codec (0x70) is not a peer id.
        let mut cid = vec![0x01, 0x70];
        cid.extend(&bytes);
        let text = multibase::encode(multibase::Base::Base32Lower, &cid);
        assert_eq!(parse_peer_id(&text), Err(Error::WrongCodec(0x70)));
        // CIDv0-ish version byte.
        let mut cid = vec![0x00, 0x72];
        cid.extend(&bytes);
        let text = multibase::encode(multibase::Base::Base32Lower, &cid);
        assert_eq!(parse_peer_id(&text), Err(Error::BadCidVersion(0)));
        // Non-minimal codec varint (0xf2 0x00 = 0x72).
        let mut cid = vec![0x01, 0xf2, 0x00];
        cid.extend(&bytes);
        let text = multibase::encode(multibase::Base::Base32Lower, &cid);
        assert_eq!(parse_peer_id(&text), Err(Error::BadVarint("CID codec")));
    }

    #[test]
    fn multihash_rules() {
        // sha2-256 with a 20-byte digest.
        let mut mh = vec![0x12, 20];
        mh.extend([0u8; 20]);
        assert_eq!(
            peer_id_from_bytes(&mh),
            Err(Error::UnsupportedMultihash {
                code: 0x12,
                len: 20
            })
        );
        // identity with 43 bytes.
        let mut mh = vec![0x00, 43];
        mh.extend([0u8; 43]);
        assert_eq!(
            peer_id_from_bytes(&mh),
            Err(Error::UnsupportedMultihash { code: 0, len: 43 })
        );
        // identity with 42 bytes is fine.
        let mut mh = vec![0x00, 42];
        mh.extend([0u8; 42]);
        assert!(peer_id_from_bytes(&mh).is_ok());
        // sha1 (0x11).
        let mut mh = vec![0x11, 20];
        mh.extend([0u8; 20]);
        assert!(matches!(
            peer_id_from_bytes(&mh),
            Err(Error::UnsupportedMultihash { code: 0x11, .. })
        ));
        // Trailing byte, empty input, non-minimal length.
        let mut mh = vec![0x12, 32];
        mh.extend([0u8; 33]);
        assert!(matches!(
            peer_id_from_bytes(&mh),
            Err(Error::BadMultihashLength { .. })
        ));
        assert_eq!(
            peer_id_from_bytes(&[]),
            Err(Error::BadVarint("multihash code"))
        );
        let mut mh = vec![0x12, 0xa0, 0x00];
        mh.extend([0u8; 32]);
        assert_eq!(
            peer_id_from_bytes(&mh),
            Err(Error::BadVarint("multihash length"))
        );
    }

    #[test]
    fn key_protobuf_strictness() {
        let good = hex(ED25519_PUB);
        // Fields swapped.
        let mut swapped = vec![0x12, 0x20];
        swapped.extend(&good[4..]);
        swapped.extend([0x08, 0x01]);
        assert!(matches!(
            decode_public_key_protobuf(&swapped),
            Err(Error::BadKeyProtobuf(_))
        ));
        // Non-minimal type varint.
        let mut nm = vec![0x08, 0x81, 0x00, 0x12, 0x20];
        nm.extend(&good[4..]);
        assert!(matches!(
            decode_public_key_protobuf(&nm),
            Err(Error::BadKeyProtobuf(_))
        ));
        // Non-minimal length varint.
        let mut nm = vec![0x08, 0x01, 0x12, 0xa0, 0x00];
        nm.extend(&good[4..]);
        assert!(matches!(
            decode_public_key_protobuf(&nm),
            Err(Error::BadKeyProtobuf(_))
        ));
        // Extra field after Data.
        let mut extra = good.clone();
        extra.extend([0x18, 0x01]);
        assert_eq!(
            decode_public_key_protobuf(&extra),
            Err(Error::BadKeyProtobuf("extra bytes after Data"))
        );
        // Truncated.
        assert_eq!(
            decode_public_key_protobuf(&good[..good.len() - 1]),
            Err(Error::BadKeyProtobuf("Data truncated"))
        );
        // RSA written proto3-style without `08 00`.
        let rsa = hex(RSA_PUB);
        assert!(matches!(
            decode_public_key_protobuf(&rsa[2..]),
            Err(Error::BadKeyProtobuf(_))
        ));
        // Unknown key type.
        assert_eq!(
            decode_public_key_protobuf(&[0x08, 0x04, 0x12, 0x00]),
            Err(Error::UnknownKeyType(4))
        );
        // Too long data (claimed; nothing allocated).
        assert_eq!(
            decode_public_key_protobuf(&[0x08, 0x00, 0x12, 0x81, 0x20]),
            Err(Error::KeyDataTooLong(4097))
        );
        // Wrong sizes per type.
        assert!(matches!(
            decode_public_key_protobuf(&encode_public_key_protobuf(KeyType::Ed25519, &[0; 31])),
            Err(Error::BadKeyData { .. })
        ));
        let mut secp = [0u8; 33];
        secp[0] = 0x04;
        assert!(matches!(
            decode_public_key_protobuf(&encode_public_key_protobuf(KeyType::Secp256k1, &secp)),
            Err(Error::BadKeyData { .. })
        ));
        assert!(matches!(
            decode_public_key_protobuf(&encode_public_key_protobuf(KeyType::Rsa, &[0x30, 0x05, 1])),
            Err(Error::BadKeyData { .. })
        ));
        assert!(matches!(
            decode_public_key_protobuf(&encode_public_key_protobuf(KeyType::Ecdsa, &[])),
            Err(Error::BadKeyData { .. })
        ));
        // An Ed25519 key that is not a curve point is rejected by the peer id derivation too.
        let mut bad_point = [0xffu8; 32];
        bad_point[31] = 0x7f;
        let pb = encode_public_key_protobuf(KeyType::Ed25519, &bad_point);
        if PublicKey::try_decode_protobuf(&pb).is_err() {
            assert!(peer_id_from_public_key_protobuf(&pb).is_err());
        }
    }

    #[test]
    fn der_length_forms() {
        assert_eq!(check_der_sequence(&[0x30, 0x00]), Ok(()));
        assert!(check_der_sequence(&[0x30, 0x81, 0x01, 0x00]).is_err());
        let mut long = vec![0x30, 0x81, 0x80];
        long.extend([0u8; 0x80]);
        assert_eq!(check_der_sequence(&long), Ok(()));
        let mut long = vec![0x30, 0x82, 0x01, 0x00];
        long.extend([0u8; 0x100]);
        assert_eq!(check_der_sequence(&long), Ok(()));
        long[2] = 0;
        assert!(check_der_sequence(&long).is_err());
        assert!(check_der_sequence(&[0x30, 0x80]).is_err());
    }
}
