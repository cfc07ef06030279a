//! The data directory's file formats, byte by byte (docs/protocol-extensions.md,
//! "Durability"): the append-only log and the snapshot. Pure encoding and
//! checking; which files exist and when they are written is `persist`'s job.
//!
//! Log file `log.GEN`: a header, then records, each
//! `[u64 LE body length][u32 LE crc32 of body][body]`, the body being
//! `[u8 service tag][the service's bincode record]`. Snapshot file
//! `snapshot.bin`: a header, then `[u64 LE body length][u32 LE crc32][body]`,
//! the body being the bincode [`Image`].
//!
//! Checksums are CRC-32 (crc32fast): what a log must survive is a torn
//! write or a flipped bit, which a CRC detects; it costs 4 bytes a record
//! and runs at memory speed on short records, where a cryptographic hash
//! (blake3: 32 bytes, and slower on the small records most writes are)
//! would guard against a forger, who could rewrite the checksum anyway.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::Path;

/// The on-disk format version this build reads and writes. Files of
/// another version are refused, never guessed at.
pub const FORMAT_VERSION: u32 = 1;

/// First bytes of a log file.
pub const LOG_MAGIC: &[u8; 8] = b"DIMELOG\n";
/// First bytes of a snapshot file.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"DIMESNAP";
/// Bytes of a log header: magic, version, generation, instance, crc32.
pub const LOG_HEADER_LEN: u64 = 8 + 4 + 8 + 8 + 4;
/// Bytes before each record's body: length and checksum.
pub const RECORD_HEAD_LEN: u64 = 8 + 4;

/// The bincode configuration of every record and snapshot body.
pub fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Appends one framed record (`tag`, then whatever `body` writes) to `buf`.
pub fn append_record(
    buf: &mut Vec<u8>,
    tag: u8,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    let start = buf.len();
    buf.extend_from_slice(&[0; RECORD_HEAD_LEN as usize]);
    buf.push(tag);
    if let Err(e) = body(buf) {
        buf.truncate(start);
        return Err(e);
    }
    let body_start = start + RECORD_HEAD_LEN as usize;
    let len = (buf.len() - body_start) as u64;
    let crc = crc32fast::hash(&buf[body_start..]);
    buf[start..start + 8].copy_from_slice(&len.to_le_bytes());
    buf[start + 8..body_start].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// A log file's header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogHeader {
    /// The log's generation (also in its file name).
    pub generation: u64,
    /// The data directory's identity, the same in every file of it.
    pub instance: u64,
}

impl LogHeader {
    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(LOG_HEADER_LEN as usize);
        b.extend_from_slice(LOG_MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&self.generation.to_le_bytes());
        b.extend_from_slice(&self.instance.to_le_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }
}

/// Why a file could not be read.
#[derive(Debug)]
pub enum FormatError {
    /// Not one of our files at all.
    NotOurs(String),
    /// Ours, but written by another format version.
    Version(u32),
    /// Damaged: a checksum or length does not hold.
    Damaged(String),
    /// The header is cut short (a crash right after the file was made).
    ShortHeader,
    /// Reading failed.
    Io(io::Error),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::NotOurs(m) | FormatError::Damaged(m) => f.write_str(m),
            FormatError::Version(v) => write!(
                f,
                "it was written in data format version {v}, and this dime reads version \
                 {FORMAT_VERSION} only; refusing to misread it (run the dime that wrote it, \
                 or move the data directory aside)"
            ),
            FormatError::ShortHeader => f.write_str("its header is cut short"),
            FormatError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for FormatError {
    fn from(e: io::Error) -> FormatError {
        FormatError::Io(e)
    }
}

/// Reads and checks a log header from the start of `bytes`.
pub fn read_log_header(bytes: &[u8]) -> Result<LogHeader, FormatError> {
    if bytes.len() < 8 || &bytes[..8] != LOG_MAGIC {
        if bytes.len() < 8 && LOG_MAGIC.starts_with(bytes) {
            return Err(FormatError::ShortHeader);
        }
        return Err(FormatError::NotOurs("it is not a dime log".into()));
    }
    if bytes.len() < 12 {
        return Err(FormatError::ShortHeader);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(FormatError::Version(version));
    }
    if (bytes.len() as u64) < LOG_HEADER_LEN {
        return Err(FormatError::ShortHeader);
    }
    let n = LOG_HEADER_LEN as usize;
    let crc = u32::from_le_bytes(bytes[n - 4..n].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[..n - 4]) != crc {
        return Err(FormatError::Damaged("its header fails its checksum".into()));
    }
    Ok(LogHeader {
        generation: u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")),
        instance: u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes")),
    })
}

/// One record read back from a log.
pub struct Record<'a> {
    /// Offset of the record's head in the file.
    pub offset: u64,
    /// The service tag.
    pub tag: u8,
    /// The service's own bytes.
    pub body: &'a [u8],
}

/// Where a log stops being readable, when it does not end cleanly.
#[derive(Debug, Clone, PartialEq)]
pub struct BadTail {
    /// Offset of the first byte that is not part of a whole, intact record.
    pub offset: u64,
    /// Bytes from there to the end of the file.
    pub dropped: u64,
    /// What is wrong there.
    pub why: String,
}

/// Walks the records of a log's bytes (after its header), stopping at the
/// first that is cut short or fails its checksum.
pub struct Records<'a> {
    bytes: &'a [u8],
    at: usize,
    tail: Option<BadTail>,
}

impl<'a> Records<'a> {
    /// Records of `bytes`, a whole log file including its header.
    pub fn new(bytes: &'a [u8]) -> Records<'a> {
        Records {
            bytes,
            at: LOG_HEADER_LEN as usize,
            tail: None,
        }
    }

    /// Offset just past the last good record read so far.
    pub fn good_end(&self) -> u64 {
        self.at as u64
    }

    /// The unreadable tail, once iteration found one.
    pub fn bad_tail(&self) -> Option<&BadTail> {
        self.tail.as_ref()
    }

    fn stop(&mut self, why: String) -> Option<Record<'a>> {
        self.tail = Some(BadTail {
            offset: self.at as u64,
            dropped: (self.bytes.len() - self.at) as u64,
            why,
        });
        None
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        if self.tail.is_some() || self.at >= self.bytes.len() {
            return None;
        }
        let rest = &self.bytes[self.at..];
        let head = RECORD_HEAD_LEN as usize;
        if rest.len() < head {
            return self.stop("a record's head is cut short".into());
        }
        let len = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        let crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
        if len == 0 {
            return self.stop("a record has length zero".into());
        }
        if len > (rest.len() - head) as u64 {
            return self.stop(format!(
                "a record of {len} bytes is cut short ({} present)",
                rest.len() - head
            ));
        }
        let body = &rest[head..head + len as usize];
        if crc32fast::hash(body) != crc {
            return self.stop("a record fails its checksum".into());
        }
        let offset = self.at as u64;
        self.at += head + len as usize;
        Some(Record {
            offset,
            tag: body[0],
            body: &body[1..],
        })
    }
}

/// The whole persisted state, as a snapshot holds it.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Image {
    /// The data directory's identity.
    pub instance: u64,
    /// The first log generation this snapshot does not include: recovery
    /// replays the logs from this one on.
    pub next_generation: u64,
    /// Each persisted service's own encoding of its state, by tag.
    pub sections: Vec<(u8, serde_bytes::ByteBuf)>,
}

/// Writes `image` to `path` (a temporary name: the caller renames it into
/// place) and syncs it to disk; returns the file's size. The body is
/// streamed through the checksum, never copied whole.
pub fn write_snapshot(path: &Path, image: &Image) -> io::Result<u64> {
    /// Counts and checksums what passes through to the file.
    struct Summing<W> {
        inner: W,
        crc: crc32fast::Hasher,
        len: u64,
    }
    impl<W: Write> Write for Summing<W> {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = self.inner.write(b)?;
            self.crc.update(&b[..n]);
            self.len += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }
    let mut f = File::create(path)?;
    f.write_all(SNAPSHOT_MAGIC)?;
    f.write_all(&FORMAT_VERSION.to_le_bytes())?;
    f.write_all(&[0; 12])?;
    let (len, crc) = {
        let mut w = Summing {
            inner: io::BufWriter::with_capacity(1 << 20, &f),
            crc: crc32fast::Hasher::new(),
            len: 0,
        };
        bincode::serde::encode_into_std_write(image, &mut w, bincode_config())
            .map_err(|e| io::Error::other(format!("cannot write the snapshot: {e}")))?;
        w.flush()?;
        (w.len, w.crc.clone().finalize())
    };
    f.seek(io::SeekFrom::Start(12))?;
    f.write_all(&len.to_le_bytes())?;
    f.write_all(&crc.to_le_bytes())?;
    f.sync_all()?;
    Ok(24 + len)
}

/// Reads and checks the snapshot at `path`.
pub fn read_snapshot(path: &Path) -> Result<Image, FormatError> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    if bytes.len() < 8 || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(FormatError::NotOurs("it is not a dime snapshot".into()));
    }
    if bytes.len() < 12 {
        return Err(FormatError::Damaged("it is cut short".into()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(FormatError::Version(version));
    }
    if bytes.len() < 24 {
        return Err(FormatError::Damaged("it is cut short".into()));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    let body = &bytes[24..];
    if body.len() as u64 != len {
        return Err(FormatError::Damaged(format!(
            "it should hold {len} bytes after its header and holds {}",
            body.len()
        )));
    }
    if crc32fast::hash(body) != crc {
        return Err(FormatError::Damaged("it fails its checksum".into()));
    }
    let (image, used) = bincode::serde::decode_from_slice::<Image, _>(body, bincode_config())
        .map_err(|e| FormatError::Damaged(format!("its contents do not decode: {e}")))?;
    if used != body.len() {
        return Err(FormatError::Damaged(
            "it has bytes after its contents".into(),
        ));
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(records: &[(u8, &[u8])]) -> Vec<u8> {
        let mut b = LogHeader {
            generation: 3,
            instance: 9,
        }
        .encode();
        for (tag, body) in records {
            append_record(&mut b, *tag, |buf| {
                buf.extend_from_slice(body);
                Ok(())
            })
            .unwrap();
        }
        b
    }

    #[test]
    fn records_round_trip() {
        let b = log_with(&[(1, b"abc"), (2, b""), (1, &[0u8; 300])]);
        assert_eq!(
            read_log_header(&b).unwrap(),
            LogHeader {
                generation: 3,
                instance: 9
            }
        );
        let mut r = Records::new(&b);
        let got: Vec<(u8, Vec<u8>)> = r.by_ref().map(|x| (x.tag, x.body.to_vec())).collect();
        assert_eq!(
            got,
            vec![(1, b"abc".to_vec()), (2, vec![]), (1, vec![0; 300])]
        );
        assert!(r.bad_tail().is_none());
        assert_eq!(r.good_end(), b.len() as u64);
    }

    #[test]
    fn every_cut_and_every_flipped_bit_is_caught() {
        let b = log_with(&[(1, b"first"), (1, b"second record")]);
        let first_end = LOG_HEADER_LEN + RECORD_HEAD_LEN + 6;
        for cut in LOG_HEADER_LEN as usize..b.len() {
            let mut r = Records::new(&b[..cut]);
            let n = r.by_ref().count();
            let tail = r.bad_tail();
            if cut as u64 == first_end || cut as u64 == LOG_HEADER_LEN {
                assert!(tail.is_none(), "cut at a record boundary {cut}");
            } else {
                let t = tail.expect("a cut record is reported");
                assert_eq!(t.offset + t.dropped, cut as u64);
                assert_eq!(t.offset, r.good_end());
            }
            assert!(n <= 1 || cut == b.len());
        }
        for byte in LOG_HEADER_LEN as usize..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[byte] ^= 1 << bit;
                let mut r = Records::new(&c);
                let n = r.by_ref().count();
                assert!(n < 2, "flip at {byte}.{bit} went unnoticed");
                assert!(r.bad_tail().is_some());
            }
        }
    }

    #[test]
    fn headers_of_other_versions_and_files_are_refused() {
        let mut b = log_with(&[]);
        assert!(matches!(
            read_log_header(&b[..5]),
            Err(FormatError::ShortHeader)
        ));
        assert!(matches!(
            read_log_header(&b[..20]),
            Err(FormatError::ShortHeader)
        ));
        b[8] = 7;
        assert!(matches!(read_log_header(&b), Err(FormatError::Version(7))));
        assert!(matches!(
            read_log_header(b"hello world, not a log at all"),
            Err(FormatError::NotOurs(_))
        ));
    }

    #[test]
    fn snapshots_round_trip_and_refuse_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let image = Image {
            instance: 5,
            next_generation: 8,
            sections: vec![(1, serde_bytes::ByteBuf::from(vec![1, 2, 3]))],
        };
        write_snapshot(&p, &image).unwrap();
        let back = read_snapshot(&p).unwrap();
        assert_eq!((back.instance, back.next_generation), (5, 8));
        assert_eq!(back.sections[0].1.as_ref(), &[1, 2, 3]);
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(read_snapshot(&p), Err(FormatError::Damaged(_))));
        bytes[last] ^= 1;
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let e = read_snapshot(&p).unwrap_err();
        assert!(matches!(e, FormatError::Version(2)));
        assert!(e.to_string().contains("version 2"), "{e}");
    }
}
