//! BLAKE3 over pieces: each piece of a file is hashed on its own (by the
//! sender as it reads it, by the receiver as it arrives), and the pieces'
//! hashes combine into the hash of the whole file, equal to
//! `blake3::hash` of its bytes.
//!
//! BLAKE3 is a tree over 1 KiB chunks whose left subtrees hold the largest
//! power of two of chunks; a piece whose size is a power of two of at
//! least 1 KiB, at a multiple of that size, is one of its subtrees. So a
//! piece's *chaining value* (the hazmat API) is computed from the piece
//! and its offset alone, and the file hash is the same left-leaning merge
//! over the pieces. A file of one piece has no subtrees: its piece hash
//! is the file's hash.

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The hash of one piece (32 bytes).
pub type PieceHash = [u8; 32];

/// Smallest piece size allowed (one BLAKE3 chunk).
pub const MIN_PIECE: u64 = 1 << 10;
/// Largest piece size allowed: what one call may carry.
pub const MAX_PIECE: u64 = 64 << 20;
/// The default piece size: 2 MiB, where 1 MiB spent a tenth more of the
/// server's CPU time on per-piece work (a 2 GB download over loopback TCP
/// ran about 3% faster), and a resume still redoes at most 2 MiB a piece.
pub const DEFAULT_PIECE: u64 = 2 << 20;

/// Most pieces one file is cut into. Whoever checks a file keeps a hash
/// per piece (a file server, 33 bytes a piece while it checks an
/// upload), so no size a peer claims can make it allocate more than
/// about 35 MB. At the default 2 MiB a piece that is a file of 2 TiB;
/// larger files take larger pieces ([`piece_for`]), up to 64 TiB.
pub const MAX_PIECES: u64 = 1 << 20;

/// The piece size for a file of `len` bytes: `wanted`, or the smallest
/// larger valid size that cuts it into at most [`MAX_PIECES`] pieces
/// ([`MAX_PIECE`] for a file too large for any).
pub fn piece_for(len: u64, wanted: u64) -> u64 {
    let mut piece = wanted;
    while pieces(len, piece) > MAX_PIECES && piece < MAX_PIECE {
        piece *= 2;
    }
    piece
}

/// True for a usable piece size: a power of two from 1 KiB to 64 MiB.
pub fn valid_piece_size(piece: u64) -> bool {
    piece.is_power_of_two() && (MIN_PIECE..=MAX_PIECE).contains(&piece)
}

/// How many pieces a file of `len` bytes is cut into (an empty file is
/// one empty piece).
pub fn pieces(len: u64, piece: u64) -> u64 {
    len.div_ceil(piece).max(1)
}

/// Offset and length of piece `index`.
pub fn piece_range(len: u64, piece: u64, index: u64) -> (u64, u64) {
    let off = index * piece;
    (off, piece.min(len.saturating_sub(off)))
}

/// The hash of piece `index` of a file of `len` bytes, given its bytes:
/// the file's BLAKE3 hash if it is the only piece, else the chaining
/// value of its subtree.
pub fn piece_hash(data: &[u8], len: u64, piece: u64, index: u64) -> PieceHash {
    let mut h = PieceHasher::new(len, piece, index);
    h.update(data);
    h.finish()
}

/// Hashes piece `index` of a file of `len` bytes fed in parts, so a piece
/// can be hashed from a small buffer that stays in the CPU cache instead
/// of being held whole; gives what [`piece_hash`] gives for its bytes.
pub struct PieceHasher {
    hasher: blake3::Hasher,
    /// The piece is the whole file: its hash is the root's.
    root: bool,
}

impl PieceHasher {
    /// A hasher for piece `index` of a file of `len` bytes cut in `piece`s.
    pub fn new(len: u64, piece: u64, index: u64) -> PieceHasher {
        let mut hasher = blake3::Hasher::new();
        let root = pieces(len, piece) == 1;
        if !root {
            hasher.set_input_offset(index * piece);
        }
        PieceHasher { hasher, root }
    }

    /// Feeds the piece's next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
    }

    /// The piece's hash.
    pub fn finish(&self) -> PieceHash {
        if self.root {
            *self.hasher.finalize().as_bytes()
        } else {
            self.hasher.finalize_non_root()
        }
    }
}

/// Bytes read and hashed at a time when a piece is hashed from its file:
/// small enough to stay in a core's cache from the read to the hash.
pub const HASH_CHUNK: usize = 256 << 10;

/// The hash of piece `index` of `file` (`len` bytes cut in `piece`s),
/// read into `buf` a buffer-full at a time ([`HASH_CHUNK`] bytes suit).
pub fn piece_hash_in_file(
    file: &File,
    len: u64,
    piece: u64,
    index: u64,
    buf: &mut [u8],
) -> io::Result<PieceHash> {
    let (off, n) = piece_range(len, piece, index);
    if buf.is_empty() && n > 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no buffer to read into",
        ));
    }
    let mut h = PieceHasher::new(len, piece, index);
    let mut done = 0;
    while done < n {
        let k = (n - done).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..k], off + done)?;
        h.update(&buf[..k]);
        done += k as u64;
    }
    Ok(h.finish())
}

/// The file's BLAKE3 hash from its pieces' hashes, in order (as many as
/// [`pieces`] says).
pub fn file_hash(hashes: &[PieceHash]) -> blake3::Hash {
    match hashes {
        [] => blake3::hash(b""),
        [one] => blake3::Hash::from_bytes(*one),
        _ => {
            let (l, r) = split(hashes);
            merge_subtrees_root(&merge(l), &merge(r), Mode::Hash)
        }
    }
}

/// The chaining value of a run of pieces that is a subtree.
fn merge(hashes: &[PieceHash]) -> ChainingValue {
    if let [one] = hashes {
        return *one;
    }
    let (l, r) = split(hashes);
    merge_subtrees_non_root(&merge(l), &merge(r), Mode::Hash)
}

/// BLAKE3's split: the left subtree takes the largest power of two of
/// pieces that leaves at least one on the right.
fn split(hashes: &[PieceHash]) -> (&[PieceHash], &[PieceHash]) {
    let n = hashes.len();
    let left = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
    hashes.split_at(left)
}

/// Lower-case hex of a hash, as `b3sum` prints it.
pub fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash whose hex is `s`.
pub fn from_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_hashed_from_its_file_through_any_buffer_is_the_piece_hashed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let (len, piece) = (5000u64, 1024u64);
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let file = File::open(&p).unwrap();
        for index in 0..pieces(len, piece) {
            let (o, n) = piece_range(len, piece, index);
            let want = piece_hash(&data[o as usize..(o + n) as usize], len, piece, index);
            for size in [3, 1024, HASH_CHUNK] {
                let got = piece_hash_in_file(&file, len, piece, index, &mut vec![0; size]);
                assert_eq!(got.unwrap(), want, "piece {index}, buffer {size}");
            }
        }
        assert!(piece_hash_in_file(&file, len, piece, 0, &mut []).is_err());
        // A file shorter than its listed size fails, as a file cut short.
        let e = piece_hash_in_file(&file, len + piece, piece, 5, &mut [0; 64]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_large_file_takes_pieces_large_enough_for_the_most_pieces() {
        let gib = 1u64 << 30;
        // At most 2 TiB in 2 MiB pieces: as asked.
        assert_eq!(piece_for(2048 * gib, DEFAULT_PIECE), DEFAULT_PIECE);
        assert_eq!(piece_for(0, MIN_PIECE), MIN_PIECE);
        // One byte more takes twice the size.
        assert_eq!(piece_for(2048 * gib + 1, DEFAULT_PIECE), 2 * DEFAULT_PIECE);
        assert_eq!(piece_for(10 * gib, MIN_PIECE), 16 << 10);
        for len in [gib, 3000 * gib, 64 * 1024 * gib] {
            let p = piece_for(len, MIN_PIECE);
            assert!(
                valid_piece_size(p) && pieces(len, p) <= MAX_PIECES,
                "{len}: {p}"
            );
            assert!(
                p == MIN_PIECE || pieces(len, p / 2) > MAX_PIECES,
                "{len}: {p} is not the smallest"
            );
        }
        // Beyond 64 TiB no size is enough: the largest, which checkers refuse.
        let p = piece_for(u64::MAX, DEFAULT_PIECE);
        assert_eq!(p, MAX_PIECE);
        assert!(pieces(u64::MAX, p) > MAX_PIECES);
    }

    fn by_pieces(data: &[u8], piece: u64) -> blake3::Hash {
        let len = data.len() as u64;
        let hashes: Vec<PieceHash> = (0..pieces(len, piece))
            .map(|i| {
                let (off, n) = piece_range(len, piece, i);
                piece_hash(&data[off as usize..(off + n) as usize], len, piece, i)
            })
            .collect();
        file_hash(&hashes)
    }

    /// The merged hash is BLAKE3 of the whole file for every size around
    /// the piece and tree boundaries.
    #[test]
    fn pieces_combine_to_the_file_hash() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for piece in [1024u64, 2048, 8192] {
            let mut sizes = vec![0, 1, 1023, 1024, 1025];
            for k in 1..=9u64 {
                sizes.extend([k * piece - 1, k * piece, k * piece + 1]);
            }
            sizes.push(data.len() as u64);
            for n in sizes {
                let d = &data[..n as usize];
                assert_eq!(
                    by_pieces(d, piece),
                    blake3::hash(d),
                    "size {n}, piece {piece}"
                );
            }
        }
    }

    /// A piece fed in uneven parts hashes as the piece does whole.
    #[test]
    fn a_piece_hashed_in_parts_is_the_piece_hashed_whole() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 13 + i / 7) as u8).collect();
        for (len, piece) in [(20_000u64, 4096u64), (3000, 4096), (8192, 8192)] {
            for index in 0..pieces(len, piece) {
                let (off, n) = piece_range(len, piece, index);
                let bytes = &data[off as usize..(off + n) as usize];
                let mut h = PieceHasher::new(len, piece, index);
                for part in bytes.chunks(1000) {
                    h.update(part);
                }
                assert_eq!(h.finish(), piece_hash(bytes, len, piece, index));
            }
        }
        // The single piece of a file is the file's own hash.
        assert_eq!(
            piece_hash(&data[..3000], 3000, 4096, 0),
            *blake3::hash(&data[..3000]).as_bytes()
        );
    }

    #[test]
    fn piece_sizes_and_hex() {
        assert!(valid_piece_size(1 << 20));
        assert!(!valid_piece_size(1000) && !valid_piece_size(512) && !valid_piece_size(128 << 20));
        assert_eq!(pieces(0, 1024), 1);
        assert_eq!(pieces(2049, 1024), 3);
        assert_eq!(piece_range(2049, 1024, 2), (2048, 1));
        let h = *blake3::hash(b"x").as_bytes();
        assert_eq!(from_hex(&hex(&h)), Some(h));
        assert_eq!(from_hex("zz"), None);
    }
}
