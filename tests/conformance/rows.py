"""The rows of the conformance matrix: every row of the README's type table
and the edge cases of docs/protocol.md §4, each as the value that goes on
the wire (a node of model.py).

Every client builds each row as the natural value of its language (see the
drivers) and sends it; `hints` ask a driver for a particular way of
building it (a C-ordered numpy array, a MATLAB multi-row char array …);
`only` limits a row to the senders that have that idiom. Row ids are
lowercase, digits and single underscores (they become variable names).
"""

import math
import struct

from model import COMPLEX, INTEGER, elem_size, numel


class Bits:
    """A float given by its exact bit pattern (NaN payloads)."""

    def __init__(self, bits):
        self.bits = bits


def _part(cls, x):
    """The big-endian bytes of one real part of class cls."""
    base = {"csingle": "single", "cdouble": "double"}.get(cls, cls)
    if isinstance(x, Bits):
        return x.bits.to_bytes(4 if base == "single" else 8, "big")
    if base in INTEGER:
        size = elem_size(base)
        return int(x).to_bytes(size, "big", signed=base.startswith("int"))
    if base == "logical":
        return bytes([1 if x else 0])
    return struct.pack(">f" if base == "single" else ">d", x)


def _elem(cls, x):
    if cls in COMPLEX:
        if isinstance(x, tuple):
            re, im = x
        else:
            re, im = complex(x).real, complex(x).imag
        return _part(cls, re) + _part(cls, im)
    return _part(cls, x)


def null():
    """The null value."""
    return ("N",)


def boolean(b):
    """true or false."""
    return ("B", b)


def scalar(cls, x):
    """A scalar of class cls; complex values as complex or (re, im) with Bits."""
    return ("S", cls, _elem(cls, x))


def matrix(cls, dims, values):
    """A matrix of class cls and shape dims; values in column-major order."""
    dims = tuple(dims)
    assert len(values) == numel(dims), (dims, len(values))
    return ("M", cls, dims, b"".join(_elem(cls, x) for x in values))


def string(s):
    """A string (stored as its UTF-8 bytes)."""
    return ("U", s.encode("utf-8"))


def lst(*items):
    """A list of the given values."""
    return ("L", tuple(items))


def dmap(*pairs):
    """A map; string keys may be given as str."""
    return ("D", tuple((string(k) if isinstance(k, str) else k, v) for k, v in pairs))


def d(x):
    """A double scalar."""
    return scalar("double", x)


class Row:
    """One row: id, type-table row (category), a description, the wire value,
    per-language build hints, and the senders it is limited to (None: all)."""

    def __init__(self, rid, category, text, value, hints=None, only=None):
        self.id = rid
        self.category = category
        self.text = text
        self.value = value
        self.hints = hints or {}
        self.only = only


INT64_MIN, INT64_MAX, UINT64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1
NAN = Bits(0x7FF8000000000000)
NAN_PAYLOAD = Bits(0x7FF8000000000123)
NEG_NAN = Bits(0xFFF8000000000000)
F32_NAN_PAYLOAD = Bits(0x7FC00123)
INF = math.inf

PYTHON = ("py", "dime_client")

#: The categories, in the README's order: id -> the type-table row.
CATEGORIES = {
    "null": "`[]` / `None` / null",
    "logical": "logical scalar",
    "integer": "int8 … uint64 scalars",
    "float": "single / double scalars",
    "complex": "complex scalars",
    "matrix": "numeric matrices",
    "logical_matrix": "logical matrices",
    "string": "char row / string",
    "list": "cell array / list",
    "map": "struct / `containers.Map` / dict",
}


def _deep(depth):
    """[[[… ['bottom'] …]]], `depth` lists deep."""
    node = lst(string("bottom"))
    for _ in range(depth - 1):
        node = lst(node)
    return node


def _seq(n, start=1, step=1):
    return [start + i * step for i in range(n)]


ROWS = [
    # -- null
    Row("null", "null", "`[]` ↔ `None` ↔ null", null()),
    # -- logical scalars
    Row("true", "logical", "`true` stays a boolean, not 1", boolean(True)),
    Row("false", "logical", "`false`", boolean(False)),
    # -- integer scalars, every class, extremes exact
    Row("int8_scalar", "integer", "int8 −128", scalar("int8", -128)),
    Row("int16_scalar", "integer", "int16 −1600", scalar("int16", -1600)),
    Row("int32_scalar", "integer", "int32 −320000", scalar("int32", -320000)),
    Row("int64_scalar", "integer", "int64 0xDEADBEEF", scalar("int64", 0xDEADBEEF)),
    Row("uint8_scalar", "integer", "uint8 255", scalar("uint8", 255)),
    Row("uint16_scalar", "integer", "uint16 60000", scalar("uint16", 60000)),
    Row("uint32_scalar", "integer", "uint32 4000000000", scalar("uint32", 4000000000)),
    Row("uint64_scalar", "integer", "uint64 42", scalar("uint64", 42)),
    Row("int64_max", "integer", "`intmax('int64')` exact", scalar("int64", INT64_MAX)),
    Row("int64_min", "integer", "`intmin('int64')` exact", scalar("int64", INT64_MIN)),
    Row("uint64_max", "integer", "`intmax('uint64')` exact", scalar("uint64", UINT64_MAX)),
    Row("int_beyond_int64", "integer", "Python `int` 2**63 goes as uint64, never wrapped",
        scalar("uint64", 1 << 63), hints={"py": ["pyint"]}, only=PYTHON),
    # -- single / double scalars, special values bit-exact
    Row("double_scalar", "float", "double 0.1", d(0.1)),
    Row("single_scalar", "float", "single 0.1 stays single", scalar("single", 0.1)),
    Row("double_neg_zero", "float", "−0.0", d(-0.0)),
    Row("double_nan", "float", "NaN", d(NAN)),
    Row("double_nan_payload", "float", "NaN with a payload, bit-exact", d(NAN_PAYLOAD)),
    Row("double_inf", "float", "+Inf", d(INF)),
    Row("double_neg_inf", "float", "−Inf", d(-INF)),
    Row("double_subnormal", "float", "subnormal 5e−324", d(5e-324)),
    Row("single_neg_zero", "float", "single −0", scalar("single", -0.0)),
    Row("single_nan_payload", "float", "single NaN with a payload", scalar("single", F32_NAN_PAYLOAD)),
    # -- complex scalars
    Row("complex_double", "complex", "complex double 1−2i", scalar("cdouble", 1 - 2j)),
    Row("complex_double_zero_imag", "complex", "complex 3+0i stays complex", scalar("cdouble", 3 + 0j)),
    Row("complex_single", "complex", "complex single 1.5−2i", scalar("csingle", 1.5 - 2j)),
    Row("complex_single_zero_imag", "complex", "complex single 3+0i stays complex",
        scalar("csingle", 3 + 0j)),
    Row("complex_nan_neg_zero", "complex", "complex (NaN payload, −0) bit-exact",
        scalar("cdouble", (NAN_PAYLOAD, -0.0))),
    # -- numeric matrices: shapes and orders
    Row("matrix_2d", "matrix", "3×4 double (numpy: C-ordered; C: row-major constructor)",
        matrix("double", (3, 4), [i / 4 for i in range(12)]),
        hints={"py": ["corder"], "c": ["rowmajor"]}),
    Row("matrix_row", "matrix", "1×N → numpy `(N,)`", matrix("double", (1, 4), _seq(4))),
    Row("matrix_column", "matrix", "N×1 → numpy `(N,)`", matrix("double", (4, 1), _seq(4, 10))),
    Row("matrix_1d", "matrix", "rank 1 `(N,)` → MATLAB N×1 (JS: a bare typed array)",
        matrix("double", (5,), _seq(5, 0.5)), hints={"js": ["typedarray"]}),
    Row("matrix_1x1", "matrix", "1×1 int16 matrix (not a scalar)", matrix("int16", (1, 1), [7])),
    Row("matrix_rank0", "matrix", "rank-0 matrix", matrix("double", (), [2.5])),
    Row("matrix_3d", "matrix", "2×3×4 double, element order (numpy: non-contiguous view)",
        matrix("double", (2, 3, 4), _seq(24)), hints={"py": ["strided"]}),
    Row("matrix_4d", "matrix", "2×3×2×2 single (numpy: C-ordered)",
        matrix("single", (2, 3, 2, 2), _seq(24, 0.5, 0.25)), hints={"py": ["corder"]}),
    Row("matrix_large", "matrix", "64×50 double, distinct elements",
        matrix("double", (64, 50), [i * 1.5 - 1000 for i in range(64 * 50)])),
    Row("matrix_trailing_singleton", "matrix", "2×3×1 (MATLAB drops the trailing 1)",
        matrix("int32", (2, 3, 1), _seq(6, -3))),
    Row("matrix_int8", "matrix", "int8 2×3 with extremes", matrix("int8", (2, 3), [-128, 127, 0, -1, 1, 5])),
    Row("matrix_int16", "matrix", "int16 2×3 (numpy: big-endian dtype)",
        matrix("int16", (2, 3), [-32768, 32767, 0, -1, 1, 300]), hints={"py": ["bigendian"]}),
    Row("matrix_int32", "matrix", "int32 2×3", matrix("int32", (2, 3), [-(1 << 31), (1 << 31) - 1, 0, -1, 1, 70000])),
    Row("matrix_int64", "matrix", "int64 extremes (and 2**53 + 1)",
        matrix("int64", (2, 2), [INT64_MIN, INT64_MAX, -1, 9007199254740993])),
    Row("matrix_uint8", "matrix", "uint8 2×3", matrix("uint8", (2, 3), [0, 255, 1, 2, 128, 7])),
    Row("matrix_uint16", "matrix", "uint16 2×3", matrix("uint16", (2, 3), [0, 65535, 1, 2, 40000, 7])),
    Row("matrix_uint32", "matrix", "uint32 2×3", matrix("uint32", (2, 3), [0, 4294967295, 1, 2, 3000000000, 7])),
    Row("matrix_uint64", "matrix", "uint64 extremes", matrix("uint64", (3, 1), [UINT64_MAX, 0, (1 << 63) + 5])),
    Row("matrix_single", "matrix", "single 2×2", matrix("single", (2, 2), [0.1, -2.5, 3e38, 1e-45])),
    Row("matrix_complex_double", "matrix", "complex double 2×2",
        matrix("cdouble", (2, 2), [1 + 2j, -5j, 3 - 4j, 6])),
    Row("matrix_complex_single", "matrix", "complex single 1×3",
        matrix("csingle", (1, 3), [1 + 0j, 2 - 1j, -3 + 2j])),
    Row("matrix_complex_zero_imag", "matrix", "complex matrix with all-zero imaginary part stays complex",
        matrix("cdouble", (2, 2), [1, 2, 3, 4])),
    Row("matrix_double_specials", "matrix", "NaN, NaN payload, −NaN, ±Inf, −0, subnormal bit-exact",
        matrix("double", (1, 7), [NAN, NAN_PAYLOAD, NEG_NAN, INF, -INF, -0.0, 5e-324])),
    Row("matrix_single_specials", "matrix", "single NaN, payload, ±Inf, −0",
        matrix("single", (1, 5), [Bits(0x7FC00000), F32_NAN_PAYLOAD, INF, -INF, -0.0])),
    Row("empty_0x3", "matrix", "0×3 double", matrix("double", (0, 3), [])),
    Row("empty_3x0", "matrix", "3×0 double", matrix("double", (3, 0), [])),
    Row("empty_0x3_int8", "matrix", "`zeros(0,3,'int8')`", matrix("int8", (0, 3), [])),
    Row("empty_1x0", "matrix", "1×0 double", matrix("double", (1, 0), [])),
    Row("empty_2x0x3_uint16", "matrix", "2×0×3 uint16", matrix("uint16", (2, 0, 3), [])),
    Row("empty_0x0_single", "matrix", "0×0 single (only double 0×0 is `[]`)", matrix("single", (0, 0), [])),
    Row("empty_0x0_double", "matrix", "0×0 double matrix (MATLAB: `[]`)", matrix("double", (0, 0), [])),
    Row("empty_1d", "matrix", "rank-1 empty uint16 `(0,)`", matrix("uint16", (0,), [])),
    # -- logical matrices (tag 0x1F, our extension)
    Row("logical_2x3", "logical_matrix", "logical 2×3", matrix("logical", (2, 3), [1, 0, 0, 1, 1, 0])),
    Row("logical_row", "logical_matrix", "logical 1×3 → numpy `(3,)`", matrix("logical", (1, 3), [1, 0, 1])),
    Row("logical_3d", "logical_matrix", "logical 2×2×2", matrix("logical", (2, 2, 2), [1, 0, 0, 1, 0, 1, 1, 0])),
    Row("logical_1d", "logical_matrix", "logical rank 1", matrix("logical", (4,), [0, 1, 1, 0])),
    Row("logical_empty", "logical_matrix", "logical 0×2", matrix("logical", (0, 2), [])),
    # -- strings
    Row("string_ascii", "string", "'hello world'", string("hello world")),
    Row("string_empty", "string", "`''` ↔ `\"\"`, never null", string("")),
    Row("string_non_ascii", "string", "non-ASCII 'héllo wörld ñ ß Ω'", string("héllo wörld ñ ß Ω")),
    Row("string_emoji", "string", "emoji and astral characters", string("😀 emoji 🚀 𝄞")),
    Row("string_cjk", "string", "CJK '日本語テキスト'", string("日本語テキスト")),
    Row("string_nul", "string", "a string holding NUL", string("a\0b")),
    Row("string_long", "string", "10,000 two-byte characters", string("é" * 10000)),
    Row("char_rows", "string", "MATLAB multi-row char array → list of row strings",
        lst(string("abc"), string("def")), hints={"matlab": ["charmat"]}, only=("matlab",)),
    # -- lists / cells
    Row("list_empty", "list", "empty list / `{}`", lst()),
    Row("list_mixed", "list", "mixed types", lst(scalar("int64", 1), string("a"), null(), d(2.5), boolean(True))),
    Row("list_bool_int", "list", "`true` and 1 stay apart in a list",
        lst(boolean(True), scalar("int64", 1), boolean(False), scalar("int64", 0))),
    Row("list_nested", "list", "nested lists", lst(d(1), lst(d(2), lst(string("x"), lst())), lst())),
    Row("list_special_floats", "list", "NaN payload, −0 and −Inf inside a list, bit-exact",
        lst(d(NAN_PAYLOAD), d(-0.0), d(-INF))),
    Row("list_deep", "list", "lists nested 32 deep", _deep(32)),
    Row("list_strings", "list", "list of strings", lst(string("row one"), string("row two"), string(""))),
    Row("list_matrices", "list", "list of matrices",
        lst(matrix("double", (1, 3), [1, 2, 3]), matrix("int8", (2, 2), [1, -2, 3, -4]))),
    Row("list_typed_scalars", "list", "scalars of several classes inside a list",
        lst(scalar("int8", -1), scalar("single", 2.5), scalar("csingle", 1 + 1j), scalar("uint64", UINT64_MAX))),
    Row("cell_column", "list", "MATLAB N×1 cell → list", lst(d(1), string("a"), scalar("int8", 3)),
        hints={"matlab": ["col"]}, only=("matlab",)),
    Row("tuple", "list", "Python tuple → list", lst(scalar("int64", 1), string("x"), lst(d(2), null())),
        hints={"py": ["tuple"]}, only=PYTHON),
    # -- maps / structs
    Row("map_fields", "map", "keys that are field names → struct", dmap(("foo", d(1)), ("bar", string("x")))),
    Row("map_nested", "map", "nested maps", dmap(("a", dmap(("b", dmap(("c", scalar("int32", 5)))))),
                                               ("d", lst(d(1), string("two"))))),
    Row("map_empty", "map", "empty map / `struct()`", dmap()),
    Row("map_with_matrix", "map", "a map holding a matrix and null",
        dmap(("m", matrix("double", (2, 2), [1, 3, 2, 4])), ("s", string("x")), ("e", null()))),
    Row("map_other_keys", "map", "keys that are not field names → `containers.Map` (sorted keys)",
        dmap(("1x", d(2)), ("a b", d(1)), ("ünï", string("u")))),
    Row("map_nested_other_keys", "map", "`containers.Map` inside `containers.Map`",
        dmap(("x y", dmap(("p q", d(2)))))),
    Row("map_key_63", "map", "a 63-character key: still a MATLAB field name",
        dmap(("k" * 63, d(1)), ("b", d(2)))),
    Row("map_key_64", "map", "a 64-character key: too long for a field name → `containers.Map`",
        dmap(("k" * 64, d(1)), ("b", d(2)))),
    Row("map_empty_key", "map", "an empty key (MATLAB: an N×2 cell, as `containers.Map` cannot hold it)",
        dmap(("", d(1)), ("a b", d(2)))),
    Row("map_proto_key", "map", "keys `__proto__` and `constructor` stay plain data",
        dmap(("__proto__", d(1)), ("constructor", string("x")))),
    Row("map_integer_like_keys", "map", "string keys that look like integers, in their order",
        dmap(("b", d(1)), ("10", d(2)), ("2", d(3))), hints={"js": ["map"]}),
    Row("map_double_keys", "map", "numeric (double) keys",
        dmap((d(1), string("one")), (d(2.5), string("two and a half")))),
    Row("map_int_keys", "map", "int64 keys (Python `int`)", dmap((scalar("int64", 1), string("one")),
                                                                (scalar("int64", 2), string("two")))),
    Row("map_mixed_keys", "map", "keys of mixed types", dmap((scalar("int64", 1), string("a")), ("b", d(2)),
                                                             (null(), d(3)))),
    Row("list_of_maps", "map", "list of maps", lst(dmap(("a", d(1)), ("b", string("x"))),
                                                   dmap(("a", d(2)), ("b", string("y"))))),
    Row("struct_array", "map", "MATLAB 1×2 struct array → list of maps",
        lst(dmap(("q", d(1))), dmap(("q", string("two")))), hints={"matlab": ["structarray"]},
        only=("matlab",)),
    Row("containers_map_fields", "map", "MATLAB `containers.Map` whose keys are field names",
        dmap(("alpha", d(1)), ("beta", string("b"))), hints={"matlab": ["map"]}, only=("matlab",)),
]


def by_id():
    """The rows by id (checking ids are unique and usable as variable names)."""
    out = {}
    for row in ROWS:
        assert row.id not in out, row.id
        assert row.id.replace("_", "").isalnum() and row.id.islower() and "__" not in row.id, row.id
        out[row.id] = row
    return out
