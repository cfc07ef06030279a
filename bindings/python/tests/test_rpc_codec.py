"""Remote calls encode and decode small values in Python (dime._dimeb)
rather than through libdime values: that codec must give the library's
bytes and the library's decoded values, for every edge case of
test_types.CASES, and every case must survive a remote call."""

import numpy as np
import pytest

import dime
from dime import _dimeb
from same import assert_same
from test_types import CASES


@pytest.fixture
def wire(server):
    """(send(value) -> the library's dimeb bytes for it, the library's decoding)."""
    raw = server.raw("unix")
    assert raw.request({"command": "join", "name": ["w"]})["status"] == 0
    sender = server.client("unix")
    receiver = server.client("unix", "w2")

    def send(value):
        sender.send_r("w", v=value)
        (header, payload), = raw.sync()
        sender.send_r("w2", v=value)
        receiver.wait(timeout=10)
        return payload, receiver.sync_r()["v"]

    return send


def test_python_codec_matches_the_library(wire):
    fast = 0
    for name, sent, expected in CASES:
        payload, decoded = wire(sent)
        ours = _dimeb.encode(sent)
        if ours is not None:
            assert ours == payload, f"{name}: encoded differently"
            fast += 1
        assert_same(decoded, _dimeb.decode(payload), name)
    assert fast > 0.8 * len(CASES)          # the fast path covers the common types


def test_python_decoder_reads_the_layout_encoding(server):
    """Between our clients matrices travel in their own layout
    (``dimeb_layout``): the Python decoder reads those bytes as the library
    does, C-ordered arrays staying C-ordered."""
    raw = server.raw("unix", serialization=None)
    reply = raw.request({"command": "handshake", "serialization": "dimeb", "tls": False,
                         "extensions": ["dimeb_layout"]})
    assert reply["status"] == 0
    assert raw.request({"command": "join", "name": ["w"]})["status"] == 0
    sender = server.client("unix")
    receiver = server.client("unix", "w2")
    native = 0
    for name, sent, expected in CASES:
        sender.send_r("w", v=sent)
        (header, payload), = raw.sync()
        native += header.get("dimeb_layout", False)
        sender.send_r("w2", v=sent)
        receiver.wait(timeout=10)
        library = receiver.sync_r()["v"]
        ours = _dimeb.decode(payload)
        assert_same(ours, library, name)
        if isinstance(library, np.ndarray) and library.ndim > 1:
            assert ours.flags.c_contiguous == library.flags.c_contiguous, name
    assert native > 10                      # the matrices came in the layout encoding


@pytest.mark.parametrize("value", [
    np.zeros(_dimeb.SMALL // 8 + 1),        # a large array: the library lends it
    {1, 2},                                 # not sendable: the library's TypeError
    1 << 70,                                # the library's OverflowError
    "\ud800",                               # a lone surrogate: the library's ValueError
])
def test_what_the_python_codec_leaves_to_the_library(value):
    assert _dimeb.encode(value) is None


@pytest.mark.parametrize("payload,why", [
    (b"\x0c\x00", "truncated"),
    (b"\x06" + bytes(8) + b"\x00", "trailing"),
    (b"\x1f\x01\x00\x00\x00\x01\x02", "other than 0 or 1"),
    (b"\x20\x00\x00\x00\x01\xff", "UTF-8"),
    (b"\x23", "unknown tag"),
    (b"\x4c\x80\x01\x00\x00\x00\x01\x00" + bytes(8), "unknown flags"),
])
def test_python_decoder_refuses_invalid_bytes(payload, why):
    with pytest.raises(dime.DimeCodecError, match=why):
        _dimeb.decode(payload)


def test_an_unhashable_key_is_left_to_the_library():
    """A map keyed by an array: no dict can hold it. The Python decoder
    leaves it to the library (``NotLean``), whose error names the key's
    position (``_convert._map``; the sync path's case is in test_lean)."""
    payload = b"\x22\x00\x00\x00\x01\x1c\x01\x00\x00\x00\x01" + bytes(8) + b"\x00"
    with pytest.raises(_dimeb.NotLean):
        _dimeb.decode(payload)


def test_every_type_case_survives_a_remote_call(server):
    conn = dime.DimeClient(*server.args("unix"))
    s = dime.Server(client=conn)
    s.bind("echo", lambda x: x)
    with s:
        c = dime.Client(f"unix:{server.unix_path}")
        c.connect(retry=False)
        for name, sent, expected in CASES:
            got = c.echo(sent).result(timeout=30)
            assert_same(sent if expected is None else expected, got, name)
        c.close()
    conn.close()
