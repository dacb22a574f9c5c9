//! End-to-end: the real Envoy 1.40 from `.venv` with `dist/tenantgate.wasm`,
//! the echo upstream, ephemeral loopback ports. Needs `make dist` and
//! `make envoy` (both done by `make test`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};
use support::{
    http_request, send_raw, stat_ending as counter, Envoy, EnvoyBuilder, Response, Upstream,
};
use tenantgate_policy::{self as policy, Mode, Request, Sources, Timestamp, STRIPPED_HEADERS};

const DEMO: &str = include_str!("../../../policies/demo.json");
const TABLE: &str = include_str!("../../../testdata/cases/demo_decisions.json");

fn plugin_config(mode: &str) -> String {
    let snapshot: Value = serde_json::from_str(DEMO).unwrap();
    json!({"mode": mode, "environment": "prod", "snapshot": {"inline": snapshot}}).to_string()
}

fn start(mode: &str, concurrency: u32) -> (Upstream, Envoy) {
    assert!(
        support::default_wasm_path().exists(),
        "{} is missing: run `make dist`",
        support::default_wasm_path().display()
    );
    let upstream = Upstream::start();
    let envoy = EnvoyBuilder::new(upstream.port())
        .plugin_config(plugin_config(mode))
        .concurrency(concurrency)
        .start();
    (upstream, envoy)
}

/// Forged copies of every annotation except `x-tenant-id` (which is also the
/// tenant selector, and is covered by its own test).
const FORGED: &[(&str, &str)] = &[
    ("x-tenant-handle", "forged"),
    ("x-tenant-teams", "forged"),
    ("x-tenant-roles", "forged"),
    ("x-principal", "forged"),
    ("x-policy-revision", "forged"),
    ("x-policy-decision", "forged"),
    // Stripped whether or not the plan annotation is configured (off here).
    ("x-tenant-plan", "forged"),
];

struct Case {
    name: String,
    method: String,
    path: String,
    host: String,
    headers: Vec<(String, String)>,
    expect: Value,
}

fn envoy_cases(mode: &str) -> Vec<Case> {
    let table: Value = serde_json::from_str(TABLE).unwrap();
    table["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("envoy") != Some(&Value::Bool(false)))
        .filter(|c| c.get("mode").and_then(Value::as_str).unwrap_or("enforce") == mode)
        .filter(|c| c.get("environment").is_none() && c.get("now").is_none())
        .map(|c| Case {
            name: c["name"].as_str().unwrap().into(),
            method: c["method"].as_str().unwrap().into(),
            path: c["path"].as_str().unwrap().into(),
            host: c
                .get("host")
                .and_then(Value::as_str)
                .unwrap_or("localhost")
                .into(),
            headers: c
                .get("headers")
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
                        .collect()
                })
                .unwrap_or_default(),
            expect: c["expect"].clone(),
        })
        .collect()
}

/// What the core says the filter must set upstream for this request.
fn core_annotations(case: &Case, mode: Mode) -> Vec<(String, String)> {
    let snapshot = policy::load_snapshot(DEMO).unwrap();
    let request = Request::from_parts(
        &Sources::default(),
        &case.method,
        &case.host,
        &case.path,
        &case.headers,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let decision = policy::decide(
        &snapshot,
        &request,
        &tenantgate_policy::Context::new(
            Timestamp::from_unix_seconds(now.as_secs() as i64),
            Some("prod"),
        ),
    );
    decision
        .annotations(mode)
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn send(envoy: &Envoy, case: &Case, extra: &[(&str, &str)]) -> Response {
    let mut headers: Vec<(&str, &str)> = case
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    headers.extend_from_slice(extra);
    http_request(
        envoy.listen_port(),
        &case.method,
        &case.path,
        &case.host,
        &headers,
    )
}

fn upstream_headers(response: &Response) -> serde_json::Map<String, Value> {
    response.json()["headers"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn decision_table_through_envoy_with_forged_headers() {
    let (_upstream, envoy) = start("enforce", 1);
    let cases = envoy_cases("enforce");
    assert!(
        cases.len() >= 60,
        "only {} cases run through Envoy",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let response = send(&envoy, case, FORGED);
        let want_status = case.expect["status"].as_u64().unwrap() as u16;
        if response.status != want_status {
            failures.push(format!(
                "{}: status {} (body {}), want {want_status}",
                case.name, response.status, response.body
            ));
            continue;
        }
        if want_status != 200 {
            let body = response.json();
            let reason = case.expect["reason"].as_str().unwrap();
            if body["reason"] != reason
                || body["error"].as_str().is_none()
                || body["message"].as_str().is_none()
            {
                failures.push(format!(
                    "{}: deny body {body}, want reason {reason}",
                    case.name
                ));
            }
            if response.header("content-type") != Some("application/json") {
                failures.push(format!(
                    "{}: content-type {:?}",
                    case.name,
                    response.header("content-type")
                ));
            }
            continue;
        }
        // Allowed: the upstream sees exactly the core's annotations, and no forged value.
        let seen = upstream_headers(&response);
        let want = core_annotations(case, Mode::Enforce);
        for name in STRIPPED_HEADERS {
            let got = seen.get(name).and_then(Value::as_str);
            let expected = want
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str());
            if got != expected {
                failures.push(format!(
                    "{}: upstream `{name}` = {got:?}, want {expected:?}",
                    case.name
                ));
            }
        }
        if let Some(headers) = case.expect.get("headers").and_then(Value::as_object) {
            for (name, value) in headers {
                if seen.get(name) != Some(value) {
                    failures.push(format!(
                        "{}: upstream `{name}` = {:?}, table says {value}",
                        case.name,
                        seen.get(name)
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn selector_and_query_key_never_reach_the_upstream_unless_set_by_the_filter() {
    let (_upstream, envoy) = start("enforce", 1);
    let port = envoy.listen_port();
    // A public route with no concrete tenant: the inbound x-tenant-id is dropped.
    let r = http_request(
        port,
        "GET",
        "/health",
        "localhost",
        &[("x-tenant-id", "acme"), ("x-principal", "user:root")],
    );
    assert_eq!(r.status, 200);
    let seen = upstream_headers(&r);
    assert_eq!(seen.get("x-tenant-id"), None, "{seen:?}");
    assert_eq!(seen.get("x-principal"), None);
    assert_eq!(seen["x-policy-revision"], "r1");
    // The selector by handle is replaced by the resolved tenant id.
    let r = http_request(
        port,
        "GET",
        "/profile",
        "localhost",
        &[("x-user-id", "alice"), ("x-tenant-id", "research-dept")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(upstream_headers(&r)["x-tenant-id"], "research");
    // API key in the query: removed from the path sent upstream, other parameters kept.
    let r = http_request(
        port,
        "GET",
        "/orders/1?page=2&apikey=demo-storefront-key&sort=asc",
        "localhost",
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let echoed = r.json();
    assert_eq!(echoed["path"], "/orders/1?page=2&sort=asc");
    assert_eq!(echoed["headers"]["x-principal"], "app:acme-storefront");
    let r = http_request(
        port,
        "GET",
        "/orders/1?apikey=demo-storefront-key",
        "localhost",
        &[],
    );
    assert_eq!(r.json()["path"], "/orders/1");
    // ... also when the header holds the same key.
    let r = http_request(
        port,
        "GET",
        "/orders/1?apikey=demo-storefront-key",
        "localhost",
        &[("x-api-key", "demo-storefront-key")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/orders/1");
    // Two different keys are ambiguous (v1.1): neither wins.
    let r = http_request(
        port,
        "GET",
        "/orders/1?apikey=bogus",
        "localhost",
        &[("x-api-key", "demo-storefront-key")],
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["reason"], "ambiguous_credentials");
}

#[test]
fn audit_mode_lets_everything_through_and_marks_would_be_denials() {
    let (_upstream, envoy) = start("audit", 1);
    let port = envoy.listen_port();
    let mut checked = 0;
    for case in envoy_cases("enforce") {
        let response = send(&envoy, &case, FORGED);
        assert_eq!(
            response.status, 200,
            "{}: audit must not deny: {}",
            case.name, response.body
        );
        let seen = upstream_headers(&response);
        let want = core_annotations(&case, Mode::Audit);
        for name in STRIPPED_HEADERS {
            let got = seen.get(name).and_then(Value::as_str);
            let expected = want
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str());
            assert_eq!(got, expected, "{}: upstream `{name}`", case.name);
        }
        match case.expect["reason"].as_str() {
            Some(reason) => assert_eq!(
                seen["x-policy-decision"],
                format!("deny; reason={reason}"),
                "{}",
                case.name
            ),
            None => assert_eq!(seen.get("x-policy-decision"), None, "{}", case.name),
        }
        checked += 1;
    }
    assert!(checked >= 60);
    let stats =
        envoy.stats_when(|s| counter(s, "tenantgate.audit_would_deny.missing_credentials") >= 1);
    assert!(
        counter(&stats, "tenantgate.audit_would_deny.missing_credentials") >= 1,
        "{stats}"
    );
    assert_eq!(
        counter(&stats, "tenantgate.denied.missing_credentials"),
        0,
        "audit mode denied: {stats}"
    );
    let r = http_request(
        port,
        "GET",
        "/orders/1",
        "localhost",
        &[("x-policy-decision", "allow")],
    );
    assert_eq!(
        upstream_headers(&r)["x-policy-decision"],
        "deny; reason=missing_credentials"
    );
}

#[test]
fn counters_move_and_the_access_log_carries_the_decision() {
    let (_upstream, envoy) = start("enforce", 1);
    let port = envoy.listen_port();
    let before = envoy.admin_get("/stats");
    assert!(
        before.contains("tenantgate.snapshot.revision.r1: 1"),
        "{before}"
    );
    for _ in 0..3 {
        assert_eq!(
            http_request(
                port,
                "GET",
                "/orders/1",
                "localhost",
                &[("x-api-key", "demo-storefront-key")]
            )
            .status,
            200
        );
    }
    assert_eq!(
        http_request(port, "GET", "/orders/1", "localhost", &[]).status,
        401
    );
    assert_eq!(
        http_request(
            port,
            "GET",
            "/orders/1",
            "localhost",
            &[("x-user-id", "carol")]
        )
        .status,
        403
    );
    let after = envoy.stats_when(|s| counter(s, "tenantgate.denied.membership_pending") >= 1);
    assert_eq!(
        counter(&after, "tenantgate.allowed") - counter(&before, "tenantgate.allowed"),
        3,
        "{after}"
    );
    assert_eq!(counter(&after, "tenantgate.denied.missing_credentials"), 1);
    assert_eq!(counter(&after, "tenantgate.denied.membership_pending"), 1);
    let prometheus = envoy.admin_get("/stats/prometheus");
    assert!(
        prometheus.contains("tenantgate_denied_membership_pending"),
        "{prometheus}"
    );

    let entries = envoy.wait_for_access_log(5);
    // An allowed request: tenant and principal from its annotated headers
    // (no filter state by default).
    let allowed = entries
        .iter()
        .find(|e| e["response_code"] == 200)
        .expect("an allowed entry");
    assert_eq!(allowed["x_tenant_id"], "acme", "{allowed}");
    assert_eq!(allowed["x_principal"], "app:acme-storefront");
    assert_eq!(allowed["decision"], Value::Null);
    let pending = entries
        .iter()
        .find(|e| e["reason"] == "membership_pending")
        .expect("a pending entry");
    assert_eq!(pending["decision"], "deny");
    assert_eq!(pending["principal"], "user:carol");
    assert_eq!(pending["tenant"], "acme");
    assert_eq!(pending["response_code"], 403);
    // The raw key never reaches the log.
    assert!(!envoy.access_log_text().contains("demo-storefront-key"));
    assert!(!envoy.log_text().contains("demo-storefront-key"));
}

#[test]
fn invalid_plugin_configurations_are_refused_by_envoy() {
    let upstream = Upstream::start();
    let log = EnvoyBuilder::new(upstream.port())
        .plugin_config(r#"{"mode": "enforce", "snapshto": {}}"#)
        .log_level("info")
        .start_expect_failure();
    assert!(
        log.contains("configuration refused") && log.contains("snapshto"),
        "{log}"
    );

    let mut broken: Value = serde_json::from_str(DEMO).unwrap();
    broken["teams"][0]["organization"] = json!("no-such-org");
    let config = json!({"snapshot": {"inline": broken}}).to_string();
    let log = EnvoyBuilder::new(upstream.port())
        .plugin_config(config)
        .log_level("info")
        .start_expect_failure();
    assert!(
        log.contains(
            "team `acme-platform`: field `organization`: unknown organization `no-such-org`"
        ),
        "{log}"
    );
}

#[test]
fn no_snapshot_fails_closed_with_503() {
    let upstream = Upstream::start();
    let envoy = EnvoyBuilder::new(upstream.port())
        .plugin_config("{}")
        .start();
    let r = http_request(envoy.listen_port(), "GET", "/health", "localhost", &[]);
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["reason"], "no_policy");
    assert_eq!(r.json()["error"], "unavailable");
}

#[test]
fn non_utf8_header_values_are_denied_without_killing_the_vm() {
    let (_upstream, envoy) = start("enforce", 1);
    let port = envoy.listen_port();
    for header in ["x-api-key", "x-user-id", "x-tenant-id"] {
        let mut raw =
            format!("GET /orders/1 HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n{header}: ")
                .into_bytes();
        raw.extend_from_slice(&[0xff, 0xfe, 0x80]);
        raw.extend_from_slice(b"\r\n\r\n");
        let r = send_raw(port, &raw).unwrap();
        assert!(matches!(r.status, 401 | 403), "{header}: {r:?}");
    }
    // The VM is still alive and deciding.
    let r = http_request(
        port,
        "GET",
        "/orders/1",
        "localhost",
        &[("x-api-key", "demo-storefront-key")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!envoy.log_text().contains("panic"), "{}", envoy.log_text());
}

#[test]
fn two_workers_decide_identically() {
    let (_upstream, envoy) = start("enforce", 2);
    let port = envoy.listen_port();
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let requests: [(&str, Headers, u16); 4] = [
        ("/orders/1", &[("x-api-key", "demo-storefront-key")], 200),
        ("/orders/1", &[("x-api-key", "demo-revoked-key")], 401),
        (
            "/profile",
            &[("x-user-id", "alice"), ("x-tenant-id", "acme")],
            200,
        ),
        ("/research/x", &[("x-user-id", "bob")], 403),
    ];
    // Each request opens its own connection, so both workers take some.
    for round in 0..30 {
        for (path, headers, status) in &requests {
            let r = http_request(port, "GET", path, "localhost", headers);
            assert_eq!(r.status, *status, "round {round} {path}: {}", r.body);
        }
    }
    let stats = envoy.stats_when(|s| counter(s, "tenantgate.allowed") >= 60);
    let per_worker: Vec<u64> = (0..2)
        .map(|w| counter(&stats, &format!("worker_{w}.downstream_cx_total")))
        .collect();
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "a worker took no connection: {per_worker:?}\n{stats}"
    );
    assert_eq!(counter(&stats, "tenantgate.allowed"), 60);
}

#[test]
fn filter_state_all_records_allowed_requests_too() {
    let upstream = Upstream::start();
    let snapshot: Value = serde_json::from_str(DEMO).unwrap();
    let config =
        json!({"environment": "prod", "filter_state": "all", "snapshot": {"inline": snapshot}});
    let envoy = EnvoyBuilder::new(upstream.port())
        .plugin_config(config.to_string())
        .start();
    let port = envoy.listen_port();
    let allowed = http_request(
        port,
        "GET",
        "/orders/1",
        "localhost",
        &[("x-api-key", "demo-storefront-key")],
    );
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.json()["headers"]["x-tenant-id"],
        "acme",
        "annotations do not depend on filter state"
    );
    assert_eq!(
        http_request(port, "GET", "/orders/1", "localhost", &[]).status,
        401
    );
    let entries = envoy.wait_for_access_log(2);
    let allow = entries.iter().find(|e| e["response_code"] == 200).unwrap();
    assert_eq!(allow["decision"], "allow", "{allow}");
    assert_eq!(allow["route"], "orders");
    assert_eq!(allow["tenant"], "acme");
    assert_eq!(allow["principal"], "app:acme-storefront");
    let deny = entries.iter().find(|e| e["response_code"] == 401).unwrap();
    assert_eq!(deny["reason"], "missing_credentials");
    assert_eq!(deny["decision"], "deny");

    let log = EnvoyBuilder::new(upstream.port())
        .plugin_config(r#"{"filter_state": "sometimes"}"#)
        .log_level("info")
        .start_expect_failure();
    assert!(
        log.contains("field `filter_state`: unknown variant `sometimes`, expected one of `all`, `denials`, `none`"),
        "{log}"
    );
}

#[test]
fn a_compiled_inline_snapshot_decides_like_the_json() {
    let snapshot = policy::load_snapshot(DEMO).unwrap();
    let compiled = tenantgate_policy::config::encode_base64(&policy::binary::encode(&snapshot));
    let upstream = Upstream::start();
    let config = json!({"environment": "prod", "snapshot": {"compiled": compiled}}).to_string();
    let envoy = EnvoyBuilder::new(upstream.port())
        .plugin_config(config)
        .start();
    let mut failures = Vec::new();
    let cases = envoy_cases("enforce");
    for case in &cases {
        let response = send(&envoy, case, FORGED);
        let want = case.expect["status"].as_u64().unwrap() as u16;
        if response.status != want {
            failures.push(format!(
                "{}: status {}, want {want}",
                case.name, response.status
            ));
        } else if want == 200 {
            let seen = upstream_headers(&response);
            for (name, value) in core_annotations(case, Mode::Enforce) {
                if seen.get(&name).and_then(Value::as_str) != Some(value.as_str()) {
                    failures.push(format!(
                        "{}: upstream `{name}` = {:?}, want {value}",
                        case.name,
                        seen.get(&name)
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
