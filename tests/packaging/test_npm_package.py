"""The JavaScript package (bindings/javascript, npm dime-client-js) as its
users get it: ``npm pack``, then the tarball installed into scratch projects
outside the repository.

- node-app: the tarball and ``ws`` (Node 20 has no global WebSocket);
  npm/node-app/roundtrip.ts type-checked by tsc (strict, through the
  package's ``exports`` and ``.d.ts``; its deliberate misuses must fail),
  then the emitted JavaScript run with node against a server.
- web-app: the tarball alone, bundled by esbuild for the browser (``ws``
  left out through the package's ``browser`` field), loaded in headless
  Chromium, exchanging a matrix over the browser's WebSocket.

tsc, esbuild and playwright-core are bindings/javascript's devDependencies
(installed here with ``npm ci`` when missing); the server is
target/debug/dime; Chromium is Debian's /usr/bin/chromium ($CHROMIUM).
"""

import functools
import http.server
import json
import os
import shutil
import tarfile
import threading

import pytest

from conftest import REPO, clean_env, run

JS = REPO / "bindings" / "javascript"
HERE = REPO / "tests" / "packaging" / "npm"
SERVER = REPO / "target" / "debug" / "dime"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NPM = ["npm", "--no-audit", "--no-fund", "--loglevel=error"]
VERSION = json.loads((JS / "package.json").read_text())["version"]
NAME = json.loads((JS / "package.json").read_text())["name"]


@pytest.fixture(scope="module")
def dev_tools():
    """bindings/javascript's node_modules/.bin, with tsc, esbuild and playwright-core."""
    wanted = [JS / "node_modules" / ".bin" / "tsc", JS / "node_modules" / ".bin" / "esbuild",
              JS / "node_modules" / "playwright-core"]
    if not all(p.exists() for p in wanted):
        run([*NPM, "ci"], cwd=JS, env=clean_env(), timeout=600)
    return JS / "node_modules"


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("npm-pack")
    run([*NPM, "pack", "--pack-destination", out], cwd=JS)
    tgz = out / f"{NAME}-{VERSION}.tgz"
    assert tgz.is_file(), list(out.iterdir())
    return tgz


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory without logging each request."""

    def log_message(self, *args):
        pass


def scratch_project(where, tarball, *extra):
    """A new npm project in `where` with the tarball (and `extra` packages) installed."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "package.json").write_text(json.dumps(
        {"name": where.name, "private": True, "version": "1.0.0", "type": "module"}))
    run([*NPM, "install", tarball, *extra], cwd=where, timeout=600)
    return where


@pytest.fixture
def ws_server(start_server, tmp_path):
    server = start_server([SERVER, "-l", f"unix:{tmp_path / 'dime.sock'}", "-l", "ws:127.0.0.1:0"],
                          cwd=tmp_path, kinds=("unix", "ws"))
    return f"ws://{server.addrs['ws']}"


def test_tarball_holds_the_modules_their_types_and_the_readme(tarball):
    with tarfile.open(tarball) as t:
        names = sorted(t.getnames())
        manifest = json.load(t.extractfile("package/package.json"))
    assert names == sorted(f"package/{n}" for n in
                           ["package.json", "README.md", "dime.js", "dimeb.js", "dime.d.ts",
                            "dimeb.d.ts"])
    assert manifest["type"] == "module"
    assert manifest["engines"]["node"] == ">=20"
    assert manifest["exports"]["."] == {"types": "./dime.d.ts", "default": "./dime.js"}
    assert manifest["exports"]["./dimeb.js"] == {"types": "./dimeb.d.ts", "default": "./dimeb.js"}
    assert manifest["browser"] == {"ws": False}
    assert not manifest.get("dependencies"), "no runtime dependencies (ws is an optional peer)"


def test_typed_node_program_type_checks_and_round_trips(tarball, dev_tools, ws_server,
                                                        tmp_path):
    app = scratch_project(tmp_path / "node-app", tarball, "ws@^8")
    for f in ("roundtrip.ts", "tsconfig.json"):
        shutil.copy(HERE / "node-app" / f, app / f)
    tsc = run([dev_tools / ".bin" / "tsc", "-p", "tsconfig.json"], cwd=app, check=False)
    assert tsc.returncode == 0, f"tsc:\n{tsc.stdout}\n{tsc.stderr}"
    out = run(["node", app / "out" / "roundtrip.js", ws_server], cwd=app, timeout=60)
    assert out.stdout.strip() == "ok", out


def test_types_reject_misuse(tarball, dev_tools, tmp_path):
    """Without its @ts-expect-error lines the misuse function fails to type-check."""
    app = scratch_project(tmp_path / "misuse-app", tarball)
    source = (HERE / "node-app" / "roundtrip.ts").read_text().split("\n")
    directives = [line for line in source if line.strip().startswith("// @ts-expect-error")]
    stripped = "\n".join(line for line in source if line not in directives)
    (app / "roundtrip.ts").write_text(stripped)
    shutil.copy(HERE / "node-app" / "tsconfig.json", app / "tsconfig.json")
    tsc = run([dev_tools / ".bin" / "tsc", "-p", "tsconfig.json", "--noEmit"], cwd=app, check=False)
    errors = [line for line in tsc.stdout.split("\n") if "error TS" in line]
    assert directives and tsc.returncode != 0 and len(errors) == len(directives), tsc.stdout


def test_browser_bundle_round_trips_in_chromium(tarball, dev_tools, ws_server, tmp_path):
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} missing: apt-get install chromium"
    app = scratch_project(tmp_path / "web-app", tarball)
    for f in ("entry.js", "index.html"):
        shutil.copy(HERE / "web-app" / f, app / f)
    run([dev_tools / ".bin" / "esbuild", "entry.js", "--bundle", "--format=esm",
         "--platform=browser", "--outfile=bundle.js"], cwd=app)
    bundle = (app / "bundle.js").read_text()
    # The browser field drops the Node-only fallback instead of leaving a
    # bare import("ws") that a browser cannot resolve.
    assert 'import("ws")' not in bundle

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          functools.partial(QuietHandler, directory=str(app)))
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        page = f"http://127.0.0.1:{web.server_address[1]}/index.html"
        out = run(["node", HERE / "browser.mjs", dev_tools / "playwright-core", CHROMIUM, page,
                   ws_server], cwd=app, timeout=120)
    finally:
        web.shutdown()
        web.server_close()
    report = json.loads(out.stdout.strip().split("\n")[-1])
    assert report["errors"] == []
    result = report["result"]
    assert result["kind"] == "double" and result["shape"] == [3, 2] and result["last"] == 6
    assert "rpc" in result["extensions"]
