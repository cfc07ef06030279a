"""TLS and authentication from Python against a real server: a server on
tls: with --auth serving the committed test certificates
(tests/fixtures/tls, made by tests/tls_fixtures.rs), a token and a CA as
arguments or from the environment, a refused token and a refused command
as PermissionError, and a certificate error that names the server and the
reason."""

import re
import signal
import subprocess
import threading

import pytest

from conftest import DIME_BIN, REPO

import dime
from dime.files import DimeFileRefusedError

LISTENING = re.compile(r"^dime: listening on (?P<addr>\S+)$")

USERS = """\
role sim   join:sim.* send:sim.* share:sim
alice  tok-alice  sim
"""


@pytest.fixture(scope="module")
def pki():
    """ca.pem, server.pem and server.key for localhost/127.0.0.1; and
    other-ca.pem, a CA that signed nothing here."""
    return REPO / "tests" / "fixtures" / "tls"


@pytest.fixture
def secure_server(pki, tmp_path):
    """dime on tls:127.0.0.1 with --auth; yields its port."""
    users = tmp_path / "users"
    users.write_text(USERS)
    proc = subprocess.Popen(
        [DIME_BIN, "-l", "tls:127.0.0.1:0", "--tls-cert", str(pki / "server.pem"),
         "--tls-key", str(pki / "server.key"), "--auth", str(users)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    line = proc.stderr.readline().decode().strip()
    m = LISTENING.match(line)
    if not m:
        proc.kill()
        pytest.fail(f"server did not start: {line}")
    threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()
    yield int(m.group("addr").rpartition(":")[2])
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)


def test_tls_with_a_token_round_trips(pki, secure_server):
    port = secure_server
    a = dime.DimeClient("tls", "localhost", port, token="tok-alice", tls_ca=pki / "ca.pem")
    b = dime.DimeClient(f"tls://127.0.0.1:{port}", token="tok-alice", tls_ca=str(pki / "ca.pem"))
    with a, b:
        b.join("sim.b")
        a["x"] = [1, 2, 3]
        a.send("sim.b", "x")
        b.wait(timeout=5)
        b.sync()
        assert b["x"] == [1, 2, 3]


def test_the_environment_supplies_token_and_ca(pki, secure_server, monkeypatch):
    monkeypatch.setenv("DIME_TOKEN", "tok-alice")
    monkeypatch.setenv("DIME_TLS_CA", str(pki / "ca.pem"))
    with dime.DimeClient("tls", "localhost", secure_server) as d:
        d.join("sim.env")
        assert "sim.env" in d.devices()


def test_refusals_are_permission_errors(pki, secure_server):
    port = secure_server
    with pytest.raises(dime.DimePermissionError, match="token is not valid") as e:
        dime.DimeClient("tls", "localhost", port, token="nope", tls_ca=pki / "ca.pem")
    assert isinstance(e.value, PermissionError)
    with pytest.raises(PermissionError, match="Authentication required"):
        dime.DimeClient("tls", "localhost", port, tls_ca=pki / "ca.pem")
    with dime.DimeClient("tls", "localhost", port, token="tok-alice", tls_ca=pki / "ca.pem") as d:
        with pytest.raises(dime.DimePermissionError, match="may not join group 'ops'"):
            d.join("ops")
        # Code catching any dime failure (a RuntimeError) catches it too;
        # nothing changed, and the client goes on.
        with pytest.raises(dime.DimeError):
            d.join("sim.ok", "ops")
        d.join("sim.ok")
        assert d.devices() == ["sim.ok"]


def test_a_certificate_error_names_the_server_and_why(pki, secure_server):
    port = secure_server
    with pytest.raises(dime.DimeConnectionError) as e:
        dime.DimeClient("tls", "localhost", port, token="tok-alice",
                        tls_ca=pki / "other-ca.pem")
    msg = str(e.value)
    assert f"tls:localhost:{port}" in msg and "not signed by a trusted" in msg, msg
    with pytest.raises(ValueError, match="go together"):
        dime.DimeClient("tls", "localhost", port, tls_cert=pki / "server.pem")


def test_every_refusal_is_one_permission_error_hierarchy():
    # The server's refusals, the unix socket's and a file server's are all
    # DimePermissionError, a built-in PermissionError.
    assert issubclass(dime.DimePermissionError, PermissionError)
    assert issubclass(dime.DimePermissionError, dime.DimeError)
    assert issubclass(dime.DimeSocketPermissionError, dime.DimePermissionError)
    assert issubclass(dime.DimeSocketPermissionError, dime.DimeConnectionError)
    assert issubclass(DimeFileRefusedError, dime.DimePermissionError)
    assert not issubclass(dime.DimePermissionError, dime.DimeConnectionError)
