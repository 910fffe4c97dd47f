//! Per-(peer, address) dial backoff (go-libp2p `DialBackoff`, swarm_dial.go).
//!
//! First failure: blocked for [`BACKOFF_BASE`]; each later failure with `tries` earlier
//! failures: `min(BACKOFF_BASE + BACKOFF_COEF * tries², BACKOFF_MAX)` (6 s, 9 s, 14 s, …).

use std::collections::BTreeMap;
use std::time::Duration;

use libp2p_identity::PeerId;

use crate::multiaddr::Multiaddr;
use crate::time::Instant;

/// Backoff after the first failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Multiplied by the square of the number of earlier failures.
pub const BACKOFF_COEF: Duration = Duration::from_secs(1);
/// Upper bound of one backoff period.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone)]
struct Entry {
    tries: u32,
    until: Instant,
}

/// The backoff table. Entries are cleared per peer when any connection to it is established.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    entries: BTreeMap<PeerId, BTreeMap<Vec<u8>, Entry>>,
}

/// `min(BACKOFF_BASE + BACKOFF_COEF * tries², BACKOFF_MAX)` without overflow.
fn period(tries: u32) -> Duration {
    let squared = u64::from(tries).saturating_mul(u64::from(tries));
    let extra = u32::try_from(squared)
        .ok()
        .and_then(|n| BACKOFF_COEF.checked_mul(n))
        .unwrap_or(BACKOFF_MAX);
    (BACKOFF_BASE.saturating_add(extra)).min(BACKOFF_MAX)
}

impl Backoff {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// True if dialing `addr` of `peer` must be skipped at `now`.
    pub fn is_backed_off(&self, now: Instant, peer: &PeerId, addr: &Multiaddr) -> bool {
        self.until(peer, addr).is_some_and(|until| now < until)
    }

    /// When the backoff of `addr` ends, if there is an entry.
    pub fn until(&self, peer: &PeerId, addr: &Multiaddr) -> Option<Instant> {
        self.entries
            .get(peer)
            .and_then(|m| m.get(addr.as_ref()))
            .map(|e| e.until)
    }

    /// Records a failed dial of `addr` at `now`.
    pub fn add(&mut self, now: Instant, peer: PeerId, addr: &Multiaddr) {
        let entry = self
            .entries
            .entry(peer)
            .or_default()
            .entry(addr.to_vec())
            .or_insert(Entry {
                tries: 0,
                until: now,
            });
        let backoff = if entry.tries == 0 {
            BACKOFF_BASE
        } else {
            period(entry.tries)
        };
        entry.until = now.checked_add(backoff).unwrap_or(now);
        entry.tries = entry.tries.saturating_add(1);
    }

    /// Forgets every entry of `peer` (a connection to it was established).
    pub fn clear(&mut self, peer: &PeerId) {
        self.entries.remove(peer);
    }

    /// Drops peers whose entries have all expired long enough ago that the next failure would
    /// start over anyway (go `cleanup`, run every [`BACKOFF_MAX`]).
    pub fn cleanup(&mut self, now: Instant) {
        self.entries.retain(|_, m| {
            m.values().any(|e| {
                e.until
                    .checked_add(period(e.tries))
                    .is_none_or(|end| now < end)
            })
        });
    }

    /// Number of peers with entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadratic_schedule_capped() {
        let t0 = plait_testkit::start();
        let peer = PeerId::random();
        let addr: Multiaddr = "/ip4/1.2.3.4/tcp/1".parse().unwrap();
        let mut b = Backoff::new();
        assert!(!b.is_backed_off(t0, &peer, &addr));
        let mut now = t0;
        let expected = [5u64, 6, 9, 14, 21, 30, 41, 54, 69, 86, 105];
        for secs in expected {
            b.add(now, peer, &addr);
            let until = b.until(&peer, &addr).unwrap();
            assert_eq!(until - now, Duration::from_secs(secs));
            assert!(b.is_backed_off(until - Duration::from_nanos(1), &peer, &addr));
            assert!(
                !b.is_backed_off(until, &peer, &addr),
                "expires exactly at until"
            );
            now = until;
        }
        for _ in 0..30 {
            b.add(now, peer, &addr);
        }
        assert_eq!(b.until(&peer, &addr).unwrap() - now, BACKOFF_MAX);
        b.clear(&peer);
        assert!(!b.is_backed_off(now, &peer, &addr));
        assert!(b.is_empty());
    }

    #[test]
    fn cleanup_drops_long_expired() {
        let t0 = plait_testkit::start();
        let peer = PeerId::random();
        let addr: Multiaddr = "/ip4/1.2.3.4/tcp/1".parse().unwrap();
        let mut b = Backoff::new();
        b.add(t0, peer, &addr); // tries 1, until t0+5
        b.cleanup(t0 + Duration::from_secs(10));
        assert_eq!(b.len(), 1, "until + period(1)=6 s not yet passed");
        b.cleanup(t0 + Duration::from_secs(11));
        assert!(b.is_empty());
    }
}
