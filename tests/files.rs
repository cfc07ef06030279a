//! Parallel file transfer through the broker: downloads and uploads of
//! many small files and large files in pieces over several connections,
//! selections, checksums, mode and time kept, resume after an
//! interruption, refused paths, read-only servers, and a server that
//! serves on when a client goes away mid-transfer.

mod common;

use common::TestServer;
use dime::files::{
    Error, FileServer, Progress, Selection, ServeOptions, TransferOptions, download, upload,
};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Deterministic, non-repeating bytes.
fn bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn write(path: &Path, data: &[u8], mode: u32, mtime_secs: u64) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::new(mtime_secs, 123_456_789);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn blake3_of(data: &[u8]) -> Vec<u8> {
    let h = dime::files::hash::piece_hash(data, data.len() as u64, 1 << 20, 0);
    h.to_vec()
}

/// Asserts `got` has `want`'s bytes, mode and modification time.
fn same_file(want: &Path, got: &Path) {
    let (a, b) = (fs::metadata(want).unwrap(), fs::metadata(got).unwrap());
    assert_eq!(
        fs::read(want).unwrap(),
        fs::read(got).unwrap(),
        "{}",
        got.display()
    );
    assert_eq!(
        a.mode() & 0o777,
        b.mode() & 0o777,
        "mode of {}",
        got.display()
    );
    assert_eq!(
        (a.mtime(), a.mtime_nsec()),
        (b.mtime(), b.mtime_nsec()),
        "mtime of {}",
        got.display()
    );
}

/// Every file below `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn go(d: &Path, base: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                go(&p, base, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    go(dir, dir, &mut out);
    out.sort();
    out
}

/// A broker, a served tree and a destination.
struct Setup {
    srv: TestServer,
    root: tempfile::TempDir,
    dest: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            srv: TestServer::start(),
            root: tempfile::tempdir().unwrap(),
            dest: tempfile::tempdir().unwrap(),
        }
    }

    fn serve(&self, writable: bool) -> FileServer {
        FileServer::start(
            self.root.path(),
            &self.srv.unix(),
            ServeOptions {
                writable,
                connections: 2,
                workers: 2,
                ..ServeOptions::default()
            },
        )
        .unwrap()
    }

    fn get(&self, what: Selection, opts: &TransferOptions) -> Result<dime::files::Summary, Error> {
        download(
            &self.srv.unix(),
            "files",
            &what,
            self.dest.path(),
            opts,
            None,
        )
    }

    /// Uploads a file `x.txt` holding `x` to the top of the served tree.
    fn put_x(&self) -> Result<dime::files::Summary, Error> {
        let src = tempfile::tempdir().unwrap();
        write(&src.path().join("x.txt"), b"x", 0o644, 1_600_000_000);
        upload(
            &self.srv.unix(),
            "files",
            &Selection::Paths(vec!["x.txt".into()]),
            src.path(),
            "",
            &opts(1),
            None,
        )
    }
}

/// Small pieces, so MB-sized test files travel in many pieces.
fn opts(connections: usize) -> TransferOptions {
    TransferOptions {
        connections,
        in_flight: 3,
        piece: 64 << 10,
        wait_for_server: Duration::from_secs(5),
        ..TransferOptions::default()
    }
}

#[test]
fn many_small_files_and_one_large_file_over_several_connections() {
    let s = Setup::new();
    for i in 0..300 {
        write(
            &s.root.path().join(format!("small/d{}/f{i}.txt", i % 7)),
            &bytes(100 + i * 13, i as u32),
            0o640,
            1_600_000_000 + i as u64,
        );
    }
    // Not a multiple of the piece size, so the last piece is short.
    write(
        &s.root.path().join("big.bin"),
        &bytes(5 * (64 << 10) * 3 + 12_345, 9),
        0o600,
        1_700_000_000,
    );
    write(&s.root.path().join("empty"), b"", 0o644, 1_500_000_000);
    let _server = s.serve(false);
    let mut calls = Vec::new();
    let mut cb = |p: &Progress| {
        calls.push(p.clone());
        true
    };
    let sum = download(
        &s.srv.unix(),
        "files",
        &Selection::Paths(vec!["small".into(), "big.bin".into(), "empty".into()]),
        s.dest.path(),
        &opts(4),
        Some(&mut cb),
    )
    .unwrap();
    assert_eq!(sum.files, 302);
    let big = fs::metadata(s.root.path().join("big.bin")).unwrap().len();
    let last = calls.last().unwrap();
    assert_eq!((last.files_done, last.files_total), (302, 302));
    assert_eq!(last.bytes_done, last.bytes_total);
    assert!(last.bytes_total > big && last.rate > 0.0);
    same_file(
        &s.root.path().join("big.bin"),
        &s.dest.path().join("big.bin"),
    );
    same_file(&s.root.path().join("empty"), &s.dest.path().join("empty"));
    for i in [0usize, 1, 150, 299] {
        let rel = format!("small/d{}/f{i}.txt", i % 7);
        same_file(&s.root.path().join(&rel), &s.dest.path().join(&rel));
    }
    assert_eq!(
        tree(s.dest.path()).len(),
        302,
        "no part file or manifest left"
    );
    // A second run finds everything in place and sends nothing.
    let again = s
        .get(
            Selection::Paths(vec!["small".into(), "big.bin".into()]),
            &opts(2),
        )
        .unwrap();
    assert_eq!((again.files, again.skipped, again.bytes), (0, 301, 0));
}

/// Over TCP each connection's pieces are spliced from the socket into the
/// part file (over the unix sockets of the other tests as well); files
/// of one piece are read. Both arrive whole, with their mode and time.
#[test]
fn a_download_over_tcp_moves_pieces_and_whole_files() {
    let s = Setup {
        srv: TestServer::start_with(|c| {
            c.listen
                .push(dime::transport::Address::Tcp("127.0.0.1".into(), 0))
        }),
        root: tempfile::tempdir().unwrap(),
        dest: tempfile::tempdir().unwrap(),
    };
    let tcp = s.srv.addrs[1].clone();
    assert!(tcp.starts_with("tcp:127.0.0.1:"), "{tcp}");
    write(
        &s.root.path().join("big.bin"),
        &bytes((3 << 20) + 4321, 3),
        0o640,
        1_650_000_000,
    );
    for i in 0..20 {
        write(
            &s.root.path().join(format!("f{i}.txt")),
            &bytes(1000 + i * 777, i as u32),
            0o600,
            1_600_000_000,
        );
    }
    let _server = s.serve(false);
    let opts = TransferOptions {
        piece: 256 << 10,
        ..opts(4)
    };
    let sum = download(
        &tcp,
        "files",
        &Selection::Glob("*".into()),
        s.dest.path(),
        &opts,
        None,
    )
    .unwrap();
    assert_eq!(sum.files, 21);
    same_file(
        &s.root.path().join("big.bin"),
        &s.dest.path().join("big.bin"),
    );
    for i in 0..20 {
        let rel = format!("f{i}.txt");
        same_file(&s.root.path().join(&rel), &s.dest.path().join(&rel));
    }
    assert_eq!(
        tree(s.dest.path()).len(),
        21,
        "no part file or manifest left"
    );
}

#[test]
fn globs_and_regexes_select_files() {
    let s = Setup::new();
    for p in [
        "logs/a.txt",
        "logs/b.log",
        "logs/sub/c.txt",
        "logs/.hidden.txt",
        "top.txt",
    ] {
        write(&s.root.path().join(p), p.as_bytes(), 0o644, 1_600_000_000);
    }
    let _server = s.serve(false);
    s.get(Selection::Glob("logs/*.txt".into()), &opts(2))
        .unwrap();
    // Relative to the glob's literal directory; `*` stays in one
    // directory and skips dot files.
    assert_eq!(tree(s.dest.path()), ["a.txt"]);
    let d2 = tempfile::tempdir().unwrap();
    download(
        &s.srv.unix(),
        "files",
        &Selection::Glob("**/*.txt".into()),
        d2.path(),
        &opts(2),
        None,
    )
    .unwrap();
    assert_eq!(tree(d2.path()), ["logs/a.txt", "logs/sub/c.txt", "top.txt"]);
    let d3 = tempfile::tempdir().unwrap();
    download(
        &s.srv.unix(),
        "files",
        &Selection::Regex(r"\.(log|txt)$".into()),
        d3.path(),
        &opts(2),
        None,
    )
    .unwrap();
    assert_eq!(
        tree(d3.path()),
        [
            "logs/.hidden.txt",
            "logs/a.txt",
            "logs/b.log",
            "logs/sub/c.txt",
            "top.txt"
        ]
    );
    let d4 = tempfile::tempdir().unwrap();
    let none = download(
        &s.srv.unix(),
        "files",
        &Selection::Glob("*.none".into()),
        d4.path(),
        &opts(1),
        None,
    );
    assert!(
        matches!(none, Err(Error::NotFound(ref m)) if m.contains("*.none")),
        "{none:?}"
    );
    let bad = download(
        &s.srv.unix(),
        "files",
        &Selection::Regex("(".into()),
        d4.path(),
        &opts(1),
        None,
    );
    assert!(matches!(bad, Err(Error::InvalidInput(_))), "{bad:?}");
    assert!(tree(d4.path()).is_empty());
}

#[test]
fn paths_outside_the_root_are_refused() {
    let s = Setup::new();
    let outside = tempfile::tempdir().unwrap();
    write(
        &outside.path().join("secret"),
        b"secret",
        0o600,
        1_600_000_000,
    );
    write(&s.root.path().join("ok.txt"), b"fine", 0o644, 1_600_000_000);
    std::os::unix::fs::symlink(outside.path().join("secret"), s.root.path().join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), s.root.path().join("dirlink")).unwrap();
    std::os::unix::fs::symlink(s.root.path().join("ok.txt"), s.root.path().join("inside")).unwrap();
    let _server = s.serve(true);
    let secret = outside.path().join("secret");
    for p in [
        "../secret".to_owned(),
        secret.to_string_lossy().into_owned(),
        "link".into(),
        "dirlink/secret".into(),
        "ok.txt/../../secret".into(),
    ] {
        let r = s.get(Selection::Paths(vec![p.clone()]), &opts(1));
        assert!(matches!(r, Err(Error::PermissionDenied(_))), "{p}: {r:?}");
    }
    // Globs and regexes skip links that lead out.
    s.get(Selection::Regex(".".into()), &opts(1)).unwrap();
    assert_eq!(tree(s.dest.path()), ["inside", "ok.txt"]);
    assert_eq!(fs::read(s.dest.path().join("inside")).unwrap(), b"fine");
    let missing = s.get(Selection::Paths(vec!["nope.txt".into()]), &opts(1));
    assert!(
        matches!(missing, Err(Error::NotFound(ref m)) if m.contains("nope.txt")),
        "{missing:?}"
    );
    // Uploads may not leave the root either, by path or through a link.
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("x.txt"), b"x", 0o644, 1_600_000_000);
    for dest in ["..", "/tmp", "dirlink", "dirlink/deeper"] {
        let r = upload(
            &s.srv.unix(),
            "files",
            &Selection::Paths(vec!["x.txt".into()]),
            src.path(),
            dest,
            &opts(1),
            None,
        );
        assert!(
            matches!(r, Err(Error::PermissionDenied(_))),
            "{dest}: {r:?}"
        );
    }
    // A client that skips its own checks is refused by the server.
    let rpc = dime::rpc::Rpc::connect(&s.srv.unix(), Default::default()).unwrap();
    for (f, path) in [
        ("files.put_whole", "../evil"),
        ("files.put_begin", "/tmp/evil"),
        ("files.read", "link"),
    ] {
        let args = dime::files::wire::encode_map(vec![
            ("path", path.into()),
            ("size", dime::Value::U64(1)),
            ("mtime_ns", dime::Value::I64(0)),
            ("mode", dime::Value::U32(0o644)),
            ("piece", dime::Value::U64(1 << 20)),
            ("index", dime::Value::U64(0)),
            (
                "hash",
                dime::files::wire::bytes_value(blake3_of(b"x").as_slice()),
            ),
            ("data", dime::files::wire::bytes_value(b"x")),
        ])
        .unwrap();
        let r = rpc.call_encoded(f, &args, None).unwrap();
        match r.result(Some(Duration::from_secs(5))).unwrap() {
            Err(dime::rpc::CallError::Remote { error_type, .. }) => {
                assert_eq!(error_type, "PermissionError", "{f} {path}")
            }
            other => panic!("{f} {path}: {other:?}"),
        }
    }
    assert_eq!(tree(outside.path()), ["secret"], "nothing written outside");
}

/// A file of more pieces than any transfer cuts (here 8 TiB in 1 KiB
/// pieces) is refused at its first call: checking it would need a hash
/// slot per piece, hundreds of gigabytes, and the allocation would
/// abort the server.
#[test]
fn an_upload_of_too_many_pieces_is_refused_and_the_server_carries_on() {
    let s = Setup::new();
    let _server = s.serve(true);
    let rpc = dime::rpc::Rpc::connect(&s.srv.unix(), Default::default()).unwrap();
    let huge = 8u64 << 40;
    for f in ["files.put_begin", "files.put_commit", "files.put_piece"] {
        let args = dime::files::wire::encode_map(vec![
            ("path", "big.bin".into()),
            ("size", dime::Value::U64(huge)),
            ("mtime_ns", dime::Value::I64(0)),
            ("mode", dime::Value::U32(0o644)),
            ("piece", dime::Value::U64(1 << 10)),
            ("index", dime::Value::U64(0)),
            ("hash", dime::files::wire::bytes_value(&[0; 32])),
            ("data", dime::files::wire::bytes_value(&[0; 1024])),
        ])
        .unwrap();
        let r = rpc.call_encoded(f, &args, None).unwrap();
        match r.result(Some(Duration::from_secs(5))).unwrap() {
            Err(dime::rpc::CallError::Remote {
                error_type,
                message,
                ..
            }) => {
                assert_eq!(error_type, "ValueError", "{f}: {message}");
                assert!(message.contains("use larger pieces"), "{f}: {message}");
            }
            other => panic!("{f}: {other:?}"),
        }
    }
    assert!(tree(s.root.path()).is_empty(), "nothing was begun");
    // The server still serves.
    s.put_x().unwrap();
    assert_eq!(fs::read(s.root.path().join("x.txt")).unwrap(), b"x");
}

#[test]
fn a_read_only_server_refuses_uploads() {
    let s = Setup::new();
    let _server = s.serve(false);
    let r = s.put_x();
    assert!(
        matches!(r, Err(Error::PermissionDenied(ref m)) if m.contains("read-only")),
        "{r:?}"
    );
    assert!(tree(s.root.path()).is_empty());
    // Even a client that skips the check and calls the function directly.
    let rpc = dime::rpc::Rpc::connect(&s.srv.unix(), Default::default()).unwrap();
    let args = dime::files::wire::encode_map(vec![("path", "x".into())]).unwrap();
    let f = rpc.call_encoded("files.put_whole", &args, None).unwrap();
    match f.result(Some(Duration::from_secs(5))).unwrap() {
        Err(dime::rpc::CallError::Remote { error_type, .. }) => {
            assert_eq!(error_type, "PermissionError")
        }
        other => panic!("{other:?}"),
    }
    assert!(tree(s.root.path()).is_empty());
}

#[test]
fn uploads_many_files_and_a_large_one() {
    let s = Setup::new();
    let src = tempfile::tempdir().unwrap();
    for i in 0..120 {
        write(
            &src.path().join(format!("set/f{i}")),
            &bytes(1000 + i, i as u32),
            0o604,
            1_650_000_000 + i as u64,
        );
    }
    write(
        &src.path().join("big"),
        &bytes(3 * (64 << 10) * 4 + 999, 77),
        0o755,
        1_660_000_000,
    );
    let _server = s.serve(true);
    let sum = upload(
        &s.srv.unix(),
        "files",
        &Selection::Paths(vec!["set".into(), "big".into()]),
        src.path(),
        "in/coming",
        &opts(4),
        None,
    )
    .unwrap();
    assert_eq!(sum.files, 121);
    same_file(
        &src.path().join("big"),
        &s.root.path().join("in/coming/big"),
    );
    same_file(
        &src.path().join("set/f7"),
        &s.root.path().join("in/coming/set/f7"),
    );
    // A rerun sends only what changed: here one file, given a new time.
    write(&src.path().join("set/f3"), b"new", 0o600, 1_700_000_123);
    let again = upload(
        &s.srv.unix(),
        "files",
        &Selection::Paths(vec!["set".into(), "big".into()]),
        src.path(),
        "in/coming",
        &opts(4),
        None,
    )
    .unwrap();
    assert_eq!(
        (again.files, again.skipped, again.bytes),
        (1, 120, 3),
        "{again:?}"
    );
    same_file(
        &src.path().join("set/f3"),
        &s.root.path().join("in/coming/set/f3"),
    );
    assert_eq!(
        tree(&s.root.path().join("in/coming")).len(),
        121,
        "no part file left"
    );
    // A glob of local files.
    upload(
        &s.srv.unix(),
        "files",
        &Selection::Glob("set/f1?".into()),
        src.path(),
        "g",
        &opts(2),
        None,
    )
    .unwrap();
    assert_eq!(tree(&s.root.path().join("g")).len(), 10);
}

/// Stops a transfer once `at` bytes are done, as a killed client would.
fn stop_at(at: u64) -> impl FnMut(&Progress) -> bool {
    move |p: &Progress| p.bytes_done < at
}

/// One small piece at a time: a transfer of a few MiB takes about a
/// thousand round trips, so the progress callback sees it under way even
/// on a loaded machine.
fn slow_opts() -> TransferOptions {
    TransferOptions {
        connections: 1,
        in_flight: 1,
        piece: 4 << 10,
        progress_interval: Duration::from_millis(1),
        ..opts(1)
    }
}

/// Another transfer's part at `part`, with the lock it holds while it
/// runs (released when the returned file is dropped).
fn held_part(part: &Path) -> fs::File {
    use std::os::fd::AsRawFd;
    fs::write(part, b"the other transfer's bytes").unwrap();
    let other = fs::File::open(part).unwrap();
    // SAFETY: a plain call on an open descriptor.
    assert_eq!(
        unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    other
}

/// A second transfer into the same destination while the first one runs
/// is refused, and the first one's part is left as it was: truncating it
/// would lose its pieces.
#[test]
fn a_part_another_transfer_is_receiving_into_is_left_alone() {
    let s = Setup::new();
    let data = bytes(3 << 20, 12);
    write(&s.root.path().join("big"), &data, 0o644, 1_700_000_000);
    let _server = s.serve(false);
    // The other transfer: its part, and the lock it holds while it runs.
    let part = s.dest.path().join(".big.dime-part");
    let other = held_part(&part);
    let what = Selection::Paths(vec!["big".into()]);
    match s.get(what.clone(), &opts(2)) {
        Err(Error::Io(m)) => assert!(m.contains("another transfer"), "{m}"),
        other => panic!("expected the part to be refused, got {other:?}"),
    }
    assert_eq!(fs::read(&part).unwrap(), b"the other transfer's bytes");
    assert!(!s.dest.path().join("big").exists());
    // Once it has ended, the part is this transfer's.
    drop(other);
    s.get(what, &opts(2)).unwrap();
    same_file(&s.root.path().join("big"), &s.dest.path().join("big"));
    assert_eq!(tree(s.dest.path()), ["big"]);
}

#[test]
fn a_file_refused_on_arrival_does_not_hold_back_the_others() {
    let s = Setup::new();
    for (name, seed) in [("one", 13), ("two", 14), ("three", 15)] {
        write(
            &s.root.path().join(name),
            &bytes(3 << 20, seed),
            0o644,
            1_700_000_000,
        );
    }
    write(&s.root.path().join("small"), b"small", 0o644, 1_700_000_000);
    let _server = s.serve(false);
    // Another transfer is receiving "one"; a directory stands where
    // "three" would go.
    fs::create_dir_all(s.dest.path()).unwrap();
    let part = s.dest.path().join(".one.dime-part");
    let other = held_part(&part);
    fs::create_dir_all(s.dest.path().join("three")).unwrap();
    let all = Selection::Paths(vec![
        "one".into(),
        "two".into(),
        "three".into(),
        "small".into(),
    ]);
    match s.get(all.clone(), &opts(2)) {
        Err(Error::Io(m)) => {
            assert!(m.contains("another transfer"), "{m}");
            assert!(m.contains("and 1 more files failed"), "{m}");
        }
        other => panic!("expected two files refused, got {other:?}"),
    }
    // The others arrived whole; the refused ones were left as they were.
    same_file(&s.root.path().join("two"), &s.dest.path().join("two"));
    same_file(&s.root.path().join("small"), &s.dest.path().join("small"));
    assert_eq!(fs::read(&part).unwrap(), b"the other transfer's bytes");
    assert!(!s.dest.path().join("one").exists());
    assert!(s.dest.path().join("three").is_dir());
    // With the way clear, a rerun fetches only what is missing.
    drop(other);
    fs::remove_dir(s.dest.path().join("three")).unwrap();
    let sum = s.get(all, &opts(2)).unwrap();
    assert_eq!((sum.files, sum.skipped), (2, 2));
    for name in ["one", "two", "three", "small"] {
        same_file(&s.root.path().join(name), &s.dest.path().join(name));
    }
}

#[test]
fn an_interrupted_download_resumes_its_verified_pieces() {
    let s = Setup::new();
    let size = 4 << 20;
    write(
        &s.root.path().join("d/big"),
        &bytes(size, 5),
        0o640,
        1_700_000_001,
    );
    let _server = s.serve(false);
    let what = Selection::Paths(vec!["d/big".into()]);
    let r = download(
        &s.srv.unix(),
        "files",
        &what,
        s.dest.path(),
        &slow_opts(),
        Some(&mut stop_at(1 << 20)),
    );
    assert_eq!(r, Err(Error::Cancelled));
    // No file under its final name; a part and its manifest instead.
    assert_eq!(
        tree(s.dest.path()),
        [".big.dime-part", ".big.dime-part.manifest"]
    );
    // Damage one verified piece: the rerun checks and fetches it again.
    let part = s.dest.path().join(".big.dime-part");
    let f = fs::File::options().write(true).open(&part).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"XXXX", 100).unwrap();
    let sum = s.get(what, &slow_opts()).unwrap();
    assert!(
        sum.resumed >= (1 << 20) - (16 << 10) && sum.resumed < size as u64,
        "{sum:?}"
    );
    assert_eq!(sum.bytes + sum.resumed, size as u64);
    same_file(&s.root.path().join("d/big"), &s.dest.path().join("big"));
    assert_eq!(tree(s.dest.path()), ["big"]);
}

#[test]
fn an_interrupted_upload_resumes_and_the_server_serves_on() {
    let s = Setup::new();
    let src = tempfile::tempdir().unwrap();
    let size = 4 << 20;
    write(
        &src.path().join("big"),
        &bytes(size, 6),
        0o600,
        1_700_000_002,
    );
    write(
        &s.root.path().join("other.txt"),
        b"others are served on",
        0o644,
        1_600_000_000,
    );
    let _server = s.serve(true);
    let what = Selection::Paths(vec!["big".into()]);
    let r = upload(
        &s.srv.unix(),
        "files",
        &what,
        src.path(),
        "up",
        &slow_opts(),
        Some(&mut stop_at(1 << 20)),
    );
    assert_eq!(r, Err(Error::Cancelled));
    assert_eq!(
        tree(&s.root.path().join("up")),
        [".big.dime-part", ".big.dime-part.manifest"]
    );
    // The part is invisible to listings, and others are served meanwhile.
    s.get(Selection::Regex(".".into()), &opts(2)).unwrap();
    assert_eq!(tree(s.dest.path()), ["other.txt"]);
    // Rerun with another piece size: the server keeps the part's own.
    let sum = upload(
        &s.srv.unix(),
        "files",
        &what,
        src.path(),
        "up",
        &opts(4),
        None,
    )
    .unwrap();
    assert!(sum.resumed >= (1 << 20) - (4 << 10), "{sum:?}");
    assert_eq!(sum.bytes + sum.resumed, size as u64);
    same_file(&src.path().join("big"), &s.root.path().join("up/big"));
    assert_eq!(tree(&s.root.path().join("up")), ["big"]);
}

#[test]
fn a_file_that_changes_during_the_download_fails_and_a_missing_server_is_reported() {
    let s = Setup::new();
    let path = s.root.path().join("grows");
    write(&path, &bytes(4 << 20, 8), 0o644, 1_600_000_000);
    let server = s.serve(false);
    // The server refuses a read of a version the client did not list.
    let rpc = dime::rpc::Rpc::connect(&s.srv.unix(), Default::default()).unwrap();
    let args = dime::files::wire::encode_map(vec![
        ("path", "grows".into()),
        ("index", dime::Value::U64(0)),
        ("piece", dime::Value::U64(1 << 20)),
        ("size", dime::Value::U64(4 << 20)),
        ("mtime_ns", dime::Value::I64(1_600_000_000_000_000_000)),
    ])
    .unwrap();
    let r = rpc.call_encoded("files.read", &args, None).unwrap();
    match r.result(Some(Duration::from_secs(5))).unwrap() {
        Err(dime::rpc::CallError::Remote { error_type, .. }) => {
            assert_eq!(error_type, "FileChangedError")
        }
        other => panic!("{other:?}"),
    }
    // And a client whose file changes under it fails it: changed at the
    // first progress report, a thousand pieces before the end.
    let mut touched = false;
    let mut touch = |p: &Progress| {
        if !touched {
            touched = true;
            assert!(p.bytes_done < p.bytes_total / 2, "{p:?}");
            write(&path, &bytes(4 << 20, 9), 0o644, 1_600_000_100);
        }
        true
    };
    let r = download(
        &s.srv.unix(),
        "files",
        &Selection::Paths(vec!["grows".into()]),
        s.dest.path(),
        &slow_opts(),
        Some(&mut touch),
    );
    assert!(
        matches!(r, Err(Error::Changed(ref m)) if m.contains("grows")),
        "{r:?}"
    );
    assert!(!s.dest.path().join("grows").exists());
    drop(server);
    let quick = TransferOptions {
        wait_for_server: Duration::from_millis(200),
        ..opts(1)
    };
    let r = download(
        &s.srv.unix(),
        "nobody",
        &Selection::Paths(vec!["x".into()]),
        s.dest.path(),
        &quick,
        None,
    );
    assert!(
        matches!(r, Err(Error::NoServer(ref m)) if m.contains("nobody")),
        "{r:?}"
    );
}

#[test]
fn the_embedded_broker_serves_files_in_one_process() {
    let root = tempfile::tempdir().unwrap();
    write(
        &root.path().join("a"),
        &bytes(300_000, 3),
        0o644,
        1_600_000_000,
    );
    let dir = tempfile::tempdir().unwrap();
    let sock = dime::transport::Address::Unix(dir.path().join("b.sock"));
    let tcp = dime::transport::Address::parse("tcp:127.0.0.1:0").unwrap();
    let mut server =
        FileServer::start_embedded(root.path(), &[sock, tcp], ServeOptions::default()).unwrap();
    let addrs = server.addresses();
    assert_eq!(addrs.len(), 2);
    assert!(
        addrs[1].starts_with("tcp:127.0.0.1:") && !addrs[1].ends_with(":0"),
        "{addrs:?}"
    );
    let dest = tempfile::tempdir().unwrap();
    download(
        &addrs[1],
        "files",
        &Selection::Paths(vec!["a".into()]),
        dest.path(),
        &opts(4),
        None,
    )
    .unwrap();
    same_file(&root.path().join("a"), &dest.path().join("a"));
    // Pieces go from the file to the socket (sendfile) over unix sockets too.
    let dest = tempfile::tempdir().unwrap();
    download(
        &addrs[0],
        "files",
        &Selection::Paths(vec!["a".into()]),
        dest.path(),
        &opts(2),
        None,
    )
    .unwrap();
    same_file(&root.path().join("a"), &dest.path().join("a"));
    server.close();
    assert!(
        !dir.path().join("b.sock").exists(),
        "the broker stopped and removed its socket"
    );
}
