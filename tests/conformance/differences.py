"""The documented, deliberate differences: cells of the matrix that do not
arrive as the type table says, and why that is expected.

Each difference says precisely what happens instead, so a cell only counts
as a documented difference when exactly that happens; a difference that no
longer happens fails the run (the documentation would be stale).

- `send_failures(sender, row)`: the differences that make `sender` refuse
  to send a row (the row's cells then hold that refusal for every receiver).
- `receive_instead(receiver, wire)`: what a receiver gets instead of the
  type table's value, with the differences responsible, or None.
"""

import re
import struct

from expect import receive
from model import contains

#: id -> (title, reason), in the order the summary lists them.
DIFFERENCES = {
    "original-sends-no-numpy-scalars": (
        "The original Python client cannot send numpy scalars",
        "PyPI `dime-client` encodes `int`, `float` and `complex` only; a numpy scalar other than "
        "`np.float64` (`np.int8(-128)`, `np.float32(0.1)`, `np.uint64(42)`, `np.complex64(…)`) "
        "raises `TypeError` in its encoder, so it has no way to send the int8…uint64 (but int64), "
        "single and complex single scalar tags. Our binding sends each as its own class."),
    "original-sends-no-logical-arrays": (
        "The original Python client cannot send bool arrays",
        "Its encoder has no tag for a numpy `bool` array (`KeyError`): logical matrices are tag "
        "0x1F, our extension (docs/protocol.md §4)."),
    "original-sends-no-big-ints": (
        "The original Python client cannot send an `int` of 2**63 or more",
        "It packs every `int` as int64 (`struct.error` beyond); ours sends it as uint64 when it "
        "fits and refuses it otherwise, never wrapping."),
    "original-receives-scalar-classes-as-python-numbers": (
        "The original Python client decodes scalars to Python numbers",
        "PyPI `dime-client` decodes every integer scalar tag to `int`, single to `float` and complex "
        "single to `complex`, so the class of an int8…uint64 (but int64), single or complex single "
        "scalar is lost (the value is exact). Our binding returns numpy scalars of the class "
        "(`np.int8`, `np.float32`, `np.complex64`, …) so a round trip keeps it."),
    "original-receives-no-logical-arrays": (
        "The original Python client cannot decode logical matrices",
        "Its decoder has no tag 0x1F (our extension) and raises `KeyError` for the whole value."),
    "original-receives-no-rank0": (
        "The original Python client cannot decode rank-0 matrices",
        "Its decoder computes the element count of an empty shape as a float and raises "
        "`TypeError`; ours decodes a 0-d array."),
    "js-object-integer-keys-first": (
        "JavaScript objects put integer-like keys first",
        "A map whose keys are all strings decodes to a plain object, and JavaScript orders an "
        "object's integer-like keys (`\"2\"`, `\"10\"`) before the others, in numeric order, "
        "whatever the order on the wire. Decode with `{maps: \"map\"}` to keep every map's order "
        "(bindings/javascript/README.md)."),
}


def send_failures(sender, row):
    """The differences that make `sender` refuse to send `row` (empty: none)."""
    if sender != "dime_client":
        return set()
    ids = set()
    # The Python driver builds a uint64 row hinted "pyint" as a Python int.
    big_int = row.value if row.value[0] == "S" and "pyint" in row.hints.get("py", ()) else None

    def check(node):
        if node is big_int:
            ids.add("original-sends-no-big-ints")
        elif node[0] == "S" and node[1] not in ("int64", "double", "cdouble"):
            ids.add("original-sends-no-numpy-scalars")
        elif node[0] == "M" and node[1] == "logical":
            ids.add("original-sends-no-logical-arrays")
        return False

    contains(row.value, check)
    return ids


def receive_instead(receiver, wire):
    """(value, difference ids) the receiver gets instead of the type table's
    value for `wire`, or None when no difference applies."""
    if receiver == "dime_client":
        ids = set()
        alt = _original(wire, ids)
        return (alt, ids) if ids else None
    if receiver == "js":
        ids = set()
        alt = _js_object_order(wire, ids)
        return (alt, ids) if ids else None
    return None


class _Refused(Exception):
    """The original decoder raises on this value (the whole value is lost)."""


def _original(wire, ids):
    """What PyPI dime-client's decoder makes of `wire` (dime/dimeb.py of
    dime-client 0.0.1): an error for the whole value if any part of it is
    one it cannot decode."""
    try:
        return _original_value(wire, ids)
    except _Refused as e:
        return ("E", str(e))


def _original_value(node, ids):
    kind = node[0]
    if kind == "S":
        _, cls, data = node
        if cls in ("int8", "int16", "int32", "uint8", "uint16", "uint32", "uint64"):
            ids.add("original-receives-scalar-classes-as-python-numbers")
            return ("S", "int", str(int.from_bytes(data, "big", signed=cls.startswith("int"))))
        if cls == "single":
            ids.add("original-receives-scalar-classes-as-python-numbers")
            return ("S", "float", struct.pack(">d", struct.unpack(">f", data)[0]))
        if cls == "csingle":
            ids.add("original-receives-scalar-classes-as-python-numbers")
            return ("S", "complex", struct.pack(">dd", *struct.unpack(">ff", data)))
        return receive("py", node)
    if kind == "M":
        if node[1] == "logical":
            ids.add("original-receives-no-logical-arrays")
            raise _Refused("KeyError: tag 0x1f")
        if len(node[2]) == 0:
            ids.add("original-receives-no-rank0")
            raise _Refused("TypeError: rank-0 matrix")
        return receive("py", node)
    if kind == "L":
        return ("L", tuple(_original_value(x, ids) for x in node[1]))
    if kind == "D":
        return ("D", tuple((_original_value(k, ids), _original_value(v, ids)) for k, v in node[1]))
    return receive("py", node)


_ARRAY_INDEX = re.compile(rb"(0|[1-9][0-9]*)\Z")


def _js_object_order(node, ids):
    """Our JavaScript decoding with the engine's own order of object keys:
    integer-like keys (array indices) first, ascending, then the rest in
    insertion order."""
    kind = node[0]
    if kind == "L":
        return ("L", tuple(_js_object_order(x, ids) for x in node[1]))
    if kind == "D":
        pairs = [(k, v) for k, v in node[1]]
        if not all(k[0] == "U" for k, _ in pairs):
            return receive("js", node)
        converted = [(k, _js_object_order(v, ids)) for k, v in pairs]

        def is_index(k):
            return bool(_ARRAY_INDEX.match(k[1])) and int(k[1]) < 2 ** 32 - 1

        first = sorted((p for p in converted if is_index(p[0])), key=lambda p: int(p[0][1]))
        rest = [p for p in converted if not is_index(p[0])]
        ordered = tuple(first + rest)
        if ordered != tuple(converted):
            ids.add("js-object-integer-keys-first")
        return ("D", ordered)
    return receive("js", node)
