//! Decision logs (issue 14) through a real Envoy 1.40: a JSON line per
//! denial and per sampled allow in Envoy's log (`tenantgate.decision {...}`)
//! and in the access log (`%FILTER_STATE(wasm.tenantgate.decision_log:PLAIN)%`),
//! never a raw key or a header value, and a flood of denials cut at the
//! configured lines per second.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};
use support::{Envoy, EnvoyBuilder, Upstream};

const DEMO: &str = include_str!("../../../policies/demo.json");
const KEY: &str = "demo-storefront-key";

fn start(decision_log: Value) -> (Upstream, Envoy) {
    let snapshot: Value = serde_json::from_str(DEMO).unwrap();
    let config = json!({"environment": "prod", "snapshot": {"inline": snapshot},
                        "decision_log": decision_log});
    let upstream = Upstream::start();
    let envoy = EnvoyBuilder::new(upstream.port())
        .plugin_config(config.to_string())
        .log_level("info")
        .start();
    (upstream, envoy)
}

/// The decision lines of Envoy's log, parsed.
fn lines(envoy: &Envoy) -> Vec<Value> {
    envoy
        .log_text()
        .lines()
        .filter_map(|l| l.split_once("tenantgate.decision ").map(|(_, json)| json))
        .map(|json| serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}")))
        .collect()
}

fn wait_for_lines(envoy: &Envoy, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let found = lines(envoy);
        if found.len() >= n {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    lines(envoy)
}

#[test]
fn every_denial_and_sampled_allows_are_logged_without_keys_or_header_values() {
    let (_upstream, envoy) = start(json!({"allow_sample_rate": 1.0}));
    let denied = envoy.get(
        &format!("/orders/1?apikey={KEY}"),
        &[("x-request-id", "req-1"), ("x-tenant-id", "initech")],
    );
    assert_eq!(denied.status, 403, "{denied:?}");
    let allowed = envoy.get(
        "/orders/1",
        &[("x-api-key", KEY), ("x-request-id", "req-2")],
    );
    assert_eq!(allowed.status, 200, "{allowed:?}");
    let forged_id = "x\"}, {\"decision\": \"allow";
    let odd = envoy.get(
        "/orders/1",
        &[("x-user-id", "mallory"), ("x-request-id", forged_id)],
    );
    assert_eq!(odd.status, 403, "{odd:?}");
    let found = wait_for_lines(&envoy, 3);
    assert_eq!(found.len(), 3, "{found:?}");
    let want_denied = json!({"revision": "r1", "mode": "enforce", "decision": "deny", "status": 403,
        "reason": "tenant_mismatch", "route": "orders", "tenant": "acme",
        "principal": "app:acme-storefront", "request_id": "req-1"});
    for (field, want) in want_denied.as_object().unwrap() {
        assert_eq!(&found[0][field], want, "{field}: {}", found[0]);
    }
    assert!(found[0]["ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(found[1]["decision"], "allow");
    assert_eq!(found[1]["request_id"], "req-2");
    assert_eq!(found[2]["principal"], "user:mallory");
    assert_eq!(
        found[2]["request_id"],
        Value::Null,
        "an id that is not one is dropped"
    );
    let log = envoy.log_text();
    assert!(!log.contains(KEY), "the raw key reached Envoy's log");
    // The same lines, for access logs.
    let entries = envoy.wait_for_access_log(3);
    let logged: Vec<Value> = entries
        .iter()
        .map(|e| serde_json::from_str(e["decision_log"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(logged, found);
}

#[test]
fn a_flood_of_denials_is_cut_at_the_budget_and_counted() {
    let (_upstream, envoy) = start(json!({"max_lines_per_second": 5}));
    let allowed = envoy.get("/orders/1", &[("x-api-key", KEY)]);
    assert_eq!(allowed.status, 200, "{allowed:?}");
    for _ in 0..40 {
        let response = envoy.get("/orders/1", &[]);
        assert_eq!(response.status, 401);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let found = lines(&envoy);
    // At most 5 lines in any second of Envoy's clock (`[YYYY-MM-DD HH:MM:SS`
    // starts each log line), however long the 40 requests took.
    let log = envoy.log_text();
    let mut per_second: std::collections::HashMap<&str, usize> = Default::default();
    for line in log.lines().filter(|l| l.contains("tenantgate.decision {")) {
        *per_second
            .entry(line.get(..20).unwrap_or(line))
            .or_default() += 1;
    }
    assert!(per_second.values().all(|&n| n <= 5), "{per_second:?}");
    assert!(found.len() >= 5, "{} lines", found.len());
    assert!(
        found.iter().all(|l| l["reason"] == "missing_credentials"),
        "no allow sampled"
    );
    let dropped = envoy.counter("tenantgate.decision_log.dropped");
    assert!(dropped > 0, "40 denials never exceeded 5 a second?");
    assert_eq!(
        found.len() as u64 + dropped,
        40,
        "every denial written or counted"
    );
}
