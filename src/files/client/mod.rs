//! The client side of file transfer: [`download`] and [`upload`] move
//! the files a [`Selection`] names through N connections to the broker,
//! several pieces in flight on each, and report progress to a callback
//! on the calling thread.

mod download;
mod engine;
mod link;
mod pool;
mod upload;

use super::hash::{DEFAULT_PIECE, valid_piece_size};
use super::{Error, Result};
use std::time::Duration;

pub use download::download;
pub use engine::Progress;
pub use upload::upload;

/// How a transfer runs.
#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// Connections to the broker, used at once.
    pub connections: usize,
    /// Calls in flight on each connection.
    pub in_flight: usize,
    /// Piece size in bytes: a power of two from 1 KiB to 64 MiB. Files
    /// up to this size travel in one call.
    pub piece: u64,
    /// How long to wait for the file server to answer at all (also how
    /// long to keep retrying to reach the broker).
    pub wait_for_server: Duration,
    /// How often the progress callback is called.
    pub progress_interval: Duration,
}

impl Default for TransferOptions {
    fn default() -> TransferOptions {
        TransferOptions {
            connections: 4,
            in_flight: 3,
            piece: DEFAULT_PIECE,
            wait_for_server: Duration::from_secs(5),
            progress_interval: Duration::from_millis(100),
        }
    }
}

impl TransferOptions {
    fn check(&self) -> Result<()> {
        if !valid_piece_size(self.piece) {
            return Err(Error::InvalidInput(format!(
                "piece size {} is not a power of two from 1 KiB to 64 MiB",
                self.piece
            )));
        }
        if self.connections == 0 || self.connections > 256 {
            return Err(Error::InvalidInput(format!(
                "{} connections: use 1 to 256",
                self.connections
            )));
        }
        if self.in_flight == 0 || self.in_flight > 64 {
            return Err(Error::InvalidInput(format!(
                "{} calls in flight per connection: use 1 to 64",
                self.in_flight
            )));
        }
        Ok(())
    }
}

/// What a finished transfer did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Files that arrived in this run.
    pub files: u64,
    /// Files already complete at the destination (same size and
    /// modification time), not sent again.
    pub skipped: u64,
    /// Bytes sent in this run.
    pub bytes: u64,
    /// Bytes of interrupted transfers' verified pieces, not sent again.
    pub resumed: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// The progress callback: called on the calling thread every
/// [`TransferOptions::progress_interval`] and once at the end; returning
/// false cancels the transfer (it then fails with [`Error::Cancelled`],
/// leaving part files to resume from).
pub type ProgressFn<'a> = &'a mut dyn FnMut(&Progress) -> bool;
