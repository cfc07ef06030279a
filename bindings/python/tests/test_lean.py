"""The lean path (dime/_dimeb.py) agrees with the library path
(dime/_convert.py + libdime): for every value of the type table, the bytes
it encodes are the library's bytes, and what it decodes is what the
library path decodes (type, dtype, shape, bits); values it leaves alone go
the library's way, with the library's errors; and sends and receives use
it (one library call per send)."""

import collections
import ctypes
import enum
from ctypes import byref, c_size_t, c_void_p

import numpy as np
import pytest

import dime
from dime import _dimeb, client as client_mod
from dime._convert import from_value, to_value
from dime._errors import check
from dime._lib import lib
from same import assert_same
from test_types import CASES


def library_bytes(x):
    """The dimeb bytes of ``x`` built through _convert and dime_value_encode."""
    keep = []
    v = to_value(x, keep)
    data, size = c_void_p(), c_size_t()
    try:
        check(lib.dime_value_encode(v, byref(data), byref(size)))
        try:
            return ctypes.string_at(data.value, size.value)
        finally:
            lib.dime_data_free(data.value, size.value)
    finally:
        lib.dime_value_free(v)


def library_decode(b):
    out = c_void_p()
    check(lib.dime_value_decode(b, len(b), byref(out)))
    try:
        return from_value(out.value, True)
    finally:
        lib.dime_value_free(out.value)


def has_large_array(x):
    if isinstance(x, np.ndarray):
        return x.nbytes > _dimeb.LEAN_BYTES
    if isinstance(x, dict):
        return any(has_large_array(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return any(has_large_array(v) for v in x)
    return False


@pytest.mark.parametrize("sent", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_encoding_is_the_librarys(sent):
    lean = _dimeb.encode(sent)
    if has_large_array(sent):
        assert lean is None, "a large array must be lent to the library, not copied"
        return
    assert lean is not None
    assert lean == library_bytes(sent)


@pytest.mark.parametrize("sent", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_decoding_is_the_librarys(sent):
    b = library_bytes(sent)
    assert_same(library_decode(b), _dimeb.decode(b))


class Color(enum.IntEnum):
    RED = 3


class Text(str):
    pass


class Pairs(collections.abc.Mapping):
    def __init__(self, d):
        self.d = d

    def __getitem__(self, k):
        return self.d[k]

    def __iter__(self):
        return iter(self.d)

    def __len__(self):
        return len(self.d)


SUBCLASSES = [
    ("int-enum", Color.RED),
    ("str-subclass", Text("hé")),
    ("ordered-dict", collections.OrderedDict([("b", 1), ("a", [2.0])])),
    ("mapping", Pairs({"k": np.int16(4), 5: "v"})),
    ("deque", collections.deque([1, "two", None])),
    ("range", range(4)),
    ("ndarray-subclass", np.ma.masked_array([1.0, 2.0])),
    ("dirty-bool-view", np.array([0, 2, 1, 255], np.uint8).view(bool)),
    ("longlong", np.longlong(9)),
    ("uint-alias", np.uintc(7)),
    ("bool-subclass-in-list", [np.True_, True, False]),
    ("float-subclass", np.float64(0.25)),
    ("big-endian-complex", np.array([1 + 2j, -0.0j], ">c16")),
    ("tuple-key", {(1, (2, "x")): 1}),
]


@pytest.mark.parametrize("sent", [c[1] for c in SUBCLASSES], ids=[c[0] for c in SUBCLASSES])
def test_subclasses_and_aliases_encode_as_the_library_does(sent):
    lean = _dimeb.encode(sent)
    assert lean is not None
    assert lean == library_bytes(sent)
    assert_same(library_decode(lean), _dimeb.decode(lean))


NOT_LEAN = [
    ("set", {1, 2}, TypeError),
    ("object", object(), TypeError),
    ("float16-array", np.zeros(3, np.float16), TypeError),
    ("float16-scalar", np.float16(1), TypeError),
    ("numpy-str", np.str_("x"), TypeError),
    ("bytes", b"x", TypeError),
    ("int-past-uint64", 1 << 64, OverflowError),
    ("negative-past-int64", -(1 << 63) - 1, OverflowError),
    ("lone-surrogate", "\ud800", ValueError),
    ("nested-set", {"a": [1, {2}]}, TypeError),
    ("large-array", np.zeros(_dimeb.LEAN_BYTES // 8 + 1), None),
]


@pytest.mark.parametrize("value,exc", [c[1:] for c in NOT_LEAN], ids=[c[0] for c in NOT_LEAN])
def test_what_the_lean_path_leaves_alone_goes_the_librarys_way(pair, value, exc):
    assert _dimeb.encode(value) is None
    a, b = pair
    if exc is None:
        a.send_r("g", v=value)
        assert_same(value, b.sync_r()["v"])
    else:
        with pytest.raises(exc) as raised:
            a.send_r("g", v=value)
        # The library path's message, with the variable's name.
        assert "(at v" in str(raised.value)
        a.send_r("g", ok=1)
        assert b.sync_r() == {"ok": 1}


def test_deep_nesting_is_left_to_the_library(pair):
    deep = 0
    for _ in range(_dimeb.MAX_DEPTH + 5):
        deep = [deep]
    assert _dimeb.encode(deep) is None
    a, b = pair
    a.send_r("g", v=deep)
    assert b.sync_r()["v"] == deep


def test_an_unhashable_received_key_is_the_librarys_error(pair, server):
    a, b = pair
    # A map whose key is a map: no Python dict can hold it.
    raw = server.raw()
    payload = bytes([0x22, 0, 0, 0, 1, 0x22, 0, 0, 0, 0, 0x00])
    reply = raw.request({"command": "send", "name": "g", "varname": "bad",
                         "serialization": "dimeb"}, payload)
    assert reply["status"] == 0
    with pytest.raises(_dimeb.NotLean):
        _dimeb.decode(payload)
    with pytest.raises(dime.DimeCodecError, match="cannot be a Python dict key"):
        b.sync_r()


def test_small_values_take_one_library_call_per_send(pair, monkeypatch):
    a, b = pair
    calls = []
    real = client_mod._send_encoded

    def counted(*args):
        calls.append(args[2])
        return real(*args)

    monkeypatch.setattr(client_mod, "_send_encoded", counted)
    monkeypatch.setattr(client_mod, "to_value", None)     # the library path is not taken
    v = {"t": 0.5, "k": 3, "vars": np.arange(196.0), "accurate": np.ones(196)}
    a.send_r("g", Varvgs=v)
    assert calls == [b"Varvgs"]
    assert_same(v, b.sync_r()["Varvgs"])


def test_received_small_arrays_are_plain_owned_arrays(pair):
    a, b = pair
    for sent in (np.arange(6.0).reshape(2, 3), np.asfortranarray(np.arange(6.0).reshape(2, 3))):
        a.send_r("g", v=sent)
        got = b.sync_r()["v"]
        # Between our clients an array keeps its order (dimeb_layout).
        assert got.flags.c_contiguous == sent.flags.c_contiguous
        assert got.flags.f_contiguous == sent.flags.f_contiguous
        assert got.flags.writeable and got.flags.aligned
        assert not isinstance(got.base, dime.LibBuffer)
        got[0, 0] = 9.0                     # ours to modify
        assert_same(np.array([[9.0, 1, 2], [3, 4, 5]]), np.ascontiguousarray(got))


@pytest.fixture
def layout_wire(server):
    """(library(value), lean(value)): what a connection that negotiated
    dimeb_layout receives when our client sends ``value`` the library's
    way (``_send_values``) and the lean way (``send_r``), as (header,
    payload); and ``classic()``: what a DiME2 connection got for the last
    lean send."""
    native = server.raw("unix", serialization=None)
    reply = native.request({"command": "handshake", "serialization": "dimeb", "tls": False,
                            "extensions": ["dimeb_layout"]})
    assert reply["status"] == 0 and "dimeb_layout" in reply["extensions"]
    assert native.request({"command": "join", "name": ["w"]})["status"] == 0
    classic = server.raw("unix")
    assert classic.request({"command": "join", "name": ["w"]})["status"] == 0
    sender = server.client("unix")
    assert sender._layout

    def library(value):
        sender._send_values(b"w", {"v": value})
        classic.sync()
        (got,) = native.sync()
        return got

    def lean(value):
        sender.send_r("w", v=value)
        (got,) = native.sync()
        return got

    def classic_bytes():
        (got,) = classic.sync()
        return got

    return library, lean, classic_bytes


LAYOUTS = [
    ("c-order", np.arange(12.0).reshape(3, 4)),
    ("fortran-order", np.asfortranarray(np.arange(12.0).reshape(3, 4))),
    ("c-order-3d-int16", np.arange(24, dtype=np.int16).reshape(2, 3, 4)),
    ("strided", np.arange(40.0).reshape(5, 8)[::2, ::3]),
    ("big-endian-c-order", np.arange(6, dtype=">i4").reshape(2, 3)),
    ("dirty-bool-c-order", np.array([[0, 2], [1, 255]], np.uint8).view(bool)),
    ("complex-c-order", (np.arange(6) + 1j).reshape(2, 3)),
    ("large-aligned", np.arange(300.0).reshape(15, 20)),
    ("after-odd-offset", {"s": "abc", "m": np.ones((2, 2), np.float32), "n": [np.zeros((3, 1))]}),
    ("empty", np.zeros((0, 3))),
]


@pytest.mark.parametrize("sent", [c[1] for c in CASES] + [c[1] for c in LAYOUTS],
                         ids=[c[0] for c in CASES] + [c[0] for c in LAYOUTS])
def test_layout_encoding_is_the_librarys(layout_wire, sent):
    """With dimeb_layout negotiated (our clients ask for it), the lean path
    writes what the library writes for the same value: C-ordered arrays
    row-major, not transposed, elements aligned from the payload's start;
    the request is marked, and a DiME2 recipient gets the classic bytes."""
    library, lean, classic = layout_wire
    ours = _dimeb.encode(sent, layout=True)
    want_header, want = library(sent)
    if has_large_array(sent):
        assert ours is None
        return
    assert ours == want
    header, got = lean(sent)
    assert got == want
    assert header.get("dimeb_layout", False) == want_header.get("dimeb_layout", False)
    assert classic()[1] == library_bytes(sent)
    theirs, decoded = library_decode(want), _dimeb.decode(want)
    assert_same(theirs, decoded)
    if isinstance(theirs, np.ndarray):
        # Row-major matrices arrive C-ordered, either way.
        assert decoded.flags.c_contiguous == theirs.flags.c_contiguous
        assert decoded.flags.f_contiguous == theirs.flags.f_contiguous
