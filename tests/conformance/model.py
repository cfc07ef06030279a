"""Values as the conformance suite sees them: a small tree of tuples, its
one-line token form, exact comparison and a readable rendering.

The same tree describes a value on the wire (what a sender puts there) and
a value as it arrived in a language (what a receiver's driver reports), so
a cell of the matrix passes when the receiver's description equals the
expected one exactly. Nodes:

    ("N",)                        null; Python None; JavaScript null
    ("B", bool)                   true / false
    ("S", cls, value)             a scalar of class cls. value is the
                                  big-endian bytes of the number (complex:
                                  real part, then imaginary part), except
                                  for the classes "int" (a Python int) and
                                  "bigint" (a JavaScript BigInt), whose
                                  value is a decimal string
    ("M", cls, dims, data)        a matrix / ndarray / Matrix: dims is a
                                  tuple, data the elements in column-major
                                  order, each big-endian
    ("A", cls, dims, data)        a MATLAB array (numeric, logical or char;
                                  char data is Octave's UTF-8 bytes)
    ("U", bytes)                  a string, as UTF-8
    ("L", items)                  a list / Array
    ("T", items)                  a Python tuple
    ("C", dims, items)            a MATLAB cell array (items column-major)
    ("D", pairs)                  a map / Python dict / JavaScript plain
                                  object: pairs is a tuple of (key, value)
    ("ST", dims, names, values)   a MATLAB struct array: names are bytes,
                                  values element by element, field by field
    ("MAP", keytype, pairs)       a JavaScript Map or a MATLAB
                                  containers.Map (keytype: "js", or the
                                  Map's KeyType)
    ("E", message)                the value could not be received
    ("X", text)                   a value outside the model (its type)

Classes: int8 int16 int32 int64 uint8 uint16 uint32 uint64 single double
csingle cdouble (complex single / double), logical (matrices only), char
(MATLAB arrays only), and for scalars also int, float, complex (Python's
own types), number, bigint (JavaScript's).

Token form (what drivers read and write, one value per line): prefix
notation separated by single spaces. Bytes are lowercase hex, "-" when
empty; every count comes before what it counts:

    N | B 0|1 | S cls hex|decimal | M cls rank d1..dk hex | A cls rank d1..dk hex
    U hex | L n item.. | T n item.. | C rank d1..dk item.. (prod(d) items)
    D n key value.. | ST rank d1..dk nfields name-hex.. value..
    MAP keytype n key value.. | E hex | X hex
"""

import math
import struct

#: bytes per element (per part, for complex) of each matrix class
PART_SIZE = {
    "int8": 1, "int16": 2, "int32": 4, "int64": 8,
    "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8,
    "single": 4, "double": 8, "csingle": 4, "cdouble": 8,
    "logical": 1, "char": 1,
}
COMPLEX = {"csingle", "cdouble"}
INTEGER = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def elem_size(cls):
    """Bytes per element of a class (a complex element has two parts)."""
    return PART_SIZE[cls] * (2 if cls in COMPLEX else 1)


def numel(dims):
    """The number of elements of a shape (1 for rank 0)."""
    return math.prod(dims)


# ------------------------------------------------------------ token form


def _hex(b):
    return b.hex() if b else "-"


def _unhex(t):
    return b"" if t == "-" else bytes.fromhex(t)


def to_tokens(node):
    """The token form of a node, as one string."""
    out = []
    _emit(node, out)
    return " ".join(out)


def _emit(node, out):
    kind = node[0]
    if kind == "N":
        out.append("N")
    elif kind == "B":
        out += ["B", "1" if node[1] else "0"]
    elif kind == "S":
        _, cls, value = node
        out += ["S", cls, value if isinstance(value, str) else _hex(value)]
    elif kind in ("M", "A"):
        _, cls, dims, data = node
        out += [kind, cls, str(len(dims)), *map(str, dims), _hex(data)]
    elif kind == "U":
        out += ["U", _hex(node[1])]
    elif kind in ("L", "T"):
        out += [kind, str(len(node[1]))]
        for item in node[1]:
            _emit(item, out)
    elif kind == "C":
        _, dims, items = node
        out += ["C", str(len(dims)), *map(str, dims)]
        for item in items:
            _emit(item, out)
    elif kind == "D":
        out += ["D", str(len(node[1]))]
        for k, v in node[1]:
            _emit(k, out)
            _emit(v, out)
    elif kind == "ST":
        _, dims, names, values = node
        out += ["ST", str(len(dims)), *map(str, dims), str(len(names)), *(_hex(n) for n in names)]
        for v in values:
            _emit(v, out)
    elif kind == "MAP":
        _, keytype, pairs = node
        out += ["MAP", keytype, str(len(pairs))]
        for k, v in pairs:
            _emit(k, out)
            _emit(v, out)
    elif kind in ("E", "X"):
        out += [kind, _hex(node[1].encode("utf-8"))]
    else:
        raise ValueError(f"unknown node {node!r}")


class TokenError(ValueError):
    """A driver wrote something that is not a value in token form."""


def from_tokens(text):
    """The node of a token string; raises TokenError if it is malformed."""
    tokens = text.split(" ")
    try:
        node, pos = _parse(tokens, 0)
    except (IndexError, ValueError) as e:
        raise TokenError(f"malformed value {text[:200]!r}: {e}") from None
    if pos != len(tokens):
        raise TokenError(f"{len(tokens) - pos} tokens left over in {text[:200]!r}")
    return node


def _dims(tokens, pos):
    rank = int(tokens[pos])
    dims = tuple(int(t) for t in tokens[pos + 1:pos + 1 + rank])
    if len(dims) != rank:
        raise ValueError("truncated dimensions")
    return dims, pos + 1 + rank


def _parse(tokens, pos):
    kind = tokens[pos]
    pos += 1
    if kind == "N":
        return ("N",), pos
    if kind == "B":
        if tokens[pos] not in ("0", "1"):
            raise ValueError(f"bad boolean {tokens[pos]!r}")
        return ("B", tokens[pos] == "1"), pos + 1
    if kind == "S":
        cls, raw = tokens[pos], tokens[pos + 1]
        if cls in ("int", "bigint"):
            int(raw)
            return ("S", cls, raw), pos + 2
        return ("S", cls, _unhex(raw)), pos + 2
    if kind in ("M", "A"):
        cls = tokens[pos]
        dims, pos = _dims(tokens, pos + 1)
        return (kind, cls, dims, _unhex(tokens[pos])), pos + 1
    if kind == "U":
        return ("U", _unhex(tokens[pos])), pos + 1
    if kind in ("L", "T"):
        n = int(tokens[pos])
        pos += 1
        items = []
        for _ in range(n):
            item, pos = _parse(tokens, pos)
            items.append(item)
        return (kind, tuple(items)), pos
    if kind == "C":
        dims, pos = _dims(tokens, pos)
        items = []
        for _ in range(numel(dims)):
            item, pos = _parse(tokens, pos)
            items.append(item)
        return ("C", dims, tuple(items)), pos
    if kind == "D":
        n = int(tokens[pos])
        pos += 1
        pairs = []
        for _ in range(n):
            k, pos = _parse(tokens, pos)
            v, pos = _parse(tokens, pos)
            pairs.append((k, v))
        return ("D", tuple(pairs)), pos
    if kind == "ST":
        dims, pos = _dims(tokens, pos)
        nf = int(tokens[pos])
        names = tuple(_unhex(t) for t in tokens[pos + 1:pos + 1 + nf])
        pos += 1 + nf
        values = []
        for _ in range(numel(dims) * nf):
            v, pos = _parse(tokens, pos)
            values.append(v)
        return ("ST", dims, names, tuple(values)), pos
    if kind == "MAP":
        keytype, n = tokens[pos], int(tokens[pos + 1])
        pos += 2
        pairs = []
        for _ in range(n):
            k, pos = _parse(tokens, pos)
            v, pos = _parse(tokens, pos)
            pairs.append((k, v))
        return ("MAP", keytype, tuple(pairs)), pos
    if kind in ("E", "X"):
        return (kind, _unhex(tokens[pos]).decode("utf-8", "replace")), pos + 1
    raise ValueError(f"unknown node kind {kind!r}")


# ------------------------------------------------------------ comparison


def same(a, b):
    """Whether two nodes describe the same value: equal trees, where any
    two errors ("E") match whatever their messages."""
    return _blank_errors(a) == _blank_errors(b)


def _blank_errors(x):
    if isinstance(x, tuple):
        if len(x) == 2 and x[0] == "E":
            return ("E", "")
        return tuple(_blank_errors(y) for y in x)
    return x


def contains(node, pred):
    """Whether pred holds for node or any node inside it."""
    if pred(node):
        return True
    kind = node[0]
    if kind in ("L", "T"):
        return any(contains(x, pred) for x in node[1])
    if kind == "C":
        return any(contains(x, pred) for x in node[2])
    if kind in ("D",):
        return any(contains(k, pred) or contains(v, pred) for k, v in node[1])
    if kind == "MAP":
        return any(contains(k, pred) or contains(v, pred) for k, v in node[2])
    if kind == "ST":
        return any(contains(v, pred) for v in node[3])
    return False


# ------------------------------------------------------------ values in Python


_FMT = {"int8": "b", "int16": "h", "int32": "i", "int64": "q", "uint8": "B", "uint16": "H",
        "uint32": "I", "uint64": "Q", "single": "f", "double": "d", "csingle": "f",
        "cdouble": "d", "logical": "B", "char": "B"}


def unpack(cls, data):
    """The elements of big-endian data of a class, as Python numbers
    (complex classes give complex numbers)."""
    n = len(data) // PART_SIZE[cls]
    parts = struct.unpack(f">{n}{_FMT[cls]}", data)
    if cls in COMPLEX:
        return [complex(parts[i], parts[i + 1]) for i in range(0, n, 2)]
    return list(parts)


# ------------------------------------------------------------ rendering


def _num(x, cls):
    if isinstance(x, complex):
        return f"{_num(x.real, 'double')}{'+' if not str(_num(x.imag, 'double')).startswith('-') else ''}" \
               f"{_num(x.imag, 'double')}i"
    if isinstance(x, float):
        if math.isnan(x):
            return "NaN"
        if x == 0 and math.copysign(1, x) < 0:
            return "-0"
        return repr(x) if cls != "single" else f"{x:.9g}"
    return str(x)


def _bits_note(cls, data):
    """The raw bits of NaNs, whose payloads the rendering would hide."""
    if cls not in ("single", "double", "csingle", "cdouble", "float", "complex", "number"):
        return ""
    if any(isinstance(x, float) and math.isnan(x) for x in _parts(cls, data)):
        return f" (bits {data.hex()})"
    return ""


def _parts(cls, data):
    c = {"float": "double", "complex": "cdouble", "number": "double"}.get(cls, cls)
    vals = unpack(c, data)
    out = []
    for v in vals:
        out += [v.real, v.imag] if isinstance(v, complex) else [v]
    return out


def render(node, limit=160):
    """A short human-readable rendering of a node, for reports."""
    text = _render(node)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _render(node):
    kind = node[0]
    if kind == "N":
        return "null"
    if kind == "B":
        return "true" if node[1] else "false"
    if kind == "S":
        _, cls, value = node
        if isinstance(value, str):
            return f"{cls} {value}"
        c = {"float": "double", "complex": "cdouble", "number": "double"}.get(cls, cls)
        try:
            (x,) = unpack(c, value)
        except (struct.error, ValueError, KeyError):
            return f"{cls} <{value.hex()}>"
        return f"{cls} {_num(x, c)}{_bits_note(cls, value)}"
    if kind in ("M", "A"):
        _, cls, dims, data = node
        shape = "×".join(map(str, dims)) if dims else "rank 0"
        if cls == "char":
            return f"char[{shape}] {data.decode('utf-8', 'replace')!r}"
        try:
            vals = unpack(cls, data)
        except (struct.error, KeyError):
            return f"{cls}[{shape}] <{data.hex()}>"
        if cls == "logical":
            shown = ", ".join("1" if v else "0" for v in vals[:12])
        else:
            shown = ", ".join(_num(v, cls) for v in vals[:12])
        more = ", …" if len(vals) > 12 else ""
        prefix = "MATLAB " if kind == "A" else ""
        return f"{prefix}{cls}[{shape}] [{shown}{more}]{_bits_note(cls, data)}"
    if kind == "U":
        return repr(node[1].decode("utf-8", "replace"))
    if kind == "L":
        return "[" + ", ".join(_render(x) for x in node[1]) + "]"
    if kind == "T":
        return "tuple(" + ", ".join(_render(x) for x in node[1]) + ")"
    if kind == "C":
        return f"cell[{'×'.join(map(str, node[1]))}]{{" + ", ".join(_render(x) for x in node[2]) + "}"
    if kind == "D":
        return "{" + ", ".join(f"{_render(k)}: {_render(v)}" for k, v in node[1]) + "}"
    if kind == "ST":
        _, dims, names, values = node
        fields = [n.decode("utf-8", "replace") for n in names]
        if numel(dims) == 1:
            inner = ", ".join(f"{f}={_render(v)}" for f, v in zip(fields, values))
            return f"struct({inner})"
        return f"struct[{'×'.join(map(str, dims))}] fields {fields}"
    if kind == "MAP":
        _, keytype, pairs = node
        return f"Map<{keytype}>{{" + ", ".join(f"{_render(k)}: {_render(v)}" for k, v in pairs) + "}"
    if kind == "E":
        return f"error: {node[1]}"
    if kind == "X":
        return f"unsupported value: {node[1]}"
    return repr(node)


def first_difference(want, got, path="value"):
    """Where two nodes differ first, as a sentence (None if they are the same)."""
    if same(want, got):
        return None
    if want[0] != got[0] or want[0] in ("N", "B", "S", "M", "A", "U", "E", "X"):
        return f"{path}: expected {render(want, 120)}, got {render(got, 120)}"
    if want[0] in ("L", "T"):
        if len(want[1]) != len(got[1]):
            return f"{path}: expected {len(want[1])} items, got {len(got[1])}: {render(got, 120)}"
        for i, (w, g) in enumerate(zip(want[1], got[1])):
            d = first_difference(w, g, f"{path}[{i}]")
            if d:
                return d
    if want[0] == "C":
        if want[1] != got[1]:
            return f"{path}: expected a {'×'.join(map(str, want[1]))} cell, got {'×'.join(map(str, got[1]))}"
        for i, (w, g) in enumerate(zip(want[2], got[2])):
            d = first_difference(w, g, f"{path}{{{i + 1}}}")
            if d:
                return d
    if want[0] in ("D", "MAP"):
        wp, gp = (want[1], got[1]) if want[0] == "D" else (want[2], got[2])
        if want[0] == "MAP" and want[1] != got[1]:
            return f"{path}: expected a Map with KeyType {want[1]}, got {got[1]}"
        wk, gk = [render(k) for k, _ in wp], [render(k) for k, _ in gp]
        if wk != gk:
            return f"{path}: expected keys {', '.join(wk)}; got {', '.join(gk)}"
        for (k, w), (_, g) in zip(wp, gp):
            d = first_difference(w, g, f"{path}[{render(k)}]")
            if d:
                return d
    if want[0] == "ST":
        if want[1] != got[1] or want[2] != got[2]:
            return f"{path}: expected {render(want, 120)}, got {render(got, 120)}"
        nf = len(want[2])
        for i, (w, g) in enumerate(zip(want[3], got[3])):
            d = first_difference(w, g, f"{path}({i // max(nf, 1) + 1}).{want[2][i % nf].decode()}")
            if d:
                return d
    return f"{path}: expected {render(want, 120)}, got {render(got, 120)}"
