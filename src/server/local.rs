//! In-process providers: functions served by threads of the broker's own
//! process, reached without a socket. The remote-call service hands their
//! calls to a [`LocalProvider`]'s queue, where worker threads take them;
//! replies wait in [`Replies`] until the event loop, woken through the
//! poller, routes them as it routes a provider's `return`. A payload moves
//! from the caller's frame to the worker and back without being copied,
//! and a reply may name a range of a file that goes from the file to the
//! caller's socket without being read into memory at all.

use crate::buffer::PooledBuf;
pub use crate::transport::FileSpan;
use polling::Poller;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A call for an in-process provider.
#[derive(Debug)]
pub struct LocalCall {
    /// The broker's id of the call, to answer with [`LocalProvider::reply`].
    pub id: u64,
    /// The function's name.
    pub function: Arc<str>,
    /// The encoded arguments.
    pub args: PooledBuf,
    /// True for a stream call, which in-process providers do not serve.
    pub stream: bool,
}

/// A reply: the encoded result, or an error's type name and message.
pub type LocalResult = Result<LocalReply, (String, String)>;

/// An in-process provider's encoded result.
pub enum LocalReply {
    /// The result's bytes.
    Bytes(PooledBuf),
    /// A result whose bytes are `head`, then `span.len` bytes of a file,
    /// then `tail`: the file's bytes go to the caller's socket by
    /// `sendfile` (read and written in chunks over TLS and WebSocket).
    WithFile {
        /// The result's bytes before the file's.
        head: Vec<u8>,
        /// The file's bytes.
        span: FileSpan,
        /// The result's bytes after the file's.
        tail: Vec<u8>,
    },
}

impl From<PooledBuf> for LocalReply {
    fn from(b: PooledBuf) -> LocalReply {
        LocalReply::Bytes(b)
    }
}

/// The calls waiting for one in-process provider's workers.
#[derive(Default)]
pub struct CallQueue {
    state: Mutex<(VecDeque<LocalCall>, bool)>,
    ready: Condvar,
}

impl CallQueue {
    fn lock(&self) -> MutexGuard<'_, (VecDeque<LocalCall>, bool)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a call to the workers.
    pub fn push(&self, call: LocalCall) {
        self.lock().0.push_back(call);
        self.ready.notify_one();
    }

    /// No more calls will come: waiting workers wake and stop.
    pub fn close(&self) {
        self.lock().1 = true;
        self.ready.notify_all();
    }
}

/// Replies of in-process providers, waiting for the event loop.
pub struct Replies {
    list: Mutex<Vec<(usize, u64, LocalResult)>>,
    /// Set while the loop has not yet been woken for the replies queued.
    woken: AtomicBool,
    poller: Arc<Poller>,
}

impl Replies {
    /// An empty list whose arrivals wake `poller`.
    pub fn new(poller: Arc<Poller>) -> Replies {
        Replies {
            list: Mutex::new(Vec::new()),
            woken: AtomicBool::new(false),
            poller,
        }
    }

    /// Takes every reply queued so far: (provider, call id, result).
    pub fn take(&self) -> Vec<(usize, u64, LocalResult)> {
        self.woken.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.list.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn push(&self, provider: usize, id: u64, result: LocalResult) {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((provider, id, result));
        // One wake-up covers every reply queued before the loop takes them.
        if !self.woken.swap(true, Ordering::SeqCst) {
            let _ = self.poller.notify();
        }
    }
}

/// The worker side of an in-process provider, from
/// `Server::local_provider`: take calls
/// with [`LocalProvider::next_call`], answer each with
/// [`LocalProvider::reply`]. Cloning it gives another handle on the same
/// provider, for another worker thread.
#[derive(Clone)]
pub struct LocalProvider {
    pub(crate) id: usize,
    pub(crate) queue: Arc<CallQueue>,
    pub(crate) replies: Arc<Replies>,
}

impl LocalProvider {
    /// The next call, waiting up to `timeout` (None: as long as it
    /// takes); None when the time passed or the broker stopped.
    pub fn next_call(&self, timeout: Option<Duration>) -> Option<LocalCall> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.queue.lock();
        loop {
            if let Some(c) = st.0.pop_front() {
                return Some(c);
            }
            if st.1 {
                return None;
            }
            st = match deadline {
                None => self.queue.ready.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    self.queue
                        .ready
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Answers call `id`.
    pub fn reply(&self, id: u64, result: LocalResult) {
        self.replies.push(self.id, id, result);
    }

    /// True once the broker has stopped (no call will come).
    pub fn is_closed(&self) -> bool {
        self.queue.lock().1
    }
}
