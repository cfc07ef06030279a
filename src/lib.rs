//! dime: a broker and client library for sharing typed data between
//! MATLAB, C, Python and JavaScript processes, speaking the DiME2 protocol.
#![warn(missing_docs)]

//!
//! Layers: [`proto`] (framing, encoding, types) under [`transport`] (unix,
//! tcp, WebSocket) under [`client`] and [`server`]; [`ffi`] is the C ABI
//! over the client. `docs/architecture.md` has the map.

pub mod buffer;
pub mod client;
pub mod ffi;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod proto;
pub mod server;
pub mod shm;
pub mod transport;
pub mod vm;

// The protocol modules at the crate root too: `dime::wire`, `dime::codec`
// … are the paths users, tests and benches already name.
pub use proto::{codec, layout, live, pattern, value, wire};
// Likewise the client's services: `dime::share`, `dime::tuple`.
pub use client::rpc;
pub use client::share;
pub use client::space as tuple;
pub use client::watch;

pub use client::{Client, Error};
pub use value::{Complex, ElemKind, Matrix, Value};
