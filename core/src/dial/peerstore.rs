//! Address book with go-libp2p's TTL semantics (`pstoremem` memoryAddrBook).
//!
//! Addresses are keyed by peer; each has an expiry computed from `now + ttl` at insertion.
//! A trailing `/p2p/<id>` is stripped; an address naming another peer is dropped (go warns
//! "p2p address with a different peerId"). Time is an input: expired entries are invisible to
//! [`AddressBook::addrs`] and removed by [`AddressBook::remove_expired`].

use std::collections::BTreeMap;
use std::time::Duration;

use libp2p_identity::PeerId;

use crate::multiaddr::{split_p2p, Multiaddr};
use crate::time::Instant;

/// Default TTL of addresses (go `AddressTTL`).
pub const ADDRESS_TTL: Duration = Duration::from_secs(60 * 60);
/// Short-lived addresses, e.g. the good addresses of a dial (go `TempAddrTTL`).
pub const TEMP_ADDR_TTL: Duration = Duration::from_secs(2 * 60);
/// Addresses of a peer we were recently connected to (go `RecentlyConnectedAddrTTL`).
pub const RECENTLY_CONNECTED_ADDR_TTL: Duration = Duration::from_secs(30 * 60);
/// Our own addresses as observed by peers (go `OwnObservedAddrTTL`).
pub const OWN_OBSERVED_ADDR_TTL: Duration = Duration::from_secs(30 * 60);
/// Never expires (go `PermanentAddrTTL = math.MaxInt64`), e.g. bootstrap nodes.
pub const PERMANENT_ADDR_TTL: Duration = Duration::MAX;
/// Addresses of a connected peer; permanent but distinct from [`PERMANENT_ADDR_TTL`] so that
/// [`AddressBook::update_addrs`] can downgrade them on disconnect (go `ConnectedAddrTTL`).
pub const CONNECTED_ADDR_TTL: Duration = Duration::from_nanos(u64::MAX - 1);

/// Addresses kept per peer. Peers announce addresses (identify, DHT records) so the count is
/// peer-controlled; a dial uses at most 100 addresses (go `maximumResolvedAddresses`), so more
/// are never useful. When full, the entry expiring first is evicted if the new one outlives it,
/// otherwise the new address is ignored.
pub const MAX_ADDRS_PER_PEER: usize = 100;

#[derive(Debug, Clone)]
struct Entry {
    addr: Multiaddr,
    ttl: Duration,
    /// `None` = never expires.
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| now < e)
    }
}

/// Why an address was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejected {
    /// The address ends in `/p2p/<id>` of another peer.
    OtherPeer(PeerId),
    /// Only a `/p2p` component, nothing to dial.
    Empty,
    /// [`MAX_ADDRS_PER_PEER`] live addresses outlive this one.
    Full,
}

/// The address book.
#[derive(Debug, Clone, Default)]
pub struct AddressBook {
    peers: BTreeMap<PeerId, Vec<Entry>>,
}

fn expiry(now: Instant, ttl: Duration) -> Option<Instant> {
    now.checked_add(ttl)
}

impl AddressBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    fn normalize(peer: PeerId, addr: &Multiaddr) -> Result<Multiaddr, Rejected> {
        match split_p2p(addr) {
            (_, Some(other)) if other != peer => Err(Rejected::OtherPeer(other)),
            (a, _) if a.is_empty() => Err(Rejected::Empty),
            (a, _) => Ok(a),
        }
    }

    /// go `AddAddrs`: adds addresses or extends their expiry (a shorter TTL never shortens an
    /// existing entry). A zero TTL is a no-op. Returns the rejected addresses and why.
    pub fn add_addrs(
        &mut self,
        now: Instant,
        peer: PeerId,
        addrs: &[Multiaddr],
        ttl: Duration,
    ) -> Vec<(Multiaddr, Rejected)> {
        let mut rejected = Vec::new();
        if ttl.is_zero() {
            return rejected;
        }
        let new_exp = expiry(now, ttl);
        for a in addrs {
            let addr = match Self::normalize(peer, a) {
                Ok(addr) => addr,
                Err(e) => {
                    rejected.push((a.clone(), e));
                    continue;
                }
            };
            let entries = self.peers.entry(peer).or_default();
            if let Some(e) = entries.iter_mut().find(|e| e.addr == addr) {
                let later = match (e.expires, new_exp) {
                    (Some(old), Some(new)) => new > old || !e.live(now),
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if later {
                    e.expires = new_exp;
                    e.ttl = ttl;
                }
                continue;
            }
            if let Err(r) = Self::insert(entries, now, addr.clone(), ttl, new_exp) {
                rejected.push((a.clone(), r));
            }
        }
        rejected
    }

    fn insert(
        entries: &mut Vec<Entry>,
        now: Instant,
        addr: Multiaddr,
        ttl: Duration,
        expires: Option<Instant>,
    ) -> Result<(), Rejected> {
        entries.retain(|e| e.live(now));
        if entries.len() >= MAX_ADDRS_PER_PEER {
            // Evict the entry expiring first if the new one outlives it.
            let victim = entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.expires.map(|x| (x, i)))
                .min();
            match victim {
                Some((old, i)) if expires.is_none_or(|new| new > old) => {
                    entries.swap_remove(i);
                }
                _ => return Err(Rejected::Full),
            }
        }
        entries.push(Entry { addr, ttl, expires });
        Ok(())
    }

    /// go `SetAddrs`: sets the TTL of the addresses exactly (adding them if needed); a zero TTL
    /// deletes them.
    pub fn set_addrs(
        &mut self,
        now: Instant,
        peer: PeerId,
        addrs: &[Multiaddr],
        ttl: Duration,
    ) -> Vec<(Multiaddr, Rejected)> {
        let mut rejected = Vec::new();
        for a in addrs {
            let addr = match Self::normalize(peer, a) {
                Ok(addr) => addr,
                Err(e) => {
                    rejected.push((a.clone(), e));
                    continue;
                }
            };
            let entries = self.peers.entry(peer).or_default();
            let pos = entries.iter().position(|e| e.addr == addr);
            match (pos, ttl.is_zero()) {
                (Some(i), true) => {
                    entries.swap_remove(i);
                }
                (Some(i), false) => {
                    if let Some(e) = entries.get_mut(i) {
                        e.ttl = ttl;
                        e.expires = expiry(now, ttl);
                    }
                }
                (None, true) => {}
                (None, false) => {
                    if let Err(r) = Self::insert(entries, now, addr, ttl, expiry(now, ttl)) {
                        rejected.push((a.clone(), r));
                    }
                }
            }
        }
        if self.peers.get(&peer).is_some_and(|e| e.is_empty()) {
            self.peers.remove(&peer);
        }
        rejected
    }

    /// go `UpdateAddrs`: every address of `peer` stored with `old_ttl` gets `new_ttl`, its
    /// expiry recomputed from `now` (a zero `new_ttl` deletes it). Used to downgrade
    /// [`CONNECTED_ADDR_TTL`] to [`RECENTLY_CONNECTED_ADDR_TTL`] on disconnect.
    pub fn update_addrs(
        &mut self,
        now: Instant,
        peer: PeerId,
        old_ttl: Duration,
        new_ttl: Duration,
    ) {
        if let Some(entries) = self.peers.get_mut(&peer) {
            for e in entries.iter_mut().filter(|e| e.ttl == old_ttl) {
                e.ttl = new_ttl;
                e.expires = expiry(now, new_ttl);
            }
            entries.retain(|e| !e.ttl.is_zero() && e.live(now));
            if entries.is_empty() {
                self.peers.remove(&peer);
            }
        }
    }

    /// Live addresses of `peer`, in insertion order (without `/p2p`).
    pub fn addrs(&self, now: Instant, peer: &PeerId) -> Vec<Multiaddr> {
        self.peers
            .get(peer)
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e.live(now))
                    .map(|e| e.addr.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets every address of `peer`.
    pub fn clear_addrs(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// Peers with at least one live address.
    pub fn peers_with_addrs(&self, now: Instant) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(_, e)| e.iter().any(|e| e.live(now)))
            .map(|(p, _)| *p)
            .collect()
    }

    /// Drops expired entries (call now and then; lookups already ignore them).
    pub fn remove_expired(&mut self, now: Instant) {
        self.peers.retain(|_, entries| {
            entries.retain(|e| e.live(now));
            !entries.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multiaddr::Protocol;

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn ttl_expiry_and_extension() {
        let t0 = plait_testkit::start();
        let p = PeerId::random();
        let mut book = AddressBook::new();
        let a = ma("/ip4/1.2.3.4/tcp/1");
        let b = ma("/ip4/1.2.3.4/tcp/2");
        assert!(book
            .add_addrs(t0, p, std::slice::from_ref(&a), TEMP_ADDR_TTL)
            .is_empty());
        book.add_addrs(t0, p, std::slice::from_ref(&b), PERMANENT_ADDR_TTL);
        assert_eq!(book.addrs(t0, &p), vec![a.clone(), b.clone()]);
        let later = t0 + TEMP_ADDR_TTL;
        assert_eq!(
            book.addrs(later, &p),
            vec![b.clone()],
            "expires at now + ttl"
        );
        // A shorter TTL does not shorten; a longer one extends.
        book.add_addrs(t0, p, std::slice::from_ref(&a), ADDRESS_TTL);
        book.add_addrs(t0, p, std::slice::from_ref(&a), TEMP_ADDR_TTL);
        assert_eq!(book.addrs(later, &p), vec![a.clone(), b.clone()]);
        // set_addrs sets exactly; zero deletes
        book.set_addrs(t0, p, std::slice::from_ref(&a), TEMP_ADDR_TTL);
        assert_eq!(book.addrs(later, &p), vec![b.clone()]);
        book.set_addrs(t0, p, std::slice::from_ref(&b), Duration::ZERO);
        assert_eq!(book.addrs(t0, &p), vec![a.clone()]);
        book.remove_expired(later);
        assert!(book.peers_with_addrs(later).is_empty());
        // permanent survives far future
        book.add_addrs(t0, p, std::slice::from_ref(&b), PERMANENT_ADDR_TTL);
        let far = t0 + Duration::from_secs(10 * 365 * 24 * 3600);
        assert_eq!(book.addrs(far, &p), vec![b.clone()]);
    }

    #[test]
    fn connected_downgrade() {
        let t0 = plait_testkit::start();
        let p = PeerId::random();
        let mut book = AddressBook::new();
        let a = ma("/ip4/1.2.3.4/tcp/1");
        let perm = ma("/ip4/1.2.3.4/tcp/2");
        book.add_addrs(t0, p, std::slice::from_ref(&a), CONNECTED_ADDR_TTL);
        book.add_addrs(t0, p, std::slice::from_ref(&perm), PERMANENT_ADDR_TTL);
        book.update_addrs(t0, p, CONNECTED_ADDR_TTL, RECENTLY_CONNECTED_ADDR_TTL);
        let t1 = t0 + RECENTLY_CONNECTED_ADDR_TTL;
        assert_eq!(book.addrs(t1, &p), vec![perm]);
    }

    #[test]
    fn p2p_suffix_handling() {
        let t0 = plait_testkit::start();
        let (p, q) = (PeerId::random(), PeerId::random());
        let mut book = AddressBook::new();
        let a = ma("/ip4/1.2.3.4/tcp/1");
        let own = a.clone().with(Protocol::P2p(p));
        let other = a.clone().with(Protocol::P2p(q));
        let bare = Multiaddr::empty().with(Protocol::P2p(p));
        let rejected = book.add_addrs(t0, p, &[own, other.clone(), bare.clone()], ADDRESS_TTL);
        assert_eq!(
            rejected,
            vec![(other, Rejected::OtherPeer(q)), (bare, Rejected::Empty)]
        );
        assert_eq!(book.addrs(t0, &p), vec![a]);
    }

    #[test]
    fn bounded_per_peer() {
        let t0 = plait_testkit::start();
        let p = PeerId::random();
        let mut book = AddressBook::new();
        let addrs: Vec<Multiaddr> = (0..MAX_ADDRS_PER_PEER as u16 + 10)
            .map(|i| ma(&format!("/ip4/1.2.3.4/tcp/{i}")))
            .collect();
        let rejected = book.add_addrs(t0, p, &addrs, ADDRESS_TTL);
        assert_eq!(rejected.len(), 10);
        assert!(rejected.iter().all(|(_, r)| *r == Rejected::Full));
        assert_eq!(book.addrs(t0, &p).len(), MAX_ADDRS_PER_PEER);
        // A longer-lived address evicts the one expiring first.
        let new = ma("/ip4/5.6.7.8/tcp/1");
        assert!(book
            .add_addrs(
                t0 + Duration::from_secs(1),
                p,
                std::slice::from_ref(&new),
                ADDRESS_TTL
            )
            .is_empty());
        let now = book.addrs(t0, &p);
        assert_eq!(now.len(), MAX_ADDRS_PER_PEER);
        assert!(now.contains(&new));
    }
}
