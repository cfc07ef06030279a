"""``DimeClient``: the DiME2 Python client's API over libdime."""

import collections.abc
import ctypes
import re
from ctypes import byref, c_char_p, c_size_t, c_void_p

from . import _lib
from ._convert import from_value, to_value
from ._errors import DimeTimeoutError, check, error
from ._handle import Handle
from ._lib import lib
from ._wait import seconds, sliced

__all__ = ["DimeClient", "address_of"]

DEFAULT_SOCKET = "/tmp/dime.sock"

_URL = re.compile(r"(?P<proto>[a-z]+)://(?P<rest>.+)")


def address_of(proto="ipc", *args):
    """The libdime address string for the DiME2 constructor arguments.

    ``("ipc", path)``, ``("unix", path)``, ``("tcp", host, port)``,
    ``("tcp", port)``, ``("tls", host, port)``, ``"unix:///path"``,
    ``"ipc:///path"``, ``"tcp://host:port"``, ``"tls://host:port"``, or
    libdime's own ``"unix:/path"`` / ``"tcp:host:port"`` /
    ``"tls:host:port"``. No arguments: ``unix:/tmp/dime.sock``.
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
        raise TypeError(f"unknown protocol {proto!r} (expected 'ipc', 'unix' or 'tcp')")
    m = _URL.fullmatch(proto)
    if m:
        scheme, rest = m.group("proto"), m.group("rest")
        if scheme in ("ipc", "unix"):
            return f"unix:{rest}"
        if scheme in ("tcp", "tls"):
            host, sep, port = rest.rpartition(":")
            if not sep or not host:
                raise ValueError(f"{scheme} address {proto!r} needs host:port")
            return f"{scheme}:{host}:{_port(port)}"
        raise ValueError(f"unknown protocol in address {proto!r} (expected ipc, unix, tcp or tls)")
    if re.match(r"(unix|ipc|tcp|tls):", proto):
        return proto            # libdime's own syntax
    raise ValueError(f"not a dime address: {proto!r} (try 'unix:///tmp/dime.sock' or 'tcp://host:port')")


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
    import os
    p = os.fspath(p)
    return p.decode() if isinstance(p, bytes) else p


def _port(port):
    try:
        n = int(port)
    except (TypeError, ValueError):
        raise ValueError(f"not a port number: {port!r}") from None
    if not 0 < n < 65536:
        raise ValueError(f"port out of range: {n}")
    return n


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
    into it. Failures raise ``DimeError`` subclasses (a ``RuntimeError``):
    ``DimeTimeoutError`` (also a ``TimeoutError``), ``DimeConnectionError``
    (also a ``ConnectionError``), ``DimeServerError``, ``DimeCodecError``;
    values that cannot be sent raise ``TypeError``/``OverflowError``.

    Security (keyword arguments; each defaults to its environment
    variable): ``token`` (``DIME_TOKEN``) is presented to a server started
    with ``--auth``; ``tls_ca`` (``DIME_TLS_CA``), a PEM file of CA
    certificates that a ``tls`` server's certificate must be signed by
    (else the system's); ``tls_cert`` and ``tls_key`` (``DIME_TLS_CERT``,
    ``DIME_TLS_KEY``), a client certificate for servers that ask for one.
    A refused token raises ``DimePermissionError`` (a ``PermissionError``).
    """

    _free = "dime_client_free"
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
            raise error(st, f"cannot connect to {address}")
        with self._lock:
            old, self._ptr = self._ptr, out.value
            self.address = address
        if old is not None:
            self._release(old)

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

    # -- the workspace (MutableMapping) ------------------------------------
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


def _lib_int(n, what):
    if isinstance(n, bool) or not isinstance(n, int):
        try:
            n = n.__index__()
        except AttributeError:
            raise TypeError(f"{what} must be an int, not {type(n).__name__}") from None
    return max(min(n, (1 << 63) - 1), -1)
