"""Leases, fencing tokens and change events from Python: ``with
share.lock(ttl=...) as token``, fenced writes refused after the lease ran
out, ``for ev in share.watch(prefix=...)``, callbacks, tuple-space and
group watches, and resuming from a saved position."""

import queue
import threading
import time

import pytest

import dime


@pytest.fixture
def addr(server):
    return f"unix:{server.unix_path}"


@pytest.fixture
def share(addr):
    with dime.Share(addr, "w") as s:
        yield s


def test_lock_gives_a_growing_fencing_token(share):
    with share.lock(ttl=5) as token:
        assert isinstance(token, int) and token > 0
        assert token.held
        share.set("job", "mine", fence=token)
        assert share.renew(ttl=5) == token
        first = int(token)
    with share.lock("row") as again:
        assert again > first
    assert not again.held
    with pytest.raises(ValueError):
        share.lock(ttl=0)


def test_a_lease_runs_out_and_the_old_token_is_refused(share, addr):
    old = share.lock("job", ttl=0.2)
    with dime.Share(addr, "w") as other:
        t = time.monotonic()
        new = other.lock("job", timeout=5)      # granted when the lease runs out
        assert 0.1 < time.monotonic() - t < 3
        assert new > old
        other.set("job", "fresh", fence=new)
        with pytest.raises(dime.DimeServerError, match="refused"):
            share.set("job", "stale", fence=old)
        with pytest.raises(dime.DimeServerError, match="refused"):
            share.delete("job", fence=old)
        with pytest.raises(dime.DimeServerError, match="does not hold"):
            old.renew()
        assert share["job"] == "fresh"
        assert other.delete("job", fence=new)
        new.release()


def test_iterating_a_share_watch(share):
    w = share.watch(prefix="jobs/")
    share["jobs/1"] = 1
    share["other"] = 2
    share.incr("jobs/1", 5)
    del share["jobs/1"]
    share.clear()
    got = []
    for ev in w:
        got.append((ev.kind, ev.key, ev.value))
        if ev.kind == "clear":
            break
    assert got == [("set", "jobs/1", 1), ("set", "jobs/1", 6), ("del", "jobs/1", None),
                   ("clear", None, None)]
    assert w.next(timeout=0.1) is None
    w.close()
    with pytest.raises(dime.DimeConnectionError):
        w.next(timeout=0)


def test_callbacks_and_resume(share):
    seen = queue.Queue()
    w = share.watch(callback=seen.put)
    share["a"] = 1
    ev = seen.get(timeout=5)
    assert (ev.kind, ev.key, ev.value, ev.topic) == ("set", "a", 1, "w")
    pos = w.position
    assert pos.seq == ev.seq
    w.close()
    share["b"] = 2                              # missed while nobody watched
    with share.watch(resume=pos) as w2:
        ev = w2.next(timeout=5)
        assert (ev.kind, ev.key, ev.value) == ("set", "b", 2)
    # A position from another broker run is answered with "lost".
    with share.watch(resume=(pos.epoch ^ 1, pos.seq)) as w3:
        ev = w3.next(timeout=5)
        assert ev.kind == "lost" and "re-read" in ev.message


def test_a_callback_that_raises_does_not_end_the_watch(share, capsys):
    seen = []
    done = threading.Event()

    def cb(ev):
        seen.append(ev.key)
        if ev.key == "bad":
            raise ValueError("boom")
        done.set()

    with share.watch(callback=cb):
        share["bad"] = 1
        share["good"] = 2
        assert done.wait(5)
    assert seen == ["bad", "good"]
    assert "boom" in capsys.readouterr().err


def test_space_and_group_watches(addr):
    with dime.TupleSpace(addr, "t") as ts, dime.DimeClient("ipc", addr[5:]) as d:
        ws = ts.watch()
        wg = d.watch_groups(prefix="lab/")
        ts.out(("job", 1))
        assert ts.inp(("job", int)) == ("job", 1)
        ev = ws.next(timeout=5)
        assert (ev.kind, ev.value, ev.topic) == ("out", ("job", 1), "t")
        assert ws.next(timeout=5).kind == "in"
        with dime.DimeClient("ipc", addr[5:]) as other:
            other.join("lab/a")
            ev = wg.next(timeout=5)
            assert (ev.kind, ev.key) == ("join", "lab/a")
            assert isinstance(ev.client, int)
        assert wg.next(timeout=5).kind == "leave"
        ws.close()
        wg.close()
