//! libFuzzer target: `dime::fuzzing::frame_reader`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dime::fuzzing::frame_reader(data));
