#!/bin/sh
# Installs the C library: include/dime.h, libdime.so, libdime.a, a
# pkg-config file and a CMake package, so that both
# `cc prog.c $(pkg-config --cflags --libs dime)` and, in CMake,
# `find_package(dime)` + `target_link_libraries(app PRIVATE dime::dime)`
# work.
#
#   cargo build --release
#   scripts/install-c.sh [PREFIX] [BUILD_DIR]
#
# PREFIX defaults to /usr/local, BUILD_DIR to target/release. The library
# goes to $LIBDIR (default PREFIX/lib), the header to PREFIX/include, the
# pkg-config file to $LIBDIR/pkgconfig/dime.pc, the CMake package to
# $LIBDIR/cmake/dime/ (found when PREFIX is in CMAKE_PREFIX_PATH, or is a
# standard prefix such as /usr/local).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
prefix=${1:-/usr/local}
build=${2:-$root/target/release}
libdir=${LIBDIR:-$prefix/lib}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)

for f in libdime.so libdime.a; do
    if [ ! -f "$build/$f" ]; then
        echo "install-c: $build/$f not found; run 'cargo build --release' first" >&2
        exit 1
    fi
done
# The library's pointer size (ELF class byte: 1 = 32-bit, 2 = 64-bit), so
# CMake refuses it to a build for the other one.
case $(od -An -j4 -N1 -tu1 "$build/libdime.so" | tr -d ' ') in
    1) pointer=4 ;;
    2) pointer=8 ;;
    *) echo "install-c: $build/libdime.so is not an ELF library" >&2; exit 1 ;;
esac

fill() {
    sed -e "s|@PREFIX@|$prefix|g" -e "s|@LIBDIR@|$libdir|g" -e "s|@VERSION@|$version|g" \
        -e "s|@SIZEOF_VOID_P@|$pointer|g" "$1" > "$2"
}

mkdir -p "$prefix/include" "$libdir/pkgconfig" "$libdir/cmake/dime"
cp "$root/include/dime.h" "$prefix/include/dime.h"
cp "$build/libdime.so" "$build/libdime.a" "$libdir/"
chmod 644 "$prefix/include/dime.h" "$libdir/libdime.a"
chmod 755 "$libdir/libdime.so"
fill "$root/dime.pc.in" "$libdir/pkgconfig/dime.pc"
fill "$root/dime-config.cmake.in" "$libdir/cmake/dime/dime-config.cmake"
fill "$root/dime-config-version.cmake.in" "$libdir/cmake/dime/dime-config-version.cmake"
echo "install-c: installed dime $version into $prefix (library in $libdir)"
