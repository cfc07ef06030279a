"""One small base class for objects that own a libdime handle."""

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
    """

    _free = None
    _what = "handle"

    def __init__(self, ptr):
        self._lock = threading.RLock()
        self._ptr = ptr

    @property
    def closed(self):
        return self._ptr is None

    def _handle(self):
        ptr = self._ptr
        if ptr is None:
            raise closed_error(self._what)
        return ptr

    def close(self):
        """Releases the handle. Calling it again does nothing."""
        lock = getattr(self, "_lock", None)
        if lock is None:        # __init__ never ran
            return
        with lock:
            ptr, self._ptr = self._ptr, None
            if ptr is not None:
                self._release(ptr)

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
