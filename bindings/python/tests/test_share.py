"""dime.Share against a real server: the mapping API, atomic operations,
locks (and a holder killed with SIGKILL), wait_for, every type-table row,
init_share() auto-start / auto-exit, and new_proc children."""

import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest

import dime
from conftest import DIME_BIN
from same import assert_same
from test_types import CASES

NPROC = 8
NINCR = 1000


@pytest.fixture
def addr(server):
    return f"unix:{server.unix_path}"


@pytest.fixture
def share(addr):
    with dime.Share(addr) as s:
        yield s


# ------------------------------------------------------- child processes
# (top level: new_proc pickles them by name into a spawned interpreter)

def locked_incrementer(s, n):
    s.wait_for("go", 30)
    for _ in range(n):
        with s.lock():
            s["n"] = s["n"] + 1


def atomic_incrementer(s, n):
    s.wait_for("go", 30)
    for _ in range(n):
        s.incr("n")


def naive_incrementer(s, n):
    s.wait_for("go", 30)
    for _ in range(n):
        s["n"] = s["n"] + 1


def hold_lock_forever(s, key):
    s.lock(key)
    s["held"] = True
    time.sleep(120)


def child_hello(s, arg1, arg2):
    s["myresult"] = f"Hello World {arg1} {arg2}"
    s["pid"] = os.getpid()


def _race(share, fn):
    share["n"] = 0
    procs = [share.new_proc(fn, NINCR) for _ in range(NPROC)]
    share["go"] = True          # all start together (wait_for, no polling)
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * NPROC
    return share["n"]


# ------------------------------------------------------------ the races

def test_lock_makes_get_set_atomic(share):
    assert _race(share, locked_incrementer) == NPROC * NINCR


def test_incr_is_atomic_without_lock(share):
    assert _race(share, atomic_incrementer) == NPROC * NINCR


def test_naive_get_set_loses_updates(share):
    """The proof that the lock matters: the same loop without it loses updates."""
    got = _race(share, naive_incrementer)
    print(f"naive get+set: {got} of {NPROC * NINCR} increments survived")
    assert 0 < got < NPROC * NINCR


# ------------------------------------------------------------------ locks

@pytest.mark.parametrize("key", [None, "k"], ids=["share-lock", "key-lock"])
def test_lock_of_killed_holder_goes_to_waiter(share, addr, key):
    p = share.new_proc(hold_lock_forever, key)
    try:
        assert share.wait_for("held", 30) is True
        with dime.Share(addr) as waiter:
            assert not waiter.try_lock(key)
            got = {}

            def wait():
                with waiter.lock(key, timeout=20):
                    got["t"] = time.monotonic()

            th = threading.Thread(target=wait)
            th.start()
            time.sleep(0.3)
            assert th.is_alive(), "the waiter got a lock that is held"
            killed = time.monotonic()
            os.kill(p.pid, signal.SIGKILL)
            th.join(5)
            assert "t" in got
            assert got["t"] - killed < 1.0
    finally:
        p.kill()
        p.join()


def test_share_lock_holds_back_other_writers(share, addr):
    with dime.Share(addr) as other:
        done = threading.Event()

        def write():
            other["x"] = 2
            done.set()

        with share.lock() as lk:
            assert lk.held
            share["x"] = 1                      # the holder writes freely
            th = threading.Thread(target=write)
            th.start()
            assert not done.wait(0.3), "a write went through another client's share lock"
            with dime.Share(addr) as reader:
                assert reader["x"] == 1         # reads do not wait
        assert done.wait(5)
        th.join()
        assert share["x"] == 2


def test_lock_errors_and_timeouts(share, addr):
    lk = share.lock("a")
    with pytest.raises(dime.DimeServerError):
        share.lock("a")                         # not re-entrant
    with dime.Share(addr) as other:
        t = time.monotonic()
        with pytest.raises(TimeoutError):
            other.lock("a", timeout=0.2)
        assert time.monotonic() - t >= 0.19
        assert other.try_lock("b")              # named locks are independent
        other.unlock("b")
        with pytest.raises(dime.DimeServerError):
            other.unlock("a")                   # not the holder
    lk.release()
    with pytest.raises(RuntimeError):
        lk.release()
    with pytest.raises(dime.DimeServerError):
        share.unlock("a")
    assert share.try_lock()
    share.unlock()


# -------------------------------------------------------------- wait_for

def test_wait_for_wakes_on_set(share, addr):
    def later():
        time.sleep(0.3)
        with dime.Share(addr) as w:
            w["k"] = np.arange(3.0)

    th = threading.Thread(target=later)
    th.start()
    t = time.monotonic()
    got = share.wait_for("k", timeout=10)
    assert 0.25 < time.monotonic() - t < 5
    assert_same(np.arange(3.0), got)
    th.join()
    assert share.wait_for("k", timeout=0) is not None     # present: at once, not removed
    assert "k" in share


def test_wait_for_times_out(share):
    t = time.monotonic()
    with pytest.raises(dime.DimeTimeoutError) as info:
        share.wait_for("never", timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    assert 0.29 <= time.monotonic() - t < 3
    share["after"] = 1                  # the connection stays usable
    assert share["after"] == 1


# ------------------------------------------------------------ mapping API

def test_mapping_api(share, addr):
    assert len(share) == 0 and list(share) == [] and "a" not in share
    with pytest.raises(KeyError):
        share["a"]
    with pytest.raises(KeyError):
        del share["a"]
    share["b"] = 2
    share["a"] = "one"
    assert share["a"] == "one" and "a" in share and 1 not in share
    assert list(share.keys()) == ["a", "b"] and len(share) == 2
    assert sorted(share) == ["a", "b"] and share.key_list() == ["a", "b"]
    assert dict(share) == {"a": "one", "b": 2} and share.copy() == {"a": "one", "b": 2}
    assert share.get("zz") is None and share.get("zz", 5) == 5 and share.get("b") == 2
    del share["b"]
    assert "b" not in share
    assert share.pop("a") == "one" and share.pop("a", "dflt") == "dflt"
    with pytest.raises(KeyError):
        share.pop("a")
    share.update({"x": 1, "y": [1, "two"]}, z=3.5)
    assert share.get_many(["x", "y", "nope", "z"]) == {"x": 1, "y": [1, "two"], "z": 3.5}
    share.update([("p", None)])
    assert share["p"] is None
    with pytest.raises(TypeError):
        share.update({1: 2})
    assert share.setdefault("x", 9) == 1 and share.setdefault("new", 9) == 9 and share["new"] == 9
    share.clear()
    assert len(share) == 0
    with pytest.raises(TypeError):
        share[1] = 2
    # names are separate shares; the default one is ""
    with dime.Share(addr, "other") as o:
        o["x"] = "o"
        share["x"] = "d"
        assert o["x"] == "o" and share["x"] == "d" and o.name == "other"
        assert "other" in repr(o)
    # a Share pickles as (address, name) and reconnects
    with pickle.loads(pickle.dumps(share)) as again:
        assert again["x"] == "d" and again.address == share.address


def test_incr_and_cas(share):
    assert share.incr("n") == 1 and share.incr("n", 5) == 6 and share.incr("n", -10) == -4
    assert share.incr("f", 0.5) == 0.5 and share.incr("f") == 1.5
    assert share.incr("n", 0.5) == -3.5          # int + float -> float
    share["i16"] = np.int16(7)
    got = share.incr("i16", 1)
    assert type(got) is np.int16 and got == 8
    share["s"] = "text"
    with pytest.raises(dime.DimeServerError):
        share.incr("s")
    with pytest.raises(TypeError):
        share.incr("n", "1")
    share["big"] = (1 << 63) - 1
    with pytest.raises(dime.DimeServerError):
        share.incr("big")
    assert share["big"] == (1 << 63) - 1
    # compare-and-swap
    assert share.cas("c", dime.ABSENT, "first") is True
    assert share.cas("c", dime.ABSENT, "second") is False
    assert share.cas("c", "wrong", "x") is False and share["c"] == "first"
    assert share.cas("c", "first", [1, 2]) is True and share["c"] == [1, 2]
    share["one"] = 1
    assert share.cas("one", 1.0, 2) is False     # same type and bits only
    assert share.cas("one", 1, 2) is True and share["one"] == 2
    share["nan"] = float("nan")
    assert share.cas("nan", float("nan"), 0.0) is True


def test_shares_a_dimeclient_connection(server, addr):
    c = server.client()
    s = dime.Share(c, "via-client")
    s["k"] = 1
    assert s.client is c and s.address == c.address
    s.close()
    assert not c.closed                  # the client's connection is its own
    with dime.Share(addr, "via-client") as t:
        assert t["k"] == 1
    with pytest.raises(dime.DimeConnectionError):
        s["k"]


# ------------------------------------------------------ every type-table row

def test_every_type_round_trips(share):
    for cid, sent, expected in CASES:
        share[cid] = sent
    for cid, sent, expected in CASES:
        assert_same(sent if expected is None else expected, share[cid], cid)
    many = share.get_many([c[0] for c in CASES])
    assert list(many) == [c[0] for c in CASES]
    for cid, sent, expected in CASES:
        assert_same(sent if expected is None else expected, many[cid], cid)
        assert share.cas(cid, sent, "swapped"), cid     # stored exactly as sent


def test_update_sends_every_type_at_once(share):
    share.update({c[0]: c[1] for c in CASES})
    for cid, sent, expected in CASES:
        assert_same(sent if expected is None else expected, share.pop(cid), cid)
    assert len(share) == 0


# ------------------------------------------------- init_share and new_proc

def test_new_proc_children(share):
    p = share.new_proc(child_hello, "a", 2)
    assert share.wait_for("myresult", 30) == "Hello World a 2"
    p.join(30)
    assert p.exitcode == 0 and share["pid"] == p.pid and share["pid"] != os.getpid()


def test_find_server(monkeypatch):
    monkeypatch.setenv("DIME_BIN", DIME_BIN)
    assert dime.find_server() == DIME_BIN
    monkeypatch.delenv("DIME_BIN")
    found = dime.find_server()
    assert os.access(found, os.X_OK) and os.path.basename(found) == "dime"


def test_init_share_starts_and_stops_a_server(tmp_path, monkeypatch):
    sock = tmp_path / "auto.sock"
    address = f"unix:{sock}"
    monkeypatch.setenv("DIME_ADDRESS", address)      # never the user's /tmp/dime.sock
    monkeypatch.setenv("DIME_BIN", DIME_BIN)
    s = dime.init_share()
    srv = s.server
    try:
        assert srv is not None and s.address == address and sock.exists()
        s["hello"] = "world"
        p = s.new_proc(child_hello, "x", "y")
        assert s.wait_for("myresult", 30) == "Hello World x y"
        p.join(30)
        assert p.exitcode == 0
        again = dime.init_share(name="")              # a server runs: no new one
        assert again.server is None and again["hello"] == "world"
        again.close()
        time.sleep(0.5)
        assert srv.poll() is None, "the server left while a client was connected"
        t = time.monotonic()
        s.close()
        assert srv.wait(timeout=15) == 0              # clean exit by itself
        idle = time.monotonic() - t
        assert 2.5 <= idle < 10, idle
        assert not sock.exists()
        with pytest.raises(dime.DimeConnectionError):
            dime.init_share(start=False)
    finally:
        s.close()
        if srv is not None and srv.poll() is None:
            srv.kill()
