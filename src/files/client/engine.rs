//! Runs a transfer's tasks (whole files and pieces) on worker threads
//! that take them from one feed: uploads `in_flight` threads per
//! connection, each doing one call at a time; downloads a thread per
//! connection keeping `in_flight` calls out. The calling thread meanwhile
//! reports progress. A file's failure is recorded and the others go on;
//! a lost connection or a cancel stops everything.

use super::pool::Pool;
use super::{ProgressFn, Summary, TransferOptions};
use crate::client::rpc::Rpc;
use crate::files::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How far a transfer has come.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Files complete (including those already there, or resumed whole).
    pub files_done: u64,
    /// Files in the transfer.
    pub files_total: u64,
    /// Bytes complete (including verified pieces of earlier runs).
    pub bytes_done: u64,
    /// Bytes in the transfer.
    pub bytes_total: u64,
    /// Time since the transfer started.
    pub elapsed: Duration,
    /// Bytes sent per second in this run.
    pub rate: f64,
    /// Estimated time left, once there is a rate to go by.
    pub eta: Option<Duration>,
}

/// Counters the workers advance.
#[derive(Default)]
pub struct Counters {
    /// Files complete.
    pub files_done: AtomicU64,
    /// Bytes complete.
    pub bytes_done: AtomicU64,
    /// Bytes sent in this run.
    pub bytes_moved: AtomicU64,
    /// Bytes found complete from an earlier run.
    pub bytes_resumed: AtomicU64,
    /// Files that arrived in this run.
    pub files_moved: AtomicU64,
}

impl Counters {
    /// A file arrived, `bytes` of it sent now.
    pub fn file_done(&self, moved: bool) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
        if moved {
            self.files_moved.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `n` bytes sent.
    pub fn moved(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
        self.bytes_moved.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` bytes found complete.
    pub fn resumed(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
        self.bytes_resumed.fetch_add(n, Ordering::Relaxed);
    }
}

/// A running transfer's shared state.
struct Run<T> {
    tasks: Mutex<std::vec::IntoIter<T>>,
    abort: AtomicBool,
    errors: Mutex<Vec<Error>>,
    running: AtomicUsize,
    finished: (Mutex<()>, Condvar),
}

/// Where a worker thread takes its tasks and leaves its failures.
pub struct Feed<'a, T> {
    run: &'a Run<T>,
}

impl<T> Feed<'_, T> {
    /// The next task: None when there are none left or the transfer stops.
    pub fn next(&self) -> Option<T> {
        if self.run.abort.load(Ordering::SeqCst) {
            return None;
        }
        self.run
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next()
    }

    /// Records a failure (a fatal one stops the transfer).
    pub fn fail(&self, e: Error) {
        fail(self.run, e);
    }
}

/// A worker thread's whole job: thread `k` of the transfer, taking its
/// tasks from the feed.
pub type Worker<'a, T> = dyn Fn(usize, &Feed<'_, T>) + Sync + 'a;

/// A worker that runs each task it takes with `work(endpoint, task)`, on
/// endpoint `k` of the pool, one call at a time.
pub fn each_task<'a, T>(
    pool: &'a Pool,
    work: &'a (dyn Fn(&Rpc, T) -> Result<()> + Sync),
) -> impl Fn(usize, &Feed<'_, T>) + Sync + 'a {
    move |k, feed| {
        let ep = pool.endpoint(k);
        while let Some(task) = feed.next() {
            if let Err(e) = work(ep, task) {
                feed.fail(e);
            }
        }
    }
}

/// Runs `tasks` on `threads` threads, each running `worker`. Calls
/// `progress` on this thread every `interval` and at the end. Returns
/// the files' errors (each file's first), or the fatal one.
#[allow(clippy::too_many_arguments)]
pub fn run<T: Send>(
    threads: usize,
    tasks: Vec<T>,
    totals: (u64, u64),
    counters: &Counters,
    started: Instant,
    worker: &Worker<'_, T>,
    mut progress: Option<&mut dyn FnMut(&Progress) -> bool>,
    interval: Duration,
) -> std::result::Result<(), Vec<Error>> {
    // No tasks, no threads (a download thread would open a connection).
    let threads = threads.min(tasks.len());
    let run = Run {
        tasks: Mutex::new(tasks.into_iter()),
        abort: AtomicBool::new(false),
        errors: Mutex::new(Vec::new()),
        running: AtomicUsize::new(threads),
        finished: (Mutex::new(()), Condvar::new()),
    };
    let snapshot = || {
        let elapsed = started.elapsed();
        let done = counters.bytes_done.load(Ordering::Relaxed);
        let moved = counters.bytes_moved.load(Ordering::Relaxed);
        let rate = moved as f64 / elapsed.as_secs_f64().max(1e-9);
        let left = totals.1.saturating_sub(done);
        Progress {
            files_done: counters.files_done.load(Ordering::Relaxed),
            files_total: totals.0,
            bytes_done: done,
            bytes_total: totals.1,
            elapsed,
            rate,
            eta: (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate)),
        }
    };
    std::thread::scope(|s| {
        for k in 0..threads {
            let run = &run;
            s.spawn(move || {
                worker(k, &Feed { run });
                let _g = run.finished.0.lock();
                run.running.fetch_sub(1, Ordering::SeqCst);
                run.finished.1.notify_all();
            });
        }
        let mut g = run.finished.0.lock().unwrap_or_else(|p| p.into_inner());
        while run.running.load(Ordering::SeqCst) > 0 {
            g = run
                .finished
                .1
                .wait_timeout(g, interval)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            if let Some(cb) = progress.as_mut() {
                if run.running.load(Ordering::SeqCst) > 0 && !cb(&snapshot()) {
                    fail(&run, Error::Cancelled);
                }
            }
        }
    });
    if let Some(cb) = progress.as_mut() {
        cb(&snapshot());
    }
    let errors = run.errors.into_inner().unwrap_or_else(|p| p.into_inner());
    match errors.iter().find(|e| e.is_fatal()) {
        Some(fatal) => Err(vec![fatal.clone()]),
        None if errors.is_empty() => Ok(()),
        None => Err(errors),
    }
}

fn fail<T>(run: &Run<T>, e: Error) {
    if e.is_fatal() {
        run.abort.store(true, Ordering::SeqCst);
    }
    run.errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
}

/// A whole transfer after its planning: counts the `skipped` (files,
/// bytes) as done, runs `tasks` (which move `to_move` files and bytes) on
/// `threads` threads as [`run`] does, closes the pool and sums up. The
/// errors of files `refused` while planning fail it as well, after the
/// others have moved.
#[allow(clippy::too_many_arguments)]
pub fn transfer<T: Send>(
    pool: &Pool,
    threads: usize,
    tasks: Vec<T>,
    to_move: (u64, u64),
    skipped: (u64, u64),
    refused: Vec<Error>,
    counters: &Counters,
    options: &TransferOptions,
    started: Instant,
    worker: &Worker<'_, T>,
    progress: Option<ProgressFn<'_>>,
) -> Result<Summary> {
    let totals = (to_move.0 + skipped.0, to_move.1 + skipped.1);
    counters.files_done.fetch_add(skipped.0, Ordering::Relaxed);
    counters.bytes_done.fetch_add(skipped.1, Ordering::Relaxed);
    let outcome = run(
        threads,
        tasks,
        totals,
        counters,
        started,
        worker,
        progress,
        options.progress_interval,
    );
    pool.close();
    let mut errors = refused;
    match outcome {
        Err(fatal) if fatal.iter().any(Error::is_fatal) => return Err(combine(fatal)),
        Err(failed) => errors.extend(failed),
        Ok(()) => {}
    }
    if !errors.is_empty() {
        return Err(combine(errors));
    }
    Ok(Summary {
        files: counters.files_moved.load(Ordering::Relaxed),
        skipped: skipped.0,
        bytes: counters.bytes_moved.load(Ordering::Relaxed),
        resumed: counters.bytes_resumed.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

/// One error standing for a transfer's failures: the first, with a count
/// of the others.
pub fn combine(mut errors: Vec<Error>) -> Error {
    let n = errors.len();
    let first = errors.swap_remove(0);
    if n == 1 {
        return first;
    }
    let more = format!("{} (and {} more files failed)", first.message(), n - 1);
    match first {
        Error::NotFound(_) => Error::NotFound(more),
        Error::PermissionDenied(_) => Error::PermissionDenied(more),
        Error::InvalidInput(_) => Error::InvalidInput(more),
        Error::Checksum(_) => Error::Checksum(more),
        Error::Changed(_) => Error::Changed(more),
        Error::NoServer(_) => Error::NoServer(more),
        Error::Connection(_) => Error::Connection(more),
        Error::Io(_) => Error::Io(more),
        Error::Cancelled => Error::Cancelled,
    }
}
