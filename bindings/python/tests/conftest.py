"""Fixtures: a real dime server per test (unix + tcp), our clients on it, a raw
wire client, and the original DiME2 client (PyPI dime-client) in a subprocess.

The server is ``$DIME_BIN`` (default target/debug/dime), started as
``dime -l unix:<tmp>/dime.sock -l tcp:127.0.0.1:0`` (plus any options a
test gives ``DimeServer``); it prints
``dime: listening on ...`` per listener and gets SIGTERM at teardown.
The library is ``$DIME_LIBRARY`` (this conftest defaults it to
target/debug/libdime.so, the one ``cargo build`` just made, before ``dime``
is imported). The old client runs under ``$DIME_COMPAT_PYTHON`` (default
.venv/compat/bin/python, which has dime-client==0.0.1 + numpy).
"""

import os
import pathlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
os.environ.setdefault("DIME_LIBRARY", str(REPO / "target" / "debug" / "libdime.so"))
DIME_BIN = os.environ.get("DIME_BIN") or str(REPO / "target" / "debug" / "dime")
COMPAT_PYTHON = os.environ.get("DIME_COMPAT_PYTHON") or str(REPO / ".venv" / "compat" / "bin" / "python")
WATCHDOG_SECONDS = float(os.environ.get("DIME_TEST_WATCHDOG", "60"))

# Test the working copy of the package (tests/run-all also installs it into .venv/py).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import dime  # noqa: E402  (after DIME_LIBRARY is set)
from oldclient import OldClient  # noqa: E402
from rawwire import RawClient  # noqa: E402

LISTENING = re.compile(r"^dime: listening on (?P<kind>[a-z]+):(?P<addr>.+)$")


class DimeServer:
    def __init__(self, tmpdir, extra_args=()):
        self.sock_path = os.path.join(tmpdir, "dime.sock")
        self.lines = []
        self._q = queue.Queue()
        self._clients = []
        if not os.access(DIME_BIN, os.X_OK):
            pytest.fail(f"server binary not found: {DIME_BIN} (run cargo build or set DIME_BIN)")
        self.argv = [DIME_BIN, "-l", f"unix:{self.sock_path}", "-l", "tcp:127.0.0.1:0",
                     *extra_args]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        threading.Thread(target=self._drain, daemon=True).start()
        found = {}
        deadline = time.monotonic() + 10
        while len(found) < 2:
            try:
                line = self._q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                pytest.fail("server did not announce its listeners:\n" + "\n".join(self.lines))
            if line is None:
                pytest.fail("server exited at startup:\n" + "\n".join(self.lines))
            m = LISTENING.match(line)
            if m:
                found[m.group("kind")] = m.group("addr")
        self.unix_path = found["unix"]
        self.tcp_port = int(found["tcp"].rpartition(":")[2])
        self._watchdog = threading.Timer(WATCHDOG_SECONDS, self.kill)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _drain(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            self._q.put(line)
        self._q.put(None)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def args(self, transport):
        """DimeClient constructor arguments for ``transport``."""
        if transport == "unix":
            return ("ipc", self.unix_path)
        return ("tcp", "127.0.0.1", self.tcp_port)

    def client(self, transport="unix", *groups):
        c = dime.DimeClient(*self.args(transport))
        self._clients.append(c)
        if groups:
            c.join(*groups)
        return c

    def raw(self, transport="unix", serialization="dimeb"):
        addr = self.unix_path if transport == "unix" else ("127.0.0.1", self.tcp_port)
        c = RawClient(transport, addr)
        self._clients.append(c)
        if serialization:
            reply = c.request({"command": "handshake", "serialization": serialization, "tls": False})
            assert reply["status"] == 0, reply
        return c

    def old(self, transport="unix", *groups):
        """The original dime-client in a subprocess, connected and joined."""
        c = OldClient(COMPAT_PYTHON)
        self._clients.append(c)
        c.connect(*self.args(transport))
        if groups:
            c.call("join", *groups)
        return c

    def stop(self):
        self._watchdog.cancel()
        for c in reversed(self._clients):
            try:
                c.close()
            except Exception:
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("server ignored SIGTERM")
        log = "\n".join(self.lines)
        assert "panicked" not in log, log
        assert code in (0, -signal.SIGKILL), f"server exit code {code}\n{log}"


@pytest.fixture
def server(tmp_path):
    srv = DimeServer(str(tmp_path))
    yield srv
    srv.stop()


@pytest.fixture(params=["unix", "tcp"])
def transport(request):
    return request.param


@pytest.fixture
def pair(server, transport):
    """Two of our clients, both in group "g"."""
    return server.client(transport, "g"), server.client(transport, "g")
