//! What rustls needs from us, without I/O, clock or OS randomness: the crypto provider (ring
//! ciphers, seeded key exchange and randomness), the time provider, the certificate
//! verifier, the signing key and the certificate resolver.
//!
//! rustls takes randomness and time from shared objects (`CryptoProvider::secure_random` is
//! a `&'static`, the key-exchange groups are `&'static` too, and the `TimeProvider` lives in
//! the shared `ClientConfig`/`ServerConfig`), while in Plait both belong to the machine being
//! driven. So each machine owns a [`Context`] (its seeded RNG, the caller's `now`, the
//! expected peer) and lends it to a thread-local slot for the duration of every rustls call
//! ([`with_context`]); the providers read that slot. rustls calls them only synchronously
//! from within those calls. Outside one, they fail closed (no randomness, no time, no
//! verification). No value is leaked and each handshake's randomness depends only on its
//! config's seed and its index among that config's handshakes.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use libp2p_identity::PeerId;
use rand::{rngs::StdRng, RngCore};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom, SharedSecret,
    SupportedKxGroup,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, NamedGroup, SignatureAlgorithm,
    SignatureScheme,
};

use super::certificate::{self, Certificate, PeerCertificate};
use super::Error;

/// The per-machine state rustls' callbacks need.
pub(super) struct Context {
    /// The randomness of this handshake (and of its transport, which needs none in TLS 1.3).
    pub(super) rng: StdRng,
    /// The caller's wall clock, since the Unix epoch.
    pub(super) now: Duration,
    /// The peer the client dialed; `None` on the server or when unknown.
    pub(super) expected: Option<PeerId>,
    /// Our own peer id: a remote claiming it is refused.
    pub(super) local: PeerId,
    /// The detailed reason a verifier refused the peer (rustls only carries its own errors).
    pub(super) failure: Option<Error>,
    /// The peer certificate that passed verification, with its DER.
    pub(super) verified: Option<(Vec<u8>, PeerCertificate)>,
}

thread_local! {
    /// The context of the machine rustls is running on this thread right now.
    static CURRENT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Runs `f` with `ctx` lent to the rustls callbacks; `ctx` is back in place when this returns
/// (or unwinds).
pub(super) fn with_context<R>(ctx: &mut Option<Context>, f: impl FnOnce() -> R) -> R {
    struct Restore<'a>(&'a mut Option<Context>);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            let lent = CURRENT.with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.take()));
            if lent.is_some() {
                *self.0 = lent;
            }
        }
    }
    let lent = ctx.take();
    CURRENT.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            *c = lent;
        }
    });
    let _restore = Restore(ctx);
    f()
}

/// Calls `f` on the lent context; `None` outside [`with_context`].
fn with_current<R>(f: impl FnOnce(&mut Context) -> R) -> Option<R> {
    CURRENT.with(|c| c.try_borrow_mut().ok()?.as_mut().map(f))
}

/// Fills `buf` from the lent context's RNG.
fn fill(buf: &mut [u8]) -> Result<(), GetRandomFailed> {
    with_current(|c| c.rng.fill_bytes(buf)).ok_or(GetRandomFailed)
}

/// rustls' randomness: the lent context's seeded RNG.
#[derive(Debug)]
struct SeededRandom;

impl SecureRandom for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        fill(buf)
    }
}

/// rustls' clock: the `now` the caller passed to the machine.
#[derive(Debug)]
pub(super) struct CallerTime;

impl rustls::time_provider::TimeProvider for CallerTime {
    fn current_time(&self) -> Option<UnixTime> {
        with_current(|c| UnixTime::since_unix_epoch(c.now))
    }
}

/// X25519 key exchange with the private key drawn from the lent RNG (rustls' ring groups use
/// the OS RNG). curve25519-dalek is already in the build for Noise.
#[derive(Debug)]
struct X25519;

struct X25519Active {
    secret: [u8; 32],
    public: [u8; 32],
}

impl SupportedKxGroup for X25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let mut secret = [0u8; 32];
        fill(&mut secret).map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
        let public = curve25519_dalek::MontgomeryPoint::mul_base_clamped(secret).to_bytes();
        Ok(Box::new(X25519Active { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

impl ActiveKeyExchange for X25519Active {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let peer: [u8; 32] = peer_pub_key
            .try_into()
            .map_err(|_| rustls::PeerMisbehaved::InvalidKeyShare)?;
        let shared = curve25519_dalek::MontgomeryPoint(peer)
            .mul_clamped(self.secret)
            .to_bytes();
        // A low-order peer point gives the all-zero secret (RFC 7748 §6.1): refuse it.
        if shared.iter().all(|b| *b == 0) {
            return Err(rustls::PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// secp256r1 key exchange with the private scalar drawn from the lent RNG.
#[derive(Debug)]
struct Secp256r1;

struct Secp256r1Active {
    secret: p256::NonZeroScalar,
    public: Vec<u8>,
}

impl SupportedKxGroup for Secp256r1 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        for _ in 0..16 {
            let mut bytes = [0u8; 32];
            fill(&mut bytes).map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
            if let Ok(secret) = p256::NonZeroScalar::try_from(&bytes[..]) {
                let public =
                    p256::ecdsa::VerifyingKey::from(p256::PublicKey::from_secret_scalar(&secret))
                        .to_sec1_point(false)
                        .as_bytes()
                        .to_vec();
                return Ok(Box::new(Secp256r1Active { secret, public }));
            }
        }
        Err(rustls::Error::FailedToGetRandomBytes)
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::secp256r1
    }
}

impl ActiveKeyExchange for Secp256r1Active {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, rustls::Error> {
        // TLS 1.3 key shares are uncompressed points (RFC 8446 §4.2.8.2).
        if peer_pub_key.first() != Some(&0x04) {
            return Err(rustls::PeerMisbehaved::InvalidKeyShare.into());
        }
        let peer = p256::PublicKey::from_sec1_bytes(peer_pub_key)
            .map_err(|_| rustls::PeerMisbehaved::InvalidKeyShare)?;
        let shared = p256::ecdh::diffie_hellman(self.secret, peer.as_affine());
        Ok(SharedSecret::from(&shared.raw_secret_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::secp256r1
    }
}

/// The provider: ring's TLS 1.3 suites in rust-libp2p's order, our seeded X25519 and
/// secp256r1, the seeded RNG. Certificate checks do not go through its verification
/// algorithms: our verifiers do them.
pub(super) fn provider() -> CryptoProvider {
    use rustls::crypto::ring::{self as ring_provider, cipher_suite};
    let ring = ring_provider::default_provider();
    CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_AES_128_GCM_SHA256,
        ],
        kx_groups: vec![&X25519, &Secp256r1],
        signature_verification_algorithms: ring.signature_verification_algorithms,
        secure_random: &SeededRandom,
        key_provider: ring.key_provider,
    }
}

/// Our certificate key as rustls signs with it: ECDSA P-256 SHA-256, deterministic.
#[derive(Debug)]
struct CertificateKey(Arc<Certificate>);

impl rustls::sign::SigningKey for CertificateKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(CertificateSigner(self.0.clone())) as Box<dyn rustls::sign::Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

#[derive(Debug)]
struct CertificateSigner(Arc<Certificate>);

impl rustls::sign::Signer for CertificateSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        Ok(self.0.sign(message))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

/// Always presents our one certificate, as client and as server.
#[derive(Debug)]
pub(super) struct Resolver(Arc<CertifiedKey>);

impl Resolver {
    /// Presents `cert` followed by `extra` (always empty but in tests and fuzzers).
    pub(super) fn new(cert: Certificate, extra: Vec<Vec<u8>>) -> Self {
        let chain = std::iter::once(cert.der().to_vec())
            .chain(extra)
            .map(CertificateDer::from)
            .collect();
        let key = Arc::new(CertificateKey(Arc::new(cert)));
        Self(Arc::new(CertifiedKey::new(chain, key)))
    }
}

impl rustls::client::ResolvesClientCert for Resolver {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for Resolver {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The libp2p certificate verifier, both roles (spec §4). The detailed refusal goes to the
/// lent context; rustls gets a certificate error to send its alert with.
#[derive(Debug)]
pub(super) struct Verifier;

/// The rustls error for a refusal: which alert the peer sees (spec §4: any fatal alert).
fn rustls_error(err: &Error) -> rustls::Error {
    rustls::Error::InvalidCertificate(match err {
        Error::PeerIdMismatch { .. } | Error::LocalPeerId(_) => {
            CertificateError::ApplicationVerificationFailure
        }
        Error::Expired => CertificateError::Expired,
        Error::NotYetValid => CertificateError::NotValidYet,
        Error::BadHandshakeSignature | Error::BadSelfSignature => CertificateError::BadSignature,
        _ => CertificateError::BadEncoding,
    })
}

/// Records `err` as the reason and turns it into the rustls error.
fn refuse(ctx: &mut Context, err: Error) -> rustls::Error {
    let rustls_err = rustls_error(&err);
    ctx.failure.get_or_insert(err);
    rustls_err
}

/// No context lent: verification cannot happen, so it fails.
fn no_context() -> rustls::Error {
    rustls::Error::General("libp2p verifier called outside a machine call".into())
}

impl Verifier {
    /// Steps 1–9 of spec §4 for the presented chain.
    fn verify_chain(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        with_current(|ctx| {
            if !intermediates.is_empty() {
                let count = intermediates.len().saturating_add(1);
                return Err(refuse(ctx, Error::NotOneCertificate { count }));
            }
            let cert = match certificate::parse(end_entity, Duration::from_secs(now.as_secs())) {
                Ok(cert) => cert,
                Err(e) => return Err(refuse(ctx, e)),
            };
            let actual = cert.peer_id();
            if let Some(expected) = ctx.expected {
                if expected != actual {
                    let err = Error::PeerIdMismatch {
                        expected: Box::new(expected),
                        actual: Box::new(actual),
                    };
                    return Err(refuse(ctx, err));
                }
            }
            if actual == ctx.local {
                return Err(refuse(ctx, Error::LocalPeerId(actual)));
            }
            ctx.verified = Some((end_entity.to_vec(), cert));
            Ok(())
        })
        .unwrap_or_else(|| Err(no_context()))
    }

    /// Step 10: the CertificateVerify, with the key of the certificate verified before.
    fn verify_signature(
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        with_current(|ctx| {
            let result = match &ctx.verified {
                Some((der, verified)) if der[..] == cert[..] => {
                    verified.verify_signature(dss.scheme, message, dss.signature())
                }
                // rustls passes the certificate it had verified; anything else is refused.
                _ => Err(Error::MalformedCertificate),
            };
            match result {
                Ok(()) => Ok(HandshakeSignatureValid::assertion()),
                Err(e) => Err(refuse(ctx, e)),
            }
        })
        .unwrap_or_else(|| Err(no_context()))
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Self::verify_chain(end_entity, intermediates, now).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is configured; refuse rather than panic should rustls ever ask.
        Err(rustls::PeerIncompatible::Tls12NotOffered.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        certificate::VERIFY_SCHEMES.to_vec()
    }
}

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Self::verify_chain(end_entity, intermediates, now).map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::PeerIncompatible::Tls12NotOffered.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        certificate::VERIFY_SCHEMES.to_vec()
    }
}
