#!/bin/sh
# Makes one self-contained folder of the MATLAB / GNU Octave binding: the
# .m files, the MEX sources, dime.h and libdime.so. Add that folder to the
# path (addpath) on any machine with a C compiler (and, for Octave,
# liboctave-dev): the first `dime(...)` builds the MEX file there against
# the libdime inside. No Rust needed.
#
#   cargo build --release
#   scripts/package-matlab.sh DEST [LIBRARY]
#
# LIBRARY defaults to target/release/libdime.so. DEST is created (it must
# not exist yet, so nothing stale is mixed in).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 1 ]; then
    echo "usage: scripts/package-matlab.sh DEST [LIBRARY]" >&2
    exit 2
fi
dest=$1
lib=${2:-$root/target/release/libdime.so}
if [ ! -f "$lib" ]; then
    echo "package-matlab: $lib not found; run 'cargo build --release' first" >&2
    exit 1
fi
if [ -e "$dest" ]; then
    echo "package-matlab: $dest already exists" >&2
    exit 1
fi

mkdir -p "$dest/private"
cp "$root"/matlab/*.m "$root"/matlab/*.c "$root"/matlab/*.h "$root/matlab/README.md" "$dest/"
cp "$root"/matlab/private/*.m "$dest/private/"
cp "$root/include/dime.h" "$dest/dime.h"
cp "$lib" "$dest/libdime.so"
chmod 755 "$dest/libdime.so"
echo "package-matlab: $dest is ready: addpath('$dest') in MATLAB or Octave"
