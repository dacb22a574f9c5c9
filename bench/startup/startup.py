#!/usr/bin/env python3
"""How long tenantgate's VMs take to decide (issue #12, part 5).

For each case (a world: the demo snapshot, or `policyctl generate` with 100k or 1M keys; a
delivery: compiled inline in the plugin configuration (`plugin-config --compiled`), or remote
from `policyctl serve`), one Envoy (--concurrency 2) is started whose listener comes from a
file (dynamic_resources.lds_config with a path), and two times are measured with an allowed
request sent every ~20 ms on a fresh connection:

  start   from spawning Envoy to the first request answered 200 by tenantgate with the
          world's revision A (before that: connection refused, or 503 `no_policy`);
  reload  from renaming a new listener file into place (Envoy watches the directory and
          reacts to the move) whose plugin configuration carries revision B of the same world
          (inline: the same world compiled with another revision; remote: the cluster of a
          second `policyctl serve` serving revision B), to the first request answered with
          revision B. Every answer seen meanwhile is counted (200 with A, 503 `no_policy`, ...).

Each phase has a cap (STARTUP_CAP, 180 s). A case that fails is reported as failed with the
cause read from Envoy's log (the filter's own lines); a remote case whose fetches keep failing
stops early once the log shows FETCH_FAILURES_TO_GIVE_UP failures and no loaded snapshot.
Writes target/bench/startup.json. Run through bench/startup/run.sh.
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fleet"))
from harness import (DEMO, ENVOY, OPS_KEY, ROOT, Client, Envoy, Procs, ServeSource, bootstrap,  # noqa: E402
                     free_port, install_signal_handlers, lds_document, log, policy_cluster, policyctl,
                     write_atomically)

CONCURRENCY = 2
POLL_GAP_S = 0.02
FETCH_FAILURES_TO_GIVE_UP = 3
WORLD_KEYS = {"demo": None, "100k": 100_000, "1m": 1_000_000}
WORLD_ORGS = 100
SEED = 1


# ---------------------------------------------------------------------------------------------
# Worlds: revision A and B of one snapshot, compiled, and an allowed request
# ---------------------------------------------------------------------------------------------
class World:
    def __init__(self, name, snap_a, snap_b, rev_a, rev_b, key, path, json_bytes, keys):
        self.name, self.snap_a, self.snap_b, self.keys = name, snap_a, snap_b, keys
        self.rev_a, self.rev_b, self.key, self.path = rev_a, rev_b, key, path
        self.json_bytes = json_bytes
        self.compiled_bytes = os.path.getsize(snap_a)


def make_world(name, workdir):
    """Writes <name>-a.snap and <name>-b.snap (compiled), the same world under two revisions,
    and finds one request tenantgate allows in it."""
    src = os.path.join(workdir, f"{name}.json")
    if name == "demo":
        with open(DEMO, "rb") as f:
            data = f.read()
        key, path = OPS_KEY, "/orders/1"
    else:
        with open(src, "wb") as f:
            subprocess.run([policyctl_path(), "generate", "--orgs", str(WORLD_ORGS), "--keys", str(WORLD_KEYS[name]),
                            "--seed", str(SEED)], stdout=f, check=True)
        with open(src, "rb") as f:
            data = f.read()
        key = path = None
    rev_a = re.search(rb'"revision"\s*:\s*"([^"]*)"', data).group(1).decode()
    rev_b = rev_a + "-b"
    snaps = {}
    for tag, rev in (("a", rev_a), ("b", rev_b)):
        # The revision is a plain string field: replacing it in the text avoids parsing a
        # 190 MB document in Python.
        doc = re.sub(rb'"revision"\s*:\s*"[^"]*"', f'"revision":"{rev}"'.encode(), data, count=1)
        with open(src, "wb") as f:
            f.write(doc)
        snaps[tag] = os.path.join(workdir, f"{name}-{tag}.snap")
        policyctl("compile", "--policy", src, "--out", snaps[tag])
    if key is None:
        key, path = allowed_request(data, snaps["a"])
    json_bytes = len(data)
    keys = WORLD_KEYS[name] or len(json.loads(data)["api_keys"])
    os.remove(src)
    return World(name, snaps["a"], snaps["b"], rev_a, rev_b, key, path, json_bytes, keys)


def allowed_request(data, snap):
    """A generated key (raw key i is gen-SEED-i) on its organization's `<org>-orders` route
    that tenantgate allows (checked with `policyctl explain`), as bench/envoy/gen.py does."""
    doc = json.loads(data)
    app_org = {app["id"]: app["organization"] for app in doc["apps"]}
    prefixes = {r["id"]: r["path_prefix"] for r in doc["routes"]}
    for i, k in enumerate(doc["api_keys"][:400]):
        prefix = prefixes.get(f"{app_org.get(k['app'])}-orders")
        if not prefix:
            continue
        key, path = f"gen-{SEED}-{i}", f"{prefix}/{i}"
        out = policyctl("explain", "--policy", snap, "--environment", "prod", "--method", "GET",
                        "--path", path, "--header", f"x-api-key: {key}")
        if json.loads(out)["decision"] == "allow":
            return key, path
    raise RuntimeError("no allowed request among the first 400 generated keys")


def policyctl_path():
    return os.path.join(ROOT, "target", "release", "policyctl")


def inline_config(snap):
    return policyctl("plugin-config", "--policy", snap, "--environment", "prod", "--compiled").decode().strip()


def remote_config(cluster, timeout_ms):
    return json.dumps({"environment": "prod", "snapshot": {"remote": {
        "cluster": cluster, "path": "/snapshot", "authority": "policy.local",
        "poll_ms": 1000, "timeout_ms": timeout_ms}}})


# ---------------------------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------------------------
def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def filter_log(envoy, n=6):
    """The filter's own log lines (and Envoy's errors), trimmed of Envoy's prefix."""
    lines = envoy.log_tail(200, r"tenantgate: |\]\[(error|critical)\]|async_client")
    out = []
    for l in lines:
        l = re.sub(r"^\[[^\]]*\]\[\d+\]\[(\w+)\]\[\w+\] \[[^\]]*\] (wasm log \S+ \S+: )?", r"\1: ", l)
        out.append(l[:300])
    return out[-n:]


def wait_decided(envoy, port, world, revision, cap, t0, remote):
    """Polls until a 200 carrying `revision`. Returns (seconds since t0 or None, answers seen,
    failure cause or None)."""
    answers = {}
    while time.monotonic() - t0 < cap:
        if not envoy.alive():
            return None, answers, f"Envoy exited (status {envoy.proc.returncode}): {filter_log(envoy, 4)}"
        at = time.monotonic()
        c = Client(port, timeout=5)
        status, detail = c.get(world.key, world.path)
        c.close()
        if status == 200 and detail == revision:
            return at - t0, answers, None
        label = ("refused" if status is None and "Refused" in detail else
                 f"{status} {detail}" if status != 200 else f"200 {detail}")
        answers[label] = answers.get(label, 0) + 1
        if remote:
            text = envoy.log_text()
            fails = re.findall(r"snapshot fetch from `[^`]*` failed: ([^\n]*)", text)
            if len(fails) >= FETCH_FAILURES_TO_GIVE_UP and f"snapshot `{revision}` loaded" not in text:
                # Envoy's own reason, when it logged one (e.g. the async client's body limit).
                envoy_says = re.findall(r"\[(?:warning|error)\]\[http\] \[[^\]]*\] ([^\n]*)", text)
                return None, answers, (f"{len(fails)} fetches failed, none loaded: {fails[-1]}"
                                       + (f"; Envoy: {envoy_says[-1]}" if envoy_says else ""))
        time.sleep(max(0.0, POLL_GAP_S - (time.monotonic() - at)))
    return None, answers, f"no request decided with `{revision}` within {cap:.0f}s; last filter log: {filter_log(envoy, 4)}"


def run_case(procs, world, delivery, args, workdir, base_id):
    case = {"world": world.name, "delivery": delivery, "keys": world.keys,
            "compiled_bytes": world.compiled_bytes, "json_bytes": world.json_bytes,
            "revision_a": world.rev_a, "revision_b": world.rev_b, "request": f"GET {world.path}"}
    sources, clusters = [], []
    if delivery == "remote":
        # Two sources: A for the first configuration, B for the reloaded one, so the reload
        # changes the plugin configuration (its cluster) as an operator's would.
        for tag, snap, cluster in (("a", world.snap_a, "policy"), ("b", world.snap_b, "policy_b")):
            d = os.path.join(workdir, f"serve-{tag}")
            os.makedirs(d, exist_ok=True)
            s = ServeSource(procs, d, snap, free_port())
            s.start()
            sources.append(s)
            c = policy_cluster(s.port)
            c["name"] = c["load_assignment"]["cluster_name"] = cluster
            clusters.append(c)
        config_a, config_b = remote_config("policy", args.fetch_timeout_ms), remote_config("policy_b", args.fetch_timeout_ms)
        case["fetch_timeout_ms"] = args.fetch_timeout_ms
    else:
        config_a, config_b = inline_config(world.snap_a), inline_config(world.snap_b)
    case["plugin_config_bytes"] = len(config_a)

    port = free_port()
    lds_dir = os.path.join(workdir, "lds")
    os.makedirs(lds_dir, exist_ok=True)
    lds_path = os.path.join(lds_dir, "listeners.json")
    write_atomically(lds_path, lds_document(config_a, port))
    config = bootstrap(lds_path=lds_path)
    config["static_resources"]["clusters"] = clusters
    envoy = None
    try:
        t0 = time.monotonic()
        envoy = Envoy(procs, workdir, "envoy", config, concurrency=CONCURRENCY, base_id=base_id)
        took, answers, cause = wait_decided(envoy, port, world, world.rev_a, args.cap, t0, delivery == "remote")
        case["start"] = {"first_decided_s": None if took is None else round(took, 3),
                         "answers_before": answers, "error": cause,
                         "rss_bytes": rss_bytes(envoy.proc.pid) if envoy.alive() else None}
        log(f"  {world.name} {delivery}: start -> first decided "
            f"{'FAILED: ' + cause if cause else f'{took:.2f} s'} (before: {answers})")
        if cause:
            case["reload"] = {"first_decided_s": None, "error": "not measured: the start failed"}
            case["filter_log"] = filter_log(envoy)
            return case
        t1 = time.monotonic()
        write_atomically(lds_path, lds_document(config_b, port))
        took, answers, cause = wait_decided(envoy, port, world, world.rev_b, args.cap, t1, delivery == "remote")
        case["reload"] = {"first_decided_s": None if took is None else round(took, 3),
                          "answers_before": answers, "error": cause,
                          "rss_bytes": rss_bytes(envoy.proc.pid) if envoy.alive() else None}
        log(f"  {world.name} {delivery}: reload -> first decided by the new configuration "
            f"{'FAILED: ' + cause if cause else f'{took:.2f} s'} (before: {answers})")
        case["filter_log"] = filter_log(envoy)
        return case
    finally:
        if envoy is not None:
            envoy.stop()
        for s in sources:
            s.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="demo_inline demo_remote 100k_inline 100k_remote 1m_inline 1m_remote")
    p.add_argument("--cap", type=float, default=180.0, help="seconds per phase (start, reload)")
    p.add_argument("--fetch-timeout-ms", type=int, default=10000)
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default=os.path.join(ROOT, "target", "bench", "startup.json"))
    args = p.parse_args()
    cases = args.cases.split()
    for c in cases:
        w, _, d = c.partition("_")
        if w not in WORLD_KEYS or d not in ("inline", "remote"):
            sys.exit(f"startup.py: unknown case {c!r} (WORLD_DELIVERY: demo|100k|1m _ inline|remote)")

    procs = Procs()
    install_signal_handlers(procs)
    base_id = 1000 + (os.getpid() % 20000) * 2 + 1
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cores": os.cpu_count(),
        "envoy": subprocess.run([ENVOY, "--version"], capture_output=True, text=True).stdout.split("/")[2]
        if os.path.exists(ENVOY) else None,
        "workers": CONCURRENCY, "cap_s": args.cap, "orgs": WORLD_ORGS, "seed": SEED,
        "loadavg_before": open("/proc/loadavg").read().split()[:3],
        "cases": {},
    }
    worlds = {}
    try:
        for c in cases:
            w, _, d = c.partition("_")
            workdir = tempfile.mkdtemp(prefix=f"{c}-", dir=args.workdir)
            log(f"== {c}")
            try:
                if w not in worlds:
                    t = time.monotonic()
                    worlds[w] = make_world(w, tempfile.mkdtemp(prefix=f"world-{w}-", dir=args.workdir))
                    log(f"  world {w}: compiled {worlds[w].compiled_bytes} bytes, JSON {worlds[w].json_bytes} bytes,"
                        f" made in {time.monotonic() - t:.1f} s; request {worlds[w].key} GET {worlds[w].path}")
                result["cases"][c] = run_case(procs, worlds[w], d, args, workdir, base_id)
            except Exception as e:  # report it, go on with the next case
                log(f"  {c}: FAILED: {e}")
                result["cases"][c] = {"world": w, "delivery": d, "error": str(e)}
            result["cases"][c]["workdir"] = workdir
            base_id += 2
    finally:
        procs.stop_all()
    result["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    log(f"wrote {os.path.relpath(args.out, ROOT)}")


if __name__ == "__main__":
    main()
