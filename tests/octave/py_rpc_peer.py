"""Python side of the Octave <-> Python remote-call test (test_rpc_python.m).

Run as `python py_rpc_peer.py MODE SOCKET` with our binding installed
(bindings/python). Remote calls go through the C ABI (include/dime.h:
dime_call, dime_future_*, dime_provide, dime_next_call, dime_reply...)
with ctypes, on the library the binding loads, and values through the
binding's converters; messages (the synchronization with Octave) through
`dime.DimeClient`.

Modes:

* ``serve``: provides py_check (checks a value Octave sent, by name,
  against py_peer.py's CHECKS and returns ``{"ok", "why"}``), py_value
  (returns py_peer.py's PY_VALUES[name]), py_fail (raises ValueError) and
  py_stop; sends ``ready`` to the group "oct" and serves until py_stop is
  called. Then it calls Octave: oct_check with every PY_VALUES entry
  (``{"name", "value"}``; Octave checks it on arrival), oct_value with
  every CHECKS name (the result checked here), oct_fail (a remote error
  from Octave); and sends ``report`` (a list of "PASS ..."/"FAIL ..."
  lines) and ``done`` to "oct".
* ``slow``: provides py_slow; sends ``peer_pid``, and on a call sends
  ``started`` and sleeps a minute (test_rpc_python.m kills it meanwhile).
"""

import ctypes
import os
import sys
import time
import traceback
from ctypes import POINTER, byref, c_char_p, c_int, c_int64, c_uint32, c_void_p

from dime import DimeClient
from dime._convert import from_value, to_value
from dime._lib import lib

from py_peer import CHECKS, PY_VALUES

STATUS_OK = 0
STATUS_TIMEOUT = 7105
STATUS_REMOTE_ERROR = 7201
WAIT_FOREVER = -1

for _name, (_res, _args) in {
    "dime_call": (c_int, [c_void_p, c_char_p, c_void_p, c_int64, POINTER(c_void_p)]),
    "dime_future_wait": (c_int, [c_void_p, c_int64]),
    "dime_future_result": (c_int, [c_void_p, POINTER(c_void_p)]),
    "dime_future_error": (c_int, [c_void_p] + [POINTER(c_char_p)] * 3),
    "dime_future_free": (None, [c_void_p]),
    "dime_provide": (c_int, [c_void_p, c_char_p, c_uint32]),
    "dime_unprovide": (c_int, [c_void_p, c_char_p]),
    "dime_next_call": (c_int, [c_void_p, c_int64, POINTER(c_void_p)]),
    "dime_request_function": (c_char_p, [c_void_p]),
    "dime_request_args": (c_void_p, [c_void_p]),
    "dime_reply": (c_int, [c_void_p, c_void_p]),
    "dime_reply_error": (c_int, [c_void_p, c_char_p, c_char_p, c_char_p]),
    "dime_request_free": (None, [c_void_p]),
}.items():
    getattr(lib, _name).restype = _res
    getattr(lib, _name).argtypes = _args


class CallFailed(Exception):
    """A remote call that ended with an error status."""

    def __init__(self, status, error_type, message, tb):
        super().__init__(f"status {status}: {error_type}: {message}")
        self.status, self.error_type, self.message, self.tb = status, error_type, message, tb


def check(st, what):
    if st != STATUS_OK:
        raise RuntimeError(f"{what}: status {st}: {lib.dime_last_error().decode()}")


class RawRpc:
    """Remote calls on one dime_client, straight through the C ABI."""

    def __init__(self, sock):
        self.client = c_void_p()
        check(lib.dime_connect(f"unix:{sock}".encode(), byref(self.client)), "connect")

    def call(self, name, value, timeout=60):
        keep = []
        v = to_value(value, keep)
        fut = c_void_p()
        try:
            check(lib.dime_call(self.client, name.encode(), v, int(timeout * 1000), byref(fut)),
                  "call")
        finally:
            lib.dime_value_free(v)
        try:
            check(lib.dime_future_wait(fut, int(timeout * 1000)), f"waiting for {name}")
            out = c_void_p()
            st = lib.dime_future_result(fut, byref(out))
            if st == STATUS_OK:
                try:
                    return from_value(out.value, owned=True)
                finally:
                    lib.dime_value_free(out)
            texts = [c_char_p(), c_char_p(), c_char_p()]
            if st == STATUS_REMOTE_ERROR:
                check(lib.dime_future_error(fut, *(byref(t) for t in texts)), "future_error")
                raise CallFailed(st, *(t.value.decode() for t in texts))
            raise CallFailed(st, "", lib.dime_last_error().decode(), "")
        finally:
            lib.dime_future_free(fut)

    def serve(self, functions, stop):
        """Serves the functions (name -> callable) until `stop` is called."""
        for name in [*functions, stop]:
            check(lib.dime_provide(self.client, name.encode(), 1), f"provide {name}")
        try:
            while True:
                req = c_void_p()
                check(lib.dime_next_call(self.client, 60_000, byref(req)), "next_call")
                try:
                    name = lib.dime_request_function(req).decode()
                    if name == stop:
                        check(lib.dime_reply(req, None), "reply")
                        return
                    args = from_value(lib.dime_request_args(req), owned=False)
                    try:
                        result = functions[name](args)
                    except Exception as e:
                        check(lib.dime_reply_error(req, type(e).__name__.encode(), str(e).encode(),
                                                   traceback.format_exc().encode()), "reply_error")
                        continue
                    keep = []
                    v = to_value(result, keep)
                    try:
                        check(lib.dime_reply(req, v), "reply")
                    finally:
                        lib.dime_value_free(v)
                finally:
                    lib.dime_request_free(req)
        finally:
            for name in [*functions, stop]:
                lib.dime_unprovide(self.client, name.encode())

    def close(self):
        lib.dime_client_free(self.client)


def py_check(args):
    name, value = args["name"], args["value"]
    try:
        ok = CHECKS[name](value)
        return {"ok": bool(ok), "why": "" if ok else f"got {value!r}"}
    except AssertionError as e:
        return {"ok": False, "why": str(e)}


def py_fail(x):
    raise ValueError(f"bad value {x}")


def serve_then_call(sock):
    d = DimeClient("ipc", sock)
    d.join("py")
    rpc = RawRpc(sock)
    d.send_r("oct", ready=True)
    rpc.serve({"py_check": py_check, "py_value": lambda name: PY_VALUES[name], "py_fail": py_fail},
              stop="py_stop")

    report = []

    def result(label, ok, why=""):
        report.append(f"PASS {label}" if ok else f"FAIL {label}: {why}")

    for name, value in PY_VALUES.items():
        label = f"rpc octave receives {name} as a python call's argument"
        try:
            r = rpc.call("oct_check", {"name": name, "value": value})
            result(label, r["ok"] is True, r["why"])
        except Exception as e:
            result(label, False, repr(e))
    for name, check_value in CHECKS.items():
        label = f"rpc python receives {name} as an octave result"
        try:
            v = rpc.call("oct_value", name)
            try:
                result(label, check_value(v), f"got {v!r}")
            except AssertionError as e:
                result(label, False, str(e))
        except Exception as e:
            result(label, False, repr(e))
    label = "rpc python gets octave's error as a remote error"
    try:
        rpc.call("oct_fail", 7)
        result(label, False, "no error")
    except CallFailed as e:
        result(label, e.status == STATUS_REMOTE_ERROR and e.error_type == "test:bad"
               and e.message == "bad value 7", f"{e.status} {e.error_type!r} {e.message!r}")
        result("rpc octave's traceback reaches python", "oct_fail" in e.tb, repr(e.tb))
    d.send_r("oct", report=report)
    d.send_r("oct", done=True)
    rpc.close()
    d.close()


def slow(sock):
    d = DimeClient("ipc", sock)
    rpc = RawRpc(sock)

    def py_slow(_):
        d.send_r("oct", started=True)
        time.sleep(60)

    d.send_r("oct", peer_pid=os.getpid())
    rpc.serve({"py_slow": py_slow}, stop="py_stop")


if __name__ == "__main__":
    mode, sock = sys.argv[1], sys.argv[2]
    {"serve": serve_then_call, "slow": slow}[mode](sock)
