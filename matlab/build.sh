#!/usr/bin/env bash
# matlab/build.sh [debug|release]: build the MEX file for GNU Octave from a
# shell (runs matlab/build_mex.m under octave-cli). Without an argument it
# links target/release/libdime.so if built, else target/debug.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
profile="${1:-}"
exec octave-cli --no-gui --norc --no-history --quiet \
    --eval "addpath('$here'); build_mex('$profile');"
