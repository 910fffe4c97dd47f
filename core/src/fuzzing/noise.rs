//! Fuzz entry points for `noise` (owner fills in).
