"""Every type edge case of docs/protocol.md §4, Python -> server -> Python,
over unix and tcp: type, dtype, shape and bit-exact values."""

import struct

import numpy as np
import pytest

import dime
from same import assert_same

INT64_MIN, INT64_MAX, UINT64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1


def f64_bits(bits):
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def f32_bits(bits):
    return np.frombuffer(struct.pack("<I", bits), np.float32)[0]


NAN_PAYLOAD = f64_bits(0x7FF8000000000123)
NEG_NAN = f64_bits(0xFFF8000000000000)
F32_NAN_PAYLOAD = f32_bits(0x7FC00123)

rng = np.random.default_rng(1234)


def rand(shape, dtype, order="C"):
    dt = np.dtype(dtype)
    if dt.kind == "b":
        a = rng.integers(0, 2, shape).astype(bool)
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
    elif dt.kind == "f":
        a = rng.standard_normal(shape).astype(dt)
    else:
        a = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)
    return np.asarray(a, order=order)


DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float32", "float64", "complex64", "complex128", "bool"]

C3 = rand((2, 3, 4), "float64")
C4 = rand((2, 3, 4, 5), "int32")
M = rand((6, 8), "complex128")
B = rand((5, 7), "bool")
LARGE = rand((1500, 1100), "float32")       # 6.6 MB: the blocked transpose

# (id, value sent, value expected back); expected None means "the same".
CASES = [
    # -- [] / null, empty strings
    ("none", None, None),
    ("empty-str", "", None),
    # -- bool vs int
    ("true", True, None),
    ("false", False, None),
    ("bool-int-list", [True, 1, False, 0, np.bool_(True)], [True, 1, False, 0, True]),
    # -- ints: int64, extremes, beyond int64 -> uint64
    ("int", 42, None),
    ("int-neg", -7, None),
    ("int64-max", INT64_MAX, None),
    ("int64-min", INT64_MIN, None),
    ("int-2^63-to-uint64", 1 << 63, np.uint64(1 << 63)),
    ("uint64-max", UINT64_MAX, np.uint64(UINT64_MAX)),
    # -- floats: NaN, +-Inf, -0.0 bit-exact
    ("float", 1.5, None),
    ("neg-zero", -0.0, None),
    ("inf", float("inf"), None),
    ("neg-inf", float("-inf"), None),
    ("nan", float("nan"), None),
    ("nan-payload", NAN_PAYLOAD, None),
    ("neg-nan", NEG_NAN, None),
    ("subnormal", 5e-324, None),
    # -- complex
    ("complex", 1 + 2j, None),
    ("complex-zero-imag", 3 + 0j, None),
    ("complex-nan-negzero", complex(NAN_PAYLOAD, -0.0), None),
    # -- numpy scalars keep their class
    ("np-int8", np.int8(-128), None),
    ("np-int16", np.int16(3), None),
    ("np-int32", np.int32(-(1 << 31)), None),
    ("np-int64", np.int64(INT64_MAX), INT64_MAX),
    ("np-uint8", np.uint8(255), None),
    ("np-uint16", np.uint16(65535), None),
    ("np-uint32", np.uint32((1 << 32) - 1), None),
    ("np-uint64", np.uint64(UINT64_MAX), None),
    ("np-float32", np.float32(1), None),
    ("np-float32-nan-payload", F32_NAN_PAYLOAD, None),
    ("np-float32-neg-zero", np.float32(-0.0), None),
    ("np-float64", np.float64(2.5), 2.5),
    ("np-complex64", np.complex64(1 - 2j), None),
    ("np-complex64-zero-imag", np.complex64(1), None),
    ("np-complex128", np.complex128(1 - 2j), 1 - 2j),
    ("np-bool-true", np.bool_(True), True),
    ("np-bool-false", np.bool_(False), False),
    ("np-longlong", np.longlong(-5), -5),
    ("np-intc", np.intc(7), np.int32(7)),
    # -- strings
    ("str", "hello", None),
    ("str-non-ascii", "héllo wörld ñ ß Ω", None),
    ("str-emoji", "😀 emoji 🚀 𝄞", None),
    ("str-nul", "a\0b", None),
    ("str-long", "x" * 100000 + "é", None),
    # -- lists (cells), tuples
    ("list-empty", [], None),
    ("list-mixed", [1, "a", None, 2.5, [True, [np.float32(2)]]], None),
    ("tuple", (1, "x", (2.0, None)), [1, "x", [2.0, None]]),
    ("list-of-arrays", [np.arange(3.0), np.ones((2, 2), np.int8)], None),
    ("list-of-strings", ["row one", "row two", ""], None),
    # -- dicts (structs, maps)
    ("dict-empty", {}, None),
    ("dict-nested", {"a": 1, "b": {"c": [1, 2], "d": {"e": "f"}}}, None),
    ("dict-invalid-field-names", {"a b": 1, "1x": 2, "": 3, "ünï": 4, "a.b": 5}, None),
    ("list-of-dicts", [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], None),
    ("dict-non-str-keys", {1: "one", 2.5: "f", None: "n", (1, "a"): "t", "s": 0}, None),
    ("dict-key-nul", {"a\0b": 1}, None),
    ("dict-with-array", {"m": M, "s": "x"}, None),
    # -- int64/uint64 extremes in arrays
    ("arr-int64-extremes", np.array([INT64_MIN, INT64_MAX, 0, -1], np.int64), None),
    ("arr-uint64-extremes", np.array([0, UINT64_MAX, 1 << 63], np.uint64), None),
    # -- NaN/Inf/-0.0 in arrays
    ("arr-f8-special", np.array([np.nan, NAN_PAYLOAD, NEG_NAN, np.inf, -np.inf, -0.0, 5e-324]), None),
    ("arr-f4-special", np.array([np.nan, F32_NAN_PAYLOAD, np.inf, -np.inf, -0.0], np.float32), None),
    ("arr-c16-special", np.array([complex(NAN_PAYLOAD, -0.0), complex(np.inf, -np.inf)]), None),
    # -- complex arrays with zero imaginary part stay complex
    ("arr-c16-zero-imag", np.zeros(3, np.complex128), None),
    ("arr-c8-zero-imag", np.array([1, 2, 3], np.complex64), None),
    # -- ranks and orders
    ("0d-f8", np.array(3.5), None),
    ("0d-i1", np.array(-3, np.int8), None),
    ("0d-bool", np.array(True), None),
    ("1d", np.arange(5.0), None),
    ("2d-c-order", rand((3, 4), "float64"), None),
    ("2d-f-order", rand((3, 4), "float64", "F"), None),
    ("1xN-to-N", np.arange(4.0).reshape(1, 4), np.arange(4.0)),
    ("Nx1-to-N", np.arange(4.0).reshape(4, 1), np.arange(4.0)),
    ("1x1-to-1", np.array([[7]], np.int16), np.array([7], np.int16)),
    ("3d-c-order", C3, None),
    ("3d-f-order", np.asfortranarray(C3), C3),
    ("3d-non-contiguous", C3[:, ::2, ::-1], np.ascontiguousarray(C3[:, ::2, ::-1])),
    ("3d-transposed", C3.transpose(2, 0, 1), np.ascontiguousarray(C3.transpose(2, 0, 1))),
    ("4d-c-order", C4, None),
    ("4d-f-order", np.asfortranarray(C4), C4),
    ("4d-non-contiguous", C4[::2, :, 1:3, ::-2], np.ascontiguousarray(C4[::2, :, 1:3, ::-2])),
    ("2d-strided-complex", M[::2, 1::3], np.ascontiguousarray(M[::2, 1::3])),
    # large 2-D arrays are transposed in blocks of rows (sizes not a multiple of the block)
    ("2d-large-c-order", LARGE, None),
    ("2d-large-strided", LARGE[::-1, ::3], np.ascontiguousarray(LARGE[::-1, ::3])),
    ("bool-2d", B, None),
    ("bool-strided", B[::2, ::-1], np.ascontiguousarray(B[::2, ::-1])),
    ("bool-3d-f", np.asfortranarray(rand((3, 4, 2), "bool")), None),
    ("big-endian-f8", np.arange(6.0).reshape(2, 3).astype(">f8"), np.arange(6.0).reshape(2, 3)),
    ("big-endian-i4", np.array([[1, -2], [3, 4]], ">i4"), np.array([[1, -2], [3, 4]], np.int32)),
    ("readonly", np.frombuffer(np.arange(4.0).tobytes()), np.arange(4.0)),
    # -- empty arrays keep class and shape
    ("empty-0x3", np.empty((0, 3)), None),
    ("empty-3x0", np.empty((3, 0)), None),
    ("empty-0x3-int8", np.zeros((0, 3), np.int8), None),
    ("empty-0x0", np.zeros((0, 0)), None),
    ("empty-1d", np.zeros(0, np.uint16), None),
    ("empty-3d", np.zeros((2, 0, 4), np.complex64), None),
    ("empty-bool", np.zeros((0, 5), bool), None),
]
# -- every dtype in every order, 2-D and 3-D
for _dt in DTYPES:
    CASES.append((f"dtype-{_dt}-2d", rand((4, 3), _dt), None))
    _a = rand((3, 2, 4), _dt, "F")
    CASES.append((f"dtype-{_dt}-3d-f", _a, None))
    CASES.append((f"dtype-{_dt}-1d", rand(7, _dt), None))


@pytest.mark.parametrize("sent,expected", [(c[1], c[1] if c[2] is None else c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_round_trip(pair, sent, expected):
    a, b = pair
    a.send_r("g", v=sent)
    assert b.wait(5) == 1
    got = b.sync_r()
    assert list(got) == ["v"]
    assert_same(expected, got["v"])
    # the sender is in the group too: it gets its own copy
    assert_same(expected, a.sync_r()["v"])


def test_all_cases_in_one_batch(pair):
    """Many variables in one pipelined send keep their order and values."""
    a, b = pair
    values = {f"v{i}": c[1] for i, c in enumerate(CASES)}
    a.send_r("g", **values)
    got = b.sync_r()
    assert list(got) == list(values)
    for i, c in enumerate(CASES):
        assert_same(c[1] if c[2] is None else c[2], got[f"v{i}"], c[0])


def test_workspace_send_and_sync(pair):
    a, b = pair
    a["x"] = np.arange(3, dtype=np.uint8)
    a["y"] = "hello"
    a.send("g", "x", "y")
    assert b.sync() == {"x", "y"}
    assert_same(np.arange(3, dtype=np.uint8), b["x"])
    assert b["y"] == "hello" and len(b) == 2 and set(b) == {"x", "y"}


def test_logical_10000x10000(pair):
    """A 10,000 x 10,000 logical matrix (100 MB) goes through as tag 0x1F."""
    a, b = pair
    big = np.zeros((10000, 10000), bool, order="F")
    big[::7, ::3] = True
    big[-1, -1] = True
    a.send_r("g", big=big)
    b.wait(30)
    got = b.sync_r()["big"]
    assert got.dtype == np.bool_ and got.shape == big.shape
    assert isinstance(got.base, dime.LibBuffer)
    assert np.array_equal(got, big)
    a.sync_r()


@pytest.mark.parametrize("value,exc,words", [
    ({1, 2}, TypeError, "set"),
    (frozenset(), TypeError, "frozenset"),
    (object(), TypeError, "object"),
    (len, TypeError, "builtin_function_or_method"),
    (b"bytes", TypeError, "bytes"),
    (np.zeros(3, np.float16), TypeError, "float16"),
    (np.array(["a"]), TypeError, "<U1"),
    (np.array([None], object), TypeError, "object"),
    (np.float16(1), TypeError, "float16"),
    (np.longdouble(1), TypeError, "longdouble"),
    (1 << 64, OverflowError, "does not fit"),
    (-(1 << 63) - 1, OverflowError, "does not fit"),
    ([1, {"k": {2, 3}}], TypeError, "[1]['k']"),
    ("\udcff", ValueError, "Unicode"),
], ids=["set", "frozenset", "object", "function", "bytes", "float16-array", "str-array",
        "object-array", "float16-scalar", "longdouble", "int-2^64", "int-below-int64",
        "nested-set-path", "lone-surrogate"])
def test_unsupported_values_raise_and_connection_stays_usable(pair, value, exc, words):
    a, b = pair
    with pytest.raises(exc) as info:
        a.send_r("g", ok=1, bad=value)
    assert words in str(info.value)
    assert "bad" in str(info.value), "the error names the variable"
    # nothing of the batch was sent, and the client still works
    assert b.sync_r() == {}
    a.send_r("g", after=2)
    assert b.sync_r() == {"after": 2}
