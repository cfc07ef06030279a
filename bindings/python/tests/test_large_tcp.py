"""Large arrays over TCP (no shared memory there): the sender writes them
from the array's own memory and the broker relays them to our clients
while they arrive (the ``cut_through`` extension,
docs/protocol-extensions.md). Whatever the path, they arrive exactly, in
the order they were sent, and the original client still gets them whole.
Cut-through is asked for with ``DIME_CUT_THROUGH=1`` (off by default)."""

import numpy as np
import pytest

from same import assert_same


def big(shape, order, seed):
    x = np.empty(shape, order=order)
    x.reshape(-1, order="A")[:] = np.arange(x.size, dtype=np.float64) * 0.5 + seed
    return x


@pytest.mark.parametrize("cut_through", ["0", "1"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_a_large_matrix_over_tcp_arrives_exactly(server, order, cut_through, monkeypatch):
    # DIME_CUT_THROUGH=1: the clients ask for cut-through (off by default).
    monkeypatch.setenv("DIME_CUT_THROUGH", cut_through)
    a = server.client("tcp", "g")
    b = server.client("tcp", "g")
    assert "cut_through" in b.server_extensions
    x = big((1500, 2000), order, 1.0)                # 24 MB
    y = big((700, 900, 3), order, 2.0)              # 15 MB, three dimensions
    for _ in range(2):                               # the second reuses buffers
        a.send_r("g", x=x, y=y, small=3, nested=[1, {"k": y, "j": "s"}, x[:10]])
        got = {}
        while len(got) < 4:
            b.wait()
            got.update(b.sync_r())
        assert_same(got["x"], x)
        assert_same(got["y"], y)
        assert got["small"] == 3
        assert got["nested"][0] == 1 and got["nested"][1]["j"] == "s"
        assert_same(got["nested"][1]["k"], y)
        assert_same(got["nested"][2], x[:10])
        for k in "xy":
            assert got[k].flags.c_contiguous if order == "C" else got[k].flags.f_contiguous
        # a also gets its own message (it is in "g"), through the same path
        mine = a.sync_r()
        assert_same(mine["x"], x)


def test_a_large_broadcast_over_tcp_reaches_every_client(server):
    a = server.client("tcp")
    receivers = [server.client("tcp") for _ in range(3)]
    x = big((1000, 3000), "C", 5.0)
    a.broadcast_r(x=x)
    for r in receivers:
        r.wait()
        assert_same(r.sync_r()["x"], x)


def test_the_original_client_gets_a_large_matrix_whole_over_tcp(server):
    a = server.client("tcp")
    b = server.client("tcp", "g")
    old = server.old("tcp", "g")
    x = big((600, 1000), "C", 7.0)
    a.send_r("g", x=x)
    b.wait()
    assert_same(b.sync_r()["x"], x)
    got = old.call("sync_r")
    assert_same(np.asarray(got["x"]), x)
