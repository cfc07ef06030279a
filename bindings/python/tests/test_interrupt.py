"""Ctrl-C and blocking calls: the sliced waits (``dime._wait``) let a
SIGINT raise KeyboardInterrupt in a process blocked forever in
``DimeClient.wait``, ``Share.wait_for`` or ``TupleSpace.rd``, leaving its
connection usable; their timeouts still add up exactly; and the FIFO waits
(``Share.lock``, ``TupleSpace.in_``), which are not sliced, keep their
place in line for longer than a slice."""

import os
import pathlib
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

import dime
from dime import _lib, _wait

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]

# The child connects, prints "blocking" just before it blocks forever in
# one call, and on KeyboardInterrupt prints "interrupted", proves with one
# more round trip that no reply was left on the wire, and prints "usable".
CHILD = r"""
import signal, sys
# Python leaves SIGINT alone if it started ignored (a background job):
# install the default handler so the test does not depend on how it runs.
signal.signal(signal.SIGINT, signal.default_int_handler)
import dime

addr, call = sys.argv[1], sys.argv[2]
timeout = None if sys.argv[3] == "None" else float(sys.argv[3])
if call == "wait":
    obj = dime.DimeClient(addr)
    obj.join("g")
    block = lambda: obj.wait(timeout)
    def check():
        obj.send_r("g", x=1)
        assert obj.wait(5) == 1 and obj.sync_r() == {"x": 1}
elif call == "wait_for":
    obj = dime.Share(addr)
    block = lambda: obj.wait_for("never", timeout)
    def check():
        obj["k"] = 1
        assert obj.wait_for("k", 5) == 1 and obj["k"] == 1
elif call == "rd":
    obj = dime.TupleSpace(addr)
    block = lambda: obj.rd(("never",), timeout)
    def check():
        obj.out(("k", 1))
        assert obj.rd(("k", int), 5) == ("k", 1) and obj.count(("k", int)) == 1
print("blocking", flush=True)
try:
    block()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    check()
    print("usable", flush=True)
else:
    print("returned", flush=True)
"""


class Child:
    """``CHILD`` in a fresh interpreter (this venv's, with the working copy
    of the package), its stdout lines read into a queue."""

    def __init__(self, addr, call, timeout):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_DIR), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, addr, call, str(timeout)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self._lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            self._lines.put(raw.decode().rstrip("\n"))
        self._lines.put(None)

    def line(self, timeout):
        """The next line, None at EOF, "<timeout>" if none comes in time."""
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return "<timeout>"

    def stop(self):
        """Kills the child if it still runs; its stderr."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        return self.proc.stderr.read().decode("utf-8", "replace")


@pytest.mark.parametrize("timeout", [None, 3600], ids=["forever", "long"])
@pytest.mark.parametrize("call", ["wait", "wait_for", "rd"])
def test_ctrl_c_interrupts_a_blocked_call_and_the_connection_stays_usable(server, call, timeout):
    child = Child(f"unix:{server.unix_path}", call, timeout)
    try:
        assert child.line(20) == "blocking"
        # Well inside the library, past the end of the first slice.
        time.sleep(1.5 * _wait.WAIT_SLICE)
        assert child.proc.poll() is None
        child.proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        got = child.line(2)
        waited = time.monotonic() - sent
        assert got == "interrupted", f"no KeyboardInterrupt within 2 s of SIGINT (got {got!r})"
        assert waited < 2
        assert child.line(10) == "usable"
        assert child.proc.wait(10) == 0
    finally:
        err = child.stop()
    assert "Traceback" not in err, err


# ------------------------------------------------------- sliced()'s arithmetic

class FakeCall:
    """Stands in for a libdime wait: records the timeout_ms it is given,
    sleeps that long and times out, or returns ``results`` in turn."""

    def __init__(self, results=()):
        self.asked = []
        self.results = list(results)

    def __call__(self, ms):
        self.asked.append(ms)
        if self.results:
            return self.results.pop(0)
        time.sleep(ms / 1000)
        return _lib.STATUS_TIMEOUT


def test_sliced_waits_add_up_to_the_timeout_not_to_whole_slices(monkeypatch):
    monkeypatch.setattr(_wait, "WAIT_SLICE", 0.05)
    call = FakeCall()
    t = time.monotonic()
    assert _wait.sliced(call, 0.12) == _lib.STATUS_TIMEOUT
    assert time.monotonic() - t >= 0.12
    assert len(call.asked) >= 3 and max(call.asked) <= 50
    assert call.asked[-1] < 50                          # the rest, not a whole slice
    assert sum(call.asked) <= 120 + len(call.asked)     # ceil: at most 1 ms per call


def test_sliced_forever_and_zero(monkeypatch):
    monkeypatch.setattr(_wait, "WAIT_SLICE", 0.05)
    call = FakeCall([_lib.STATUS_TIMEOUT] * 3 + [_lib.STATUS_OK])
    assert _wait.sliced(call, None) == _lib.STATUS_OK   # forever: slices until an answer
    assert call.asked == [50] * 4                       # never WAIT_FOREVER (-1)
    call = FakeCall([_lib.STATUS_CONNECTION_LOST])
    assert _wait.sliced(call, None) == _lib.STATUS_CONNECTION_LOST
    assert call.asked == [50]
    call = FakeCall()
    assert _wait.sliced(call, 0) == _lib.STATUS_TIMEOUT  # 0: one check
    assert call.asked == [0]
    assert _wait.seconds(float("inf")) is None
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError):
            _wait.seconds(bad)


# ------------------------------------------------ FIFO waits are not sliced

def _two_waiters(first, second, grant):
    """Starts ``first`` waiting, then ``second`` half a slice later; at
    2.25 slices calls ``grant`` and waits for both.

    Were the waits sliced, the first waiter would have re-queued at 2
    slices, behind the second (re-queued at 1.5), and be served second."""
    threads = [threading.Thread(target=f) for f in (first, second)]
    threads[0].start()
    time.sleep(0.5 * _wait.WAIT_SLICE)
    threads[1].start()
    time.sleep(1.75 * _wait.WAIT_SLICE)
    grant()
    for th in threads:
        th.join(10)
    assert not any(th.is_alive() for th in threads)


def test_lock_waiter_keeps_its_place_past_a_slice(server):
    addr = f"unix:{server.unix_path}"
    served = []
    with dime.Share(addr) as holder, dime.Share(addr) as a, dime.Share(addr) as b:
        holder.lock("k")

        def take(share, name):
            with share.lock("k", timeout=10):
                served.append(name)         # while holding it: in grant order

        _two_waiters(lambda: take(a, "a"), lambda: take(b, "b"), lambda: holder.unlock("k"))
    assert served == ["a", "b"]


def test_in_waiter_keeps_its_place_past_a_slice(server):
    addr = f"unix:{server.unix_path}"
    got = {}
    with dime.TupleSpace(addr) as ts, dime.TupleSpace(addr) as a, dime.TupleSpace(addr) as b:

        def take(space, name):
            got[name] = space.in_(("w", int), timeout=10)[1]

        def put_two():
            ts.out(("w", 1))
            ts.out(("w", 2))

        _two_waiters(lambda: take(a, "a"), lambda: take(b, "b"), put_two)
    assert got == {"a": 1, "b": 2}
