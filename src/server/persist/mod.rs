//! Durability (`--data-dir`): shares and tuple spaces survive a restart.
//!
//! The data directory holds a snapshot of the persisted state
//! (`snapshot.bin`) and append-only logs of every change since
//! (`log.GEN`, GEN counting up). A service appends a record for each change
//! it makes ([`Journal::append`]); records go to the operating system before
//! any reply leaves the server ([`Journal::barrier`]), and to the disk as
//! the fsync policy says. When the log grows past a size it is rewritten:
//! the loop takes a cheap image of each service's state (maps that share
//! structure, so copying one costs no more than a pointer), starts a new
//! log, and a background thread encodes the image into a new snapshot and
//! deletes the logs it covers. On start, the snapshot is loaded and the
//! logs after it replayed in order; a log's cut or damaged tail is
//! dropped with a warning naming how much, and a file of another format
//! version is refused. `format` describes the bytes.

pub mod format;
pub mod policy;

use format::{FormatError, Image, LogHeader, Records};
pub use policy::{DEFAULT_REWRITE_AFTER, Durability, FsyncPolicy};
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A service's state, taken cheaply on the loop and encoded later on the
/// rewrite thread.
pub type Encoder = Box<dyn FnOnce() -> Result<Vec<u8>, String> + Send>;

/// What recovery hands to the services, in order.
pub enum Loaded<'a> {
    /// A snapshot section: a service's whole state (tag, bytes).
    Section(u8, &'a [u8]),
    /// A log record (tag, bytes).
    Record(u8, &'a [u8]),
}

/// The snapshot's file name.
const SNAPSHOT: &str = "snapshot.bin";
/// Where a snapshot is written before it is renamed into place.
const SNAPSHOT_TMP: &str = "snapshot.tmp";
/// The lock that keeps two servers out of one directory.
const LOCK: &str = "lock";
/// Wait this long before retrying a rewrite that failed.
const REWRITE_RETRY: Duration = Duration::from_secs(10);

/// The file name of log generation `g`: zero-padded, so names sort by generation.
fn log_name(g: u64) -> String {
    format!("log.{g:020}")
}

/// The generation of a log's file name, if it is one.
fn log_generation(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("log.")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Makes a directory's entries (new, renamed or deleted files) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A random identity for a new data directory.
fn new_instance() -> u64 {
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// The log writer of the `everysec` and `no` policies: a thread that
/// takes the records the loop hands over and writes them to the log
/// within about a millisecond, in order (so a crash loses at most that
/// last millisecond, a power cut at most the last second), and with
/// `everysec` syncs the log about once a second. The loop then never
/// makes a system call for the log: handing over is a lock and a swap.
struct Writer {
    shared: Arc<WriterShared>,
    thread: Option<JoinHandle<()>>,
}

/// What the loop hands the writer, in order.
enum Chunk {
    /// Records for the current log.
    Bytes(Vec<u8>),
    /// From here on, write to this log (a rewrite started a new one).
    Switch(Arc<File>),
}

#[derive(Default)]
struct WriterQueue {
    chunks: std::collections::VecDeque<Chunk>,
    /// Emptied buffers, handed back for reuse.
    spare: Vec<Vec<u8>>,
    stop: bool,
}

struct WriterShared {
    queue: Mutex<WriterQueue>,
    wake: Condvar,
    /// The writer sleeps until woken: the next hand-over must wake it.
    parked: AtomicBool,
}

/// How long the writer gathers records between writes while busy.
const WRITE_EVERY: Duration = Duration::from_millis(1);

impl Writer {
    fn start(file: Arc<File>, fsync: FsyncPolicy) -> io::Result<Writer> {
        let shared = Arc::new(WriterShared {
            queue: Mutex::new(WriterQueue::default()),
            wake: Condvar::new(),
            parked: AtomicBool::new(false),
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("dime-log".into())
            .spawn(move || write_loop(&sh, file, fsync))?;
        Ok(Writer {
            shared,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriterQueue> {
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands the records in `buf` over, leaving it empty. Records handed
    /// over before the writer takes them join one chunk, so the writer
    /// makes one write for all of them.
    fn hand_over(&self, buf: &mut Vec<u8>) {
        let mut q = self.lock();
        match q.chunks.back_mut() {
            Some(Chunk::Bytes(last)) => {
                last.extend_from_slice(buf);
                buf.clear();
            }
            _ => {
                let next = q.spare.pop().unwrap_or_default();
                q.chunks
                    .push_back(Chunk::Bytes(std::mem::replace(buf, next)));
            }
        }
        drop(q);
        self.wake_if_parked();
    }

    fn switch_to(&self, file: Arc<File>) {
        self.lock().chunks.push_back(Chunk::Switch(file));
        self.wake_if_parked();
    }

    fn wake_if_parked(&self) {
        if self.shared.parked.swap(false, Ordering::SeqCst) {
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Writer {
    /// Writes (and syncs) everything handed over, then stops.
    fn drop(&mut self) {
        self.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer thread.
fn write_loop(sh: &WriterShared, mut file: Arc<File>, fsync: FsyncPolicy) {
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    let mut failing = false;
    loop {
        let (chunks, stop) = {
            let mut q = sh.queue.lock().unwrap_or_else(|p| p.into_inner());
            while q.chunks.is_empty() && !q.stop {
                sh.parked.store(true, Ordering::SeqCst);
                // Parked: woken by the next hand-over, or in time to sync.
                let wait = if unsynced {
                    Duration::from_secs(1).saturating_sub(last_sync.elapsed())
                } else {
                    Duration::from_secs(3600)
                };
                q = sh
                    .wake
                    .wait_timeout(q, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                if unsynced && last_sync.elapsed() >= Duration::from_secs(1) {
                    break;
                }
            }
            sh.parked.store(false, Ordering::SeqCst);
            (std::mem::take(&mut q.chunks), q.stop)
        };
        let mut spare = Vec::new();
        let mut rest = chunks.into_iter();
        while let Some(chunk) = rest.next() {
            match chunk {
                Chunk::Bytes(mut b) => {
                    if let Err(e) = (&*file).write_all(&b) {
                        // Keep this and what follows, and retry shortly.
                        if !failing {
                            log::error!("cannot write the log: {e}; retrying");
                            failing = true;
                        }
                        let mut q = sh.queue.lock().unwrap_or_else(|p| p.into_inner());
                        let mut back: std::collections::VecDeque<Chunk> =
                            std::iter::once(Chunk::Bytes(b)).chain(rest).collect();
                        back.extend(q.chunks.drain(..));
                        q.chunks = back;
                        break;
                    }
                    if failing {
                        log::warn!("writing the log works again");
                        failing = false;
                    }
                    unsynced = fsync == FsyncPolicy::EverySec;
                    b.clear();
                    spare.push(b);
                }
                Chunk::Switch(f) => {
                    // The old log's records must be on disk before the new
                    // log's, or a power cut could leave a gap between them.
                    if fsync != FsyncPolicy::No {
                        let _ = file.sync_data();
                    }
                    file = f;
                }
            }
        }
        if !spare.is_empty() {
            let mut q = sh.queue.lock().unwrap_or_else(|p| p.into_inner());
            spare.truncate(4usize.saturating_sub(q.spare.len()));
            q.spare.append(&mut spare);
        }
        if unsynced
            && fsync == FsyncPolicy::EverySec
            && last_sync.elapsed() >= Duration::from_secs(1)
        {
            if let Err(e) = file.sync_data() {
                log::error!("cannot fsync the log: {e}");
            }
            last_sync = Instant::now();
            unsynced = false;
        }
        if stop {
            let left = !sh
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .chunks
                .is_empty();
            if !left || failing {
                if fsync != FsyncPolicy::No {
                    let _ = file.sync_data();
                }
                return;
            }
            continue;
        }
        // Busy: gather the next records for a moment, so one write
        // carries many of them.
        std::thread::sleep(if failing {
            Duration::from_millis(100)
        } else {
            WRITE_EVERY
        });
    }
}

/// A rewrite in progress on its thread: the new snapshot's size, or why
/// it failed.
struct Rewrite {
    thread: JoinHandle<Result<u64, String>>,
    started: Instant,
}

/// The writing side of the data directory, held by the server's state.
pub struct Journal {
    settings: Durability,
    instance: u64,
    generation: u64,
    file: Arc<File>,
    /// Records not yet written to the file.
    buf: Vec<u8>,
    /// Bytes of the current log, written and buffered.
    log_len: u64,
    /// Size of the last snapshot written or loaded.
    snapshot_len: u64,
    /// The background writer (`everysec`, `no`); None with `always`,
    /// which writes and syncs on the loop before replies leave.
    writer: Option<Writer>,
    rewrite: Option<Rewrite>,
    /// No rewrite before then (after one failed).
    rewrite_after_time: Option<Instant>,
    /// Holds the directory's lock while open.
    _lock: File,
}

impl Journal {
    /// Opens (creating if needed) the data directory, hands its snapshot
    /// and then every log record to `load` in order, and returns the
    /// journal ready to append. An error names the file and what is wrong.
    pub fn open(
        settings: &Durability,
        load: &mut dyn FnMut(Loaded) -> Result<(), String>,
    ) -> io::Result<Journal> {
        let dir = settings.dir.clone();
        let ctx = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
            io::Error::other(format!("{what} {}: {e}", path.display()))
        };
        fs::create_dir_all(&dir).map_err(|e| ctx("cannot create the data directory", &dir, &e))?;
        let lock = lock_dir(&dir)?;
        let _ = fs::remove_file(dir.join(SNAPSHOT_TMP));

        let snap_path = dir.join(SNAPSHOT);
        let mut instance = None;
        let mut first_gen = 0;
        let mut snapshot_len = 0;
        if snap_path.exists() {
            let image = format::read_snapshot(&snap_path)
                .map_err(|e| ctx("cannot use the snapshot", &snap_path, &e))?;
            snapshot_len = fs::metadata(&snap_path).map_or(0, |m| m.len());
            for (tag, bytes) in &image.sections {
                load(Loaded::Section(*tag, bytes))
                    .map_err(|e| ctx("cannot load the snapshot", &snap_path, &e))?;
            }
            instance = Some(image.instance);
            first_gen = image.next_generation;
        }

        let mut gens: Vec<u64> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| log_generation(&e.file_name().to_string_lossy()))
            .collect();
        gens.sort_unstable();
        for &g in gens.iter().filter(|g| **g < first_gen) {
            // Covered by the snapshot: a rewrite ended before deleting it.
            let _ = fs::remove_file(dir.join(log_name(g)));
        }
        gens.retain(|g| *g >= first_gen);

        let mut current: Option<(u64, u64)> = None;
        // A last log whose header was cut short is made again under its
        // own generation, so it still sorts after the others.
        let mut remake = None;
        for (i, &g) in gens.iter().enumerate() {
            let last = i + 1 == gens.len();
            let path = dir.join(log_name(g));
            let bytes = fs::read(&path).map_err(|e| ctx("cannot read the log", &path, &e))?;
            let header = match format::read_log_header(&bytes) {
                Ok(h) => h,
                Err(FormatError::ShortHeader) if last => {
                    // The server stopped right after creating it: nothing
                    // was ever acknowledged from it.
                    log::warn!(
                        "log {}: its header is cut short ({} bytes); starting it afresh",
                        path.display(),
                        bytes.len()
                    );
                    remake = Some(g);
                    continue;
                }
                Err(e) => return Err(ctx("cannot use the log", &path, &e)),
            };
            if header.generation != g {
                return Err(ctx(
                    "cannot use the log",
                    &path,
                    &format!("its header says generation {}", header.generation),
                ));
            }
            if *instance.get_or_insert(header.instance) != header.instance {
                return Err(ctx(
                    "cannot use the log",
                    &path,
                    &"it belongs to another data directory",
                ));
            }
            let mut records = Records::new(&bytes);
            for r in records.by_ref() {
                load(Loaded::Record(r.tag, r.body)).map_err(|e| {
                    ctx(
                        "cannot replay the log",
                        &path,
                        &format!("the record at offset {}: {e}", r.offset),
                    )
                })?;
            }
            let end = records.good_end();
            if let Some(tail) = records.bad_tail() {
                if !last {
                    return Err(ctx(
                        "cannot use the log",
                        &path,
                        &format!(
                            "{} at offset {}, and later logs follow it; refusing to \
                             replay them over a gap (move the data directory aside to \
                             inspect it)",
                            tail.why, tail.offset
                        ),
                    ));
                }
                log::warn!(
                    "log {}: dropped its last {} bytes from offset {} ({}): a write cut \
                     short when the server stopped; every record before it is kept",
                    path.display(),
                    tail.dropped,
                    tail.offset,
                    tail.why
                );
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(end)?;
                f.sync_all()?;
            }
            if last {
                current = Some((g, end));
            }
        }

        let instance = instance.unwrap_or_else(new_instance);
        let (generation, file, log_len) = match current {
            Some((g, len)) => {
                let f = OpenOptions::new()
                    .append(true)
                    .open(dir.join(log_name(g)))?;
                (g, f, len)
            }
            None => {
                let g = remake.unwrap_or(first_gen.max(1));
                let (f, len) = create_log(&dir, g, instance)?;
                sync_dir(&dir)?;
                (g, f, len)
            }
        };
        let file = Arc::new(file);
        let writer = match settings.fsync {
            FsyncPolicy::Always => None,
            policy => Some(Writer::start(file.clone(), policy)?),
        };
        Ok(Journal {
            settings: settings.clone(),
            instance,
            generation,
            file,
            buf: Vec::new(),
            log_len,
            snapshot_len,
            writer,
            rewrite: None,
            rewrite_after_time: None,
            _lock: lock,
        })
    }

    /// Appends one record: the service's `tag`, then `record` in bincode.
    /// It reaches the file at the next [`Journal::barrier`].
    pub fn append<R: serde::Serialize + ?Sized>(&mut self, tag: u8, record: &R) {
        let before = self.buf.len();
        let res = format::append_record(&mut self.buf, tag, |buf| {
            bincode::serde::encode_into_std_write(record, buf, format::bincode_config())
                .map(drop)
                .map_err(|e| e.to_string())
        });
        match res {
            Ok(()) => self.log_len += (self.buf.len() - before) as u64,
            // Records are plain data; encoding one cannot fail short of a bug.
            Err(e) => log::error!("cannot encode a log record: {e}"),
        }
    }

    /// True when records wait to be written.
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Makes the pending records safe before any reply leaves: with
    /// `always`, writes them and forces them to disk (an error is returned:
    /// an acknowledgement would be a lie); otherwise hands them to the
    /// writer thread, which writes them within about a millisecond.
    pub fn barrier(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Some(w) = &self.writer {
            w.hand_over(&mut self.buf);
            return Ok(());
        }
        match self.write_pending().and_then(|()| self.file.sync_data()) {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot write the log in {} with fsync always, so no write can be \
                     acknowledged: {e}",
                    self.settings.dir.display()
                ),
            )),
        }
    }

    /// Writes out `buf`, dropping what was written even when a later write
    /// fails, so a retry never writes a byte twice.
    fn write_pending(&mut self) -> io::Result<()> {
        let mut done = 0;
        let res = loop {
            if done == self.buf.len() {
                break Ok(());
            }
            match (&*self.file).write(&self.buf[done..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.buf.drain(..done);
        res
    }

    /// True when the log has grown enough to be rewritten and no rewrite
    /// is running.
    pub fn wants_rewrite(&self) -> bool {
        self.rewrite.is_none()
            && self.log_len >= self.settings.rewrite_after
            && self.log_len >= self.snapshot_len
            && self.rewrite_after_time.is_none_or(|t| Instant::now() >= t)
    }

    /// Starts a rewrite from the services' images (taken just now, so
    /// they hold exactly what the log holds so far): a new log takes the
    /// next records, and a thread writes the snapshot and deletes the old
    /// logs.
    pub fn start_rewrite(&mut self, parts: Vec<(u8, Encoder)>) -> io::Result<()> {
        self.barrier()?;
        let dir = self.settings.dir.clone();
        let next = self.generation + 1;
        let (f, len) = create_log(&dir, next, self.instance)?;
        let f = Arc::new(f);
        if self.settings.fsync == FsyncPolicy::Always {
            // Acknowledged writes will go there: its name must be durable.
            sync_dir(&dir)?;
        }
        let old = std::mem::replace(&mut self.file, f.clone());
        if let Some(w) = &self.writer {
            w.switch_to(f);
        }
        self.generation = next;
        self.log_len = len;
        let instance = self.instance;
        let fsync = self.settings.fsync;
        let thread = std::thread::Builder::new()
            .name("dime-rewrite".into())
            .spawn(move || write_snapshot(&dir, instance, next, old, fsync, parts))?;
        self.rewrite = Some(Rewrite {
            thread,
            started: Instant::now(),
        });
        log::info!("rewriting the log into a snapshot (new log generation {next})");
        Ok(())
    }

    /// Notes the end of a finished rewrite; true if one just ended.
    pub fn poll_rewrite(&mut self) -> bool {
        if !self
            .rewrite
            .as_ref()
            .is_some_and(|r| r.thread.is_finished())
        {
            return false;
        }
        let r = self.rewrite.take().expect("checked above");
        self.finish_rewrite(r);
        true
    }

    fn finish_rewrite(&mut self, r: Rewrite) {
        match r.thread.join() {
            Ok(Ok(size)) => {
                self.snapshot_len = size;
                self.rewrite_after_time = None;
                log::info!(
                    "snapshot written ({size} bytes) in {:?}",
                    r.started.elapsed()
                );
            }
            Ok(Err(e)) => {
                log::error!(
                    "cannot write a snapshot in {}: {e}; the logs are kept, retrying in {:?}",
                    self.settings.dir.display(),
                    REWRITE_RETRY
                );
                self.rewrite_after_time = Some(Instant::now() + REWRITE_RETRY);
            }
            Err(_) => {
                log::error!("the snapshot thread panicked; the logs are kept");
                self.rewrite_after_time = Some(Instant::now() + REWRITE_RETRY);
            }
        }
    }

    /// Writes and syncs everything pending and waits for a running
    /// rewrite: the server is stopping.
    pub fn close(&mut self) -> io::Result<()> {
        let res = match self.writer.take() {
            Some(w) => {
                w.hand_over(&mut self.buf);
                // Dropping it writes and syncs everything handed over.
                drop(w);
                Ok(())
            }
            None => self.write_pending().and_then(|()| self.file.sync_data()),
        };
        if let Some(r) = self.rewrite.take() {
            self.finish_rewrite(r);
        }
        res
    }

    /// When the log is forced to disk.
    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.settings.fsync
    }

    /// The log generation being appended to.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// True while a rewrite runs.
    pub fn is_rewriting(&self) -> bool {
        self.rewrite.is_some()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::error!("cannot write the log on close: {e}");
        }
    }
}

/// Creates log generation `g` with its header; returns it open for
/// appending and its length.
fn create_log(dir: &Path, g: u64, instance: u64) -> io::Result<(File, u64)> {
    let path = dir.join(log_name(g));
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io::Error::other(format!("cannot create {}: {e}", path.display())))?;
    f.set_len(0)?;
    let header = LogHeader {
        generation: g,
        instance,
    }
    .encode();
    f.write_all(&header)?;
    f.sync_data()?;
    Ok((f, header.len() as u64))
}

/// The rewrite thread: encodes the image, writes it as the snapshot that
/// logs from `next` on follow, and deletes the logs before `next`.
fn write_snapshot(
    dir: &Path,
    instance: u64,
    next: u64,
    old_log: Arc<File>,
    fsync: FsyncPolicy,
    parts: Vec<(u8, Encoder)>,
) -> Result<u64, String> {
    if fsync != FsyncPolicy::No {
        // The old log's last records: until the snapshot is in place,
        // they are only there.
        let _ = old_log.sync_data();
    }
    drop(old_log);
    let mut sections = Vec::with_capacity(parts.len());
    for (tag, encode) in parts {
        sections.push((tag, serde_bytes::ByteBuf::from(encode()?)));
    }
    let image = Image {
        instance,
        next_generation: next,
        sections,
    };
    let tmp = dir.join(SNAPSHOT_TMP);
    let size = format::write_snapshot(&tmp, &image).map_err(|e| e.to_string())?;
    drop(image);
    fs::rename(&tmp, dir.join(SNAPSHOT)).map_err(|e| e.to_string())?;
    sync_dir(dir).map_err(|e| e.to_string())?;
    for e in fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        if log_generation(&e.file_name().to_string_lossy()).is_some_and(|g| g < next) {
            let _ = fs::remove_file(e.path());
        }
    }
    Ok(size)
}

/// Takes the directory's lock, so two servers never write one directory.
fn lock_dir(dir: &Path) -> io::Result<File> {
    let path: PathBuf = dir.join(LOCK);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io::Error::other(format!("cannot open {}: {e}", path.display())))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(io::Error::other(format!(
            "the data directory {} is in use by another dime server",
            dir.display()
        )));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, got: &mut Vec<String>) -> io::Result<Journal> {
        let mut s = Durability::new(dir);
        s.fsync = FsyncPolicy::No;
        Journal::open(&s, &mut |l| {
            got.push(match l {
                Loaded::Section(t, b) => format!("S{t}:{}", String::from_utf8_lossy(b)),
                Loaded::Record(t, b) => format!("R{t}:{}", String::from_utf8_lossy(b)),
            });
            Ok(())
        })
    }

    #[test]
    fn records_survive_a_reopen_and_a_rewrite() {
        let d = tempfile::tempdir().unwrap();
        let mut got = Vec::new();
        let mut j = open(d.path(), &mut got).unwrap();
        assert!(got.is_empty());
        j.append(1, "a");
        j.append(2, "b");
        j.barrier().unwrap();
        drop(j);
        let mut j = open(d.path(), &mut got).unwrap();
        assert_eq!(got.len(), 2);
        assert!(
            got[0].starts_with("R1:") && got[0].ends_with('a'),
            "{got:?}"
        );
        // A second server on the same directory is refused.
        let e = open(d.path(), &mut Vec::new()).err().unwrap();
        assert!(e.to_string().contains("in use by another"), "{e}");
        let image: Encoder = Box::new(|| Ok(b"whole".to_vec()));
        j.start_rewrite(vec![(1, image)]).unwrap();
        j.append(1, "c");
        j.barrier().unwrap();
        while !j.poll_rewrite() {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(j);
        got.clear();
        let _j = open(d.path(), &mut got).unwrap();
        assert_eq!(got[0], "S1:whole");
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[1].ends_with('c'));
        let logs = fs::read_dir(d.path())
            .unwrap()
            .filter(|e| {
                log_generation(&e.as_ref().unwrap().file_name().to_string_lossy()).is_some()
            })
            .count();
        assert_eq!(logs, 1, "the covered log was deleted");
    }

    #[test]
    fn a_cut_tail_is_dropped_and_appending_goes_on() {
        let d = tempfile::tempdir().unwrap();
        let mut j = open(d.path(), &mut Vec::new()).unwrap();
        j.append(1, "kept");
        j.append(1, "cut");
        j.barrier().unwrap();
        drop(j);
        let path = d.path().join(log_name(1));
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 2)
            .unwrap();
        let mut got = Vec::new();
        let mut j = open(d.path(), &mut got).unwrap();
        assert_eq!(got.len(), 1);
        j.append(1, "after");
        j.barrier().unwrap();
        drop(j);
        got.clear();
        drop(open(d.path(), &mut got).unwrap());
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[1].ends_with("after"));
    }
}
