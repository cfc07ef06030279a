//! `tests/install-deps`, which `tests/run-all` runs first so that the test
//! command passes on a fresh Debian machine by itself: it installs exactly
//! the missing packages of the chosen suites, as root or through sudo that
//! needs no password, never prompts, and says what to run when it cannot.
//! Run here against stand-ins for `dpkg-query`, `apt-get`, `sudo`, `id`
//! and `python3` that record what they are asked.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A machine as `install-deps` sees it.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    /// `installed`: the packages dpkg reports; `uid`: what `id -u` says;
    /// `sudo_ok`: whether `sudo -n` works; `ensurepip`: whether python3
    /// has it.
    fn new(installed: &[&str], uid: u32, sudo_ok: bool, ensurepip: bool) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls.log");
        let stub = |name: &str, body: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let installed = installed.join(" ");
        stub(
            "dpkg-query",
            format!(
                "for p in {installed}; do for a; do [ \"$a\" = \"$p\" ] && \
                 {{ echo 'install ok installed'; exit 0; }}; done; done; exit 1"
            ),
        );
        stub(
            "apt-get",
            format!("echo \"apt-get $*\" >> '{}'", log.display()),
        );
        stub("id", format!("echo {uid}"));
        stub(
            "sudo",
            if sudo_ok {
                format!(
                    "[ \"$1\" = -n ] || exit 99; shift; [ \"$1\" = true ] && exit 0; \
                     echo sudo >> '{}'; exec \"$@\"",
                    log.display()
                )
            } else {
                "exit 1".to_owned()
            },
        );
        stub("python3", format!("exit {}", if ensurepip { 0 } else { 1 }));
        Machine { dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(Path::new(ROOT).join("tests/install-deps"))
            .args(args)
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.dir.path().display()),
            )
            .output()
            .expect("run tests/install-deps")
    }

    /// What apt-get and sudo were asked, one call per line.
    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default()
    }
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

const ALL: [&str; 8] = [
    "valgrind",
    "pkg-config",
    "cmake",
    "make",
    "chromium",
    "octave",
    "liboctave-dev",
    "python3-venv",
];

#[test]
fn root_installs_exactly_what_the_chosen_suites_miss() {
    let m = Machine::new(&["valgrind", "pkg-config"], 0, false, true);
    let out = m.run(&["octave", "javascript", "rust"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        m.calls(),
        "apt-get update -q\n\
         apt-get install -y -q --no-install-recommends octave liboctave-dev chromium cmake make\n"
    );
}

#[test]
fn the_conformance_run_gets_octave_for_its_matlab_client() {
    let m = Machine::new(&[], 0, false, true);
    let out = m.run(&["conformance"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        m.calls(),
        "apt-get update -q\n\
         apt-get install -y -q --no-install-recommends octave liboctave-dev\n"
    );
}

#[test]
fn others_install_through_password_less_sudo() {
    let m = Machine::new(&[], 1000, true, false);
    let out = m.run(&["rust"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        m.calls(),
        "sudo\napt-get update -q\nsudo\n\
         apt-get install -y -q --no-install-recommends valgrind pkg-config cmake make \
         python3-venv\n"
    );
}

#[test]
fn without_root_or_sudo_it_says_what_to_run() {
    let m = Machine::new(&[], 1000, false, true);
    let out = m.run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(m.calls(), "");
    assert!(
        text(&out).contains("sudo apt-get install valgrind pkg-config cmake make chromium octave"),
        "{}",
        text(&out)
    );
}

#[test]
fn check_only_reports() {
    let m = Machine::new(&["octave"], 0, false, true);
    let out = m.run(&["--check", "octave"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(m.calls(), "");
    assert!(text(&out).contains("missing Debian packages: liboctave-dev"));
}

#[test]
fn nothing_missing_does_nothing() {
    let m = Machine::new(&ALL, 1000, false, false);
    let out = m.run(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(m.calls(), "");
    assert_eq!(text(&out), "");
    // fmt and clippy need no package at all.
    let m = Machine::new(&[], 1000, false, false);
    assert!(m.run(&["fmt", "clippy"]).status.success());
    assert_eq!(m.calls(), "");
}
