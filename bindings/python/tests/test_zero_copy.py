"""No needless copies: sent arrays are lent by pointer, received matrices are
numpy views of the library's buffer, freed when collected. Checked in
Python's heap (tracemalloc), in what libdime holds (its element pointer is
the array's own), and in the whole process (peak resident set of a fresh
process around one large send or receive, via rss_probe.py)."""

import gc
import os
import pathlib
import subprocess
import sys
import tracemalloc
import weakref
from ctypes import byref, c_size_t, c_void_p

import numpy as np
import pytest

import dime

MB = 1 << 20
N100 = 100 * MB // 8            # 100 MB of float64


def owner_of(arr):
    o = arr
    while isinstance(o, np.ndarray) and o.base is not None:
        o = o.base
    return o


def traced_peak(fn):
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_received_array_is_a_view_of_the_library_buffer(pair):
    a, b = pair
    x = np.asfortranarray(np.random.default_rng(0).standard_normal((3125, 4000)))
    a.send_r("g", x=x)
    a.sync_r()
    got = b.sync_r()["x"]
    owner = owner_of(got)
    assert isinstance(owner, dime.LibBuffer)
    assert got.__array_interface__["data"][0] == owner.ptr
    assert owner.nbytes == x.nbytes
    assert got.flags.f_contiguous and got.flags.writeable and got.flags.aligned
    assert np.array_equal(got, x)
    got[0, 0] = 42.0                        # ours to modify
    ref = weakref.ref(owner)
    del got, owner
    gc.collect()
    assert ref() is None, "the library buffer is released with the array"


def test_nested_and_1d_arrays_are_views_too(pair):
    # Values past dime._dimeb.LEAN_BYTES are decoded by the library (smaller
    # ones, decoded in Python, are plain arrays: see test_lean.py).
    a, b = pair
    a.send_r("g", v={"list": [np.arange(10000.0), np.ones((1, 5), np.int8)], "b": np.ones((3, 3), bool)})
    got = b.sync_r()["v"]
    for arr in (got["list"][0], got["list"][1], got["b"]):
        assert isinstance(owner_of(arr), dime.LibBuffer)
    assert got["list"][1].shape == (5,)


def test_sending_a_fortran_array_does_not_copy(pair):
    a, b = pair
    x = np.asfortranarray(np.ones((3125, 4000)))    # 100 MB
    peak = traced_peak(lambda: a.send_r("g", x=x))
    assert peak < MB, f"sending a 100 MB Fortran array allocated {peak} bytes in Python"


def test_sending_a_1d_array_does_not_copy(pair):
    a, b = pair
    x = np.ones(N100)
    peak = traced_peak(lambda: a.send_r("g", x=x))
    assert peak < MB, peak


def test_sending_a_large_logical_does_not_copy(pair):
    a, b = pair
    x = np.zeros((10000, 10000), bool, order="F")
    peak = traced_peak(lambda: a.broadcast_r(x=x))
    assert peak < MB, peak


def test_sending_a_c_ordered_array_does_not_copy(pair):
    """C order is lent as is: the library transposes while it byte-swaps."""
    a, b = pair
    x = np.ones((3125, 4000))
    peak = traced_peak(lambda: a.send_r("g", x=x))
    assert peak < MB, peak
    got = b.sync_r()["x"]
    assert got.shape == x.shape and np.array_equal(got, x)


def test_sending_a_strided_view_copies_exactly_once(pair):
    """The control for the tests above: tracemalloc does see numpy's copies."""
    a, b = pair
    base = np.arange(3125 * 8000, dtype=np.float64).reshape(3125, 8000)
    x = base[:, ::2]                                 # neither C nor Fortran contiguous
    peak = traced_peak(lambda: a.send_r("g", x=x))
    assert x.nbytes <= peak < x.nbytes + MB, peak
    got = b.sync_r()["x"]
    assert np.array_equal(got, x)


def test_receiving_does_not_copy(pair):
    a, b = pair
    a.send_r("g", x=np.ones(N100))
    got = {}
    peak = traced_peak(lambda: got.update(b.sync_r()))
    assert got["x"].nbytes == N100 * 8
    assert peak < MB, f"receiving 100 MB allocated {peak} bytes in Python"


@pytest.mark.parametrize("n", [0, 1, 3])
def test_many_small_arrays_are_freed(pair, n):
    a, b = pair
    refs = []
    for _ in range(50):
        a.send_r("g", x=np.arange(n, dtype=np.int32))
        got = b.sync_r()["x"]
        refs.append(weakref.ref(owner_of(got)))
        del got
    gc.collect()
    assert all(r() is None for r in refs)


# ------------------------------------------------ inside libdime as well
#
# tracemalloc above sees only Python's heap. The tests below look at what
# the library does: the borrowing constructor must be handed the array's own
# buffer, and a send or receive of a large array must not grow the process
# by more than the one buffer it cannot avoid (measured in a fresh process
# from its peak resident set, VmHWM).

def library_pointer(x):
    """The element pointer libdime holds for the value made from ``x`` (its
    elements as stored: a C-ordered array stays row-major), and the arrays
    lent to it."""
    from dime._convert import to_value
    from dime._lib import lib

    keep = []
    v = to_value(x, keep)
    try:
        data, n = c_void_p(), c_size_t()
        assert lib.dime_matrix_stored_data(v, byref(data), byref(n)) == 0
        return data.value, n.value, keep
    finally:
        lib.dime_value_free(v)


@pytest.mark.parametrize("make", [
    lambda: np.asfortranarray(np.ones((300, 400))),
    lambda: np.ones(5000),
    lambda: np.ones((300, 400)),                      # C order: lent row-major
    lambda: np.zeros((300, 400), bool, order="F"),
    lambda: np.arange(24, dtype=np.int16).reshape(2, 3, 4),
], ids=["fortran", "1d", "c-order", "logical", "int16-3d-c"])
def test_the_library_is_lent_the_arrays_own_buffer(make):
    x = make()
    ptr, nbytes, keep = library_pointer(x)
    assert ptr == x.ctypes.data, "libdime holds a copy, not the array's buffer"
    assert nbytes == x.nbytes and keep[0] is x


def test_a_strided_view_is_lent_as_one_copy():
    """The control: a view numpy must copy is not lent by its own address."""
    x = np.ones((300, 800))[:, ::2]
    ptr, nbytes, keep = library_pointer(x)
    assert ptr != x.ctypes.data and ptr == keep[0].ctypes.data
    assert nbytes == x.nbytes and keep[0].flags.f_contiguous


PROBE = pathlib.Path(__file__).with_name("rss_probe.py")
PROBE_MB = 128


def probe(*args):
    env = dict(os.environ, PYTHONPATH=str(PROBE.parents[1]))
    return subprocess.Popen([sys.executable, str(PROBE), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, text=True)


def growth_of(proc):
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    growth, nbytes = map(int, out.split()[-2:])
    print(f"peak growth {growth} for {nbytes} bytes")
    return growth, nbytes


@pytest.mark.parametrize("order", ["F", "C", "bool"])
def test_sending_grows_the_process_by_one_frame_at_most(server, order):
    """Sending encodes the elements once, into the library's frame buffer
    (the wire is big-endian); lending must add no copy before that. A copy
    anywhere, in the binding or the library, would double the growth."""
    b = server.client("unix")
    b.join("probe")
    growth, nbytes = growth_of(probe("send", order, PROBE_MB, server.unix_path))
    assert nbytes > 100 * MB
    assert growth < 1.5 * nbytes, f"sending {nbytes} bytes grew the process by {growth}"
    got = b.sync_r()["x"]
    assert got.nbytes == nbytes and bool(got.all())


def test_receiving_grows_the_process_by_one_buffer_at_most(server):
    """The received frame's buffer becomes the array's: a copy while
    decoding or taking the data would double the growth."""
    p = probe("recv", PROBE_MB, server.unix_path)
    assert p.stdout.readline().strip() == "ready"
    a = server.client("unix")
    a.send_r("probe", x=np.ones((PROBE_MB << 20) // 8))
    growth, nbytes = growth_of(p)
    assert nbytes == PROBE_MB << 20
    assert growth < 1.5 * nbytes, f"receiving {nbytes} bytes grew the process by {growth}"
