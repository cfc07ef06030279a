//! The C ABI (`include/dime.h`): a thin layer over [`crate::client`] and
//! [`crate::value`] that only converts, validates and catches panics.
//!
//! Conventions, true of every function here:
//! - Every fallible call returns a `dime_status`; outputs come last and are
//!   written only on `DIME_STATUS_OK`; the reason for a failure is in
//!   `dime_last_error()` (per thread), the OS's errno behind it, if any, in
//!   `dime_last_errno()`.
//! - NULL pointers give `DIME_STATUS_NULL_ARGUMENT` (free functions accept
//!   NULL and do nothing) unless a doc comment gives NULL a meaning (the
//!   default share or space name, the whole-share lock, "absent" in
//!   `share_cas`); no panic crosses into C.
//! - Anything from a `*_new*`, `*_take`, `dime_connect`, `dime_sync`,
//!   `dime_sync_encoded`, `dime_value_encode` or `dime_devices`, and every
//!   value written through a `dime_value **`
//!   output (`share_get`, `dime_in` …), is owned by the caller and has
//!   a matching free function; pointers written through a
//!   `const dime_value **` output (`*_get`/`*_at` accessors of values and
//!   messages) and from `dime_matrix_*` accessors are borrowed from their
//!   owner.

// Exports take raw pointers from C and dereference them after NULL checks;
// C cannot see a Rust `unsafe`, so each function's doc comment states the
// pointer contract instead.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

// The declaration order below is the order of the generated header
// (cbindgen follows it), so it reads from the basics to the client; the
// blank lines keep rustfmt from sorting the groups.
pub mod status;

pub mod version;

pub mod value;

pub mod matrix;

pub mod container;

pub mod client;

pub mod messages;

pub mod encoded;

pub mod share;

pub mod space;

pub mod rpc;

pub mod stream;

pub mod server;

pub mod files;
pub mod watch;

mod args;
mod sigpipe;
