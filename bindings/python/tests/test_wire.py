"""What our binding puts on the wire, and how it reads what other languages
(here: hand-made dimeb frames, as MATLAB sends them) put there."""

import pickle
import struct

import numpy as np
import pytest

import dime
from same import assert_same


def payload_of(server, transport, value):
    """The dimeb bytes our client sends for ``value``."""
    raw = server.raw(transport)
    assert raw.request({"command": "join", "name": ["w"]})["status"] == 0
    c = server.client(transport)
    c.send_r("w", v=value)
    (header, payload), = raw.sync()
    assert header["serialization"] == "dimeb" and header["varname"] == "v"
    return payload


def matrix(tag, dims, body):
    return bytes([tag, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body


@pytest.mark.parametrize("value,expected", [
    (None, b"\x00"),
    (True, b"\x01"),
    (False, b"\x02"),
    (np.bool_(True), b"\x01"),
    (5, b"\x06" + struct.pack(">q", 5)),
    (1 << 63, b"\x0a" + struct.pack(">Q", 1 << 63)),
    (np.int8(-2), b"\x03\xfe"),
    (np.int16(3), b"\x04" + struct.pack(">h", 3)),
    (np.int32(3), b"\x05" + struct.pack(">i", 3)),
    (np.uint8(3), b"\x07\x03"),
    (np.uint16(3), b"\x08" + struct.pack(">H", 3)),
    (np.uint32(3), b"\x09" + struct.pack(">I", 3)),
    (np.uint64(3), b"\x0a" + struct.pack(">Q", 3)),
    (np.float32(1), b"\x0b" + struct.pack(">f", 1)),
    (1.0, b"\x0c" + struct.pack(">d", 1)),
    (np.complex64(1 + 2j), b"\x0d" + struct.pack(">ff", 1, 2)),
    (1 + 2j, b"\x0e" + struct.pack(">dd", 1, 2)),
    ("", b"\x20\x00\x00\x00\x00"),
    ("é", b"\x20\x00\x00\x00\x02" + "é".encode()),
    ((1, "a"), b"\x21\x00\x00\x00\x02\x06" + struct.pack(">q", 1) + b"\x20\x00\x00\x00\x01a"),
    ({"k": None}, b"\x22\x00\x00\x00\x01\x20\x00\x00\x00\x01k\x00"),
    ({7: None}, b"\x22\x00\x00\x00\x01\x06" + struct.pack(">q", 7) + b"\x00"),
    # 1-D numpy -> rank 1 (MATLAB reads N x 1)
    (np.arange(3.0), matrix(0x1C, [3], struct.pack(">3d", 0, 1, 2))),
    # C-ordered 2-D -> dims as shape, elements column-major
    (np.arange(6, dtype=np.int16).reshape(2, 3), matrix(0x14, [2, 3], struct.pack(">6h", 0, 3, 1, 4, 2, 5))),
    # bool -> 0x1F, one byte per element
    (np.array([[True, False], [True, True]]), matrix(0x1F, [2, 2], bytes([1, 1, 0, 1]))),
    (np.array(2.0), matrix(0x1C, [], struct.pack(">d", 2))),
    (np.zeros((0, 3), np.int8), matrix(0x13, [0, 3], b"")),
    (np.array([1 + 2j], np.complex64), matrix(0x1D, [1], struct.pack(">ff", 1, 2))),
], ids=lambda v: repr(v)[:40] if not isinstance(v, bytes) else None)
def test_encoding(server, transport, value, expected):
    assert payload_of(server, transport, value) == expected


def test_3d_column_major_from_any_layout(server):
    a = np.arange(24, dtype=np.uint32).reshape(2, 3, 4)
    expected = matrix(0x19, [2, 3, 4], struct.pack(">24I", *a.flatten(order="F")))
    for variant in (a, np.asfortranarray(a), a[:, :, ::-1][:, :, ::-1], a.transpose(2, 1, 0).T):
        assert payload_of(server, "unix", variant) == expected


def raw_send(server, body, varname="v", serialization="dimeb"):
    """Sends a hand-made payload from a raw client to our client in group g."""
    ours = server.client("unix", "g")
    raw = server.raw("unix")
    reply = raw.request({"command": "send", "name": "g", "varname": varname,
                         "serialization": serialization}, body)
    assert reply["status"] == 0, reply
    return ours


@pytest.mark.parametrize("body,expected", [
    # MATLAB 1xN and Nx1 -> (N,)
    (matrix(0x1C, [1, 3], struct.pack(">3d", 1, 2, 3)), np.array([1.0, 2, 3])),
    (matrix(0x1C, [3, 1], struct.pack(">3d", 1, 2, 3)), np.array([1.0, 2, 3])),
    # MATLAB 2x3 column-major
    (matrix(0x15, [2, 3], struct.pack(">6i", 0, 3, 1, 4, 2, 5)), np.arange(6, dtype=np.int32).reshape(2, 3)),
    # 3-D column-major
    (matrix(0x17, [2, 2, 2], bytes(range(8))), np.arange(8, dtype=np.uint8).reshape(2, 2, 2, order="F")),
    # MATLAB logical -> bool
    (matrix(0x1F, [1, 4], bytes([1, 0, 0, 1])), np.array([True, False, False, True])),
    # MATLAB [] -> null -> None; '' -> ""
    (b"\x00", None),
    (b"\x20\x00\x00\x00\x00", ""),
    # MATLAB zeros(0,3,'int8')
    (matrix(0x13, [0, 3], b""), np.zeros((0, 3), np.int8)),
    # scalars of every class
    (b"\x03\x80", np.int8(-128)),
    (b"\x0a" + b"\xff" * 8, np.uint64((1 << 64) - 1)),
    (b"\x06\x80" + b"\x00" * 7, -(1 << 63)),
    (b"\x0b" + struct.pack(">f", 0.5), np.float32(0.5)),
    (b"\x0d" + struct.pack(">ff", 0.5, 0), np.complex64(0.5)),
    (b"\x0e" + struct.pack(">dd", 0.5, 0), 0.5 + 0j),
    # struct with a field name that is not a Python identifier; containers.Map
    (b"\x22\x00\x00\x00\x02\x20\x00\x00\x00\x03a b\x01\x20\x00\x00\x00\x01x\x02",
     {"a b": True, "x": False}),
    # a map keyed by doubles (containers.Map with numeric keys)
    (b"\x22\x00\x00\x00\x01\x0c" + struct.pack(">d", 1.5) + b"\x00", {1.5: None}),
], ids=["1xN", "Nx1", "2x3", "3d", "logical", "null", "empty-str", "0x3-int8", "int8",
        "uint64-max", "int64-min", "single", "complex-single", "complex-double", "map",
        "double-keys"])
def test_decoding(server, body, expected):
    ours = raw_send(server, body)
    assert_same(expected, ours.sync_r()["v"])


def test_pickle_payload_raises_naming_the_variable_and_client_stays_usable(server):
    ours = raw_send(server, pickle.dumps([1, 2, 3]), varname="pickled", serialization="pickle")
    raw = server.raw("unix")
    raw.request({"command": "send", "name": "g", "varname": "fine", "serialization": "dimeb"}, b"\x01")
    with pytest.raises(dime.DimeCodecError) as info:
        ours.sync_r()
    assert "pickled" in str(info.value)
    assert isinstance(info.value, dime.DimeError)
    assert ours.sync_r() == {"fine": True}


def test_corrupt_dimeb_raises_codec_error(server):
    ours = raw_send(server, b"\x21\x00\x00\x00\x05\x01", varname="broken")
    with pytest.raises(dime.DimeCodecError):
        ours.sync()
    ours.join("h")
    assert "h" in ours.devices()


def test_corrupt_dimeb_names_the_variable(server):
    ours = raw_send(server, b"\x21\x00\x00\x00\x05\x01", varname="broken")
    with pytest.raises(dime.DimeCodecError, match="broken"):
        ours.sync()
