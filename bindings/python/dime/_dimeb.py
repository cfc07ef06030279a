"""The lean path: small values encoded to and decoded from dimeb bytes in
Python (docs/protocol.md §4), so that sending one costs one library call
(``dime_send_encoded``, ``dime_call_encoded`` ...) and receiving one a few,
instead of one call per element of the value through ``_convert``.

Messaging (``client.py``), remote calls (``_future.py``, ``rpc.py``) and
streams (``stream.py``) all take it for small values.

Only values the lean path is sure about take it: ``encode`` returns None,
and ``decode`` raises ``NotLean``, for anything else (an array larger than
``LEAN_BYTES``, whose zero-copy handling ``_convert`` does better; a type
the type table refuses; an int past uint64; a str that is not valid
Unicode; deep nesting; a map key Python cannot hash), and the caller then
takes the ``_convert`` path, which gives the same result or raises its
own error with the value's position. So both paths agree by construction
on everything but the bytes and objects they build, and
``tests/test_lean.py`` and ``tests/test_rpc_codec.py`` check those agree
too.

Matrices: ``encode(x)`` writes DiME2's classic encoding (column-major,
big-endian), what every peer reads; ``encode(x, layout=True)`` the
``dimeb_layout`` encoding (docs/protocol-extensions.md), for a connection
that negotiated it: each array in its own order and this machine's byte
order, so a C-ordered array is not transposed -- byte for byte what the
library writes for the same value. ``decode`` reads both, giving ordinary
(writable, owned) numpy arrays: C-ordered when they travelled row-major,
Fortran-ordered otherwise, as ``_convert.from_value`` does.

``decode`` checks what it reads: bytes that are not exactly one valid
value raise ``DimeCodecError`` (the library checks the messages a sync
hands out, but remote-call payloads come straight from the peer).
"""

import collections.abc
import struct
import sys

import numpy as np

from . import _lib
from ._convert import CLASS_OF_DTYPE, DTYPE_OF_CLASS
from ._errors import DimeCodecError

__all__ = ["encode", "decode", "decode_span", "NotLean", "LEAN_BYTES", "SMALL", "MAX_DEPTH"]

#: Arrays up to this many bytes are encoded here; larger ones are lent to
#: the library by pointer. Payloads up to this size are decoded here;
#: larger ones by the library, whose matrices numpy then wraps without a
#: copy (``LibBuffer``).
LEAN_BYTES = 64 << 10
#: The same bound, under the name the remote-call code uses.
SMALL = LEAN_BYTES

#: Deeper values are left to the library, which checks the format's limit.
MAX_DEPTH = 64

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1


class NotLean(Exception):
    """The value is not for the lean path: use ``_convert``."""


# ------------------------------------------------------------------ encoding

_NULL, _TRUE, _FALSE = b"\x00", b"\x01", b"\x02"
_double = struct.Struct(">Bd").pack
_int64 = struct.Struct(">Bq").pack
_uint64 = struct.Struct(">BQ").pack
_complex = struct.Struct(">Bdd").pack
_count = struct.Struct(">BI").pack          # tag + u32 (string, list, map)
_rank = struct.Struct(">BB").pack           # matrix tag + rank
_layout_rank = struct.Struct(">BBB").pack   # layout matrix tag + flags + rank
_DIMS = [struct.Struct(f">{r}I").pack for r in range(8)]

#: numpy scalar type -> packer of its scalar tag and body
_SCALAR = {
    np.int8: struct.Struct(">Bb").pack, np.int16: struct.Struct(">Bh").pack,
    np.int32: struct.Struct(">Bi").pack, np.int64: _int64,
    np.uint8: struct.Struct(">BB").pack, np.uint16: struct.Struct(">BH").pack,
    np.uint32: struct.Struct(">BI").pack, np.uint64: _uint64,
    np.float64: _double,
}
_SCALAR_TAG = {
    np.int8: _lib.KIND_INT8, np.int16: _lib.KIND_INT16, np.int32: _lib.KIND_INT32,
    np.int64: _lib.KIND_INT64, np.uint8: _lib.KIND_UINT8, np.uint16: _lib.KIND_UINT16,
    np.uint32: _lib.KIND_UINT32, np.uint64: _lib.KIND_UINT64, np.float64: _lib.KIND_DOUBLE,
}
#: numpy scalars whose bits must not pass through a Python float (a
#: float32 NaN's payload would change): tag and big-endian dtype
_BITS = {
    np.float32: (bytes([_lib.KIND_SINGLE]), np.dtype(">f4")),
    np.complex64: (bytes([_lib.KIND_COMPLEX_SINGLE]), np.dtype(">c8")),
}

#: numpy type number -> (classic matrix tag, big-endian element dtype),
#: filled on first use (the number names the element type whatever its
#: byte order).
_MATRIX = {}

#: Layout flags byte (docs/protocol-extensions.md): row-major elements,
#: little-endian elements.
_ROW_MAJOR = 0x01
_LITTLE = 0x02 if sys.byteorder == "little" else 0x00
#: A layout matrix's tag is its classic tag plus this.
_LAYOUT_TAG = 0x30


def _matrix_kind(dt):
    """(classic matrix tag, big-endian element dtype) of arrays of dtype
    ``dt``; ``NotLean`` for a dtype the type table has no class for."""
    kind = _MATRIX.get(dt.num)
    if kind is None:
        cls = CLASS_OF_DTYPE.get((dt.kind, dt.itemsize))
        if cls is None or dt.fields is not None or dt.subdtype is not None:
            raise NotLean
        # Complex elements swap each of their two floats, as dimeb wants.
        kind = (0x10 | cls, DTYPE_OF_CLASS[cls].newbyteorder(">"))
        _MATRIX[dt.num] = kind
    return kind


def _matrix_head(a):
    """(classic tag, big-endian dtype, rank, shape) of the small array
    ``a``; ``NotLean`` for one the lean path leaves to the library."""
    ndim = a.ndim
    if a.nbytes > LEAN_BYTES or ndim >= len(_DIMS):
        raise NotLean
    tag, big = _matrix_kind(a.dtype)
    shape = a.shape
    # Small arrays have small dimensions, except empty ones.
    if not a.size and any(d > 0xFFFFFFFF for d in shape):
        raise NotLean
    return tag, big, ndim, shape


def _clean_logical(a):
    """A bool array whose bytes are all 0 or 1, as uint8: a bool view of
    other bytes may hold 2..255, sent as 1 (in the same memory order)."""
    a = a.view(np.uint8)
    if a.size and a.max() > 1:
        a = np.not_equal(a, 0).view(np.uint8)
    return a


def _encode_matrix(a, out):
    """The classic encoding: column-major, big-endian."""
    tag, big, ndim, shape = _matrix_head(a)
    out.append(_rank(tag, ndim))
    out.append(_DIMS[ndim](*shape))
    a = _clean_logical(a) if tag == 0x1F else a.astype(big, copy=False)
    # Elements column-major (the same as row-major below two dimensions).
    out.append(a.tobytes() if ndim < 2 else a.tobytes(order="F"))


#: pad count byte + that many zeros, by count
_PADS = [bytes([n]) + bytes(n) for n in range(64)]


def _layout_encoder():
    """An array encoder for one payload in the ``dimeb_layout`` encoding,
    as the library writes what ``_convert`` lends it: a Fortran-contiguous
    array column-major, a C-contiguous one row-major (not transposed),
    anything else copied to column-major; elements in this machine's byte
    order, aligned from the start of the payload as the library aligns
    them (it keeps count of the bytes before each matrix, each chunk
    summed once)."""
    counted = size = 0

    def matrix(a, out):
        nonlocal counted, size
        tag, _, ndim, shape = _matrix_head(a)
        if tag == 0x1F:
            a = _clean_logical(a)
        elif not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="), order="F")
        if ndim < 2:
            # Both orders at once (or copied to one): column-major.
            flags, body = _LITTLE, a.tobytes()
        else:
            f = a.flags
            row_major = f.c_contiguous and not f.f_contiguous
            flags = _LITTLE | _ROW_MAJOR if row_major else _LITTLE
            body = a.tobytes(order="C" if row_major else "F")
        out.append(_layout_rank(tag + _LAYOUT_TAG, flags, ndim))
        out.append(_DIMS[ndim](*shape))
        # (Joining the few small chunks since the last matrix costs less
        # than summing their lengths one by one.)
        size += len(b"".join(out[counted:]))
        n = len(body)
        # A cache line for large matrices, the element size for small ones.
        pad = _PADS[-(size + 1) % (64 if n >= 1024 else a.itemsize)]
        out.append(pad)
        out.append(body)
        counted = len(out)
        size += len(pad) + n

    return matrix


def _encode_numpy_scalar(x, out):
    t = type(x)
    pack = _SCALAR.get(t)
    if pack is not None:
        out.append(pack(_SCALAR_TAG[t], x.item()))
    elif t is np.bool_:
        out.append(_TRUE if x else _FALSE)
    elif t in _BITS:
        tag, big = _BITS[t]
        out.append(tag)
        out.append(np.asarray(x).astype(big).tobytes())
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


def _encode(x, out, depth, matrix):
    """Appends the encoding of ``x`` to ``out``, arrays with ``matrix``.
    Exact types first, most common first (none of them is another's
    subclass, so their order does not matter); then the checks of
    ``_convert.to_value``, in its order."""
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
        matrix(x, out)
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
                _encode(k, out, depth + 1, matrix)
            _encode(v, out, depth + 1, matrix)
    elif t is list or t is tuple:
        if depth >= MAX_DEPTH:
            raise NotLean
        out.append(_count(0x21, len(x)))
        for v in x:
            _encode(v, out, depth + 1, matrix)
    elif t is bool or t is np.bool_:
        out.append(_TRUE if x else _FALSE)
    elif x is None:
        out.append(_NULL)
    elif isinstance(x, np.generic):
        _encode_numpy_scalar(x, out)
    else:
        _encode_other(x, out, depth, matrix)


def _encode_other(x, out, depth, matrix):
    """Subclasses and abstract types, as ``to_value`` orders them."""
    if isinstance(x, int):
        _encode(int(x), out, depth, matrix)
    elif isinstance(x, float):
        out.append(_double(0x0C, float(x)))
    elif isinstance(x, complex):
        out.append(_complex(0x0E, x.real, x.imag))
    elif isinstance(x, str):
        _encode(str(x), out, depth, matrix)
    elif isinstance(x, np.ndarray):
        matrix(np.asarray(x), out)
    elif isinstance(x, collections.abc.Mapping):
        if depth >= MAX_DEPTH:
            raise NotLean
        items = list(x.items())
        out.append(_count(0x22, len(items)))
        for k, v in items:
            _encode(k, out, depth + 1, matrix)
            _encode(v, out, depth + 1, matrix)
    elif isinstance(x, collections.abc.Sequence) and not isinstance(x, (bytes, bytearray, memoryview)):
        if depth >= MAX_DEPTH:
            raise NotLean
        items = list(x)
        out.append(_count(0x21, len(items)))
        for v in items:
            _encode(v, out, depth + 1, matrix)
    else:
        raise NotLean


def encode(x, layout=False):
    """The dimeb bytes of ``x``, or None if ``x`` is not for the lean path
    (``_convert.to_value`` then sends it, or raises its error). Matrices in
    the ``dimeb_layout`` encoding with ``layout``, else the classic one."""
    out = []
    try:
        _encode(x, out, 0, _layout_encoder() if layout else _encode_matrix)
    except (NotLean, UnicodeEncodeError, OverflowError, RecursionError):
        return None
    return b"".join(out)


# ------------------------------------------------------------------ decoding

_s = {f: struct.Struct(">" + f).unpack_from for f in "bhiqBHIQfd"}
_u32 = _s["I"]
_ff = struct.Struct(">ff").unpack_from
_dd = struct.Struct(">dd").unpack_from


class _Truncated(ValueError):
    """The bytes end inside a value."""


def _scalar(fmt, size, wrap=None):
    unpack = _s[fmt]
    if wrap is None:
        return lambda buf, pos: (unpack(buf, pos)[0], pos + size)
    return lambda buf, pos: (wrap(unpack(buf, pos)[0]), pos + size)


_F32 = np.dtype(">f4")


def _single(buf, pos):
    # Through numpy, not a Python float: a NaN keeps its payload bits.
    return np.frombuffer(buf, _F32, 1, pos).astype(np.float32)[0], pos + 4


def _complex_single(buf, pos):
    re, im = _ff(buf, pos)
    return np.complex64(complex(re, im)), pos + 8


def _complex_double(buf, pos):
    re, im = _dd(buf, pos)
    return complex(re, im), pos + 16


def _string(buf, pos):
    n = _u32(buf, pos)[0]
    pos += 4
    end = pos + n
    if end > len(buf):
        raise _Truncated("a string runs past the end")
    try:
        return str(buf[pos:end], "utf-8"), end
    except UnicodeDecodeError as e:
        raise DimeCodecError(f"received a string that is not UTF-8: {e}") from None


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


#: classic matrix tag -> (big-endian wire dtype of its elements, native dtype)
_ELEMENT = {0x10 | cls: (np.dtype(np.uint8) if cls == _lib.CLASS_LOGICAL
                         else dt.newbyteorder(">"), dt)
            for cls, dt in DTYPE_OF_CLASS.items()}
_LOGICAL = 0x10 | _lib.CLASS_LOGICAL


def _elements(buf, pos, tag, dims, little, row_major):
    """The array of the elements at ``pos`` (its shape ``dims``) and the
    offset past them."""
    big, native = _ELEMENT[tag]
    count = 1
    for d in dims:
        count *= d
    end = pos + count * big.itemsize
    if end > len(buf):
        raise _Truncated("a matrix runs past the end")
    raw = np.frombuffer(buf, big.newbyteorder("<") if little else big, count, pos)
    if tag == _LOGICAL and count and raw.max() > 1:
        raise DimeCodecError("received a logical matrix with an element other than 0 or 1")
    flat = raw.astype(native)
    # The original client's rule: a rank-2 matrix with a dimension of 1 is 1-D.
    if len(dims) == 2 and (dims[0] == 1 or dims[1] == 1):
        dims = (dims[1],) if dims[0] == 1 else (dims[0],)
    return flat.reshape(dims, order="C" if row_major else "F"), end


def _matrix(tag):
    def read(buf, pos):
        rank = buf[pos]
        dims = struct.unpack_from(f">{rank}I", buf, pos + 1)
        return _elements(buf, pos + 1 + 4 * rank, tag, dims, False, False)
    return read


def _layout_matrix(tag):
    """A ``dimeb_layout`` matrix: a flags byte before the rank, a pad count
    and padding before the elements."""
    classic = tag - _LAYOUT_TAG

    def read(buf, pos):
        flags = buf[pos]
        if flags & ~(_ROW_MAJOR | 0x02):
            raise DimeCodecError(f"received a matrix with unknown flags 0x{flags:02X}")
        rank = buf[pos + 1]
        dims = struct.unpack_from(f">{rank}I", buf, pos + 2)
        pos += 2 + 4 * rank
        pos += 1 + buf[pos]
        return _elements(buf, pos, classic, dims, bool(flags & 0x02), bool(flags & _ROW_MAJOR))
    return read


def _unknown(buf, pos):
    raise DimeCodecError(f"received a value of unknown tag 0x{buf[pos - 1]:02X}")


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
_READ[0x0B] = _single
_READ[0x0C] = _scalar("d", 8)
_READ[0x0D] = _complex_single
_READ[0x0E] = _complex_double
for _tag in _ELEMENT:
    _READ[_tag] = _matrix(_tag)
    _READ[_tag + _LAYOUT_TAG] = _layout_matrix(_tag + _LAYOUT_TAG)
_READ[0x20] = _string
_READ[0x21] = _list
_READ[0x22] = _map


def decode(buf):
    """The Python value of ``buf``, which must hold exactly one dimeb value
    (``DimeCodecError`` if it does not). ``NotLean`` if ``_convert`` must
    build it instead (nesting past Python's stack, a map key Python cannot
    hash: the library path decides, and names the position if it fails)."""
    return decode_span(buf, 0, len(buf))


def decode_span(buf, start, stop):
    """The Python value of ``buf[start:stop]``, without slicing ``buf``,
    which must hold exactly one dimeb value: for several values received
    one after another (a batch of stream items). Errors as ``decode``."""
    try:
        v, end = _READ[buf[start]](buf, start + 1)
    except (RecursionError, MemoryError):
        raise NotLean from None
    except DimeCodecError:
        raise
    except (struct.error, IndexError, ValueError) as e:
        raise DimeCodecError(f"received a truncated or invalid value: {e}") from None
    if end != stop:
        if end > stop:
            raise DimeCodecError(f"received a truncated value: {end - stop} bytes missing")
        raise DimeCodecError(f"received an invalid value: {stop - end} trailing bytes")
    return v
