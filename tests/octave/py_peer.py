"""Python side of the Octave <-> Python interop test (test_python.m).

Run by test_python.m as `python py_peer.py SOCKET` with our binding
(bindings/python, `import dime`). Protocol of the exchange:

1. join "py", send `ready` to "oct";
2. receive Octave's values (sent to "py") until `done`; check each against
   CHECKS below (class, shape, values);
3. send to "oct": `report` (a list of "PASS ..."/"FAIL ..." lines), every
   value of PY_VALUES, then `done`. test_python.m checks those in Octave.
"""

import math
import struct
import sys
import traceback

import numpy as np

from dime import DimeClient


def bits(x):
    return struct.pack("<d", x)


def is_float_exact(v, x):
    return type(v) is float and bits(v) == bits(x)


def arr(v, dtype, shape, values=None):
    """v is an ndarray of dtype and shape (and, if given, equal to values,
    compared bit for bit for floats)."""
    assert isinstance(v, np.ndarray), f"{type(v).__name__}, expected ndarray"
    assert v.dtype == np.dtype(dtype), f"dtype {v.dtype}, expected {np.dtype(dtype)}"
    assert v.shape == tuple(shape), f"shape {v.shape}, expected {tuple(shape)}"
    if values is not None:
        want = np.asarray(values, dtype=dtype).reshape(shape)
        if v.dtype.kind in "fc":
            assert np.ascontiguousarray(v).tobytes() == np.ascontiguousarray(want).tobytes(), \
                f"elements {v!r}, expected {want!r}"
        else:
            assert np.array_equal(v, want), f"elements {v!r}, expected {want!r}"
    return True


def typed(v, t, x):
    assert type(v) is t, f"{type(v).__name__}, expected {t.__name__}"
    assert v == x, f"{v!r}, expected {x!r}"
    return True


def same_bits(v, dtype, values):
    want = np.asarray(values, dtype=dtype)
    return arr(v, dtype, want.shape) and v.tobytes() == want.tobytes()


NAN_PAYLOAD = struct.unpack("<d", struct.pack("<Q", 0x7FF8DEADBEEF0001))[0]
F3D = np.arange(1, 25, dtype=np.float64).reshape((2, 3, 4), order="F")
F4D = np.arange(1, 121, dtype=np.float32).reshape((2, 3, 4, 5), order="F")
BIG = np.arange(1, 1e6 + 1).reshape((1000, 1000), order="F")

# Octave variable name -> check of the value Python received.
CHECKS = {
    "null": lambda v: v is None,
    "e03": lambda v: arr(v, np.float64, (0, 3)),
    "e30": lambda v: arr(v, np.float64, (3, 0)),
    "e03i8": lambda v: arr(v, np.int8, (0, 3)),
    "estr": lambda v: typed(v, str, ""),
    "row": lambda v: arr(v, np.float64, (3,), [1, 2, 3]),
    "col": lambda v: arr(v, np.float64, (3,), [1, 2, 3]),
    "m33": lambda v: arr(v, np.float64, (3, 3), [[1, 2, 3], [4, 5, 6], [7, 8, 9]]) and v[0, 1] == 2,
    "m3d": lambda v: arr(v, np.float64, (2, 3, 4), F3D) and v[1, 2, 3] == 24 and v[1, 0, 0] == 2,
    "m4d": lambda v: arr(v, np.float32, (2, 3, 4, 5), F4D) and v[1, 1, 1, 1] == 1 + 1 + 2 + 6 + 24,
    "deadbeef": lambda v: typed(v, int, 3735928559),
    "i64max": lambda v: typed(v, int, 2**63 - 1),
    "i64min": lambda v: typed(v, int, -(2**63)),
    "u64max": lambda v: typed(v, np.uint64, np.uint64(2**64 - 1)) and int(v) == 2**64 - 1,
    "i8": lambda v: typed(v, np.int8, -8),
    "i16": lambda v: typed(v, np.int16, -1600),
    "i32": lambda v: typed(v, np.int32, -320000),
    "u8": lambda v: typed(v, np.uint8, 200),
    "u16": lambda v: typed(v, np.uint16, 60000),
    "u32": lambda v: typed(v, np.uint32, 4000000000),
    "i64m": lambda v: arr(v, np.int64, (2,), [-(2**63), 2**63 - 1]),
    "u64m": lambda v: arr(v, np.uint64, (2,), [2**64 - 1, 0]),
    "i16m": lambda v: arr(v, np.int16, (2, 2), [[1, 2], [3, 4]]),
    "tt": lambda v: v is True,
    "ff": lambda v: v is False,
    "lrow": lambda v: arr(v, np.bool_, (3,), [True, False, True]),
    "l33": lambda v: arr(v, np.bool_, (3, 3), np.eye(3, dtype=bool)),
    "spec": lambda v: same_bits(v, np.float64, [math.nan, math.inf, -math.inf, -0.0]),
    "negz": lambda v: is_float_exact(v, -0.0),
    "nanp": lambda v: type(v) is float and bits(v) == bits(NAN_PAYLOAD),
    "d1": lambda v: typed(v, float, 1.0),
    "s1": lambda v: typed(v, np.float32, np.float32(1.5)),
    "sm": lambda v: arr(v, np.float32, (2, 2), [[1, 2], [3, 4]]),
    "cx": lambda v: typed(v, complex, 1 + 2j),
    "cx0": lambda v: typed(v, complex, 1 + 0j),
    "cxs": lambda v: typed(v, np.complex64, np.complex64(1 - 2j)),
    "cxm": lambda v: arr(v, np.complex128, (2, 2), [[1 + 2j, 3 - 4j], [-5j, 6]]),
    "cxm0": lambda v: arr(v, np.complex128, (2, 2), [[1, 2], [3, 4]]),
    "str": lambda v: typed(v, str, "hello"),
    "utf": lambda v: typed(v, str, "héllo wörld ñ"),
    "emoji": lambda v: typed(v, str, "smile 😀 party 🎉"),
    "cjk": lambda v: typed(v, str, "日本語テキスト"),
    "mrc": lambda v: typed(v, list, ["abc", "def"]),
    "c1n": lambda v: type(v) is list and len(v) == 3 and typed(v[0], float, 1.0)
    and v[1] == "a" and arr(v[2], np.float64, (2,), [1, 2]),
    "cn1": lambda v: typed(v, list, [1.0, "a"]) and type(v[0]) is float,
    "cnest": lambda v: typed(v, list, [1.0, [2.0, ["x"]]]),
    "cempty": lambda v: typed(v, list, []),
    "st": lambda v: typed(v, dict, {"foo": 1.0, "bar": "x"}) and list(v) == ["foo", "bar"],
    "stn": lambda v: typed(v, dict, {"a": {"b": {"c": np.int32(5)}}, "d": [1.0, "two"]})
    and type(v["a"]["b"]["c"]) is np.int32,
    "sta": lambda v: typed(v, list, [{"q": 1.0}, {"q": "two"}]),
    "stempty": lambda v: typed(v, dict, {}),
    "mapk": lambda v: typed(v, dict, {"a b": 1.0, "c": "z"}),
    "mapn": lambda v: typed(v, dict, {1.0: "one", 2.0: "two"}) and all(type(k) is float for k in v),
    "big": lambda v: arr(v, np.float64, (1000, 1000)) and np.array_equal(v, BIG),
}

C3D = np.arange(24, dtype=np.int64).reshape(2, 3, 4)  # C order
# Values Python sends to Octave (test_python.m holds what Octave expects).
PY_VALUES = {
    "p_none": None,
    "p_true": True,
    "p_false": False,
    "p_int": 3735928559,
    "p_intmin": -(2**63),
    "p_u64max": 2**64 - 1,
    "p_float": 1.5,
    "p_negz": -0.0,
    "p_nan": math.nan,
    "p_inf": -math.inf,
    "p_cx": 1 + 2j,
    "p_cx0": complex(3, 0),
    "p_str": "héllo 😀",
    "p_empty_str": "",
    "p_list": [1, "a", [2.0, None]],
    "p_tuple": (1, 2),
    "p_empty_list": [],
    "p_dict": {"foo": 1.0, "bar": "x"},
    "p_dict_keys": {"a b": 1.0, "c": 2.0},
    "p_dict_int": {1: "one", 2: "two"},
    "p_dict_empty": {},
    "p_nested": {"s": {"t": [1.0, {"u": True}]}},
    "p_strs": ["ab", "cd"],
    "p_a33": np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float64),
    "p_a1d": np.arange(4.0),
    "p_row2d": np.array([[1.0, 2.0, 3.0]]),
    "p_a3d": C3D,
    "p_a3d_f": np.asfortranarray(C3D),
    "p_nc": np.arange(20.0).reshape(4, 5)[::2, 1::2],
    "p_a4d": np.arange(120, dtype=np.float32).reshape(2, 3, 4, 5),
    "p_i8": np.array([-1, 2], dtype=np.int8),
    "p_i16": np.array([[-3, 4]], dtype=np.int16),
    "p_i32": np.array([7, -8], dtype=np.int32),
    "p_i64": np.array([-(2**63), 2**63 - 1], dtype=np.int64),
    "p_u8": np.array([0, 255], dtype=np.uint8),
    "p_u16": np.array([1, 65535], dtype=np.uint16),
    "p_u32": np.array([2, 4294967295], dtype=np.uint32),
    "p_u64": np.array([0, 2**64 - 1], dtype=np.uint64),
    "p_f32": np.float32(1.5),
    "p_i16s": np.int16(3),
    "p_u8s": np.uint8(7),
    "p_c64s": np.complex64(1 + 0j),
    "p_bool2d": np.array([[True, False], [False, True]]),
    "p_bool1d": np.array([True, False, True]),
    "p_special": np.array([math.nan, math.inf, -math.inf, -0.0]),
    "p_cxarr": np.array([1 + 2j, 3 + 0j]),
    "p_cxzero": np.zeros((2, 2), dtype=np.complex128),
    "p_c64arr": np.array([[1 + 1j, 2 - 2j]], dtype=np.complex64).reshape(2, 1),
    "p_empty03": np.empty((0, 3)),
    "p_empty30i8": np.empty((3, 0), dtype=np.int8),
    "p_empty1d": np.array([]),
    "p_rank0": np.array(5.0),
}


def main():
    sock = sys.argv[1]
    d = DimeClient("ipc", sock)
    d.join("py")
    d.send_r("oct", ready=True)

    got = {}
    while "done" not in got:
        d.wait(timeout=60)
        got.update(d.sync_r())

    report = []
    for name, check in CHECKS.items():
        label = f"python receives {name}"
        if name not in got:
            report.append(f"FAIL {label}: not received")
            continue
        try:
            ok = check(got[name])
            report.append(f"PASS {label}" if ok else f"FAIL {label}: got {got[name]!r}")
        except AssertionError as e:
            report.append(f"FAIL {label}: {e}")
        except Exception:
            report.append(f"FAIL {label}: {traceback.format_exc(limit=1)!r}")
    extra = sorted(set(got) - set(CHECKS) - {"done"})
    if extra:
        report.append(f"FAIL python received unexpected names: {extra}")

    # Octave's values echoed back: 1xN became (N,) and returns as Nx1; a
    # received N-d array (over the library's buffer) goes out unchanged.
    echo = {"p_echo_row": got.get("row"), "p_echo_m3d": got.get("m3d"),
            "p_echo_st": got.get("st"), "p_echo_l33": got.get("l33")}
    d.send_r("oct", report=report)
    d.send_r("oct", **PY_VALUES, **echo)
    d.send_r("oct", done=True)
    d.close()


if __name__ == "__main__":
    main()
