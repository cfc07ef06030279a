"""The Python package (bindings/python, distribution dime-broker) installed
as a user gets it: ``pip wheel ./bindings/python`` (build isolation, cargo
through setuptools-rust) then the wheel in a fresh venv in a temporary
directory, with no DIME_LIBRARY, DIME_BIN, repository or cargo in reach; and
``pip install ./bindings/python`` into another fresh venv.

The build reuses the repository's target/ (or $CARGO_TARGET_DIR), so a
release build already made is not redone. The interpreter for the venvs is
$DIME_PACKAGING_PYTHON (tests/run-all passes its $PYTHON), else python3.
"""

import ast
import email.parser
import os
import pathlib
import re
import shutil
import stat
import zipfile

import pytest

from conftest import CARGO_VERSION, REPO, clean_env, run

PYTHON = os.environ.get("DIME_PACKAGING_PYTHON", "python3")
PACKAGE_DIR = REPO / "bindings" / "python"
PIP = ["-m", "pip", "--disable-pip-version-check", "--no-input"]


def build_env():
    """A clean environment whose cargo builds into the repository's target/."""
    return clean_env(CARGO_TARGET_DIR=os.environ.get("CARGO_TARGET_DIR", str(REPO / "target")))


def user_env(**extra):
    """A clean environment whose PATH has no cargo (nor rustc): what a user of
    the wheel has on a machine without Rust."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not any(os.access(os.path.join(d, t), os.X_OK) for t in ("cargo", "rustc"))]
    env = clean_env(PATH=os.pathsep.join(dirs), **extra)
    assert shutil.which("cargo", path=env["PATH"]) is None
    return env


def make_venv(where):
    run([PYTHON, "-m", "venv", where], cwd=where.parent)
    return where / "bin" / "python"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel `pip wheel ./bindings/python` makes (run from outside the repository)."""
    out = tmp_path_factory.mktemp("wheelhouse")
    run([PYTHON, *PIP, "wheel", "--no-deps", "-w", out, PACKAGE_DIR], cwd=out, env=build_env(),
        timeout=1800)
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """A fresh venv, outside the repository, with the wheel (and numpy) installed."""
    home = tmp_path_factory.mktemp("user")
    python = make_venv(home / "venv")
    run([python, *PIP, "install", wheel], cwd=home, env=user_env(), timeout=900)
    return python


def test_wheel_is_named_and_tagged_for_any_python3_on_this_platform(wheel):
    name, version, python, abi, plat = wheel.stem.split("-")
    assert (name, version) == ("dime_broker", CARGO_VERSION)
    assert (python, abi) == ("py3", "none")
    assert plat.startswith("linux_") or plat.startswith("manylinux"), plat


def test_wheel_carries_the_library_the_server_and_the_package(wheel):
    with zipfile.ZipFile(wheel) as z:
        infos = {i.filename: i for i in z.infolist()}
        meta = email.parser.Parser().parsestr(
            z.read(f"dime_broker-{CARGO_VERSION}.dist-info/METADATA").decode())
        entry_points = z.read(f"dime_broker-{CARGO_VERSION}.dist-info/entry_points.txt").decode()
        wheel_info = z.read(f"dime_broker-{CARGO_VERSION}.dist-info/WHEEL").decode()
        elf = {n: z.read(n)[:4] for n in ("dime/libdime.so", "dime/bin/dime")}
    for name in ("dime/__init__.py", "dime/__main__.py", "dime/_lib.py", "dime/client.py"):
        assert name in infos, name
    assert elf == {"dime/libdime.so": b"\x7fELF", "dime/bin/dime": b"\x7fELF"}
    # The server keeps its executable bit through the wheel.
    assert (infos["dime/bin/dime"].external_attr >> 16) & stat.S_IXUSR
    # Stripped of the release profile's debug info (Cargo.toml keeps it for profiling).
    assert infos["dime/bin/dime"].file_size < 10_000_000
    assert infos["dime/libdime.so"].file_size < 10_000_000
    assert "Root-Is-Purelib: false" in wheel_info
    assert meta["Name"] == "dime-broker"
    assert meta["Version"] == CARGO_VERSION
    assert meta["Requires-Python"] == ">=3.9"
    runtime = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert runtime == ["numpy"]
    assert re.search(r"(?m)^dime = dime\.__main__:main$", entry_points), entry_points


def test_installed_package_loads_its_bundled_library_and_server(venv):
    site = venv.parent.parent
    out = run([venv, "-c", "import dime, dime.__main__ as m; print(dime.library_path()); "
                           "print(m.server_path()); print(dime.library_version()); "
                           "print(dime.__version__)"],
              cwd=site, env=user_env()).stdout.split("\n")
    lib, server, lib_version, py_version = out[:4]
    assert pathlib.Path(lib).resolve().is_relative_to(site.resolve()), lib
    assert pathlib.Path(lib).name == "libdime.so"
    assert pathlib.Path(server).resolve().is_relative_to(site.resolve()), server
    assert lib_version == py_version == CARGO_VERSION


def test_dime_on_path_and_python_m_dime_run_the_bundled_server(venv):
    bindir = venv.parent
    env = user_env()
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    cwd = bindir.parent
    on_path = run(["dime", "--version"], cwd=cwd, env=env).stdout.strip()
    as_module = run([venv, "-m", "dime", "--version"], cwd=cwd, env=env).stdout.strip()
    assert on_path == as_module == f"dime {CARGO_VERSION}"
    # Arguments pass through: a bad one is the server's own error and status.
    bad = run(["dime", "--no-such-flag"], cwd=cwd, env=env, check=False)
    assert bad.returncode == 2 and "--no-such-flag" in bad.stderr, bad


def test_two_clients_exchange_a_matrix_through_the_installed_server(venv, start_server):
    home = venv.parent.parent.parent
    sock = home / "dime.sock"
    server = start_server([venv.parent / "dime", "-l", f"unix:{sock}"], cwd=home, env=user_env())
    # `dime` replaced its Python process with the bundled server (exec).
    exe = pathlib.Path(os.readlink(f"/proc/{server.proc.pid}/exe"))
    assert exe.name == "dime" and exe.parent.name == "bin" and exe.parent.parent.name == "dime"
    script = home / "round_trip.py"
    script.write_text(
        "import sys\n"
        "import numpy as np\n"
        "from dime import DimeClient\n"
        "a = DimeClient('ipc', sys.argv[1]); b = DimeClient('ipc', sys.argv[1])\n"
        "a.join('a'); b.join('b')\n"
        "m = np.arange(12.0).reshape(3, 4)\n"
        "a.send_r('b', m=m)\n"
        "b.wait(timeout=10)\n"
        "got = b.sync_r()['m']\n"
        "assert got.shape == (3, 4) and (got == m).all(), got\n"
        "b.send_r('a', back=got * 2)\n"
        "a.wait(timeout=10)\n"
        "back = a.sync_r()['back']\n"
        "assert (back == 2 * m).all(), back\n"
        "a.close(); b.close()\n"
        "print('round trip ok')\n")
    out = run([venv, script, sock], cwd=home, env=user_env(), timeout=60)
    assert out.stdout.strip() == "round trip ok"
    assert server.stop() == 0, "\n".join(server.lines)


def test_pip_install_of_the_source_directory_bundles_them_too(tmp_path):
    python = make_venv(tmp_path / "venv")
    run([python, *PIP, "install", PACKAGE_DIR], cwd=tmp_path, env=build_env(), timeout=1800)
    out = run([python, "-c", "import dime, dime.__main__ as m; print(dime.library_path()); "
                             "print(m.server_path())"], cwd=tmp_path).stdout.split()
    for path in out:
        assert pathlib.Path(path).resolve().is_relative_to(tmp_path.resolve()), path
    assert run([tmp_path / "venv" / "bin" / "dime", "--version"],
               cwd=tmp_path).stdout.strip() == f"dime {CARGO_VERSION}"


def test_versions_agree(venv):
    pyproject = (PACKAGE_DIR / "pyproject.toml").read_text()
    assert re.search(r'(?m)^version = "([^"]+)"', pyproject).group(1) == CARGO_VERSION
    init = (PACKAGE_DIR / "dime" / "__init__.py").read_text()
    assert re.search(r'(?m)^__version__ = "([^"]+)"', init).group(1) == CARGO_VERSION


@pytest.mark.parametrize("module", sorted(p.name for p in (PACKAGE_DIR / "dime").glob("*.py")))
def test_modules_are_python_3_9_syntax(module):
    """The package says Requires-Python >=3.9: no newer syntax (match, ...)."""
    source = (PACKAGE_DIR / "dime" / module).read_text()
    ast.parse(source, filename=module, feature_version=(3, 9))
