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


# Over a unix socket, large arrays travel through shared memory
# (docs/protocol-extensions.md, "Shared memory"): each recipient maps the
# sender's segment privately. A recipient asks for descriptors once the
# first large payload has reached it through the socket.

BIG = (600, 500)          # 2.4 MB of float64


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


def receiver(server, group):
    """A unix client in ``group`` that already takes shared memory."""
    c = server.client("unix", group)
    warm = server.client("unix")
    for _ in range(2):
        warm.send_r(group, warm_up=np.zeros(BIG))
        c.sync_r()
    warm.close()
    return c


@pytest.mark.parametrize("order", ["C", "F"])
def test_large_arrays_arrive_through_shared_memory_intact(server, order):
    a = server.client("unix")
    b = receiver(server, "g")
    x = np.asarray(np.random.default_rng(5).standard_normal(BIG), order=order)
    for _ in range(3):                    # segments are recycled in between
        a.send_r("g", x=x, small=[1, 2])
        got = b.sync_r()
        assert_same(got["x"], x)
        assert in_shared_memory(got["x"])
        assert got["x"].flags.c_contiguous if order == "C" else got["x"].flags.f_contiguous
        assert got["small"] == [1, 2]
        del got


def test_recipients_of_one_segment_cannot_write_into_each_other(server):
    a = server.client("unix")
    b = receiver(server, "g")
    c = receiver(server, "g")
    b.sync_r()                            # c's warm-up went to b too
    x = np.arange(np.prod(BIG), dtype=np.float64).reshape(BIG)
    a.send_r("g", x=x)
    xb = b.sync_r()["x"]
    xc = c.sync_r()["x"]
    assert in_shared_memory(xb) and in_shared_memory(xc)
    xb[:] = -1                            # b's copy-on-write pages, not the segment
    assert (xb == -1).all()
    assert_same(xc, x)
    # The sender reuses the segment once both let go; neither sees that.
    del xb, xc
    a.send_r("g", x=x + 1)
    assert_same(b.sync_r()["x"], x + 1)
    assert_same(c.sync_r()["x"], x + 1)


def test_a_received_array_outlives_its_client(server):
    a = server.client("unix")
    b = receiver(server, "g")
    x = np.arange(np.prod(BIG), dtype=np.int64).reshape(BIG)
    a.send_r("g", x=x)
    got = b.sync_r()["x"]
    b.close()
    assert_same(got, x)
    del got                               # its release has nowhere to go: fine
    assert a.devices() == []            # b left g; the server carries on


def test_tcp_clients_get_the_bytes_in_the_frame(server):
    a = server.client("unix")
    b = server.client("tcp", "g")
    x = np.arange(np.prod(BIG), dtype=np.float32).reshape(BIG)
    a.send_r("g", x=x)
    got = b.sync_r()["x"]
    assert_same(got, x)
    assert not in_shared_memory(got)
