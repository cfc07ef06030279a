#!/usr/bin/env bash
# bindings/javascript/run-tests.sh — the JavaScript client's test suite.
#
# Installs the npm dev dependencies (ws, playwright-core) when missing,
# starts one dime server with unix, ws and tcp listeners, runs the node
# tests against it (they find it through DIME_WS / DIME_UNIX / DIME_TCP),
# and ends with the line "JS: N passed, M failed". Exit status 0 only if
# every test passed and the server survived the run.
#
# Needs: node >= 20 and npm; target/debug/dime (built here if missing;
# DIME_BIN overrides); Debian's chromium at /usr/bin/chromium (CHROMIUM
# overrides) for the browser test; the Python compat venv .venv/compat with
# dime-client==0.0.1 and numpy (created here if missing; DIME_PYTHON
# overrides the interpreter).

set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DIME_BIN="${DIME_BIN:-$REPO/target/debug/dime}"
LOG_DIR="$REPO/target/test-logs"
mkdir -p "$LOG_DIR"

summary() {
    echo "JS: $1 passed, $2 failed"
    exit "$3"
}

cd "$HERE" || summary 0 1 1

if [[ ! -d node_modules/ws || ! -d node_modules/playwright-core ]]; then
    echo "run-tests: installing npm dependencies"
    if [[ -f package-lock.json ]]; then
        npm ci --no-audit --no-fund || summary 0 1 1
    else
        npm install --no-audit --no-fund || summary 0 1 1
    fi
fi

if [[ -z "${DIME_PYTHON:-}" && ! -x "$REPO/.venv/compat/bin/python" ]]; then
    echo "run-tests: creating the Python compat venv"
    python3 -m venv "$REPO/.venv/compat" &&
        "$REPO/.venv/compat/bin/pip" install --quiet -r "$REPO/tests/python/requirements-compat.txt" ||
        summary 0 1 1
fi

if [[ ! -x "$DIME_BIN" ]]; then
    (cd "$REPO" && cargo build --quiet) || summary 0 1 1
fi

TMP="$(mktemp -d)"
SERVER_LOG="$LOG_DIR/js-server.log"
"$DIME_BIN" -l "unix:$TMP/dime.sock" -l ws:127.0.0.1:0 -l tcp:127.0.0.1:0 2>"$SERVER_LOG" &
SERVER_PID=$!
cleanup() {
    kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

# The server prints one "dime: listening on KIND:ADDR" line per listener.
for _ in $(seq 100); do
    if grep -q '^dime: listening on ws:' "$SERVER_LOG" && grep -q '^dime: listening on tcp:' "$SERVER_LOG"; then
        break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
WS_ADDR="$(sed -n 's/^dime: listening on ws://p' "$SERVER_LOG" | head -1)"
TCP_ADDR="$(sed -n 's/^dime: listening on tcp://p' "$SERVER_LOG" | head -1)"
if [[ -z "$WS_ADDR" ]]; then
    echo "run-tests: the server did not start:"
    cat "$SERVER_LOG"
    summary 0 1 1
fi

export DIME_WS="ws://$WS_ADDR" DIME_UNIX="$TMP/dime.sock" DIME_TCP="$TCP_ADDR"
TAP="$LOG_DIR/js-tests.tap"
node --test --test-concurrency=1 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$TAP" \
    test/*.test.js
status=$?

passed="$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$TAP" | tail -1)"
failed="$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$TAP" | tail -1)"
cancelled="$(sed -n 's/^# cancelled \([0-9]*\)$/\1/p' "$TAP" | tail -1)"
passed="${passed:-0}"
failed=$(( ${failed:-0} + ${cancelled:-0} ))

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "run-tests: the server died during the run:"
    tail -20 "$SERVER_LOG"
    failed=$((failed + 1))
fi
if [[ "$status" -ne 0 && "$failed" -eq 0 ]]; then
    failed=1
fi
if [[ "$passed" -eq 0 && "$failed" -eq 0 ]]; then
    echo "run-tests: no test ran"
    failed=1
fi
[[ "$failed" -eq 0 ]] && summary "$passed" 0 0
summary "$passed" "$failed" 1
