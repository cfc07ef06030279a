"""Sends ``late = 42.0`` to a group after a delay, for test_original_server.m
(Octave cannot send while it blocks in ``wait``).

usage: python py_send_later.py SOCKET GROUP DELAY_SECONDS
Runs with our binding (``import dime``); exits 1 if the send fails.
"""

import sys
import time

from dime import DimeClient

sock, group, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
with DimeClient("ipc", sock) as c:
    time.sleep(delay)
    c.send_r(group, late=42.0)
