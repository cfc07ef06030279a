"""dime.files: serving a tree, downloading and uploading by paths, globs and
regexes over several connections, progress, resume after an interruption,
and errors as the built-in exceptions old code catches."""

import os
import re
import stat

import pytest

import dime
import dime.files as files


def write(path, data, mode=0o644, mtime=1_600_000_000.5):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))


def same(a, b):
    sa, sb = os.stat(a), os.stat(b)
    assert a.read_bytes() == b.read_bytes(), b
    assert stat.S_IMODE(sa.st_mode) == stat.S_IMODE(sb.st_mode), b
    assert sa.st_mtime_ns == sb.st_mtime_ns, b


def tree(d):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    for i in range(50):
        write(r / "logs" / f"f{i:02}.txt", os.urandom(100 + i), mode=0o640, mtime=1.6e9 + i)
    write(r / "big.bin", os.urandom(3 * (1 << 20) + 12345), mode=0o600)
    write(r / "notes.md", b"# notes\n")
    return r


@pytest.fixture
def served(root, tmp_path):
    """A read-only file server with its own broker on a unix socket."""
    with files.serve(root, address=f"unix:{tmp_path}/files.sock") as s:
        yield s


def test_download_paths_glob_and_regex_over_several_connections(served, root, tmp_path):
    dest = tmp_path / "a"
    seen = []
    s = files.download("files", ["big.bin", "logs"], dest, connections=4, progress=seen.append,
                       address=served.address)
    assert s.files == 51 and s.bytes == sum(p.stat().st_size for p in root.rglob("*")
                                            if p.name != "notes.md" and p.is_file())
    same(root / "big.bin", dest / "big.bin")
    same(root / "logs" / "f07.txt", dest / "logs" / "f07.txt")
    last = seen[-1]
    assert isinstance(last, files.Progress)
    assert (last.files_done, last.files_total) == (51, 51)
    assert last.bytes_done == last.bytes_total and last.rate > 0

    glob_dest = tmp_path / "g"
    files.download("files", "logs/f1*.txt", glob_dest, address=served.address)
    assert tree(glob_dest) == [f"f{i}.txt" for i in range(10, 20)]

    re_dest = tmp_path / "r"
    files.download("files", re.compile(r"F0[0-2]\.TXT$", re.IGNORECASE), re_dest,
                   address=served.address)
    assert tree(re_dest) == ["logs/f00.txt", "logs/f01.txt", "logs/f02.txt"]

    # A second run finds everything in place and sends nothing.
    again = files.download("files", ["big.bin", "logs"], dest, address=served.address)
    assert (again.files, again.skipped, again.bytes) == (0, 51, 0)


def test_errors_are_builtin_exception_types(served, root, tmp_path):
    dest = tmp_path / "d"
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        files.download("files", "nope.txt", dest, address=served.address)
    with pytest.raises(FileNotFoundError):
        files.download("files", "*.nothing", dest, address=served.address)
    for outside in ["../secret", "/etc/passwd", "logs/../../x"]:
        with pytest.raises(PermissionError):
            files.download("files", [outside], dest, address=served.address)
    with pytest.raises(PermissionError, match="read-only"):
        files.upload("files", root / "notes.md", address=served.address)
    # All are DimeError (a RuntimeError) too, as every binding error.
    with pytest.raises(dime.DimeError):
        files.download("files", "nope.txt", dest, address=served.address)
    with pytest.raises(ValueError):
        files.download("files", [], dest, address=served.address)
    with pytest.raises(TypeError):
        files.download("files", 42, dest, address=served.address)
    with pytest.raises(dime.DimeError, match="no file server 'other'"):
        files.download("other", "x", dest, address=served.address, server_timeout=0.2)
    assert not dest.exists() or tree(dest) == []


def test_symlinks_out_of_the_root_are_refused(served, root, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, root / "link")
    with pytest.raises(PermissionError, match="outside"):
        files.download("files", "link", tmp_path / "d", address=served.address)


def test_upload_to_a_writable_server_through_a_client(server, tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    src = tmp_path / "src"
    for i in range(20):
        write(src / "set" / f"x{i}", os.urandom(500 + i), mode=0o604)
    write(src / "large", os.urandom(2 * (1 << 20) + 7), mode=0o755)
    c = server.client()
    with files.serve(root, writable=True, client=c) as srv:
        assert srv.addresses == [] and srv.address == c.address
        s = files.upload("files", ["set", "large"], "in", base=src, client=c)
        assert s.files == 21
        same(src / "large", root / "in" / "large")
        same(src / "set" / "x3", root / "in" / "set" / "x3")
        files.upload("files", "set/x1*", "glob", base=src, client=c)
        assert tree(root / "glob") == ["x1", "x10", "x11", "x12", "x13", "x14", "x15", "x16",
                                       "x17", "x18", "x19"]
        with pytest.raises(PermissionError):
            files.upload("files", ["large"], "../out", base=src, client=c)
    assert not (tmp_path / "out").exists()


def test_an_interrupted_download_resumes(served, root, tmp_path):
    dest = tmp_path / "d"

    def stop_after_a_while(p):
        if p.bytes_done >= 1 << 20:
            raise KeyboardInterrupt

    # Small pieces one at a time and a quick callback, so it sees the
    # transfer half done.
    with pytest.raises(KeyboardInterrupt):
        files.download("files", "big.bin", dest, connections=1, progress=stop_after_a_while,
                       address=served.address, piece=4 << 10, progress_interval=0.001)
    assert not (dest / "big.bin").exists()
    assert sorted(os.listdir(dest)) == [".big.bin.dime-part", ".big.bin.dime-part.manifest"]
    s = files.download("files", "big.bin", dest, address=served.address)
    assert s.resumed >= 1 << 20 and s.bytes + s.resumed == (root / "big.bin").stat().st_size
    same(root / "big.bin", dest / "big.bin")
    assert os.listdir(dest) == ["big.bin"]

    # A callback returning False cancels too.
    with pytest.raises(dime.DimeError, match="cancelled"):
        files.download("files", "big.bin", tmp_path / "e", progress=lambda p: False,
                       address=served.address, piece=4 << 10, progress_interval=0.001)
    with pytest.raises(ValueError):
        files.download("files", "big.bin", dest, piece=1000, address=served.address)


def test_serve_arguments_and_close(root, tmp_path):
    s = files.serve(root, name="docs", address=[f"unix:{tmp_path}/a.sock", "tcp:127.0.0.1:0"])
    a = s.addresses
    assert a[0] == f"unix:{tmp_path}/a.sock" and a[1].startswith("tcp:127.0.0.1:")
    assert not a[1].endswith(":0")
    files.download("docs", "notes.md", tmp_path / "d", address=a[1])
    assert (tmp_path / "d" / "notes.md").read_bytes() == b"# notes\n"
    s.close()
    s.close()
    assert s.closed and not (tmp_path / "a.sock").exists()
    with pytest.raises(dime.DimeError):
        files.serve(root, name="bad.name", address=f"unix:{tmp_path}/b.sock")
    with pytest.raises(FileNotFoundError):
        files.serve(tmp_path / "missing", address=f"unix:{tmp_path}/c.sock")
    with pytest.raises(TypeError):
        files.serve(root, address="unix:/x", client=object())
