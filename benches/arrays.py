#!/usr/bin/env python3
"""Large arrays through the broker (issue 17): same-host shared memory,
arrays in their own layout, against floors measured in the same run.

    cargo build --release
    .venv/py/bin/python benches/arrays.py [--check] [--size-mb 800] [--rounds 5] [SECTION ...]

Sections (all by default):

* ``py``: an 800 MB float64 matrix, Python -> Python (two processes), C and
  Fortran order, shapes 10000x10000 and 1000x100000: ``send_r`` start to
  ``sync_r`` return on the receiver (CLOCK_MONOTONIC is one clock for every
  process). Also reported: the first (cold) round, which creates the
  sender's segment (its pages are faulted in once), and the receiver's
  first read of every element
  (``x.sum()``; the mapping's pages are faulted in then). Target >= 4 GB/s.
* ``teleport``: the same matrix through the teleport peer (danijar/teleport
  0.9.0, ZeroMQ over a unix socket), call start to the arrays being in the
  server's function. Target: ours >= 6x. Needs a Python with teleport
  installed: ``--teleport-python PATH`` or ``$DIME_TELEPORT_PYTHON``
  (default ``.venv/teleport/bin/python``). To make one from a checkout of
  teleport 0.9.0 (https://github.com/danijar/teleport, tag v0.9.0):
  ``python3 -m venv .venv/teleport && .venv/teleport/bin/pip install
  "$TELEPORT_SRC" "elements==3.13.0"`` (newer ``elements`` releases break
  its server). Skipped, and reported as such, without one.
* ``c``: the same from C to C (``benches/arrays_c.c``, built with ``cc``
  against target/release/libdime.so), against ``memcpy`` of the same bytes
  in the same run. Target >= 0.6x memcpy.
* ``octave``: Python -> Octave and back (``benches/arrays_octave.m`` under
  ``octave-cli`` with the MEX built by ``matlab/build.sh``), wall clock.
  Target >= 1.5 GB/s each way.
* ``broker``: the broker's peak resident memory (VmHWM, and RssAnon after)
  while one Python client sends the matrix to three. Target < 50 MB.
* ``tcp``: a 100 MB matrix over TCP through the broker (Python -> Python)
  against a raw TCP stream of the same bytes between the same two
  processes. Target >= 0.8x (median). The sender writes the matrix from its
  own memory and the broker relays it while it arrives (``cut_through``,
  which the clients ask for with ``DIME_CUT_THROUGH=1``, set by this
  section unless the environment already says; ``DIME_CUT_THROUGH=0``
  measures store-and-forward), so the hops overlap; the broker still copies every byte in and out, so
  on a busy 2-core machine the three processes compete for the cores.
  Also measured in the same run: the floor for any relay, a process that
  only forwards the same bytes between the same two processes with
  blocking 1 MiB ``recv_into``/``sendall`` (no framing, no routing); the
  report gives it as a ratio of raw TCP and the broker as a ratio of it.

Every section starts its own release server (target/release/dime). The
machine may be shared: figures are best of ``--rounds`` with the median and
worst beside them. With ``--check`` the script exits with status 1 after
the whole report if any target line says MISS (not run in CI).
"""

import argparse
import json
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SERVER = REPO / "target" / "release" / "dime"
LIBDIME = REPO / "target" / "release" / "libdime.so"
SHAPES = {"10000x10000": (10000, 10000), "1000x100000": (1000, 100000)}

MISSES = []


def verdict(ok, line):
    print(f"  {'PASS' if ok else 'MISS'} {line}", flush=True)
    if not ok:
        MISSES.append(line)


def dime_module():
    sys.path.insert(0, str(REPO / "bindings" / "python"))
    os.environ.setdefault("DIME_LIBRARY", str(LIBDIME))
    import dime
    return dime


class Server:
    """A release broker on a unix socket (and tcp) in a temporary directory."""

    def __init__(self, tmp, tcp=False):
        self.sock = os.path.join(tmp, "dime.sock")
        args = [str(SERVER), "-l", f"unix:{self.sock}"]
        if tcp:
            args += ["-l", "tcp:127.0.0.1:0"]
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        self.tcp_port = None
        for _ in range(1 + tcp):
            line = self.proc.stderr.readline()
            if "tcp:" in line:
                self.tcp_port = int(line.rsplit(":", 1)[1])
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def status(self):
        """The broker's /proc status fields, in kB."""
        out = {}
        for line in open(f"/proc/{self.proc.pid}/status"):
            k, _, v = line.partition(":")
            if v.strip().endswith("kB"):
                out[k] = int(v.split()[0])
        return out

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def summary(times, nbytes):
    best, med, worst = min(times), statistics.median(times), max(times)
    return (f"best {best:.3f} s ({nbytes / best / 1e9:.2f} GB/s), median {med:.3f} s "
            f"({nbytes / med / 1e9:.2f} GB/s), worst {worst:.3f} s ({nbytes / worst / 1e9:.2f} GB/s)")


# ------------------------------------------------------------ python roles

def role_receiver(sock, rounds, group="recv", touch=True):
    """Receives `rounds` matrices (with their send time t0), reports times."""
    dime = dime_module()
    b = dime.DimeClient("ipc", sock)
    b.join(group)
    b.send_r("send", **{f"ready_{group}": True})
    for i in range(rounds):
        got = {}
        while "x" not in got:
            b.wait()
            got.update(b.sync_r())
        t1 = time.perf_counter()
        x = got["x"]
        rep = {"recv": t1 - got["t0"], "shape": list(x.shape),
               "order": "C" if x.flags.c_contiguous else "F"}
        if touch:
            t2 = time.perf_counter()
            rep["sum"] = float(x.sum())
            rep["touch"] = time.perf_counter() - t2
        ok = x[0, 0] == 0.25 and x[-1, -1] == float(x.size - 1) + 0.25
        rep["ok"] = bool(ok)
        del x, got
        print(json.dumps(rep), flush=True)
        b.send_r("send", **{f"ack_{group}": i})
    b.close()


def spawn_role(*args):
    return subprocess.Popen([sys.executable, __file__, "--role", *map(str, args)],
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ))


def sender(dime, sock, groups):
    a = dime.DimeClient("ipc", sock)
    a.join("send")
    ready = set()
    while len(ready) < len(groups):
        a.wait()
        ready |= {k for k in a.sync_r() if k.startswith("ready_")}
    return a


def matrix(shape, order):
    import numpy as np
    x = np.empty(shape, order=order)
    # (i-th element in memory order) + 0.25, cheaply: a flat view of it.
    x.reshape(-1, order="A")[:] = np.arange(x.size, dtype=np.float64) + 0.25
    return x


def send_rounds(a, x, rounds, groups, procs):
    """Sends x `rounds` times, each after every receiver acknowledged the
    last; returns the receivers' reports per round."""
    reports = []
    for i in range(rounds):
        t0 = time.perf_counter()
        for g in groups:
            a.send_r(g, t0=t0, x=x)
        acks = set()
        while len(acks) < len(groups):
            a.wait()
            acks |= {k for k in a.sync_r() if k.startswith("ack_")}
        reports.append([json.loads(p.stdout.readline()) for p in procs])
    return reports


def section_py(args):
    print("\n== Python -> Python, one host (shared memory), %d MB float64" % args.size_mb)
    dime = dime_module()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(tmp)
        try:
            for name, full in SHAPES.items():
                shape = scaled(full, args.size_mb)
                for order in "CF":
                    x = matrix(shape, order)
                    p = spawn_role("receiver", srv.sock, args.rounds + 1)
                    a = sender(dime, srv.sock, ["recv"])
                    reps = send_rounds(a, x, args.rounds + 1, ["recv"], [p])
                    a.close()
                    p.wait(timeout=60)
                    cold, warm = reps[0][0], [r[0] for r in reps[1:]]
                    assert all(r["ok"] and r["shape"] == list(shape) and r["order"] == order
                               for r in warm + [cold]), reps
                    times = [r["recv"] for r in warm]
                    touch = statistics.median(r["touch"] for r in warm)
                    print(f"  {name} {order}: {summary(times, x.nbytes)}; first round "
                          f"{cold['recv']:.3f} s (new segment); reading every element "
                          f"after: {touch:.3f} s median", flush=True)
                    print("    every round: " + ", ".join(
                        f"{r['recv']:.3f} s ({x.nbytes / r['recv'] / 1e9:.2f} GB/s)"
                        for r in [cold] + warm), flush=True)
                    out[(name, order)] = (min(times), statistics.median(times), x.nbytes)
                    del x
        finally:
            srv.stop()
    worst_med = min(n / med for _, med, n in out.values()) / 1e9
    verdict(worst_med >= 4.0, f"python->python >= 4 GB/s (worst median of shapes/orders: "
                              f"{worst_med:.2f} GB/s)")
    return out


def scaled(shape, size_mb):
    """`shape` scaled to about `size_mb` MB of float64, keeping its aspect."""
    n = size_mb * 1e6 / 8
    k = (n / (shape[0] * shape[1])) ** 0.5
    return (max(1, int(round(shape[0] * k))), max(1, int(round(shape[1] * k))))


# ---------------------------------------------------------------- teleport

TELEPORT_SERVER = r"""
import sys, time, teleport
def take(data):
    now = time.perf_counter()
    x = data["x"]
    return {"dt": now - float(data["t0"]), "ok": x[0, 0] == 0.25}
s = teleport.Server(sys.argv[1])
s.bind("take", take)
print("ready", flush=True)
s.run()
"""

TELEPORT_CLIENT = r"""
import sys, time, json, numpy as np, teleport
shape = (int(sys.argv[2]), int(sys.argv[3])); rounds = int(sys.argv[4])
x = np.empty(shape); x.reshape(-1)[:] = np.arange(x.size) + 0.25
c = teleport.Client(sys.argv[1], maxinflight=1)
c.connect()
for i in range(rounds):
    t0 = time.perf_counter()
    r = c.take({"x": x, "t0": np.float64(t0)}).result()
    print(json.dumps({"dt": float(r["dt"]), "call": time.perf_counter() - t0, "ok": bool(r["ok"])}), flush=True)
"""


def section_teleport(args, ours):
    print("\n== teleport peer (0.9.0, ZeroMQ ipc://), same matrix, call start to arrival")
    py = args.teleport_python
    if not py or not os.path.exists(py):
        print(f"  skipped: no teleport Python at {py!r} (see --teleport-python)")
        return
    shape = scaled(SHAPES["10000x10000"], args.size_mb)
    with tempfile.TemporaryDirectory() as tmp:
        addr = f"ipc://{tmp}/tp.sock"
        srv = subprocess.Popen([py, "-c", TELEPORT_SERVER, addr], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
        try:
            assert srv.stdout.readline().strip() == "ready"
            cl = subprocess.run([py, "-c", TELEPORT_CLIENT, addr, *map(str, shape),
                                 str(args.rounds + 1)], capture_output=True, text=True,
                                timeout=1200)
            reps = [json.loads(line) for line in cl.stdout.splitlines() if line.startswith("{")]
            if not reps:
                print("  teleport failed:", cl.stderr[-2000:])
                return
        finally:
            srv.terminate()
            srv.wait(timeout=10)
    nbytes = shape[0] * shape[1] * 8
    times = [r["dt"] for r in reps[1:]]
    assert all(r["ok"] for r in reps)
    print(f"  teleport: {summary(times, nbytes)}; call with its reply: "
          f"{statistics.median(r['call'] for r in reps[1:]):.3f} s median")
    if ours:
        mine = max(med for (name, _), (_, med, _) in ours.items() if name == "10000x10000")
        ratio = statistics.median(times) / mine
        verdict(ratio >= 6, f"python->python >= 6x teleport (median vs median, slower order: "
                            f"{ratio:.1f}x)")


# ----------------------------------------------------------------------- C

def section_c(args):
    print("\n== C -> C, one host (shared memory), %d MB float64, against memcpy" % args.size_mb)
    exe = REPO / "target" / "release" / "arrays_c"
    src = REPO / "benches" / "arrays_c.c"
    subprocess.run(["cc", "-O2", "-o", str(exe), str(src), "-I", str(REPO / "include"),
                    "-L", str(LIBDIME.parent), "-ldime", f"-Wl,-rpath,{LIBDIME.parent}"],
                   check=True)
    rounds = args.rounds + 1
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(tmp)
        try:
            addr = f"unix:{srv.sock}"
            recv = subprocess.Popen([str(exe), "recv", addr, str(rounds)], stdout=subprocess.PIPE,
                                    text=True)
            send = subprocess.Popen([str(exe), "send", addr, str(args.size_mb), str(rounds)])
            lines = recv.stdout.read().split()
            recv.wait(timeout=60)
            send.wait(timeout=60)
        finally:
            srv.stop()
    times = [float(v) for k, v in zip(lines[::2], lines[1::2]) if k == "seconds"][1:]
    mc = subprocess.run([str(exe), "memcpy", str(args.size_mb), str(args.rounds)],
                        capture_output=True, text=True, check=True).stdout.split()
    memcpy = float(mc[1])
    nbytes = args.size_mb * 1e6
    print(f"  C -> C: {summary(times, nbytes)}")
    print(f"  memcpy: {memcpy:.3f} s ({nbytes / memcpy / 1e9:.2f} GB/s)")
    ratio = memcpy / statistics.median(times)
    verdict(ratio >= 0.6, f"C->C >= 0.6x memcpy (median: {ratio:.2f}x)")


# ------------------------------------------------------------------ Octave

def section_octave(args):
    print("\n== Python <-> Octave, one host (shared memory), %d MB float64, wall clock"
          % args.size_mb)
    if not shutil.which("octave-cli"):
        print("  skipped: no octave-cli")
        return
    subprocess.run(["bash", str(REPO / "matlab" / "build.sh"), "release"], check=True,
                   stdout=subprocess.DEVNULL)
    dime = dime_module()
    shape = scaled(SHAPES["10000x10000"], args.size_mb)
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(tmp)
        try:
            for order in "CF":
                x = matrix(shape, order)
                oct = subprocess.Popen(
                    ["octave-cli", "--no-gui", "--eval",
                     f"addpath('{REPO / 'matlab'}'); addpath('{REPO / 'benches'}'); "
                     f"arrays_octave('{srv.sock}', {args.rounds + 1}, {shape[0]}, {shape[1]})"],
                    stdout=subprocess.PIPE, text=True)
                floor = oct.stdout.readline().split()
                assert floor[0] == "floor", floor
                a = dime.DimeClient("ipc", srv.sock)
                a.join("py")
                a.wait(120)
                assert "ready" in a.sync_r()
                there, back = [], []
                for _ in range(args.rounds + 1):
                    a.send_r("oct", t0=time.time(), x=x)
                    got = {}
                    while "x" not in got:
                        a.wait(600)
                        got.update(a.sync_r())
                    back.append(time.time() - got["t2"])
                    assert got["x"].shape == x.shape and got["x"][-1, -1] == x[-1, -1]
                    del got
                    line = oct.stdout.readline().split()
                    assert line[0] == "to_octave" and float(line[2]) == x[0, 0], line
                    there.append(float(line[1]))
                a.close()
                oct.wait(timeout=120)
                res[order] = (there[1:], back[1:])
                print(f"  Octave itself, same size: zeros {float(floor[1]):.3f} s, copy "
                      f"{float(floor[2]):.3f} s (a MEX function's result is copied into "
                      f"Octave's own array: its floor)")
                print(f"  Python -> Octave, {order} order: {summary(there[1:], x.nbytes)}")
                print(f"  Octave -> Python, {order} order: {summary(back[1:], x.nbytes)}")
                del x
        finally:
            srv.stop()
    nbytes = shape[0] * shape[1] * 8
    worst = min(nbytes / statistics.median(t) for pair in res.values() for t in pair) / 1e9
    verdict(worst >= 1.5, f"octave<->python >= 1.5 GB/s (worst median: {worst:.2f} GB/s)")


# ------------------------------------------------------------------ broker

def section_broker(args):
    print("\n== Broker memory: %d MB from one Python client to three" % args.size_mb)
    dime = dime_module()
    shape = scaled(SHAPES["10000x10000"], args.size_mb)
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(tmp)
        try:
            groups = ["r1", "r2", "r3"]
            procs = [spawn_role("receiver", srv.sock, 2, g, "notouch") for g in groups]
            a = sender(dime, srv.sock, groups)
            base = srv.status()
            x = matrix(shape, "C")
            reps = send_rounds(a, x, 2, groups, procs)
            after = srv.status()
            a.close()
            for p in procs:
                p.wait(timeout=60)
        finally:
            srv.stop()
    assert all(r["ok"] for rr in reps for r in rr)
    peak = after["VmHWM"] / 1024
    print(f"  broker VmHWM {peak:.1f} MB (at start {base['VmHWM'] / 1024:.1f} MB), "
          f"RssAnon {after.get('RssAnon', 0) / 1024:.1f} MB, RssShmem "
          f"{after.get('RssShmem', 0) / 1024:.1f} MB after two rounds")
    verdict(peak < 50, f"broker peak memory < 50 MB ({peak:.1f} MB)")


# --------------------------------------------------------------------- TCP

def role_tcp_peer(sock_path, port, raw_port, relay_port, rounds):
    """Receives `rounds` 100 MB matrices over TCP through the broker, then
    `rounds` raw streams of the same size straight from the sender, then
    `rounds` through the minimal relay; reports each."""
    import numpy as np
    dime = dime_module()
    b = dime.DimeClient("tcp", "127.0.0.1", port)
    b.join("recv")
    b.send_r("send", ready_recv=True)
    for i in range(rounds):
        got = {}
        while "x" not in got:
            b.wait()
            got.update(b.sync_r())
        print(json.dumps({"recv": time.perf_counter() - got["t0"]}), flush=True)
        del got
        b.send_r("send", ack=i)
    buf = bytearray(int(100e6))
    view = memoryview(buf)
    for p in (raw_port, relay_port):
        s = socket.create_connection(("127.0.0.1", p))
        for i in range(rounds):
            n = 0
            while n < len(buf):
                n += s.recv_into(view[n:])
            print(json.dumps({"raw_done": time.perf_counter()}), flush=True)
            s.sendall(b"k")
        s.close()
    b.close()


def role_relay(rounds, nbytes):
    """The floor for any relay: forwards `rounds` streams of `nbytes` from
    the sender to the receiver with plain blocking `recv_into`/`sendall`
    of 1 MiB (no framing, no routing, nothing kept), and each round's
    one-byte acknowledgement back. Prints its two ports first."""
    up_l = socket.create_server(("127.0.0.1", 0))
    down_l = socket.create_server(("127.0.0.1", 0))
    print(json.dumps({"up": up_l.getsockname()[1], "down": down_l.getsockname()[1]}), flush=True)
    down, _ = down_l.accept()
    up, _ = up_l.accept()
    chunk = memoryview(bytearray(1 << 20))
    for _ in range(rounds):
        left = nbytes
        while left:
            n = up.recv_into(chunk[:min(left, len(chunk))])
            if not n:
                return
            down.sendall(chunk[:n])
            left -= n
        up.sendall(down.recv(1))


def timed_streams(conn, data, rounds, peer):
    """Seconds for each of `rounds` sends of `data` on `conn`, until the
    peer reports the last byte in."""
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        conn.sendall(data)
        out.append(json.loads(peer.stdout.readline())["raw_done"] - t0)
        conn.recv(1)
    return out


def section_tcp(args):
    # Read at connect, by this process's clients and the peer's.
    os.environ.setdefault("DIME_CUT_THROUGH", "1")
    mode = "cut-through" if os.environ["DIME_CUT_THROUGH"] not in ("", "0") else "store-and-forward"
    print(f"\n== 100 MB over TCP (127.0.0.1), Python -> broker -> Python ({mode}), against raw TCP")
    import numpy as np
    dime = dime_module()
    x = matrix((3125, 4000), "C")
    rounds = args.rounds + 1
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(tmp, tcp=True)
        lsn = socket.create_server(("127.0.0.1", 0))
        relay = spawn_role("relay", rounds, x.nbytes)
        try:
            relay_ports = json.loads(relay.stdout.readline())
            p = spawn_role("tcp", srv.sock, srv.tcp_port, lsn.getsockname()[1],
                           relay_ports["down"], rounds)
            a = dime.DimeClient("tcp", "127.0.0.1", srv.tcp_port)
            a.join("send")
            a.wait()
            a.sync_r()
            ours = []
            for i in range(rounds):
                a.send_r("recv", t0=time.perf_counter(), x=x)
                while not a.sync_r():
                    a.wait()
                ours.append(json.loads(p.stdout.readline())["recv"])
            data = memoryview(x.reshape(-1, order="A").view(np.uint8))
            conn, _ = lsn.accept()
            raw = timed_streams(conn, data, rounds, p)
            conn.close()
            up = socket.create_connection(("127.0.0.1", relay_ports["up"]))
            relayed = timed_streams(up, data, rounds, p)
            up.close()
            a.close()
            p.wait(timeout=60)
            relay.wait(timeout=60)
        finally:
            lsn.close()
            relay.kill()
            srv.stop()
    print(f"  through the broker: {summary(ours[1:], x.nbytes)}")
    print(f"  raw TCP stream:     {summary(raw[1:], x.nbytes)}")
    print(f"  minimal relay:      {summary(relayed[1:], x.nbytes)}")
    m_ours, m_raw, m_relay = (statistics.median(t[1:]) for t in (ours, raw, relayed))
    ratio = m_raw / m_ours
    worst = max(raw[1:]) / max(ours[1:])
    print(f"  ratio {ratio:.2f}x of raw TCP (median), {worst:.2f}x (worst against worst)")
    print(f"  a minimal relay (recv/send 1 MiB, no protocol) runs at {m_raw / m_relay:.2f}x of raw TCP here, "
          f"the broker at {m_relay / m_ours:.2f}x of it")
    verdict(ratio >= 0.8, f"tcp >= 0.8x raw TCP (median: {ratio:.2f}x)")


# -------------------------------------------------------------------- main

def free_page_reporting():
    """Whether a virtio memory balloon with free page reporting (feature
    bit 5) is bound: memory the VM frees then goes back to its host and
    faults there when used again, so rounds that touch new memory swing
    (benches/README.md, "Figures on a VM"). None without such a device."""
    found = None
    base = pathlib.Path("/sys/bus/virtio/devices")
    for d in base.iterdir() if base.is_dir() else ():
        try:
            if (d / "device").read_text().strip() != "0x0005":
                continue
            features = (d / "features").read_text()
        except OSError:
            continue
        on = features[5:6] == "1" and (d / "driver").exists()
        found = bool(found) or on
    return found


def shmem_huge_pages():
    """The kernel's setting for huge pages in shared memory, which decides
    how fast a new segment is filled (the first round)."""
    try:
        text = pathlib.Path("/sys/kernel/mm/transparent_hugepage/shmem_enabled").read_text()
    except OSError:
        return "unknown"
    chosen = [w[1:-1] for w in text.split() if w.startswith("[")]
    return chosen[0] if chosen else text.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sections", nargs="*", default=[],
                    help="py teleport c octave broker tcp (default: all)")
    ap.add_argument("--size-mb", type=int, default=800)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    ap.add_argument("--teleport-python",
                    default=os.environ.get("DIME_TELEPORT_PYTHON",
                                           str(REPO / ".venv" / "teleport" / "bin" / "python")))
    ap.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role:
        kind, *rest = args.role
        if kind == "receiver":
            sock, rounds, *more = rest
            group = more[0] if more else "recv"
            role_receiver(sock, int(rounds), group, touch="notouch" not in more)
        elif kind == "tcp":
            role_tcp_peer(rest[0], int(rest[1]), int(rest[2]), int(rest[3]), int(rest[4]))
        elif kind == "relay":
            role_relay(int(rest[0]), int(rest[1]))
        return
    if not SERVER.exists() or not LIBDIME.exists():
        sys.exit("build first: cargo build --release")
    load = os.getloadavg()[0]
    print(f"arrays bench: {os.cpu_count()} cores, load average {load:.1f} at start"
          + (" (the machine is busy: figures are pessimistic)" if load > 1.5 else ""))
    print(f"shared-memory huge pages (shmem_enabled): {shmem_huge_pages()}"
          " -- a new segment's first round runs at memory speed with within_size or always")
    reporting = free_page_reporting()
    if reporting is not None:
        print("virtio-balloon free page reporting: "
              + ("on -- memory the VM frees goes back to its host and faults there when used "
                 "again, so rounds that touch new memory swing (benches/README.md)" if reporting else "off"))
    sections = args.sections or ["py", "teleport", "c", "octave", "broker", "tcp"]
    ours = None
    for s in sections:
        if s == "py":
            ours = section_py(args)
        elif s == "teleport":
            section_teleport(args, ours)
        elif s == "c":
            section_c(args)
        elif s == "octave":
            section_octave(args)
        elif s == "broker":
            section_broker(args)
        elif s == "tcp":
            section_tcp(args)
        else:
            sys.exit(f"unknown section {s}")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    if MISSES:
        print(f"{len(MISSES)} target(s) missed")
        if args.check:
            sys.exit(1)


if __name__ == "__main__":
    main()
