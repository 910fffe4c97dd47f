//! Fuzz entry points for `dial` (owner fills in).
