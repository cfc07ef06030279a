"""Encoding plans (dime/_plans.py): a dict sent again and again is encoded
by a plan made from the first one, byte for byte as ``_dimeb.encode``
writes it, in both matrix encodings; a dict that no longer fits its plan
(another type, shape, dtype, memory order, an int past int64, a str of
another length ahead of a layout matrix) is still encoded exactly; and
sends use plans."""

import numpy as np
import pytest

from dime import _dimeb, _plans, client as client_mod


@pytest.fixture(autouse=True)
def fresh_plans():
    _plans._PLANS.clear()
    yield
    _plans._PLANS.clear()


def step(k, rng=np.random.default_rng(7)):
    """A simulator's time step."""
    return {"t": k * 0.01, "k": k, "vars": rng.standard_normal(196),
            "accurate": rng.standard_normal(196)}


def planned(d, layout):
    """Whether ``d``'s keys have a plan."""
    return bool(_plans._PLANS.get((layout, *d)))


@pytest.mark.parametrize("layout", [True, False])
def test_a_step_is_planned_and_encoded_as_dimeb_does(layout):
    for k in range(5):
        d = step(k)
        assert _plans.encode(d, layout) == _dimeb.encode(d, layout)
    assert planned(d, layout)


# Each: a dict, then one that does not fit its plan (same keys).
MISSES = {
    "float to int": ({"a": 1.5, "m": np.ones(3)}, {"a": 2, "m": np.ones(3)}),
    "int past int64": ({"a": 1, "m": np.ones(3)}, {"a": 1 << 63, "m": np.ones(3)}),
    "int below int64": ({"a": 1, "m": np.ones(3)}, {"a": -(1 << 63) - 1, "m": np.ones(3)}),
    "shape": ({"m": np.ones(3)}, {"m": np.ones(4)}),
    "rank": ({"m": np.ones(6)}, {"m": np.ones((2, 3))}),
    "dtype": ({"m": np.ones(3)}, {"m": np.ones(3, np.float32)}),
    "C to F order": ({"m": np.arange(6.0).reshape(2, 3)},
                     {"m": np.asfortranarray(np.arange(6.0).reshape(2, 3))}),
    "strided": ({"m": np.arange(6.0).reshape(2, 3)}, {"m": np.arange(12.0).reshape(2, 6)[:, ::2]}),
    "array to list": ({"m": np.ones(3)}, {"m": [1.0, 2.0]}),
    "array subclass": ({"m": np.ones(3)}, {"m": np.ma.masked_array(np.ones(3))}),
    "bool array": ({"m": np.ones(3)}, {"m": np.ones(3, bool)}),
    "str length ahead of a matrix": ({"s": "ab", "m": np.ones(3)}, {"s": "abc", "m": np.ones(3)}),
    "float to numpy float": ({"a": 1.5}, {"a": np.float64(1.5)}),
    "bool to None": ({"a": True, "m": np.ones(2)}, {"a": None, "m": np.ones(2)}),
}


@pytest.mark.parametrize("layout", [True, False])
@pytest.mark.parametrize("first,second", MISSES.values(), ids=MISSES.keys())
def test_a_dict_that_does_not_fit_its_plan_is_encoded_exactly(first, second, layout):
    for d in (first, first, second, second, first):
        assert _plans.encode(d, layout) == _dimeb.encode(d, layout)


@pytest.mark.parametrize("layout", [True, False])
def test_values_plans_cover_one_by_one(layout):
    """Every kind of value a plan keeps a slot for, changing between calls."""
    rng = np.random.default_rng(1)
    for k in range(4):
        d = {"f": k / 3, "i": -k, "big": (1 << 62) + k, "c": complex(k, 1), "n": None,
             "b": k % 2 == 0, "s": "xy" if k % 2 else "yz", "u": "ünï",
             "np": np.float32(k), "i8": np.int8(k),
             "row": rng.standard_normal((3, 4)),
             "col": np.asfortranarray(rng.standard_normal((4, 3))),
             "cube": rng.integers(0, 9, (2, 3, 4)).astype(np.int16),
             "cplx": rng.standard_normal(5) + 1j, "u8": np.arange(7, dtype=np.uint8),
             "empty": np.zeros((0, 3)), "tail": 2.5}
        assert _plans.encode(d, layout) == _dimeb.encode(d, layout)
        assert planned(d, layout)


def test_strs_may_change_length_where_nothing_after_them_depends_on_it():
    for s in ("a", "bcd", ""):
        d = {"m": np.ones(3), "s": s}
        assert _plans.encode(d, True) == _dimeb.encode(d, True)
    assert planned(d, True)


def test_dicts_plans_leave_alone_are_encoded_by_dimeb():
    for d in ({"nested": {"a": 1.0}}, {"l": [1.0, np.ones(2)]}, {1: 2.0},
              {"m": np.ones(3).astype(">f8")}, {"big": np.ones(10_000)}, {}):
        assert _plans.encode(d, True) == _dimeb.encode(d, True)
        assert not planned(d, True) if d else True
    assert _plans.encode([1.0, 2.0], True) == _dimeb.encode([1.0, 2.0], True)


def test_keys_that_keep_missing_get_no_plan():
    for n in range(2, 2 + 3 * _plans._STRIKES):
        d = {"m": np.ones(n)}
        assert _plans.encode(d, True) == _dimeb.encode(d, True)
    assert _plans._PLANS[(True, "m")] is None
    d = {"m": np.ones(3)}
    assert _plans.encode(d, True) == _dimeb.encode(d, True)


def test_the_cache_is_bounded():
    for i in range(_plans._PLANS_MAX + 10):
        _plans.encode({f"k{i}": 1.0}, True)
    assert len(_plans._PLANS) <= _plans._PLANS_MAX


def test_sends_use_plans(pair, monkeypatch):
    a, b = pair
    calls = []
    real = _plans.encode
    monkeypatch.setattr(client_mod._plans, "encode", lambda x, layout: calls.append(x) or real(x, layout))
    sent = [step(k) for k in range(3)]
    for d in sent:
        a.send_r("g", Varvgs=d)
    a.broadcast_r(pmudata=sent[0])
    assert len(calls) == 4
    got = b.sync_r()
    assert set(got) == {"Varvgs", "pmudata"}
    assert got["Varvgs"]["k"] == 2
    np.testing.assert_array_equal(got["Varvgs"]["vars"], sent[2]["vars"])
    np.testing.assert_array_equal(got["pmudata"]["accurate"], sent[0]["accurate"])


def test_keys_equal_to_planned_ones_but_of_other_types_are_encoded_exactly():
    class Renamed(str):
        def __str__(self):
            return "other"

    plain = {"a": 1.0, "m": np.ones(2)}
    for d in (plain, plain, {Renamed("a"): 1.0, "m": np.ones(2)}, plain,
              {1: 2.0}, {1.0: 2.0}, {True: 2.0}, {1: 2.0}):
        assert _plans.encode(d, True) == _dimeb.encode(d, True)


@pytest.mark.parametrize("layout", [True, False])
def test_a_scalar_slot_given_an_array_or_a_list_is_encoded_exactly(layout):
    for v in ("ab", True, None, 1j, np.float32(2)):
        first = {"s": v, "m": np.arange(6.0).reshape(2, 3)}
        for d in (first, first, {"s": np.arange(4.0).reshape(2, 2), "m": first["m"]},
                  {"s": [np.ones(2)], "m": first["m"]}, first):
            assert _plans.encode(d, layout) == _dimeb.encode(d, layout)
