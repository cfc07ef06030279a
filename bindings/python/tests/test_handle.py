"""``Handle``'s borrows (``dime._handle``): ``close()`` waits for calls
other threads are inside of, and never for a borrow that can no longer be
given back — Ctrl-C raised in the main thread between a lend and its give
back, a thread that ended holding one, or a bound function closing its
own server from inside a call — and it never frees a pointer a call is
still using."""

import threading
import time

from dime._handle import Handle


class Fake(Handle):
    """A handle whose pointer is a plain number; records what was freed."""

    def __init__(self):
        super().__init__(42)
        self.freed = []

    def _release(self, ptr):
        self.freed.append(ptr)


def close_in_thread(h, timeout=5.0):
    """Closes ``h`` on another thread; True if it returned in time."""
    t = threading.Thread(target=h.close, daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive()


def borrowing_thread(h):
    """A thread inside a call on ``h`` (a borrow) until the returned event
    is set."""
    inside, leave = threading.Event(), threading.Event()

    def call():
        with h._borrow():
            inside.set()
            leave.wait(5)

    t = threading.Thread(target=call)
    t.start()
    assert inside.wait(5)
    return t, leave


def test_close_waits_for_another_threads_call_then_frees():
    h = Fake()
    t, leave = borrowing_thread(h)
    closer = threading.Thread(target=h.close)
    closer.start()
    time.sleep(0.2)
    assert closer.is_alive() and h.freed == []
    leave.set()
    closer.join(5)
    t.join(5)
    assert h.freed == [42]


def test_a_borrow_cut_short_by_ctrl_c_does_not_hang_close():
    # Ctrl-C raised after _lend() and before the give back: the borrow is
    # never returned. close() on that thread must return, and must not free.
    h = Fake()
    h._lend()
    started = time.monotonic()
    h.close()
    assert time.monotonic() - started < 1
    assert h.closed and h.freed == []


def test_a_thread_that_ended_holding_a_borrow_does_not_hang_close():
    h = Fake()
    t = threading.Thread(target=h._lend)
    t.start()
    t.join()
    assert close_in_thread(h)
    assert h.freed == [42]


def test_closing_from_inside_a_call_frees_at_the_give_back():
    # A bound function that closes its own server runs inside a borrow.
    h = Fake()
    with h._borrow():
        h.close()
        assert h.closed and h.freed == []
    assert h.freed == [42]


def test_close_from_inside_a_call_still_waits_for_other_threads():
    h = Fake()
    t, leave = borrowing_thread(h)
    with h._borrow():
        timer = threading.Timer(0.2, leave.set)
        timer.start()
        h.close()              # waits for the other thread's call
        assert not t.is_alive() or leave.is_set()
    t.join(5)
    assert h.freed == [42]
