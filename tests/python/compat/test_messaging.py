"""Groups, send, broadcast, sync, wait, devices and errors, through the
original DiME2 Python client (PyPI ``dime-client``).

Quirks of that client the tests rely on:
- ``sync_r`` returns a dict keyed by varname: a later message with the same
  varname overwrites an earlier one; ``sync`` returns the set of names and
  stores the values in the client's workspace.
- every error path does ``raise RuntimeError(status["error"])`` with no
  ``status`` in scope, so a server error surfaces as ``NameError``.
- ``send_r``/``broadcast_r`` pipeline up to 16 requests before reading the
  16 replies.
"""

import threading
import time

import pytest


def test_send_sync_between_two_clients(net):
    a = net.client("g")
    b = net.client("g")
    a.send_r("g", x=42, s="hello")
    assert b.sync_r() == {"x": 42, "s": "hello"}
    # a is a member of g too, so it got its own message.
    assert a.sync_r() == {"x": 42, "s": "hello"}
    # Queues are drained.
    assert b.sync_r() == {}
    assert a.sync_r() == {}


def test_send_from_workspace_and_sync_into_workspace(net):
    a = net.client("g")
    b = net.client("g")
    a["matrix"] = [[1, 2], [3, 4]]
    a["label"] = "m"
    a.send("g", "matrix", "label")
    assert b.sync() == {"matrix", "label"}
    assert b["matrix"] == [[1, 2], [3, 4]]
    assert b["label"] == "m"


def test_send_reaches_every_member_including_sender(net):
    a = net.client("g")
    b = net.client("g")
    c = net.client("g", "other")
    d = net.client("other")
    a.send_r("g", v=1)
    for member in (a, b, c):
        assert member.sync_r() == {"v": 1}
    assert d.sync_r() == {}


def test_send_to_group_sender_is_not_in(net):
    a = net.client("mine")
    d = net.client("theirs")
    a.send_r("theirs", v="x")
    assert d.sync_r() == {"v": "x"}
    assert a.sync_r() == {}


def test_broadcast_reaches_all_others_never_the_sender(net):
    a = net.client("ga")
    b = net.client("gb")
    c = net.client()  # joined no group at all
    d = net.client("ga")  # same group as the sender
    a.broadcast_r(x=1, y="two")
    a["z"] = [3.0]
    a.broadcast("z")
    for other in (b, c, d):
        assert other.sync_r() == {"x": 1, "y": "two", "z": [3.0]}
    assert a.sync_r() == {}


def test_sync_n_takes_from_the_front_in_fifo_order(net):
    a = net.client("g")
    b = net.client("g")
    a.send_r("g", v0=0, v1=1, v2=2, v3=3, v4=4)
    first = b.sync_r(2)
    assert list(first.items()) == [("v0", 0), ("v1", 1)]
    rest = b.sync_r()
    assert list(rest.items()) == [("v2", 2), ("v3", 3), ("v4", 4)]
    assert b.sync_r() == {}


def test_sync_same_varname_overwrites(net):
    a = net.client("g")
    b = net.client("g")
    a.send_r("g", x=1)
    a.send_r("g", x=2)
    a.send_r("g", y=3)
    # sync(2) reads two messages, both named x: the dict keeps the later one,
    # and y stays queued.
    assert b.sync_r(2) == {"x": 2}
    assert b.sync_r() == {"y": 3}
    a.send_r("g", x=10)
    a.send_r("g", x=20)
    assert b.sync_r() == {"x": 20}


def test_pipelined_sends_more_than_16(net):
    a = net.client("g")
    b = net.client("g")
    values = {f"var{i:02d}": i * i for i in range(40)}
    a.send_r("g", **values)
    got = b.sync_r()
    assert list(got.items()) == list(values.items())


def test_wait_blocks_until_a_message_arrives(net):
    a = net.client("g")
    b = net.client("g")
    errors = []

    def later():
        try:
            time.sleep(0.3)
            a.send_r("g", late="here")
        except Exception as e:  # surfaced below
            errors.append(e)

    sender = threading.Thread(target=later)
    t0 = time.monotonic()
    sender.start()
    n = b.wait()
    elapsed = time.monotonic() - t0
    sender.join(10)
    assert not errors, errors
    assert n >= 1
    assert elapsed >= 0.25, f"wait returned after {elapsed:.3f}s, before anything was sent"
    assert b.sync_r() == {"late": "here"}


def test_wait_returns_at_once_with_queued_count(net):
    a = net.client("g")
    b = net.client("g")
    a.send_r("g", p=1, q=2, r=3)
    t0 = time.monotonic()
    n = b.wait()
    assert time.monotonic() - t0 < 1.0
    assert n == 3
    # wait does not consume anything.
    assert b.sync_r(1) == {"p": 1}
    assert b.wait() == 2
    assert b.sync_r() == {"q": 2, "r": 3}


def _devices_eventually(client, expected, timeout=3.0):
    """Poll devices until it equals ``expected`` (disconnects are asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        devices = sorted(client.devices())
        if devices == sorted(expected) or time.monotonic() > deadline:
            return devices
        time.sleep(0.02)


def test_devices_lists_nonempty_groups(net):
    a = net.client()
    assert a.devices() == []
    a.join("g1", "g2")
    b = net.client("g2", "g3")
    devices = b.devices()
    assert len(devices) == len(set(devices))
    assert sorted(devices) == ["g1", "g2", "g3"]
    a.leave("g1")
    assert sorted(b.devices()) == ["g2", "g3"]
    a.leave("g2")
    assert sorted(a.devices()) == ["g2", "g3"]  # b is still in g2
    b.leave("g2")
    assert sorted(a.devices()) == ["g3"]


def test_group_disappears_when_last_member_disconnects(net):
    a = net.client("stay")
    b = net.client("gone", "stay")
    assert sorted(a.devices()) == ["gone", "stay"]
    b.close()
    assert _devices_eventually(a, ["stay"]) == ["stay"]
    # The group is really gone: sending to it is an error.
    with pytest.raises(NameError):
        a.send_r("gone", v=1)
    assert a.devices() == ["stay"]


def test_leave_stops_delivery(net):
    a = net.client("g1", "g2")
    b = net.client("g1", "g2")
    a.leave("g1")
    b.send_r("g1", one=1)
    b.send_r("g2", two=2)
    assert a.sync_r() == {"two": 2}
    assert b.sync_r() == {"one": 1, "two": 2}
    # Rejoining works after leaving.
    a.join("g1")
    b.send_r("g1", three=3)
    assert a.sync_r() == {"three": 3}


def test_leave_several_at_once(net):
    a = net.client("g1", "g2", "g3")
    a.leave("g1", "g3")
    assert a.devices() == ["g2"]


def test_leave_group_not_joined_is_an_error_and_connection_survives(net):
    a = net.client("g")
    with pytest.raises(NameError):  # the client's bug turns the error into NameError
        a.leave("never")
    assert a.devices() == ["g"]
    a.send_r("g", ok=True)
    assert a.sync_r() == {"ok": True}


def test_join_twice_is_an_error_and_connection_survives(net):
    a = net.client("g")
    with pytest.raises(NameError):  # RuntimeError(status["error"]) -> NameError
        a.join("g")
    assert a.devices() == ["g"]
    b = net.client("g")
    a.send_r("g", after=1)
    assert b.sync_r() == {"after": 1}
    assert a.sync_r() == {"after": 1}


def test_send_to_unknown_group_is_an_error_and_connection_survives(net):
    a = net.client("g")
    with pytest.raises(NameError):
        a.send_r("nobody-here", v=1)
    assert a.devices() == ["g"]
    a.send_r("g", v=2)
    assert a.sync_r() == {"v": 2}


def test_send_to_group_emptied_by_leave_is_an_error(net):
    a = net.client("g")
    b = net.client("tmp")
    b.leave("tmp")
    with pytest.raises(NameError):
        a.send_r("tmp", v=1)
    assert a.devices() == ["g"]


def test_disconnected_client_loses_queue_others_keep_theirs(net):
    a = net.client("g")
    b = net.client("g")
    c = net.client("g")
    c.send_r("g", x=1)
    b.close()
    time.sleep(0.05)
    assert a.sync_r() == {"x": 1}
    assert c.sync_r() == {"x": 1}
    # A newcomer does not inherit anything.
    d = net.client("g")
    assert d.sync_r() == {}


def test_large_payload(net):
    np = pytest.importorskip("numpy")
    a = net.client("g")
    b = net.client("g")
    big = np.arange(500_000, dtype=np.float64).reshape(1000, 500)
    a.send_r("g", big=big)
    got = b.sync_r()["big"]
    assert got.dtype == big.dtype and got.shape == big.shape
    assert np.array_equal(got, big)


def test_many_clients(net):
    clients = [net.client("all") for _ in range(20)]
    clients[0].send_r("all", hello="world")
    for c in clients:
        assert c.sync_r() == {"hello": "world"}
