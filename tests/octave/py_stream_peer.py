"""Python producer of test_stream_python.m, on the C ABI streams via ctypes.

Run as `python py_stream_peer.py SOCKET` with our binding installed (its
ctypes declarations and value conversion are reused; the Python binding has
no stream API of its own yet, so this peer calls dime_stream_send /
dime_stream_end directly). Sends ``peer_pid`` to the group "oct", then
provides three streams and serves readers, one at a time, until it has
served three of them (or a minute passed):

* ``py_values``: args is a list of py_peer.py PY_VALUES names; emits each
  value, in order.
* ``py_fail``: emits 1.0 and 2.0, then ends the stream with a ValueError.
* ``py_endless``: emits 1.0, 2.0, ... until the reader stops
  (DIME_STATUS_CANCELLED), then sends ``stopped_after`` (the last item
  sent) to "oct".
"""

import os
import sys
import time
import traceback
from ctypes import byref, c_int32, c_int64, c_void_p

from dime import DimeClient
from dime._convert import from_value, to_value
from dime._lib import STATUS_CANCELLED, STATUS_OK, STATUS_TIMEOUT, lib

from py_peer import PY_VALUES

lib.dime_request_is_stream.restype = c_int32
lib.dime_request_is_stream.argtypes = [c_void_p]
lib.dime_stream_send.restype = c_int32
lib.dime_stream_send.argtypes = [c_void_p, c_void_p, c_int64]
lib.dime_stream_end.restype = c_int32
lib.dime_stream_end.argtypes = [c_void_p]


def send(rq, item):
    """Sends one item; False once the reader has stopped."""
    keep = []
    v = to_value(item, keep, "item")
    try:
        st = lib.dime_stream_send(rq, v, 60000)
    finally:
        lib.dime_value_free(v)
    if st == STATUS_CANCELLED:
        return False
    if st != STATUS_OK:
        raise RuntimeError(f"dime_stream_send returned {st}")
    return True


def produce(d, name, args, rq):
    if name == "py_values":
        for key in args:
            if not send(rq, PY_VALUES[key]):
                return
    elif name == "py_fail":
        send(rq, 1.0)
        send(rq, 2.0)
        raise ValueError("bad stream after 2")
    elif name == "py_endless":
        k = 0
        while send(rq, float(k + 1)):
            k += 1
        d.send_r("oct", stopped_after=float(k))
        return
    lib.dime_stream_end(rq)


def main(sock):
    d = DimeClient("ipc", sock)
    c = c_void_p()
    if lib.dime_connect(f"unix:{sock}".encode(), byref(c)) != STATUS_OK:
        raise RuntimeError("cannot connect")
    for name in (b"py_values", b"py_fail", b"py_endless"):
        if lib.dime_provide(c, name, 1) != STATUS_OK:
            raise RuntimeError(f"cannot provide {name}")
    d.send_r("oct", peer_pid=float(os.getpid()))
    served, t0 = 0, time.monotonic()
    while served < 3 and time.monotonic() - t0 < 60:
        rq = c_void_p()
        st = lib.dime_next_call(c, 1000, byref(rq))
        if st == STATUS_TIMEOUT:
            continue
        if st != STATUS_OK:
            raise RuntimeError(f"dime_next_call returned {st}")
        try:
            name = lib.dime_request_function(rq).decode()
            if not lib.dime_request_is_stream(rq):
                lib.dime_reply_error(rq, b"NotStream", b"a stream", b"")
                continue
            args = from_value(lib.dime_request_args(rq), owned=False)
            try:
                produce(d, name, args, rq)
            except ValueError as e:
                tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
                lib.dime_reply_error(rq, b"ValueError", str(e).encode(), tb.encode())
            served += 1
        finally:
            lib.dime_request_free(rq)
    lib.dime_client_free(c)
    d.close()


if __name__ == "__main__":
    main(sys.argv[1])
