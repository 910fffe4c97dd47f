//! The answering side of multistream-select.

use std::fmt;
use std::sync::Arc;

use bytes::BytesMut;

use super::message::{lossy, Message, Protocol, MAX_MESSAGE_LEN};
use super::Error;
use crate::varint::{self, LengthPrefixed};

/// A predicate deciding whether a proposed protocol id is supported.
pub type ProtocolMatcher = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The protocols a listener accepts: exact ids, and predicates over proposed ids (like
/// go-libp2p's `SetStreamHandlerMatch`).
#[derive(Clone, Default)]
pub struct ProtocolSet {
    exact: Vec<Protocol>,
    matchers: Vec<ProtocolMatcher>,
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
            matchers: Vec::new(),
        }
    }

    /// Accepts `protocol` exactly (case-sensitive).
    pub fn add(&mut self, protocol: Protocol) -> &mut Self {
        if !self.exact.contains(&protocol) {
            self.exact.push(protocol);
        }
        self
    }

    /// Accepts every proposed id for which `matcher` returns true.
    pub fn add_matcher(
        &mut self,
        matcher: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> &mut Self {
        self.matchers.push(Arc::new(matcher));
        self
    }

    /// Whether `proposed` is accepted.
    pub fn supports(&self, proposed: &str) -> bool {
        self.exact.iter().any(|p| p.as_str() == proposed)
            || self.matchers.iter().any(|m| m(proposed))
    }

    /// The exact ids, in the order they were added (what `ls` lists).
    pub fn protocols(&self) -> &[Protocol] {
        &self.exact
    }
}

impl fmt::Debug for ProtocolSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtocolSet")
            .field("exact", &self.exact)
            .field("matchers", &self.matchers.len())
            .finish()
    }
}

/// Limits of a [`Listener`].
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// How many unsupported proposals (answered `na`) a dialer may make before the
    /// negotiation fails. Default 32: real dialers propose a handful.
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
}

/// The answering side of multistream-select.
///
/// It answers with its own header once the dialer's header arrives (so header and answer
/// usually leave in one write), echoes a supported proposal, answers `na` to others and lists
/// its exact protocols on `ls`.
#[derive(Debug)]
pub struct Listener {
    protocols: Arc<ProtocolSet>,
    config: ListenerConfig,
    header_received: bool,
    rejections: usize,
    agreed: Option<Protocol>,
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
            out: BytesMut::new(),
        }
    }

    /// Consumes multistream messages from the front of `input`, stopping right after the
    /// proposal that was agreed: what follows stays in `input`.
    pub fn handle_input(&mut self, input: &mut BytesMut) -> Result<ListenerStatus, Error> {
        const FRAMES: LengthPrefixed = LengthPrefixed::new(MAX_MESSAGE_LEN);
        while self.agreed.is_none() {
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
                Message::Protocol(p) if self.protocols.supports(p.as_str()) => {
                    Message::Protocol(p.clone()).encode(&mut self.out);
                    self.agreed = Some(p);
                }
                Message::Protocol(p) => {
                    self.rejections += 1;
                    if self.rejections > self.config.max_rejections {
                        return Err(Error::TooManyRejections {
                            max: self.config.max_rejections,
                        });
                    }
                    tracing::trace!(protocol = %p, "multistream: unsupported proposal");
                    Message::NotAvailable.encode(&mut self.out);
                }
                Message::ListProtocols => self.encode_list(),
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
