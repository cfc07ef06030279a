"""``DimeClient``: the DiME2 Python client's API over libdime."""

import collections.abc
import ctypes
import os
import re
import socket
import threading
from ctypes import byref, c_bool, c_char_p, c_size_t, c_void_p, string_at

from . import _dimeb, _lib
from ._convert import from_value, to_value
from ._dimeb import LEAN_BYTES, NotLean
from ._errors import (DimeAddressError, DimeError, DimeHostNotFoundError, DimePortError,
                      DimeTimeoutError, check, error)
from ._handle import Handle
from ._lib import lib
from ._wait import seconds, sliced

# The library functions of the per-call paths, looked up once: a CDLL
# attribute lookup on every call costs as much as the call's own work.
_send_encoded = lib.dime_send_encoded
_broadcast_encoded = lib.dime_broadcast_encoded
_send_encoded_many = lib.dime_send_encoded_many
_broadcast_encoded_many = lib.dime_broadcast_encoded_many
_sync_encoded = lib.dime_sync_encoded
_messages_len = lib.dime_messages_len
_messages_payload = lib.dime_messages_payload
_messages_take = lib.dime_messages_take
_messages_free = lib.dime_messages_free
_devices = lib.dime_devices
_value_encode = lib.dime_value_encode
_value_free = lib.dime_value_free
_data_free = lib.dime_data_free

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


#: Group and variable names as bytes: programs repeat the same few names
#: on every call. Bounded; cleared when full.
_NAME_BYTES = {}
_NAME_BYTES_MAX = 4096


def _name(s, what):
    """``_cstr(s, what)``, remembered for a plain str."""
    if type(s) is not str:
        return _cstr(s, what)
    b = _NAME_BYTES.get(s)
    if b is None:
        b = _cstr(s, what)
        if len(_NAME_BYTES) >= _NAME_BYTES_MAX:
            _NAME_BYTES.clear()
        _NAME_BYTES[s] = b
    return b


def _address(b):
    """The address of the bytes object ``b``'s buffer (alive as long as ``b``)."""
    return ctypes.cast(b, c_void_p).value


def _window(pipeline):
    """The window of a ``pipeline`` setting: True = ``PIPELINE_WINDOW``,
    False = 0 (off), or a number of sends."""
    if pipeline is True:
        return _lib.PIPELINE_WINDOW
    if pipeline is False:
        return 0
    if isinstance(pipeline, int):
        if pipeline < 0:
            raise ValueError(f"pipeline must be True, False or a number of sends >= 0, not {pipeline}")
        return pipeline
    raise TypeError(f"pipeline must be True, False or a number of sends, not {type(pipeline).__name__}")


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

    ``pipeline`` (keyword only): ``True`` (a window of
    ``dime._lib.PIPELINE_WINDOW`` sends), a number of sends, or ``False``
    turns pipelined sends on or off (see the ``pipeline`` property); the
    default, ``None``, leaves them as the ``DIME_PIPELINE`` environment
    variable says, which is off when it is unset.

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

    def __init__(self, proto="ipc", *args, pipeline=None, token=None, tls_ca=None,
                 tls_cert=None, tls_key=None):
        super().__init__(None)
        self.proto = proto
        self.args = args
        self._security = {"token": token, "tls_ca": tls_ca, "tls_cert": tls_cert,
                          "tls_key": tls_key}
        self.workspace = {}
        self.serialization = "dimeb"
        self._pipeline_setting = None if pipeline is None else _window(pipeline)
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
        try:
            if self._pipeline_setting is not None:
                check(lib.dime_set_pipeline(out.value, self._pipeline_setting))
            # dime_connect asks for the dimeb_layout encoding: this
            # connection writes matrices in it exactly when the server
            # announced it, and so must the lean path (_send_many).
            layout = c_bool()
            check(lib.dime_server_supports(out.value, b"dimeb_layout", byref(layout)))
        except BaseException:
            lib.dime_client_free(out.value)
            raise
        with self._lock:
            self.address = address
            self._layout = layout.value
            self._swap(out.value)

    def close(self):
        """Closes the connection. With pipelining on, first waits for the
        answers to the sends still outstanding: a failure among them not
        yet reported is raised (``DimeServerError``) once the connection
        is closed. Calling it again does nothing."""
        lock = getattr(self, "_lock", None)
        if lock is None:        # __init__ never ran
            return
        with lock:
            ptr = self._ptr
            if ptr is None:
                return
            st = lib.dime_close(ptr)
            failure = error(st) if st else None
            # Frees the handle once remote calls borrowing it are out.
            self._swap(None)
        if failure is not None:
            raise failure

    def __exit__(self, etype, value, tb):
        if etype is None:
            self.close()
        else:
            # The exception on its way out matters more than a late
            # failure of a pipelined send.
            try:
                self.close()
            except DimeError:
                pass
        return False

    def __del__(self):
        # No waiting for answers at garbage collection: just release.
        try:
            Handle.close(self)
        except Exception:       # interpreter shutdown: the library may be gone
            pass

    # -- pipelined sends ----------------------------------------------------
    @property
    def pipeline(self):
        """The pipelining window: how many ``send``/``broadcast`` requests
        may await the server's answer (0: none, DiME2's way, the default).

        Set it to ``True`` (``dime._lib.PIPELINE_WINDOW`` sends), a number,
        or ``False``/0 to turn it off. With pipelining on, a send returns
        once written instead of after the server's answer; the server runs
        this client's requests in order, so its own later ``sync``,
        ``wait`` and ``devices`` see every earlier send. What changes from
        DiME2: a refused send (``DimeServerError``: no such group, a full
        queue) is raised by a later call, naming it (``pipelined send #N of
        'x' to group 'g' failed: ...``): the next call that reads answers
        (``flush``, ``sync``, ``wait``, ``devices``, ``join``, ``leave``,
        ``close``, or a send that finds the window full), and that call
        does nothing else (``sync`` and ``wait`` keep what they fetched
        for the next call); another client that looks right after a send
        returns may
        not see its message yet (``flush`` first); and a ``sync`` right
        after a ``wait`` returns what the wait fetched without asking the
        server again, so send_r, wait, sync_r cost one exchange (a message
        that reached the server in between comes with the next sync).
        Against an original
        DiME2 server the window is at most 16, as its own client writes.
        Turning it off waits for every answer and raises the first failure
        among them, if any (it is off either way)."""
        out = c_size_t()
        with self._lock:
            check(lib.dime_pipeline_window(self._handle(), byref(out)))
        return out.value

    @pipeline.setter
    def pipeline(self, pipeline):
        window = _window(pipeline)
        with self._lock:
            st = lib.dime_set_pipeline(self._handle(), window)
            self._pipeline_setting = window
        if st:
            raise error(st)

    @property
    def unacknowledged(self):
        """How many pipelined sends the server has not answered yet."""
        out = c_size_t()
        with self._lock:
            check(lib.dime_unacknowledged(self._handle(), byref(out)))
        return out.value

    def flush(self):
        """Waits until the server has answered every pipelined send, so
        every message sent is queued for its recipients; raises the oldest
        failure not yet reported (``DimeServerError`` naming the send), if
        any. Returns at once without pipelining."""
        with self._lock:
            st = lib.dime_flush(self._handle())
        if st:
            raise error(st)

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
            st = _devices(self._handle(), byref(out))
        if st:
            raise error(st)
        try:
            return _as_python(out.value)
        finally:
            _value_free(out.value)

    # -- sending -----------------------------------------------------------
    def send(self, name, *varnames):
        """Sends workspace variables ``varnames`` to every member of group ``name``."""
        self.send_r(name, **{v: self.workspace[v] for v in varnames})

    def send_r(self, name, **kvpairs):
        """Sends ``kvpairs`` (variable name = value) to every member of group ``name``."""
        self._send_many(_name(name, "group name"), kvpairs)

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
        # The lean path: values encoded here, one library call.
        if n == 1:
            for k, v in kvpairs.items():
                data = _dimeb.encode(v, self._layout)
                if data is not None:
                    return self._send_encoded(group, _name(k, "variable name"), data)
        else:
            layout = self._layout
            encoded = [_dimeb.encode(v, layout) for v in kvpairs.values()]
            if not any(d is None for d in encoded):
                return self._send_encoded_many(group, _cstrs(list(kvpairs), "variable name"), encoded)
        self._send_values(group, kvpairs)

    def _send_encoded(self, group, name, data):
        with self._lock:
            h = self._handle()
            if group is None:
                st = _broadcast_encoded(h, name, data, len(data))
            else:
                st = _send_encoded(h, group, name, data, len(data))
        if st:
            raise error(st)

    def _send_encoded_many(self, group, names, encoded):
        n = len(encoded)
        data = (c_void_p * n)(*map(_address, encoded))
        lens = (c_size_t * n)(*map(len, encoded))
        with self._lock:
            h = self._handle()
            if group is None:
                st = _broadcast_encoded_many(h, names, data, lens, n)
            else:
                st = _send_encoded_many(h, group, names, data, lens, n)
        if st:
            raise error(st)

    def _send_values(self, group, kvpairs):
        """Values built through the library (``_convert``): large arrays
        lent by pointer, and every value the lean path leaves alone."""
        n = len(kvpairs)
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
        out = c_void_p()
        with self._lock:
            st = _sync_encoded(self._handle(), n, byref(out))
        if st:
            raise error(st)
        msgs = out.value
        try:
            count = _messages_len(msgs)
            return _read_messages(msgs, count) if count else {}
        finally:
            _messages_free(msgs)

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
def _read_messages(msgs, count):
    """The (name, value) dict of the ``count`` messages of a list from
    ``dime_sync_encoded``: small values decoded here (``_dimeb``), large
    ones by the library, whose arrays numpy wraps without a copy."""
    ret = {}
    name_p, data_p, size = c_void_p(), c_void_p(), c_size_t()
    refs = (byref(name_p), byref(data_p), byref(size))
    for i in range(count):
        check(_messages_payload(msgs, i, *refs))
        name = string_at(name_p.value).decode("utf-8", "replace")
        nbytes = size.value
        if nbytes <= LEAN_BYTES:
            try:
                ret[name] = _dimeb.decode(string_at(data_p.value, nbytes))
                continue
            except NotLean:
                pass
        value_p = c_void_p()
        check(_messages_take(msgs, i, byref(value_p)))
        try:
            ret[name] = from_value(value_p.value, True, name)
        finally:
            _value_free(value_p.value)
    return ret


def _as_python(v):
    """The Python value of the borrowed dime_value ``v``, decoded from its
    dimeb bytes (one library call instead of several per element) when it
    is small, else read through ``_convert``."""
    data, size = c_void_p(), c_size_t()
    check(_value_encode(v, byref(data), byref(size)))
    try:
        if size.value <= LEAN_BYTES:
            try:
                return _dimeb.decode(string_at(data.value, size.value))
            except NotLean:
                pass
    finally:
        _data_free(data.value, size.value)
    return from_value(v, False)


def _lib_int(n, what):
    if isinstance(n, bool) or not isinstance(n, int):
        try:
            n = n.__index__()
        except AttributeError:
            raise TypeError(f"{what} must be an int, not {type(n).__name__}") from None
    return max(min(n, (1 << 63) - 1), -1)
