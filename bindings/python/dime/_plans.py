"""Encoding plans: a dict sent again and again with the same keys and the
same kinds of values (a simulator's time step: a few numbers and arrays of
a fixed shape) is encoded by a plan made from the first one. The bytes
that stay the same (the map header, the keys, the tags, the arrays'
headers and padding) are joined once; each later dict only packs its
numbers and copies out its arrays' elements in between.

A plan writes byte for byte what ``_dimeb.encode`` writes: it is made
from the chunks ``_dimeb`` itself produced for the first dict, and checked
against them before it is kept. A dict whose values no longer fit its plan
(another type, an array of another shape, dtype or memory order, an int
past int64, a str of another length ahead of an array in the
``dimeb_layout`` encoding, whose padding depends on what comes before) is
encoded by ``_dimeb.encode`` and gets a new plan; a set of keys whose dicts
keep missing gets none. Values a plan never covers (lists, nested dicts,
bool arrays, arrays in a foreign byte order, anything the lean path leaves
to the library) leave the whole dict to ``_dimeb.encode``.
"""

import struct

import numpy as np

from . import _dimeb

__all__ = ["encode"]

#: (layout, key, key, ...) -> _Plan, or None for a set of keys that is
#: not planned. Bounded; cleared when full.
_PLANS = {}
_PLANS_MAX = 256

#: Plans a set of keys may wear out (each by a dict that did not fit)
#: before it is left to ``_dimeb.encode`` for good.
_STRIKES = 4

_INT64_MIN, _INT64_MAX = _dimeb.INT64_MIN, _dimeb.INT64_MAX
_FLOAT_TAG = b"\x0c"
_INT_TAG = b"\x06"
_pack_double = struct.Struct(">d").pack
_pack_int64 = struct.Struct(">q").pack

# Slot kinds.
_FLOAT, _INT, _ARRAY, _OTHER = range(4)


def encode(x, layout=False):
    """``_dimeb.encode(x, layout)``, through a plan when ``x`` is a dict."""
    if type(x) is not dict or not x:
        return _dimeb.encode(x, layout)
    key = (layout, *x)
    plan = _PLANS.get(key, False)
    if plan:
        data = plan.run(x)
        if data is not None:
            return data
        strikes = plan.strikes + 1
    elif plan is None:
        return _dimeb.encode(x, layout)
    else:
        strikes = 0
    data, plan = _make(x, layout, strikes)
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[key] = plan
    return data


class _Plan:
    """A compiled plan: ``run(d)`` is the encoding of the dict ``d``, whose
    keys compare equal to the plan's, or None if a value does not fit (or
    a key is not a plain str: a str subclass may encode otherwise)."""

    __slots__ = ("run", "strikes")

    def __init__(self, run, strikes):
        self.run = run
        self.strikes = strikes


def _make(x, layout, strikes):
    """(``_dimeb.encode(x, layout)``, a plan for dicts like ``x`` or None)."""
    # What _dimeb._encode does for a dict, value by value, so that the
    # chunks of each value are known.
    matrix = _dimeb._layout_encoder() if layout else _dimeb._encode_matrix
    out = [_dimeb._count(0x22, len(x))]
    spans = []
    try:
        for k, v in x.items():
            if type(k) is not str:
                return _dimeb.encode(x, layout), None
            out.append(_dimeb._KEYS.get(k) or _dimeb._key_bytes(k))
            start = len(out)
            _dimeb._encode(v, out, 1, matrix)
            spans.append((start, len(out), v))
    except (_dimeb.NotLean, UnicodeEncodeError, OverflowError, RecursionError):
        return None, None
    data = b"".join(out)
    if strikes >= _STRIKES:
        return data, None
    plan = _plan(out, spans, layout, strikes)
    # Made from _dimeb's own chunks; checked all the same.
    if plan is not None and plan.run(x) != data:
        plan = None
    return data, plan


def _plan(out, spans, layout, strikes):
    """The plan of a dict encoded as the chunks ``out``, its values' chunks
    at ``spans`` (start, end, value); None if a value is of a kind plans
    do not cover."""
    slots = []
    pending = []                # constant chunks not yet in a slot
    pos = 0
    others = []                 # indexes of _OTHER slots, in order
    for start, end, v in spans:
        pending.extend(out[pos:start])
        chunks = out[start:end]
        t = type(v)
        if t is float:
            pending.append(_FLOAT_TAG)
            slots.append((b"".join(pending), _FLOAT, None))
        elif t is int:
            if not _INT64_MIN <= v <= _INT64_MAX:
                return None
            pending.append(_INT_TAG)
            slots.append((b"".join(pending), _INT, None))
        elif t is np.ndarray:
            arg = _array_slot(v, layout)
            if arg is None:
                return None
            pending.extend(chunks[:-1])
            slots.append((b"".join(pending), _ARRAY, arg))
        elif t is str or t is bool or v is None or t is complex or isinstance(v, np.generic):
            # Scalars of exactly this type: no matrix inside, so encoded
            # alike in either matrix encoding.
            slots.append((b"".join(pending), _OTHER, (t, len(b"".join(chunks)))))
            others.append(len(slots) - 1)
        else:
            return None
        pending = []
        pos = end
    pending.extend(out[pos:])
    # A value of another length moves what follows it: only the padding
    # of a later layout matrix depends on that.
    last_array = max((i for i, s in enumerate(slots) if s[1] == _ARRAY), default=-1)
    for i in others:
        if not (layout and i < last_array):
            before, kind, (t, _) = slots[i]
            slots[i] = (before, kind, (t, None))
    return _Plan(_compile(slots, b"".join(pending)), strikes)


def _array_slot(a, layout):
    """(dtype, shape, (C-contiguous, F-contiguous) or None, memory order
    of the elements' bytes or None for a 1-D array, big-endian dtype for
    the classic encoding or None) of an array slot, the bytes made as
    ``_dimeb`` makes them; None for an array plans leave to ``_dimeb``
    (logical elements, whose bytes it cleans; a foreign byte order, which
    it converts)."""
    dt = a.dtype
    if dt.kind == "b" or not dt.isnative or dt.fields is not None or dt.subdtype is not None:
        return None
    order = mem = None
    if a.ndim >= 2:
        f = a.flags
        order = (f.c_contiguous, f.f_contiguous)
        # Layout: a C-contiguous array row-major; classic: column-major.
        mem = "C" if layout and order[0] and not order[1] else "F"
    big = None if layout else _dimeb._matrix_kind(dt)[1]
    return dt, a.shape, order, mem, big


def _compile(slots, tail):
    """The function that runs a plan: one expression per value, made once
    per plan, so that a dict costs its checks, its packs and one join.
    Only names of this module go into the source; the plan's bytes,
    shapes and dtypes are bound by name."""
    env = {"ndarray": np.ndarray, "MIN": _INT64_MIN, "MAX": _INT64_MAX, "join": b"".join,
           "pd": _pack_double, "pq": _pack_int64, "enc": _dimeb.encode, "TAIL": tail}
    checks, steps, parts = [], [], []
    for i, (before, kind, arg) in enumerate(slots):
        v = f"v{i}"
        env[f"C{i}"] = before
        parts.append(f"C{i}")
        if kind == _FLOAT:
            checks.append(f"type({v}) is not float")
            parts.append(f"pd({v})")
        elif kind == _INT:
            checks.append(f"type({v}) is not int or not MIN <= {v} <= MAX")
            parts.append(f"pq({v})")
        elif kind == _ARRAY:
            dtype, shape, order, mem, big = arg
            env[f"S{i}"], env[f"D{i}"] = shape, dtype
            checks.append(f"type({v}) is not ndarray or {v}.shape != S{i} or {v}.dtype != D{i}")
            if order is not None:
                env[f"O{i}"] = order
                checks.append(f"({v}.flags.c_contiguous, {v}.flags.f_contiguous) != O{i}")
            elements = v
            if big is not None:
                env[f"G{i}"] = big
                elements = f"{v}.astype(G{i}, copy=False)"
            parts.append(f"{elements}.tobytes()" if mem is None
                         else f"{elements}.tobytes(order={mem!r})")
        else:
            t, size = arg
            env[f"T{i}"] = t
            checks.append(f"type({v}) is not T{i}")
            steps.append(f"    e{i} = enc({v})")
            if size is None:
                steps.append(f"    if e{i} is None: return None")
            else:
                env[f"N{i}"] = size
                steps.append(f"    if e{i} is None or len(e{i}) != N{i}: return None")
            parts.append(f"e{i}")
    parts.append("TAIL")
    n = len(slots)
    keys = ", ".join(f"k{i}" for i in range(n))
    names = ", ".join(f"v{i}" for i in range(n))
    checks[:0] = [f"type(k{i}) is not str" for i in range(n)]
    lines = ["def run(d):", f"    {keys}, = d", f"    {names}, = d.values()",
             "    if (" + "\n        or ".join(checks) + "):",
             "        return None"]
    lines.extend(steps)
    lines.append("    return join((" + ", ".join(parts) + "))")
    exec("\n".join(lines), env)
    return env["run"]
