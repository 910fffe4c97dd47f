//! Shared helpers for the cross-crate tests.

pub mod conformance;
pub mod custom_loop;
pub mod external_peer;
pub mod hostile;
pub mod interop;
pub mod libp2p_peer;
pub mod sim;
