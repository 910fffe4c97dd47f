//! The proposing side of multistream-select.

use std::collections::VecDeque;

use bytes::BytesMut;

use super::message::{lossy, Message, Protocol, MAX_MESSAGE_LEN};
use super::Error;
use crate::varint::LengthPrefixed;

/// How eagerly the dialer assumes its proposal will be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DialerMode {
    /// Wait for the listener's echo before using the protocol (rust-libp2p `V1`).
    #[default]
    Strict,
    /// With one candidate left, report it at once so that the first application bytes go out
    /// in the same flight as the header and the proposal (rust-libp2p `V1Lazy`). The echo is
    /// still verified when it arrives; `na` then fails the negotiation.
    ///
    /// Only use this when the listener is known to support the protocol: a listener that does
    /// not will read the application bytes as multistream messages.
    Lazy,
}

/// Where a dialer's negotiation stands after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialerStatus {
    /// More input is needed.
    InProgress,
    /// The listener echoed this protocol; the bytes left in the input belong to it.
    Agreed(Protocol),
}

/// The proposing side of multistream-select: proposes protocols in order until one is echoed.
#[derive(Debug)]
pub struct Dialer {
    mode: DialerMode,
    current: Protocol,
    remaining: VecDeque<Protocol>,
    header_received: bool,
    agreed: bool,
    out: BytesMut,
}

impl Dialer {
    /// A dialer proposing `protocols` in order of preference. The header and the first proposal
    /// are queued for [`poll_transmit`](Self::poll_transmit) at once.
    pub fn new(
        protocols: impl IntoIterator<Item = Protocol>,
        mode: DialerMode,
    ) -> Result<Self, Error> {
        let mut remaining: VecDeque<Protocol> = protocols.into_iter().collect();
        let current = remaining.pop_front().ok_or(Error::NoProtocols)?;
        let mut out = BytesMut::with_capacity(64);
        Message::Header.encode(&mut out);
        Message::Protocol(current.clone()).encode(&mut out);
        Ok(Self {
            mode,
            current,
            remaining,
            header_received: false,
            agreed: false,
            out,
        })
    }

    /// The protocol the application may use already: the agreed one, or in
    /// [`DialerMode::Lazy`] the last candidate, before the listener confirmed it. `None` while
    /// the outcome is open.
    pub fn optimistic_protocol(&self) -> Option<&Protocol> {
        (self.agreed || (self.mode == DialerMode::Lazy && self.remaining.is_empty()))
            .then_some(&self.current)
    }

    /// The protocol currently proposed.
    pub fn proposed(&self) -> &Protocol {
        &self.current
    }

    /// Consumes multistream messages from the front of `input`, stopping right after the echo
    /// of the agreed protocol: what follows stays in `input`.
    pub fn handle_input(&mut self, input: &mut BytesMut) -> Result<DialerStatus, Error> {
        const FRAMES: LengthPrefixed = LengthPrefixed::new(MAX_MESSAGE_LEN);
        while !self.agreed {
            let Some(payload) = FRAMES.decode(input)? else {
                return Ok(DialerStatus::InProgress);
            };
            let message = Message::decode(&payload);
            if !self.header_received {
                if message != Ok(Message::Header) {
                    return Err(Error::BadHeader {
                        got: lossy(&payload),
                    });
                }
                self.header_received = true;
                continue;
            }
            match message? {
                Message::Protocol(p) if p == self.current => self.agreed = true,
                Message::NotAvailable => {
                    self.current = self.remaining.pop_front().ok_or(Error::NotSupported)?;
                    tracing::trace!(protocol = %self.current, "multistream: na, proposing next");
                    Message::Protocol(self.current.clone()).encode(&mut self.out);
                }
                _ => {
                    return Err(Error::UnexpectedAnswer {
                        proposed: self.current.clone(),
                        got: lossy(&payload),
                    })
                }
            }
        }
        Ok(DialerStatus::Agreed(self.current.clone()))
    }

    /// Appends the bytes to send to `out`; returns how many, or `None` if there are none.
    pub fn poll_transmit(&mut self, out: &mut BytesMut) -> Option<usize> {
        crate::buffer::drain_into(&mut self.out, out)
    }

    /// Whether the listener has echoed a protocol.
    pub fn is_agreed(&self) -> bool {
        self.agreed
    }
}
