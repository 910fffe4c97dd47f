#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| plait_core::fuzzing::yamux::yamux_session_client(data, std::time::Instant::now()));
