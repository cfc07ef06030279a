"""The Python binding against an original DiME2 server: the test double
tests/dime2_double.py, which knows only DiME2's commands and announces no
extensions. DiME2's calls work, ``wait`` blocks without spinning (counted
in requests and CPU time), and shares and tuple spaces raise
``DimeUnsupportedError``; against our server the extensions are there."""

import os
import pathlib
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import dime

REPO = pathlib.Path(__file__).resolve().parents[3]
DOUBLE = REPO / "tests" / "dime2_double.py"


class Dime2Double:
    """tests/dime2_double.py on a unix socket, logging every request."""

    def __init__(self, tmp):
        self.path = str(tmp / "dime2.sock")
        self.log = tmp / "requests.log"
        self.proc = subprocess.Popen(
            [sys.executable, str(DOUBLE), "-l", f"unix:{self.path}", "--log", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        line = self.proc.stderr.readline().decode()
        assert line.startswith("dime: listening on unix:"), line

    def client(self, *groups):
        c = dime.DimeClient("ipc", self.path)
        if groups:
            c.join(*groups)
        return c

    def count(self, command):
        """How many ``command`` requests the double has served."""
        if not self.log.exists():
            return 0
        return sum(1 for line in self.log.read_text().splitlines() if line == command)

    def cpu_seconds(self):
        """The double's user + system CPU time."""
        fields = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stderr.close()


@pytest.fixture
def old_server(tmp_path):
    d = Dime2Double(tmp_path)
    yield d
    d.stop()


def send_later(double, group, delay, **values):
    """Sends ``values`` to ``group`` from a fresh client after ``delay`` s."""
    def run():
        time.sleep(delay)
        with double.client() as c:
            c.send_r(group, **values)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_an_original_server_announces_nothing(old_server):
    with old_server.client() as d:
        assert d.server_extensions == frozenset()
        assert not d.supports("share")
        assert not d.supports("sync_wait")


def test_dime2_calls_round_trip(old_server):
    with old_server.client("py") as a, old_server.client("other") as b:
        a.send_r("py", m=np.arange(6.0).reshape(2, 3), s="text")
        b.broadcast_r(n=5)
        assert a.sync() == {"m", "s", "n"}
        np.testing.assert_array_equal(a["m"], np.arange(6.0).reshape(2, 3))
        assert (a["s"], a["n"]) == ("text", 5)
        assert sorted(b.devices()) == ["other", "py"]
        with pytest.raises(dime.DimeServerError, match="No such group exists: nobody"):
            a.send_r("nobody", x=1)


def test_wait_blocks_without_spinning(old_server):
    with old_server.client("py") as d:
        sender = send_later(old_server, "py", 1.0, x=1)
        cpu, double_cpu, t = time.process_time(), old_server.cpu_seconds(), time.monotonic()
        # Before: the old server answered libdime's waiting sync at once with
        # nothing, so wait() returned 0 immediately and a loop spun.
        assert d.wait() == 1
        took = time.monotonic() - t
        assert took >= 0.9
        assert old_server.count("sync") <= 40, "wait polled too often"
        assert time.process_time() - cpu < 0.3
        assert old_server.cpu_seconds() - double_cpu < 0.3
        assert d.sync() == {"x"}
        sender.join()


def test_wait_with_a_timeout_times_out(old_server):
    with old_server.client("py") as d:
        t = time.monotonic()
        with pytest.raises(dime.DimeTimeoutError):
            d.wait(timeout=1)
        assert 1 <= time.monotonic() - t < 2
        assert 2 <= old_server.count("sync") <= 40
        assert d.devices() == ["py"]      # still in step with the server


def test_a_wait_then_sync_loop_does_not_spin(old_server):
    with old_server.client("py") as d:
        def producer():
            with old_server.client() as p:
                for i in range(3):
                    time.sleep(0.3)
                    p.send_r("py", **{f"v{i}": i})
        t = threading.Thread(target=producer, daemon=True)
        t.start()
        got = set()
        cpu = time.process_time()
        while len(got) < 3:
            d.wait(timeout=5)
            got |= d.sync()
        t.join()
        assert got == {"v0", "v1", "v2"}
        assert old_server.count("sync") <= 80
        assert time.process_time() - cpu < 0.3


def test_shares_and_tuple_spaces_raise_unsupported(old_server):
    with old_server.client() as d:
        s = dime.Share(d, "jobs")
        with pytest.raises(dime.DimeUnsupportedError) as e:
            s["k"] = 1
        assert isinstance(e.value, NotImplementedError)
        assert isinstance(e.value, dime.DimeError)
        assert e.value.status == 7107
        assert "this server does not support shared dictionaries" in str(e.value)
        assert "original DiME2 server" in str(e.value)
        with pytest.raises(NotImplementedError, match="does not support tuple spaces"):
            dime.TupleSpace(d).out(("x", 1))
        assert old_server.count("share_set") == old_server.count("ts_out") == 0
        d.join("still")
        assert d.devices() == ["still"]


def test_our_server_announces_its_extensions(server):
    d = server.client()
    assert {"share", "space", "sync_wait", "send_receive", "wait_timeout"} <= d.server_extensions
    assert d.supports("share")
    assert not d.supports("no such thing")
    with pytest.raises(TypeError):
        d.supports(5)
