//! Entry points of the fuzz targets in `fuzz/`, public so that the stable test run can replay
//! the committed corpus through exactly the same code (feature `fuzzing`).
//!
//! Every function takes arbitrary bytes and must never panic.

pub mod dial;
pub mod identity;
pub mod multistream;
pub mod noise;
pub mod yamux;
