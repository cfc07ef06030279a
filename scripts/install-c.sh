#!/bin/sh
# Installs the C library: include/dime.h, libdime.so, libdime.a and a
# pkg-config file, so that `cc prog.c $(pkg-config --cflags --libs dime)`
# works.
#
#   cargo build --release
#   scripts/install-c.sh [PREFIX] [BUILD_DIR]
#
# PREFIX defaults to /usr/local, BUILD_DIR to target/release. The library
# goes to $LIBDIR (default PREFIX/lib), the header to PREFIX/include, the
# pkg-config file to $LIBDIR/pkgconfig/dime.pc.
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

mkdir -p "$prefix/include" "$libdir/pkgconfig"
cp "$root/include/dime.h" "$prefix/include/dime.h"
cp "$build/libdime.so" "$build/libdime.a" "$libdir/"
chmod 644 "$prefix/include/dime.h" "$libdir/libdime.a"
chmod 755 "$libdir/libdime.so"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@LIBDIR@|$libdir|g" -e "s|@VERSION@|$version|g" \
    "$root/dime.pc.in" > "$libdir/pkgconfig/dime.pc"
echo "install-c: installed dime $version into $prefix (library in $libdir)"
