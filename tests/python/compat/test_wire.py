"""Protocol edges on raw frames (docs/protocol.md §1, §2 and §5)."""

import struct
import time

import pytest

from dimewire import encode_frame, handshake_reply


def assert_error(reply, message=None, prefix=None):
    assert reply.get("status", 0) < 0, reply
    assert isinstance(reply.get("error"), str) and reply["error"], reply
    if message is not None:
        assert reply["error"] == message, reply
    if prefix is not None:
        assert reply["error"].startswith(prefix), reply


def assert_usable(client, groups=()):
    assert sorted(client.devices()) == sorted(groups)


# -- failed commands keep the connection ---------------------------------

def test_unknown_command_is_an_error_and_connection_survives(net):
    c = net.raw("dimeb")
    reply = c.request({"command": "frobnicate"})
    assert_error(reply)
    assert_usable(c)


@pytest.mark.parametrize("header", [
    {"foo": 1},
    {"command": 5},
    {"command": None},
    {"command": ["join"]},
    {},
], ids=["no-command", "int", "null", "list", "empty"])
def test_no_string_command_is_unknown_command(net, header):
    c = net.raw("dimeb")
    assert c.request(header) == {"status": -1, "error": "Unknown command"}
    assert_usable(c)


def test_join_twice_error_message(net):
    c = net.raw("dimeb")
    assert c.request({"command": "join", "name": ["g"]}) == {"status": 0}
    assert_error(c.request({"command": "join", "name": ["g"]}), "Client is already in group: g")
    assert_usable(c, ["g"])


def test_join_non_string_name(net):
    # A mistyped field fails the request only, as in the original server:
    # the frame arrived whole, so the connection stays usable.
    c = net.raw("dimeb")
    bystander = net.raw("dimeb")
    assert_error(c.request({"command": "join", "name": [1]}), prefix="JSON parsing error")
    assert_usable(c)
    assert_usable(bystander)


@pytest.mark.parametrize("header", [
    {"command": "join", "name": [5]},
    {"command": "send", "varname": "x", "serialization": "dimeb"},
    {"command": "broadcast", "serialization": "dimeb"},
    {"command": "sync", "n": "all"},
    {"command": "wait", "timeout": "soon"},
], ids=["join-int", "send-no-name", "broadcast-no-varname", "sync-n-string", "wait-timeout-string"])
def test_bad_field_keeps_the_connection_and_its_queue(net, header):
    c = net.raw("dimeb")
    assert c.request({"command": "join", "name": ["q"]}) == {"status": 0}
    sender = net.raw("dimeb")
    sent = {"command": "send", "name": "q", "varname": "v", "serialization": "dimeb"}
    for i in range(3):
        assert sender.request(sent, bytes([0x03, i])) == {"status": 0}
    assert_error(c.request(header))
    assert c.sync() == [(sent, bytes([0x03, i])) for i in range(3)]
    assert_usable(c, ["q"])


def test_send_without_serialization_is_relayed_as_given(net):
    c = net.raw("dimeb")
    assert c.request({"command": "join", "name": ["g"]}) == {"status": 0}
    sender = net.raw("dimeb")
    bare = {"command": "send", "name": "g", "varname": "x"}
    extra = {"command": "broadcast", "varname": "y", "extra": [1, {"a": None}]}
    assert sender.request(bare, b"\x01") == {"status": 0}
    assert sender.request(extra, b"\x02") == {"status": 0}
    assert c.sync() == [(bare, b"\x01"), (extra, b"\x02")]


def test_leave_not_joined_error_message(net):
    c = net.raw("dimeb")
    assert_error(c.request({"command": "leave", "name": ["g"]}), "Client is not in group: g")
    assert_usable(c)


def test_send_unknown_group_error_message(net):
    c = net.raw("dimeb")
    reply = c.request({"command": "send", "name": "nope", "varname": "x",
                       "serialization": "dimeb"}, b"\x00")
    assert_error(reply, "No such group exists: nope")
    assert_usable(c)


# -- relaying ------------------------------------------------------------

def test_sync_relays_original_header_and_payload(net):
    a = net.raw("dimeb")
    b = net.raw("dimeb")
    for c in (a, b):
        assert c.request({"command": "join", "name": ["g"]}) == {"status": 0}
    header = {"command": "send", "name": "g", "varname": "x", "serialization": "dimeb",
              "extra": {"kept": [1, 2]}}
    payload = bytes(range(256)) * 3
    assert a.request(header, payload) == {"status": 0}
    messages = b.sync()
    assert messages == [(header, payload)]
    assert a.sync() == [(header, payload)]


def test_empty_payload_is_relayed(net):
    a = net.raw("dimeb")
    assert a.request({"command": "join", "name": ["g"]}) == {"status": 0}
    header = {"command": "send", "name": "g", "varname": "x", "serialization": "dimeb"}
    assert a.request(header, b"") == {"status": 0}
    assert a.sync() == [(header, b"")]


def test_broadcast_reaches_client_without_groups(net):
    a = net.raw("dimeb")
    b = net.raw("dimeb")
    header = {"command": "broadcast", "varname": "v", "serialization": "dimeb"}
    assert a.request(header, b"\x01") == {"status": 0}
    assert b.sync() == [(header, b"\x01")]
    assert a.sync() == []


def test_sync_n_zero_and_negative(net):
    a = net.raw("dimeb")
    assert a.request({"command": "join", "name": ["g"]}) == {"status": 0}
    for i in range(3):
        assert a.request({"command": "send", "name": "g", "varname": f"v{i}",
                          "serialization": "dimeb"}, bytes([i])) == {"status": 0}
    assert a.sync(0) == []
    got = a.sync(1)
    assert [h["varname"] for h, _ in got] == ["v0"]
    got = a.sync(-5)
    assert [h["varname"] for h, _ in got] == ["v1", "v2"]
    assert [p for _, p in got] == [b"\x01", b"\x02"]


# -- framing -------------------------------------------------------------

def test_frame_split_into_single_bytes(net):
    c = net.raw()
    data = encode_frame({"command": "handshake", "serialization": "dimeb", "tls": False})
    for i in range(len(data)):
        c.send_bytes(data[i:i + 1])
        if i % 7 == 0:
            time.sleep(0.002)
    reply, _ = c.recv()
    assert reply == handshake_reply("dimeb")


def test_several_frames_in_one_write(net):
    c = net.raw()
    send = {"command": "send", "name": "g", "varname": "x", "serialization": "dimeb"}
    data = b"".join([
        encode_frame({"command": "handshake", "serialization": "dimeb", "tls": False}),
        encode_frame({"command": "join", "name": ["g"]}),
        encode_frame(send, b"\x06" + struct.pack("!q", -1)),
        encode_frame({"command": "devices"}),
        encode_frame({"command": "sync", "n": -1}),
    ])
    c.send_bytes(data)
    assert c.recv()[0] == handshake_reply("dimeb")
    assert c.recv()[0] == {"status": 0}
    assert c.recv()[0] == {"status": 0}
    assert c.recv()[0] == {"status": 0, "devices": ["g"]}
    assert c.recv() == (send, b"\x06" + struct.pack("!q", -1))
    assert c.recv()[0] == {"status": 0}


# -- wait ----------------------------------------------------------------

def test_wait_replies_once_and_keeps_request_order(net):
    a = net.raw("dimeb")
    b = net.raw("dimeb")
    assert a.request({"command": "join", "name": ["g"]}) == {"status": 0}
    # Pipeline wait and devices: devices must not be answered before wait.
    a.send({"command": "wait"})
    a.send({"command": "devices"})
    a.assert_silent(0.3)
    send = {"command": "send", "name": "g", "varname": "x", "serialization": "dimeb"}
    assert b.request(send, b"\x00") == {"status": 0}
    assert b.request(send, b"\x01") == {"status": 0}
    first, _ = a.recv()
    assert first["status"] == 0 and first["n"] >= 1, first
    assert a.recv()[0] == {"status": 0, "devices": ["g"]}
    # The wait answered once: the second message brings nothing unasked.
    a.assert_silent(0.3)
    assert [p for _, p in a.sync()] == [b"\x00", b"\x01"]


def test_wait_with_queued_messages_answers_at_once(net):
    a = net.raw("dimeb")
    assert a.request({"command": "join", "name": ["g"]}) == {"status": 0}
    send = {"command": "send", "name": "g", "varname": "x", "serialization": "dimeb"}
    for _ in range(2):
        assert a.request(send, b"\x00") == {"status": 0}
    assert a.request({"command": "wait"}, timeout=2.0) == {"status": 0, "n": 2}


def test_broadcast_wakes_waiting_client(net):
    a = net.raw("dimeb")
    b = net.raw("dimeb")
    a.send({"command": "wait"})
    a.assert_silent(0.2)
    assert b.request({"command": "broadcast", "varname": "x", "serialization": "dimeb"},
                     b"\x00") == {"status": 0}
    assert a.recv()[0] == {"status": 0, "n": 1}


# -- broken frames close only that connection ------------------------------

def _bystander(net):
    other = net.raw("dimeb")
    assert other.request({"command": "join", "name": ["ok"]}) == {"status": 0}
    return other


def _assert_bystander_fine(net, other):
    assert other.devices() == ["ok"]
    header = {"command": "send", "name": "ok", "varname": "v", "serialization": "dimeb"}
    assert other.request(header, b"\x01") == {"status": 0}
    assert other.sync() == [(header, b"\x01")]
    # And the server still accepts new clients.
    fresh = net.raw("dimeb")
    assert fresh.devices() == ["ok"]


def _bad_frame_closes(net, data, handshake=True):
    other = _bystander(net)
    bad = net.raw("dimeb" if handshake else None)
    bad.send_bytes(data)
    reply, _ = bad.recv()
    assert_error(reply)
    bad.assert_closed()
    _assert_bystander_fine(net, other)


@pytest.mark.parametrize("handshake", [True, False], ids=["after-handshake", "first-bytes"])
def test_bad_magic_gets_error_then_close(net, handshake):
    _bad_frame_closes(net, encode_frame({"command": "devices"}, magic=b"DIME"), handshake)


def test_garbage_bytes_get_error_then_close(net):
    _bad_frame_closes(net, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


@pytest.mark.parametrize("header", [b"{not json", b"[1,2,3]", b"", b"\xff\xfe"],
                         ids=["invalid", "not-an-object", "empty", "not-utf8"])
def test_header_that_is_not_a_json_object_gets_error_and_keeps_the_connection(net, header):
    # The frame itself is intact, so the stream can be followed past it.
    other = _bystander(net)
    c = net.raw("dimeb")
    c.send_bytes(encode_frame(header))
    reply, _ = c.recv()
    assert_error(reply, prefix="JSON parsing error")
    assert_usable(c, ["ok"])
    _assert_bystander_fine(net, other)


def test_declared_length_over_default_limit_gets_error_then_close(net):
    # Header and payload both at the u32 maximum: 8 GiB, over any default limit.
    data = struct.pack("!4sII", b"DiME", 0xFFFFFFFF, 0xFFFFFFFF) + b"{"
    _bad_frame_closes(net, data)


@pytest.mark.server_args("--max-message", "4096")
def test_message_over_configured_limit_gets_error_then_close(net):
    ok = {"command": "send", "name": "ok", "varname": "v", "serialization": "dimeb"}
    other = _bystander(net)
    # Just under the limit passes.
    assert other.request(ok, b"\x00" * 3000) == {"status": 0}
    assert [len(p) for _, p in other.sync()] == [3000]
    _bad_frame_closes(net, encode_frame(ok, b"\x00" * 5000))


def test_client_vanishing_mid_frame_does_not_disturb_others(net):
    other = _bystander(net)
    c = net.raw("dimeb")
    frame = encode_frame({"command": "send", "name": "ok", "varname": "v",
                          "serialization": "dimeb"}, b"\x00" * 1000)
    c.send_bytes(frame[:500])
    c.close()
    time.sleep(0.05)
    assert other.sync() == []
    _assert_bystander_fine(net, other)


def test_thousands_of_pipelined_requests(net):
    a = net.raw("dimeb")
    b = net.raw("dimeb")
    assert b.request({"command": "join", "name": ["g"]}) == {"status": 0}
    count = 2000
    frames = b"".join(
        encode_frame({"command": "send", "name": "g", "varname": f"v{i}",
                      "serialization": "dimeb"}, struct.pack("!Bq", 0x06, i))
        for i in range(count))
    a.send_bytes(frames)
    for _ in range(count):
        assert a.recv()[0] == {"status": 0}
    messages = b.sync()
    assert [h["varname"] for h, _ in messages] == [f"v{i}" for i in range(count)]
    assert [struct.unpack("!Bq", p)[1] for _, p in messages] == list(range(count))
