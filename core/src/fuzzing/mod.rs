//! Entry points of the fuzz targets in `fuzz/`, public so that the stable test run can replay
//! the committed corpus through exactly the same code (feature `fuzzing`).
//!
//! Every function takes arbitrary bytes and must never panic.

pub mod connection;
pub mod dial;
pub mod identity;
pub mod multistream;
pub mod noise;
pub mod perf;
pub mod tls;
pub mod yamux;

pub use perf::perf_server;

/// A fuzz entry point: arbitrary bytes in, never panics. Like every machine it reads no clock:
/// the caller (a fuzz target, the corpus replay) passes the instant the run starts at.
pub type Target = fn(&[u8], crate::time::Instant);

/// Every fuzz target by name (the names of `fuzz/fuzz_targets/*.rs` and of the corpus folders
/// `fuzz/corpus/<name>/`). The stable test run replays each committed corpus through these.
pub const TARGETS: &[(&str, Target)] = &[
    ("multistream_listener", multistream::multistream_listener),
    ("multistream_dialer", multistream::multistream_dialer),
    ("length_prefixed", multistream::length_prefixed),
    ("peer_id_parse", identity::peer_id_parse),
    ("public_key_parse", identity::public_key_parse),
    ("identify_decode", identity::identify_decode),
    ("noise_responder", noise::noise_responder),
    ("noise_initiator", noise::noise_initiator),
    ("noise_transport", noise::noise_transport),
    ("plaintext", noise::plaintext),
    ("dial_scheduler", dial::dial_scheduler),
    ("multiaddr_parse", dial::multiaddr_parse),
    ("yamux_session_client", yamux::yamux_session_client),
    ("yamux_session_server", yamux::yamux_session_server),
    ("yamux_pair_ops", yamux::yamux_pair_ops),
    ("connection_listener", connection::connection_listener),
    ("perf_server", perf_server),
    ("tls_handshake", tls::tls_handshake),
    ("tls_certificate", tls::tls_certificate),
];
