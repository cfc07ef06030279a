"""``DimeClient``: the DiME2 Python client's API over libdime."""

import collections.abc
import ctypes
import os
import re
import socket
import threading
from ctypes import byref, c_char_p, c_size_t, c_void_p

from . import _lib
from ._convert import from_value, to_value
from ._errors import (DimeAddressError, DimeHostNotFoundError, DimePortError, DimeTimeoutError,
                      check, error)
from ._handle import Handle
from ._lib import lib
from ._wait import seconds, sliced

__all__ = ["DimeClient", "address_of"]

DEFAULT_SOCKET = "/tmp/dime.sock"

_URL = re.compile(r"(?P<proto>[a-z]+)://(?P<rest>.+)")

_CALLER_LOCK = threading.Lock()


def address_of(proto="ipc", *args):
    """The libdime address string for the DiME2 constructor arguments.

    ``("ipc", path)``, ``("unix", path)``, ``("tcp", host, port)``,
    ``("tcp", port)``, ``("tls", host, port)``, ``"unix:///path"``,
    ``"ipc:///path"``, ``"tcp://host:port"``, ``"tls://host:port"``, or
    libdime's own ``"unix:/path"`` / ``"tcp:host:port"`` /
    ``"tls:host:port"``. No arguments: ``unix:/tmp/dime.sock``.

    An address it cannot read raises ``DimeAddressError`` (a ``ValueError``
    and a ``TypeError``, which the original client raised); a port outside
    0..65535 ``DimePortError`` (also an ``OverflowError``, as there).
    """
    if proto in ("ipc", "unix"):
        if len(args) > 1:
            raise TypeError(f"DimeClient({proto!r}, path) takes one path, got {len(args)} arguments")
        path = args[0] if args else DEFAULT_SOCKET
        return f"unix:{_fspath(path)}"
    if proto in ("tcp", "tls"):
        if len(args) == 2:
            host, port = args
        elif len(args) == 1:
            host, port = "127.0.0.1", args[0]
        else:
            raise TypeError(f"DimeClient({proto!r}, host, port) takes a host and a port, got {args!r}")
        return f"{proto}:{host}:{_port(port)}"
    if not isinstance(proto, str):
        raise TypeError(f"DimeClient address must be a str, not {type(proto).__name__}")
    if args:
        raise DimeAddressError(f"unknown protocol {proto!r} (expected 'ipc', 'unix', 'tcp' or 'tls')")
    m = _URL.fullmatch(proto)
    if m:
        scheme, rest = m.group("proto"), m.group("rest")
        if scheme in ("ipc", "unix"):
            return f"unix:{rest}"
        if scheme in ("tcp", "tls"):
            host, sep, port = rest.rpartition(":")
            if not sep or not host:
                raise DimeAddressError(f"{scheme} address {proto!r} needs host:port")
            return f"{scheme}:{host}:{_port(port)}"
        raise DimeAddressError(
            f"unknown protocol in address {proto!r} (expected ipc, unix, tcp or tls)")
    if re.match(r"(unix|ipc|tcp|tls):", proto):
        return proto            # libdime's own syntax
    raise DimeAddressError(f"not a dime address: {proto!r} "
                           "(try 'unix:///tmp/dime.sock' or 'tcp://host:port')")


def _connect_with(address, token, tls_ca, tls_cert, tls_key, out):
    """``dime_connect_with`` with options from the environment, overridden
    by the arguments that are not None; its status."""
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together: give both or neither")
    opts = c_void_p()
    check(lib.dime_connect_options_new(byref(opts)))
    try:
        if token is not None:
            check(lib.dime_connect_options_set_token(opts, _cstr(token, "token")))
        if tls_ca is not None:
            check(lib.dime_connect_options_set_tls_ca(opts, _cstr(_fspath(tls_ca), "tls_ca")))
        if tls_cert is not None:
            check(lib.dime_connect_options_set_tls_client_cert(
                opts, _cstr(_fspath(tls_cert), "tls_cert"), _cstr(_fspath(tls_key), "tls_key")))
        return lib.dime_connect_with(address.encode("utf-8"), opts, byref(out))
    finally:
        lib.dime_connect_options_free(opts)


def _fspath(p):
    p = os.fspath(p)
    return p.decode() if isinstance(p, bytes) else p


def _port(port):
    try:
        n = int(port)
    except (TypeError, ValueError):
        raise DimeAddressError(f"not a port number: {port!r}") from None
    if not 0 <= n < 65536:
        raise DimePortError(f"port out of range: {n} (must be 0-65535)")
    return n


_TCP = re.compile(r"(?:tcp|tls):(?:\[(?P<v6>[^\]]*)\]|(?P<host>.*)):(?P<port>[0-9]+)")


def _unresolved(address):
    """``socket.gaierror`` if ``address`` is a TCP address whose host name
    does not resolve, else None. libdime reports such a failure without an
    errno; asking getaddrinfo again recovers the code ``socket.gaierror``
    carries (only after a failed connect, so a good one pays nothing)."""
    m = _TCP.fullmatch(address)
    if not m:
        return None
    host = m.group("v6") if m.group("v6") is not None else m.group("host")
    try:
        socket.getaddrinfo(host, int(m.group("port")), type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return e
    return None


def _cstr(s, what):
    if not isinstance(s, str):
        raise TypeError(f"{what} must be a str, not {type(s).__name__}")
    if "\0" in s:
        raise ValueError(f"{what} contains a NUL character: {s!r}")
    return s.encode("utf-8")


def _cstrs(names, what):
    return (c_char_p * len(names))(*[_cstr(n, what) for n in names])


class DimeClient(Handle, collections.abc.MutableMapping):
    """A DiME client: a drop-in for the DiME2 Python client (``dime-client``).

    The instance is a mutable mapping, the "workspace": ``send`` and
    ``broadcast`` read variables from it and ``sync`` writes received ones
    into it. Failures raise ``DimeError`` subclasses (a ``RuntimeError``),
    each also the built-in exception the original client raised there
    (see ``dime._errors``): ``DimeConnectionError`` (a ``ConnectionError``
    with ``errno`` set; ``FileNotFoundError``, ``ConnectionRefusedError``,
    ``PermissionError``, ``BrokenPipeError``, ``ConnectionResetError`` ...
    by subclass), ``DimeTimeoutError`` (a ``TimeoutError``),
    ``DimeServerError``, ``DimeCodecError`` (a ``ValueError``); values that
    cannot be sent raise ``TypeError``/``OverflowError``.

    Security (keyword arguments; each defaults to its environment
    variable): ``token`` (``DIME_TOKEN``) is presented to a server started
    with ``--auth``; ``tls_ca`` (``DIME_TLS_CA``), a PEM file of CA
    certificates that a ``tls`` server's certificate must be signed by
    (else the system's); ``tls_cert`` and ``tls_key`` (``DIME_TLS_CERT``,
    ``DIME_TLS_KEY``), a client certificate for servers that ask for one.
    A refused token, or a command the user's roles do not permit, raises
    ``DimePermissionError`` (a ``PermissionError``); a certificate problem
    a ``DimeConnectionError`` whose message names the server and the reason.
    """

    _free = "dime_client_free"
    _shutdown = "dime_close"        # wakes remote calls blocked on a borrowed handle
    _what = "DimeClient"

    def __init__(self, proto="ipc", *args, token=None, tls_ca=None, tls_cert=None,
                 tls_key=None):
        super().__init__(None)
        self.proto = proto
        self.args = args
        self._security = {"token": token, "tls_ca": tls_ca, "tls_cert": tls_cert,
                          "tls_key": tls_key}
        self.workspace = {}
        self.serialization = "dimeb"
        self.open()

    # -- connection --------------------------------------------------------
    def open(self, proto=None, *args):
        """(Re)connects, to the constructor's address or to a new one."""
        if proto is None:
            proto, args = self.proto, self.args
        address = address_of(proto, *args)
        out = c_void_p()
        if any(v is not None for v in self._security.values()):
            st = _connect_with(address, **self._security, out=out)
        else:
            st = lib.dime_connect(address.encode("utf-8"), byref(out))
        if st:
            raise _connect_error(st, address)
        with self._lock:
            self.address = address
            self._swap(out.value)

    # close(), __enter__/__exit__ and __del__ come from Handle.

    # -- what the server supports -------------------------------------------
    @property
    def server_extensions(self):
        """The extensions the server announced when this client connected
        (``docs/protocol-extensions.md``), as a frozenset of names such as
        ``"share"``; empty for an original DiME2 server. DiME2's own calls
        work either way; ``Share``, ``TupleSpace`` and other extensions
        raise ``DimeUnsupportedError`` where the server lacks them."""
        out = c_void_p()
        with self._lock:
            check(lib.dime_server_extensions(self._handle(), byref(out)))
        try:
            return frozenset(from_value(out.value))
        finally:
            lib.dime_value_free(out.value)

    def supports(self, extension):
        """Whether the server announced ``extension`` (``"share"``,
        ``"space"``, ...); always False for an original DiME2 server."""
        name = _cstr(extension, "extension name")
        yes = ctypes.c_bool()
        with self._lock:
            check(lib.dime_server_supports(self._handle(), name, byref(yes)))
        return yes.value

    # -- groups ------------------------------------------------------------
    def join(self, *names):
        """Joins the named groups (an error if already in one of them)."""
        arr = _cstrs(names, "group name")
        with self._lock:
            check(lib.dime_join(self._handle(), arr, len(names)))

    def leave(self, *names):
        """Leaves the named groups (an error if not in one of them)."""
        arr = _cstrs(names, "group name")
        with self._lock:
            check(lib.dime_leave(self._handle(), arr, len(names)))

    def devices(self):
        """The names of every group with at least one member."""
        out = c_void_p()
        with self._lock:
            check(lib.dime_devices(self._handle(), byref(out)))
        try:
            return from_value(out.value)
        finally:
            lib.dime_value_free(out.value)

    # -- sending -----------------------------------------------------------
    def send(self, name, *varnames):
        """Sends workspace variables ``varnames`` to every member of group ``name``."""
        self.send_r(name, **{v: self.workspace[v] for v in varnames})

    def send_r(self, name, **kvpairs):
        """Sends ``kvpairs`` (variable name = value) to every member of group ``name``."""
        group = _cstr(name, "group name")
        self._send_many(group, kvpairs)

    def broadcast(self, *varnames):
        """Sends workspace variables ``varnames`` to every other client."""
        self.broadcast_r(**{v: self.workspace[v] for v in varnames})

    def broadcast_r(self, **kvpairs):
        """Sends ``kvpairs`` (variable name = value) to every other client."""
        self._send_many(None, kvpairs)

    def _send_many(self, group, kvpairs):
        n = len(kvpairs)
        if n == 0:
            return
        names = _cstrs(list(kvpairs), "variable name")
        values = (c_void_p * n)()
        keep = []               # arrays lent to the library, alive until freed
        try:
            for i, (k, v) in enumerate(kvpairs.items()):
                values[i] = to_value(v, keep, k)
            with self._lock:
                ptr = self._handle()
                if group is None:
                    st = lib.dime_broadcast_many(ptr, names, values, n)
                else:
                    st = lib.dime_send_many(ptr, group, names, values, n)
            check(st)
        finally:
            for v in values:
                if v:
                    lib.dime_value_free(v)
            del keep

    # -- receiving ---------------------------------------------------------
    def sync(self, n=-1):
        """Receives up to ``n`` queued variables (all if ``n`` < 0) into the
        workspace; returns the set of their names."""
        updates = self.sync_r(n)
        self.workspace.update(updates)
        return set(updates)

    def sync_r(self, n=-1):
        """Receives up to ``n`` queued variables (all if ``n`` < 0) and
        returns them as a dict (a later value of a name wins)."""
        n = _lib_int(n, "n")
        msgs = c_void_p()
        with self._lock:
            check(lib.dime_sync(self._handle(), n, byref(msgs)))
        msgs = msgs.value
        try:
            count = lib.dime_messages_len(msgs)
            ret = {}
            name_p = c_void_p()
            value_p = c_void_p()
            for i in range(count):
                check(lib.dime_messages_get(msgs, i, byref(name_p), byref(value_p)))
                name = ctypes.string_at(name_p.value).decode("utf-8", "replace")
                check(lib.dime_messages_take(msgs, i, byref(value_p)))
                try:
                    ret[name] = from_value(value_p.value, True, name)
                finally:
                    lib.dime_value_free(value_p.value)
            return ret
        finally:
            lib.dime_messages_free(msgs)

    def wait(self, timeout=None):
        """Blocks until a variable is queued for this client; returns how
        many are. With ``timeout`` (seconds), raises ``DimeTimeoutError``
        (a ``TimeoutError``) if none arrives in time. Ctrl-C interrupts it
        (see ``dime._wait``)."""
        timeout = seconds(timeout)
        count = c_size_t()

        def once(ms):
            # The lock is taken per slice, so close() from another thread
            # gets in between slices and ends the wait.
            with self._lock:
                return lib.dime_wait(self._handle(), ms, byref(count))

        st = sliced(once, timeout)
        if st == _lib.STATUS_OK:
            return count.value
        if st == _lib.STATUS_TIMEOUT:
            raise DimeTimeoutError(f"no message arrived within {timeout} s", st)
        raise error(st)

    # -- remote calls ------------------------------------------------------
    def call(self, function, data=None, timeout=None):
        """Calls ``function``, which some client provides on the server
        (``dime.Server(client=...)``, C's ``dime_provide``, MATLAB's
        ``d.serve``), with ``data``; returns a ``dime.Future``. ``timeout``
        (seconds, None: no limit) bounds the wait for a provider. Remote
        calls use a second connection, opened at the first one, so they
        never wait behind ``wait()``. See ``dime.Client`` for the options."""
        caller = self.__dict__.get("_caller")
        if caller is None:
            from ._future import Caller
            with _CALLER_LOCK:
                caller = self.__dict__.setdefault("_caller", Caller(self))
        return caller.call(function, data, timeout)

    # -- the workspace (MutableMapping) ------------------------------------
    def watch_groups(self, prefix="", resume=None, callback=None):
        """A ``dime.Watch`` of group membership: an ``Event`` of kind
        ``"join"`` or ``"leave"`` (a disconnect leaves every group) for each
        group whose name starts with ``prefix``, ``key`` the group and
        ``client`` the server's id of the client. See ``dime.watch``."""
        from .share import _position_arg
        from .watch import Watch
        p = _cstr(prefix, "prefix")

        def opener(out):
            with self._lock:
                return lib.dime_watch_groups(self._handle(), p, _position_arg(resume), out)

        return Watch(opener, callback=callback)

    def __getitem__(self, varname):
        return self.workspace[varname]

    def __setitem__(self, varname, var):
        self.workspace[varname] = var

    def __delitem__(self, varname):
        del self.workspace[varname]

    def __iter__(self):
        return iter(self.workspace)

    def __len__(self):
        return len(self.workspace)

    def __repr__(self):
        state = "closed" if self.closed else getattr(self, "address", "?")
        return f"<DimeClient {state}, {len(self.workspace)} variables>"


def _connect_error(st, address):
    """The exception for a failed ``dime_connect`` (read right after it):
    the library's message as is (it names the address), as the built-in
    ``OSError`` subclass for its errno."""
    exc = error(st)
    if st == _lib.STATUS_INVALID_ARGUMENT:
        return DimeAddressError(exc.message, st)
    if st == _lib.STATUS_CONNECTION_LOST and exc.errno is None:
        gai = _unresolved(address)
        if gai is not None:
            return DimeHostNotFoundError(exc.message, st, gai.errno, gai.strerror)
    return exc


def _lib_int(n, what):
    if isinstance(n, bool) or not isinstance(n, int):
        try:
            n = n.__index__()
        except AttributeError:
            raise TypeError(f"{what} must be an int, not {type(n).__name__}") from None
    return max(min(n, (1 << 63) - 1), -1)
