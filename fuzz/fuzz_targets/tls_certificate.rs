#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| plait_core::fuzzing::tls::tls_certificate(data, std::time::Instant::now()));
