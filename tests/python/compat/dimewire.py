"""A minimal DiME2 wire client for protocol tests (see docs/protocol.md).

It speaks raw frames with nothing but ``socket`` and ``struct`` so tests can
see exactly what the server sends: every header, every payload, every
unsolicited meta message, and whether the connection was closed.
"""

import json
import select
import socket
import struct
import time

MAGIC = b"DiME"
HEADER = struct.Struct("!4sII")

#: What our server's handshake reply announces beyond DiME2
#: (docs/protocol-extensions.md); the original clients ignore the field.
EXTENSIONS = ["wait_timeout", "sync_wait", "send_receive", "dimeb_layout", "shm", "cut_through", "auth",
              "share", "space", "rpc", "stream", "stream_batch"]


def handshake_reply(serialization):
    """Our server's handshake reply for ``serialization``."""
    return {"status": 0, "serialization": serialization, "tls": False, "extensions": EXTENSIONS}


#: Seconds to wait for a reply that must come.
REPLY_TIMEOUT = 10.0


class Closed(Exception):
    """The server closed the connection (EOF) before a whole frame arrived."""


def encode_frame(header, payload=b"", magic=MAGIC):
    """One frame: magic, u32 BE JSON length, u32 BE payload length, JSON, payload.

    ``header`` is a dict (encoded as JSON) or raw bytes (sent as they are,
    so tests can send invalid JSON).
    """
    if not isinstance(header, (bytes, bytearray)):
        header = json.dumps(header).encode("utf-8")
    return HEADER.pack(magic, len(header), len(payload)) + bytes(header) + bytes(payload)


class RawClient:
    """A DiME connection that sends and receives whole frames."""

    def __init__(self, transport, address):
        if transport == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        elif transport == "tcp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            raise ValueError(transport)
        self.sock.settimeout(REPLY_TIMEOUT)
        self.sock.connect(address)
        self.buf = bytearray()

    # -- sending ---------------------------------------------------------
    def send(self, header, payload=b""):
        self.sock.sendall(encode_frame(header, payload))

    def send_bytes(self, data):
        self.sock.sendall(data)

    # -- receiving -------------------------------------------------------
    def _fill(self, deadline):
        """Read more bytes into the buffer; raise Closed on EOF, TimeoutError at deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete frame from the server in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout as e:
            raise TimeoutError("no complete frame from the server in time") from e
        except ConnectionResetError as e:
            raise Closed("connection reset") from e
        if not chunk:
            raise Closed("server closed the connection")
        self.buf += chunk

    def recv(self, timeout=REPLY_TIMEOUT):
        """Return the next frame as (header dict, payload bytes)."""
        header, payload = self.recv_raw(timeout)
        return json.loads(header.decode("utf-8")), payload

    def recv_raw(self, timeout=REPLY_TIMEOUT):
        """Return the next frame as (JSON bytes, payload bytes), checking the magic."""
        deadline = time.monotonic() + timeout
        while len(self.buf) < HEADER.size:
            self._fill(deadline)
        magic, jlen, blen = HEADER.unpack_from(self.buf)
        if magic != MAGIC:
            raise AssertionError(f"server sent bad magic {bytes(magic)!r}")
        while len(self.buf) < HEADER.size + jlen + blen:
            self._fill(deadline)
        start = HEADER.size
        header = bytes(self.buf[start:start + jlen])
        payload = bytes(self.buf[start + jlen:start + jlen + blen])
        del self.buf[:start + jlen + blen]
        return header, payload

    def request(self, header, payload=b"", timeout=REPLY_TIMEOUT):
        """Send one request and return the header of the next frame received."""
        self.send(header, payload)
        reply, _ = self.recv(timeout)
        return reply

    def assert_silent(self, seconds=0.3):
        """Assert that the server sends nothing (and keeps the connection) for a while."""
        if self.buf:
            raise AssertionError(f"unexpected buffered bytes {bytes(self.buf)!r}")
        readable, _, _ = select.select([self.sock], [], [], seconds)
        if readable:
            self.sock.settimeout(1.0)
            data = self.sock.recv(1 << 16)
            if not data:
                raise AssertionError("server closed the connection unexpectedly")
            raise AssertionError(f"server sent something unasked: {data[:200]!r}")

    def assert_closed(self, timeout=5.0):
        """Assert that the server closes the connection (EOF) within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
            except Closed:
                return
            except TimeoutError:
                raise AssertionError(
                    f"server did not close the connection within {timeout}s "
                    f"(received {bytes(self.buf[:200])!r})") from None

    # -- protocol helpers ------------------------------------------------
    def handshake(self, serialization="dimeb"):
        return self.request({"command": "handshake", "serialization": serialization, "tls": False})

    def devices(self):
        reply = self.request({"command": "devices"})
        assert reply.get("status") == 0, reply
        return reply["devices"]

    def sync(self, n=-1, timeout=REPLY_TIMEOUT):
        """Return the list of (header, payload) messages, checking the final status."""
        self.send({"command": "sync", "n": n})
        messages = []
        while True:
            header, payload = self.recv(timeout)
            if "status" in header:
                assert header == {"status": 0}, header
                return messages
            messages.append((header, payload))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
