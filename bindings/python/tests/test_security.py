"""TLS and authentication from Python against a real server: the README's
example (a CA and certificate made with openssl, a server on tls: with
--auth), a refused token and a refused command as PermissionError, and a
certificate error that names the server and the reason."""

import os
import re
import shutil
import signal
import subprocess
import threading

import pytest

from conftest import DIME_BIN

import dime

LISTENING = re.compile(r"^dime: listening on (?P<addr>\S+)$")

USERS = """\
role sim   join:sim.* send:sim.* share:sim
alice  tok-alice  sim
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """ca.pem, server.pem and server.key for localhost/127.0.0.1, made as
    the README makes them; and other-ca.pem, a CA that signed nothing."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates (tests/install-deps installs it)")
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test CA", cwd=d)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2", "-subj",
            "/CN=other CA", cwd=d)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "server.key", "-out", "server.pem", "-days", "2", "-subj", "/CN=localhost",
            "-CA", "ca.pem", "-CAkey", "ca.key",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext", "basicConstraints=critical,CA:FALSE", cwd=d)
    return d


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
        # Old code catching server errors still catches it; the client goes on.
        with pytest.raises(dime.DimeServerError):
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
