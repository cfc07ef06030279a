//! How many watch events (and their bytes) a connection has queued and not
//! yet written, so a watcher that stops reading can be held to
//! `--watch-queue-events` / `--watch-queue-bytes` (see `watch`).
//!
//! Events share the connection's one output queue with its replies, so
//! they are not counted by type there: each event queued is marked by where
//! it ends in the connection's output stream, and is settled (no longer
//! counted) once the queue has written past that point.

use std::collections::VecDeque;

/// Room for marks kept once a connection's queue of events is empty.
const SPARE_MARKS: usize = 1024;

/// The most a connection may have queued of watch events
/// (`Config::watch_queue_events`, `Config::watch_queue_bytes`).
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    /// Events (`--watch-queue-events`).
    pub events: u64,
    /// Their bytes on the wire (`--watch-queue-bytes`).
    pub bytes: u64,
}

/// The events queued to one connection and not yet written.
#[derive(Default)]
pub struct WatchQueue {
    /// Per queued event, oldest first: the position in the connection's
    /// output stream where it ends, and its length on the wire.
    marks: VecDeque<(u64, usize)>,
    /// Sum of the lengths in `marks`.
    bytes: usize,
}

impl WatchQueue {
    /// Counts an event of `len` bytes ending at stream position `end`.
    pub fn add(&mut self, end: u64, len: usize) {
        self.marks.push_back((end, len));
        self.bytes += len;
    }

    /// Forgets the events the connection has written, given the stream
    /// position it has written up to.
    pub fn settle(&mut self, written: u64) {
        while let Some(&(end, len)) = self.marks.front() {
            if end > written {
                break;
            }
            self.bytes -= len;
            self.marks.pop_front();
        }
        // A client that once had the most queued need not keep the room.
        if self.marks.is_empty() && self.marks.capacity() > SPARE_MARKS {
            self.marks.shrink_to(SPARE_MARKS);
        }
    }

    /// Whether one more event of `len` bytes may be queued under `limit`:
    /// always when none is, so an event larger than the byte limit still
    /// goes out (alone).
    pub fn fits(&self, len: usize, limit: Limit) -> bool {
        self.marks.is_empty()
            || ((self.marks.len() as u64) < limit.events
                && (self.bytes + len) as u64 <= limit.bytes)
    }

    /// Whether a client whose watches fell behind has read enough for
    /// them to go on: down to half the limit (going on at the first event
    /// read would only fill it again at once).
    pub fn has_room(&self, limit: Limit) -> bool {
        self.marks.len() as u64 <= limit.events / 2 && self.bytes as u64 <= limit.bytes / 2
    }

    /// Events and bytes not yet written by stream position `written`,
    /// without settling (for `inspect`, which only reads).
    pub fn unwritten(&self, written: u64) -> (usize, usize) {
        let (mut events, mut bytes) = (self.marks.len(), self.bytes);
        for &(end, len) in &self.marks {
            if end > written {
                break;
            }
            events -= 1;
            bytes -= len;
        }
        (events, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_count_until_written_past() {
        let mut q = WatchQueue::default();
        q.add(10, 10);
        q.add(25, 5); // a reply of 10 bytes came between them
        q.add(40, 15);
        assert_eq!(q.unwritten(24), (2, 20));
        q.settle(9);
        assert_eq!(q.unwritten(0), (3, 30));
        q.settle(25);
        assert_eq!(q.unwritten(0), (1, 15), "settled ones are gone");
        assert_eq!(q.unwritten(40), (0, 0));
        q.settle(100);
        assert_eq!(q.unwritten(0), (0, 0));
    }

    #[test]
    fn the_limit_counts_events_and_bytes_but_one_always_fits() {
        let limit = Limit {
            events: 4,
            bytes: 100,
        };
        let mut q = WatchQueue::default();
        assert!(q.fits(1000, limit), "alone, however large");
        q.add(1000, 1000);
        assert!(!q.fits(1, limit) && !q.has_room(limit));
        q.settle(1000);
        for end in 1..=3 {
            assert!(q.fits(10, limit));
            q.add(1000 + end * 10, 10);
        }
        assert!(q.fits(10, limit) && !q.fits(71, limit));
        q.add(1040, 10);
        assert!(!q.fits(1, limit), "four events is the most");
        assert!(!q.has_room(limit));
        q.settle(1020);
        assert!(q.has_room(limit), "two of four left");
    }
}
