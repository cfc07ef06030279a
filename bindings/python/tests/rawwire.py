"""A minimal raw DiME frame client, to look at dimeb bytes on the wire."""

import json
import socket
import struct

HEADER = struct.Struct("!4sII")


class RawClient:
    def __init__(self, transport, address):
        family = socket.AF_UNIX if transport == "unix" else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(address)

    def send(self, header, payload=b""):
        h = json.dumps(header).encode()
        self.sock.sendall(HEADER.pack(b"DiME", len(h), len(payload)) + h + payload)

    def _exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        return bytes(buf)

    def recv(self):
        magic, jlen, blen = HEADER.unpack(self._exact(HEADER.size))
        assert magic == b"DiME", magic
        return json.loads(self._exact(jlen)), self._exact(blen)

    def request(self, header, payload=b""):
        self.send(header, payload)
        while True:
            reply, body = self.recv()
            if not reply.get("meta"):
                return reply

    def sync(self):
        """All queued messages as [(header, payload)]."""
        self.send({"command": "sync", "n": -1})
        out = []
        while True:
            h, p = self.recv()
            if h.get("meta"):
                continue
            if "status" in h:
                assert h["status"] == 0, h
                return out
            out.append((h, p))

    def close(self):
        self.sock.close()
