//! Pings a peer over `/ipfs/ping/1.0.0` on tokio: `-d MULTIADDR` pings a remote peer,
//! no arguments pings a second host in the same process.

#[tokio::main]
async fn main() {
    let args = plait_tokio::demo::EchoArgs::parse(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("{e}\nusage: ping [-d MULTIADDR] [--insecure] [--seed N]");
        std::process::exit(2);
    });
    if let Err(e) = plait_tokio::demo::run_ping(plait_tokio::Tokio::current(), args, 3).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
