//! The shared decision table (`testdata/cases/demo_decisions.json`) over
//! `policies/demo.json`, run against the core. The same file runs natively and,
//! via wasm-bindgen-test under Node, compiled to wasm32-unknown-unknown
//! (32-bit usize, no system clock): `make test-wasm`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;
use tenantgate_policy::{self as policy, Mode, Request, Sources, Timestamp, STRIPPED_HEADERS};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const DEMO: &str = include_str!("../../../policies/demo.json");
const TABLE: &str = include_str!("../../../testdata/cases/demo_decisions.json");
const TOKEN_TABLE: &str = include_str!("../../../testdata/cases/token_decisions.json");

fn field<'a>(case: &'a Value, defaults: &'a Value, name: &str) -> Option<&'a str> {
    match case.get(name) {
        Some(Value::Null) => None,
        Some(v) => v.as_str(),
        None => defaults.get(name).and_then(Value::as_str),
    }
}

/// Runs every case and returns the failures, so one run reports them all.
fn run_table(snapshot: &policy::Snapshot) -> (usize, Vec<String>) {
    run_table_text(snapshot, TABLE)
}

/// A table's plugin configuration (`config`, default `{}`): its sources and
/// token source.
fn table_config(table: &Value) -> policy::config::PluginConfig {
    let config = table.get("config").cloned().unwrap_or(Value::Null);
    let text = if config.is_null() {
        "{}".to_string()
    } else {
        config.to_string()
    };
    policy::config::PluginConfig::parse(text.as_bytes()).unwrap()
}

fn run_table_text(snapshot: &policy::Snapshot, text: &str) -> (usize, Vec<String>) {
    let table: Value = serde_json::from_str(text).unwrap();
    let config = table_config(&table);
    let defaults = &table["defaults"];
    let mut failures = Vec::new();
    let cases = table["cases"].as_array().unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let headers: Vec<(String, String)> = case
            .get("headers")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|pair| {
                        (
                            pair[0].as_str().unwrap().to_string(),
                            pair[1].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let now = Timestamp::parse_rfc3339(field(case, defaults, "now").unwrap()).unwrap();
        let mode = match field(case, defaults, "mode") {
            Some("audit") => Mode::Audit,
            _ => Mode::Enforce,
        };
        let host = field(case, defaults, "host").unwrap();
        let token = case.get("token").map(|payload| {
            let mut source = config
                .token
                .clone()
                .expect("the table configures a token source");
            if case.get("token_mode").and_then(Value::as_str) == Some("asserted") {
                source.mode = policy::token::TokenMode::Asserted;
            }
            let source = &source;
            let claims = policy::token::TokenClaims::from_json(payload, source);
            policy::TokenCaller::resolve(snapshot, &claims, source)
        });
        let request = Request::from_parts(
            &config.sources,
            case["method"].as_str().unwrap(),
            host,
            case["path"].as_str().unwrap(),
            &headers,
        );
        let decision = policy::decide(
            snapshot,
            &request,
            &tenantgate_policy::Context::new(now, field(case, defaults, "environment"))
                .with_token(token.as_ref()),
        );
        let got = serde_json::to_value(decision.explain(mode)).unwrap();
        let expect = case["expect"].as_object().unwrap();
        for (key, want) in expect {
            if got[key] != *want {
                failures.push(format!(
                    "{name}: `{key}` is {} but the table says {want}",
                    got[key]
                ));
            }
        }
        // Whatever the decision, every annotation the filter sets is on the strip
        // list, so an inbound copy can never survive next to it.
        for (header, _) in decision.annotations(mode) {
            if !STRIPPED_HEADERS.contains(&header) {
                failures.push(format!(
                    "{name}: annotation `{header}` is not stripped inbound"
                ));
            }
        }
    }
    (cases.len(), failures)
}

#[test]
fn demo_decision_table() {
    let snapshot = policy::load_snapshot(DEMO).expect("demo policy loads");
    let (count, failures) = run_table(&snapshot);
    assert!(count >= 80, "the table lost cases: {count}");
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn token_decision_table() {
    let snapshot = policy::load_snapshot(DEMO).expect("demo policy loads");
    let (count, failures) = run_table_text(&snapshot, TOKEN_TABLE);
    assert!(count >= 15, "the token table lost cases: {count}");
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn table_covers_every_reason_code_with_an_allow_alongside() {
    let table: Value = serde_json::from_str(TABLE).unwrap();
    let tokens: Value = serde_json::from_str(TOKEN_TABLE).unwrap();
    let reasons: Vec<&str> = [&table, &tokens]
        .into_iter()
        .flat_map(|t| t["cases"].as_array().unwrap())
        .filter_map(|c| c["expect"]["reason"].as_str())
        .collect();
    for reason in policy::Reason::ALL {
        // These come from the host shell, not the core: the Envoy suites cover
        // no_policy and key_lookup_unavailable.
        if matches!(
            reason,
            policy::Reason::NoPolicy
                | policy::Reason::HostError
                | policy::Reason::KeyLookupUnavailable
        ) {
            continue;
        }
        assert!(
            reasons.contains(&reason.code()),
            "no case denies with `{}`",
            reason.code()
        );
    }
    let allows = table["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["expect"]["status"] == 200)
        .count();
    assert!(allows >= 20, "only {allows} allow cases");
}

/// On wasm32 the engine runs with a 32-bit usize and no system clock (calling
/// `SystemTime::now()` there would panic): every time comes from the caller.
#[test]
fn runs_without_a_clock_on_the_target_word_size() {
    #[cfg(target_arch = "wasm32")]
    assert_eq!(usize::BITS, 32);
    let snapshot = policy::load_snapshot(DEMO).unwrap();
    let headers = [("x-api-key", "demo-expired-key")];
    let request = Request::from_parts(&Sources::default(), "GET", "h", "/orders/1", &headers);
    let far_future = Timestamp::from_unix_seconds(i64::from(u32::MAX) * 2);
    let decision = policy::decide(
        &snapshot,
        &request,
        &tenantgate_policy::Context::new(far_future, None),
    );
    assert_eq!(decision.reason.map(|r| r.code()), Some("api_key_expired"));
}

/// A key resolved outside the snapshot (the filter's key lookup) is decided
/// exactly like the same key shipped in the snapshot.
#[test]
fn an_external_key_decides_like_a_snapshot_key() {
    let snapshot = policy::load_snapshot(DEMO).unwrap();
    let sources = Sources::default();
    let now = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
    let external_json = format!(
        r#"{{"id": "looked-up", "app": "acme-ops-console", "sha256": "{}", "status": "active", "read_only": true}}"#,
        policy::hash_key("external-raw-key")
    );
    let external = tenantgate_policy::compile_external_key(&snapshot, &external_json).unwrap();
    for (method, path) in [
        ("GET", "/orders/1"),
        ("POST", "/orders/1"),
        ("GET", "/catalog/1"),
        ("GET", "/health"),
    ] {
        let shipped = [("x-api-key", "demo-readonly-key")];
        let looked_up = [("x-api-key", "external-raw-key")];
        let a = Request::from_parts(&sources, method, "h", path, &shipped);
        let b = Request::from_parts(&sources, method, "h", path, &looked_up);
        let want = serde_json::to_value(
            policy::decide(
                &snapshot,
                &a,
                &tenantgate_policy::Context::new(now, Some("prod")),
            )
            .explain(Mode::Enforce),
        )
        .unwrap();
        let got = serde_json::to_value(
            policy::decide(
                &snapshot,
                &b,
                &tenantgate_policy::Context::new(now, Some("prod"))
                    .with_external_key(Some(&external)),
            )
            .explain(Mode::Enforce),
        )
        .unwrap();
        assert_eq!(got, want, "{method} {path}");
    }
    // Without the lookup answer, or for another key, it is unknown.
    let b = Request::from_parts(
        &sources,
        "GET",
        "h",
        "/orders/1",
        &[("x-api-key", "external-raw-key")],
    );
    assert_eq!(
        policy::decide(
            &snapshot,
            &b,
            &tenantgate_policy::Context::new(now, Some("prod"))
        )
        .reason
        .map(|r| r.code()),
        Some("invalid_api_key")
    );
    let c = Request::from_parts(&sources, "GET", "h", "/orders/1", &[("x-api-key", "other")]);
    let decision = policy::decide(
        &snapshot,
        &c,
        &tenantgate_policy::Context::new(now, Some("prod")).with_external_key(Some(&external)),
    );
    assert_eq!(decision.reason.map(|r| r.code()), Some("invalid_api_key"));
    // An answer naming an app the snapshot does not have is refused.
    let bad = external_json.replace("acme-ops-console", "ghost-app");
    assert!(tenantgate_policy::compile_external_key(&snapshot, &bad)
        .unwrap_err()
        .to_string()
        .contains("unknown app `ghost-app`"));
}

/// The compiled form (`policyctl compile`, and what the filter's fetcher hands
/// to the other workers) decides every case of the table exactly as the JSON.
#[test]
fn the_compiled_form_decides_the_table_identically() {
    let snapshot = policy::load_snapshot(DEMO).unwrap();
    let bytes = policy::binary::encode(&snapshot);
    let decoded = policy::load_snapshot_bytes(&bytes).unwrap();
    assert_eq!(decoded.revision(), "r1");
    assert_eq!(decoded.stats(), snapshot.stats());
    let (count, mut failures) = run_table(&decoded);
    // Token issuers, roles and groups (x3) survive the round trip too.
    let (token_count, token_failures) = run_table_text(&decoded, TOKEN_TABLE);
    failures.extend(token_failures);
    let count = count + token_count;
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed on the decoded snapshot:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Encoding is deterministic, so a source can serve it with a stable ETag.
    assert_eq!(policy::binary::encode(&decoded), bytes);
}

#[test]
fn corrupt_compiled_snapshots_are_errors_not_panics() {
    let snapshot = policy::load_snapshot(DEMO).unwrap();
    let bytes = policy::binary::encode(&snapshot);
    for cut in (0..bytes.len()).step_by(7) {
        assert!(
            policy::load_snapshot_bytes(&bytes[..cut]).is_err(),
            "truncated at {cut}"
        );
    }
    let mut seed = 0x1234_5678_u32;
    for _ in 0..300 {
        let mut mutated = bytes.clone();
        for _ in 0..4 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let at = 8 + (seed as usize % (mutated.len() - 8));
            mutated[at] ^= (seed >> 16) as u8 | 1;
        }
        let _ = policy::load_snapshot_bytes(&mutated);
    }
}
