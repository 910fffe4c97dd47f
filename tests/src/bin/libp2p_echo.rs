//! `libp2p_echo`: a **test peer** built on rust-libp2p, mirroring the flags of go-libp2p's echo
//! example. It exists so Plait's interop tests (and humans) have a known-good libp2p peer to run
//! against; it is not part of Plait.
//!
//! ```text
//! libp2p_echo -l PORT [--host IP] [--insecure] [--seed N] [--perf]
//!     Listen on /ip4/IP/tcp/PORT (IP default 127.0.0.1; PORT 0: any free port), print the full
//!     address `/ip4/IP/tcp/PORT/p2p/PEERID` as the first line of stdout, and serve
//!     /echo/1.0.0 (one line back, then close) and /plait-test/echo-all/1.0.0 until killed;
//!     with --perf also /perf/1.0.0 (the perf spec's server, 64 KiB writes).
//! libp2p_echo -d MULTIADDR [--insecure] [--seed N]
//!     Dial MULTIADDR (it must end in /p2p/PEERID), open /echo/1.0.0, send "Hello, world!\n",
//!     close the write side, read the reply until EOF and print it to stdout verbatim. Exit code 1
//!     on any failure.
//! libp2p_echo --perf-client MULTIADDR --upload-bytes N --download-bytes N [--insecure] [--seed N]
//!     Dial MULTIADDR (ending in /p2p/PEERID), run one /perf/1.0.0 client run (upload N bytes,
//!     then download N bytes; 64 KiB writes) and print `UPLOAD_SECONDS DOWNLOAD_SECONDS` on
//!     stdout: upload from after the 8-byte header to the write side's close, download from
//!     there to the server's EOF. Exit code 1 on any failure, including a short download.
//! ```
//!
//! `-l` and `-d` can be combined (listen, then dial). `--insecure` uses `/plaintext/2.0.0` instead
//! of Noise. `--seed N` (1..=255) gives a deterministic Ed25519 identity (secret key
//! `[N, 0, …, 0]`); 0 or no seed means a random identity, as in the go example. Diagnostics go to
//! stderr.

use std::{io::Write as _, process::ExitCode};

use libp2p::{multiaddr::Protocol, Multiaddr};
use plait_tests::libp2p_peer::{Libp2pPeer, PeerConfig, PerfTimes};

const USAGE: &str = "usage: libp2p_echo [-l PORT] [--host IP] [-d MULTIADDR] [--insecure] \
                     [--seed N] [--perf] [--perf-client MULTIADDR --upload-bytes N \
                     --download-bytes N]  (test peer; see the source's docs)";

struct Args {
    listen: Option<u16>,
    host: std::net::Ipv4Addr,
    dial: Option<Multiaddr>,
    insecure: bool,
    seed: u8,
    perf: bool,
    perf_client: Option<Multiaddr>,
    upload_bytes: u64,
    download_bytes: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: None,
        host: std::net::Ipv4Addr::LOCALHOST,
        dial: None,
        insecure: false,
        seed: 0,
        perf: false,
        perf_client: None,
        upload_bytes: 0,
        download_bytes: 0,
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
            "--perf" => args.perf = true,
            "--perf-client" => {
                let v = value("--perf-client")?;
                args.perf_client =
                    Some(v.parse().map_err(|e| format!("bad multiaddr {v:?}: {e}"))?);
            }
            "--upload-bytes" | "--download-bytes" => {
                let v = value(&arg)?;
                let n = v.parse().map_err(|e| format!("bad {arg} {v:?}: {e}"))?;
                if arg == "--upload-bytes" {
                    args.upload_bytes = n;
                } else {
                    args.download_bytes = n;
                }
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.listen.is_none() && args.dial.is_none() && args.perf_client.is_none() {
        return Err(format!("need -l, -d or --perf-client\n{USAGE}"));
    }
    if args.perf_client.is_some() && (args.listen.is_some() || args.dial.is_some()) {
        return Err(format!("--perf-client goes alone (no -l, no -d)\n{USAGE}"));
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
        perf: args.perf,
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

    if let Some(addr) = args.perf_client {
        let code = match perf_client(&peer, addr, args.upload_bytes, args.download_bytes).await {
            Ok(t) => {
                println!(
                    "{:.6} {:.6}",
                    t.upload.as_secs_f64(),
                    t.download.as_secs_f64()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("perf failed: {e}");
                ExitCode::FAILURE
            }
        };
        peer.shutdown().await;
        return code;
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

/// Dials `addr` (it must end in `/p2p/PEERID`) and runs one perf client run.
async fn perf_client(
    peer: &Libp2pPeer,
    addr: Multiaddr,
    upload: u64,
    download: u64,
) -> Result<PerfTimes, String> {
    let Some(Protocol::P2p(remote)) = addr.iter().last() else {
        return Err("--perf-client address must end in /p2p/PEERID".into());
    };
    let got = peer.dial(addr).await?;
    if got != remote {
        return Err(format!("dialed {got}, expected {remote}"));
    }
    peer.perf(remote, upload, download).await
}
