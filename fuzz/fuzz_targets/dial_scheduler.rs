#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| plait_core::fuzzing::dial::dial_scheduler(data, std::time::Instant::now()));
