//! The sidecar that makes an interrupted transfer resumable: next to a
//! part file `.NAME.dime-part`, the manifest `.NAME.dime-part.manifest`
//! says which file the part belongs to and lists each piece written and
//! verified so far with its hash.
//!
//! ```text
//! dime-part 1
//! size 2147483648
//! mtime_ns 1712345678901234567
//! piece 1048576
//! 0 3b1e…(64 hex digits)
//! 7 90aa…
//! ```
//!
//! The header identifies the source version (size, modification time)
//! and the piece size; a manifest for another version is discarded with
//! its part. Piece lines are appended (one `write` each, `O_APPEND`)
//! only after the piece's bytes are in the part file, so a crash loses at
//! most the line being written; a torn last line is ignored. A resuming
//! transfer re-reads every listed piece from the part file and keeps only
//! those whose hash still matches.

use super::hash::{
    HASH_CHUNK, MAX_PIECES, PieceHash, from_hex, hex, piece_hash_in_file, piece_range, pieces,
};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Which version of which file a part holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// The source's size in bytes.
    pub size: u64,
    /// The source's modification time, in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// The piece size the part is written in.
    pub piece: u64,
}

impl Identity {
    fn header(&self) -> String {
        format!(
            "dime-part 1\nsize {}\nmtime_ns {}\npiece {}\n",
            self.size, self.mtime_ns, self.piece
        )
    }

    /// How many pieces the file has.
    pub fn pieces(&self) -> u64 {
        pieces(self.size, self.piece)
    }
}

/// An open manifest that verified pieces are recorded in.
pub struct Manifest {
    file: File,
}

impl Manifest {
    /// Starts a new manifest for `id` at `path` (replacing any), with no
    /// piece yet.
    pub fn create(path: &Path, id: &Identity) -> io::Result<Manifest> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        file.write_all(id.header().as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        Ok(Manifest { file })
    }

    /// Reopens an existing manifest to record more pieces.
    pub fn append(path: &Path) -> io::Result<Manifest> {
        let file = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        Ok(Manifest { file })
    }

    /// Records piece `index`, already written to the part, with its hash.
    pub fn record(&self, index: u64, hash: &PieceHash) -> io::Result<()> {
        // One write of one whole line: appends of this size land whole.
        let line = format!("{index} {}\n", hex(hash));
        (&self.file).write_all(line.as_bytes())
    }
}

/// The pieces recorded in the manifest at `path` for `id`, each checked
/// again against the bytes in `part`: one entry per piece, `Some(hash)`
/// where the part holds that piece intact. None when there is no
/// manifest, or it belongs to another version (start over).
pub fn verified_pieces(path: &Path, part: &File, id: &Identity) -> Option<Vec<Option<PieceHash>>> {
    let mut text = String::new();
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    // A manifest is 76 bytes a piece; anything far larger is not ours.
    let limit = 4096 + 80 * id.pieces();
    Read::by_ref(&mut f)
        .take(limit)
        .read_to_string(&mut text)
        .ok()?;
    let records = text.strip_prefix(&id.header())?;
    let n = id.pieces();
    // Never ours: no transfer cuts a file into more.
    if n > MAX_PIECES {
        return None;
    }
    let mut out: Vec<Option<PieceHash>> = vec![None; n as usize];
    // Only whole lines: the last may be torn by a crash.
    let whole = &records[..records.rfind('\n').map_or(0, |i| i + 1)];
    for line in whole.lines() {
        let Some((i, h)) = line.split_once(' ') else {
            continue;
        };
        let (Ok(i), Some(h)) = (i.parse::<u64>(), from_hex(h)) else {
            continue;
        };
        // The first record of a piece is the one checked.
        if let Some(slot @ None) = out.get_mut(i as usize) {
            *slot = Some(h);
        }
    }
    // In file order, so each checking thread reads a run of the part.
    let claimed: Vec<(u64, PieceHash)> = out
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.map(|h| (i as u64, h)))
        .collect();
    let bytes = claimed
        .iter()
        .map(|&(i, _)| piece_range(id.size, id.piece, i).1)
        .sum();
    let intact = check_pieces(part, id, &claimed, check_threads(bytes));
    for (&(i, _), ok) in claimed.iter().zip(intact) {
        if !ok {
            out[i as usize] = None;
        }
    }
    Some(out)
}

/// Bytes of pieces worth a thread of their own when checking.
const CHECK_BYTES_PER_THREAD: u64 = 16 << 20;

/// Threads to check `bytes` of pieces with: one per core for a large
/// file. The check runs when a transfer starts or commits, with nothing
/// else of that transfer waiting on the cores: a 2 GiB upload's commit
/// read its part in 0.78 s on one thread (whole pieces at a time), in
/// 0.36 s on two.
fn check_threads(bytes: u64) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min((bytes / CHECK_BYTES_PER_THREAD) as usize).max(1)
}

/// Whether each of the `claimed` pieces, with its hash, is intact in
/// `part`: read back and hashed on `threads` threads, each taking a run
/// of consecutive pieces.
fn check_pieces(
    part: &File,
    id: &Identity,
    claimed: &[(u64, PieceHash)],
    threads: usize,
) -> Vec<bool> {
    let check = |run: &[(u64, PieceHash)]| -> Vec<bool> {
        let mut buf = vec![0; HASH_CHUNK.min(id.piece as usize)];
        run.iter()
            .map(|(i, h)| {
                piece_hash_in_file(part, id.size, id.piece, *i, &mut buf).is_ok_and(|got| got == *h)
            })
            .collect()
    };
    if threads <= 1 || claimed.len() <= 1 {
        return check(claimed);
    }
    let per = claimed.len().div_ceil(threads);
    std::thread::scope(|s| {
        let runs: Vec<_> = claimed
            .chunks(per)
            .map(|run| {
                let t = std::thread::Builder::new()
                    .name("dime-check".into())
                    .spawn_scoped(s, move || check(run));
                (run, t.ok())
            })
            .collect();
        runs.into_iter()
            .flat_map(|(run, t)| match t {
                // A thread that died checked nothing: its pieces are sent again.
                Some(t) => t.join().unwrap_or_else(|_| vec![false; run.len()]),
                // No thread to be had: this one checks the run.
                None => check(run),
            })
            .collect()
    })
}

/// The identity in the header of the manifest at `path`, if there is one.
pub fn identity_of(path: &Path) -> Option<Identity> {
    let mut head = [0u8; 160];
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let n = f.read_at(&mut head, 0).ok()?;
    let text = std::str::from_utf8(&head[..n]).ok()?;
    let mut lines = text.lines();
    if lines.next()? != "dime-part 1" {
        return None;
    }
    let mut field = |k: &str| {
        lines
            .next()?
            .strip_prefix(k)?
            .strip_prefix(' ')
            .map(str::to_owned)
    };
    let id = Identity {
        size: field("size")?.parse().ok()?,
        mtime_ns: field("mtime_ns")?.parse().ok()?,
        piece: field("piece")?.parse().ok()?,
    };
    (crate::files::hash::valid_piece_size(id.piece) && id.header().len() <= n).then_some(id)
}

/// True if the manifest at `path` is for `id` (its header matches).
pub fn is_for(path: &Path, id: &Identity) -> bool {
    let header = id.header();
    let mut buf = vec![0u8; header.len()];
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|f| f.read_exact_at(&mut buf, 0))
        .is_ok_and(|()| buf == header.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::hash::piece_hash;

    #[test]
    fn pieces_are_checked_alike_on_any_number_of_threads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p");
        // 11 pieces, the last short; each piece is read in several rounds.
        let piece = HASH_CHUNK as u64 * 2;
        let size = piece * 10 + 777;
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 253) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let part = File::open(&p).unwrap();
        let id = Identity {
            size,
            mtime_ns: 1,
            piece,
        };
        let hash = |i: u64| {
            let (o, n) = piece_range(size, piece, i);
            piece_hash(&data[o as usize..(o + n) as usize], size, piece, i)
        };
        // Pieces 3 and 9 were recorded with hashes their bytes do not have.
        let claimed: Vec<_> = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10]
            .iter()
            .map(|&i| {
                (
                    i,
                    if i == 3 || i == 9 {
                        hash(i - 1)
                    } else {
                        hash(i)
                    },
                )
            })
            .collect();
        let want: Vec<bool> = claimed.iter().map(|&(i, _)| i != 3 && i != 9).collect();
        for threads in [1, 2, 3, 4, 20] {
            assert_eq!(
                check_pieces(&part, &id, &claimed, threads),
                want,
                "{threads} threads"
            );
        }
        assert_eq!(check_threads(0), 1);
        assert!(check_threads(u64::MAX) >= 1);
    }

    #[test]
    fn records_survive_reopen_and_are_rechecked() {
        let dir = tempfile::tempdir().unwrap();
        let (m, p) = (dir.path().join("m"), dir.path().join("p"));
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let id = Identity {
            size: 5000,
            mtime_ns: 7,
            piece: 1024,
        };
        std::fs::write(&p, &data).unwrap();
        let part = File::open(&p).unwrap();
        let hash = |i: u64| {
            let (o, n) = piece_range(5000, 1024, i);
            piece_hash(&data[o as usize..(o + n) as usize], 5000, 1024, i)
        };
        let man = Manifest::create(&m, &id).unwrap();
        man.record(0, &hash(0)).unwrap();
        man.record(4, &hash(4)).unwrap();
        // A piece recorded with a hash its bytes do not have is dropped.
        man.record(2, &hash(3)).unwrap();
        drop(man);
        Manifest::append(&m).unwrap().record(1, &hash(1)).unwrap();
        // A torn last line is ignored.
        OpenOptions::new()
            .append(true)
            .open(&m)
            .unwrap()
            .write_all(b"3 abc")
            .unwrap();
        let got = verified_pieces(&m, &part, &id).unwrap();
        assert_eq!(
            got,
            vec![Some(hash(0)), Some(hash(1)), None, None, Some(hash(4))]
        );
        // Another version of the source: start over.
        let other = Identity { mtime_ns: 8, ..id };
        assert!(verified_pieces(&m, &part, &other).is_none());
        assert!(verified_pieces(&dir.path().join("none"), &part, &id).is_none());
        assert_eq!(identity_of(&m), Some(id));
        assert!(is_for(&m, &id) && !is_for(&m, &other));
        assert_eq!(identity_of(&p), None);
    }
}
