#!/usr/bin/env bash
# VM start and configuration reload timings (issue #12, part 5): from Envoy's start, and from
# a listener-file rename, to the first request decided by tenantgate, for the demo snapshot
# and generated worlds of 100k and 1M keys, compiled inline or remote (policyctl serve).
# Writes target/bench/startup.json. See bench/startup/README.md.
#
# Environment (defaults in brackets):
#   STARTUP_CASES ["demo_inline demo_remote 100k_inline 100k_remote 1m_inline 1m_remote"]
#   STARTUP_CAP [180] seconds per phase (start, reload) before a case counts as failed
#   SKIP_BUILD=1  reuse dist/tenantgate.wasm and target/release/policyctl as they are
#   TENANTGATE_ENVOY  Envoy binary [.venv/bin/envoy]
set -euo pipefail
unset RUST_BACKTRACE

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

STARTUP_CASES=${STARTUP_CASES:-demo_inline demo_remote 100k_inline 100k_remote 1m_inline 1m_remote}
ENVOY=${TENANTGATE_ENVOY:-$ROOT/.venv/bin/envoy}

die() {
    printf 'startup/run.sh: error: %s\n' "$*" >&2
    exit 1
}

# startup.py stops every process it started (by pid) on exit and on SIGTERM/SIGINT; this
# trap only forwards our own termination to it.
PY_PID=
stop_python() {
    [[ -n $PY_PID ]] && kill -0 "$PY_PID" 2>/dev/null && kill -TERM "$PY_PID" 2>/dev/null
    [[ -n $PY_PID ]] && wait "$PY_PID" 2>/dev/null
    return 0
}
trap stop_python EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v python3 >/dev/null 2>&1 || die "python3 not found"
[[ -x $ENVOY ]] || die "Envoy not found at $ENVOY (make envoy)"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    echo "== build: dist/tenantgate.wasm, policyctl"
    make --no-print-directory dist
    cargo build --quiet --release -p policyctl
fi
[[ -f dist/tenantgate.wasm && -x target/release/policyctl ]] ||
    die "dist/tenantgate.wasm or target/release/policyctl missing (run without SKIP_BUILD)"

# Worlds (up to ~190 MB of JSON for 1M keys, compiled twice) and each case's Envoy log stay
# in target/bench/startup/ until the next run.
# A failed run leaves no result of an earlier one for bench/summary.py to report.
rm -rf target/bench/startup target/bench/startup.json && mkdir -p target/bench/startup
python3 bench/startup/startup.py --cases "$STARTUP_CASES" --cap "${STARTUP_CAP:-180}" \
    --workdir "$ROOT/target/bench/startup" --out "$ROOT/target/bench/startup.json" &
PY_PID=$!
wait "$PY_PID"
PY_PID=
