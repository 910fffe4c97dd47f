//! The clock type every machine takes as input.
//!
//! Machines never read the clock: the caller passes `now` into every call. This alias is the
//! one place that picks the type (a `web-time` alias on wasm32 would go here).

/// A monotonic point in time, supplied by the caller.
pub use std::time::Instant;
