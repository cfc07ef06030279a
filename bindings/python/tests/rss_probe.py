"""Measures, in a fresh process, how much resident memory one send or one
receive of a large array adds at its peak (for test_zero_copy.py).

    python rss_probe.py send ORDER MB ADDRESS   # ORDER: F, C or bool
    python rss_probe.py recv MB ADDRESS         # joins "probe", prints "ready"

Prints ``growth nbytes``: the peak resident set (VmHWM, reset just before
through /proc/self/clear_refs) minus the resident set just before the call,
and the array's size. The array is built and its pages touched first, so
neither it nor the library's code count.
"""

import sys

import numpy as np

import dime


def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def array(order, nbytes):
    cols = 4000
    if order == "bool":
        return np.ones((nbytes // cols, cols), bool, order="F")
    return np.ones((nbytes // 8 // cols, cols), order=order)


def main():
    mode = sys.argv[1]
    if mode == "send":
        order, mb, address = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        x = array(order, mb << 20)
        with dime.DimeClient("ipc", address) as c:
            c.join("warm")
            c.send_r("warm", x=np.ones(3))   # loads every code path once
            c.sync_r()
            reset_peak()
            before = status("VmRSS")
            c.send_r("probe", x=x)
            print(status("VmHWM") - before, x.nbytes, flush=True)
    elif mode == "recv":
        mb, address = int(sys.argv[2]), sys.argv[3]
        with dime.DimeClient("ipc", address) as c:
            c.join("probe")
            print("ready", flush=True)
            c.wait(60)
            reset_peak()
            before = status("VmRSS")
            got = c.sync_r()["x"]
            growth = status("VmHWM") - before
            o = got
            while isinstance(o, np.ndarray) and o.base is not None:
                o = o.base
            assert isinstance(o, dime.LibBuffer), type(o)
            assert got.nbytes == (mb << 20) and bool(got.all())
            print(growth, got.nbytes, flush=True)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
