#!/usr/bin/env python3
"""A fleet of Envoys polling one snapshot source, simulated on loopback (issue #12, part 4).

For each source (nginx serving the compiled snapshot as a static file; `policyctl serve` on
the same file) and each fleet size N, this starts the source and N Envoys (--concurrency 2,
own --base-id, ephemeral ports) running dist/tenantgate.wasm with `snapshot.remote` polling
the source every second, then measures:

  fetches     /snapshot requests counted in the source's own log over a window, per second
              and per second per Envoy (one elected fetcher per Envoy process: the rate must
              grow with N, not with N x workers); the Envoys' own count
              (cluster.policy.upstream_rq_total) alongside;
  revocation  a key (demo-storefront-key) revoked in a new compiled snapshot renamed into
              place; time until every Envoy denies it, polling each Envoy every ~20 ms with a
              fresh connection (so any worker may answer) and counting an Envoy as done at
              the start of its final run of STABLE consecutive denials; median and max over
              REVOCATIONS revocations (each followed by a restore, timed the same way);
  outage      the source stopped for OUTAGE_S seconds while every Envoy keeps being asked
              (every request must still be decided by the last good snapshot: failures are
              counted, by status), a new revision written meanwhile, the source restarted:
              time until every Envoy answers with the new revision.

Writes target/bench/fleet.json. Run through bench/fleet/run.sh (builds, installs nginx).
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (OPS_KEY, ROOT, STOREFRONT_KEY, ENVOY, Client, Envoy, NginxSource, Procs,  # noqa: E402
                     ServeSource, bootstrap, compile_json, demo, free_port, install_signal_handlers, log,
                     median, remote_plugin_config, write_atomically)

POLL_MS = 1000
CONCURRENCY = 2
STABLE = 5          # consecutive answers (fresh connections) that make an Envoy "done"
POLL_GAP_S = 0.02   # one round over every Envoy at most every 20 ms


class Fleet:
    def __init__(self, procs, workdir, n, source, base_id):
        self.envoys = []
        config = bootstrap(remote_plugin_config(POLL_MS), source.port)
        for i in range(n):
            self.envoys.append(Envoy(procs, workdir, f"envoy{i}", config,
                                     concurrency=CONCURRENCY, base_id=base_id + i))

    def wait_ready(self, timeout):
        for e in self.envoys:
            if not e.wait_admin(timeout):
                raise RuntimeError(f"{e.name} not up within {timeout}s: {e.log_tail(5)}")

    def stop(self):
        for e in self.envoys:
            e.stop()

    def upstream_requests(self):
        """Sum over the Envoys of their fetches from the `policy` cluster (Envoy's count)."""
        return sum(e.stats("cluster.policy.upstream_rq_total").get("cluster.policy.upstream_rq_total", 0)
                   for e in self.envoys)


def ask(port, key):
    """One request on a fresh connection: any of the Envoy's workers may take it."""
    c = Client(port)
    try:
        return c.get(key)
    finally:
        c.close()


def until_all(fleet, key, want, timeout, t0=None):
    """Polls every Envoy with `key` until each has answered `want(status, revision)` STABLE
    times in a row. Returns (seconds since t0 per Envoy or None, answers seen)."""
    t0 = time.monotonic() if t0 is None else t0
    n = len(fleet.envoys)
    run_start, run_len, done = [None] * n, [0] * n, [None] * n
    answers = {}
    deadline = t0 + timeout
    while time.monotonic() < deadline and any(d is None for d in done):
        round_start = time.monotonic()
        for i, e in enumerate(fleet.envoys):
            if done[i] is not None:
                continue
            at = time.monotonic()
            status, detail = ask(e.port, key)
            label = f"{status} {detail}" if status in (None, 503) else str(status)
            answers[label] = answers.get(label, 0) + 1
            if want(status, detail):
                if run_len[i] == 0:
                    run_start[i] = at
                run_len[i] += 1
                if run_len[i] >= STABLE:
                    done[i] = run_start[i] - t0
            else:
                run_len[i] = 0
        rest = POLL_GAP_S - (time.monotonic() - round_start)
        if rest > 0:
            time.sleep(rest)
    return done, answers


class Writer:
    """Writes revisions of the demo snapshot, compiled, by rename. nginx's ETag is the file's
    mtime in whole seconds and its size: two writes of the same size within one second would
    carry the same ETag and the second would never be fetched (304). Writes are therefore
    kept more than a second apart — a real constraint of serving snapshots from nginx."""

    def __init__(self, workdir, path):
        self.workdir, self.path, self.seq, self.last = workdir, path, 0, 0.0

    def write(self, storefront_revoked=False):
        self.seq += 1
        revision = f"r{self.seq:04d}"
        data = compile_json(demo(revision, storefront_revoked), self.workdir)
        wait = self.last + 1.05 - time.time()
        if wait > 0:
            time.sleep(wait)
        write_atomically(self.path, data)
        self.last = time.time()
        return revision, time.monotonic()


def measure(procs, kind, n, args, base_id):
    workdir = tempfile.mkdtemp(prefix=f"tenantgate-fleet-{kind}-{n}-", dir=args.workdir)
    snapshot = os.path.join(workdir, "snapshot.bin")
    writer = Writer(workdir, snapshot)
    revision, _ = writer.write()
    source = (NginxSource if kind == "nginx" else ServeSource)(procs, workdir, snapshot, free_port())
    source.start()
    fleet = Fleet(procs, workdir, n, source, base_id)
    result = {"envoys": n, "workers_per_envoy": CONCURRENCY, "poll_ms": POLL_MS, "workdir": workdir}
    try:
        t0 = time.monotonic()
        fleet.wait_ready(args.ready_timeout)
        done, answers = until_all(fleet, STOREFRONT_KEY, lambda s, r: s == 200, args.ready_timeout, t0)
        if None in done:
            raise RuntimeError(f"not every Envoy decided within {args.ready_timeout}s: {answers}")
        result["fleet_ready_s"] = round(max(done), 2)
        log(f"  {kind} N={n}: every Envoy decided {result['fleet_ready_s']} s after start")

        # Fetch rate, counted at the source. Settle first: every Envoy past its first fetch.
        time.sleep(2)
        src0, env0, w0 = source.fetches()[0], fleet.upstream_requests(), time.monotonic()
        time.sleep(args.fetch_window)
        src1, env1, w1 = source.fetches()[0], fleet.upstream_requests(), time.monotonic()
        window = w1 - w0
        result["fetch_window_s"] = round(window, 2)
        result["fetches_at_source"] = src1 - src0
        result["fetches_per_s"] = round((src1 - src0) / window, 3)
        result["fetches_per_s_per_envoy"] = round((src1 - src0) / window / n, 3)
        result["fetches_per_s_per_worker"] = round((src1 - src0) / window / n / CONCURRENCY, 3)
        result["envoy_side_fetches_per_s"] = round((env1 - env0) / window, 3)
        log(f"  {kind} N={n}: {result['fetches_per_s']} fetches/s at the source,"
            f" {result['fetches_per_s_per_envoy']} per Envoy (Envoys count {result['envoy_side_fetches_per_s']}/s)")

        # Revocations, each followed by a restore.
        revoke_ms, restore_ms, per_envoy_revoke, failures = [], [], [], []
        for k in range(args.revocations):
            revision, t = writer.write(storefront_revoked=True)
            done, answers = until_all(fleet, STOREFRONT_KEY, lambda s, r: s == 401, args.propagation_timeout, t)
            if None in done:
                failures.append(f"revocation {k + 1} ({revision}): {done.count(None)} of {n} Envoys still"
                                f" not denying after {args.propagation_timeout}s; answers {answers}")
                break
            revoke_ms.append(round(max(done) * 1000))
            per_envoy_revoke.append([round(d * 1000) for d in done])
            revision, t = writer.write(storefront_revoked=False)
            done, answers = until_all(fleet, STOREFRONT_KEY, lambda s, r: s == 200, args.propagation_timeout, t)
            if None in done:
                failures.append(f"restore {k + 1} ({revision}): not on every Envoy after {args.propagation_timeout}s")
                break
            restore_ms.append(round(max(done) * 1000))
        result["revocation"] = {
            "count": len(revoke_ms),
            "all_envoys_deny_ms": revoke_ms,
            "median_ms": median(revoke_ms),
            "max_ms": max(revoke_ms) if revoke_ms else None,
            "first_envoy_median_ms": median([min(r) for r in per_envoy_revoke]) if per_envoy_revoke else None,
            "restore_all_envoys_allow_ms": restore_ms,
            "failures": failures,
        }
        log(f"  {kind} N={n}: revocation on every Envoy in {revoke_ms} ms (median {median(revoke_ms)},"
            f" max {result['revocation']['max_ms']}); restores {restore_ms} ms")

        result["outage"] = outage(fleet, source, writer, args)
        o = result["outage"]
        log(f"  {kind} N={n}: source down {o['down_s']} s: {o['requests']} requests, {o['failed']} failed"
            f" {o['statuses']}; new revision on every Envoy {o['new_revision_all_ms']} ms after restart"
            f" (each Envoy asked every {o['poll_interval_ms_per_envoy']} ms)")
    finally:
        fleet.stop()
        source.stop()
    return result


def outage(fleet, source, writer, args):
    """Stops the source, keeps asking every Envoy (the storefront key is allowed at this
    point: anything but 200 is a failed request), writes a new revision half way, restarts
    the source after OUTAGE_S and times the new revision's arrival on every Envoy."""
    n = len(fleet.envoys)
    before = [e.stats("cluster.policy.upstream_cx_connect_fail").get("cluster.policy.upstream_cx_connect_fail", 0)
              for e in fleet.envoys]
    statuses, requests, failed = {}, 0, 0

    def one_round():
        nonlocal requests, failed
        for e in fleet.envoys:
            status, detail = ask(e.port, STOREFRONT_KEY)
            requests += 1
            label = str(status) if status == 200 else f"{status} {detail}"
            statuses[label] = statuses.get(label, 0) + 1
            failed += status != 200
        time.sleep(POLL_GAP_S)

    down_at = time.monotonic()
    source.stop()
    new_revision = None
    while time.monotonic() - down_at < args.outage:
        one_round()
        if new_revision is None and time.monotonic() - down_at > args.outage / 2:
            new_revision, _ = writer.write()
    source.start()
    up_at = time.monotonic()
    down_s = up_at - down_at
    # The single-threaded client cannot keep ~20 ms per Envoy at large N: report the achieved
    # interval between two requests to the same Envoy (the resolution of the timings).
    poll_interval_ms = down_s * 1000 * n / requests if requests else None
    # Recovery: every Envoy answers with the new revision (ops key: allowed, shows it).
    done, answers = until_all(fleet, OPS_KEY, lambda s, r: s == 200 and r == new_revision,
                              args.propagation_timeout, up_at)
    for label, count in answers.items():
        statuses[label] = statuses.get(label, 0) + count
        failed += count if label != "200" else 0
    requests += sum(answers.values())
    after = [e.stats("cluster.policy.upstream_cx_connect_fail").get("cluster.policy.upstream_cx_connect_fail", 0)
             for e in fleet.envoys]
    return {
        "down_s": round(down_s, 2),
        "requests": requests,
        "failed": failed,
        "statuses": statuses,
        "new_revision": new_revision,
        "new_revision_all_ms": None if None in done else round(max(done) * 1000),
        "new_revision_missing_envoys": done.count(None),
        "connect_failures_to_source": sum(a - b for a, b in zip(after, before)),
        "poll_interval_ms_per_envoy": None if poll_interval_ms is None else round(poll_interval_ms),
        "note": "requests to every Envoy throughout the outage and the recovery; a request fails"
                " unless it is decided (200) by the last good snapshot",
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1 5 20")
    p.add_argument("--sources", default="nginx policyctl_serve")
    p.add_argument("--fetch-window", type=float, default=10.0)
    p.add_argument("--revocations", type=int, default=5)
    p.add_argument("--outage", type=float, default=10.0)
    p.add_argument("--ready-timeout", type=float, default=180.0)
    p.add_argument("--propagation-timeout", type=float, default=15.0)
    p.add_argument("--workdir", default=None, help="parent of the per-run temp directories")
    p.add_argument("--out", default=os.path.join(ROOT, "target", "bench", "fleet.json"))
    args = p.parse_args()
    sizes = [int(x) for x in args.sizes.split()]
    sources = args.sources.split()

    procs = Procs()
    install_signal_handlers(procs)
    # Base ids away from 0 (the default of anyone else's Envoy on this machine) and unique to
    # this run, so hot-restart shared memory never collides.
    base_id = 1000 + (os.getpid() % 20000) * 2
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cores": os.cpu_count(),
        "envoy": subprocess.run([ENVOY, "--version"], capture_output=True, text=True).stdout.split("/")[2]
        if os.path.exists(ENVOY) else None,
        "poll_ms": POLL_MS, "workers_per_envoy": CONCURRENCY, "sizes": sizes,
        "fetch_window_s": args.fetch_window, "revocations": args.revocations, "outage_s": args.outage,
        "loadavg_before": open("/proc/loadavg").read().split()[:3],
        "sources": {},
    }
    try:
        for kind in sources:
            result["sources"][kind] = {}
            for n in sizes:
                log(f"== {kind}, {n} Envoy(s)")
                try:
                    result["sources"][kind][str(n)] = measure(procs, kind, n, args, base_id)
                except Exception as e:  # report honestly, go on with the next case
                    log(f"  {kind} N={n}: FAILED: {e}")
                    result["sources"][kind][str(n)] = {"envoys": n, "error": str(e)}
                base_id += n
            result["sources"][kind]["linear_in_n"] = linearity(result["sources"][kind], sizes)
    finally:
        procs.stop_all()
    result["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    log(f"wrote {os.path.relpath(args.out, ROOT)}")


def linearity(per_n, sizes):
    """Fetches/s per Envoy at each N, against one fetcher per Envoy process.

    The filter checks whether a fetch is due on its tick (a tenth of poll_ms, clamped to
    50 ms..1 s: 100 ms here), so a jittered interval of ~1 s is rounded up to the next tick:
    on average poll_ms + tick/2, i.e. ~0.95 fetches/s per Envoy. One fetcher per worker would
    give about twice that (--concurrency 2)."""
    per_envoy = {str(n): (per_n.get(str(n)) or {}).get("fetches_per_s_per_envoy") for n in sizes}
    values = [v for v in per_envoy.values() if v is not None]
    tick = min(max(POLL_MS // 10, 50), 1000)
    expected = round(1000 / (POLL_MS + tick / 2), 3)
    return {
        "fetches_per_s_per_envoy": per_envoy,
        "expected_per_envoy": expected,
        "one_fetcher_per_envoy": bool(values) and all(0.8 * expected <= v <= 1.2 * expected for v in values),
    }


if __name__ == "__main__":
    main()
