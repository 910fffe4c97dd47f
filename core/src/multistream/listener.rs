//! The answering side of multistream-select.

use std::sync::Arc;

use bytes::BytesMut;

use super::message::{lossy, Message, Protocol, MAX_MESSAGE_LEN};
use super::Error;
use crate::varint::{self, LengthPrefixed};

/// The protocols a listener accepts: exact ids and, optionally, any other id its owner accepts
/// when asked (like go-libp2p's `SetStreamHandlerMatch`, but the decision is made outside the
/// machine: see [`ListenerStatus::Query`]).
#[derive(Clone, Debug, Default)]
pub struct ProtocolSet {
    exact: Vec<Protocol>,
    ask_others: bool,
}

/// Whether a [`ProtocolSet`] accepts a proposed id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// One of the exact ids.
    Yes,
    /// Not accepted.
    No,
    /// Not an exact id, and the set's owner decides: ask it.
    Ask,
}

impl ProtocolSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set of exact ids.
    pub fn from_protocols(protocols: impl IntoIterator<Item = Protocol>) -> Self {
        Self {
            exact: protocols.into_iter().collect(),
            ask_others: false,
        }
    }

    /// Accepts `protocol` exactly (case-sensitive).
    pub fn add(&mut self, protocol: Protocol) -> &mut Self {
        if !self.exact.contains(&protocol) {
            self.exact.push(protocol);
        }
        self
    }

    /// Stops accepting `protocol`; returns whether it was accepted.
    pub fn remove(&mut self, protocol: &str) -> bool {
        let before = self.exact.len();
        self.exact.retain(|p| p.as_str() != protocol);
        self.exact.len() != before
    }

    /// Whether proposals of other ids are put to the owner ([`ListenerStatus::Query`]) instead
    /// of being refused.
    pub fn set_ask_others(&mut self, ask: bool) -> &mut Self {
        self.ask_others = ask;
        self
    }

    /// Whether `proposed` is accepted.
    pub fn supports(&self, proposed: &str) -> Support {
        if self.exact.iter().any(|p| p.as_str() == proposed) {
            Support::Yes
        } else if self.ask_others {
            Support::Ask
        } else {
            Support::No
        }
    }

    /// The exact ids, in the order they were added (what `ls` lists).
    pub fn protocols(&self) -> &[Protocol] {
        &self.exact
    }
}

/// Limits of a [`Listener`].
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// How many unanswerable requests a dialer may make before the negotiation fails:
    /// unsupported proposals (answered `na`) and `ls` requests count alike, since both only
    /// make us write. Default 32: real dialers propose a handful and rarely list.
    pub max_rejections: usize,
    /// How many answer bytes may wait for [`Listener::poll_transmit`] before the listener stops
    /// consuming input, so a dialer that pipelines proposals without reading the answers
    /// cannot grow our memory. Default 4096 bytes.
    pub max_pending_output: usize,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            max_rejections: 32,
            max_pending_output: 4096,
        }
    }
}

/// Where a listener's negotiation stands after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerStatus {
    /// More input is needed (or pending output must be drained first).
    InProgress,
    /// This protocol was agreed; its echo is queued, and bytes left in the input belong to it.
    Agreed(Protocol),
    /// The dialer proposed this id, which is not an exact id of the set, and the set asks its
    /// owner about other ids: call [`Listener::answer`]. Nothing more is consumed until then.
    Query(Protocol),
}

/// The answering side of multistream-select.
///
/// It answers with its own header once the dialer's header arrives (so header and answer
/// usually leave in one write), echoes a supported proposal, answers `na` to others and lists
/// its exact protocols on `ls`. Every `na` and `ls` answer counts toward
/// [`ListenerConfig::max_rejections`], so a dialer cannot make it write without end.
#[derive(Debug)]
pub struct Listener {
    protocols: Arc<ProtocolSet>,
    config: ListenerConfig,
    header_received: bool,
    rejections: usize,
    agreed: Option<Protocol>,
    /// A proposal put to the owner and not answered yet.
    query: Option<Protocol>,
    out: BytesMut,
}

impl Listener {
    /// A listener accepting `protocols`.
    pub fn new(protocols: Arc<ProtocolSet>, config: ListenerConfig) -> Self {
        Self {
            protocols,
            config,
            header_received: false,
            rejections: 0,
            agreed: None,
            query: None,
            out: BytesMut::new(),
        }
    }

    /// Consumes multistream messages from the front of `input`, stopping right after the
    /// proposal that was agreed (what follows stays in `input`) or put to the owner.
    pub fn handle_input(&mut self, input: &mut BytesMut) -> Result<ListenerStatus, Error> {
        const FRAMES: LengthPrefixed = LengthPrefixed::new(MAX_MESSAGE_LEN);
        while self.agreed.is_none() {
            if let Some(query) = &self.query {
                return Ok(ListenerStatus::Query(query.clone()));
            }
            if self.out.len() >= self.config.max_pending_output {
                return Ok(ListenerStatus::InProgress);
            }
            let Some(payload) = FRAMES.decode(input)? else {
                return Ok(ListenerStatus::InProgress);
            };
            let message = Message::decode(&payload);
            if !self.header_received {
                if message != Ok(Message::Header) {
                    return Err(Error::BadHeader {
                        got: lossy(&payload),
                    });
                }
                self.header_received = true;
                Message::Header.encode(&mut self.out);
                continue;
            }
            match message? {
                Message::Protocol(p) => match self.protocols.supports(p.as_str()) {
                    Support::Yes => self.agree(p),
                    Support::Ask => self.query = Some(p),
                    Support::No => {
                        tracing::trace!(protocol = %p, "multistream: unsupported proposal");
                        self.reject()?;
                    }
                },
                Message::ListProtocols => {
                    self.count_rejection()?;
                    self.encode_list();
                }
                _ => {
                    return Err(Error::UnexpectedProposal {
                        got: lossy(&payload),
                    })
                }
            }
        }
        Ok(self
            .agreed
            .clone()
            .map_or(ListenerStatus::InProgress, ListenerStatus::Agreed))
    }

    /// Answers the proposal reported by [`ListenerStatus::Query`]: agrees on it, or answers
    /// `na` (which counts toward [`ListenerConfig::max_rejections`]). Then call
    /// [`handle_input`](Self::handle_input) again with what is left of the input.
    pub fn answer(&mut self, accept: bool) -> Result<(), Error> {
        let query = self.query.take().ok_or(Error::NoQuery)?;
        if accept {
            self.agree(query);
            Ok(())
        } else {
            self.reject()
        }
    }

    /// The proposal waiting for [`answer`](Self::answer), if any.
    pub fn query(&self) -> Option<&Protocol> {
        self.query.as_ref()
    }

    fn agree(&mut self, protocol: Protocol) {
        Message::Protocol(protocol.clone()).encode(&mut self.out);
        self.agreed = Some(protocol);
    }

    fn reject(&mut self) -> Result<(), Error> {
        self.count_rejection()?;
        Message::NotAvailable.encode(&mut self.out);
        Ok(())
    }

    fn count_rejection(&mut self) -> Result<(), Error> {
        self.rejections += 1;
        if self.rejections > self.config.max_rejections {
            return Err(Error::TooManyRejections {
                max: self.config.max_rejections,
            });
        }
        Ok(())
    }

    /// Answers `ls` with as many exact ids as fit in one message of [`MAX_MESSAGE_LEN`].
    fn encode_list(&mut self) {
        let mut total = 1;
        let list: Vec<Protocol> = self
            .protocols
            .protocols()
            .iter()
            .take_while(|p| {
                let len = p.as_str().len() + 1;
                total += varint::encoded_len(len as u64) + len;
                total <= MAX_MESSAGE_LEN
            })
            .cloned()
            .collect();
        Message::Protocols(list).encode(&mut self.out);
    }

    /// Appends the bytes to send to `out`; returns how many, or `None` if there are none.
    pub fn poll_transmit(&mut self, out: &mut BytesMut) -> Option<usize> {
        crate::buffer::drain_into(&mut self.out, out)
    }

    /// The agreed protocol, once there is one.
    pub fn agreed(&self) -> Option<&Protocol> {
        self.agreed.as_ref()
    }
}
