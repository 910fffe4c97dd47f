//! go-libp2p's echo example on async-std. Run with no arguments for both peers in one process;
//! `-l PORT` to listen, `-d MULTIADDR` to dial, `--insecure`, `--seed N`; `RUST_LOG=debug`
//! shows what the host does.

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = match plait_async_std::demo::EchoArgs::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}\nusage: echo [-l PORT | -d MULTIADDR] [--insecure] [--seed N]");
            std::process::exit(2);
        }
    };
    if let Err(e) =
        async_std::task::block_on(plait_async_std::demo::run(plait_async_std::AsyncStd, args))
    {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
