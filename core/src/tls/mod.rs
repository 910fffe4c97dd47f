//! libp2p TLS 1.3 secure channel (`/tls/1.0.0`) over rustls, without I/O (spec digest
//! `tls.md`).
//!
//! Each side presents a self-signed certificate for a throw-away P-256 key carrying its
//! libp2p identity key in an extension ([`certificate`]); client authentication is
//! mandatory; only TLS 1.3 is spoken; the client sends no SNI; resumption is off. ALPN offers
//! the configured muxer ids, then `libp2p`: if the server picks a muxer, the [`Outcome`] says
//! so and multistream-select is skipped for the muxer (early muxer negotiation, §7).
//!
//! Driving contract:
//! 1. Build a [`Config`] once per local identity (it holds the certificate and the seed
//!    every handshake draws its randomness from).
//! 2. [`Handshake::client`] (the dialer) or [`Handshake::server`] (the listener); feed received
//!    bytes to [`Handshake::handle_input`] and drain [`Handshake::poll_transmit`] after every
//!    call, also after an error (it may hold a TLS alert for the peer). Whole records are
//!    consumed; a partial record and every byte after the peer's last handshake message stay
//!    in the caller's input buffer for the [`Transport`].
//! 3. Once [`Handshake::is_finished`] and the output is drained, [`Handshake::into_transport`]
//!    yields the [`Transport`] and the [`Outcome`] (authenticated remote peer, early muxer).
//!
//! Time and randomness are inputs: every call that may verify a certificate takes the wall
//! clock as `now_unix` (time since the Unix epoch; certificates have validity periods, so a
//! monotonic instant will not do), and rustls draws its randomness (client/server random,
//! key shares) from the [`Config`]'s seed. The machine keeps no timer: the handshake timeout
//! is the caller's.
//!
//! Over TCP a TLS 1.3 client finishes before the server has checked the client's
//! certificate: a rejection then shows up as an alert on the transport's first read.
//!
//! ```
//! use std::time::Duration;
//! use bytes::BytesMut;
//! use plait_core::tls::{Config, Handshake, Received};
//!
//! let now = Duration::from_secs(1_700_000_000); // from the driver's wall clock
//! let a = Config::new(libp2p_identity::Keypair::generate_ed25519(), [1; 32]).unwrap();
//! let b = Config::new(libp2p_identity::Keypair::generate_ed25519(), [2; 32]).unwrap();
//! let mut client = Handshake::client(&a, Some(b.local_peer_id()), now).unwrap();
//! let mut server = Handshake::server(&b, now).unwrap();
//! let (mut to_server, mut to_client) = (BytesMut::new(), BytesMut::new());
//! while !(client.is_finished() && server.is_finished()) {
//!     while client.poll_transmit(&mut to_server).is_some() {}
//!     server.handle_input(now, &mut to_server).unwrap();
//!     while server.poll_transmit(&mut to_client).is_some() {}
//!     client.handle_input(now, &mut to_client).unwrap();
//! }
//! let (mut tc, out_c) = client.into_transport().unwrap();
//! let (mut ts, out_s) = server.into_transport().unwrap();
//! assert_eq!(out_c.remote_peer, b.local_peer_id());
//! assert_eq!(out_s.remote_peer, a.local_peer_id());
//!
//! let mut wire = BytesMut::new();
//! tc.encrypt(b"hello", &mut wire).unwrap();
//! tc.close(&mut wire).unwrap();
//! let Some(Received::Data(data)) = ts.decrypt(&mut wire).unwrap() else { panic!() };
//! assert_eq!(&data[..], b"hello");
//! assert!(matches!(ts.decrypt(&mut wire).unwrap(), Some(Received::Closed)));
//! ```

pub mod certificate;
mod handshake;
mod provider;
mod record;
#[cfg(test)]
mod tests;
mod transport;

pub use certificate::{Certificate, PeerCertificate};
pub use handshake::{Config, Handshake, Outcome};
pub use transport::{Received, Transport};

use libp2p_identity::PeerId;

/// Multistream-select protocol id of libp2p TLS.
pub const PROTOCOL: &str = "/tls/1.0.0";

/// The ALPN id every libp2p TLS peer offers last: "no early muxer" (spec §7).
pub const ALPN_LIBP2P: &[u8] = b"libp2p";

/// Largest TLS 1.3 record body, in bytes: 2^14 bytes of plaintext plus 256 bytes of
/// expansion (RFC 8446 §5.2). A header announcing more is refused before its body arrives.
pub const MAX_RECORD_LEN: usize = 16384 + 256;

/// Largest plaintext of one TLS record, in bytes (RFC 8446 §5.1).
pub const MAX_PLAINTEXT: usize = 16384;

/// Bytes of handshake records (headers included) a peer may send before the handshake must
/// be finished.
///
/// A real flight is a few KiB: a post-quantum ClientHello is about 1.8 KiB, a certificate
/// with an 8192-bit RSA identity key about 3 KiB. 64 KiB leaves ample room and keeps a peer
/// from streaming handshake messages at us forever.
pub const MAX_HANDSHAKE_INPUT: usize = 64 * 1024;

/// What went wrong in a TLS handshake, a transport or a certificate check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input does not start with a TLS record header (unknown content type or version).
    #[error("not a TLS record (content type {content_type}, version {version:#06x})")]
    NotTlsRecord {
        /// The first byte.
        content_type: u8,
        /// The record version (0 if not yet received).
        version: u16,
    },
    /// A record header announces a body longer than [`MAX_RECORD_LEN`].
    #[error("TLS record of {len} bytes exceeds {MAX_RECORD_LEN} bytes")]
    RecordTooLarge {
        /// The announced body length, in bytes.
        len: usize,
    },
    /// The peer sent more than [`MAX_HANDSHAKE_INPUT`] bytes of handshake records.
    #[error("handshake input of {len} bytes exceeds {MAX_HANDSHAKE_INPUT} bytes")]
    HandshakeTooLarge {
        /// Bytes received including the record that crossed the limit.
        len: usize,
    },
    /// A record or handshake message is malformed (rustls' verdict).
    #[error("malformed TLS message: {0:?}")]
    InvalidMessage(rustls::InvalidMessage),
    /// The peer sent a fatal alert.
    #[error("peer sent TLS alert {0:?}")]
    AlertReceived(rustls::AlertDescription),
    /// Client and server share no ALPN id.
    #[error("no common ALPN protocol")]
    NoApplicationProtocol,
    /// The peer presented no certificate (client authentication is mandatory).
    #[error("peer presented no certificate")]
    NoCertificate,
    /// The peer presented a chain of more or fewer than one certificate.
    #[error("peer presented {count} certificates; libp2p requires exactly one")]
    NotOneCertificate {
        /// Certificates presented.
        count: usize,
    },
    /// The certificate is longer than [`certificate::MAX_CERTIFICATE_LEN`].
    #[error("certificate of {len} bytes exceeds {max} bytes", max = certificate::MAX_CERTIFICATE_LEN)]
    CertificateTooLarge {
        /// Length, in bytes.
        len: usize,
    },
    /// The certificate is not valid DER X.509.
    #[error("certificate is not valid DER X.509")]
    MalformedCertificate,
    /// Bytes follow the certificate's DER.
    #[error("{len} bytes after the certificate")]
    TrailingCertificateBytes {
        /// Extra bytes.
        len: usize,
    },
    /// The certificate has no libp2p public key extension.
    #[error("certificate lacks the libp2p public key extension")]
    MissingExtension,
    /// The libp2p public key extension occurs more than once.
    #[error("libp2p public key extension occurs twice")]
    DuplicateExtension,
    /// The certificate has a critical extension other than libp2p's.
    #[error("unknown critical extension {oid}")]
    UnknownCriticalExtension {
        /// Its OID, dotted.
        oid: String,
    },
    /// The certificate's `notBefore` is after the current time.
    #[error("certificate is not yet valid")]
    NotYetValid,
    /// The certificate's `notAfter` is before the current time.
    #[error("certificate has expired")]
    Expired,
    /// The certificate key or self-signature algorithm is not one we verify (ECDSA P-256 or
    /// P-384 with the matching hash, Ed25519, RSA-PSS with SHA-2).
    #[error("unsupported certificate signature algorithm {oid}")]
    UnsupportedSignatureAlgorithm {
        /// The self-signature algorithm's OID, dotted.
        oid: String,
    },
    /// The certificate's self-signature does not verify.
    #[error("certificate self-signature is invalid")]
    BadSelfSignature,
    /// The extension value is not a DER `SignedKey`.
    #[error("extension value is not a DER SignedKey")]
    MalformedSignedKey,
    /// The identity key in the extension is of a type outside the four libp2p key types.
    #[error("unsupported identity key type {key_type}")]
    UnsupportedKeyType {
        /// The protobuf `KeyType` value.
        key_type: u64,
    },
    /// The identity key in the extension is malformed or not acceptable.
    #[error("invalid identity key: {0}")]
    InvalidIdentityKey(#[source] crate::identity::Error),
    /// The identity key's signature over the certificate key does not verify.
    #[error("identity signature over the certificate key is invalid")]
    BadExtensionSignature,
    /// The CertificateVerify uses another scheme than the certificate's key and self-signature.
    #[error(
        "handshake signature scheme {handshake:?} differs from the certificate's {certificate:?}"
    )]
    SignatureSchemeMismatch {
        /// The certificate's scheme.
        certificate: rustls::SignatureScheme,
        /// The CertificateVerify's scheme.
        handshake: rustls::SignatureScheme,
    },
    /// The CertificateVerify signature does not verify with the certificate key.
    #[error("handshake signature (CertificateVerify) is invalid")]
    BadHandshakeSignature,
    /// The remote is not the peer the client expected.
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
    /// Another TLS failure reported by rustls (incompatible or misbehaving peer).
    #[error("TLS: {0}")]
    Tls(rustls::Error),
    /// A muxer id cannot be an ALPN id (empty or over 255 bytes).
    #[error("muxer id of {len} bytes cannot be an ALPN id (1 to 255 bytes)")]
    InvalidMuxerId {
        /// Its length, in bytes.
        len: usize,
    },
    /// The identity key could not sign the certificate key.
    #[error("signing the certificate key failed: {0}")]
    Signing(#[source] libp2p_identity::SigningError),
    /// No P-256 key could be derived from the seed (practically impossible).
    #[error("no certificate key derivable from the seed")]
    KeyDerivation,
    /// `into_transport` was called before the handshake finished.
    #[error("the handshake is not finished")]
    NotFinished,
    /// `into_transport` was called while handshake bytes were still waiting in `poll_transmit`.
    #[error("handshake output not yet drained through poll_transmit")]
    UnsentHandshakeData,
    /// `encrypt` after `close`.
    #[error("the transport is closed for sending")]
    Closed,
    /// An earlier error made this handshake or transport unusable.
    #[error("used after a previous error")]
    Failed,
}

impl Error {
    /// Our error for a rustls error (the detail a verifier recorded takes precedence).
    fn from_rustls(err: rustls::Error) -> Self {
        match err {
            rustls::Error::InvalidMessage(m) => Self::InvalidMessage(m),
            rustls::Error::AlertReceived(a) => Self::AlertReceived(a),
            rustls::Error::NoApplicationProtocol => Self::NoApplicationProtocol,
            rustls::Error::NoCertificatesPresented => Self::NoCertificate,
            other => Self::Tls(other),
        }
    }
}
