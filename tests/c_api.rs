//! Builds the C tests in `tests/c/` and `examples/c/` against
//! `include/dime.h` and `libdime.so` with `-Wall -Wextra -Wpedantic
//! -Werror` (the header once as C++ too), runs them against a live server,
//! and once more under valgrind. Each C program prints its own checks; these
//! tests assert that it exited 0.
//!
//! The compiler is found and driven by the `cc` crate, as a build script
//! would: `CC`/`CXX`, `CFLAGS`/`CXXFLAGS` and their per-target forms
//! (`CC_x86_64_unknown_linux_gnu` …) are honoured, and the target is the
//! one cargo built for. The library is the `libdime.so` cargo built next to
//! this test binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const WARNINGS: [&str; 4] = ["-Wall", "-Wextra", "-Wpedantic", "-Werror"];

/// `target/debug` (or whichever profile built this test), where cargo puts
/// `libdime.so`.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/c_api-<hash>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let lib = dir.join("libdime.so");
    assert!(
        lib.exists(),
        "{} has no libdime.so (the cdylib is built with the library)",
        dir.display()
    );
    // `cargo test` builds the rlib for the tests but never relinks the
    // cdylib, so after a change to src/ the C programs would silently run
    // against the old library. Only `cargo build` (which tests/run-all
    // runs first) refreshes it.
    let built = modified(&lib);
    if let Some(newer) = newest_source(&Path::new(ROOT).join("src")).filter(|(t, _)| *t > built) {
        panic!(
            "{} is older than {}: run `cargo build` before `cargo test` so the C tests \
             use the current library",
            lib.display(),
            newer.1.display()
        );
    }
    dir
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()))
}

/// The most recently modified file under `dir`, with its time.
fn newest_source(dir: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let path = e.path();
            // The `dime` command's own code is not in the library.
            if path.ends_with("src/main.rs") || path.ends_with("src/cli") {
                None
            } else if path.is_dir() {
                newest_source(&path)
            } else {
                Some((modified(&path), path))
            }
        })
        .max()
}

/// A `dime` server on a unix socket in its own temporary directory.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
    address: String,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let sock = dir.path().join("dime.sock");
        let address = format!("unix:{}", sock.display());
        let child = Command::new(env!("CARGO_BIN_EXE_dime"))
            .args(["-l", &address])
            .stderr(Stdio::null())
            .spawn()
            .expect("start the dime server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(
                Instant::now() < deadline,
                "server did not create {}",
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Server {
            child,
            dir,
            address,
        }
    }
}

/// A `dime` server on a unix socket and on TCP (127.0.0.1, a free port):
/// the server and its two addresses.
fn start_unix_and_tcp() -> (Server, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("dime.sock");
    let address = format!("unix:{}", sock.display());
    // The server names each listener on stderr ("dime: listening on
    // tcp:127.0.0.1:PORT"); a file, so nobody has to drain a pipe.
    let log = dir.path().join("server.log");
    let child = Command::new(env!("CARGO_BIN_EXE_dime"))
        .args(["-l", &address, "-l", "tcp:127.0.0.1:0"])
        .stderr(std::fs::File::create(&log).expect("server log"))
        .spawn()
        .expect("start the dime server");
    let server = Server {
        child,
        dir,
        address,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tcp = text
            .lines()
            .find_map(|l| l.strip_prefix("dime: listening on tcp:"));
        if let Some(tcp) = tcp.filter(|_| sock.exists()) {
            let tcp = format!("tcp:{}", tcp.trim());
            return (server, tcp);
        }
        assert!(Instant::now() < deadline, "server did not start: {text}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The C (or C++) compiler for the target cargo built, with the flags the
/// `cc` crate gives it (those of `CFLAGS`/`CXXFLAGS` included) and ours:
/// debug info, no optimisation, C99, and every warning an error.
fn compiler(cxx: bool) -> Command {
    let mut build = cc::Build::new();
    build
        .cpp(cxx)
        .target(env!("DIME_BUILD_TARGET"))
        .host(env!("DIME_BUILD_HOST"))
        .opt_level(0)
        .debug(true)
        .cargo_metadata(false)
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true);
    if !cxx {
        build.std("c99");
    }
    let tool = build
        .try_get_compiler()
        .unwrap_or_else(|e| panic!("the cc crate found no compiler: {e}"));
    let mut cmd = tool.to_command();
    // cc adds -Wall/-Wextra/-Werror itself; -Wpedantic is ours. Listed in
    // full anyway, so the strictness does not hang on cc's defaults.
    cmd.args(WARNINGS);
    cmd
}

/// Compiles `sources` into `out` with the strict warning flags, linking
/// `libdime.so` (found at run time through an rpath).
fn compile(sources: &[PathBuf], out: &Path, cxx: bool) {
    let lib = lib_dir();
    let mut cmd = compiler(cxx);
    cmd.arg(format!("-I{ROOT}/include"))
        .args(sources)
        .arg("-o")
        .arg(out)
        .arg(format!("-L{}", lib.display()))
        .arg("-ldime")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lm")
        .arg("-pthread");
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        output.status.success(),
        "{shown} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Compiles one C test from `tests/c/` into `dir`.
fn build_test(name: &str, dir: &Path) -> PathBuf {
    let exe = dir.join(name);
    compile(
        &[Path::new(ROOT).join(format!("tests/c/{name}.c"))],
        &exe,
        false,
    );
    exe
}

/// Shows a program's output and asserts it succeeded.
fn assert_ran(what: &str, output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("--- {what} ---\n{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{what} failed ({})", output.status);
    stdout
}

/// Shows a program's output and returns it, without judging.
fn assert_ran_lenient(what: &str, output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("--- {what} ---\n{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

fn run(exe: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(exe);
    cmd.args(args);
    bounded_output(cmd, Duration::from_secs(120))
}

/// Runs `cmd` to completion and collects its output, which goes to files
/// rather than pipes: a process it leaves behind (a server a C test
/// started) cannot hold the output open and hang the test. Killed, and
/// reported as failed, after `limit`.
fn bounded_output(mut cmd: Command, limit: Duration) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("run C test");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for C test") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait().expect("wait for C test");
            let mut stderr = std::fs::read(&err).unwrap_or_default();
            stderr.extend_from_slice(format!("\n(killed after {limit:?})\n").as_bytes());
            return Output {
                status,
                stdout: std::fs::read(&out).unwrap_or_default(),
                stderr,
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap_or_default(),
        stderr: std::fs::read(&err).unwrap_or_default(),
    }
}

#[test]
fn every_value_kind_round_trips() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = build_test("values", dir.path());
    let out = assert_ran("values", run(&exe, &[&server.address]));
    assert!(out.contains(", 0 failed"));
}

#[test]
fn row_major_matrices_travel_as_they_are_and_through_shared_memory() {
    let (server, tcp) = start_unix_and_tcp();
    let dir = tempfile::tempdir().unwrap();
    let exe = build_test("arrays", dir.path());
    let out = assert_ran("arrays", run(&exe, &[&server.address, &tcp]));
    assert!(out.contains(", 0 failed"));
}

#[test]
fn tokens_and_tls_options_from_c() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_test("security", dir.path());
    let out = assert_ran(
        "security",
        run(
            &exe,
            &[env!("CARGO_BIN_EXE_dime"), dir.path().to_str().unwrap()],
        ),
    );
    assert!(out.contains(", 0 failed"));
}

#[test]
fn errors_give_the_right_status_and_message() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = build_test("errors", dir.path());
    let scratch = server.dir.path().to_str().unwrap();
    let out = assert_ran(
        "errors",
        run(
            &exe,
            &[&server.address, env!("CARGO_BIN_EXE_dime"), scratch],
        ),
    );
    assert!(out.contains(", 0 failed"));
}

#[test]
fn one_client_is_safe_to_share_between_threads() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = build_test("threads", dir.path());
    let out = assert_ran("threads", run(&exe, &[&server.address]));
    assert!(out.contains(", 0 failed"));
}

#[test]
fn shares_store_every_kind_lock_and_wait() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = build_test("shares", dir.path());
    let out = assert_ran("shares", run(&exe, &[&server.address]));
    assert!(out.contains(", 0 failed"));
}

#[test]
fn remote_calls_route_fail_and_cancel() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = build_test("rpc", dir.path());
    let out = assert_ran("rpc", run(&exe, &[&server.address]));
    assert!(out.contains(", 0 failed"));
}

#[test]
fn files_are_served_downloaded_and_uploaded() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = build_test("files", dir.path());
    let out = assert_ran("files", run(&exe, &[&server.address]));
    assert!(out.contains(", 0 failed"));
}

#[test]
fn tuple_spaces_match_every_field_kind_and_block() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = build_test("tuples", dir.path());
    let out = assert_ran("tuples", run(&exe, &[&server.address]));
    assert!(out.contains(", 0 failed"));
}

#[test]
fn leases_fencing_and_watches() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = build_test("watch", dir.path());
    let out = assert_ran("watch", run(&exe, &[&server.address]));
    assert!(out.contains(", 0 failed"));
}

#[test]
fn impossible_shapes_are_refused_before_the_buffer_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_test("shapes", dir.path());
    let out = assert_ran("shapes", run(&exe, &[]));
    assert!(out.contains(", 0 failed"));
}

#[test]
fn header_compiles_as_cxx() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("header_cxx");
    compile(&[Path::new(ROOT).join("tests/c/header.cpp")], &exe, true);
    assert_ran("header.cpp", run(&exe, &[]));
}

#[test]
fn send_matrix_example_runs() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("send_matrix");
    compile(
        &[Path::new(ROOT).join("examples/c/send_matrix.c")],
        &exe,
        false,
    );
    let out = assert_ran("send_matrix", run(&exe, &[&server.address]));
    assert!(out.contains("M (3 x 3):"), "{out}");
    assert!(
        out.contains("    1    2    3\n    4    5    6\n    7    8    9"),
        "{out}"
    );
}

/// The Python interpreter of the compat venv; panics (failing the test,
/// never skipping it) when the venv is missing or lacks `dime` or numpy.
fn compat_python() -> PathBuf {
    let python = Path::new(ROOT).join(".venv/compat/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import dime, numpy"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} is missing or lacks dime-client/numpy, so C cannot be tested against the \
         original Python client. Run tests/run-all once (it creates the venv before the Rust \
         suite), or python3 -m venv .venv/compat && \
         .venv/compat/bin/pip install -r tests/python/requirements-compat.txt",
        python.display()
    );
    python
}

/// Panics (failing the test) unless `tool --version` runs: a test that
/// passes without its tool would claim a check that never happened.
fn require_tool(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{tool}` is not installed, so this test cannot check anything: \
         apt-get install {package} (bash .ci/run installs it on CI)"
    );
}

#[test]
fn c_and_python_exchange_matrices() {
    let python = compat_python();
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = build_test("python_peer", dir.path());
    let sock = server.address.strip_prefix("unix:").unwrap().to_string();
    let mut py = Command::new(python)
        .arg(Path::new(ROOT).join("tests/c/python_peer.py"))
        .arg(&sock)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python peer");
    let c_out = run(&exe, &[&server.address]);
    // If the C side gave up early, Python may block in wait() forever.
    let deadline = Instant::now() + Duration::from_secs(30);
    while py.try_wait().expect("python peer").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = py.kill();
    let py_out = py.wait_with_output().expect("python peer");
    // Show both sides before judging either.
    let (c_ok, py_ok) = (c_out.status.success(), py_out.status.success());
    let c_text = assert_ran_lenient("python_peer (C)", c_out);
    let py_text = assert_ran_lenient("python_peer.py", py_out);
    assert!(
        c_ok && py_ok,
        "C side ok: {c_ok}, Python side ok: {py_ok}\n{c_text}\n{py_text}"
    );
}

#[test]
fn installed_pkg_config_builds_the_example() {
    require_tool("pkg-config", "pkg-config");
    let prefix = tempfile::tempdir().unwrap();
    let lib = lib_dir();
    assert_ran(
        "install-c.sh",
        Command::new(Path::new(ROOT).join("scripts/install-c.sh"))
            .arg(prefix.path())
            .arg(&lib)
            .output()
            .unwrap(),
    );
    let pc_path = prefix.path().join("lib/pkgconfig");
    let pkg = |args: &[&str]| {
        let out = Command::new("pkg-config")
            .args(args)
            .arg("dime")
            .env("PKG_CONFIG_PATH", &pc_path)
            .output()
            .unwrap();
        assert!(out.status.success(), "pkg-config {args:?} failed");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(pkg(&["--modversion"]), env!("CARGO_PKG_VERSION"));
    let flags = pkg(&["--cflags", "--libs"]);

    let exe = prefix.path().join("send_matrix");
    let status = compiler(false)
        .arg(Path::new(ROOT).join("examples/c/send_matrix.c"))
        .args(flags.split_whitespace())
        .arg(format!(
            "-Wl,-rpath,{}",
            prefix.path().join("lib").display()
        ))
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cc $(pkg-config --cflags --libs dime) failed"
    );
    let server = Server::start();
    assert_ran("installed send_matrix", run(&exe, &[&server.address]));
}

/// `scripts/install-c.sh` into a temporary prefix, then `examples/c` built
/// with CMake through `find_package(dime)` (shared and static targets,
/// warnings as errors) and both programs run against a server; the package
/// version file accepts this major (and major.minor) version and refuses the next.
#[test]
fn installed_cmake_package_builds_the_example() {
    require_tool("cmake", "cmake");
    let prefix = tempfile::tempdir().unwrap();
    let lib = lib_dir();
    assert_ran(
        "install-c.sh",
        Command::new(Path::new(ROOT).join("scripts/install-c.sh"))
            .arg(prefix.path())
            .arg(&lib)
            .output()
            .unwrap(),
    );
    let build = prefix.path().join("build");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    assert_ran(
        "cmake configure",
        Command::new("cmake")
            .arg("-S")
            .arg(Path::new(ROOT).join("examples/c"))
            .arg("-B")
            .arg(&build)
            .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.path().display()))
            .arg(format!("-DCMAKE_C_COMPILER={cc}"))
            .arg(format!("-DCMAKE_C_FLAGS={}", WARNINGS.join(" ")))
            .output()
            .unwrap(),
    );
    assert_ran(
        "cmake --build",
        Command::new("cmake")
            .arg("--build")
            .arg(&build)
            .output()
            .unwrap(),
    );
    let server = Server::start();
    // Neither needs LD_LIBRARY_PATH: the build tree's rpath finds the
    // installed libdime.so, and the static one carries libdime in itself.
    for exe in ["send_matrix", "send_matrix_static"] {
        assert_ran(
            &format!("cmake-built {exe}"),
            run(&build.join(exe), &[&server.address]),
        );
    }

    let (major, minor) = (
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
    );
    let finds = |wanted: &str| {
        let dir = prefix.path().join(format!("find-{wanted}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("CMakeLists.txt"),
            format!(
                "cmake_minimum_required(VERSION 3.16)\nproject(v LANGUAGES C)\n\
                 find_package(dime {wanted} REQUIRED)\n"
            ),
        )
        .unwrap();
        Command::new("cmake")
            .arg("-S")
            .arg(&dir)
            .arg("-B")
            .arg(dir.join("build"))
            .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.path().display()))
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        finds(&format!("{major}.{minor}")),
        "find_package(dime {major}.{minor}) failed"
    );
    assert!(finds(major), "find_package(dime {major}) failed");
    let next = if major == "0" {
        format!("0.{}", minor.parse::<u32>().unwrap() + 1)
    } else {
        format!("{}.0", major.parse::<u32>().unwrap() + 1)
    };
    assert!(
        !finds(&next),
        "find_package(dime {next}) accepted version {major}.{minor}"
    );
}

/// Runs the C tests and the example under valgrind: no memory errors and
/// no definite leaks.
#[test]
fn c_tests_are_clean_under_valgrind() {
    require_tool("valgrind", "valgrind");
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let values = build_test("values", dir.path());
    let errors = build_test("errors", dir.path());
    let example = dir.path().join("send_matrix");
    compile(
        &[Path::new(ROOT).join("examples/c/send_matrix.c")],
        &example,
        false,
    );
    let scratch = server.dir.path().to_str().unwrap().to_string();
    let threads = build_test("threads", dir.path());
    let shares = build_test("shares", dir.path());
    let tuples = build_test("tuples", dir.path());
    let shapes = build_test("shapes", dir.path());
    let rpc = build_test("rpc", dir.path());
    let watch = build_test("watch", dir.path());
    let files = build_test("files", dir.path());
    let arrays = build_test("arrays", dir.path());
    let (arrays_server, tcp) = start_unix_and_tcp();
    let pipeline = build_test("pipeline", dir.path());
    let double = Dime2Double::start();
    let security = build_test("security", dir.path());
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_scratch = auth_dir.path().to_str().unwrap().to_string();
    let runs: [(&Path, Vec<&str>); 13] = [
        (&security, vec![env!("CARGO_BIN_EXE_dime"), &auth_scratch]),
        (&shapes, vec![]),
        (&pipeline, vec![&server.address, &double.address]),
        (&values, vec![&server.address]),
        (&threads, vec![&server.address]),
        (&shares, vec![&server.address]),
        (&tuples, vec![&server.address]),
        (&rpc, vec![&server.address]),
        (&watch, vec![&server.address]),
        (&files, vec![&server.address]),
        (&arrays, vec![&arrays_server.address, &tcp]),
        (
            &errors,
            vec![&server.address, env!("CARGO_BIN_EXE_dime"), &scratch],
        ),
        (&example, vec![&server.address]),
    ];
    for (exe, args) in runs {
        let mut cmd = Command::new("valgrind");
        cmd.args([
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--error-exitcode=1",
            "--quiet",
        ])
        .arg(exe)
        .args(&args);
        let output = bounded_output(cmd, Duration::from_secs(300));
        assert_ran(&format!("valgrind {}", exe.display()), output);
    }
}

/// The DiME2-only test double (`tests/dime2_double.py`) on a unix socket,
/// logging each request's command to `requests.log`; killed on drop.
struct Dime2Double {
    child: Child,
    dir: tempfile::TempDir,
    address: String,
}

impl Dime2Double {
    fn start() -> Dime2Double {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("temp dir");
        let address = format!("unix:{}", dir.path().join("dime2.sock").display());
        let mut child = Command::new("python3")
            .arg(Path::new(ROOT).join("tests/dime2_double.py"))
            .args(["-l", &address, "--log"])
            .arg(dir.path().join("requests.log"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python3 tests/dime2_double.py");
        let mut line = String::new();
        std::io::BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("dime: listening on"), "{line:?}");
        Dime2Double {
            child,
            dir,
            address,
        }
    }
}

impl Drop for Dime2Double {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn c_against_an_original_dime2_server() {
    let double = Dime2Double::start();
    let ours = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = build_test("original_server", dir.path());
    let log = double.dir.path().join("requests.log");
    let out = assert_ran(
        "original_server",
        run(
            &exe,
            &[&double.address, log.to_str().unwrap(), &ours.address],
        ),
    );
    assert!(out.contains(", 0 failed"));
}

#[test]
fn c_pipelined_sends_and_encoded_values() {
    let double = Dime2Double::start();
    let ours = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let exe = build_test("pipeline", dir.path());
    let out = assert_ran("pipeline", run(&exe, &[&ours.address, &double.address]));
    assert!(out.contains(", 0 failed"));
}
