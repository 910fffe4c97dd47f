//! Fuzz entry points for `identity` (owner fills in).
