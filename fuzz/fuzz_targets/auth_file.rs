//! libFuzzer target: `dime::fuzzing::auth_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dime::fuzzing::auth_file(data));
