//! The XX handshake machine, its configuration and the libp2p payload rules.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use libp2p_identity::{Keypair, PeerId, PublicKey};
use prost::Message as _;
use rand::{rngs::StdRng, RngCore, SeedableRng};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use super::payload::{NoiseExtensions, NoiseHandshakePayload};
use super::transport::{take_frame, Transport};
use super::{Error, MAX_FRAME_LEN, MAX_REMOTE_MUXERS, NOISE_PARAMS, STATIC_KEY_DOMAIN, TAG_LEN};

/// Bytes a Noise message adds around the payload in message 2 (`e`, encrypted `s`, tag); the
/// largest overhead of the three messages, so it bounds our own payload.
const MSG2_OVERHEAD: usize = 32 + 32 + TAG_LEN + TAG_LEN;

/// Configuration shared by all handshakes of one local identity.
///
/// Holds the X25519 static key (generated once per `Config` like rust-libp2p, never the
/// identity key, never persisted), its signature by the identity key, the early muxer list and
/// the seed every handshake's ephemeral key is derived from (so tests are deterministic; seed
/// it from a CSPRNG in production, e.g. with [`Config::from_rng`]).
pub struct Config {
    identity: Keypair,
    local_peer: PeerId,
    pub(super) static_secret: [u8; 32],
    static_public: Vec<u8>,
    pub(super) signature: Vec<u8>,
    muxers: Vec<String>,
    prologue: Vec<u8>,
    seed: [u8; 32],
    counter: AtomicU64,
    #[cfg(test)]
    fixed_ephemeral: Option<[u8; 32]>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("local_peer", &self.local_peer)
            .field("muxers", &self.muxers)
            .field("prologue", &self.prologue)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A configuration for `identity` whose static key and ephemeral keys all derive from
    /// `seed` (deterministic: the same seed gives the same keys).
    pub fn new(identity: Keypair, seed: [u8; 32]) -> Result<Self, Error> {
        let mut rng = StdRng::from_seed(seed);
        let mut static_secret = [0u8; 32];
        rng.fill_bytes(&mut static_secret);
        let mut handshake_seed = [0u8; 32];
        rng.fill_bytes(&mut handshake_seed);
        Self::with_keys(identity, static_secret, handshake_seed)
    }

    /// A configuration for `identity` seeded from `rng` (use a CSPRNG such as `OsRng`).
    pub fn from_rng(identity: Keypair, rng: &mut impl RngCore) -> Result<Self, Error> {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::new(identity, seed)
    }

    fn with_keys(
        identity: Keypair,
        static_secret: [u8; 32],
        seed: [u8; 32],
    ) -> Result<Self, Error> {
        let mut dh = DefaultResolver
            .resolve_dh(&DHChoice::Curve25519)
            .ok_or(snow::Error::Init(snow::error::InitStage::GetDhImpl))?;
        dh.set(&static_secret);
        let static_public = dh.pubkey().to_vec();
        let mut signed = Vec::with_capacity(STATIC_KEY_DOMAIN.len() + static_public.len());
        signed.extend_from_slice(STATIC_KEY_DOMAIN);
        signed.extend_from_slice(&static_public);
        let signature = identity.sign(&signed)?;
        Ok(Self {
            local_peer: identity.public().to_peer_id(),
            identity,
            static_secret,
            static_public,
            signature,
            muxers: Vec::new(),
            prologue: Vec::new(),
            seed,
            counter: AtomicU64::new(0),
            #[cfg(test)]
            fixed_ephemeral: None,
        })
    }

    /// Sets the early muxer list (protocol ids, preference order) sent in the handshake
    /// extensions; empty (the default) sends no extensions.
    pub fn with_muxers(mut self, muxers: Vec<String>) -> Self {
        self.muxers = muxers;
        self
    }

    /// Sets the Noise prologue (default empty, as on TCP/WebSocket); both sides must agree.
    pub fn with_prologue(mut self, prologue: Vec<u8>) -> Self {
        self.prologue = prologue;
        self
    }

    /// The local peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer
    }

    /// The local X25519 static public key (32 bytes).
    pub fn static_public_key(&self) -> &[u8] {
        &self.static_public
    }

    #[cfg(test)]
    pub(crate) fn with_fixed_keys_for_testing(
        identity: Keypair,
        static_secret: [u8; 32],
        ephemeral: [u8; 32],
    ) -> Result<Self, Error> {
        let mut c = Self::with_keys(identity, static_secret, [0; 32])?;
        c.fixed_ephemeral = Some(ephemeral);
        Ok(c)
    }

    /// Encodes our `NoiseHandshakePayload` (identity key, signature, muxers).
    pub(super) fn encode_payload(&self) -> Result<Vec<u8>, Error> {
        let payload = NoiseHandshakePayload {
            identity_key: Some(self.identity.public().encode_protobuf()),
            identity_sig: Some(self.signature.clone()),
            extensions: (!self.muxers.is_empty()).then(|| NoiseExtensions {
                webtransport_certhashes: Vec::new(),
                stream_muxers: self.muxers.clone(),
            }),
        };
        let len = payload.encoded_len();
        if len + MSG2_OVERHEAD > MAX_FRAME_LEN {
            return Err(Error::PayloadTooLarge { len });
        }
        Ok(payload.encode_to_vec())
    }

    /// The seed of the next handshake's RNG: SHA-256(seed ‖ counter), so handshakes from one
    /// config never share an ephemeral key.
    fn next_handshake_seed(&self) -> [u8; 32] {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"plait-noise-ephemeral");
        ctx.update(&self.seed);
        ctx.update(&n.to_le_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn build(&self, initiator: bool) -> Result<snow::HandshakeState, Error> {
        let params: snow::params::NoiseParams = NOISE_PARAMS.parse()?;
        let resolver = SeededResolver {
            seed: self.next_handshake_seed(),
        };
        let builder = snow::Builder::with_resolver(params, Box::new(resolver))
            .local_private_key(&self.static_secret)?
            .prologue(&self.prologue)?;
        #[cfg(test)]
        let builder = match &self.fixed_ephemeral {
            Some(e) => builder.fixed_ephemeral_key_for_testing_only(e),
            None => builder,
        };
        Ok(if initiator {
            builder.build_initiator()?
        } else {
            builder.build_responder()?
        })
    }
}

/// snow resolver: ring for ChaCha20-Poly1305 and SHA-256, snow's X25519, and a seeded RNG so
/// that randomness is an input of the core.
struct SeededResolver {
    seed: [u8; 32],
}

struct SeededRandom(StdRng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeededRandom(StdRng::from_seed(self.seed))))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        RingResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        RingResolver.resolve_cipher(choice)
    }
}

/// What a successful handshake established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The authenticated remote peer.
    pub remote_peer: PeerId,
    /// The remote identity key.
    pub remote_key: PublicKey,
    /// The early-negotiated muxer: the first of the initiator's list the responder also lists.
    /// `None` when either side sent no list or they share none: negotiate the muxer with
    /// multistream-select after the handshake (go-libp2p behaviour).
    pub muxer: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Initiator: message 1 queued, waiting for message 2.
    AwaitMsg2,
    /// Responder: waiting for message 1.
    AwaitMsg1,
    /// Responder: message 2 queued, waiting for message 3.
    AwaitMsg3,
    /// Both messages exchanged and the remote authenticated.
    Done,
    /// An error occurred; the handshake is dead.
    Failed,
}

/// A Noise XX handshake in either role.
pub struct Handshake {
    state: snow::HandshakeState,
    initiator: bool,
    step: Step,
    local_payload: Vec<u8>,
    local_muxers: Vec<String>,
    local_peer: PeerId,
    expected: Option<PeerId>,
    pending: BytesMut,
    outcome: Option<Outcome>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("initiator", &self.initiator)
            .field("step", &self.step)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// Starts a handshake as initiator (the dialer) and queues message 1. With
    /// `expected_peer`, a different responder is rejected before message 3 reveals our
    /// identity ([`Error::PeerIdMismatch`]).
    pub fn initiator(config: &Config, expected_peer: Option<PeerId>) -> Result<Self, Error> {
        let mut hs = Self::new(config, true, expected_peer)?;
        hs.write_message(false)?;
        hs.step = Step::AwaitMsg2;
        Ok(hs)
    }

    /// Starts a handshake as responder (the listener).
    pub fn responder(config: &Config) -> Result<Self, Error> {
        Self::new(config, false, None)
    }

    fn new(config: &Config, initiator: bool, expected: Option<PeerId>) -> Result<Self, Error> {
        Ok(Self {
            state: config.build(initiator)?,
            initiator,
            step: Step::AwaitMsg1,
            local_payload: config.encode_payload()?,
            local_muxers: config.muxers.clone(),
            local_peer: config.local_peer,
            expected,
            pending: BytesMut::new(),
            outcome: None,
        })
    }

    /// Consumes whole handshake frames from the front of `input`; a partial frame stays there,
    /// and so do all bytes after the peer's last handshake message.
    ///
    /// After an error the handshake is dead and every call returns [`Error::Failed`].
    pub fn handle_input(&mut self, input: &mut BytesMut) -> Result<(), Error> {
        let result = self.handle_input_inner(input);
        if result.is_err() {
            self.step = Step::Failed;
        }
        result
    }

    fn handle_input_inner(&mut self, input: &mut BytesMut) -> Result<(), Error> {
        loop {
            match self.step {
                Step::Done => return Ok(()),
                Step::Failed => return Err(Error::Failed),
                Step::AwaitMsg1 => {
                    let Some(msg) = take_frame(input) else {
                        return Ok(());
                    };
                    let mut payload = vec![0u8; msg.len()];
                    let len = self.state.read_message(&msg, &mut payload)?;
                    if len != 0 {
                        return Err(Error::NonEmptyFirstPayload { len });
                    }
                    self.write_message(true)?;
                    self.step = Step::AwaitMsg3;
                }
                Step::AwaitMsg2 | Step::AwaitMsg3 => {
                    let Some(msg) = take_frame(input) else {
                        return Ok(());
                    };
                    let mut payload = vec![0u8; msg.len()];
                    let len = self.state.read_message(&msg, &mut payload)?;
                    payload.truncate(len);
                    let outcome = self.verify_remote(&payload)?;
                    if self.initiator {
                        self.write_message(true)?;
                    }
                    self.outcome = Some(outcome);
                    self.step = Step::Done;
                }
            }
        }
    }

    /// Writes the next Noise message (with our payload if `with_payload`) into `pending`,
    /// framed, without an intermediate buffer.
    fn write_message(&mut self, with_payload: bool) -> Result<(), Error> {
        let payload: &[u8] = if with_payload {
            &self.local_payload
        } else {
            &[]
        };
        let start = self.pending.len();
        let max = (payload.len() + MSG2_OVERHEAD).min(MAX_FRAME_LEN);
        self.pending.resize(start + 2 + max, 0);
        let body = self.pending.get_mut(start + 2..).unwrap_or_default();
        let n = self.state.write_message(payload, body)?;
        self.pending.truncate(start + 2 + n);
        let len = u16::try_from(n).map_err(|_| Error::PayloadTooLarge { len: n })?;
        if let Some(prefix) = self.pending.get_mut(start..start + 2) {
            prefix.copy_from_slice(&len.to_be_bytes());
        }
        Ok(())
    }

    /// Validates the remote payload of message 2 or 3 (spec digest §5, go-libp2p order:
    /// decode, key, peer id checks, then signature over the static key from the Noise state).
    fn verify_remote(&self, payload: &[u8]) -> Result<Outcome, Error> {
        let payload = NoiseHandshakePayload::decode(payload)?;
        let key_bytes = payload.identity_key.ok_or(Error::MissingIdentityKey)?;
        let remote_key = PublicKey::try_decode_protobuf(&key_bytes)?;
        crate::identity::check_remote_key(&remote_key).map_err(Error::RejectedKey)?;
        let remote_peer = remote_key.to_peer_id();
        if let Some(expected) = self.expected {
            if expected != remote_peer {
                return Err(Error::PeerIdMismatch {
                    expected: Box::new(expected),
                    actual: Box::new(remote_peer),
                });
            }
        }
        if remote_peer == self.local_peer {
            return Err(Error::LocalPeerId(remote_peer));
        }
        let sig = payload.identity_sig.ok_or(Error::MissingSignature)?;
        let remote_static = self.state.get_remote_static().ok_or(Error::BadSignature)?;
        let mut signed = Vec::with_capacity(STATIC_KEY_DOMAIN.len() + remote_static.len());
        signed.extend_from_slice(STATIC_KEY_DOMAIN);
        signed.extend_from_slice(remote_static);
        if !remote_key.verify(&signed, &sig) {
            return Err(Error::BadSignature);
        }
        let remote_muxers = payload
            .extensions
            .map(|e| e.stream_muxers)
            .unwrap_or_default();
        let (init_list, resp_list) = if self.initiator {
            (&self.local_muxers, &remote_muxers)
        } else {
            (&remote_muxers, &self.local_muxers)
        };
        // A list over the limit counts as absent on both sides, so both compute the same.
        let muxer = if init_list.len() > MAX_REMOTE_MUXERS || resp_list.len() > MAX_REMOTE_MUXERS {
            None
        } else {
            init_list.iter().find(|m| resp_list.contains(m)).cloned()
        };
        Ok(Outcome {
            remote_peer,
            remote_key,
            muxer,
        })
    }

    /// Appends the queued handshake bytes to `out`; returns how many, `None` if nothing.
    pub fn poll_transmit(&mut self, out: &mut BytesMut) -> Option<usize> {
        crate::buffer::drain_into(&mut self.pending, out)
    }

    /// True once our last message is queued and the peer's last message is verified.
    pub fn is_finished(&self) -> bool {
        self.step == Step::Done
    }

    /// The authenticated remote peer, once its payload has been verified.
    pub fn remote_peer(&self) -> Option<PeerId> {
        self.outcome.as_ref().map(|o| o.remote_peer)
    }

    /// Turns the finished handshake into the encrypted transport.
    ///
    /// Errors with [`Error::NotFinished`] before [`Handshake::is_finished`], and with
    /// [`Error::UnsentHandshakeData`] while [`Handshake::poll_transmit`] still has bytes.
    pub fn into_transport(mut self) -> Result<(Transport, Outcome), Error> {
        if self.step != Step::Done || !self.state.is_handshake_finished() {
            return Err(Error::NotFinished);
        }
        if !self.pending.is_empty() {
            return Err(Error::UnsentHandshakeData);
        }
        let outcome = self.outcome.take().ok_or(Error::NotFinished)?;
        let (i2r, r2i) = self.state.dangerously_get_raw_split();
        let transport = if self.initiator {
            Transport::new(&i2r, &r2i)?
        } else {
            Transport::new(&r2i, &i2r)?
        };
        Ok((transport, outcome))
    }

    /// The handshake hash (channel binding), 32 bytes.
    pub fn handshake_hash(&self) -> &[u8] {
        self.state.get_handshake_hash()
    }
}
