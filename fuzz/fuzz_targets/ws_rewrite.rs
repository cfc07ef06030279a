//! libFuzzer target: `dime::fuzzing::ws_rewrite`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dime::fuzzing::ws_rewrite(data));
