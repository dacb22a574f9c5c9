//! Shadow revisions (issue 14, `snapshot.shadow`) through a real Envoy 1.40
//! and two real `policyctl serve` sources: the live revision decides and is
//! enforced; the shadow one, which revokes a key, is decided beside it and
//! only counted and logged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::{Envoy, EnvoyBuilder, PolicyServer, Upstream};

const DEMO: &str = include_str!("../../../policies/demo.json");
const KEY: &str = "demo-storefront-key";

/// The demo at `revision`, with the storefront's production key revoked
/// when `revoke` holds, written to a temp file.
fn policy_file(revision: &str, revoke: bool) -> PathBuf {
    let mut doc: Value = serde_json::from_str(DEMO).unwrap();
    doc["revision"] = json!(revision);
    if revoke {
        for key in doc["api_keys"].as_array_mut().unwrap() {
            if key["id"] == "storefront-prod" {
                key["status"] = json!("revoked");
            }
        }
    }
    let dir = std::env::temp_dir().join(support::unique_name("tenantgate-shadow"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{revision}.json"));
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// Envoy's demo template with a second policy cluster, `shadow`.
fn template_with_shadow_cluster(shadow_port: u16) -> PathBuf {
    let template = std::fs::read_to_string(support::repo_path("envoy/envoy.yaml.tmpl")).unwrap();
    let cluster = format!(
        "  - name: shadow\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      \
         cluster_name: shadow\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            \
         address:\n              socket_address:\n                address: 127.0.0.1\n                \
         port_value: {shadow_port}\n"
    );
    let path = std::env::temp_dir().join(format!("{}.yaml.tmpl", support::unique_name("shadow")));
    std::fs::write(&path, format!("{}\n{cluster}", template.trim_end())).unwrap();
    path
}

fn remote(cluster: &str) -> Value {
    json!({"cluster": cluster, "path": "/snapshot", "authority": "policy.local",
           "poll_ms": 300, "timeout_ms": 1000})
}

struct Setup {
    envoy: Envoy,
    _servers: (PolicyServer, PolicyServer),
    _upstream: Upstream,
}

fn start(concurrency: u32) -> Setup {
    let live = PolicyServer::start(&policy_file("r1", false), None);
    let shadow = PolicyServer::start(&policy_file("r2-revokes-storefront", true), None);
    let config = json!({"environment": "prod",
        "snapshot": {"remote": remote("policy"),
                     "shadow": {"remote": remote("shadow"), "sample_rate": 1.0}}});
    let upstream = Upstream::start();
    let template = template_with_shadow_cluster(shadow.port());
    let envoy = EnvoyBuilder::new(upstream.port())
        .template(&template)
        .policy_port(live.port())
        .plugin_config(config.to_string())
        .concurrency(concurrency)
        .log_level("info")
        .start();
    let _ = std::fs::remove_file(&template);
    wait_for(&envoy, "shadow snapshot `r2-revokes-storefront` loaded");
    wait_for(&envoy, "snapshot `r1` loaded");
    Setup {
        envoy,
        _servers: (live, shadow),
        _upstream: upstream,
    }
}

fn wait_for(envoy: &Envoy, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !envoy.log_text().contains(text) {
        assert!(Instant::now() < deadline, "never logged `{text}`");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_shadow_revision_that_revokes_a_key_is_counted_while_the_live_one_allows_it() {
    let setup = start(1);
    let envoy = &setup.envoy;
    let disagreed = || envoy.counter("tenantgate.shadow.disagree.allow.api_key_revoked");
    let agreed = || envoy.counter("tenantgate.shadow.agree");
    // The worker adopts the shadow revision on its own tick, after the VM
    // that fetched it: until a first request is compared, none is.
    let deadline = Instant::now() + Duration::from_secs(15);
    while disagreed() == 0 {
        assert!(Instant::now() < deadline, "no request was ever compared");
        let response = envoy.get("/orders/1", &[("x-api-key", KEY)]);
        assert_eq!(
            response.status, 200,
            "the live revision is enforced: {response:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Agreements reach Envoy on the filter's tick (at most a second).
    std::thread::sleep(Duration::from_millis(1200));
    let (disagreed_before, agreed_before) = (disagreed(), agreed());
    // A burst: at most 10 disagreement lines a second are logged.
    for _ in 0..30 {
        let response = envoy.get("/orders/1", &[("x-api-key", KEY)]);
        assert_eq!(
            response.status, 200,
            "the live revision is enforced: {response:?}"
        );
    }
    for _ in 0..4 {
        let response = envoy.get("/orders/1", &[("x-user-id", "alice")]);
        assert_eq!(response.status, 200, "{response:?}");
        let denied = envoy.get("/orders/1", &[("x-user-id", "carol")]);
        assert_eq!(denied.status, 403, "{denied:?}");
    }
    let stats = envoy
        .stats_when(|s| support::stat_ending(s, "tenantgate.shadow.agree") >= agreed_before + 8);
    let stat = |name: &str| support::stat_ending(&stats, name);
    assert_eq!(
        stat("tenantgate.shadow.disagree.allow.api_key_revoked") - disagreed_before,
        30,
        "{stats}"
    );
    assert_eq!(
        stat("tenantgate.shadow.agree") - agreed_before,
        8,
        "{stats}"
    );
    let log = envoy.log_text();
    let logged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tenantgate.shadow {"))
        .collect();
    let lines: Vec<Value> = logged
        .iter()
        .filter_map(|l| l.split_once("tenantgate.shadow ").map(|(_, json)| json))
        .map(|json| serde_json::from_str(json).unwrap())
        .collect();
    let total = stat("tenantgate.shadow.disagree.allow.api_key_revoked");
    assert!(
        !lines.is_empty() && (lines.len() as u64) < total,
        "{} lines of {total}",
        lines.len()
    );
    // Per second of Envoy's clock (`[YYYY-MM-DD HH:MM:SS` starts each line).
    let mut per_second: HashMap<&str, usize> = HashMap::new();
    for line in &logged {
        *per_second
            .entry(line.get(..20).unwrap_or(line))
            .or_default() += 1;
    }
    assert!(per_second.values().all(|&n| n <= 10), "{per_second:?}");
    assert_eq!(
        lines[0],
        json!({"route": "orders", "tenant": "acme", "principal": "app:acme-storefront",
               "live": "allow", "shadow": "api_key_revoked",
               "revision": "r1", "shadow_revision": "r2-revokes-storefront"})
    );
    assert!(!log.contains(KEY), "a raw key reached Envoy's log");
}
