"""The lean path: small values encoded to and decoded from dimeb bytes in
Python (docs/protocol.md §4), so that sending one costs one library call
(``dime_send_encoded``) and receiving one a few, instead of one call per
element of the value through ``_convert``.

Only values the lean path is sure about take it: ``encode`` returns None,
and ``decode`` raises ``NotLean``, for anything else (an array larger than
``LEAN_BYTES``, whose zero-copy handling ``_convert`` does better; a type
the type table refuses; an int past uint64; a str that is not valid
Unicode; deep nesting; a map key Python cannot hash), and the caller then
takes the ``_convert`` path, which gives the same result or raises its
own error with the value's position. So both paths agree by construction
on everything but the bytes and objects they build, and
``tests/test_lean.py`` checks those agree too.

``decode`` is only given bytes the library has checked to be one
well-formed dimeb value (``dime_sync_encoded``).
"""

import collections.abc
import struct

import numpy as np

from . import _lib
from ._convert import CLASS_OF_DTYPE, DTYPE_OF_CLASS

#: Arrays up to this many bytes are encoded here; larger ones are lent to
#: the library by pointer. Payloads up to this size are decoded here;
#: larger ones by the library, whose matrices numpy then wraps without a
#: copy (``LibBuffer``).
LEAN_BYTES = 64 << 10

#: Deeper values are left to the library, which checks the format's limit.
MAX_DEPTH = 64

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1


class NotLean(Exception):
    """The value is not for the lean path: use ``_convert``."""


# ------------------------------------------------------------------ encoding

_TAG_BYTE = [bytes([t]) for t in range(256)]
_NULL, _TRUE, _FALSE = b"\x00", b"\x01", b"\x02"
_double = struct.Struct(">Bd").pack
_int64 = struct.Struct(">Bq").pack
_uint64 = struct.Struct(">BQ").pack
_complex = struct.Struct(">Bdd").pack
_count = struct.Struct(">BI").pack          # tag + u32 (string, list, map)
_rank = struct.Struct(">BB").pack           # matrix tag + rank
_DIMS = [struct.Struct(f">{r}I").pack for r in range(8)]

#: numpy scalar type -> packer of its scalar tag and body
_SCALAR = {
    np.int8: struct.Struct(">Bb").pack, np.int16: struct.Struct(">Bh").pack,
    np.int32: struct.Struct(">Bi").pack, np.int64: _int64,
    np.uint8: struct.Struct(">BB").pack, np.uint16: struct.Struct(">BH").pack,
    np.uint32: struct.Struct(">BI").pack, np.uint64: _uint64,
    np.float32: struct.Struct(">Bf").pack, np.float64: _double,
}
_SCALAR_TAG = {
    np.int8: _lib.KIND_INT8, np.int16: _lib.KIND_INT16, np.int32: _lib.KIND_INT32,
    np.int64: _lib.KIND_INT64, np.uint8: _lib.KIND_UINT8, np.uint16: _lib.KIND_UINT16,
    np.uint32: _lib.KIND_UINT32, np.uint64: _lib.KIND_UINT64,
    np.float32: _lib.KIND_SINGLE, np.float64: _lib.KIND_DOUBLE,
}
_complex64 = struct.Struct(">Bff").pack

#: numpy type number -> (matrix tag, big-endian element dtype), filled on
#: first use (the number names the element type whatever its byte order).
_MATRIX = {}


def _matrix_kind(dt):
    """(matrix tag, big-endian element dtype) of arrays of dtype ``dt``;
    ``NotLean`` for a dtype the type table has no class for."""
    kind = _MATRIX.get(dt.num)
    if kind is None:
        cls = CLASS_OF_DTYPE.get((dt.kind, dt.itemsize))
        if cls is None or dt.fields is not None or dt.subdtype is not None:
            raise NotLean
        # Complex elements swap each of their two floats, as dimeb wants.
        kind = (0x10 | cls, DTYPE_OF_CLASS[cls].newbyteorder(">"))
        _MATRIX[dt.num] = kind
    return kind


def _encode_matrix(a, out):
    ndim = a.ndim
    if a.nbytes > LEAN_BYTES or ndim >= len(_DIMS):
        raise NotLean
    tag, big = _matrix_kind(a.dtype)
    shape = a.shape
    # Small arrays have small dimensions, except empty ones.
    if not a.size and any(d > 0xFFFFFFFF for d in shape):
        raise NotLean
    out.append(_rank(tag, ndim))
    out.append(_DIMS[ndim](*shape))
    if tag == 0x1F:
        # A bool view of other bytes may hold 2..255: sent as 0/1.
        a = a.view(np.uint8)
        if a.size and a.max() > 1:
            a = np.not_equal(a, 0).view(np.uint8)
    else:
        a = a.astype(big, copy=False)
    # Elements column-major (the same as row-major below two dimensions).
    out.append(a.tobytes() if ndim < 2 else a.tobytes(order="F"))


def _encode_numpy_scalar(x, out):
    t = type(x)
    pack = _SCALAR.get(t)
    if pack is not None:
        out.append(pack(_SCALAR_TAG[t], x.item()))
    elif t is np.bool_:
        out.append(_TRUE if x else _FALSE)
    elif t is np.complex64:
        out.append(_complex64(_lib.KIND_COMPLEX_SINGLE, x.real.item(), x.imag.item()))
    elif t is np.complex128:
        out.append(_complex(_lib.KIND_COMPLEX_DOUBLE, x.real.item(), x.imag.item()))
    else:
        # Platform aliases (np.intc, np.longlong ...) resolve through their dtype.
        dt = x.dtype
        cls = CLASS_OF_DTYPE.get((dt.kind, dt.itemsize))
        if cls is None or cls == _lib.CLASS_LOGICAL:
            raise NotLean
        _encode_numpy_scalar(x.astype(DTYPE_OF_CLASS[cls]), out)


#: Encodings of the str keys of dicts: programs send the same few keys
#: over and over. Bounded: past the bound, keys are encoded each time.
_KEYS = {}
_KEYS_MAX = 4096


def _key_bytes(k):
    b = k.encode("utf-8")           # UnicodeEncodeError: not lean
    b = _count(0x20, len(b)) + b
    if len(_KEYS) < _KEYS_MAX:
        _KEYS[k] = b
    return b


def _encode(x, out, depth):
    """Appends the encoding of ``x`` to ``out``. Exact types first, most
    common first (none of them is another's subclass, so their order does
    not matter); then the checks of ``_convert.to_value``, in its order."""
    t = type(x)
    if t is float:
        out.append(_double(0x0C, x))
    elif t is int:
        if INT64_MIN <= x <= INT64_MAX:
            out.append(_int64(0x06, x))
        elif INT64_MAX < x <= UINT64_MAX:
            out.append(_uint64(0x0A, x))
        else:
            raise NotLean
    elif t is np.ndarray:
        _encode_matrix(x, out)
    elif t is str:
        b = x.encode("utf-8")           # UnicodeEncodeError: not lean
        out.append(_count(0x20, len(b)))
        out.append(b)
    elif t is dict:
        if depth >= MAX_DEPTH:
            raise NotLean
        out.append(_count(0x22, len(x)))
        for k, v in x.items():
            if type(k) is str:
                out.append(_KEYS.get(k) or _key_bytes(k))
            else:
                _encode(k, out, depth + 1)
            _encode(v, out, depth + 1)
    elif t is list or t is tuple:
        if depth >= MAX_DEPTH:
            raise NotLean
        out.append(_count(0x21, len(x)))
        for v in x:
            _encode(v, out, depth + 1)
    elif t is bool or t is np.bool_:
        out.append(_TRUE if x else _FALSE)
    elif x is None:
        out.append(_NULL)
    elif isinstance(x, np.generic):
        _encode_numpy_scalar(x, out)
    else:
        _encode_other(x, out, depth)


def _encode_other(x, out, depth):
    """Subclasses and abstract types, as ``to_value`` orders them."""
    if isinstance(x, int):
        _encode(int(x), out, depth)
    elif isinstance(x, float):
        out.append(_double(0x0C, float(x)))
    elif isinstance(x, complex):
        out.append(_complex(0x0E, x.real, x.imag))
    elif isinstance(x, str):
        _encode(str(x), out, depth)
    elif isinstance(x, np.ndarray):
        _encode_matrix(np.asarray(x), out)
    elif isinstance(x, collections.abc.Mapping):
        if depth >= MAX_DEPTH:
            raise NotLean
        items = list(x.items())
        out.append(_count(0x22, len(items)))
        for k, v in items:
            _encode(k, out, depth + 1)
            _encode(v, out, depth + 1)
    elif isinstance(x, collections.abc.Sequence) and not isinstance(x, (bytes, bytearray, memoryview)):
        if depth >= MAX_DEPTH:
            raise NotLean
        items = list(x)
        out.append(_count(0x21, len(items)))
        for v in items:
            _encode(v, out, depth + 1)
    else:
        raise NotLean


def encode(x):
    """The dimeb bytes of ``x``, or None if ``x`` is not for the lean path
    (``_convert.to_value`` then sends it, or raises its error)."""
    out = []
    try:
        _encode(x, out, 0)
    except (NotLean, UnicodeEncodeError, OverflowError, RecursionError):
        return None
    return b"".join(out)


# ------------------------------------------------------------------ decoding

_s = {f: struct.Struct(">" + f).unpack_from for f in "bhiqBHIQfd"}
_u32 = _s["I"]
_ff = struct.Struct(">ff").unpack_from
_dd = struct.Struct(">dd").unpack_from


def _scalar(fmt, size, wrap=None):
    unpack = _s[fmt]
    if wrap is None:
        return lambda buf, pos: (unpack(buf, pos)[0], pos + size)
    return lambda buf, pos: (wrap(unpack(buf, pos)[0]), pos + size)


def _complex_single(buf, pos):
    re, im = _ff(buf, pos)
    return np.complex64(complex(re, im)), pos + 8


def _complex_double(buf, pos):
    re, im = _dd(buf, pos)
    return complex(re, im), pos + 16


def _string(buf, pos):
    n = _u32(buf, pos)[0]
    pos += 4
    return str(buf[pos:pos + n], "utf-8"), pos + n


def _list(buf, pos):
    n = _u32(buf, pos)[0]
    pos += 4
    out = []
    for _ in range(n):
        v, pos = _READ[buf[pos]](buf, pos + 1)
        out.append(v)
    return out, pos


def _map(buf, pos):
    n = _u32(buf, pos)[0]
    pos += 4
    out = {}
    for _ in range(n):
        tag = buf[pos]
        k, pos = _READ[tag](buf, pos + 1)
        if tag != 0x20:
            k = _key(k)
        v, pos = _READ[buf[pos]](buf, pos + 1)
        out[k] = v
    return out, pos


def _key(k):
    """A decoded non-string map key as a dict key: lists become tuples (as
    ``_convert`` does); anything unhashable is left to ``_convert``, which
    raises the error naming its position."""
    if type(k) is list:
        k = _freeze(k)
    try:
        hash(k)
    except TypeError:
        raise NotLean from None
    return k


def _freeze(x):
    return tuple(_freeze(i) if type(i) is list else i for i in x)


#: big-endian element dtype of each matrix tag
_ELEMENT = {0x10 | cls: (np.dtype(np.uint8) if cls == _lib.CLASS_LOGICAL
                         else dt.newbyteorder(">"), dt)
            for cls, dt in DTYPE_OF_CLASS.items()}


def _matrix(tag):
    big, native = _ELEMENT[tag]
    size = big.itemsize

    def read(buf, pos):
        rank = buf[pos]
        dims = struct.unpack_from(f">{rank}I", buf, pos + 1)
        pos += 1 + 4 * rank
        count = 1
        for d in dims:
            count *= d
        flat = np.frombuffer(buf, big, count, pos).astype(native)
        # The original client's rule: a rank-2 matrix with a dimension of 1 is 1-D.
        if rank == 2 and (dims[0] == 1 or dims[1] == 1):
            dims = (dims[1],) if dims[0] == 1 else (dims[0],)
        return flat.reshape(dims, order="F"), pos + count * size
    return read


def _unknown(buf, pos):
    raise NotLean       # the library checked the bytes: cannot happen


_READ = [_unknown] * 256
_READ[0x00] = lambda buf, pos: (None, pos)
_READ[0x01] = lambda buf, pos: (True, pos)
_READ[0x02] = lambda buf, pos: (False, pos)
_READ[0x03] = _scalar("b", 1, np.int8)
_READ[0x04] = _scalar("h", 2, np.int16)
_READ[0x05] = _scalar("i", 4, np.int32)
_READ[0x06] = _scalar("q", 8)
_READ[0x07] = _scalar("B", 1, np.uint8)
_READ[0x08] = _scalar("H", 2, np.uint16)
_READ[0x09] = _scalar("I", 4, np.uint32)
_READ[0x0A] = _scalar("Q", 8, np.uint64)
_READ[0x0B] = _scalar("f", 4, np.float32)
_READ[0x0C] = _scalar("d", 8)
_READ[0x0D] = _complex_single
_READ[0x0E] = _complex_double
for _tag in _ELEMENT:
    _READ[_tag] = _matrix(_tag)
_READ[0x20] = _string
_READ[0x21] = _list
_READ[0x22] = _map


def decode(buf):
    """The Python value of ``buf``, one well-formed dimeb value (checked by
    the library). ``NotLean`` if ``_convert`` must build it instead."""
    try:
        v, _ = _READ[buf[0]](buf, 1)
    except (RecursionError, ValueError, MemoryError):
        # Nesting past Python's stack, a shape numpy cannot hold: the
        # library path decides (and names the variable if it fails).
        raise NotLean from None
    return v
