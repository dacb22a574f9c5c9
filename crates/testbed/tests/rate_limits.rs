//! Per-tenant and per-app rate limits by Envoy's own `local_ratelimit`,
//! reading the annotations tenantgate sets (`x-tenant-id`, `x-tenant-plan`,
//! `x-principal`): the real Envoy 1.40 from `.venv` running
//! `envoy/ratelimit.yaml.tmpl` with `dist/tenantgate.wasm` and the demo
//! policy, the echo upstream, ephemeral loopback ports. Needs `make dist`.
//!
//! The template's buckets refill one token an hour (the per-app one every two
//! hours), so the counts below cannot flake on timing: every app 5 requests,
//! a paid tenant 8 over all its apps, an evaluation tenant 3.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};
use support::{http_get, Envoy, EnvoyBuilder, Response, Upstream};

const DEMO: &str = include_str!("../../../policies/demo.json");
const TEMPLATE: &str = "envoy/ratelimit.yaml.tmpl";

/// Paid tenant `acme`: two apps.
const STOREFRONT: (&str, &str) = ("demo-storefront-key", "/orders/1");
const OPS: (&str, &str) = ("demo-ops-key", "/orders/1");
/// Paid tenant `research`.
const RESEARCH: (&str, &str) = ("demo-research-key", "/research/x");
/// Evaluation tenant `initech`.
const INITECH: (&str, &str) = ("demo-initech-key", "/reports/q3");

fn plugin_config(plan: bool) -> String {
    let snapshot: Value = serde_json::from_str(DEMO).unwrap();
    json!({"environment": "prod", "annotations": {"plan": plan}, "snapshot": {"inline": snapshot}})
        .to_string()
}

fn start(template: &str, plan: bool) -> (Upstream, Envoy) {
    assert!(
        support::default_wasm_path().exists(),
        "{} is missing: run `make dist`",
        support::default_wasm_path().display()
    );
    let upstream = Upstream::start();
    let envoy = EnvoyBuilder::new(upstream.port())
        .template(template)
        .plugin_config(plugin_config(plan))
        .concurrency(2)
        .start();
    (upstream, envoy)
}

/// One request with an app's key, plus `extra` headers.
fn call(envoy: &Envoy, (key, path): (&str, &str), extra: &[(&str, &str)]) -> Response {
    let mut headers = vec![("x-api-key", key)];
    headers.extend_from_slice(extra);
    http_get(envoy.listen_port(), path, &headers)
}

/// The statuses of `n` requests, each checked: a 200 reached the upstream
/// annotated with `tenant` and `plan`; a 429 is Envoy's local rate limit.
fn statuses(
    envoy: &Envoy,
    app: (&str, &str),
    extra: &[(&str, &str)],
    n: usize,
    tenant: &str,
    plan: Option<&str>,
) -> Vec<u16> {
    (0..n)
        .map(|_| {
            let response = call(envoy, app, extra);
            match response.status {
                200 => {
                    let seen = &response.json()["headers"];
                    assert_eq!(seen["x-tenant-id"], tenant, "{}: {seen}", app.0);
                    assert_eq!(
                        seen.get("x-tenant-plan").and_then(Value::as_str),
                        plan,
                        "{}: {seen}",
                        app.0
                    );
                    // The client's spellings never reach the upstream.
                    for forged in ["x_tenant_plan", "x.tenant.plan"] {
                        assert!(seen.get(forged).is_none(), "{forged} forwarded: {seen}");
                    }
                }
                429 => {
                    assert_eq!(
                        response.header("x-rate-limited-by"),
                        Some("envoy-local"),
                        "{}: {response:?}",
                        app.0
                    );
                    assert_eq!(response.body, "local_rate_limited");
                }
                other => panic!("{}: status {other}: {}", app.0, response.body),
            }
            response.status
        })
        .collect()
}

fn times(status: u16, n: usize) -> Vec<u16> {
    vec![status; n]
}

fn then(mut a: Vec<u16>, b: Vec<u16>) -> Vec<u16> {
    a.extend(b);
    a
}

/// What a client forges to escape its buckets: every copy is removed before
/// tenantgate sets its own, so Envoy reads only the policy's values.
const FORGED: &[(&str, &str)] = &[
    ("x-tenant-plan", "paid"),
    ("X_Tenant_Plan", "paid"),
    ("x.tenant.plan", "paid"),
    ("x-principal", "app:someone-else"),
];

#[test]
fn a_flooding_tenant_gets_429_from_envoy_while_another_is_untouched_and_evaluation_gets_less() {
    let (_upstream, envoy) = start(TEMPLATE, true);

    // Tenant A (acme) floods with one app while tenant B (research) calls at
    // the same time: A's app gets its 5, then 429; B never notices.
    let (flood, other) = std::thread::scope(|s| {
        let flood = s.spawn(|| statuses(&envoy, STOREFRONT, FORGED, 12, "acme", Some("paid")));
        let other = s.spawn(|| statuses(&envoy, RESEARCH, &[], 4, "research", Some("paid")));
        (flood.join().unwrap(), other.join().unwrap())
    });
    assert_eq!(flood, then(times(200, 5), times(429, 7)), "tenant A's app");
    assert_eq!(other, times(200, 4), "tenant B, during A's flood");

    // A's second app has its own app bucket but shares the tenant's: a paid
    // tenant gets 8 over all its apps (5 + 3).
    let ops = statuses(&envoy, OPS, &[], 5, "acme", Some("paid"));
    assert_eq!(
        ops,
        then(times(200, 3), times(429, 2)),
        "tenant A's second app"
    );

    // The evaluation tenant, same configuration: 3, however it forges its plan.
    let eval = statuses(&envoy, INITECH, FORGED, 5, "initech", Some("evaluation"));
    assert_eq!(
        eval,
        then(times(200, 3), times(429, 2)),
        "evaluation tenant"
    );

    // B is still within its own buckets.
    let after = statuses(&envoy, RESEARCH, &[], 1, "research", Some("paid"));
    assert_eq!(after, times(200, 1), "tenant B after everything");

    // Envoy counted every 429 as its own.
    let stats = envoy.stats_when(|s| s.contains("tenant_rate_limit.http_local_rate_limit"));
    assert_eq!(
        support::stat_ending(
            &stats,
            "tenant_rate_limit.http_local_rate_limit.rate_limited"
        ),
        7 + 2 + 2,
        "{stats}"
    );
}

/// The controls that show the test above measures tenantgate's part: without
/// the plan annotation the evaluation tenant is limited only per app (5), and
/// with the rate limiter placed before tenantgate it reads the client's
/// headers, so a flood that forges them is never limited.
#[test]
fn without_the_plan_annotation_or_in_the_wrong_order_the_limits_do_not_hold() {
    let (_upstream, envoy) = start(TEMPLATE, false);
    let eval = statuses(&envoy, INITECH, FORGED, 6, "initech", None);
    assert_eq!(eval, then(times(200, 5), times(429, 1)), "plan off");
    drop(envoy);

    let template = std::fs::read_to_string(support::repo_path(TEMPLATE)).unwrap();
    let wasm_at = template
        .find("          - name: envoy.filters.http.wasm")
        .unwrap();
    let limit_at = template
        .find("          - name: envoy.filters.http.local_ratelimit")
        .unwrap();
    let router_at = template
        .find("          - name: envoy.filters.http.router")
        .unwrap();
    let swapped = format!(
        "{}{}{}{}",
        &template[..wasm_at],
        &template[limit_at..router_at],
        &template[wasm_at..limit_at],
        &template[router_at..]
    );
    let path = std::env::temp_dir().join(support::unique_name("ratelimit-swapped.yaml.tmpl"));
    std::fs::write(&path, swapped).unwrap();
    let (_upstream, envoy) = start(path.to_str().unwrap(), true);
    std::fs::remove_file(&path).unwrap();
    let forged: Vec<(String, String)> = (0..12)
        .map(|i| ("x-principal".to_string(), format!("app:fake-{i}")))
        .collect();
    let flood: Vec<u16> = forged
        .iter()
        .map(|(name, value)| call(&envoy, STOREFRONT, &[(name, value)]).status)
        .collect();
    assert_eq!(flood, times(200, 12), "rate limiter before tenantgate");
}

/// The global form (`envoy.filters.http.ratelimit` and a rate limit service)
/// is an example: no service runs here, but Envoy must accept the file.
#[test]
fn the_global_rate_limit_example_is_a_valid_envoy_configuration() {
    assert!(support::default_wasm_path().exists(), "run `make dist`");
    let log = EnvoyBuilder::new(1)
        .template("envoy/ratelimit-global.yaml.tmpl")
        .plugin_config(plugin_config(true))
        .arg("--mode")
        .arg("validate")
        .start_expect_failure();
    assert!(
        log.contains("OK") && log.contains("exited with exit status: 0"),
        "{}",
        support::tail_lines(&log, 30)
    );
}
