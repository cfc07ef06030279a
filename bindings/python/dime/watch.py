"""Change events: ``Share.watch``, ``TupleSpace.watch`` and
``DimeClient.watch_groups`` give a ``Watch``, an iterator of ``Event``s
pushed by the server as changes happen (no polling):

    for ev in share.watch(prefix="jobs/"):
        print(ev.seq, ev.kind, ev.key, ev.value)

or, with a callback run on a thread of its own:

    w = share.watch(prefix="jobs/", callback=print)
    ...
    w.close()

A watch has its own connection. When it breaks, the next wait reconnects
and resumes after the last event seen; ``watch.position`` saved across a
restart of the program resumes the same way (``resume=position``). When
the missed events are no longer known (the server keeps a bounded history,
and none across its own restarts), one event of kind ``"lost"`` comes
instead: re-read the state, then carry on.

A watch that is not read for a while (no ``next``, a slow callback) does
not make the server queue its events without end: past the server's
``--watch-queue-events``/``--watch-queue-bytes`` it stops sending, and
once the watch is read again it sends every event up to that point, then
the rest from its history, or a ``"lost"`` event if that has moved on.
"""

import threading
import traceback
from ctypes import Structure, byref, c_uint64, c_void_p

from . import _lib
from ._convert import from_value
from ._errors import check, error
from ._handle import Handle
from ._lib import lib
from ._wait import seconds, sliced

__all__ = ["Watch", "Event", "Position"]

_KINDS = {1: "set", 2: "del", 3: "clear", 4: "out", 5: "in", 6: "join", 7: "leave", 8: "lost"}


class Position(Structure):
    """Where a watch is: ``(epoch, seq)`` of the last event seen."""

    _fields_ = [("epoch", c_uint64), ("seq", c_uint64)]

    def __iter__(self):
        return iter((self.epoch, self.seq))

    def __eq__(self, other):
        return tuple(self) == tuple(other)

    def __repr__(self):
        return f"dime.Position(epoch={self.epoch}, seq={self.seq})"

    def __reduce__(self):
        return (Position, (self.epoch, self.seq))


class Event:
    """One change.

    ``kind``: ``"set"``, ``"del"``, ``"clear"`` (shares), ``"out"``,
    ``"in"`` (tuple spaces), ``"join"``, ``"leave"`` (groups) or
    ``"lost"`` (re-read: events were missed). ``seq``: its number, growing.
    ``topic``: the share or space. ``key``: the share key or group name.
    ``value``: the new value, or the tuple (as ``TupleSpace`` returns it),
    else None. ``client``: the server's id of the client that joined or
    left. ``message``: for ``"lost"``, why.
    """

    __slots__ = ("kind", "seq", "topic", "key", "value", "client", "message")

    def __init__(self, kind, seq, topic, key, value, client, message):
        self.kind = kind
        self.seq = seq
        self.topic = topic
        self.key = key
        self.value = value
        self.client = client
        self.message = message

    def __repr__(self):
        parts = [f"{self.kind!r}", f"seq={self.seq}"]
        for name in ("topic", "key", "value", "client", "message"):
            v = getattr(self, name)
            if v is not None:
                parts.append(f"{name}={v!r}")
        return f"dime.Event({', '.join(parts)})"


def _text(p):
    return None if p is None else p.decode("utf-8", "replace")


class Watch(Handle):
    """A watch (see the module's doc). Iterate over it, or call ``next``;
    with ``callback``, a thread calls ``callback(event)`` for each event
    until ``close()`` (an exception in the callback is printed and the
    watch goes on). ``close()`` (or ``with``) ends it."""

    _free = "dime_watch_free"
    _what = "watch"

    def __init__(self, opener, as_tuple=False, callback=None):
        out = c_void_p()
        check(opener(byref(out)))
        super().__init__(out.value)
        self._as_tuple = as_tuple
        self._thread = None
        if callback is not None:
            if not callable(callback):
                raise TypeError(f"callback {callback!r} is not callable")
            self._thread = threading.Thread(target=self._run, args=(callback,),
                                            daemon=True, name="dime-watch")
            self._thread.start()

    def next(self, timeout=None):
        """The next event, waiting up to ``timeout`` seconds (None: for
        ever); None if none came. Waits in slices, so Ctrl-C gets through.
        A broken connection is reopened once per call, resuming where the
        watch was; ``DimeConnectionError`` if that failed (the next call
        tries again)."""
        out = c_void_p()

        def call(ms):
            with self._lock:
                return lib.dime_watch_next(self._handle(), ms, byref(out))

        st = sliced(call, seconds(timeout))
        if st == _lib.STATUS_TIMEOUT:
            return None
        if st:
            raise error(st, "waiting for an event")
        try:
            return self._event(out.value)
        finally:
            lib.dime_event_free(out.value)

    def _event(self, ev):
        value = None
        v = lib.dime_event_value(ev)
        if v:
            value = from_value(v, False)
            if self._as_tuple and isinstance(value, list):
                value = tuple(value)
        client = lib.dime_event_client(ev)
        return Event(_KINDS.get(lib.dime_event_kind(ev), "unknown"), lib.dime_event_seq(ev),
                     _text(lib.dime_event_topic(ev)), _text(lib.dime_event_key(ev)), value,
                     None if client < 0 else client, _text(lib.dime_event_message(ev)))

    def __iter__(self):
        while True:
            ev = self.next()
            if ev is not None:
                yield ev

    @property
    def position(self):
        """A ``Position`` to resume a later watch from (``resume=``)."""
        p = Position()
        with self._lock:
            check(lib.dime_watch_get_position(self._handle(), byref(p)))
        return p

    def _run(self, callback):
        while not self.closed:
            try:
                ev = self.next(timeout=0.2)
            except Exception:
                if self.closed:
                    return
                # The server is away: the next call reconnects.
                threading.Event().wait(0.2)
                continue
            if ev is None:
                continue
            try:
                callback(ev)
            except Exception:
                traceback.print_exc()

    def close(self):
        """Ends the watch and closes its connection (and stops the callback
        thread). Idempotent."""
        super().close()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join()
