#!/usr/bin/env python3
"""Reduces bench/envoy/run.sh's per-run records (runs.jsonl) to medians: target/bench/envoy.json.

usage: summarize.py RUNS_JSONL META_JSON OUT_JSON --wasm FILE --empty-wasm FILE --rounds N [--extra k=v]...
"""

import argparse
import json
import os
import statistics

CONFIGS = ["none", "empty_wasm", "rbac", "lua", "api_key_auth", "ext_authz_noop", "tenantgate"]
METRICS = ["rps", "p50_us", "p99_us", "cpu_us_per_req"]
# What users would pick instead of tenantgate (issue 12): Envoy's own API key check, and the
# floor of any external policy decision point (ext_authz to an authorizer that allows all).
ANCHORS = ["api_key_auth", "ext_authz_noop"]
# ext_authz_noop's cpu_us_per_req is Envoy's plus its authorizer's; the two parts.
CPU_PARTS = ["envoy_cpu_us_per_req", "authz_cpu_us_per_req"]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def anchor_comparison(envoy, anchor):
    """tenantgate against one anchor, from the medians of the same run: the CPU each adds over
    no filter, and tenantgate's figures divided by the anchor's (CPU, p50, p99 above 1 and
    rps below 1 mean tenantgate costs more). The ratio of added CPU is left out (null) when the
    anchor adds under 0.5 µs: a ratio to noise means nothing."""
    tg, an = envoy.get("tenantgate") or {}, envoy.get(anchor) or {}
    tg_added, an_added = tg.get("added_cpu_us_per_req"), an.get("added_cpu_us_per_req")
    over = {m: ratio(tg.get(m), an.get(m)) for m in METRICS}
    over["added_cpu"] = ratio(tg_added, an_added) if an_added is not None and an_added >= 0.5 else None
    return {
        "tenantgate_added_cpu_us_per_req": tg_added,
        "anchor_added_cpu_us_per_req": an_added,
        "tenantgate_minus_anchor_cpu_us_per_req": (
            round(tg_added - an_added, 1) if tg_added is not None and an_added is not None else None),
        "tenantgate_over_anchor": over,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs")
    ap.add_argument("meta")
    ap.add_argument("out")
    ap.add_argument("--wasm", required=True)
    ap.add_argument("--empty-wasm", required=True)
    ap.add_argument("--rounds", type=int, required=True)
    ap.add_argument("--extra", action="append", default=[])
    a = ap.parse_args()

    runs = [json.loads(line) for line in open(a.runs) if line.strip()]
    meta = json.load(open(a.meta))
    by = {}
    for r in runs:
        by.setdefault(r["config"], []).append(r)

    # The standard configurations, then any breakdown configuration that was measured (CONFIGS=...).
    names = CONFIGS + [n for n in by if n not in CONFIGS and n != "tenantgate_100k"]
    envoy = {}
    for name in names:
        rs = by.get(name, [])
        envoy[name] = {m: median([r.get(m) for r in rs]) for m in METRICS}
        for m in ("rps", "cpu_us_per_req"):
            if envoy[name][m] is not None:
                envoy[name][m] = round(envoy[name][m], 1)
        envoy[name]["runs"] = len(rs)
        if any(r.get(CPU_PARTS[0]) is not None for r in rs):
            for m in CPU_PARTS:
                envoy[name][m] = round(median([r.get(m) for r in rs]), 1)
            # One check per request is the point of this anchor (no cache): show it held.
            envoy[name]["authz_checks_per_request"] = ratio(
                sum(r.get("authz_checks", 0) for r in rs), sum(r["requests"] for r in rs))
    none = envoy["none"]
    for name in names:
        e = envoy[name]
        e["ratio_to_none"] = {m: ratio(e[m], none[m]) for m in METRICS}
        if e["cpu_us_per_req"] is not None and none["cpu_us_per_req"] is not None:
            e["added_cpu_us_per_req"] = round(e["cpu_us_per_req"] - none["cpu_us_per_req"], 1)

    # Added CPU over no filter, computed per round (same round = closest in time) and then
    # the median, and also from the medians.
    def per_round_added(name):
        rounds = {}
        for r in runs:
            rounds.setdefault(r["round"], {})[r["config"]] = r
        out = []
        for rr in rounds.values():
            if name in rr and "none" in rr:
                out.append(rr[name]["cpu_us_per_req"] - rr["none"]["cpu_us_per_req"])
        return median(out)

    added = {n: per_round_added(n) for n in names if n != "none"}
    tg, ew = envoy["tenantgate"].get("added_cpu_us_per_req"), envoy["empty_wasm"].get("added_cpu_us_per_req")

    def rss(name):
        return median([r.get("rss_bytes") for r in by.get(name, [])])

    big = by.get("tenantgate_100k", [])
    anchors = {name: anchor_comparison(envoy, name) for name in ANCHORS}
    doc = {
        "envoy": envoy,
        "added_cpu": {
            "tenantgate_over_empty_wasm_added_cpu": ratio(tg, ew),
            "target_max": 1.4,  # issue 12 (issue 6 asked 1.25)
            "per_round_median_added_cpu_us_per_req": {k: (round(v, 1) if v is not None else None) for k, v in added.items()},
        },
        "anchors": anchors,
        "memory": {
            "envoy_rss_none_bytes": rss("none"),
            "envoy_rss_1k_bytes": rss("tenantgate"),
            "envoy_rss_100k_bytes": rss("tenantgate_100k"),
            "envoy_rss_empty_wasm_bytes": rss("empty_wasm"),
            "envoy_rss_rbac_bytes": rss("rbac"),
            "envoy_rss_lua_bytes": rss("lua"),
            "envoy_rss_api_key_auth_bytes": rss("api_key_auth"),
            "envoy_rss_ext_authz_noop_bytes": rss("ext_authz_noop"),
            "tenantgate_linear_memory_bytes_per_vm_1k": median([r.get("linear_memory_bytes") for r in by.get("tenantgate", [])]),
            "tenantgate_linear_memory_bytes_per_vm_100k": median([r.get("linear_memory_bytes") for r in big]),
            "tenantgate_vms_100k": median([r.get("vms") for r in big]),
            "startup_s_100k": median([r.get("startup_s") for r in big]),
            "startup_s_1k": median([r.get("startup_s") for r in by.get("tenantgate", [])]),
        },
        "size": {
            "wasm_bytes": os.path.getsize(a.wasm),
            "empty_wasm_bytes": os.path.getsize(a.empty_wasm),
            "limit_bytes": 409600,
        },
        "rounds": a.rounds,
        "setup": meta,
        "errors": {
            "non2xx": sum(r.get("non2xx", 0) for r in runs),
            "socket_errors": sum(r.get("socket_errors", 0) for r in runs),
        },
    }
    for kv in a.extra:
        k, _, v = kv.partition("=")
        doc["setup"][k] = v
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    # Readable table.
    print(f"{'config':<15}{'rps':>10}{'p50 µs':>9}{'p99 µs':>9}{'CPU µs/req':>12}   ratio to none (rps p50 p99 cpu)   added CPU µs/req")
    def fmt(v, spec):
        # A configuration not measured (CONFIGS=...) keeps its column: "-" at the same width.
        width = int("".join(c for c in spec.split(".")[0] if c.isdigit()) or 0)
        return format(v, spec) if v is not None else "-".rjust(width)

    for name in names:
        e = envoy[name]
        r = e["ratio_to_none"]
        print(f"{name:<15}{fmt(e['rps'], '10.0f')}{fmt(e['p50_us'], '9.0f')}{fmt(e['p99_us'], '9.0f')}{fmt(e['cpu_us_per_req'], '12.1f')}"
              f"   {fmt(r['rps'], '.2f'):>5} {fmt(r['p50_us'], '.2f'):>5} {fmt(r['p99_us'], '.2f'):>5} {fmt(r['cpu_us_per_req'], '.2f'):>5}"
              f"            {fmt(e.get('added_cpu_us_per_req'), '+.1f')}")
        if e.get(CPU_PARTS[0]) is not None:
            print(f"{'':<15}(Envoy {fmt(e[CPU_PARTS[0]], '.1f')} + authorizer {fmt(e[CPU_PARTS[1]], '.1f')} µs/req;"
                  f" {fmt(e['authz_checks_per_request'], '.3f')} checks per request)")
    for name, c in anchors.items():
        t = c["tenantgate_over_anchor"]
        print(f"tenantgate vs {name}: added CPU {fmt(c['tenantgate_added_cpu_us_per_req'], '.1f')} vs"
              f" {fmt(c['anchor_added_cpu_us_per_req'], '.1f')} µs/req; tenantgate / {name}: CPU {fmt(t['cpu_us_per_req'], '.2f')},"
              f" p50 {fmt(t['p50_us'], '.2f')}, p99 {fmt(t['p99_us'], '.2f')}, rps {fmt(t['rps'], '.2f')}")
    print(f"tenantgate added CPU / empty wasm added CPU: {fmt(doc['added_cpu']['tenantgate_over_empty_wasm_added_cpu'], '.2f')} (target <= 1.4, issue 12)")
    m = doc["memory"]
    mib = lambda b: f"{b / 1048576:.1f} MiB" if b else "-"
    print(f"RSS: none {mib(m['envoy_rss_none_bytes'])}, tenantgate 1k {mib(m['envoy_rss_1k_bytes'])}, tenantgate 100k {mib(m['envoy_rss_100k_bytes'])}"
          f" (empty wasm {mib(m['envoy_rss_empty_wasm_bytes'])}); linear memory per VM 1k {mib(m['tenantgate_linear_memory_bytes_per_vm_1k'])},"
          f" 100k {mib(m['tenantgate_linear_memory_bytes_per_vm_100k'])} x {m['tenantgate_vms_100k']} VMs; 100k ready in {m['startup_s_100k']} s")
    print(f"size: tenantgate.wasm {doc['size']['wasm_bytes']} bytes, empty filter {doc['size']['empty_wasm_bytes']} bytes")
    if doc["errors"]["non2xx"] or doc["errors"]["socket_errors"]:
        print(f"WARNING: {doc['errors']['non2xx']} non-2xx responses, {doc['errors']['socket_errors']} socket errors during measured runs")


if __name__ == "__main__":
    main()
