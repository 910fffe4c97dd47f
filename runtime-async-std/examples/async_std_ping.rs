//! Pings a peer over `/ipfs/ping/1.0.0` on async-std: `-d MULTIADDR` pings a remote peer,
//! no arguments pings a second host in the same process.

fn main() {
    let args =
        plait_async_std::demo::EchoArgs::parse(std::env::args().skip(1)).unwrap_or_else(|e| {
            eprintln!("{e}\nusage: ping [-d MULTIADDR] [--insecure] [--seed N]");
            std::process::exit(2);
        });
    if let Err(e) = async_std::task::block_on(plait_async_std::demo::run_ping(
        plait_async_std::AsyncStd,
        args,
        3,
    )) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
