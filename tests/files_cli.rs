//! The file-transfer commands of the `dime` binary: `dime files serve`,
//! `dime get`, `dime put`. Errors are one line on stderr and exit status
//! 1 (2 for usage errors); a `dime get` killed mid-transfer leaves no file
//! under its final name, and a rerun resumes.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const DIME: &str = env!("CARGO_BIN_EXE_dime");

/// `dime files serve ROOT --listen unix:… ARGS`, stopped on drop.
struct Served {
    child: Child,
    address: String,
}

impl Served {
    fn start(root: &Path, sock: &Path, args: &[&str]) -> Served {
        let mut child = Command::new(DIME)
            .args(["files", "serve"])
            .arg(root)
            .arg("--listen")
            .arg(format!("unix:{}", sock.display()))
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut address = None;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(a) = line.strip_prefix("dime: listening on ") {
                address = Some(a.to_owned());
            }
            if line.starts_with("dime: serving ") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Served {
            child,
            address: address.expect("dime files serve announced its listener"),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // SAFETY: a plain signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "dime files serve exited with {status}");
    }
}

fn dime(args: &[&str]) -> Output {
    Command::new(DIME)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Asserts the command failed with status `code` and one line on stderr
/// containing `want`.
fn fails_with(out: &Output, code: i32, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    if code == 1 {
        assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    }
    assert!(err.contains(want), "{want:?} not in {err:?}");
}

#[test]
fn get_and_put_through_a_file_server() {
    let t = tempfile::tempdir().unwrap();
    let (root, dest, src) = (
        t.path().join("root"),
        t.path().join("dest"),
        t.path().join("src"),
    );
    fs::create_dir_all(root.join("logs")).unwrap();
    for i in 0..20 {
        fs::write(
            root.join(format!("logs/{i}.log")),
            format!("line {i}\n").repeat(i + 1),
        )
        .unwrap();
    }
    fs::write(root.join("big"), vec![7u8; 3 << 20]).unwrap();
    let srv = Served::start(
        &root,
        &t.path().join("s.sock"),
        &["--writable", "--name", "data"],
    );
    let a = srv.address.as_str();
    let d = dest.to_str().unwrap();
    let out = dime(&["get", "data:logs/1*.log", "data:big", d, "-a", a]);
    fails_with(&out, 1, "either paths or one glob");
    let out = dime(&["get", "data:logs/1*.log", d, "-j", "3", "-a", a]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("11 files"));
    assert_eq!(
        fs::read(dest.join("13.log")).unwrap(),
        fs::read(root.join("logs/13.log")).unwrap()
    );
    let out = dime(&[
        "get",
        "data:big",
        "data:logs",
        d,
        "-a",
        a,
        "-q",
        "--piece",
        "64K",
    ]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    assert_eq!(fs::read(dest.join("big")).unwrap(), vec![7u8; 3 << 20]);
    let out = dime(&[
        "get",
        "-E",
        "data:^logs/[0-4]\\.log$",
        t.path().join("re").to_str().unwrap(),
        "-a",
        a,
        "-q",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::read_dir(t.path().join("re/logs")).unwrap().count(), 5);

    fs::create_dir_all(src.join("dir")).unwrap();
    fs::write(src.join("dir/x.txt"), b"x").unwrap();
    fs::write(src.join("y.txt"), b"y").unwrap();
    let out = Command::new(DIME)
        .current_dir(&src)
        .args(["put", "dir", "y.txt", "data:incoming", "-a", a, "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::read(root.join("incoming/dir/x.txt")).unwrap(), b"x");
    assert_eq!(fs::read(root.join("incoming/y.txt")).unwrap(), b"y");
}

#[test]
fn errors_are_one_clear_line_and_a_failure_status() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("a.txt"), b"a").unwrap();
    fs::write(t.path().join("secret"), b"s").unwrap();
    std::os::unix::fs::symlink(t.path().join("secret"), root.join("link")).unwrap();
    let srv = Served::start(&root, &t.path().join("s.sock"), &[]);
    let a = srv.address.as_str();
    let d = t.path().join("d");
    let d = d.to_str().unwrap();
    fails_with(
        &dime(&["get", "files:nope.txt", d, "-a", a]),
        1,
        "'nope.txt' does not exist",
    );
    fails_with(
        &dime(&["get", "files:*.none", d, "-a", a]),
        1,
        "no file matches '*.none'",
    );
    fails_with(&dime(&["get", "files:../secret", d, "-a", a]), 1, "'..'");
    fails_with(
        &dime(&["get", "files:/etc/passwd", d, "-a", a]),
        1,
        "absolute path",
    );
    fails_with(
        &dime(&["get", "files:link", d, "-a", a]),
        1,
        "outside the served directory",
    );
    fails_with(
        &dime(&["get", "-E", "files:(", d, "-a", a]),
        1,
        "bad regular expression",
    );
    fails_with(
        &dime(&["get", "nocolon", d, "-a", a]),
        1,
        "should be NAME:PATH",
    );
    fails_with(
        &dime(&["get", "other:a.txt", d, "-a", a, "-t", "0.3"]),
        1,
        "no file server 'other'",
    );
    let missing = format!("unix:{}", t.path().join("none.sock").display());
    fails_with(
        &dime(&["get", "files:a.txt", d, "-a", &missing]),
        1,
        "cannot connect",
    );
    let src = t.path().join("a.txt");
    fs::write(&src, b"a").unwrap();
    fails_with(
        &dime(&["put", src.to_str().unwrap(), "files:", "-a", a]),
        1,
        "read-only",
    );
    fails_with(
        &dime(&["put", "/no/such/file", "files:", "-a", a]),
        1,
        "does not exist",
    );
    fails_with(
        &dime(&["get", "files:a.txt", d, "--piece", "1000"]),
        2,
        "power of two",
    );
    fails_with(&dime(&["get", "files:a.txt"]), 2, "2 values required");
    fails_with(
        &dime(&[
            "files",
            "serve",
            t.path().join("missing").to_str().unwrap(),
            "-l",
            &missing,
        ]),
        1,
        "missing",
    );
    fails_with(
        &dime(&[
            "files",
            "serve",
            root.to_str().unwrap(),
            "--name",
            "a.b",
            "-l",
            &missing,
        ]),
        1,
        "not a file server name",
    );
    assert!(!Path::new(d).join("a.txt").exists());
}

#[test]
fn a_killed_get_leaves_no_final_file_and_a_rerun_resumes() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let data: Vec<u8> = (0..(24u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(root.join("big"), &data).unwrap();
    fs::write(root.join("small"), b"others are served on").unwrap();
    let srv = Served::start(&root, &t.path().join("s.sock"), &[]);
    let dest = t.path().join("d");
    // Small pieces, one at a time: slow enough to be caught half done.
    let slow = ["-j", "1", "--in-flight", "1", "--piece", "16K", "-q"];
    let mut get = Command::new(DIME)
        .args([
            "get",
            "files:big",
            dest.to_str().unwrap(),
            "-a",
            &srv.address,
        ])
        .args(slow)
        .spawn()
        .unwrap();
    let manifest = dest.join(".big.dime-part.manifest");
    let t0 = Instant::now();
    while fs::read_to_string(&manifest).map_or(0, |m| m.lines().count()) < 50 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no progress");
        assert!(
            get.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    get.kill().unwrap();
    get.wait().unwrap();
    assert!(
        !dest.join("big").exists(),
        "no half file under the final name"
    );
    // The server serves others on.
    let out = dime(&[
        "get",
        "files:small",
        dest.to_str().unwrap(),
        "-a",
        &srv.address,
        "-q",
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = dime(&[
        "get",
        "files:big",
        dest.to_str().unwrap(),
        "-a",
        &srv.address,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("resumed"), "{err}");
    assert!(fs::read(dest.join("big")).unwrap() == data);
    let mut left: Vec<_> = fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["big", "small"]);
}

#[test]
fn dime_without_a_command_and_dime_serve_still_run_the_broker() {
    let t = tempfile::tempdir().unwrap();
    for args in [vec![], vec!["serve"]] {
        let sock = t.path().join(format!("b{}.sock", args.len()));
        let mut child = Command::new(DIME)
            .args(&args)
            .arg("-l")
            .arg(format!("unix:{}", sock.display()))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            format!("dime: listening on unix:{}", sock.display())
        );
        dime::Client::connect(&format!("unix:{}", sock.display())).unwrap();
        // SAFETY: a plain signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert!(child.wait().unwrap().success());
    }
}
