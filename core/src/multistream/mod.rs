//! multistream-select 1.0.0: agreeing on a protocol for a connection or a stream.
//!
//! The side that opened the connection or stream runs a [`Dialer`], the other side a
//! [`Listener`]. Both are handshake machines (see `ARCHITECTURE.md`): feed received bytes to
//! `handle_input`, send what `poll_transmit` appends. When negotiation ends, every byte that
//! followed the final multistream message is still in the caller's input buffer and belongs to
//! the agreed protocol.
//!
//! Wire format: each message is `uvarint(len) ‖ text ‖ '\n'`. The dialer pipelines the header
//! `/multistream/1.0.0` with its first proposal; the listener echoes a supported proposal or
//! answers `na`.

mod dialer;
mod listener;
mod message;

pub use dialer::{Dialer, DialerMode, DialerStatus};
pub use listener::{Listener, ListenerConfig, ListenerStatus, ProtocolSet, Support};
pub use message::{Message, Protocol, ProtocolError, MAX_MESSAGE_LEN, MAX_PROTOCOL_LEN};

use crate::varint::FrameError;

/// The protocol id of multistream-select itself, sent as the header.
pub const HEADER: &str = "/multistream/1.0.0";

/// Why a negotiation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A message was not framed correctly (length prefix too long, over the limit, ...).
    #[error("malformed multistream frame: {0}")]
    Frame(#[from] FrameError),
    /// A message did not end in `\n`, was not UTF-8, or was not a valid protocol id.
    #[error("malformed multistream message: {0}")]
    Message(#[from] ProtocolError),
    /// The peer's first message was not the `/multistream/1.0.0` header.
    #[error("peer did not send the multistream header first (got {got:?})")]
    BadHeader {
        /// What was received instead, lossily decoded.
        got: String,
    },
    /// The listener answered something other than an echo of our proposal or `na`.
    #[error("unexpected answer to proposal {proposed}: {got:?}")]
    UnexpectedAnswer {
        /// Our proposal.
        proposed: Protocol,
        /// What was received, lossily decoded.
        got: String,
    },
    /// The listener rejected every protocol we proposed.
    #[error("the peer supports none of the proposed protocols")]
    NotSupported,
    /// The dialer sent a message a listener cannot answer (e.g. `na` or a second header).
    #[error("unexpected message from dialer: {got:?}")]
    UnexpectedProposal {
        /// What was received, lossily decoded.
        got: String,
    },
    /// The dialer made more unsupported proposals and `ls` requests than the listener allows.
    #[error("peer made more than {max} unsupported proposals or ls requests")]
    TooManyRejections {
        /// The configured limit.
        max: usize,
    },
    /// [`Listener::answer`] was called with no query pending (API misuse).
    #[error("no proposal is waiting for an answer")]
    NoQuery,
    /// A dialer was created without any protocol to propose.
    #[error("no protocol to propose")]
    NoProtocols,
}

#[cfg(test)]
mod tests;
