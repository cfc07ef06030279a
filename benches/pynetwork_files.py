"""pynetwork's file download, the peer `cargo bench --bench files` compares
with: N pynetwork clients, each downloading its share of the files in
ROOT from one pynetwork Gateway (in a child process), on 127.0.0.1.

    PYTHON benches/pynetwork_files.py --root DIR --dest DIR --clients 4

PYTHON is a Python with pynetwork 2.4 and tqdm (which it needs but does not
declare) installed, e.g.

    python3 -m venv .venv/pynetwork
    .venv/pynetwork/bin/pip install pynetwork==2.4 tqdm

Prints one line, `files=N seconds=S files_per_s=R`. pynetwork prints a line
per file and draws tqdm bars; both go to /dev/null so they cost what
writing them costs, not a terminal's drawing.
"""

import argparse
import os
import socket
import subprocess
import sys
import threading
import time


def quiet():
    """Sends this process's stdout and stderr (fds and objects) to /dev/null."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    sys.stdout = sys.stderr = open(os.devnull, "w")


def loopback_only():
    """pynetwork binds every interface; bind 127.0.0.1 instead."""
    from pynetwork import backend2
    original = backend2.Listener.__init__

    def init(self, *a, **k):
        original(self, *a, **k)
        self.ip = "127.0.0.1"

    backend2.Listener.__init__ = init


def gateway(port, pool, scratch):
    import pynetwork
    loopback_only()
    os.chdir(scratch)
    gw = pynetwork.Gateway(port, max_poolsize=pool, download_dir=os.path.join(scratch, "up"))
    print("ready", flush=True)
    quiet()
    gw.start(blocking=True)


def fetch_all(pynetwork, port, a, files, errors):
    """Connects the clients, then downloads every file; the seconds the
    downloads took."""
    controller = pynetwork.Controller(gateway_ip="127.0.0.1", port=port, download_dir=a.dest,
                                      verbose=False)
    clients = []
    for _ in range(a.clients):
        clients.append(controller.get_client())
        # The gateway listens anew after each accept; a client that comes
        # sooner lands on the old socket and is reset.
        time.sleep(0.2)
    t0 = time.perf_counter()
    share = [files[i::a.clients] for i in range(a.clients)]

    def fetch(c, mine):
        try:
            c.get_files_from_gateway(files=mine)
        except Exception as e:  # reported after the output is restored
            errors.append(e)

    threads = [threading.Thread(target=fetch, args=(c, s)) for c, s in zip(clients, share)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for c in clients:
        c.close_handler()
    return elapsed


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root")
    ap.add_argument("--dest")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--gateway", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--scratch", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.gateway:
        return gateway(a.gateway, a.clients + 1, a.scratch)

    import pynetwork
    files = sorted(os.path.join(a.root, f) for f in os.listdir(a.root))
    port = free_port()
    os.makedirs(a.dest, exist_ok=True)
    child = subprocess.Popen([sys.executable, __file__, "--gateway", str(port), "--clients",
                              str(a.clients), "--scratch", a.dest],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        if child.stdout.readline().strip() != b"ready":
            sys.exit("the pynetwork gateway did not start")
        time.sleep(0.2)  # its listener thread binds after "ready"
        errors = []
        saved = os.dup(1), os.dup(2)
        quiet()
        try:
            elapsed = fetch_all(pynetwork, port, a, files, errors)
        except Exception as e:
            errors.append(e)
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        if errors:
            sys.exit(f"pynetwork failed: {errors[0]}")
        got = len(os.listdir(a.dest)) - (1 if os.path.isdir(os.path.join(a.dest, "up")) else 0)
        if got != len(files):
            sys.exit(f"pynetwork delivered {got} of {len(files)} files")
        print(f"files={len(files)} seconds={elapsed:.4f} files_per_s={len(files) / elapsed:.1f}",
              flush=True)
    finally:
        child.kill()
        child.wait()


if __name__ == "__main__":
    main()
