"""Strict comparison: type, dtype, shape and bits (NaN payloads and -0.0 included)."""

import struct

import numpy as np


def assert_same(expected, got, path="value"):
    if isinstance(expected, np.ndarray):
        assert type(got) is np.ndarray, f"{path}: expected ndarray, got {type(got).__name__}"
        assert got.dtype == expected.dtype, f"{path}: dtype {got.dtype} != {expected.dtype}"
        assert got.shape == expected.shape, f"{path}: shape {got.shape} != {expected.shape}"
        assert np.ascontiguousarray(got).tobytes() == np.ascontiguousarray(expected).tobytes(), \
            f"{path}: elements differ:\n{got!r}\n!=\n{expected!r}"
        return
    assert type(got) is type(expected), \
        f"{path}: type {type(got).__name__} != {type(expected).__name__} ({got!r} vs {expected!r})"
    if isinstance(expected, np.generic):
        assert got.tobytes() == expected.tobytes(), f"{path}: {got!r} != {expected!r}"
    elif isinstance(expected, float):
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
        for (ke, e), (kg, g) in zip(expected.items(), got.items()):
            assert_same(ke, kg, f"{path} key {ke!r}")
            assert_same(e, g, f"{path}[{ke!r}]")
    elif isinstance(expected, tuple):
        assert len(got) == len(expected)
        for i, (e, g) in enumerate(zip(expected, got)):
            assert_same(e, g, f"{path}[{i}]")
    else:
        assert got == expected, f"{path}: {got!r} != {expected!r}"
