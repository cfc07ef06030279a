#!/usr/bin/env python3
"""A test double of an original DiME2 server: only DiME2's own commands.

Our clients must work against the servers people already run, which know
none of our extensions (docs/protocol-extensions.md). This server speaks
the protocol of docs/protocol.md as the original does, and nothing more:

- the commands handshake, join, leave, send, broadcast, sync, wait and
  devices; any other command, or none, is answered
  ``{"status":-1,"error":"Unknown command"}`` and the connection stays open;
- the handshake reply is ``{"status":0,"serialization":S,"tls":false}``,
  with no ``"extensions"`` list;
- fields it does not know are ignored, as the original ignores them: a
  ``sync`` with ``"wait":true`` is a plain sync, answered at once; a
  ``wait`` with ``"timeout"`` waits forever; a ``send`` with
  ``"receive":true`` is a plain send (the field travels in the relayed
  header);
- while a ``wait`` is unanswered, the client's later requests wait behind
  it, so replies stay in request order.

Listeners as the real server's: ``-l unix:PATH``, ``-l tcp:[HOST:]PORT``,
``-l ws:[HOST:]PORT`` (TCP and WebSocket on 127.0.0.1 unless a host is
given; port 0 picks one). Each prints ``dime: listening on KIND:ADDRESS``
on stderr once bound, like our server. ``--log FILE`` appends the command
of every request to FILE, one per line, so tests can count requests (a
client that spins shows up as thousands of ``sync`` lines). One thread, one
``selectors`` loop: an idle server sleeps in ``select``. SIGTERM and SIGINT
stop it and remove its socket files.

Standard library only: it runs with any python3 >= 3.8.
"""

import argparse
import base64
import collections
import hashlib
import json
import os
import selectors
import signal
import socket
import struct
import sys

MAGIC = b"DiME"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(header, payload=b""):
    """One DiME frame: magic, lengths, JSON header, payload."""
    if not isinstance(header, bytes):
        header = json.dumps(header).encode("utf-8")
    return MAGIC + struct.pack(">II", len(header), len(payload)) + header + payload


def ws_message(data):
    """One unmasked binary WebSocket message carrying ``data``."""
    n = len(data)
    if n < 126:
        head = struct.pack(">BB", 0x82, n)
    elif n < 1 << 16:
        head = struct.pack(">BBH", 0x82, 126, n)
    else:
        head = struct.pack(">BBQ", 0x82, 127, n)
    return head + data


class Conn:
    """One client connection: its bytes in and out, groups and queue."""

    def __init__(self, sock, websocket):
        self.sock = sock
        self.websocket = websocket
        self.upgraded = not websocket   # a WebSocket starts with HTTP
        self.raw = bytearray()          # bytes as read (HTTP, WebSocket frames)
        self.inbuf = bytearray()        # the DiME byte stream
        self.out = bytearray()
        self.groups = set()
        self.queue = collections.deque()  # (header bytes, payload) to sync
        self.waiting = False            # a wait is unanswered
        self.held = collections.deque()   # requests behind that wait
        self.closing = False            # close once `out` is written

    def send_frame(self, data):
        self.out += ws_message(data) if self.websocket else data

    def reply(self, obj):
        self.send_frame(frame(obj))


class Double:
    """The server: listeners, connections, groups, the serialization."""

    def __init__(self, log):
        self.sel = selectors.DefaultSelector()
        self.conns = {}
        self.serialization = None
        self.socket_files = []
        self.log = log

    # -- listeners -------------------------------------------------------
    def listen(self, spec):
        kind, _, rest = spec.partition(":")
        if kind in ("unix", "ipc"):
            if os.path.exists(rest):
                os.unlink(rest)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(rest)
            self.socket_files.append(rest)
            shown = f"unix:{rest}"
        elif kind in ("tcp", "ws"):
            host, _, port = rest.rpartition(":")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host or "127.0.0.1", int(port)))
            h, p = s.getsockname()
            shown = f"{kind}:{h}:{p}"
        else:
            raise SystemExit(f"dime2_double: unknown listener {spec!r}")
        s.listen(128)
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ, ("listener", kind == "ws"))
        print(f"dime: listening on {shown}", file=sys.stderr, flush=True)

    # -- the loop --------------------------------------------------------
    def run(self):
        while True:
            for key, events in self.sel.select():
                what, data = key.data
                if what == "listener":
                    self.accept(key.fileobj, data)
                    continue
                conn = data
                if events & selectors.EVENT_READ:
                    self.read(conn)
                if conn.sock.fileno() >= 0 and events & selectors.EVENT_WRITE:
                    self.write(conn)
            for conn in list(self.conns.values()):
                self.flush(conn)

    def accept(self, listener, websocket):
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        conn = Conn(sock, websocket)
        self.conns[sock.fileno()] = conn
        self.sel.register(sock, selectors.EVENT_READ, ("conn", conn))

    def read(self, conn):
        try:
            data = conn.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(conn)
            return
        if conn.websocket:
            conn.raw += data
            if not self.unwrap_websocket(conn):
                return
        else:
            conn.inbuf += data
        self.parse(conn)

    def flush(self, conn):
        if conn.sock.fileno() < 0:
            return
        if conn.out:
            self.write(conn)
        if conn.sock.fileno() < 0:
            return
        if conn.closing and not conn.out:
            self.drop(conn)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        self.sel.modify(conn.sock, events, ("conn", conn))

    def write(self, conn):
        try:
            n = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.drop(conn)
            return
        del conn.out[:n]

    def drop(self, conn):
        if conn.sock.fileno() < 0:
            return
        self.conns.pop(conn.sock.fileno(), None)
        self.sel.unregister(conn.sock)
        conn.sock.close()

    # -- WebSocket -------------------------------------------------------
    def unwrap_websocket(self, conn):
        """Moves the data of complete WebSocket messages into the DiME
        stream (binary, text and continuation frames alike, as the
        original does); False once the connection is being closed."""
        if not conn.upgraded:
            end = conn.raw.find(b"\r\n\r\n")
            if end < 0:
                return False
            request = conn.raw[:end].decode("latin-1")
            del conn.raw[:end + 4]
            key = None
            for line in request.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "sec-websocket-key":
                    key = value.strip()
            if key is None:
                conn.out += b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                conn.closing = True
                return False
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            conn.out += ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode()
            conn.upgraded = True
        while len(conn.raw) >= 2:
            b0, b1 = conn.raw[0], conn.raw[1]
            opcode, masked, n = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
            pos = 2
            if n == 126:
                if len(conn.raw) < 4:
                    break
                n = struct.unpack_from(">H", conn.raw, 2)[0]
                pos = 4
            elif n == 127:
                if len(conn.raw) < 10:
                    break
                n = struct.unpack_from(">Q", conn.raw, 2)[0]
                pos = 10
            mask = b""
            if masked:
                mask = bytes(conn.raw[pos:pos + 4])
                pos += 4
            if len(conn.raw) < pos + n:
                break
            data = bytes(conn.raw[pos:pos + n])
            del conn.raw[:pos + n]
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode in (0x0, 0x1, 0x2):
                conn.inbuf += data
            elif opcode == 0x8:
                conn.out += b"\x88\x00"
                conn.closing = True
                return False
            elif opcode == 0x9:
                conn.out += struct.pack(">BB", 0x8A, len(data)) + data
        return True

    # -- DiME ------------------------------------------------------------
    def parse(self, conn):
        while len(conn.inbuf) >= 12 and not conn.closing:
            if conn.inbuf[:4] != MAGIC:
                conn.reply({"status": -1, "error": "Invalid DiME message"})
                conn.closing = True
                return
            jlen, plen = struct.unpack_from(">II", conn.inbuf, 4)
            if len(conn.inbuf) < 12 + jlen + plen:
                return
            header = bytes(conn.inbuf[12:12 + jlen])
            payload = bytes(conn.inbuf[12 + jlen:12 + jlen + plen])
            del conn.inbuf[:12 + jlen + plen]
            if conn.waiting:
                conn.held.append((header, payload))
            else:
                self.handle(conn, header, payload)

    def handle(self, conn, header, payload):
        try:
            req = json.loads(header.decode("utf-8"))
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except (UnicodeDecodeError, ValueError) as e:
            conn.reply({"status": -1, "error": f"JSON parsing error: {e}"})
            conn.closing = True
            return
        command = req.get("command")
        if self.log:
            self.log.write(f"{command if isinstance(command, str) else '?'}\n")
            self.log.flush()
        handler = {
            "handshake": self.handshake, "join": self.join, "leave": self.leave,
            "send": self.send, "broadcast": self.broadcast, "sync": self.sync,
            "wait": self.wait, "devices": self.devices,
        }.get(command) if isinstance(command, str) else None
        if handler is None:
            conn.reply({"status": -1, "error": "Unknown command"})
            return
        try:
            handler(conn, req, header, payload)
        except KeyError as e:
            conn.reply({"status": -1, "error": f"JSON parsing error: missing field {e.args[0]}"})
        except (TypeError, ValueError) as e:
            conn.reply({"status": -1, "error": f"JSON parsing error: {e}"})

    def handshake(self, conn, req, header, payload):
        wanted = req["serialization"]
        if self.serialization is None:
            self.serialization = wanted
        elif wanted != self.serialization and self.serialization not in ("dimeb", "json"):
            self.serialization = "dimeb"
            meta = {"status": 1, "meta": True, "command": "reregister", "serialization": "dimeb"}
            for other in self.conns.values():
                if other is not conn:
                    other.reply(meta)
        conn.reply({"status": 0, "serialization": self.serialization, "tls": False})

    @staticmethod
    def names(req):
        names = req["name"]
        if not isinstance(names, list):
            raise TypeError("expected array")
        if not all(isinstance(n, str) for n in names):
            raise TypeError("expected string")
        return names

    def join(self, conn, req, header, payload):
        names = self.names(req)
        for n in names:
            if n in conn.groups:
                conn.reply({"status": -1, "error": f"Client is already in group: {n}"})
                return
        conn.groups.update(names)
        conn.reply({"status": 0})

    def leave(self, conn, req, header, payload):
        names = self.names(req)
        for n in names:
            if n not in conn.groups:
                conn.reply({"status": -1, "error": f"Client is not in group: {n}"})
                return
        conn.groups.difference_update(names)
        conn.reply({"status": 0})

    @staticmethod
    def require(req, *fields):
        """Raises KeyError (a "JSON parsing error" reply) for a missing field."""
        for f in fields:
            req[f]

    def send(self, conn, req, header, payload):
        self.require(req, "name", "varname", "serialization")
        group = req["name"]
        members = [c for c in self.conns.values() if group in c.groups]
        if not members:
            conn.reply({"status": -1, "error": f"No such group exists: {group}"})
            return
        self.deliver(members, header, payload)
        conn.reply({"status": 0})

    def broadcast(self, conn, req, header, payload):
        self.require(req, "varname", "serialization")
        self.deliver([c for c in self.conns.values() if c is not conn], header, payload)
        conn.reply({"status": 0})

    def deliver(self, recipients, header, payload):
        for c in recipients:
            c.queue.append((header, payload))
            if c.waiting:
                c.reply({"status": 0, "n": len(c.queue)})
                c.waiting = False
                # The requests held behind the wait run now, in order.
                while c.held and not c.waiting:
                    h, p = c.held.popleft()
                    self.handle(c, h, p)

    def sync(self, conn, req, header, payload):
        n = int(req.get("n", -1))
        count = len(conn.queue) if n < 0 else min(n, len(conn.queue))
        for _ in range(count):
            h, p = conn.queue.popleft()
            conn.send_frame(frame(h, p))
        conn.reply({"status": 0})

    def wait(self, conn, req, header, payload):
        if conn.queue:
            conn.reply({"status": 0, "n": len(conn.queue)})
        else:
            conn.waiting = True

    def devices(self, conn, req, header, payload):
        groups = sorted({g for c in self.conns.values() for g in c.groups})
        conn.reply({"status": 0, "devices": groups})

    def close(self):
        for path in self.socket_files:
            try:
                os.unlink(path)
            except OSError:
                pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-l", dest="listen", action="append", required=True,
                    help="unix:PATH, tcp:[HOST:]PORT or ws:[HOST:]PORT (repeatable)")
    ap.add_argument("--log", help="append each request's command to this file")
    args = ap.parse_args()
    log = open(args.log, "a", encoding="utf-8") if args.log else None
    server = Double(log)

    def stop(signum, _frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for spec in args.listen:
            server.listen(spec)
        server.run()
    finally:
        server.close()


if __name__ == "__main__":
    main()
