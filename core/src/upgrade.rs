//! The upgrade of one raw byte pipe into an authenticated, multiplexed connection.
//!
//! ```text
//! raw bytes ─ multistream (/noise | /tls/1.0.0 | /plaintext/2.0.0) ─ handshake ─┬─ early muxer ─────────────┬─ yamux
//!                                                                                └─ multistream (/yamux/1.0.0) ┘
//! ```
//!
//! The early muxer is agreed inside the handshake: Noise's extensions, TLS's ALPN. The dialer of
//! the connection is the multistream dialer, the Noise initiator or TLS client, and the yamux
//! client. A host may offer several security protocols: the dialer proposes them in its order
//! of preference (waiting for each answer), the listener accepts any of them. Dialer-side
//! negotiations with a single candidate are lazy (rust-libp2p's `V1Lazy`): the proposal, the first handshake message and, after the handshake, the muxer
//! proposal and the first yamux frames leave in the same flights, so a connection is usable
//! after the handshake's round trips. Bytes that arrive early for a later stage are kept and
//! handed to it.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use libp2p_identity::{Keypair, PeerId, PublicKey};

use crate::multistream::{
    self, Dialer, DialerMode, DialerStatus, Listener, ListenerConfig, ListenerStatus, Protocol,
    ProtocolSet,
};
use crate::time::Instant;
use crate::{noise, plaintext, tls};

/// The multistream id of the Noise handshake.
pub const NOISE: Protocol = Protocol::from_static("/noise");
/// The multistream id of libp2p TLS.
pub const TLS: Protocol = Protocol::from_static(tls::PROTOCOL);
/// The multistream id of the plaintext (insecure) exchange.
pub const PLAINTEXT: Protocol = Protocol::from_static("/plaintext/2.0.0");
/// The multistream id of yamux.
pub const YAMUX: Protocol = Protocol::from_static("/yamux/1.0.0");

/// The longest a connection may take from its first byte to an established muxer, unless
/// configured otherwise (go-libp2p's accept timeout).
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(15);

/// Raw bytes an upgrade queues for the socket before it stops consuming input: a peer that
/// makes us answer without reading the answers is held by back-pressure (its bytes stay in
/// the caller's input buffer) until it reads or the upgrade times out. A real upgrade queues a
/// few hundred bytes at a time.
pub const MAX_PENDING_OUTPUT: usize = 16 * 1024;

/// Decrypted bytes an upgrade holds before it stops decrypting: what a peer sent inside the
/// secure channel before the muxer was agreed.
pub const MAX_PENDING_INPUT: usize = 16 * 1024;

/// The most an upgrade ever holds ([`Upgrade::buffered_bytes`]), whatever the peer sends and
/// however rarely the caller drains it: both bounds above, plus what the one step that crosses
/// a bound can add (a Noise message of at most [`noise::MAX_FRAME_LEN`] bytes and its length
/// prefix, on each side).
pub const MAX_BUFFERED: usize =
    MAX_PENDING_OUTPUT + MAX_PENDING_INPUT + 2 * (noise::MAX_FRAME_LEN + 2);

/// A security protocol connections may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// Noise XX (`/noise`), authenticated and encrypted.
    #[default]
    Noise,
    /// libp2p TLS 1.3 (`/tls/1.0.0`), authenticated and encrypted; go-libp2p's first choice.
    Tls,
    /// `/plaintext/2.0.0`: authenticated identities, no encryption. For tests and trusted
    /// networks only (go-libp2p echo's `-insecure`).
    Plaintext,
}

impl Security {
    /// The multistream id.
    pub fn protocol(self) -> Protocol {
        match self {
            Self::Noise => NOISE,
            Self::Tls => TLS,
            Self::Plaintext => PLAINTEXT,
        }
    }
}

/// The security protocols of a host by default: Noise, then TLS.
pub const DEFAULT_SECURITY: [Security; 2] = [Security::Noise, Security::Tls];

/// Which end of the connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We opened the connection: multistream dialer, Noise initiator, yamux client.
    Dialer,
    /// We accepted it.
    Listener,
}

/// Settings shared by every upgrade of a host.
#[derive(Clone)]
pub struct UpgradeConfig {
    /// Our identity.
    pub keypair: Keypair,
    /// The security protocols, in our order of preference (never empty): a dialer proposes
    /// them in this order, a listener accepts any of them.
    pub security: Vec<Security>,
    /// How long an upgrade may take.
    pub timeout: Duration,
    /// The Noise configuration (static key, early muxers, handshake randomness).
    pub noise: Arc<noise::Config>,
    /// The plaintext exchange configuration.
    pub plaintext: Arc<plaintext::Config>,
    /// The TLS configuration (certificate, ALPN muxers, handshake randomness), made on first
    /// use: a host that never speaks TLS never pays for its certificate.
    tls: Arc<std::sync::OnceLock<tls::Config>>,
    /// The seed of the TLS configuration.
    tls_seed: [u8; 32],
    /// The wall clock, as time since the Unix epoch, for the validity of TLS certificates:
    /// the core reads no clock, so its driver keeps this current (e.g. with
    /// [`Coordinator::set_unix_time`](crate::swarm::Coordinator::set_unix_time)).
    pub unix_time: Duration,
}

impl std::fmt::Debug for UpgradeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpgradeConfig")
            .field("peer", &self.keypair.public().to_peer_id())
            .field("security", &self.security)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl UpgradeConfig {
    /// Noise then TLS ([`DEFAULT_SECURITY`]) with the default timeout, announcing yamux for
    /// early muxer negotiation. `seed` seeds the handshakes' randomness (Noise keys, TLS
    /// randoms, key shares and certificate key): pass fresh random bytes in production, a
    /// fixed value for reproducible tests.
    pub fn new(keypair: Keypair, seed: [u8; 32]) -> Result<Self, Error> {
        let noise = noise::Config::new(keypair.clone(), seed)?.with_muxers(vec![YAMUX.to_string()]);
        let plaintext = plaintext::Config::new(keypair.public());
        let mut tls_seed = seed;
        tls_seed[31] ^= 0x5a;
        Ok(Self {
            keypair,
            security: DEFAULT_SECURITY.to_vec(),
            timeout: DEFAULT_UPGRADE_TIMEOUT,
            noise: Arc::new(noise),
            plaintext: Arc::new(plaintext),
            tls: Arc::new(std::sync::OnceLock::new()),
            tls_seed,
            unix_time: Duration::ZERO,
        })
    }

    /// Uses `security` alone (a dialer then proposes it lazily: one round trip less).
    pub fn with_security(mut self, security: Security) -> Self {
        self.security = vec![security];
        self
    }

    /// Uses these security protocols, in this order of preference (an empty list keeps the
    /// current one).
    pub fn with_securities(mut self, security: impl IntoIterator<Item = Security>) -> Self {
        let list: Vec<Security> = security.into_iter().fold(Vec::new(), |mut v, s| {
            if !v.contains(&s) {
                v.push(s);
            }
            v
        });
        if !list.is_empty() {
            self.security = list;
        }
        self
    }

    /// The TLS configuration, made on first use.
    pub fn tls(&self) -> Result<&tls::Config, Error> {
        if let Some(config) = self.tls.get() {
            return Ok(config);
        }
        let config = tls::Config::new(self.keypair.clone(), self.tls_seed)?
            .with_muxers(vec![YAMUX.to_string()])?;
        Ok(self.tls.get_or_init(|| config))
    }

    /// Uses `timeout` as the upgrade timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Why an upgrade failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Negotiating the security protocol or the muxer failed.
    #[error("protocol negotiation failed: {0}")]
    Negotiation(#[from] multistream::Error),
    /// The Noise handshake or channel failed.
    #[error("noise: {0}")]
    Noise(#[from] noise::Error),
    /// The plaintext exchange failed.
    #[error("plaintext: {0}")]
    Plaintext(#[from] plaintext::Error),
    /// The TLS handshake or channel failed.
    #[error("tls: {0}")]
    Tls(#[from] tls::Error),
    /// The authenticated peer is not the one that was dialed.
    #[error("dialed {expected} but the remote authenticated as {actual}")]
    WrongPeer {
        /// The peer we dialed.
        expected: Box<PeerId>,
        /// The peer that answered.
        actual: Box<PeerId>,
    },
    /// The peer authenticated with our own identity.
    #[error("the remote peer has our own identity")]
    DialedSelf,
    /// The upgrade did not finish in time.
    #[error("upgrade did not finish within {0:?}")]
    Timeout(Duration),
}

/// The handshake of the agreed security protocol.
enum Handshake {
    Noise(Box<noise::Handshake>),
    Tls(Box<tls::Handshake>),
    Plaintext(Box<plaintext::Plaintext>),
}

impl Handshake {
    fn handle_input(&mut self, unix_time: Duration, input: &mut BytesMut) -> Result<(), Error> {
        match self {
            Self::Noise(h) => h.handle_input(input)?,
            Self::Tls(h) => h.handle_input(unix_time, input)?,
            Self::Plaintext(h) => h.handle_input(input)?,
        }
        Ok(())
    }

    fn poll_transmit(&mut self, out: &mut BytesMut) {
        match self {
            Self::Noise(h) => h.poll_transmit(out),
            Self::Tls(h) => h.poll_transmit(out),
            Self::Plaintext(h) => h.poll_transmit(out),
        };
    }

    fn is_finished(&self) -> bool {
        match self {
            Self::Noise(h) => h.is_finished(),
            Self::Tls(h) => h.is_finished(),
            Self::Plaintext(h) => h.is_finished(),
        }
    }
}

/// An established secure channel.
pub(crate) enum Channel {
    Noise(Box<noise::Transport>),
    Tls {
        transport: Box<tls::Transport>,
        /// Where the muxer lays out a record's plaintext for rustls, kept between transmits
        /// (no allocation per record or per transmit in steady state).
        plain: BytesMut,
    },
    Plaintext,
}

impl Channel {
    /// Moves the plaintext of the first complete frame in `raw` (all of `raw` on a plaintext
    /// channel) to the end of `plain`; returns whether it moved anything. A frame that arrives
    /// while `plain` is empty is taken over without copying, and feeding the layer above after
    /// each frame keeps `plain` empty whenever the frames hold whole muxer frames (ours do).
    pub(crate) fn decrypt_one(
        &mut self,
        raw: &mut BytesMut,
        plain: &mut BytesMut,
    ) -> Result<bool, Error> {
        match self {
            Self::Plaintext => {
                if raw.is_empty() {
                    return Ok(false);
                }
                if plain.is_empty() {
                    *plain = raw.split();
                } else {
                    plain.extend_from_slice(raw);
                    raw.clear();
                }
                Ok(true)
            }
            Self::Noise(transport) => match transport.decrypt(raw)? {
                Some(frame) => {
                    if plain.is_empty() {
                        *plain = frame;
                    } else {
                        plain.extend_from_slice(&frame);
                    }
                    Ok(true)
                }
                None => Ok(false),
            },
            // The peer's close_notify ends what it sends; its socket's end follows.
            Self::Tls { transport, .. } => match transport.decrypt(raw)? {
                Some(tls::Received::Data(data)) => {
                    if plain.is_empty() {
                        *plain = data;
                    } else {
                        plain.extend_from_slice(&data);
                    }
                    Ok(true)
                }
                Some(tls::Received::Closed) | None => Ok(false),
            },
        }
    }

    /// Gives back the TLS record scratch buffer (an idle connection holds none).
    pub(crate) fn release_idle_memory(&mut self) {
        if let Self::Tls { plain, .. } = self {
            *plain = BytesMut::new();
        }
    }

    /// Appends what the channel itself has to send (a TLS alert or key-update answer).
    pub(crate) fn poll_transmit(&mut self, out: &mut BytesMut) {
        if let Self::Tls { transport, .. } = self {
            transport.poll_transmit(out);
        }
    }

    /// Appends encrypted frames to `out`, their plaintext written by `fill(out, max_bytes)`,
    /// which returns how many bytes it appended. Stops when `fill` writes nothing or `out`
    /// holds at least `budget` bytes. Returns the bytes appended to `out`; on error `out` is
    /// back at its length before the call (no plaintext stays behind).
    pub(crate) fn encrypt_with(
        &mut self,
        out: &mut BytesMut,
        budget: usize,
        mut fill: impl FnMut(&mut BytesMut, usize) -> usize,
    ) -> Result<usize, Error> {
        let start = out.len();
        match self {
            Self::Plaintext => {
                while out.len() - start < budget {
                    if fill(out, budget - (out.len() - start)) == 0 {
                        break;
                    }
                }
            }
            Self::Noise(transport) => {
                while out.len() - start < budget {
                    let frame = transport.begin_frame(out);
                    if fill(out, noise::MAX_PLAINTEXT) == 0 {
                        out.truncate(frame.offset());
                        break;
                    }
                    if let Err(e) = transport.seal_frame(out, frame) {
                        out.truncate(start);
                        return Err(e.into());
                    }
                }
            }
            Self::Tls { transport, plain } => {
                // rustls seals from its own buffers: the plaintext is laid out once more here.
                while out.len() - start < budget {
                    plain.clear();
                    if fill(plain, tls::MAX_PLAINTEXT) == 0 {
                        break;
                    }
                    if let Err(e) = transport.encrypt(plain, out) {
                        out.truncate(start);
                        return Err(e.into());
                    }
                }
            }
        }
        Ok(out.len() - start)
    }
}

enum Stage {
    /// Agreeing on the security protocol (dialer side): with one candidate the handshake
    /// starts optimistically, with several once one is agreed.
    SecurityDialer {
        multistream: Dialer,
        handshake: Option<Handshake>,
    },
    /// Agreeing on the security protocol (listener side).
    SecurityListener(Listener),
    /// Running the security handshake.
    Handshake(Handshake),
    /// Agreeing on the muxer inside the secure channel.
    Muxer {
        channel: Channel,
        remote: Remote,
        dialer: Option<Box<Dialer>>,
        listener: Option<Box<Listener>>,
    },
    /// Done; `Upgrade::into_parts` hands the channel on.
    Done { channel: Channel, remote: Remote },
    /// Failed or taken apart.
    Gone,
}

/// What the upgrade learned about the remote.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The authenticated peer.
    pub peer: PeerId,
    /// Its identity key.
    pub public_key: PublicKey,
    /// The agreed muxer, and whether it was agreed inside the Noise handshake.
    pub muxer_early: bool,
}

/// Where an upgrade stands after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeStatus {
    /// Still upgrading.
    InProgress,
    /// The muxer is agreed: the connection can run its muxer.
    Done,
}

/// The upgrade of one connection, from the first raw byte to an agreed muxer.
pub struct Upgrade {
    role: Role,
    stage: Stage,
    expected_peer: Option<PeerId>,
    local_peer: PeerId,
    deadline: Instant,
    timeout: Duration,
    /// The wall clock when the upgrade started (TLS certificate validity).
    unix_time: Duration,
    /// Plaintext received inside the secure channel and not yet consumed.
    plain_in: BytesMut,
    /// Raw bytes queued for the socket.
    out: BytesMut,
}

impl Upgrade {
    /// Starts an upgrade as `role`. A dialer passes the peer it expects, if known.
    pub fn new(
        config: &UpgradeConfig,
        role: Role,
        expected_peer: Option<PeerId>,
        now: Instant,
    ) -> Result<Self, Error> {
        let local_peer = config.keypair.public().to_peer_id();
        if expected_peer == Some(local_peer) {
            return Err(Error::DialedSelf);
        }
        let protocols: Vec<Protocol> = config.security.iter().map(|s| s.protocol()).collect();
        let stage = match (role, config.security.as_slice()) {
            (Role::Dialer, [only]) => Stage::SecurityDialer {
                multistream: Dialer::new(protocols, DialerMode::Lazy)?,
                handshake: Some(Self::handshake(
                    config,
                    *only,
                    role,
                    expected_peer,
                    config.unix_time,
                )?),
            },
            (Role::Dialer, _) => Stage::SecurityDialer {
                multistream: Dialer::new(protocols, DialerMode::Strict)?,
                handshake: None,
            },
            (Role::Listener, _) => Stage::SecurityListener(Listener::new(
                Arc::new(ProtocolSet::from_protocols(protocols)),
                ListenerConfig::default(),
            )),
        };
        let mut upgrade = Self {
            role,
            stage,
            expected_peer,
            local_peer,
            deadline: now + config.timeout,
            timeout: config.timeout,
            unix_time: config.unix_time,
            plain_in: BytesMut::new(),
            out: BytesMut::new(),
        };
        upgrade.flush_stage()?;
        Ok(upgrade)
    }

    fn handshake(
        config: &UpgradeConfig,
        security: Security,
        role: Role,
        expected_peer: Option<PeerId>,
        unix_time: Duration,
    ) -> Result<Handshake, Error> {
        Ok(match (security, role) {
            (Security::Noise, Role::Dialer) => Handshake::Noise(Box::new(
                noise::Handshake::initiator(&config.noise, expected_peer)?,
            )),
            (Security::Noise, Role::Listener) => {
                Handshake::Noise(Box::new(noise::Handshake::responder(&config.noise)?))
            }
            (Security::Tls, Role::Dialer) => Handshake::Tls(Box::new(tls::Handshake::client(
                config.tls()?,
                expected_peer,
                unix_time,
            )?)),
            (Security::Tls, Role::Listener) => {
                Handshake::Tls(Box::new(tls::Handshake::server(config.tls()?, unix_time)?))
            }
            (Security::Plaintext, _) => Handshake::Plaintext(Box::new(plaintext::Plaintext::new(
                &config.plaintext,
                expected_peer,
            ))),
        })
    }

    /// Feeds bytes received from the socket. Unconsumed bytes stay in `input` (only when a
    /// stage is waiting for its output to be drained).
    pub fn handle_input(
        &mut self,
        now: Instant,
        input: &mut BytesMut,
        config: &UpgradeConfig,
    ) -> Result<UpgradeStatus, Error> {
        self.check_deadline(now)?;
        let result = self.advance(input, config);
        if result.is_err() {
            self.stage = Stage::Gone;
        }
        result
    }

    fn advance(
        &mut self,
        input: &mut BytesMut,
        config: &UpgradeConfig,
    ) -> Result<UpgradeStatus, Error> {
        loop {
            if self.out.len() >= MAX_PENDING_OUTPUT {
                // Back-pressure: the peer must read our answers before we read on.
                return Ok(UpgradeStatus::InProgress);
            }
            match &mut self.stage {
                Stage::SecurityDialer { multistream, .. } => {
                    let status = multistream.handle_input(input)?;
                    // A refused candidate makes the dialer propose the next one.
                    multistream.poll_transmit(&mut self.out);
                    let DialerStatus::Agreed(agreed) = status else {
                        return Ok(UpgradeStatus::InProgress);
                    };
                    let Stage::SecurityDialer { handshake, .. } =
                        std::mem::replace(&mut self.stage, Stage::Gone)
                    else {
                        // Just matched: cannot happen, and a stuck upgrade ends at its timeout.
                        return Ok(UpgradeStatus::InProgress);
                    };
                    let handshake = match handshake {
                        Some(h) => h,
                        None => {
                            let security = security_of(config, &agreed)?;
                            let mut h = Self::handshake(
                                config,
                                security,
                                self.role,
                                self.expected_peer,
                                self.unix_time,
                            )?;
                            h.poll_transmit(&mut self.out);
                            h
                        }
                    };
                    self.stage = Stage::Handshake(handshake);
                }
                Stage::SecurityListener(listener) => {
                    let ListenerStatus::Agreed(agreed) = listener.handle_input(input)? else {
                        self.flush_stage()?;
                        return Ok(UpgradeStatus::InProgress);
                    };
                    listener.poll_transmit(&mut self.out);
                    let security = security_of(config, &agreed)?;
                    let handshake =
                        Self::handshake(config, security, self.role, None, self.unix_time)?;
                    self.stage = Stage::Handshake(handshake);
                }
                Stage::Handshake(handshake) => {
                    let result = handshake.handle_input(self.unix_time, input);
                    // Also after an error: a TLS alert tells the peer why.
                    handshake.poll_transmit(&mut self.out);
                    result?;
                    if !handshake.is_finished() {
                        return Ok(UpgradeStatus::InProgress);
                    }
                    // What followed the last handshake message is secure-channel data, left in
                    // `input` for the next stage.
                    self.finish_handshake()?;
                }
                Stage::Muxer {
                    channel,
                    dialer,
                    listener,
                    ..
                } => {
                    let agreed = match (dialer, listener) {
                        (Some(d), _) => {
                            d.handle_input(&mut self.plain_in)? != DialerStatus::InProgress
                        }
                        (_, Some(l)) => {
                            let status = l.handle_input(&mut self.plain_in)?;
                            let mut answer = BytesMut::new();
                            l.poll_transmit(&mut answer);
                            if !answer.is_empty() {
                                channel.encrypt_with(&mut self.out, usize::MAX, |out, _| {
                                    let n = answer.len();
                                    out.extend_from_slice(&answer.split());
                                    n
                                })?;
                            }
                            matches!(status, ListenerStatus::Agreed(_))
                        }
                        (None, None) => true,
                    };
                    if !agreed {
                        // One more frame of plaintext, within the bound on what we hold.
                        if self.plain_in.len() >= MAX_PENDING_INPUT
                            || !channel.decrypt_one(input, &mut self.plain_in)?
                        {
                            return Ok(UpgradeStatus::InProgress);
                        }
                        continue;
                    }
                    let Stage::Muxer {
                        channel, remote, ..
                    } = std::mem::replace(&mut self.stage, Stage::Gone)
                    else {
                        // Just matched: cannot happen, and a stuck upgrade ends at its timeout.
                        return Ok(UpgradeStatus::InProgress);
                    };
                    self.stage = Stage::Done { channel, remote };
                }
                // The rest of `input` is the muxer's, read by the established connection.
                Stage::Done { .. } => return Ok(UpgradeStatus::Done),
                Stage::Gone => return Ok(UpgradeStatus::InProgress),
            }
        }
    }

    /// Moves from a finished handshake to the muxer stage (or straight to done when the
    /// handshake agreed on yamux).
    fn finish_handshake(&mut self) -> Result<(), Error> {
        let Stage::Handshake(handshake) = std::mem::replace(&mut self.stage, Stage::Gone) else {
            // Only called in the handshake stage; otherwise there is nothing to finish.
            return Ok(());
        };
        let (channel, peer, public_key, early_muxer) = match handshake {
            Handshake::Noise(h) => {
                let (transport, outcome) = h.into_transport()?;
                (
                    Channel::Noise(Box::new(transport)),
                    outcome.remote_peer,
                    outcome.remote_key,
                    outcome.muxer,
                )
            }
            Handshake::Tls(h) => {
                let (transport, outcome) = h.into_transport()?;
                (
                    Channel::Tls {
                        transport: Box::new(transport),
                        plain: BytesMut::new(),
                    },
                    outcome.remote_peer,
                    outcome.remote_key,
                    outcome.muxer,
                )
            }
            Handshake::Plaintext(h) => {
                let outcome = h.into_outcome()?;
                (
                    Channel::Plaintext,
                    outcome.remote_peer,
                    outcome.remote_key,
                    None,
                )
            }
        };
        if peer == self.local_peer {
            return Err(Error::DialedSelf);
        }
        if let Some(expected) = self.expected_peer {
            if expected != peer {
                return Err(Error::WrongPeer {
                    expected: Box::new(expected),
                    actual: Box::new(peer),
                });
            }
        }
        let muxer_early = early_muxer.as_deref() == Some(YAMUX.as_str());
        let remote = Remote {
            peer,
            public_key,
            muxer_early,
        };
        tracing::debug!(%peer, muxer_early, "secure channel established");
        self.stage = if muxer_early {
            Stage::Done { channel, remote }
        } else {
            let mut channel = channel;
            // A lazy dialer may use yamux at once: the muxer is agreed optimistically.
            let (dialer, listener) = match self.role {
                Role::Dialer => {
                    let mut d = Dialer::new([YAMUX], DialerMode::Lazy)?;
                    let mut proposal = BytesMut::new();
                    d.poll_transmit(&mut proposal);
                    channel.encrypt_with(&mut self.out, usize::MAX, |out, _| {
                        let n = proposal.len();
                        out.extend_from_slice(&proposal.split());
                        n
                    })?;
                    (Some(Box::new(d)), None)
                }
                Role::Listener => (
                    None,
                    Some(Box::new(Listener::new(
                        Arc::new(ProtocolSet::from_protocols([YAMUX])),
                        ListenerConfig::default(),
                    ))),
                ),
            };
            Stage::Muxer {
                channel,
                remote,
                dialer,
                listener,
            }
        };
        Ok(())
    }

    /// Queues what the current stage has to send.
    fn flush_stage(&mut self) -> Result<(), Error> {
        match &mut self.stage {
            Stage::SecurityDialer {
                multistream,
                handshake,
            } => {
                multistream.poll_transmit(&mut self.out);
                // Lazy: the first handshake message rides with the proposal.
                if let Some(h) = handshake {
                    h.poll_transmit(&mut self.out);
                }
            }
            Stage::SecurityListener(l) => {
                l.poll_transmit(&mut self.out);
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the muxer may be used already: agreed, or (dialer) proposed lazily with the
    /// secure channel established.
    pub fn is_usable(&self) -> bool {
        match &self.stage {
            Stage::Done { .. } => true,
            Stage::Muxer { dialer, .. } => dialer.is_some(),
            _ => false,
        }
    }

    /// Appends raw bytes to send to `out`; returns how many, or `None` if there are none.
    /// After the upgrade stopped for back-pressure (see [`MAX_PENDING_OUTPUT`]), feed the
    /// input it left again once its output is drained.
    pub fn poll_transmit(&mut self, out: &mut BytesMut) -> Option<usize> {
        crate::buffer::drain_into(&mut self.out, out)
    }

    /// Bytes the upgrade holds: output not yet polled and decrypted input not yet consumed.
    /// Never more than [`MAX_BUFFERED`].
    pub fn buffered_bytes(&self) -> usize {
        self.out.len() + self.plain_in.len()
    }

    /// How far the upgrade got: 0 agreeing on security, 1 in the security handshake, 2 agreeing
    /// on the muxer, 3 done (0 too once failed). Lets a host that must drop a pending
    /// connection spare the ones making progress.
    pub fn progress(&self) -> u8 {
        match &self.stage {
            Stage::SecurityDialer { .. } | Stage::SecurityListener(_) | Stage::Gone => 0,
            Stage::Handshake(_) => 1,
            Stage::Muxer { .. } => 2,
            Stage::Done { .. } => 3,
        }
    }

    /// The upgrade deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!matches!(self.stage, Stage::Done { .. })).then_some(self.deadline)
    }

    /// Fails the upgrade if its deadline has passed.
    pub fn check_deadline(&mut self, now: Instant) -> Result<(), Error> {
        if now >= self.deadline && !matches!(self.stage, Stage::Done { .. }) {
            self.stage = Stage::Gone;
            return Err(Error::Timeout(self.timeout));
        }
        Ok(())
    }

    /// The remote, once authenticated.
    pub fn remote(&self) -> Option<&Remote> {
        match &self.stage {
            Stage::Muxer { remote, .. } | Stage::Done { remote, .. } => Some(remote),
            _ => None,
        }
    }

    /// Takes the finished upgrade apart: the secure channel, the remote, the plaintext that
    /// arrived after the muxer was agreed, and raw bytes still to send. `None` before the
    /// muxer is usable (see [`is_usable`](Self::is_usable)).
    pub(crate) fn into_parts(self) -> Option<Established> {
        match self.stage {
            Stage::Done { channel, remote } => Some(Established {
                channel,
                remote,
                plain_in: self.plain_in,
                raw_out: self.out,
                pending_muxer: None,
            }),
            Stage::Muxer {
                channel,
                remote,
                dialer: Some(dialer),
                ..
            } => Some(Established {
                channel,
                remote,
                plain_in: self.plain_in,
                raw_out: self.out,
                pending_muxer: Some(*dialer),
            }),
            _ => None,
        }
    }
}

/// The configured security protocol of an agreed multistream id.
fn security_of(config: &UpgradeConfig, agreed: &Protocol) -> Result<Security, Error> {
    config
        .security
        .iter()
        .copied()
        .find(|s| s.protocol() == *agreed)
        .ok_or(Error::Negotiation(multistream::Error::NotSupported))
}

/// A secure channel with an agreed (or lazily proposed) muxer.
pub(crate) struct Established {
    pub(crate) channel: Channel,
    pub(crate) remote: Remote,
    /// Plaintext that arrived after the muxer negotiation.
    pub(crate) plain_in: BytesMut,
    /// Raw bytes still to send.
    pub(crate) raw_out: BytesMut,
    /// The lazy muxer proposal whose echo is still to be read from `plain_in`.
    pub(crate) pending_muxer: Option<Dialer>,
}

#[cfg(test)]
mod tests;
