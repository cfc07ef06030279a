//! DiME framing (docs/protocol.md §1): `DiME`, u32 JSON length, u32 payload
//! length (big-endian), the JSON header, the payload. [`FrameReader`] parses
//! frames incrementally from reads of any size.

use crate::buffer::PooledBuf;
use crate::live::{LivePayload, LiveWriter};
use crate::shm::SharedPayload;
use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;

/// The four magic bytes that open every frame.
pub const MAGIC: &[u8; 4] = b"DiME";
/// Bytes before the JSON header.
pub const PREFIX_LEN: usize = 12;
/// Largest JSON header accepted, whatever the message limit: headers are
/// small, and a huge one is an attack or a bug.
pub const MAX_JSON: usize = 64 << 20;
/// Bytes read per syscall into the staging buffer, once traffic is dense.
const STAGING: usize = 64 << 10;
/// The staging buffer's first size: an idle connection (a server may hold
/// ten thousand) costs this, not `STAGING`; it grows to `STAGING` as soon
/// as a read fills it.
const STAGING_FIRST: usize = 2 << 10;

/// One frame: its 12-byte prefix and JSON header kept as received, so the
/// server can relay it unchanged, and its payload.
#[derive(Debug)]
pub struct Frame {
    /// Prefix + JSON bytes.
    pub head: Vec<u8>,
    /// Binary payload (may be empty).
    pub payload: PooledBuf,
    /// A payload that came as a shared-memory descriptor instead of in the
    /// frame (its header says `"shm"`; see [`crate::shm`]), or why the one
    /// the header announced could not be taken.
    pub shm: Option<Result<Arc<SharedPayload>, String>>,
    /// A payload relayed while it arrives (see [`FrameReader::go_live`]),
    /// in place of `payload`, which is then empty.
    pub live: Option<Arc<LivePayload>>,
}

impl Frame {
    /// Builds a frame from a JSON header and a payload.
    pub fn new(json: &[u8], payload: PooledBuf) -> Frame {
        Frame {
            head: encode_head(json, payload.len()),
            payload,
            shm: None,
            live: None,
        }
    }

    /// The shared-memory payload, if this frame has a good one.
    pub fn shared(&self) -> Option<&Arc<SharedPayload>> {
        self.shm.as_ref().and_then(|s| s.as_ref().ok())
    }

    /// Bytes this frame stands for in a queue: on the wire plus in shared
    /// memory.
    pub fn queued_len(&self) -> usize {
        self.wire_len() + self.shared().map_or(0, |s| s.len())
    }

    /// The JSON header bytes.
    pub fn json(&self) -> &[u8] {
        &self.head[PREFIX_LEN..]
    }

    /// Total bytes on the wire (a live payload counts in full, as its
    /// header declares it).
    pub fn wire_len(&self) -> usize {
        self.head.len() + self.payload.len() + self.live.as_ref().map_or(0, |l| l.len())
    }
}

/// Largest JSON header or payload one frame can declare: the prefix
/// carries each length as a big-endian u32.
pub const MAX_FIELD_LEN: usize = u32::MAX as usize;

/// A frame length as the prefix's u32 field, or [`WireError::FieldTooLarge`]:
/// a silently truncated length would make the peer read the wrong number
/// of bytes and lose the stream.
pub fn field_len(what: &'static str, len: usize) -> Result<u32, WireError> {
    u32::try_from(len).map_err(|_| WireError::FieldTooLarge { what, len })
}

/// The JSON and payload lengths a frame's prefix declares, or
/// [`WireError::BadMagic`] if it does not start with `DiME`.
pub fn parse_prefix(prefix: &[u8; PREFIX_LEN]) -> Result<(usize, usize), WireError> {
    let magic: [u8; 4] = prefix[..4].try_into().expect("4 bytes");
    if &magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let len = |at: usize| u32::from_be_bytes(prefix[at..at + 4].try_into().expect("4 bytes"));
    Ok((len(4) as usize, len(8) as usize))
}

/// The prefix and JSON of a frame whose payload is `payload_len` bytes, or
/// an error if either length does not fit the prefix's u32 fields.
pub fn try_encode_head(json: &[u8], payload_len: usize) -> Result<Vec<u8>, WireError> {
    let json_len = field_len("JSON header", json.len())?;
    let payload_len = field_len("payload", payload_len)?;
    let mut head = Vec::with_capacity(PREFIX_LEN + json.len());
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&json_len.to_be_bytes());
    head.extend_from_slice(&payload_len.to_be_bytes());
    head.extend_from_slice(json);
    Ok(head)
}

/// The prefix and JSON of a frame whose payload is `payload_len` bytes.
///
/// For frames whose lengths are known to fit (the server's replies carry
/// small headers and payloads it received in frames of its own). Anything
/// built from a caller's value goes through [`try_encode_head`].
///
/// # Panics
/// If a length exceeds [`MAX_FIELD_LEN`]: wrapping it would desync the
/// stream for the peer, which is worse than failing here.
pub fn encode_head(json: &[u8], payload_len: usize) -> Vec<u8> {
    try_encode_head(json, payload_len).unwrap_or_else(|e| panic!("{e}"))
}

/// Why a byte stream is not a valid frame sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The first four bytes of a frame were not `DiME`.
    BadMagic([u8; 4]),
    /// The frame declares more bytes than the limit allows.
    TooLarge {
        /// Bytes the frame declared (JSON + payload).
        declared: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The JSON header alone is larger than [`MAX_JSON`].
    JsonTooLarge(usize),
    /// No memory could be had for a declared payload of this many bytes.
    OutOfMemory(usize),
    /// A frame to send has a JSON header or payload longer than its u32
    /// length field can say ([`MAX_FIELD_LEN`]).
    FieldTooLarge {
        /// Which part: "JSON header" or "payload".
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadMagic(m) => write!(f, "Invalid DiME message: bad magic {m:02X?}"),
            WireError::TooLarge { declared, limit } => write!(
                f,
                "Message too large: {declared} bytes declared, the limit (--max-message) is {limit}"
            ),
            WireError::FieldTooLarge { what, len } => write!(
                f,
                "frame {what} of {len} bytes is too large: a DiME frame carries at most \
                 {MAX_FIELD_LEN}"
            ),
            WireError::OutOfMemory(n) => write!(
                f,
                "Out of memory: cannot allocate the {n}-byte payload this message declares"
            ),
            WireError::JsonTooLarge(n) => {
                write!(
                    f,
                    "JSON header too large: {n} bytes, the limit is {MAX_JSON}"
                )
            }
        }
    }
}

impl std::error::Error for WireError {}

struct Partial {
    head: Vec<u8>,
    head_len: usize,
    body: Body,
    /// The head was offered for cut-through (see [`FrameReader::offer_head`]).
    offered: bool,
}

/// Where a partial frame's payload goes.
enum Body {
    /// A buffer of its own, handed over with the complete frame.
    Owned { buf: PooledBuf, filled: usize },
    /// A buffer already shared with recipients.
    Live(LiveWriter),
    /// A payload nobody will get any more (see
    /// [`FrameReader::discard_live`]): its bytes are read and dropped.
    Discard { len: usize, filled: usize },
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Owned { buf, .. } => buf.len(),
            Body::Live(w) => w.shared().len(),
            Body::Discard { len, .. } => *len,
        }
    }

    fn filled(&self) -> usize {
        match self {
            Body::Owned { filled, .. } => *filled,
            Body::Live(w) => w.filled_len(),
            Body::Discard { filled, .. } => *filled,
        }
    }

    /// Where the next bytes are read to directly; None for a payload
    /// being discarded (it is read through the staging buffer).
    fn spare(&mut self) -> Option<&mut [u8]> {
        match self {
            Body::Owned { buf, filled } => Some(&mut buf[*filled..]),
            Body::Live(w) => Some(w.spare()),
            Body::Discard { .. } => None,
        }
    }

    /// Counts `n` more bytes written into [`Body::spare`].
    fn advance(&mut self, n: usize) {
        match self {
            Body::Owned { filled, .. } => *filled += n,
            Body::Live(w) => w.advance(n),
            Body::Discard { filled, .. } => *filled += n,
        }
    }

    /// Takes `bytes`, the next ones of the payload.
    fn take(&mut self, bytes: &[u8]) {
        if let Some(spare) = self.spare() {
            spare[..bytes.len()].copy_from_slice(bytes);
        }
        self.advance(bytes.len());
    }
}

/// Incremental frame parser over a byte stream.
pub struct FrameReader {
    staging: Vec<u8>,
    start: usize,
    end: usize,
    partial: Option<Partial>,
    max_message: u64,
    /// Bytes the last `read_from` offered to the source.
    last_room: usize,
    /// The smallest payload whose head [`FrameReader::offer_head`] offers
    /// before the payload is in (usize::MAX: none).
    cut_min: usize,
}

impl FrameReader {
    /// A parser refusing frames whose JSON + payload exceed `max_message`.
    pub fn new(max_message: u64) -> FrameReader {
        FrameReader {
            staging: vec![0; STAGING_FIRST],
            start: 0,
            end: 0,
            partial: None,
            max_message,
            last_room: 0,
            cut_min: usize::MAX,
        }
    }

    /// Offers the heads of frames whose payload is at least `min_payload`
    /// bytes as soon as they are in ([`FrameReader::offer_head`]).
    pub fn set_cut_through(&mut self, min_payload: usize) {
        self.cut_min = min_payload;
    }

    /// True when a frame's head is complete and waits to be offered.
    pub fn has_head_to_offer(&self) -> bool {
        self.partial.as_ref().is_some_and(|p| {
            !p.offered && p.head.len() == p.head_len && p.body.len() >= self.cut_min
        })
    }

    /// The JSON header of a frame whose payload is still arriving, once:
    /// the caller may then relay the frame while it arrives
    /// ([`FrameReader::go_live`]); otherwise it completes as usual.
    pub fn offer_head(&mut self) -> Option<&[u8]> {
        if !self.has_head_to_offer() {
            return None;
        }
        let p = self.partial.as_mut()?;
        p.offered = true;
        Some(&p.head[PREFIX_LEN..])
    }

    /// The declared payload length of the frame being read (0 between
    /// frames).
    pub fn pending_payload_len(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.body.len())
    }

    /// Turns the frame whose head was just offered into one relayed while
    /// it arrives: the returned frame's payload is [`Frame::live`], filled
    /// by later reads. When it is complete, [`FrameReader::next_frame`]
    /// returns a frame with the same live payload (and no other): the
    /// mark that this frame has ended, in its place in the stream.
    pub fn go_live(&mut self) -> Option<Frame> {
        let p = self.partial.as_mut()?;
        if p.head.len() != p.head_len {
            return None;
        }
        let writer = match std::mem::replace(
            &mut p.body,
            Body::Owned {
                buf: PooledBuf::default(),
                filled: 0,
            },
        ) {
            Body::Owned { buf, filled } => LivePayload::start(buf, filled),
            Body::Live(w) => w,
            // Its relay was aborted: it never goes live again.
            discarded @ Body::Discard { .. } => {
                p.body = discarded;
                return None;
            }
        };
        let live = writer.shared().clone();
        p.body = Body::Live(writer);
        Some(Frame {
            head: p.head.clone(),
            payload: PooledBuf::default(),
            shm: None,
            live: Some(live),
        })
    }

    /// Gives up the payload of the live frame being read (its relay was
    /// aborted): it is marked aborted for its recipients, its buffer is
    /// theirs alone, and the rest of its bytes are read and dropped, with
    /// no frame for it; the frame after it is read as usual. False if no
    /// live frame is being read.
    pub fn discard_live(&mut self) -> bool {
        let Some(p) = self.partial.as_mut() else {
            return false;
        };
        if !matches!(p.body, Body::Live(_)) {
            return false;
        }
        let (len, filled) = (p.body.len(), p.body.filled());
        // Dropping the writer marks the payload aborted.
        p.body = Body::Discard { len, filled };
        true
    }

    /// True while a frame has been started but not completed.
    pub fn is_mid_frame(&self) -> bool {
        self.partial.is_some() || self.start != self.end
    }

    /// Appends bytes that arrived some other way (WebSocket, tests).
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = self.make_room();
            let n = room.len().min(bytes.len());
            room[..n].copy_from_slice(&bytes[..n]);
            self.end += n;
            bytes = &bytes[n..];
        }
    }

    fn make_room(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.staging.len() {
            if self.start > 0 {
                self.staging.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let len = self.staging.len();
                self.staging.resize(len * 2, 0);
            }
        }
        &mut self.staging[self.end..]
    }

    /// Performs one read from `src`; returns the bytes read (0 at end of
    /// stream). Large payloads are read straight into their final buffer.
    pub fn read_from<R: Read + ?Sized>(&mut self, src: &mut R) -> io::Result<usize> {
        if self.start == self.end {
            if let Some(p) = &mut self.partial {
                if p.head.len() == p.head_len && p.body.len() - p.body.filled() >= STAGING {
                    if let Some(spare) = p.body.spare() {
                        self.last_room = spare.len();
                        let n = src.read(spare)?;
                        p.body.advance(n);
                        return Ok(n);
                    }
                }
            }
        }
        let room = self.make_room();
        let offered = room.len();
        let n = src.read(room)?;
        self.last_room = offered;
        self.end += n;
        if n == offered && self.staging.len() < STAGING {
            // More is waiting: read it in larger pieces from now on.
            let grown = (self.staging.len() * 4).min(STAGING);
            self.staging.resize(grown, 0);
        }
        Ok(n)
    }

    /// True when the last read filled all the room it was offered, so more
    /// may be waiting; a short read means the source is drained for now.
    pub fn last_read_was_full(&self, n: usize) -> bool {
        n == self.last_room
    }

    /// The next complete frame, if the bytes so far hold one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        if self.partial.is_none() {
            if self.end - self.start < PREFIX_LEN {
                return Ok(None);
            }
            let prefix: &[u8; PREFIX_LEN] = self.staging[self.start..self.start + PREFIX_LEN]
                .try_into()
                .expect("PREFIX_LEN bytes");
            let (json_len, payload_len) = parse_prefix(prefix)?;
            let declared = json_len as u64 + payload_len as u64;
            if declared > self.max_message {
                return Err(WireError::TooLarge {
                    declared,
                    limit: self.max_message,
                });
            }
            if json_len > MAX_JSON {
                return Err(WireError::JsonTooLarge(json_len));
            }
            let payload =
                PooledBuf::try_with_len(payload_len).ok_or(WireError::OutOfMemory(payload_len))?;
            let mut head = Vec::with_capacity(PREFIX_LEN + json_len);
            head.extend_from_slice(prefix);
            self.start += PREFIX_LEN;
            self.partial = Some(Partial {
                head,
                head_len: PREFIX_LEN + json_len,
                body: Body::Owned {
                    buf: payload,
                    filled: 0,
                },
                offered: false,
            });
        }
        let p = self.partial.as_mut().unwrap();
        let avail = &self.staging[self.start..self.end];
        let want_head = p.head_len - p.head.len();
        let n = want_head.min(avail.len());
        p.head.extend_from_slice(&avail[..n]);
        let avail = &avail[n..];
        let m = (p.body.len() - p.body.filled()).min(avail.len());
        p.body.take(&avail[..m]);
        self.start += n + m;
        if p.head.len() == p.head_len && p.body.filled() == p.body.len() {
            let p = self.partial.take().unwrap();
            let (payload, live) = match p.body {
                Body::Owned { buf, .. } => (buf, None),
                Body::Live(w) => (PooledBuf::default(), Some(w.shared().clone())),
                // Over and answered already: on to the next frame.
                Body::Discard { .. } => return self.next_frame(),
            };
            return Ok(Some(Frame {
                head: p.head,
                payload,
                shm: None,
                live,
            }));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<u8> {
        let mut bytes = Vec::new();
        for (json, payload) in [
            (&br#"{"command":"sync","n":-1}"#[..], &b""[..]),
            (&br#"{"command":"send","name":"g"}"#[..], &[7u8; 300][..]),
            (&br#"{}"#[..], &b"x"[..]),
        ] {
            let f = Frame::new(json, PooledBuf::from_vec(payload.to_vec()));
            bytes.extend_from_slice(&f.head);
            bytes.extend_from_slice(&f.payload);
        }
        bytes
    }

    fn parse_all(r: &mut FrameReader) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            out.push((f.json().to_vec(), f.payload.to_vec()));
        }
        out
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let bytes = frames();
        let mut whole = FrameReader::new(u64::MAX);
        whole.feed(&bytes);
        let expected = parse_all(&mut whole);
        assert_eq!(expected.len(), 3);
        assert_eq!(expected[1].1, vec![7u8; 300]);
        for cut in 0..=bytes.len() {
            let mut r = FrameReader::new(u64::MAX);
            r.feed(&bytes[..cut]);
            let mut got = parse_all(&mut r);
            r.feed(&bytes[cut..]);
            got.extend(parse_all(&mut r));
            assert_eq!(got, expected, "cut at {cut}");
            assert!(!r.is_mid_frame());
        }
    }

    #[test]
    fn one_byte_reads_and_large_direct_reads() {
        let mut bytes = frames();
        let big = Frame::new(
            b"{}",
            PooledBuf::from_vec((0..200_000u32).map(|i| i as u8).collect()),
        );
        bytes.extend_from_slice(&big.head);
        bytes.extend_from_slice(&big.payload);
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(self.1);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        for step in [1, 7, 100_000] {
            let mut src = Trickle(&bytes, step);
            let mut r = FrameReader::new(u64::MAX);
            let mut got = Vec::new();
            while r.read_from(&mut src).unwrap() > 0 {
                got.extend(parse_all(&mut r));
            }
            assert_eq!(got.len(), 4, "step {step}");
            assert_eq!(got[3].1, big.payload.to_vec());
        }
    }

    /// Lengths the u32 prefix fields cannot hold are refused, not wrapped
    /// (a wrapped length desyncs the stream); the largest that fits is
    /// encoded exactly. No 4 GiB buffer is needed: only lengths are checked.
    #[test]
    fn lengths_beyond_u32_are_refused_not_wrapped() {
        let over = MAX_FIELD_LEN + 1;
        assert_eq!(
            try_encode_head(b"{}", over),
            Err(WireError::FieldTooLarge {
                what: "payload",
                len: over
            })
        );
        assert_eq!(
            field_len("JSON header", over),
            Err(WireError::FieldTooLarge {
                what: "JSON header",
                len: over
            })
        );
        assert_eq!(
            field_len("payload", usize::MAX).map_err(|e| e.to_string()),
            Err(format!(
                "frame payload of {} bytes is too large: a DiME frame carries at most 4294967295",
                usize::MAX
            ))
        );
        let head = try_encode_head(b"{}", MAX_FIELD_LEN).unwrap();
        assert_eq!(&head[..4], MAGIC);
        assert_eq!(&head[4..8], &2u32.to_be_bytes());
        assert_eq!(&head[8..12], &[0xFF; 4]);
        assert_eq!(&head[12..], b"{}");
        assert_eq!(encode_head(b"{}", 7), try_encode_head(b"{}", 7).unwrap());
    }

    /// A send frame carrying `payload`, and the wire bytes of it followed
    /// by a small frame whose payload is "x".
    fn send_then_small(payload: Vec<u8>) -> (Frame, Vec<u8>) {
        let big = Frame::new(br#"{"command":"send"}"#, PooledBuf::from_vec(payload));
        let small = Frame::new(b"{}", PooledBuf::from_vec(b"x".to_vec()));
        let mut bytes = big.head.clone();
        bytes.extend_from_slice(&big.payload);
        bytes.extend_from_slice(&small.head);
        bytes.extend_from_slice(&small.payload);
        (big, bytes)
    }

    #[test]
    fn a_large_frame_goes_live_when_its_head_is_offered() {
        let payload: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let (big, bytes) = send_then_small(payload.clone());
        let mut r = FrameReader::new(u64::MAX);
        r.set_cut_through(100_000);
        r.feed(&bytes[..big.head.len() + 1000]);
        assert!(r.next_frame().unwrap().is_none());
        assert_eq!(r.pending_payload_len(), 300_000);
        assert_eq!(r.offer_head(), Some(&br#"{"command":"send"}"#[..]));
        assert_eq!(r.offer_head(), None, "offered once");
        let live = r.go_live().unwrap();
        assert_eq!(live.head, big.head);
        assert_eq!(live.wire_len(), big.wire_len());
        let shared = live.live.clone().unwrap();
        assert_eq!(shared.filled(), &payload[..1000]);
        r.feed(&bytes[big.head.len() + 1000..]);
        // The end of the live frame comes first, marked by its payload.
        let end = r.next_frame().unwrap().unwrap();
        assert!(Arc::ptr_eq(end.live.as_ref().unwrap(), &shared));
        assert!(shared.is_complete());
        assert_eq!(shared.filled(), &payload[..]);
        let next = r.next_frame().unwrap().unwrap();
        assert!(next.live.is_none());
        assert_eq!(&next.payload[..], b"x");
    }

    #[test]
    fn a_discarded_live_frame_is_read_past_and_the_next_one_comes_whole() {
        let (big, bytes) = send_then_small(vec![5u8; 300_000]);
        let mut r = FrameReader::new(u64::MAX);
        r.set_cut_through(100_000);
        let first = big.head.len() + 1000;
        r.feed(&bytes[..first]);
        assert!(r.next_frame().unwrap().is_none());
        assert!(r.offer_head().is_some());
        let shared = r.go_live().unwrap().live.unwrap();
        assert!(r.discard_live());
        assert!(shared.is_aborted());
        assert!(!r.discard_live(), "once");
        assert!(r.go_live().is_none(), "never live again");
        // The rest is read (through the staging buffer) and dropped.
        let mut src = &bytes[first..first + 200_000];
        while r.read_from(&mut src).unwrap() > 0 {
            assert!(r.next_frame().unwrap().is_none());
        }
        assert_eq!(
            shared.filled().len(),
            1000,
            "nothing more goes to recipients"
        );
        r.feed(&bytes[first + 200_000..]);
        let next = r.next_frame().unwrap().unwrap();
        assert!(next.live.is_none());
        assert_eq!(&next.payload[..], b"x");
        assert!(!r.is_mid_frame());
    }

    #[test]
    fn small_frames_and_readers_without_cut_through_offer_nothing() {
        let f = Frame::new(b"{}", PooledBuf::from_vec(vec![1; 5000]));
        for cut in [usize::MAX, 10_000] {
            let mut r = FrameReader::new(u64::MAX);
            if cut != usize::MAX {
                r.set_cut_through(cut);
            }
            r.feed(&f.head);
            r.feed(&f.payload[..10]);
            assert!(r.next_frame().unwrap().is_none());
            assert!(!r.has_head_to_offer());
            assert!(r.offer_head().is_none());
        }
    }

    #[test]
    fn bad_magic_and_oversize_are_errors() {
        let mut r = FrameReader::new(1000);
        r.feed(b"HTTP/1.1 200");
        assert!(matches!(r.next_frame(), Err(WireError::BadMagic(_))));
        let mut r2 = FrameReader::new(1000);
        r2.feed(b"DiME\0\0\0\x02\xff\xff\xff\xff");
        assert!(matches!(r2.next_frame(), Err(WireError::TooLarge { .. })));
        let e = r2.next_frame().unwrap_err().to_string();
        assert!(e.contains("--max-message"), "{e}");
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_streams_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8)) {
            let mut r = FrameReader::new(1 << 16);
            for c in chunks {
                let mut with_magic = b"DiME".to_vec();
                with_magic.extend_from_slice(&c);
                r.feed(&with_magic);
                while let Ok(Some(_)) = r.next_frame() {}
            }
        }
    }
}
