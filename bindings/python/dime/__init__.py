"""dime: Python binding of libdime, a drop-in for the DiME2 Python client.

    from dime import DimeClient
    with DimeClient("ipc", "/tmp/dime.sock") as d:
        d.join("py")
        d.send_r("matlab", x=numpy.eye(3))
        d.wait(timeout=5)
        names = d.sync()        # received variables are now d[name]

Shared dictionaries and Linda tuple spaces on the same server:

    s = dime.init_share()                 # dime.Share; starts a server if needed
    s["x"] = 1; s.incr("x"); s.wait_for("result", timeout=5)
    with s.lock(): ...
    with dime.TupleSpace() as ts:
        ts.out(("sum", 0)); ts.in_(("sum", int), timeout=5)

The shared library is found through $DIME_LIBRARY, next to this package, or
in the dime repository's target/release then target/debug.
"""

from ._errors import (DimeCodecError, DimeConnectionError, DimeError, DimeProtocolError,
                      DimeServerError, DimeTimeoutError)
from ._errors import DimePermissionError, DimeUnsupportedError
from ._convert import LibBuffer
from .client import DimeClient
from .share import ABSENT, Share, ShareLock, find_server, init_share
from .tuplespace import Matrix, Range, TupleSpace
from ._lib import lib as _libdime

__all__ = ["DimeClient", "DimeError", "DimeServerError", "DimeTimeoutError",
           "DimeConnectionError", "DimeProtocolError", "DimeCodecError", "LibBuffer",
           "DimeUnsupportedError", "DimePermissionError",
           "Share", "ShareLock", "ABSENT", "init_share", "find_server",
           "TupleSpace", "Range", "Matrix",
           "library_path", "library_version", "__version__"]

__version__ = "0.1.0"


def library_path():
    """The path of the loaded libdime."""
    return _libdime.path


def library_version():
    """libdime's version string (``dime_version()``)."""
    return _libdime.dime_version().decode()
