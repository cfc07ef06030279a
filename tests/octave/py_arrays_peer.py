"""Python side of test_arrays.m: large and small numpy arrays between our
Python binding and Octave, in their own memory order (dimeb_layout) and,
on the unix socket, through shared memory.

    python py_arrays_peer.py SOCKET

Protocol (test_arrays.m mirrors it):

1. join "py", send ``ready`` to "oct";
2. on ``go_unix`` (sent to "py"): send every array of CASES, C-ordered, one
   message each, to "oct", then ``sent`` to "oct";
3. on ``go_tcp``: the same to "oct_tcp" (Octave's TCP connection);
4. receive Octave's arrays (names ``o_*``, see OCTAVE) until ``odone``:
   each must arrive as a Fortran-ordered ndarray with exactly the values
   of ``value(cls, shape)``; those Octave sent over the unix socket must
   lie in a shared-memory mapping, the one it sent over TCP must not;
5. send ``report`` (a list of "PASS ..."/"FAIL ..." lines) to "oct".

``value(cls, shape)`` is the array both sides build: element k (k counts
elements in C order) is a function of k that differs for almost every k,
so a transposed or misread array cannot compare equal.
"""

import sys
import traceback

import numpy as np

from dime import DimeClient

# Classes and their generator, by the name test_arrays.m uses.
I64_MIN = np.iinfo(np.int64).min
I64_MAX = np.iinfo(np.int64).max
U64_MAX = np.iinfo(np.uint64).max


def value(cls, shape):
    """The array test_arrays.m's value() builds, C-ordered."""
    n = int(np.prod(shape))
    k = np.arange(n, dtype=np.int64)
    if cls == "double":
        x = k + 0.25
        x[1:2] = -0.0
        x[2:3] = -np.inf
    elif cls == "single":
        x = (k + 0.5).astype(np.float32)
    elif cls == "int8":
        x = (k % 256 - 128).astype(np.int8)
    elif cls == "uint8":
        x = (k * 7 % 256).astype(np.uint8)
    elif cls == "int16":
        x = (k % 65536 - 32768).astype(np.int16)
    elif cls == "uint16":
        x = (k * 3 % 65536).astype(np.uint16)
    elif cls == "int32":
        x = (k * 7 - 2**31).astype(np.int32)
    elif cls == "uint32":
        x = (2**32 - 1 - k * 3).astype(np.uint32)
    elif cls == "int64":
        x = I64_MIN + k * 3
        x[-1] = I64_MAX
    elif cls == "uint64":
        x = U64_MAX - k.astype(np.uint64) * np.uint64(5)
    elif cls == "logical":
        x = k % 13 < 6
    elif cls == "cdouble":
        x = (k + 0.5) - 1j * (2 * k + 0.25)
    elif cls == "csingle":
        x = ((k + 0.5) - 1j * (k + 1)).astype(np.complex64)
    else:
        raise ValueError(cls)
    return x.reshape(shape)


CLASSES = ["double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32",
           "int64", "uint64", "logical", "cdouble", "csingle"]
SMALL = (3, 4)
LARGE = (1023, 301)       # 307,923 elements: >= 256 KiB for every class
# Name -> (class, shape): what Python sends to Octave.
CASES = {}
for c in CLASSES:
    CASES[f"s_{c}"] = (c, SMALL)
    CASES[f"l_{c}"] = (c, LARGE)
CASES.update({
    "d700x500": ("double", (700, 500)),
    "d1023x77": ("double", (1023, 77)),
    "drow": ("double", (1, 40000)),
    "dcol": ("double", (40000, 1)),
    "d3d_small": ("double", (2, 3, 4)),
    "d3d": ("double", (40, 30, 70)),
    "i16_3d": ("int16", (33, 65, 70)),
})

# Name -> (class, shape, through shared memory): what Octave sends.
OCTAVE = {
    "o_d700x500": ("double", (700, 500), True),
    "o_i16": ("int16", LARGE, True),
    "o_u64": ("uint64", LARGE, True),
    "o_logical": ("logical", LARGE, True),
    "o_cdouble": ("cdouble", LARGE, True),
    "o_d3d": ("double", (40, 30, 70), True),
    "o_tcp_d700x500": ("double", (700, 500), False),
}

DTYPES = {"double": np.float64, "single": np.float32, "int8": np.int8, "uint8": np.uint8,
          "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
          "int64": np.int64, "uint64": np.uint64, "logical": np.bool_,
          "cdouble": np.complex128, "csingle": np.complex64}


def in_shared_memory(a):
    """True if the array's elements lie in a mapping of a dime segment."""
    addr = a.ctypes.data
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "memfd:dime" in line:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                if lo <= addr < hi:
                    return True
    return False


def check_octave_array(name, v):
    """Asserts what Octave's array NAME must be on arrival."""
    cls, shape, shared = OCTAVE[name]
    want = value(cls, shape)
    assert isinstance(v, np.ndarray), f"{type(v).__name__}, expected ndarray"
    assert v.dtype == DTYPES[cls], f"dtype {v.dtype}, expected {np.dtype(DTYPES[cls])}"
    assert v.shape == shape, f"shape {v.shape}, expected {shape}"
    # Column-major from MATLAB, a view in that order: nobody transposed it.
    assert v.flags.f_contiguous and not v.flags.c_contiguous, f"flags {v.flags}"
    # Bit for bit, in logical order.
    assert np.ascontiguousarray(v).tobytes() == want.tobytes(), "elements differ"
    assert in_shared_memory(v) == shared, (
        f"in shared memory: {in_shared_memory(v)}, expected {shared}")
    return True


def wait_for(d, name, got):
    """Receives into GOT until NAME is there; returns its value."""
    while name not in got:
        d.wait(timeout=60)
        got.update(d.sync_r())
    return got.pop(name)


def send_cases(d, group):
    for name, (cls, shape) in CASES.items():
        d.send_r(group, **{name: value(cls, shape)})
    d.send_r(group, sent=True)


def main():
    d = DimeClient("ipc", sys.argv[1])
    d.join("py")
    d.send_r("oct", ready=True)
    got = {}
    wait_for(d, "go_unix", got)
    send_cases(d, "oct")
    wait_for(d, "go_tcp", got)
    send_cases(d, "oct_tcp")

    report = []
    received = set()
    while "odone" not in got:
        d.wait(timeout=60)
        for name, v in d.sync_r().items():
            if name not in OCTAVE:
                got[name] = v
                continue
            received.add(name)
            label = f"python receives {name} from octave"
            try:
                check_octave_array(name, v)
                report.append(f"PASS {label}")
            except AssertionError as e:
                report.append(f"FAIL {label}: {e}")
            except Exception:
                report.append(f"FAIL {label}: {traceback.format_exc(limit=2)!r}")
    for name in sorted(set(OCTAVE) - received):
        report.append(f"FAIL python receives {name} from octave: not received")
    d.send_r("oct", report=report)
    d.close()


if __name__ == "__main__":
    main()
