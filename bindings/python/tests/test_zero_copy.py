"""No needless copies: sent arrays are lent by pointer, received matrices are
numpy views of the library's buffer, freed when collected."""

import gc
import tracemalloc
import weakref

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
    a, b = pair
    a.send_r("g", v={"list": [np.arange(10.0), np.ones((1, 5), np.int8)], "b": np.ones((3, 3), bool)})
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
