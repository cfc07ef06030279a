#!/usr/bin/env python3
"""Remote calls, Python: dime.Server/dime.Client against teleport 0.9.0, in one run.

    cargo build --release
    TELEPORT_PYTHON=.venv/teleport/bin/python \\
        .venv/teleport/bin/python benches/rpc.py [--rounds 3] [--size-mb 800] [--check]

(``cargo bench --bench rpc`` runs this too, after its C part.) Both sides
run the *same* code -- the server and client functions below -- with only
the import changed (``import dime as rpc`` or ``import teleport as rpc``):
the server process binds ``echo`` and ``big`` and runs (for dime, the broker
runs inside it, teleport's topology), the client process connects to it
over an ipc (unix) socket. Measured, alternating the two libraries round
by round:

* small call round trip (``{"x": float64 scalar}``), median in µs;
  target: dime <= 1/10 of teleport's;
* pipelined calls from one client (default ``maxinflight=16``, a window of
  64 futures), calls/s; target: dime >= 15x teleport's;
* a 800 MB float64 argument one way (the function returns one element),
  as a 1-D array and as a C-ordered 1000 x 100000 matrix, GB/s (median of
  the rounds after one warm-up call); target: dime >= 1.5x teleport's.

The teleport interpreter comes from ``--teleport-python``, else
``$TELEPORT_PYTHON``, else ``.venv/teleport/bin/python``; see
benches/README.md for installing teleport 0.9.0 there. dime runs under the
same interpreter with this checkout's ``bindings/python`` and
``target/release/libdime.so``. Each target prints a PASS or MISS line; with
``--check`` the script exits 1 after the whole report if any is MISS (2 if
teleport is not available to compare with).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]

TARGETS = {"rt": 10.0, "pipelined": 15.0, "big": 1.5}


# ---------------------------------------------------------------- the two roles
# Identical for both libraries: that is the point of the drop-in API.

def serve(rpc, address):
    import numpy as np

    server = rpc.Server(address)
    server.bind("echo", lambda data: data)
    # The last element, read where it lies (reshape(-1) would copy a
    # Fortran-ordered array).
    server.bind("big", lambda data: {"last": np.float64(data["x"][(-1,) * data["x"].ndim])})
    print("serving", flush=True)
    server.run()


def drive(rpc, address, what, args):
    import numpy as np
    from collections import deque

    client = rpc.Client(address)
    client.connect()
    out = {}
    if what == "rt":
        x = {"x": np.float64(1.5)}
        for _ in range(args["warmup"]):
            client.echo(x).result()
        samples = []
        for _ in range(args["n"]):
            t0 = time.perf_counter()
            client.echo(x).result()
            samples.append(time.perf_counter() - t0)
        out["median_us"] = statistics.median(samples) * 1e6
    elif what == "pipelined":
        x = {"x": np.float64(1.5)}
        for _ in range(args["warmup"]):
            client.echo(x).result()
        window = deque()
        t0 = time.perf_counter()
        for _ in range(args["n"]):
            window.append(client.echo(x))
            if len(window) >= 64:
                window.popleft().result()
        while window:
            window.popleft().result()
        out["calls_per_s"] = args["n"] / (time.perf_counter() - t0)
    elif what == "big":
        n = int(args["size_mb"] * 1e6 / 8)
        shape = (n,) if args["shape"] == "1d" else (1000, n // 1000)
        x = np.random.default_rng(0).standard_normal(shape)       # C order
        times = []
        for _ in range(args["reps"] + 1):          # the first is a warm-up
            t0 = time.perf_counter()
            got = client.big({"x": x}).result()
            times.append(time.perf_counter() - t0)
            assert float(got["last"]) == x[(-1,) * x.ndim]
        out["gb_per_s"] = x.nbytes / statistics.median(times[1:]) / 1e9
        out["all_gb_per_s"] = [round(x.nbytes / t / 1e9, 3) for t in times]
    client.close()
    print(json.dumps(out), flush=True)


# ---------------------------------------------------------------- orchestration

def environment(lib):
    env = dict(os.environ)
    if lib == "dime":
        env["PYTHONPATH"] = str(REPO / "bindings" / "python") + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("DIME_LIBRARY", str(REPO / "target" / "release" / "libdime.so"))
    return env


class Side:
    """One library: each run starts its server process, drives it from a
    client process and stops it. Only one server lives at a time, because
    an idle teleport server polls (it would steal CPU from the other run)."""

    def __init__(self, lib, python, tmp):
        self.lib, self.python = lib, python
        self.address = f"ipc://{tmp}/{lib}.sock"

    def run(self, what, **args):
        env = environment(self.lib)
        server = subprocess.Popen([self.python, __file__, "--serve", self.lib, self.address],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                  text=True)
        try:
            line = server.stdout.readline().strip()
            if line != "serving":
                sys.exit(f"{self.lib} server did not start ({line!r})")
            out = subprocess.run([self.python, __file__, "--drive", self.lib, self.address,
                                  what, json.dumps(args)], capture_output=True, text=True,
                                 env=env, timeout=900)
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if out.returncode or not lines:
            sys.exit(f"{self.lib} {what} failed:\n{out.stdout}\n{out.stderr}")
        return json.loads(lines[-1])


def teleport_python(arg):
    for candidate in (arg, os.environ.get("TELEPORT_PYTHON"),
                      str(REPO / ".venv" / "teleport" / "bin" / "python")):
        if candidate and os.path.exists(candidate):
            ok = subprocess.run([candidate, "-c", "import teleport, numpy; print(teleport.__version__)"],
                                capture_output=True, text=True)
            if ok.returncode == 0:
                return candidate, ok.stdout.strip()
    return None, None


def verdict(name, ratio, target):
    """Prints PASS or MISS for ``ratio`` (dime's advantage) against ``target``."""
    ok = ratio >= target
    print(f"{'PASS' if ok else 'MISS'}  {name}: {ratio:.1f}x (target >= {target:g}x)")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teleport-python")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size-mb", type=float, default=800)
    ap.add_argument("--big-reps", type=int, default=3)
    ap.add_argument("--only", default="rt,pipelined,big",
                    help="comma-separated measurements to run (rt, pipelined, big)")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--serve", nargs=2, metavar=("LIB", "ADDRESS"), help=argparse.SUPPRESS)
    ap.add_argument("--drive", nargs=4, metavar=("LIB", "ADDRESS", "WHAT", "ARGS"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        return serve(__import__(a.serve[0]), a.serve[1])
    if a.drive:
        lib, address, what, args = a.drive
        return drive(__import__(lib), address, what, json.loads(args))

    tp, version = teleport_python(a.teleport_python)
    if tp is None:
        print("teleport is not installed: set TELEPORT_PYTHON to a Python with teleport 0.9.0 "
              "(see benches/README.md); nothing to compare with.")
        return 2 if a.check else 0
    lib = REPO / "target" / "release" / "libdime.so"
    if not lib.exists() and "DIME_LIBRARY" not in os.environ:
        sys.exit("build the library first: cargo build --release")
    print(f"dime (target/release) vs teleport {version} ({tp}); ipc sockets; "
          f"{a.rounds} rounds, alternating; load average {os.getloadavg()[0]:.1f}")
    results = {"dime": {}, "teleport": {}}
    plan = [("rt", {"dime": dict(warmup=500, n=5000), "teleport": dict(warmup=100, n=1000)}),
            ("pipelined", {"dime": dict(warmup=500, n=20000), "teleport": dict(warmup=100, n=3000)})]
    for shape in ("1d", "2d"):
        plan.append((f"big-{shape}", {side: dict(size_mb=a.size_mb, shape=shape, reps=a.big_reps)
                                      for side in ("dime", "teleport")}))
    only = set(a.only.split(","))
    plan = [(what, args) for what, args in plan if what.split("-")[0] in only]
    with tempfile.TemporaryDirectory(prefix="dime-rpc-bench-") as tmp:
        sides = {"dime": Side("dime", tp, tmp), "teleport": Side("teleport", tp, tmp)}
        for what, args in plan:
            kind = what.split("-")[0]
            for r in range(a.rounds if kind != "big" else 1):
                for name in ("dime", "teleport") if r % 2 == 0 else ("teleport", "dime"):
                    out = sides[name].run(kind, **args[name])
                    results[name].setdefault(what, []).append(out)
                    print(f"  {what:9} {name:8} {json.dumps(out)}", flush=True)

    def med(name, what, key):
        return statistics.median(o[key] for o in results[name][what])

    print()
    oks = []
    if "rt" in results["dime"]:
        d, t = med("dime", "rt", "median_us"), med("teleport", "rt", "median_us")
        print(f"small call round trip, median: dime {d:.1f} µs, teleport {t:.1f} µs")
        oks.append(verdict("round trip, teleport / dime", t / d, TARGETS["rt"]))
    if "pipelined" in results["dime"]:
        d, t = med("dime", "pipelined", "calls_per_s"), med("teleport", "pipelined", "calls_per_s")
        print(f"pipelined calls: dime {d:,.0f}/s, teleport {t:,.0f}/s")
        oks.append(verdict("pipelined calls/s, dime / teleport", d / t, TARGETS["pipelined"]))
    for shape in ("1d", "2d"):
        what = f"big-{shape}"
        if what not in results["dime"]:
            continue
        d, t = med("dime", what, "gb_per_s"), med("teleport", what, "gb_per_s")
        label = "100,000,000" if shape == "1d" else "1000 x 100000, C order"
        print(f"{a.size_mb:g} MB float64 argument ({label}): dime {d:.2f} GB/s, "
              f"teleport {t:.2f} GB/s")
        oks.append(verdict(f"{what} GB/s, dime / teleport", d / t, TARGETS["big"]))
    if a.check and not all(oks):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
