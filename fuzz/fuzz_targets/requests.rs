//! libFuzzer target: `dime::fuzzing::requests`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dime::fuzzing::requests(data));
