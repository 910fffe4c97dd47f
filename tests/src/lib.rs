//! Shared helpers for the cross-crate tests.

pub mod interop;
pub mod libp2p_peer;
