#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| plait_core::fuzzing::dial::multiaddr_parse(data, std::time::Instant::now()));
