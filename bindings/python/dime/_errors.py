"""Exceptions: every failed libdime call becomes one of these.

``DimeError`` derives from ``RuntimeError`` because the original DiME2 client
raised ``RuntimeError`` for server refusals, so ``except RuntimeError`` in
existing scripts keeps working.
"""

from . import _lib
from ._lib import lib


class DimeError(RuntimeError):
    """A libdime call failed; ``status`` is the dime_status number and
    ``message`` the library's ``dime_last_error()`` text."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        self.status = status


class DimeServerError(DimeError):
    """The server refused a request (unknown group, already joined, ...).
    The client stays usable."""


class DimeTimeoutError(DimeError, TimeoutError):
    """``wait`` ran past its timeout. The client stays usable."""


class DimeConnectionError(DimeError, ConnectionError):
    """Could not connect, the connection broke, or the client is closed."""


class DimeProtocolError(DimeConnectionError):
    """The server sent something that is not DiME; the connection is dropped."""


class DimeCodecError(DimeError, ValueError):
    """A received payload could not be decoded (e.g. a pickle from an old
    client). The client stays usable."""


class DimeUnsupportedError(DimeError, NotImplementedError):
    """The server does not support the feature (an original DiME2 server,
    which announces no extensions, asked for a share, say); nothing was
    sent and the client stays usable. ``DimeClient.supports`` asks first."""


class DimePermissionError(DimeServerError, PermissionError):
    """The server refused this client's credentials (no token, or a wrong
    one, for a server started with ``--auth``: raised when connecting), or
    a command its roles do not permit (nothing changed; the client stays
    usable)."""


_CLASSES = {
    _lib.STATUS_NOT_PERMITTED: DimePermissionError,
    _lib.STATUS_UNSUPPORTED: DimeUnsupportedError,
    _lib.STATUS_CONNECTION_LOST: DimeConnectionError,
    _lib.STATUS_CLOSED: DimeConnectionError,
    _lib.STATUS_PROTOCOL_ERROR: DimeProtocolError,
    _lib.STATUS_SERVER_ERROR: DimeServerError,
    _lib.STATUS_TIMEOUT: DimeTimeoutError,
    _lib.STATUS_CODEC_ERROR: DimeCodecError,
}


def last_error():
    """This thread's libdime message for the most recent failure."""
    return lib.dime_last_error().decode("utf-8", "replace")


def error(status, context=None):
    """The exception for a failed call that returned ``status``."""
    message = last_error() or f"libdime status {status}"
    if context:
        message = f"{context}: {message}"
    return _CLASSES.get(status, DimeError)(message, status)


def check(status, context=None):
    """Raises the matching exception unless ``status`` is DIME_STATUS_OK."""
    if status:
        raise error(status, context)
