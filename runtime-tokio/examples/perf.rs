//! The libp2p test-plans perf binary on tokio (`/perf/1.0.0`; see
//! `plait_driver::perf::runner` for the whole contract):
//!
//! ```text
//! perf --run-server --server-address 0.0.0.0:4001 [--fixed-identity] [--insecure]
//! perf --server-address IP:PORT --transport tcp --upload-bytes N --download-bytes N
//! perf [--upload-bytes N] [--download-bytes N]     server and client in one process
//! ```
//!
//! Measurements are JSON lines on stdout; logs (`RUST_LOG`) and messages go to stderr.

use plait_driver::perf::runner::{run_cli, PerfArgs};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = PerfArgs::parse(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!(
            "{e}\nusage: perf [--run-server] [--server-address IP:PORT|MULTIADDR] \
             [--transport tcp] [--upload-bytes N] [--download-bytes N] [--insecure] \
             [--fixed-identity]"
        );
        std::process::exit(2);
    });
    let result = run_cli(plait_tokio::Tokio::current(), args, |line| {
        println!("{line}")
    })
    .await;
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
