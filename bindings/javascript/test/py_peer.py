"""A Python peer for the JavaScript tests, using DiME2's own Python client
(PyPI `dime-client`, import name `dime`) over the server's unix socket.

    py_peer.py matrix  UNIX TO_GROUP REPLY_GROUP
        sends a 100x100 float64 matrix M (M[i, j] = 100*i + j + 0.5) as "M"
        to TO_GROUP, waits for "reply" in REPLY_GROUP and checks it is 2*M.
    py_peer.py types   UNIX TO_GROUP REPLY_GROUP
        sends one variable of every type, waits until the JS side has echoed
        them all back to REPLY_GROUP, and checks class, shape and value.
    py_peer.py receive UNIX GROUP COUNT
        joins GROUP, waits for COUNT variables, prints them as JSON lines.

Prints "READY" once joined and "OK" when every check passed; any failure
is an exception and a non-zero exit.
"""

import json
import math
import sys

import numpy as np
from dime import DimeClient


def matrix_m():
    return np.arange(10000, dtype=np.float64).reshape(100, 100) + 0.5


def values():
    return {
        "none": None,
        "t": True,
        "f": False,
        "i": 42,
        "i64max": 2**63 - 1,
        "i64min": -(2**63),
        "fl": 1.5,
        "negzero": -0.0,
        "inf": float("-inf"),
        "nan": float("nan"),
        "c": complex(1, -2),
        "s": "h\u00e9llo \u2713 \U0001F389",
        "empty": "",
        "lst": [1, "a", [None, 2.5]],
        "d": {"a": 1, "b": [1.5, "x"]},
        "f64": np.arange(6.0).reshape(2, 3),
        "f32": np.array([1.5, -2.0], dtype=np.float32),
        "i8": np.array([-128, 127], dtype=np.int8),
        "u64": np.array([0, 2**64 - 1], dtype=np.uint64),
        "i64a": np.array([-(2**63), 2**63 - 1], dtype=np.int64),
        "c128": np.array([[1 + 2j, 3 - 4j], [0j, -1j]]),
        "c64": np.array([1 + 1j, 2 - 2j], dtype=np.complex64),
        "u16_3d": np.arange(24, dtype=np.uint16).reshape(2, 3, 4),
        "empty03": np.empty((0, 3)),
    }


def same(a, b):
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def describe(v):
    """A JSON-able description of a received value, for the JS test."""
    if isinstance(v, np.ndarray):
        flat = v.flatten(order="F")
        if v.dtype.kind == "c":
            vals = [[float(x.real), float(x.imag)] for x in flat]
        elif v.dtype.kind in "iu":
            vals = [str(int(x)) for x in flat]
        else:
            vals = [float(x) for x in flat]
        return {"type": "ndarray", "dtype": str(v.dtype), "shape": list(v.shape), "F": vals}
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return {"type": type(v).__name__, "value": v}
    if isinstance(v, int):
        return {"type": "int", "value": str(v)}
    if isinstance(v, float):
        return {"type": "float", "value": repr(v)}
    if isinstance(v, complex):
        return {"type": "complex", "value": [v.real, v.imag]}
    if isinstance(v, list):
        return {"type": "list", "value": [describe(x) for x in v]}
    if isinstance(v, dict):
        return {"type": "dict", "value": {k: describe(x) for k, x in v.items()}}
    return {"type": type(v).__name__, "value": repr(v)}


def receive_until(d, names):
    got = {}
    while not names <= got.keys():
        d.wait()
        got.update(d.sync_r())
    return got


def main():
    mode, unix = sys.argv[1], sys.argv[2]
    d = DimeClient("ipc", unix)
    if mode == "matrix":
        to_group, reply_group = sys.argv[3], sys.argv[4]
        d.join(reply_group)
        print("READY", flush=True)
        m = matrix_m()
        d.send_r(to_group, M=m)
        got = receive_until(d, {"reply"})
        r = got["reply"]
        assert isinstance(r, np.ndarray) and r.dtype == np.float64, repr(r)
        assert r.shape == (100, 100), r.shape
        assert np.array_equal(r, 2 * m), "reply is not 2*M"
    elif mode == "types":
        to_group, reply_group = sys.argv[3], sys.argv[4]
        d.join(reply_group)
        print("READY", flush=True)
        vals = values()
        d.send_r(to_group, **vals)
        got = receive_until(d, set(vals))
        bad = [k for k in vals if not same(vals[k], got[k])]
        assert not bad, "changed on the way back: " + ", ".join(
            f"{k}: sent {vals[k]!r}, got {got[k]!r}" for k in bad)
    elif mode == "receive":
        group, count = sys.argv[3], int(sys.argv[4])
        d.join(group)
        print("READY", flush=True)
        got = {}
        while len(got) < count:
            d.wait()
            got.update(d.sync_r())
        for k, v in got.items():
            print(json.dumps({"name": k, "value": describe(v)}), flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")
    d.close()
    print("OK", flush=True)


if __name__ == "__main__":
    main()
