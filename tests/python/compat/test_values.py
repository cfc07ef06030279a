"""Every value type the original Python client can send round-trips through
our server, with the client's default pickle serialization and with dimeb.

To make the original client use dimeb, a raw client handshakes with
"dimeb": the server switches to dimeb and sends the others a reregister
meta message, which the dime-client handles on its next receive.

A raw observer in the same group checks that the server relays the
sender's header and payload bytes unchanged.

dimeb quirks of the original client: a rank-2 array with a dimension of 1
decodes as 1-D (docs/protocol.md §4); rank-0 arrays and numpy scalars cannot be
sent with dimeb (so they are tested with pickle only).
"""

import math
import pickle

import numpy as np
import pytest
from dime import dimeb

from dimewire import handshake_reply
from samevalue import assert_same

SERIALIZATIONS = ["pickle", "dimeb"]
DUMPS = {"pickle": pickle.dumps, "dimeb": dimeb.dumps}

nan = math.nan
inf = math.inf

SCALARS = {
    "none": None,
    "true": True,
    "false": False,
    "int_zero": 0,
    "int": 42,
    "int_negative": -7,
    "int64_max": 2**63 - 1,
    "int64_min": -(2**63),
    "float": 3.25,
    "float_pi": math.pi,
    "float_nan": nan,
    "float_inf": inf,
    "float_neg_inf": -inf,
    "float_neg_zero": -0.0,
    "float_subnormal": 5e-324,
    "float_max": 1.7976931348623157e308,
    "complex": 1.5 - 2.5j,
    "complex_special": complex(nan, -0.0),
    "complex_zero_imag": complex(2.0, 0.0),
    "str": "hello",
    "str_empty": "",
    "str_non_ascii": "héllo wörld ∑ Ωμέγα 日本語",
    "str_emoji": "🦀🐍 👩‍🔬 🇯🇵",
    "str_nul": "a\x00b",
    "list": [1, 2.5, "x", None, True, 3 + 4j],
    "list_empty": [],
    "list_nested": [[1, [2, [3, []]]], ["a"], [], [[[-0.0]]]],
    "dict": {"a": 1, "b": "two", "c": None, "d": False},
    "dict_empty": {},
    "dict_nested": {"outer": {"inner": {"x": [1, 2, {"y": -0.0}]}, "k": 2.5},
                    "list": [{"a": 1}, {"b": [nan, inf]}], "émoji 🦀": "ok"},
}

DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float32", "float64", "complex64", "complex128"]

SHAPES = {
    "r1": (7,),
    "r1_empty": (0,),
    "r2": (3, 4),
    "r2_row": (1, 5),
    "r2_col": (5, 1),
    "r2_empty": (0, 3),
    "r3": (2, 3, 4),
    "r3_unit": (1, 3, 2),
}


def make_array(dtype, shape, seed=0):
    """An array with the dtype's extremes and, for floats, NaN, ±Inf and -0.0."""
    dt = np.dtype(dtype)
    size = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        flat = rng.integers(info.min, info.max, size=size, dtype=dt, endpoint=True)
        specials = [info.min, info.max, 0, 1]
    else:
        real_dt = np.dtype(dt.char.lower()) if dt.kind == "f" else np.dtype(f"f{dt.itemsize // 2}")
        flat = rng.standard_normal(size).astype(real_dt) * 1000
        specials = [np.nan, np.inf, -np.inf, -0.0, np.finfo(real_dt).max, np.finfo(real_dt).tiny]
        if dt.kind == "c":
            imag = rng.standard_normal(size).astype(real_dt)
            flat = flat.astype(dt) + 1j * imag.astype(dt)
            specials = [complex(np.nan, -0.0), complex(-0.0, np.inf), complex(1.0, 0.0),
                        complex(-np.inf, np.nan)]
    flat = flat.astype(dt)
    for i, value in enumerate(specials[:size]):
        flat[i] = value
    return flat.reshape(shape)


def arrays_for(dtype):
    arrays = {name: make_array(dtype, shape, seed=i) for i, (name, shape) in enumerate(SHAPES.items())}
    base = make_array(dtype, (3, 4, 5), seed=99)
    arrays["r2_fortran"] = np.asfortranarray(make_array(dtype, (4, 3), seed=7))
    arrays["r3_strided"] = base[:, ::2, ::-1]  # non-contiguous view
    return arrays


def expected_after(value, serialization):
    """What the original client decodes: dimeb turns rank-2 with a 1 dim into 1-D."""
    if isinstance(value, np.ndarray):
        value = np.ascontiguousarray(value)
        if serialization == "dimeb" and value.ndim == 2:
            if value.shape[0] == 1:
                return value.reshape(value.shape[1])
            if value.shape[1] == 1:
                return value.reshape(value.shape[0])
    return value


@pytest.fixture(params=SERIALIZATIONS)
def peers(request, net):
    """(serialization, sender, receiver, raw observer), all in group "g"."""
    serialization = request.param
    a = net.client("g")
    b = net.client("g")
    assert a.serialization == b.serialization == "pickle"
    if serialization == "dimeb":
        forcer = net.raw()
        reply = forcer.handshake("dimeb")
        assert reply == handshake_reply("dimeb")
        # The reregister meta message is consumed on the next receive.
        for c in (a, b):
            assert c.devices() == ["g"]
            assert c.serialization == "dimeb"
    observer = net.raw(serialization)
    assert observer.request({"command": "join", "name": ["g"]}) == {"status": 0}
    return serialization, a, b, observer


def roundtrip(peers, **values):
    serialization, a, b, observer = peers
    a.send_r("g", **values)
    got = b.sync_r()
    assert list(got) == list(values), f"received names {list(got)} != sent {list(values)}"
    relayed = observer.sync()
    assert [h["varname"] for h, _ in relayed] == list(values)
    for (header, payload), (name, value) in zip(relayed, values.items()):
        assert header == {"command": "send", "name": "g", "varname": name,
                          "serialization": serialization}
        assert payload == DUMPS[serialization](value), f"{name}: payload not relayed unchanged"
    return got


@pytest.mark.parametrize("name", list(SCALARS))
def test_scalar_and_container_values(peers, name):
    value = SCALARS[name]
    got = roundtrip(peers, v=value)
    assert_same(value, got["v"], name)


def test_all_values_in_one_pipelined_send(peers):
    got = roundtrip(peers, **SCALARS)
    for name, value in SCALARS.items():
        assert_same(value, got[name], name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_arrays(peers, dtype):
    serialization = peers[0]
    arrays = arrays_for(dtype)
    got = roundtrip(peers, **arrays)
    for name, array in arrays.items():
        assert_same(expected_after(array, serialization), got[name], f"{dtype} {name}")


def test_rank2_unit_dimension_shape_rule(peers):
    serialization = peers[0]
    row = np.arange(5, dtype=np.float64).reshape(1, 5)
    col = np.arange(5, dtype=np.int32).reshape(5, 1)
    got = roundtrip(peers, row=row, col=col)
    if serialization == "dimeb":
        assert got["row"].shape == (5,)
        assert got["col"].shape == (5,)
    else:
        assert got["row"].shape == (1, 5)
        assert got["col"].shape == (5, 1)
    assert np.array_equal(got["row"].ravel(), row.ravel())
    assert np.array_equal(got["col"].ravel(), col.ravel())


def test_arrays_inside_containers(peers):
    serialization = peers[0]
    value = {"a": np.arange(6, dtype=np.int16).reshape(2, 3),
             "b": [np.array([1.5, -0.0, np.nan], dtype=np.float32), "s"]}
    got = roundtrip(peers, v=value)["v"]
    assert_same(value["a"], got["a"])
    assert_same(value["b"][0], got["b"][0])
    assert got["b"][1] == "s"


def test_pickle_only_values(net):
    """Values only pickle can carry: rank-0 arrays, numpy scalars, tuples, sets."""
    a = net.client("g")
    b = net.client("g")
    values = {
        "rank0": np.array(3.5),
        "f32": np.float32(1.25),
        "i16": np.int16(-3),
        "tuple": (1, "two", 3.0),
        "set": {1, 2, 3},
        "bigint": 2**100,
        "bytes": b"\x00\xffDiME",
    }
    a.send_r("g", **values)
    got = b.sync_r()
    assert_same(values["rank0"], got["rank0"])
    for name in ("f32", "i16"):
        assert type(got[name]) is type(values[name]) and got[name] == values[name]
    for name in ("tuple", "set", "bigint", "bytes"):
        assert type(got[name]) is type(values[name]) and got[name] == values[name]
