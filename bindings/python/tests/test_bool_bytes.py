"""Bool arrays whose bytes are not all 0/1 (``uint8`` data viewed as
``bool``) arrive as the right True/False values: messages, shares, tuples
and tuple patterns all go through the same conversion, which sends clean
0/1 bytes without touching the caller's array."""

import numpy as np
import pytest

import dime


def dirty(shape, order="C"):
    """A bool view of uint8 bytes 0, 1, 2 ... 255 (so mostly neither 0 nor 1)."""
    n = int(np.prod(shape))
    raw = (np.arange(n) * 37 % 256).astype(np.uint8)
    raw[::5] = 0                       # some False among them
    return np.asarray(raw.reshape(shape), order=order).view(bool)


def truth(a):
    """What ``a`` means: each byte non-zero or not, as a clean bool array."""
    return a.view(np.uint8) != 0


CASES = {
    "issue-example": np.array([0, 1, 2, 255], dtype=np.uint8).view(bool),
    "1d": dirty((50,)),
    "2d-c": dirty((6, 7)),
    "2d-f": dirty((6, 7), "F"),
    "3d-f": dirty((3, 4, 5), "F"),
    "strided": dirty((8, 9))[::2, ::-3],
    "0d": np.array(7, np.uint8).view(bool),
}


def check_received(got, sent):
    assert isinstance(got, np.ndarray) and got.dtype == np.bool_
    assert got.shape == sent.shape
    assert got.view(np.uint8).max(initial=0) <= 1, "received bytes other than 0/1"
    assert np.array_equal(got.view(np.uint8), truth(sent).view(np.uint8))


def test_cases_really_hold_other_bytes():
    """The control: these arrays are what receivers would reject as is."""
    for name, a in CASES.items():
        assert a.dtype == np.bool_
        assert a.view(np.uint8).max() > 1, name


@pytest.mark.parametrize("name", list(CASES))
def test_dirty_bool_array_arrives_as_true_false(pair, name):
    a, b = pair
    x = CASES[name]
    before = x.view(np.uint8).copy()
    a.send_r("g", x=x)
    assert b.wait(5) == 1
    check_received(b.sync_r()["x"], x)
    assert np.array_equal(x.view(np.uint8), before), "the sender's array was modified"


def test_dirty_bool_arrays_inside_containers(pair):
    a, b = pair
    v = {"f": CASES["2d-f"], "l": [CASES["1d"], {"c": CASES["2d-c"]}], "ok": np.ones(3, bool)}
    a.send_r("g", v=v)
    assert b.wait(5) == 1
    got = b.sync_r()["v"]
    check_received(got["f"], v["f"])
    check_received(got["l"][0], v["l"][0])
    check_received(got["l"][1]["c"], v["l"][1]["c"])
    check_received(got["ok"], v["ok"])


def test_clean_bool_array_is_still_lent_by_pointer():
    """The check costs no copy of an ordinary bool array: the library is
    given the array's own buffer (``dime_matrix_data`` of a borrowing
    matrix is the caller's pointer)."""
    from ctypes import byref, c_size_t, c_void_p

    from dime._convert import to_value
    from dime._lib import lib

    for x in (np.ones(1000, bool), np.asfortranarray(np.eye(9, dtype=bool))):
        keep = []
        v = to_value(x, keep)
        try:
            data, n = c_void_p(), c_size_t()
            assert lib.dime_matrix_data(v, byref(data), byref(n)) == 0
            assert data.value == x.ctypes.data and n.value == x.nbytes
            assert keep[0] is x
        finally:
            lib.dime_value_free(v)


def test_dirty_bool_array_in_a_share(server):
    with dime.Share(f"unix:{server.unix_path}") as s:
        s["x"] = CASES["2d-c"]
        s["y"] = [CASES["2d-f"], CASES["issue-example"]]
        check_received(s["x"], CASES["2d-c"])
        y = s["y"]
        check_received(y[0], CASES["2d-f"])
        check_received(y[1], CASES["issue-example"])


def test_dirty_bool_array_in_a_tuple_and_a_pattern(server):
    with dime.TupleSpace(f"unix:{server.unix_path}") as ts:
        x = CASES["3d-f"]
        ts.out(("b", x))
        tag, got = ts.in_(("b", np.ndarray), timeout=5)
        check_received(got, x)
        # As an exact pattern field it means the same True/False values.
        ts.out(("p", truth(x)))
        tag, got = ts.in_(("p", x), timeout=5)
        check_received(got, x)
