//! Black-hole detection for UDP and IPv6 (go-libp2p black_hole_detector.go).
//!
//! Each counter keeps the last `n` dial results of public addresses of its kind. Fewer than
//! `n` results: [`BlackHoleState::Probing`]; at least `min_successes` successes among them:
//! [`BlackHoleState::Allowed`]; otherwise [`BlackHoleState::Blocked`], in which only every
//! `n`-th dial request is let through as a probe. A success while blocked resets the counter.

use std::collections::VecDeque;

use crate::multiaddr::{has_ip6, has_udp, is_public_addr, Multiaddr};

/// Window size of the default counters (go `N`).
pub const BLACK_HOLE_WINDOW: usize = 100;
/// Successes within the window needed to be `Allowed` (go `MinSuccesses`).
pub const BLACK_HOLE_MIN_SUCCESSES: usize = 5;

/// State of one black-hole counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlackHoleState {
    /// Not enough results yet: dial everything.
    Probing,
    /// Enough successes: dial everything.
    Allowed,
    /// Too few successes: refuse, except one probe request every `n`.
    Blocked,
}

/// go `BlackHoleSuccessCounter`.
#[derive(Debug, Clone)]
pub struct BlackHoleCounter {
    n: usize,
    min_successes: usize,
    requests: u64,
    results: VecDeque<bool>,
    successes: usize,
    state: BlackHoleState,
}

impl BlackHoleCounter {
    /// A counter over the last `n` results (`n` ≥ 1) needing `min_successes`.
    pub fn new(n: usize, min_successes: usize) -> Self {
        Self {
            n: n.max(1),
            min_successes,
            requests: 0,
            results: VecDeque::new(),
            successes: 0,
            state: BlackHoleState::Probing,
        }
    }

    /// Current state.
    pub fn state(&self) -> BlackHoleState {
        self.state
    }

    /// Records one dial result.
    pub fn record(&mut self, success: bool) {
        if self.state == BlackHoleState::Blocked && success {
            self.requests = 0;
            self.results.clear();
            self.successes = 0;
            self.update();
            return;
        }
        if success {
            self.successes += 1;
        }
        self.results.push_back(success);
        if self.results.len() > self.n && self.results.pop_front() == Some(true) {
            self.successes = self.successes.saturating_sub(1);
        }
        self.update();
    }

    /// Counts one dial request and says how to treat it: `Allowed`, `Probing` (dial as a probe)
    /// or `Blocked` (refuse).
    pub fn handle_request(&mut self) -> BlackHoleState {
        self.requests = self.requests.wrapping_add(1);
        match self.state {
            BlackHoleState::Allowed => BlackHoleState::Allowed,
            BlackHoleState::Probing => BlackHoleState::Probing,
            BlackHoleState::Blocked if self.requests.is_multiple_of(self.n as u64) => {
                BlackHoleState::Probing
            }
            BlackHoleState::Blocked => BlackHoleState::Blocked,
        }
    }

    fn update(&mut self) {
        self.state = if self.results.len() < self.n {
            BlackHoleState::Probing
        } else if self.successes >= self.min_successes {
            BlackHoleState::Allowed
        } else {
            BlackHoleState::Blocked
        };
    }
}

impl Default for BlackHoleCounter {
    fn default() -> Self {
        Self::new(BLACK_HOLE_WINDOW, BLACK_HOLE_MIN_SUCCESSES)
    }
}

/// The UDP and IPv6 counters together (go `blackHoleDetector`).
#[derive(Debug, Clone, Default)]
pub struct BlackHoleDetector {
    /// Counter for public addresses with `/udp`; `None` disables UDP detection.
    pub udp: Option<BlackHoleCounter>,
    /// Counter for public addresses with `/ip6`; `None` disables IPv6 detection.
    pub ipv6: Option<BlackHoleCounter>,
    /// Read-only mode (AutoNAT): never record, refuse unless `Allowed`.
    pub read_only: bool,
}

impl BlackHoleDetector {
    /// Both counters with go's defaults (window 100, 5 successes).
    pub fn new() -> Self {
        Self {
            udp: Some(BlackHoleCounter::default()),
            ipv6: Some(BlackHoleCounter::default()),
            read_only: false,
        }
    }

    fn filter_state(counter: &mut BlackHoleCounter, read_only: bool) -> BlackHoleState {
        if read_only {
            if counter.state() == BlackHoleState::Allowed {
                BlackHoleState::Allowed
            } else {
                BlackHoleState::Blocked
            }
        } else {
            counter.handle_request()
        }
    }

    /// Splits one dial request's addresses into (kept, black-holed). Counts one request on a
    /// counter only if some public address of its kind is present.
    pub fn filter(&mut self, addrs: Vec<Multiaddr>) -> (Vec<Multiaddr>, Vec<Multiaddr>) {
        let public: Vec<bool> = addrs.iter().map(is_public_addr).collect();
        let has_udp_addr = addrs.iter().zip(&public).any(|(a, p)| *p && has_udp(a));
        let has_ip6_addr = addrs.iter().zip(&public).any(|(a, p)| *p && has_ip6(a));
        let read_only = self.read_only;
        let udp = match self.udp.as_mut() {
            Some(c) if has_udp_addr => Self::filter_state(c, read_only),
            _ => BlackHoleState::Allowed,
        };
        let ipv6 = match self.ipv6.as_mut() {
            Some(c) if has_ip6_addr => Self::filter_state(c, read_only),
            _ => BlackHoleState::Allowed,
        };
        let mut kept = Vec::with_capacity(addrs.len());
        let mut holed = Vec::new();
        for (a, public) in addrs.into_iter().zip(public) {
            let is_udp = has_udp(&a);
            let is_ip6 = has_ip6(&a);
            let keep = !public
                || (udp == BlackHoleState::Probing && is_udp)
                || (ipv6 == BlackHoleState::Probing && is_ip6)
                || !((udp == BlackHoleState::Blocked && is_udp)
                    || (ipv6 == BlackHoleState::Blocked && is_ip6));
            if keep {
                kept.push(a);
            } else {
                holed.push(a);
            }
        }
        (kept, holed)
    }

    /// Records the result of one dial of `addr` (public addresses only).
    pub fn record(&mut self, addr: &Multiaddr, success: bool) {
        if self.read_only || !is_public_addr(addr) {
            return;
        }
        if has_udp(addr) {
            if let Some(c) = self.udp.as_mut() {
                c.record(success);
            }
        }
        if has_ip6(addr) {
            if let Some(c) = self.ipv6.as_mut() {
                c.record(success);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_transitions() {
        let mut c = BlackHoleCounter::new(10, 2);
        for _ in 0..9 {
            c.record(false);
            assert_eq!(c.state(), BlackHoleState::Probing);
        }
        c.record(false);
        assert_eq!(c.state(), BlackHoleState::Blocked);
        // every 10th request is a probe
        let probes: Vec<usize> = (1..=30)
            .filter(|_| c.handle_request() == BlackHoleState::Probing)
            .collect();
        assert_eq!(probes.len(), 3);
        // success while blocked resets to probing
        c.record(true);
        assert_eq!(c.state(), BlackHoleState::Probing);
        for i in 0..10 {
            c.record(i < 2);
        }
        assert_eq!(c.state(), BlackHoleState::Allowed);
        assert_eq!(c.handle_request(), BlackHoleState::Allowed);
        // the window slides: the first success falls out after one more failure
        c.record(false);
        assert_eq!(c.state(), BlackHoleState::Blocked);
    }

    #[test]
    fn go_window_semantics() {
        // go: successes >= min over the last n results
        let mut c = BlackHoleCounter::new(BLACK_HOLE_WINDOW, BLACK_HOLE_MIN_SUCCESSES);
        for _ in 0..95 {
            c.record(false);
        }
        for _ in 0..5 {
            c.record(true);
        }
        assert_eq!(c.state(), BlackHoleState::Allowed);
        c.record(false); // oldest failure falls out, still 5 successes
        assert_eq!(c.state(), BlackHoleState::Allowed);
        for _ in 0..94 {
            c.record(false);
        }
        assert_eq!(
            c.state(),
            BlackHoleState::Allowed,
            "5 successes still in window"
        );
        c.record(false);
        assert_eq!(
            c.state(),
            BlackHoleState::Blocked,
            "first success left the window"
        );
    }

    #[test]
    fn detector_filters_public_only() {
        let mut d = BlackHoleDetector::new();
        let q: Multiaddr = "/ip4/1.2.3.4/udp/1/quic-v1".parse().unwrap();
        let q6: Multiaddr = "/ip6/2604::1/udp/1/quic-v1".parse().unwrap();
        let t6: Multiaddr = "/ip6/2604::1/tcp/1".parse().unwrap();
        let t: Multiaddr = "/ip4/1.2.3.4/tcp/1".parse().unwrap();
        let lan: Multiaddr = "/ip4/192.168.0.1/udp/1/quic-v1".parse().unwrap();
        let all = vec![q.clone(), q6.clone(), t6.clone(), t.clone(), lan.clone()];
        for _ in 0..100 {
            d.record(&q, false);
        }
        assert_eq!(d.udp.as_ref().unwrap().state(), BlackHoleState::Blocked);
        // IPv6 still probing (only 0 ip6 results): q6 is kept because IPv6 is probing
        let (kept, holed) = d.filter(all.clone());
        assert_eq!(holed, vec![q.clone()]);
        assert_eq!(kept, vec![q6.clone(), t6.clone(), t.clone(), lan.clone()]);
        // block IPv6 too
        for _ in 0..100 {
            d.record(&t6, false);
        }
        let (kept, holed) = d.filter(all.clone());
        assert_eq!(holed, vec![q.clone(), q6.clone(), t6.clone()]);
        assert_eq!(kept, vec![t.clone(), lan.clone()]);
        // private results are never recorded
        d.record(&lan, true);
        assert_eq!(d.udp.as_ref().unwrap().state(), BlackHoleState::Blocked);
        d.record(&q, true);
        assert_eq!(d.udp.as_ref().unwrap().state(), BlackHoleState::Probing);
    }
}
