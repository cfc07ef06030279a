"""Arrays travel in their own memory order between our clients (the
``dimeb_layout`` extension, docs/protocol-extensions.md): a C-ordered array
is not transposed to send and arrives C-ordered, a Fortran-ordered one
arrives Fortran-ordered, with the same shape and values either way, and
writable. The original client, which did not negotiate the extension,
gets DiME2's column-major encoding from the server (test_interop.py sends
it every shape; here the raw bytes are checked)."""

import struct

import numpy as np
import pytest

from same import assert_same

SHAPES = [(3, 4), (300, 200), (2, 3, 4), (40, 30, 20)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("order", ["C", "F"])
def test_arrays_arrive_in_the_order_they_were_sent(pair, shape, order):
    a, b = pair
    x = np.asarray(np.arange(np.prod(shape), dtype=np.float64).reshape(shape), order=order)
    a.send_r("g", x=x)
    got = b.sync_r()["x"]
    assert_same(got, x)
    assert got.flags.c_contiguous if order == "C" else got.flags.f_contiguous
    got[(0,) * len(shape)] = -1          # received arrays are the receiver's own
    assert got[(0,) * len(shape)] == -1


@pytest.mark.parametrize("dtype", ["int8", "uint16", "int32", "float32", "complex64",
                                   "complex128", "bool"])
def test_every_class_keeps_its_values_in_c_order(pair, dtype):
    a, b = pair
    x = (np.arange(35 * 41).reshape(35, 41) % 7).astype(dtype)
    a.send_r("g", x=x, y=[x, {"k": x.T}])
    got = b.sync_r()
    assert_same(got["x"], x)
    assert got["x"].flags.c_contiguous
    assert_same(got["y"][0], x)
    assert_same(got["y"][1]["k"], x.T)


def test_a_raw_client_without_the_extension_gets_column_major_big_endian(server):
    """What the original client reads: the server converts the C-ordered
    array our client sent."""
    a = server.client("unix")
    raw = server.raw("unix")
    assert raw.request({"command": "join", "name": "g"})["status"] == 0
    x = np.arange(6, dtype=np.float64).reshape(2, 3)          # [[0 1 2] [3 4 5]]
    a.send_r("g", x=x)
    frames = raw.sync()
    (header, payload), = frames
    assert "dimeb_layout" not in header
    assert payload[:10] == bytes([0x1C, 2, 0, 0, 0, 2, 0, 0, 0, 3])
    assert struct.unpack(">6d", payload[10:]) == (0, 3, 1, 4, 2, 5)


def test_the_original_client_receives_c_ordered_arrays_intact(server):
    ours = server.client("unix")
    old = server.old("unix", "g")
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    ours.send_r("g", x=x)
    got = old.call("sync_r")
    assert_same(np.asarray(got["x"]), x)
