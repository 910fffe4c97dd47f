//! Limits on connections and streams, and the connection manager's watermarks.

use std::time::Duration;

/// Hard limits: beyond them new connections and streams are refused.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections in any state. Default 1024 (each costs a socket; see TOOLCHAIN's
    /// descriptor limits).
    pub max_connections: usize,
    /// Established connections per peer. Default 8 (go-libp2p's resource manager default for
    /// connections per peer is of this order; more than a few is never useful).
    pub max_connections_per_peer: usize,
    /// Inbound connections still upgrading. Default 128, so a flood of half-open
    /// connections cannot starve established ones (go-libp2p limits pending inbound too).
    /// At the limit a new inbound connection replaces the oldest upgrading one, so such a
    /// flood cannot lock out new dialers either.
    pub max_pending_incoming: usize,
    /// Streams per connection (yamux's limit). Default 8192.
    pub max_streams_per_connection: usize,
    /// Inbound streams per connection still negotiating their protocol; beyond it new inbound
    /// streams are reset at once. Default 128 (rust-libp2p's `max_negotiating_inbound_streams`),
    /// so streams opened and never negotiated cannot take the connection's stream budget.
    pub max_negotiating_inbound_streams: usize,
    /// How long an inbound stream may take to negotiate its protocol before it is reset.
    /// Default 10 s (go-libp2p's host negotiation timeout).
    pub inbound_negotiation_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_peer: 8,
            max_pending_incoming: 128,
            max_streams_per_connection: 8192,
            max_negotiating_inbound_streams: 128,
            inbound_negotiation_timeout: Duration::from_secs(10),
        }
    }
}

/// go-libp2p's basic connection manager: above `high_water` established connections, close
/// the least useful ones down to `low_water`.
#[derive(Debug, Clone)]
pub struct ConnManagerConfig {
    /// Trimming starts above this many established connections. Default 192 (go-libp2p).
    pub high_water: usize,
    /// Trimming stops at this many. Default 160 (go-libp2p).
    pub low_water: usize,
    /// New connections are not trimmed for this long. Default 20 s (go-libp2p).
    pub grace_period: Duration,
}

impl Default for ConnManagerConfig {
    fn default() -> Self {
        Self {
            high_water: 192,
            low_water: 160,
            grace_period: Duration::from_secs(20),
        }
    }
}

/// Which limit refused a connection or stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::max_connections`].
    #[error("connections")]
    Connections,
    /// [`Limits::max_connections_per_peer`].
    #[error("connections per peer")]
    ConnectionsPerPeer,
    /// [`Limits::max_pending_incoming`]: the connection was the least advanced upgrading one
    /// when another arrived.
    #[error("pending incoming connections")]
    PendingIncoming,
}
