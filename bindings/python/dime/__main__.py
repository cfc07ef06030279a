"""``python -m dime`` and the ``dime`` command: run the dime server.

Both run the server binary bundled in the package (``dime/bin/dime``, put
there when the wheel is built) with the arguments given, in place of this
Python process, so the process id, signals and exit status are the
server's own::

    dime -l unix:/tmp/dime.sock -l ws:8889
    python -m dime --help

In a development install without a bundled binary, ``$DIME_BIN`` or the
repository's ``target/release`` then ``target/debug`` build is run instead.
``$PATH`` is never searched: the ``dime`` found there would be this script.
"""

import os
import pathlib
import subprocess
import sys

_EXE = "dime.exe" if sys.platform == "win32" else "dime"


def _executable(path):
    return path.is_file() and os.access(path, os.X_OK)


def server_path():
    """The server binary ``dime`` runs (see the module docstring)."""
    here = pathlib.Path(__file__).resolve().parent
    bundled = here / "bin" / _EXE
    if _executable(bundled):
        return str(bundled)
    env = os.environ.get("DIME_BIN")
    if env:
        if not _executable(pathlib.Path(env)):
            raise FileNotFoundError(f"DIME_BIN={env!r} is not an executable file")
        return env
    for d in here.parents:
        for profile in ("release", "debug"):
            p = d / "target" / profile / _EXE
            if _executable(p):
                return str(p)
    raise FileNotFoundError(
        f"this dime package has no bundled server ({bundled} is missing): install the "
        f"dime-broker wheel (pip install ./bindings/python), set DIME_BIN, or run "
        f"`cargo build --release` in the dime repository")


def main(argv=None):
    """Runs the server with ``argv`` (default: this process's arguments)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        server = server_path()
    except FileNotFoundError as e:
        print(f"dime: {e}", file=sys.stderr)
        return 127
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(server, [server, *args])   # does not return
    try:
        return subprocess.call([server, *args])
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
