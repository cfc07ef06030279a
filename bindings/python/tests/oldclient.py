"""Test-side proxy of the original DiME2 client running in another venv
(both packages import as ``dime``, so they cannot share a process)."""

import os
import pathlib
import pickle
import struct
import subprocess

HERE = pathlib.Path(__file__).resolve().parent


class OldClientError(Exception):
    """The old client raised; ``kind`` is its exception type name, ``mro``
    the (module, qualname) of its type and bases, ``errno`` its errno (for
    an ``OSError``; else None)."""

    def __init__(self, kind, message, mro=(), errno=None):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.mro = list(mro)
        self.errno = errno


class OldClient:
    def __init__(self, python):
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        if not os.access(python, os.X_OK):
            raise RuntimeError(f"no dime-client python at {python} (tests/run-all creates .venv/compat)")
        self.proc = subprocess.Popen([python, str(HERE / "old_client_rpc.py")], cwd="/",
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def _request(self, req):
        data = pickle.dumps(req, protocol=4)
        self.proc.stdin.write(struct.pack("!I", len(data)) + data)
        self.proc.stdin.flush()
        head = self.proc.stdout.read(4)
        if len(head) < 4:
            raise RuntimeError("the dime-client subprocess died")
        (n,) = struct.unpack("!I", head)
        rep = pickle.loads(self.proc.stdout.read(n))
        if rep[0] == "ok":
            return rep[1]
        raise OldClientError(*rep[1:])

    def connect(self, *args):
        return self._request(("connect", args))

    def call(self, method, *args, **kwargs):
        return self._request(("call", method, args, kwargs))

    def attr(self, name):
        return self._request(("getattr", name))

    def close_keep(self):
        """Closes the old client's connection; later calls show what a
        closed client raises."""
        return self._request(("close_keep",))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.call("close")
            except Exception:
                pass
            # End of input ends the server loop too (say, when "close"
            # failed because no client ever connected).
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
