"""Runs under the dime-client venv: serves one original DiME2 ``DimeClient``
over stdin/stdout. Each request and reply is a pickle preceded by its u32
length. Requests: ("connect", args), ("call", method, args, kwargs),
("getattr", name) or ("close_keep",) (close the client but keep serving,
to see what a closed client raises); replies: ("ok", result) or ("err",
exception type name, message, [(module, qualname) of the type and its
bases], errno or None)."""

import os
import pickle
import struct
import sys
import traceback

# Never let a stray print corrupt the reply stream.
OUT = os.fdopen(os.dup(1), "wb")
sys.stdout = sys.stderr
IN = sys.stdin.buffer

import dime  # noqa: E402  (the PyPI dime-client)
from dime import DimeClient  # noqa: E402

assert "site-packages" in dime.__file__, dime.__file__


def read_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = IN.read(n - len(buf))
        if not chunk:
            sys.exit(0)
        buf += chunk
    return buf


def reply(obj):
    data = pickle.dumps(obj, protocol=4)
    OUT.write(struct.pack("!I", len(data)) + data)
    OUT.flush()


client = None
while True:
    (n,) = struct.unpack("!I", read_exact(4))
    req = pickle.loads(read_exact(n))
    try:
        if req[0] == "connect":
            client = DimeClient(*req[1])
            result = client.serialization
        elif req[0] == "getattr":
            result = getattr(client, req[1])
        elif req[0] == "close_keep":
            result = client.close()
        else:
            _, method, args, kwargs = req
            result = getattr(client, method)(*args, **kwargs)
            if method == "close":
                reply(("ok", None))
                sys.exit(0)
        reply(("ok", result))
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - report everything to the test
        mro = [(c.__module__, c.__qualname__) for c in type(e).__mro__]
        reply(("err", type(e).__name__, f"{e}\n{traceback.format_exc()}", mro,
               getattr(e, "errno", None)))
