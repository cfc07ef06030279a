"""DiME2 client behaviours: groups, broadcast, sync(n), wait, devices, leave,
errors as exceptions, constructor forms, handles."""

import collections.abc
import gc
import os
import threading
import time

import numpy as np
import pytest

import dime
from dime.client import address_of


def test_group_with_several_members_all_receive_including_sender(server, transport):
    a, b, c = (server.client(transport, "g") for _ in range(3))
    outsider = server.client(transport, "other")
    a.send_r("g", x=1, y="two")
    for cl in (a, b, c):
        assert cl.sync_r() == {"x": 1, "y": "two"}
    assert outsider.sync_r() == {}


def test_client_in_several_groups(server, transport):
    a = server.client(transport, "g1", "g2")
    b = server.client(transport)
    b.send_r("g1", x=1)
    b.send_r("g2", x=2)
    assert a.sync_r() == {"x": 2}       # later value of a name wins, as in DiME2
    b.send_r("g1", y=1)
    b.send_r("g2", z=2)
    assert a.sync() == {"y", "z"}


def test_broadcast_excludes_sender_and_reaches_clients_without_groups(server, transport):
    a = server.client(transport, "g")
    b = server.client(transport, "h")
    c = server.client(transport)        # joined nothing
    a.broadcast_r(v=np.arange(3), w=None)
    for cl in (b, c):
        got = cl.sync_r()
        assert list(got) == ["v", "w"] and got["w"] is None
        assert np.array_equal(got["v"], np.arange(3))
    assert a.sync_r() == {}
    with pytest.raises(TimeoutError):
        a.wait(0.2)


def test_broadcast_from_workspace(server, transport):
    a, b = server.client(transport), server.client(transport)
    a["k"] = {"nested": [1, 2]}
    a.broadcast("k")
    assert b.sync() == {"k"}
    assert b["k"] == {"nested": [1, 2]}


def test_sync_with_n(pair):
    a, b = pair
    a.send_r("g", **{f"v{i}": i for i in range(5)})
    assert b.sync_r(2) == {"v0": 0, "v1": 1}
    assert b.sync(1) == {"v2"} and b["v2"] == 2
    assert b.sync_r(0) == {}
    assert b.sync_r(-1) == {"v3": 3, "v4": 4}
    assert b.sync_r() == {}


def test_many_variables_pipelined(pair):
    a, b = pair
    values = {f"v{i}": i for i in range(100)}
    a.send_r("g", **values)
    assert b.sync_r() == values


def test_wait_blocks_until_a_message_arrives(pair):
    a, b = pair

    def later():
        time.sleep(0.4)
        a.send_r("g", late="yes")

    t = threading.Thread(target=later)
    start = time.monotonic()
    t.start()
    n = b.wait()
    elapsed = time.monotonic() - start
    t.join()
    assert n == 1 and elapsed >= 0.3
    assert b.sync_r() == {"late": "yes"}


def test_wait_with_timeout_raises_timeout_error_and_client_stays_usable(pair):
    a, b = pair
    start = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        b.wait(timeout=0.3)
    elapsed = time.monotonic() - start
    assert isinstance(info.value, dime.DimeTimeoutError) and isinstance(info.value, dime.DimeError)
    assert 0.25 <= elapsed < 3
    with pytest.raises(dime.DimeTimeoutError):
        b.wait(0)
    a.send_r("g", x=1)
    assert b.wait(timeout=5) == 1
    assert b.wait(0) == 1               # still queued
    assert b.sync_r() == {"x": 1}


def test_wait_returns_count_of_queued(pair):
    a, b = pair
    a.send_r("g", x=1, y=2, z=3)
    assert b.wait() == 3


def test_wait_rejects_negative_timeout(pair):
    with pytest.raises(ValueError):
        pair[0].wait(-1)


def test_devices_and_leave(server, transport):
    a = server.client(transport, "g1", "g2")
    b = server.client(transport, "g2")
    assert sorted(a.devices()) == ["g1", "g2"]
    a.leave("g1")
    assert sorted(b.devices()) == ["g2"]
    a.leave("g2")
    b.send_r("g2", x=1)
    assert a.sync_r() == {}
    assert b.sync_r() == {"x": 1}
    b.leave("g2")
    assert a.devices() == []
    with pytest.raises(dime.DimeServerError, match="No such group"):
        a.send_r("g2", x=1)


def test_devices_gives_a_new_list_each_time_that_follows_the_groups(server, transport):
    a = server.client(transport, "g1")
    mine = a.devices()
    mine.append("changed by the caller")
    again = a.devices()
    assert again == ["g1"] and again is not mine
    b = server.client(transport, "g2")
    assert sorted(a.devices()) == ["g1", "g2"]
    b.leave("g2")
    assert a.devices() == ["g1"]
    a.leave("g1")
    assert a.devices() == []


def test_server_errors_are_exceptions_and_connection_stays_usable(server, transport):
    a = server.client(transport, "g")
    with pytest.raises(dime.DimeServerError, match="already in group"):
        a.join("g")
    with pytest.raises(dime.DimeServerError, match="not in group"):
        a.leave("nope")
    with pytest.raises(RuntimeError, match="No such group exists: nope"):   # DiME2 raised RuntimeError
        a.send_r("nope", x=1)
    a.send_r("g", x=1)
    assert a.sync_r() == {"x": 1}


def test_send_unknown_workspace_variable_is_key_error(pair):
    with pytest.raises(KeyError):
        pair[0].send("g", "missing")


def test_bad_names(pair):
    a, _ = pair
    with pytest.raises(TypeError):
        a.join(3)
    with pytest.raises(ValueError):
        a.join("a\0b")
    a.send_r("g", **{"name with spaces é": 1})
    assert pair[1].sync_r() == {"name with spaces é": 1}


def test_empty_send_is_a_no_op(pair):
    pair[0].send_r("g")
    pair[0].broadcast()
    assert pair[1].sync_r() == {}


# -- constructor forms -------------------------------------------------------

def test_constructor_forms(server):
    p, port = server.unix_path, server.tcp_port
    forms = [("ipc", p), ("unix", p), ("tcp", "127.0.0.1", port), ("tcp", "localhost", str(port)),
             (f"unix://{p}",), (f"ipc://{p}",), (f"tcp://127.0.0.1:{port}",), (f"unix:{p}",),
             (f"tcp:127.0.0.1:{port}",)]
    clients = []
    for i, f in enumerate(forms):
        c = dime.DimeClient(*f)
        clients.append(c)
        c.join(f"g{i}")
    assert sorted(clients[0].devices()) == sorted(f"g{i}" for i in range(len(forms)))
    for c in clients:
        c.close()


def test_address_parsing():
    assert address_of() == "unix:/tmp/dime.sock"
    assert address_of("ipc") == "unix:/tmp/dime.sock"
    assert address_of("tcp", "h", 5000) == "tcp:h:5000"
    assert address_of("tcp://[::1]:80") == "tcp:[::1]:80"
    assert address_of("tcp", "h", 0) == "tcp:h:0"     # the OS refuses it, as for the original
    for bad in [("http://x:1",), ("tcp", "h", "port"), ("tcp", "h", 65536), ("nonsense",),
                ("tcp://host",)]:
        with pytest.raises(ValueError):
            address_of(*bad)
    with pytest.raises(TypeError):
        address_of("tcp")


def test_connect_failure_is_connection_error(tmp_path):
    with pytest.raises(ConnectionError) as info:
        dime.DimeClient("ipc", str(tmp_path / "nobody.sock"))
    assert isinstance(info.value, dime.DimeConnectionError)
    assert "nobody.sock" in str(info.value)


def test_lost_server_is_connection_error(server, transport):
    a = server.client(transport, "g")
    server.kill()
    with pytest.raises(ConnectionError):
        a.send_r("g", x=np.zeros(1000))
        a.sync_r()
    with pytest.raises(dime.DimeConnectionError):
        a.devices()
    a.close()


# -- handles ---------------------------------------------------------------

def test_close_is_idempotent_and_calls_after_close_raise(server):
    a = server.client("unix", "g")
    assert not a.closed
    a.close()
    a.close()
    assert a.closed
    with pytest.raises(dime.DimeConnectionError, match="closed"):
        a.devices()
    with pytest.raises(ConnectionError):
        a.send_r("g", x=1)


def test_context_manager(server):
    with dime.DimeClient("ipc", server.unix_path) as d:
        d.join("ctx")
        assert d.devices() == ["ctx"]
    assert d.closed
    with dime.DimeClient("ipc", server.unix_path) as e:
        assert e.devices() == []        # d left every group by disconnecting


def test_del_closes_the_connection(server):
    d = dime.DimeClient("ipc", server.unix_path)
    d.join("gone")
    e = server.client("unix")
    assert e.devices() == ["gone"]
    del d
    gc.collect()
    deadline = time.monotonic() + 5
    while e.devices() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert e.devices() == []


def test_reopen(server):
    d = server.client("unix", "g")
    d.open()                           # reconnect: a new connection, groups gone
    d.join("g")
    d.send_r("g", x=1)
    assert d.sync_r() == {"x": 1}


def test_close_from_another_thread_ends_a_blocked_wait(server):
    d = server.client("unix", "g")
    result = {}

    def waiter():
        try:
            d.wait()
        except Exception as e:          # noqa: BLE001
            result["exc"] = e

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    d.close()
    t.join(5)
    assert not t.is_alive()
    assert isinstance(result.get("exc"), dime.DimeConnectionError)


def test_workspace_is_a_mutable_mapping(server):
    d = server.client("unix")
    assert isinstance(d, collections.abc.MutableMapping)
    d["a"] = 1
    d.update(b=2)
    assert dict(d) == {"a": 1, "b": 2} and d.workspace == {"a": 1, "b": 2}
    del d["a"]
    assert "a" not in d and len(d) == 1 and list(d) == ["b"]
    assert d.pop("b") == 2 and len(d) == 0


def test_threads_share_one_client(pair):
    a, b = pair
    errors = []

    def worker(k):
        try:
            for i in range(20):
                a.send_r("g", **{f"t{k}_{i}": np.full(10, i)})
        except Exception as e:          # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = b.sync_r()
    assert len(got) == 80 and all(np.array_equal(v, np.full(10, int(k.split("_")[1])))
                                  for k, v in got.items())


def test_library_location_env(monkeypatch):
    from dime import _lib
    assert os.path.samefile(dime.library_path(), os.environ["DIME_LIBRARY"])
    monkeypatch.setenv("DIME_LIBRARY", "/nonexistent/libdime.so")
    with pytest.raises(ImportError, match="DIME_LIBRARY"):
        _lib.find_library()
    monkeypatch.delenv("DIME_LIBRARY")
    found = _lib.find_library()
    assert found.endswith(("target/release/libdime.so", "target/debug/libdime.so")) or \
        os.path.dirname(found) == os.path.dirname(_lib.__file__)
