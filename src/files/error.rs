//! What can go wrong moving files, in kinds a caller can act on (and the
//! bindings map to their languages' usual exceptions).

use crate::client::rpc::CallError;
use std::fmt;
use std::io;

/// Why a transfer, or one file of it, failed. The message says which file
/// and what happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A file or directory does not exist, or a pattern matched nothing.
    NotFound(String),
    /// Refused: a path outside the served directory, or an upload to a
    /// read-only server.
    PermissionDenied(String),
    /// A malformed argument: a bad pattern, chunk size, or name.
    InvalidInput(String),
    /// Received bytes did not match the sender's BLAKE3 hash of them.
    Checksum(String),
    /// The source file changed while it was being sent: run again.
    Changed(String),
    /// A file-system error on either side.
    Io(String),
    /// No file server of that name answered on the broker.
    NoServer(String),
    /// The broker or the file server went away.
    Connection(String),
    /// The progress callback asked to stop.
    Cancelled,
}

impl Error {
    /// The error type name a file server replies with, as Python spells
    /// the built-in exception closest to it (the bindings raise those).
    pub fn type_name(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "FileNotFoundError",
            Error::PermissionDenied(_) => "PermissionError",
            Error::InvalidInput(_) => "ValueError",
            Error::Checksum(_) => "ChecksumError",
            Error::Changed(_) => "FileChangedError",
            Error::Io(_) => "OSError",
            Error::NoServer(_) => "NoServer",
            Error::Connection(_) => "ConnectionError",
            Error::Cancelled => "Cancelled",
        }
    }

    /// The error a file server described with `type_name` and `message`.
    pub fn from_remote(type_name: &str, message: String) -> Error {
        match type_name {
            "FileNotFoundError" => Error::NotFound(message),
            "PermissionError" => Error::PermissionDenied(message),
            "ValueError" => Error::InvalidInput(message),
            "ChecksumError" => Error::Checksum(message),
            "FileChangedError" => Error::Changed(message),
            _ => Error::Io(message),
        }
    }

    /// The message alone, without the kind.
    pub fn message(&self) -> &str {
        match self {
            Error::NotFound(m)
            | Error::PermissionDenied(m)
            | Error::InvalidInput(m)
            | Error::Checksum(m)
            | Error::Changed(m)
            | Error::Io(m)
            | Error::NoServer(m)
            | Error::Connection(m) => m,
            Error::Cancelled => "the transfer was cancelled",
        }
    }

    /// True for errors that end the whole transfer, not just one file.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::Connection(_) | Error::NoServer(_) | Error::Cancelled
        )
    }

    /// A local file-system error about `path`.
    pub fn io(path: impl fmt::Display, e: &io::Error) -> Error {
        let m = format!("{path}: {e}");
        match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(m),
            io::ErrorKind::PermissionDenied => Error::PermissionDenied(m),
            _ => Error::Io(m),
        }
    }

    /// The error a failed remote call means; `what` names the call's
    /// file server for the messages that need it.
    pub fn from_call(e: CallError, what: &str) -> Error {
        match e {
            CallError::Remote {
                error_type,
                message,
                ..
            } => Error::from_remote(&error_type, message),
            CallError::NoProvider(_) => Error::NoServer(format!(
                "no file server '{what}' answered on the broker (is `dime files serve` running?)"
            )),
            CallError::ProviderLost(m) => {
                Error::Connection(format!("the file server '{what}' went away: {m}"))
            }
            CallError::Cancelled => Error::Cancelled,
            CallError::Connection(m) | CallError::Refused(m) => Error::Connection(m),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Error {}

impl From<crate::client::Error> for Error {
    fn from(e: crate::client::Error) -> Error {
        match e {
            crate::client::Error::InvalidArgument(m) => Error::InvalidInput(m),
            other => Error::Connection(other.to_string()),
        }
    }
}
