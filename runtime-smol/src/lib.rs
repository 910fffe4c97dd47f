//! Runs plait-core on smol.
