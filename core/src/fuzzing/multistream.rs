//! Fuzz entry points for `multistream` (owner fills in).
