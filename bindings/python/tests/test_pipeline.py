"""Pipelined sends from Python: off by default (DiME2's semantics), on with
``pipeline=`` / ``.pipeline`` / ``DIME_PIPELINE``; a refused send is raised
by a later call as the DiME2 exception, naming the send; ``flush`` waits
for every answer; the window bounds what is unanswered; the client's own
sync and wait see its sends; against an original DiME2 server the window
is its client's 16."""

import os

import numpy as np
import pytest

import dime
from dime import _lib
from test_original_server import Dime2Double


def test_off_by_default_a_refused_send_raises_at_once(server):
    a = server.client()
    assert a.pipeline == 0
    with pytest.raises(dime.DimeServerError, match="^server error: No such group exists: nobody$"):
        a.send_r("nobody", x=1)


def test_turned_on_by_argument_property_and_environment(server, monkeypatch):
    assert server.client().pipeline == 0
    args = server.args("unix")
    assert dime.DimeClient(*args, pipeline=True).pipeline == _lib.PIPELINE_WINDOW
    assert dime.DimeClient(*args, pipeline=8).pipeline == 8
    c = dime.DimeClient(*args)
    c.pipeline = 32
    assert c.pipeline == 32
    c.pipeline = False
    assert c.pipeline == 0
    with pytest.raises(ValueError):
        c.pipeline = -1
    with pytest.raises(TypeError):
        c.pipeline = "on"
    monkeypatch.setenv("DIME_PIPELINE", "on")
    assert dime.DimeClient(*args).pipeline == _lib.PIPELINE_WINDOW
    assert dime.DimeClient(*args, pipeline=False).pipeline == 0
    monkeypatch.setenv("DIME_PIPELINE", "sometimes")
    with pytest.raises(dime.DimeError, match="DIME_PIPELINE"):
        dime.DimeClient(*args)


def test_a_refused_send_is_raised_later_naming_it(server, transport):
    a = dime.DimeClient(*server.args(transport), pipeline=64)
    b = server.client(transport, "b")
    a.send_r("b", first=1)
    a.send_r("nobody", lost=np.arange(3.0))     # returns at once
    a.broadcast_r(third="x")
    assert a.unacknowledged == 3
    with pytest.raises(RuntimeError) as raised:
        a.devices()
    assert isinstance(raised.value, dime.DimeServerError)
    assert str(raised.value) == ("server error: pipelined send #2 of 'lost' to group 'nobody' "
                                 "failed: No such group exists: nobody")
    # Raised once; the other sends went through.
    assert a.devices() == ["b"]
    assert b.sync_r() == {"first": 1, "third": "x"}
    a.close()


def test_sync_after_sends_sees_them_and_keeps_its_messages_when_it_raises(server):
    a = dime.DimeClient(*server.args("unix"), pipeline=True)
    a.join("a")
    for i in range(20):
        a.send_r("a", **{f"v{i}": i})
    assert a.sync_r() == {f"v{i}": i for i in range(20)}
    a.send_r("a", kept=1.5)
    a.send_r("nobody", bad=2)
    with pytest.raises(dime.DimeServerError, match="'bad' to group 'nobody'"):
        a.sync_r()
    assert a.sync_r() == {"kept": 1.5}


def test_wait_after_sends_sees_them(server):
    a = dime.DimeClient(*server.args("unix"), pipeline=True)
    a.join("a")
    a.send_r("a", x=1)
    assert a.wait(timeout=5) == 1
    assert a.sync() == {"x"} and a["x"] == 1


@pytest.mark.parametrize("pipeline,first", [(False, {"m1": 1, "m2": 2}), (True, {"m1": 1})])
def test_a_sync_after_a_wait(server, pipeline, first):
    """DiME2's sync asks the server again; a pipelining client's sync hands
    out what its wait fetched, and the rest comes with the next sync."""
    a = dime.DimeClient(*server.args("unix"), pipeline=pipeline)
    a.join("a")
    b = server.client()
    b.send_r("a", m1=1)
    assert a.wait(timeout=5) == 1
    b.send_r("a", m2=2)                     # queued before the sync starts
    assert a.sync_r() == first
    assert a.sync_r() == ({} if len(first) == 2 else {"m2": 2})


def test_flush_makes_every_message_visible_to_others(server):
    a = dime.DimeClient(*server.args("unix"), pipeline=True)
    b = server.client("unix", "b")
    most = 0
    for i in range(3000):
        a.send_r("b", v=i)
        if i % 97 == 0:
            most = max(most, a.unacknowledged)
    a.flush()
    assert a.unacknowledged == 0
    got = []
    while True:
        r = b.sync_r(1)
        if not r:
            break
        got.append(r["v"])
    assert got == list(range(3000))
    assert most <= _lib.PIPELINE_WINDOW


def test_the_window_bounds_what_is_unanswered(server):
    a = dime.DimeClient(*server.args("unix"), pipeline=4)
    server.client("unix", "b")
    for i in range(50):
        a.send_r("b", v=i)
        assert a.unacknowledged <= 4
    a.flush()
    assert a.unacknowledged == 0


def test_close_raises_an_unreported_failure_and_closes(server):
    a = dime.DimeClient(*server.args("unix"), pipeline=True)
    a.send_r("nobody", x=1)
    with pytest.raises(dime.DimeServerError, match="pipelined send #1"):
        a.close()
    assert a.closed
    a.close()                               # again: nothing


def test_a_with_block_reports_a_failure_unless_already_failing(server):
    with pytest.raises(dime.DimeServerError):
        with dime.DimeClient(*server.args("unix"), pipeline=True) as a:
            a.send_r("nobody", x=1)
    with pytest.raises(KeyError):
        with dime.DimeClient(*server.args("unix"), pipeline=True) as a:
            a.send_r("nobody", x=1)
            raise KeyError("the error that matters")


def test_turning_it_off_raises_an_outstanding_failure(server):
    a = dime.DimeClient(*server.args("unix"), pipeline=True)
    a.send_r("nobody", x=1)
    with pytest.raises(dime.DimeServerError, match="pipelined send #1"):
        a.pipeline = 0
    assert a.pipeline == 0
    with pytest.raises(dime.DimeServerError, match="^server error: No such group"):
        a.send_r("nobody", x=1)


def test_against_an_original_server_the_window_is_its_clients(tmp_path):
    d = Dime2Double(tmp_path)
    try:
        a = dime.DimeClient("ipc", d.path, pipeline=True)
        assert a.pipeline == 16
        a.join("a")
        for i in range(40):
            a.send_r("a", **{f"v{i}": i})
            assert a.unacknowledged <= 16
        assert a.wait() == 40               # DiME2's own blocking wait
        assert a.sync_r() == {f"v{i}": i for i in range(40)}
        a.send_r("nobody", x=1)
        with pytest.raises(dime.DimeServerError, match="pipelined send #41 of 'x'"):
            a.flush()
        a.close()
    finally:
        d.stop()


@pytest.fixture(autouse=True)
def _no_pipeline_from_the_environment(monkeypatch):
    monkeypatch.delenv("DIME_PIPELINE", raising=False)
    assert "DIME_PIPELINE" not in os.environ
