"""A provider in a process of its own, for test_rpc.py.

    python rpc_provider.py ADDRESS ID [--embedded]

Provides through a ``DimeClient`` connected to the broker at ADDRESS, or
with ``--embedded`` runs the broker itself listening at ADDRESS (the
teleport topology: callers connect straight to this process). Binds

* ``echo``: ``x`` -> ``{"p": ID, "x": x}`` (2 workers);
* ``slow``: prints ``started`` and sleeps 60 s (to be killed mid-call);
* ``pid``: this process's id.

Prints ``ready ADDRESS`` once serving, and ``served N`` (echo calls) when
SIGTERM stops it.
"""

import os
import signal
import sys
import threading
import time

import dime


def main():
    address, ident = sys.argv[1], int(sys.argv[2])
    embedded = "--embedded" in sys.argv[3:]
    served = [0]
    lock = threading.Lock()

    def echo(x):
        with lock:
            served[0] += 1
        return {"p": ident, "x": x}

    def slow(x):
        print("started", flush=True)
        time.sleep(60)
        return x

    if embedded:
        server = dime.Server(address)
    else:
        server = dime.Server(client=dime.DimeClient(address))
    server.bind("echo", echo, workers=2)
    server.bind("slow", slow)
    server.bind("pid", lambda _: os.getpid())

    def stop(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    with server:
        print("ready", server.address, flush=True)
        try:
            while True:
                time.sleep(1)
        except SystemExit:
            pass
    print("served", served[0], flush=True)


if __name__ == "__main__":
    main()
