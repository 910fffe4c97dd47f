//! Test support for the Plait workspace.
//!
//! `plait-core` never reads the clock: every machine takes `now` as an input. Its unit tests,
//! doc examples and fuzz-harness tests need a first instant to start from, and take it from
//! here, the way a driver passes the instants it reads from its runtime.

use std::sync::OnceLock;
use std::time::Instant;

/// The instant tests start from: read once per process, the same for every caller, so a test
/// depends only on the durations it adds to it.
pub fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}
