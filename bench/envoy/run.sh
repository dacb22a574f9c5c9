#!/usr/bin/env bash
# Envoy end-to-end benchmark (issue 6, items 3-5; issue 12's anchors): no filter vs an empty
# proxy-wasm filter vs Envoy RBAC vs an Envoy Lua filter vs Envoy's api_key_auth vs ext_authz to
# a no-op HTTP authorizer vs tenantgate (1k keys), interleaved in rounds, Envoy (and the
# authorizer) pinned to one core and wrk to another; plus Envoy RSS at 1k / 100k keys and the
# .wasm size.
# Writes target/bench/envoy.json (medians, ratios to no filter). See bench/envoy/README.md.
#
# Environment (defaults in brackets):
#   ROUNDS [5]  DURATION [4] seconds measured  WARMUP [1] second  CONNECTIONS [16]
#   ENVOY_CPU [0]  WRK_CPU [1]  (taskset core lists)
#   SKIP_BUILD=1   reuse dist/tenantgate.wasm, policyctl, the empty filter and noop-authz as they are
#   CONFIGS [$DEFAULT_CONFIGS below]
#   MEMORY [1] (0: no 100k-key RSS)
#   TENANTGATE_ENVOY  Envoy binary [.venv/bin/envoy]
set -euo pipefail
unset RUST_BACKTRACE

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-16}
ENVOY_CPU=${ENVOY_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
ENVOY=${TENANTGATE_ENVOY:-$ROOT/.venv/bin/envoy}
READY_TIMEOUT=${READY_TIMEOUT:-120}

BENCH_DIR=$ROOT/bench/envoy
OUT=$ROOT/target/bench/envoy
RESULT=$ROOT/target/bench/envoy.json
RUNS=$OUT/runs.jsonl
POLICYCTL=$ROOT/target/release/policyctl
WASM=$ROOT/dist/tenantgate.wasm
EMPTY_TARGET=$ROOT/target/bench/empty-filter
EMPTY_WASM=$OUT/empty_filter.wasm
# ext_authz_noop's authorization service (bench/envoy/noop-authz), a native binary.
AUTHZ_TARGET=$ROOT/target/bench/noop-authz
AUTHZ=$AUTHZ_TARGET/release/noop-authz
# mimic_wasm (measured by default): the empty filter making tenantgate's host calls for an
# allowed request with constant values and no policy work, so tenantgate minus mimic_wasm is
# the work inside the VM. The levers of the hot path (issue 12), also by default:
# mimic_before (the calls before issue 12), mimic_filter_state (+ four filter-state values),
# mimic_counter (+ a counter per request), mimic_no_clock (- the clock), mimic_replace_headers
# (the six annotations replaced, as before they were added). More breakdown:
# CONFIGS="... mimic_batched_wasm tenantgate_filter_state_all" (mimic_batched_wasm: the six
# header writes as one proxy_set_header_map_pairs; tenantgate_plan: the plan annotation on,
# one more header write). MEMORY=0 skips the 100k-key RSS.
DEFAULT_CONFIGS="none empty_wasm mimic_wasm mimic_before mimic_filter_state mimic_counter mimic_no_clock"
DEFAULT_CONFIGS+=" mimic_replace_headers"
DEFAULT_CONFIGS+=" rbac lua api_key_auth ext_authz_noop tenantgate"
read -r -a CONFIGS <<<"${CONFIGS:-$DEFAULT_CONFIGS}"
MEMORY=${MEMORY:-1}
CLK_TCK=$(getconf CLK_TCK)

ENVOY_PID=
AUTHZ_PID=
say() { printf '%s\n' "$*"; }
die() {
    printf 'run.sh: error: %s\n' "$*" >&2
    exit 1
}

# stop_pid PID: SIGTERM, up to 5 s of grace, then SIGKILL; reaps it. Only our own children.
stop_pid() {
    local pid=$1 i
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || true
}

# Stops the Envoy we started, by pid.
stop_envoy() {
    stop_pid "$ENVOY_PID"
    ENVOY_PID=
}

# Stops the no-op authorizer we started, by pid.
stop_authz() {
    stop_pid "$AUTHZ_PID"
    AUTHZ_PID=
}
trap 'stop_envoy; stop_authz' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Prerequisites and builds
# ---------------------------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
    say "wrk not found; installing it with apt-get"
    [[ $(id -u) -eq 0 ]] || die "wrk is missing and we are not root: apt-get install -y wrk"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null ||
        die "apt-get install wrk failed"
fi
for tool in taskset curl python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done
[[ -x $ENVOY ]] || die "Envoy not found at $ENVOY (make envoy)"
(($(nproc) >= 2)) || say "warning: fewer than 2 cores; Envoy and wrk will share one"

mkdir -p "$OUT"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    say "== build: dist/tenantgate.wasm, policyctl, the empty filter"
    make --no-print-directory dist
    cargo build --quiet --release -p policyctl
    (cd "$BENCH_DIR/empty-filter" &&
        CARGO_TARGET_DIR=$EMPTY_TARGET cargo build --quiet --release --target wasm32-wasip1 &&
        CARGO_TARGET_DIR=$EMPTY_TARGET-mimic cargo build --quiet --release --target wasm32-wasip1 --features mimic &&
        CARGO_TARGET_DIR=$EMPTY_TARGET-batched cargo build --quiet --release --target wasm32-wasip1 --features batched)
    say "== build: bench/envoy/noop-authz"
    (cd "$BENCH_DIR/noop-authz" && CARGO_TARGET_DIR=$AUTHZ_TARGET cargo build --quiet --release --locked)
fi
[[ -f $WASM && -x $POLICYCTL ]] || die "dist/tenantgate.wasm or policyctl missing (run without SKIP_BUILD)"
raw_empty=$EMPTY_TARGET/wasm32-wasip1/release/empty_filter.wasm
[[ -f $raw_empty ]] || die "$raw_empty missing (run without SKIP_BUILD)"
if [[ " ${CONFIGS[*]} " == *" ext_authz_noop "* ]]; then
    [[ -x $AUTHZ ]] || die "$AUTHZ missing (run without SKIP_BUILD)"
fi
raw_mimic=$EMPTY_TARGET-mimic/wasm32-wasip1/release/empty_filter.wasm
MIMIC_WASM=$OUT/mimic_filter.wasm
raw_batched=$EMPTY_TARGET-batched/wasm32-wasip1/release/empty_filter.wasm
BATCHED_WASM=$OUT/mimic_batched_filter.wasm
# Same post-processing as `make dist` gives tenantgate.wasm, when wasm-opt is there.
for pair in "$raw_empty:$EMPTY_WASM" "$raw_mimic:$MIMIC_WASM" "$raw_batched:$BATCHED_WASM"; do
    if command -v wasm-opt >/dev/null 2>&1; then
        wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
            --enable-mutable-globals --enable-multivalue --enable-reference-types \
            "${pair%%:*}" -o "${pair#*:}"
    else
        cp "${pair%%:*}" "${pair#*:}"
    fi
done

say "== configurations (bench/envoy/gen.py)"
python3 "$BENCH_DIR/gen.py" --policyctl "$POLICYCTL" --tenantgate-wasm "$WASM" \
    --empty-wasm "$EMPTY_WASM" --mimic-wasm "$MIMIC_WASM" --mimic-batched-wasm "$BATCHED_WASM" --out "$OUT"

# ---------------------------------------------------------------------------------------------
# One Envoy
# ---------------------------------------------------------------------------------------------
ADMIN= PORT= STARTUP_S=

# start_envoy NAME: Envoy with $OUT/NAME.json on core $ENVOY_CPU, one worker; sets ENVOY_PID,
# ADMIN (host:port), PORT (listener) and STARTUP_S (until /ready says LIVE).
start_envoy() {
    local name=$1 addr_file=$OUT/$1.admin log=$OUT/$1.envoy.log t0 status
    rm -f "$addr_file"
    t0=$(date +%s.%N)
    taskset -c "$ENVOY_CPU" "$ENVOY" -c "$OUT/$name.json" --concurrency 1 --disable-hot-restart \
        --log-level warn --component-log-level wasm:info --admin-address-path "$addr_file" \
        >"$log" 2>&1 </dev/null &
    ENVOY_PID=$!
    local deadline=$((SECONDS + READY_TIMEOUT))
    until [[ -s $addr_file && $(curl -s --max-time 2 "http://$(<"$addr_file")/ready" 2>/dev/null) == LIVE ]]; do
        if ! kill -0 "$ENVOY_PID" 2>/dev/null; then
            wait "$ENVOY_PID" && status=0 || status=$?
            ENVOY_PID=
            tail -n 20 "$log" >&2
            die "Envoy ($name) exited during startup (status $status)"
        fi
        ((SECONDS < deadline)) || {
            tail -n 20 "$log" >&2
            die "Envoy ($name) not ready within ${READY_TIMEOUT}s"
        }
        sleep 0.05
    done
    STARTUP_S=$(python3 -c "import sys; print(round($(date +%s.%N) - $t0, 2))")
    ADMIN=$(<"$addr_file")
    PORT=$(curl -s "http://$ADMIN/listeners?format=json" | python3 -c '
import json, sys
print(json.load(sys.stdin)["listener_statuses"][0]["local_address"]["socket_address"]["port_value"])')
    [[ $PORT =~ ^[0-9]+$ ]] || die "cannot read the listener port of Envoy ($name)"
}

# start_authz: the no-op authorization service on loopback, on Envoy's core (an authorizer
# deployed next to Envoy shares its machine; here it shares its core, so its CPU time is
# measured against the same budget), then points ext_authz_noop.json's cluster at its port.
# Sets AUTHZ_PID.
start_authz() {
    local out=$OUT/noop-authz.out port= i
    taskset -c "$ENVOY_CPU" "$AUTHZ" >"$out" 2>"$OUT/noop-authz.log" </dev/null &
    AUTHZ_PID=$!
    for ((i = 0; i < 100; i++)); do # "listening on 127.0.0.1:PORT", within 5 s
        port=$(grep -oE '^listening on 127\.0\.0\.1:[0-9]+$' "$out" | grep -oE '[0-9]+$') && break
        kill -0 "$AUTHZ_PID" 2>/dev/null || die "noop-authz exited: $(cat "$OUT/noop-authz.log")"
        sleep 0.05
    done
    [[ -n $port ]] || die "noop-authz did not say its port"
    python3 "$BENCH_DIR/gen.py" set-authz-port "$OUT/ext_authz_noop.json" "$port"
}

# The ext_authz checks Envoy has made and the authorizer allowed, from its admin stats.
authz_checks() {
    curl -s --max-time 5 "http://$ADMIN/stats?filter=^http\.ingress_http\.ext_authz\.ok\$" |
        awk -F': ' '{ print $2 }'
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_bytes() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }

status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }

# Equivalence spot check (first round): an allowed request passes, an unknown key and a key
# on another organization's prefix are denied by every policy-enforcing configuration. The
# anchors enforce less, by design: api_key_auth knows keys but not tenants (unknown key 401,
# another organization's prefix passes), ext_authz_noop allows everything but must ask its
# authorizer once per request (no cache): three requests, three checks.
check_config() {
    local name=$1 base=http://127.0.0.1:$PORT ok bad cross
    read -r key path other < <(python3 -c '
import json, sys
rules = json.load(open(sys.argv[1]))
a = rules[0]
b = next(r for r in rules if r["org"] != a["org"])
print(a["key"], a["path"], b["path"])' "$OUT/rules.json")
    ok=$(status_of -H "x-api-key: $key" "$base$path")
    bad=$(status_of -H "x-api-key: no-such-key" "$base$path")
    cross=$(status_of -H "x-api-key: $key" "$base$other")
    say "  check $name: allowed $ok, unknown key $bad, other org's prefix $cross"
    [[ $ok == 200 ]] || die "$name: an allowed request got $ok"
    case $name in
    none | empty_wasm | mimic*) ;;
    api_key_auth)
        [[ $bad == 401 && $cross == 200 ]] || die "$name: expected unknown key 401 and other org 200, got $bad and $cross"
        ;;
    ext_authz_noop)
        local checks
        checks=$(authz_checks)
        say "  check $name: $checks authorization checks for the 3 requests"
        [[ $checks == 3 ]] || die "$name: $checks authorization checks for 3 requests (expected one each)"
        ;;
    *)
        [[ $bad =~ ^40[13]$ && $cross == 403 ]] || die "$name: does not deny (unknown key $bad, other org $cross)"
        ;;
    esac
}

wrk_run() { # wrk_run SECONDS [--latency]: prints wrk's output
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNECTIONS" -d"$1"s "${@:2}" -s "$OUT/requests.lua" \
        "http://127.0.0.1:$PORT/"
}

linear_memory() { # linear memory per VM and number of VMs from the filter's load log line
    grep -oE 'linear memory [0-9]+ bytes' "$OUT/$1.envoy.log" | awk '{ n++; m = $3 } END { printf "%s %d\n", (n ? m : "null"), n }'
}

# measure ROUND NAME: start, warm up, RSS, measured window, stop; appends one record to $RUNS.
# For ext_authz_noop the authorizer runs alongside (started first, stopped last): its CPU time
# over the same window is added to Envoy's (cpu_us_per_req) and also kept apart
# (envoy_cpu_us_per_req, authz_cpu_us_per_req), with the number of checks it answered.
measure() {
    local round=$1 name=$2 out t0 t1 a0=0 a1=0 c0= c1= rss wrkjson lm vms
    [[ $name == ext_authz_noop ]] && start_authz
    start_envoy "$name"
    ((round == 1)) && check_config "$name"
    wrk_run "$WARMUP" >/dev/null
    rss=$(rss_bytes "$ENVOY_PID")
    if [[ -n $AUTHZ_PID ]]; then
        c0=$(authz_checks)
        a0=$(cpu_ticks "$AUTHZ_PID")
    fi
    t0=$(cpu_ticks "$ENVOY_PID")
    out=$(wrk_run "$DURATION" --latency)
    t1=$(cpu_ticks "$ENVOY_PID")
    if [[ -n $AUTHZ_PID ]]; then
        a1=$(cpu_ticks "$AUTHZ_PID")
        c1=$(authz_checks)
    fi
    printf '%s\n' "$out" >"$OUT/$name.round$round.wrk.txt"
    read -r lm vms < <(linear_memory "$name")
    stop_envoy
    stop_authz
    wrkjson=$(grep '^WRKJSON ' <<<"$out" | cut -d' ' -f2-) || die "$name: no summary from wrk"
    python3 - "$round" "$name" "$wrkjson" "$((t1 - t0))" "$((a1 - a0))" "${c0:+$((c1 - c0))}" \
        "$CLK_TCK" "$rss" "$STARTUP_S" "$lm" "$vms" >>"$RUNS" <<'EOF'
import json, sys
round_, name, w, ticks, authz_ticks, checks, hz, rss, startup, lm, vms = sys.argv[1:]
w = json.loads(w)
req = w["requests"]


def us_per_req(t):
    return int(t) * 1e6 / int(hz) / req if req else None


rec = {
    "round": int(round_), "config": name,
    "rps": req / (w["duration_us"] / 1e6),
    "p50_us": w["p50_us"], "p99_us": w["p99_us"],
    # All the CPU this configuration burns per request: Envoy's, plus its authorizer's if any.
    "cpu_us_per_req": us_per_req(int(ticks) + int(authz_ticks)),
    "requests": req, "non2xx": w["non2xx"], "socket_errors": w["socket_errors"],
    "rss_bytes": int(rss), "startup_s": float(startup),
    "linear_memory_bytes": None if lm == "null" else int(lm), "vms": int(vms),
}
if checks:
    rec["envoy_cpu_us_per_req"] = us_per_req(ticks)
    rec["authz_cpu_us_per_req"] = us_per_req(authz_ticks)
    # Checks made during the window. wrk counts the responses it got, so the requests in
    # flight at either end (one per connection at most) make the two differ slightly.
    rec["authz_checks"] = int(checks)
print(json.dumps(rec))
EOF
    tail -n1 "$RUNS" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
line = "  %-14s %9.0f rps  p50 %5d us  p99 %6d us  cpu %6.1f us/req  rss %6.1f MiB  non2xx %d" % (
    r["config"], r["rps"], r["p50_us"], r["p99_us"], r["cpu_us_per_req"], r["rss_bytes"] / 1048576, r["non2xx"])
if "authz_cpu_us_per_req" in r:
    line += "  (Envoy %.1f + authorizer %.1f us/req; %d checks for %d requests)" % (
        r["envoy_cpu_us_per_req"], r["authz_cpu_us_per_req"], r["authz_checks"], r["requests"])
print(line)'
}

# memory_only ROUND NAME: start (timed), warm up, RSS, stop.
memory_only() {
    local round=$1 name=$2 rss lm vms
    start_envoy "$name"
    ((round == 1)) && check_config "$name"
    wrk_run "$WARMUP" >/dev/null
    rss=$(rss_bytes "$ENVOY_PID")
    read -r lm vms < <(linear_memory "$name")
    stop_envoy
    printf '{"round":%d,"config":"%s","rss_bytes":%d,"startup_s":%s,"linear_memory_bytes":%s,"vms":%d}\n' \
        "$round" "$name" "$rss" "$STARTUP_S" "$lm" "$vms" >>"$RUNS"
    say "  $name: ready in ${STARTUP_S}s, rss $((rss / 1048576)) MiB, $vms VMs of linear memory $lm bytes"
}

# ---------------------------------------------------------------------------------------------
# Rounds: every configuration once per round, in the same order, so slow drifts in the load of
# this shared machine hit all of them alike.
# ---------------------------------------------------------------------------------------------
: >"$RUNS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$SECONDS
say "== $ROUNDS rounds: envoy --concurrency 1 on core $ENVOY_CPU, wrk -t1 -c$CONNECTIONS -d${DURATION}s (after ${WARMUP}s warm-up) on core $WRK_CPU; direct_response 200"
for ((round = 1; round <= ROUNDS; round++)); do
    say "round $round/$ROUNDS"
    for name in "${CONFIGS[@]}"; do
        measure "$round" "$name"
    done
    [[ $MEMORY == 0 ]] || memory_only "$round" tenantgate_100k
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

say "== medians of $ROUNDS rounds ($((SECONDS - START)) s) -> ${RESULT#"$ROOT"/}"
python3 "$BENCH_DIR/summarize.py" "$RUNS" "$OUT/meta.json" "$RESULT" \
    --wasm "$WASM" --empty-wasm "$EMPTY_WASM" --rounds "$ROUNDS" \
    --extra "date=$(date -u +%FT%TZ)" --extra "cores=$(nproc)" \
    --extra "envoy=$("$ENVOY" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1)" \
    --extra "wrk=-t1 -c$CONNECTIONS -d${DURATION}s, warm-up ${WARMUP}s" \
    --extra "pinning=envoy core $ENVOY_CPU, wrk core $WRK_CPU" \
    --extra "response=direct_response 200 (no upstream)" \
    --extra "loadavg_before=$LOAD_BEFORE" --extra "loadavg_after=$LOAD_AFTER"
