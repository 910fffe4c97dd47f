//! Runs plait-core on async-std.
