"""Parallel file transfer through a dime broker (docs/files.md).

A file server exposes a directory tree; clients download and upload the
files a selection names over several connections at once, large files in
MiB-sized pieces, each piece checked against its BLAKE3 hash on arrival.
Files arrive under a temporary name and are renamed when complete; an
interrupted transfer, run again, resumes its verified pieces.

    import dime.files, re
    srv = dime.files.serve("/data", address="tcp:127.0.0.1:9000")   # broker + server
    dime.files.download("files", "logs/*.txt", "here", address="tcp:127.0.0.1:9000")
    dime.files.download("files", re.compile(r"\\.log$"), "here", connections=8,
                        progress=print, address="tcp:127.0.0.1:9000")
    srv.close()

``what`` is a list of paths (files or directories), a string (a glob if it
has ``*``, ``?`` or ``[``, else one path), or a compiled regular
expression (``re.compile(...)``), searched for in each file's path from
the root. Errors are ``DimeMissingFileError`` (a ``FileNotFoundError``),
``DimeFileRefusedError`` (a ``PermissionError``: a path outside the served
directory, or an upload to a read-only server), ``DimeFileError`` (an
``OSError``: checksum, changed file, file system), all in this module, and
``dime.DimeConnectionError``; all are ``dime.DimeError``.

The work is done by libdime (the same Rust code as ``dime get``/``dime
put``); Python only passes arguments and runs the progress callback.
"""

import collections
import ctypes
import os
import re
from ctypes import (POINTER, Structure, c_bool, c_char_p, c_double, c_size_t, c_uint64,
                    c_void_p)

from ._errors import (DimeError, DimeFileError, DimeMissingFileError, DimeFileRefusedError,
                      error)
from ._handle import Closing
from ._lib import lib
from ._remote import default_address, normalize_address
from .client import DimeClient, _cstr

__all__ = ["serve", "download", "upload", "FileServer", "Progress", "Summary", "DimeError",
           "DimeMissingFileError", "DimeFileRefusedError", "DimeFileError"]

_PATHS, _GLOB, _REGEX = 0, 1, 2
_WILDCARDS = ("*", "?", "[")


class Progress(collections.namedtuple(
        "Progress", "files_done files_total bytes_done bytes_total elapsed rate eta")):
    """How far a transfer has come: files and bytes done and in all,
    seconds elapsed, bytes per second, and seconds left (``None`` while
    unknown)."""

    __slots__ = ()


class Summary(collections.namedtuple("Summary", "files skipped bytes resumed elapsed")):
    """What a transfer did: files that arrived, files already there (same
    size and time, not sent again), bytes sent, bytes of interrupted
    transfers not sent again, seconds taken."""

    __slots__ = ()


class _CProgress(Structure):
    _fields_ = [("files_done", c_uint64), ("files_total", c_uint64),
                ("bytes_done", c_uint64), ("bytes_total", c_uint64),
                ("elapsed", c_double), ("rate", c_double), ("eta", c_double)]


class _COptions(Structure):
    _fields_ = [("connections", c_size_t), ("in_flight", c_size_t), ("piece", c_uint64),
                ("progress_interval_ms", c_uint64), ("server_timeout_ms", c_uint64)]


class _CSummary(Structure):
    _fields_ = [("files", c_uint64), ("skipped", c_uint64), ("bytes", c_uint64),
                ("resumed", c_uint64), ("elapsed", c_double)]


_PROGRESS_FN = ctypes.CFUNCTYPE(c_bool, c_void_p, POINTER(_CProgress))


def _address(address, client):
    if client is not None:
        if address is not None:
            raise TypeError("give address= or client=, not both")
        if not isinstance(client, DimeClient):
            raise TypeError(f"client must be a DimeClient, not {type(client).__name__}")
        return client.address
    return normalize_address(address)


def _selection(what):
    """(kind, [strings]) for libdime."""
    if isinstance(what, re.Pattern):
        if isinstance(what.pattern, bytes):
            raise TypeError("give a str regular expression, not bytes")
        flags = "".join(f for f, bit in (("i", re.IGNORECASE), ("m", re.MULTILINE),
                                         ("s", re.DOTALL), ("x", re.VERBOSE)) if what.flags & bit)
        return _REGEX, [f"(?{flags}){what.pattern}" if flags else what.pattern]
    if isinstance(what, (str, os.PathLike)):
        s = os.fspath(what)
        if not isinstance(s, str):
            raise TypeError("give str paths, not bytes")
        return (_GLOB if any(c in s for c in _WILDCARDS) else _PATHS), [s]
    if isinstance(what, (list, tuple)):
        paths = [os.fspath(p) for p in what]
        if not paths:
            raise ValueError("give at least one path")
        if not all(isinstance(p, str) for p in paths):
            raise TypeError("paths must be str or os.PathLike")
        return _PATHS, paths
    raise TypeError("what must be a path, a list of paths, a glob string, or a compiled "
                    f"regular expression, not {type(what).__name__}")


def _strings(items, what):
    return (c_char_p * len(items))(*[_cstr(s, what) for s in items])


class FileServer(Closing):
    """A running file server (from ``serve``); ``close()`` stops it (and
    its embedded broker, if it has one). Also a context manager."""

    def __init__(self, handle, name, root, writable, address, embedded):
        self._handle = handle
        self.name = name
        self.root = root
        self.writable = writable
        self.embedded = embedded
        #: The broker's address: where clients connect.
        self.address = address

    @property
    def addresses(self):
        """The embedded broker's addresses as bound (a ``tcp:…:0`` reads
        back with its port); empty without an embedded broker."""
        out = []
        while self._handle:
            a = lib.dime_files_server_address(self._handle, len(out))
            if a is None:
                break
            out.append(a.decode())
        return out

    @property
    def closed(self):
        return not self._handle

    def close(self):
        """Stops serving (calls already taken finish). Idempotent."""
        h, self._handle = self._handle, None
        if h:
            status = lib.dime_files_server_stop(h)
            if status:
                raise error(status, "stopping the file server")

    def __repr__(self):
        state = "closed" if self.closed else self.address
        access = "read-write" if self.writable else "read-only"
        return f"<dime.files.FileServer {self.name!r} of {self.root!r} ({access}) at {state}>"


def serve(root, name="files", writable=False, address=None, client=None):
    """Serves directory ``root`` as file server ``name``, read-only unless
    ``writable``, and returns a ``FileServer`` (call ``close()``).

    With ``address=`` (one address or a list, e.g. ``"tcp:127.0.0.1:0"``),
    the broker runs in this process listening there, so a transfer is one
    hop; ``FileServer.addresses`` gives the bound addresses. With
    ``client=`` (a ``DimeClient``) it serves through that client's broker;
    with neither, through ``$DIME_ADDRESS`` or ``unix:/tmp/dime.sock``.
    Serving runs on library threads: this call returns at once.
    """
    root_s = os.fspath(root)
    name_c = _cstr(name, "name")
    out = c_void_p()
    if address is not None:
        if client is not None:
            raise TypeError("give address= (to run a broker here) or client=, not both")
        listen = [address] if isinstance(address, (str, os.PathLike)) else list(address)
        listen = [normalize_address(a) for a in listen]
        status = lib.dime_files_serve_embedded(_strings(listen, "address"), len(listen),
                                               _cstr(root_s, "root"), name_c, bool(writable),
                                               ctypes.byref(out))
        if status:
            raise error(status, f"serving {root_s!r}")
        srv = FileServer(out.value, name, root_s, bool(writable), None, True)
        srv.address = srv.addresses[0]
        return srv
    broker = _address(None, client) if client is not None else default_address()
    status = lib.dime_files_serve(_cstr(normalize_address(broker), "address"),
                                  _cstr(root_s, "root"), name_c, bool(writable),
                                  ctypes.byref(out))
    if status:
        raise error(status, f"serving {root_s!r}")
    return FileServer(out.value, name, root_s, bool(writable), normalize_address(broker), False)


def _options(connections, piece, progress_interval, server_timeout):
    if isinstance(connections, bool) or not isinstance(connections, int) \
            or not 1 <= connections <= 256:
        raise ValueError(f"connections must be an int from 1 to 256, not {connections!r}")
    if piece is not None and (not isinstance(piece, int) or piece < 1024 or piece > 64 << 20
                              or piece & (piece - 1)):
        raise ValueError(f"piece must be a power of two from 1 KiB to 64 MiB, not {piece!r}")
    ms = max(1, round(progress_interval * 1000))
    return _COptions(connections, 0, piece or 0, ms, max(1, round(server_timeout * 1000)))


def _run(fn, progress, options, *args):
    """Calls a libdime transfer with ``progress`` as its callback; an
    exception in the callback (Ctrl-C included) cancels the transfer and
    is raised here."""
    raised = []

    def call(_userdata, p):
        if progress is None:
            return True
        try:
            c = p.contents
            keep_going = progress(Progress(c.files_done, c.files_total, c.bytes_done,
                                           c.bytes_total, c.elapsed, c.rate,
                                           None if c.eta < 0 else c.eta))
            return keep_going is not False
        except BaseException as e:  # re-raised once libdime has stopped
            raised.append(e)
            return False

    cb = _PROGRESS_FN(call)
    summary = _CSummary()
    status = fn(*args, ctypes.byref(options), ctypes.cast(cb, c_void_p), None,
                ctypes.byref(summary))
    if raised:
        raise raised[0]
    if status:
        raise error(status)
    return Summary(summary.files, summary.skipped, summary.bytes, summary.resumed,
                   summary.elapsed)


def download(name, what, dest, connections=4, progress=None, address=None, client=None,
             piece=None, progress_interval=0.1, server_timeout=5.0):
    """Downloads the files ``what`` names on file server ``name`` into
    directory ``dest`` (created if needed) over ``connections`` parallel
    connections, and returns a ``Summary``. Files up to ``piece`` bytes
    (default 2 MiB) travel in one call, larger ones in pieces of that size.

    Paths arrive under their own name (a directory with what is below it);
    a glob's files under their path below its literal leading directories
    (``logs/*.txt``: ``a.txt``); a regex's under their path from the root.
    Files already at ``dest`` with the same size and modification time are
    skipped. ``progress(p)`` is called with a ``Progress`` every
    ``progress_interval`` seconds and at the end; returning ``False`` cancels (``DimeError``), as
    does an exception it raises (raised here); either way a rerun resumes.
    The broker is ``address`` (default ``$DIME_ADDRESS`` or
    ``unix:/tmp/dime.sock``) or ``client``'s; if no file server ``name``
    answers within ``server_timeout`` seconds, ``DimeError`` says so.
    """
    kind, items = _selection(what)
    broker = _address(address, client)
    options = _options(connections, piece, progress_interval, server_timeout)
    return _run(lib.dime_files_download, progress, options, _cstr(broker, "address"),
                _cstr(name, "name"), kind, _strings(items, "path"), len(items),
                _cstr(os.fspath(dest), "dest"))


def upload(name, what, dest="", connections=4, progress=None, address=None, client=None,
           base=None, piece=None, progress_interval=0.1, server_timeout=5.0):
    """Uploads the files ``what`` names on this machine (relative paths
    and patterns from directory ``base``, default the current one) into
    directory ``dest`` (``""``: the root) of file server ``name``, which
    must be writable (else ``DimeFileRefusedError``). As ``download``
    otherwise; an interrupted upload resumes from the pieces the server
    holds.
    """
    kind, items = _selection(what)
    broker = _address(address, client)
    options = _options(connections, piece, progress_interval, server_timeout)
    return _run(lib.dime_files_upload, progress, options, _cstr(broker, "address"),
                _cstr(name, "name"), kind, _strings(items, "path"), len(items),
                None if base is None else _cstr(os.fspath(base), "base"),
                _cstr(os.fspath(dest), "dest"))

