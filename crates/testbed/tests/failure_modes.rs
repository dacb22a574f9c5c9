//! What Envoy does with a tenantgate filter that cannot start, measured on the
//! real Envoy 1.40 with its listener delivered by file-based xDS (LDS from a
//! watched file, as a control plane would push it): a configuration that
//! `on_configure` refuses, a module that does not load and a module file that
//! is missing, each with `fail_open` false and true. README "When the filter
//! cannot start" reports these results. Needs `make dist` and `make envoy`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{http_request, Envoy, EnvoyBuilder};

const DEMO: &str = include_str!("../../../policies/demo.json");

/// The bootstrap: an admin port and a listener from `lds.json` beside it.
/// Rendered by the harness (only the admin port is a placeholder).
fn bootstrap(lds: &Path) -> String {
    json!({
        "node": {"id": "tenantgate-test", "cluster": "tenantgate-test"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": "{{ADMIN_PORT}}"}}},
        "dynamic_resources": {"lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {"path": lds.display().to_string()},
        }},
    })
    .to_string()
    // The port is a number in YAML; the placeholder sat in a JSON string.
    .replace("\"{{ADMIN_PORT}}\"", "{{ADMIN_PORT}}")
}

fn enforce() -> String {
    let snapshot: Value = serde_json::from_str(DEMO).unwrap();
    json!({"mode": "enforce", "environment": "prod", "snapshot": {"inline": snapshot}}).to_string()
}

fn audit() -> String {
    let snapshot: Value = serde_json::from_str(DEMO).unwrap();
    json!({"mode": "audit", "environment": "prod", "snapshot": {"inline": snapshot}}).to_string()
}

/// How the filter should fail: the deprecated `fail_open` (what Istio's
/// FAIL_OPEN/FAIL_CLOSE and Envoy Gateway's `failOpen` set) or Envoy's newer
/// `failure_policy`.
#[derive(Clone, Copy, Debug)]
enum Failure {
    FailOpen(bool),
    Policy(&'static str),
}

/// The listener: the filter, then a direct 200 (no upstream needed).
fn listener(port: u16, module: &Path, config: &str, failure: Failure) -> Value {
    let mut listener = json!({"resources": [{
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": "ingress",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "ingress_http",
                "route_config": {"name": "local", "virtual_hosts": [{
                    "name": "all", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"},
                                "direct_response": {"status": 200, "body": {"inline_string": "upstream"}}}],
                }]},
                "http_filters": [
                    {"name": "envoy.filters.http.wasm", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                        "config": {
                            "name": "tenantgate", "root_id": "tenantgate",
                            "vm_config": {"vm_id": "tenantgate", "runtime": "envoy.wasm.runtime.v8",
                                          "code": {"local": {"filename": module.display().to_string()}}},
                            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config},
                        },
                    }},
                    {"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
                ],
            },
        }]}],
    }]});
    let plugin = &mut listener["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"][0]["typed_config"]["config"];
    match failure {
        Failure::FailOpen(open) => plugin["fail_open"] = json!(open),
        Failure::Policy(policy) => plugin["failure_policy"] = json!(policy),
    }
    listener
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

struct Setup {
    scratch: Scratch,
    port: u16,
}

impl Setup {
    fn new() -> Setup {
        let dir = std::env::temp_dir().join(support::unique_name("tenantgate-lds"));
        fs::create_dir_all(&dir).unwrap();
        // A port for the listener: in-place updates need the same address each
        // time (port 0 would be a new listener). Free a moment ago.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        fs::write(dir.join("garbage.wasm"), b"\0asm\x01\0\0\0not a module").unwrap();
        Setup {
            scratch: Scratch(dir),
            port,
        }
    }

    fn dir(&self) -> &Path {
        &self.scratch.0
    }

    fn lds(&self) -> PathBuf {
        self.dir().join("lds.json")
    }

    /// Replaces lds.json atomically (a rename: what Envoy's file watch expects).
    fn push(&self, listener: &Value) {
        let next = self.dir().join("lds.next");
        fs::write(&next, listener.to_string()).unwrap();
        fs::rename(&next, self.lds()).unwrap();
    }

    fn listener(&self, module: &Path, config: &str, failure: Failure) -> Value {
        listener(self.port, module, config, failure)
    }

    fn start(&self, first: &Value) -> Envoy {
        self.push(first);
        let template = self.dir().join("bootstrap.yaml");
        fs::write(&template, bootstrap(&self.lds())).unwrap();
        EnvoyBuilder::new(1)
            .template(template)
            .log_level("info")
            .start()
    }
}

fn stat(envoy: &Envoy, name: &str) -> u64 {
    envoy.stat(name).unwrap_or(0)
}

/// Waits until LDS counted `attempts` updates in all.
fn wait_for_attempts(envoy: &Envoy, attempts: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while stat(envoy, "listener_manager.lds.update_attempt") < attempts {
        assert!(
            Instant::now() < deadline,
            "no LDS update attempt {attempts}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (status with a good key, status with a revoked key)
fn decide(port: u16) -> (u16, u16) {
    let good = http_request(
        port,
        "GET",
        "/orders/1",
        "localhost",
        &[("x-api-key", "demo-storefront-key")],
    );
    let revoked = http_request(
        port,
        "GET",
        "/orders/1",
        "localhost",
        &[("x-api-key", "demo-revoked-key")],
    );
    (good.status, revoked.status)
}

#[test]
fn a_filter_update_that_cannot_start_is_rejected_and_the_previous_one_keeps_deciding() {
    let setup = Setup::new();
    let module = support::default_wasm_path();
    let missing = setup.dir().join("missing.wasm");
    let garbage = setup.dir().join("garbage.wasm");
    let envoy = setup.start(&setup.listener(&module, &enforce(), Failure::FailOpen(false)));
    assert_eq!(envoy.listen_port(), setup.port);
    assert_eq!(decide(setup.port), (200, 401), "enforcing the demo");
    assert_eq!(stat(&envoy, "listener_manager.lds.update_success"), 1);

    let refused = r#"{"mode": "enforce", "snapshto": {}}"#;
    let (closed, open) = (Failure::FailOpen(false), Failure::FailOpen(true));
    let broken = [
        (
            "on_configure refuses, fail_open false",
            setup.listener(&module, refused, closed),
        ),
        (
            "on_configure refuses, fail_open true",
            setup.listener(&module, refused, open),
        ),
        (
            "on_configure refuses, failure_policy FAIL_OPEN",
            setup.listener(&module, refused, Failure::Policy("FAIL_OPEN")),
        ),
        (
            "module does not load, fail_open false",
            setup.listener(&garbage, &enforce(), closed),
        ),
        (
            "module does not load, fail_open true",
            setup.listener(&garbage, &enforce(), open),
        ),
        (
            "module file missing, fail_open true",
            setup.listener(&missing, &enforce(), open),
        ),
    ];
    for (n, (case, listener)) in broken.iter().enumerate() {
        let attempt = 2 + n as u64;
        setup.push(listener);
        wait_for_attempts(&envoy, attempt);
        assert_eq!(
            stat(&envoy, "listener_manager.lds.update_rejected"),
            1 + n as u64,
            "{case}: Envoy took the update"
        );
        assert_eq!(
            decide(setup.port),
            (200, 401),
            "{case}: the previous filter no longer decides"
        );
    }
    let log = envoy.log_text();
    assert!(
        log.contains("tenantgate: configuration refused") && log.contains("snapshto"),
        "the refusal names the field:\n{log}"
    );
    assert!(
        log.contains("Unable to create Wasm plugin tenantgate"),
        "{log}"
    );

    // A good update still goes through, in place: audit lets the revoked key by.
    setup.push(&setup.listener(&module, &audit(), Failure::Policy("FAIL_RELOAD")));
    wait_for_attempts(&envoy, 2 + broken.len() as u64);
    assert_eq!(stat(&envoy, "listener_manager.lds.update_success"), 2);
    assert_eq!(decide(setup.port), (200, 200), "auditing after the update");
}

#[test]
fn a_new_listener_whose_filter_cannot_start_never_accepts_connections() {
    let setup = Setup::new();
    let module = support::default_wasm_path();
    let refused = r#"{"mode": "enforce", "snapshto": {}}"#;
    // A listener's first configuration (the harness needs one listener up to
    // start, so the new one comes beside it), refused with fail_open true.
    let envoy = setup.start(&setup.listener(&module, &enforce(), Failure::FailOpen(false)));
    let second_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut both = setup.listener(&module, &enforce(), Failure::FailOpen(false));
    let mut second =
        listener(second_port, &module, refused, Failure::FailOpen(true))["resources"][0].clone();
    second["name"] = json!("second");
    both["resources"].as_array_mut().unwrap().push(second);
    setup.push(&both);
    wait_for_attempts(&envoy, 2);
    assert_eq!(stat(&envoy, "listener_manager.lds.update_rejected"), 1);
    // Nothing listens there: requests are refused at the TCP level, never let through.
    assert!(
        TcpStream::connect(("127.0.0.1", second_port)).is_err(),
        "a listener whose filter cannot start must not accept connections"
    );
    assert_eq!(decide(setup.port), (200, 401));
}
