"""Python side of the Octave <-> Python remote-call test (test_rpc_python.m).

Run as `python py_rpc_peer.py MODE SOCKET` with our binding installed
(bindings/python): remote calls through its teleport-shaped API
(`dime.Server(client=d).bind(name, fn)`, `dime.Client(address).call(name,
data).result()`), messages (the synchronization with Octave) through
`dime.DimeClient`.

Modes:

* ``serve``: binds py_check (checks a value Octave sent, by name, against
  py_peer.py's CHECKS and returns ``{"ok", "why"}``), py_value (returns
  py_peer.py's PY_VALUES[name]), py_fail (raises ValueError) and py_stop;
  sends ``ready`` to the group "oct" and serves until py_stop is called.
  Then it calls Octave: oct_check with every PY_VALUES entry (``{"name",
  "value"}``; Octave checks it on arrival), oct_value with every CHECKS
  name (the result checked here), oct_fail (a remote error from Octave);
  and sends ``report`` (a list of "PASS ..."/"FAIL ..." lines) and
  ``done`` to "oct".
* ``slow``: binds py_slow; sends ``peer_pid``, and on a call sends
  ``started`` and sleeps a minute (test_rpc_python.m kills it meanwhile).
"""

import os
import sys
import threading
import time

import dime
from dime import DimeClient

from py_peer import CHECKS, PY_VALUES

TIMEOUT = 60


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
    stopped = threading.Event()

    def py_stop(_):
        stopped.set()

    server = dime.Server(client=d)
    server.bind("py_check", py_check)
    server.bind("py_value", lambda name: PY_VALUES[name])
    server.bind("py_fail", py_fail)
    server.bind("py_stop", py_stop)
    with server:
        d.send_r("oct", ready=True)
        if not stopped.wait(120):
            raise TimeoutError("Octave never called py_stop")

    report = []

    def result(label, ok, why=""):
        report.append(f"PASS {label}" if ok else f"FAIL {label}: {why}")

    client = dime.Client(f"ipc://{sock}")
    client.connect()
    for name, value in PY_VALUES.items():
        label = f"rpc octave receives {name} as a python call's argument"
        try:
            r = client.call("oct_check", {"name": name, "value": value}, TIMEOUT).result(TIMEOUT)
            result(label, r["ok"] is True, r["why"])
        except Exception as e:
            result(label, False, repr(e))
    for name, check_value in CHECKS.items():
        label = f"rpc python receives {name} as an octave result"
        try:
            v = client.call("oct_value", name, TIMEOUT).result(TIMEOUT)
            try:
                result(label, check_value(v), f"got {v!r}")
            except AssertionError as e:
                result(label, False, str(e))
        except Exception as e:
            result(label, False, repr(e))
    label = "rpc python gets octave's error as dime.RemoteError"
    try:
        client.oct_fail(7, TIMEOUT).result(TIMEOUT)
        result(label, False, "no error")
    except dime.RemoteError as e:
        result(label, e.error_type == "test:bad" and e.remote_message == "bad value 7",
               f"{e.error_type!r} {e.remote_message!r}")
        result("rpc octave's traceback reaches python", "oct_fail" in e.remote_traceback,
               repr(e.remote_traceback))
    except Exception as e:
        result(label, False, repr(e))
    client.close()
    d.send_r("oct", report=report)
    d.send_r("oct", done=True)
    d.close()


def slow(sock):
    d = DimeClient("ipc", sock)

    def py_slow(_):
        d.send_r("oct", started=True)
        time.sleep(TIMEOUT)

    server = dime.Server(client=d)
    server.bind("py_slow", py_slow)
    with server:
        d.send_r("oct", peer_pid=os.getpid())
        time.sleep(2 * TIMEOUT)   # killed by test_rpc_python.m long before


if __name__ == "__main__":
    mode, sock = sys.argv[1], sys.argv[2]
    {"serve": serve_then_call, "slow": slow}[mode](sock)
