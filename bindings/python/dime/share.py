"""``dime.Share``: a dictionary on the dime server that many processes use
at once (remoteD, with atomic operations, locks that die with their holder
and waits without polling).

    import dime
    s = dime.init_share()             # starts a server if none runs
    s["x"] = numpy.eye(3)
    s.incr("done")                    # atomic
    with s.lock():                    # whole-share lock: others' writes wait
        s["total"] = s.get("total", 0) + 1
    s.wait_for("result", timeout=10)  # blocks until some process sets it
    with s.lock("job", ttl=5) as token:        # a lease, and its fencing token
        s.set("job", "done", fence=token)      # refused if the lease ran out
    for ev in s.watch(prefix="jobs/"):         # changes, pushed as they happen
        print(ev.kind, ev.key, ev.value)

Semantics of the server side: ``docs/protocol-extensions.md``.
"""

import collections.abc
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from ctypes import byref, c_bool, c_char_p, c_size_t, c_uint64, c_void_p

from . import _lib
from ._convert import from_value, to_value
from ._errors import DimeConnectionError, check, error
from ._lib import lib
from ._remote import Remote, normalize_address, timeout_ms
from ._wait import seconds, sliced
from .client import _cstr
from .watch import Position, Watch

__all__ = ["Share", "ShareLock", "ABSENT", "init_share", "find_server"]


class _Absent:
    """``dime.ABSENT``: as ``expected`` of ``Share.cas``, "the key must not exist"."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self):
        return "dime.ABSENT"

    def __reduce__(self):
        return (_Absent, ())


ABSENT = _Absent()
_MISSING = object()


def _key(k):
    return _cstr(k, "share key")


def _take(out):
    """The Python value of the owned dime_value pointer in ``out``, freed."""
    try:
        return from_value(out.value, True)
    finally:
        lib.dime_value_free(out.value)


class _Value:
    """A dime_value built from a Python value, freed on exit."""

    __slots__ = ("ptr", "keep")

    def __init__(self, x, what):
        self.keep = []
        self.ptr = to_value(x, self.keep, what)

    def __enter__(self):
        return self.ptr

    def __exit__(self, *exc):
        lib.dime_value_free(self.ptr)
        self.ptr = None
        self.keep = None
        return False


class ShareLock(int):
    """A lock held on a share (``Share.lock``), which is also its
    **fencing token**: an ``int`` that grows with every grant of any lock
    (and survives server restarts with ``--data-dir``). Pass it as
    ``fence=`` to writes (``Share.set``, ``Share.delete``): the server
    refuses a write whose token is older than the lock's newest grant, so
    a holder whose lease ran out cannot overwrite the next holder's work.

    Released by ``release()``, on leaving a ``with`` block (which gives the
    lock itself, i.e. the token: ``with s.lock(ttl=5) as token:``), when
    the holder's connection closes or its process dies, or, for a lock
    taken with a lease (``ttl``), when the lease runs out unless
    ``renew()``-ed.
    """

    def __new__(cls, share, key, token, ttl=None):
        self = super().__new__(cls, token)
        self.share = share
        self.key = key
        self.ttl = ttl
        self.held = True
        return self

    @property
    def token(self):
        """The fencing token, as a plain ``int``."""
        return int(self)

    def renew(self, ttl=None):
        """Extends the lease to ``ttl`` seconds from now (None: the length
        it was taken with). ``DimeServerError`` if the lock is no longer
        held (the lease already ran out): stop working as its holder."""
        self.share.renew(self.key, ttl if ttl is not None else self.ttl)
        if ttl is not None:
            self.ttl = ttl

    def release(self):
        """Releases the lock (an error if it is no longer held)."""
        if not self.held:
            raise RuntimeError(f"{self!r} was already released")
        self.held = False
        self.share.unlock(self.key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.held:
            self.release()
        return False

    def __reduce__(self):
        # A lock belongs to its connection: pickled, it is just its token.
        return (int, (int(self),))

    def __repr__(self):
        what = "whole-share lock" if self.key is None else f"lock {self.key!r}"
        lease = "" if self.ttl is None else f", lease {self.ttl} s"
        return (f"<dime.ShareLock {what} of {self.share!r}, token {int(self)}{lease}"
                f"{'' if self.held else ' (released)'}>")


def _ms(ttl, what="ttl"):
    """``ttl`` seconds as libdime's milliseconds (0: no lease)."""
    if ttl is None:
        return 0
    t = seconds(ttl)
    if t is None or t <= 0:
        raise ValueError(f"{what} must be a positive number of seconds, not {ttl!r}")
    return max(1, round(t * 1000))


class Share(Remote, collections.abc.MutableMapping):
    """A named shared dictionary on a dime server (``name=""``: the default share).

    A ``MutableMapping``: ``s[k] = v``, ``s[k]`` (``KeyError`` if missing),
    ``del s[k]`` (``KeyError`` if missing), ``k in s``, ``len(s)``,
    ``s.keys()``, iteration (over a snapshot of the keys), ``s.get``,
    ``s.setdefault``. Keys are ``str``; values are anything ``DimeClient``
    sends (the type table), and come back as ``DimeClient`` receives them.
    Every single call is atomic on the server; ``update`` (one set-many
    request), ``pop``, ``incr``, ``cas`` and ``setdefault`` are atomic too.

    ``address_or_client``: a ``DimeClient`` (its connection is reused) or
    an address (``None``: ``$DIME_ADDRESS``, else ``unix:/tmp/dime.sock``).
    """

    _kind = "share"
    #: The server ``init_share`` started for this share (a ``Popen``), else None.
    server = None

    # -- mapping -------------------------------------------------------------
    def __getitem__(self, key):
        k = _key(key)
        out = c_void_p()
        st = self._call(lib.share_get, k, byref(out))
        if st == _lib.STATUS_NOT_FOUND:
            raise KeyError(key)
        check(st)
        return _take(out)

    def __setitem__(self, key, value):
        k = _key(key)
        with _Value(value, key) as v:
            check(self._call(lib.share_set, k, v))

    def __delitem__(self, key):
        k = _key(key)
        found = c_bool()
        check(self._call(lib.share_del, k, byref(found)))
        if not found.value:
            raise KeyError(key)

    def __contains__(self, key):
        if not isinstance(key, str):
            return False
        found = c_bool()
        check(self._call(lib.share_contains, _key(key), byref(found)))
        return found.value

    def __iter__(self):
        return iter(self.key_list())

    def __len__(self):
        n = c_size_t()
        check(self._call(lib.share_len, byref(n)))
        return n.value

    def key_list(self):
        """A list of the keys, sorted (one request)."""
        out = c_void_p()
        check(self._call(lib.share_keys, byref(out)))
        return _take(out)

    def clear(self):
        """Removes every key (one request; locks and waiters stay)."""
        check(self._call(lib.share_clear))

    def pop(self, key, default=_MISSING):
        """Removes ``key`` and returns its value, atomically: of several
        processes popping one key exactly one gets it. ``default`` if it is
        missing, else ``KeyError``."""
        k = _key(key)
        out = c_void_p()
        st = self._call(lib.share_pop, k, byref(out))
        if st == _lib.STATUS_NOT_FOUND:
            if default is _MISSING:
                raise KeyError(key)
            return default
        check(st)
        return _take(out)

    def popitem(self):
        while True:
            keys = self.key_list()
            if not keys:
                raise KeyError("popitem(): share is empty")
            for k in keys:
                v = self.pop(k, _MISSING)
                if v is not _MISSING:
                    return k, v

    def setdefault(self, key, default=None):
        """``self[key]``, after storing ``default`` there if it was missing
        (atomic: of several processes, one stores and all see its value)."""
        while True:
            if self.cas(key, ABSENT, default):
                return default
            value = self.get(key, _MISSING)
            if value is not _MISSING:
                return value

    def get_many(self, keys):
        """A dict of the given keys that exist, read in one request."""
        keys = list(keys)
        arr = (c_char_p * len(keys))(*[_key(k) for k in keys])
        out = c_void_p()
        check(self._call(lib.share_get_many, arr, len(keys), byref(out)))
        return _take(out)

    def update(self, other=(), /, **kwds):
        """Stores every pair of ``other`` and ``kwds`` in one atomic request:
        other processes see all of them or none."""
        items = {}
        if isinstance(other, collections.abc.Mapping):
            items.update((k, other[k]) for k in other.keys())
        elif hasattr(other, "keys"):
            items.update((k, other[k]) for k in other.keys())
        else:
            items.update(other)
        items.update(kwds)
        if not items:
            return
        for k in items:
            _key(k)
        with _Value(items, "") as m:
            check(self._call(lib.share_set_many, m))

    set_many = update

    def copy(self):
        """A dict snapshot of the share (two requests: keys, then values;
        hold ``lock()`` for a consistent one while others write)."""
        got = self.get_many(self.key_list())
        return dict(sorted(got.items()))

    # -- atomic operations ---------------------------------------------------
    def incr(self, key, delta=1):
        """Adds ``delta`` to the number under ``key`` (a missing key starts
        at 0) and returns the new value, atomically. int + int stays an
        integer of the stored class; a float on either side gives a float.
        ``DimeServerError`` if the stored value is not a number or an
        integer would overflow."""
        if isinstance(delta, (bool, complex)) or not (isinstance(delta, (int, float)) or hasattr(delta, "dtype")):
            raise TypeError(f"incr delta must be a number, not {type(delta).__name__}")
        k = _key(key)
        out = c_void_p()
        with _Value(delta, "delta") as d:
            check(self._call(lib.share_incr, k, d, byref(out)))
        return _take(out)

    def cas(self, key, expected, new):
        """Sets ``key`` to ``new`` only if its value equals ``expected``
        (same type and bits: ``1`` is not ``1.0``), or, with ``expected``
        ``dime.ABSENT``, only if the key is missing. True if it did."""
        k = _key(key)
        swapped = c_bool()
        with _Value(new, "new") as n:
            if expected is ABSENT:
                check(self._call(lib.share_cas, k, None, n, byref(swapped)))
            else:
                with _Value(expected, "expected") as e:
                    check(self._call(lib.share_cas, k, e, n, byref(swapped)))
        return swapped.value

    def wait_for(self, key, timeout=None):
        """The value of ``key`` as soon as it exists (at once if it does),
        woken by the write that creates it (no polling). With ``timeout``
        (seconds), raises ``DimeTimeoutError`` (a ``TimeoutError``) when
        it runs out. Holds this object's connection while waiting, and waits
        in slices that Ctrl-C interrupts (see ``dime._wait``; a key that is
        created and removed again between two slices is missed)."""
        k = _key(key)
        out = c_void_p()
        st = sliced(lambda ms: self._call(lib.share_wait_key, k, ms, byref(out)),
                    seconds(timeout))
        if st:
            raise error(st, f"waiting for key {key!r}")
        return _take(out)

    # -- fenced writes ---------------------------------------------------------
    def set(self, key, value, fence=None):
        """``self[key] = value``; with ``fence`` (a ``ShareLock`` or its
        token), refused with ``DimeServerError`` (nothing written) if a
        newer grant of the share's lock or of the lock named ``key``
        exists."""
        if fence is None:
            self[key] = value
            return
        k = _key(key)
        with _Value(value, key) as v:
            check(self._call(lib.share_set_fenced, k, v, int(fence)))

    def delete(self, key, fence=None):
        """Removes ``key``; True if it was there. ``fence`` as for ``set``."""
        k = _key(key)
        found = c_bool()
        if fence is None:
            check(self._call(lib.share_del, k, byref(found)))
        else:
            check(self._call(lib.share_del_fenced, k, int(fence), byref(found)))
        return found.value

    # -- locks -----------------------------------------------------------------
    def lock(self, key=None, timeout=None, ttl=None):
        """Takes a lock and returns a ``ShareLock``, which is also the
        grant's fencing token (use it in ``with``, or call ``release()`` /
        ``s.unlock(key)``).

        ``key`` None: the whole-share lock (other processes' writes to this
        share wait while it is held; reads do not; the holder writes
        freely). ``key`` a str: a named advisory lock. Waiters are served
        first come, first served. Locks are not re-entrant (asking again
        for one this connection holds raises ``DimeServerError``), and are
        released when the connection closes or the process dies.
        ``timeout`` (seconds): ``DimeTimeoutError`` when it runs out.
        ``ttl`` (seconds): a lease; the server releases the lock that long
        after the grant unless ``renew()``-ed, even if this process is
        alive but stuck, and then refuses writes fenced with its token.

        Unlike the other blocking calls, the wait is one request, so Ctrl-C
        does not interrupt it until it ends: the server can only withdraw a
        request when it times out, and asking again every fraction of a
        second would send this waiter to the back of the queue each time.
        For a wait you can interrupt, loop over ``lock(key, timeout=...)``
        yourself, giving up that place in line.
        """
        k = None if key is None else _key(key)
        ms = _ms(ttl)
        token = c_uint64()
        # One request for the whole timeout: it keeps its place in the FIFO.
        st = self._call(lib.share_lock_lease, k, timeout_ms(timeout), ms, byref(token))
        if st:
            what = "the whole-share lock" if key is None else f"lock {key!r}"
            raise error(st, f"taking {what} of share {self.name!r}")
        return ShareLock(self, key, token.value, ttl)

    def renew(self, key=None, ttl=None):
        """Extends the lease of a lock this connection holds to ``ttl``
        seconds from now (None: the length it was taken or last renewed
        with); returns its fencing token. ``DimeServerError`` if it is not
        held (its lease already ran out)."""
        k = None if key is None else _key(key)
        token = c_uint64()
        check(self._call(lib.share_lock_renew, k, _ms(ttl), byref(token)))
        return token.value

    def try_lock(self, key=None):
        """Takes the lock only if it is free now: True if taken, False if
        another connection holds it."""
        k = None if key is None else _key(key)
        st = self._call(lib.share_try_lock, k)
        if st == _lib.STATUS_TIMEOUT:
            return False
        check(st)
        return True

    def unlock(self, key=None):
        """Releases a lock this connection holds (``DimeServerError`` if not)."""
        k = None if key is None else _key(key)
        check(self._call(lib.share_unlock, k))

    # -- change events -----------------------------------------------------------
    def watch(self, prefix="", resume=None, callback=None):
        """A ``dime.Watch`` of this share's keys starting with ``prefix``:
        iterate over it (``for ev in s.watch(prefix="jobs/")``), or give
        ``callback`` to have each ``Event`` passed to it on a thread. The
        watch has its own connection; ``resume``: a ``watch.position`` to
        receive first what happened after it. See ``dime.watch``."""
        p = _cstr(prefix, "prefix")
        client = self._client

        def opener(out):
            with client._lock:
                return lib.dime_watch_share(client._handle(), self._name_c, p,
                                            _position_arg(resume), out)

        return Watch(opener, callback=callback)

    # -- processes ---------------------------------------------------------------
    def new_proc(self, fn, *args, context=None, daemon=False):
        """Starts a child process that calls ``fn(share, *args)``, ``share``
        being its own connected ``Share`` of this name on this server
        (remoteD's newProc). ``fn`` and ``args`` must be picklable
        (top-level functions). Returns the started
        ``multiprocessing.Process``. ``context``: the start method
        ("spawn", the default; see ``dime._remote``)."""
        return self._start_process(_child_main, fn, args, context, daemon)


def _position_arg(resume):
    """A ``dime_watch_position *`` for ``resume`` (None, a ``Position`` or
    an ``(epoch, seq)`` pair)."""
    if resume is None:
        return None
    epoch, seq = resume
    return byref(Position(epoch, seq))


def _child_main(cls, address, name, fn, args):
    with cls(address, name) as share:
        fn(share, *args)


# ------------------------------------------------------------- init_share

_SERVERS = []


def find_server():
    """The path of the ``dime`` server binary: ``$DIME_BIN``, next to the
    package, ``target/release`` then ``target/debug`` of the repository the
    package (or its virtual environment) sits in, else ``dime`` on $PATH."""
    env = os.environ.get("DIME_BIN")
    if env:
        if not os.access(env, os.X_OK):
            raise FileNotFoundError(f"DIME_BIN={env!r} is not an executable file")
        return env
    exe = "dime.exe" if sys.platform == "win32" else "dime"
    here = pathlib.Path(__file__).resolve().parent
    for p in (here / exe, here / "bin" / exe):
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    seen = set()
    for start in (here, pathlib.Path(sys.prefix).resolve()):
        for d in [start, *start.parents]:
            if d in seen:
                continue
            seen.add(d)
            for profile in ("release", "debug"):
                p = d / "target" / profile / exe
                if p.is_file() and os.access(p, os.X_OK):
                    return str(p)
    found = shutil.which(exe)
    if found:
        return found
    raise FileNotFoundError("cannot find the dime server: set DIME_BIN, or build it with "
                            "`cargo build --release` in the dime repository")


def _reap(proc):
    try:
        proc.wait()
    except Exception:
        pass


def _start_server(address, idle):
    argv = [find_server(), "-l", address, "--exit-when-idle", str(idle)]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=log, start_new_session=True, close_fds=True)
    proc.log = log
    _SERVERS.append(proc)
    threading.Thread(target=_reap, args=(proc,), daemon=True, name="dime-server-reaper").start()
    return proc


def init_share(address=None, name="", *, start=True, idle=3.0, startup_timeout=10.0):
    """A ``Share`` on the default server, starting one if none runs
    (remoteD's initShare).

    ``address``: ``None`` for ``$DIME_ADDRESS``, else
    ``unix:/tmp/dime.sock``. If nothing answers there and ``start`` is
    true, the ``dime`` binary (``find_server()``) is started in the
    background, detached from this process's session, with
    ``--exit-when-idle idle``: it exits by itself ``idle`` seconds after
    its last client disconnects (remoteD's AutoKill). The server started,
    if any, is ``share.server`` (a ``subprocess.Popen``; ``None`` when one
    was already running).
    """
    address = normalize_address(address)
    try:
        share = Share(address, name)
        share.server = None
        return share
    except DimeConnectionError:
        if not start:
            raise
    proc = _start_server(address, idle)
    deadline = time.monotonic() + startup_timeout
    while True:
        try:
            share = Share(address, name)
            share.server = proc
            return share
        except DimeConnectionError as e:
            now = time.monotonic()
            if proc.poll() is not None and proc.returncode != 0:
                # It could not listen: fine if another process's server won
                # the race (keep connecting for a moment), else report why.
                exited = getattr(proc, "exited_at", None) or now
                proc.exited_at = exited
                if now - exited > 1.0:
                    proc.log.seek(0)
                    why = proc.log.read().decode("utf-8", "replace").strip()
                    raise DimeConnectionError(f"the dime server started for {address} exited "
                                              f"with status {proc.returncode}: {why}") from None
            if now > deadline:
                raise DimeConnectionError(f"started a dime server for {address} but could "
                                          f"not connect within {startup_timeout} s: {e}") from None
            # A server that exits at once lost the race to another process
            # starting one: keep trying to connect to that one.
            time.sleep(0.01)
