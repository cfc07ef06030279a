"""Builds the dime-broker distribution: the ``dime`` package plus, compiled
from the Rust crate at the repository root, the server binary
(``dime/bin/dime``) and libdime (``dime/libdime.so``).

``pip install ./bindings/python`` and ``pip wheel ./bindings/python`` run
this through setuptools-rust, which runs ``cargo build --release`` on
``../../Cargo.toml`` (so a ``cargo build --release`` already done in the
repository is reused; ``CARGO_TARGET_DIR`` moves the build elsewhere, and
``SETUPTOOLS_RUST_CARGO_PROFILE=dev`` bundles the debug build instead).
Metadata lives in pyproject.toml; this file only says what cargo builds
and where its outputs go. Building needs Rust; the wheel it makes does not.

Why setuptools-rust rather than maturin: the wheel carries two artifacts of
one crate, a C-ABI shared library loaded with ctypes and an executable.
maturin packages one kind of artifact per wheel (a Python extension or
binaries); setuptools-rust builds the executable into the package and lets
this file add the library the same ``cargo build`` produced, beside the
pure-Python package setuptools already knows how to build.
"""

import os
import pathlib
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools_rust import Binding, RustExtension, Strip, build_rust

try:  # setuptools >= 70.1 has its own; older ones use the wheel package's
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:
    from wheel.bdist_wheel import bdist_wheel

HERE = pathlib.Path(__file__).resolve().parent
CARGO_TOML = HERE.parent.parent / "Cargo.toml"
LIBNAME = {"darwin": "libdime.dylib", "win32": "dime.dll"}.get(sys.platform, "libdime.so")

if not CARGO_TOML.is_file():
    sys.exit(f"dime-broker: {CARGO_TOML} not found: build this package from a checkout of "
             "the dime repository (pip install ./bindings/python)")


class build_rust_with_library(build_rust):
    """setuptools-rust's build_rust, which copies the server binary into the
    package; this also copies libdime, built by the same ``cargo build``
    beside the binary, into the package as ``dime/libdime.so``."""

    def install_extension(self, ext, dylib_paths, build_artifact_dir):
        super().install_extension(ext, dylib_paths, build_artifact_dir)
        built = pathlib.Path(dylib_paths[0].path).parent / LIBNAME
        if not built.is_file():
            raise RuntimeError(f"cargo built {dylib_paths[0].path} but no {built}")
        # Where build_ext would put a module of the package: the build
        # directory for a wheel, the source tree for an editable install.
        build_ext = self.get_finalized_command("build_ext")
        dest = pathlib.Path(build_ext.get_ext_fullpath("dime.placeholder")).parent / LIBNAME
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Replace, never overwrite in place: a process may have the old one mapped.
        tmp = dest.with_name(dest.name + "~")
        shutil.copyfile(built, tmp)
        os.replace(tmp, dest)
        os.chmod(dest, 0o755)
        if sys.platform != "win32" and not self._is_debug_build(ext) and shutil.which("strip"):
            # The release profile keeps debug info (Cargo.toml); the wheel
            # needs none. -S keeps the exported (dynamic) symbols.
            subprocess.run(["strip", "-S", str(dest)], check=False)


class bdist_wheel_any_python(bdist_wheel):
    """Tags the wheel py3-none-<platform>: the binaries use no Python API
    (ctypes loads the library), so one wheel serves every Python 3."""

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(
    rust_extensions=[
        # Binding.Exec: a plain `cargo build` (the library and the server
        # binary, as `cargo build --release` in the repository builds them),
        # and the binary copied into the package as dime/bin/dime.
        RustExtension(
            {"dime": "dime.bin.dime"},
            path=os.path.relpath(CARGO_TOML),
            binding=Binding.Exec,
            strip=Strip.Debug,
        ),
    ],
    cmdclass={"build_rust": build_rust_with_library, "bdist_wheel": bdist_wheel_any_python},
    zip_safe=False,
)
