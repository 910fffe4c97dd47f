//! Runs the custom event loop of `examples/custom_event_loop.rs`: the core driven by
//! non-blocking `std::net` sockets from one thread, no async runtime.

use plait_core::upgrade::Security;
use plait_tests::custom_loop::run_echo;

#[test]
fn echo_over_noise_in_a_plain_poll_loop() {
    assert_eq!(
        run_echo("Hello, world!\n", Security::Noise).unwrap(),
        "Hello, world!\n"
    );
}

#[test]
fn echo_over_plaintext_in_a_plain_poll_loop() {
    assert_eq!(run_echo("plain\n", Security::Plaintext).unwrap(), "plain\n");
}
