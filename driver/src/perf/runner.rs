//! The libp2p test-plans perf runner contract (`perf/README.md`; digest `specs/perf.md` §4),
//! shared by the runtime crates' `perf` examples.
//!
//! ```text
//! perf --run-server --server-address 0.0.0.0:4001          serve until killed
//! perf --server-address 10.0.0.1:4001 --transport tcp \
//!      --upload-bytes N --download-bytes N                  one run, JSON lines on stdout
//! perf [--upload-bytes N] [--download-bytes N]              server and client in one process
//! options: --insecure            /plaintext/2.0.0 instead of Noise (both sides must agree)
//!          --fixed-identity      server: use the zero-seed Ed25519 identity go's perf client
//!                                dials (FIXED_PEER_ID); client: require the server to have it
//! ```
//!
//! `--server-address` takes `IP:PORT` (dialed without a peer id: Plait's host accepts
//! whichever identity the server proves, as rust-libp2p's perf client does) or a multiaddr
//! such as `/ip4/10.0.0.1/tcp/4001/p2p/12D3KooW…`, whose identity is then checked. Only
//! `--transport tcp` exists (TCP + Noise or plaintext + yamux; no QUIC, no TLS).
//!
//! The client prints one `{"type":"intermediary",…}` line per progress report (about every
//! second: `timeSeconds` is the interval, the byte fields what moved in it) and one
//! `{"type":"final",…}` line at the end (`timeSeconds` from before the dial to the end of the
//! run, the byte fields the requested amounts), camelCase as go and the README spell them.
//! Everything else goes to stderr, including one [`report_line`] per client run (the upload
//! and download phases in seconds, as go's and rust-libp2p's perf clients time them).

use std::net::SocketAddr;
use std::time::Duration;

use plait_core::identity::{keypair_from_seed, PeerId};
use plait_core::multiaddr::{split_p2p, Multiaddr, Protocol};
use plait_core::upgrade::Security;

use crate::{socket_to_multiaddr, Error, Host, HostConfig, HostEvent, Runtime};

/// The peer id of the identity `--fixed-identity` selects: Ed25519 from the all-zero 32-byte
/// seed, hard-coded in test-plans' go-libp2p perf client.
pub const FIXED_PEER_ID: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

/// Upload and download of the in-process mode when not given: 100 MiB each.
pub const DEFAULT_LOCAL_BYTES: u64 = 100 << 20;

/// What the perf example was asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PerfArgs {
    /// `--run-server`: serve perf on `server_address` until killed.
    pub run_server: bool,
    /// `--server-address`: where to listen (server) or what to dial (client).
    pub server_address: Option<Multiaddr>,
    /// `--upload-bytes`.
    pub upload_bytes: Option<u64>,
    /// `--download-bytes`.
    pub download_bytes: Option<u64>,
    /// `--insecure`: plaintext instead of Noise.
    pub insecure: bool,
    /// `--fixed-identity`: see [`FIXED_PEER_ID`].
    pub fixed_identity: bool,
}

/// The all-zero-seed Ed25519 identity behind [`FIXED_PEER_ID`]. Its secret is public
/// knowledge: for benchmarks only.
pub fn fixed_keypair() -> plait_core::identity::Keypair {
    keypair_from_seed(0)
}

impl PerfArgs {
    /// Parses command-line arguments (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut parsed = Self::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            let bytes = |name: &str, v: String| -> Result<Option<u64>, String> {
                v.parse().map(Some).map_err(|e| format!("{name}: {e}"))
            };
            match arg.as_str() {
                "--run-server" => parsed.run_server = true,
                "--server-address" => {
                    parsed.server_address = Some(parse_address(&value("--server-address")?)?)
                }
                "--transport" => match value("--transport")?.as_str() {
                    "tcp" => {}
                    other => return Err(format!("--transport {other}: only tcp is supported")),
                },
                "--upload-bytes" => {
                    parsed.upload_bytes = bytes("--upload-bytes", value("--upload-bytes")?)?
                }
                "--download-bytes" => {
                    parsed.download_bytes = bytes("--download-bytes", value("--download-bytes")?)?
                }
                "--insecure" => parsed.insecure = true,
                "--fixed-identity" => parsed.fixed_identity = true,
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if parsed.run_server && parsed.server_address.is_none() {
            return Err("--run-server needs --server-address IP:PORT".into());
        }
        Ok(parsed)
    }

    fn config(&self, keypair: Option<plait_core::identity::Keypair>) -> HostConfig {
        let config = match keypair {
            Some(k) => HostConfig::new(k),
            None => HostConfig::random(),
        };
        config.with_security(if self.insecure {
            Security::Plaintext
        } else {
            Security::Noise
        })
    }

    fn server_config(&self) -> HostConfig {
        let mut config = self.config(self.fixed_identity.then(fixed_keypair));
        config.perf = true;
        config
    }
}

/// `IP:PORT` as `/ip4|ip6/IP/tcp/PORT`, or a multiaddr as it is.
fn parse_address(text: &str) -> Result<Multiaddr, String> {
    if text.starts_with('/') {
        return text
            .parse()
            .map_err(|e| format!("--server-address {text}: {e}"));
    }
    text.parse::<SocketAddr>()
        .map(socket_to_multiaddr)
        .map_err(|e| format!("--server-address {text}: expected IP:PORT: {e}"))
}

/// One measurement line of the runner's output.
pub fn json_line(kind: &str, time: Duration, upload_bytes: u64, download_bytes: u64) -> String {
    format!(
        "{{\"type\":\"{kind}\",\"timeSeconds\":{},\"uploadBytes\":{upload_bytes},\"downloadBytes\":{download_bytes}}}",
        time.as_secs_f64()
    )
}

/// Runs the perf example as `args` say. Measurement lines go to `emit` (the examples print
/// them on stdout); everything else to stderr. With `--run-server` this only returns on
/// error.
pub async fn run_cli<R: Runtime>(
    runtime: R,
    args: PerfArgs,
    mut emit: impl FnMut(&str),
) -> Result<(), Error> {
    let upload = args.upload_bytes.unwrap_or(0);
    let download = args.download_bytes.unwrap_or(0);
    match args.server_address.clone() {
        Some(addr) if args.run_server => {
            let host = Host::new(runtime, args.server_config())?;
            host.listen(addr).await?;
            for addr in host.listen_addrs() {
                eprintln!("perf server listening on {addr}");
            }
            loop {
                if let HostEvent::AcceptFailed {
                    addr,
                    error,
                    retry_in,
                    ..
                } = host.next_event().await
                {
                    eprintln!("accepting on {addr} failed: {error:?}; retrying in {retry_in:?}");
                }
            }
        }
        Some(addr) => {
            let host = Host::new(runtime.clone(), args.config(None))?;
            let addr = if args.fixed_identity && split_p2p(&addr).1.is_none() {
                let peer: PeerId = FIXED_PEER_ID
                    .parse()
                    .map_err(|_| Error::Config("fixed peer id".into()))?;
                addr.with(Protocol::P2p(peer))
            } else {
                addr
            };
            let report = client(&runtime, &host, addr, upload, download, &mut emit).await?;
            eprintln!("{}", report_line(&report));
            host.close();
            Ok(())
        }
        None => {
            let server = Host::new(runtime.clone(), args.server_config())?;
            server
                .listen("/ip4/127.0.0.1/tcp/0".parse().map_err(|_| Error::Closed)?)
                .await?;
            let addr = server
                .listen_addrs()
                .into_iter()
                .next()
                .ok_or(Error::Closed)?;
            eprintln!("perf server listening on {addr}");
            let host = Host::new(runtime.clone(), args.config(None))?;
            let upload = args.upload_bytes.unwrap_or(DEFAULT_LOCAL_BYTES);
            let download = args.download_bytes.unwrap_or(DEFAULT_LOCAL_BYTES);
            let report = client(&runtime, &host, addr, upload, download, &mut emit).await?;
            eprintln!("{}", report_line(&report));
            host.close();
            server.close();
            Ok(())
        }
    }
}

/// A client run's phases for humans and scripts, e.g. `upload 1024 bytes in 0.001500 s
/// (0.01 Gbit/s), download 0 bytes in 0.000200 s (0.00 Gbit/s)`: upload from after the header
/// to the half-close, download from there to the server's end of stream.
pub fn report_line(report: &super::PerfReport) -> String {
    let rate = |bytes: u64, time: Duration| bytes as f64 * 8.0 / time.as_secs_f64().max(1e-9) / 1e9;
    format!(
        "upload {} bytes in {:.6} s ({:.2} Gbit/s), download {} bytes in {:.6} s ({:.2} Gbit/s)",
        report.uploaded,
        report.upload.as_secs_f64(),
        rate(report.uploaded, report.upload),
        report.downloaded,
        report.download.as_secs_f64(),
        rate(report.downloaded, report.download),
    )
}

/// Dials `addr`, runs once, emits the runner's lines.
async fn client<R: Runtime>(
    runtime: &R,
    host: &Host<R>,
    addr: Multiaddr,
    upload: u64,
    download: u64,
    emit: &mut impl FnMut(&str),
) -> Result<super::PerfReport, Error> {
    let start = runtime.now();
    let peer = host.dial(addr).await?;
    eprintln!("connected to {peer} after {:?}", runtime.now() - start);
    let report = super::run_with_progress(host, peer, upload, download, |p| {
        emit(&json_line(
            "intermediary",
            p.interval,
            p.uploaded,
            p.downloaded,
        ));
    })
    .await?;
    emit(&json_line(
        "final",
        runtime.now().saturating_duration_since(start),
        upload,
        download,
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<PerfArgs, String> {
        PerfArgs::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_the_runner_flags() {
        let server = parse(&["--run-server", "--server-address", "0.0.0.0:4001"]).unwrap();
        assert!(server.run_server);
        assert_eq!(
            server.server_address.unwrap().to_string(),
            "/ip4/0.0.0.0/tcp/4001"
        );
        let client = parse(&[
            "--server-address",
            "10.0.0.1:4001",
            "--transport",
            "tcp",
            "--upload-bytes",
            "9007199254740991",
            "--download-bytes",
            "0",
        ])
        .unwrap();
        assert!(!client.run_server);
        assert_eq!(client.upload_bytes, Some(9_007_199_254_740_991));
        assert_eq!(client.download_bytes, Some(0));
        let v6 = parse(&["--server-address", "[::1]:4001", "--insecure"]).unwrap();
        assert_eq!(v6.server_address.unwrap().to_string(), "/ip6/::1/tcp/4001");
        assert!(v6.insecure);
        let ma = format!("/ip4/127.0.0.1/tcp/1/p2p/{FIXED_PEER_ID}");
        assert_eq!(
            parse(&["--server-address", &ma])
                .unwrap()
                .server_address
                .unwrap()
                .to_string(),
            ma
        );
    }

    #[test]
    fn rejects_what_it_cannot_do() {
        assert!(parse(&["--transport", "quic-v1"]).is_err());
        assert!(parse(&["--run-server"]).is_err(), "no address");
        assert!(parse(&["--server-address", "localhost:4001"]).is_err());
        assert!(parse(&["--upload-bytes", "-1"]).is_err());
        assert!(parse(&["--upload-bytes"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }

    #[test]
    fn fixed_identity_is_gos_zero_seed_key() {
        assert_eq!(
            fixed_keypair().public().to_peer_id().to_string(),
            FIXED_PEER_ID
        );
        assert!(FIXED_PEER_ID.parse::<PeerId>().is_ok());
    }

    #[test]
    fn report_line_gives_seconds() {
        let report = super::super::PerfReport {
            uploaded: 1_000_000_000,
            downloaded: 0,
            upload: Duration::from_millis(1500),
            download: Duration::from_micros(200),
        };
        assert_eq!(
            report_line(&report),
            "upload 1000000000 bytes in 1.500000 s (5.33 Gbit/s), \
             download 0 bytes in 0.000200 s (0.00 Gbit/s)"
        );
    }

    #[test]
    fn json_lines_follow_the_runner() {
        assert_eq!(
            json_line("intermediary", Duration::from_millis(1500), 3, 0),
            r#"{"type":"intermediary","timeSeconds":1.5,"uploadBytes":3,"downloadBytes":0}"#
        );
        assert_eq!(
            json_line("final", Duration::ZERO, 0, u64::MAX),
            r#"{"type":"final","timeSeconds":0,"uploadBytes":0,"downloadBytes":18446744073709551615}"#
        );
    }
}
