#!/usr/bin/env bash
# matlab/build.sh [debug|release|PATH]: build the MEX file for GNU Octave
# from a shell (runs matlab/build_mex.m under octave-cli). Without an
# argument it links the libdime dime.m would use ($DIME_LIBRARY, the last
# one built against, target/release, then target/debug; see build_mex.m).
# dime.m also builds it by itself on first use.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
profile="${1:-}"
exec octave-cli --no-gui --norc --no-history --quiet \
    --eval "addpath('$here'); build_mex('$profile');"
