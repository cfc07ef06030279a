//! Code the benches share.
#![allow(dead_code)]

pub mod kv;
pub mod vm;
