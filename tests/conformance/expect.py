"""The type table as code: what each client puts on the wire for a row, and
what each client's value looks like after it receives a wire value.

These are the documented rules (README "The type table", docs/protocol.md
§4 "Shapes and types across languages", matlab/README.md,
bindings/javascript/README.md, bindings/python/dime/_convert.py); a cell
passes when a receiver's description of what arrived equals
`receive(receiver, sent(sender, row))` exactly.
"""

import re
import struct

from model import COMPLEX, INTEGER, contains, numel

#: The clients, in the order of the matrix: id -> label.
CLIENTS = {
    "c": "C (libdime)",
    "py": "Python (ours)",
    "matlab": "MATLAB/Octave (MEX)",
    "js": "JavaScript (Node)",
    "dime_client": "Python (original dime-client)",
}

# ------------------------------------------------------------ senders


def not_expressible(sender, value):
    """Why `sender` has no value that puts `value` on the wire, or None.

    Only MATLAB has such gaps: its arrays have at least two dimensions and a
    1×1 array is a scalar, so some matrices cannot be built there at all.
    (What a client can build but fails to send is a cell result, not this.)
    """
    if sender != "matlab":
        return None
    reasons = []
    contains(value, lambda n: _matlab_gap(n, reasons))
    return reasons[0] if reasons else None


def _matlab_gap(node, reasons):
    kind = node[0]
    if kind == "M":
        _, cls, dims, _ = node
        if len(dims) < 2:
            reasons.append("MATLAB arrays have at least 2 dimensions (rank 0 and 1 cannot be built)")
        elif numel(dims) == 1:
            reasons.append("a MATLAB 1×1 array is a scalar and goes as a scalar tag")
        elif cls == "double" and dims == (0, 0):
            reasons.append("MATLAB's 0×0 double is `[]`, which goes as null")
        elif len(dims) > 2 and dims[-1] == 1:
            reasons.append("MATLAB drops trailing singleton dimensions (2×3×1 is 2×3)")
    elif kind == "D":
        keys = [k for k, _ in node[1]]
        if any(k == ("U", b"") for k in keys):
            reasons.append("neither a struct nor Octave's `containers.Map` can have an empty key")
        elif not _struct_keys(keys) and not _map_keys(keys):
            reasons.append("a `containers.Map` has keys of one type (all char or all of one numeric class)")
    return False


_FIELD = re.compile(rb"[A-Za-z][A-Za-z0-9_]{0,62}\Z")
MAP_MARKER = b"dime__containers_Map__"


def _struct_keys(keys):
    """Whether MATLAB holds a map with these keys as a struct: all strings,
    distinct, valid field names (matlab/mex_convert.c)."""
    names = [k[1] for k in keys if k[0] == "U"]
    return (len(names) == len(keys) and len(set(names)) == len(names)
            and all(_FIELD.match(n) and n != MAP_MARKER for n in names))


def _map_keys(keys):
    """Whether a containers.Map can hold these keys as they are."""
    if all(k[0] == "U" and k[1] for k in keys):
        return True
    classes = {k[1] for k in keys if k[0] == "S"}
    return (all(k[0] == "S" for k in keys) and len(classes) == 1
            and classes <= {"double", "single", "int32", "uint32", "int64", "uint64"})


def sent(sender, value, hints=()):
    """What `sender` puts on the wire when it builds `value`: the value
    itself, except that a MATLAB containers.Map sends its keys sorted."""
    if sender == "matlab":
        return _matlab_sent(value, hints, top=True)
    return value


def _matlab_sent(node, hints, top):
    kind = node[0]
    if kind == "L":
        return ("L", tuple(_matlab_sent(x, (), False) for x in node[1]))
    if kind == "D":
        pairs = tuple((k, _matlab_sent(v, (), False)) for k, v in node[1])
        as_map = not _struct_keys([k for k, _ in pairs]) or (top and "map" in hints)
        if as_map:
            pairs = tuple(sorted(pairs, key=lambda p: _matlab_key_order(p[0])))
        return ("D", pairs)
    return node


def _matlab_key_order(key):
    """containers.Map's key order: char keys by their bytes, numbers by value."""
    if key[0] == "U":
        return (0, key[1], 0)
    return (1, b"", _scalar_value(key))


def _scalar_value(node):
    _, cls, data = node
    if cls in INTEGER:
        return int.from_bytes(data, "big", signed=cls.startswith("int"))
    return struct.unpack(">f" if cls == "single" else ">d", data)[0]


# ------------------------------------------------------------ receivers


def receive(receiver, wire):
    """What `receiver`'s value looks like after it receives `wire`."""
    return _RECEIVE[receiver](wire)


def _c(node):
    """C: the dime_value kinds are the wire's."""
    return node


def _python(node):
    """Our Python binding (and the Python column of the type table):
    int64 -> int, double -> float, complex double -> complex, the other
    scalar classes -> numpy scalars; a rank-2 matrix with a dimension of 1
    is 1-D; list -> list, map -> dict."""
    kind = node[0]
    if kind == "S":
        _, cls, data = node
        if cls == "int64":
            return ("S", "int", str(int.from_bytes(data, "big", signed=True)))
        if cls == "double":
            return ("S", "float", data)
        if cls == "cdouble":
            return ("S", "complex", data)
        return node
    if kind == "M":
        _, cls, dims, data = node
        if len(dims) == 2 and (dims[0] == 1 or dims[1] == 1):
            dims = (dims[1],) if dims[0] == 1 else (dims[0],)
        return ("M", cls, dims, data)
    if kind == "L":
        return ("L", tuple(_python(x) for x in node[1]))
    if kind == "D":
        return ("D", tuple((_python(k), _python(v)) for k, v in node[1]))
    return node


def _js(node):
    """JavaScript (default decoding): double and the int8..uint32 and
    single scalars -> number, int64/uint64 -> BigInt, complex -> Complex,
    matrices keep class and shape, map -> a plain object when every key is
    a string, else a Map."""
    kind = node[0]
    if kind == "S":
        _, cls, data = node
        if cls in ("int64", "uint64"):
            return ("S", "bigint", str(_scalar_value(node)))
        if cls in COMPLEX:
            return node
        return ("S", "number", struct.pack(">d", _scalar_value(node)))
    if kind == "L":
        return ("L", tuple(_js(x) for x in node[1]))
    if kind == "D":
        pairs = tuple((_js(k), _js(v)) for k, v in node[1])
        if all(k[0] == "U" for k, _ in node[1]):
            return ("D", pairs)
        return ("MAP", "js", pairs)
    return node


def _matlab(node):
    """MATLAB (GNU Octave): null -> [] (0×0 double); scalars -> 1×1 arrays
    of their class; rank 0 -> 1×1, rank 1 -> N×1, trailing singleton
    dimensions dropped; strings -> char rows (UTF-8 bytes in Octave; '' is
    0×0); lists -> 1×N cells ({} when empty); maps -> a struct when every key
    is a distinct valid field name, else a containers.Map with char keys (none
    empty), or double keys when every key is a real number, else an N×2 cell
    {key, value; …}."""
    kind = node[0]
    if kind == "N":
        return ("A", "double", (0, 0), b"")
    if kind == "B":
        return ("A", "logical", (1, 1), b"\x01" if node[1] else b"\x00")
    if kind == "S":
        return ("A", node[1], (1, 1), node[2])
    if kind == "M":
        _, cls, dims, data = node
        if len(dims) == 0:
            dims = (1, 1)
        elif len(dims) == 1:
            dims = (dims[0], 1)
        while len(dims) > 2 and dims[-1] == 1:
            dims = dims[:-1]
        return ("A", cls, dims, data)
    if kind == "U":
        data = node[1]
        return ("A", "char", (1, len(data)) if data else (0, 0), data)
    if kind == "L":
        items = tuple(_matlab(x) for x in node[1])
        return ("C", (1, len(items)) if items else (0, 0), items)
    if kind == "D":
        keys = [k for k, _ in node[1]]
        if _struct_keys(keys):
            return ("ST", (1, 1), tuple(k[1] for k in keys), tuple(_matlab(v) for _, v in node[1]))
        pairs = [(k, _matlab(v)) for k, v in node[1]]
        if all(k[0] == "U" and k[1] for k in keys):
            pairs.sort(key=lambda p: p[0][1])
            return ("MAP", "char", tuple((_matlab(k), v) for k, v in pairs))
        if all(k[0] == "S" and k[1] not in COMPLEX for k in keys):
            pairs.sort(key=lambda p: _scalar_value(p[0]))
            return ("MAP", "double", tuple((("A", "double", (1, 1), struct.pack(">d", _scalar_value(k))), v)
                                           for k, v in pairs))
        n = len(pairs)
        return ("C", (n, 2), tuple(_matlab(k) for k in keys) + tuple(v for _, v in pairs))
    return node


_RECEIVE = {"c": _c, "py": _python, "dime_client": _python, "js": _js, "matlab": _matlab}
