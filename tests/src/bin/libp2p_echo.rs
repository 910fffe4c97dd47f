//! `libp2p_echo`: a **test peer** built on rust-libp2p, mirroring the flags of go-libp2p's echo
//! example. It exists so Plait's interop tests (and humans) have a known-good libp2p peer to run
//! against; it is not part of Plait.
//!
//! ```text
//! libp2p_echo -l PORT [--host IP] [--insecure] [--seed N]
//!     Listen on /ip4/IP/tcp/PORT (IP default 127.0.0.1; PORT 0: any free port), print the full
//!     address `/ip4/IP/tcp/PORT/p2p/PEERID` as the first line of stdout, and serve
//!     /echo/1.0.0 (one line back, then close) and /plait-test/echo-all/1.0.0 until killed.
//! libp2p_echo -d MULTIADDR [--insecure] [--seed N]
//!     Dial MULTIADDR (it must end in /p2p/PEERID), open /echo/1.0.0, send "Hello, world!\n",
//!     close the write side, read the reply until EOF and print it to stdout verbatim. Exit code 1
//!     on any failure.
//! ```
//!
//! `-l` and `-d` can be combined (listen, then dial). `--insecure` uses `/plaintext/2.0.0` instead
//! of Noise. `--seed N` (1..=255) gives a deterministic Ed25519 identity (secret key
//! `[N, 0, …, 0]`); 0 or no seed means a random identity, as in the go example. Diagnostics go to
//! stderr.

use std::{io::Write as _, process::ExitCode};

use libp2p::{multiaddr::Protocol, Multiaddr};
use plait_tests::libp2p_peer::{Libp2pPeer, PeerConfig};

const USAGE: &str =
    "usage: libp2p_echo [-l PORT] [--host IP] [-d MULTIADDR] [--insecure] [--seed N]  \
                     (test peer; see the source's docs)";

struct Args {
    listen: Option<u16>,
    host: std::net::Ipv4Addr,
    dial: Option<Multiaddr>,
    insecure: bool,
    seed: u8,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: None,
        host: std::net::Ipv4Addr::LOCALHOST,
        dial: None,
        insecure: false,
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-l" | "--listen" => {
                let v = value("-l")?;
                args.listen = Some(v.parse().map_err(|e| format!("bad port {v:?}: {e}"))?);
            }
            "--host" => {
                let v = value("--host")?;
                args.host = v
                    .parse()
                    .map_err(|e| format!("bad IPv4 address {v:?}: {e}"))?;
            }
            "-d" | "--dial" => {
                let v = value("-d")?;
                args.dial = Some(v.parse().map_err(|e| format!("bad multiaddr {v:?}: {e}"))?);
            }
            "--insecure" | "-insecure" => args.insecure = true,
            "--seed" | "-seed" => {
                let v = value("--seed")?;
                args.seed = v
                    .parse()
                    .map_err(|e| format!("bad seed {v:?} (0..=255): {e}"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.listen.is_none() && args.dial.is_none() {
        return Err(format!("need -l or -d\n{USAGE}"));
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let peer = Libp2pPeer::spawn(PeerConfig {
        seed: (args.seed != 0).then_some(args.seed),
        insecure: args.insecure,
        echo: true,
        listen_port: args.listen,
        listen_host: args.host,
        ..PeerConfig::default()
    })
    .await;

    if args.listen.is_some() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", peer.listen_addr());
        let _ = out.flush();
        eprintln!(
            "test peer {} listening; serving /echo/1.0.0",
            peer.peer_id()
        );
    }

    let Some(addr) = args.dial else {
        // Listen only: serve until killed.
        std::future::pending::<()>().await;
        return ExitCode::SUCCESS;
    };
    let Some(Protocol::P2p(remote)) = addr.iter().last() else {
        eprintln!("-d address must end in /p2p/PEERID");
        return ExitCode::from(2);
    };
    let code = match peer.echo(remote, Some(addr), b"Hello, world!\n").await {
        Ok(reply) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&reply);
            let _ = out.flush();
            eprintln!("read reply: {:?}", String::from_utf8_lossy(&reply));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo failed: {e}");
            ExitCode::FAILURE
        }
    };
    peer.shutdown().await;
    code
}
