"""The server process itself: socket file, shutdown (docs/protocol.md §5)."""

import os
import stat

from dimewire import Closed


def test_unix_socket_mode_is_0600(server):
    st = os.stat(server.unix_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(stat.S_IMODE(st.st_mode))


def test_sigterm_with_clients_connected(server):
    """SIGTERM while clients are connected (one with queued messages, one
    blocked in wait, one mid-frame) still exits 0 and removes the socket."""
    a = server.dime("unix")
    a.join("g")
    b = server.dime("tcp")
    b.join("g")
    b.send_r("g", pending=1)  # queued for a and b, never synced
    assert a.wait() == 1
    waiter = server.raw("tcp")
    waiter.handshake("pickle")
    waiter.send({"command": "wait"})
    waiter.assert_silent(0.1)
    partial = server.raw("unix")
    partial.send_bytes(b"DiME\x00\x00")
    server.stop(close_clients=False)  # asserts exit code 0 and socket removed
    # The waiting client sees the connection end (or an error), never a success.
    try:
        header, _ = waiter.recv(timeout=2)
    except (Closed, TimeoutError, OSError):
        pass
    else:
        assert header.get("status", 0) < 0, f"waiting client got {header} at shutdown"
