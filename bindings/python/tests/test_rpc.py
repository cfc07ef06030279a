"""Remote calls (dime.Client / dime.Server, shaped like teleport) against a
real broker: the ``dime`` binary of conftest's ``server`` fixture, or the
broker a ``dime.Server(address)`` runs inside this process.

Providers run in this process (``Server(client=DimeClient)``) or in
processes of their own (``rpc_provider.py``) where the test kills them or
needs real parallelism.
"""

import concurrent.futures
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import dime
from dime import _lib
from same import assert_same

HERE = pathlib.Path(__file__).resolve().parent
PACKAGE = HERE.parent


# ---------------------------------------------------------------- helpers

class Provider:
    """rpc_provider.py in a subprocess; ``ready`` once it serves."""

    def __init__(self, address, ident, embedded=False):
        env = dict(os.environ, PYTHONPATH=f"{PACKAGE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        argv = [sys.executable, str(HERE / "rpc_provider.py"), address, str(ident)]
        if embedded:
            argv.append("--embedded")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, text=True)
        self.lines = []
        self.address = None

    def expect(self, prefix, timeout=15):
        """Reads stdout lines until one starts with ``prefix``; its rest."""
        deadline = time.monotonic() + timeout
        result = []

        def read():
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                if line.startswith(prefix):
                    result.append(line[len(prefix):].strip())
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(max(0, deadline - time.monotonic()))
        if not result:
            self.proc.kill()
            raise AssertionError(f"provider never printed {prefix!r}: {self.lines}\n"
                                 f"{self.proc.stderr.read()}")
        return result[0]

    def ready(self):
        self.address = self.expect("ready")
        return self

    def stop(self):
        """SIGTERM; the number of echo calls it served."""
        self.proc.send_signal(signal.SIGTERM)
        served = int(self.expect("served"))
        self.proc.wait(10)
        return served

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def providers():
    started = []
    yield started
    for p in started:
        p.kill()


@pytest.fixture
def served(server):
    """A Server providing through its own DimeClient on the test broker;
    ``served.client()`` gives connected Clients."""
    conn = dime.DimeClient(*server.args("unix"))
    s = dime.Server(client=conn)
    clients = []

    def client(**kw):
        c = dime.Client(f"unix:{server.unix_path}", **kw)
        c.connect(retry=False)
        clients.append(c)
        return c

    s.client = client
    yield s
    for c in clients:
        c.close()
    s.close()
    conn.close()


def echo(x):
    return x


VALUES = {
    "none": None,
    "int": -(2 ** 40),
    "float": 2.5,
    "str": "héllo",
    "list": [1, "two", None, [3.5]],
    "f8-c": np.arange(12.0).reshape(3, 4),
    "i2-f": np.asfortranarray(np.arange(24, dtype=np.int16).reshape(2, 3, 4)),
    "bool": np.array([True, False, True]),
    "c16": np.array([1 + 2j, -3j]),
    "nested": {"obs": {"image": np.zeros((2, 4, 4), np.uint8), "reward": np.float32(1.5)},
               "done": False},
}


# ---------------------------------------------------------------- Python <-> Python

def test_every_value_round_trips_through_a_provider(served):
    served.bind("echo", echo)
    with served:
        c = served.client()
        for name, v in VALUES.items():
            assert_same(v, c.echo(v).result(timeout=10), name)
        assert_same(VALUES, c.call("echo", VALUES).result(timeout=10))


def test_numpy_arguments_arrive_as_arrays_the_provider_owns(served):
    seen = []

    def keep(d):
        seen.append(d["x"])
        d["x"][0, 0] = 99.0            # writable, and not the caller's memory
        return float(d["x"][0].sum())

    served.bind("keep", keep)
    with served:
        c = served.client()
        small = np.arange(6.0).reshape(2, 3)
        large = np.ones((300, 100))     # above _dimeb.SMALL: through the library
        assert c.keep({"x": small}).result(timeout=10) == 99.0 + 3.0
        assert c.keep({"x": large}).result(timeout=10) == 99.0 + 99.0
        assert small[0, 0] == 0.0 and large[0, 0] == 1.0
        assert seen[0].flags.writeable and not np.shares_memory(seen[0], small)
        assert isinstance(seen[1].base, dime.LibBuffer)   # taken over, not copied
        # and a large result comes back the same way
        served.bind("big", lambda n: np.full((n, 1000), 2.5))
        r = c.big(100).result(timeout=10)
        assert r.shape == (100, 1000) and isinstance(r.base, dime.LibBuffer)


def test_large_arrays_go_both_ways_exactly(served):
    """Large values are encoded as they are written (C and Fortran order)."""
    rng = np.random.default_rng(5)
    c_order = rng.standard_normal((1200, 1000))                      # 9.6 MB
    f_order = np.asfortranarray(rng.integers(-9, 9, (3000, 1000), dtype=np.int16))
    cube = rng.standard_normal((40, 50, 600)).astype(np.float32)    # N-d, C order

    def swap(d):
        return {"c": d["f"], "f": d["c"], "cube": d["cube"], "n": len(d)}

    served.bind("swap", swap)
    with served:
        r = served.client().swap({"c": c_order, "f": f_order, "cube": cube}).result(timeout=60)
    assert_same(f_order, r["c"])
    assert_same(c_order, r["f"])
    assert_same(cube, r["cube"])
    assert r["n"] == 3


def test_dime_client_calls_and_provides(server):
    """The DiME-style client: Server(client=d) provides, d.call calls."""
    d1 = server.client("unix")
    d2 = server.client("tcp")
    s = dime.Server(client=d1)
    s.bind("twice", lambda x: 2 * x)
    with s:
        f = d2.call("twice", 21, timeout=5)
        assert isinstance(f, concurrent.futures.Future)
        assert f.result(timeout=10) == 42
        d1.join("g")                    # the messaging connection is unaffected
        d2.send_r("g", v=1)
        assert d1.wait(timeout=5) == 1
    assert not d1.closed                # the server did not close a client it did not open


def test_futures_work_with_concurrent_futures(served):
    gate = threading.Event()

    def slow(x):
        gate.wait(10)
        return x * 10

    served.bind("slow", slow, workers=4)
    with served:
        c = served.client()
        fs = [c.slow(i) for i in range(4)]
        got = []
        fs[0].add_done_callback(lambda f: got.append(f.result()))
        done, pending = concurrent.futures.wait(fs, timeout=0.2)
        assert not done and len(pending) == 4
        assert not fs[1].done()
        gate.set()
        order = [f.result() for f in concurrent.futures.as_completed(fs, timeout=10)]
        assert sorted(order) == [0, 10, 20, 30]
        done, pending = concurrent.futures.wait(fs, timeout=10)
        assert len(done) == 4 and not pending
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [0]
        # a callback added after the fact runs at once
        late = []
        fs[2].add_done_callback(lambda f: late.append(f.result()))
        assert late == [20]


# ---------------------------------------------------------------- the embedded broker

def test_embedded_server_over_tcp_and_ipc(tmp_path):
    for address in ["tcp://127.0.0.1:0", f"ipc://{tmp_path}/rpc.sock",
                    f"unix:{tmp_path}/rpc2.sock", "tcp:127.0.0.1:0"]:
        server = dime.Server(address)
        server.bind("add", lambda d: {"sum": d["x"] + d["y"]})
        with server:
            if address.startswith("tcp"):
                assert not server.address.endswith(":0")
                port = int(server.address.rpartition(":")[2])
                client = dime.Client(f"tcp://localhost:{port}")
            else:
                assert server.address.startswith("ipc:///")        # the socket's path
                assert os.path.exists(server.address[len("ipc://"):])
                client = dime.Client(server.address)
            client.connect(retry=False)
            assert client.add({"x": 1, "y": 2}).result(timeout=10) == {"sum": 3}
            client.close()
        assert server.closed
        if not address.startswith("tcp"):       # the broker is gone with its socket file
            path = address[len("ipc://"):] if address.startswith("ipc:") else address[len("unix:"):]
            assert not os.path.exists(path)
            with pytest.raises(dime.DimeConnectionError):
                dime.Client(address).connect(retry=False)


def test_teleport_addresses_become_dime_listen_addresses():
    from dime.rpc import _connect_address, _listen_address, _url
    # (tests never listen beyond 127.0.0.1, so "*" is only translated here)
    assert _listen_address("tcp://*:2222") == "tcp:0.0.0.0:2222"
    assert _listen_address("tcp://127.0.0.1:0") == "tcp://127.0.0.1:0"
    assert _listen_address("/tmp/x.sock") == "unix:/tmp/x.sock"
    assert _connect_address("tcp:0.0.0.0:2222") == "tcp:127.0.0.1:2222"
    assert _connect_address("unix:/tmp/x.sock") == "unix:/tmp/x.sock"
    assert _url("tcp:127.0.0.1:5") == "tcp://127.0.0.1:5"
    assert _url("unix:/tmp/x.sock") == "ipc:///tmp/x.sock"


def test_teleport_topology_clients_connect_to_the_serving_process(tmp_path, providers):
    """The serving process runs the broker: clients connect straight to it."""
    p = Provider(f"ipc://{tmp_path}/tp.sock", 7, embedded=True)
    providers.append(p)
    p.ready()
    c = dime.Client(p.address)
    c.connect(timeout=10)
    assert c.echo([1, 2]).result(timeout=10) == {"p": 7, "x": [1, 2]}
    assert c.pid().result(timeout=10) == p.proc.pid
    c.close()
    assert p.stop() == 1


# The end of a child's script: a server on argv[1] binding ``f``, then run
# until Ctrl-C, which it reports with whether the server closed.
_SERVE_F = ("s = dime.Server(sys.argv[1])\n"
            "s.bind('f', lambda x: x)\n")
_RUN_UNTIL_CTRL_C = ("try:\n"
                     "    s.run()\n"
                     "except KeyboardInterrupt:\n"
                     "    print('stopped', s.closed, flush=True)\n")


def test_run_blocks_and_stops_on_ctrl_c(tmp_path):
    # SIGINT's default handler is installed even if the suite runs as a
    # background job (which starts with SIGINT ignored); SIGUSR1 dumps every
    # thread's stack, so a server that does not stop says where it is.
    code = ("import dime, faulthandler, signal, sys\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "faulthandler.register(signal.SIGUSR1, all_threads=True)\n"
            + _SERVE_F
            + "print('up', flush=True)\n"
            + _RUN_UNTIL_CTRL_C)
    env = dict(os.environ, PYTHONPATH=str(PACKAGE))
    proc = subprocess.Popen([sys.executable, "-c", code, f"ipc://{tmp_path}/cc.sock"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        c = dime.Client(f"ipc://{tmp_path}/cc.sock")
        c.connect(timeout=5)
        assert c.f(1).result(timeout=10) == 1
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)
            time.sleep(1)
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"the server did not stop on Ctrl-C; its threads:\n{err}")
        assert out.strip() == "stopped True"
        assert proc.returncode == 0
        c.close()
    finally:
        proc.kill()
        proc.wait()


def test_ctrl_c_between_a_borrow_and_its_give_back_still_stops_the_server(tmp_path):
    # Ctrl-C can land in the main thread anywhere, also after a lend and
    # before its give back (here: the first give back on the main thread,
    # made while starting). The server must still close and return.
    code = ("import dime, sys, threading\n"
            "from dime import _handle\n"
            "give_back, hit = _handle.Handle._give_back, []\n"
            "def interrupted(self):\n"
            "    if threading.current_thread() is threading.main_thread() and not hit:\n"
            "        hit.append(1)\n"
            "        raise KeyboardInterrupt\n"
            "    return give_back(self)\n"
            "_handle.Handle._give_back = interrupted\n"
            + _SERVE_F
            + _RUN_UNTIL_CTRL_C)
    env = dict(os.environ, PYTHONPATH=str(PACKAGE))
    out = subprocess.run([sys.executable, "-c", code, f"ipc://{tmp_path}/kb.sock"],
                         capture_output=True, env=env, text=True, timeout=30)
    assert out.stdout.strip() == "stopped True", out.stderr
    assert out.returncode == 0


def test_server_close_stops_its_workers_and_broker(tmp_path):
    server = dime.Server(f"ipc://{tmp_path}/close.sock")
    server.bind("f", lambda x: x, workers=3)
    server.start()
    threads = [t for t in threading.enumerate() if t.name.startswith("dime-Server-f-")]
    assert len(threads) == 3
    t0 = time.monotonic()
    server.close()
    assert time.monotonic() - t0 < 2
    assert not any(t.is_alive() for t in threads)
    server.close()                       # idempotent
    with pytest.raises(dime.DimeConnectionError):
        server.bind("g", echo)


# ---------------------------------------------------------------- errors

class Custom(Exception):
    pass


def test_remote_errors_keep_type_message_and_traceback(served):
    def fail(kind):
        if kind == "value":
            raise ValueError("bad value 42")
        if kind == "key":
            return {}["missing"]
        if kind == "file":
            raise FileNotFoundError("no such thing")
        raise Custom("my own")

    served.bind("fail", fail)
    with served:
        c = served.client()
        with pytest.raises(ValueError) as e:
            c.fail("value").result(timeout=10)
        err = e.value
        assert isinstance(err, dime.RemoteError) and isinstance(err, RuntimeError)
        assert err.error_type == "ValueError" and err.remote_message == "bad value 42"
        assert "in fail" in err.remote_traceback and 'raise ValueError("bad value 42")' in \
            err.remote_traceback
        assert "ValueError: bad value 42" in str(err)
        assert any("Remote traceback" in n for n in err.__notes__)
        with pytest.raises(KeyError):
            c.fail("key").result(timeout=10)
        f = c.fail("file")
        assert isinstance(f.exception(timeout=10), FileNotFoundError)
        assert isinstance(f.exception(), dime.RemoteError)
        with pytest.raises(dime.RemoteError) as e:
            c.fail("custom").result(timeout=10)
        assert type(e.value) is dime.RemoteError        # not a builtin: no mixin
        assert e.value.error_type.endswith("Custom") and "my own" in str(e.value)
        # one class per builtin type, cached
        with pytest.raises(ValueError) as e2:
            c.fail("value").result(timeout=10)
        assert type(e2.value) is type(err)
    with pytest.raises(ValueError, match="bad value 42"):
        served.check()                   # the provider side re-raises it too


def test_results_that_cannot_be_sent_fail_that_call(served):
    served.bind("unsendable", lambda x: {1, 2})
    with served:
        with pytest.raises(TypeError, match="set"):
            served.client().unsendable(None).result(timeout=10)


def test_a_call_nobody_provides_times_out(served):
    with served:
        c = served.client()
        t0 = time.monotonic()
        f = c.call("nobody", 1, timeout=0.3)
        with pytest.raises(TimeoutError) as e:
            f.result(timeout=10)
        assert isinstance(e.value, dime.NoProvider)
        assert 0.25 < time.monotonic() - t0 < 5
        with pytest.raises(concurrent.futures.TimeoutError):
            c.call("nobody", 1).result(timeout=0.2)     # the wait for the result


def test_a_call_waits_for_a_provider_that_comes_later(served):
    with served:
        c = served.client()
        f = c.call("later", 5)
        time.sleep(0.2)
        assert not f.done()
        served.bind("later", lambda x: x + 1)
        assert f.result(timeout=10) == 6


def test_provider_killed_mid_call_fails_the_call_within_a_second(server, providers):
    p = Provider(f"unix:{server.unix_path}", 1)
    providers.append(p)
    p.ready()
    c = dime.Client(f"unix:{server.unix_path}")
    c.connect(retry=False)
    f = c.slow(1)
    p.expect("started")
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGKILL)
    with pytest.raises(dime.ProviderLost) as e:
        f.result(timeout=5)
    assert time.monotonic() - t0 < 1.0
    assert isinstance(e.value, ConnectionError)
    assert isinstance(e.value, dime.DimeConnectionError)
    # the client is fine and the broker still routes
    s = dime.Server(client=dime.DimeClient(*server.args("unix")))
    s.bind("slow", lambda x: -x)
    with s:
        assert c.slow(3).result(timeout=10) == -3
    c.close()


def test_a_silent_broker_fails_calls_after_maxage(server, providers):
    """maxage: calls in flight fail when the broker goes silent (SIGSTOP)."""
    p = Provider(f"unix:{server.unix_path}", 1)
    providers.append(p)
    p.ready()
    c = dime.Client(f"tcp://127.0.0.1:{server.tcp_port}", maxage=0.5)
    c.connect(retry=False)
    f = c.slow(1)
    p.expect("started")
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with pytest.raises(dime.DimeConnectionError, match="maxage"):
            f.result(timeout=10)
        assert time.monotonic() - t0 < 3
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    c.close()


# ---------------------------------------------------------------- load

def test_eight_callers_three_providers_nothing_lost_or_duplicated(server, providers):
    ps = [Provider(f"unix:{server.unix_path}", i) for i in range(3)]
    providers.extend(ps)
    for p in ps:
        p.ready()
    n_callers, n_calls = 8, 1000
    results = {}
    errors = []

    def caller(k):
        try:
            c = dime.Client(f"unix:{server.unix_path}", maxinflight=32)
            c.connect(retry=False)
            fs = [c.echo({"caller": k, "i": i}) for i in range(n_calls)]
            results[k] = [f.result(timeout=60) for f in fs]
            c.close()
        except BaseException as e:       # reported below
            errors.append(e)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(n_callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    by_provider = [0, 0, 0]
    for k in range(n_callers):
        got = results[k]
        assert [r["x"] for r in got] == [{"caller": k, "i": i} for i in range(n_calls)]
        for r in got:
            by_provider[r["p"]] += 1
    served_counts = [p.stop() for p in ps]
    assert served_counts == by_provider             # each call ran exactly once
    assert sum(served_counts) == n_callers * n_calls
    assert min(served_counts) > 0.1 * n_callers * n_calls, served_counts   # spread


def test_maxinflight_blocks_the_caller(served):
    gate = threading.Event()
    served.bind("wait", lambda x: gate.wait(10) and x, workers=8)
    with served:
        c = served.client(maxinflight=2)
        f1, f2 = c.wait(1), c.wait(2)
        third = []
        t = threading.Thread(target=lambda: third.append(c.wait(3)))
        t.start()
        t.join(0.3)
        assert t.is_alive() and not third        # blocked: two unresolved calls
        gate.set()
        t.join(10)
        assert not t.is_alive()
        assert [f.result(timeout=10) for f in (f1, f2, third[0])] == [1, 2, 3]
        gate.clear()
        free = served.client(maxinflight=None)
        fs = [free.wait(i) for i in range(20)]  # no cap: none blocks
        assert not any(f.done() for f in fs)
        gate.set()
        assert [f.result(timeout=10) for f in fs] == list(range(20))


# ---------------------------------------------------------------- provider options

def test_workers_run_calls_at_once(served):
    running, peak, lock = [0], [0], threading.Lock()

    def work(x):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.1)
        with lock:
            running[0] -= 1
        return x

    served.bind("work", work, workers=3)
    with served:
        c = served.client()
        assert [f.result(timeout=10) for f in [c.work(i) for i in range(6)]] == list(range(6))
        assert peak[0] == 3                      # three at once, never more


def test_a_shared_pool_bounds_two_functions_together(served):
    running, peak, lock = [0], [0], threading.Lock()

    def work(x):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return x

    pool = concurrent.futures.ThreadPoolExecutor(2)
    served.bind("a", work, workers=3, pool=pool)
    served.bind("b", work, workers=3, pool=pool)
    with served:
        c = served.client()
        fs = [c.a(i) for i in range(6)] + [c.b(i) for i in range(6)]
        assert [f.result(timeout=10) for f in fs] == list(range(6)) * 2
    pool.shutdown()
    assert peak[0] == 2


def test_batching_stacks_calls_and_flushes_uneven_arrival(served):
    sizes = []

    def batched(d):
        sizes.append(len(d["k"]))
        time.sleep(0.05)
        assert d["v"].shape == (len(d["k"]), 2)
        return {"y": d["v"] * 2, "k": d["k"] + 100, "parts": [d["k"], d["k"] * 0]}

    served.bind("b", batched, batch=4)
    with served:
        c = served.client()
        fs = [c.b({"v": np.array([i, -i]), "k": i}) for i in range(10)]
        for i, f in enumerate(fs):
            r = f.result(timeout=10)
            # int64 scalars arrive as Python ints, as every int64 does
            assert_same({"y": np.array([2 * i, -2 * i]), "k": i + 100, "parts": [i, 0]}, r,
                        f"call {i}")
        assert sum(sizes) == 10 and max(sizes) == 4 and min(sizes) < 4, sizes
        # A lone call runs after the short wait, not when a batch fills up.
        sizes.clear()
        t0 = time.monotonic()
        assert c.b({"v": np.array([7, 7]), "k": 7}).result(timeout=5)["k"] == 107
        assert sizes == [1] and time.monotonic() - t0 < 1.0


def test_a_batch_whose_result_cannot_be_split_fails_each_call(served):
    served.batch_wait = 1.0                  # the three calls surely make one batch
    sizes = []

    def one_row(d):
        sizes.append(len(d["v"]))
        return {"y": np.zeros(1)}           # one row, whatever the batch size

    served.bind("b", one_row, batch=3)
    with served:
        c = served.client()
        fs = [c.b({"v": 1.0}) for _ in range(3)]
        excs = [f.exception(timeout=10) for f in fs]
    assert sizes == [3]
    assert all(isinstance(e, ValueError) and isinstance(e, dime.RemoteError) for e in excs)
    assert "first axis" in str(excs[0])


def test_donefn_runs_after_each_result_was_sent_in_order(served):
    done = []
    release = threading.Event()

    def work(x):
        return x * 2, f"info {x}"

    def donefn(info):
        release.wait(10)
        done.append(info)

    served.bind("w", work, donefn=donefn)
    with served:
        c = served.client()
        # results come back while donefn is still blocked: it runs after sending
        assert [c.w(i).result(timeout=10) for i in range(5)] == [0, 2, 4, 6, 8]
        assert done == []
        release.set()
        deadline = time.monotonic() + 5
        while len(done) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert done == [f"info {i}" for i in range(5)]


# ---------------------------------------------------------------- cancel, drop, connect

def test_cancel_withdraws_a_queued_call_and_discards_a_running_one(served):
    gate, ran = threading.Event(), []

    def block(x):
        ran.append(x)
        gate.wait(10)
        return x

    served.bind("block", block)              # one worker: the second call queues
    with served:
        c = served.client()
        running = c.block(1)
        deadline = time.monotonic() + 5
        while not ran and time.monotonic() < deadline:
            time.sleep(0.01)
        queued = c.block(2)
        assert queued.cancel() and queued.cancelled() and queued.done()
        with pytest.raises(concurrent.futures.CancelledError):
            queued.result(timeout=1)
        assert running.cancel()              # started: its result will be discarded
        with pytest.raises(concurrent.futures.CancelledError):
            running.result(timeout=1)
        gate.set()
        after = c.block(3)
        assert after.result(timeout=10) == 3
        assert ran == [1, 3]                  # the withdrawn call never ran
        assert not after.cancel()             # finished: stays a result
        assert after.result() == 3 and not after.cancelled()


def test_a_dropped_failed_future_is_raised_at_the_next_call(served):
    def fail(x):
        raise ValueError(f"dropped {x}")

    served.bind("fail", fail)
    served.bind("ok", echo)
    with served:
        c = served.client()
        c.fail(1)                               # dropped unread
        time.sleep(0.3)
        with pytest.raises(ValueError, match="dropped 1"):
            c.ok(2)
        assert c.ok(3).result(timeout=10) == 3  # raised once
        f = c.fail(4)
        assert isinstance(f.exception(timeout=10), ValueError)
        del f                                   # read before dropping: not raised again
        assert c.ok(5).result(timeout=10) == 5
        quiet = served.client(errors=False)
        quiet.fail(6)
        time.sleep(0.3)
        assert quiet.ok(7).result(timeout=10) == 7


def test_connect_before_the_server_exists(tmp_path):
    address = f"ipc://{tmp_path}/later.sock"
    client = dime.Client(address)
    with pytest.raises(dime.DimeConnectionError):
        client.connect(retry=False)
    t0 = time.monotonic()
    with pytest.raises(ConnectionError):
        client.connect(retry=True, timeout=0.3)
    assert 0.25 < time.monotonic() - t0 < 3
    connected = threading.Event()
    t = threading.Thread(target=lambda: (client.connect(retry=True, timeout=10),
                                         connected.set()))
    t.start()
    time.sleep(0.4)
    assert not connected.is_set()
    server = dime.Server(address)
    server.bind("hi", lambda name: f"hi {name}")
    with server:
        t.join(10)
        assert connected.is_set()
        assert client.hi("there").result(timeout=10) == "hi there"
        client.close()


def test_closing_a_client_fails_its_calls_in_flight(served):
    served.bind("never", lambda x: time.sleep(5))
    with served:
        c = served.client()
        f = c.never(1)
        got = []
        f.add_done_callback(lambda f: got.append(f.exception()))
        c.close()
        with pytest.raises(dime.DimeConnectionError):
            f.result(timeout=5)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert isinstance(got[0], dime.DimeConnectionError)
        with pytest.raises(dime.DimeConnectionError):
            c._caller.call("never", 1)


def test_library_statuses_for_remote_calls():
    assert (_lib.STATUS_REMOTE_ERROR, _lib.STATUS_PROVIDER_LOST, _lib.STATUS_CANCELLED,
            _lib.STATUS_NO_PROVIDER) == (7201, 7202, 7203, 7204)
