//! Dialing: go-libp2p's swarm dialer as a deterministic sans-IO machine.
//!
//! - [`rank`]: which address is dialed when ([`DefaultDialRanker`], [`NoDelayDialRanker`]).
//! - [`DialScheduler`]: one dial worker per peer (go `dialSync` + `dialWorker`), address
//!   filtering, the [`limiter`], [`backoff`] and [`blackhole`] detection, per-attempt and
//!   per-request timeouts.
//! - [`peerstore`]: an address book with go's TTLs.
//!
//! # How the swarm drives the scheduler
//!
//! The scheduler decides *when* and *which* address to dial; the swarm does the dialing.
//!
//! 1. The swarm keeps one [`DialScheduler`]. When the application asks for a connection to a
//!    peer **and no acceptable connection exists** (the swarm checks; the scheduler does not
//!    know about connections), it takes the peer's addresses (e.g. from
//!    [`peerstore::AddressBook::addrs`]) and calls [`DialScheduler::dial`]. Every call returns a
//!    [`DialRequestId`] that is answered by exactly one [`Event::DialSucceeded`] or
//!    [`Event::DialFailed`], possibly before `dial` returns. Concurrent requests for the same
//!    peer join its single worker.
//! 2. [`Event::Connect`] means "open a connection to `addr` now, expecting `peer`". The swarm
//!    starts its transport dial + upgrade (security with the expected peer id, muxer) and later
//!    reports exactly one of [`DialScheduler::handle_attempt_succeeded`] (connection usable,
//!    remote peer verified) or [`DialScheduler::handle_attempt_failed`]. A TCP transport
//!    reports [`DialScheduler::handle_attempt_progress`] with [`AttemptProgress::TcpConnected`]
//!    when the socket is connected and the upgrade starts.
//! 3. [`Event::Abort`] means "stop this attempt, don't report it" (the per-address timeout
//!    expired, or nobody waits for the peer any more). A report for an aborted or unknown
//!    attempt returns [`Error::UnknownAttempt`]; the swarm then closes any connection it got
//!    (go keeps such late connections; we leave that choice to the swarm).
//! 4. After every call drain [`DialScheduler::poll_event`], then sleep until
//!    [`DialScheduler::poll_timeout`] and call [`DialScheduler::handle_timeout`].
//! 5. The swarm calls [`DialScheduler::handle_peer_connected`] for every connection it
//!    establishes that the scheduler did not produce (inbound, or another dialer): it clears
//!    the peer's backoff (go `addConn`) and answers that peer's pending requests with
//!    `DialSucceeded { attempt: None }`. It calls [`DialScheduler::set_listen_addrs`] with its
//!    interface listen addresses so that dials to ourselves are filtered, and after a dial adds
//!    the good addresses to the address book with [`peerstore::TEMP_ADDR_TTL`] as go does.
//! 6. [`DialScheduler::cancel`] withdraws a request (the caller went away); it is answered with
//!    [`DialFailure::Cancelled`].
//!
//! # Differences from go-libp2p, on purpose
//!
//! - Unspecified, IPv6 link-local and low-priority (`/ws` next to `/tcp`, `/webtransport` and
//!   draft-29 `/quic` next to `/quic-v1`) addresses are listed in the [`DialError`] with their
//!   reason instead of disappearing silently.
//! - DNS resolution (`/dnsaddr`, `/dns*`) is the swarm's job before calling `dial`.
//! - A connection reported through `handle_peer_connected` answers pending requests at once
//!   (go only looks for one when a request has run out of addresses).

pub mod backoff;
pub mod blackhole;
#[cfg(any(test, fuzzing, feature = "fuzzing"))]
pub(crate) mod check;
pub mod limiter;
pub mod peerstore;
pub mod rank;
mod scheduler;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use libp2p_identity::PeerId;

use crate::multiaddr::{is_dialable_tcp, Multiaddr};
pub use blackhole::{BlackHoleCounter, BlackHoleDetector, BlackHoleState};
pub use rank::{DefaultDialRanker, DialRanker, NoDelayDialRanker};
pub use scheduler::DialScheduler;

/// Per-address dial timeout for public addresses (go `defaultDialTimeout`).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(15);
/// Per-address dial timeout for private addresses (go `defaultDialTimeoutLocal`).
pub const DIAL_TIMEOUT_LOCAL: Duration = Duration::from_secs(5);
/// Timeout of one dial request (go `network.DialPeerTimeout`).
pub const DIAL_PEER_TIMEOUT: Duration = Duration::from_secs(60);
/// Addresses considered per dial request; the rest are ignored and counted in
/// [`DialError::ignored`]. Addresses come from peers (identify, DHT), so the count is bounded;
/// go caps resolved addresses at the same 100 (`maximumResolvedAddresses`).
pub const MAX_DIAL_ADDRS: usize = 100;

/// Identifies one [`DialScheduler::dial`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialRequestId(pub(crate) u64);

/// Identifies one connection attempt to one address ([`Event::Connect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId(pub(crate) u64);

impl fmt::Display for DialRequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dial#{}", self.0)
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt#{}", self.0)
    }
}

/// Options of one dial request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DialOpts {
    /// go `WithForceDirectDial`: skip dial backoff and drop relay addresses.
    pub force_direct: bool,
    /// go `WithSimultaneousConnect` (hole punching): rank with [`NoDelayDialRanker`], and
    /// re-queue already queued addresses of the peer with delay 0.
    pub simultaneous_connect: bool,
}

/// Progress of a running attempt that is not a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptProgress {
    /// The TCP handshake completed; security and muxer negotiation are running. For a public
    /// address the next dial batch is held back until 250 ms from now (go
    /// `UpdateKindHandshakeProgressed`).
    TcpConnected,
}

/// Why a connection attempt failed: reported by the driver (the socket) or by the swarm (the
/// upgrade).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The socket could not be connected: refused, unreachable, timed out in the OS, ...
    #[error("{}", std::io::Error::from(*.0))]
    Io(std::io::ErrorKind),
    /// The address could not be resolved or used.
    #[error("address: {0}")]
    Address(AddressError),
    /// The remote authenticated as another peer.
    #[error("wrong peer id: the remote is {obtained}")]
    PeerIdMismatch {
        /// The peer that answered (boxed: keeps the error small).
        obtained: Box<PeerId>,
    },
    /// The remote's identity key is of an unsupported type, malformed, or refused.
    #[error("identity key: {0}")]
    IdentityKey(KeyError),
    /// The remote supports none of our security protocols or muxers.
    #[error("negotiation failed: {0}")]
    Negotiation(crate::multistream::Error),
    /// The upgrade did not finish within its timeout.
    #[error("upgrade timed out")]
    UpgradeTimeout,
    /// The security or muxer upgrade failed otherwise (a message that does not decrypt or
    /// verify, a malformed handshake, a muxer violation), in this stage.
    #[error("upgrade failed in {0}")]
    Upgrade(UpgradeStage),
    /// The remote closed the connection before the upgrade finished.
    #[error("connection closed during the upgrade")]
    Closed,
    /// A limit of ours refused the connection.
    #[error("limit reached: {0}")]
    Limit(crate::swarm::Limit),
    /// The address is one of our own.
    #[error("dial to self attempted")]
    DialToSelf,
    /// The attempt was cancelled by the driver (go `context.Canceled`): adds no backoff.
    #[error("cancelled")]
    Cancelled,
}

/// Why an address could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// No transport of ours dials it.
    #[error("unsupported address")]
    Unsupported,
    /// Resolving its DNS name failed.
    #[error("resolving its name failed: {}", std::io::Error::from(*.0))]
    Resolve(std::io::ErrorKind),
    /// Its DNS name has no address of the family it asks for (`/dns4`, `/dns6`).
    #[error("its name has no address of the right family")]
    NoAddressOfFamily,
}

/// What was wrong with a remote's identity key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// It does not decode, or its type is not one this build can use.
    #[error("malformed or of an unsupported type")]
    Malformed,
    /// It decodes but is refused (e.g. an RSA key outside 2048 to 8192 bits).
    #[error("refused: {0}")]
    Rejected(crate::identity::Error),
}

/// The stage of an upgrade that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeStage {
    /// The Noise handshake or channel.
    #[error("noise")]
    Noise,
    /// The TLS handshake or channel.
    #[error("tls")]
    Tls,
    /// The plaintext exchange.
    #[error("the plaintext exchange")]
    Plaintext,
    /// The muxer.
    #[error("the muxer")]
    Muxer,
}

/// Why one address was not dialed or its dial failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddrError {
    /// No configured transport can dial it (go `ErrNoTransport`).
    #[error("no transport for address")]
    NoTransport,
    /// `/quic` draft-29 is not supported (go `ErrQUICDraft29`).
    #[error("QUIC draft-29 has been removed, QUIC (RFC 9000) is accessible with /quic-v1")]
    QuicDraft29,
    /// The address ends in `/p2p/<id>` of another peer.
    #[error("address names another peer {0}")]
    OtherPeer(PeerId),
    /// A `/quic-v1` (for `/webtransport`, `/quic`) or `/tcp` (for `/ws`, `/wss`) address on the
    /// same IP and port is preferred.
    #[error("superseded by a preferred transport on the same ip and port")]
    LowPriority,
    /// Refused by black-hole detection (go `ErrDialRefusedBlackHole`).
    #[error("dial refused because of black hole")]
    BlackHole,
    /// `0.0.0.0` or `::`.
    #[error("unspecified ip")]
    Unspecified,
    /// One of our own listen addresses (go `ErrDialToSelf`).
    #[error("dial to self attempted")]
    OwnListenAddr,
    /// IPv6 link-local: unusable without a zone.
    #[error("ipv6 link-local address")]
    Ip6LinkLocal,
    /// A relay address in a force-direct dial.
    #[error("relay address excluded by a direct dial")]
    RelayExcluded,
    /// The address is in dial backoff (go `ErrDialBackoff`).
    #[error("dial backoff")]
    Backoff,
    /// The per-address timeout expired.
    #[error("dial timed out")]
    Timeout,
    /// The transport reported a failure.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Why a dial request failed as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialFailure {
    /// The peer is ourselves (go `ErrDialToSelf`).
    DialToSelf,
    /// No addresses were given (go `ErrNoAddresses`).
    NoAddresses,
    /// Every address was filtered out (go `ErrNoGoodAddresses`).
    NoGoodAddresses,
    /// Every address was tried and failed (go `ErrAllDialsFailed`).
    AllDialsFailed,
    /// The request's [`DIAL_PEER_TIMEOUT`] expired.
    Timeout,
    /// [`DialScheduler::cancel`] was called.
    Cancelled,
}

impl fmt::Display for DialFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DialToSelf => "dial to self attempted",
            Self::NoAddresses => "no addresses",
            Self::NoGoodAddresses => "no good addresses",
            Self::AllDialsFailed => "all dials failed",
            Self::Timeout => "dial timed out",
            Self::Cancelled => "dial cancelled",
        })
    }
}

/// A failed dial request: the cause and every address that was dropped or failed, and why.
/// Its `Display` names each address with its cause:
/// `failed to dial 12D3…: all dials failed: /ip4/127.0.0.1/tcp/4001: connection refused`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialError {
    /// The peer.
    pub peer: PeerId,
    /// The overall cause.
    pub cause: DialFailure,
    /// Each address dropped or failed, with the reason, in the order it happened.
    pub addrs: Vec<(Multiaddr, AddrError)>,
    /// Addresses beyond [`MAX_DIAL_ADDRS`] that were not considered.
    pub ignored: usize,
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to dial {}: {}", self.peer, self.cause)?;
        for (i, (addr, error)) in self.addrs.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{addr}: {error}")?;
        }
        if self.ignored > 0 {
            write!(f, " ({} more addresses not tried)", self.ignored)?;
        }
        Ok(())
    }
}

impl std::error::Error for DialError {}

/// Output of the [`DialScheduler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Open a connection to `addr`, expecting `peer`; report the outcome with `attempt`.
    Connect {
        /// Id for the reports.
        attempt: AttemptId,
        /// Expected remote peer.
        peer: PeerId,
        /// Address to dial (without `/p2p`).
        addr: Multiaddr,
    },
    /// Stop the attempt; no report is expected (late reports get [`Error::UnknownAttempt`]).
    Abort {
        /// The attempt.
        attempt: AttemptId,
        /// Its peer.
        peer: PeerId,
        /// Its address.
        addr: Multiaddr,
    },
    /// The request is satisfied.
    DialSucceeded {
        /// The request.
        request: DialRequestId,
        /// The peer.
        peer: PeerId,
        /// The attempt whose connection answers it; `None` when it is answered by a connection
        /// reported through [`DialScheduler::handle_peer_connected`].
        attempt: Option<AttemptId>,
    },
    /// The request failed.
    DialFailed {
        /// The request.
        request: DialRequestId,
        /// The peer.
        peer: PeerId,
        /// Everything that went wrong.
        error: DialError,
    },
}

/// API misuse of the [`DialScheduler`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The attempt is not running (never started, already reported, or aborted).
    #[error("unknown or finished attempt {0}")]
    UnknownAttempt(AttemptId),
    /// The request is not pending (unknown or already answered).
    #[error("unknown or finished dial request {0}")]
    UnknownRequest(DialRequestId),
}

/// Decides which addresses the swarm's transports can dial.
pub type TransportFilter = Arc<dyn Fn(&Multiaddr) -> bool + Send + Sync>;

/// Scheduler configuration; [`Config::new`] gives go-libp2p's defaults.
#[derive(Clone)]
pub struct Config {
    /// Our own peer id (dials to it fail with [`DialFailure::DialToSelf`]).
    pub local_peer: PeerId,
    /// The ranker for normal dials.
    pub ranker: Arc<dyn DialRanker>,
    /// Which addresses a transport can dial; default [`is_dialable_tcp`] (Plait has TCP only).
    pub can_dial: TransportFilter,
    /// Concurrent dials per peer.
    pub per_peer_limit: usize,
    /// Concurrent fd-consuming dials in total.
    pub fd_limit: usize,
    /// Per-address timeout, public addresses.
    pub dial_timeout: Duration,
    /// Per-address timeout, private addresses (used when shorter than `dial_timeout`).
    pub dial_timeout_local: Duration,
    /// Timeout of one dial request.
    pub dial_peer_timeout: Duration,
    /// Black-hole detection state and settings.
    pub black_hole: BlackHoleDetector,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("local_peer", &self.local_peer)
            .field("per_peer_limit", &self.per_peer_limit)
            .field("fd_limit", &self.fd_limit)
            .field("dial_timeout", &self.dial_timeout)
            .field("dial_timeout_local", &self.dial_timeout_local)
            .field("dial_peer_timeout", &self.dial_peer_timeout)
            .field("black_hole", &self.black_hole)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// go-libp2p defaults: [`DefaultDialRanker`], 8 per peer, 160 fds, 15 s / 5 s / 60 s,
    /// UDP and IPv6 black-hole counters (100, 5); TCP-only transport filter.
    pub fn new(local_peer: PeerId) -> Self {
        Self {
            local_peer,
            ranker: Arc::new(DefaultDialRanker),
            can_dial: Arc::new(is_dialable_tcp),
            per_peer_limit: limiter::PER_PEER_DIAL_LIMIT,
            fd_limit: limiter::FD_DIAL_LIMIT,
            dial_timeout: DIAL_TIMEOUT,
            dial_timeout_local: DIAL_TIMEOUT_LOCAL,
            dial_peer_timeout: DIAL_PEER_TIMEOUT,
            black_hole: BlackHoleDetector::new(),
        }
    }

    /// Replaces the ranker.
    pub fn with_ranker(mut self, ranker: impl DialRanker + 'static) -> Self {
        self.ranker = Arc::new(ranker);
        self
    }

    /// Replaces the transport filter.
    pub fn with_transport_filter(
        mut self,
        can_dial: impl Fn(&Multiaddr) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.can_dial = Arc::new(can_dial);
        self
    }

    /// Replaces the black-hole detector (e.g. with counters disabled).
    pub fn with_black_hole_detector(mut self, detector: BlackHoleDetector) -> Self {
        self.black_hole = detector;
        self
    }
}
