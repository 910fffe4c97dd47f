//! Noise XX secure channel as specified by libp2p-noise (`/noise`).
//!
//! `Noise_XX_25519_ChaChaPoly_SHA256` with an empty prologue (configurable), the libp2p
//! handshake payload (identity key, signature over the static DH key, early muxer list) and the
//! 2-byte big-endian length framing of every message (spec digest `noise.md`).
//!
//! Driving contract:
//! 1. Build a [`Config`] once per local identity (it holds the X25519 static key, as
//!    rust-libp2p does, and the seed from which every handshake draws its ephemeral key).
//! 2. [`Handshake::initiator`] (the multistream dialer) or [`Handshake::responder`]; feed
//!    received bytes to [`Handshake::handle_input`] and drain [`Handshake::poll_transmit`] after
//!    every call. Bytes arriving after the peer's last handshake message stay in the caller's
//!    input buffer for the next layer.
//! 3. Once [`Handshake::is_finished`] and the output is drained, [`Handshake::into_transport`]
//!    yields the [`Transport`] and the [`Outcome`] (authenticated remote peer, early muxer).
//!
//! ```
//! use bytes::BytesMut;
//! use plait_core::noise::{Config, Handshake};
//!
//! let a = Config::new(libp2p_identity::Keypair::generate_ed25519(), [1; 32]).unwrap();
//! let b = Config::new(libp2p_identity::Keypair::generate_ed25519(), [2; 32]).unwrap();
//! let mut init = Handshake::initiator(&a, Some(b.local_peer_id())).unwrap();
//! let mut resp = Handshake::responder(&b).unwrap();
//! let (mut to_resp, mut to_init) = (BytesMut::new(), BytesMut::new());
//! while !(init.is_finished() && resp.is_finished()) {
//!     while init.poll_transmit(&mut to_resp).is_some() {}
//!     resp.handle_input(&mut to_resp).unwrap();
//!     while resp.poll_transmit(&mut to_init).is_some() {}
//!     init.handle_input(&mut to_init).unwrap();
//! }
//! while init.poll_transmit(&mut to_resp).is_some() {}
//! resp.handle_input(&mut to_resp).unwrap();
//! let (mut ti, out_i) = init.into_transport().unwrap();
//! let (mut tr, out_r) = resp.into_transport().unwrap();
//! assert_eq!(out_i.remote_peer, b.local_peer_id());
//! assert_eq!(out_r.remote_peer, a.local_peer_id());
//!
//! let mut wire = BytesMut::new();
//! ti.encrypt(b"hello", &mut wire).unwrap();
//! assert_eq!(&tr.decrypt(&mut wire).unwrap().unwrap()[..], b"hello");
//! ```

mod handshake;
mod payload;
#[cfg(test)]
pub(crate) mod tests;
mod transport;

pub use handshake::{Config, Handshake, Outcome};
pub use transport::{FrameStart, Transport};

use libp2p_identity::PeerId;

/// Multistream-select protocol id of libp2p-noise.
pub const PROTOCOL: &str = "/noise";

/// The Noise protocol name; the only one libp2p-noise uses.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

/// Largest Noise message in bytes (the 2-byte length prefix cannot say more; Noise spec limit).
pub const MAX_FRAME_LEN: usize = 65535;

/// Length of the ChaCha20-Poly1305 authentication tag, in bytes.
pub const TAG_LEN: usize = 16;

/// Largest plaintext in one transport frame, in bytes (`MAX_FRAME_LEN - TAG_LEN`).
pub const MAX_PLAINTEXT: usize = MAX_FRAME_LEN - TAG_LEN;

/// Largest `stream_muxers` list (either side's) we act on; a longer list is ignored as go-libp2p does
/// (`maxProtoNum = 100`), so a peer cannot make us compare an unbounded number of strings.
pub const MAX_REMOTE_MUXERS: usize = 100;

/// Prefix of the message an identity key signs to bind the Noise static key to it.
pub const STATIC_KEY_DOMAIN: &[u8] = b"noise-libp2p-static-key:";

/// What went wrong in a Noise handshake or transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Noise layer rejected a handshake message (bad tag, bad prologue, short message).
    #[error("noise handshake message rejected: {0}")]
    Noise(#[from] snow::Error),
    /// The responder received a first message carrying a payload (it must be empty).
    #[error("first handshake message carries a {len}-byte payload; it must be empty")]
    NonEmptyFirstPayload {
        /// Payload length, in bytes.
        len: usize,
    },
    /// The handshake payload is not a valid `NoiseHandshakePayload` protobuf.
    #[error("malformed handshake payload: {0}")]
    MalformedPayload(#[from] prost::DecodeError),
    /// The handshake payload carries no identity key.
    #[error("handshake payload carries no identity key")]
    MissingIdentityKey,
    /// The handshake payload carries no identity signature.
    #[error("handshake payload carries no identity signature")]
    MissingSignature,
    /// The identity key is malformed or of an unsupported type.
    #[error("invalid or unsupported identity key: {0}")]
    InvalidKey(#[from] libp2p_identity::DecodingError),
    /// The identity key decodes but is not acceptable (an RSA key outside 2048 to 8192 bits).
    #[error("identity key rejected: {0}")]
    RejectedKey(#[source] crate::identity::Error),
    /// The identity signature does not sign the static key received in the handshake.
    #[error("identity signature over the noise static key is invalid")]
    BadSignature,
    /// The remote is not the peer the initiator expected.
    #[error("peer id mismatch: expected {expected}, got {actual}")]
    PeerIdMismatch {
        /// The peer we dialed.
        expected: Box<PeerId>,
        /// The peer that answered.
        actual: Box<PeerId>,
    },
    /// The remote authenticated with our own identity.
    #[error("remote peer {0} is the local peer")]
    LocalPeerId(PeerId),
    /// Our own handshake payload would not fit one Noise message (too many or too long muxer
    /// names, or an oversized identity key).
    #[error("local handshake payload of {len} bytes does not fit a noise message")]
    PayloadTooLarge {
        /// Payload length, in bytes.
        len: usize,
    },
    /// The identity key could not sign the static key.
    #[error("signing the static key failed: {0}")]
    Signing(#[from] libp2p_identity::SigningError),
    /// `into_transport` was called before the handshake finished.
    #[error("the handshake is not finished")]
    NotFinished,
    /// `into_transport` was called while handshake bytes were still waiting in `poll_transmit`.
    #[error("handshake output not yet drained through poll_transmit")]
    UnsentHandshakeData,
    /// A transport frame is shorter than the authentication tag.
    #[error("transport frame of {len} bytes is shorter than the {TAG_LEN}-byte tag")]
    FrameTooShort {
        /// Frame length, in bytes.
        len: usize,
    },
    /// A sealed frame would carry more than [`MAX_PLAINTEXT`] bytes.
    #[error("frame plaintext of {len} bytes exceeds {MAX_PLAINTEXT} bytes")]
    PlaintextTooLarge {
        /// Plaintext length, in bytes.
        len: usize,
    },
    /// A [`FrameStart`] does not point at a frame begun in this buffer.
    #[error("frame start does not match the output buffer")]
    InvalidFrameStart,
    /// A transport frame failed authentication (tampered, reordered or wrong key).
    #[error("transport frame failed authentication")]
    Decrypt,
    /// A direction used all 2^64 - 1 nonces; the connection must be closed.
    #[error("nonce space exhausted")]
    NonceExhausted,
    /// An earlier error made this handshake or transport unusable.
    #[error("used after a previous error")]
    Failed,
}
