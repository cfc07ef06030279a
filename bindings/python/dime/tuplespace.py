"""``dime.TupleSpace``: Linda tuple spaces on the dime server (lindypy's API,
across processes, machines and languages, with real timeouts).

    import dime
    with dime.TupleSpace() as ts:
        ts.out(("job", 1, numpy.arange(3.0)))
        tag, n, data = ts.in_(("job", int, numpy.ndarray), timeout=5)

Patterns are tuples with one field per tuple field (arity must match):

=================================  ============================================
pattern field                      matches
=================================  ============================================
``object``                         anything
``type(None)``, ``bool``, ``str``  null, a bool, a string
``int``, ``float``, ``complex``    a scalar of any integer class / single or
                                   double / complex single or double
``list`` (or ``tuple``), ``dict``  a list, a map
``np.int8`` ... ``np.uint64``,     a scalar of exactly that class
``np.float32``, ``np.float64``,    (``np.bool_``: a bool)
``np.complex64``, ``np.complex128``
``np.ndarray``                     any matrix (arrays are matrices, scalars
                                   never are)
``dime.Matrix(dtype, rank=None)``  a matrix of that numpy dtype (None: any
                                   class) and rank (None: any)
``np.dtype("float32")``            a matrix of that dtype (same as
                                   ``Matrix(np.float32)``)
``dime.Range(lo, hi)``             a real number ``lo <= v <= hi`` (either
                                   bound None: open; integers compared exactly)
anything else                      exactly that value: same type and bits
                                   (``1`` is not ``1.0``; arrays by dtype,
                                   shape and content)
=================================  ============================================

A numpy scalar type is a *scalar* wildcard; to match arrays use
``np.ndarray``, ``dime.Matrix`` or a ``np.dtype`` instance. Python ``int``
values are sent as int64 and ``float`` as double, so ``np.int64`` and
``np.float64`` are the narrow wildcards for them.

Tuples come back as Python tuples of received values (``int``, ``float``,
numpy scalars of other classes, ``list``, ``dict``, ``ndarray``...).
Semantics of the server side: ``docs/protocol-extensions.md``.
"""

import math
import traceback
from ctypes import byref, c_size_t, c_void_p

import numpy as np

from . import _lib
from ._convert import CLASS_OF_DTYPE, from_value, to_value
from ._errors import check, error
from ._lib import lib
from ._remote import Remote, timeout_ms
from ._wait import seconds, sliced
from .watch import Watch

__all__ = ["TupleSpace", "Range", "Matrix", "compile_pattern"]


class Range:
    """Pattern field: a real numeric scalar (any integer class, single or
    double; not complex, not an array) with ``lo <= v <= hi``; ``None``
    leaves that side open. NaN never matches."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo=None, hi=None):
        for b in (lo, hi):
            if b is not None and (isinstance(b, (bool, complex)) or not isinstance(b, (int, float, np.number))):
                raise TypeError(f"Range bounds must be real numbers or None, not {type(b).__name__}")
            if b is not None and math.isnan(float(b)):
                raise ValueError("a Range bound cannot be NaN")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"empty Range: lo {lo!r} > hi {hi!r}")
        self.lo = lo
        self.hi = hi

    def __repr__(self):
        return f"dime.Range({self.lo!r}, {self.hi!r})"

    def __eq__(self, other):
        return type(other) is Range and (self.lo, self.hi) == (other.lo, other.hi)

    def __hash__(self):
        return hash((Range, self.lo, self.hi))

    def __reduce__(self):
        return (Range, (self.lo, self.hi))


class Matrix:
    """Pattern field: a matrix (numpy array) of element type ``dtype`` (a
    numpy type or dtype, e.g. ``np.float64``, ``"int16"``, ``bool``;
    ``None``: any) and ``rank`` (``arr.ndim`` as sent; ``None``: any).
    Note that a received rank-2 matrix with a dimension of 1 comes back
    1-D, but matches as rank 2."""

    __slots__ = ("dtype", "rank", "cls")

    def __init__(self, dtype=None, rank=None):
        if dtype is None:
            self.dtype, self.cls = None, _lib.CLASS_ANY
        else:
            dt = np.dtype(dtype)
            cls = CLASS_OF_DTYPE.get((dt.kind, dt.itemsize))
            if cls is None:
                raise TypeError(f"no dime matrix class for dtype {dt}")
            self.dtype, self.cls = dt, cls
        if rank is not None:
            if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank <= 255:
                raise ValueError(f"rank must be None or an int in 0..255, not {rank!r}")
        self.rank = rank

    def __repr__(self):
        dt = None if self.dtype is None else self.dtype.name
        return f"dime.Matrix({dt!r}, rank={self.rank!r})"

    def __eq__(self, other):
        return type(other) is Matrix and (self.cls, self.rank) == (other.cls, other.rank)

    def __hash__(self):
        return hash((Matrix, self.cls, self.rank))

    def __reduce__(self):
        return (Matrix, (self.dtype, self.rank))


#: Python / numpy type used as a pattern field -> dime_pattern_add_type name.
TYPE_NAMES = {
    type(None): "null", bool: "bool", int: "int", float: "float", complex: "complex",
    str: "string", list: "list", tuple: "list", dict: "map",
    np.bool_: "bool",
    np.int8: "int8", np.int16: "int16", np.int32: "int32", np.int64: "int64",
    np.uint8: "uint8", np.uint16: "uint16", np.uint32: "uint32", np.uint64: "uint64",
    np.float32: "single", np.float64: "double",
    np.complex64: "complex single", np.complex128: "complex double",
}

_NP_SCALAR_NAMES = {
    ("i", 1): "int8", ("i", 2): "int16", ("i", 4): "int32", ("i", 8): "int64",
    ("u", 1): "uint8", ("u", 2): "uint16", ("u", 4): "uint32", ("u", 8): "uint64",
    ("f", 4): "single", ("f", 8): "double", ("c", 8): "complex single", ("c", 16): "complex double",
    ("b", 1): "bool",
}


def compile_pattern(pattern):
    """The fields of ``pattern`` as libdime sees them: a list of
    ``("any",)``, ``("type", name)``, ``("matrix", dime_class, rank)``
    (``rank`` -1: any), ``("range", lo, hi)`` or ``("value", v)``.
    ``TypeError`` for a pattern that is not a tuple/list or a type with no
    dime meaning."""
    if not isinstance(pattern, (tuple, list)):
        raise TypeError(f"a pattern is a tuple of fields, not {type(pattern).__name__}")
    return [_field(f, i) for i, f in enumerate(pattern)]


def _field(f, i):
    if f is object:
        return ("any",)
    if isinstance(f, Range):
        return ("range", f.lo, f.hi)
    if isinstance(f, Matrix):
        return ("matrix", f.cls, -1 if f.rank is None else f.rank)
    if isinstance(f, np.dtype):
        m = Matrix(f)
        return ("matrix", m.cls, -1)
    if isinstance(f, type):
        if f is np.ndarray:
            return ("matrix", _lib.CLASS_ANY, -1)
        name = TYPE_NAMES.get(f)
        if name is None and issubclass(f, np.generic):
            # platform aliases (np.intc, np.longlong ...)
            dt = np.dtype(f)
            name = _NP_SCALAR_NAMES.get((dt.kind, dt.itemsize))
        if name is None:
            raise TypeError(f"pattern field {i}: {f.__module__}.{f.__qualname__} is not a dime "
                            f"type (use object, bool, int, float, complex, str, list, dict, "
                            f"type(None), a numpy scalar type, np.ndarray, dime.Matrix or dime.Range)")
        return ("type", name)
    return ("value", f)


class _Pattern:
    """A dime_pattern built from a Python pattern, freed on exit."""

    def __init__(self, pattern):
        self.ptr = lib.dime_pattern_new()
        try:
            for i, spec in enumerate(compile_pattern(pattern)):
                self._add(spec, i)
        except BaseException:
            lib.dime_pattern_free(self.ptr)
            raise

    def _add(self, spec, i):
        p = self.ptr
        what = f"pattern field {i}"
        op = spec[0]
        if op == "any":
            check(lib.dime_pattern_add_any(p), what)
        elif op == "type":
            check(lib.dime_pattern_add_type(p, spec[1].encode()), what)
        elif op == "matrix":
            check(lib.dime_pattern_add_matrix(p, spec[1], spec[2]), what)
        elif op == "range":
            lo, hi = spec[1], spec[2]
            check(lib.dime_pattern_add_range(p, 0.0 if lo is None else float(lo),
                                             0.0 if hi is None else float(hi),
                                             lo is not None, hi is not None), what)
            self._check_exact(lo, hi, i)
        else:
            keep = []
            v = to_value(spec[1], keep, what)
            try:
                check(lib.dime_pattern_add_value(p, v), what)     # copied
            finally:
                lib.dime_value_free(v)

    @staticmethod
    def _check_exact(lo, hi, i):
        for b in (lo, hi):
            if isinstance(b, (int, np.integer)) and float(b) != b:
                raise ValueError(f"pattern field {i}: Range bound {b!r} is not exact as a double "
                                 f"(bounds travel as doubles)")

    def __enter__(self):
        return self.ptr

    def __exit__(self, *exc):
        lib.dime_pattern_free(self.ptr)
        self.ptr = None
        return False


def _tuple(out):
    try:
        return tuple(from_value(out.value, True))
    finally:
        lib.dime_value_free(out.value)


class TupleSpace(Remote):
    """A named Linda tuple space on a dime server (``name=""``: the default).

    ``address_or_client``: a ``DimeClient`` (its connection is reused) or
    an address (``None``: ``$DIME_ADDRESS``, else ``unix:/tmp/dime.sock``).
    Patterns: see the module documentation. Blocking calls take a
    ``timeout`` in seconds (``None``: forever) and raise
    ``DimeTimeoutError`` (a ``TimeoutError``) when it runs out; a timed-out
    ``in_`` never takes a tuple afterwards.

    As a context manager it closes on exit, after stopping (terminating
    and joining) the workers started by ``eval``.
    """

    _kind = "tuple space"

    def __init__(self, address_or_client=None, name=""):
        self.workers = []
        super().__init__(address_or_client, name)

    def out(self, tup):
        """Puts a tuple (or list) into the space. Waiting ``rd`` calls that
        match each get a copy, then the longest-waiting matching ``in_``
        takes it; if none does, it is stored."""
        if not isinstance(tup, (tuple, list)):
            raise TypeError(f"out() takes a tuple, not {type(tup).__name__}")
        keep = []
        v = to_value(tup, keep, "tuple")
        try:
            check(self._call(lib.dime_out, v))
        finally:
            lib.dime_value_free(v)

    def _blocking(self, fn, pattern, timeout, what, fifo):
        # fifo: one request for the whole timeout, since a timed-out request
        # leaves the server's FIFO and slices would lose its place in it.
        ms = timeout_ms(timeout) if fifo else None
        t = None if fifo else seconds(timeout)
        out = c_void_p()
        with _Pattern(pattern) as p:
            if fifo:
                st = self._call(fn, p, ms, byref(out))
            else:
                st = sliced(lambda slice_ms: self._call(fn, p, slice_ms, byref(out)), t)
        if st:
            raise error(st, f"{what}{tuple(pattern)!r}")
        return _tuple(out)

    def in_(self, pattern, timeout=None):
        """Removes and returns the oldest tuple matching ``pattern``,
        waiting for one if none is stored (waiters are served in FIFO
        order). To keep this waiter's place in that order the wait is one
        request, which Ctrl-C does not interrupt until it ends (see
        ``Share.lock``); for a wait you can interrupt, loop over
        ``in_(pattern, timeout=...)`` yourself."""
        return self._blocking(lib.dime_in, pattern, timeout, "in_", fifo=True)

    take = in_

    def rd(self, pattern, timeout=None):
        """Returns a copy of the oldest tuple matching ``pattern``, waiting
        for one if none is stored; the tuple stays in the space. Waits in
        slices that Ctrl-C interrupts (see ``dime._wait``; a tuple that is
        put and taken again between two slices is missed)."""
        return self._blocking(lib.dime_rd, pattern, timeout, "rd", fifo=False)

    read = rd

    def _now(self, fn, pattern):
        out = c_void_p()
        with _Pattern(pattern) as p:
            st = self._call(fn, p, byref(out))
        if st == _lib.STATUS_NOT_FOUND:
            return None
        check(st)
        return _tuple(out)

    def inp(self, pattern):
        """Like ``in_`` but never waits: the tuple, or None."""
        return self._now(lib.dime_inp, pattern)

    def rdp(self, pattern):
        """Like ``rd`` but never waits: a copy of the tuple, or None."""
        return self._now(lib.dime_rdp, pattern)

    def count(self, pattern):
        """How many stored tuples match ``pattern``."""
        n = c_size_t()
        with _Pattern(pattern) as p:
            check(self._call(lib.dime_count, p, byref(n)))
        return n.value

    # -- change events ---------------------------------------------------------------
    def watch(self, resume=None, callback=None):
        """A ``dime.Watch`` of this space: an ``Event`` of kind ``"out"``
        for every tuple put in and ``"in"`` for every tuple taken, its
        ``value`` the tuple. Iterate over it, or give ``callback``; see
        ``dime.watch`` (and ``Share.watch`` for ``resume``)."""
        from .share import _position_arg
        client = self._client

        def opener(out):
            with client._lock:
                return lib.dime_watch_space(client._handle(), self._name_c,
                                            _position_arg(resume), out)

        return Watch(opener, as_tuple=True, callback=callback)

    # -- workers -------------------------------------------------------------------
    def eval(self, fn, *args, context=None):
        """Starts a worker process that calls ``fn(space, *args)`` with its
        own connected ``TupleSpace`` of this name on this server (Linda's
        eval). ``fn`` and ``args`` must be picklable (top-level functions).
        If ``fn`` raises, the worker puts
        ``("error", type_name, message, traceback_text)`` into the space.
        Returns the ``multiprocessing.Process``; it is also in
        ``self.workers``, and ``shutdown()`` stops it."""
        p = self._start_process(_worker_main, fn, args, context, daemon=True)
        self.workers.append(p)
        return p

    def shutdown(self, timeout=5.0):
        """Stops every worker started by ``eval``: terminate, then join
        (kill if one does not stop within ``timeout`` seconds)."""
        workers, self.workers = self.workers, []
        for p in workers:
            if p.is_alive():
                p.terminate()
        for p in workers:
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join()

    def __exit__(self, *exc):
        try:
            self.shutdown()
        finally:
            self.close()
        return False


def _worker_main(cls, address, name, fn, args):
    with cls(address, name) as space:
        try:
            fn(space, *args)
        except Exception as e:
            space.out(("error", type(e).__name__, str(e), traceback.format_exc()))
