//! Connection upgrade pipeline and swarm core, on the in-memory network (`plait_tests::sim`).

use std::time::Duration;

use plait_core::upgrade::Security;
use plait_tests::sim::{node_config, NetSim, ECHO};

const HELLO: &[u8] = b"Hello, world!\n";

fn pair(security: Security) -> (NetSim, usize, usize, plait_core::multiaddr::Multiaddr) {
    let mut sim = NetSim::new(1);
    let listener = sim.add_node(node_config(1, security));
    let dialer = sim.add_node(node_config(2, security));
    let addr = sim.listen(listener, 4001);
    (sim, listener, dialer, addr)
}

fn echo_once(security: Security) {
    let (mut sim, listener, dialer, addr) = pair(security);
    sim.nodes[listener].app.line_mode = true;
    let peer = sim.peer(listener);
    sim.swarm_mut(dialer).add_addresses(peer, [addr]);
    let req = sim.open_echo(dialer, peer, vec![ECHO], HELLO.to_vec());
    assert!(sim.run_until(|s| s.request(dialer, req).settled(), Duration::from_secs(5)));
    let r = sim.request(dialer, req);
    assert!(r.complete(), "{r:?}");
    assert_eq!(r.received, HELLO);
    assert_eq!(r.answers, 1);
    assert_eq!(sim.nodes[listener].app.inbound, 1);
}

#[test]
fn echo_noise() {
    echo_once(Security::Noise);
}

#[test]
fn echo_plaintext() {
    echo_once(Security::Plaintext);
}
