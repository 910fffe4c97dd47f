//! `echo_host`: Plait's echo demo (`plait_driver::demo`, what the runtime crates' `echo`
//! examples run) on a runtime chosen on the command line, for tests that need a Plait host in a
//! child process (for example one with a small descriptor table).
//!
//! ```text
//! echo_host tokio|smol|async-std [-l PORT | -d MULTIADDR] [--insecure] [--seed N]
//! ```

use plait_driver::demo::{run, EchoArgs};

fn main() {
    let mut args = std::env::args().skip(1);
    let runtime = args.next().unwrap_or_default();
    let args = EchoArgs::parse(args).unwrap_or_else(|e| {
        eprintln!("{e}\nusage: echo_host tokio|smol|async-std [echo options]");
        std::process::exit(2);
    });
    let result = match runtime.as_str() {
        "tokio" => {
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            rt.block_on(run(plait_tokio::Tokio::new(rt.handle().clone()), args))
        }
        "smol" => smol::block_on(run(plait_smol::Smol, args)),
        "async-std" => async_std::task::block_on(run(plait_async_std::AsyncStd, args)),
        other => {
            eprintln!("unknown runtime {other:?}: tokio, smol or async-std");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
