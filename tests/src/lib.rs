//! Shared helpers for the cross-crate tests.

pub mod conformance;
pub mod custom_loop;
