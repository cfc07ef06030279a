#!/usr/bin/env python3
"""One conformance run across every pair of languages.

    tests/conformance/run.py [--out DIR] [--update-docs]

Starts target/debug/dime on a unix socket and a ws: listener, and one
driver per client (drivers/): C over libdime, our Python binding, MATLAB
through the MEX file under Octave, the JavaScript client on Node, and the
original Python client (PyPI dime-client). All join one group; each sends
every row of rows.py to it, then each receives and describes everything
that arrived. Every (sender, receiver, row) cell is checked against the
type table (expect.py) and the documented differences (differences.py).

Writes DIR/matrix.json and DIR/summary.md (DIR: target/conformance),
driver logs in DIR/logs/, and checks that docs/conformance.md equals the
summary (--update-docs rewrites it instead). The last line is
"conformance: P passed, F failed (D documented differences, N not
applicable)"; exit status 0 only if no cell failed and cells were checked.

Environment: DIME_BIN (server), DIME_LIBRARY (libdime.so, for Python),
DIME_PYTHON (our binding's interpreter, with numpy; default .venv/py),
DIME_COMPAT_PYTHON (the original client's; default .venv/compat), CC.
Needs octave-cli (and the MEX build, done here), node with
bindings/javascript's npm dependencies, gcc.
"""

import argparse
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import report  # noqa: E402
from report import SHORT  # noqa: E402
from differences import DIFFERENCES, receive_instead, send_failures  # noqa: E402
from expect import CLIENTS, not_expressible, receive, sent  # noqa: E402
from model import TokenError, first_difference, from_tokens, render, same, to_tokens  # noqa: E402
from rows import ROWS, by_id  # noqa: E402

GROUP = "conformance"
STARTUP_SECONDS = 60
SEND_SECONDS = 60
RECEIVE_SECONDS = 30


def log(msg):
    """One progress line."""
    print(f"conformance: {msg}", flush=True)


class Driver:
    """One client's driver process, spoken to line by line."""

    def __init__(self, cid, argv, logdir, env=None, cwd=None):
        self.id = cid
        self.argv = argv
        self.lines = queue.Queue()
        self.problem = None
        self.logpath = os.path.join(logdir, f"{cid}.log")
        self._log = open(self.logpath, "wb")
        self._commands = open(os.path.join(logdir, f"{cid}.commands"), "wb")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._log, env=env, cwd=cwd)
        except OSError as e:
            self.proc = None
            self.problem = f"{CLIENTS[cid]}: could not start {argv[0]}: {e}"
            return
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def alive(self):
        return self.proc is not None and self.problem is None

    def fail(self, why):
        if self.problem is None:
            self.problem = f"{CLIENTS[self.id]}: {why} (log: {os.path.relpath(self.logpath, REPO)}: " \
                           f"{self.log_tail()})"

    def log_tail(self):
        self._log.flush()
        try:
            with open(self.logpath, "rb") as f:
                text = f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""
        return text[-400:] if text else "empty"

    def write(self, line):
        if not self.alive():
            return
        self._commands.write(line.encode("utf-8") + b"\n")
        try:
            self.proc.stdin.write(line.encode("utf-8") + b"\n")
            self.proc.stdin.flush()
        except OSError as e:
            self.fail(f"stopped reading its commands ({e})")

    def close_input(self):
        """Ends the driver's script (it exits after running it)."""
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def until(self, last, seconds):
        """The lines up to (without) one starting with `last`; fails the
        driver if it exits or takes longer."""
        out = []
        deadline = time.monotonic() + seconds
        while self.alive():
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.fail(f"no '{last}' within {seconds} s")
                break
            if line is None:
                self.fail(f"exited ({self.proc.wait()}) before '{last}'")
                break
            if line.split(" ", 1)[0] == last:
                return out, line
            out.append(line)
        return out, None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.close_input()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self._commands.close()


def start_server(tmp, logdir):
    """target/debug/dime (or $DIME_BIN) on a unix socket in tmp and on
    ws:127.0.0.1:0; returns (process, its log, socket path, ws URL)."""
    dime_bin = os.environ.get("DIME_BIN") or os.path.join(REPO, "target", "debug", "dime")
    if not os.access(dime_bin, os.X_OK):
        raise SystemExit(f"conformance: no server binary at {dime_bin} (run cargo build)")
    sock = os.path.join(tmp, "dime.sock")
    errlog = open(os.path.join(logdir, "server.log"), "w+b")
    proc = subprocess.Popen([dime_bin, "-l", f"unix:{sock}", "-l", "ws:127.0.0.1:0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        errlog.seek(0)
        text = errlog.read().decode("utf-8", "replace")
        m = re.search(r"^dime: listening on ws:(\S+)$", text, re.M)
        if m and os.path.exists(sock):
            return proc, errlog, sock, f"ws://{m.group(1)}"
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"conformance: the server did not start:\n{text}")


def build_c_driver(outdir):
    """Compiles drivers/driver.c against include/dime.h and target/debug's
    libdime.so, as the C tests are; returns (executable, None) or (None, why)."""
    lib = os.path.join(REPO, "target", "debug")
    exe = os.path.join(outdir, "c_driver")
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-I", os.path.join(REPO, "include"),
           os.path.join(HERE, "drivers", "driver.c"), "-L", lib, "-ldime", f"-Wl,-rpath,{lib}", "-o", exe]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"building drivers/driver.c failed: {r.stderr.strip()[-600:]}"
    return exe, None


def build_mex():
    """Builds the MEX file for Octave (matlab/build.sh debug); None or why not."""
    if not shutil.which("octave-cli"):
        return "octave-cli not found (apt-get install octave liboctave-dev)"
    r = subprocess.run([os.path.join(REPO, "matlab", "build.sh"), "debug"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"matlab/build.sh failed: {(r.stdout + r.stderr).strip()[-600:]}"
    return None


def start_drivers(sock, ws_url, outdir, logdir):
    """Every driver, by client id; the original client starts last so our
    clients' dimeb handshake has set the server's serialization."""
    py = os.environ.get("DIME_PYTHON") or os.path.join(REPO, ".venv", "py", "bin", "python")
    compat = os.environ.get("DIME_COMPAT_PYTHON") or os.path.join(REPO, ".venv", "compat", "bin", "python")
    env = dict(os.environ)
    env.setdefault("DIME_LIBRARY", os.path.join(REPO, "target", "debug", "libdime.so"))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    drivers = {}
    c_exe, why = build_c_driver(outdir)
    drivers["c"] = Driver("c", [c_exe or "(not built)", sock, GROUP], logdir)
    if why:
        drivers["c"].problem = f"{CLIENTS['c']}: {why}"
    drivers["py"] = Driver("py", [py, os.path.join(HERE, "drivers", "driver.py"), sock, GROUP,
                                  "--ours", os.path.join(REPO, "bindings", "python")], logdir, env=env)
    why = build_mex()
    oct_env = dict(env, DIME_CONF_SOCK=sock, DIME_CONF_GROUP=GROUP)
    paths = f"'{os.path.join(REPO, 'matlab')}', '{os.path.join(HERE, 'drivers', 'octave')}'"
    drivers["matlab"] = Driver("matlab", ["octave-cli", "--no-gui", "--norc", "--no-history", "--quiet",
                                          "--eval", f"addpath({paths}); conformance_driver"],
                               logdir, env=oct_env)
    if why:
        drivers["matlab"].problem = f"{CLIENTS['matlab']}: {why}"
    js_dir = os.path.join(REPO, "bindings", "javascript")
    drivers["js"] = Driver("js", ["node", os.path.join(HERE, "drivers", "driver.mjs"), ws_url, GROUP], logdir)
    if not os.path.isdir(os.path.join(js_dir, "node_modules", "ws")):
        drivers["js"].problem = f"{CLIENTS['js']}: no bindings/javascript/node_modules/ws (run npm ci there)"
    for cid, d in drivers.items():
        _, line = d.until("ready", STARTUP_SECONDS)
        ours = os.path.join(REPO, "bindings", "python", "dime")
        if cid == "py" and line and line.split(" ", 2)[-1] != ours:
            d.fail(f"imported dime from {line.split(' ', 2)[-1]}, not the working copy {ours}")
    drivers["dime_client"] = Driver("dime_client", [compat, os.path.join(HERE, "drivers", "driver.py"),
                                                    sock, GROUP], logdir, env=env)
    _, line = drivers["dime_client"].until("ready", STARTUP_SECONDS)
    if line and "site-packages" not in line:
        drivers["dime_client"].fail(f"imported dime from {line.split(' ', 2)[-1]}, not PyPI dime-client")
    return drivers


def rows_for(sender):
    """The rows `sender` builds and why it skips the others: (rows, {id: reason})."""
    out, skipped = [], {}
    for row in ROWS:
        if row.only and sender not in row.only:
            skipped[row.id] = "an idiom of " + " and ".join(SHORT[s] for s in row.only) + " only"
            continue
        why = not_expressible(sender, row.value)
        if why:
            skipped[row.id] = why
            continue
        out.append(row)
    return out, skipped


def exchange(drivers):
    """Gives every driver its whole script at once (its rows, "send", then
    "recv" naming every live sender) and closes its stdin, then collects
    what each reports. Returns (plan, sent[sender][row] = None | error,
    received[receiver][name] = node, receive_errors[receiver] = [messages])."""
    plan = {cid: rows_for(cid) for cid in CLIENTS}
    senders = [cid for cid, d in drivers.items() if d.alive()]
    for cid, d in drivers.items():
        for row in plan[cid][0]:
            hints = ",".join(row.hints.get("py" if cid == "dime_client" else cid, ())) or "-"
            d.write(f"row {row.id} {hints} {to_tokens(row.value)}")
        d.write(f"send {GROUP} {cid}")
        d.write(f"recv {RECEIVE_SECONDS} {' '.join(senders)}")
        d.close_input()
    sent_ok = {cid: {} for cid in CLIENTS}
    for cid, d in drivers.items():
        lines, _ = d.until("sent-done", SEND_SECONDS)
        for line in lines:
            words = line.split(" ")
            if words[0] == "sent":
                sent_ok[cid][words[1]] = None
            elif words[0] == "err" and len(words) == 3:
                sent_ok[cid][words[1]] = bytes.fromhex(words[2]).decode("utf-8", "replace") \
                    if words[2] != "-" else "error"
    received = {cid: {} for cid in CLIENTS}
    rerrors = {cid: [] for cid in CLIENTS}
    for cid, d in drivers.items():
        lines, _ = d.until("recv-done", RECEIVE_SECONDS + 30)
        for line in lines:
            words = line.split(" ", 2)
            if words[0] == "got" and len(words) == 3:
                try:
                    received[cid][words[1]] = from_tokens(words[2])
                except TokenError as e:
                    received[cid][words[1]] = ("E", f"driver wrote a malformed description: {e}")
            elif words[0] == "rerr":
                rerrors[cid].append(bytes.fromhex(words[1]).decode("utf-8", "replace") if words[1] != "-" else "?")
    return plan, sent_ok, received, rerrors


def judge(plan, sent_ok, received, rerrors, drivers):
    """Every cell: {sender, receiver, row, result, detail, differences}."""
    cells = []
    rows = by_id()
    for s in CLIENTS:
        built, skipped = plan[s]
        for rid, row in rows.items():
            for r in CLIENTS:
                cell = {"sender": s, "receiver": r, "row": rid}
                cells.append(cell)
                if rid in skipped:
                    cell.update(result="n/a", detail=skipped[rid])
                    continue
                cell.update(_judge_cell(s, r, row, sent_ok, received, rerrors, drivers))
    return cells


def _judge_cell(s, r, row, sent_ok, received, rerrors, drivers):
    """One cell's result: what s did with the row, then what r got, against
    the type table and the documented differences."""
    refusal_ids = send_failures(s, row)
    if row.id not in sent_ok[s]:
        why = drivers[s].problem or "the driver did not report this row"
        return {"result": "fail", "detail": f"not sent: {why}"}
    err = sent_ok[s][row.id]
    if err is not None:
        if refusal_ids:
            return {"result": "difference", "differences": sorted(refusal_ids),
                    "detail": f"the sender refuses it: {err.splitlines()[0][:200]}"}
        return {"result": "fail", "detail": f"the sender could not send it: {err[:300]}"}
    if refusal_ids:
        return {"result": "fail", "detail": f"documented as refused by the sender ({', '.join(sorted(refusal_ids))}) "
                                            f"but it was sent: update differences.py"}
    wire = sent(s, row.value, row.hints.get(s, ()))
    want = receive(r, wire)
    got = received[r].get(f"{s}__{row.id}")
    if got is None:
        why = drivers[r].problem or "; ".join(rerrors[r][:3]) or "never arrived"
        return {"result": "fail", "detail": f"not received: {why}"}
    instead = receive_instead(r, wire)
    if same(want, got):
        if instead and not same(instead[0], want):
            return {"result": "fail", "detail": f"arrived as the type table says, but documented as different "
                                                f"({', '.join(sorted(instead[1]))}): update differences.py"}
        return {"result": "pass"}
    if instead and same(instead[0], got):
        return {"result": "difference", "differences": sorted(instead[1]),
                "detail": f"got {render(got, 120)}"}
    return {"result": "fail", "detail": first_difference(want, got)}


def main():
    """Runs the whole matrix; the exit status is the verdict."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "target", "conformance"))
    ap.add_argument("--update-docs", action="store_true",
                    help="write the summary to docs/conformance.md instead of checking it")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    logdir = os.path.join(args.out, "logs")
    os.makedirs(logdir, exist_ok=True)

    started = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="dime-conformance-")
    server, server_log, sock, ws_url = start_server(tmp, logdir)
    drivers = {}
    try:
        drivers = start_drivers(sock, ws_url, args.out, logdir)
        plan, sent_ok, received, rerrors = exchange(drivers)
    finally:
        for d in drivers.values():
            d.stop()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    notes = [d.problem for d in drivers.values() if d.problem]
    server_log.seek(0)
    if "panicked" in server_log.read().decode("utf-8", "replace"):
        notes.append(f"the server panicked (see {os.path.relpath(os.path.join(logdir, 'server.log'), REPO)})")
    server_log.close()
    cells = judge(plan, sent_ok, received, rerrors, drivers)
    for did in DIFFERENCES:
        if not any(did in c.get("differences", ()) for c in cells):
            notes.append(f"documented difference '{did}' happened in no cell: update differences.py")

    matrix_path = os.path.join(args.out, "matrix.json")
    summary_path = os.path.join(args.out, "summary.md")
    summary = report.to_markdown(ROWS, cells, notes)
    with open(matrix_path, "w", encoding="utf-8") as f:
        f.write(report.to_json(ROWS, cells, notes))
    with open(summary_path, "w", encoding="utf-8") as f:
        f.write(summary)

    failed = [c for c in cells if c["result"] == "fail"]
    for c in failed[:60]:
        print(f"FAIL {c['sender']} -> {c['receiver']} {c['row']}: {c['detail']}")
    if len(failed) > 60:
        print(f"… and {len(failed) - 60} more failed cells (see {os.path.relpath(matrix_path, REPO)})")
    for n in notes:
        print(f"FAIL {n}")

    docs = os.path.join(REPO, "docs", "conformance.md")
    docs_ok = True
    if args.update_docs:
        with open(docs, "w", encoding="utf-8") as f:
            f.write(summary)
        log(f"wrote {os.path.relpath(docs, REPO)}")
    else:
        try:
            with open(docs, encoding="utf-8") as f:
                docs_ok = f.read() == summary
        except OSError:
            docs_ok = False
        if not docs_ok:
            print(f"FAIL docs/conformance.md is not this run's summary ({os.path.relpath(summary_path, REPO)}); "
                  f"if the change is intended, run tests/conformance/run.py --update-docs")

    counts = {k: sum(1 for c in cells if c["result"] == k) for k in report.RESULTS}
    passed = counts["pass"] + counts["difference"]
    nfailed = counts["fail"] + len(notes) + (0 if docs_ok else 1)
    log(f"matrix in {os.path.relpath(matrix_path, REPO)}, summary in {os.path.relpath(summary_path, REPO)} "
        f"({time.monotonic() - started:.1f} s)")
    print(f"conformance: {passed} passed, {nfailed} failed "
          f"({counts['difference']} documented differences, {counts['n/a']} not applicable)")
    return 0 if nfailed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
