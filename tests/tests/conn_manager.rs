//! The connection manager on virtual time (the simulator): above the high watermark it trims
//! to the low one as grace periods end, as go-libp2p's does; held above the high watermark by
//! protected peers it idles (no deadline at or before the last timeout's instant).

use std::time::Duration;

use plait_core::upgrade::Security;
use plait_tests::sim::{node_config, NetSim, NodeId};

const HIGH: usize = 20;
const LOW: usize = 10;
const GRACE: Duration = Duration::from_secs(20);
const DIALERS: usize = 30;

/// A listener with watermarks 20/10 and `DIALERS` nodes connected to it, spread over 3 s.
fn crowded(seed: u64) -> (NetSim, NodeId, Vec<NodeId>) {
    let mut sim = NetSim::new(seed);
    let mut config = node_config(1, Security::Noise);
    config.conn_manager.high_water = HIGH;
    config.conn_manager.low_water = LOW;
    config.conn_manager.grace_period = GRACE;
    let listener = sim.add_node(config);
    let addr = sim.listen(listener, 4001);
    let mut dialers = Vec::new();
    for i in 0..DIALERS {
        let node = sim.add_node(node_config(100 + i as u64, Security::Noise));
        sim.dial(node, addr.clone()).expect("dial");
        dialers.push(node);
        sim.run_for(Duration::from_millis(100));
    }
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.swarm(listener).num_established(),
        DIALERS,
        "all connected"
    );
    (sim, listener, dialers)
}

#[test]
fn trims_to_the_low_watermark_as_grace_periods_end() {
    let (mut sim, listener, _) = crowded(7);
    // Within their grace period nothing is trimmed.
    assert_eq!(sim.swarm(listener).num_established(), DIALERS);
    sim.run_for(GRACE + Duration::from_secs(5));
    let left = sim.swarm(listener).num_established();
    println!("[conn-manager] {DIALERS} connections, watermarks {HIGH}/{LOW}: {left} left after the grace period");
    assert_eq!(left, LOW, "trimmed to the low watermark");
}

#[test]
fn held_above_high_water_by_protected_peers_it_idles() {
    let (mut sim, listener, dialers) = crowded(8);
    for node in &dialers {
        let peer = sim.peer(*node);
        sim.swarm_mut(listener).protect(peer, true);
    }
    sim.run_for(GRACE + Duration::from_secs(5));
    assert_eq!(
        sim.swarm(listener).num_established(),
        DIALERS,
        "protected: none trimmed"
    );
    // After any timeout the next deadline is in the future, so a timer task cannot spin.
    let mut wakeups = 0;
    for _ in 0..100 {
        let now = sim.now();
        sim.swarm_mut(listener).handle_timeout(now);
        let next = sim.swarm(listener).poll_timeout();
        assert!(
            next.is_none_or(|t| t > now),
            "deadline {next:?} at or before {now:?}"
        );
        if next.is_some() {
            wakeups += 1;
        }
        sim.run_for(Duration::from_millis(100));
    }
    println!("[conn-manager] protected above high water: {wakeups} of 100 ticks had a future deadline, none a past one");
}
