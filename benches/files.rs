//! File transfer benchmark, TCP on 127.0.0.1, everything measured in one
//! run: `cargo bench --bench files` (add `-- --check` to exit 1 after the
//! report if a target is MISS).
//!
//! 1. One large file (2 GiB; `DIME_BENCH_FILE_MB` to change) downloaded
//!    over 4 connections from `dime files serve ROOT --listen tcp:…` (the
//!    broker in the file server's process: one hop), against a raw
//!    single-connection TCP stream of the same file (read the file, send
//!    it, receive it, write it) in the same run, the two taking turns.
//!    Targets: ≥ 0.8× the raw rate; the server's peak RSS under 100 MB.
//!    The first run is also shown on its own: the server reads and hashes
//!    each piece then, and sends later runs with the hashes it kept.
//!    The same file is then uploaded to a `--writable` server (`dime
//!    put`, 3 runs), shown against the same raw floor, with no target.
//! 2. 10,000 files of 10 KB (`DIME_BENCH_SMALL_FILES`) over 4 connections
//!    against pynetwork 2.4 with 4 clients (`benches/pynetwork_files.py`).
//!    Target: ≥ 10× pynetwork's files/s. pynetwork runs from a Python that
//!    has it: `$PYNETWORK_PYTHON`, else `.venv/pynetwork/bin/python`; make
//!    that with
//!    `python3 -m venv .venv/pynetwork && .venv/pynetwork/bin/pip install pynetwork==2.4 tqdm`.
//!    Without it the comparison is SKIP (a MISS under `--check`).
//!
//! Files live in a scratch directory under `$DIME_BENCH_DIR` (default the
//! system temp dir); it needs about three times the large file's size.

mod common;

use dime::files::{Selection, TransferOptions, download};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Timed runs per row, taking turns; the median is reported.
const REPEATS: usize = 3;
/// Timed runs of the large file, each side: 5 so that one disturbed run
/// moves neither median.
const BIG_REPEATS: usize = 5;
const RATIO_TARGET: f64 = 0.8;
const RSS_TARGET_MB: f64 = 100.0;
const FILES_TARGET: f64 = 10.0;
const CONNECTIONS: usize = 4;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `len` pseudo-random bytes to `path`.
fn make_file(path: &Path, len: usize, seed: u64) {
    let mut f = File::create(path).unwrap();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; (1 << 20).min(len.max(1))];
    let mut left = len;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
}

/// `dime files serve ROOT --listen tcp:127.0.0.1:0` (`--writable` for
/// uploads), and its address.
struct FileServer {
    child: Child,
    address: String,
}

impl FileServer {
    fn start(root: &Path, writable: bool) -> FileServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dime"))
            .args(["files", "serve"])
            .arg(root)
            .args(["--listen", "tcp:127.0.0.1:0"])
            .args(writable.then_some("--writable"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dime files serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let address = loop {
            let line = lines.next().expect("dime files serve exited").unwrap();
            if let Some(a) = line.strip_prefix("dime: listening on ") {
                break a.to_owned();
            }
        };
        // Keep draining its stderr so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        // The file server registers right after the broker listens.
        std::thread::sleep(Duration::from_millis(300));
        FileServer { child, address }
    }

    /// CPU seconds (user and system) the server has used so far.
    fn cpu_secs(&self) -> f64 {
        let stat =
            fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The fields after the command name (which may hold spaces); utime
        // and stime are the 14th and 15th of the line.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let ticks: f64 = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|v| v.parse::<f64>().ok())
            .sum();
        // SAFETY: sysconf only reads a configuration value.
        ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }

    /// Peak resident memory so far, in MB.
    fn peak_rss_mb(&self) -> f64 {
        let status =
            fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        // SAFETY: a plain signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The raw floor: one TCP connection, a thread reading the file into it
/// and one writing what arrives to `dest`, in writes as large as dime's
/// client makes them (an earlier floor wrote 32 KiB at a time where the
/// client wrote 1 MiB, and ran 12% slower than this one); seconds taken.
/// With `hash`, the receiving thread also feeds every byte to BLAKE3
/// before writing it (what checking on arrival costs, shown beside the
/// floor).
fn raw_copy(src: &Path, dest: &Path, hash: bool) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dest = dest.to_owned();
    let t = Instant::now();
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut out = File::create(dest).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut hasher = blake3::Hasher::new();
        let write_size = dime::vm::page_cache_write(buf.len());
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            if hash {
                hasher.update(&buf[..n]);
            }
            // In writes as large as dime's client makes them.
            for part in buf[..n].chunks(write_size) {
                out.write_all(part).unwrap();
            }
        }
        std::hint::black_box(hasher.finalize());
    });
    let mut s = TcpStream::connect(addr).unwrap();
    let mut f = File::open(src).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        s.write_all(&buf[..n]).unwrap();
    }
    drop(s);
    receiver.join().unwrap();
    t.elapsed().as_secs_f64()
}

/// `dime put` of `src` into directory `into` of the file server at
/// `address`; seconds taken.
fn ours_up(address: &str, src: &Path, into: &str) -> f64 {
    let (base, name) = (src.parent().unwrap(), src.file_name().unwrap());
    let t = Instant::now();
    dime::files::upload(
        address,
        "files",
        &Selection::Paths(vec![name.to_str().unwrap().into()]),
        base,
        into,
        &transfer_options(),
        None,
    )
    .expect("upload");
    t.elapsed().as_secs_f64()
}

/// The options every timed transfer here uses: [`CONNECTIONS`] connections.
fn transfer_options() -> TransferOptions {
    TransferOptions {
        connections: CONNECTIONS,
        ..TransferOptions::default()
    }
}

fn ours(address: &str, what: &str, dest: &Path) -> f64 {
    let t = Instant::now();
    download(
        address,
        "files",
        &Selection::Paths(vec![what.into()]),
        dest,
        &transfer_options(),
        None,
    )
    .expect("download");
    t.elapsed().as_secs_f64()
}

/// Writes every dirty page to disk before a timed run, so the writeback
/// of the files made before it (gigabytes, which the kernel starts
/// flushing some seconds later) never lands in the middle of it: without
/// this, a raw run measured 0.33 GB/s on a VM where it ran at 2.5 GB/s
/// once the disk was idle.
fn flush_to_disk() {
    // SAFETY: sync() takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// The 1-minute load average, to read the figures by (other work on
/// the machine takes cores from both sides).
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// CPU seconds (user and system) this process has used so far: the raw
/// copy's two threads, or dime's client.
fn own_cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let ru = unsafe {
        let mut ru = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(ru.ru_utime) + secs(ru.ru_stime)
}

/// Runs `f` (which returns the seconds it took): its seconds and the CPU
/// seconds this process used meanwhile.
fn with_cpu(f: impl FnOnce() -> f64) -> (f64, f64) {
    let c0 = own_cpu_secs();
    let secs = f();
    (secs, own_cpu_secs() - c0)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn verdict(ok: bool, misses: &mut usize) -> &'static str {
    if ok {
        "PASS"
    } else {
        *misses += 1;
        "MISS"
    }
}

/// The Python that has pynetwork, if any.
fn pynetwork_python() -> Option<PathBuf> {
    let p = std::env::var_os("PYNETWORK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/pynetwork/bin/python")
        });
    let ok = Command::new(&p)
        .args(["-c", "import pynetwork, tqdm"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(p)
}

/// pynetwork's files/s downloading every file in `dir` with `clients`.
fn pynetwork_rate(python: &Path, dir: &Path, dest: &Path, clients: usize) -> Option<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pynetwork_files.py");
    let out = Command::new(python)
        .arg(script)
        .arg("--root")
        .arg(dir)
        .arg("--dest")
        .arg(dest)
        .args(["--clients", &clients.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        eprintln!(
            "pynetwork run failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("files_per_s="))
        .and_then(|r| r.parse().ok())
}

fn main() {
    let check = std::env::args().any(|a| a == "--check");
    let mut misses = 0;
    let size = env_usize("DIME_BENCH_FILE_MB", 2048) << 20;
    let small = env_usize("DIME_BENCH_SMALL_FILES", 10_000);
    let base = std::env::var_os("DIME_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let scratch = tempfile::tempdir_in(base).unwrap();
    let root = scratch.path().join("root");
    fs::create_dir_all(root.join("small")).unwrap();
    println!(
        "dime files bench: {} cpus, load average {}, scratch {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
        scratch.path().display()
    );
    println!("{}", common::vm::memory_note());
    let t0 = Instant::now();
    make_file(&root.join("big.bin"), size, 1);
    for i in 0..small {
        make_file(
            &root.join(format!("small/f{i:05}.bin")),
            10_000,
            i as u64 + 2,
        );
    }
    println!("made the files in {:.1} s", t0.elapsed().as_secs_f64());
    let server = FileServer::start(&root, false);

    // 1. One large file.
    let dest = scratch.path().join("dest");
    let (mut raw, mut hashed, mut dime) = (Vec::new(), Vec::new(), Vec::new());
    // CPU seconds of each run: raw, raw with BLAKE3, dime's client and server.
    let (mut raw_cpu, mut hashed_cpu) = (Vec::new(), Vec::new());
    let (mut client_cpu, mut server_cpu) = (Vec::new(), Vec::new());
    for _ in 0..BIG_REPEATS {
        for (hash, times, cpu) in [
            (false, &mut raw, &mut raw_cpu),
            (true, &mut hashed, &mut hashed_cpu),
        ] {
            fs::create_dir_all(&dest).unwrap();
            flush_to_disk();
            let (secs, used) =
                with_cpu(|| raw_copy(&root.join("big.bin"), &dest.join("raw.bin"), hash));
            times.push(secs);
            cpu.push(used);
            fs::remove_dir_all(&dest).unwrap();
        }
        flush_to_disk();
        let s0 = server.cpu_secs();
        let (secs, used) = with_cpu(|| ours(&server.address, "big.bin", &dest));
        dime.push(secs);
        client_cpu.push(used);
        server_cpu.push(server.cpu_secs() - s0);
        assert_eq!(
            fs::metadata(dest.join("big.bin")).unwrap().len(),
            size as u64
        );
        fs::remove_dir_all(&dest).unwrap();
    }
    let gb = size as f64 / 1e9;
    // Each pair ran back to back, so its ratio saw the same machine.
    let pairs: Vec<String> = raw
        .iter()
        .zip(&dime)
        .map(|(r, d)| format!("{:.2}/{:.2} GB/s {:.2}x", gb / r, gb / d, r / d))
        .collect();
    let pair_ratios: Vec<f64> = raw.iter().zip(&dime).map(|(r, d)| r / d).collect();
    let worst = pair_ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let median_pair = median(&pair_ratios);
    let first = raw[0] / dime[0];
    let (raw_rate, dime_rate) = (gb / median(&raw), gb / median(&dime));
    let hashed_rate = gb / median(&hashed);
    let rss = server.peak_rss_mb();
    println!();
    println!(
        "1. one {:.2} GB file, {CONNECTIONS} connections, {BIG_REPEATS} runs each taking turns (median), disk flushed before each",
        gb
    );
    println!("   raw TCP stream, 1 connection (file -> socket -> file)  {raw_rate:>7.2} GB/s");
    println!(
        "   the same, BLAKE3 over every byte as it arrives          {hashed_rate:>7.2} GB/s ({:.2}x raw)",
        hashed_rate / raw_rate
    );
    println!(
        "   dime get, {CONNECTIONS} connections, BLAKE3-checked           {dime_rate:>7.2} GB/s"
    );
    let r = dime_rate / raw_rate;
    println!(
        "   ratio dime/raw   {r:>6.3}x   target >= {RATIO_TARGET}x   {}",
        verdict(r >= RATIO_TARGET, &mut misses)
    );
    println!(
        "   server peak RSS  {rss:>6.1} MB  target <  {RSS_TARGET_MB} MB  {}",
        verdict(rss < RSS_TARGET_MB, &mut misses)
    );
    println!("   each run, raw/dime: {}", pairs.join(", "));
    // How busy the machine's cores were: where the raw copy already keeps
    // every core busy, dime can only be as fast as the CPU time it needs.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let busy = |cpu: f64, secs: f64| cpu / secs;
    let (rc, hc) = (median(&raw_cpu), median(&hashed_cpu));
    let (cc, sc) = (median(&client_cpu), median(&server_cpu));
    println!(
        "   CPU seconds per run (medians): raw {rc:.2} ({:.1} of {cores} cores busy), with BLAKE3 {hc:.2}; dime client {cc:.2} + server {sc:.2} = {:.2} ({:.1} cores busy)",
        busy(rc, median(&raw)),
        cc + sc,
        busy(cc + sc, median(&dime)),
    );
    // The server keeps the piece hashes it computes: only the first run
    // reads and hashes the file there, later runs send it as it is.
    println!(
        "   first run (the server hashes each piece): {first:.3}x; later runs use its kept hashes"
    );
    println!(
        "   pairs: median {median_pair:.3}x, worst {worst:.3}x; load average {} at the end",
        load_average()
    );

    // 1b. The same file uploaded, to a writable server of its own (no
    // target: shown beside the same run's raw floor).
    let up_root = scratch.path().join("up");
    fs::create_dir_all(&up_root).unwrap();
    let up_server = FileServer::start(&up_root, true);
    let mut up = Vec::new();
    for _ in 0..REPEATS {
        flush_to_disk();
        up.push(ours_up(&up_server.address, &root.join("big.bin"), "in"));
        assert_eq!(
            fs::metadata(up_root.join("in/big.bin")).unwrap().len(),
            size as u64
        );
        fs::remove_dir_all(up_root.join("in")).unwrap();
    }
    let up_rate = gb / median(&up);
    println!(
        "   dime put, {CONNECTIONS} connections, BLAKE3-checked           {up_rate:>7.2} GB/s ({:.3}x raw; median of {REPEATS}, no target), server peak RSS {:.1} MB",
        up_rate / raw_rate,
        up_server.peak_rss_mb()
    );
    drop(up_server);

    // 2. Many small files.
    if small == 0 {
        return finish(server, t0, check, misses);
    }
    let mut rates = Vec::new();
    for _ in 0..REPEATS {
        let secs = ours(&server.address, "small", &dest);
        assert_eq!(fs::read_dir(dest.join("small")).unwrap().count(), small);
        fs::remove_dir_all(&dest).unwrap();
        rates.push(small as f64 / secs);
    }
    let ours_rate = median(&rates);
    println!();
    println!("2. {small} files of 10 KB, {CONNECTIONS} connections / clients");
    println!("   dime get                {ours_rate:>9.0} files/s (median of {REPEATS})");
    match pynetwork_python() {
        Some(py) => match pynetwork_rate(
            &py,
            &root.join("small"),
            &scratch.path().join("pyn"),
            CONNECTIONS,
        ) {
            Some(theirs) => {
                println!("   pynetwork 2.4           {theirs:>9.0} files/s (one run)");
                let r = ours_rate / theirs;
                println!(
                    "   ratio dime/pynetwork   {r:>6.1}x   target >= {FILES_TARGET}x   {}",
                    verdict(r >= FILES_TARGET, &mut misses)
                );
            }
            None => println!("   pynetwork: failed   {}", verdict(false, &mut misses)),
        },
        None => {
            println!(
                "   pynetwork: SKIP (not found: set PYNETWORK_PYTHON or make .venv/pynetwork, see benches/files.rs)"
            );
            if check {
                misses += 1;
            }
        }
    }
    finish(server, t0, check, misses);
}

fn finish(server: FileServer, t0: Instant, check: bool, misses: usize) {
    drop(server);
    println!();
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
    if check && misses > 0 {
        eprintln!("files bench --check: {misses} target(s) missed");
        std::process::exit(1);
    }
}
