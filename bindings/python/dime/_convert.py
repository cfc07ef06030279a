"""Python values <-> libdime values (the type table of docs/protocol.md §4).

Sending (``to_value``):

=========================================  ====================================
Python                                     dimeb
=========================================  ====================================
``None``                                   null
``bool``, ``np.bool_``                     true / false
``int``                                    int64; uint64 if >= 2**63 and fits;
                                           else ``OverflowError``
``float``                                  double
``complex``                                complex double
numpy scalar (``np.int16(3)``, ...)        scalar of its class
``str``                                    string (UTF-8)
``np.ndarray`` (numeric or bool dtype)     matrix, ``ndarray.shape`` as is
                                           (bool: logical, tag 0x1F)
``list``, ``tuple``, other sequences       list
``dict``, other mappings                   map; keys that are not ``str`` are
                                           sent as values of their own type
anything else (set, object, ...)           ``TypeError`` naming the type
=========================================  ====================================

A Fortran- or C-contiguous array is lent to the library by pointer, no
copy: with a server that announces ``dimeb_layout`` it travels in its own
order (nobody transposes it; a receiver that needs the other order, MATLAB,
converts once), otherwise the library transposes it while it byte-swaps.
Non-contiguous arrays are copied once to Fortran order; non-native byte
order is swapped once. A bool array whose bytes are not all 0 or 1 (a ``uint8`` array viewed
as ``bool``) is copied once to clean 0/1 bytes first.

Receiving (``from_value``): null -> ``None``, bool -> ``bool``, int64 ->
``int``, double -> ``float``, complex double -> ``complex``, the other
scalar classes -> numpy scalars of that class (``np.float32``,
``np.int16``, ``np.uint64`` ...) so their class survives a round trip,
string -> ``str``, list -> ``list``, map -> ``dict``, matrix -> ``ndarray``
over the library's own buffer (no copy; freed when the array is collected),
C-ordered when the sender's array travelled row-major and Fortran-ordered
otherwise: the same shape and values either way.
A rank-2 matrix with a dimension of 1 becomes 1-D ``(N,)``, as in the
original client.
"""

import collections.abc
import ctypes
from ctypes import byref, c_bool, c_double, c_float, c_size_t, c_void_p

import numpy as np

from . import _lib
from ._errors import DimeCodecError, check
from ._lib import lib

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1

#: (dtype.kind, dtype.itemsize) -> dime_class
CLASS_OF_DTYPE = {
    ("i", 1): _lib.CLASS_INT8, ("i", 2): _lib.CLASS_INT16,
    ("i", 4): _lib.CLASS_INT32, ("i", 8): _lib.CLASS_INT64,
    ("u", 1): _lib.CLASS_UINT8, ("u", 2): _lib.CLASS_UINT16,
    ("u", 4): _lib.CLASS_UINT32, ("u", 8): _lib.CLASS_UINT64,
    ("f", 4): _lib.CLASS_SINGLE, ("f", 8): _lib.CLASS_DOUBLE,
    ("c", 8): _lib.CLASS_COMPLEX_SINGLE, ("c", 16): _lib.CLASS_COMPLEX_DOUBLE,
    ("b", 1): _lib.CLASS_LOGICAL,
}

#: dime_class -> numpy dtype (native byte order)
DTYPE_OF_CLASS = {
    _lib.CLASS_INT8: np.dtype(np.int8), _lib.CLASS_INT16: np.dtype(np.int16),
    _lib.CLASS_INT32: np.dtype(np.int32), _lib.CLASS_INT64: np.dtype(np.int64),
    _lib.CLASS_UINT8: np.dtype(np.uint8), _lib.CLASS_UINT16: np.dtype(np.uint16),
    _lib.CLASS_UINT32: np.dtype(np.uint32), _lib.CLASS_UINT64: np.dtype(np.uint64),
    _lib.CLASS_SINGLE: np.dtype(np.float32), _lib.CLASS_DOUBLE: np.dtype(np.float64),
    _lib.CLASS_COMPLEX_SINGLE: np.dtype(np.complex64),
    _lib.CLASS_COMPLEX_DOUBLE: np.dtype(np.complex128),
    _lib.CLASS_LOGICAL: np.dtype(np.bool_),
}

# numpy scalar class -> constructor of the scalar value of that class
_NEW_SCALAR = {
    np.int8: lib.dime_value_new_int8, np.int16: lib.dime_value_new_int16,
    np.int32: lib.dime_value_new_int32, np.int64: lib.dime_value_new_int64,
    np.uint8: lib.dime_value_new_uint8, np.uint16: lib.dime_value_new_uint16,
    np.uint32: lib.dime_value_new_uint32, np.uint64: lib.dime_value_new_uint64,
    np.float32: lib.dime_value_new_single, np.float64: lib.dime_value_new_double,
}


def _where(path):
    return f" (at {path})" if path else ""


# ------------------------------------------------------------------ sending

def to_value(x, keep, path=""):
    """A new owned dime_value (an int pointer) for the Python value ``x``.

    Arrays lent to the library by pointer are appended to ``keep``; the
    caller keeps that list alive until the value is freed. On error nothing
    is leaked and a ``TypeError``/``OverflowError``/``ValueError`` naming
    the type and position is raised.
    """
    if x is None:
        return lib.dime_value_new_null()
    t = type(x)
    # bool before int: True is an int too.
    if t is bool or t is np.bool_:
        return lib.dime_value_new_bool(bool(x))
    if t is float:
        return lib.dime_value_new_double(x)
    if t is str:
        return _new_string(x, path)
    if t is np.ndarray:
        return _new_matrix(x, keep, path)
    if isinstance(x, np.generic):
        return _new_numpy_scalar(x, path)
    if isinstance(x, bool):
        return lib.dime_value_new_bool(bool(x))
    if isinstance(x, int):
        return _new_int(int(x), path)
    if isinstance(x, float):
        return lib.dime_value_new_double(float(x))
    if isinstance(x, complex):
        return lib.dime_value_new_complex_double(x.real, x.imag)
    if isinstance(x, str):
        return _new_string(str(x), path)
    if isinstance(x, np.ndarray):
        return _new_matrix(np.asarray(x), keep, path)
    if isinstance(x, collections.abc.Mapping):
        return _new_map(x, keep, path)
    if isinstance(x, (list, tuple)) or (
            isinstance(x, collections.abc.Sequence) and not isinstance(x, (bytes, bytearray, memoryview))):
        return _new_list(x, keep, path)
    raise TypeError(f"cannot send a value of type {t.__module__}.{t.__qualname__}{_where(path)}: "
                    f"dime sends None, bool, int, float, complex, str, numpy arrays and scalars, "
                    f"lists, tuples and dicts")


def _new_int(x, path):
    if INT64_MIN <= x <= INT64_MAX:
        return lib.dime_value_new_int64(x)
    if INT64_MAX < x <= UINT64_MAX:
        return lib.dime_value_new_uint64(x)
    raise OverflowError(f"int {x} does not fit int64 or uint64{_where(path)}")


def _new_string(s, path):
    try:
        b = s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"cannot send a str that is not valid Unicode{_where(path)}: {e}") from None
    out = c_void_p()
    check(lib.dime_value_new_string(b, len(b), byref(out)), path or None)
    return out.value


def _new_numpy_scalar(x, path):
    t = type(x)
    new = _NEW_SCALAR.get(t)
    if new is not None:
        return new(x.item())
    if t is np.bool_:
        return lib.dime_value_new_bool(bool(x))
    if t is np.complex64:
        return lib.dime_value_new_complex_single(x.real.item(), x.imag.item())
    if t is np.complex128:
        return lib.dime_value_new_complex_double(x.real.item(), x.imag.item())
    # Platform aliases (np.intc, np.longlong ...) resolve through their dtype.
    dt = x.dtype
    cls = CLASS_OF_DTYPE.get((dt.kind, dt.itemsize))
    if cls is not None:
        return _new_numpy_scalar(x.astype(DTYPE_OF_CLASS[cls]), path)
    raise TypeError(f"cannot send a numpy scalar of type {t.__name__} (dtype {dt}){_where(path)}")


def _new_matrix(a, keep, path):
    dt = a.dtype
    cls = CLASS_OF_DTYPE.get((dt.kind, dt.itemsize))
    if cls is None:
        raise TypeError(f"cannot send a numpy array of dtype {dt}{_where(path)}: dime sends "
                        f"int8..int64, uint8..uint64, float32, float64, complex64, complex128, bool")
    new = lib.dime_value_new_matrix_borrowed
    if cls == _lib.CLASS_LOGICAL and a.size and a.view(np.uint8).max() > 1:
        # A bool view of other bytes (np.uint8 data .view(bool)) may hold
        # 2..255, which receivers reject and the borrowing constructor must
        # not be given: one copy to clean 0/1 bytes, in the same memory order.
        # Ordinary bool arrays pass the check (a reduction, no temporary) and
        # stay lent as they are.
        a = np.asarray(np.not_equal(a.view(np.uint8), 0))
    if not dt.isnative:
        a = a.astype(dt.newbyteorder("="), order="F")     # one copy, swapped
    elif not a.flags.f_contiguous:
        if a.flags.c_contiguous:
            # Lent as is: the library transposes while it byte-swaps.
            new = lib.dime_value_new_matrix_borrowed_row_major
        else:
            a = _to_fortran(a)                            # one copy, column-major
    rank = a.ndim
    dims = (c_size_t * rank)(*a.shape)
    out = c_void_p()
    check(new(cls, rank, dims, a.ctypes.data, byref(out)), path or None)
    keep.append(a)
    return out.value


#: Rows per block when transposing a large 2-D array to column-major.
_BLOCK_ROWS = 512


def _to_fortran(a):
    """A column-major copy of ``a``. Large 2-D arrays are copied in blocks of
    rows, which keeps both sides cache-friendly: 3-10x faster than
    ``np.asfortranarray`` on a C-ordered 10000 x 10000 matrix."""
    if a.ndim != 2 or a.nbytes < (4 << 20):
        return np.asfortranarray(a)
    out = np.empty(a.shape, a.dtype, order="F")
    for i in range(0, a.shape[0], _BLOCK_ROWS):
        out[i:i + _BLOCK_ROWS] = a[i:i + _BLOCK_ROWS]
    return out


def _new_list(seq, keep, path):
    lst = lib.dime_value_new_list()
    try:
        for i, item in enumerate(seq):
            v = to_value(item, keep, f"{path}[{i}]")
            st = lib.dime_value_list_append(lst, v)
            if st:
                lib.dime_value_free(v)
                check(st, path or None)
    except BaseException:
        lib.dime_value_free(lst)
        raise
    return lst


def _new_map(mapping, keep, path):
    m = lib.dime_value_new_map()
    try:
        for k, item in mapping.items():
            where = f"{path}[{k!r}]"
            v = to_value(item, keep, where)
            if type(k) is str and "\0" not in k:
                try:
                    kb = k.encode("utf-8")
                except UnicodeEncodeError as e:
                    lib.dime_value_free(v)
                    raise ValueError(f"cannot send a dict key that is not valid Unicode{_where(where)}: {e}") \
                        from None
                st = lib.dime_value_map_set(m, kb, v)
                if st:
                    lib.dime_value_free(v)
                    check(st, where)
            else:
                try:
                    kv = to_value(k, keep, f"{path} key {k!r}")
                except BaseException:
                    lib.dime_value_free(v)
                    raise
                st = lib.dime_value_map_set_value(m, kv, v)
                if st:
                    lib.dime_value_free(kv)
                    lib.dime_value_free(v)
                    check(st, where)
    except BaseException:
        lib.dime_value_free(m)
        raise
    return m


# ---------------------------------------------------------------- receiving

class LibBuffer:
    """Owns an element buffer taken from libdime (``dime_matrix_take_data``).

    numpy arrays made by ``from_value`` are views over it (their ``.base``
    chain ends here); the buffer goes back to the library
    (``dime_data_free``) when the last of them is collected.
    """

    __slots__ = ("ptr", "nbytes", "__array_interface__", "__weakref__")

    def __init__(self, ptr, nbytes, dtype, shape, strides):
        self.ptr = ptr
        self.nbytes = nbytes
        self.__array_interface__ = {
            "version": 3, "data": (ptr, False), "typestr": dtype.str,
            "shape": shape, "strides": strides,
        }

    def __del__(self):
        ptr, self.ptr = self.ptr, None
        if ptr is not None and lib is not None:
            lib.dime_data_free(ptr, self.nbytes)


def _matrix_shape(v, row_major=False):
    """(dtype, shape, strides) of the matrix ``v``, its elements stored
    column-major or, with ``row_major``, row-major (C order)."""
    c = ctypes.c_uint32()
    check(lib.dime_matrix_class(v, byref(c)))
    rank = c_size_t()
    check(lib.dime_matrix_rank(v, byref(rank)))
    rank = rank.value
    if rank:
        dims_p = ctypes.POINTER(c_size_t)()
        check(lib.dime_matrix_dims(v, byref(dims_p)))
        dims = tuple(dims_p[:rank])
    else:
        dims = ()
    dtype = DTYPE_OF_CLASS.get(c.value)
    if dtype is None:
        raise DimeCodecError(f"received a matrix of unknown class {c.value}")
    # The original client's rule: a rank-2 matrix with a dimension of 1 is 1-D.
    if rank == 2 and (dims[0] == 1 or dims[1] == 1):
        dims = (dims[1],) if dims[0] == 1 else (dims[0],)
    strides = []
    step = dtype.itemsize
    for d in (reversed(dims) if row_major else dims):
        strides.append(step)
        step *= d
    if row_major:
        strides.reverse()
    return dtype, dims, tuple(strides)


def _matrix_take(v):
    """An ndarray over the buffer of the owned matrix ``v`` (no copy): a
    C-ordered array when the sender's matrix travelled row-major, a
    Fortran-ordered one otherwise; writable either way."""
    layout = ctypes.c_uint32()
    check(lib.dime_matrix_layout(v, byref(layout)))
    dtype, dims, strides = _matrix_shape(v, layout.value == _lib.LAYOUT_ROW_MAJOR)
    data = c_void_p()
    nbytes = c_size_t()
    check(lib.dime_matrix_take_stored_data(v, byref(data), byref(nbytes)))
    owner = LibBuffer(data.value, nbytes.value, dtype, dims, strides)
    return np.asarray(owner)


def _matrix_copy(v):
    """A copy of the borrowed matrix ``v`` as an ndarray, in the order it
    is stored in."""
    layout = ctypes.c_uint32()
    check(lib.dime_matrix_layout(v, byref(layout)))
    row_major = layout.value == _lib.LAYOUT_ROW_MAJOR
    dtype, dims, strides = _matrix_shape(v, row_major)
    data = c_void_p()
    nbytes = c_size_t()
    check(lib.dime_matrix_stored_data(v, byref(data), byref(nbytes)))
    raw = ctypes.string_at(data.value, nbytes.value) if nbytes.value else b""
    flat = np.frombuffer(raw, dtype=dtype).copy()
    return flat.reshape(dims, order="C" if row_major else "F")


def _scalar(getter, ctype):
    def read(v):
        out = ctype()
        check(getter(v, byref(out)))
        return out.value
    return read


def _np_scalar(getter, ctype, nptype):
    def read(v):
        out = ctype()
        check(getter(v, byref(out)))
        return nptype(out.value)
    return read


def _complex(getter, ctype, nptype):
    def read(v):
        re, im = ctype(), ctype()
        check(getter(v, byref(re), byref(im)))
        z = complex(re.value, im.value)
        return z if nptype is None else nptype(z)
    return read


def _string(v):
    data = c_void_p()
    n = c_size_t()
    check(lib.dime_value_get_string(v, byref(data), byref(n)))
    if not n.value:
        return ""
    return ctypes.string_at(data.value, n.value).decode("utf-8")


_READ_SCALAR = {
    _lib.KIND_NULL: lambda v: None,
    _lib.KIND_BOOL: _scalar(lib.dime_value_get_bool, c_bool),
    _lib.KIND_INT8: _np_scalar(lib.dime_value_get_int8, ctypes.c_int8, np.int8),
    _lib.KIND_INT16: _np_scalar(lib.dime_value_get_int16, ctypes.c_int16, np.int16),
    _lib.KIND_INT32: _np_scalar(lib.dime_value_get_int32, ctypes.c_int32, np.int32),
    _lib.KIND_INT64: _scalar(lib.dime_value_get_int64, ctypes.c_int64),
    _lib.KIND_UINT8: _np_scalar(lib.dime_value_get_uint8, ctypes.c_uint8, np.uint8),
    _lib.KIND_UINT16: _np_scalar(lib.dime_value_get_uint16, ctypes.c_uint16, np.uint16),
    _lib.KIND_UINT32: _np_scalar(lib.dime_value_get_uint32, ctypes.c_uint32, np.uint32),
    _lib.KIND_UINT64: _np_scalar(lib.dime_value_get_uint64, ctypes.c_uint64, np.uint64),
    _lib.KIND_SINGLE: _np_scalar(lib.dime_value_get_single, c_float, np.float32),
    _lib.KIND_DOUBLE: _scalar(lib.dime_value_get_double, c_double),
    _lib.KIND_COMPLEX_SINGLE: _complex(lib.dime_value_get_complex_single, c_float, np.complex64),
    _lib.KIND_COMPLEX_DOUBLE: _complex(lib.dime_value_get_complex_double, c_double, None),
    _lib.KIND_STRING: _string,
}


def from_value(v, owned=True, path=""):
    """The Python value of the dime_value ``v``.

    With ``owned``, ``v`` belongs to the caller (who still frees it) and
    matrices inside it are moved out without copying; otherwise ``v`` is
    borrowed and only read (matrices are copied).
    """
    kind = lib.dime_value_kind(v)
    read = _READ_SCALAR.get(kind)
    if read is not None:
        return read(v)
    if kind == _lib.KIND_MATRIX:
        return _matrix_take(v) if owned else _matrix_copy(v)
    if kind == _lib.KIND_LIST:
        return _list(v, owned, path)
    if kind == _lib.KIND_MAP:
        return _map(v, owned, path)
    raise DimeCodecError(f"received a value of unknown kind {kind}{_where(path)}")


def _list(v, owned, path):
    n = c_size_t()
    check(lib.dime_value_list_len(v, byref(n)))
    out = []
    child = c_void_p()
    for i in range(n.value):
        if owned:
            check(lib.dime_value_list_take(v, i, byref(child)))
            try:
                out.append(from_value(child.value, True, f"{path}[{i}]"))
            finally:
                lib.dime_value_free(child.value)
        else:
            check(lib.dime_value_list_get(v, i, byref(child)))
            out.append(from_value(child.value, False, f"{path}[{i}]"))
    return out


def _map(v, owned, path):
    n = c_size_t()
    check(lib.dime_value_map_len(v, byref(n)))
    out = {}
    key = c_void_p()
    child = c_void_p()
    for i in range(n.value):
        check(lib.dime_value_map_key_at(v, i, byref(key)))
        if lib.dime_value_kind(key.value) == _lib.KIND_STRING:
            k = _string(key.value)
        else:
            k = from_value(key.value, False, f"{path} key #{i}")
            if isinstance(k, list):
                k = _freeze(k)
            try:
                hash(k)
            except TypeError:
                raise DimeCodecError(
                    f"received a map key of type {type(k).__name__}{_where(path)}, "
                    f"which cannot be a Python dict key") from None
        if owned:
            check(lib.dime_value_map_take_at(v, i, byref(child)))
            try:
                out[k] = from_value(child.value, True, f"{path}[{k!r}]")
            finally:
                lib.dime_value_free(child.value)
        else:
            check(lib.dime_value_map_value_at(v, i, byref(child)))
            out[k] = from_value(child.value, False, f"{path}[{k!r}]")
    return out


def _freeze(x):
    """A list map key as a (hashable) tuple, recursively."""
    return tuple(_freeze(i) if isinstance(i, list) else i for i in x)
