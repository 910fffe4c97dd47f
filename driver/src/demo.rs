//! The echo demo shared by every runtime crate's `echo` example (go-libp2p's `echo`).
//!
//! ```text
//! echo                      both peers in one process: listen, dial, echo, print
//! echo -l PORT              listen on 127.0.0.1:PORT, print /ip4/127.0.0.1/tcp/PORT/p2p/ID
//!      [--host IP]          (with -l) listen on IP instead of 127.0.0.1
//! echo -d MULTIADDR         dial, send "Hello, world!\n", print the reply
//! options: --tls (TLS only), --noise (Noise only), --insecure (plaintext only),
//!          --seed N (deterministic identity); by default Noise, then TLS
//! ```

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use plait_core::identity::keypair_from_seed;
use plait_core::multiaddr::{split_p2p, Multiaddr};
use plait_core::upgrade::Security;

use crate::{Error, Host, HostConfig, HostEvent, Runtime, Stream};

/// The echo protocol id.
pub const ECHO: &str = "/echo/1.0.0";
/// The longest line the echo handler reads, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// What the echo demo was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EchoArgs {
    /// `-l PORT`: listen.
    pub listen: Option<u16>,
    /// `--host IP`: the IPv4 address `-l` listens on (default 127.0.0.1).
    pub host: Option<std::net::Ipv4Addr>,
    /// `-d MULTIADDR`: dial.
    pub dial: Option<Multiaddr>,
    /// `--insecure`: plaintext.
    pub insecure: bool,
    /// `--tls` / `--noise`: that security protocol only (default: Noise, then TLS).
    pub security: Option<Security>,
    /// `--seed N`: deterministic identity.
    pub seed: Option<u64>,
}

impl EchoArgs {
    /// Parses command-line arguments (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut parsed = Self::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                "-l" => parsed.listen = Some(value("-l")?.parse().map_err(|e| format!("-l: {e}"))?),
                "--host" | "-host" => {
                    parsed.host = Some(
                        value("--host")?
                            .parse()
                            .map_err(|e| format!("--host: {e}"))?,
                    )
                }
                "-d" => parsed.dial = Some(value("-d")?.parse().map_err(|e| format!("-d: {e}"))?),
                "--seed" | "-seed" => {
                    parsed.seed = Some(
                        value("--seed")?
                            .parse()
                            .map_err(|e| format!("--seed: {e}"))?,
                    )
                }
                "--insecure" | "-insecure" => parsed.insecure = true,
                "--tls" => parsed.security = Some(Security::Tls),
                "--noise" => parsed.security = Some(Security::Noise),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(parsed)
    }

    fn config(&self, seed_offset: u64) -> HostConfig {
        let config = match self.seed {
            Some(seed) => HostConfig::new(keypair_from_seed(seed.wrapping_add(seed_offset))),
            None => HostConfig::random(),
        };
        match (self.insecure, self.security) {
            (true, _) => config.with_security(Security::Plaintext),
            (false, Some(security)) => config.with_security(security),
            (false, None) => config,
        }
    }
}

/// Serves `/echo/1.0.0` as go's `doEcho`: read one line, write it back, close.
pub fn serve_echo<R: Runtime>(host: &Host<R>, runtime: &R) -> Result<(), Error> {
    let rt = runtime.clone();
    host.set_stream_handler(ECHO, move |stream| {
        rt.spawn(Box::pin(async move {
            if let Err(e) = echo_line(stream).await {
                tracing::warn!(%e, "echo stream failed");
            }
        }));
    })
}

async fn echo_line<R: Runtime>(mut stream: Stream<R>) -> std::io::Result<()> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1024];
    loop {
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&byte[..n]);
        if line.contains(&b'\n') || line.len() >= MAX_LINE {
            break;
        }
    }
    let end = line
        .iter()
        .position(|b| *b == b'\n')
        .map_or(line.len(), |i| i + 1);
    tracing::info!(peer = %stream.peer(), line = ?String::from_utf8_lossy(&line[..end]), "echoing");
    stream.write_all(&line[..end]).await?;
    stream.close().await
}

/// Dials `addr`, sends `Hello, world!\n` on `/echo/1.0.0` and returns the reply.
pub async fn dial_echo<R: Runtime>(host: &Host<R>, addr: Multiaddr) -> Result<String, Error> {
    let (_, peer) = split_p2p(&addr);
    let peer = peer.ok_or_else(|| Error::NoPeerId(addr.clone()))?;
    host.add_addresses(peer, [addr]);
    let mut stream = host.new_stream(peer, [ECHO]).await?;
    let io = |e: std::io::Error| Error::Stream(e.kind());
    stream.write_all(b"Hello, world!\n").await.map_err(io)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.map_err(io)?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// Runs the echo demo as `args` say; prints what go's echo example prints.
pub async fn run<R: Runtime>(runtime: R, args: EchoArgs) -> Result<(), Error> {
    let host_ip = args.host.unwrap_or(std::net::Ipv4Addr::LOCALHOST);
    let listen_addr = |port: u16| -> Multiaddr {
        format!("/ip4/{host_ip}/tcp/{port}")
            .parse()
            .expect("valid multiaddr")
    };
    match (args.listen, args.dial.clone()) {
        (Some(port), _) => {
            let host = Host::new(runtime.clone(), args.config(0))?;
            serve_echo(&host, &runtime)?;
            host.listen(listen_addr(port)).await?;
            for addr in host.listen_addrs() {
                println!("I am {addr}");
                println!("Now run \"echo -d {addr}\" on a different terminal");
            }
            println!("listening for connections");
            loop {
                if let HostEvent::AcceptFailed {
                    addr,
                    error,
                    os_error,
                    retry_in,
                } = host.next_event().await
                {
                    let error = os_error.map_or(error.into(), std::io::Error::from_raw_os_error);
                    eprintln!("accepting on {addr} failed: {error}; retrying in {retry_in:?}");
                }
            }
        }
        (None, Some(addr)) => {
            let host = Host::new(runtime, args.config(1))?;
            let reply = dial_echo(&host, addr).await?;
            println!("read reply: {reply:?}");
            Ok(())
        }
        (None, None) => {
            let listener = Host::new(runtime.clone(), args.config(0))?;
            serve_echo(&listener, &runtime)?;
            listener.listen(listen_addr(0)).await?;
            let addr = listener
                .listen_addrs()
                .into_iter()
                .next()
                .ok_or(Error::Closed)?;
            println!("listener: I am {addr}");
            let dialer = Host::new(runtime, args.config(1))?;
            println!("dialer {}: dialing {addr}", dialer.peer_id());
            let reply = dial_echo(&dialer, addr).await?;
            println!("dialer: read reply: {reply:?}");
            dialer.close();
            listener.close();
            Ok(())
        }
    }
}

/// Runs the ping demo: with `-d MULTIADDR` pings that peer `count` times; without, starts a
/// second host in the same process and pings it. Prints each round-trip time.
pub async fn run_ping<R: Runtime>(runtime: R, args: EchoArgs, count: usize) -> Result<(), Error> {
    let host = Host::new(runtime.clone(), args.config(1))?;
    let (peer, _other) = match args.dial.clone() {
        Some(addr) => (host.dial(addr).await?, None),
        None => {
            let other = Host::new(runtime, args.config(0))?;
            other
                .listen("/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr"))
                .await?;
            let addr = other
                .listen_addrs()
                .into_iter()
                .next()
                .ok_or(Error::Closed)?;
            println!("pinging {addr}");
            (host.dial(addr).await?, Some(other))
        }
    };
    for i in 1..=count {
        let rtt = host.ping(peer).await?;
        println!("ping {i}: {peer} rtt {rtt:?}");
    }
    host.close();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_flags() {
        let args = EchoArgs::parse(
            ["-d", "/ip4/127.0.0.1/tcp/1", "--insecure", "-seed", "7"].map(String::from),
        )
        .unwrap();
        assert_eq!(args.dial.unwrap().to_string(), "/ip4/127.0.0.1/tcp/1");
        assert!(args.insecure);
        assert_eq!(args.seed, Some(7));
        assert!(EchoArgs::parse(["-l".to_string()]).is_err());
        let args = EchoArgs::parse(["-l", "0", "--host", "10.0.0.2"].map(String::from)).unwrap();
        assert_eq!(args.host, Some(std::net::Ipv4Addr::new(10, 0, 0, 2)));
        assert!(EchoArgs::parse(["--bogus".to_string()]).is_err());
        let args = EchoArgs::parse(["--tls".to_string()]).unwrap();
        assert_eq!(args.security, Some(Security::Tls));
        assert_eq!(args.config(0).security, vec![Security::Tls]);
        assert_eq!(
            EchoArgs::default().config(0).security,
            plait_core::upgrade::DEFAULT_SECURITY.to_vec()
        );
    }
}
