"""Blocking library calls made in slices, so that Ctrl-C gets through.

A ctypes call releases the GIL and blocks inside libdime until the server
answers, and Python runs signal handlers (``KeyboardInterrupt``) only
between bytecodes: a call that waits an hour inside the library ignores
Ctrl-C for an hour. ``sliced`` instead asks the server to wait at most
``WAIT_SLICE`` seconds at a time and loops in Python, so a signal handler
runs, and may raise, between two slices.

Each slice is a whole request and its reply (on a timeout the server
withdraws the wait and answers), so an exception raised between slices
leaves no reply outstanding and the connection stays usable.

Only waits that lose nothing by being asked again are sliced: a message
wait (messages queue for the client whether or not it waits),
``Share.wait_for`` and ``TupleSpace.rd`` (every waiter gets the value; the
only cost is that a key or tuple that appears and disappears again within
the microseconds between two slices is not seen, as if the call had started
a moment later). Waits that are served first come, first served --
``Share.lock`` and ``TupleSpace.in_`` -- are not sliced: a timed-out request
leaves the server's queue, so asking again every slice would put the
waiter at the back of the line each time (and the server has no other
way to withdraw a request than a timeout or a disconnect).
"""

import math
import time

from . import _lib

#: Longest wait asked of the library in one call, in seconds: the most a
#: signal (Ctrl-C) waits before its handler runs, and close() from another
#: thread before it gets the connection.
WAIT_SLICE = 0.2


def seconds(timeout):
    """``timeout`` as a number of seconds, or ``None`` for "forever" (given
    ``None`` or infinity). ``ValueError`` if it is negative or NaN."""
    if timeout is None:
        return None
    t = float(timeout)
    if math.isnan(t) or t < 0:
        raise ValueError(f"timeout must be None or a non-negative number of seconds, not {timeout!r}")
    if math.isinf(t):
        return None
    return t


def sliced(call, timeout):
    """Runs ``call(timeout_ms)`` (a libdime call returning a status) in
    slices of at most ``WAIT_SLICE`` seconds until it returns anything but
    ``DIME_STATUS_TIMEOUT``, or until ``timeout`` seconds (from
    ``seconds()``; ``None``: forever) have passed in all. Returns the last
    status.

    The slices add up to the timeout itself, not to a whole number of
    slices: the last one asks only for what is left.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        slice_ms = math.ceil(WAIT_SLICE * 1000)
        if deadline is not None:
            # Rounded up so the server's wait never ends before the deadline;
            # never negative, which the library would read as "forever".
            left_ms = math.ceil((deadline - time.monotonic()) * 1000)
            slice_ms = max(0, min(slice_ms, left_ms))
        st = call(slice_ms)
        if st != _lib.STATUS_TIMEOUT:
            return st
        if deadline is not None and time.monotonic() >= deadline:
            return st
