"""Strict, bit-exact comparison of decoded values."""

import struct

import numpy as np


def assert_same(expected, got, path="value"):
    """Assert ``got`` equals ``expected`` in type, shape and bits (NaN and -0.0 included)."""
    if isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray), f"{path}: expected ndarray, got {type(got).__name__}"
        assert got.dtype == expected.dtype, f"{path}: dtype {got.dtype} != {expected.dtype}"
        assert got.shape == expected.shape, f"{path}: shape {got.shape} != {expected.shape}"
        # C-order bytes in native order: bit-exact, NaN payloads and -0.0 included.
        assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes(), \
            f"{path}: elements differ:\n{got!r}\n!=\n{expected!r}"
        return
    assert type(got) is type(expected), \
        f"{path}: type {type(got).__name__} != {type(expected).__name__} ({got!r} vs {expected!r})"
    if isinstance(expected, float):
        assert struct.pack("<d", got) == struct.pack("<d", expected), f"{path}: {got!r} != {expected!r}"
    elif isinstance(expected, complex):
        assert struct.pack("<dd", got.real, got.imag) == struct.pack("<dd", expected.real, expected.imag), \
            f"{path}: {got!r} != {expected!r}"
    elif isinstance(expected, list):
        assert len(got) == len(expected), f"{path}: length {len(got)} != {len(expected)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            assert_same(e, g, f"{path}[{i}]")
    elif isinstance(expected, dict):
        assert list(got.keys()) == list(expected.keys()), f"{path}: keys {list(got)} != {list(expected)}"
        for k in expected:
            assert_same(expected[k], got[k], f"{path}[{k!r}]")
    else:
        assert got == expected, f"{path}: {got!r} != {expected!r}"
