//! The messages between the [`Coordinator`](super::Coordinator) and the
//! [`ConnectionTask`](super::ConnectionTask)s: the only way they affect each other.

use std::sync::Arc;

use libp2p_identity::PeerId;

use super::StreamRequestId;
use crate::connection;
use crate::identify::Info;
use crate::multiaddr::Multiaddr;
use crate::multistream::{Protocol, ProtocolSet};

/// What the coordinator tells a connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ToConnection {
    /// Open a stream proposing `protocols` in order; answered by the task's
    /// [`Event::StreamOpened`](super::Event::StreamOpened) or
    /// [`Event::StreamOpenFailed`](super::Event::StreamOpenFailed) with `request`. Waits for
    /// the upgrade, and while the peer has not acknowledged yamux's backlog of streams we
    /// opened (as go-yamux's `OpenStream` does).
    OpenStream {
        /// The request to answer.
        request: StreamRequestId,
        /// The protocols to propose.
        protocols: Vec<Protocol>,
    },
    /// Ping the remote once on a new stream; answered by
    /// [`Event::PingResult`](super::Event::PingResult) with `request`.
    Ping {
        /// The request to answer.
        request: StreamRequestId,
    },
    /// Close the connection gracefully (yamux Go Away).
    Close,
    /// The protocols inbound streams may negotiate from now on (and that identify announces).
    Protocols(Arc<ProtocolSet>),
    /// The addresses we listen on, for identify.
    ListenAddrs(Arc<[Multiaddr]>),
}

/// What a connection tells the coordinator.
#[derive(Debug)]
#[non_exhaustive]
pub enum ToCoordinator {
    /// The upgrade got further (see [`connection::Connection::upgrade_progress`]): the
    /// coordinator drops the least advanced upgrading inbound connection when too many wait.
    UpgradeProgress(u8),
    /// The upgrade finished: the remote is `peer`.
    Established {
        /// The authenticated peer.
        peer: PeerId,
    },
    /// About how many streams the connection has now (for choosing connections and trimming):
    /// sent when the count moved by a quarter (at least one) or to or from zero.
    Streams(usize),
    /// The remote answered our identify query.
    Identified(Box<Info>),
    /// The remote pushed changes to what it told us (`/ipfs/id/push/1.0.0`).
    IdentifyPushed(Box<Info>),
    /// Reading the remote's identify answer failed.
    IdentifyFailed(super::Error),
    /// The connection ended (the last message of a task); `error` says why unless it was a
    /// clean close.
    Closed {
        /// The failure, if any.
        error: Option<Arc<connection::Error>>,
    },
}
