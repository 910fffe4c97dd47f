#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| plait_core::fuzzing::perf::perf_server(data, std::time::Instant::now()));
