//! Protocols every host serves by default: `/ipfs/ping/1.0.0` and `/ipfs/id/1.0.0`.
//!
//! They run inside the swarm on ordinary streams, driven by the core's [`ping`] and
//! [`identify`] machines, so every runtime and custom event loop gets them for free.

use std::time::Duration;

use bytes::BytesMut;
use libp2p_identity::PeerId;

use crate::identify::{self, Info, Kind};
use crate::multiaddr::Multiaddr;
use crate::ping;
use crate::time::Instant;

/// The agent version we announce in identify.
pub const AGENT_VERSION: &str = concat!("plait/", env!("CARGO_PKG_VERSION"));
/// The protocol family version we announce in identify.
pub const PROTOCOL_VERSION: &str = "ipfs/0.1.0";

/// The longest a stream of a built-in service may live: a peer cannot park state with us.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(30);

/// A built-in protocol running on one stream.
pub(super) enum Service {
    /// We answer pings.
    PingResponder(ping::Responder),
    /// We ping the remote once.
    Ping(ping::Pinger),
    /// We read the remote's identify message (our query's answer, or a push).
    Identify {
        decoder: identify::Decoder,
        deadline: Instant,
        push: bool,
    },
    /// We are done sending and discard what arrives until the remote's end (so the stream
    /// can be forgotten), or reset at the deadline.
    Drain { deadline: Instant },
}

/// The most a service keeps of what its stream received and it did not consume yet: a few
/// identify messages of the largest size (a ping or pong is 32 bytes).
pub(super) const MAX_PENDING_INPUT: usize = identify::MAX_MESSAGE_SIZE * identify::MAX_MESSAGES;

/// A service with what it received and has not consumed yet (a message split across reads is
/// completed by the next), so it gives the same result however its stream's bytes are chunked.
pub(super) struct Running {
    /// The service.
    pub(super) service: Service,
    pending: BytesMut,
}

impl Running {
    /// Starts `service` with nothing received.
    pub(super) fn new(service: Service) -> Self {
        Self {
            service,
            pending: BytesMut::new(),
        }
    }

    /// How many more bytes it takes (reading more than this waits for the next drive).
    pub(super) fn room(&self) -> usize {
        MAX_PENDING_INPUT.saturating_sub(self.pending.len())
    }

    /// Bytes received and not consumed yet.
    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Feeds `received` after what is pending (`eof`: the remote finished).
    pub(super) fn drive(&mut self, now: Instant, received: &[u8], eof: bool) -> Step {
        self.pending.extend_from_slice(received);
        let step = self.service.drive(now, &mut self.pending, eof);
        if step.outcome.is_some() || self.pending.is_empty() {
            self.pending = BytesMut::new();
        }
        step
    }
}

/// What a service has to report when it ends.
pub(super) enum Outcome {
    /// Nothing (responders).
    Done,
    /// The remote did not end the stream in time: reset it.
    Abandoned,
    /// A ping's round-trip time, or why it failed.
    Ping(Result<Duration, super::Error>),
    /// The remote's identify information, or why reading it failed.
    Identify(Result<Box<Info>, super::Error>),
    /// What the remote pushed (`/ipfs/id/push/1.0.0`): the fields it changed.
    IdentifyPush(Box<Info>),
}

/// What one drive of a service produced.
pub(super) struct Step {
    /// Bytes to write on the stream.
    pub(super) output: BytesMut,
    /// The service ended (the stream should be finished and forgotten).
    pub(super) outcome: Option<Outcome>,
}

impl Service {
    /// A ping responder for an inbound stream.
    pub(super) fn ping_responder(now: Instant) -> Self {
        Self::PingResponder(ping::Responder::new(now, ping::ResponderConfig::default()))
    }

    /// Discards input until the remote's end of stream.
    pub(super) fn drain(now: Instant) -> Self {
        Self::Drain {
            deadline: now + SERVICE_TIMEOUT,
        }
    }

    /// A single outbound ping.
    pub(super) fn ping(now: Instant, seed: u64) -> Self {
        Self::Ping(ping::Pinger::new(now, ping::Config::default(), seed))
    }

    /// An outbound identify query expecting `remote`'s key.
    pub(super) fn identify(now: Instant, remote: PeerId) -> Self {
        Self::Identify {
            decoder: identify::Decoder::new(Kind::Query, Some(remote)),
            deadline: now + SERVICE_TIMEOUT,
            push: false,
        }
    }

    /// An inbound identify push from `remote` (its changed fields; a key, if any, must be
    /// `remote`'s).
    pub(super) fn identify_push(now: Instant, remote: PeerId) -> Self {
        Self::Identify {
            decoder: identify::Decoder::new(Kind::Push, Some(remote)),
            deadline: now + SERVICE_TIMEOUT,
            push: true,
        }
    }

    /// Feeds what was read (`eof`: the remote finished), returns what to write and whether the
    /// service ended.
    pub(super) fn drive(&mut self, now: Instant, input: &mut BytesMut, eof: bool) -> Step {
        let mut output = BytesMut::new();
        let outcome = match self {
            Self::PingResponder(responder) => {
                let result = responder.handle_input(now, input);
                if eof {
                    responder.handle_eof();
                }
                responder.handle_timeout(now);
                responder.poll_transmit(now, &mut output);
                (result.is_err() || eof || responder.is_closed()).then_some(Outcome::Done)
            }
            Self::Ping(pinger) => {
                let mut result = pinger.handle_input(now, input).map_err(super::Error::Ping);
                if eof && result.is_ok() {
                    result = pinger.handle_eof().map_err(super::Error::Ping);
                }
                pinger.handle_timeout(now);
                match (result, pinger.poll_event()) {
                    (Err(e), _) => Some(Outcome::Ping(Err(e))),
                    (_, Some(ping::Event::Pong { rtt })) => Some(Outcome::Ping(Ok(rtt))),
                    (_, Some(ping::Event::Timeout)) => {
                        Some(Outcome::Ping(Err(super::Error::Timeout)))
                    }
                    (Ok(()), _) => {
                        pinger.poll_transmit(now, &mut output);
                        None
                    }
                }
            }
            Self::Identify {
                decoder,
                deadline,
                push,
            } => {
                if let Err(e) = decoder.handle_input(input) {
                    Some(Outcome::Identify(Err(super::Error::Identify(e))))
                } else if eof {
                    let decoder =
                        std::mem::replace(decoder, identify::Decoder::new(Kind::Query, None));
                    let result = decoder
                        .finish(input)
                        .map(Box::new)
                        .map_err(super::Error::Identify);
                    Some(match (result, *push) {
                        (Ok(info), true) => Outcome::IdentifyPush(info),
                        (result, _) => Outcome::Identify(result),
                    })
                } else if now >= *deadline {
                    Some(Outcome::Identify(Err(super::Error::Timeout)))
                } else {
                    None
                }
            }
            Self::Drain { deadline } => {
                input.clear();
                if eof {
                    Some(Outcome::Done)
                } else if now >= *deadline {
                    Some(Outcome::Abandoned)
                } else {
                    None
                }
            }
        };
        Step { output, outcome }
    }

    /// When the service needs [`drive`](Self::drive) called even without input.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Self::PingResponder(r) => r.poll_timeout(),
            Self::Ping(p) => p.poll_timeout(),
            Self::Identify { deadline, .. } | Self::Drain { deadline } => Some(*deadline),
        }
    }
}

/// Our identify message for a connection whose remote address is `observed`.
pub(super) fn local_info(
    public_key: libp2p_identity::PublicKey,
    listen_addrs: Vec<Multiaddr>,
    protocols: Vec<String>,
    observed: Option<Multiaddr>,
) -> Info {
    Info {
        public_key: Some(public_key),
        protocol_version: Some(PROTOCOL_VERSION.to_string()),
        agent_version: Some(AGENT_VERSION.to_string()),
        listen_addrs,
        protocols,
        observed_addr: observed,
        signed_peer_record: None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn identify_bytes(remote: &libp2p_identity::Keypair) -> (Info, Vec<u8>) {
        let protocols = (0..40).map(|i| format!("/plait/test/{i}/1.0.0")).collect();
        let addrs = (0..20)
            .map(|i| format!("/ip4/10.0.0.{i}/tcp/4001").parse().expect("addr"))
            .collect();
        let observed = "/ip4/127.0.0.1/tcp/5555".parse().ok();
        let info = local_info(remote.public(), addrs, protocols, observed);
        let mut wire = BytesMut::new();
        identify::encode(&info, &mut wire).expect("encode");
        (info, wire.to_vec())
    }

    proptest! {
        #[test]
        fn identify_gives_the_same_answer_however_its_bytes_are_chunked(
            cuts in proptest::collection::vec(any::<usize>(), 0..200),
        ) {
            let now = plait_testkit::start();
            let remote = libp2p_identity::Keypair::ed25519_from_bytes([5; 32]).expect("key");
            let (info, wire) = identify_bytes(&remote);
            let mut running = Running::new(Service::identify(now, remote.public().to_peer_id()));
            for piece in plait_testkit::chunks(&wire, &cuts) {
                let step = running.drive(now, &piece, false);
                prop_assert!(step.outcome.is_none());
            }
            let step = running.drive(now, &[], true);
            match step.outcome {
                Some(Outcome::Identify(Ok(got))) => prop_assert_eq!(*got, info),
                _ => prop_assert!(false, "identify failed"),
            }
        }

        #[test]
        fn an_identify_push_gives_its_fields_however_its_bytes_are_chunked(
            cuts in proptest::collection::vec(any::<usize>(), 0..200),
        ) {
            let now = plait_testkit::start();
            let remote = libp2p_identity::Keypair::ed25519_from_bytes([6; 32]).expect("key");
            let (info, wire) = identify_bytes(&remote);
            let mut running =
                Running::new(Service::identify_push(now, remote.public().to_peer_id()));
            for piece in plait_testkit::chunks(&wire, &cuts) {
                prop_assert!(running.drive(now, &piece, false).outcome.is_none());
            }
            match running.drive(now, &[], true).outcome {
                Some(Outcome::IdentifyPush(got)) => prop_assert_eq!(*got, info),
                _ => prop_assert!(false, "the push was not read"),
            }
        }

        #[test]
        fn ping_answers_the_same_however_its_bytes_are_chunked(
            cuts in proptest::collection::vec(any::<usize>(), 0..96),
        ) {
            let now = plait_testkit::start();
            let payload: Vec<u8> = (0..96u8).collect();
            let mut running = Running::new(Service::ping_responder(now));
            let mut echoed = Vec::new();
            for piece in plait_testkit::chunks(&payload, &cuts) {
                echoed.extend_from_slice(&running.drive(now, &piece, false).output);
            }
            prop_assert_eq!(echoed, payload);
        }
    }
}
