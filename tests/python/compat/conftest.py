"""Fixtures: a real dime server per test, reached over unix and tcp.

The server binary comes from ``$DIME_BIN`` (default: target/debug/dime in the
repository). It is started as

    $DIME_BIN -l unix:<tmpdir>/dime.sock -l tcp:127.0.0.1:0

and must print, at startup and whatever its verbosity, one stderr line per
listener: ``dime: listening on unix:/path`` and ``dime: listening on
tcp:127.0.0.1:PORT``. At teardown it gets SIGTERM and must exit with code 0
and remove its socket file.

A test still running after $DIME_TEST_WATCHDOG seconds (default 30) has
its server killed, so a hung client call fails instead of hanging the run.
Tests marked ``@pytest.mark.server_args(...)`` pass extra server arguments.

Each test gets its own server because the server's serialization is global
state (the first client's choice, switched to dimeb by later clients).
"""

import os
import pathlib
import queue
import re
import signal
import subprocess
import threading
import time

import pytest
from dime import DimeClient

from dimewire import RawClient

REPO = pathlib.Path(__file__).resolve().parents[3]
DIME_BIN = os.environ.get("DIME_BIN") or str(REPO / "target" / "debug" / "dime")

STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
#: A test that runs longer than this has hung: the server is killed so the
#: blocked client calls fail instead of hanging the suite.
WATCHDOG_SECONDS = float(os.environ.get("DIME_TEST_WATCHDOG", "30"))

LISTENING = re.compile(r"^dime: listening on (?P<kind>[a-z]+):(?P<addr>.+)$")


class DimeServer:
    """One running server process and the clients tests opened on it."""

    def __init__(self, tmpdir, extra_args=()):
        self.sock_path = os.path.join(tmpdir, "dime.sock")
        self.stderr_lines = []
        self._lines = queue.Queue()
        self._clients = []
        self.watchdog_fired = False
        self.stopped = False
        if not (os.path.isfile(DIME_BIN) and os.access(DIME_BIN, os.X_OK)):
            pytest.fail(f"server binary not found or not executable: {DIME_BIN} (set DIME_BIN)")
        self.argv = [DIME_BIN, "-l", f"unix:{self.sock_path}", "-l", "tcp:127.0.0.1:0", *extra_args]
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self.unix_path, self.tcp_port = self._wait_listening()
        self._watchdog = threading.Timer(WATCHDOG_SECONDS, self._on_watchdog)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _read_stderr(self):
        # Keep draining stderr for the whole life of the process so a
        # verbose server can never block on a full pipe.
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stderr_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_listening(self):
        found = {}
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while len(found) < 2:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                self._abort(f"server did not announce both listeners within {STARTUP_TIMEOUT}s")
            if line is None:
                self.proc.wait()
                self._abort(f"server exited with code {self.proc.returncode} before listening")
            m = LISTENING.match(line)
            if m:
                found[m.group("kind")] = m.group("addr")
        if set(found) != {"unix", "tcp"}:
            self._abort(f"unexpected listener lines: {found}")
        assert found["unix"] == self.sock_path, found
        host, _, port = found["tcp"].rpartition(":")
        assert host == "127.0.0.1", found
        assert port.isdigit() and int(port) > 0, found
        return found["unix"], int(port)

    def _abort(self, message):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        pytest.fail(f"{message}\n{self.argv}\nstderr:\n" + "\n".join(self.stderr_lines))

    def _on_watchdog(self):
        self.watchdog_fired = True
        self.proc.kill()

    # -- clients ---------------------------------------------------------
    def address(self, transport):
        return self.unix_path if transport == "unix" else ("127.0.0.1", self.tcp_port)

    def dime(self, transport):
        """A connected original DiME2 Python client (pickle handshake)."""
        if transport == "unix":
            client = DimeClient("ipc", self.unix_path)
        else:
            client = DimeClient("tcp", "127.0.0.1", self.tcp_port)
        self._clients.append(client)
        return client

    def raw(self, transport):
        """A raw-frame client (not yet handshaken)."""
        client = RawClient(transport, self.address(transport))
        self._clients.append(client)
        return client

    # -- teardown --------------------------------------------------------
    def close_clients(self):
        for client in self._clients:
            try:
                client.close()
            except OSError:
                pass

    def stop(self, close_clients=True):
        """SIGTERM the server and check it exits with 0 and removes its socket.

        Idempotent. With ``close_clients=False`` the clients stay connected
        while the server shuts down.
        """
        if self.stopped:
            return
        self.stopped = True
        self._watchdog.cancel()
        if close_clients:
            self.close_clients()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"server did not exit within {STOP_TIMEOUT}s of SIGTERM\nstderr:\n"
                        + "\n".join(self.stderr_lines))
        self._reader.join(timeout=2)
        if not close_clients:
            self.close_clients()
        log = "\n".join(self.stderr_lines)
        if self.watchdog_fired:
            pytest.fail(f"test hung: server killed by the {WATCHDOG_SECONDS}s watchdog\nstderr:\n{log}")
        assert code == 0, f"server exited with code {code} after SIGTERM\nstderr:\n{log}"
        assert not os.path.exists(self.sock_path), "server left its unix socket file behind"
        assert "panicked" not in log, f"server panicked:\n{log}"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "server_args(*args): extra command-line arguments for the test's server")


@pytest.fixture
def server(request, tmp_path):
    marker = request.node.get_closest_marker("server_args")
    srv = DimeServer(str(tmp_path), marker.args if marker else ())
    yield srv
    srv.stop()


@pytest.fixture(params=["unix", "tcp"])
def transport(request):
    return request.param


class Net:
    """A server plus the transport this test runs over."""

    def __init__(self, server, transport):
        self.server = server
        self.transport = transport

    def client(self, *groups):
        """An original dime-client, joined to ``groups``."""
        client = self.server.dime(self.transport)
        if groups:
            client.join(*groups)
        return client

    def raw(self, serialization=None):
        """A raw wire client; handshaken with ``serialization`` if given."""
        client = self.server.raw(self.transport)
        if serialization is not None:
            reply = client.handshake(serialization)
            assert reply.get("status") == 0, reply
        return client


@pytest.fixture
def net(server, transport):
    return Net(server, transport)
