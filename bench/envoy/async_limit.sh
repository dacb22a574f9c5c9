#!/usr/bin/env bash
# The largest callout body Envoy hands a proxy-wasm filter (issue 12), measured:
# for each size N, a static server that ignores Range (python3 -m http.server)
# serves N bytes as the snapshot, one Envoy (envoy/envoy.yaml.tmpl,
# dist/tenantgate.wasm) fetches it once, and the filter's log says whether the
# body arrived (`fetched snapshot refused`: the bytes are not a snapshot) or was
# dropped (`no response`; Envoy logs `the buffer size limit for async client
# response body has been exceeded`).
#
#   bench/envoy/async_limit.sh [N...]    # default: around 32 MiB
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ENVOY=${TENANTGATE_ENVOY:-$ROOT/.venv/bin/envoy}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/www"
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(33554431 33554432 33554433 33558528)

one() {
  local n=$1 port cfg server envoy verdict
  head -c "$n" /dev/zero > "$WORK/www/snapshot"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  (cd "$WORK/www" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) & server=$!
  cfg="{\"snapshot\":{\"remote\":{\"cluster\":\"policy\",\"path\":\"/snapshot\",\"poll_ms\":60000,\"timeout_ms\":10000}}}"
  sed -e "s|{{ACCESS_LOG_PATH}}|$WORK/access.log|; s|{{ADMIN_PORT}}|0|; s|{{LISTEN_PORT}}|0|" \
      -e "s|{{POLICY_PORT}}|$port|; s|{{UPSTREAM_PORT}}|1|; s|{{WASM_PATH}}|$ROOT/dist/tenantgate.wasm|" \
      -e "s|{{PLUGIN_CONFIG}}|$cfg|" "$ROOT/envoy/envoy.yaml.tmpl" > "$WORK/envoy.yaml"
  sleep 0.3
  "$ENVOY" -c "$WORK/envoy.yaml" --concurrency 1 -l info --base-id $((RANDOM + 1000)) > "$WORK/envoy.log" 2>&1 & envoy=$!
  for _ in $(seq 1 60); do
    sleep 0.5
    grep -q "snapshot fetch from\|fetched snapshot" "$WORK/envoy.log" && break
  done
  if grep -q "fetched snapshot refused" "$WORK/envoy.log"; then verdict="arrived"
  elif grep -q "buffer size limit for async client response body" "$WORK/envoy.log"; then verdict="dropped (over the async-client buffer)"
  else verdict="unknown: $(grep -o 'snapshot fetch from[^;]*' "$WORK/envoy.log" | head -1)"; fi
  echo "$n bytes: $verdict"
  kill "$envoy" "$server" 2>/dev/null || true
  wait "$envoy" "$server" 2>/dev/null || true
}

for n in "${SIZES[@]}"; do one "$n"; done
