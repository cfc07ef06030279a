//! libFuzzer target: `dime::fuzzing::pattern`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dime::fuzzing::pattern(data));
