"""Exceptions: every failed libdime call becomes one of these.

Each is a ``DimeError`` and also the built-in exception the original DiME2
client (PyPI ``dime-client``) raised in the same situation, so ``except``
clauses written for it keep working:

========================================  ==============================  ==========================================
situation                                 the original raised             we raise (also a ``DimeError``)
========================================  ==============================  ==========================================
no such unix socket                       ``FileNotFoundError``           ``DimeFileNotFoundError``
nobody listening (unix or TCP)            ``ConnectionRefusedError``      ``DimeConnectionRefusedError``
no permission on the socket               ``PermissionError``             ``DimeSocketPermissionError``
connecting timed out (the OS gave up)     ``TimeoutError``                ``DimeConnectionTimeoutError``
host name does not resolve                ``socket.gaierror``             ``DimeHostNotFoundError``
connection dropped while writing          ``BrokenPipeError``             ``DimeBrokenPipeError``
connection reset / closed by the server   ``ConnectionResetError`` or     ``DimeConnectionResetError``
                                          ``RuntimeError``
client closed                             ``OSError`` (``EBADF``)         ``DimeConnectionError`` (``EBADF``)
server refused (no such group ...)        ``NameError`` (its bug)         ``DimeServerError``
address it cannot read                    ``TypeError``                   ``DimeAddressError``
port out of range                         ``OverflowError``               ``DimePortError``
token refused, command not permitted      (no ``--auth`` in DiME2)        ``DimePermissionError``
========================================  ==============================  ==========================================

Every refusal is a ``DimePermissionError`` (a ``PermissionError``): the
server's (``--auth``), the unix socket's (``DimeSocketPermissionError``,
also a ``DimeConnectionError``) and a file server's
(``DimeFileRefusedError``).

All connection failures derive from ``DimeConnectionError``, which is a
``ConnectionError`` (so an ``OSError``) with ``errno`` and ``strerror`` set
from the operating system's error (``dime_last_errno()``), and a
``RuntimeError`` through ``DimeError``. ``str(e)`` is the library's one
message, e.g. ``cannot connect to unix:/tmp/dime.sock: No such file or
directory (os error 2)``.
"""

import errno as _errno
import os
import socket

from . import _lib
from ._lib import lib


class DimeError(RuntimeError):
    """A libdime call failed; ``status`` is the dime_status number and
    ``message`` the library's ``dime_last_error()`` text. A ``RuntimeError``
    because the original DiME2 client raised ``RuntimeError`` for what it
    reported itself."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        self.status = status

    def __str__(self):
        # OSError's __str__ would show "[Errno 2] <strerror>" only, dropping
        # the address and the context: keep the library's whole message.
        return self.message


class DimeServerError(DimeError, NameError):
    """The server refused a request (unknown group, already joined, ...).
    The client stays usable. Also a ``NameError``: the original client's
    error path referred to an undefined name, so every server refusal
    reached its callers as ``NameError``, and code written against it may
    catch that."""


class DimeTimeoutError(DimeError, TimeoutError):
    """``wait`` (or ``Share.wait_for``, a lock, ``TupleSpace.in_`` ...) ran
    past its timeout; ``errno`` is ``ETIMEDOUT``. The client stays usable."""

    def __init__(self, message, status=None):
        super().__init__(message, status)
        self.errno = _errno.ETIMEDOUT
        self.strerror = os.strerror(_errno.ETIMEDOUT)


class DimeArgumentError(DimeError, ValueError):
    """The library refused an argument (e.g. a value too large to send)."""


class DimeAddressError(DimeArgumentError, TypeError):
    """An address that cannot be read. Also a ``TypeError``: the original
    client raised ``TypeError`` for addresses it could not read."""


class DimePortError(DimeAddressError, OverflowError):
    """A port outside 0..65535. Also an ``OverflowError``, as the original
    client's ``socket.connect`` raised."""


class DimePermissionError(DimeError, PermissionError):
    """Not permitted; a ``PermissionError``. Raised as is when a server
    started with ``--auth`` refuses this client's credentials (no token, or
    a wrong one: raised when connecting) or a command its roles do not
    permit (nothing changed; the client stays usable). Its subclasses:
    ``DimeSocketPermissionError`` (no permission on the unix socket, when
    connecting) and ``DimeFileRefusedError`` (a file server refused)."""


class DimeConnectionError(DimeError, ConnectionError):
    """Could not connect, the connection broke, or the client is closed.

    An ``OSError``: ``errno`` is the operating system's error number
    (``None`` when the failure did not come from the OS, e.g. a server
    that does not speak DiME), ``strerror`` its text. The subclasses below
    are also the matching built-in ``OSError`` subclass."""

    def __init__(self, message, status=None, errno=None, strerror=None):
        super().__init__(message, status)
        self.errno = errno
        self.strerror = strerror or (os.strerror(errno) if errno else None)

    def __reduce__(self):
        # errno and strerror are OSError slots, not in __dict__: pass them
        # back to __init__ so a pickled error (multiprocessing) keeps them.
        return type(self), (self.message, self.status, self.errno, self.strerror)


class DimeFileNotFoundError(DimeConnectionError, FileNotFoundError):
    """No unix socket at the path (``ENOENT``)."""


class DimeSocketPermissionError(DimeConnectionError, DimePermissionError):
    """Not allowed to connect to the socket (``EACCES``/``EPERM``): a
    connection error, and a ``DimePermissionError``."""


class DimeConnectionRefusedError(DimeConnectionError, ConnectionRefusedError):
    """Nobody listens at the address (``ECONNREFUSED``)."""


class DimeConnectionResetError(DimeConnectionError, ConnectionResetError):
    """The server reset or closed the connection (``ECONNRESET``)."""


class DimeConnectionAbortedError(DimeConnectionError, ConnectionAbortedError):
    """The connection was aborted (``ECONNABORTED``)."""


class DimeBrokenPipeError(DimeConnectionError, BrokenPipeError):
    """Writing to a connection the server has closed (``EPIPE``)."""


class DimeConnectionTimeoutError(DimeConnectionError, TimeoutError):
    """The operating system gave up connecting (``ETIMEDOUT``)."""


class DimeHostNotFoundError(DimeConnectionError, socket.gaierror):
    """The host name did not resolve; ``errno`` is getaddrinfo's ``EAI_*``
    code, as in ``socket.gaierror``."""


class DimeProtocolError(DimeConnectionError):
    """The server sent something that is not DiME; the connection is dropped."""


class DimeCodecError(DimeError, ValueError):
    """A received payload could not be decoded (e.g. a pickle from an old
    client). The client stays usable."""


class DimeUnsupportedError(DimeError, NotImplementedError):
    """The server does not support the feature (an original DiME2 server,
    which announces no extensions, asked for a share, say); nothing was
    sent and the client stays usable. ``DimeClient.supports`` asks first."""


# The built-in class Python itself picks for an errno (OSError(errno, ...)
# does the picking, aliases such as EPERM/EACCES included) -> ours.
_BY_BUILTIN = {
    FileNotFoundError: DimeFileNotFoundError,
    PermissionError: DimeSocketPermissionError,
    ConnectionRefusedError: DimeConnectionRefusedError,
    ConnectionResetError: DimeConnectionResetError,
    ConnectionAbortedError: DimeConnectionAbortedError,
    BrokenPipeError: DimeBrokenPipeError,
    TimeoutError: DimeConnectionTimeoutError,
}

class DimeMissingFileError(DimeError, FileNotFoundError):
    """A file or directory to transfer does not exist (on the file server
    or here), or a pattern matched nothing."""


class DimeFileRefusedError(DimePermissionError):
    """A file server refused: a path outside its directory (``..``, an
    absolute path, a link leading out), or an upload to a read-only one."""


class DimeFileError(DimeError, OSError):
    """A file transfer failed on a file: its bytes did not match their
    BLAKE3 hash, it changed while being sent, or a file-system error."""


_CLASSES = {
    _lib.STATUS_NOT_PERMITTED: DimePermissionError,
    _lib.STATUS_UNSUPPORTED: DimeUnsupportedError,
    _lib.STATUS_INVALID_ARGUMENT: DimeArgumentError,
    _lib.STATUS_PROTOCOL_ERROR: DimeProtocolError,
    _lib.STATUS_SERVER_ERROR: DimeServerError,
    _lib.STATUS_TIMEOUT: DimeTimeoutError,
    _lib.STATUS_CODEC_ERROR: DimeCodecError,
    _lib.STATUS_FILE_NOT_FOUND: DimeMissingFileError,
    _lib.STATUS_PERMISSION_DENIED: DimeFileRefusedError,
    _lib.STATUS_CHECKSUM_MISMATCH: DimeFileError,
    _lib.STATUS_FILE_CHANGED: DimeFileError,
    _lib.STATUS_IO_ERROR: DimeFileError,
}


def last_error():
    """This thread's libdime message for the most recent failure."""
    return lib.dime_last_error().decode("utf-8", "replace")


def connection_error(message, status=_lib.STATUS_CONNECTION_LOST, errno=None):
    """The ``DimeConnectionError`` subclass for OS error ``errno``."""
    builtin = type(OSError(errno, "")) if errno else None
    return _BY_BUILTIN.get(builtin, DimeConnectionError)(message, status, errno or None)


def closed_error(what):
    """The error for a call on a closed object: ``EBADF``, as the original
    client's closed socket raised."""
    return DimeConnectionError(f"the {what} is closed", _lib.STATUS_CLOSED, _errno.EBADF)


def error(status, context=None):
    """The exception for a failed call that returned ``status``; reads this
    thread's ``dime_last_error()`` and ``dime_last_errno()``, so call it
    right after the failure."""
    message = last_error() or f"libdime status {status}"
    errno = lib.dime_last_errno()
    if context:
        message = f"{context}: {message}"
    if status == _lib.STATUS_CONNECTION_LOST:
        return connection_error(message, status, errno)
    if status == _lib.STATUS_CLOSED:
        return DimeConnectionError(message, status, _errno.EBADF)
    return _CLASSES.get(status, DimeError)(message, status)


def check(status, context=None):
    """Raises the matching exception unless ``status`` is DIME_STATUS_OK."""
    if status:
        raise error(status, context)
