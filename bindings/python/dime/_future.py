"""The calling side of remote calls: ``Caller`` sends calls on a
``DimeClient``'s remote-call connection and returns ``Future`` objects.

A ``Future`` is a real ``concurrent.futures.Future``: ``result(timeout)``,
``exception()``, ``done()``, ``cancel()``, ``add_done_callback`` and the
module functions ``concurrent.futures.wait`` / ``as_completed`` work on it.

How a future learns its outcome, cheapest first:

* the thread that asks (``result()``, ``exception()``, ``done()``) takes it
  from the library itself: ``dime_future_wait`` releases the GIL and the
  library's reader thread wakes this very thread when the result arrives,
  so a plain call-and-wait has no Python thread in between;
* a future that someone waits on without asking (a done callback,
  ``wait``/``as_completed``) is *watched*: a collector thread, started the
  first time that happens on a connection, takes the outcome as soon as the
  library reports the call finished (``dime_next_completed``) and runs the
  callbacks.

Exactly one thread takes an outcome out of the library (``_claim``); the
others wait on the base class's condition for it to be set.
"""

import concurrent.futures
import ctypes
import threading
import time
import weakref
from collections import deque
from concurrent.futures import _base
from ctypes import byref, c_size_t, c_uint64, c_void_p

from . import _dimeb, _lib
from ._convert import from_value, to_value
from ._errors import check, error
from ._lib import lib
from ._rpc_errors import call_error, remote_error
from ._wait import WAIT_SLICE, seconds

__all__ = ["Future", "Caller"]

_SLICE_MS = int(WAIT_SLICE * 1000)
_PENDING = _base.PENDING
_FINISHED = _base.FINISHED
_CANCELLED = (_base.CANCELLED, _base.CANCELLED_AND_NOTIFIED)


def _ms(timeout):
    """``timeout`` seconds (None: forever) as libdime's ``timeout_ms``."""
    t = seconds(timeout)
    return _lib.WAIT_FOREVER if t is None else min(int(t * 1000 + 0.999), (1 << 63) - 1)


class _Waiters(list):
    """``Future._waiters``: ``concurrent.futures.wait`` and
    ``as_completed`` append a waiter here, which makes the future watched."""

    __slots__ = ("future",)

    def __init__(self, future):
        super().__init__()
        # weak: a cycle would keep dropped futures from being freed at once
        self.future = weakref.ref(future)

    def append(self, waiter):
        super().append(waiter)
        f = self.future()
        if f is not None:
            f._watch()


class Future(concurrent.futures.Future):
    """The result of a remote call, to come. ``function`` is the name called.

    ``cancel()`` withdraws the call: one no provider has taken never runs,
    a running one's result is discarded; it returns False only when the
    call had already finished. ``result()`` raises ``dime.RemoteError``
    (and the builtin type it came from), ``dime.ProviderLost``,
    ``dime.NoProvider``, ``concurrent.futures.CancelledError`` or
    ``dime.DimeConnectionError``. Waits are interruptible by Ctrl-C.
    """

    def __init__(self, caller, ptr, function):
        super().__init__()
        self._ptr = ptr
        self._caller = caller
        self.function = function
        self._claimed = False
        self._claim_lock = threading.Lock()
        self._read = False
        self._waiters = _Waiters(self)

    # -- taking the outcome ----------------------------------------------------
    def _claim(self):
        """Takes the finished call's outcome from the library and sets it,
        unless another thread already did or is doing so."""
        with self._claim_lock:
            if self._claimed:
                return
            self._claimed = True
        try:
            ok, value = self._caller._outcome(self._ptr, self.function)
        except BaseException as e:
            # A result that cannot be converted fails the future; Ctrl-C
            # during the conversion too, and then goes on up.
            self.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        if ok:
            self.set_result(value)
        elif value is None:
            concurrent.futures.Future.cancel(self)
            self.set_running_or_notify_cancel()
        else:
            self.set_exception(value)

    def _wait_finished(self, timeout):
        """Waits until the library has the outcome and claims it; raises
        TimeoutError when ``timeout`` seconds pass first."""
        if self._claimed:
            return
        t = seconds(timeout)
        ptr = self._ptr
        if t is None:
            while lib.dime_future_wait(ptr, _SLICE_MS) == _lib.STATUS_TIMEOUT:
                pass
        else:
            deadline = time.monotonic() + t
            while True:
                left = max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
                st = lib.dime_future_wait(ptr, min(left, _SLICE_MS))
                if st != _lib.STATUS_TIMEOUT:
                    break
                if left <= _SLICE_MS:
                    raise concurrent.futures.TimeoutError(
                        f"the call of {self.function!r} did not finish within {t} s")
        self._claim()

    def _watch(self):
        if not self._claimed:
            self._caller._completions().watch(self)

    # -- concurrent.futures.Future ----------------------------------------------
    def result(self, timeout=None):
        self._read = True
        if self._state == _PENDING:
            self._wait_finished(timeout)
        if self._state == _FINISHED and self._exception is None:
            return self._result             # set, and never changes again
        return super().result(timeout)

    def exception(self, timeout=None):
        self._read = True
        if self._state == _PENDING:
            self._wait_finished(timeout)
        return super().exception(timeout)

    def done(self):
        if self._state == _PENDING and not self._claimed and lib.dime_future_done(self._ptr):
            self._claim()
        return super().done()

    def cancel(self):
        if self._state != _PENDING:
            return self._state in _CANCELLED
        lib.dime_future_cancel(self._ptr)   # NOT_FOUND: it finished first
        self._claim()
        with self._condition:
            while self._state == _PENDING:   # another thread is setting it
                self._condition.wait()
        return self._state in _CANCELLED

    def add_done_callback(self, fn):
        super().add_done_callback(fn)
        if self._state == _PENDING:
            self._watch()

    def __del__(self):
        ptr, self._ptr = getattr(self, "_ptr", None), None
        if ptr is None or lib is None:
            return
        caller = self._caller
        if not self._claimed:
            caller._orphan(ptr, self.function)
            return
        lib.dime_future_free(ptr)
        if not self._read and caller.errors and self._state not in _CANCELLED:
            e = self._exception
            if e is not None:
                caller._unread.append(e)

    def __repr__(self):
        return f"<dime.Future {self.function!r} {self._state.lower()}>"


#: Longest the completion thread waits, once its connection is gone, for
#: the library to fail the calls still in flight (it does so at once when
#: the connection closes).
_CLOSE_GRACE = 10.0


class _Completions:
    """Resolves watched futures as their calls finish, on one lazily
    started daemon thread per connection."""

    def __init__(self, conn):
        self._conn = conn
        self._watched = {}
        self._lock = threading.Lock()
        self._thread = None

    def watch(self, future):
        with self._lock:
            if self._thread is None:
                with self._conn._borrow() as ptr:
                    check(lib.dime_track_completions(ptr))
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="dime-rpc-completions")
                self._thread.start()
            ptr = future._ptr
            if ptr is None:
                return
            self._watched[lib.dime_future_id(ptr)] = future
        # Finished before tracking began: not going to be reported.
        if lib.dime_future_done(ptr):
            with self._lock:
                self._watched.pop(lib.dime_future_id(ptr), None)
            future._claim()

    def _run(self):
        conn = self._conn
        cid = c_uint64()
        while True:
            try:
                ptr = conn._lend()
            except Exception:       # the connection is closed
                break
            try:
                st = lib.dime_next_completed(ptr, _SLICE_MS, byref(cid))
            finally:
                conn._give_back()
            if st == _lib.STATUS_OK:
                with self._lock:
                    f = self._watched.pop(cid.value, None)
                if f is not None:
                    f._claim()
            elif st != _lib.STATUS_TIMEOUT:
                break
        # The connection is going, so every call in flight fails; but this
        # thread may see it closed before the library has failed them
        # (``close()`` marks the client closed, then closes the library's
        # connection), and a future claimed before then would report "not
        # finished yet". So each is claimed once the library has its outcome.
        with self._lock:
            left, self._watched = list(self._watched.values()), {}
        deadline = time.monotonic() + _CLOSE_GRACE
        for f in left:
            ptr = f._ptr
            while (ptr is not None and time.monotonic() < deadline
                   and lib.dime_future_wait(ptr, _SLICE_MS) == _lib.STATUS_TIMEOUT):
                pass
            f._claim()


class Caller:
    """Calls functions on the remote-call connection of ``conn`` (a
    ``DimeClient``). ``errors``: raise the error of a future dropped unread
    at the next call (teleport's behaviour)."""

    def __init__(self, conn, errors=True):
        self._conn = conn
        self.errors = errors
        self._names = {}
        self._unread = deque()          # exceptions of dropped futures
        self._orphans = deque()         # (ptr, function) of dropped, unfinished futures
        self._orphans_lock = threading.Lock()
        self._completions_obj = None
        self._completions_lock = threading.Lock()

    def call(self, function, data=None, timeout=None):
        """Calls ``function`` with ``data``; returns a ``Future``.
        ``timeout`` (seconds, None: no limit) bounds the wait for a
        provider to take the call (``NoProvider`` past it)."""
        if self._orphans or self._unread:
            self._raise_dropped()
        name = self._names.get(function)
        if name is None:
            name = self._name(function)
        timeout_ms = -1 if timeout is None else _ms(timeout)
        out = c_void_p()
        payload = _dimeb.encode(data)
        if payload is not None:
            ptr = self._conn._lend()
            try:
                st = lib.dime_call_encoded(ptr, name, payload, len(payload), timeout_ms,
                                           byref(out))
            finally:
                self._conn._give_back()
        else:
            keep = []           # large arrays, lent to the library without a copy
            v = to_value(data, keep, "")
            try:
                ptr = self._conn._lend()
                try:
                    st = lib.dime_call(ptr, name, v, timeout_ms, byref(out))
                finally:
                    self._conn._give_back()
            finally:
                lib.dime_value_free(v)
        if st:
            raise error(st, f"call of {function!r}")
        return Future(self, out.value, function)

    def _name(self, function):
        if not isinstance(function, str):
            raise TypeError(f"function name must be a str, not {type(function).__name__}")
        if "\0" in function:
            raise ValueError(f"function name contains a NUL character: {function!r}")
        name = function.encode("utf-8")
        if len(self._names) < 1024:
            self._names[function] = name
        return name

    # -- outcomes ---------------------------------------------------------------
    @staticmethod
    def _outcome(ptr, function):
        """(True, value), (False, exception) or (False, None) for a
        cancelled call, taken from the finished future ``ptr``."""
        data, n = c_void_p(), c_size_t()
        st = lib.dime_future_payload(ptr, byref(data), byref(n))
        if st == _lib.STATUS_OK:
            if n.value <= _dimeb.SMALL:
                try:
                    return True, _dimeb.decode(ctypes.string_at(data.value, n.value))
                except _dimeb.NotLean:
                    pass            # the library decides, and names the position
            out = c_void_p()        # large: the library decodes, numpy takes its buffers
            st = lib.dime_future_result(ptr, byref(out))
            if st == _lib.STATUS_OK:
                try:
                    return True, from_value(out.value, True)
                finally:
                    lib.dime_value_free(out.value)
        if st == _lib.STATUS_CANCELLED:
            return False, None
        if st == _lib.STATUS_REMOTE_ERROR:
            t, m, tb = c_void_p(), c_void_p(), c_void_p()
            lib.dime_future_error(ptr, byref(t), byref(m), byref(tb))
            text = [ctypes.string_at(x.value).decode("utf-8", "replace") if x.value else ""
                    for x in (t, m, tb)]
            return False, remote_error(*text, function=function)
        return False, call_error(st, function)

    # -- dropped futures ----------------------------------------------------------
    def _orphan(self, ptr, function):
        """A future was dropped before its outcome was taken."""
        if self.errors:
            self._orphans.append((ptr, function))
        else:
            lib.dime_future_free(ptr)

    def _raise_dropped(self):
        """Collects the errors of dropped futures that have finished, in
        call order up to the first unfinished one, and raises the first."""
        if self._orphans and self._orphans_lock.acquire(blocking=False):
            try:
                while self._orphans:
                    ptr, function = self._orphans[0]
                    if not lib.dime_future_done(ptr):
                        break
                    self._orphans.popleft()
                    try:
                        ok, e = self._outcome(ptr, function)
                    except Exception as conversion:
                        ok, e = False, conversion
                    finally:
                        lib.dime_future_free(ptr)
                    if not ok and e is not None:
                        self._unread.append(e)
            finally:
                self._orphans_lock.release()
        if self._unread:
            try:
                e = self._unread.popleft()
            except IndexError:
                return
            if hasattr(e, "add_note"):
                e.add_note("(raised at a later call: the future of the call that failed was "
                           "dropped without reading its result; Client(errors=False) stops this)")
            raise e

    def _completions(self):
        c = self._completions_obj
        if c is None:
            with self._completions_lock:
                if self._completions_obj is None:
                    self._completions_obj = _Completions(self._conn)
                c = self._completions_obj
        return c

    def discard(self):
        """Frees dropped futures still held for their errors (at close)."""
        while self._orphans:
            try:
                ptr, _ = self._orphans.popleft()
            except IndexError:
                break
            lib.dime_future_free(ptr)
