#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| plait_core::fuzzing::multistream::multistream_dialer(data, std::time::Instant::now()));
