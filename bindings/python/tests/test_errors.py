"""DimeClient's exceptions are the built-in ones the original DiME2 client
(PyPI dime-client) raised, subclassed: connection failures are the matching
OSError subclass with errno set, server refusals NameError (and
RuntimeError), a closed client OSError(EBADF), bad addresses TypeError ...
Each situation is also run through the original client, and ours must be an
instance of whatever it raised."""

import builtins
import ctypes
import errno
import json
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading

import pytest

import dime
from conftest import COMPAT_PYTHON
from oldclient import OldClient, OldClientError

FRAME = struct.Struct("!4sII")


# -- helpers -----------------------------------------------------------------

def bound_not_listening(family, address):
    """A socket bound to ``address`` that never listens: connecting to it is
    refused, deterministically, with no race for a free port."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind(address)
    return s


class FakeServer:
    """A one-connection unix server that answers the handshake and then, as
    ``mode`` says, closes at once (``"close"``: the client's next write gets
    EPIPE) or reads one more request and closes without answering
    (``"read_then_close"``: the client's read sees the end of the stream).
    ``closed`` is set once it has closed the connection."""

    def __init__(self, path, mode):
        self.path = path
        self.mode = mode
        self.closed = threading.Event()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.listener.settimeout(20)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read_frame(self, conn):
        def exact(n):
            buf = b""
            while len(buf) < n:
                chunk = conn.recv(n - len(buf))
                if not chunk:
                    raise EOFError
                buf += chunk
            return buf
        magic, jlen, blen = FRAME.unpack(exact(FRAME.size))
        assert magic == b"DiME"
        return json.loads(exact(jlen)), exact(blen)

    def _serve(self):
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(20)
            header, _ = self._read_frame(conn)
            assert header["command"] == "handshake", header
            reply = json.dumps({"status": 0, "serialization": header["serialization"]}).encode()
            conn.sendall(FRAME.pack(b"DiME", len(reply), 0) + reply)
            if self.mode == "read_then_close":
                self._read_frame(conn)
        self.closed.set()

    def stop(self):
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def old():
    clients = []

    def make():
        c = OldClient(COMPAT_PYTHON)
        clients.append(c)
        return c
    yield make
    for c in clients:
        c.close()


def builtin_type(exc):
    """The type the original client raised, as an object of this process
    (its classes are built-ins, or socket.gaierror)."""
    module, qualname = exc.mro[0]
    assert module in ("builtins", "socket"), exc.mro
    return getattr(builtins if module == "builtins" else socket, qualname)


def ours_matches_original(ours, theirs):
    """Our exception is an instance of the original's type, with its errno."""
    want = builtin_type(theirs)
    assert isinstance(ours, want), (type(ours).__mro__, theirs)
    assert isinstance(ours, dime.DimeError)
    if theirs.errno is not None:
        assert ours.errno == theirs.errno, (ours.errno, theirs)


def connect_both(original, *args):
    """(our exception, the original's) for DimeClient(*args); ``original``
    is an OldClient (a failed connect leaves it usable for the next)."""
    with pytest.raises(Exception) as ours:
        dime.DimeClient(*args)
    with pytest.raises(OldClientError) as theirs:
        original.connect(*args)
    return ours.value, theirs.value


# -- connecting: the cases -------------------------------------------

def test_missing_unix_socket_is_file_not_found_with_enoent(tmp_path):
    path = str(tmp_path / "nobody.sock")
    try:
        dime.DimeClient("ipc", path)
    except FileNotFoundError as e:      # what callers of the original catch
        assert e.errno == errno.ENOENT
        assert e.strerror == os.strerror(errno.ENOENT)
        assert isinstance(e, dime.DimeConnectionError) and isinstance(e, RuntimeError)
        message = str(e)
    else:
        pytest.fail("no exception")
    # One clear message: what failed, where, and why; no "connection lost".
    assert message.startswith(f"cannot connect to unix:{path}: "), message
    assert "No such file or directory" in message
    assert message.count("nobody.sock") == 1 and message.count("cannot connect") == 1
    assert "connection lost" not in message


def test_refused_tcp_port_is_connection_refused():
    s = bound_not_listening(socket.AF_INET, ("127.0.0.1", 0))
    port = s.getsockname()[1]
    try:
        with pytest.raises(ConnectionRefusedError) as info:
            dime.DimeClient("tcp", "127.0.0.1", port)
    finally:
        s.close()
    assert info.value.errno == errno.ECONNREFUSED
    assert isinstance(info.value, dime.DimeConnectionRefusedError)
    assert str(info.value).startswith(f"cannot connect to tcp:127.0.0.1:{port}: ")


def test_unix_socket_nobody_listens_on_is_connection_refused(tmp_path):
    path = str(tmp_path / "stale.sock")
    s = bound_not_listening(socket.AF_UNIX, path)
    try:
        with pytest.raises(ConnectionRefusedError) as info:
            dime.DimeClient("ipc", path)
    finally:
        s.close()
    assert info.value.errno == errno.ECONNREFUSED


PERMISSION_PROBE = """
import errno, sys
sys.path.insert(0, sys.argv[1])
import dime
try:
    dime.DimeClient("ipc", sys.argv[2])
except PermissionError as e:
    assert isinstance(e, dime.DimePermissionError), type(e).__mro__
    print("PermissionError", e.errno == errno.EACCES)
"""


def drop_file_capabilities():
    """In a child about to exec: removes the capabilities that let root
    ignore file permissions from the bounding set, so the program it runs
    is held to a file's mode bits like anyone."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            os._exit(77)


def test_socket_without_permission_is_permission_error(tmp_path):
    # A socket file nobody may use (mode 000). Root ignores modes, so as
    # root the attempt runs in a child without that capability.
    path = str(tmp_path / "private.sock")
    s = bound_not_listening(socket.AF_UNIX, path)
    try:
        os.chmod(path, 0o000)
        if os.geteuid() != 0:
            with pytest.raises(PermissionError) as info:
                dime.DimeClient("ipc", path)
            assert info.value.errno == errno.EACCES
            assert isinstance(info.value, dime.DimePermissionError)
            return
        package = os.path.dirname(os.path.dirname(dime.__file__))
        out = subprocess.run([sys.executable, "-c", PERMISSION_PROBE, package, path],
                             preexec_fn=drop_file_capabilities, capture_output=True, text=True,
                             timeout=60)
        if out.returncode == 77:
            pytest.skip("cannot drop CAP_DAC_OVERRIDE here, and root may use any socket")
        assert out.stdout.strip() == "PermissionError True", (out.stdout, out.stderr)
    finally:
        s.close()


def test_unknown_host_is_gaierror():
    with pytest.raises(socket.gaierror) as info:
        dime.DimeClient("tcp", "no-such-host.invalid", 5000)
    e = info.value
    assert isinstance(e, dime.DimeHostNotFoundError) and isinstance(e, ConnectionError)
    assert isinstance(e.errno, int) and e.errno != 0
    assert str(e).startswith("cannot connect to tcp:no-such-host.invalid:5000: ")


def test_bad_addresses_are_type_errors_and_bad_ports_overflow():
    for args in [("foo",), ("http://x:1",), ("tcp", "127.0.0.1", "x"), ("tcp:notaport",)]:
        with pytest.raises(TypeError) as info:
            dime.DimeClient(*args)
        assert isinstance(info.value, ValueError) and isinstance(info.value, dime.DimeAddressError)
    for port in (70000, -1):
        with pytest.raises(OverflowError):
            dime.DimeClient("tcp", "127.0.0.1", port)


# -- after connecting ----------------------------------------------------------

def test_connection_closed_by_server_mid_use_is_connection_reset(tmp_path):
    fake = FakeServer(str(tmp_path / "fake.sock"), "read_then_close")
    try:
        d = dime.DimeClient("ipc", fake.path)
        with pytest.raises(ConnectionResetError) as info:
            d.devices()
        e = info.value
        assert e.errno == errno.ECONNRESET
        assert isinstance(e, RuntimeError)      # the original raised RuntimeError here
        assert str(e) == "connection lost: the server closed the connection"
        # Later calls fail fast, as the same kind, saying it happened earlier.
        with pytest.raises(ConnectionResetError, match="earlier") as again:
            d.join("g")
        assert again.value.errno == errno.ECONNRESET
        d.close()
    finally:
        fake.stop()


def test_writing_to_a_closed_connection_is_broken_pipe(tmp_path):
    fake = FakeServer(str(tmp_path / "fake.sock"), "close")
    try:
        d = dime.DimeClient("ipc", fake.path)
        assert fake.closed.wait(10)
        with pytest.raises(BrokenPipeError) as info:
            d.send_r("g", x=1)
        assert info.value.errno == errno.EPIPE
        assert isinstance(info.value, dime.DimeConnectionError)
        d.close()
    finally:
        fake.stop()


def test_killed_server_is_broken_pipe_or_reset(server, transport):
    a = server.client(transport, "g")
    server.kill()
    with pytest.raises((BrokenPipeError, ConnectionResetError)) as info:
        for _ in range(3):              # the first write may land in the buffer
            a.send_r("g", x=1)
            a.sync_r()
    assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)
    a.close()


def test_closed_client_is_oserror_ebadf(server):
    a = server.client("unix", "g")
    a.close()
    with pytest.raises(OSError) as info:
        a.devices()
    assert info.value.errno == errno.EBADF
    assert isinstance(info.value, dime.DimeConnectionError)
    assert str(info.value) == "the DimeClient is closed"


def test_server_refusals_are_name_errors_as_in_the_original(server, transport):
    a = server.client(transport, "g")
    for call in (lambda: a.join("g"), lambda: a.leave("nope"), lambda: a.send_r("nope", x=1)):
        with pytest.raises(NameError) as info:
            call()
        assert isinstance(info.value, RuntimeError) and isinstance(info.value, dime.DimeServerError)
    a.send_r("g", x=1)                  # still usable
    assert a.sync_r() == {"x": 1}


def test_wait_timeout_is_timeout_error_with_etimedout(pair):
    with pytest.raises(TimeoutError) as info:
        pair[0].wait(0.05)
    assert info.value.errno == errno.ETIMEDOUT
    assert isinstance(info.value, dime.DimeTimeoutError)
    assert not isinstance(info.value, dime.DimeConnectionError)


# -- the errno -> class table, for errnos a test cannot provoke ---------------

@pytest.mark.parametrize("code, builtin", [
    (errno.ENOENT, FileNotFoundError), (errno.EACCES, PermissionError),
    (errno.EPERM, PermissionError), (errno.ECONNREFUSED, ConnectionRefusedError),
    (errno.ECONNRESET, ConnectionResetError), (errno.ECONNABORTED, ConnectionAbortedError),
    (errno.EPIPE, BrokenPipeError), (errno.ESHUTDOWN, BrokenPipeError),
    (errno.ETIMEDOUT, TimeoutError)])
def test_each_errno_gets_its_builtin_class(code, builtin):
    e = dime._errors.connection_error("cannot connect to x: why", errno=code)
    assert isinstance(e, builtin) and isinstance(e, dime.DimeConnectionError)
    assert e.errno == code and str(e) == "cannot connect to x: why"
    # Python picks the same class for that errno.
    assert isinstance(OSError(code, "x"), builtin)


def test_other_errnos_are_plain_connection_errors_and_pickle():
    make = dime._errors.connection_error
    e = make("connection lost: out of memory", errno=errno.ENOMEM)
    assert type(e) is dime.DimeConnectionError and e.errno == errno.ENOMEM
    back = pickle.loads(pickle.dumps(make("m", errno=errno.ENOENT)))
    assert type(back) is dime.DimeFileNotFoundError and back.errno == errno.ENOENT
    assert str(back) == "m" and back.strerror == os.strerror(errno.ENOENT)


# -- side by side with the original client -----------------------------------

def test_connect_failures_match_the_original(tmp_path, old):
    cases = [("ipc", str(tmp_path / "missing.sock")), ("tcp", "no-such-host.invalid", 5000),
             ("tcp", "127.0.0.1", "x"), ("tcp", "127.0.0.1", 70000), ("foo",), ("http://x:1",)]
    refusing = bound_not_listening(socket.AF_INET, ("127.0.0.1", 0))
    stale = bound_not_listening(socket.AF_UNIX, str(tmp_path / "stale.sock"))
    cases += [("tcp", "127.0.0.1", refusing.getsockname()[1]), ("ipc", str(tmp_path / "stale.sock"))]
    original = old()
    try:
        for args in cases:
            ours, theirs = connect_both(original, *args)
            ours_matches_original(ours, theirs)
    finally:
        refusing.close()
        stale.close()


def test_refusals_and_closed_client_match_the_original(server, old):
    mine = server.client("unix", "g")
    theirs = old()
    theirs.connect(*server.args("unix"))
    theirs.call("join", "g")
    for method, args in [("join", ("g",)), ("leave", ("nope",))]:
        with pytest.raises(Exception) as ours:
            getattr(mine, method)(*args)
        with pytest.raises(OldClientError) as orig:
            theirs.call(method, *args)
        ours_matches_original(ours.value, orig.value)
    with pytest.raises(Exception) as ours:
        mine.send_r("nope", x=1)
    with pytest.raises(OldClientError) as orig:
        theirs.call("send_r", "nope", x=1)
    ours_matches_original(ours.value, orig.value)
    mine.close()
    theirs.close_keep()
    with pytest.raises(Exception) as ours:
        mine.devices()
    with pytest.raises(OldClientError) as orig:
        theirs.call("devices")
    ours_matches_original(ours.value, orig.value)


@pytest.mark.parametrize("mode", ["close", "read_then_close"])
def test_dropped_connections_match_the_original(tmp_path, old, mode):
    results = []
    for who in ("ours", "theirs"):
        fake = FakeServer(str(tmp_path / f"{who}.sock"), mode)
        try:
            if who == "ours":
                d = dime.DimeClient("ipc", fake.path)
            else:
                d = old()
                d.connect("ipc", fake.path)
            if mode == "close":
                assert fake.closed.wait(10)
            with pytest.raises(Exception) as info:
                if who == "ours":
                    d.devices()
                else:
                    d.call("devices")
            results.append(info.value)
        finally:
            fake.stop()
    ours, theirs = results
    ours_matches_original(ours, theirs)
