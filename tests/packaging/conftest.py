"""Helpers for the package install tests.

Each test builds a package as its users would (``pip wheel``, ``npm pack``
...) and uses it from a scratch directory outside the repository, in an
environment without this project's variables (``DIME_LIBRARY``,
``DIME_BIN``, ...), so nothing of the checkout can stand in for what the
package should carry.
"""

import os
import pathlib
import re
import signal
import subprocess
import threading
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
CARGO_VERSION = re.search(r'(?m)^version = "([^"]+)"', (REPO / "Cargo.toml").read_text()).group(1)
LISTENING = re.compile(r"^dime: listening on (?P<kind>[a-z]+):(?P<addr>.+)$")


def clean_env(**extra):
    """os.environ less every DIME_* variable (and PYTHONPATH), plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DIME_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def run(argv, *, cwd, env=None, timeout=600, check=True):
    """Runs argv; returns the CompletedProcess (text). Fails the test with
    its output when it exits non-zero and ``check`` is set."""
    p = subprocess.run([str(a) for a in argv], cwd=cwd, env=env or clean_env(),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(map(str, argv))} exited {p.returncode}\n"
                    f"--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-4000:]}")
    return p


class Server:
    """A dime server process started from ``argv``; ``addrs`` maps each
    listener kind (unix, tcp, ws) to the address it announced."""

    def __init__(self, argv, *, cwd, env=None, kinds=("unix",)):
        self.lines = []
        self.proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env or clean_env(),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.addrs = {}
        ready = threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                m = LISTENING.match(self.lines[-1])
                if m:
                    self.addrs[m.group("kind")] = m.group("addr")
                    if all(k in self.addrs for k in kinds):
                        ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(30) or not all(k in self.addrs for k in kinds):
            self.stop()
            pytest.fail("the server did not announce its listeners:\n" + "\n".join(self.lines))

    def stop(self):
        """SIGTERM, then SIGKILL after 10 s; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def start_server():
    """start_server(argv, cwd=..., kinds=...) -> Server; every one is stopped at teardown."""
    servers = []

    def start(argv, **kw):
        s = Server(argv, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
