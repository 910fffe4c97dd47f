//! Fuzz entry points for `yamux` (owner fills in).
