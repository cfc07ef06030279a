"""A Python peer for arrays.test.js, using OUR binding (bindings/python,
run with PYTHONPATH and DIME_LIBRARY pointing at this repository, see
helpers.js runOurPython), which sends numpy arrays in their own memory
order (dimeb_layout) and large ones through shared memory; the JS client
negotiates neither, so the server converts them for it.

    py_ours_peer.py send    UNIX TO_GROUP ACK_GROUP
        joins ACK_GROUP, prints READY, sends every array of CASES
        (C-ordered) to TO_GROUP, one message each, then waits for "ack".
    py_ours_peer.py receive UNIX GROUP
        joins GROUP, prints READY, receives JS's arrays (names of JS_CASES)
        and checks each: dtype, shape, Fortran order, every element.

Element k of each array (k counting elements in C order, last index
fastest) is value(kind, k); arrays.test.js computes the same. Prints "OK"
when every check passed; a failure is an exception and a non-zero exit.
"""

import os
import sys

import numpy as np

import dime
from dime import DimeClient


def value(kind, shape):
    """The array both sides build, C-ordered."""
    k = np.arange(int(np.prod(shape)), dtype=np.int64)
    x = {
        "f64": lambda: k + 0.5,
        "f32": lambda: (k + 0.25).astype(np.float32),
        "i16": lambda: (k - 6).astype(np.int16),
        "i32": lambda: (k * 7 - 100).astype(np.int32),
        "u16": lambda: (k * 3).astype(np.uint16),
        "i64": lambda: k - 2**62,
        "c128": lambda: (k + 0.5) - 1j * (k + 1),
        "c64": lambda: ((k + 0.5) - 1j * (k + 1)).astype(np.complex64),
        "bool": lambda: k % 7 < 3,
    }[kind]()
    return x.reshape(shape)


# Name -> (kind, shape). f64 (480 kB) and f32 (315 kB) go through shared
# memory into the broker.
CASES = {
    "f64": ("f64", (300, 200)),
    "f32": ("f32", (1023, 77)),
    "i16": ("i16", (3, 4)),
    "u16_3d": ("u16", (4, 5, 6)),
    "c128": ("c128", (5, 7)),
    "bool": ("bool", (4, 6)),
    "i64": ("i64", (3, 5)),
}
JS_CASES = {
    "m": ("f64", (300, 200)),
    "i32_3d": ("i32", (4, 5, 6)),
    "c64": ("c64", (5, 7)),
    "lg": ("bool", (4, 6)),
}


def ours():
    """Fails unless `dime` is this repository's binding."""
    here = os.path.dirname(os.path.abspath(__file__))
    want = os.path.join(os.path.dirname(here), "..", "python", "dime")
    assert os.path.samefile(os.path.dirname(dime.__file__), want), dime.__file__
    assert hasattr(dime, "Client"), "not our binding"


def main():
    ours()
    mode, unix = sys.argv[1], sys.argv[2]
    d = DimeClient("ipc", unix)
    if mode == "send":
        to_group, ack_group = sys.argv[3], sys.argv[4]
        d.join(ack_group)
        print("READY", flush=True)
        for name, (kind, shape) in CASES.items():
            x = value(kind, shape)
            assert x.flags.c_contiguous
            d.send_r(to_group, **{name: x})
        got = {}
        while "ack" not in got:
            d.wait(timeout=30)
            got.update(d.sync_r())
    elif mode == "receive":
        d.join(sys.argv[3])
        print("READY", flush=True)
        got = {}
        while not JS_CASES.keys() <= got.keys():
            d.wait(timeout=30)
            got.update(d.sync_r())
        for name, (kind, shape) in JS_CASES.items():
            v, want = got[name], value(kind, shape)
            assert isinstance(v, np.ndarray), f"{name}: {type(v).__name__}"
            assert v.dtype == want.dtype, f"{name}: dtype {v.dtype}, expected {want.dtype}"
            assert v.shape == shape, f"{name}: shape {v.shape}, expected {shape}"
            # Column-major from JS: a Fortran-ordered view, not transposed.
            assert v.flags.f_contiguous and not v.flags.c_contiguous, f"{name}: {v.flags}"
            assert np.ascontiguousarray(v).tobytes() == want.tobytes(), f"{name}: elements differ"
            print(f"checked {name}", flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")
    d.close()
    print("OK", flush=True)


if __name__ == "__main__":
    main()
