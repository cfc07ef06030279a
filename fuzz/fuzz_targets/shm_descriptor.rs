//! libFuzzer target: `dime::fuzzing::shm_descriptor`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dime::fuzzing::shm_descriptor(data));
