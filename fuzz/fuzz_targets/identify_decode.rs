#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| plait_core::fuzzing::identity::identify_decode(data, std::time::Instant::now()));
