#!/usr/bin/env python3
"""Keys once per process (issue 12): Envoy's memory with a large remote snapshot per worker
count, each VM's linear memory, how long a new revision takes to reach every worker, and the
CPU a request costs when its key is seen for the first time by a worker (cold) and again
(warm). Writes target/bench/scale.json; `bench/summary.py` merges it (`memory.rss_mib`,
`scale.*`). See bench/scale/README.md.

Every figure comes from real parts: `policyctl generate` + `compile`, `policyctl serve` as the
snapshot source, Envoy 1.40 with dist/tenantgate.wasm, wrk for load. Python stdlib only.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "envoy"))
import gen  # noqa: E402  (bench/envoy/gen.py: the shared Envoy bootstrap)

CLK_TCK = os.sysconf("SC_CLK_TCK")
LOADED = re.compile(r"snapshot `([^`]+)` loaded .*linear memory (\d+) bytes")
TIER = re.compile(r"key tier [0-9a-f]+: (\d+) keys in \d+ buckets \((\d+) bytes\), apps in \d+ app buckets"
                  r" \((\d+) bytes\)")
PUBLISHED = re.compile(r"snapshot `([^`]+)` published: fetched in (\d+) ms, loaded in (\d+) ms, "
                       r"key tier written in (\d+) ms, published (\d+) ms after the fetch began")


def log(msg):
    print(msg, flush=True)


class Proc:
    """A child process stopped by pid (SIGTERM, then SIGKILL) when the block ends."""

    def __init__(self, args, **kw):
        self.p = subprocess.Popen(args, **kw)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def http_get(url, headers=None, timeout=5):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return None, b""


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return None


def envoy_heap(envoy):
    """Envoy's own heap (tcmalloc, from the admin `/memory`), MiB: what is in use (the key tier
    lives there) and the free pages it keeps (a replaced tier's, reused by the next one)."""
    status, body = http_get(f"http://{envoy.admin}/memory")
    if status != 200:
        return None
    stats = json.loads(body)
    mib = lambda key: round(int(stats.get(key, 0)) / 2**20, 1)
    return {"allocated": mib("allocated"), "free_kept": mib("pageheap_free"),
            "thread_caches": mib("total_thread_cache")}


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


GENERATED = {}


def write_policy(a, work, keys, revision, revoke=None):
    """Generates `keys` keys at `revision` (optionally key `revoke` revoked), compiled; returns
    (compiled path, the document)."""
    if keys not in GENERATED:
        GENERATED.clear()
        GENERATED[keys] = gen.policyctl(a.policyctl, "generate", "--orgs", str(a.orgs), "--keys",
                                        str(keys), "--seed", "1")
    doc = json.loads(GENERATED[keys])
    doc["revision"] = revision
    if revoke is not None:
        doc["api_keys"][revoke]["status"] = "revoked"
    src = os.path.join(work, f"{revision}.json")
    with open(src, "w") as f:
        json.dump(doc, f)
    out = os.path.join(work, f"{revision}.tgsnap")
    gen.policyctl(a.policyctl, "compile", "--policy", src, "--out", out)
    os.remove(src)
    return out, doc


def envoy_config(a, policy_port, with_filter=True):
    plugin = {
        "environment": "prod",
        "snapshot": {"remote": {"cluster": "policy", "path": "/snapshot", "authority": "policy.local",
                                "poll_ms": a.poll_ms, "timeout_ms": 30000}},
    }
    if a.chunk_bytes:
        plugin["snapshot"]["remote"]["chunk_bytes"] = a.chunk_bytes
    cluster = {
        "name": "policy", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "policy", "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": policy_port}}}}]}]},
    }
    filters = [gen.wasm_filter("tenantgate", a.wasm, json.dumps(plugin))] if with_filter else []
    return gen.base_config(filters, [cluster])


class Envoy:
    def __init__(self, a, work, name, config, workers):
        self.path = os.path.join(work, f"{name}.json")
        with open(self.path, "w") as f:
            json.dump(config, f)
        self.log = os.path.join(work, f"{name}.log")
        self.addr = os.path.join(work, f"{name}.admin")
        self.proc = Proc(["taskset", "-c", a.envoy_cpu, a.envoy, "-c", self.path, "--concurrency", str(workers),
                          "--disable-hot-restart", "--log-level", "warn", "--component-log-level", "wasm:info",
                          "--admin-address-path", self.addr],
                         stdout=open(self.log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.started = time.monotonic()
        deadline = self.started + 120
        while time.monotonic() < deadline:
            if os.path.exists(self.addr) and os.path.getsize(self.addr) and \
                    http_get(f"http://{open(self.addr).read().strip()}/ready")[0] == 200:
                break
            if self.proc.p.poll() is not None:
                raise SystemExit(f"scale: Envoy exited: {open(self.log).read()[-2000:]}")
            time.sleep(0.05)
        self.admin = open(self.addr).read().strip()
        listeners = json.loads(http_get(f"http://{self.admin}/listeners?format=json")[1])
        self.port = listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]

    def loads(self, revision):
        """(linear memory) of every VM that logged loading `revision`."""
        with open(self.log, errors="replace") as f:
            return [int(m.group(2)) for m in LOADED.finditer(f.read()) if m.group(1) == revision]

    def published(self, revision):
        """The fetcher's timing of `revision`, ms: fetch, load, tier written, fetch start to
        published."""
        for m in PUBLISHED.finditer(self.text()):
            if m.group(1) == revision:
                return {"fetch": int(m.group(2)), "load": int(m.group(3)), "tier": int(m.group(4)),
                        "published": int(m.group(5))}
        return None

    def tier_bytes(self):
        """Bytes of the first key tier written (key buckets + app buckets), if logged."""
        m = TIER.search(self.text())
        return int(m.group(2)) + int(m.group(3)) if m else None

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def stop(self):
        self.proc.stop()


def wait_for(what, check, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    log(f"  timeout: {what}")
    return False


def serve(a, policy_path):
    out = tempfile.NamedTemporaryFile("w+", delete=False)
    proc = Proc([a.policyctl, "serve", "--policy", policy_path, "--listen", "127.0.0.1:0"],
                stdout=out, stderr=subprocess.STDOUT)
    port = None
    for _ in range(600):
        m = re.search(r"127\.0\.0\.1:(\d+)", open(out.name).read())
        if m:
            port = int(m.group(1))
            break
        time.sleep(0.05)
    if port is None:
        proc.stop()
        raise SystemExit("scale: policyctl serve did not start")
    return proc, port


def wrk(a, port, script, seconds):
    run = subprocess.run(["taskset", "-c", a.wrk_cpu, "wrk", "-t1", "-c8", f"-d{seconds}s", "-s", script,
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True)
    out = run.stdout
    if "error" in run.stderr.lower() or "error" in out.lower():
        raise SystemExit(f"scale: wrk script {script}: {run.stderr or out}")
    m = re.search(r"(\d+) requests in", out)
    denied = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (int(m.group(1)) if m else 0), (int(denied.group(1)) if denied else 0)


def key_script(work, name, doc, count):
    """A wrk script cycling through `count` generated keys, each on its organization's orders
    route. The keys are in a data file the script reads when it loads: LuaJIT refuses a
    function with that many constants."""
    apps = {app["id"]: app for app in doc["apps"]}
    data = os.path.join(work, f"{name}.tsv")
    with open(data, "w") as f:
        for i, key in enumerate(doc["api_keys"][:count]):
            org = apps.get(key["app"], {}).get("organization", "org-0")
            f.write(f"gen-1-{i}\t/t/{org}/orders/{i}\n")
    path = os.path.join(work, f"{name}.lua")
    with open(path, "w") as f:
        f.write(f"""local rows = {{}}
for line in io.lines("{data}") do
  local key, path = line:match("^([^\\t]+)\\t(.+)$")
  rows[#rows + 1] = {{key, path}}
end
local n = 0
request = function()
  n = n + 1
  local r = rows[((n - 1) % #rows) + 1]
  return wrk.format("GET", r[2], {{["x-api-key"] = r[1]}})
end
""")
    return path


def cpu_per_request(a, envoy, script, seconds):
    """(Envoy CPU µs per request, requests, the share of them allowed)."""
    t0 = cpu_ticks(envoy.proc.p.pid)
    n, denied = wrk(a, envoy.port, script, seconds)
    t1 = cpu_ticks(envoy.proc.p.pid)
    allowed = round((n - denied) / n, 3) if n else None
    return ((t1 - t0) * 1e6 / CLK_TCK / n if n else None), n, allowed


def propagation(a, work, envoy, keys, serving_path, revision, vms):
    """Seconds from a new compiled file renamed into place to every VM's load line, and the
    fetcher's own timing of it (ms)."""
    new, _ = write_policy(a, work, keys, revision, revoke=0)
    # At a random point of the poll interval, as a change would come.
    time.sleep(a.poll_ms / 1000 * (0.2 + 0.8 * (os.urandom(1)[0] / 255)))
    changed = time.monotonic()
    os.replace(new, serving_path)
    ok = wait_for(f"{revision} on {vms} VMs", lambda: len(envoy.loads(revision)) >= vms, 60)
    return (round(time.monotonic() - changed, 2) if ok else None), envoy.published(revision)


def propagations(a, work, envoy, keys, serving_path, workers, vms):
    """`a.revisions` new revisions in turn: the median and the largest time to every VM, each
    sample, and the fetcher's median timing."""
    samples, fetcher, rss = [], [], []
    for n in range(a.revisions):
        seconds, timing = propagation(a, work, envoy, keys, serving_path, f"s{n + 2}w{workers}", vms)
        samples.append(seconds)
        # Once the replaced tier is emptied (a few ticks).
        time.sleep(1.5)
        rss.append(round(rss_bytes(envoy.proc.p.pid) / 2**20, 1))
        if timing:
            fetcher.append(timing)
    done = sorted(s for s in samples if s is not None)
    if len(done) < len(samples):
        return {"new_revision_samples_s": samples, "rss_after_each_revision_mib": rss}
    middle = {k: sorted(t[k] for t in fetcher)[len(fetcher) // 2] for k in fetcher[0]} if fetcher else None
    return {"new_revision_s": done[len(done) // 2], "new_revision_max_s": done[-1],
            "new_revision_samples_s": samples, "new_revision_fetcher_ms": middle,
            "rss_after_each_revision_mib": rss, "envoy_heap_after_revisions_mib": envoy_heap(envoy)}


def one_size(a, work, keys, none_rss):
    log(f"== {keys} keys")
    compiled, doc = write_policy(a, work, keys, "s1")
    serving = os.path.join(work, "serving.tgsnap")
    shutil.copy(compiled, serving)
    size = os.path.getsize(serving)
    log(f"  compiled snapshot: {size / 2**20:.1f} MiB")
    results = {"compiled_bytes": size, "workers": {}}
    server, port = serve(a, serving)
    with server:
        for workers in a.workers:
            vms = workers + 1  # the main thread's VM loads it too
            # Back to s1 (the previous Envoy measured a new revision); the server sees the
            # rename before the new Envoy's first fetch.
            shutil.copy(compiled, serving + ".tmp")
            os.replace(serving + ".tmp", serving)
            time.sleep(1.5)
            envoy = Envoy(a, work, f"k{keys}-w{workers}", envoy_config(a, port), workers)
            try:
                loaded = wait_for("s1 on every VM", lambda: len(envoy.loads("s1")) >= vms, a.load_timeout)
                row = {"loaded": loaded, "ready_s": round(time.monotonic() - envoy.started, 2)}
                time.sleep(1)
                row["rss_mib"] = round(rss_bytes(envoy.proc.p.pid) / 2**20, 1)
                row["envoy_heap_mib"] = envoy_heap(envoy)
                row["rss_limit_mib"] = round((none_rss + 2 * size) / 2**20, 1)
                row["linear_memory_mib"] = sorted(round(m / 2**20, 1) for m in envoy.loads("s1"))
                tier = envoy.tier_bytes()
                row["tier_mib"] = round(tier / 2**20, 1) if tier is not None else None
                if loaded:
                    row.update(propagations(a, work, envoy, keys, serving, workers, vms))
                    row["rss_after_revisions_mib"] = round(rss_bytes(envoy.proc.p.pid) / 2**20, 1)
                if loaded and workers == 1:
                    row.update(cpu_figures(a, work, envoy, doc))
                if not loaded:
                    row["log_tail"] = envoy.text()[-1500:]
                results["workers"][str(workers)] = row
                log(f"  {workers} worker(s): {json.dumps({k: v for k, v in row.items() if k != 'log_tail'})}")
            finally:
                envoy.stop()
    return results


def cpu_figures(a, work, envoy, doc):
    """Envoy CPU per request, one worker: every key new to the worker (cold), then 512 keys
    over and over (warm, after a warm-up run)."""
    cold_keys = min(len(doc["api_keys"]), 400_000)
    # Cold: more keys than the run sends, so each request is a key the worker has not seen.
    cold = key_script(work, "cold", doc, cold_keys)
    warm = key_script(work, "warm", doc, 512)
    cold_cpu, cold_n, cold_allowed = cpu_per_request(a, envoy, cold, a.cold_seconds)
    wrk(a, envoy.port, warm, 1)
    warm_cpu, warm_n, warm_allowed = cpu_per_request(a, envoy, warm, a.seconds)
    return {"cpu_us_per_req_cold": round(cold_cpu, 1) if cold_cpu else None, "cold_requests": cold_n,
            "cold_keys_available": cold_keys, "cold_allowed_share": cold_allowed,
            "cpu_us_per_req_warm": round(warm_cpu, 1) if warm_cpu else None, "warm_requests": warm_n,
            "warm_allowed_share": warm_allowed}


def baseline(a, work):
    """RSS and CPU per request of Envoy with no filter (same listener and route)."""
    server, port = serve(a, os.path.join(ROOT, "policies", "demo.json"))
    with server:
        envoy = Envoy(a, work, "none", envoy_config(a, port, with_filter=False), 1)
        try:
            time.sleep(1)
            rss = rss_bytes(envoy.proc.p.pid)
            script = key_script(work, "none", {"apps": [], "api_keys": [{"app": ""}] * 512}, 512)
            cpu, _, _ = cpu_per_request(a, envoy, script, a.seconds)
        finally:
            envoy.stop()
    return rss, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--policyctl", default=os.path.join(ROOT, "target", "release", "policyctl"))
    ap.add_argument("--wasm", default=os.path.join(ROOT, "dist", "tenantgate.wasm"))
    ap.add_argument("--envoy", default=os.environ.get("TENANTGATE_ENVOY", os.path.join(ROOT, ".venv", "bin", "envoy")))
    ap.add_argument("--keys", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--orgs", type=int, default=2_000)
    ap.add_argument("--poll-ms", type=int, default=1000)
    ap.add_argument("--chunk-bytes", type=int, default=None, help="snapshot.remote.chunk_bytes")
    ap.add_argument("--revisions", type=int, default=3, help="new revisions timed per Envoy")
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--cold-seconds", type=int, default=3)
    ap.add_argument("--load-timeout", type=int, default=120)
    ap.add_argument("--envoy-cpu", default="0")
    ap.add_argument("--wrk-cpu", default="1")
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "bench", "scale.json"))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tenantgate-scale-")
    try:
        none_rss, none_cpu = baseline(a, work)
        log(f"no filter: rss {none_rss / 2**20:.1f} MiB, cpu {none_cpu:.1f} us/req")
        doc = {"none": {"rss_mib": round(none_rss / 2**20, 1), "cpu_us_per_req": round(none_cpu, 1)},
               "keys": {}}
        for keys in a.keys:
            doc["keys"][str(keys)] = one_size(a, work, keys, none_rss)
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(doc, f, indent=2)
        log(f"wrote {os.path.relpath(a.out, ROOT)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
