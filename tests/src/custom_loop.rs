//! A custom event loop: two [`Swarm`]s driven by non-blocking `std::net` sockets from one
//! thread, with no async runtime and no mio. It follows the swarm's I/O contract (see
//! [`plait_core::swarm`]): carry out its commands, feed it bytes, flush what it transmits,
//! call `handle_timeout` when its deadline passes, and react to its events.
//!
//! The loop polls (sleeping a millisecond when nothing happened); an embedding with its own
//! reactor would wait on socket readiness and `poll_timeout` instead.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use plait_core::dial::peerstore::PERMANENT_ADDR_TTL;
use plait_core::dial::TransportError;
use plait_core::identity::keypair_from_seed;
use plait_core::multiaddr::{Multiaddr, Protocol};
use plait_core::multistream::Protocol as ProtocolId;
use plait_core::swarm::{Command, ConnectionId, Event, ListenerId, Swarm, SwarmConfig};
use plait_core::upgrade::Security;

/// The echo protocol id (go-libp2p's echo example).
pub const ECHO: &str = "/echo/1.0.0";

/// A connection's socket and its unsent/unconsumed bytes.
struct Socket {
    tcp: TcpStream,
    input: BytesMut,
    output: BytesMut,
    /// The swarm asked to close: flush `output`, then shut the socket down.
    closing: bool,
}

/// One swarm and the sockets it owns.
struct Node {
    swarm: Swarm,
    listeners: HashMap<ListenerId, (TcpListener, Multiaddr)>,
    sockets: HashMap<ConnectionId, Socket>,
}

fn to_socket(addr: &Multiaddr) -> io::Result<SocketAddr> {
    let mut it = addr.iter();
    match (it.next(), it.next()) {
        (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(port))) => Ok((ip, port).into()),
        (Some(Protocol::Ip6(ip)), Some(Protocol::Tcp(port))) => Ok((ip, port).into()),
        _ => Err(io::Error::new(ErrorKind::InvalidInput, addr.to_string())),
    }
}

fn to_multiaddr(addr: SocketAddr) -> Multiaddr {
    let ip = match addr {
        SocketAddr::V4(a) => Protocol::Ip4(*a.ip()),
        SocketAddr::V6(a) => Protocol::Ip6(*a.ip()),
    };
    Multiaddr::empty().with(ip).with(Protocol::Tcp(addr.port()))
}

impl Node {
    fn new(seed: u64, security: Security) -> Self {
        let config = SwarmConfig::new(keypair_from_seed(seed), [seed as u8; 32])
            .expect("valid config")
            .with_security(security);
        Self {
            swarm: Swarm::new(config),
            listeners: HashMap::new(),
            sockets: HashMap::new(),
        }
    }

    /// One pass over everything this node owns; returns the swarm's events and whether any
    /// I/O happened.
    fn turn(&mut self, now: Instant) -> (Vec<Event>, bool) {
        let mut busy = false;
        while let Some(command) = self.swarm.poll_command() {
            busy = true;
            self.execute(now, command);
        }
        // Accept.
        for (listener, local) in self.listeners.values() {
            while let Ok((tcp, remote)) = listener.accept() {
                busy = true;
                let remote = to_multiaddr(remote);
                if let Ok(id) = self.swarm.handle_incoming(now, local.clone(), remote) {
                    self.sockets.insert(id, Socket::new(tcp));
                } // Refused by a limit: dropping `tcp` closes it.
            }
        }
        // Read, then write, each socket; drop the ones that ended.
        let mut ended = Vec::new();
        for (&id, s) in &mut self.sockets {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match s.tcp.read(&mut buf) {
                    Ok(0) => break ended.push(id),
                    Ok(n) => {
                        busy = true;
                        s.input.extend_from_slice(&buf[..n]);
                        self.swarm.handle_input(now, id, &mut s.input);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break ended.push(id),
                }
            }
            if s.output.is_empty() {
                self.swarm.poll_transmit(now, id, &mut s.output);
            }
            while !s.output.is_empty() {
                match s.tcp.write(&s.output) {
                    Ok(n) if n > 0 => {
                        busy = true;
                        let _ = s.output.split_to(n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    _ => {
                        ended.push(id);
                        break;
                    }
                }
            }
            if s.closing && s.output.is_empty() {
                let _ = s.tcp.shutdown(Shutdown::Both);
                ended.push(id);
            }
        }
        for id in ended {
            self.sockets.remove(&id);
            self.swarm.handle_closed(now, id);
        }
        if self.swarm.poll_timeout().is_some_and(|t| t <= now) {
            self.swarm.handle_timeout(now);
        }
        // What handle_closed/handle_timeout asked for is carried out on the next turn.
        (
            std::iter::from_fn(|| self.swarm.poll_event()).collect(),
            busy,
        )
    }

    fn execute(&mut self, now: Instant, command: Command) {
        match command {
            Command::Listen { listener, addr } => {
                let bound = to_socket(&addr).and_then(TcpListener::bind).and_then(|l| {
                    l.set_nonblocking(true)?;
                    Ok((to_multiaddr(l.local_addr()?), l))
                });
                match bound {
                    Ok((local, l)) => {
                        self.swarm.handle_listening(listener, local.clone());
                        self.listeners.insert(listener, (l, local));
                    }
                    Err(e) => self
                        .swarm
                        .handle_listen_failed(listener, TransportError::Io(e.kind())),
                }
            }
            Command::Dial { connection, addr } => {
                // std has no non-blocking connect; on loopback a blocking one returns at once.
                match to_socket(&addr).and_then(TcpStream::connect) {
                    Ok(tcp) => {
                        self.swarm.handle_connected(now, connection);
                        self.sockets.insert(connection, Socket::new(tcp));
                    }
                    Err(e) => {
                        self.swarm
                            .handle_dial_failed(now, connection, TransportError::Io(e.kind()))
                    }
                }
            }
            Command::Close { connection } => {
                if let Some(s) = self.sockets.get_mut(&connection) {
                    s.closing = true;
                }
            }
            Command::CloseListener { listener } => {
                self.listeners.remove(&listener);
            }
            _ => {}
        }
    }
}

impl Socket {
    fn new(tcp: TcpStream) -> Self {
        tcp.set_nonblocking(true).expect("non-blocking socket");
        let _ = tcp.set_nodelay(true);
        Self {
            tcp,
            input: BytesMut::new(),
            output: BytesMut::new(),
            closing: false,
        }
    }
}

/// Runs go's echo between two swarms in this thread: the server listens on loopback, the
/// client dials it, sends `message` on `/echo/1.0.0`, and reads the reply until the server
/// closes. Returns the reply; fails after 10 s.
pub fn run_echo(message: &str, security: Security) -> Result<String, String> {
    let echo = ProtocolId::try_from(ECHO).map_err(|e| e.to_string())?;
    let mut server = Node::new(1, security);
    let mut client = Node::new(2, security);
    let server_peer = server.swarm.local_peer_id();
    server.swarm.add_protocol(echo.clone());
    server
        .swarm
        .listen("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"));
    // The server echoes one line per stream; the client collects the reply.
    let mut lines: HashMap<_, Vec<u8>> = HashMap::new();
    let mut reply = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let now = Instant::now();
        let (events, server_busy) = server.turn(now);
        for event in events {
            match event {
                Event::ListenStarted { addr, .. } => {
                    // Listening: the client opens a stream, which dials the address.
                    client
                        .swarm
                        .add_addresses(now, server_peer, [addr], PERMANENT_ADDR_TTL);
                    client
                        .swarm
                        .open_stream(now, server_peer, vec![echo.clone()]);
                }
                Event::InboundStream { stream, .. } => {
                    lines.insert(stream, Vec::new());
                }
                Event::Readable(stream) => {
                    let Some(line) = lines.get_mut(&stream) else {
                        continue;
                    };
                    while let Ok(Some(chunk)) = server.swarm.read(stream, 1024) {
                        if chunk.is_empty() {
                            break;
                        }
                        line.extend_from_slice(&chunk);
                    }
                    if line.contains(&b'\n') {
                        // A short line fits the initial window: one write takes it all.
                        let _ = server.swarm.write(stream, line);
                        let _ = server.swarm.finish(stream);
                        lines.remove(&stream);
                    }
                }
                _ => {}
            }
        }
        let (events, client_busy) = client.turn(now);
        for event in events {
            match event {
                Event::StreamOpened { stream, .. } => {
                    client
                        .swarm
                        .write(stream, message.as_bytes())
                        .map_err(|e| e.to_string())?;
                }
                Event::Readable(stream) => loop {
                    match client.swarm.read(stream, 1024) {
                        Ok(Some(chunk)) if chunk.is_empty() => break,
                        Ok(Some(chunk)) => reply.extend_from_slice(&chunk),
                        // The server closed: the reply is complete.
                        Ok(None) => {
                            let _ = client.swarm.finish(stream);
                            return Ok(String::from_utf8_lossy(&reply).into_owned());
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                },
                Event::StreamOpenFailed { error, .. } => return Err(error.to_string()),
                Event::ConnectionFailed { error, .. } => return Err(error.to_string()),
                _ => {}
            }
        }
        if !server_busy && !client_busy {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Err("echo did not finish in 10 s".into())
}
