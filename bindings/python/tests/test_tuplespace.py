"""dime.TupleSpace against a real server: lindypy's example, blocking and
timeouts, rd copies vs in, FIFO, no lost or duplicated tuples across
processes, eval workers and their error tuples, and every kind of pattern
field."""

import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest

import dime
from dime.tuplespace import compile_pattern
from same import assert_same
from test_types import CASES

NPROC = 8
NCHURN = 2500        # out+in pairs per process (the 10,000, scaled for the suite)


@pytest.fixture
def addr(server):
    return f"unix:{server.unix_path}"


@pytest.fixture
def ts(addr):
    with dime.TupleSpace(addr) as space:
        yield space


# ------------------------------------------------------ worker functions

def lindy_worker(ts):
    """lindypy's README worker: sum any 4-tuple into the ("sum", n) tuple
    (plus a ("done",) receipt so the test knows when all are summed)."""
    while True:
        t = ts.in_((object, object, object, object))
        s = ts.in_(("sum", object))
        ts.out(("sum", s[1] + sum(t)))
        ts.out(("done",))


def failing_worker(ts, message):
    raise ValueError(message)


def blocked_forever(ts):
    ts.out(("ready", os.getpid()))
    ts.in_(("never",))


def churn(ts, idx, n):
    ts.rd(("go",), 30)
    taken = []
    for i in range(n):
        ts.out(("job", idx, i))
        _, j, k = ts.in_(("job", int, int), 30)
        taken.append(j * n + k)
    ts.out(("taken", idx, taken))


# ---------------------------------------------------------------- lindypy

def test_lindypy_example(addr):
    rng = np.random.default_rng(7)
    quads = [tuple(int(x) for x in rng.integers(-100, 100, 4)) for _ in range(40)]
    with dime.TupleSpace(addr) as ts:
        ts.out(("sum", 0))
        workers = [ts.eval(lindy_worker) for _ in range(5)]
        for q in quads:
            ts.out(q)
        for _ in quads:
            ts.in_(("done",), timeout=30)
        assert ts.in_(("sum", int), timeout=5) == ("sum", sum(map(sum, quads)))
        assert ts.inp(("sum", object)) is None
        assert all(p.is_alive() for p in workers)
    # leaving the with block stopped the workers
    assert not any(p.is_alive() for p in workers)
    assert ts.closed


def test_eval_error_tuple(ts):
    ts.eval(failing_worker, "bad input 42")
    tag, tname, message, tb = ts.in_(("error", str, str, str), timeout=30)
    assert (tag, tname, message) == ("error", "ValueError", "bad input 42")
    assert "Traceback" in tb and "failing_worker" in tb and "ValueError: bad input 42" in tb


def test_context_manager_stops_blocked_workers(addr):
    with dime.TupleSpace(addr) as ts:
        p = ts.eval(blocked_forever)
        assert ts.in_(("ready", int), timeout=30)[1] == p.pid
        assert ts.workers == [p]
    assert not p.is_alive() and p.exitcode == -signal.SIGTERM
    with dime.TupleSpace(addr) as again:
        # the dead worker's blocked in_ was withdrawn: the tuple is stored
        again.out(("never",))
        assert again.count(("never",)) == 1


# ------------------------------------------------------ blocking, timeouts

def _later(addr, delay, tup):
    def run():
        time.sleep(delay)
        with dime.TupleSpace(addr) as o:
            o.out(tup)
    th = threading.Thread(target=run)
    th.start()
    return th


def test_blocking_in_wakes_on_out(ts, addr):
    th = _later(addr, 0.3, ("wake", 1.5, np.eye(2)))
    t = time.monotonic()
    got = ts.in_(("wake", float, np.ndarray), timeout=10)
    assert 0.25 < time.monotonic() - t < 5
    assert type(got) is tuple and got[:2] == ("wake", 1.5)
    assert_same(np.eye(2), got[2])
    th.join()
    assert ts.count(("wake", object, object)) == 0
    th = _later(addr, 0.2, ("wake", 2))
    assert ts.take(("wake", int), timeout=10) == ("wake", 2)
    th.join()


def test_timeouts_raise(ts):
    for op in (ts.in_, ts.rd):
        t = time.monotonic()
        with pytest.raises(dime.DimeTimeoutError) as info:
            op(("nothing", int), timeout=0.2)
        assert isinstance(info.value, TimeoutError)
        assert 0.19 <= time.monotonic() - t < 3
    # a timed-out in_ never takes a tuple afterwards
    ts.out(("nothing", 1))
    assert ts.count(("nothing", int)) == 1
    assert ts.inp(("absent",)) is None and ts.rdp(("absent",)) is None
    assert ts.in_(("nothing", 1), timeout=0) == ("nothing", 1)
    with pytest.raises(TimeoutError):
        ts.in_(("nothing", 1), timeout=0)


def test_rd_waiters_get_copies_and_in_waiter_takes(ts, addr):
    results = {}

    def waiter(name, op):
        with dime.TupleSpace(addr) as mine:
            results[name] = getattr(mine, op)(("x", int), timeout=10)

    threads = [threading.Thread(target=waiter, args=(f"rd{i}", "rd")) for i in range(3)]
    threads.append(threading.Thread(target=waiter, args=("in", "in_")))
    for th in threads:
        th.start()
    time.sleep(0.5)                     # all four are waiting on the server
    ts.out(("x", 7))
    for th in threads:
        th.join(10)
    assert results == {"rd0": ("x", 7), "rd1": ("x", 7), "rd2": ("x", 7), "in": ("x", 7)}
    assert ts.count(("x", int)) == 0    # the in_ waiter took it; nothing stored
    ts.out(("y", 1))
    assert ts.rd(("y", int)) == ("y", 1) and ts.rdp(("y", int)) == ("y", 1)
    assert ts.count(("y", int)) == 1    # rd leaves it


def test_fifo(ts, addr):
    # stored tuples: oldest first
    for i in range(10):
        ts.out(("f", i))
    assert ts.rdp(("f", int)) == ("f", 0)
    assert [ts.inp(("f", int))[1] for _ in range(5)] + [ts.in_(("f", int))[1] for _ in range(5)] \
        == list(range(10))
    # waiters: the longest-waiting in_ is served first
    got = []

    def waiter(name):
        with dime.TupleSpace(addr) as mine:
            got.append((name, mine.in_(("w", int), timeout=10)[1]))

    threads = []
    for name in "abc":
        th = threading.Thread(target=waiter, args=(name,))
        th.start()
        threads.append(th)
        time.sleep(0.25)
    for i in range(3):
        ts.out(("w", i))
        time.sleep(0.05)
    for th in threads:
        th.join(10)
    assert sorted(got) == [("a", 0), ("b", 1), ("c", 2)]


def test_no_tuple_lost_or_duplicated(ts):
    procs = [ts.eval(churn, i, NCHURN) for i in range(NPROC)]
    ts.out(("go",))
    taken = []
    for _ in procs:
        _, idx, ids = ts.in_(("taken", int, list), timeout=60)
        taken.extend(ids)
    for p in procs:
        p.join(10)
    assert [p.exitcode for p in procs] == [0] * NPROC
    assert len(taken) == NPROC * NCHURN
    assert sorted(taken) == list(range(NPROC * NCHURN))
    assert ts.count(("job", object, object)) == 0


# ------------------------------------------------------------- patterns

VALUES = {
    "null": None, "bool": True, "int64": 5, "int16": np.int16(5), "uint8": np.uint8(5),
    "double": 2.5, "single": np.float32(2.5), "cdouble": 1 + 2j, "csingle": np.complex64(1 + 2j),
    "str": "s", "list": [1, 2], "map": {"a": 1},
    "m2d": np.ones((2, 2)), "m1d": np.arange(3.0), "m3d-i16": np.zeros((2, 2, 2), np.int16),
    "mbool": np.array([[True, False], [False, True]]), "big": 1 << 40, "neg": -3.5,
}
NUMS = {"int64", "int16", "uint8", "double", "single", "big", "neg"}
MATS = {"m2d", "m1d", "m3d-i16", "mbool"}

PATTERN_CASES = [
    ("object", object, set(VALUES)),
    ("NoneType", type(None), {"null"}),
    ("bool", bool, {"bool"}),
    ("np.bool_", np.bool_, {"bool"}),
    ("int", int, {"int64", "int16", "uint8", "big"}),
    ("float", float, {"double", "single", "neg"}),
    ("complex", complex, {"cdouble", "csingle"}),
    ("str", str, {"str"}),
    ("list", list, {"list"}),
    ("tuple", tuple, {"list"}),
    ("dict", dict, {"map"}),
    ("np.int16", np.int16, {"int16"}),
    ("np.int64", np.int64, {"int64", "big"}),
    ("np.uint8", np.uint8, {"uint8"}),
    ("np.int32", np.int32, set()),
    ("np.float32", np.float32, {"single"}),
    ("np.float64", np.float64, {"double", "neg"}),
    ("np.complex64", np.complex64, {"csingle"}),
    ("np.complex128", np.complex128, {"cdouble"}),
    ("np.ndarray", np.ndarray, MATS),
    ("Matrix()", dime.Matrix(), MATS),
    ("Matrix-f8", dime.Matrix(np.float64), {"m2d", "m1d"}),
    ("Matrix-f8-rank2", dime.Matrix(np.float64, rank=2), {"m2d"}),
    ("Matrix-f8-rank1", dime.Matrix("float64", rank=1), {"m1d"}),
    ("Matrix-any-rank3", dime.Matrix(None, 3), {"m3d-i16"}),
    ("Matrix-bool", dime.Matrix(bool), {"mbool"}),
    ("dtype-int16", np.dtype("int16"), {"m3d-i16"}),
    ("dtype-f4", np.dtype(np.float32), set()),
    ("Range(0,10)", dime.Range(0, 10), {"int64", "int16", "uint8", "double", "single"}),
    ("Range(3,None)", dime.Range(3, None), {"int64", "int16", "uint8", "big"}),
    ("Range(None,3)", dime.Range(None, 3), {"double", "single", "neg"}),
    ("Range(5,5)", dime.Range(5, 5), {"int64", "int16", "uint8"}),
    ("Range()", dime.Range(), NUMS),
    ("Range(2**40)", dime.Range(1 << 40, 1 << 40), {"big"}),
    ("value-5", 5, {"int64"}),
    ("value-int16", np.int16(5), {"int16"}),
    ("value-2.5", 2.5, {"double"}),
    ("value-f32", np.float32(2.5), {"single"}),
    ("value-none", None, {"null"}),
    ("value-true", True, {"bool"}),
    ("value-complex", 1 + 2j, {"cdouble"}),
    ("value-str", "s", {"str"}),
    ("value-list", [1, 2], {"list"}),
    ("value-tuple", (1, 2), {"list"}),
    ("value-map", {"a": 1}, {"map"}),
    ("value-matrix", np.ones((2, 2)), {"m2d"}),
    ("value-matrix-other-shape", np.ones((4, 1)), set()),
]


def test_pattern_fields(ts):
    for name, v in VALUES.items():
        ts.out(("pm", name, v))
    assert ts.count(("pm", str, object)) == len(VALUES)
    assert ts.count(("pm", object)) == 0                  # arity must match
    for pid, field, expected in PATTERN_CASES:
        got = {name for name in VALUES if ts.count(("pm", name, field)) == 1}
        assert got == expected, pid
        # the wildcard in the first field position too (indexed by type)
        if expected:
            ts.out((VALUES[sorted(expected)[0]], "first"))
            assert ts.inp((field, "first")) is not None, pid
            assert ts.inp((object, "first")) is None, pid


def test_compile_pattern():
    assert compile_pattern((object, int, np.float32, np.ndarray, dime.Matrix(np.float64, 2),
                            np.dtype("int8"), dime.Range(0, None), "x", type(None), np.intc)) == [
        ("any",), ("type", "int"), ("type", "single"), ("matrix", 0, -1), ("matrix", 12, 2),
        ("matrix", 3, -1), ("range", 0, None), ("value", "x"), ("type", "null"), ("type", "int32")]
    with pytest.raises(TypeError):
        compile_pattern("abc")
    with pytest.raises(TypeError, match="set"):
        compile_pattern((set,))
    with pytest.raises(ValueError):
        dime.Range(3, 1)
    with pytest.raises(ValueError):
        dime.Range(float("nan"))
    with pytest.raises(TypeError):
        dime.Matrix(np.float16)
    with pytest.raises(ValueError):
        dime.Matrix(rank=256)
    for x in (dime.Range(1, 2), dime.Matrix(np.int8, 2)):
        assert pickle.loads(pickle.dumps(x)) == x


def test_bad_patterns_and_tuples_leave_the_connection_usable(ts):
    with pytest.raises(TypeError):
        ts.out("not a tuple")
    with pytest.raises(TypeError):
        ts.out(({1, 2},))
    with pytest.raises(TypeError):
        ts.inp((set,))
    with pytest.raises(ValueError):
        ts.inp((dime.Range((1 << 60) + 1, None),))      # not exact as a double
    ts.out(())
    assert ts.inp(()) == ()
    ts.out([1, "list"])
    assert ts.inp((1, str)) == (1, "list")


# ------------------------------------------------------ every type-table row

def test_every_type_as_a_field(ts):
    for i, (cid, sent, expected) in enumerate(CASES):
        ts.out(("case", i, sent))
    for i, (cid, sent, expected) in enumerate(CASES):
        got = ts.in_(("case", i, object), timeout=5)
        assert_same(sent if expected is None else expected, got[2], cid)
    # exact-value fields match what was sent, bit for bit
    for i, (cid, sent, expected) in enumerate(CASES):
        ts.out(("exact", sent))
        assert ts.count(("exact", sent)) == 1, cid
        assert ts.inp(("exact", sent)) is not None, cid


def test_names_and_clients(server, addr):
    with dime.TupleSpace(addr, "a") as a, dime.TupleSpace(addr, "b") as b:
        a.out((1,))
        assert b.inp((int,)) is None and a.inp((int,)) == (1,)
        assert "'a'" in repr(a)
    c = server.client()
    s = dime.TupleSpace(c)
    s.out(("via", "client"))
    s.close()
    assert not c.closed
    with pickle.loads(pickle.dumps(dime.TupleSpace(addr))) as again:
        assert again.inp(("via", str)) == ("via", "client")
