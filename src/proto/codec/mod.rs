//! Value encodings carried in DiME payloads.

pub mod dimeb;
