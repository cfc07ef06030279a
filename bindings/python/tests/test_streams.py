"""Streams Python -> Python through a real broker (conftest's ``server``):
generators bound with ``Server.bind_stream``, consumed by iterating
``Client.stream`` or with its callbacks."""

import gc
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import dime

HERE = os.path.dirname(os.path.abspath(__file__))

#: Items in the long stream test: 10**6 takes about 25 s against the debug
#: library (one dime_value built and read per item), so 2 x 10**5 here.
LONG = 2 * 10**5


@pytest.fixture
def addr(server):
    return f"unix:{server.sock_path}"


@pytest.fixture
def provider(addr):
    conn = dime.DimeClient(addr)
    srv = dime.Server(client=conn)
    yield srv
    srv.close()
    conn.close()


@pytest.fixture
def client(addr):
    c = dime.Client(addr)
    c.connect()
    yield c
    c.close()


def wait_until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_items_arrive_in_order_with_their_types(provider, client):
    def gen(data):
        for i in range(data["n"]):
            yield {"i": i, "a": np.arange(i, dtype=np.int32), "s": "x" * i}
    provider.bind_stream("gen", gen)
    provider.start()
    got = list(client.stream("gen", {"n": 50}))
    assert [g["i"] for g in got] == list(range(50))
    for i, g in enumerate(got):
        np.testing.assert_array_equal(g["a"], np.arange(i, dtype=np.int32))
        assert g["s"] == "x" * i


def test_large_items_arrive_whole(provider, client):
    # Past the size Python encodes itself: the library encodes and decodes.
    provider.bind_stream("big", lambda n: (np.full(300_000, i, dtype=np.float64) for i in range(n)))
    provider.start()
    got = list(client.stream("big", 5, items=2))
    assert len(got) == 5
    for i, a in enumerate(got):
        assert a.shape == (300_000,) and a.dtype == np.float64 and (a == i).all()


def test_empty_stream(provider, client):
    provider.bind_stream("none", lambda data: iter(()))
    provider.start()
    assert list(client.stream("none")) == []
    # The connection carries on.
    provider.bind_stream("one", lambda data: iter([data]))
    assert list(client.stream("one", 7)) == [7]


def test_a_million_items(provider, client):
    provider.bind_stream("count", lambda n: iter(range(n)))
    provider.start()
    t = time.monotonic()
    total = n = 0
    for item in client.stream("count", LONG):
        assert item == n
        total += item
        n += 1
    assert n == LONG and total == LONG * (LONG - 1) // 2
    print(f"{LONG} items in {time.monotonic() - t:.2f} s")


def test_window_bounds_the_producer(provider, client):
    made = []

    def gen(data):
        for i in range(1000):
            made.append(i)
            yield i
    provider.bind_stream("gen", gen)
    provider.start()
    s = client.stream("gen", items=8)
    # Nothing is read: the producer fills the window, then waits.
    assert wait_until(lambda: len(made) >= 8)
    time.sleep(0.3)
    assert len(made) <= 8 + 1, len(made)
    first = [next(s) for _ in range(20)]
    assert first == list(range(20))
    time.sleep(0.3)
    assert len(made) <= 20 + 8 + 1, len(made)
    assert list(s) == list(range(20, 1000))


def test_break_closes_the_generator_within_one_item(provider, client):
    made, closed = [], threading.Event()

    def gen(data):
        try:
            for i in range(10**9):
                made.append(i)
                yield i
        except GeneratorExit:
            closed.set()
            raise
    provider.bind_stream("gen", gen)
    provider.start()
    for item in client.stream("gen", items=4):
        if item == 10:
            break
    gc.collect()
    assert closed.wait(5), "the generator was not closed"
    # Read up to 10, window 4, and at most one more item made before the cancel landed.
    assert len(made) <= 10 + 1 + 4 + 1, len(made)


def test_explicit_close_and_gc_close_the_generator(provider, client):
    closed = []

    def gen(data):
        try:
            yield from range(10**9)
        finally:
            closed.append(data)
    provider.bind_stream("gen", gen, workers=2)
    provider.start()
    s = client.stream("gen", 1, items=2)
    assert next(s) == 0
    s.close()
    assert list(s) == []
    s = client.stream("gen", 2, items=2)
    assert next(s) == 0
    del s
    gc.collect()
    assert wait_until(lambda: sorted(closed) == [1, 2]), closed


def test_callbacks_with_false_stop(provider, client):
    closed = threading.Event()

    def gen(data):
        try:
            yield from range(10**9)
        except GeneratorExit:
            closed.set()
            raise
    provider.bind_stream("gen", gen)
    provider.start()
    got, ended = [], []
    h = client.stream("gen", None, on_item=lambda x: (got.append(x), x < 5)[1],
                      on_end=ended.append)
    assert h.join(5)
    assert got == list(range(6))
    assert ended == [None]
    assert closed.wait(5)


def test_callbacks_to_the_end_and_on_error(provider, client):
    def gen(data):
        yield from range(data)
        if data == 3:
            raise KeyError("k")
    provider.bind_stream("gen", gen)
    provider.start()
    got, ended = [], []
    h = client.stream("gen", 5, on_item=got.append, on_end=ended.append)
    assert h.join(5) and got == list(range(5)) and ended == [None]
    got, ended = [], []
    h = client.stream("gen", 3, on_item=got.append, on_end=ended.append)
    assert h.join(5) and got == [0, 1, 2]
    assert isinstance(ended[0], dime.RemoteError) and isinstance(ended[0], KeyError)


def test_producer_error_after_its_items(provider, client):
    def gen(data):
        yield 1
        yield 2
        raise ValueError("bad thing")
    provider.bind_stream("gen", gen)
    provider.errors = False
    provider.start()
    got = []
    with pytest.raises(ValueError) as info:
        for item in client.stream("gen"):
            got.append(item)
    assert got == [1, 2]
    assert isinstance(info.value, dime.RemoteError)
    assert "bad thing" in str(info.value)
    assert "ValueError" in info.value.remote_traceback


def test_calling_a_stream_with_call_is_an_error(provider, client):
    provider.bind_stream("gen", lambda d: iter([1]))
    provider.errors = False
    provider.start()
    with pytest.raises(TypeError, match="Client.stream"):
        client.call("gen", None).result(5)


PROVIDER = """
import sys, dime
conn = dime.DimeClient(sys.argv[1])
srv = dime.Server(client=conn)
def gen(data):
    i = 0
    while True:
        yield i
        i += 1
srv.bind_stream("forever", gen)
srv.start()
print("ready", flush=True)
sys.stdin.read()
"""


def test_killed_producer_is_provider_lost(addr, client):
    p = subprocess.Popen([sys.executable, "-c", PROVIDER, addr], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                             [os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")])})
    try:
        assert p.stdout.readline().strip() == b"ready"
        s = client.stream("forever", items=16)
        assert [next(s) for _ in range(100)] == list(range(100))
        p.kill()
        p.wait()
        with pytest.raises(dime.ProviderLost):
            for _ in s:
                pass
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_each_consumer_gets_its_own_generator(provider, addr):
    started = []

    def gen(data):
        started.append(data)
        for i in range(200):
            yield (data, i)
    provider.bind_stream("gen", gen, workers=3)
    provider.start()
    clients = [dime.Client(addr, connect=True) for _ in range(3)]
    results = {}

    def consume(k):
        results[k] = list(clients[k].stream("gen", k, items=4))
    try:
        threads = [threading.Thread(target=consume, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert sorted(started) == [0, 1, 2]
        for k in range(3):
            assert [tuple(x) for x in results[k]] == [(k, i) for i in range(200)]
    finally:
        for c in clients:
            c.close()


def test_no_provider_times_out(client):
    with pytest.raises(dime.NoProvider):
        list(client.stream("nobody", timeout=0.2))


def test_handle_close_while_its_thread_waits(provider, client):
    closed = threading.Event()

    def slow(data):
        try:
            while True:
                yield 1
                time.sleep(0.05)
        finally:
            closed.set()
    provider.bind_stream("slow", slow)
    provider.start()
    got = []
    h = client.stream("slow", None, on_item=got.append)
    assert wait_until(lambda: got)
    h.close(5)
    assert h.done and h.stream.closed
    assert closed.wait(5)


# ---- small items travel several per frame (docs/protocol-extensions.md,
# "Batches of items"); the consumer still sees them one at a time, in order

def _mixed(i):
    """Item i of a stream of mixed small items, with a large one now and then."""
    if i % 997 == 500:
        return np.full(20_000, i, dtype=np.float64)     # past _dimeb.SMALL: alone
    return [i, f"s{i}", np.arange(i % 7, dtype=np.int16), {"k": i}][i % 4]


def _same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


def test_batched_items_keep_their_order_around_large_ones(provider, client):
    provider.bind_stream("mixed", lambda n: (_mixed(i) for i in range(n)))
    provider.start()
    n = 5000
    got = list(client.stream("mixed", n, items=64))
    assert len(got) == n
    bad = [i for i, g in enumerate(got) if not _same(g, _mixed(i))]
    assert not bad, f"items out of place from {bad[0]}: {got[bad[0]]!r}"


def test_callbacks_get_batched_items_one_at_a_time_in_order(provider, client):
    provider.bind_stream("count", lambda n: iter(range(n)))
    provider.start()
    got, ended = [], []
    h = client.stream("count", 20_000, items=100, on_item=got.append, on_end=ended.append)
    assert h.join(30)
    assert ended == [None]
    assert got == list(range(20_000))


def test_an_error_after_fast_items_arrives_after_all_of_them(provider, client):
    def gen(n):
        yield from range(n)
        raise ValueError("after the items")
    provider.bind_stream("gen", gen)
    provider.errors = False
    provider.start()
    for n in (1, 2, 3000):
        got = []
        with pytest.raises(ValueError, match="after the items"):
            for item in client.stream("gen", n):
                got.append(item)
        assert got == list(range(n))


def test_a_generator_that_blocks_does_not_hold_back_its_items(provider, client):
    go_on = threading.Event()

    def gen(data):
        yield "first"
        yield "second"              # right behind the first: held for company...
        go_on.wait(20)              # ... which never comes while it blocks here
        yield "third"
    provider.bind_stream("gen", gen)
    provider.start()
    s = client.stream("gen")
    t = time.monotonic()
    assert next(s) == "first"
    assert next(s) == "second"
    waited = time.monotonic() - t
    go_on.set()
    assert list(s) == ["third"]
    assert waited < 2, f"the items waited {waited:.2f} s for the generator"


def test_break_closes_a_fast_generator_within_a_batch(provider, client):
    made, closed = [], threading.Event()

    def gen(data):
        try:
            for i in range(10**9):
                made.append(i)
                yield i
        except GeneratorExit:
            closed.set()
            raise
    provider.bind_stream("gen", gen)
    provider.start()
    for item in client.stream("gen", items=64):
        if item == 1000:
            break
    assert closed.wait(5), "the generator was not closed"
    # Read up to 1000, a window of 64 in flight, one more made before the
    # cancel landed.
    assert len(made) <= 1000 + 1 + 64 + 1, len(made)


def test_a_batched_item_the_lean_decoder_leaves_to_the_library():
    # A map whose key is a map (a C or MATLAB producer can send one) cannot
    # be a Python dict key: inside a batch it is decoded by the library,
    # which raises DimeCodecError naming the key, and the items around it
    # still decode.
    import struct
    from dime import _dimeb
    from dime.stream import _held_item

    before, after = _dimeb.encode([1, 2]), _dimeb.encode("after")
    bad = b"\x22" + struct.pack(">I", 1) + b"\x22" + struct.pack(">I", 0) + _dimeb.encode("v")
    held = before + bad + after
    a, b = len(before), len(before) + len(bad)
    assert _held_item(held, 0, a) == [1, 2]
    with pytest.raises(dime.DimeCodecError, match="map key of type dict"):
        _held_item(held, a, b)
    assert _held_item(held, b, len(held)) == "after"
