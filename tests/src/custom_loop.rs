//! A custom event loop: two hosts driven by non-blocking `std::net` sockets from one thread,
//! with no async runtime and no mio, each as the core's two kinds of machine (see
//! [`plait_core::swarm`]): one [`Coordinator`] per host and one [`ConnectionTask`] per
//! connection, which the loop owns beside the connection's socket. The loop carries out the
//! coordinator's commands, routes the messages between the coordinator and the tasks, feeds
//! each task its socket's bytes, flushes what it transmits, calls `handle_timeout` when a
//! deadline passes, and reacts to the events of both.
//!
//! The loop polls (sleeping a millisecond when nothing happened); an embedding with its own
//! reactor would wait on socket readiness and the machines' `poll_timeout` instead.

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
use plait_core::swarm::{
    Command, ConnectionId, ConnectionTask, Coordinator, Event, ListenerId, StreamRef, SwarmConfig,
};
use plait_core::upgrade::Security;

/// The echo protocol id (go-libp2p's echo example).
pub const ECHO: &str = "/echo/1.0.0";

/// A connection: its machine, its socket and its unsent/unconsumed bytes.
struct Conn {
    task: ConnectionTask,
    tcp: TcpStream,
    input: BytesMut,
    output: BytesMut,
}

/// One host: its coordinator, its listeners, and the connections it owns.
struct Node {
    coordinator: Coordinator,
    listeners: HashMap<ListenerId, (TcpListener, Multiaddr)>,
    conns: HashMap<ConnectionId, Conn>,
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
            coordinator: Coordinator::new(config),
            listeners: HashMap::new(),
            conns: HashMap::new(),
        }
    }

    /// The task of the connection carrying `stream`.
    fn task(&mut self, stream: StreamRef) -> Option<&mut ConnectionTask> {
        self.conns.get_mut(&stream.connection).map(|c| &mut c.task)
    }

    /// One pass over everything this node owns; returns the events of the coordinator and
    /// of the connections, and whether any I/O happened.
    fn turn(&mut self, now: Instant) -> (Vec<Event>, bool) {
        let mut busy = false;
        let mut events = Vec::new();
        while let Some(command) = self.coordinator.poll_command() {
            busy = true;
            self.execute(now, command);
        }
        // Accept.
        for (listener, local) in self.listeners.values() {
            while let Ok((tcp, remote)) = listener.accept() {
                busy = true;
                let remote = to_multiaddr(remote);
                if let Ok(task) = self.coordinator.handle_incoming(now, local.clone(), remote) {
                    self.conns.insert(task.id(), Conn::new(task, tcp));
                } // Refused by a limit: dropping `tcp` closes it.
            }
        }
        // The coordinator's messages to the connections.
        while let Some((id, message)) = self.coordinator.poll_connection_message() {
            if let Some(c) = self.conns.get_mut(&id) {
                c.task.handle_coordinator_message(now, message);
            }
        }
        // Each connection: read, time, write; its messages to the coordinator and its events.
        let mut ended = Vec::new();
        for (&id, c) in &mut self.conns {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match c.tcp.read(&mut buf) {
                    Ok(0) => {
                        c.task.handle_closed(now);
                        break;
                    }
                    Ok(n) => {
                        busy = true;
                        c.input.extend_from_slice(&buf[..n]);
                        c.task.handle_input(now, &mut c.input);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        c.task.handle_closed(now);
                        break;
                    }
                }
            }
            if c.task.poll_timeout().is_some_and(|t| t <= now) {
                c.task.handle_timeout(now);
            }
            if c.output.is_empty() {
                c.task.poll_transmit(now, &mut c.output);
            }
            while !c.output.is_empty() {
                match c.tcp.write(&c.output) {
                    Ok(n) if n > 0 => {
                        busy = true;
                        let _ = c.output.split_to(n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    _ => {
                        c.output.clear();
                        c.task.handle_closed(now);
                        break;
                    }
                }
            }
            while let Some(message) = c.task.poll_coordinator_message() {
                self.coordinator.handle_connection_message(now, id, message);
            }
            events.extend(std::iter::from_fn(|| c.task.poll_event()));
            if c.task.is_closed() && c.output.is_empty() {
                let _ = c.tcp.shutdown(Shutdown::Both);
                ended.push(id);
            }
        }
        for id in ended {
            self.conns.remove(&id);
        }
        if self.coordinator.poll_timeout().is_some_and(|t| t <= now) {
            self.coordinator.handle_timeout(now);
        }
        // What the coordinator says now is carried out on the next turn.
        events.extend(std::iter::from_fn(|| self.coordinator.poll_event()));
        (events, busy)
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
                        self.coordinator.handle_listening(listener, local.clone());
                        self.listeners.insert(listener, (l, local));
                    }
                    Err(e) => self
                        .coordinator
                        .handle_listen_failed(listener, TransportError::Io(e.kind())),
                }
            }
            Command::Dial { connection, addr } => {
                // std has no non-blocking connect; on loopback a blocking one returns at once.
                match to_socket(&addr).and_then(TcpStream::connect) {
                    Ok(tcp) => {
                        // `None`: the coordinator gave the dial up meanwhile; `tcp` closes.
                        if let Some(task) = self.coordinator.handle_connected(now, connection) {
                            self.conns.insert(connection, Conn::new(task, tcp));
                        }
                    }
                    Err(e) => self.coordinator.handle_dial_failed(
                        now,
                        connection,
                        TransportError::Io(e.kind()),
                    ),
                }
            }
            Command::CloseListener { listener } => {
                self.listeners.remove(&listener);
            }
            _ => {}
        }
    }
}

impl Conn {
    fn new(task: ConnectionTask, tcp: TcpStream) -> Self {
        tcp.set_nonblocking(true).expect("non-blocking socket");
        let _ = tcp.set_nodelay(true);
        Self {
            task,
            tcp,
            input: BytesMut::new(),
            output: BytesMut::new(),
        }
    }
}

/// Runs go's echo between two hosts in this thread: the server listens on loopback, the
/// client dials it, sends `message` on `/echo/1.0.0`, and reads the reply until the server
/// closes. Returns the reply; fails after 10 s.
pub fn run_echo(message: &str, security: Security) -> Result<String, String> {
    let echo = ProtocolId::try_from(ECHO).map_err(|e| e.to_string())?;
    let mut server = Node::new(1, security);
    let mut client = Node::new(2, security);
    let server_peer = server.coordinator.local_peer_id();
    server.coordinator.add_protocol(echo.clone());
    server
        .coordinator
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
                        .coordinator
                        .add_addresses(now, server_peer, [addr], PERMANENT_ADDR_TTL);
                    client
                        .coordinator
                        .open_stream(now, server_peer, vec![echo.clone()]);
                }
                Event::InboundStream { stream, .. } => {
                    lines.insert(stream, Vec::new());
                }
                Event::Readable(stream) => {
                    let (Some(line), Some(task)) = (lines.get_mut(&stream), server.task(stream))
                    else {
                        continue;
                    };
                    while let Ok(Some(chunk)) = task.read(stream.stream, 1024) {
                        if chunk.is_empty() {
                            break;
                        }
                        line.extend_from_slice(&chunk);
                    }
                    if line.contains(&b'\n') {
                        // A short line fits the initial window: one write takes it all.
                        let _ = task.write(stream.stream, line);
                        let _ = task.finish(stream.stream);
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
                    let task = client.task(stream).ok_or("no connection")?;
                    task.write(stream.stream, message.as_bytes())
                        .map_err(|e| e.to_string())?;
                }
                Event::Readable(stream) => loop {
                    let task = client.task(stream).ok_or("no connection")?;
                    match task.read(stream.stream, 1024) {
                        Ok(Some(chunk)) if chunk.is_empty() => break,
                        Ok(Some(chunk)) => reply.extend_from_slice(&chunk),
                        // The server closed: the reply is complete.
                        Ok(None) => {
                            let _ = task.finish(stream.stream);
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
