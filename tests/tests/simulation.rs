//! A deterministic many-node simulation: 200+ swarms on a seeded random topology with
//! per-link latency, connection drops, peers joining and leaving, every host streaming echo
//! data to some others. Checks the swarm's invariants and that a seed replays exactly.

use std::time::{Duration, Instant as WallClock};

use plait_core::swarm::Event;
use plait_core::upgrade::Security;
use plait_tests::sim::{node_config, NetSim, NodeId, Rng, ECHO};

const NODES: usize = 200;
const KNOWN_PEERS: usize = 4;
const RUN: Duration = Duration::from_secs(20);
const TICK: Duration = Duration::from_millis(50);

struct Outcome {
    hash: u64,
    events: u64,
    requests: usize,
    complete: usize,
}

fn join(sim: &mut NetSim, rng: &mut Rng, seed: u64) -> NodeId {
    // Noise, as real hosts use: the crypto crates are compiled optimised in the dev profile
    // (root Cargo.toml), so ~1000 handshakes cost well under a second.
    let node = sim.add_node(node_config(1000 + seed, Security::Noise));
    sim.listen(node, 4001);
    let alive: Vec<NodeId> = (0..node).filter(|n| sim.nodes[*n].alive).collect();
    for _ in 0..KNOWN_PEERS.min(alive.len()) {
        let other = alive[rng.range(0, alive.len() as u64 - 1) as usize];
        let latency = Duration::from_millis(rng.range(1, 150));
        sim.set_latency(node, other, latency);
        // Both learn of each other.
        let (pa, pb) = (sim.peer(node), sim.peer(other));
        let (aa, ab) = (sim.listen_addrs_of(node), sim.listen_addrs_of(other));
        sim.add_addresses(node, pb, [ab]);
        sim.add_addresses(other, pa, [aa]);
        sim.nodes[node].app.known.push(other);
        sim.nodes[other].app.known.push(node);
    }
    node
}

fn run(seed: u64) -> Outcome {
    let started = WallClock::now();
    let mut sim = NetSim::new(seed);
    sim.default_latency = Duration::from_millis(20);
    sim.max_chunk = Some(1400);
    let mut rng = Rng::new(seed ^ 0xABCD);
    for i in 0..NODES {
        join(&mut sim, &mut rng, i as u64);
    }
    let mut requests: Vec<(NodeId, plait_core::swarm::StreamRequestId)> = Vec::new();
    let mut left = 0;
    let mut joined = 0;
    let mut cuts = 0;
    while sim.elapsed() < RUN {
        let until = sim.elapsed() + TICK;
        sim.run_for(TICK);
        assert_eq!(sim.elapsed(), until);
        // A few hosts each open an echo stream to one of the peers they know.
        for _ in 0..rng.range(0, 12) {
            let node = rng.range(0, sim.nodes.len() as u64 - 1) as usize;
            if !sim.nodes[node].alive || sim.nodes[node].app.known.is_empty() {
                continue;
            }
            let known = &sim.nodes[node].app.known;
            let to = known[rng.range(0, known.len() as u64 - 1) as usize];
            let peer = sim.peer(to);
            let len = rng.range(0, 6000) as usize;
            let payload = rng.bytes(len);
            requests.push((node, sim.open_echo(node, peer, vec![ECHO], payload)));
        }
        // Connection drops.
        if rng.chance(0.15) {
            let links = sim.open_links();
            if !links.is_empty() {
                let link = links[rng.range(0, links.len() as u64 - 1) as usize];
                sim.cut(link);
                cuts += 1;
            }
        }
        // Graceful closes.
        if rng.chance(0.1) {
            let node = rng.range(0, sim.nodes.len() as u64 - 1) as usize;
            if sim.nodes[node].alive {
                let now = sim.now();
                let known = sim.nodes[node].app.known.clone();
                for other in known {
                    let peer = sim.peer(other);
                    for c in sim.swarm(node).connections_to(peer).to_vec() {
                        sim.swarm_mut(node).close_connection(now, c);
                    }
                }
                sim.pump();
            }
        }
        // Peers leave and join.
        if rng.chance(0.05) && left < 20 {
            let node = rng.range(0, sim.nodes.len() as u64 - 1) as usize;
            if sim.nodes[node].alive {
                sim.remove_node(node);
                left += 1;
            }
        }
        if rng.chance(0.05) {
            let n = sim.nodes.len() as u64;
            join(&mut sim, &mut rng, n);
            joined += 1;
        }
    }
    // Let everything finish.
    let settled = sim.run_until(
        |s| {
            requests
                .iter()
                .all(|(n, r)| !s.nodes[*n].alive || s.request(*n, *r).settled())
        },
        RUN + Duration::from_secs(120),
    );
    assert!(settled, "every request settles");
    // Background protocols (identify on every new connection) finish too: within the 30 s
    // after which a built-in service gives up on a silent peer.
    sim.run_for(Duration::from_secs(35));

    // Every request answered exactly once; bytes echoed once and in order.
    let mut complete = 0;
    let mut checked = 0;
    for (n, r) in &requests {
        if !sim.nodes[*n].alive {
            continue;
        }
        checked += 1;
        let r = sim.request(*n, *r);
        assert_eq!(r.answers, 1, "{r:?}");
        assert!(
            r.payload.starts_with(&r.received),
            "echo is a prefix of what was sent"
        );
        if r.complete() {
            complete += 1;
        } else {
            assert!(r.failed.is_some() || r.reset, "{r:?}");
        }
    }
    assert!(
        complete * 10 >= checked * 7,
        "most echoes complete: {complete}/{checked}"
    );
    // Ended connections left nothing behind; streams all ended.
    for (i, node) in sim.nodes.iter().enumerate() {
        if !node.alive {
            continue;
        }
        assert_eq!(node.swarm.num_streams(), 0, "node {i} streams");
        for (_, e) in &node.events {
            if let Event::Disconnected { connection, .. }
            | Event::ConnectionFailed { connection, .. } = e
            {
                assert_eq!(node.swarm.connection_peer(*connection), None);
            }
        }
    }
    // Closing everything leaves no state.
    let now = sim.now();
    for node in 0..sim.nodes.len() {
        if !sim.nodes[node].alive {
            continue;
        }
        let peers: Vec<_> = sim.nodes[node].app.known.clone();
        for other in peers {
            let peer = sim.peer(other);
            for c in sim.swarm(node).connections_to(peer).to_vec() {
                sim.swarm_mut(node).close_connection(now, c);
            }
        }
    }
    sim.pump();
    // Inbound connections from peers a node does not know are closed by the other side.
    sim.run_idle(sim.elapsed() + Duration::from_secs(60));
    for (i, node) in sim.nodes.iter().enumerate() {
        if node.alive {
            assert_eq!(node.swarm.num_connections(), 0, "node {i} connections");
            assert_eq!(node.swarm.num_streams(), 0, "node {i} streams");
        }
    }
    println!(
        "seed {seed}: {} links, {} nodes ({joined} joined, {left} left), {cuts} cuts, {checked} requests, \
         {complete} echoed, {} events, {:?} virtual, {:?} wall",
        sim.links().len(),
        sim.nodes.len(),
        sim.num_events,
        sim.elapsed(),
        started.elapsed()
    );
    Outcome {
        hash: sim.log_hash(),
        events: sim.num_events,
        requests: checked,
        complete,
    }
}

#[test]
fn many_nodes_same_seed_same_run() {
    let a = run(7);
    let b = run(7);
    assert_eq!(
        (a.hash, a.events),
        (b.hash, b.events),
        "same seed, same run"
    );
    assert!(a.requests > 1000 && a.complete > 0);
}
