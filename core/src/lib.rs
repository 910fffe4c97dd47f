//! plait-core: libp2p's protocols as sans-IO machines.
//!
//! Nothing in this crate touches a socket, reads a clock or spawns a task. Every machine is fed
//! bytes and instants and hands back bytes to send, the next deadline and events, so the same
//! code runs on tokio, async-std, smol, your own event loop, a simulator or a fuzzer, and
//! behaves the same whatever way its input is chunked.
//!
//! | layer | module |
//! |---|---|
//! | keys, PeerIds, multiaddrs | [`identity`], [`multiaddr`] |
//! | protocol negotiation | [`multistream`] (over [`varint`] framing) |
//! | security | [`noise`] (Noise XX), [`tls`] (libp2p TLS 1.3), [`plaintext`] (`/plaintext/2.0.0`) |
//! | multiplexing | [`yamux`] |
//! | one connection | [`upgrade`] (raw bytes → security → muxer), [`connection`] (streams) |
//! | a host | [`swarm`]: the [`Coordinator`](swarm::Coordinator) (peers, listeners, dialing with [`dial`], the connection manager) and a [`ConnectionTask`](swarm::ConnectionTask) per connection (streams, [`ping`], [`identify`]), which exchange messages |
//! | benchmarking | [`perf`] (`/perf/1.0.0`, off unless a driver serves it) |
//!
//! # The driving contract
//!
//! Every machine has the same families of methods (see `ARCHITECTURE.md`):
//!
//! - **input**: `handle_input(now, &mut BytesMut)` consumes what it can from the front of the
//!   buffer; `handle_timeout(now)` (spurious calls are harmless); the [`swarm::Swarm`] adds
//!   `handle_*` for what the driver did (listening, accepted, connected, closed, …);
//! - **output**: `poll_transmit(now, &mut BytesMut)` appends bytes to send, `poll_event()`
//!   returns what happened, `poll_timeout()` the next deadline; the swarm adds
//!   `poll_command()`: what the driver must do (listen, dial, close);
//! - **commands** from the application: `open_stream`, `read`, `write`, `finish`, `reset`,
//!   `close`.
//!
//! After every input or command, drain `poll_command`, `poll_event` and `poll_transmit`; then
//! wait for more input or `poll_timeout`. Time only moves when you pass a later `now`.
//!
//! # Example: two hosts, no sockets
//!
//! Two swarms, one listening, one dialing, wired together by hand through byte buffers. The
//! dialer opens `/echo/1.0.0` and the listener echoes.
//!
//! ```
//! use bytes::BytesMut;
//! use plait_core::identity::keypair_from_seed;
//! use plait_core::multistream::Protocol;
//! use plait_core::swarm::{Command, ConnectionId, Event, Swarm, SwarmConfig};
//! use std::time::Instant;
//!
//! // A driver passes the instant it reads from its runtime; the core never reads the clock.
//! let now = plait_testkit::start();
//! let swarm = |seed| Swarm::new(SwarmConfig::new(keypair_from_seed(seed), [seed as u8; 32]).unwrap());
//! let (mut listener, mut dialer) = (swarm(1), swarm(2));
//! listener.add_protocol(Protocol::from_static("/echo/1.0.0"));
//!
//! // The listener asks to listen; we "bind" and report the address.
//! listener.listen("/ip4/127.0.0.1/tcp/4001".parse().unwrap());
//! let Some(Command::Listen { listener: id, addr }) = listener.poll_command() else { panic!() };
//! listener.handle_listening(id, addr.clone());
//!
//! // The dialer asks to dial that address; we "connect" both ends.
//! let addr = addr.with(plait_core::multiaddr::Protocol::P2p(listener.local_peer_id()));
//! dialer.dial(now, addr.clone()).unwrap();
//! let Some(Command::Dial { connection: d, .. }) = dialer.poll_command() else { panic!() };
//! dialer.handle_connected(now, d);
//! let l = listener.handle_incoming(now, addr, "/ip4/127.0.0.1/tcp/5555".parse().unwrap()).unwrap();
//!
//! // Pump bytes both ways until idle, collecting events.
//! fn flush(now: Instant, from: &mut Swarm, fc: ConnectionId, to: &mut Swarm, tc: ConnectionId) -> bool {
//!     let mut buf = BytesMut::new();
//!     while from.poll_transmit(now, fc, &mut buf).is_some() {}
//!     let moved = !buf.is_empty();
//!     to.handle_input(now, tc, &mut buf);
//!     moved
//! }
//! fn pump(now: Instant, a: &mut Swarm, ac: ConnectionId, b: &mut Swarm, bc: ConnectionId) {
//!     while flush(now, a, ac, b, bc) | flush(now, b, bc, a, ac) {}
//! }
//! pump(now, &mut dialer, d, &mut listener, l);
//!
//! // Open a stream and write at once: the proposal and the data leave together (lazy).
//! let peer = listener.local_peer_id();
//! dialer.open_stream(now, peer, vec![Protocol::from_static("/echo/1.0.0")]);
//! let stream = loop {
//!     match dialer.poll_event() {
//!         Some(Event::StreamOpened { stream, .. }) => break stream,
//!         Some(_) => continue,
//!         None => panic!("no stream"),
//!     }
//! };
//! dialer.write(stream, b"Hello, world!\n").unwrap();
//! dialer.finish(stream).unwrap();
//! pump(now, &mut dialer, d, &mut listener, l);
//!
//! // The listener sees the stream with its protocol, reads and echoes.
//! let inbound = std::iter::from_fn(|| listener.poll_event())
//!     .find_map(|e| match e { Event::InboundStream { stream, .. } => Some(stream), _ => None })
//!     .unwrap();
//! let line = listener.read(inbound, 1024).unwrap().unwrap();
//! listener.write(inbound, &line).unwrap();
//! listener.finish(inbound).unwrap();
//! pump(now, &mut dialer, d, &mut listener, l);
//!
//! assert_eq!(&dialer.read(stream, 1024).unwrap().unwrap()[..], b"Hello, world!\n");
//! ```
#![forbid(unsafe_code)]

mod buffer;
pub mod connection;
mod der;
pub mod dial;
#[cfg(any(fuzzing, feature = "fuzzing"))]
pub mod fuzzing;
pub mod identify;
pub mod identity;
pub mod multiaddr;
pub mod multistream;
pub mod noise;
pub mod perf;
pub mod ping;
pub mod plaintext;
pub mod swarm;
pub mod time;
pub mod tls;
pub mod upgrade;
pub mod varint;
pub mod yamux;
