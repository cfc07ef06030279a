//! Parallel file transfer through the broker, on remote calls.
//!
//! A *file server* ([`server::FileServer`]) provides a handful of
//! functions (`NAME.list`, `NAME.read`, `NAME.put_*`) for one directory
//! tree; clients [`download`] and [`upload`] through any number of
//! remote-call connections at once, each file cut into MiB-sized pieces
//! that travel as plain calls, several in flight per connection.
//!
//! Every piece is checked against the sender's BLAKE3 hash of it when it
//! arrives; the pieces' hashes combine into the file's BLAKE3 hash (the
//! value `b3sum` prints). A file is written under a temporary name next
//! to its final one and renamed when complete, and a sidecar manifest of
//! verified pieces lets a rerun resume an interrupted transfer.
//! `docs/files.md` describes the functions, the resume format and the
//! safety rules.

pub mod client;

mod error;
pub mod hash;
pub mod manifest;
pub mod part;
pub mod paths;
pub mod select;
pub mod server;
pub mod wire;

pub use client::{Progress, Summary, TransferOptions, download, upload};
pub use error::Error;
pub use select::Selection;
pub use server::{FileServer, ServeOptions};

/// Result of file-transfer operations.
pub type Result<T> = std::result::Result<T, Error>;
