#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| plait_core::fuzzing::noise::plaintext(data, std::time::Instant::now()));
