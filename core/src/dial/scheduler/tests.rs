//! Scheduler tests on virtual time.
