"""Streams: a provider's generator yields items one by one to a consumer.

    server.bind_stream("count", lambda n: (i for i in range(n)))
    for item in client.stream("count", 10):      # 0, 1, ..., 9
        ...

The consumer grants the producer a window of items and bytes: the
producer's generator is not advanced while the window is full, so memory
stays bounded whatever the speeds. A consumer that stops early (``break``,
``close()``, an ``on_item`` callback returning False, or its death) closes
the producer's generator (``GeneratorExit``) at its next item. A generator
that raises ends the stream with that error, after the items it yielded
before; a producer that dies ends it with ``dime.ProviderLost``.
"""

import ctypes
import itertools
import logging
import threading
import traceback
from ctypes import POINTER, byref, c_size_t, c_uint8, c_void_p

from . import _dimeb, _lib
from ._convert import from_value, to_value
from ._errors import DimeConnectionError, check, error
from ._future import _ms
from ._handle import Closing
from ._lib import lib
from ._rpc_errors import call_error, remote_error
from .client import _cstr

__all__ = ["Stream", "StreamHandle"]

log = logging.getLogger("dime.stream")

#: Longest single wait in the library, so Ctrl-C and ``close()`` from
#: another thread are noticed while a stream is quiet.
_SLICE_MS = 100

#: Most items taken from the library in one call; they are decoded here
#: one by one as the iterator reaches them.
_MANY = 4096


def _text(ptr):
    return ctypes.string_at(ptr).decode("utf-8", "replace") if ptr else ""


def _held_item(held, start, stop):
    """The item at ``held[start:stop]`` of a batch taken from the library:
    decoded here, or, for what the lean decoder leaves to the library (a
    map key Python cannot hash, nesting past Python's stack), by the
    library, which names the position if it fails."""
    try:
        return _dimeb.decode_span(held, start, stop)
    except _dimeb.NotLean:
        pass
    n = stop - start
    buf = (c_uint8 * n).from_buffer_copy(memoryview(held)[start:stop])
    v = c_void_p()
    check(lib.dime_value_decode(buf, n, byref(v)))
    try:
        return from_value(v.value, True, "item")
    finally:
        lib.dime_value_free(v.value)


class Stream(Closing):
    """The consumer's end of a stream: iterate it for the items. Made by
    ``dime.Client.stream``. Closing it (``close()``, ``break`` out of a
    for loop over it, ``with``, or garbage collection) stops the producer.
    """

    def __init__(self, conn, function, data=None, items=None, bytes=None, timeout=None):
        self.function = function
        self._ptr = None
        self._lock = threading.Lock()
        #: a thread is inside the library with ``_ptr``: ``close()`` from
        #: another thread then leaves the freeing to it (``_closing``)
        self._busy = False
        self._closing = False
        keep = []
        v = to_value(data, keep, "data")
        out = c_void_p()
        try:
            with conn._borrow() as ptr:
                st = lib.dime_stream_open(ptr, _cstr(function, "function name"), v,
                                          int(items or 0), int(bytes or 0), _ms(timeout),
                                          byref(out))
        finally:
            lib.dime_value_free(v)
        check(st, f"cannot open a stream of {function!r}")
        self._ptr = out.value
        self._data = POINTER(c_uint8)()
        self._lens = POINTER(c_size_t)()
        self._count = c_size_t()
        self._out = (byref(self._data), byref(self._lens), byref(self._count))
        #: items taken from the library and not returned yet: their bytes
        #: one after another, where each ends, and the next one's index
        self._held = b""
        self._ends = ()
        self._next = 0

    def __iter__(self):
        return self

    def __next__(self):
        k = self._next
        if k < len(self._ends):            # the rest of a batch: no library call
            self._next = k + 1
            ends = self._ends
            return _held_item(self._held, ends[k - 1], ends[k])
        return self._fetch()

    def _fetch(self):
        """Takes the items received from the library (waiting for one) and
        returns the first."""
        self._held, self._ends, self._next = b"", (), 0
        with self._lock:
            ptr = self._ptr
            if ptr is None or self._closing:
                raise StopIteration
            self._busy = True
        try:
            while True:
                st = lib.dime_stream_next_many(ptr, _SLICE_MS, _MANY, _dimeb.SMALL, *self._out)
                if st != _lib.STATUS_TIMEOUT or self._closing:
                    break
            # The items' bytes and the error texts are the stream's: read
            # them before another thread may free it.
            if st == _lib.STATUS_OK and not self._closing:
                n = self._count.value
                if n == 1:
                    return self._item(ptr, self._lens[0])
                ends = (0, *itertools.accumulate(self._lens[:n]))
                self._held = ctypes.string_at(self._data, ends[-1])
                self._ends = ends
                self._next = 2
                return _held_item(self._held, 0, ends[1])
            if st == _lib.STATUS_REMOTE_ERROR:
                t, m, tb = c_void_p(), c_void_p(), c_void_p()
                lib.dime_stream_error(ptr, byref(t), byref(m), byref(tb))
                e = remote_error(_text(t.value), _text(m.value), _text(tb.value),
                                 function=self.function)
            elif st not in (_lib.STATUS_OK, _lib.STATUS_END_OF_STREAM, _lib.STATUS_TIMEOUT):
                e = call_error(st, f"stream {self.function!r}")
            else:
                e = None
        finally:
            with self._lock:
                self._busy = False
        self.close()                # ended, failed, or closed from another thread
        if e is not None:
            raise e
        raise StopIteration

    def _item(self, ptr, n):
        """The one item (of ``n`` bytes) ``dime_stream_next_many`` just gave."""
        if n <= _dimeb.SMALL:       # small: decoded here
            try:
                return _dimeb.decode(ctypes.string_at(self._data, n))
            except _dimeb.NotLean:
                pass                # the library decides, and names the position
        v = c_void_p()              # large: the library decodes, numpy takes its buffers
        check(lib.dime_stream_item(ptr, byref(v)))
        try:
            return from_value(v.value, True, "item")
        finally:
            lib.dime_value_free(v.value)

    def close(self):
        """Stops the stream (the producer's generator is closed at its next
        item); items not read yet are dropped. Idempotent."""
        with self._lock:
            if self._busy:              # the reading thread frees it on its way out
                self._closing = True
                return
            ptr, self._ptr = self._ptr, None
            self._closing = True
            self._ends = ()
        if ptr is not None:
            lib.dime_stream_close(ptr)

    @property
    def closed(self):
        return self._ptr is None or self._closing

    def __repr__(self):
        return f"<dime.Stream {self.function!r} {'closed' if self.closed else 'open'}>"


class StreamHandle:
    """A stream consumed by callbacks on a background thread (from
    ``Client.stream(..., on_item=f, on_end=g)``): ``f(item)`` runs for
    each item, and returning ``False`` stops the stream; then
    ``g(error)`` runs once, with None when the stream ended or was
    stopped, or the exception that ended it (the producer's error,
    ``ProviderLost``, or one raised by ``f``). ``close()`` stops it,
    ``join()`` waits for it to finish; ``error`` is what ``g`` got."""

    def __init__(self, stream, on_item, on_end):
        self.stream = stream
        self.error = None
        self._on_item = on_item
        self._on_end = on_end
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"dime-stream-{stream.function}")
        self._thread.start()

    def _run(self):
        err = None
        try:
            for item in self.stream:
                if self._on_item(item) is False:
                    break
        except Exception as e:
            err = e
        finally:
            self.stream.close()
        self.error = err
        if self._on_end is not None:
            try:
                self._on_end(err)
            except Exception as e:
                log.error("exception in on_end of stream %r:\n%s", self.stream.function,
                          "".join(traceback.format_exception(type(e), e, e.__traceback__)))
        elif err is not None:
            log.error("stream %r ended with %s: %s", self.stream.function,
                      type(err).__name__, err)

    def close(self, timeout=None):
        """Stops the stream and waits (up to ``timeout`` s) for the
        callbacks to finish (not when called from a callback)."""
        self.stream.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def join(self, timeout=None):
        """Waits for the stream to end (up to ``timeout`` s); True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def done(self):
        return not self._thread.is_alive()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def produce(request, gen, stopping):
    """Sends the items of generator ``gen`` on stream request ``request``
    and ends the stream. Returns normally when the generator is exhausted
    or the consumer stopped (the generator is then closed); raises what the
    generator raised (the caller ends the stream with it), or
    ``DimeConnectionError`` when the connection is gone."""
    send_encoded = lib.dime_stream_send_encoded
    for item in gen:
        payload = _dimeb.encode(item)
        if payload is not None:     # small: encoded here, one C call per item
            st = send_encoded(request, payload, len(payload), _SLICE_MS)
            if st == _lib.STATUS_TIMEOUT:
                st = _send(send_encoded, stopping, request, payload, len(payload))
        else:
            keep = []
            v = to_value(item, keep, "item")
            try:
                st = _send(lib.dime_stream_send, stopping, request, v)
            finally:
                lib.dime_value_free(v)
        if st == _lib.STATUS_OK:
            continue
        gen.close()
        if st == _lib.STATUS_CANCELLED:
            return
        raise error(st, "sending a stream item")
    st = lib.dime_stream_end(request)
    if st not in (_lib.STATUS_OK, _lib.STATUS_CANCELLED):
        raise DimeConnectionError(f"cannot end the stream: {error(st).message}", st)


def _send(send, stopping, *args):
    """Calls ``send(*args, timeout)`` until it stops timing out (the window
    is full meanwhile) or the server stops (then ``CANCELLED``)."""
    while True:
        st = send(*args, _SLICE_MS)
        if st != _lib.STATUS_TIMEOUT:
            return st
        if stopping.is_set():
            return _lib.STATUS_CANCELLED
