"""One small base class for objects that own a libdime handle."""

import contextlib
import threading

from ._errors import closed_error
from . import _lib


class Handle:
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
        self._borrowed = 0
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
            self._borrowed += 1
            return ptr

    def _give_back(self):
        """Ends one ``_lend()``."""
        with self._borrowers:
            self._borrowed -= 1
            if not self._borrowed:
                self._borrowers.notify_all()

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
            while self._borrowed:
                self._borrowers.wait()
        self._release(old)

    def _release(self, ptr):
        getattr(_lib.lib, self._free)(ptr)

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
