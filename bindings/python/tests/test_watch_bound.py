"""A watch that stops reading is held to the broker's limit of events
queued for its client (``dime --watch-queue-events/--watch-queue-bytes``):
the broker keeps no more than that for it however much is written, the
writer is not held up, and once the watch is read again it yields every
event up to where it fell behind, then the rest from the broker's history,
or one ``"lost"`` event (re-read) when the history has moved past it."""

import pytest

import dime
from conftest import DimeServer

LIMIT_EVENTS = 500
LIMIT_BYTES = 1_000_000


@pytest.fixture
def small(tmp_path):
    srv = DimeServer(str(tmp_path), ["--watch-queue-events", str(LIMIT_EVENTS),
                                     "--watch-queue-bytes", str(LIMIT_BYTES)])
    yield srv
    srv.stop()


@pytest.fixture
def share(small):
    with dime.Share(f"unix:{small.unix_path}", "w") as s:
        yield s


def most_queued(srv):
    """The most watch events, and their bytes, any client has queued unread."""
    clients = srv.raw().request({"command": "inspect"})["clients"]
    return max((c["watch_events"], c["watch_bytes"]) for c in clients)


def assert_behind_within_limit(srv):
    """A watch is behind (it goes on from the history once its client has
    read its queue down to half), and no more than the limit is queued."""
    assert LIMIT_EVENTS // 2 < most_queued(srv)[0] <= LIMIT_EVENTS


def stats(srv):
    return srv.raw().request({"command": "stats"})


def write(share, n, pad=""):
    """Sets k0 … k999 over and over, n times in all, a thousand per request;
    each value is the write's number (with ``pad`` after it)."""
    for batch in range(n // 1000):
        share.update({f"k{i}": f"{batch * 1000 + i}{pad}" for i in range(1000)})


def read_in_order(w, first, count):
    """Reads events numbered first, first+1, … (no gap) until a "lost" one,
    returned with how many came before it, or until ``count`` came."""
    for got in range(count):
        ev = w.next(timeout=10)
        assert ev is not None, f"only {got} events came"
        if ev.kind == "lost":
            return got, ev
        assert ev.seq == first + got, ev
    return count, None


def test_a_watch_that_is_not_read_is_bounded_then_told_to_re_read(small, share):
    w = share.watch()
    start = w.position.seq
    write(share, 30_000)                 # the writer is never held up by the watch
    assert_behind_within_limit(small)    # without the limit: nearly 30 000 queued
    assert most_queued(small)[1] <= LIMIT_BYTES
    s = stats(small)
    assert s["watch_fell_behind"] >= 1 and s["watch_lost"] == 0

    got, lost = read_in_order(w, start + 1, 30_000)
    assert lost is not None and LIMIT_EVENTS <= got < 20_000
    assert lost.seq == start + 30_000
    assert "fell behind" in lost.message and "re-read" in lost.message
    assert f"--watch-queue-events {LIMIT_EVENTS}" in lost.message
    assert w.next(timeout=0.2) is None
    assert most_queued(small) == (0, 0)

    # Re-read, and events come again.
    assert share["k999"] == "29999"
    share["after"] = 1
    ev = w.next(timeout=5)
    assert (ev.kind, ev.key, ev.value, ev.seq) == ("set", "after", 1, start + 30_001)
    w.close()


def test_a_watch_that_fell_behind_catches_up_and_resumes_within_the_limit(small, share):
    w = share.watch()
    start = w.position.seq
    pad = "x" * 1000                     # far more than the socket's buffer holds
    write(share, 6000, pad)
    assert_behind_within_limit(small)
    assert read_in_order(w, start + 1, 6000) == (6000, None)   # all, from the history
    assert w.next(timeout=0.2) is None
    pos = w.position
    w.close()

    write(share, 6000, pad)              # missed while nobody watched
    with share.watch(resume=pos) as again:
        assert_behind_within_limit(small)
        assert read_in_order(again, pos.seq + 1, 6000) == (6000, None)
    assert stats(small)["watch_lost"] == 0
