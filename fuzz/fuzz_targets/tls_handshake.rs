#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| plait_core::fuzzing::tls::tls_handshake(data, std::time::Instant::now()));
