//! libFuzzer target: `dime::fuzzing::dimeb`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dime::fuzzing::dimeb(data));
