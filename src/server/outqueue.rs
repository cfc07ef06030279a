//! A connection's pending output, written with vectored I/O.
//!
//! Relayed messages are queued as shared references to the one stored
//! frame, so sending a large payload to many clients never copies it. A
//! frame whose payload is in shared memory carries no payload bytes: its
//! descriptor goes with the first byte of its header (`SCM_RIGHTS`).

use crate::buffer::PooledBuf;
use crate::shm::SharedPayload;
use crate::transport::Transport;
use crate::wire::Frame;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::os::fd::BorrowedFd;
use std::sync::Arc;

/// Where a queue is written: a byte stream that may also pass descriptors.
pub trait Sink: Write {
    /// `write_vectored` with `fds` passed along the first byte written.
    fn send_with_fds(&mut self, bufs: &[IoSlice<'_>], fds: &[BorrowedFd<'_>]) -> io::Result<usize>;
}

impl Sink for dyn Transport {
    fn send_with_fds(&mut self, bufs: &[IoSlice<'_>], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        Transport::send_with_fds(self, bufs, fds)
    }
}

/// Most slices handed to one `writev`.
const MAX_SLICES: usize = 64;

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
}

impl OutItem {
    /// The shared-memory payload whose descriptor goes with this item.
    fn shared(&self) -> Option<&Arc<SharedPayload>> {
        match self {
            OutItem::Shared(f) => f.shared(),
            _ => None,
        }
    }

    fn parts(&self) -> [&[u8]; 2] {
        match self {
            OutItem::Bytes(b) => [b, &[]],
            OutItem::Static(b) => [b, &[]],
            OutItem::Shared(f) => [&f.head, &f.payload],
            OutItem::WithBody(h, b) => [h, b],
        }
    }

    /// Bytes this item puts on the wire.
    pub fn wire_len(&self) -> usize {
        let [a, b] = self.parts();
        a.len() + b.len()
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

    /// Writes until done or the socket would block. Returns true when the
    /// queue is empty.
    pub fn flush<W: Sink + ?Sized>(&mut self, w: &mut W) -> io::Result<bool> {
        while !self.items.is_empty() {
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
        let fd_first = if self.offset == 0 {
            self.items[0].shared().cloned()
        } else {
            None
        };
        // The usual case, a single reply, needs no gathering.
        if self.items.len() == 1 && fd_first.is_none() {
            let [a, b] = self.items[0].parts();
            let (a, b) = if self.offset < a.len() {
                (&a[self.offset..], b)
            } else {
                (&b[self.offset - a.len()..], &[][..])
            };
            return w.write_vectored(&[IoSlice::new(a), IoSlice::new(b)]);
        }
        // On the stack: this runs for every batch of replies written.
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let mut used = 0;
        let mut skip = self.offset;
        'fill: for (i, item) in self.items.iter().enumerate() {
            if i > 0 && item.shared().is_some() {
                break;
            }
            for part in item.parts() {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices[used] = IoSlice::new(&part[skip..]);
                used += 1;
                skip = 0;
                if used == MAX_SLICES {
                    break 'fill;
                }
            }
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
