#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| plait_core::fuzzing::multistream::length_prefixed(data, std::time::Instant::now()));
