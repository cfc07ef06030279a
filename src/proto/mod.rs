//! The protocol, shared by the server and every client: framing
//! ([`wire`]), the dimeb value encoding ([`codec`]), the type table
//! ([`value`]) and tuple patterns ([`pattern`]). See `docs/protocol.md`.

pub mod codec;
pub mod pattern;
pub mod value;
pub mod wire;
