#!/usr/bin/env bash
# tenantgate demo: the filter deciding real requests in a real Envoy (`make run`).
#
# 1. renders envoy/envoy.yaml.tmpl into envoy/envoy.yaml (gitignored); the plugin configuration
#    is printed by `policyctl plugin-config --policy policies/demo.json --environment prod`;
# 2. starts echo-upstream and Envoy in the background (logs and access log in target/demo/);
# 3. waits for the admin endpoint's /ready, sends a handful of requests with curl and prints
#    each command with the real response, then the tenantgate counters and the access log tail;
# 4. keeps Envoy running in the foreground until Ctrl-C (or stops at once with
#    DEMO_NONINTERACTIVE=1, for CI). Envoy and the upstream are stopped by pid on any exit.
#
# Environment:
#   DEMO_LISTEN_PORT    Envoy listener          (default 10000)
#   DEMO_ADMIN_PORT     Envoy admin             (default 9901)
#   DEMO_UPSTREAM_PORT  echo-upstream           (default 8081)
#   DEMO_POLICY_PORT    cluster `policy`        (default 8082; the demo's snapshot is inline)
#   DEMO_NONINTERACTIVE 1 = stop after printing (default: stay up until Ctrl-C)
#   DEMO_READY_TIMEOUT  seconds to wait for Envoy to become ready (default 30)
#   TENANTGATE_ENVOY    Envoy binary            (default .venv/bin/envoy, as in the tests)
#
# Expects dist/tenantgate.wasm and the release builds of policyctl and echo-upstream; `make run`
# builds all three before calling this script.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

LISTEN_PORT=${DEMO_LISTEN_PORT:-10000}
ADMIN_PORT=${DEMO_ADMIN_PORT:-9901}
UPSTREAM_PORT=${DEMO_UPSTREAM_PORT:-8081}
POLICY_PORT=${DEMO_POLICY_PORT:-8082}
READY_TIMEOUT=${DEMO_READY_TIMEOUT:-30}
NONINTERACTIVE=${DEMO_NONINTERACTIVE:-0}

ENVOY=${TENANTGATE_ENVOY:-$ROOT/.venv/bin/envoy}
POLICYCTL=$ROOT/target/release/policyctl
ECHO_UPSTREAM=$ROOT/target/release/echo-upstream
WASM=$ROOT/dist/tenantgate.wasm
POLICY=policies/demo.json
TEMPLATE=$ROOT/envoy/envoy.yaml.tmpl
CONFIG=$ROOT/envoy/envoy.yaml
DEMO_DIR=$ROOT/target/demo
ACCESS_LOG=$DEMO_DIR/access.log
ENVOY_LOG=$DEMO_DIR/envoy.log
UPSTREAM_LOG=$DEMO_DIR/echo-upstream.log

ENVOY_PID=
UPSTREAM_PID=

say() { printf '%s\n' "$*"; }
section() { printf '\n== %s ==\n' "$*"; }
die() {
    printf 'demo.sh: error: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Cleanup: stop what we started, by pid, and reap it. Idempotent (EXIT runs after INT/TERM).
# ---------------------------------------------------------------------------------------------
stop_pid() {
    local name=$1 pid=$2 i
    [[ -n $pid ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "demo.sh: $name (pid $pid) ignored SIGTERM for 5 s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n $ENVOY_PID || -n $UPSTREAM_PID ]]; then
        say "stopping envoy (pid ${ENVOY_PID:--}) and echo-upstream (pid ${UPSTREAM_PID:--})"
        stop_pid envoy "$ENVOY_PID"
        stop_pid echo-upstream "$UPSTREAM_PID"
        ENVOY_PID= UPSTREAM_PID=
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------------------------
if ! command -v curl >/dev/null 2>&1; then
    say "curl not found; installing it with apt-get"
    if [[ $(id -u) -ne 0 ]]; then
        die "curl is missing and we are not root: install curl and run again"
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null ||
        die "apt-get install curl failed"
fi
[[ -x $ENVOY ]] || die "Envoy not found at $ENVOY (run \`make envoy\`, or set TENANTGATE_ENVOY)"
[[ -f $WASM ]] || die "$WASM not found (run \`make dist\`)"
for bin in "$POLICYCTL" "$ECHO_UPSTREAM"; do
    [[ -x $bin ]] || die "$bin not found (cargo build --release -p policyctl -p tenantgate-testbed)"
done

# A port something else already listens on would only show up later as an obscure failure.
for port in "$LISTEN_PORT" "$ADMIN_PORT" "$UPSTREAM_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "127.0.0.1:$port is already in use (an earlier demo still running?); pick other ports with DEMO_LISTEN_PORT / DEMO_ADMIN_PORT / DEMO_UPSTREAM_PORT"
    fi
done

mkdir -p "$DEMO_DIR"
rm -f "$ACCESS_LOG" "$ENVOY_LOG" "$UPSTREAM_LOG"

# ---------------------------------------------------------------------------------------------
# Render envoy/envoy.yaml: plain string replacement, as tests/support/mod.rs::render_template.
# ---------------------------------------------------------------------------------------------
PLUGIN_CONFIG=$("$POLICYCTL" plugin-config --policy "$POLICY" --environment prod) ||
    die "policyctl plugin-config failed for $POLICY"
# Inside a YAML single-quoted scalar: double every ', raw newlines to spaces.
PLUGIN_CONFIG=${PLUGIN_CONFIG//"'"/"''"}
PLUGIN_CONFIG=${PLUGIN_CONFIG//$'\r'/" "}
PLUGIN_CONFIG=${PLUGIN_CONFIG//$'\n'/" "}

shopt -u patsub_replacement 2>/dev/null || true # bash 5.2: no '&' magic in replacements
rendered=$(<"$TEMPLATE")
rendered=${rendered//"{{LISTEN_PORT}}"/"$LISTEN_PORT"}
rendered=${rendered//"{{ADMIN_PORT}}"/"$ADMIN_PORT"}
rendered=${rendered//"{{UPSTREAM_PORT}}"/"$UPSTREAM_PORT"}
rendered=${rendered//"{{POLICY_PORT}}"/"$POLICY_PORT"}
rendered=${rendered//"{{WASM_PATH}}"/"$WASM"}
rendered=${rendered//"{{ACCESS_LOG_PATH}}"/"$ACCESS_LOG"}
rendered=${rendered//"{{PLUGIN_CONFIG}}"/"$PLUGIN_CONFIG"}
if left=$(grep -oE '\{\{[A-Za-z0-9_]+\}\}' <<<"$rendered" | sort -u | tr '\n' ' ') && [[ -n $left ]]; then
    die "$TEMPLATE has placeholders this script does not know: $left"
fi
printf '%s\n' "$rendered" >"$CONFIG"
say "rendered ${CONFIG#"$ROOT"/} (listener $LISTEN_PORT, admin $ADMIN_PORT, upstream $UPSTREAM_PORT; plugin config from policyctl plugin-config --policy $POLICY --environment prod)"

# ---------------------------------------------------------------------------------------------
# Start echo-upstream and Envoy
# ---------------------------------------------------------------------------------------------
"$ECHO_UPSTREAM" --listen "127.0.0.1:$UPSTREAM_PORT" >"$UPSTREAM_LOG" 2>&1 </dev/null &
UPSTREAM_PID=$!
for ((i = 0; ; i++)); do
    grep -q '^listening on ' "$UPSTREAM_LOG" 2>/dev/null && break
    if ! kill -0 "$UPSTREAM_PID" 2>/dev/null || ((i >= 100)); then
        say "--- ${UPSTREAM_LOG#"$ROOT"/}:" >&2
        cat "$UPSTREAM_LOG" >&2 || true
        die "echo-upstream did not start on 127.0.0.1:$UPSTREAM_PORT"
    fi
    sleep 0.1
done
say "echo-upstream: $(head -n1 "$UPSTREAM_LOG") (pid $UPSTREAM_PID)"

"$ENVOY" -c "$CONFIG" --disable-hot-restart --log-level warn --file-flush-interval-msec 100 \
    >"$ENVOY_LOG" 2>&1 </dev/null &
ENVOY_PID=$!

envoy_failed() {
    say "--- last lines of ${ENVOY_LOG#"$ROOT"/}:" >&2
    tail -n 40 "$ENVOY_LOG" >&2 || true
    die "$*"
}
deadline=$((SECONDS + READY_TIMEOUT))
until [[ $(curl -s --max-time 2 "http://127.0.0.1:$ADMIN_PORT/ready" 2>/dev/null) == LIVE ]]; do
    if ! kill -0 "$ENVOY_PID" 2>/dev/null; then
        wait "$ENVOY_PID" && status=0 || status=$?
        ENVOY_PID=
        envoy_failed "Envoy exited during startup (status $status); config ${CONFIG#"$ROOT"/}"
    fi
    ((SECONDS < deadline)) ||
        envoy_failed "Envoy was not ready within ${READY_TIMEOUT}s (admin http://127.0.0.1:$ADMIN_PORT/ready never said LIVE)"
    sleep 0.2
done
until (exec 3<>"/dev/tcp/127.0.0.1/$LISTEN_PORT") 2>/dev/null; do
    ((SECONDS < deadline)) || envoy_failed "Envoy is LIVE but does not accept connections on $LISTEN_PORT"
    sleep 0.1
done
say "envoy: ready (pid $ENVOY_PID), $("$ENVOY" --version 2>/dev/null | grep -oE 'version: [^ ]+' | head -n1 || true)"

# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------
BASE=http://127.0.0.1:$LISTEN_PORT
RESP_HEADERS=$DEMO_DIR/last-response.headers
RESP_BODY=$DEMO_DIR/last-response.body
REQUESTS=0
FAILED=0

# Shell-quote an argument for display, only when it needs it.
shq() {
    if [[ $1 =~ ^[A-Za-z0-9_./:=@,+-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//"'"/"'\\''"}"
    fi
}

# The value of a top-level string field of echo-upstream's JSON body (no escapes in our values).
json_field() {
    grep -oE "\"$1\": ?\"[^\"]*\"" "$RESP_BODY" | head -n1 | sed -E 's/^"[^"]*": ?"(.*)"$/\1/'
}

# request TITLE EXPECTED_STATUS CURL_ARGS... (the last argument is the path)
request() {
    local title=$1 expected=$2 shown=curl arg status_line status
    shift 2
    local args=("$@")
    args[-1]=$BASE${args[-1]}
    for arg in -s "${args[@]}"; do shown+=" $(shq "$arg")"; done
    printf '\n# %s\n$ %s\n' "$title" "$shown"
    REQUESTS=$((REQUESTS + 1))
    if ! curl -s --max-time 10 -D "$RESP_HEADERS" -o "$RESP_BODY" "${args[@]}"; then
        say "  (curl failed)"
        FAILED=$((FAILED + 1))
        return 0
    fi
    status_line=$(head -n1 "$RESP_HEADERS" | tr -d '\r')
    status=$(awk 'NR == 1 { print $2 }' "$RESP_HEADERS")
    say "$status_line"
    if [[ $status == 200 ]]; then
        # echo-upstream's body: what reached the upstream. Show the path and the annotations.
        say "upstream saw: $(json_field method) $(json_field path), with the annotation headers"
        grep -oE '"(x-tenant-[a-z]+|x-principal|x-policy-revision|x-policy-decision)": ?"[^"]*"' "$RESP_BODY" |
            sed -E 's/^"([^"]*)": ?"(.*)"$/  \1: \2/' || say "  (none)"
    else
        cat "$RESP_BODY"
        echo
    fi
    if [[ $status != "$expected" ]]; then
        say "  !! expected $expected"
        FAILED=$((FAILED + 1))
    fi
}

section "allowed requests (Envoy forwards them to echo-upstream, which echoes what it received)"
request "API key of app acme-storefront: allowed, annotated with the resolved tenant" 200 \
    -H 'x-api-key: demo-storefront-key' /orders/1
request "user alice (area-wide admin) selecting tenant research by its handle" 200 \
    -H 'x-user-id: alice' -H 'x-tenant-id: research-dept' /profile
request "forged x-principal / x-tenant-roles: overwritten with what the policy resolved" 200 \
    -X POST -H 'x-api-key: demo-ops-key' -H 'x-principal: user:root' -H 'x-tenant-roles: admin' /orders/1
request "API key in the query: accepted, and removed from the path sent upstream" 200 \
    '/orders/1?page=2&apikey=demo-storefront-key&sort=asc'

section "denied requests (answered by the filter; nothing reaches the upstream)"
request "missing_credentials: no API key, no user" 401 \
    /orders/1
request "invalid_api_key: a key that is in no snapshot" 401 \
    -H 'x-api-key: not-a-key' /orders/1
request "api_key_revoked" 401 \
    -H 'x-api-key: demo-revoked-key' /orders/1
request "tenant_mismatch: the selector names initech, the route belongs to acme" 403 \
    -H 'x-api-key: demo-storefront-key' -H 'x-tenant-id: initech' /orders/1
request "membership_pending: carol is only invited to acme" 403 \
    -H 'x-user-id: carol' /orders/1
request "organization_suspended: dave's organization umbrella" 403 \
    -H 'x-user-id: dave' /umbrella/x
request "team_access_denied: the storefront app has only read on team acme-platform" 403 \
    -X POST -H 'x-api-key: demo-storefront-key' /orders/1
request "read_only_key: a read-only key writing" 403 \
    -X POST -H 'x-api-key: demo-readonly-key' /orders/1
request "product_not_subscribed: acme-ops-console has no product with route catalog" 403 \
    -H 'x-api-key: demo-ops-key' /catalog/1
request "no_route" 404 \
    -H 'x-api-key: demo-storefront-key' /nothing-here
request "invalid_path: an encoded slash" 400 \
    -H 'x-api-key: demo-storefront-key' '/orders%2F1'

# ---------------------------------------------------------------------------------------------
# Counters and access log
# ---------------------------------------------------------------------------------------------
# usedonly: counters still at 0 (never incremented) are left out. The decision counters reach
# Envoy's stats on the filter's tick (every second): wait for the last one.
sleep 1.2
section "tenantgate counters: curl -s 'http://127.0.0.1:$ADMIN_PORT/stats?usedonly&filter=tenantgate'"
curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/stats?usedonly&filter=tenantgate" || say "(admin /stats failed)"

# Lines are written when a stream ends and flushed every 100 ms; wait until all are there.
for ((i = 0; i < 50; i++)); do
    [[ -f $ACCESS_LOG && $(wc -l <"$ACCESS_LOG") -ge $REQUESTS ]] && break
    sleep 0.1
done
section "last access-log lines (${ACCESS_LOG#"$ROOT"/}; tenant/principal/route/decision/reason: the filter state of denied requests; x_tenant_id/x_principal: the annotations of allowed ones)"
tail -n 5 "$ACCESS_LOG" 2>/dev/null || say "(no access log yet)"

if ((FAILED > 0)); then
    die "$FAILED of $REQUESTS requests did not get the expected status (see above; Envoy log: ${ENVOY_LOG#"$ROOT"/})"
fi

# ---------------------------------------------------------------------------------------------
# Stay up
# ---------------------------------------------------------------------------------------------
section "done"
if [[ $NONINTERACTIVE == 1 ]]; then
    say "DEMO_NONINTERACTIVE=1: stopping now."
    exit 0
fi
say "Envoy keeps running at $BASE (admin http://127.0.0.1:$ADMIN_PORT, logs in ${DEMO_DIR#"$ROOT"/}/)."
say "Try: curl -s -H 'x-api-key: demo-storefront-key' $BASE/orders/1"
say "Press Ctrl-C to stop Envoy and echo-upstream."
wait "$ENVOY_PID" && status=0 || status=$?
ENVOY_PID=
envoy_failed "Envoy exited on its own (status $status)"
