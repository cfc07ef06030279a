"""Why a remote call failed, as exceptions old code already catches.

* ``RemoteError`` (a ``DimeError``, so a ``RuntimeError`` like teleport's):
  the provider's function raised. A builtin exception type arrives as a
  subclass of both ``RemoteError`` and that type, made on first use and
  cached, so a remote ``ValueError`` is caught by ``except ValueError``.
  ``error_type``, ``remote_message`` and ``remote_traceback`` say what
  happened over there; the traceback is also a note on the exception, so it
  prints with the local one.
* ``ProviderLost`` (a ``DimeConnectionError``, so a ``ConnectionError``):
  the provider went away while running the call.
* ``NoProvider`` (a ``DimeTimeoutError``, so a ``TimeoutError``): nobody
  provided the function before the call's timeout.

A cancelled call raises ``concurrent.futures.CancelledError``; a broken
connection to the broker ``DimeConnectionError``.
"""

import builtins
import threading

from . import _lib
from ._errors import DimeConnectionError, DimeError, DimeTimeoutError, error

__all__ = ["RemoteError", "ProviderLost", "NoProvider", "remote_error"]


class RemoteError(DimeError):
    """The provider's function raised ``error_type`` with ``remote_message``;
    ``remote_traceback`` is its traceback on the provider (may be empty)."""

    def __init__(self, error_type, message, remote_traceback="", function=None):
        super().__init__(f"{error_type}: {message}" if error_type else message,
                         _lib.STATUS_REMOTE_ERROR)
        self.error_type = error_type
        self.remote_message = message
        self.remote_traceback = remote_traceback
        self.function = function
        if remote_traceback and hasattr(self, "add_note"):     # Python >= 3.11
            where = f" of {function!r}" if function else ""
            self.add_note(f"Remote traceback{where}:\n{remote_traceback.rstrip()}")

    def __reduce__(self):
        return (remote_error, (self.error_type, self.remote_message, self.remote_traceback,
                               self.function))


class ProviderLost(DimeConnectionError):
    """The provider of a call went away (crashed, was killed, lost its
    connection) while running it."""

    def __init__(self, message):
        super().__init__(message, _lib.STATUS_PROVIDER_LOST)


class NoProvider(DimeTimeoutError):
    """No client provided the function before the call's timeout."""

    def __init__(self, message):
        super().__init__(message, _lib.STATUS_NO_PROVIDER)


#: Builtin types never mixed in: raising them would mean something else
#: locally (StopIteration ends generators; the BaseException-only ones,
#: like KeyboardInterrupt, are not errors of the call).
_NOT_MIXED = {"StopIteration", "StopAsyncIteration"}

_classes = {}
_classes_lock = threading.Lock()


def remote_error_class(error_type):
    """``RemoteError``, or its cached subclass that also derives from the
    builtin exception type named ``error_type``."""
    cls = _classes.get(error_type)
    if cls is not None:
        return cls
    base = getattr(builtins, error_type, None) if error_type.isidentifier() else None
    cls = RemoteError
    if (isinstance(base, type) and issubclass(base, Exception) and error_type not in _NOT_MIXED
            and not issubclass(base, RemoteError)):
        try:
            cls = type(f"Remote{error_type}", (RemoteError, base),
                       {"__module__": "dime", "__doc__": f"A remote {error_type}."})
            cls("x", "probe")       # some builtin layouts cannot be combined
        except TypeError:
            cls = RemoteError
    with _classes_lock:
        return _classes.setdefault(error_type, cls)


def remote_error(error_type, message, remote_traceback="", function=None):
    """The exception for a provider's error: see ``remote_error_class``."""
    return remote_error_class(error_type or "")(error_type, message, remote_traceback, function)


def call_error(status, function=None):
    """The exception for a call that ended with ``status`` (not a remote
    error, not cancelled), with ``dime_last_error()``'s message."""
    what = f"call of {function!r}" if function else None
    if status == _lib.STATUS_PROVIDER_LOST:
        e = error(status, what)
        return ProviderLost(e.message)
    if status == _lib.STATUS_NO_PROVIDER:
        e = error(status, what)
        return NoProvider(e.message)
    return error(status, what)
