"""The Python half of the C <-> Python test (see python_peer.c).

usage: python python_peer.py SOCKET_PATH

Uses the original DiME2 Python client from PyPI (`dime-client`, import
name `dime`). Joins group "py", waits for matrices "a" and "b" from C,
checks class, shape and values, then sends three matrices to group "c".
Exits non-zero (with a message) on any mismatch.
"""

import sys

import numpy as np
from dime import DimeClient


def main():
    client = DimeClient("ipc", sys.argv[1])
    client.join("py")
    print("python: joined py", flush=True)

    got = {}
    while not {"a", "b"} <= got.keys():
        client.wait()
        got.update(client.sync_r())

    a, b = got["a"], got["b"]
    # C sent a 3x2 double matrix with elements 1..6 in column-major order.
    want_a = np.arange(1, 7, dtype=np.float64).reshape((3, 2), order="F")
    assert a.dtype == np.float64 and a.shape == (3, 2), (a.dtype, a.shape)
    assert (a == want_a).all(), a
    # ... and a 2x3x2 int16 matrix with elements 0..11 (column-major).
    want_b = np.arange(12, dtype=np.int16).reshape((2, 3, 2), order="F")
    assert b.dtype == np.int16 and b.shape == (2, 3, 2), (b.dtype, b.shape)
    assert (b == want_b).all(), b
    print("python: received a and b from C", flush=True)

    client.send_r(
        "c",
        # C-ordered on the Python side; must arrive column-major in C.
        x=np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.int32),
        y=np.array([1.5, -2.5, 3.5], dtype=np.float32),
        z=np.array([[1 + 2j, 3 - 4j], [0 - 5j, 6]], dtype=np.complex128),
    )
    print("python: sent x, y, z to c", flush=True)
    client.close()


if __name__ == "__main__":
    main()
