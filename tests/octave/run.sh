#!/usr/bin/env bash
# tests/octave/run.sh — the MATLAB binding (matlab/) tested under GNU Octave.
#
#   tests/octave/run.sh              build, start a server, run every test
#   tests/octave/run.sh api errors   run only test_api.m and test_errors.m
#
# Builds libdime and the server (cargo build, debug), the MEX file
# (matlab/build.sh debug) and the C peer; starts target/debug/dime on a
# temporary unix socket and tcp:0 (and on /tmp/dime.sock, for the DiME2
# example run verbatim, when nothing is there yet); runs each
# tests/octave/test_<name>.m in its own octave-cli. Tests print one
# "PASS name" / "FAIL name: why" line per check; this script prints them
# and ends with "octave: N passed, M failed". Exit status 0 only if all
# passed. A test that crashes or prints nothing counts as one failure.
#
# test_map_keys, test_rpc and test_stream run with AddressSanitizer
# preloaded (gcc's libasan.so), so a read past a libdime string, or a
# future, request or stream freed twice or used after it was freed, aborts
# them.
#
# Environment: DIME_PYTHON (default .venv/py/bin/python, with our binding
# installed), DIME_SKIP_CARGO=1 to skip cargo build, TEST_TIMEOUT (s, per test).

set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
cd "$REPO" || exit 2

TESTS=(roundtrip seed api shapes errors python c share tuples map_keys original_server install watch
       rpc rpc_python stream stream_python arrays pipeline security)
(($# > 0)) && TESTS=("$@")

PASSED=0
FAILED=0
finish() {
    echo "octave: $PASSED passed, $FAILED failed"
    ((FAILED == 0 && PASSED > 0))
    exit $?
}
setup_failed() {
    echo "FAIL setup: $*"
    FAILED=$((FAILED + 1))
    finish
}

command -v octave-cli >/dev/null \
    || setup_failed "octave-cli not found (apt-get install octave liboctave-dev)"

if [[ "${DIME_SKIP_CARGO:-}" != 1 ]]; then
    cargo build -q || setup_failed "cargo build failed"
fi
DIME_BIN="$REPO/target/debug/dime"
LIBDIR="$REPO/target/debug"
[[ -x "$DIME_BIN" && -f "$LIBDIR/libdime.so" ]] || setup_failed "no target/debug/dime or libdime.so"

matlab/build.sh debug || setup_failed "MEX build (matlab/build.sh) failed"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/dime-octave.XXXXXX")"
SERVER_PID=""
DOUBLE_PID=""
cleanup() {
    local pid
    for pid in "$SERVER_PID" "$DOUBLE_PID"; do
        if [[ -n "$pid" ]]; then
            kill -TERM "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

gcc -std=c99 -Wall -Wextra -Wpedantic -Werror -I include "$HERE/c_peer.c" \
    -L "$LIBDIR" -ldime -Wl,-rpath,"$LIBDIR" -lm -o "$TMP/c_peer" \
    || setup_failed "building tests/octave/c_peer.c failed"

# The server. /tmp/dime.sock is served too when free, so the DiME2 example
# runs verbatim; if another server already answers there, the example uses
# that one (it only talks to itself).
SOCK="$TMP/dime.sock"
listen=(-l "unix:$SOCK" -l "tcp:0")
DEFAULT_SOCK=0
if [[ ! -e /tmp/dime.sock ]]; then
    listen+=(-l unix:/tmp/dime.sock)
    DEFAULT_SOCK=1
elif [[ -S /tmp/dime.sock ]] && python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect("/tmp/dime.sock")' 2>/dev/null; then
    DEFAULT_SOCK=1
fi
"$DIME_BIN" "${listen[@]}" 2>"$TMP/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
    grep -q "listening on tcp:" "$TMP/server.log" 2>/dev/null && [[ -S "$SOCK" ]] && break
    sleep 0.05
done
TCP_PORT="$(sed -n 's/.*listening on tcp:[^ ]*:\([0-9][0-9]*\).*/\1/p' "$TMP/server.log" | head -1)"
[[ -S "$SOCK" && -n "$TCP_PORT" ]] || setup_failed "server did not start: $(cat "$TMP/server.log")"

PY="${DIME_PYTHON:-$REPO/.venv/py/bin/python}"

# An original DiME2 server for test_original_server: the test double, which
# logs each request's command so the test can count them.
DOUBLE_SOCK="$TMP/dime2.sock"
DOUBLE_LOG="$TMP/dime2-requests.log"
python3 "$REPO/tests/dime2_double.py" -l "unix:$DOUBLE_SOCK" --log "$DOUBLE_LOG" \
    2>"$TMP/dime2.log" &
DOUBLE_PID=$!
for _ in $(seq 100); do
    [[ -S "$DOUBLE_SOCK" ]] && break
    sleep 0.05
done
[[ -S "$DOUBLE_SOCK" ]] || setup_failed "tests/dime2_double.py did not start: $(cat "$TMP/dime2.log")"

export DIME_SOCK="$SOCK" DIME_TCP_PORT="$TCP_PORT" DIME_DEFAULT_SOCK="$DEFAULT_SOCK" \
    DIME2_DOUBLE_SOCK="$DOUBLE_SOCK" DIME2_DOUBLE_LOG="$DOUBLE_LOG" \
    DIME_BIN DIME_PYTHON="$PY" DIME_C_PEER="$TMP/c_peer" \
    DIME_LIBRARY="${DIME_LIBRARY:-$LIBDIR/libdime.so}"

for t in "${TESTS[@]}"; do
    file="$HERE/test_$t.m"
    if [[ ! -f "$file" ]]; then
        echo "FAIL $t: no such test ($file)"
        FAILED=$((FAILED + 1))
        continue
    fi
    if [[ "$t" == python || "$t" == share || "$t" == tuples || "$t" == map_keys \
          || "$t" == original_server || "$t" == rpc_python || "$t" == stream_python \
          || "$t" == arrays ]] \
        && ! "$PY" -c 'import dime, numpy; dime.Share, dime.TupleSpace, dime.Client, dime.Server' 2>/dev/null; then
        echo "FAIL $t: $PY cannot import our binding (dime, with Share, TupleSpace, Client and Server) and numpy;"
        echo "     create .venv/py (tests/run-all python_binding does) or set DIME_PYTHON"
        FAILED=$((FAILED + 1))
        continue
    fi
    # test_map_keys checks that no string from libdime is read past its
    # length; under AddressSanitizer (preloaded, so it sees libdime's
    # allocations and the MEX file's strcmp/strlen/memcmp calls) such a read
    # aborts the test instead of passing whenever the stray bytes happen to
    # compare right; test_rpc, that the MEX file frees each future and
    # request exactly once; test_stream, each stream too. Leak and
    # new/free-pairing checks are off: they report Octave itself. (Peers the tests start run without it.)
    pre=()
    if [[ "$t" == map_keys || "$t" == rpc || "$t" == stream ]]; then
        asan="$(gcc -print-file-name=libasan.so)"
        if [[ "$asan" != /* || ! -f "$asan" ]]; then
            echo "FAIL $t: gcc has no libasan.so (install libasan for gcc) to run it under"
            FAILED=$((FAILED + 1))
            continue
        fi
        pre=(env "LD_PRELOAD=$asan" "ASAN_OPTIONS=detect_leaks=0:alloc_dealloc_mismatch=0:abort_on_error=0")
    fi
    out="$TMP/$t.out"
    started=$SECONDS
    timeout "${TEST_TIMEOUT:-150}" "${pre[@]}" octave-cli --no-gui --norc --no-history --quiet \
        --eval "addpath('$REPO/matlab', '$HERE'); test_$t" >"$out" 2>&1
    rc=$?
    # Octave 7 prints this at every exit in some environments; it is noise.
    grep -v "ignoring const execution_exception& while preparing to exit" "$out" \
        | grep -v '^$' || true
    p=$(grep -c '^PASS ' "$out")
    f=$(grep -c '^FAIL ' "$out")
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    if ((rc != 0 || p + f == 0)); then
        echo "FAIL $t: octave exited with status $rc after $((SECONDS - started))s"
        FAILED=$((FAILED + 1))
    fi
done

if grep -qi "panic" "$TMP/server.log"; then
    echo "FAIL server: panicked (see below)"
    cat "$TMP/server.log"
    FAILED=$((FAILED + 1))
fi
finish
