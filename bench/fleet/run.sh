#!/usr/bin/env bash
# A fleet of Envoys polling one snapshot source, on loopback (issue #12, part 4): fetches per
# second at the source, revocation propagation to every Envoy, a 10 s source outage.
# Sources: nginx (Debian's, installed here if missing) and `policyctl serve`. Writes
# target/bench/fleet.json. See bench/fleet/README.md.
#
# Environment (defaults in brackets):
#   FLEET_SIZES ["1 5 20"]  Envoys per fleet (--concurrency 2 each)
#   FLEET_SOURCES ["nginx policyctl_serve"]
#   FETCH_WINDOW [10] s  REVOCATIONS [5]  OUTAGE [10] s
#   SKIP_BUILD=1  reuse dist/tenantgate.wasm and target/release/policyctl as they are
#   TENANTGATE_ENVOY  Envoy binary [.venv/bin/envoy]
set -euo pipefail
unset RUST_BACKTRACE

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

FLEET_SIZES=${FLEET_SIZES:-1 5 20}
FLEET_SOURCES=${FLEET_SOURCES:-nginx policyctl_serve}
ENVOY=${TENANTGATE_ENVOY:-$ROOT/.venv/bin/envoy}

die() {
    printf 'fleet/run.sh: error: %s\n' "$*" >&2
    exit 1
}

# fleet.py stops every process it started (by pid) on exit and on SIGTERM/SIGINT; this trap
# only forwards our own termination to it.
PY_PID=
stop_python() {
    [[ -n $PY_PID ]] && kill -0 "$PY_PID" 2>/dev/null && kill -TERM "$PY_PID" 2>/dev/null
    [[ -n $PY_PID ]] && wait "$PY_PID" 2>/dev/null
    return 0
}
trap stop_python EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# nginx only when a run measures it: Debian's nginx-light (static files and ETags are all
# it needs), else the full package.
if [[ " $FLEET_SOURCES " == *" nginx "* ]] && ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
    echo "nginx not found; installing nginx-light with apt-get"
    [[ $(id -u) -eq 0 ]] || die "nginx is missing and we are not root: apt-get install -y nginx-light"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null ||
        die "apt-get install nginx failed"
fi
command -v python3 >/dev/null 2>&1 || die "python3 not found"
[[ -x $ENVOY ]] || die "Envoy not found at $ENVOY (make envoy)"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    echo "== build: dist/tenantgate.wasm, policyctl"
    make --no-print-directory dist
    cargo build --quiet --release -p policyctl
fi
[[ -f dist/tenantgate.wasm && -x target/release/policyctl ]] ||
    die "dist/tenantgate.wasm or target/release/policyctl missing (run without SKIP_BUILD)"

# Each case keeps its logs (Envoys, source) in target/bench/fleet/<case>/ until the next run.
# A failed run leaves no result of an earlier one for bench/summary.py to report.
rm -rf target/bench/fleet target/bench/fleet.json && mkdir -p target/bench/fleet
python3 bench/fleet/fleet.py --sizes "$FLEET_SIZES" --sources "$FLEET_SOURCES" \
    --fetch-window "${FETCH_WINDOW:-10}" --revocations "${REVOCATIONS:-5}" --outage "${OUTAGE:-10}" \
    --workdir "$ROOT/target/bench/fleet" --out "$ROOT/target/bench/fleet.json" &
PY_PID=$!
wait "$PY_PID"
PY_PID=
