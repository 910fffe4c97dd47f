//! The core embedded without any async runtime: two hosts, each a `Coordinator` with one
//! `ConnectionTask` per connection, non-blocking `std::net` sockets and a single-threaded poll
//! loop that routes the machines' messages run go's echo protocol (the loop is
//! `plait_tests::custom_loop`, shared with the test that runs it).
//!
//! `cargo run -p plait-tests --example custom_event_loop [-- --insecure]`

use plait_core::upgrade::Security;

fn main() {
    let security = if std::env::args().any(|a| a == "--insecure") {
        Security::Plaintext
    } else {
        Security::Noise
    };
    match plait_tests::custom_loop::run_echo("Hello, world!\n", security) {
        Ok(reply) => println!("read reply: {reply:?}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
