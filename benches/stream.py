#!/usr/bin/env python3
"""Generator streams Python -> Python: items/s of 64-byte items and GB/s of
1 MB items (targets: >= 200,000 items/s and >= 1 GB/s).

The producer is another process whose ``dime.Server`` runs the broker
inside it (one hop, as with teleport); the consumer iterates
``Client.stream``. Run it against a release build of libdime:

    cargo build --release
    DIME_LIBRARY=target/release/libdime.so python3 benches/stream.py [--check]

``--check`` exits non-zero when a target is missed.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bindings", "python"))

import numpy as np  # noqa: E402

import dime  # noqa: E402

PRODUCER = r"""
import sys
sys.path.insert(0, sys.argv[2])
import numpy as np
import dime

small = np.arange(64, dtype=np.uint8)
big = np.ones(1 << 20, dtype=np.uint8)

def items(data):
    item = small if data["size"] == "small" else big
    for _ in range(data["n"]):
        yield item

srv = dime.Server(sys.argv[1])
srv.bind_stream("items", items, workers=2)
srv.start()
print("ready", flush=True)
sys.stdin.read()
srv.close()
"""


def run(client, size, n, window_bytes=None):
    t = time.perf_counter()
    count = nbytes = 0
    for item in client.stream("items", {"size": size, "n": n}, bytes=window_bytes):
        count += 1
        nbytes += item.nbytes
    dt = time.perf_counter() - t
    assert count == n, (count, n)
    return dt, nbytes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=1_000_000, help="64-byte items to stream")
    ap.add_argument("--big", type=int, default=2000, help="1 MB items to stream")
    ap.add_argument("--check", action="store_true", help="fail when a target is missed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        address = f"ipc://{tmp}/stream.sock"
        p = subprocess.Popen([sys.executable, "-c", PRODUCER, address,
                              os.path.join(HERE, "..", "bindings", "python")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert p.stdout.readline().strip() == b"ready"
            with dime.Client(address) as client:
                client.connect()
                run(client, "small", 10_000)                  # warm up
                dt, _ = run(client, "small", args.small)
                rate = args.small / dt
                dt, nbytes = run(client, "big", args.big, window_bytes=64 << 20)
                gbs = nbytes / dt / 1e9
        finally:
            p.stdin.close()
            p.wait(10)
    print(f"64-byte items: {rate:,.0f} items/s (target >= 200,000)")
    print(f"1 MB items:    {gbs:.2f} GB/s (target >= 1 GB/s)")
    if args.check and (rate < 200_000 or gbs < 1.0):
        sys.exit(1)


if __name__ == "__main__":
    main()
