//! Pings a peer over `/ipfs/ping/1.0.0` on smol: `-d MULTIADDR` pings a remote peer,
//! no arguments pings a second host in the same process.

fn main() {
    let args = plait_smol::demo::EchoArgs::parse(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("{e}\nusage: ping [-d MULTIADDR] [--insecure] [--seed N]");
        std::process::exit(2);
    });
    if let Err(e) = smol::block_on(plait_smol::demo::run_ping(plait_smol::Smol, args, 3)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
