//! Runs plait-core on tokio.
