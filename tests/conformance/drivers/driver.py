"""Conformance driver for Python: our binding (bindings/python) with
`--ours BINDINGS_DIR`, else whichever `dime` the interpreter imports (the
original PyPI dime-client in .venv/compat).

    python driver.py SOCKET GROUP [--ours BINDINGS_DIR]

Connects over the unix socket, joins GROUP, prints "ready", then reads the
commands of tests/conformance/run.py on stdin, one per line, until EOF:

    row ID HINTS VALUE   remember a row (VALUE in model.py's token form;
                         HINTS comma-separated, "-" for none)
    send GROUP PREFIX    build and send every row, one variable PREFIX__ID
                         each; print "sent ID" or "err ID HEXMESSAGE" per
                         row; then send PREFIX__end, the number of rows
                         sent (a string), and print "sent-done"
    recv SECONDS S1 S2…  receive until every sender S has sent S__end and
                         that many variables arrived from it, or SECONDS
                         passed; print "got NAME VALUE" per variable (VALUE
                         describes it in model.py's token form) and
                         "rerr HEXMESSAGE" per failed receive, then
                         "recv-done"

(The whole script arrives at once and stdin is closed: Octave reads a pipe
only in blocks, so no driver may wait for a command that depends on its
own output.)
"""

import os
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

OURS = "--ours" in sys.argv
if OURS:
    sys.path.insert(0, sys.argv[sys.argv.index("--ours") + 1])

import numpy as np  # noqa: E402

import dime  # noqa: E402
from model import from_tokens, to_tokens  # noqa: E402


class DecodeFailure:
    """Stands for a value the original client's decoder raised on."""

    def __init__(self, error):
        self.error = f"{type(error).__name__}: {error}"


if not OURS:
    # The original client decodes each message inside sync_r; one it cannot
    # decode would raise out of the middle of the reply stream and leave the
    # rest unread. Catch it per value so the run can say which one failed.
    import dime.dimeb as _dimeb

    _original_loads = _dimeb.loads

    def _loads(data):
        try:
            return _original_loads(data)
        except Exception as e:  # noqa: BLE001 - any decoder error is the finding
            return DecodeFailure(e)

    _dimeb.loads = _loads

# ------------------------------------------------------------ building

BE = {"int8": ">i1", "int16": ">i2", "int32": ">i4", "int64": ">i8", "uint8": ">u1",
      "uint16": ">u2", "uint32": ">u4", "uint64": ">u8", "single": ">f4", "double": ">f8",
      "csingle": ">c8", "cdouble": ">c16", "logical": "u1"}


def native(cls):
    """The native-endian numpy dtype of a class."""
    return np.dtype(np.bool_) if cls == "logical" else np.dtype(BE[cls]).newbyteorder("=")


def build(node, hints, top=True):
    """The Python value a user would write for a wire value."""
    hints = hints if top else ()
    kind = node[0]
    if kind == "N":
        return None
    if kind == "B":
        return node[1]
    if kind == "S":
        _, cls, data = node
        if cls == "int64":
            return int.from_bytes(data, "big", signed=True)
        if cls == "uint64" and "pyint" in hints:
            return int.from_bytes(data, "big")
        if cls == "double":
            return struct.unpack(">d", data)[0]
        if cls == "cdouble":
            return complex(*struct.unpack(">dd", data))
        return np.frombuffer(data, BE[cls]).astype(native(cls))[0]
    if kind == "M":
        _, cls, dims, data = node
        a = np.frombuffer(data, BE[cls]).astype(native(cls)).reshape(dims, order="F")
        if "corder" in hints:
            return np.ascontiguousarray(a)
        if "bigendian" in hints:
            return a.astype(a.dtype.newbyteorder(">"))
        if "strided" in hints:
            wide = np.zeros(dims[:-1] + (2 * dims[-1],), a.dtype)
            wide[..., ::2] = a
            view = wide[..., ::2]
            assert not view.flags.c_contiguous and not view.flags.f_contiguous
            return view
        return a
    if kind == "U":
        return node[1].decode("utf-8")
    if kind == "L":
        items = [build(x, (), False) for x in node[1]]
        return tuple(items) if "tuple" in hints else items
    if kind == "D":
        return {build(k, (), False): build(v, (), False) for k, v in node[1]}
    raise ValueError(f"no Python value for {kind}")


# ------------------------------------------------------------ describing

CLASS_OF = {np.dtype(v).newbyteorder("="): k for k, v in BE.items() if k != "logical"}
CLASS_OF[np.dtype(np.bool_)] = "logical"


def big_endian(a, cls):
    """An array (or numpy scalar) of a class, big-endian, for its bytes."""
    if cls == "logical":
        return np.asarray(a, np.uint8)
    return np.asarray(a).astype(np.dtype(BE[cls]))


def describe(v):
    """A received value as a node of model.py."""
    if isinstance(v, DecodeFailure):
        return ("E", v.error)
    if v is None:
        return ("N",)
    t = type(v)
    if t is bool:
        return ("B", v)
    if t is int:
        return ("S", "int", str(v))
    if t is float:
        return ("S", "float", struct.pack(">d", v))
    if t is complex:
        return ("S", "complex", struct.pack(">dd", v.real, v.imag))
    if t is str:
        return ("U", v.encode("utf-8"))
    if t is list:
        return ("L", tuple(describe(x) for x in v))
    if t is tuple:
        return ("T", tuple(describe(x) for x in v))
    if t is dict:
        return ("D", tuple((describe(k), describe(x)) for k, x in v.items()))
    if t is np.ndarray:
        cls = CLASS_OF.get(v.dtype.newbyteorder("="))
        if cls is None:
            return ("X", f"ndarray of dtype {v.dtype}")
        return ("M", cls, tuple(v.shape), big_endian(v, cls).tobytes(order="F"))
    if isinstance(v, np.generic):
        cls = CLASS_OF.get(v.dtype.newbyteorder("="))
        if cls is None:
            return ("X", f"numpy {t.__name__}")
        return ("S", cls, big_endian(v, cls).tobytes())
    return ("X", f"{t.__module__}.{t.__qualname__}")


# ------------------------------------------------------------ commands


def say(*words):
    """One line to the orchestrator."""
    sys.stdout.write(" ".join(words) + "\n")
    sys.stdout.flush()


def hexmsg(e):
    """An exception as one hex token."""
    return f"{type(e).__name__}: {e}".encode("utf-8").hex() or "-"


def receive(d, senders, seconds):
    """The recv command: see the module docstring."""
    deadline = time.monotonic() + seconds
    announced = {s: None for s in senders}    # rows each sender says it sent
    arrived = {s: 0 for s in senders}
    while not all(n is not None and arrived[s] >= n for s, n in announced.items()):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            batch = d.sync_r(1)
        except Exception as e:  # noqa: BLE001 - reported, the run goes on
            say("rerr", hexmsg(e))
            continue
        if not batch:
            if OURS:
                try:
                    d.wait(min(left, 1.0))
                except TimeoutError:
                    pass
            else:
                time.sleep(0.01)   # the original's wait() has no timeout
            continue
        for name, value in batch.items():
            sender, _, rid = name.partition("__")
            if rid == "end" and isinstance(value, str) and sender in announced:
                announced[sender] = int(value)
                continue
            arrived[sender] = arrived.get(sender, 0) + 1
            say("got", name, to_tokens(describe(value)))
    say("recv-done")


def main():
    """Connects, joins, then runs the commands on stdin."""
    sock, group = sys.argv[1], sys.argv[2]
    d = dime.DimeClient("ipc", sock)
    d.join(group)
    say("ready", "ours" if OURS else "original", os.path.dirname(dime.__file__))
    rows = []
    for line in sys.stdin:
        words = line.rstrip("\n").split(" ", 3)
        cmd = words[0]
        if cmd == "row":
            rows.append((words[1], () if words[2] == "-" else tuple(words[2].split(",")),
                         from_tokens(words[3])))
        elif cmd == "send":
            to, prefix = words[1], words[2]
            count = 0
            for rid, hints, node in rows:
                try:
                    d.send_r(to, **{f"{prefix}__{rid}": build(node, hints)})
                    say("sent", rid)
                    count += 1
                except Exception as e:  # noqa: BLE001 - a refusal is a result
                    say("err", rid, hexmsg(e))
            d.send_r(to, **{f"{prefix}__end": str(count)})
            say("sent-done")
        elif cmd == "recv":
            receive(d, line.split()[2:], float(words[1]))
        else:
            say("err", "-", hexmsg(ValueError(f"unknown command {cmd!r}")))
    d.close()


if __name__ == "__main__":
    main()
