"""Shared pieces of bench/fleet and bench/startup: Envoy configurations, Envoy processes,
the two snapshot sources (nginx, `policyctl serve`) and a small HTTP client.

Python standard library only. Every process is started here with its pid kept, and stopped
by that pid (SIGTERM, then SIGKILL after a grace period): `Procs.stop_all()` runs from the
callers' `finally` and from their SIGTERM/SIGINT handlers, so nothing outlives a run.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENVOY = os.environ.get("TENANTGATE_ENVOY", os.path.join(ROOT, ".venv", "bin", "envoy"))
POLICYCTL = os.path.join(ROOT, "target", "release", "policyctl")
WASM = os.path.join(ROOT, "dist", "tenantgate.wasm")
DEMO = os.path.join(ROOT, "policies", "demo.json")

# The demo keys the benches send (README.md, "demo keys"): storefront is revoked and restored,
# ops stays allowed and shows the revision an Envoy is deciding with.
STOREFRONT_KEY = "demo-storefront-key"
OPS_KEY = "demo-ops-key"
DEMO_PATH = "/orders/1"


def log(*args):
    print(*args, flush=True)


def free_port():
    """A port nobody listens on now. A source that must come back on the same port after a
    restart (the Envoys' `policy` cluster is static) needs a fixed one, not port 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
class Procs:
    """Every child process of a run, stopped by pid."""

    def __init__(self):
        self.live = []

    def start(self, argv, log_path, **kw):
        out = open(log_path, "ab")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
        out.close()
        self.live.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, grace=5.0):
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            except ProcessLookupError:
                pass
        if p in self.live:
            self.live.remove(p)

    def stop_all(self):
        for p in list(self.live):
            self.stop(p, grace=3.0)


def install_signal_handlers(procs):
    """SIGTERM/SIGINT (e.g. run.sh's trap, or Ctrl-C) stop the children, then exit."""

    def handler(signum, _frame):
        procs.stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# ---------------------------------------------------------------------------------------------
# Envoy configuration
# ---------------------------------------------------------------------------------------------
def http_connection_manager(plugin_config):
    """The HTTP connection manager of envoy/envoy.yaml.tmpl (normalisation options, V8,
    tenantgate then the router) with one route answered by direct_response 200 (no upstream
    process competes for the two cores). The route copies the `x-policy-revision` request
    header that tenantgate adds to allowed requests into the response, so a client sees which
    snapshot decided."""
    return {
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
                "virtual_hosts": [{
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{
                        "match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
                        "response_headers_to_add": [{
                            "header": {"key": "x-policy-revision", "value": "%REQ(x-policy-revision)%"},
                        }],
                    }],
                }],
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.wasm",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                        "config": {
                            "name": "tenantgate",
                            "root_id": "tenantgate",
                            "vm_config": {
                                "vm_id": "tenantgate",
                                "runtime": "envoy.wasm.runtime.v8",
                                "code": {"local": {"filename": WASM}},
                            },
                            "configuration": {
                                "@type": "type.googleapis.com/google.protobuf.StringValue",
                                "value": plugin_config,
                            },
                        },
                    },
                },
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                },
            ],
        },
    }


def listener(plugin_config, name="ingress", port=0):
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [http_connection_manager(plugin_config)]}],
    }


def policy_cluster(port):
    """The cluster `snapshot.remote` fetches from: the source on loopback."""
    return {
        "name": "policy",
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": "policy",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }


def remote_plugin_config(poll_ms=1000, timeout_ms=2000):
    return json.dumps({
        "environment": "prod",
        "snapshot": {"remote": {"cluster": "policy", "path": "/snapshot", "authority": "policy.local",
                                "poll_ms": poll_ms, "timeout_ms": timeout_ms}},
    })


def bootstrap(plugin_config=None, policy_port=None, lds_path=None):
    """A static listener with `plugin_config`, or (lds_path) a listener read from a file
    through file-based dynamic configuration. Admin and listener on ephemeral ports."""
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"clusters": []},
    }
    if policy_port is not None:
        config["static_resources"]["clusters"].append(policy_cluster(policy_port))
    if lds_path is None:
        config["static_resources"]["listeners"] = [listener(plugin_config)]
    else:
        config["node"] = {"id": "bench", "cluster": "bench"}
        config["dynamic_resources"] = {"lds_config": {"path_config_source": {"path": lds_path}}}
    return config


def write_atomically(path, data):
    """Write to a temporary file in the same directory, then rename: readers (nginx,
    policyctl serve, Envoy's file watcher) never see half a file, and a rename is what
    Envoy's path_config_source watch reacts to."""
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    # mkstemp makes 0600 files; nginx's workers run as another user and must read it.
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


def lds_document(plugin_config, port):
    """An LDS file: one listener with the given plugin configuration on a fixed port (a
    changed listener drains the old one and binds again on the same port)."""
    l = listener(plugin_config, port=port)
    l["@type"] = "type.googleapis.com/envoy.config.listener.v3.Listener"
    return json.dumps({"version_info": str(time.time_ns()), "resources": [l]})


# ---------------------------------------------------------------------------------------------
# Envoy
# ---------------------------------------------------------------------------------------------
class Envoy:
    def __init__(self, procs, workdir, name, config, concurrency=2, base_id=None, cpus=None):
        self.procs, self.name = procs, name
        self.config_path = os.path.join(workdir, f"{name}.json")
        self.admin_path = os.path.join(workdir, f"{name}.admin")
        self.log_path = os.path.join(workdir, f"{name}.log")
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        for p in (self.admin_path, self.log_path):
            if os.path.exists(p):
                os.remove(p)
        argv = [ENVOY, "-c", self.config_path, "--concurrency", str(concurrency),
                "--log-level", "warn", "--component-log-level", "wasm:info",
                "--admin-address-path", self.admin_path]
        # Distinct base ids keep the hot-restart shared memory of concurrent Envoys apart.
        argv += ["--base-id", str(base_id)] if base_id is not None else ["--disable-hot-restart"]
        if cpus:
            argv = ["taskset", "-c", cpus] + argv
        self.started = time.monotonic()
        self.proc = procs.start(argv, self.log_path)
        self.admin = None
        self.port = None

    def alive(self):
        return self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=8, pattern=None):
        lines = self.log_text().splitlines()
        if pattern:
            lines = [l for l in lines if re.search(pattern, l)]
        return lines[-n:]

    def wait_admin(self, timeout):
        """Until the admin address is written and a listener is bound; sets admin and port.
        Returns False on timeout or if Envoy exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            if self.admin is None and os.path.exists(self.admin_path):
                with open(self.admin_path) as f:
                    self.admin = f.read().strip() or None
            if self.admin:
                try:
                    listeners = json.loads(admin_get(self.admin, "/listeners?format=json"))
                    statuses = listeners.get("listener_statuses") or []
                    if statuses:
                        self.port = statuses[0]["local_address"]["socket_address"]["port_value"]
                        return True
                except (OSError, ValueError, KeyError, http.client.HTTPException):
                    pass
            time.sleep(0.02)
        return False

    def stats(self, prefix):
        """Counters and gauges whose name starts with prefix, as {name: int}."""
        out = {}
        text = admin_get(self.admin, "/stats?filter=" + prefix)
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if name.startswith(prefix) and value.strip().isdigit():
                out[name] = int(value)
        return out

    def stop(self):
        self.procs.stop(self.proc)


def admin_get(admin, path, timeout=5):
    host, port = admin.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request("GET", path)
        return c.getresponse().read().decode(errors="replace")
    finally:
        c.close()


class Client:
    """One keep-alive connection to one Envoy; reconnects after any error. get() returns
    (status, revision header) or (None, error text) when no response came."""

    def __init__(self, port, timeout=2.0):
        self.port, self.timeout, self.conn = port, timeout, None

    def get(self, key, path=DEMO_PATH):
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.conn.request("GET", path, headers={"x-api-key": key, "host": "localhost"})
            r = self.conn.getresponse()
            body = r.read()
            if r.status == 503:
                # Tenantgate's own 503 (`no_policy`) names its reason in the JSON body.
                m = re.search(rb'"reason"\s*:\s*"([a-z_]+)"', body)
                return r.status, (m.group(1).decode() if m else body[:60].decode(errors="replace"))
            return r.status, r.getheader("x-policy-revision")
        except (OSError, http.client.HTTPException) as e:
            self.close()
            return None, f"{type(e).__name__}: {e}"

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ---------------------------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------------------------
def policyctl(*args, stdout=None):
    return subprocess.run([POLICYCTL, *args], check=True, stdout=stdout or subprocess.PIPE,
                          stderr=subprocess.DEVNULL).stdout


def demo(revision, storefront_revoked=False):
    with open(DEMO) as f:
        doc = json.load(f)
    doc["revision"] = revision
    if storefront_revoked:
        for key in doc["api_keys"]:
            if key["id"] == "storefront-prod":
                key["status"] = "revoked"
    return doc


def compile_json(doc, workdir):
    """`policyctl compile` of a JSON document: the compiled bytes."""
    src = os.path.join(workdir, "policy-src.json")
    with open(src, "w") as f:
        json.dump(doc, f)
    return policyctl("compile", "--policy", src)


# ---------------------------------------------------------------------------------------------
# Snapshot sources
# ---------------------------------------------------------------------------------------------
class Source:
    """A process serving `snapshot_path` on 127.0.0.1:port at /snapshot, whose log has one
    line per /snapshot request (fetches are counted from it)."""

    kind = None

    def __init__(self, procs, workdir, snapshot_path, port):
        self.procs, self.workdir, self.snapshot_path, self.port = procs, workdir, snapshot_path, port
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_up(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited at start: see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.kind} not listening on {self.port} within {timeout}s")

    def stop(self):
        if self.proc is not None:
            self.procs.stop(self.proc, sig=self.stop_signal)
            self.proc = None

    def fetches(self):
        """(all /snapshot requests, of them 200) logged so far, over every restart."""
        total = ok = 0
        try:
            with open(self.log_path, errors="replace") as f:
                for line in f:
                    m = self.line_re.search(line)
                    if m:
                        total += 1
                        ok += m.group(1) == "200"
        except OSError:
            pass
        return total, ok


class NginxSource(Source):
    """nginx (Debian's) serving the file as a static file with its own ETag
    (`"<mtime hex>-<size hex>"`, mtime in whole seconds) and If-None-Match -> 304."""

    kind = "nginx"
    stop_signal = signal.SIGTERM  # fast shutdown; the Envoys' fetches fail while it is down
    line_re = re.compile(r'"GET /snapshot HTTP/[0-9.]+" (\d{3})')

    def __init__(self, procs, workdir, snapshot_path, port):
        super().__init__(procs, workdir, snapshot_path, port)
        self.log_path = os.path.join(workdir, "nginx-access.log")
        self.conf = os.path.join(workdir, "nginx.conf")
        # nginx's workers drop to an unprivileged user: they must be able to reach the file.
        os.chmod(workdir, 0o755)
        tmp = os.path.join(workdir, "nginx-tmp")
        os.makedirs(tmp, exist_ok=True)
        # Everything nginx writes stays in workdir (no /var/log, /run or /var/lib/nginx);
        # one worker is plenty for a few dozen requests per second; open_file_cache is off by
        # default, so each request opens the current file and a rename is seen at once.
        with open(self.conf, "w") as f:
            f.write(f"""daemon off;
master_process on;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {self.log_path};
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_timeout 75s;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location = /snapshot {{
            alias {snapshot_path};
            default_type application/octet-stream;
            add_header cache-control no-cache;
        }}
    }}
}}
""")

    def start(self):
        self.proc = self.procs.start([nginx_binary(), "-c", self.conf, "-e", os.path.join(self.workdir, "nginx-error.log")],
                                     os.path.join(self.workdir, "nginx.out"))
        self.wait_up()


class ServeSource(Source):
    """`policyctl serve`: ETag from the file's SHA-256, reload checked on each request; one
    stdout line per request (`GET /snapshot 200 etag=...`)."""

    kind = "policyctl_serve"
    stop_signal = signal.SIGTERM
    line_re = re.compile(r"^GET /snapshot (\d{3})")

    def __init__(self, procs, workdir, snapshot_path, port):
        super().__init__(procs, workdir, snapshot_path, port)
        self.log_path = os.path.join(workdir, "serve.log")

    def start(self):
        self.proc = self.procs.start([POLICYCTL, "serve", "--policy", self.snapshot_path,
                                      "--listen", f"127.0.0.1:{self.port}"], self.log_path)
        self.wait_up()


def nginx_binary():
    return shutil.which("nginx") or "/usr/sbin/nginx"


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
