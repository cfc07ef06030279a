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


class DimeFileNotFoundError(DimeError, FileNotFoundError):
    """A file or directory to transfer does not exist (on the file server
    or here), or a pattern matched nothing."""


class DimePermissionError(DimeError, PermissionError):
    """A file server refused: a path outside its directory (``..``, an
    absolute path, a link leading out), or an upload to a read-only one."""


class DimeFileError(DimeError, OSError):
    """A file transfer failed on a file: its bytes did not match their
    BLAKE3 hash, it changed while being sent, or a file-system error."""


_CLASSES = {
    _lib.STATUS_CONNECTION_LOST: DimeConnectionError,
    _lib.STATUS_CLOSED: DimeConnectionError,
    _lib.STATUS_PROTOCOL_ERROR: DimeProtocolError,
    _lib.STATUS_SERVER_ERROR: DimeServerError,
    _lib.STATUS_TIMEOUT: DimeTimeoutError,
    _lib.STATUS_CODEC_ERROR: DimeCodecError,
    _lib.STATUS_FILE_NOT_FOUND: DimeFileNotFoundError,
    _lib.STATUS_PERMISSION_DENIED: DimePermissionError,
    _lib.STATUS_CHECKSUM_MISMATCH: DimeFileError,
    _lib.STATUS_FILE_CHANGED: DimeFileError,
    _lib.STATUS_IO_ERROR: DimeFileError,
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
