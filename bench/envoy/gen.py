#!/usr/bin/env python3
"""Generates the Envoy benchmark configurations (bench/envoy/run.sh) from one rule set.

The rule set is "API key -> the one route prefix its organization may use", derived from a
`policyctl generate` snapshot (raw key i is `gen-SEED-i`):

  * every key of the snapshot whose app's organization has an `<org>-orders` route is a
    candidate, with that route's `path_prefix` (e.g. `/t/org-3/orders`);
  * a candidate is in the rule set when tenantgate's own engine (`policyctl explain`, same
    snapshot, environment prod, the current clock) allows `GET <prefix>/<i>` with that key;
    keys it denies (revoked, pending, expired, unapproved app, ...) are left out, so RBAC
    and Lua deny them too (as unknown keys).

From that rule set this script writes, into OUT_DIR:

  rules.json               the rule set itself: [{"key", "org", "prefix", "path"}]
  none.json                Envoy, no HTTP filter but the router
  empty_wasm.json          Envoy + the empty proxy-wasm filter (bench/envoy/empty-filter)
  rbac.json                Envoy + envoy.filters.http.rbac: one ALLOW policy per organization,
                           permission url_path prefix, principals = its keys (x-api-key exact)
  lua.json                 Envoy + envoy.filters.http.lua: a Lua table key -> prefix
  api_key_auth.json        Envoy + envoy.filters.http.api_key_auth: the rule set's keys as
                           credentials, read from x-api-key (a key check, no tenancy)
  ext_authz_noop.json      Envoy + envoy.filters.http.ext_authz, HTTP service on cluster
                           `noop_authz` (bench/envoy/noop-authz, which allows every check);
                           its port is 0 here: run.sh sets it (set-authz-port) once the
                           authorizer is listening
  tenantgate.json          Envoy + tenantgate with the 1k-key snapshot inline
  tenantgate_100k.json     Envoy + tenantgate with a 100k-key snapshot inline, compiled (memory only)
  tenantgate_plan.json     tenantgate with the plan annotation on (measured on request)
  requests.lua             wrk script cycling through the rule set's requests (all allowed)

All configurations are JSON (a YAML subset Envoy reads directly; no quoting of a multi-MB
plugin configuration) and share one base: the HTTP connection manager options of
envoy/envoy.yaml.tmpl (codec AUTO, normalize_path, merge_slashes, escaped slashes kept), no
access log, and a single route answered by `direct_response` 200, so no upstream process
competes for the two cores. Listener and admin ports are 0 (ephemeral): run.sh reads them
back through --admin-address-path and /listeners.
"""

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def policyctl(binary, *args):
    return subprocess.run([binary, *args], check=True, capture_output=True, text=True).stdout


def base_config(http_filters, clusters=()):
    """An Envoy bootstrap with the given HTTP filters in front of the router (and the given
    clusters, for a filter that calls out; the route itself never has an upstream)."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "clusters": list(clusters),
            "listeners": [
                {
                    "name": "ingress",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "ingress_http",
                                        "codec_type": "AUTO",
                                        "normalize_path": True,
                                        "merge_slashes": True,
                                        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
                                        "route_config": {
                                            "name": "local_route",
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "direct_response": {
                                                                "status": 200,
                                                                "body": {"inline_string": "ok\n"},
                                                            },
                                                        }
                                                    ],
                                                }
                                            ],
                                        },
                                        "http_filters": http_filters
                                        + [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                                },
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }


def wasm_filter(name, path, configuration=None):
    config = {
        "name": name,
        "root_id": name,
        "vm_config": {
            "vm_id": name,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": path}},
        },
    }
    if configuration is not None:
        config["configuration"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": configuration,
        }
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": config,
        },
    }


def rbac_filter(rules):
    by_org = {}
    for rule in rules:
        by_org.setdefault((rule["org"], rule["prefix"]), []).append(rule["key"])
    policies = {}
    for (org, prefix), keys in sorted(by_org.items()):
        policies[org] = {
            "permissions": [{"url_path": {"path": {"prefix": prefix}}}],
            "principals": [
                {"header": {"name": "x-api-key", "string_match": {"exact": key}}} for key in keys
            ],
        }
    return {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules": {"action": "ALLOW", "policies": policies},
        },
    }


def api_key_auth_filter(rules):
    """Envoy's native API key check: the rule set's keys, nothing about routes or tenants (an
    unknown key gets 401; every known key passes on every path). The client name is the key's
    organization, which the filter only uses for its optional per-route `allowed_clients`."""
    return {
        "name": "envoy.filters.http.api_key_auth",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
            "credentials": [{"key": r["key"], "client": r["org"]} for r in rules],
            "key_sources": [{"header": "x-api-key"}],
        },
    }


AUTHZ_CLUSTER = "noop_authz"


def ext_authz_filter():
    """envoy.filters.http.ext_authz calling an HTTP authorization service for every request (the
    filter has no cache), as OPA-Envoy, Authorino or Cerbos are called. The check carries the
    API key (a real decision point needs it); a timeout or an error denies (failure_mode_allow
    false), so a slow authorizer shows up as errors, not as a free pass."""
    return {
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "failure_mode_allow": False,
            "http_service": {
                "server_uri": {"uri": "http://127.0.0.1", "cluster": AUTHZ_CLUSTER, "timeout": "0.25s"},
                "path_prefix": "/check",
            },
            "allowed_headers": {"patterns": [{"exact": "x-api-key"}]},
        },
    }


def authz_cluster(port=0):
    """The cluster of the no-op authorizer on loopback; port 0 until run.sh knows it."""
    return {
        "name": AUTHZ_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "0.25s",
        "load_assignment": {
            "cluster_name": AUTHZ_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }


def set_authz_port(config_path, port):
    """Rewrites the authorizer cluster's port of a generated configuration in place."""
    with open(config_path) as f:
        doc = json.load(f)
    clusters = [c for c in doc["static_resources"]["clusters"] if c["name"] == AUTHZ_CLUSTER]
    if len(clusters) != 1:
        sys.exit(f"gen.py: {config_path} has no {AUTHZ_CLUSTER} cluster")
    clusters[0].update(authz_cluster(port))
    write_json(config_path, doc)


def lua_quote(s):
    # Our keys and prefixes are [A-Za-z0-9/_-]; json.dumps gives a valid Lua string for them.
    assert all(c.isalnum() or c in "/_-." for c in s), s
    return json.dumps(s)


def lua_filter(rules):
    table = ",\n".join(f"  [{lua_quote(r['key'])}] = {lua_quote(r['prefix'])}" for r in rules)
    code = f"""-- generated by bench/envoy/gen.py: API key -> the route prefix its organization may use
local allowed = {{
{table}
}}

function envoy_on_request(handle)
  local headers = handle:headers()
  local key = headers:get("x-api-key")
  local prefix = key and allowed[key]
  if prefix == nil then
    handle:respond({{[":status"] = "401"}}, "unknown api key")
    return
  end
  local path = headers:get(":path")
  if string.sub(path, 1, #prefix) ~= prefix then
    handle:respond({{[":status"] = "403"}}, "route not allowed")
  end
end
"""
    return {
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": code},
        },
    }


def wrk_script(rules):
    entries = ",\n".join(f"  {{{lua_quote(r['key'])}, {lua_quote(r['path'])}}}" for r in rules)
    return f"""-- generated by bench/envoy/gen.py: cycles through the rule set's requests (all allowed)
local list = {{
{entries}
}}
local reqs = {{}}
local n = 0

function init(args)
  for i, r in ipairs(list) do
    reqs[i] = wrk.format("GET", r[2], {{["x-api-key"] = r[1]}})
  end
end

function request()
  n = n % #reqs + 1
  return reqs[n]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"non2xx":%d,"socket_errors":%d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def write_json(path, doc):
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")


def main():
    # `gen.py set-authz-port CONFIG PORT`: run.sh, once the no-op authorizer listens.
    if sys.argv[1:2] == ["set-authz-port"]:
        if len(sys.argv) != 4 or not sys.argv[3].isdigit():
            sys.exit("usage: gen.py set-authz-port CONFIG PORT")
        set_authz_port(sys.argv[2], int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policyctl", required=True)
    ap.add_argument("--tenantgate-wasm", required=True)
    ap.add_argument("--empty-wasm", required=True)
    ap.add_argument("--mimic-wasm", required=True)
    ap.add_argument("--mimic-batched-wasm", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--orgs", type=int, default=10)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--big-keys", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    snap_path = os.path.join(a.out, "snapshot-1k.json")
    with open(snap_path, "w") as f:
        f.write(policyctl(a.policyctl, "generate", "--orgs", str(a.orgs), "--keys", str(a.keys), "--seed", str(a.seed)))
    snap = json.load(open(snap_path))
    app_org = {app["id"]: app["organization"] for app in snap["apps"]}
    route_prefix = {r["id"]: r["path_prefix"] for r in snap["routes"]}

    candidates = []
    for i, k in enumerate(snap["api_keys"]):
        org = app_org.get(k["app"])
        prefix = route_prefix.get(f"{org}-orders")
        if org and prefix:
            candidates.append({"key": f"gen-{a.seed}-{i}", "org": org, "prefix": prefix, "path": f"{prefix}/{i}"})

    def allowed(c):
        out = policyctl(a.policyctl, "explain", "--policy", snap_path, "--environment", "prod",
                        "--method", "GET", "--path", c["path"], "--header", f"x-api-key: {c['key']}")
        return json.loads(out)["decision"] == "allow"

    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(allowed, candidates))
    rules = [c for c, ok in zip(candidates, verdicts) if ok]
    if not rules:
        sys.exit("gen.py: tenantgate allows none of the generated keys")
    write_json(os.path.join(a.out, "rules.json"), rules)

    plugin_1k = policyctl(a.policyctl, "plugin-config", "--policy", snap_path, "--environment", "prod").strip()
    big_path = os.path.join(a.out, "snapshot-100k.json")
    with open(big_path, "w") as f:
        f.write(policyctl(a.policyctl, "generate", "--orgs", str(a.orgs), "--keys", str(a.big_keys), "--seed", str(a.seed)))
    # Compiled (base64, `snapshot.compiled`), as the README recommends for large snapshots:
    # each VM loads it without parsing JSON.
    plugin_100k = policyctl(a.policyctl, "plugin-config", "--policy", big_path, "--environment", "prod",
                            "--compiled").strip()

    configs = {
        "none": base_config([]),
        "empty_wasm": base_config([wasm_filter("empty", a.empty_wasm)]),
        "mimic_wasm": base_config([wasm_filter("mimic", a.mimic_wasm)]),
        "mimic_batched_wasm": base_config([wasm_filter("mimic", a.mimic_batched_wasm)]),
        # The levers of tenantgate's hot path (issue 12): mimic_wasm makes tenantgate's host
        # calls of today; each of these adds or leaves out one group of calls (README "Levers").
        "mimic_filter_state": base_config([wasm_filter("mimic", a.mimic_wasm, "filter_state")]),
        "mimic_counter": base_config([wasm_filter("mimic", a.mimic_wasm, "counter")]),
        "mimic_no_clock": base_config([wasm_filter("mimic", a.mimic_wasm, "no_clock")]),
        "mimic_replace_headers": base_config([wasm_filter("mimic", a.mimic_wasm, "replace_headers")]),
        # tenantgate's host calls before issue 12 (filter state and a counter on every request).
        "mimic_before": base_config([wasm_filter("mimic", a.mimic_wasm, "filter_state,counter,replace_headers")]),
        "rbac": base_config([rbac_filter(rules)]),
        "lua": base_config([lua_filter(rules)]),
        "api_key_auth": base_config([api_key_auth_filter(rules)]),
        "ext_authz_noop": base_config([ext_authz_filter()], [authz_cluster()]),
        "tenantgate": base_config([wasm_filter("tenantgate", a.tenantgate_wasm, plugin_1k)]),
        "tenantgate_100k": base_config([wasm_filter("tenantgate", a.tenantgate_wasm, plugin_100k)]),
        # For the breakdown of tenantgate's cost (CONFIGS=... bench/envoy/run.sh): the same
        # filter recording the filter state of allowed requests too (a host call per value).
        "tenantgate_filter_state_all": base_config([wasm_filter(
            "tenantgate", a.tenantgate_wasm, json.dumps({**json.loads(plugin_1k), "filter_state": "all"}))]),
        # The plan annotation (x-tenant-plan, for rate limits): one more header write per
        # allowed request (CONFIGS="tenantgate tenantgate_plan" bench/envoy/run.sh).
        "tenantgate_plan": base_config([wasm_filter(
            "tenantgate", a.tenantgate_wasm, json.dumps({**json.loads(plugin_1k), "annotations": {"plan": True}}))]),
    }
    for name, doc in configs.items():
        write_json(os.path.join(a.out, f"{name}.json"), doc)
    with open(os.path.join(a.out, "requests.lua"), "w") as f:
        f.write(wrk_script(rules))

    orgs = sorted({r["org"] for r in rules})
    meta = {
        "snapshot_keys": len(snap["api_keys"]),
        "rule_set_keys": len(rules),
        "organizations": len(orgs),
        "plugin_config_bytes_1k": len(plugin_1k),
        "plugin_config_bytes_100k": len(plugin_100k),
    }
    write_json(os.path.join(a.out, "meta.json"), meta)
    print(f"gen.py: {len(rules)} of {len(snap['api_keys'])} keys allowed by tenantgate, in {len(orgs)} organizations; "
          f"plugin config {len(plugin_1k)} bytes (1k), {len(plugin_100k)} bytes (100k)")


if __name__ == "__main__":
    main()
