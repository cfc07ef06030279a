//! Durability settings: where state is kept and how hard the server
//! tries to have it on disk before answering.

use std::path::PathBuf;
use std::str::FromStr;

/// When the log is forced to disk (Redis's `appendfsync` policies). Every
/// policy writes the log to the operating system before any reply leaves,
/// so a killed server loses nothing it acknowledged; the policies differ
/// when the machine itself goes down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Before any reply leaves, once per round of requests (group commit):
    /// every acknowledged write survives a power cut.
    Always,
    /// About once a second, off the event loop: a power cut loses at most
    /// about the last second.
    #[default]
    EverySec,
    /// Never: the operating system writes back when it chooses.
    No,
}

impl FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<FsyncPolicy, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "everysec" => Ok(FsyncPolicy::EverySec),
            "no" => Ok(FsyncPolicy::No),
            _ => Err(format!(
                "'{s}' is not an fsync policy (always, everysec or no)"
            )),
        }
    }
}

/// Default log size past which it is rewritten into a snapshot.
pub const DEFAULT_REWRITE_AFTER: u64 = 64 << 20;

/// Where and how shares and tuple spaces are persisted.
#[derive(Clone, Debug)]
pub struct Durability {
    /// The data directory.
    pub dir: PathBuf,
    /// When the log is forced to disk.
    pub fsync: FsyncPolicy,
    /// Rewrite the log into a snapshot once it is this large (and at least
    /// as large as the last snapshot, so a big data set is not rewritten
    /// over and over).
    pub rewrite_after: u64,
}

impl Durability {
    /// Settings for `dir` with the default policy and rewrite size.
    pub fn new(dir: impl Into<PathBuf>) -> Durability {
        Durability {
            dir: dir.into(),
            fsync: FsyncPolicy::default(),
            rewrite_after: DEFAULT_REWRITE_AFTER,
        }
    }
}
