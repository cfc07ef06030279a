//! A small coverage-guided fuzzer for dime's parsers that runs on the
//! stable toolchain, so CI needs no nightly: rustc's SanitizerCoverage
//! pass counts edges into a map (`cov.c`), and inputs that reach new edges
//! (or new hit counts of one, in AFL's buckets) join the corpus, which is
//! mutated further. Targets are `dime::fuzzing::TARGETS`.
//!
//! ```text
//! dime-fuzz-stable TARGET [--seconds S] [--runs N] [--corpus DIR]...
//!                         [--save DIR] [--crashes DIR] [--seed N] [--hang-ms MS]
//! dime-fuzz-stable TARGET --replay FILE...
//! dime-fuzz-stable --list
//! ```
//!
//! A panic, an abort or a crash saves the input under `--crashes` (default
//! `fuzz/crashes`), prints it, and exits with status 1; an input that runs
//! longer than `--hang-ms` is saved and reported the same way. The last
//! line is `fuzz TARGET: N inputs in S s, C edges, corpus K, 0 crashes`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

unsafe extern "C" {
    fn dime_cov_counters() -> *mut u8;
    fn dime_cov_len() -> usize;
}

/// Largest input made by mutation.
const MAX_LEN: usize = 64 << 10;

/// Words mutations insert: frame magic, JSON punctuation, the protocol's
/// field names and commands, dimeb and pattern keys, WebSocket opcodes.
const DICTIONARY: &[&[u8]] = &[
    b"DiME",
    b"{\"",
    b"\":",
    b"\",\"",
    b"}",
    b"[",
    b"]",
    b"null",
    b"true",
    b"false",
    b"-1",
    b"1e309",
    b"0.5",
    b"\"command\"",
    b"\"handshake\"",
    b"\"join\"",
    b"\"leave\"",
    b"\"send\"",
    b"\"broadcast\"",
    b"\"sync\"",
    b"\"wait\"",
    b"\"devices\"",
    b"\"name\"",
    b"\"varname\"",
    b"\"serialization\"",
    b"\"dimeb\"",
    b"\"pickle\"",
    b"\"token\"",
    b"\"tok-ann\"",
    b"\"tok-root\"",
    b"\"timeout\"",
    b"\"receive\"",
    b"\"n\"",
    b"\"share_set\"",
    b"\"share_get\"",
    b"\"share_lock\"",
    b"\"share_unlock\"",
    b"\"share_incr\"",
    b"\"share_cas\"",
    b"\"share_wait_key\"",
    b"\"share\"",
    b"\"key\"",
    b"\"keys\"",
    b"\"nowait\"",
    b"\"ts_out\"",
    b"\"ts_in\"",
    b"\"ts_rd\"",
    b"\"ts_inp\"",
    b"\"ts_count\"",
    b"\"space\"",
    b"\"pattern\"",
    b"\"any\"",
    b"\"type\"",
    b"\"value\"",
    b"\"min\"",
    b"\"max\"",
    b"\"provide\"",
    b"\"call\"",
    b"\"return\"",
    b"\"yield\"",
    b"\"credit\"",
    b"\"cancel\"",
    b"\"ping\"",
    b"\"function\"",
    b"\"capacity\"",
    b"\"stream\"",
    b"\"items\"",
    b"\"bytes\"",
    b"\"id\"",
    b"\"error\"",
    b"\"extensions\"",
    b"\"dimeb_layout\"",
    b"\"broadcasts\"",
    b"\"shm\"",
    b"\"len\"",
    b"\"segment\"",
    b"\"ino\"",
    b"\"shm_send\"",
    b"\"shm_receive\"",
    b"\"shm_release\"",
    b"\"watch\"",
    b"\"prefix\"",
    b"\"since\"",
    b"\"epoch\"",
    b"\"group_watch\"",
    b"\"group_unwatch\"",
    b"\"share_watch\"",
    b"\"share_unwatch\"",
    b"\"share_lock_renew\"",
    b"\"ttl\"",
    b"\"fence\"",
    b"\"ts_watch\"",
    b"\"ts_unwatch\"",
    b"\"inspect\"",
    b"\"stats\"",
    b"\"monitor\"",
    b"\"groups\"",
    b"\"payloads\"",
    b"\"files.read\"",
    b"\"files.put_piece\"",
    b"role ",
    b" uid:",
    b"*",
    b"share:",
    b"send:",
    b"tcp:",
    b"tls:",
    b"ws:",
    b"wss:",
    b"unix:",
    b"[::1]",
    b":65535",
    b",anonymous=",
    b"GET / HTTP/1.1\r\n",
    b"\r\n\r\n",
    b"\x81\x85",
    b"\x82\xfe",
    b"\x82\xff",
    b"\x88\x80",
];

/// xorshift64*: small, fast, reproducible from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Edge counters of the last run, as AFL bucket bits.
fn bucket(count: u8) -> u8 {
    match count {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 4,
        4..=7 => 8,
        8..=15 => 16,
        16..=31 => 32,
        32..=127 => 64,
        _ => 128,
    }
}

fn counters() -> &'static mut [u8] {
    // SAFETY: cov.c's map is static and this process has one thread
    // running targets; the length is how many guards were handed out.
    unsafe { std::slice::from_raw_parts_mut(dime_cov_counters(), dime_cov_len()) }
}

struct Options {
    target: String,
    seconds: Option<f64>,
    runs: Option<u64>,
    corpora: Vec<PathBuf>,
    save: Option<PathBuf>,
    crashes: PathBuf,
    seed: u64,
    hang: Duration,
    replay: Vec<PathBuf>,
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        target: String::new(),
        seconds: None,
        runs: None,
        corpora: Vec::new(),
        save: None,
        crashes: PathBuf::from("fuzz/crashes"),
        seed: 0x9E37_79B9_7F4A_7C15,
        hang: Duration::from_millis(2000),
        replay: Vec::new(),
    };
    let mut replaying = false;
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--list" => {
                for (name, _) in dime::fuzzing::TARGETS {
                    println!("{name}");
                }
                std::process::exit(0);
            }
            "--seconds" => {
                o.seconds = Some(
                    value("--seconds")?
                        .parse()
                        .map_err(|e| format!("--seconds: {e}"))?,
                )
            }
            "--runs" => {
                o.runs = Some(
                    value("--runs")?
                        .parse()
                        .map_err(|e| format!("--runs: {e}"))?,
                )
            }
            "--corpus" => o.corpora.push(value("--corpus")?.into()),
            "--save" => o.save = Some(value("--save")?.into()),
            "--crashes" => o.crashes = value("--crashes")?.into(),
            "--seed" => {
                o.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--hang-ms" => {
                o.hang = Duration::from_millis(
                    value("--hang-ms")?
                        .parse()
                        .map_err(|e| format!("--hang-ms: {e}"))?,
                )
            }
            "--replay" => replaying = true,
            _ if replaying => o.replay.push(a.into()),
            _ if o.target.is_empty() && !a.starts_with('-') => o.target = a,
            _ => return Err(format!("unexpected argument '{a}'")),
        }
    }
    if o.target.is_empty() {
        return Err("name a target (--list shows them)".into());
    }
    Ok(o)
}

/// The input being run, for the crash and hang reports.
static CURRENT: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static CRASH_PATH: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Saves `input` as a crash of `target`; returns the file.
fn save_crash(dir: &Path, target: &str, kind: &str, input: &[u8]) -> PathBuf {
    let mut h = DefaultHasher::new();
    input.hash(&mut h);
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(format!("{target}-{kind}-{:016x}", h.finish()));
    let _ = std::fs::write(&path, input);
    path
}

fn show(input: &[u8]) -> String {
    let shown: String = input
        .iter()
        .take(512)
        .map(|&b| std::ascii::escape_default(b).to_string())
        .collect();
    if input.len() > 512 {
        format!("{shown}… ({} bytes)", input.len())
    } else {
        shown
    }
}

/// On an abort or a fatal signal: save the input being run, then exit.
extern "C" fn on_fatal_signal(sig: libc::c_int) {
    // Best effort: the process is going down anyway.
    if let (Ok(input), Ok(path)) = (CURRENT.try_lock(), CRASH_PATH.try_lock())
        && let Some(p) = path.as_ref()
    {
        let _ = std::fs::write(p, &*input);
        eprintln!(
            "fuzz: signal {sig} while running an input, saved to {}",
            p.display()
        );
    }
    unsafe { libc::_exit(1) };
}

fn install_signal_handlers() {
    for sig in [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGABRT,
        libc::SIGILL,
        libc::SIGFPE,
    ] {
        // SAFETY: installs a plain handler; the handler exits the process.
        unsafe { libc::signal(sig, on_fatal_signal as *const () as libc::sighandler_t) };
    }
}

fn load_corpus(dirs: &[PathBuf]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(d) else {
            eprintln!("fuzz: corpus {} not found; skipped", d.display());
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            if let Ok(bytes) = std::fs::read(&f) {
                out.push(bytes.into_iter().take(MAX_LEN).collect());
            }
        }
    }
    out
}

/// One mutation of `input`, with `other` (another corpus entry) to splice.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    let ops = 1 + rng.below(8);
    for _ in 0..ops {
        let len = input.len();
        match rng.below(12) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                let i = rng.below(len);
                input[i] = [0u8, 0xff, 0x7f, 0x80, b'"', b'{', b'}', b'\\', b' '][rng.below(9)];
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                input.drain(a..b);
            }
            4 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(i..i, bytes);
            }
            5 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(256)).min(len);
                let chunk = input[a..b].to_vec();
                let i = rng.below(len + 1);
                input.splice(i..i, chunk);
            }
            6 | 7 => {
                let word = DICTIONARY[rng.below(DICTIONARY.len())];
                let i = rng.below(len + 1);
                if rng.below(2) == 0 || i + word.len() > len {
                    input.splice(i..i, word.iter().copied());
                } else {
                    input[i..i + word.len()].copy_from_slice(word);
                }
            }
            8 if len >= 4 => {
                // A length field: big-endian u32s are the frame prefix's.
                let i = rng.below(len - 3);
                let v: u32 = match rng.below(6) {
                    0 => 0,
                    1 => 1,
                    2 => u32::MAX,
                    3 => 0x7fff_ffff,
                    4 => (len - i) as u32,
                    _ => rng.below(300) as u32,
                };
                input[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            9 if len > 0 => {
                let i = rng.below(len);
                input[i] = input[i].wrapping_add(1 + rng.below(8) as u8);
            }
            10 if !other.is_empty() => {
                // Splice: our head, the other's tail.
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
            }
            11 if !other.is_empty() => {
                let a = rng.below(other.len());
                let b = (a + 1 + rng.below(512)).min(other.len());
                let i = rng.below(len + 1);
                input.splice(i..i, other[a..b].iter().copied());
            }
            _ => input.push(rng.next() as u8),
        }
    }
    input.truncate(MAX_LEN);
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("dime-fuzz-stable: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(&(_, target)) = dime::fuzzing::TARGETS.iter().find(|(n, _)| *n == o.target) else {
        eprintln!(
            "dime-fuzz-stable: no target '{}' (--list shows them)",
            o.target
        );
        return ExitCode::from(2);
    };
    // Panics are reported by us, once, with the input.
    panic::set_hook(Box::new(|_| {}));
    if !o.replay.is_empty() {
        let mut bad = 0;
        for f in &o.replay {
            let input = std::fs::read(f).unwrap_or_default();
            match panic::catch_unwind(AssertUnwindSafe(|| target(&input))) {
                Ok(()) => println!("ok   {}", f.display()),
                Err(p) => {
                    bad += 1;
                    println!("FAIL {}: {}", f.display(), panic_text(&*p));
                }
            }
        }
        return if bad == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    *CRASH_PATH.lock().unwrap() = Some(o.crashes.join(format!("{}-fatal-last", o.target)));
    let _ = std::fs::create_dir_all(&o.crashes);
    install_signal_handlers();

    let started = Instant::now();
    let runs = Arc::new(AtomicU64::new(0));
    let running_since = Arc::new(AtomicU64::new(u64::MAX));
    let done = Arc::new(AtomicBool::new(false));
    // The watchdog: an input running past --hang-ms is a hang.
    {
        let (since, done, hang, crashes, name) = (
            running_since.clone(),
            done.clone(),
            o.hang,
            o.crashes.clone(),
            o.target.clone(),
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let s = since.load(Ordering::Relaxed);
                if s != u64::MAX
                    && started.elapsed().as_millis() as u64 > s + hang.as_millis() as u64
                {
                    let input = CURRENT.lock().map(|c| c.clone()).unwrap_or_default();
                    let p = save_crash(&crashes, &name, "hang", &input);
                    println!(
                        "fuzz {name}: HANG (over {} ms) on {}\n  saved to {}",
                        hang.as_millis(),
                        show(&input),
                        p.display()
                    );
                    std::process::exit(1);
                }
            }
        });
    }

    let mut rng = Rng(o.seed | 1);
    let mut seen = vec![0u8; counters().len().max(1)];
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut queue = load_corpus(&o.corpora);
    queue.push(Vec::new());
    let seeds = queue.len();
    let mut edges = 0usize;
    let mut last_report = Instant::now();
    let mut input: Vec<u8> = Vec::new();
    loop {
        let n = runs.load(Ordering::Relaxed);
        let out_of_time = o
            .seconds
            .is_some_and(|s| started.elapsed().as_secs_f64() >= s);
        let out_of_runs = o.runs.is_some_and(|r| n >= r);
        if (out_of_time || out_of_runs) && queue.is_empty() {
            break;
        }
        // Seeds first, then mutations of the corpus.
        if let Some(seed) = queue.pop() {
            input = seed;
        } else if corpus.is_empty() {
            input.clear();
            mutate(&mut rng, &mut input, &[]);
        } else {
            input.clone_from(&corpus[rng.below(corpus.len())]);
            let other = &corpus[rng.below(corpus.len())];
            mutate(&mut rng, &mut input, other);
        }
        CURRENT.lock().unwrap().clone_from(&input);
        let map = counters();
        map.fill(0);
        running_since.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let result = panic::catch_unwind(AssertUnwindSafe(|| target(&input)));
        running_since.store(u64::MAX, Ordering::Relaxed);
        runs.fetch_add(1, Ordering::Relaxed);
        if let Err(p) = result {
            let path = save_crash(&o.crashes, &o.target, "crash", &input);
            println!(
                "fuzz {}: CRASH after {} inputs: {}\n  input: {}\n  saved to {}",
                o.target,
                runs.load(Ordering::Relaxed),
                panic_text(&*p),
                show(&input),
                path.display()
            );
            done.store(true, Ordering::Relaxed);
            return ExitCode::FAILURE;
        }
        let map = counters();
        if seen.len() < map.len() {
            seen.resize(map.len(), 0);
        }
        let mut new = false;
        for (s, &c) in seen.iter_mut().zip(map.iter()) {
            let b = bucket(c);
            if b & !*s != 0 {
                if *s == 0 {
                    edges += 1;
                }
                *s |= b;
                new = true;
            }
        }
        if new {
            if let Some(dir) = &o.save {
                save_crash(dir, &o.target, "cov", &input);
            }
            corpus.push(input.clone());
        }
        if last_report.elapsed() >= Duration::from_secs(15) {
            last_report = Instant::now();
            eprintln!(
                "fuzz {}: {} inputs, {} edges, corpus {} ({} seeds), {:.0}/s",
                o.target,
                runs.load(Ordering::Relaxed),
                edges,
                corpus.len(),
                seeds,
                runs.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    done.store(true, Ordering::Relaxed);
    println!(
        "fuzz {}: {} inputs in {:.0} s, {} edges, corpus {} (from {} seeds), 0 crashes",
        o.target,
        runs.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        edges,
        corpus.len(),
        seeds
    );
    ExitCode::SUCCESS
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(panic without a message)".into())
}
