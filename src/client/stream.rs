//! The two ends of a stream's flow control, as the remote-call endpoint
//! ([`super::rpc`]) keeps them: a [`Consumer`] buffers items until they
//! are read and says when to grant the producer more room; a [`Producer`]
//! holds the room the consumer granted, blocks the producing thread when
//! there is none, and holds small items back briefly ([`Pending`]) so that
//! several go in one frame; a [`FlushTimer`] says when items held back
//! have waited long enough. None of them does I/O: the endpoint does.

use super::rpc::CallError;
use crate::buffer::PooledBuf;
use crate::proto::stream_batch;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The window a consumer opens a stream with, and keeps granting as it
/// reads: the producer may have at most this many items and bytes on
/// their way (an item larger than the whole byte window still goes, alone).
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Items in flight.
    pub items: u64,
    /// Bytes in flight.
    pub bytes: u64,
}

impl Default for StreamOptions {
    fn default() -> StreamOptions {
        StreamOptions {
            items: 1024,
            bytes: 64 << 20,
        }
    }
}

/// Half of a window size, at least 1, as a count of things in memory.
fn half(n: u64) -> usize {
    usize::try_from(n / 2).unwrap_or(usize::MAX).max(1)
}

/// What reading a stream gave.
#[derive(Debug)]
pub enum Next {
    /// The next item, encoded.
    Item(PooledBuf),
    /// The stream ended normally.
    End,
    /// No item came before the timeout.
    Timeout,
}

/// What reading several items of a stream at once gave.
#[derive(Debug, PartialEq, Eq)]
pub enum NextMany {
    /// This many items (at least 1) were appended to the output.
    Items(usize),
    /// The stream ended normally.
    End,
    /// No item came before the timeout.
    Timeout,
}

struct ConsumerState {
    items: VecDeque<PooledBuf>,
    /// How it ended, once it has: Ok, or the producer's error.
    end: Option<Result<(), CallError>>,
    /// Items and bytes read since the last grant.
    read_items: u64,
    read_bytes: u64,
}

/// A consumed stream's buffer: items the reader thread received and the
/// consumer has not read.
pub struct Consumer {
    state: Mutex<ConsumerState>,
    arrived: Condvar,
    window: StreamOptions,
}

impl Consumer {
    /// An empty buffer for a stream opened with `window`.
    pub fn new(window: StreamOptions) -> Consumer {
        Consumer {
            state: Mutex::new(ConsumerState {
                items: VecDeque::new(),
                end: None,
                read_items: 0,
                read_bytes: 0,
            }),
            arrived: Condvar::new(),
            window,
        }
    }

    fn lock(&self) -> MutexGuard<'_, ConsumerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An item arrived.
    pub fn push(&self, item: PooledBuf) {
        self.lock().items.push_back(item);
        self.arrived.notify_all();
    }

    /// A batch of items arrived: `items` are where each lies in `payload`
    /// (from [`stream_batch::ranges`]).
    pub fn push_batch(&self, payload: &[u8], items: Vec<Range<usize>>) {
        let mut st = self.lock();
        for r in items {
            let mut item = PooledBuf::with_len(r.len());
            item.copy_from_slice(&payload[r]);
            st.items.push_back(item);
        }
        drop(st);
        self.arrived.notify_all();
    }

    /// The stream ended (items before it are still read first).
    pub fn end(&self, how: Result<(), CallError>) {
        self.lock().end.get_or_insert(how);
        self.arrived.notify_all();
    }

    /// Waits for the next item or the end. With an item, also returns the
    /// room to grant the producer now (items, bytes), if it is time to:
    /// once half of either window has been read, so the producer rarely
    /// waits and the grant messages stay few.
    pub fn next(&self, timeout: Option<Duration>) -> Result<(Next, Option<(u64, u64)>), CallError> {
        let mut st = self.wait(timeout)?;
        match st.items.pop_front() {
            Some(item) => {
                st.read_items += 1;
                st.read_bytes += item.len() as u64;
                let grant = self.grant(&mut st);
                Ok((Next::Item(item), grant))
            }
            None if st.end.is_some() => Ok((Next::End, None)),
            None => Ok((Next::Timeout, None)),
        }
    }

    /// Like [`Consumer::next`], but takes every item that has arrived, up
    /// to `max_items` and, after the first (taken whatever its size),
    /// `max_bytes` in all, and at most half the window, so the producer can
    /// be refilling the other half meanwhile: appends them to `out`. They
    /// count as read only once [`Consumer::read`] says so.
    pub fn take_many(
        &self,
        timeout: Option<Duration>,
        max_items: usize,
        max_bytes: usize,
        out: &mut Vec<PooledBuf>,
    ) -> Result<NextMany, CallError> {
        let max_items = max_items.min(half(self.window.items));
        let max_bytes = max_bytes.min(half(self.window.bytes));
        let mut st = self.wait(timeout)?;
        let mut n = 0usize;
        let mut bytes = 0usize;
        while let Some(next) = st.items.front() {
            if n > 0 && (n >= max_items || bytes + next.len() > max_bytes) {
                break;
            }
            let item = st.items.pop_front().expect("looked at it");
            n += 1;
            bytes += item.len();
            out.push(item);
        }
        Ok(match n {
            0 if st.end.is_some() => NextMany::End,
            0 => NextMany::Timeout,
            n => NextMany::Items(n),
        })
    }

    /// `items` items of `bytes` bytes taken with [`Consumer::take_many`]
    /// have been read: the room to grant the producer now, if it is time
    /// to (see [`Consumer::next`]).
    pub fn read(&self, items: u64, bytes: u64) -> Option<(u64, u64)> {
        let mut st = self.lock();
        st.read_items += items;
        st.read_bytes += bytes;
        self.grant(&mut st)
    }

    /// Waits until an item or the end has arrived, or `timeout` passed:
    /// the state then (Err once the stream failed and every item was read).
    fn wait(&self, timeout: Option<Duration>) -> Result<MutexGuard<'_, ConsumerState>, CallError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.lock();
        loop {
            if !st.items.is_empty() {
                return Ok(st);
            }
            match &st.end {
                Some(Ok(())) => return Ok(st),
                Some(Err(e)) => return Err(e.clone()),
                None => {}
            }
            st = match deadline {
                None => self.arrived.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(st);
                    }
                    self.arrived
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// The room to grant after a read, if it is time to (see `next`).
    fn grant(&self, st: &mut ConsumerState) -> Option<(u64, u64)> {
        (st.end.is_none()
            && (st.read_items * 2 >= self.window.items || st.read_bytes * 2 >= self.window.bytes))
            .then(|| {
                let g = (st.read_items, st.read_bytes);
                st.read_items = 0;
                st.read_bytes = 0;
                g
            })
    }

    /// True when `next` would not wait: an item or the end has arrived.
    pub fn has_news(&self) -> bool {
        let st = self.lock();
        !st.items.is_empty() || st.end.is_some()
    }

    /// True once the end (or an error) has arrived and every item was read.
    pub fn is_finished(&self) -> bool {
        let st = self.lock();
        st.items.is_empty() && st.end.is_some()
    }
}

struct ProducerState {
    /// Room left; None for a plain call.
    window: Option<(i64, i64)>,
    cancelled: bool,
}

/// A call this endpoint runs: whether its caller gave up, and for a
/// stream the room its consumer granted and the items held back.
pub struct Producer {
    state: Mutex<ProducerState>,
    changed: Condvar,
    /// Also orders the stream's writes: whoever writes for it (the
    /// producing thread, the flush timer's thread) holds this meanwhile.
    pending: Mutex<Pending>,
}

impl Producer {
    /// A running call; `window` (items, bytes) for a stream.
    pub fn new(window: Option<(i64, i64)>) -> Producer {
        Producer {
            state: Mutex::new(ProducerState {
                window,
                cancelled: false,
            }),
            changed: Condvar::new(),
            pending: Mutex::new(Pending::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ProducerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The items held back; hold the guard while writing for the stream.
    pub fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True while there is room for another item (always for a plain call).
    pub fn has_room(&self) -> bool {
        self.lock().window.is_none_or(|(i, b)| i > 0 && b > 0)
    }

    /// The consumer granted more room.
    pub fn grant(&self, items: i64, bytes: i64) {
        if let Some((i, b)) = &mut self.lock().window {
            *i = i.saturating_add(items);
            *b = b.saturating_add(bytes);
        }
        self.changed.notify_all();
    }

    /// The caller gave up (or the connection closed).
    pub fn cancel(&self) {
        self.lock().cancelled = true;
        self.changed.notify_all();
    }

    /// True when `take_room` for `len` bytes would not wait: there is room,
    /// or the caller gave up.
    pub fn can_go_on(&self) -> bool {
        let st = self.lock();
        st.cancelled || st.window.is_none_or(|(i, b)| i > 0 && b > 0)
    }

    /// True once the caller gave up.
    pub fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Waits for room to send an item of `len` bytes and takes it: true,
    /// or false when the caller gave up, or `timeout` passed first (then
    /// `timed_out` is set).
    pub fn take_room(&self, len: usize, timeout: Option<Duration>, timed_out: &mut bool) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.lock();
        loop {
            if st.cancelled {
                return false;
            }
            match &mut st.window {
                None => return true,
                Some((i, b)) if *i > 0 && *b > 0 => {
                    *i -= 1;
                    *b = b.saturating_sub(i64::try_from(len).unwrap_or(i64::MAX));
                    return true;
                }
                Some(_) => {}
            }
            st = match deadline {
                None => self.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        *timed_out = true;
                        return false;
                    }
                    self.changed
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

/// Items larger than this are written alone, as soon as they are sent.
pub const BATCH_ITEM_MAX: usize = 8 << 10;
/// A batch is written once it holds this many bytes...
const BATCH_BYTES: usize = 16 << 10;
/// ... or this many items ...
const BATCH_ITEMS: usize = 256;
/// ... or its first item has waited this long. A stream that has written
/// nothing for this long writes its next item at once, so a slow
/// producer's items are never held back.
pub const LINGER: Duration = Duration::from_micros(200);

/// Small stream items taken room for and not written yet (a batch
/// payload, see [`stream_batch`]), and when to write them.
#[derive(Default)]
pub struct Pending {
    buf: Vec<u8>,
    count: usize,
    /// Some item held has `dimeb_layout` matrices (the batch's header must
    /// say so).
    layout: bool,
    /// When the first item held was added.
    since: Option<Instant>,
    /// When the stream last wrote.
    last_write: Option<Instant>,
    /// A [`FlushTimer`] deadline is set for these items.
    armed: bool,
}

/// What to do after [`Pending::add`].
#[derive(Debug, PartialEq, Eq)]
pub enum Hold {
    /// Write the items held now.
    WriteNow,
    /// Keep them; set a timer for this deadline.
    Arm(Instant),
    /// Keep them; a timer is set already.
    Keep,
}

impl Pending {
    /// Adds an item (at most [`BATCH_ITEM_MAX`] bytes; `layout`: holding
    /// `dimeb_layout` matrices); `room_left`: the producer may send another. Items go now when the stream was idle
    /// (a lone item is never held), when there is no room for more (the
    /// consumer cannot grant room for items it has not got), and once the
    /// batch is full or old; else they wait for more, or the timer.
    pub fn add(&mut self, item: &[u8], layout: bool, room_left: bool, now: Instant) -> Hold {
        let idle = self.count == 0
            && self
                .last_write
                .is_none_or(|t| now.saturating_duration_since(t) >= LINGER);
        stream_batch::push(&mut self.buf, item).expect("small items only");
        self.count += 1;
        self.layout |= layout;
        let since = *self.since.get_or_insert(now);
        if idle
            || !room_left
            || self.count >= BATCH_ITEMS
            || self.buf.len() >= BATCH_BYTES
            || now.saturating_duration_since(since) >= LINGER
        {
            return Hold::WriteNow;
        }
        if self.armed {
            return Hold::Keep;
        }
        self.armed = true;
        Hold::Arm(since + LINGER)
    }

    /// The timer for these items is due at `now`: true if they should be
    /// written; else, if some wait, the deadline to set again.
    pub fn due(&mut self, now: Instant) -> (bool, Option<Instant>) {
        match self.since {
            None => {
                self.armed = false;
                (false, None)
            }
            Some(since) if since + LINGER <= now => {
                self.armed = false;
                (true, None)
            }
            Some(since) => (false, Some(since + LINGER)),
        }
    }

    /// How many items are held.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The held items as a batch payload (or, when there is one, that item
    /// alone after its length prefix), the count, and whether some hold
    /// `dimeb_layout` matrices; the batch is then empty and counted as
    /// written at `now`.
    pub fn take(&mut self, now: Instant) -> (usize, Vec<u8>, bool) {
        let n = std::mem::take(&mut self.count);
        let layout = std::mem::take(&mut self.layout);
        self.since = None;
        self.last_write = Some(now);
        let mut buf = std::mem::take(&mut self.buf);
        if n == 1 {
            buf.drain(..stream_batch::LEN_PREFIX);
        }
        (n, buf, layout)
    }

    /// Gives back the buffer [`Pending::take`] returned once written, to
    /// be reused.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.buf.is_empty() && buf.capacity() <= 2 * BATCH_BYTES {
            buf.clear();
            self.buf = buf;
        }
    }

    /// A write that is not of held items (a large item, the end).
    pub fn wrote(&mut self, now: Instant) {
        self.last_write = Some(now);
    }

    /// Drops the items held (the consumer has gone).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
        self.layout = false;
        self.since = None;
    }
}

/// When held items are due, for streams whose producing thread has not
/// come back to write them: deadlines by call id, earliest first.
#[derive(Default)]
pub struct FlushTimer {
    state: Mutex<TimerState>,
    changed: Condvar,
}

#[derive(Default)]
struct TimerState {
    due: VecDeque<(Instant, u64)>,
    closed: bool,
}

impl FlushTimer {
    fn lock(&self) -> MutexGuard<'_, TimerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Call `id`'s held items are due at `when`.
    pub fn set(&self, id: u64, when: Instant) {
        let mut st = self.lock();
        let at = st.due.partition_point(|(t, _)| *t <= when);
        st.due.insert(at, (when, id));
        // Only a new earliest deadline changes how long the waiter sleeps.
        if at == 0 {
            self.changed.notify_all();
        }
    }

    /// Waits for the next deadline to pass: its call id, and the time;
    /// None once closed.
    pub fn next_due(&self) -> Option<(u64, Instant)> {
        let mut st = self.lock();
        loop {
            if st.closed {
                return None;
            }
            let now = Instant::now();
            st = match st.due.front() {
                Some(&(t, id)) if t <= now => {
                    st.due.pop_front();
                    return Some((id, now));
                }
                Some(&(t, _)) => {
                    self.changed
                        .wait_timeout(st, t - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }

    /// Stops the waiter: `next_due` returns None from now on.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_item_is_written_at_once_and_a_burst_is_held() {
        let mut p = Pending::default();
        let t0 = Instant::now();
        assert_eq!(p.add(b"a", false, true, t0), Hold::WriteNow);
        assert_eq!(p.take(t0), (1, b"a".to_vec(), false));
        // Right after a write, items wait for company, with one timer.
        let t1 = t0 + Duration::from_micros(10);
        assert_eq!(p.add(b"b", false, true, t1), Hold::Arm(t1 + LINGER));
        assert_eq!(p.add(b"c", true, true, t1), Hold::Keep);
        assert_eq!(p.due(t1 + LINGER / 2), (false, Some(t1 + LINGER)));
        assert_eq!(p.due(t1 + LINGER), (true, None));
        let (n, buf, layout) = p.take(t1 + LINGER);
        assert_eq!(
            (n, layout),
            (2, true),
            "one item with layouts marks the batch"
        );
        let items: Vec<&[u8]> = stream_batch::ranges(&buf, 2)
            .unwrap()
            .into_iter()
            .map(|r| &buf[r])
            .collect();
        assert_eq!(items, vec![&b"b"[..], b"c"]);
        // Long after the last write, an item is lone again.
        assert_eq!(p.add(b"d", false, true, t1 + 3 * LINGER), Hold::WriteNow);
        assert!(
            !p.take(t1 + 3 * LINGER).2,
            "a batch without layouts is not marked"
        );
    }

    #[test]
    fn items_go_when_the_window_is_full_or_the_batch_is() {
        let mut p = Pending::default();
        let t0 = Instant::now();
        p.wrote(t0);
        assert!(matches!(p.add(b"a", false, true, t0), Hold::Arm(_)));
        assert_eq!(p.add(b"b", false, false, t0), Hold::WriteNow);
        p.take(t0);
        let mut last = Hold::Keep;
        for i in 0..BATCH_ITEMS {
            last = p.add(b"x", false, true, t0);
            if last == Hold::WriteNow {
                assert_eq!(i + 1, BATCH_ITEMS);
            }
        }
        assert_eq!(last, Hold::WriteNow);
    }

    #[test]
    fn the_timer_gives_deadlines_in_order() {
        let t = FlushTimer::default();
        let now = Instant::now();
        t.set(2, now + Duration::from_millis(2));
        t.set(1, now);
        assert_eq!(t.next_due().map(|(id, _)| id), Some(1));
        assert_eq!(t.next_due().map(|(id, _)| id), Some(2));
        assert!(now.elapsed() >= Duration::from_millis(2));
        t.close();
        assert_eq!(t.next_due(), None);
    }
}
