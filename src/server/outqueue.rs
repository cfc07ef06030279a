//! A connection's pending output, written with vectored I/O.
//!
//! Relayed messages are queued as shared references to the one stored
//! frame, so sending a large payload to many clients never copies it. A
//! frame whose payload is in shared memory carries no payload bytes: its
//! descriptor goes with the first byte of its header (`SCM_RIGHTS`). A
//! reply whose middle is a range of a file (a file server's piece) goes
//! from the file to the socket by `sendfile`, never through this
//! process's memory, where the transport allows it. A
//! frame whose payload is still arriving (cut-through) is written as far
//! as it has arrived; the queue then waits for more instead of for the
//! socket, and writes zeros for the rest of one whose sender went away.

use crate::buffer::PooledBuf;
use crate::live::LivePayload;
use crate::shm::SharedPayload;
use crate::transport::{FileSpan, Transport};
use crate::wire::Frame;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Where a queue is written: a byte stream that may also pass descriptors.
pub trait Sink: Write {
    /// `write_vectored` with `fds` passed along the first byte written.
    fn send_with_fds(&mut self, bufs: &[IoSlice<'_>], fds: &[BorrowedFd<'_>]) -> io::Result<usize>;

    /// `head` then bytes of a file, as [`Transport::send_file`]; None
    /// where the sink cannot take them from the file itself.
    fn send_file(
        &mut self,
        _head: &[u8],
        _file: BorrowedFd<'_>,
        _offset: u64,
        _len: usize,
    ) -> Option<io::Result<usize>> {
        None
    }
}

impl Sink for dyn Transport {
    fn send_with_fds(&mut self, bufs: &[IoSlice<'_>], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        Transport::send_with_fds(self, bufs, fds)
    }

    fn send_file(
        &mut self,
        head: &[u8],
        file: BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> Option<io::Result<usize>> {
        Transport::send_file(self, head, file, offset, len)
    }
}

/// Bytes of a file span read per write where the sink cannot send from
/// the file itself (TLS, WebSocket).
const READ_CHUNK: usize = 256 << 10;

/// Most slices handed to one `writev`.
const MAX_SLICES: usize = 64;

/// What stands in for the bytes of a payload that will never arrive, or
/// that a shrunk file no longer has.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// The closing status of a sync reply: `{"status":0}`.
const SYNC_OK: &[u8] = br#"{"status":0}"#;

/// The JSON length of a [`OutItem::SyncEnd`]: that of the status naming
/// every one of its messages as aborted, the longest it can be.
fn sync_end_len(live: &[(usize, Arc<LivePayload>)]) -> usize {
    let positions: usize = live.iter().map(|(k, _)| k.to_string().len() + 1).sum();
    r#"{"status":0,"aborted":[]}"#.len() + positions.saturating_sub(1)
}

/// One queued item.
pub enum OutItem {
    /// A reply built for this connection only.
    Bytes(Vec<u8>),
    /// A constant reply (`{"status":0}` and the like), built once.
    Static(&'static [u8]),
    /// A relayed message shared with other recipients.
    Shared(Arc<Frame>),
    /// A reply head with a body shared with stored state (share values).
    WithBody(Vec<u8>, Arc<PooledBuf>),
    /// A reply whose body has a file span between two runs of bytes:
    /// `head` (the frame head and the body's start), the span, `tail`.
    WithFile {
        /// The frame head and the body up to the span.
        head: Vec<u8>,
        /// The body's middle, from a file.
        span: FileSpan,
        /// The rest of the body.
        tail: Vec<u8>,
    },
    /// The status that ends a `sync` reply holding messages whose payloads
    /// were still arriving when it was queued (cut-through), with their
    /// positions in the reply: `{"status":0}`, plus `"aborted":[k,…]`
    /// naming those whose sender went away before the end. Decided when
    /// it is written, after all of them.
    SyncEnd(Vec<(usize, Arc<LivePayload>)>),
}

impl OutItem {
    /// The shared-memory payload whose descriptor goes with this item.
    fn shared(&self) -> Option<&Arc<SharedPayload>> {
        match self {
            OutItem::Shared(f) => f.shared(),
            _ => None,
        }
    }

    /// The bytes from `off` on that can be written now, as one slice
    /// (empty when they have not arrived yet).
    fn chunk_at(&self, off: usize) -> &[u8] {
        let (head, body): (&[u8], &[u8]) = match self {
            OutItem::Bytes(b) => (b, &[]),
            OutItem::Static(b) => (b, &[]),
            OutItem::WithBody(h, b) => (h, b),
            // Its span is written on its own (`write_span`): nothing here
            // gathers past the head.
            OutItem::WithFile { head, span, tail } => {
                if off < head.len() {
                    return &head[off..];
                }
                let past = off - head.len();
                if past < span.len {
                    return &[];
                }
                return &tail[past - span.len..];
            }
            // Rendered before it is written (`OutQueue::render_front`).
            OutItem::SyncEnd(_) => return &[],
            OutItem::Shared(f) => match &f.live {
                None => (&f.head, &f.payload),
                Some(live) => {
                    if off < f.head.len() {
                        return &f.head[off..];
                    }
                    let at = off - f.head.len();
                    let arrived = live.filled();
                    if at < arrived.len() {
                        return &arrived[at..];
                    }
                    if live.is_aborted() {
                        let left = live.len() - at;
                        return &ZEROS[..left.min(ZEROS.len())];
                    }
                    return &[];
                }
            },
        };
        if off < head.len() {
            &head[off..]
        } else {
            &body[off - head.len()..]
        }
    }

    /// Bytes this item puts on the wire.
    pub fn wire_len(&self) -> usize {
        match self {
            OutItem::Bytes(b) => b.len(),
            OutItem::Static(b) => b.len(),
            OutItem::WithBody(h, b) => h.len() + b.len(),
            OutItem::Shared(f) => f.wire_len(),
            OutItem::WithFile { head, span, tail } => head.len() + span.len + tail.len(),
            OutItem::SyncEnd(live) => crate::wire::PREFIX_LEN + sync_end_len(live),
        }
    }
}

/// FIFO of items not yet written.
#[derive(Default)]
pub struct OutQueue {
    items: VecDeque<OutItem>,
    /// Bytes of the front item already written.
    offset: usize,
    bytes: usize,
    /// Shared-memory payloads whose descriptors have been sent, since the
    /// last [`OutQueue::take_delivered`]: the recipient now holds them
    /// until it says it is done.
    delivered: Vec<Arc<SharedPayload>>,
    /// Bytes written since the queue was made: with `pending`, places an
    /// item in the connection's output stream (see `watch_queue`).
    written: u64,
}

impl OutQueue {
    /// Appends an item.
    pub fn push(&mut self, item: OutItem) {
        self.bytes += item.wire_len();
        self.items.push_back(item);
    }

    /// Bytes still to write.
    pub fn pending(&self) -> usize {
        self.bytes - self.offset
    }

    /// The shared-memory payloads delivered since the last call.
    pub fn take_delivered(&mut self) -> Vec<Arc<SharedPayload>> {
        std::mem::take(&mut self.delivered)
    }

    /// Bytes written since the queue was made.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// True when the next byte to write has not arrived yet (a payload
    /// relayed while it arrives): the queue waits for its sender, not for
    /// the socket.
    pub fn stalled(&self) -> bool {
        self.items.front().is_some_and(|i| {
            matches!(i, OutItem::Shared(f) if f.live.is_some())
                && i.chunk_at(self.offset).is_empty()
        })
    }

    /// Replaces a [`OutItem::SyncEnd`] at the front by its bytes: every
    /// message before it has been written whole, so each of its payloads
    /// is complete or aborted by now.
    fn render_front(&mut self) {
        let Some(OutItem::SyncEnd(live)) = self.items.front() else {
            return;
        };
        let aborted: Vec<String> = live
            .iter()
            .filter(|(_, p)| p.is_aborted())
            .map(|(k, _)| k.to_string())
            .collect();
        let mut json = if aborted.is_empty() {
            SYNC_OK.to_vec()
        } else {
            // Written as `sync_end_len` counts it: no spaces.
            format!(r#"{{"status":0,"aborted":[{}]}}"#, aborted.join(",")).into_bytes()
        };
        // Padded to the length it was queued with, so every count of the
        // connection's output (pending bytes, stream positions) holds.
        json.resize(sync_end_len(live), b' ');
        self.items[0] = OutItem::Bytes(crate::wire::encode_head(&json, 0));
    }

    /// Writes until done, the socket would block, or the next bytes have
    /// not arrived ([`OutQueue::stalled`]). Returns true when the queue is
    /// empty.
    pub fn flush<W: Sink + ?Sized>(&mut self, w: &mut W) -> io::Result<bool> {
        while !self.items.is_empty() {
            if self.offset == 0 {
                self.render_front();
            }
            if self.stalled() {
                return Ok(false);
            }
            let n = match self.write_some(w) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            self.advance(n);
        }
        Ok(true)
    }

    /// One vectored write of the queue's front. An item with a descriptor
    /// starts a write of its own, which carries the descriptor; a write
    /// never reaches past the next such item.
    fn write_some<W: Sink + ?Sized>(&mut self, w: &mut W) -> io::Result<usize> {
        if let OutItem::WithFile { head, span, .. } = &self.items[0] {
            if self.offset < head.len() + span.len {
                return write_span(w, head, span, self.offset);
            }
        }
        let fd_first = if self.offset == 0 {
            self.items[0].shared().cloned()
        } else {
            None
        };
        // The usual case, a single reply, needs no gathering.
        if self.items.len() == 1 && fd_first.is_none() {
            let item = &self.items[0];
            let a = item.chunk_at(self.offset);
            let next = self.offset + a.len();
            let b = if next < item.wire_len() {
                item.chunk_at(next)
            } else {
                &[]
            };
            return w.write_vectored(&[IoSlice::new(a), IoSlice::new(b)]);
        }
        // On the stack: this runs for every batch of replies written.
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let mut used = 0;
        let mut off = self.offset;
        'fill: for (i, item) in self.items.iter().enumerate() {
            // A sync's closing status is rendered at the front, once the
            // messages before it are out.
            if i > 0 && (item.shared().is_some() || matches!(item, OutItem::SyncEnd(_))) {
                break;
            }
            let total = item.wire_len();
            while off < total {
                let chunk = item.chunk_at(off);
                if chunk.is_empty() {
                    // The rest of this payload has not arrived: nothing
                    // after it may go before it.
                    break 'fill;
                }
                slices[used] = IoSlice::new(chunk);
                used += 1;
                off += chunk.len();
                if used == MAX_SLICES {
                    break 'fill;
                }
            }
            // A later item's file span stops the gathering above (its
            // chunk there is empty): it goes out in a write of its own.
            off = 0;
        }
        let Some(payload) = fd_first else {
            return w.write_vectored(&slices[..used]);
        };
        let n = w.send_with_fds(&slices[..used], &[payload.fd()])?;
        if n > 0 {
            // The descriptor went with these bytes.
            self.delivered.push(payload);
        }
        Ok(n)
    }

    fn advance(&mut self, mut n: usize) {
        self.written += n as u64;
        while n > 0 {
            let front = self
                .items
                .front()
                .expect("advance past the queue")
                .wire_len();
            let left = front - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.bytes -= front;
            self.offset = 0;
            self.items.pop_front();
        }
    }
}

/// One write of file item `head` + `span`, `offset` bytes of it already
/// written: the rest of the head and then the span, taken from the file
/// by the sink if it can, else read here a chunk at a time.
fn write_span<W: Sink + ?Sized>(
    w: &mut W,
    head: &[u8],
    span: &FileSpan,
    offset: usize,
) -> io::Result<usize> {
    let (head, at) = if offset < head.len() {
        (&head[offset..], 0)
    } else {
        (&[][..], offset - head.len())
    };
    let left = span.len - at;
    let from = span.offset + at as u64;
    match w.send_file(head, span.file.as_fd(), from, left) {
        // The file shrank or cannot be read: zeros stand in (the sink
        // took no head bytes, or it would have said so).
        Some(Err(e)) if unreadable(&e) => {
            log::debug!("a file being sent cannot be read: {e}; zeros stand in");
            w.write_vectored(&[IoSlice::new(&ZEROS[..left.min(ZEROS.len())])])
        }
        Some(sent) => sent,
        None => {
            let mut buf = vec![0u8; left.min(READ_CHUNK)];
            let n = match span.file.read_at(&mut buf, from) {
                Ok(n) if n > 0 => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
                // As above; `buf` holds the zeros.
                Ok(_) => buf.len(),
                Err(e) => {
                    log::debug!("a file being sent cannot be read: {e}; zeros stand in");
                    buf.len()
                }
            };
            w.write_vectored(&[IoSlice::new(head), IoSlice::new(&buf[..n])])
        }
    }
}

/// True for a `send_file` failure of the file rather than the socket.
fn unreadable(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof || e.raw_os_error() == Some(libc::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts at most `cap` bytes per call, then would block after `calls`.
    struct Choppy {
        got: Vec<u8>,
        cap: usize,
        calls: usize,
    }
    impl Write for Choppy {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(b)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.calls == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls -= 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.cap {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Sink for Choppy {
        fn send_with_fds(&mut self, _: &[IoSlice<'_>], _: &[BorrowedFd<'_>]) -> io::Result<usize> {
            Err(io::ErrorKind::Unsupported.into())
        }
    }

    #[test]
    fn partial_writes_resume_in_order() {
        let frame = Arc::new(Frame::new(b"{}", PooledBuf::from_vec(vec![9; 50])));
        let mut q = OutQueue::default();
        q.push(OutItem::Bytes(b"abc".to_vec()));
        q.push(OutItem::Shared(frame.clone()));
        q.push(OutItem::Bytes(b"xyz".to_vec()));
        let total = q.pending();
        let mut w = Choppy {
            got: vec![],
            cap: 7,
            calls: 3,
        };
        assert!(!q.flush(&mut w).unwrap());
        assert_eq!(q.pending(), total - 21);
        assert_eq!(q.written(), 21);
        w.calls = usize::MAX;
        assert!(q.flush(&mut w).unwrap());
        let mut want = b"abc".to_vec();
        want.extend_from_slice(&frame.head);
        want.extend_from_slice(&frame.payload);
        want.extend_from_slice(b"xyz");
        assert_eq!(w.got, want);
        assert_eq!(q.pending(), 0);
        assert_eq!(q.written(), total as u64);
    }

    use std::fs::File;

    /// A file holding `bytes`, and an item sending `len` of them from `off`.
    fn file_item(bytes: &[u8], off: u64, len: usize) -> (tempfile::TempDir, OutItem) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, bytes).unwrap();
        let span = FileSpan {
            file: File::open(&p).unwrap(),
            offset: off,
            len,
        };
        let item = OutItem::WithFile {
            head: b"HEAD".to_vec(),
            span,
            tail: b"TAIL".to_vec(),
        };
        (dir, item)
    }

    /// Where the sink cannot send from files, the span is read and written
    /// in order with the bytes around it, across partial writes.
    #[test]
    fn a_file_span_is_read_in_where_the_sink_cannot_send_it() {
        let (_dir, item) = file_item(b"0123456789", 2, 5);
        let mut q = OutQueue::default();
        q.push(OutItem::Bytes(b"abc".to_vec()));
        q.push(item);
        q.push(OutItem::Bytes(b"xyz".to_vec()));
        assert_eq!(q.pending(), 3 + 4 + 5 + 4 + 3);
        let mut w = Choppy {
            got: vec![],
            cap: 3,
            calls: usize::MAX,
        };
        assert!(q.flush(&mut w).unwrap());
        assert_eq!(w.got, b"abcHEAD23456TAILxyz");
        assert_eq!(q.written(), 19);
    }

    /// Over a socket the span goes by `sendfile`; a file that shrank is
    /// made up with zeros, so the frame keeps its length.
    #[test]
    fn a_file_span_goes_by_sendfile_and_a_shrunk_file_by_zeros() {
        use std::io::Read;
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut a: Box<dyn Transport> = Box::new(a);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (_d1, whole) = file_item(&data, 1000, 200_000);
        let (_d2, shrunk) = file_item(b"short", 1, 10);
        let mut q = OutQueue::default();
        q.push(whole);
        q.push(OutItem::Bytes(b"x".to_vec()));
        q.push(shrunk);
        let total = q.pending();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; total];
            b.read_exact(&mut got).unwrap();
            got
        });
        while !q.flush(&mut *a).unwrap() {}
        let got = reader.join().unwrap();
        let mut want = b"HEAD".to_vec();
        want.extend_from_slice(&data[1000..201_000]);
        want.extend_from_slice(b"TAILxHEADhort");
        want.extend_from_slice(&[0; 6]);
        want.extend_from_slice(b"TAIL");
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the bytes differ");
    }

    /// A frame whose payload is still arriving: the first `filled` of
    /// `len` bytes are in, then the writer that fills it.
    fn live_frame(len: usize, filled: usize) -> (Arc<Frame>, crate::live::LiveWriter) {
        let bytes: Vec<u8> = (0..len).map(|i| i as u8 | 1).collect();
        let w = LivePayload::start(PooledBuf::from_vec(bytes), filled);
        let frame = Frame {
            head: crate::wire::encode_head(b"{}", len),
            payload: PooledBuf::default(),
            shm: None,
            live: Some(w.shared().clone()),
        };
        (Arc::new(frame), w)
    }

    fn writer() -> Choppy {
        Choppy {
            got: vec![],
            cap: usize::MAX,
            calls: usize::MAX,
        }
    }

    #[test]
    fn a_payload_still_arriving_is_written_as_far_as_it_has_arrived() {
        let (frame, mut w) = live_frame(1000, 100);
        let mut q = OutQueue::default();
        q.push(OutItem::Shared(frame.clone()));
        q.push(OutItem::SyncEnd(vec![(0, frame.live.clone().unwrap())]));
        let mut out = writer();
        assert!(!q.flush(&mut out).unwrap());
        assert!(q.stalled(), "waits for the sender, not the socket");
        assert_eq!(out.got.len(), frame.head.len() + 100);
        // More arrives, then the rest: the status follows the last byte.
        w.advance(400);
        assert!(!q.flush(&mut out).unwrap());
        assert_eq!(out.got.len(), frame.head.len() + 500);
        w.advance(500);
        assert!(q.flush(&mut out).unwrap());
        let mut want = frame.head.clone();
        want.extend((0..1000).map(|i| i as u8 | 1));
        // A status that could have named the message, padded to that length.
        want.extend(crate::wire::encode_head(
            format!("{:26}", r#"{"status":0}"#).as_bytes(),
            0,
        ));
        assert_eq!(out.got, want);
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn an_aborted_payload_is_filled_with_zeros_and_named_in_the_status() {
        let (frame, w) = live_frame(200_000, 10);
        let (done, _w2) = live_frame(50, 50);
        let mut q = OutQueue::default();
        q.push(OutItem::Shared(done.clone()));
        q.push(OutItem::Shared(frame.clone()));
        q.push(OutItem::SyncEnd(vec![
            (0, done.live.clone().unwrap()),
            (1, frame.live.clone().unwrap()),
        ]));
        q.push(OutItem::Bytes(b"next".to_vec()));
        let mut out = writer();
        assert!(!q.flush(&mut out).unwrap());
        drop(w);
        assert!(q.flush(&mut out).unwrap());
        let at = done.wire_len() + frame.head.len();
        assert!(out.got[at..at + 10].iter().all(|&b| b & 1 == 1));
        let end = at + 200_000;
        assert!(out.got[at + 10..end].iter().all(|&b| b == 0));
        let status = crate::wire::encode_head(br#"{"status":0,"aborted":[1]}  "#, 0);
        assert_eq!(&out.got[end..end + status.len()], &status[..]);
        assert_eq!(&out.got[end + status.len()..], b"next");
    }

    #[test]
    fn a_status_naming_several_aborted_messages_is_whole_json() {
        let (frames, writers): (Vec<_>, Vec<_>) = (0..12).map(|_| live_frame(100, 10)).unzip();
        let mut q = OutQueue::default();
        for f in &frames {
            q.push(OutItem::Shared(f.clone()));
        }
        let live = frames.iter().map(|f| f.live.clone().unwrap());
        q.push(OutItem::SyncEnd(live.enumerate().collect()));
        let mut out = writer();
        assert!(!q.flush(&mut out).unwrap());
        // Every sender goes away but the one of message 4, which finishes.
        for (k, mut w) in writers.into_iter().enumerate() {
            if k == 4 {
                w.advance(90);
            }
        }
        assert!(q.flush(&mut out).unwrap());
        let status_at: usize = frames.iter().map(|f| f.wire_len()).sum();
        let json: serde_json::Value =
            serde_json::from_slice(&out.got[status_at + crate::wire::PREFIX_LEN..]).unwrap();
        let aborted = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11];
        assert_eq!(json, serde_json::json!({"status": 0, "aborted": aborted}));
    }

    #[test]
    fn a_lone_item_resumes_across_its_parts() {
        let body = Arc::new(PooledBuf::from_vec(b"0123456789".to_vec()));
        let mut q = OutQueue::default();
        q.push(OutItem::WithBody(b"head".to_vec(), body));
        let mut w = Choppy {
            got: vec![],
            cap: 3,
            calls: usize::MAX,
        };
        assert!(q.flush(&mut w).unwrap());
        assert_eq!(w.got, b"head0123456789");
    }
}
