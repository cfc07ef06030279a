"""Python side of test_share.m and test_tuples.m: Octave <-> Python through
a share and a tuple space, with our binding (``dime.Share``,
``dime.TupleSpace``). The type table is py_peer.py's: Octave's values are
checked with its CHECKS, and Python sends its PY_VALUES.

    python py_share_peer.py share  SOCKET SHARE_NAME
    python py_share_peer.py tuples SOCKET SPACE_NAME

Every check becomes a "PASS ..."/"FAIL ..." line of a report that goes back
to Octave (share key ``py_report``; tuple ``("report", [lines])``), which
prints it. The steps are listed in each function; the .m tests mirror them.
"""

import math
import os
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dime  # noqa: E402
from py_peer import CHECKS, PY_VALUES  # noqa: E402


class Report:
    def __init__(self):
        self.lines = []

    def check(self, label, fn):
        try:
            ok = fn()
            self.lines.append(f"PASS {label}" if ok else f"FAIL {label}: check returned {ok!r}")
        except AssertionError as e:
            self.lines.append(f"FAIL {label}: {e}")
        except Exception:
            self.lines.append(f"FAIL {label}: {traceback.format_exc(limit=2)!r}")


def typed(v, t, x):
    assert type(v) is t, f"{type(v).__name__} {v!r}, expected {t.__name__} {x!r}"
    assert v == x, f"{v!r}, expected {x!r}"
    return True


def share_main(sock, name):
    """1. hold the whole-share lock and the named lock "klock"; meanwhile
    store PY_VALUES and "py_locked" (Octave's wait_key wakes on it), wait
    1.2 s (Octave's write blocks, its lock attempt times out), store
    "py_wrote", release; 2. wait for "oct_done", check Octave's values
    (CHECKS) and counters, incr "o_counter" by 10; 3. store the report as
    "py_report"."""
    r = Report()
    s = dime.Share(sock, name)
    time.sleep(0.3)                      # Octave is waiting for "py_locked" by now
    with s.lock(), s.lock("klock"):
        for k, v in PY_VALUES.items():
            s[k] = v
        s["py_locked"] = True
        time.sleep(1.2)
        s["py_wrote"] = 1
    try:
        s.wait_for("oct_done", timeout=60)
    except Exception as e:
        s["py_report"] = [f"FAIL python waits for oct_done: {e}"]
        return
    for key, check in CHECKS.items():
        r.check(f"python reads share value {key} written by octave",
                lambda key=key, check=check: check(s[key]))
    r.check("python reads octave's incr counter", lambda: typed(s["o_counter"], int, 3))
    r.check("python incr of octave's counter", lambda: typed(s.incr("o_counter", 10), int, 13))
    r.check("python cas on octave's value",
            lambda: s.cas("o_cas", "from octave", "from python") is True)
    r.check("python sees octave's lock released", lambda: s.try_lock("oct_lock") and (s.unlock("oct_lock") or True))
    s["py_report"] = r.lines
    s.close()


def tuples_main(sock, name):
    """1. take Octave's ("o2p", name, value) tuples (stored before this
    started) and check each with CHECKS; take ("o2p_w", ...) with Python
    wildcards and ("o2p_r", ...) with Ranges; 2. put ("p2o", name, value)
    for PY_VALUES and ("p2o_w", ...) for Octave's wildcards; 3. after
    0.4 s put ("py_late", 42) (Octave is blocked in `in` for it), then
    block in `in_` for ("oct_late", ...), which Octave puts once woken;
    4. put ("report", lines)."""
    r = Report()
    ts = dime.TupleSpace(sock, name)
    for key, check in CHECKS.items():
        def take(key=key, check=check):
            t = ts.inp(("o2p", key, object))
            assert t is not None, "no such tuple"
            assert len(t) == 3, f"arity {len(t)}"
            return check(t[2])
        r.check(f"python takes octave tuple field {key}", take)
    r.check("python finds no o2p tuple left", lambda: ts.count(("o2p", str, object)) == 0)

    def wild():
        t = ts.in_(("o2p_w", int, float, str, dime.Matrix(np.float64, 2), bool, list, dict,
                    np.float32, np.int8, np.uint16, type(None), complex, np.ndarray), timeout=5)
        assert typed(t[1], int, 7) and typed(t[2], float, 2.5) and typed(t[3], str, "txt")
        assert t[4].shape == (2, 2) and t[4][0, 1] == 2, f"{t[4]!r}"
        assert t[5] is True and t[6] == [1.0, "a"] and t[7] == {"a": 1.0}
        assert typed(t[8], np.float32, np.float32(1.5)) and typed(t[9], np.int8, -1)
        assert typed(t[10], np.uint16, 9) and t[11] is None and typed(t[12], complex, 1 + 2j)
        assert t[13].dtype == np.bool_ and t[13].tolist() == [True, False, True]
        return True
    r.check("python takes octave tuple with type wildcards", wild)
    r.check("python takes octave tuple by Range",
            lambda: typed(ts.in_(("o2p_r", dime.Range(0, 10), dime.Range(None, -1)), timeout=5)[1],
                          int, 5))
    r.check("python rd keeps octave tuple",
            lambda: ts.rd(("o2p_rd", object), timeout=5)[1] == "stay" and ts.count(("o2p_rd", str)) == 1)

    for key, value in PY_VALUES.items():
        ts.out(("p2o", key, value))
    ts.out(("p2o_w", 5, 2.5, "s", np.arange(6.0).reshape(2, 3), True, [1, 2], {"a": 1},
            np.float32(1), np.int16(3), None, 1 + 2j, np.array([True, False]), np.int64(-3),
            np.uint64(2**64 - 1)))

    time.sleep(0.4)                      # Octave blocks in in({'py_late', ...}) meanwhile
    ts.out(("py_late", 42))

    def late():
        t0 = time.monotonic()
        t = ts.in_(("oct_late", object), timeout=30)
        return typed(t[1], str, "hi from octave") and time.monotonic() - t0 < 30
    r.check("python in_ wakes on octave's out", late)
    ts.out(("report", r.lines))
    ts.close()


def main():
    mode, sock, name = sys.argv[1:4]
    try:
        (share_main if mode == "share" else tuples_main)(sock, name)
    except Exception:
        traceback.print_exc()
        sys.exit(1)


if __name__ == "__main__":
    main()
