//! Invariant checker shared by the scheduler proptest and the `dial_scheduler` fuzz target.
//!
//! Feeds on what a driver sees (requests made, events, reports) and panics on a violation:
//! - every request is answered exactly once;
//! - a peer never has more than `per_peer_limit` attempts between `Connect` and their end,
//!   and at most `fd_limit` fd-consuming attempts run in total;
//! - no address of a peer gets two `Connect`s while the same requests are pending (one worker
//!   lifetime);
//! - `Connect` only for peers with a pending request.

use std::collections::{BTreeMap, BTreeSet};

use libp2p_identity::PeerId;

use super::{AttemptId, DialRequestId, Event};
use crate::multiaddr::{is_fd_consuming, Multiaddr};

#[derive(Debug, Default)]
pub(crate) struct Checker {
    per_peer_limit: usize,
    fd_limit: usize,
    pending: BTreeMap<DialRequestId, PeerId>,
    answered: BTreeSet<DialRequestId>,
    running: BTreeMap<AttemptId, (PeerId, Multiaddr)>,
    dialed: BTreeMap<PeerId, BTreeSet<Vec<u8>>>,
}

impl Checker {
    pub(crate) fn new(per_peer_limit: usize, fd_limit: usize) -> Self {
        Self {
            per_peer_limit,
            fd_limit,
            ..Self::default()
        }
    }

    /// A `dial` call returned `id` for `peer`.
    pub(crate) fn on_dial(&mut self, id: DialRequestId, peer: PeerId) {
        assert!(
            !self.pending.contains_key(&id) && !self.answered.contains(&id),
            "request id {id} reused"
        );
        self.pending.insert(id, peer);
    }

    /// Running attempts, in id order.
    pub(crate) fn running(&self) -> Vec<AttemptId> {
        self.running.keys().copied().collect()
    }

    /// Pending requests, in id order.
    pub(crate) fn pending(&self) -> Vec<DialRequestId> {
        self.pending.keys().copied().collect()
    }

    /// The driver reported the end of `attempt` (succeeded or failed).
    pub(crate) fn on_report(&mut self, attempt: AttemptId) {
        self.running.remove(&attempt);
    }

    fn answer(&mut self, request: DialRequestId, peer: PeerId) {
        let owner = self.pending.remove(&request);
        assert_eq!(
            owner,
            Some(peer),
            "request {request} answered twice or never made"
        );
        assert!(
            self.answered.insert(request),
            "request {request} answered twice"
        );
        if !self.pending.values().any(|p| *p == peer) {
            self.dialed.remove(&peer);
        }
    }

    pub(crate) fn on_event(&mut self, event: &Event) {
        match event {
            Event::Connect {
                attempt,
                peer,
                addr,
            } => {
                assert!(
                    self.pending.values().any(|p| p == peer),
                    "Connect for {peer} with no pending request"
                );
                assert!(
                    self.running
                        .insert(*attempt, (*peer, addr.clone()))
                        .is_none(),
                    "attempt {attempt} started twice"
                );
                let per_peer = self.running.values().filter(|(p, _)| p == peer).count();
                assert!(
                    per_peer <= self.per_peer_limit,
                    "{per_peer} dials to {peer}"
                );
                let fds = self
                    .running
                    .values()
                    .filter(|(_, a)| is_fd_consuming(a))
                    .count();
                assert!(fds <= self.fd_limit, "{fds} fd-consuming dials");
                assert!(
                    self.dialed.entry(*peer).or_default().insert(addr.to_vec()),
                    "{addr} dialed twice for {peer}"
                );
            }
            Event::Abort { attempt, peer, .. } => {
                let r = self.running.remove(attempt);
                assert!(
                    r.is_some_and(|(p, _)| p == *peer),
                    "abort of attempt {attempt} that is not running"
                );
            }
            Event::DialSucceeded { request, peer, .. } => self.answer(*request, *peer),
            Event::DialFailed {
                request,
                peer,
                error,
            } => {
                assert_eq!(error.peer, *peer);
                self.answer(*request, *peer);
            }
        }
    }

    /// At quiescence (after the request timeout elapsed) everything is answered and stopped.
    pub(crate) fn assert_all_answered(&self) {
        assert!(self.pending.is_empty(), "unanswered: {:?}", self.pending);
        assert!(self.running.is_empty(), "still running: {:?}", self.running);
    }
}
