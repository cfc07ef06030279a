//! The protocol, shared by the server and every client: framing
//! ([`wire`]), the dimeb value encoding ([`codec`]), the type table
//! ([`value`]) and element orders ([`layout`]), tuple patterns
//! ([`pattern`]), batches of stream items ([`stream_batch`]) and the names
//! of the extensions a server announces ([`extensions`]). See
//! `docs/protocol.md`.

pub mod codec;
pub mod extensions;
pub mod layout;
pub mod live;
pub mod pattern;
pub mod stream_batch;
pub mod value;
pub mod wire;
