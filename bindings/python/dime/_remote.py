"""What ``Share`` and ``TupleSpace`` have in common: a connection (their own
or a ``DimeClient``'s), a name, timeouts in seconds, and child processes
that connect on their own.
"""

import math
import multiprocessing
import os

from . import _lib
from ._errors import closed_error
from ._wait import seconds
from .client import DimeClient, _cstr, address_of

DEFAULT_ADDRESS = "unix:/tmp/dime.sock"

#: Start method of the processes made by ``Share.new_proc`` and
#: ``TupleSpace.eval``. "spawn" gives the child a fresh interpreter that
#: owns nothing of the parent's: a forked child would inherit the parent's
#: socket, and closing it there (libdime shuts the socket down) would cut
#: the parent off, while keeping it open would keep the parent's locks
#: alive after the parent died.
DEFAULT_START_METHOD = "spawn"


def default_address():
    """``$DIME_ADDRESS``, else ``unix:/tmp/dime.sock``."""
    return os.environ.get("DIME_ADDRESS") or DEFAULT_ADDRESS


def normalize_address(address):
    """libdime's address string for ``address``: ``None`` is
    ``default_address()``; ``"unix:/p"``, ``"tcp:h:p"``, ``"ipc:///p"``,
    ``"tcp://h:p"`` and a bare socket path (``"/tmp/x.sock"``) are accepted."""
    if address is None:
        address = default_address()
    address = os.fspath(address)
    if isinstance(address, bytes):
        address = address.decode()
    if not isinstance(address, str):
        raise TypeError(f"address must be a str, not {type(address).__name__}")
    if address.startswith("/") or address.startswith("."):
        return f"unix:{address}"
    return address_of(address)


def timeout_ms(timeout):
    """libdime's ``timeout_ms`` for ``timeout`` seconds (``None``: forever),
    for a wait made in one call (``dime._wait.sliced`` makes the others)."""
    t = seconds(timeout)
    if t is None:
        return _lib.WAIT_FOREVER
    return min(int(math.ceil(t * 1000)), (1 << 63) - 1)


class Remote:
    """A named object on a dime server, reached through one connection.

    ``address_or_client``: a ``DimeClient`` (its connection is shared, and
    stays the client's: closing this object does not close it), or an
    address to connect to (``None``: ``$DIME_ADDRESS``, else
    ``unix:/tmp/dime.sock``). Blocking calls hold the connection while they
    wait (the sliced ones, ``dime._wait``, one slice at a time), so a
    thread that must not wait behind them needs its own object.
    """

    _kind = "remote"

    def __init__(self, address_or_client=None, name=""):
        if name is None:
            name = ""
        self._name_c = _cstr(name, f"{self._kind} name")
        self.name = name
        self._owns = False
        self._client = None
        if isinstance(address_or_client, DimeClient):
            self._client = address_or_client
        else:
            address = normalize_address(address_or_client)
            self._client = DimeClient(address)
            self._owns = True
        self.address = self._client.address

    # -- the connection ------------------------------------------------------
    def _call(self, fn, *args):
        """``fn(client_ptr, name, *args)`` under the client's lock; its status."""
        c = self._client
        if c is None:
            raise closed_error(self._kind)
        with c._lock:
            return fn(c._handle(), self._name_c, *args)

    @property
    def client(self):
        """The ``DimeClient`` whose connection this object uses."""
        return self._client

    @property
    def closed(self):
        return self._client is None or self._client.closed

    def close(self):
        """Closes the connection if this object opened it (the server then
        releases every lock it held and drops its waits). Idempotent."""
        c, self._client = self._client, None
        if c is not None and self._owns:
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __reduce__(self):
        # Pickled (e.g. into a child process), it reconnects to the same
        # server and names the same share or space.
        return (type(self), (self.address, self.name))

    def __repr__(self):
        state = "closed" if self.closed else self.address
        return f"<dime.{type(self).__name__} {self.name!r} at {state}>"

    # -- child processes -----------------------------------------------------
    def _start_process(self, target, fn, args, context, daemon):
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        ctx = multiprocessing.get_context(context or DEFAULT_START_METHOD)
        p = ctx.Process(target=target, args=(type(self), self.address, self.name, fn, args),
                        daemon=daemon)
        p.start()
        return p
