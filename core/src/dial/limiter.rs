//! Dial limiter (go-libp2p limiter.go): at most [`PER_PEER_DIAL_LIMIT`] concurrent dials per
//! peer and [`FD_DIAL_LIMIT`] concurrent file-descriptor-consuming dials in total; jobs beyond
//! either limit wait in FIFO order.
//!
//! A job takes its peer token first, then (if it consumes an fd) an fd token; a job waiting for
//! an fd token already holds its peer token. Tokens are released fd first, then peer, and each
//! release starts the next waiting job, as in go.

use std::collections::{BTreeMap, VecDeque};

use libp2p_identity::PeerId;

/// Concurrent dials per peer (go `DefaultPerPeerRateLimit`).
pub const PER_PEER_DIAL_LIMIT: usize = 8;
/// Concurrent dials over fd-consuming transports (TCP, unix) in total (go `ConcurrentFdDials`).
pub const FD_DIAL_LIMIT: usize = 160;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobState {
    WaitingPeer,
    WaitingFd,
    Running,
}

#[derive(Debug, Clone)]
struct Job {
    peer: PeerId,
    fd: bool,
    state: JobState,
}

/// Token bookkeeping for dial jobs identified by `Id`.
#[derive(Debug, Clone)]
pub struct Limiter<Id: Ord + Copy> {
    per_peer_limit: usize,
    fd_limit: usize,
    jobs: BTreeMap<Id, Job>,
    active_per_peer: BTreeMap<PeerId, usize>,
    waiting_on_peer: BTreeMap<PeerId, VecDeque<Id>>,
    fd_consuming: usize,
    waiting_on_fd: VecDeque<Id>,
}

impl<Id: Ord + Copy> Limiter<Id> {
    /// A limiter with the given limits (each at least 1).
    pub fn new(per_peer_limit: usize, fd_limit: usize) -> Self {
        Self {
            per_peer_limit: per_peer_limit.max(1),
            fd_limit: fd_limit.max(1),
            jobs: BTreeMap::new(),
            active_per_peer: BTreeMap::new(),
            waiting_on_peer: BTreeMap::new(),
            fd_consuming: 0,
            waiting_on_fd: VecDeque::new(),
        }
    }

    /// Adds a job; returns the jobs that start running now (this one, or none).
    pub fn add(&mut self, id: Id, peer: PeerId, fd: bool) -> Vec<Id> {
        let mut started = Vec::new();
        self.jobs.insert(
            id,
            Job {
                peer,
                fd,
                state: JobState::WaitingPeer,
            },
        );
        self.check_peer_limit(id, &mut started);
        started
    }

    fn check_peer_limit(&mut self, id: Id, started: &mut Vec<Id>) {
        let Some(peer) = self.jobs.get(&id).map(|j| j.peer) else {
            return;
        };
        let active = self.active_per_peer.entry(peer).or_insert(0);
        if *active >= self.per_peer_limit {
            self.waiting_on_peer.entry(peer).or_default().push_back(id);
            return;
        }
        *active += 1;
        self.check_fd_limit(id, started);
    }

    fn check_fd_limit(&mut self, id: Id, started: &mut Vec<Id>) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.fd {
            if self.fd_consuming >= self.fd_limit {
                job.state = JobState::WaitingFd;
                self.waiting_on_fd.push_back(id);
                return;
            }
            self.fd_consuming += 1;
        }
        job.state = JobState::Running;
        started.push(id);
    }

    /// Removes a job in any state, releasing its tokens; returns the jobs that start now.
    /// Unknown ids are ignored.
    pub fn remove(&mut self, id: Id) -> Vec<Id> {
        let mut started = Vec::new();
        let Some(job) = self.jobs.remove(&id) else {
            return started;
        };
        match job.state {
            JobState::WaitingPeer => {
                if let Some(q) = self.waiting_on_peer.get_mut(&job.peer) {
                    q.retain(|j| *j != id);
                    if q.is_empty() {
                        self.waiting_on_peer.remove(&job.peer);
                    }
                }
            }
            JobState::WaitingFd => {
                self.waiting_on_fd.retain(|j| *j != id);
                self.free_peer_token(job.peer, &mut started);
            }
            JobState::Running => {
                if job.fd {
                    self.free_fd_token(&mut started);
                }
                self.free_peer_token(job.peer, &mut started);
            }
        }
        started
    }

    fn free_fd_token(&mut self, started: &mut Vec<Id>) {
        self.fd_consuming = self.fd_consuming.saturating_sub(1);
        if let Some(next) = self.waiting_on_fd.pop_front() {
            if let Some(job) = self.jobs.get_mut(&next) {
                self.fd_consuming += 1;
                job.state = JobState::Running;
                started.push(next);
            }
        }
    }

    fn free_peer_token(&mut self, peer: PeerId, started: &mut Vec<Id>) {
        if let Some(active) = self.active_per_peer.get_mut(&peer) {
            *active = active.saturating_sub(1);
            if *active == 0 {
                self.active_per_peer.remove(&peer);
            }
        }
        let next = self
            .waiting_on_peer
            .get_mut(&peer)
            .and_then(|q| q.pop_front());
        if self
            .waiting_on_peer
            .get(&peer)
            .is_some_and(|q| q.is_empty())
        {
            self.waiting_on_peer.remove(&peer);
        }
        if let Some(next) = next {
            *self.active_per_peer.entry(peer).or_insert(0) += 1;
            self.check_fd_limit(next, started);
        }
    }

    /// Removes every job of `peer` (its dial worker ended): waiting jobs first so that no job of
    /// `peer` is started by the released tokens. Returns the jobs of *other* peers that start.
    pub fn remove_peer(&mut self, peer: &PeerId) -> Vec<Id> {
        let mut by_state: [Vec<Id>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for (id, job) in self.jobs.iter().filter(|(_, j)| j.peer == *peer) {
            let slot = match job.state {
                JobState::WaitingPeer => 0,
                JobState::WaitingFd => 1,
                JobState::Running => 2,
            };
            if let Some(v) = by_state.get_mut(slot) {
                v.push(*id);
            }
        }
        let mut started = Vec::new();
        for id in by_state.into_iter().flatten() {
            started.extend(self.remove(id));
        }
        started
    }

    /// True if the job is running (holds all its tokens).
    pub fn is_running(&self, id: Id) -> bool {
        self.jobs
            .get(&id)
            .is_some_and(|j| j.state == JobState::Running)
    }

    /// Number of running jobs of `peer`.
    pub fn running_for_peer(&self, peer: &PeerId) -> usize {
        self.jobs
            .values()
            .filter(|j| j.peer == *peer && j.state == JobState::Running)
            .count()
    }

    /// Number of running fd-consuming jobs.
    pub fn fd_in_use(&self) -> usize {
        self.fd_consuming
    }

    /// Number of jobs (running or waiting).
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// True if there are no jobs.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_peer_limit_fifo() {
        let mut l = Limiter::<u32>::new(PER_PEER_DIAL_LIMIT, FD_DIAL_LIMIT);
        let p = PeerId::random();
        let mut started = Vec::new();
        for i in 0..10 {
            started.extend(l.add(i, p, false));
        }
        assert_eq!(started, (0..8).collect::<Vec<_>>());
        assert_eq!(l.running_for_peer(&p), 8);
        assert_eq!(l.remove(3), vec![8]);
        assert_eq!(
            l.remove(9),
            Vec::<u32>::new(),
            "waiting job removed silently"
        );
        assert_eq!(l.remove(0), Vec::<u32>::new());
        assert_eq!(l.running_for_peer(&p), 7);
    }

    #[test]
    fn fd_limit_across_peers() {
        let mut l = Limiter::<u32>::new(8, 3);
        let (a, b) = (PeerId::random(), PeerId::random());
        assert_eq!(l.add(1, a, true), vec![1]);
        assert_eq!(l.add(2, a, true), vec![2]);
        assert_eq!(
            l.add(3, b, false),
            vec![3],
            "non-fd job ignores the fd limit"
        );
        assert_eq!(l.add(4, b, true), vec![4]);
        assert_eq!(l.add(5, b, true), Vec::<u32>::new());
        assert_eq!(l.add(6, a, true), Vec::<u32>::new());
        assert_eq!(l.fd_in_use(), 3);
        assert_eq!(l.remove(3), Vec::<u32>::new(), "peer token only");
        assert_eq!(l.remove(1), vec![5], "fd FIFO across peers");
        assert_eq!(l.remove(6), Vec::<u32>::new());
        assert_eq!(l.remove(2), Vec::<u32>::new());
        assert_eq!(l.fd_in_use(), 2);
    }
}
