//! The two ends of a stream's flow control, as the remote-call endpoint
//! ([`super::rpc`]) keeps them: a [`Consumer`] buffers items until they
//! are read and says when to grant the producer more room; a [`Producer`]
//! holds the room the consumer granted and blocks the producing thread
//! when there is none. Neither does I/O: the endpoint does.

use super::rpc::CallError;
use crate::buffer::PooledBuf;
use std::collections::VecDeque;
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
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.lock();
        loop {
            if let Some(item) = st.items.pop_front() {
                st.read_items += 1;
                st.read_bytes += item.len() as u64;
                let grant = (st.end.is_none()
                    && (st.read_items * 2 >= self.window.items
                        || st.read_bytes * 2 >= self.window.bytes))
                    .then(|| {
                        let g = (st.read_items, st.read_bytes);
                        st.read_items = 0;
                        st.read_bytes = 0;
                        g
                    });
                return Ok((Next::Item(item), grant));
            }
            match &st.end {
                Some(Ok(())) => return Ok((Next::End, None)),
                Some(Err(e)) => return Err(e.clone()),
                None => {}
            }
            st = match deadline {
                None => self.arrived.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok((Next::Timeout, None));
                    }
                    self.arrived
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
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
/// stream the room its consumer granted.
pub struct Producer {
    state: Mutex<ProducerState>,
    changed: Condvar,
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
        }
    }

    fn lock(&self) -> MutexGuard<'_, ProducerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
