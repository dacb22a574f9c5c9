#!/usr/bin/env python3
"""Merges one `make bench` run into target/bench/summary.json and docs/PERFORMANCE.md.

Inputs (all written by the same run):
  target/bench/engines.json   bench/engines (tenantgate vs cedar-policy vs regorus)
  target/bench/fuel.txt       `fuel_allow=N fuel_deny=M` from crates/testbed/tests/wasm_host.rs
  target/bench/envoy.json     bench/envoy/run.sh (Envoy side by side, memory, size)
  target/bench/fleet.json     bench/fleet/run.sh (N Envoys polling one snapshot source)
  target/bench/startup.json   bench/startup/run.sh (VM start and reload to the first decision)
A missing input is reported as null with the reason, never invented.
"""
import datetime
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "target", "bench")


def load_json(name):
    path = os.path.join(BENCH, name)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"summary: {name}: {e}", file=sys.stderr)
        return None


def load_with_reason(name):
    """(parsed JSON, None) or (None, why it is missing)."""
    path = os.path.join(BENCH, name)
    try:
        with open(path) as f:
            return json.load(f), None
    except (OSError, ValueError) as e:
        print(f"summary: {name}: {e}", file=sys.stderr)
        return None, f"target/bench/{name}: {e.strerror if isinstance(e, OSError) else e}"


def scale_rss(scale):
    """memory.rss_mib: Envoy's RSS with a remote snapshot, per key count and worker count
    (bench/scale), and with no filter."""
    if not scale:
        return None
    rss = {"none": (scale.get("none") or {}).get("rss_mib")}
    for keys, per in (scale.get("keys") or {}).items():
        rss[keys] = {w: row.get("rss_mib") for w, row in (per.get("workers") or {}).items()}
    return rss


def scale_markdown(s):
    scale = s.get("scale")
    if not scale:
        return ["## Keys once per process", "", f"Not measured: {s['missing'].get('scale')}", ""]
    none = scale.get("none") or {}
    lines = [
        "## Keys once per process (issue 12)",
        "",
        "A generated snapshot served by `policyctl serve` as `snapshot.remote`; the fetching VM"
        " moves its API keys, and its apps with their grants, into the key tier in Envoy's shared"
        " data, every VM holds the rest"
        f" (`bench/scale`). Envoy with no filter: RSS {fmt(none.get('rss_mib'), 1)} MiB,"
        f" {fmt(none.get('cpu_us_per_req'), 1)} µs CPU per request. Target: RSS ≤ no filter + 2 ×"
        " the compiled snapshot; a worker VM's linear memory ≤ 32 MiB; a new revision on every"
        " VM ≤ 2 s.",
        "",
        "| keys | compiled MiB | workers | RSS MiB | RSS target MiB | key tier in shared data MiB"
        " | linear memory per VM MiB | new revision on every VM s, median / max"
        " | fetcher: fetch / load / tier ms | CPU µs/req cold / warm"
        " | RSS after each revision MiB | Envoy heap in use / free kept MiB, after them |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for keys, per in (scale.get("keys") or {}).items():
        size = (per.get("compiled_bytes") or 0) / 2**20
        for workers, row in (per.get("workers") or {}).items():
            cpu = "" if "cpu_us_per_req_warm" not in row else \
                f"{fmt(row.get('cpu_us_per_req_cold'), 1)} / {fmt(row.get('cpu_us_per_req_warm'), 1)}"
            memory = ", ".join(fmt(m, 1) for m in row.get("linear_memory_mib") or []) or "not loaded"
            fetcher = row.get("new_revision_fetcher_ms") or {}
            timing = " / ".join(fmt(fetcher.get(k)) for k in ("fetch", "load", "tier")) if fetcher else ""
            revision = f"{fmt(row.get('new_revision_s'), 2)} / {fmt(row.get('new_revision_max_s'), 2)}"
            after = ", ".join(fmt(m, 1) for m in row.get("rss_after_each_revision_mib") or [])
            heap = row.get("envoy_heap_after_revisions_mib") or {}
            heap = f"{fmt(heap.get('allocated'), 1)} / {fmt(heap.get('free_kept'), 1)}" if heap else ""
            lines.append(
                f"| {int(keys):,} | {size:.1f} | {workers} | {fmt(row.get('rss_mib'), 1)} |"
                f" {fmt(row.get('rss_limit_mib'), 1)} | {fmt(row.get('tier_mib'), 1)} | {memory} |"
                f" {revision} | {timing} | {cpu} | {after} | {heap} |"
            )
    lines += [
        "",
        "The largest linear memory is the fetching VM's (it keeps the compiled snapshot less its"
        " keys and apps, which it cuts into the tier as the parts arrive, and decodes it; wasm"
        " memory never shrinks); the others are worker VMs holding the snapshot without keys and"
        " apps. New revision: from a new compiled file renamed into place, at a random point of"
        " the 1 s poll interval, to every VM's load line; the fetcher's part of it is its fetch"
        " (including the source's own reload of the file, and the check and cut of the keys and"
        " apps, their buckets written as the parts arrive), the check of the rest, and the"
        " buckets' count recorded. Cold: every request a"
        " key the worker has not seen (its key and app buckets are read from the shared data);"
        " warm: 512 keys again and again (the worker's cache). After each revision (once the"
        " replaced tier is emptied) Envoy's RSS holds two tiers' worth of heap: the free pages of"
        " the replaced one are kept by Envoy's allocator (tcmalloc) and reused by the next tier,"
        " so the RSS levels off after the first revision instead of growing with each.",
        "",
    ]
    return lines


def scale_targets(s):
    """Issue 12's memory and swap targets at 1M keys and 4 workers (bench/scale)."""
    row = (((s.get("scale") or {}).get("keys") or {}).get("1000000") or {}).get("workers", {}).get("4")
    if not row:
        return ["| 1M keys, 4 workers (issue 12) | not measured | n/a |"]
    rss, limit = row.get("rss_mib"), row.get("rss_limit_mib")
    # Every VM but the largest (the fetching VM) is a worker.
    workers = sorted(row.get("linear_memory_mib") or [])[:-1]
    worker = max(workers) if workers else None
    median, largest = row.get("new_revision_s"), row.get("new_revision_max_s")
    return [
        f"| 1M keys, 4 workers: Envoy RSS ≤ no filter + 2 × compiled (issue 12) | {fmt(rss, 1)} vs"
        f" {fmt(limit, 1)} MiB | {verdict(None if None in (rss, limit) else rss <= limit)} |",
        f"| 1M keys, 4 workers: a worker VM's linear memory ≤ 32 MiB (issue 12) | {fmt(worker, 1)} MiB |"
        f" {verdict(None if worker is None else worker <= 32)} |",
        f"| 1M keys, 4 workers: new revision on every VM ≤ 2 s (issue 12), median / max |"
        f" {fmt(median, 2)} / {fmt(largest, 2)} s | {verdict(None if largest is None else largest <= 2)} |",
    ]


def fleet_summary(fleet):
    """fleet.<source>.<N>: the figures of bench/fleet per source and fleet size."""
    out = {}
    for source, per_n in (fleet.get("sources") or {}).items():
        rows = {}
        for n, row in per_n.items():
            if n == "linear_in_n":
                continue
            rev = row.get("revocation") or {}
            outage = row.get("outage") or {}
            rows[n] = {
                "envoys": row.get("envoys"),
                "fetches_per_s": row.get("fetches_per_s"),
                "fetches_per_s_per_envoy": row.get("fetches_per_s_per_envoy"),
                "revocation_all_envoys_median_ms": rev.get("median_ms"),
                "revocation_all_envoys_max_ms": rev.get("max_ms"),
                "revocations": rev.get("count"),
                "outage_down_s": outage.get("down_s"),
                "outage_requests": outage.get("requests"),
                "outage_failed_requests": outage.get("failed"),
                "outage_new_revision_all_envoys_ms": outage.get("new_revision_all_ms"),
                "poll_interval_ms_per_envoy": outage.get("poll_interval_ms_per_envoy"),
                "error": row.get("error") or ("; ".join(rev.get("failures") or []) or None),
            }
        rows["one_fetcher_per_envoy"] = (per_n.get("linear_in_n") or {}).get("one_fetcher_per_envoy")
        out[source] = rows
    out["poll_ms"] = fleet.get("poll_ms")
    out["workers_per_envoy"] = fleet.get("workers_per_envoy")
    return out


def startup_summary(startup):
    """startup.<case>: seconds from Envoy's start / a listener reload to the first decision."""
    out = {}
    for case, row in (startup.get("cases") or {}).items():
        start, reload = row.get("start") or {}, row.get("reload") or {}
        out[case] = {
            "keys": row.get("keys"),
            "delivery": row.get("delivery"),
            "compiled_bytes": row.get("compiled_bytes"),
            "start_to_first_decision_s": start.get("first_decided_s"),
            "reload_to_first_decision_s": reload.get("first_decided_s"),
            "reload_answers_before": reload.get("answers_before"),
            "rss_bytes_after_start": start.get("rss_bytes"),
            "error": row.get("error") or start.get("error") or reload.get("error"),
        }
    return out


def load_fuel():
    try:
        with open(os.path.join(BENCH, "fuel.txt")) as f:
            text = f.read()
    except OSError:
        return {}
    found = {}
    for name in ["allow", "deny", "token", "logged", "unshadowed", "shadowed", "shadow_disagreeing"]:
        match = re.search(r"fuel_%s=(\d+)" % name, text)
        found[name] = int(match.group(1)) if match else None
    return found


def main():
    engines = load_json("engines.json") or {}
    envoy = load_json("envoy.json") or {}
    fuel = load_fuel()
    fleet, fleet_missing = load_with_reason("fleet.json")
    startup, startup_missing = load_with_reason("startup.json")
    scale, scale_missing = load_with_reason("scale.json")
    sizes = ["1k", "100k", "1m"]
    engine = {}
    for name in ("tenantgate", "cedar", "regorus"):
        per = engines.get(f"{name}_ns") or {}
        engine[f"{name}_ns"] = {s: per.get(s) for s in sizes}
    if engines.get("regorus_rvm_ns"):
        engine["regorus_rvm_ns"] = engines["regorus_rvm_ns"]
    measured = (envoy.get("envoy") or {}).keys()
    configs = ["none", "empty_wasm", "rbac", "lua", "api_key_auth", "ext_authz_noop", "tenantgate"]
    configs += [c for c in measured if c not in configs]
    envoy_summary = {}
    for c in configs:
        row = (envoy.get("envoy") or {}).get(c) or {}
        envoy_summary[c] = {k: row.get(k) for k in ("rps", "p50_us", "p99_us", "cpu_us_per_req")}
        envoy_summary[c]["ratio_to_none"] = row.get("ratio_to_none")
    memory = envoy.get("memory") or {}
    wasm_path = os.path.join(ROOT, "dist", "tenantgate.wasm")
    summary = {
        "engine": engine,
        "wasm": {"fuel_allow": fuel.get("allow"), "fuel_deny": fuel.get("deny"),
                 "fuel_token": fuel.get("token"), "fuel_logged": fuel.get("logged"),
                 "fuel_unshadowed": fuel.get("unshadowed"), "fuel_shadowed": fuel.get("shadowed"),
                 "fuel_shadow_disagreeing": fuel.get("shadow_disagreeing")},
        "envoy": envoy_summary,
        "memory": {
            k: memory.get(k)
            for k in ("envoy_rss_none_bytes", "envoy_rss_1k_bytes", "envoy_rss_100k_bytes",
                      "tenantgate_linear_memory_bytes_per_vm_1k", "tenantgate_linear_memory_bytes_per_vm_100k")
        } | {"rss_mib": scale_rss(scale)},
        "scale": scale,
        "anchors": anchors_summary(envoy),
        "levers": levers_summary(envoy_summary),
        "size": {"wasm_bytes": os.path.getsize(wasm_path) if os.path.exists(wasm_path) else None},
        "fleet": fleet_summary(fleet) if fleet else None,
        "startup": startup_summary(startup) if startup else None,
        "missing": {k: v for k, v in (("fleet", fleet_missing), ("startup", startup_missing),
                                      ("scale", scale_missing)) if v},
        "machine": {
            "cores": os.cpu_count(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }
    with open(os.path.join(BENCH, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    write_markdown(summary, engines, envoy, fleet, startup)
    print(f"wrote {os.path.relpath(os.path.join(BENCH, 'summary.json'), ROOT)} and docs/PERFORMANCE.md")


def levers_summary(rows):
    """What each group of host calls of the hot path costs (issue 12), from the mimic_* rows."""
    def cpu(name):
        return (rows.get(name) or {}).get("cpu_us_per_req")

    def diff(a, b):
        return None if None in (cpu(a), cpu(b)) else round(cpu(a) - cpu(b), 2)

    return {
        "filter_state_us": diff("mimic_filter_state", "mimic_wasm"),
        "counter_us": diff("mimic_counter", "mimic_wasm"),
        "clock_us": diff("mimic_wasm", "mimic_no_clock"),
        "replace_headers_us": diff("mimic_replace_headers", "mimic_wasm"),
        "before_minus_now_us": diff("mimic_before", "mimic_wasm"),
    }


def levers_markdown(s, added):
    lv = s["levers"]
    return [
        "## Levers of the hot path (issue 12)",
        "",
        "`mimic_wasm` makes tenantgate's host calls of today for an allowed request (the header map,"
        " the clock, six annotation writes); `mimic_before` those before issue 12 (also four"
        " filter-state values and a counter, and the annotations replaced). Each lever is one group of calls added to or left out"
        " of `mimic_wasm`, CPU per request in this run:",
        "",
        "| lever | µs per request | kept? |",
        "|---|---|---|",
        f"| four filter-state values (`filter_state: all`) | {fmt(lv['filter_state_us'], 2)} |"
        " off by default: `denials` (allowed requests are logged by their annotations) |",
        f"| a counter per request | {fmt(lv['counter_us'], 2)} |"
        " counted in the VM, flushed on the tick (≤ 1 s) |",
        f"| the clock | {fmt(lv['clock_us'], 2)} | kept: key and organization expiry need the time"
        " of the request; a clock cached per tick would let an expired key through |",
        f"| the six annotations replaced rather than added | {fmt(lv.get('replace_headers_us'), 2)} |"
        " added: once the forged spellings are removed an annotation's name is absent, and Envoy's"
        " add skips the lookup its replace makes (a forged copy under the exact name is still"
        " replaced) |",
        f"| all of them (before → now) | {fmt(lv['before_minus_now_us'], 2)} |"
        f" mimic before {fmt(added('mimic_before'), 1)} → now {fmt(added('mimic_wasm'), 1)} µs added |",
        "",
        "The floor of what the contract asks of the host (the header map, the clock, the six"
        " annotation headers), with no policy work at all, is `mimic_wasm`:"
        f" {fmt(ratio(added('empty_wasm'), added('mimic_wasm')), 2)}x the empty filter's added CPU"
        " in this run, so tenantgate's own ratio cannot reach 1.4x while each annotation is a host call.",
        "",
    ]


ANCHORS = ("api_key_auth", "ext_authz_noop")


def anchors_summary(envoy):
    """tenantgate against what users would pick instead (issue 12), as bench/envoy/summarize.py
    computed it from the same run's medians; for ext_authz_noop, also the two parts of its CPU
    (Envoy's and the authorizer's) and the checks made per request (1: no cache)."""
    anchors = envoy.get("anchors") or {}
    rows = (envoy.get("envoy") or {})
    out = {}
    for name in ANCHORS:
        a = dict(anchors.get(name) or {})
        a.setdefault("tenantgate_added_cpu_us_per_req", None)
        a.setdefault("anchor_added_cpu_us_per_req", None)
        a.setdefault("tenantgate_over_anchor", None)
        row = rows.get(name) or {}
        if name == "ext_authz_noop":
            a["cpu_parts_us_per_req"] = {"envoy": row.get("envoy_cpu_us_per_req"),
                                         "authorizer": row.get("authz_cpu_us_per_req")}
            a["authz_checks_per_request"] = row.get("authz_checks_per_request")
        out[name] = a
    return out


def ratio(a, b):
    return None if not a or not b else b / a


def fmt(v, digits=0):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}"


def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def anchors_markdown(s):
    """The section comparing tenantgate with the anchors, all figures from this run."""
    lines = [
        "## Against what users would pick instead (same run)",
        "",
        "`api_key_auth` is Envoy's native API key check (the same allowed keys, no tenancy);"
        " `ext_authz_noop` is Envoy's `ext_authz` calling, for every request, an HTTP authorizer"
        " that allows everything: the floor under any external policy decision point (OPA-Envoy,"
        " Authorino, Cerbos), before it evaluates any policy. Added CPU is over no filter;"
        " the ratios are tenantgate's figure divided by the anchor's (above 1 for CPU and"
        " latency, below 1 for req/s: tenantgate costs more).",
        "",
        "| anchor | anchor added CPU µs | tenantgate added CPU µs | added CPU ratio | CPU / req ratio"
        " | p50 ratio | p99 ratio | req/s ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def times(v):
        return "n/a" if v is None else f"{v:,.2f}x"

    for name, a in s["anchors"].items():
        over = a.get("tenantgate_over_anchor") or {}
        lines.append(
            f"| {name} | {fmt(a.get('anchor_added_cpu_us_per_req'), 1)} | {fmt(a.get('tenantgate_added_cpu_us_per_req'), 1)} |"
            f" {times(over.get('added_cpu'))} | {times(over.get('cpu_us_per_req'))} | {times(over.get('p50_us'))} |"
            f" {times(over.get('p99_us'))} | {times(over.get('rps'))} |"
        )
    lines += [
        "",
        "The added CPU ratio is n/a when the anchor adds under 0.5 µs (a ratio to noise).",
    ]
    ext = s["anchors"].get("ext_authz_noop") or {}
    parts = ext.get("cpu_parts_us_per_req") or {}
    lines += [
        "",
        f"`ext_authz_noop` CPU per request: Envoy {fmt(parts.get('envoy'), 1)} µs + authorizer"
        f" {fmt(parts.get('authorizer'), 1)} µs (`bench/envoy/noop-authz`, hyper on one thread, pinned"
        f" to Envoy's core); {fmt(ext.get('authz_checks_per_request'), 3)} checks per request.",
        "",
    ]
    return lines


def write_markdown(s, engines, envoy, fleet=None, startup=None):
    e = s["engine"]
    t, c, r = e["tenantgate_ns"], e["cedar_ns"], e["regorus_ns"]
    lines = [
        "# Performance",
        "",
        f"Generated by `make bench` on {s['machine']['date']} ({s['machine']['cores']} cores) from one run;"
        " `target/bench/summary.json` holds the same figures. These machines are noisy: compare"
        " the ratios within a run, not absolute times across runs.",
        "",
        "## Engine: ns per decision (same questions, same run)",
        "",
        "| keys | tenantgate | cedar-policy | regorus | cedar / tenantgate | regorus / tenantgate |",
        "|---|---|---|---|---|---|",
    ]
    for size in ("1k", "100k", "1m"):
        lines.append(
            f"| {size} | {fmt(t.get(size))} | {fmt(c.get(size))} | {fmt(r.get(size))} |"
            f" {fmt(ratio(t.get(size), c.get(size)), 1)}x | {fmt(ratio(t.get(size), r.get(size)), 1)}x |"
        )
    scale = ratio(t.get("1k"), t.get("1m"))
    lines += [
        "",
        "How the three are made equivalent: `bench/engines/README.md`.",
        "",
        "## Wasm cost per request without Envoy (fuel = wasm instructions, deterministic)",
        "",
        f"- allowed API-key request: {fmt(s['wasm']['fuel_allow'])}",
        f"- denied request: {fmt(s['wasm']['fuel_deny'])}",
        f"- allowed request identified by a verified token (issue 13, `sources.token`): {fmt(s['wasm'].get('fuel_token'))}",
        f"- allowed API-key request with its decision log line written (issue 14, `decision_log`): {fmt(s['wasm'].get('fuel_logged'))}",
        f"- shadow revision (issue 14), the same allowed request: {fmt(s['wasm'].get('fuel_unshadowed'))} unshadowed, "
        f"{fmt(s['wasm'].get('fuel_shadowed'))} also decided by an agreeing shadow, "
        f"{fmt(s['wasm'].get('fuel_shadow_disagreeing'))} by a disagreeing one (counted and logged)",
        "",
        "## Envoy end to end (median of interleaved rounds; Envoy on core 0, wrk on core 1)",
        "",
        "| configuration | req/s | p50 µs | p99 µs | CPU µs/req | CPU vs no filter | added CPU µs |",
        "|---|---|---|---|---|---|---|",
    ]
    none_cpu = (s["envoy"]["none"] or {}).get("cpu_us_per_req")
    for name, row in s["envoy"].items():
        cpu = row.get("cpu_us_per_req")
        added = None if cpu is None or none_cpu is None else cpu - none_cpu
        lines.append(
            f"| {name} | {fmt(row.get('rps'))} | {fmt(row.get('p50_us'))} | {fmt(row.get('p99_us'))} |"
            f" {fmt(cpu, 1)} | {fmt(ratio(none_cpu, cpu), 2)}x | {fmt(added, 1)} |"
        )
    def added(name):
        cpu = (s["envoy"].get(name) or {}).get("cpu_us_per_req")
        return None if cpu is None or none_cpu is None else cpu - none_cpu
    tg, empty, rbac, lua = added("tenantgate"), added("empty_wasm"), added("rbac"), added("lua")
    mimic = added("mimic_wasm")
    m = s["memory"]
    lines += [
        "",
        "Setup of each configuration: `bench/envoy/README.md`. CPU is Envoy's, and for"
        " `ext_authz_noop` Envoy's plus its authorizer's (same core).",
        "",
        "Where tenantgate's added CPU goes: `mimic_wasm` is the empty filter making exactly"
        " tenantgate's host calls for an allowed request (one header-map read, the clock,"
        " six annotation writes) with constant values and no policy work."
        f" Crossing the ABI for those calls costs {fmt(mimic, 1)} µs per request"
        f" ({fmt(None if None in (mimic, empty) else mimic - empty, 1)} µs more than the empty filter's"
        f" one read and one write); the work inside the VM (SHA-256 of the key, the decision, reading"
        f" the headers, building the annotations) is the rest: {fmt(None if None in (tg, mimic) else tg - mimic, 1)} µs."
        " The six annotation writes are the spec's headers; writing them as one"
        " `proxy_set_header_map_pairs` was measured slower (Envoy removes and re-adds every header;"
        " `CONFIGS=\"... mimic_batched_wasm\" bench/envoy/run.sh` measures it).",
        "",
    ] + levers_markdown(s, added) + anchors_markdown(s) + [
        "## Memory and size",
        "",
        f"- Envoy RSS: no filter {fmt((m.get('envoy_rss_none_bytes') or 0) / 2**20, 1)} MiB,"
        f" tenantgate 1k keys {fmt((m.get('envoy_rss_1k_bytes') or 0) / 2**20, 1)} MiB,"
        f" 100k keys {fmt((m.get('envoy_rss_100k_bytes') or 0) / 2**20, 1)} MiB (snapshot inline, compiled)",
        f"- linear memory per VM: 1k {fmt((m.get('tenantgate_linear_memory_bytes_per_vm_1k') or 0) / 2**20, 1)} MiB,"
        f" 100k {fmt((m.get('tenantgate_linear_memory_bytes_per_vm_100k') or 0) / 2**20, 1)} MiB",
        f"- `dist/tenantgate.wasm`: {fmt(s['size']['wasm_bytes'])} bytes",
        "",
        "## Targets",
        "",
        "| target | figure | verdict |",
        "|---|---|---|",
        f"| engine ≥ 20x faster than Cedar (1k) | {fmt(ratio(t.get('1k'), c.get('1k')), 1)}x |"
        f" {verdict(None if ratio(t.get('1k'), c.get('1k')) is None else ratio(t.get('1k'), c.get('1k')) >= 20)} |",
        f"| engine ≥ 100x faster than regorus (1k) | {fmt(ratio(t.get('1k'), r.get('1k')), 1)}x |"
        f" {verdict(None if ratio(t.get('1k'), r.get('1k')) is None else ratio(t.get('1k'), r.get('1k')) >= 100)} |",
        f"| decision at 1M keys ≤ 1.5x that at 1k | {fmt(scale, 2)}x | {verdict(None if scale is None else scale <= 1.5)} |",
        f"| Envoy added CPU ≤ 1.4x the empty wasm filter's (issue 12) | {fmt(ratio(empty, tg), 2)}x |"
        f" {verdict(None if ratio(empty, tg) is None else ratio(empty, tg) <= 1.4)} |",
        f"| Envoy added CPU below RBAC's and Lua's | {fmt(tg, 1)} vs {fmt(rbac, 1)} / {fmt(lua, 1)} µs |"
        f" {verdict(None if None in (tg, rbac, lua) else tg < rbac and tg < lua)} |",
        f"| .wasm ≤ 400 KiB | {fmt(s['size']['wasm_bytes'])} bytes |"
        f" {verdict(None if s['size']['wasm_bytes'] is None else s['size']['wasm_bytes'] <= 409600)} |",
    ] + scale_targets(s) + [
        "",
    ]
    lines += scale_markdown(s) + fleet_markdown(s, fleet) + startup_markdown(s, startup)
    os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
    with open(os.path.join(ROOT, "docs", "PERFORMANCE.md"), "w") as f:
        f.write("\n".join(lines))


def fleet_markdown(s, fleet):
    lines = ["## A fleet polling one snapshot source (loopback)", ""]
    if not s.get("fleet"):
        return lines + [f"Not measured in this run: {s['missing'].get('fleet')}.", ""]
    f = s["fleet"]
    lines += [
        f"`bench/fleet/run.sh`: N Envoys (`--concurrency {f['workers_per_envoy']}` each) with `snapshot.remote`"
        f" polling one source every {f['poll_ms']} ms; the compiled demo snapshot, replaced by rename."
        " Fetches are counted in the source's own log. Revocation: a key revoked at the source until"
        " every Envoy denies it (each Envoy polled every ~20 ms). Outage: the source stopped"
        f" ~{fmt((fleet or {}).get('outage_s'))} s while every Envoy keeps being asked, then restarted with a new revision.",
        "",
        "| source | Envoys | fetches/s at source | per Envoy | revocation on all, median ms | max ms |"
        " outage: failed / requests | new revision on all after restart, ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for source, rows in f.items():
        if not isinstance(rows, dict):
            continue
        for n, r in rows.items():
            if not isinstance(r, dict):
                continue
            if r.get("error") and r.get("fetches_per_s") is None:
                lines.append(f"| {source} | {n} | failed: {r['error']} | | | | | |")
                continue
            lines.append(
                f"| {source} | {n} | {fmt(r['fetches_per_s'], 2)} | {fmt(r['fetches_per_s_per_envoy'], 2)} |"
                f" {fmt(r['revocation_all_envoys_median_ms'])} | {fmt(r['revocation_all_envoys_max_ms'])} |"
                f" {fmt(r['outage_failed_requests'])} / {fmt(r['outage_requests'])} |"
                f" {fmt(r['outage_new_revision_all_envoys_ms'])} |"
            )
    verdicts = [f"{src}: {verdict(rows.get('one_fetcher_per_envoy'))}" for src, rows in f.items() if isinstance(rows, dict)]
    lines += [
        "",
        "One fetcher per Envoy process (fetches/s per Envoy near 1/(poll + tick/2), whatever N; one per"
        " worker would double it): " + ", ".join(verdicts) + ". Details: `bench/fleet/README.md`.",
        "",
    ]
    return lines


def startup_markdown(s, startup):
    lines = ["## VM start and configuration reload", ""]
    if not s.get("startup"):
        return lines + [f"Not measured in this run: {s['missing'].get('startup')}.", ""]
    lines += [
        "`bench/startup/run.sh`: one Envoy (`--concurrency 2`) whose listener comes from a file"
        " (`lds_config` path). Start: from spawning Envoy to the first allowed request answered 200 by"
        " tenantgate. Reload: from renaming a listener file with another snapshot revision into place to"
        f" the first request decided with it. Cap {fmt((startup or {}).get('cap_s'))} s per phase.",
        "",
        "| case | keys | compiled bytes | start → first decision, s | reload → first decision, s | answers during the reload | failure |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, r in s["startup"].items():
        answers = ", ".join(f"{k}: {v}" for k, v in (r.get("reload_answers_before") or {}).items())
        lines.append(
            f"| {case} | {fmt(r.get('keys'))} | {fmt(r.get('compiled_bytes'))} |"
            f" {fmt(r.get('start_to_first_decision_s'), 2)} | {fmt(r.get('reload_to_first_decision_s'), 2)} |"
            f" {answers} | {(r.get('error') or '').replace('|', '/')} |"
        )
    lines += [
        "",
        "`503 no_policy` during a remote reload: the new configuration's VMs (another source) have no"
        " snapshot until their first fetch lands, and answer 503 meanwhile. Details: `bench/startup/README.md`.",
        "",
    ]
    return lines


if __name__ == "__main__":
    main()
