"""Remote calls shaped like teleport: a ``Server`` binds functions, a
``Client`` calls them by name and gets futures.

    server = dime.Server("tcp://*:2222")       # the broker runs in this process
    server.bind("add", lambda d: {"sum": d["x"] + d["y"]})
    with server:                                 # serves in the background
        client = dime.Client("tcp://localhost:2222")
        client.connect()
        print(client.add({"x": 1, "y": 2}).result())   # {'sum': 3}

Arguments and results are trees (dicts, lists, tuples) of numpy arrays,
scalars, strings and None; arrays travel without pickling, lent to the
library without a copy on the way out and taken over without a copy on
arrival. ``Server(address)`` starts the broker inside this process
(``dime_server_start``), so callers connect straight to it as with
teleport; ``Server(client=d)`` instead provides through an existing
``DimeClient`` (or ``Client``) connected to a running ``dime`` broker,
where any number of providers of one name share the calls.
"""

import ctypes
import logging
import os
import queue
import re
import threading
import time
import traceback
from ctypes import byref, c_char_p, c_size_t, c_void_p

from . import _batch, _dimeb, _lib, stream as _stream
from ._convert import from_value, to_value
from ._errors import DimeConnectionError, check, error
from ._future import Caller, Future, _ms
from ._handle import Closing
from ._lib import lib
from ._remote import normalize_address
from ._rpc_errors import NoProvider, ProviderLost, RemoteError
from .client import DimeClient, _cstr

__all__ = ["Client", "Server", "Future", "RemoteError", "ProviderLost", "NoProvider"]

log = logging.getLogger("dime.rpc")

#: How long a batching provider waits for more calls after the first one
#: of a batch arrived, in seconds (``Server(batch_wait=...)``).
BATCH_WAIT = 0.005

#: Longest wait of a provider thread in the library: how soon it notices
#: ``close()`` when the connection is not its own.
_SERVE_SLICE_MS = 100

#: Exceptions kept for ``Server.check()`` at most; later ones are only logged.
_MAX_KEPT = 100


# ---------------------------------------------------------------- addresses

_ANY_HOST = re.compile(r"(?P<scheme>tcp|ws):(?://)?\*:(?P<port>\d+)/?")


def _listen_address(address):
    """libdime's listen address for a teleport-style one: ``tcp://*:P``
    listens on every interface; ``tcp://H:P``, ``ipc:///path``,
    ``unix:/path``, ``tcp:H:P`` and a bare socket path as they say."""
    address = os.fspath(address)
    if isinstance(address, bytes):
        address = address.decode()
    if not isinstance(address, str):
        raise TypeError(f"address must be a str, not {type(address).__name__}")
    m = _ANY_HOST.fullmatch(address)
    if m:
        return f"{m.group('scheme')}:0.0.0.0:{m.group('port')}"
    if address.startswith(("/", ".")):
        return f"unix:{address}"
    return address


def _connect_address(bound):
    """Where a client of this process reaches a listener bound at ``bound``."""
    scheme, _, rest = bound.partition(":")
    host, _, port = rest.rpartition(":")
    if scheme == "tcp" and host in ("0.0.0.0", "[::]"):
        return f"tcp:{'127.0.0.1' if host == '0.0.0.0' else '[::1]'}:{port}"
    return bound


def _url(bound):
    """``tcp:H:P`` -> ``tcp://H:P``, ``unix:/p`` -> ``ipc:///p``."""
    scheme, _, rest = bound.partition(":")
    if scheme == "unix":
        return f"ipc://{rest}"
    return f"{scheme}://{rest}"


# ---------------------------------------------------------------- calling

class Client(Closing):
    """Calls functions that servers bind, by name: ``client.call("add",
    data)`` or ``client.add(data)`` returns a ``dime.Future``.

    ``address``: ``tcp://host:port``, ``ipc:///path``, ``unix:/path``,
    ``tcp:host:port``. ``maxinflight``: ``call`` blocks while that many
    calls are unresolved (None: no cap). ``errors``: the error of a future
    dropped without reading it is raised at the next call (teleport's
    behaviour). ``maxage`` (seconds, None: never): over TCP, fail the calls
    in flight when the broker has sent nothing for that long (it is pinged
    after half of it), so a silent peer is noticed; a long call on a live
    provider is not mistaken for one. ``name``, ``ipv6``, ``identity`` and
    ``pings`` are accepted for teleport compatibility and not needed.
    """

    def __init__(self, address, name="Client", ipv6=False, identity=None, pings=None,
                 maxage=None, maxinflight=16, errors=True, connect=False):
        self.address = address
        self.name = name
        self.maxinflight = maxinflight
        self.maxage = maxage
        self.errors = errors
        self._address = normalize_address(address)
        self._conn = None
        self._caller = None
        self._connect_lock = threading.Lock()
        if maxinflight is not None and (isinstance(maxinflight, bool) or int(maxinflight) < 1):
            raise ValueError(f"maxinflight must be None or at least 1, not {maxinflight!r}")
        if connect:
            self.connect()

    # -- connection ----------------------------------------------------------
    def connect(self, retry=True, timeout=10):
        """Connects to the broker. With ``retry``, keeps trying while nothing
        listens there yet, for up to ``timeout`` seconds (None: forever),
        so a client may start before its server. Raises
        ``DimeConnectionError`` (a ``ConnectionError``) when it gives up."""
        with self._connect_lock:
            if self._conn is not None and not self._conn.closed:
                return
            deadline = None if timeout is None else time.monotonic() + float(timeout)
            while True:
                try:
                    conn = DimeClient(self._address)
                    break
                except DimeConnectionError as e:
                    if not retry or (deadline is not None and time.monotonic() >= deadline):
                        if retry:
                            raise DimeConnectionError(
                                f"no server at {self.address} within {timeout} s: {e.message}",
                                e.status) from None
                        raise
                time.sleep(0.02)
            maxage_ms = -1 if self.maxage is None else max(1, _ms(self.maxage))
            with conn._borrow() as ptr:
                st = lib.dime_call_options(ptr, int(self.maxinflight or 0), maxage_ms)
            if st:
                conn.close()
                raise error(st)
            self._conn = conn
            self._caller = Caller(conn, self.errors)

    @property
    def connected(self):
        return self._conn is not None and not self._conn.closed

    def close(self):
        """Closes the connection: calls in flight fail with
        ``DimeConnectionError``. Idempotent."""
        with self._connect_lock:
            conn, self._conn = self._conn, None
            caller = self._caller
        if conn is not None:
            conn.close()
        if caller is not None:
            caller.discard()

    # -- calls -------------------------------------------------------------------
    def call(self, function, data=None, timeout=None):
        """Calls ``function`` with ``data``; returns a ``dime.Future`` (a
        ``concurrent.futures.Future``). ``timeout`` (seconds, None: no
        limit) bounds the wait for a provider to take the call: past it the
        future fails with ``dime.NoProvider`` (a ``TimeoutError``).
        Connects first (without retrying) if ``connect()`` was not called."""
        caller = self._caller
        if caller is None:
            self.connect(retry=False)
            caller = self._caller
        return caller.call(function, data, timeout)

    def stream(self, function, data=None, *, items=None, bytes=None, timeout=None,
               on_item=None, on_end=None):
        """Opens a stream of ``function`` (bound with ``Server.bind_stream``)
        called with ``data`` (one value, as ``call`` passes it); returns a
        ``dime.Stream`` to iterate over its items. ``items``/``bytes``: the
        window, how far the producer may run ahead of your reading (None:
        1024 items, 64 MiB). ``timeout`` (seconds) bounds the wait for a
        provider to take the stream (``dime.NoProvider`` past it).

        With ``on_item``, the items go to ``on_item(item)`` on a background
        thread instead (returning False stops the stream), then
        ``on_end(error)`` runs (None unless an error ended it); returns a
        ``dime.StreamHandle`` (``close()``, ``join()``)."""
        if self._caller is None:
            self.connect(retry=False)
        s = _stream.Stream(self._conn, function, data, items, bytes, timeout)
        if on_item is None:
            if on_end is not None:
                s.close()
                raise TypeError("on_end needs on_item")
            return s
        return _stream.StreamHandle(s, on_item, on_end)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)

        def call(data=None, timeout=None):
            return self.call(name, data, timeout)

        call.__name__ = name
        call.__qualname__ = f"Client.{name}"
        return call

    def _connection(self):
        """The connected ``DimeClient`` (for ``Server(client=...)``)."""
        if self._conn is None:
            self.connect(retry=False)
        return self._conn

    def __repr__(self):
        state = "connected" if self.connected else "not connected"
        return f"<dime.Client {self.address} {state}>"


# ---------------------------------------------------------------- providing

class _Binding:
    """One bound function and how it is served."""

    def __init__(self, name, fn, donefn, workers, batch, pool):
        self.name = name
        self.name_c = _cstr(name, "function name")
        self.fn = fn
        self.donefn = donefn
        self.workers = workers
        self.batch = batch
        self.pool = pool
        self.capacity = workers * max(batch, 1)
        #: a generator function served as a stream (``bind_stream``)
        self.stream = False
        self.threads = []
        #: threads running a call now (close() lets them finish)
        self.busy = set()


class Server:
    """Serves bound functions to ``dime.Client`` callers (and C, MATLAB and
    Rust ones).

    ``Server(address)`` starts the broker inside this process, listening at
    ``address`` (``"tcp://*:2222"``: every interface; ``"ipc:///path"``;
    ``"tcp://127.0.0.1:0"``: a free port, see ``address``), and provides
    through a connection to it. ``Server(client=d)`` provides through
    ``d``, a ``DimeClient`` or ``dime.Client`` connected to a running
    broker (``d`` stays open at ``close()``).

    ``workers`` is the default of ``bind``'s. ``errors``: keep the
    exceptions raised by bound functions (they always go to the caller as
    well), for ``check()`` and ``run()`` to raise. ``batch_wait``: seconds
    a batching function waits for more calls once one arrived. ``name`` and
    ``ipv6`` are accepted for teleport compatibility.
    """

    def __init__(self, address=None, name="Server", ipv6=False, workers=1, errors=True, *,
                 client=None, batch_wait=BATCH_WAIT):
        if (address is None) == (client is None):
            raise TypeError("Server() takes an address to listen at, or client= (a DimeClient "
                            "connected to a running broker), not both")
        self.name = name
        self.workers = int(workers)
        self.errors = errors
        self.batch_wait = float(batch_wait)
        self._bindings = {}
        self._lock = threading.Lock()
        self._started = False
        self._stopping = threading.Event()
        self._closed = threading.Event()
        self._errors = []
        self._done_queue = None
        self._done_thread = None
        self._srv = None
        if client is None:
            self._srv = _start_broker(address)
            bound = lib.dime_server_address(self._srv, 0).decode()
            self.address = _url(bound)
            try:
                self._conn = DimeClient(_connect_address(bound))
            except BaseException:
                lib.dime_server_stop(self._srv)
                self._srv = None
                raise
            self._owns = True
        else:
            if isinstance(client, Client):
                client = client._connection()
            if not isinstance(client, DimeClient):
                raise TypeError(f"client must be a DimeClient or dime.Client, not "
                                f"{type(client).__name__}")
            self._conn = client
            self._owns = False
            self.address = client.address

    # -- binding -----------------------------------------------------------------
    def bind(self, name, fn, donefn=None, workers=0, batch=0, pool=None):
        """Offers ``fn`` to callers as ``name``.

        ``workers``: up to that many calls of ``fn`` run at once, each on a
        thread of this function's own (0: the server's ``workers``); with
        ``pool`` (a ``concurrent.futures.Executor``, shared between
        functions) they run on the pool's threads instead, at most
        ``workers`` of them for this function. ``batch=K``: ``fn`` gets up
        to K calls at once, their arguments stacked leaf by leaf along a
        new first axis (see ``dime._batch``), and returns results stacked
        the same way, which go back one per caller; a batch that is not
        full runs ``batch_wait`` after its first call arrived.
        ``donefn``: as in teleport, ``fn`` then returns ``(result,
        info)``; ``result`` goes to the caller, then ``donefn(info)`` runs
        on one thread of the server, in the order the results were sent.
        """
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        if donefn is not None and not callable(donefn):
            raise TypeError(f"donefn {donefn!r} is not callable")
        workers = int(workers) or self.workers
        batch = int(batch)
        if workers < 1 or batch < 0:
            raise ValueError(f"workers must be >= 1 and batch >= 0 (got {workers}, {batch})")
        if pool is not None and not callable(getattr(pool, "submit", None)):
            raise TypeError(f"pool must be a concurrent.futures.Executor, not {type(pool).__name__}")
        b = _Binding(name, fn, donefn, workers, batch, pool)
        with self._lock:
            if self._closed.is_set():
                raise DimeConnectionError("the server is closed", _lib.STATUS_CLOSED)
            if name in self._bindings:
                raise ValueError(f"{name!r} is already bound on this server")
            self._bindings[name] = b
            if self._started:
                self._serve(b)

    def bind_stream(self, name, gen_fn, workers=0):
        """Offers generator function ``gen_fn`` to ``Client.stream`` callers
        as ``name``: each stream call runs ``gen_fn(data)`` and sends the
        items it yields, in order. The generator is not advanced while the
        consumer's window is full; when the consumer stops early it is
        closed (``GeneratorExit``) at its next item; an exception it raises
        ends the stream with that error at the consumer. ``workers``: up to
        that many streams of ``name`` run at once (0: the server's
        ``workers``); more wait for a free one."""
        if not callable(gen_fn):
            raise TypeError(f"{gen_fn!r} is not callable")
        workers = int(workers) or self.workers
        if workers < 1:
            raise ValueError(f"workers must be >= 1 (got {workers})")
        b = _Binding(name, gen_fn, None, workers, 0, None)
        b.stream = True
        with self._lock:
            if self._closed.is_set():
                raise DimeConnectionError("the server is closed", _lib.STATUS_CLOSED)
            if name in self._bindings:
                raise ValueError(f"{name!r} is already bound on this server")
            self._bindings[name] = b
            if self._started:
                self._serve(b)

    # -- running -----------------------------------------------------------------
    def start(self):
        """Starts serving in the background (idempotent)."""
        with self._lock:
            if self._closed.is_set():
                raise DimeConnectionError("the server is closed", _lib.STATUS_CLOSED)
            if self._started:
                return
            self._started = True
            for b in self._bindings.values():
                self._serve(b)

    def run(self):
        """Serves until ``close()`` (from another thread) or Ctrl-C; raises
        a bound function's exception when ``errors`` is on (like teleport).
        Closes the server when it returns."""
        try:
            self.start()
            while not self._closed.wait(0.2):
                self.check()
        finally:
            self.close()

    def check(self):
        """Raises the oldest exception a bound function raised since the
        last ``check()`` (with ``errors`` on), or a lost connection."""
        with self._lock:
            e = self._errors.pop(0) if self._errors else None
        if e is not None:
            raise e

    def close(self, timeout=2.0):
        """Stops serving: no new calls are taken, calls already taken get
        up to ``timeout`` seconds to finish, then the connection and the
        in-process broker (if any) close. Idempotent."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            self._stopping.set()
            bindings = list(self._bindings.values())
            started = self._started
        if started:
            for b in bindings:
                try:
                    with self._conn._borrow() as ptr:
                        lib.dime_unprovide(ptr, b.name_c)
                except DimeConnectionError:
                    break
            deadline = time.monotonic() + timeout
            while any(b.busy for b in bindings) and time.monotonic() < deadline:
                time.sleep(0.005)
        if self._owns:
            self._conn.close()
        for b in bindings:
            for t in b.threads:
                t.join(timeout)
        if self._done_queue is not None:
            self._done_queue.put(None)
            self._done_thread.join(timeout)
        if self._srv is not None:
            srv, self._srv = self._srv, None
            lib.dime_server_stop(srv)

    @property
    def closed(self):
        return self._closed.is_set()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close(timeout=0)
        except Exception:
            pass

    def __repr__(self):
        state = "closed" if self.closed else ("serving" if self._started else "not started")
        return f"<dime.Server {self.address} {state}, {sorted(self._bindings)}>"

    # -- serving -----------------------------------------------------------------
    def _serve(self, b):
        """Provides ``b`` and starts its threads (with ``_lock`` held)."""
        with self._conn._borrow() as ptr:
            check(lib.dime_provide_own_queue(ptr, b.name_c, b.capacity),
                  f"cannot provide {b.name!r}")
        if b.donefn is not None and self._done_queue is None:
            self._done_queue = queue.Queue()
            self._done_thread = threading.Thread(target=self._run_donefns, daemon=True,
                                                 name=f"dime-{self.name}-done")
            self._done_thread.start()
        for i in range(b.workers):
            t = threading.Thread(target=self._worker, args=(b,), daemon=True,
                                 name=f"dime-{self.name}-{b.name}-{i}")
            b.threads.append(t)
            t.start()

    def _next(self, ptr, b, timeout_ms):
        """The next request of ``b``: a pointer, None on a timeout, or raises
        ``DimeConnectionError`` when the connection is gone."""
        req = c_void_p()
        st = lib.dime_next_call_of(ptr, b.name_c, timeout_ms, byref(req))
        if st == _lib.STATUS_OK:
            return req.value
        if st == _lib.STATUS_TIMEOUT:
            return None
        raise error(st, f"serving {b.name!r}")

    def _worker(self, b):
        """One thread of ``b``: takes calls (a batch of them) and runs them.
        It keeps the connection lent for its whole life: ``close()`` wakes it
        (``dime_close``) and frees the connection once it is out."""
        wait_ms = int(self.batch_wait * 1000 + 0.999)
        try:
            ptr = self._conn._lend()
        except DimeConnectionError:
            return
        me = threading.current_thread()
        try:
            while True:
                stopping = self._stopping.is_set()
                try:
                    first = self._next(ptr, b, 0 if stopping else _SERVE_SLICE_MS)
                    if first is None:
                        if stopping:
                            return
                        continue
                    requests = [first]
                    if b.batch > 1:
                        deadline = time.monotonic() + self.batch_wait
                        while len(requests) < b.batch:
                            left = max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
                            r = self._next(ptr, b, min(left, wait_ms))
                            if r is None:
                                break
                            requests.append(r)
                except DimeConnectionError as e:
                    if not self._stopping.is_set():
                        log.error("server %s stopped serving %r: %s", self.name, b.name, e)
                        self._keep(e)
                    return
                b.busy.add(me)
                try:
                    self._run(b, requests)
                finally:
                    for r in requests:
                        lib.dime_request_free(r)
                    b.busy.discard(me)
        finally:
            self._conn._give_back()

    def _run(self, b, requests):
        """Runs one call (or one batch) of ``b`` and answers it. The
        arguments are released only after the answers went out: freeing
        large arrays takes time the callers need not wait for."""
        if b.stream:
            self._run_stream(b, requests[0])
            return
        data = None
        try:
            args = [_take_args(r) for r in requests]
            data = _batch.stack(args) if b.batch else args[0]
            del args
            if b.pool is not None:
                out = b.pool.submit(b.fn, data).result()
            else:
                out = b.fn(data)
            info = None
            if b.donefn is not None:
                out, info = out
            results = _batch.split(out, len(requests)) if b.batch else [out]
        except Exception as e:
            self._failed(b, requests, e)
            return
        for r, result in zip(requests, results):
            self._reply(b, r, result)
        if b.donefn is not None:
            self._done_queue.put((b, info))

    def _run_stream(self, b, request):
        """Runs one stream call of ``b``: its generator's items go out one
        by one, then the end (or the error it raised)."""
        try:
            if not lib.dime_request_is_stream(request):
                raise TypeError(f"{b.name!r} is a stream: open it with Client.stream(), "
                                f"not call()")
            gen = iter(b.fn(_take_args(request)))
            _stream.produce(request, gen, self._stopping)
        except DimeConnectionError as e:
            if not self._stopping.is_set():
                log.error("stream %r on server %s: %s", b.name, self.name, e)
        except Exception as e:
            self._failed(b, [request], e)

    def _reply(self, b, request, result):
        payload = _dimeb.encode(result)
        if payload is not None:
            lib.dime_reply_encoded(request, payload, len(payload))  # fails only when the
            return                                                  # connection is gone
        keep = []
        try:
            v = to_value(result, keep, "result")
        except Exception as e:      # a result that cannot be sent
            self._failed(b, [request], e)
            return
        try:
            lib.dime_reply(request, v)
        finally:
            lib.dime_value_free(v)

    def _failed(self, b, requests, e):
        """Sends ``e`` to the callers of ``requests`` and keeps it for check()."""
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        t = type(e)
        type_name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
        tn, msg, tbc = (s.encode("utf-8", "replace").replace(b"\0", b"\\0")
                        for s in (type_name, str(e), tb))
        for r in requests:
            lib.dime_reply_error(r, tn, msg, tbc)
        log.error("exception in %r on server %s:\n%s", b.name, self.name, tb.rstrip())
        self._keep(e)

    def _keep(self, e):
        """Keeps ``e`` for check() (the oldest ``_MAX_KEPT`` of them)."""
        if self.errors:
            with self._lock:
                if len(self._errors) < _MAX_KEPT:
                    self._errors.append(e)

    def _run_donefns(self):
        q = self._done_queue
        while True:
            item = q.get()
            if item is None:
                return
            b, info = item
            try:
                b.donefn(info)
            except Exception as e:
                log.error("exception in the donefn of %r on server %s:\n%s", b.name, self.name,
                          "".join(traceback.format_exception(type(e), e, e.__traceback__)))
                self._keep(e)


def _take_args(request):
    """The arguments of ``request``: small ones decoded here, large ones by
    the library, their arrays taken over without a copy."""
    data, n = c_void_p(), c_size_t()
    if (lib.dime_request_payload(request, byref(data), byref(n)) == _lib.STATUS_OK
            and n.value <= _dimeb.SMALL):
        try:
            return _dimeb.decode(ctypes.string_at(data.value, n.value))
        except _dimeb.NotLean:
            pass                    # the library decides, and names the position
    v = c_void_p()
    check(lib.dime_request_take_args(request, byref(v)))
    try:
        return from_value(v.value, True, "args")
    finally:
        lib.dime_value_free(v.value)


def _start_broker(address):
    """Starts the in-process broker listening at ``address``; its handle."""
    listen = _listen_address(address)
    arr = (c_char_p * 1)(_cstr(listen, "address"))
    out = c_void_p()
    st = lib.dime_server_start(arr, 1, byref(out))
    if st:
        raise error(st, f"cannot serve at {address}")
    return out.value
