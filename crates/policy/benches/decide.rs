//! `make bench`: ns per decision over the demo world and over generated
//! snapshots of 1k and 100k keys (same request mix at every size), and the time
//! to compile a snapshot. Compare sizes within one run: machines here are noisy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use serde_json::Value;
use std::hint::black_box;
use tenantgate_policy::generate::{generate, generated_raw_key};
use tenantgate_policy::{self as policy, Request, Snapshot, Sources, Timestamp};

const SEED: u64 = 42;

/// Requests that walk the whole decision: each key on its own organization's
/// catalog route (allowed, or denied late for revoked/expired/read-only keys).
fn generated_requests(doc: &Value, sample: usize) -> Vec<(String, String)> {
    let keys = doc["api_keys"].as_array().cloned().unwrap_or_default();
    let apps = doc["apps"].as_array().cloned().unwrap_or_default();
    let step = (keys.len() / sample).max(1);
    (0..keys.len())
        .step_by(step)
        .take(sample)
        .map(|i| {
            let app_index: usize = keys[i]["app"].as_str().unwrap_or("app-0")[4..]
                .parse()
                .unwrap_or(0);
            let org = apps[app_index]["organization"]
                .as_str()
                .unwrap_or("org-0")
                .to_string();
            (
                format!("/t/{org}/catalog/item-{i}"),
                generated_raw_key(SEED, i),
            )
        })
        .collect()
}

fn bench_requests(
    c: &mut Criterion,
    group_name: &str,
    snapshot: &Snapshot,
    requests: &[(String, String)],
) {
    let sources = Sources::default();
    let now = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap_or(Timestamp(0));
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(requests.len() as u64));
    group.bench_function(BenchmarkId::new("decide", requests.len()), |b| {
        b.iter(|| {
            for (path, key) in requests {
                let headers = [("x-api-key", key.as_str())];
                let request =
                    Request::from_parts(&sources, "GET", "api.example.test", path, &headers);
                let decision = policy::decide(
                    snapshot,
                    &request,
                    &tenantgate_policy::Context::new(now, Some("prod")),
                );
                black_box(decision.status());
            }
        })
    });
    group.finish();
}

fn demo(c: &mut Criterion) {
    let snapshot =
        policy::load_snapshot(include_str!("../../../policies/demo.json")).expect("demo loads");
    let sources = Sources::default();
    let now = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap_or(Timestamp(0));
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, &str, Headers); 4] = [
        (
            "allow_api_key",
            "/orders/1",
            &[("x-api-key", "demo-storefront-key")],
        ),
        (
            "allow_user_selector",
            "/profile",
            &[("x-user-id", "alice"), ("x-tenant-id", "research-dept")],
        ),
        ("deny_team_right", "/orders/1", &[("x-user-id", "frank")]),
        ("deny_unknown_key", "/orders/1", &[("x-api-key", "nope")]),
    ];
    let mut group = c.benchmark_group("demo");
    for (name, path, headers) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                let request = Request::from_parts(&sources, "GET", "localhost", path, headers);
                black_box(
                    policy::decide(
                        &snapshot,
                        &request,
                        &tenantgate_policy::Context::new(now, Some("prod")),
                    )
                    .status(),
                )
            })
        });
    }
    group.finish();
}

fn generated(c: &mut Criterion) {
    let mut sizes = vec![("keys_1k", 100, 1_000), ("keys_100k", 2_000, 100_000)];
    // The engine comparison (bench/engines) measures 1M keys in `make bench`;
    // here it is opt-in, for profiling the large-table case.
    if std::env::var_os("TENANTGATE_BENCH_1M").is_some() {
        sizes.push(("keys_1m", 20_000, 1_000_000));
    }
    for (label, orgs, keys) in sizes {
        let doc = generate(orgs, keys, SEED);
        let text = doc.to_string();
        let snapshot = policy::load_snapshot(&text).expect("generated snapshot loads");
        let requests = generated_requests(&doc, 256);
        bench_requests(c, label, &snapshot, &requests);
        let mut group = c.benchmark_group(label);
        group.sample_size(10);
        group.bench_function("compile", |b| {
            b.iter_batched(
                || text.clone(),
                |t| black_box(policy::load_snapshot(&t).map(|s| s.stats())),
                BatchSize::LargeInput,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, demo, generated);
criterion_main!(benches);
