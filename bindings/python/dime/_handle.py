"""One small base class for objects that own a libdime handle."""

import contextlib
import threading

from ._errors import closed_error
from . import _lib


class Closing:
    """For classes with a ``close()``: ``with`` closes on exit, and an
    object dropped without ``close()`` closes when it is collected."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:       # interpreter shutdown: the library may be gone
            pass


class Handle(Closing):
    """Owns one libdime pointer and frees it exactly once.

    Subclasses set ``_free`` to the name of the library function that
    releases the handle. ``close()`` is idempotent; ``with`` closes on exit;
    ``__del__`` closes a handle that was never closed. Calls go through
    ``_call`` under a lock, so ``close()`` from another thread never frees
    the handle while a call is using it.

    Calls that the library lets run on several threads at once and that
    may block for long (remote calls) ``_borrow()`` the handle instead of
    taking the lock: ``close()`` then first ``_shutdown``s the handle,
    which wakes them, and frees it once the last borrower is out.
    """

    _free = None
    _shutdown = None
    _what = "handle"

    def __init__(self, ptr):
        self._lock = threading.RLock()
        self._borrowers = threading.Condition(threading.Lock())
        # Borrows per thread (by Thread object: idents are reused): a
        # borrow a thread can no longer give back (Ctrl-C raised in the
        # main thread between lending and the give back, or a thread gone)
        # must not keep ``close()`` waiting.
        self._borrowed = {}
        # Pointers closed while only such borrows remained: freed by the
        # last give back (never, if that borrow was lost).
        self._unreleased = []
        self._ptr = ptr

    @property
    def closed(self):
        return self._ptr is None

    def _handle(self):
        ptr = self._ptr
        if ptr is None:
            raise closed_error(self._what)
        return ptr

    def _lend(self):
        """The pointer, which ``close()`` will not free until ``_give_back()``
        (pair them with try/finally); does not wait for the lock."""
        with self._borrowers:
            ptr = self._handle()
            me = threading.current_thread()
            self._borrowed[me] = self._borrowed.get(me, 0) + 1
            return ptr

    def _give_back(self):
        """Ends one ``_lend()``; the last one frees a pointer ``close()``
        left to it."""
        with self._borrowers:
            me = threading.current_thread()
            left = self._borrowed.get(me, 0) - 1
            if left > 0:
                self._borrowed[me] = left
            else:
                self._borrowed.pop(me, None)
            if self._borrowed:
                return
            self._borrowers.notify_all()
            unreleased, self._unreleased = self._unreleased, []
        for ptr in unreleased:
            self._release(ptr)

    def _others_borrowing(self):
        """True while a live thread other than this one holds a borrow; a
        finished thread's borrows are dropped (it can no longer use the
        pointer). Called with ``_borrowers`` held."""
        me = threading.current_thread()
        others = [t for t in self._borrowed if t is not me]
        if not others:
            return False
        for t in others:
            if not t.is_alive():
                del self._borrowed[t]
        return any(t is not me for t in self._borrowed)

    @contextlib.contextmanager
    def _borrow(self):
        """``_lend()`` and ``_give_back()`` as a ``with`` block."""
        ptr = self._lend()
        try:
            yield ptr
        finally:
            self._give_back()

    def close(self):
        """Releases the handle. Calling it again does nothing."""
        lock = getattr(self, "_lock", None)
        if lock is None:        # __init__ never ran
            return
        with lock:
            self._swap(None)

    def _swap(self, new):
        """Puts ``new`` in place of the current pointer and releases the
        old one once no borrower uses it. Called with ``_lock`` held."""
        with self._borrowers:
            old, self._ptr = self._ptr, new
            if old is None:
                return
            if self._borrowed and self._shutdown:
                getattr(_lib.lib, self._shutdown)(old)
            # Woken by the last give back; the timeout notices a borrower
            # thread that ended without one.
            while self._others_borrowing():
                self._borrowers.wait(0.1)
            if self._borrowed:
                # Only this thread's own borrows are left: a call it is
                # inside of (a bound function closing its server), or one
                # Ctrl-C cut short before its give back. Waiting for them
                # would never end, and freeing would pull the pointer from
                # under that call: the last give back frees it.
                self._unreleased.append(old)
                return
        self._release(old)

    def _release(self, ptr):
        getattr(_lib.lib, self._free)(ptr)

