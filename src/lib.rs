//! dime: a broker and client library for sharing typed data between
//! MATLAB, C, Python and JavaScript processes, speaking the DiME2 protocol.
#![warn(missing_docs)]

pub mod buffer;
pub mod client;
pub mod codec;
pub mod ffi;
pub mod pattern;
pub mod server;
pub mod share;
pub mod transport;
pub mod tuple;
pub mod value;
pub mod wire;

pub use client::{Client, Error};
pub use value::{Complex, ElemKind, Matrix, Value};
