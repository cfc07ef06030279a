"""dimeb (docs/protocol.md §4) encoded and decoded in Python, for small values.

A remote call's arguments and result are usually small: a few scalars,
strings and short arrays in a dict. Building them as libdime values costs
one foreign call per node (``_convert``), several times what packing the
bytes here costs, so the remote-call path sends and reads small values
as dimeb bytes directly and leaves everything else to ``_convert``, which
lends large arrays to the library without copying them.

``encode`` handles exactly the types whose mapping is plain (see
``_convert``'s table) and raises ``Fallback`` for anything else -- a large
array, a subclass, a type that needs an error message -- so the caller
uses ``_convert.to_value`` and gets the same value or the same error.
``decode`` gives what ``_convert.from_value`` gives, arrays as ordinary
(writable) numpy arrays: Fortran-ordered, or C-ordered when they travelled
row-major (the ``dimeb_layout`` encoding our clients negotiate).
"""

import struct

import numpy as np

from ._errors import DimeCodecError

__all__ = ["encode", "decode", "decode_span", "Fallback", "SMALL"]

#: Arrays larger than this (bytes) go through the library, lent without a
#: copy; payloads larger than this are decoded by the library.
SMALL = 64 << 10

_MAX_DEPTH = 256
_U32_MAX = (1 << 32) - 1


class Fallback(Exception):
    """The value needs ``_convert``: too large, or not a plain type."""


_tag_u32 = struct.Struct(">BI").pack
_f64 = struct.Struct(">Bd").pack
_i64 = struct.Struct(">Bq").pack
_u64 = struct.Struct(">BQ").pack
_c128 = struct.Struct(">Bdd").pack

#: numpy scalar type -> (tag, struct format of the body)
_NP_SCALARS = {
    np.int8: (0x03, ">b"), np.int16: (0x04, ">h"), np.int32: (0x05, ">i"), np.int64: (0x06, ">q"),
    np.uint8: (0x07, ">B"), np.uint16: (0x08, ">H"), np.uint32: (0x09, ">I"),
    np.uint64: (0x0A, ">Q"), np.float64: (0x0C, ">d"),
}
#: numpy scalars whose bits must not pass through a Python float (a
#: float32 NaN's payload would change): tag and big-endian dtype
_NP_BITS = {np.float32: (b"\x0b", np.dtype(">f4")), np.complex64: (b"\x0d", np.dtype(">c8")),
            np.complex128: (b"\x0e", np.dtype(">c16"))}
_NP_PACK = {t: struct.Struct(">B" + f[1:]).pack for t, (_, f) in _NP_SCALARS.items()}
_NP_TAG = {t: tag for t, (tag, _) in _NP_SCALARS.items()}

#: (dtype.kind, itemsize) -> matrix tag
_MATRIX_TAG = {
    ("i", 1): 0x13, ("i", 2): 0x14, ("i", 4): 0x15, ("i", 8): 0x16,
    ("u", 1): 0x17, ("u", 2): 0x18, ("u", 4): 0x19, ("u", 8): 0x1A,
    ("f", 4): 0x1B, ("f", 8): 0x1C, ("c", 8): 0x1D, ("c", 16): 0x1E, ("b", 1): 0x1F,
}

# ---------------------------------------------------------------- encoding


def encode(x):
    """The dimeb bytes of ``x``; ``Fallback`` if ``_convert`` must do it."""
    out = []
    if type(x) is np.ndarray:       # the common stream item: skip the dispatch
        _put_matrix(x, out)
    else:
        _put(x, out, 0)
    return b"".join(out)


def _put(x, out, depth):
    if depth > _MAX_DEPTH:
        raise Fallback
    t = type(x)
    if x is None:
        out.append(b"\x00")
    elif t is bool or t is np.bool_:
        out.append(b"\x01" if x else b"\x02")
    elif t is float:
        out.append(_f64(0x0C, x))
    elif t is int:
        if -(1 << 63) <= x < (1 << 63):
            out.append(_i64(0x06, x))
        elif (1 << 63) <= x < (1 << 64):
            out.append(_u64(0x0A, x))
        else:
            raise Fallback          # _convert raises the OverflowError
    elif t is str:
        try:
            b = x.encode("utf-8")
        except UnicodeEncodeError:
            raise Fallback from None
        out.append(_tag_u32(0x20, len(b)))
        out.append(b)
    elif t is dict:
        out.append(_tag_u32(0x22, len(x)))
        for k, v in x.items():
            _put(k, out, depth + 1)
            _put(v, out, depth + 1)
    elif t is list or t is tuple:
        out.append(_tag_u32(0x21, len(x)))
        for v in x:
            _put(v, out, depth + 1)
    elif t is np.ndarray:
        _put_matrix(x, out)
    elif t is complex:
        out.append(_c128(0x0E, x.real, x.imag))
    elif t in _NP_PACK:
        out.append(_NP_PACK[t](_NP_TAG[t], x.item()))
    elif t in _NP_BITS:
        tag, be = _NP_BITS[t]
        out.append(tag)
        out.append(np.asarray(x).astype(be).tobytes())
    else:
        raise Fallback


#: native numeric dtype -> (matrix tag, big-endian dtype, or None when
#: its bytes need no swapping)
_NATIVE_MATRIX = {np.dtype(f"{k}{n}"): (tag, None if n == 1 else np.dtype(f"{k}{n}").newbyteorder(">"))
                  for (k, n), tag in _MATRIX_TAG.items() if k != "b"}
_RANK1_HEAD = struct.Struct(">BBI").pack


def _put_matrix(a, out):
    dt = a.dtype
    fast = _NATIVE_MATRIX.get(dt)
    # A non-empty array within SMALL bytes has every dimension below 2^32.
    if fast is not None and a.size and a.nbytes <= SMALL:
        tag, be = fast
        if a.ndim == 1:
            out.append(_RANK1_HEAD(tag, 1, a.shape[0]))
        else:
            out.append(struct.pack(f">BB{a.ndim}I", tag, a.ndim, *a.shape))
        out.append((a if be is None else a.astype(be)).tobytes(order="F"))
        return
    tag = _MATRIX_TAG.get((dt.kind, dt.itemsize))
    if tag is None or a.nbytes > SMALL or a.ndim > 255 or any(d > _U32_MAX for d in a.shape):
        raise Fallback
    if tag == 0x1F:
        if a.size and a.view(np.uint8).max() > 1:     # a bool view of other bytes
            a = np.not_equal(a.view(np.uint8), 0)
        body = a.tobytes(order="F")
    else:
        body = a.astype(dt.newbyteorder(">"), copy=False).tobytes(order="F")
    out.append(struct.pack(f">BB{a.ndim}I", tag, a.ndim, *a.shape))
    out.append(body)


# ---------------------------------------------------------------- decoding

#: scalar tag -> (body size, read(buffer, offset))
def _reader(fmt, wrap=None):
    s = struct.Struct(fmt)
    if wrap is None:
        return s.size, lambda b, o: s.unpack_from(b, o)[0]
    return s.size, lambda b, o: wrap(s.unpack_from(b, o)[0])


_SCALARS = {
    0x03: _reader(">b", np.int8), 0x04: _reader(">h", np.int16), 0x05: _reader(">i", np.int32),
    0x06: _reader(">q"), 0x07: _reader(">B", np.uint8), 0x08: _reader(">H", np.uint16),
    0x09: _reader(">I", np.uint32), 0x0A: _reader(">Q", np.uint64), 0x0C: _reader(">d"),
}
_F32 = np.dtype(">f4")
_C64 = np.dtype(">c8")
_C128 = struct.Struct(">dd")
_U32 = struct.Struct(">I")

#: matrix tag -> big-endian dtype of its elements, and the native one
_MATRIX_DTYPE = {tag: (np.dtype(f"{k}{n}").newbyteorder(">"), np.dtype(f"{k}{n}"))
                 for (k, n), tag in _MATRIX_TAG.items() if k != "b"}


def decode(buf):
    """The Python value of the dimeb bytes ``buf`` (``DimeCodecError`` if
    they are not exactly one valid value)."""
    return decode_span(buf, 0, len(buf))


def decode_span(buf, start, stop):
    """The Python value of the dimeb bytes ``buf[start:stop]``, without
    slicing ``buf`` (``DimeCodecError`` if they are not exactly one valid
    value): for several values received one after another."""
    try:
        v, end = _get(buf, start, 0)
    except (struct.error, IndexError, ValueError) as e:
        raise DimeCodecError(f"received a truncated or invalid value: {e}") from None
    if end != stop:
        if end > stop:
            raise DimeCodecError(f"received a truncated value: {end - stop} bytes missing")
        raise DimeCodecError(f"received an invalid value: {stop - end} trailing bytes")
    return v


def _get(b, o, depth):
    if depth > _MAX_DEPTH:
        raise DimeCodecError(f"received a value nested deeper than {_MAX_DEPTH}")
    tag = b[o]
    o += 1
    if tag == 0x0C:
        return struct.unpack_from(">d", b, o)[0], o + 8
    if tag == 0x22:
        n = _U32.unpack_from(b, o)[0]
        o += 4
        out = {}
        for _ in range(n):
            k, o = _get(b, o, depth + 1)
            v, o = _get(b, o, depth + 1)
            if type(k) is not str:
                k = _key(k)
            out[k] = v
        return out, o
    if tag == 0x20:
        n = _U32.unpack_from(b, o)[0]
        o += 4
        if o + n > len(b):
            raise ValueError("truncated string")
        try:
            return b[o:o + n].decode("utf-8"), o + n
        except UnicodeDecodeError as e:
            raise DimeCodecError(f"received a string that is not UTF-8: {e}") from None
    if tag == 0x21:
        n = _U32.unpack_from(b, o)[0]
        o += 4
        out = []
        for _ in range(n):
            v, o = _get(b, o, depth + 1)
            out.append(v)
        return out, o
    if tag == 0x00:
        return None, o
    if tag == 0x01:
        return True, o
    if tag == 0x02:
        return False, o
    s = _SCALARS.get(tag)
    if s is not None:
        if o + s[0] > len(b):
            raise ValueError("truncated scalar")
        return s[1](b, o), o + s[0]
    if tag == 0x0B:
        if o + 4 > len(b):
            raise ValueError("truncated single")
        return np.frombuffer(b, _F32, 1, o).astype(np.float32)[0], o + 4
    if tag == 0x0D:
        if o + 8 > len(b):
            raise ValueError("truncated complex single")
        return np.frombuffer(b, _C64, 1, o).astype(np.complex64)[0], o + 8
    if tag == 0x0E:
        re, im = _C128.unpack_from(b, o)
        return complex(re, im), o + 16
    if 0x13 <= tag <= 0x1F:
        return _matrix(b, o, tag)
    if 0x43 <= tag <= 0x4F:
        return _matrix(b, o, tag)
    raise DimeCodecError(f"received a value of unknown tag 0x{tag:02X}")


#: rank -> the struct of a matrix's dimensions
_DIMS = [struct.Struct(f">{r}I") for r in range(256)]


def _matrix(b, o, tag):
    # Tags 0x43-0x4F: the dimeb_layout encoding (docs/protocol-extensions.md),
    # a flags byte before the rank (row-major, little-endian) and padding
    # before the elements; 0x13-0x1F: DiME2's, column-major big-endian.
    layout = tag >= 0x40
    row_major, little = False, False
    if layout:
        flags = b[o]
        if flags & ~0x03:
            raise DimeCodecError(f"received a matrix with unknown flags 0x{flags:02X}")
        row_major, little = bool(flags & 0x01), bool(flags & 0x02)
        o += 1
        tag -= 0x30
    rank = b[o]
    dims = _DIMS[rank].unpack_from(b, o + 1)
    o += 1 + 4 * rank
    if layout:
        o += 1 + b[o]                      # pad count, then the padding
    n = 1
    for d in dims:
        n *= d
    if tag == 0x1F:
        if o + n > len(b):
            raise ValueError("truncated logical matrix")
        raw = np.frombuffer(b, np.uint8, n, o)
        if n and raw.max() > 1:
            raise DimeCodecError("received a logical matrix with an element other than 0 or 1")
        flat = raw.astype(np.bool_)
        o += n
    else:
        types = _MATRIX_DTYPE.get(tag)
        if types is None:
            raise DimeCodecError(f"received a matrix of unknown tag 0x{tag:02X}")
        be, native = types
        wire = be.newbyteorder("<") if little else be
        if o + n * be.itemsize > len(b):
            raise ValueError("truncated matrix")
        flat = np.frombuffer(b, wire, n, o).astype(native)
        o += n * be.itemsize
    if rank == 1:
        return flat, o
    # The original client's rule: a rank-2 matrix with a dimension of 1 is 1-D.
    if rank == 2 and (dims[0] == 1 or dims[1] == 1):
        dims = (dims[1],) if dims[0] == 1 else (dims[0],)
    return flat.reshape(dims, order="C" if row_major else "F"), o


def _key(k):
    """A map key that is not a string, as a dict key."""
    if isinstance(k, list):
        k = _freeze(k)
    try:
        hash(k)
    except TypeError:
        raise DimeCodecError(f"received a map key of type {type(k).__name__}, "
                             f"which cannot be a Python dict key") from None
    return k


def _freeze(x):
    return tuple(_freeze(i) if isinstance(i, list) else i for i in x)
