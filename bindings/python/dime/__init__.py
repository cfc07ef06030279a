"""dime: Python binding of libdime, a drop-in for the DiME2 Python client.

    from dime import DimeClient
    with DimeClient("ipc", "/tmp/dime.sock") as d:
        d.join("py")
        d.send_r("matlab", x=numpy.eye(3))
        d.wait(timeout=5)
        names = d.sync()        # received variables are now d[name]

Remote calls, shaped like teleport (change the import, keep the code):

    server = dime.Server("tcp://*:2222")     # the broker runs in this process
    server.bind("add", lambda d: {"sum": d["x"] + d["y"]}, workers=2)
    server.run()
    # elsewhere:
    client = dime.Client("tcp://localhost:2222"); client.connect()
    client.add({"x": 1, "y": 2}).result()      # {'sum': 3}

Shared dictionaries and Linda tuple spaces on the same server:

    s = dime.init_share()                 # dime.Share; starts a server if needed
    s["x"] = 1; s.incr("x"); s.wait_for("result", timeout=5)
    with s.lock(): ...
    with s.lock("job", ttl=5) as token: s.set("job", 1, fence=token)
    for ev in s.watch(prefix="jobs/"): ...
    with dime.TupleSpace() as ts:
        ts.out(("sum", 0)); ts.in_(("sum", int), timeout=5)

The shared library is found through $DIME_LIBRARY, next to this package, or
in the dime repository's target/release then target/debug.
"""

from ._errors import (DimeAddressError, DimeArgumentError, DimeBrokenPipeError, DimeCodecError,
                      DimeConnectionAbortedError, DimeConnectionError,
                      DimeConnectionRefusedError, DimeConnectionResetError,
                      DimeConnectionTimeoutError, DimeError, DimeFileNotFoundError,
                      DimeHostNotFoundError, DimePermissionError, DimePortError,
                      DimeProtocolError, DimeServerError, DimeSocketPermissionError,
                      DimeTimeoutError, DimeUnsupportedError)
from ._convert import LibBuffer
from .client import DimeClient
from .share import ABSENT, Share, ShareLock, find_server, init_share
from .tuplespace import Matrix, Range, TupleSpace
from ._rpc_errors import NoProvider, ProviderLost, RemoteError
from ._future import Future
from .rpc import Client, Server
from .stream import Stream, StreamHandle
from .watch import Event, Position, Watch
from ._lib import lib as _libdime
from . import files  # noqa: E402,F401  (dime.files: parallel file transfer)

__all__ = ["DimeClient", "DimeError", "DimeServerError", "DimeTimeoutError",
           "DimeConnectionError", "DimeFileNotFoundError", "DimePermissionError",
           "DimeSocketPermissionError",
           "DimeConnectionRefusedError", "DimeConnectionResetError",
           "DimeConnectionAbortedError", "DimeBrokenPipeError", "DimeConnectionTimeoutError",
           "DimeHostNotFoundError", "DimeProtocolError", "DimeCodecError",
           "DimeArgumentError", "DimeAddressError", "DimePortError", "DimeUnsupportedError",
           "LibBuffer",
           "Share", "ShareLock", "ABSENT", "init_share", "find_server",
           "TupleSpace", "Range", "Matrix", "Watch", "Event", "Position",
           "Client", "Server", "Future", "RemoteError", "ProviderLost", "NoProvider",
           "Stream", "StreamHandle",
           "library_path", "library_version", "__version__"]

__version__ = "0.1.0"


def library_path():
    """The path of the loaded libdime."""
    return _libdime.path


def library_version():
    """libdime's version string (``dime_version()``)."""
    return _libdime.dime_version().decode()
