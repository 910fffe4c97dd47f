//! Shared helpers for the cross-crate tests.

pub mod libp2p_peer;
pub mod interop;
