//! The TLS 1.3 handshake machine and its configuration.

use std::io::Read as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut as _, BytesMut};
use libp2p_identity::{Keypair, PeerId, PublicKey};
use rand::{rngs::StdRng, RngCore, SeedableRng};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use super::certificate::Certificate;
use super::provider::{self, with_context, CallerTime, Context, Resolver, Verifier};
use super::record::complete_record;
use super::transport::Transport;
use super::{Error, ALPN_LIBP2P, MAX_HANDSHAKE_INPUT};

/// Configuration shared by all handshakes of one local identity.
///
/// Holds the certificate (for a P-256 key derived from the seed, never the identity key, as
/// go-libp2p and rust-libp2p generate one per transport), the ALPN list and the rustls
/// configurations built once. Every handshake draws its randomness from SHA-256(seed ‖
/// handshake index): deterministic for tests; seed it from a CSPRNG in production, e.g. with
/// [`Config::from_rng`].
pub struct Config {
    local_peer: PeerId,
    certificate_der: Vec<u8>,
    muxers: Vec<String>,
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    seed: [u8; 32],
    counter: AtomicU64,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("local_peer", &self.local_peer)
            .field("muxers", &self.muxers)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A configuration for `identity` whose certificate key and handshake randomness all
    /// derive from `seed` (the same seed gives the same certificate and the same handshakes).
    pub fn new(identity: Keypair, seed: [u8; 32]) -> Result<Self, Error> {
        let mut rng = StdRng::from_seed(seed);
        let mut key_seed = [0u8; 32];
        rng.fill_bytes(&mut key_seed);
        let mut handshake_seed = [0u8; 32];
        rng.fill_bytes(&mut handshake_seed);
        let certificate = Certificate::generate(&identity, key_seed)?;
        Self::with_certificate(
            identity.public().to_peer_id(),
            certificate,
            Vec::new(),
            handshake_seed,
        )
    }

    /// A configuration for `identity` seeded from `rng` (use a CSPRNG such as `OsRng`).
    pub fn from_rng(identity: Keypair, rng: &mut impl RngCore) -> Result<Self, Error> {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::new(identity, seed)
    }

    /// A configuration presenting `certificate` followed by the `extra` chain certificates
    /// (DER; empty for a valid config); tests and fuzzers present hostile ones with it.
    pub(crate) fn with_certificate(
        local_peer: PeerId,
        certificate: Certificate,
        extra: Vec<Vec<u8>>,
        seed: [u8; 32],
    ) -> Result<Self, Error> {
        let certificate_der = certificate.der().to_vec();
        let provider = Arc::new(provider::provider());
        let resolver = Arc::new(Resolver::new(certificate, extra));
        let time = Arc::new(CallerTime);

        let mut client = ClientConfig::builder_with_details(provider.clone(), time.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(Error::Tls)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier))
            .with_client_cert_resolver(resolver.clone());
        client.resumption = Resumption::disabled();
        client.enable_sni = false;

        let mut server = ServerConfig::builder_with_details(provider, time)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(Error::Tls)?
            .with_client_cert_verifier(Arc::new(Verifier))
            .with_cert_resolver(resolver);
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;

        let mut config = Self {
            local_peer,
            certificate_der,
            muxers: Vec::new(),
            client: Arc::new(client),
            server: Arc::new(server),
            seed,
            counter: AtomicU64::new(0),
        };
        config.set_alpn();
        Ok(config)
    }

    /// Sets the early muxer list (protocol ids, preference order) offered through ALPN before
    /// `libp2p`; empty (the default) offers `libp2p` alone, as rust-libp2p does.
    ///
    /// [`Error::InvalidMuxerId`] for an id that cannot be an ALPN id (empty, over 255 bytes).
    pub fn with_muxers(mut self, muxers: Vec<String>) -> Result<Self, Error> {
        if let Some(bad) = muxers.iter().find(|m| m.is_empty() || m.len() > 255) {
            return Err(Error::InvalidMuxerId { len: bad.len() });
        }
        self.muxers = muxers;
        self.set_alpn();
        Ok(self)
    }

    fn set_alpn(&mut self) {
        let alpn: Vec<Vec<u8>> = self
            .muxers
            .iter()
            .map(|m| m.as_bytes().to_vec())
            .chain([ALPN_LIBP2P.to_vec()])
            .collect();
        Arc::make_mut(&mut self.client).alpn_protocols = alpn.clone();
        Arc::make_mut(&mut self.server).alpn_protocols = alpn;
    }

    /// The local peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer
    }

    /// Our certificate, DER.
    pub fn certificate(&self) -> &[u8] {
        &self.certificate_der
    }

    /// A fresh context for the next handshake: RNG seeded with SHA-256(seed ‖ counter), so
    /// handshakes from one config never share randomness.
    pub(super) fn context(&self, now: Duration, expected: Option<PeerId>) -> Context {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"plait-tls-handshake");
        ctx.update(&self.seed);
        ctx.update(&n.to_le_bytes());
        let mut seed = [0u8; 32];
        seed.copy_from_slice(ctx.finish().as_ref());
        Context {
            rng: StdRng::from_seed(seed),
            now,
            expected,
            local: self.local_peer,
            failure: None,
            verified: None,
        }
    }
}

/// What a successful handshake established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The authenticated remote peer (of the identity key in its certificate's extension).
    pub remote_peer: PeerId,
    /// The remote identity key.
    pub remote_key: PublicKey,
    /// The muxer the server picked through ALPN; `None` when it picked `libp2p` (or nothing):
    /// negotiate the muxer with multistream-select inside TLS.
    pub muxer: Option<String>,
}

/// A TLS 1.3 handshake in either role.
pub struct Handshake {
    conn: Connection,
    ctx: Option<Context>,
    pending: BytesMut,
    /// Handshake record bytes consumed so far.
    received: usize,
    failed: bool,
    outcome: Option<Outcome>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("client", &matches!(self.conn, Connection::Client(_)))
            .field("finished", &self.outcome.is_some())
            .field("failed", &self.failed)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// Starts a handshake as client (the dialer) and queues the ClientHello. With
    /// `expected_peer`, a different server is refused while verifying its certificate, before
    /// our certificate is sent ([`Error::PeerIdMismatch`]).
    pub fn client(
        config: &Config,
        expected_peer: Option<PeerId>,
        now_unix: Duration,
    ) -> Result<Self, Error> {
        let mut ctx = Some(config.context(now_unix, expected_peer));
        // No SNI is sent (`enable_sni = false`); the name is only rustls' session-cache key.
        let name = ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into());
        let conn = with_context(&mut ctx, || {
            ClientConnection::new(config.client.clone(), name)
        })
        .map_err(Error::from_rustls)?;
        Self::start(Connection::Client(conn), ctx)
    }

    /// Starts a handshake as server (the listener).
    pub fn server(config: &Config, now_unix: Duration) -> Result<Self, Error> {
        let mut ctx = Some(config.context(now_unix, None));
        let conn = with_context(&mut ctx, || ServerConnection::new(config.server.clone()))
            .map_err(Error::from_rustls)?;
        Self::start(Connection::Server(conn), ctx)
    }

    pub(super) fn start(conn: Connection, ctx: Option<Context>) -> Result<Self, Error> {
        let mut hs = Self {
            conn,
            ctx,
            pending: BytesMut::new(),
            received: 0,
            failed: false,
            outcome: None,
        };
        hs.flush()?;
        Ok(hs)
    }

    /// Moves what rustls wants to send into `pending`.
    fn flush(&mut self) -> Result<(), Error> {
        flush_into(&mut self.conn, &mut self.pending)
    }

    /// Consumes whole records from the front of `input` while the handshake runs; a partial
    /// record stays there, and so do all bytes after the peer's last handshake message.
    /// `now_unix` (time since the Unix epoch) is when the peer's certificate is checked.
    ///
    /// After an error the handshake is dead and every call returns [`Error::Failed`]; an alert
    /// for the peer may still wait in [`Handshake::poll_transmit`].
    pub fn handle_input(&mut self, now_unix: Duration, input: &mut BytesMut) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        let result = self.handle_input_inner(now_unix, input);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn handle_input_inner(
        &mut self,
        now_unix: Duration,
        input: &mut BytesMut,
    ) -> Result<(), Error> {
        if let Some(ctx) = self.ctx.as_mut() {
            ctx.now = now_unix;
        }
        while self.outcome.is_none() {
            let Some(len) = complete_record(input)? else {
                return Ok(());
            };
            let total = self.received.saturating_add(len);
            if total > MAX_HANDSHAKE_INPUT {
                return Err(Error::HandshakeTooLarge { len: total });
            }
            self.received = total;
            let record = input.split_to(len);
            let conn = &mut self.conn;
            let result = with_context(&mut self.ctx, || feed(conn, &record));
            // Whatever happened, send what rustls queued (an alert after a failure).
            let flushed = self.flush();
            if let Err(e) = result {
                let detail = self.ctx.as_mut().and_then(|c| c.failure.take());
                return Err(detail.unwrap_or(e));
            }
            flushed?;
            if !self.conn.is_handshaking() {
                self.outcome = Some(self.outcome()?);
            }
        }
        Ok(())
    }

    /// The outcome of the finished handshake: the verified peer and the ALPN result.
    fn outcome(&mut self) -> Result<Outcome, Error> {
        let verified = self.ctx.as_mut().and_then(|c| c.verified.take());
        let Some((_, cert)) = verified else {
            // rustls finished without running our verifier: never the case with mandatory
            // client authentication, but refuse rather than trust an unverified peer.
            return Err(Error::NoCertificate);
        };
        let muxer = match self.conn.alpn_protocol() {
            None => None,
            Some(p) if p == ALPN_LIBP2P => None,
            Some(p) => Some(String::from_utf8_lossy(p).into_owned()),
        };
        Ok(Outcome {
            remote_peer: cert.peer_id(),
            remote_key: cert.public_key().clone(),
            muxer,
        })
    }

    /// Appends the queued handshake bytes to `out`; returns how many, `None` if nothing.
    pub fn poll_transmit(&mut self, out: &mut BytesMut) -> Option<usize> {
        crate::buffer::drain_into(&mut self.pending, out)
    }

    /// True once the peer's last handshake message is verified and our last one is queued.
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some() && !self.failed
    }

    /// The authenticated remote peer, once the handshake finished.
    pub fn remote_peer(&self) -> Option<PeerId> {
        self.outcome.as_ref().map(|o| o.remote_peer)
    }

    /// Turns the finished handshake into the encrypted transport.
    ///
    /// Errors with [`Error::NotFinished`] before [`Handshake::is_finished`], and with
    /// [`Error::UnsentHandshakeData`] while [`Handshake::poll_transmit`] still has bytes.
    pub fn into_transport(mut self) -> Result<(Transport, Outcome), Error> {
        if self.failed {
            return Err(Error::Failed);
        }
        if !self.pending.is_empty() {
            return Err(Error::UnsentHandshakeData);
        }
        let outcome = self.outcome.take().ok_or(Error::NotFinished)?;
        Ok((Transport::new(self.conn, self.ctx), outcome))
    }
}

/// Hands one whole record to rustls and processes it; returns the plaintext bytes now
/// readable and whether the peer has sent close_notify.
pub(super) fn feed(conn: &mut Connection, mut record: &[u8]) -> Result<(usize, bool), Error> {
    let mut readable = (0, false);
    while !record.is_empty() {
        // rustls takes a whole record into its buffer at once; it refuses input only while
        // unread plaintext fills it, which we never leave there.
        match conn.read_tls(&mut record) {
            Ok(0) | Err(_) => return Err(Error::Failed),
            Ok(_) => {}
        }
        let state = conn.process_new_packets().map_err(Error::from_rustls)?;
        readable = (state.plaintext_bytes_to_read(), state.peer_has_closed());
    }
    Ok(readable)
}

/// Reads the `n` plaintext bytes rustls holds.
pub(super) fn read_plaintext(conn: &mut Connection, n: usize) -> Result<BytesMut, Error> {
    let mut buf = BytesMut::zeroed(n);
    conn.reader()
        .read_exact(&mut buf)
        .map_err(|_| Error::Failed)?;
    Ok(buf)
}

/// Moves every byte rustls wants to send to the end of `out`.
pub(super) fn flush_into(conn: &mut Connection, out: &mut BytesMut) -> Result<(), Error> {
    let mut writer = out.writer();
    while conn.wants_write() {
        match conn.write_tls(&mut writer) {
            Ok(0) | Err(_) => return Err(Error::Failed),
            Ok(_) => {}
        }
    }
    Ok(())
}
