//! The libp2p self-signed certificate: generation, parsing and verification (spec digest
//! `tls.md` §3–§5).
//!
//! We generate what go-libp2p and rust-libp2p generate: an X.509 v3 certificate for a P-256
//! key (never the identity key) signed by itself with ecdsa-with-SHA256, whose only extension
//! is the libp2p public key extension (critical, as rust-libp2p writes it) holding the
//! identity key and its signature over `"libp2p-tls-handshake:" ‖ SubjectPublicKeyInfo`.
//! The DER is laid out here (a fixed shape of a few hundred bytes) and signed with RFC 6979
//! deterministic ECDSA, so the certificate is a pure function of the identity and the seed.
//!
//! A peer's certificate is parsed with `x509-parser` and checked in the order of §4:
//! size, DER, extensions, validity, self-signature, `SignedKey`, identity signature.

use std::time::Duration;

use libp2p_identity::{Keypair, PeerId, PublicKey};
use p256::ecdsa::signature::Signer as _;
use ring::signature as ring_sig;
use rustls::SignatureScheme;
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::oid::Oid;
use x509_parser::oid_registry as oids;
use x509_parser::prelude::FromDer as _;
use x509_parser::signature_algorithm::SignatureAlgorithm;

use super::Error;
use crate::identity;

/// The libp2p public key extension's OID, `1.3.6.1.4.1.53594.1.1` (spec §1).
pub const EXTENSION_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 53594, 1, 1];

/// DER contents of [`EXTENSION_OID`] (after the `06 0a` tag and length).
const EXTENSION_OID_DER: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xa2, 0x5a, 0x01, 0x01];

/// What the identity key signs, followed by the certificate's DER `SubjectPublicKeyInfo`.
pub const SIGNATURE_PREFIX: &[u8] = b"libp2p-tls-handshake:";

/// Largest certificate we parse, in bytes.
///
/// Ours is about 400 bytes; the biggest legitimate one carries an 8192-bit RSA identity key
/// (about 1.1 KiB of key, 1 KiB of signature) and perhaps an RSA certificate key: well under
/// 8 KiB. A bigger one is refused before any parsing.
pub const MAX_CERTIFICATE_LEN: usize = 8 * 1024;

/// DER `SubjectPublicKeyInfo` of a P-256 key (id-ecPublicKey, prime256v1) up to the 65-byte
/// uncompressed point that completes it.
const DER_P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// `AlgorithmIdentifier { ecdsa-with-SHA256 }` (no parameters, RFC 5758 §3.2).
const DER_ECDSA_WITH_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

/// `Validity { UTCTime 1975-01-01T00:00:00Z, GeneralizedTime 4096-01-01T00:00:00Z }`, the
/// period rcgen (rust-libp2p) writes: valid for any clock, wrong or right.
pub(crate) const DER_VALIDITY: &[u8] = &[
    0x30, 0x20, 0x17, 0x0d, b'7', b'5', b'0', b'1', b'0', b'1', b'0', b'0', b'0', b'0', b'0', b'0',
    b'Z', 0x18, 0x0f, b'4', b'0', b'9', b'6', b'0', b'1', b'0', b'1', b'0', b'0', b'0', b'0', b'0',
    b'0', b'Z',
];

/// Our certificate and the P-256 key it certifies.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    key: p256::ecdsa::SigningKey,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("der_len", &self.der.len())
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// Generates the certificate of `identity` for the P-256 key derived from `key_seed`
    /// (deterministic: the same inputs give the same DER).
    pub fn generate(identity: &Keypair, key_seed: [u8; 32]) -> Result<Self, Error> {
        let key = p256_key_from_seed(key_seed)?;
        let spki = p256_spki(&key);
        let extension = libp2p_extension(identity, &spki, true)?;
        let der = build(&key, spki, DER_VALIDITY, &[extension]);
        Ok(Self { der, key })
    }

    /// A certificate for the key of `key_seed` with the given DER `Validity` and DER
    /// `Extension`s, self-signed (tests build hostile certificates with it).
    #[cfg(test)]
    pub(crate) fn custom(key_seed: [u8; 32], validity: &[u8], extensions: &[Vec<u8>]) -> Self {
        let key = p256_key_from_seed(key_seed).unwrap_or_else(|_| unreachable_key());
        let spki = p256_spki(&key);
        let der = build(&key, spki, validity, extensions);
        Self { der, key }
    }

    /// The same key presenting another certificate (tests: a CertificateVerify by a key the
    /// certificate does not hold).
    #[cfg(test)]
    pub(crate) fn with_der(mut self, der: Vec<u8>) -> Self {
        self.der = der;
        self
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Signs `message` with the certificate key (ECDSA P-256 SHA-256, RFC 6979, DER), as the
    /// TLS 1.3 CertificateVerify needs.
    pub(super) fn sign(&self, message: &[u8]) -> Vec<u8> {
        ecdsa_p256_der(&self.key, message)
    }
}

/// The P-256 key of a seed: the first valid scalar among SHA-256(domain ‖ seed ‖ counter).
fn p256_key_from_seed(seed: [u8; 32]) -> Result<p256::ecdsa::SigningKey, Error> {
    for counter in 0u8..16 {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"plait-tls-certificate-key");
        ctx.update(&seed);
        ctx.update(&[counter]);
        if let Ok(key) = p256::ecdsa::SigningKey::from_slice(ctx.finish().as_ref()) {
            return Ok(key);
        }
    }
    // 16 consecutive SHA-256 outputs ≥ the group order: probability about 2^-512.
    Err(Error::KeyDerivation)
}

/// ECDSA P-256 over SHA-256 of `message`, deterministic (RFC 6979), as a DER `Ecdsa-Sig-Value`.
fn ecdsa_p256_der(key: &p256::ecdsa::SigningKey, message: &[u8]) -> Vec<u8> {
    let sig: p256::ecdsa::Signature = key.sign(message);
    let (r, s) = sig.split_bytes();
    der(0x30, &[der_uint(&r), der_uint(&s)].concat())
}

/// A DER `INTEGER` holding the unsigned big-endian `bytes`, minimally encoded.
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let digits = bytes.get(start..).unwrap_or_default();
    let mut content = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(digits);
    der(0x02, &content)
}

/// One DER element: `tag`, definite length, `content`.
pub(crate) fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let be = (len as u32).to_be_bytes();
        let skip = be.iter().take_while(|b| **b == 0).count();
        let digits = be.get(skip..).unwrap_or_default();
        out.push(0x80 | digits.len() as u8);
        out.extend_from_slice(digits);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
fn unreachable_key() -> p256::ecdsa::SigningKey {
    // Seeds come from tests; a scalar of all 0x11 bytes is valid.
    match p256::ecdsa::SigningKey::from_slice(&[0x11; 32]) {
        Ok(k) => k,
        Err(_) => unreachable!("0x11..11 is a valid P-256 scalar"),
    }
}

/// The DER `SubjectPublicKeyInfo` of a P-256 key.
pub(crate) fn p256_spki(key: &p256::ecdsa::SigningKey) -> Vec<u8> {
    let point = key.verifying_key().to_sec1_point(false);
    let mut spki = DER_P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(point.as_bytes());
    spki
}

/// The DER `Extension` carrying `SignedKey { identity key, its signature over prefix ‖ spki }`.
pub(crate) fn libp2p_extension(
    identity: &Keypair,
    spki: &[u8],
    critical: bool,
) -> Result<Vec<u8>, Error> {
    let mut signed = SIGNATURE_PREFIX.to_vec();
    signed.extend_from_slice(spki);
    let signature = identity.sign(&signed).map_err(Error::Signing)?;
    Ok(extension(
        EXTENSION_OID_DER,
        critical,
        &signed_key(&identity.public().encode_protobuf(), &signature),
    ))
}

/// DER `SignedKey ::= SEQUENCE { publicKey OCTET STRING, signature OCTET STRING }`.
pub(crate) fn signed_key(public_key: &[u8], signature: &[u8]) -> Vec<u8> {
    der(
        0x30,
        &[der(0x04, public_key), der(0x04, signature)].concat(),
    )
}

/// A DER `Extension { extnID, critical (only if TRUE, as DER wants), extnValue }`.
pub(crate) fn extension(oid_der: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let critical: &[u8] = if critical { &[0x01, 0x01, 0xff] } else { &[] };
    der(
        0x30,
        &[der(0x06, oid_der), critical.to_vec(), der(0x04, value)].concat(),
    )
}

/// The libp2p extension OID's DER contents (for tests building extensions).
#[cfg(test)]
pub(crate) const LIBP2P_OID_DER: &[u8] = EXTENSION_OID_DER;

/// A self-signed v3 certificate for `key` (whose SPKI is `spki`): empty issuer and subject,
/// serial from SHA-256(spki), `validity` and `extensions` as given (DER).
fn build(
    key: &p256::ecdsa::SigningKey,
    spki: Vec<u8>,
    validity: &[u8],
    extensions: &[Vec<u8>],
) -> Vec<u8> {
    // Serial: 8 bytes of SHA-256(SPKI), made positive and minimal (first byte 0x40..0x7f).
    let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
    let mut serial = digest.as_ref().get(..8).unwrap_or(&[1; 8]).to_vec();
    if let Some(first) = serial.first_mut() {
        *first = (*first & 0x3f) | 0x40;
    }
    let empty_name = [0x30, 0x00]; // issuer = subject = empty, as rcgen writes
    let extensions = if extensions.is_empty() {
        Vec::new()
    } else {
        der(0xa3, &der(0x30, &extensions.concat()))
    };
    let tbs = der(
        0x30,
        &[
            vec![0xa0, 0x03, 0x02, 0x01, 0x02], // [0] version v3
            der(0x02, &serial),
            DER_ECDSA_WITH_SHA256.to_vec(),
            empty_name.to_vec(),
            validity.to_vec(),
            empty_name.to_vec(),
            spki,
            extensions,
        ]
        .concat(),
    );
    let self_signature = ecdsa_p256_der(key, &tbs);
    let mut bits = vec![0x00]; // no unused bits
    bits.extend_from_slice(&self_signature);
    der(
        0x30,
        &[tbs, DER_ECDSA_WITH_SHA256.to_vec(), der(0x03, &bits)].concat(),
    )
}

/// The signature scheme a certificate key signs with (its self-signature, and the TLS 1.3
/// CertificateVerify that must use the same scheme, as rust-libp2p requires).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    EcdsaP256Sha256,
    EcdsaP384Sha384,
    Ed25519,
    RsaPssSha256,
    RsaPssSha384,
    RsaPssSha512,
}

impl Scheme {
    fn tls(self) -> SignatureScheme {
        match self {
            Self::EcdsaP256Sha256 => SignatureScheme::ECDSA_NISTP256_SHA256,
            Self::EcdsaP384Sha384 => SignatureScheme::ECDSA_NISTP384_SHA384,
            Self::Ed25519 => SignatureScheme::ED25519,
            Self::RsaPssSha256 => SignatureScheme::RSA_PSS_SHA256,
            Self::RsaPssSha384 => SignatureScheme::RSA_PSS_SHA384,
            Self::RsaPssSha512 => SignatureScheme::RSA_PSS_SHA512,
        }
    }

    fn ring(self) -> &'static dyn ring_sig::VerificationAlgorithm {
        match self {
            Self::EcdsaP256Sha256 => &ring_sig::ECDSA_P256_SHA256_ASN1,
            Self::EcdsaP384Sha384 => &ring_sig::ECDSA_P384_SHA384_ASN1,
            Self::Ed25519 => &ring_sig::ED25519,
            Self::RsaPssSha256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
            Self::RsaPssSha384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
            Self::RsaPssSha512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
        }
    }
}

/// The TLS 1.3 CertificateVerify schemes we accept (every [`Scheme`]), in the order
/// rust-libp2p advertises them.
pub(super) const VERIFY_SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
];

/// A peer's certificate that passed every check of spec §4 (steps 2–8).
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    peer_id: PeerId,
    public_key: PublicKey,
    scheme: Scheme,
    /// The certificate key's `subjectPublicKey` bits (what ring verifies with).
    key_bits: Vec<u8>,
}

impl PeerCertificate {
    /// The peer id of the identity key in the extension (never of the certificate key).
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The identity key in the extension.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The TLS signature scheme of the certificate key.
    pub fn signature_scheme(&self) -> SignatureScheme {
        self.scheme.tls()
    }

    /// Verifies a TLS 1.3 CertificateVerify `signature` over `message` made with the
    /// certificate key under `scheme` (which must be the certificate's own scheme).
    pub fn verify_signature(
        &self,
        scheme: SignatureScheme,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), Error> {
        if scheme != self.scheme.tls() {
            return Err(Error::SignatureSchemeMismatch {
                certificate: self.scheme.tls(),
                handshake: scheme,
            });
        }
        ring_sig::UnparsedPublicKey::new(self.scheme.ring(), &self.key_bits)
            .verify(message, signature)
            .map_err(|_| Error::BadHandshakeSignature)
    }
}

/// Parses and verifies a libp2p certificate (spec §4 steps 2–8) at `now_unix` (time since
/// the Unix epoch).
pub fn parse(der: &[u8], now_unix: Duration) -> Result<PeerCertificate, Error> {
    if der.len() > MAX_CERTIFICATE_LEN {
        return Err(Error::CertificateTooLarge { len: der.len() });
    }
    let cert = match X509Certificate::from_der(der) {
        Ok(([], cert)) => cert,
        Ok((rest, _)) => {
            return Err(Error::TrailingCertificateBytes { len: rest.len() });
        }
        Err(_) => return Err(Error::MalformedCertificate),
    };

    // Step 3: the libp2p extension exactly once; no other critical extension.
    let libp2p_oid = Oid::new(EXTENSION_OID_DER.into());
    let mut signed_key = None;
    for ext in cert.extensions() {
        if ext.oid == libp2p_oid {
            if signed_key.is_some() {
                return Err(Error::DuplicateExtension);
            }
            signed_key = Some(ext.value);
        } else if ext.critical {
            return Err(Error::UnknownCriticalExtension {
                oid: ext.oid.to_id_string(),
            });
        }
    }
    let signed_key = signed_key.ok_or(Error::MissingExtension)?;

    // Step 4: validity.
    let now = i64::try_from(now_unix.as_secs()).unwrap_or(i64::MAX);
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(Error::NotYetValid);
    }
    if now > validity.not_after.timestamp() {
        return Err(Error::Expired);
    }

    // Step 5: self-signature.
    let scheme = scheme_of(&cert)?;
    let key_bits = cert.public_key().subject_public_key.data.to_vec();
    ring_sig::UnparsedPublicKey::new(scheme.ring(), &key_bits)
        .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        .map_err(|_| Error::BadSelfSignature)?;

    // Steps 6–8: SignedKey, identity key, identity signature, peer id.
    let (key_bytes, signature) = decode_signed_key(signed_key)?;
    let public_key = identity::decode_public_key(key_bytes).map_err(|e| match e {
        identity::Error::UnknownKeyType(key_type) => Error::UnsupportedKeyType { key_type },
        other => Error::InvalidIdentityKey(other),
    })?;
    let mut message = SIGNATURE_PREFIX.to_vec();
    message.extend_from_slice(cert.public_key().raw);
    if !public_key.verify(&message, signature) {
        return Err(Error::BadExtensionSignature);
    }
    Ok(PeerCertificate {
        peer_id: public_key.to_peer_id(),
        public_key,
        scheme,
        key_bits,
    })
}

/// The certificate key's scheme, from its key algorithm and its self-signature algorithm
/// (curve and hash must match; NamedCurve parameters only).
fn scheme_of(cert: &X509Certificate<'_>) -> Result<Scheme, Error> {
    let sig_alg = &cert.signature_algorithm;
    let key_alg = &cert.public_key().algorithm;
    let unsupported = || Error::UnsupportedSignatureAlgorithm {
        oid: sig_alg.algorithm.to_id_string(),
    };
    if key_alg.algorithm == oids::OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = key_alg
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or(Error::MalformedCertificate)?;
        return if curve == oids::OID_EC_P256 && sig_alg.algorithm == oids::OID_SIG_ECDSA_WITH_SHA256
        {
            Ok(Scheme::EcdsaP256Sha256)
        } else if curve == oids::OID_NIST_EC_P384
            && sig_alg.algorithm == oids::OID_SIG_ECDSA_WITH_SHA384
        {
            Ok(Scheme::EcdsaP384Sha384)
        } else {
            Err(unsupported())
        };
    }
    if key_alg.algorithm == oids::OID_SIG_ED25519 && sig_alg.algorithm == oids::OID_SIG_ED25519 {
        return Ok(Scheme::Ed25519);
    }
    if key_alg.algorithm == oids::OID_PKCS1_RSAENCRYPTION
        && sig_alg.algorithm == oids::OID_PKCS1_RSASSAPSS
    {
        if let Ok(SignatureAlgorithm::RSASSA_PSS(params)) = SignatureAlgorithm::try_from(sig_alg) {
            let hash = params.hash_algorithm_oid();
            if hash == &oids::OID_NIST_HASH_SHA256 {
                return Ok(Scheme::RsaPssSha256);
            }
            if hash == &oids::OID_NIST_HASH_SHA384 {
                return Ok(Scheme::RsaPssSha384);
            }
            if hash == &oids::OID_NIST_HASH_SHA512 {
                return Ok(Scheme::RsaPssSha512);
            }
        }
    }
    Err(unsupported())
}

/// Splits `SignedKey ::= SEQUENCE { publicKey OCTET STRING, signature OCTET STRING }` (DER,
/// nothing after it) into its two fields.
fn decode_signed_key(value: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    let (seq, rest) = crate::der::element(0x30, value).ok_or(Error::MalformedSignedKey)?;
    if !rest.is_empty() {
        return Err(Error::MalformedSignedKey);
    }
    let (key, rest) = crate::der::element(0x04, seq).ok_or(Error::MalformedSignedKey)?;
    let (signature, rest) = crate::der::element(0x04, rest).ok_or(Error::MalformedSignedKey)?;
    if !rest.is_empty() {
        return Err(Error::MalformedSignedKey);
    }
    Ok((key, signature))
}
