#!/usr/bin/env python3
"""Python binding vs the original DiME2 Python client (PyPI dime-client).

    cargo build --release
    .venv/py/bin/python benches/python_bench.py [--size-mb 800] [--rounds 3] [--rt 3000]

One release server (target/release/dime) serves both clients in the same run.
Measured, over its unix socket:

* an 800 MB float64 matrix (10000 x 10000): ``send_r`` from one client plus
  ``sync_r`` on another, in GB/s (best of --rounds for ours; dime-client once,
  it is slow). Fortran-ordered (MATLAB's layout, no copy on our side) and
  C-ordered (numpy's default; between our clients it travels as it is, and
  through shared memory on one host: see benches/arrays.py; dime-client
  gets it converted to column-major by the server).
* a small message round trip, a -> b -> a (send_r + sync_r each way, a
  float), median in microseconds.

Our binding uses target/release/libdime.so. dime-client runs in a
subprocess under .venv/compat/bin/python (both packages import as ``dime``);
one of our clients stays connected so the server's serialization is dimeb,
which dime-client then uses too (the original clients' pickle cannot be read
by other languages). Targets: >= 5x on 800 MB, >= 2x on the round trip;
each prints a PASS or MISS line. With --check the script exits with status 1
after the whole report if any line is MISS, so a perf job can gate on it.
"""

import argparse
import json
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def measure(DimeClient, args, size_mb, rounds, rt_iters):
    """Runs the measurements with the given client class; returns a dict."""
    import numpy as np

    out = {}
    n = int(size_mb * 1e6 / 8)
    side = int(round(n ** 0.5))
    shape = (side, n // side)
    a = DimeClient(*args)
    b = DimeClient(*args)
    b.join("big")

    for order in ("F", "C"):
        x = np.asarray(np.random.default_rng(1).standard_normal(shape), order=order)
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            a.send_r("big", x=x)
            got = b.sync_r()["x"]
            times.append(time.perf_counter() - t0)
            assert got.shape == x.shape and got[3, 5] == x[3, 5] and got[-1, -2] == x[-1, -2]
            del got
        out[f"big_{order}_seconds"] = min(times)
        out["big_bytes"] = x.nbytes
        del x

    a.join("ra")
    b.join("rb")
    v = 1.5
    for _ in range(200):
        a.send_r("rb", x=v)
        b.sync_r()
        b.send_r("ra", y=v)
        a.sync_r()
    samples = []
    for _ in range(rt_iters):
        t0 = time.perf_counter()
        a.send_r("rb", x=v)
        r = b.sync_r()
        b.send_r("ra", y=r["x"])
        r = a.sync_r()
        samples.append(time.perf_counter() - t0)
        assert r["y"] == v
    out["rt_median_us"] = statistics.median(samples) * 1e6
    out["rt_p99_us"] = sorted(samples)[int(len(samples) * 0.99)] * 1e6
    a.close()
    b.close()
    return out


def worker_main():
    """``--worker``: run under dime-client's venv, print the results as JSON."""
    spec = json.loads(sys.argv[2])
    from dime import DimeClient
    import dime
    assert "site-packages" in dime.__file__, dime.__file__
    res = measure(DimeClient, spec["args"], spec["size_mb"], spec["rounds"], spec["rt"])
    c = DimeClient(*spec["args"])
    res["serialization"] = c.serialization
    c.close()
    print(json.dumps(res))


def start_server(sock):
    binary = REPO / "target" / "release" / "dime"
    proc = subprocess.Popen([str(binary), "-l", f"unix:{sock}"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for raw in proc.stderr:
        if re.match(rb"dime: listening on unix:", raw):
            return proc
    raise SystemExit("python_bench: the server did not start")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=800)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the big transfer for our binding")
    ap.add_argument("--rt", type=int, default=3000, help="round trips measured per client")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build --release")
    ap.add_argument("--compat-python", default=str(REPO / ".venv" / "compat" / "bin" / "python"))
    ap.add_argument("--check", action="store_true", help="exit with status 1 if a target is missed")
    opts = ap.parse_args()

    if not opts.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    lib = REPO / "target" / "release" / "libdime.so"
    os.environ["DIME_LIBRARY"] = str(lib)
    sys.path.insert(0, str(REPO / "bindings" / "python"))
    import dime
    from dime import DimeClient

    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "dime.sock")
        server = start_server(sock)
        try:
            args = ("ipc", sock)
            holder = DimeClient(*args)       # keeps the server on dimeb throughout
            print(f"python_bench: server target/release/dime, {dime.library_path()}, unix socket, "
                  f"{opts.size_mb:g} MB float64 matrix", flush=True)
            t = time.perf_counter()
            ours = measure(DimeClient, args, opts.size_mb, opts.rounds, opts.rt)
            print(f"  ours measured in {time.perf_counter() - t:.1f} s", flush=True)
            t = time.perf_counter()
            spec = json.dumps({"args": args, "size_mb": opts.size_mb, "rounds": 1, "rt": opts.rt})
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DIME_LIBRARY")}
            done = subprocess.run([opts.compat_python, __file__, "--worker", spec], cwd="/",
                                  env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"python_bench: the dime-client worker failed:\n{done.stderr}")
            old = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"  dime-client measured in {time.perf_counter() - t:.1f} s "
                  f"(serialization {old['serialization']})", flush=True)
            holder.close()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(10)

    gb = ours["big_bytes"] / 1e9
    rows = []
    for order, label in (("F", "Fortran-ordered"), ("C", "C-ordered")):
        o, d = gb / ours[f"big_{order}_seconds"], gb / old[f"big_{order}_seconds"]
        rows.append((f"{opts.size_mb:g} MB send+sync, {label} (GB/s)", o, d, o / d))
    o, d = ours["rt_median_us"], old["rt_median_us"]
    rows.append(("small round trip, median (us)", o, d, d / o))
    rows.append(("small round trip, p99 (us)", ours["rt_p99_us"], old["rt_p99_us"],
                 old["rt_p99_us"] / ours["rt_p99_us"]))
    print()
    print(f"  {'':44} {'ours':>10} {'dime-client':>12} {'ratio':>8}")
    for name, o, d, r in rows:
        print(f"  {name:44} {o:10.2f} {d:12.2f} {r:7.1f}x")
    big_ratio = min(rows[0][3], rows[1][3])
    rt_ratio = rows[2][3]
    print()
    targets = [(f">= 5x on {opts.size_mb:g} MB (worst order)", big_ratio, 5),
               (">= 2x on the small round trip", rt_ratio, 2)]
    for name, ratio, want in targets:
        print(f"  target {name:36} {ratio:6.1f}x   {'PASS' if ratio >= want else 'MISS'}")
    missed = sum(ratio < want for _, ratio, want in targets)
    if opts.check and missed:
        sys.exit(f"python_bench --check: {missed} target(s) missed")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main()
    else:
        main()
