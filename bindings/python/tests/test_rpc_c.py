"""Remote calls between C (tests/c/rpc_peer.c, compiled here against the
libdime under test) and Python, both ways, through the test broker."""

import os
import pathlib
import shutil
import subprocess
import threading

import numpy as np
import pytest

import dime
from conftest import REPO

WARNINGS = ["-Wall", "-Wextra", "-Wpedantic", "-Werror"]


@pytest.fixture(scope="module")
def rpc_peer(tmp_path_factory):
    """The compiled C peer."""
    cc = os.environ.get("CC") or shutil.which("cc")
    if not cc:
        pytest.fail("no C compiler (cc) to build tests/c/rpc_peer.c")
    lib_dir = pathlib.Path(os.environ["DIME_LIBRARY"]).resolve().parent
    exe = tmp_path_factory.mktemp("rpc_peer") / "rpc_peer"
    cmd = [cc, "-std=c99", *WARNINGS, "-g", f"-I{REPO}/include", str(REPO / "tests/c/rpc_peer.c"),
           "-o", str(exe), f"-L{lib_dir}", "-ldime", f"-Wl,-rpath,{lib_dir}", "-pthread"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stderr}"
    return str(exe)


def test_python_calls_functions_provided_by_c(server, rpc_peer):
    n_pull = 3
    proc = subprocess.Popen([rpc_peer, f"unix:{server.unix_path}", "serve", str(n_pull)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not lines or lines[-1] not in ("ready", ""):
            lines.append(proc.stdout.readline().strip())
        assert lines[-1] == "ready", lines
        c = dime.Client(f"tcp://127.0.0.1:{server.tcp_port}")
        c.connect(retry=False)
        x = np.arange(6.0).reshape(2, 3)             # C order: arrives column-major, same values
        got = c.c_scale({"x": x, "k": 2.5}).result(timeout=10)
        np.testing.assert_array_equal(got, x * 2.5)
        assert got.shape == (2, 3)
        assert c.c_neg(4.0).result(timeout=10) == -4.0          # callback form
        with pytest.raises(dime.RemoteError) as e:
            c.c_neg("not a double").result(timeout=10)
        assert "c_neg takes a double" in str(e.value)
        with pytest.raises(ValueError) as e:
            c.c_fail(None).result(timeout=10)
        assert isinstance(e.value, dime.RemoteError)
        assert e.value.remote_message == "c says no"
        assert "rpc_peer.c" in e.value.remote_traceback
        with pytest.raises(TypeError, match="c_scale takes"):
            c.c_scale("wrong").result(timeout=10)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, out + err
        assert "not ok" not in out
        c.close()
    finally:
        proc.kill()
        proc.wait()


def test_c_calls_functions_provided_by_python(server, rpc_peer):
    d = dime.DimeClient(*server.args("unix"))
    s = dime.Server(client=d)
    seen = []

    def py_add(args):
        seen.append(args)
        return args["a"] + args["b"]

    def py_fail(args):
        return 1 / 0

    s.bind("py_add", py_add)
    s.bind("py_fail", py_fail)
    with s:
        out = subprocess.run([rpc_peer, f"unix:{server.unix_path}", "call"],
                             capture_output=True, text=True, timeout=60)
    d.close()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "not ok" not in out.stdout and ", 0 failed" in out.stdout
    assert len(seen) == 2
    np.testing.assert_array_equal(seen[0]["a"], np.array([[1.0, 3, 5], [2, 4, 6]]))
    assert seen[0]["b"] == 5.0
    assert seen[1] == {"a": 1.0, "b": 5.0}       # the call C encoded itself
    with pytest.raises(ZeroDivisionError):
        s.check()


def test_python_provider_serves_c_and_python_callers_at_once(server, rpc_peer):
    """A C caller and Python callers share one Python provider pool."""
    d = dime.DimeClient(*server.args("unix"))
    s = dime.Server(client=d)
    s.bind("py_add", lambda a: a["a"] + a["b"], workers=2)
    s.bind("py_fail", lambda a: 1 / 0)
    with s:
        c = dime.Client(f"unix:{server.unix_path}")
        c.connect(retry=False)
        results = []
        t = threading.Thread(target=lambda: results.extend(
            c.py_add({"a": np.full(3, i), "b": 1}).result(timeout=10) for i in range(50)))
        t.start()
        out = subprocess.run([rpc_peer, f"unix:{server.unix_path}", "call"],
                             capture_output=True, text=True, timeout=60)
        t.join(30)
        c.close()
    d.close()
    assert out.returncode == 0, out.stdout + out.stderr
    assert [int(r[0]) for r in results] == [i + 1 for i in range(50)]
