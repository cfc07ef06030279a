"""dime/_lib.py declares exactly the functions of include/dime.h, each with
the restype/argtypes its C prototype implies, and the same constants."""

import ctypes
import re
from ctypes import POINTER

import pytest

from conftest import REPO
from dime import _lib

HEADER = REPO / "include" / "dime.h"

# Every struct type the header declares, passed by pointer and declared as
# c_void_p: opaque handles (`typedef struct X X;`) and the structs the
# caller fills in (`typedef struct X { ... } X;`).
OPAQUE = (set(re.findall(r"typedef struct (\w+) \1;", HEADER.read_text()))
          | set(re.findall(r"typedef struct (\w+) \{", HEADER.read_text())))
#: Function-pointer typedefs, declared as c_void_p.
FNPTRS = {"dime_files_progress_fn"}
SCALARS = {
    "bool": ctypes.c_bool, "int8_t": ctypes.c_int8, "int16_t": ctypes.c_int16,
    "int32_t": ctypes.c_int32, "int64_t": ctypes.c_int64, "uint8_t": ctypes.c_uint8,
    "uint16_t": ctypes.c_uint16, "uint32_t": ctypes.c_uint32, "uint64_t": ctypes.c_uint64,
    "float": ctypes.c_float, "double": ctypes.c_double, "size_t": ctypes.c_size_t,
    "int": ctypes.c_int, "dime_status": ctypes.c_int, "dime_kind": ctypes.c_int,
    "dime_class": ctypes.c_uint32,
    "dime_layout": ctypes.c_uint32,
    "dime_connect_flags": ctypes.c_uint32,
    "dime_class": ctypes.c_uint32, "dime_change": ctypes.c_int,
    "dime_call_fn": _lib.CALL_FN, "dime_drop_fn": _lib.DROP_FN,
    "dime_stream_fn": _lib.STREAM_FN, "dime_change": ctypes.c_int,
}


def _source():
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def parse_functions():
    """{name: (return C type, [parameter C types])} of every prototype."""
    out = {}
    for m in re.finditer(r"([A-Za-z_][\w\s\*]*?)\b([A-Za-z_]\w*)\s*\(([^()]*)\)\s*;", _source()):
        ret, name, params = m.group(1), m.group(2), m.group(3).strip()
        ret = ret.split("}")[-1].strip()
        args = [] if params in ("", "void") else [_drop_name(p) for p in params.split(",")]
        out[name] = (" ".join(ret.split()), args)
    return out


def _drop_name(param):
    param = " ".join(param.split())
    m = re.fullmatch(r"(.*?[\s\*])(\w+)", param)
    assert m, param
    return m.group(1).strip()


def ctype_of(c):
    """The ctypes type that a C parameter/return type must be declared as."""
    stars = c.count("*")
    array_of_const = "*const*" in c.replace(" ", "")
    words = [w for w in re.sub(r"\*", " ", c).split() if w not in ("const", "struct", "enum")]
    assert len(words) == 1, c
    base = words[0]
    if base == "void":
        return {0: None, 1: ctypes.c_void_p, 2: POINTER(ctypes.c_void_p)}[stars]
    if base in FNPTRS and stars == 0:
        return ctypes.c_void_p
    if base in OPAQUE:
        return {1: ctypes.c_void_p, 2: POINTER(ctypes.c_void_p)}[stars]
    if base == "char":
        if stars == 1:
            return ctypes.c_char_p
        assert stars == 2, c
        # const char *const *: an input array of strings; const char **: an out pointer.
        return POINTER(ctypes.c_char_p) if array_of_const else POINTER(ctypes.c_void_p)
    t = SCALARS[base]
    for _ in range(stars):
        t = POINTER(t)
    return t


FUNCTIONS = parse_functions()


def test_header_parsed():
    assert len(FUNCTIONS) >= 70
    assert "dime_connect" in FUNCTIONS and "dime_matrix_take_data" in FUNCTIONS


def test_no_declared_symbol_is_missing_from_the_header():
    extra = sorted(set(_lib.SIGNATURES) - set(FUNCTIONS))
    assert not extra, f"declared in _lib but not in dime.h: {extra}"


def test_every_header_function_is_declared():
    missing = sorted(set(FUNCTIONS) - set(_lib.SIGNATURES))
    assert not missing, f"in dime.h but not declared in _lib.SIGNATURES: {missing}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_signature_matches_header(name):
    ret, params = FUNCTIONS[name]
    fn = getattr(_lib.lib, name)
    assert len(fn.argtypes) == len(params), f"{name}: {len(fn.argtypes)} argtypes, header has {params}"
    for i, (got, c) in enumerate(zip(fn.argtypes, params)):
        assert got is ctype_of(c), f"{name} arg {i} ({c}): declared {got}, expected {ctype_of(c)}"
    assert fn.restype is ctype_of(ret), f"{name} returns {ret}: declared {fn.restype}"


def test_constants_match_header():
    text = HEADER.read_text()
    found = dict(re.findall(r"DIME_((?:STATUS|KIND)_\w+) = (-?\d+)", text))
    found.update(re.findall(r"#define DIME_((?:CLASS_\w+|LAYOUT_\w+|CONNECT_\w+|WAIT_FOREVER|SYNC_ALL|RANK_ANY|PIPELINE_WINDOW)) (-?\d+)", text))
    assert len(found) > 40
    for name, value in found.items():
        assert getattr(_lib, name) == int(value), name
    # and nothing stale on our side
    ours = {n for n in vars(_lib) if re.fullmatch(r"(STATUS|KIND|CLASS)_\w+", n)}
    assert ours <= set(found), ours - set(found)


def test_library_version_matches_header():
    import dime
    m = re.search(r'#define DIME_VERSION_STRING "([^"]+)"', HEADER.read_text())
    assert dime.library_version() == m.group(1)
