"""Serialization negotiation (docs/protocol.md §3), seen on the wire and by the
original Python client."""

import numpy as np
import pytest
from dime import dimeb

from dimewire import handshake_reply
from samevalue import assert_same

REREGISTER = {"status": 1, "meta": True, "command": "reregister", "serialization": "dimeb"}


def hs_reply(serialization):
    return handshake_reply(serialization)


def test_first_client_sets_serialization(net):
    c1 = net.raw()
    assert c1.handshake("pickle") == hs_reply("pickle")
    c1.assert_silent(0.1)


def test_pickle_then_dimeb_switches_and_reregisters_others(net):
    c1 = net.raw()
    assert c1.handshake("pickle") == hs_reply("pickle")
    c2 = net.raw()
    assert c2.handshake("dimeb") == hs_reply("dimeb")
    meta, payload = c1.recv()
    assert meta == REREGISTER
    assert payload == b""
    # The switching client itself gets no meta message: its next reply is the answer.
    assert c2.request({"command": "devices"}) == {"status": 0, "devices": []}
    # Exactly one meta message for c1.
    assert c1.request({"command": "devices"}) == {"status": 0, "devices": []}
    # Later clients are told dimeb whatever they ask for, and nobody is reregistered again.
    c3 = net.raw()
    assert c3.handshake("pickle") == hs_reply("dimeb")
    c4 = net.raw()
    assert c4.handshake("matlab") == hs_reply("dimeb")
    for c in (c1, c2, c3):
        c.assert_silent(0.2)


def test_reregister_goes_to_every_other_client(net):
    others = [net.raw() for _ in range(3)]
    for c in others:
        assert c.handshake("matlab") == hs_reply("matlab")
    switcher = net.raw()
    assert switcher.handshake("pickle") == hs_reply("dimeb")
    for c in others:
        meta, _ = c.recv()
        assert meta == REREGISTER
    switcher.assert_silent(0.2)


def test_same_serialization_does_not_switch(net):
    c1 = net.raw()
    assert c1.handshake("matlab") == hs_reply("matlab")
    c2 = net.raw()
    assert c2.handshake("matlab") == hs_reply("matlab")
    c1.assert_silent(0.2)


@pytest.mark.parametrize("first", ["json", "dimeb"])
def test_json_or_dimeb_first_never_switches(net, first):
    c1 = net.raw()
    assert c1.handshake(first) == hs_reply(first)
    c2 = net.raw()
    assert c2.handshake("pickle") == hs_reply(first)
    c3 = net.raw()
    other = "dimeb" if first == "json" else "json"
    assert c3.handshake(other) == hs_reply(first)
    c1.assert_silent(0.2)
    c2.assert_silent(0.05)


def test_handshake_missing_fields_is_a_json_parsing_error(net):
    c = net.raw()
    reply = c.request({"command": "handshake"})
    assert reply.get("status", 0) < 0, reply
    assert isinstance(reply.get("error"), str)
    assert reply["error"].startswith("JSON parsing error"), reply
    # A missing field fails the request only; the connection stays usable,
    # as in the original server.
    assert c.handshake("dimeb") == hs_reply("dimeb")
    assert net.raw().handshake("dimeb") == hs_reply("dimeb")


def test_handshake_extra_fields_are_allowed(net):
    c = net.raw()
    reply = c.request({"command": "handshake", "serialization": "dimeb", "tls": False,
                       "capabilities": ["future"], "client": "test"})
    assert reply.get("status") == 0, reply
    assert reply["serialization"] == "dimeb"
    # The original client's view is unchanged: exactly the three fields.
    old = net.raw()
    assert old.handshake("dimeb") == hs_reply("dimeb")


def test_dime_client_follows_reregister(net):
    a = net.client("g")
    b = net.client("g")
    assert a.serialization == "pickle"
    observer = net.raw()
    assert observer.handshake("dimeb") == hs_reply("dimeb")
    assert observer.request({"command": "join", "name": ["g"]}) == {"status": 0}
    # Next receive of each dime-client consumes the meta message.
    assert sorted(a.devices()) == ["g"]
    assert a.serialization == "dimeb"
    arr = np.arange(12, dtype=np.complex64).reshape(2, 3, 2) * (1 - 1j)
    a.send_r("g", arr=arr)
    # On the wire it is dimeb now.
    (header, payload), = observer.sync()
    assert header["serialization"] == "dimeb"
    assert payload == dimeb.dumps(arr)
    got = b.sync_r()
    assert b.serialization == "dimeb"
    assert_same(arr, got["arr"])
    # A new dime-client gets dimeb straight from its handshake.
    c = net.client("g")
    assert c.serialization == "dimeb"


def test_messages_queued_before_switch_decode_by_their_own_header(net):
    a = net.client("g")
    b = net.client("g")
    a.send_r("g", before=np.arange(4, dtype=np.int64))  # pickle
    forcer = net.raw()
    assert forcer.handshake("dimeb") == hs_reply("dimeb")
    a.devices()
    assert a.serialization == "dimeb"
    a.send_r("g", after=np.arange(4, dtype=np.int64))  # dimeb
    got = b.sync_r()
    assert list(got) == ["before", "after"]
    assert_same(np.arange(4, dtype=np.int64), got["before"])
    assert_same(np.arange(4, dtype=np.int64), got["after"])
    assert b.serialization == "dimeb"


def test_raw_dimeb_client_talks_to_dime_client(net):
    """A dimeb sender built without the dime package, read by the original client."""
    a = net.client("g")
    raw = net.raw()
    assert raw.handshake("dimeb") == hs_reply("dimeb")
    # Tag 0x1C = double matrix; rank 2; dims 2x3; column-major elements.
    import struct
    payload = struct.pack("!BBII", 0x1C, 2, 2, 3) + struct.pack("!6d", 1, 4, 2, 5, 3, 6)
    reply = raw.request({"command": "send", "name": "g", "varname": "m",
                         "serialization": "dimeb"}, payload)
    assert reply == {"status": 0}
    got = a.sync_r()
    assert_same(np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), got["m"])
    assert a.serialization == "dimeb"


def test_reregister_arrives_during_wait(net):
    """A meta message may come while the client is blocked in wait; the
    original client handles it and keeps waiting for the real reply."""
    import threading
    import time

    a = net.client("g")
    b = net.client("g")
    errors = []

    def later():
        try:
            time.sleep(0.2)
            forcer = net.raw()
            assert forcer.handshake("dimeb") == hs_reply("dimeb")
            time.sleep(0.2)
            # Let b take its meta message first: if it arrived among send_r's
            # replies, the original client would send everything again.
            b.devices()
            b.send_r("g", x=np.arange(3, dtype=np.uint16))
        except Exception as e:  # surfaced below
            errors.append(e)

    t = threading.Thread(target=later)
    t.start()
    n = a.wait()
    t.join(10)
    assert not errors, errors
    assert n == 1
    assert a.serialization == "dimeb"
    assert b.serialization == "dimeb"
    assert_same(np.arange(3, dtype=np.uint16), a.sync_r()["x"])
