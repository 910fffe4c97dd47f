//! plait-core: sans-IO libp2p protocol machines.
#![forbid(unsafe_code)]

pub mod connection;
pub mod dial;
#[cfg(any(fuzzing, feature = "fuzzing"))]
pub mod fuzzing;
pub mod identify;
pub mod identity;
pub mod multiaddr;
pub mod multistream;
pub mod noise;
pub mod ping;
pub mod plaintext;
pub mod swarm;
pub mod time;
pub mod upgrade;
pub mod varint;
pub mod yamux;
