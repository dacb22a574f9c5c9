//! The `policyctl` command line: validate, explain, hash-key, generate, help.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use tenantgate_policy::{self as policy, LoadError, Mode, Reason, Request, Sources, Timestamp};
mod support;
use support::{policyctl, repo};

/// Every `*.json` in `policies/invalid/`, sorted by name.
fn invalid_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("policies/invalid"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "expected the invalid corpus, found {files:?}"
    );
    files
}

fn load_file(path: &Path) -> Result<policy::Snapshot, LoadError> {
    let text = std::fs::read_to_string(path).unwrap();
    policy::load_snapshot(&text)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn policyctl_validate_reports_every_invalid_file() {
    let files = invalid_files();
    let mut args = vec!["validate".to_string()];
    args.extend(files.iter().map(|p| p.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = policyctl(&args);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
    for path in &files {
        let name = path.to_string_lossy();
        assert!(
            stderr.lines().any(|l| l.starts_with(&format!("{name}: "))),
            "stderr does not mention {name}:\n{stderr}"
        );
    }
    // Every problem of every file, each on its own line.
    let expected: usize = files
        .iter()
        .map(|p| load_file(p).unwrap_err().problems().len())
        .sum();
    assert_eq!(stderr.lines().count(), expected, "{stderr}");
}

#[test]
fn policyctl_validate_accepts_the_valid_snapshots() {
    for name in ["policies/demo.json", "policies/minimal.json"] {
        let out = policyctl(&["validate", name]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            stdout.starts_with(&format!("{name}: ok (revision ")),
            "{stdout}"
        );
        // Warnings only (the demo's method-restricted `orders-admin`).
        let stderr = text(&out.stderr);
        assert!(
            stderr
                .lines()
                .all(|l| l.starts_with(&format!("{name}: warning: "))),
            "{stderr}"
        );
    }
    let out = policyctl(&["validate", "policies/demo.json"]);
    assert!(text(&out.stderr).contains("fall through to the broader route `orders`"));
    // One bad file among good ones still fails the whole run.
    let out = policyctl(&[
        "validate",
        "policies/demo.json",
        "policies/invalid/unresolved-app.json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("policies/demo.json: ok"));
    assert!(text(&out.stderr).contains("unknown app `shop-website`"));
}

#[test]
fn policyctl_explain_on_an_invalid_policy_exits_2_with_the_message_on_stderr() {
    let out = policyctl(&[
        "explain",
        "--policy",
        "policies/invalid/unresolved-app.json",
        "--method",
        "GET",
        "--path",
        "/orders",
        "--header",
        "x-api-key: minimal-shop-web-key",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("api_key `shop-web-key`: field `app`: unknown app `shop-website`"),
        "{stderr}"
    );
    // Unreadable policy: same contract.
    let out = policyctl(&[
        "explain",
        "--policy",
        "policies/does-not-exist.json",
        "--method",
        "GET",
        "--path",
        "/",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("does-not-exist.json"));
}

/// The spec as copied into the repository.
const SPEC: &str = include_str!("../../../docs/policy-format.md");

/// The first ```json block of section 4 (`policyctl explain`) of a spec text.
fn explain_example(spec: &str) -> Value {
    let section = spec.split("\n## 4.").nth(1).expect("spec has a section 4");
    let block = section
        .split("```json\n")
        .nth(1)
        .expect("section 4 has a json block");
    let json = block.split("\n```").next().unwrap();
    serde_json::from_str(json).unwrap()
}

#[test]
fn policyctl_explain_prints_the_spec_example() {
    let expected = explain_example(SPEC);
    // The shared spec, when checked out next to the repository, says the same.
    if let Ok(shared) = std::fs::read_to_string(repo().join("../shared/spec/policy-format.md")) {
        assert_eq!(
            explain_example(&shared),
            expected,
            "docs/ and shared spec differ"
        );
    }
    let out = policyctl(&[
        "explain",
        "--policy",
        "policies/demo.json",
        "--method",
        "GET",
        "--path",
        "/research/x",
        "--header",
        "x-user-id: pat",
        "--now",
        "2026-12-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON object on one line: {stdout}"
    );
    let actual: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(actual, expected);
}

#[test]
fn policyctl_explain_exits_0_on_a_deny() {
    let out = policyctl(&[
        "explain",
        "--policy",
        "policies/demo.json",
        "--method",
        "GET",
        "--path",
        "/orders",
        "--now",
        "2026-12-01T00:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let actual: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(actual["decision"], "deny");
    assert_eq!(actual["status"], 401);
    assert_eq!(actual["reason"], "missing_credentials");
    assert_eq!(actual["route"], "orders");
    assert_eq!(actual["headers"], serde_json::json!({}));
}

#[test]
fn policyctl_hash_key_prints_the_sha256_hex() {
    let out = policyctl(&["hash-key", "abc"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
    );
    assert_eq!(policy::hash_key("abc"), text(&out.stdout).trim_end());
    assert_eq!(policyctl(&["hash-key"]).status.code(), Some(2));
    assert_eq!(policyctl(&["hash-key", "a", "b"]).status.code(), Some(2));
}

#[test]
fn policyctl_help_on_each_command() {
    for command in [
        "validate",
        "explain",
        "hash-key",
        "generate",
        "plugin-config",
    ] {
        for flag in ["--help", "-h"] {
            let out = policyctl(&[command, flag]);
            assert_eq!(out.status.code(), Some(0), "{command} {flag}");
            let stdout = text(&out.stdout);
            assert!(
                stdout.starts_with(&format!("usage: policyctl {command}")),
                "{command} {flag}: {stdout}"
            );
        }
    }
    let out = policyctl(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    for command in [
        "validate",
        "explain",
        "hash-key",
        "generate",
        "plugin-config",
    ] {
        assert!(stdout.contains(&format!("policyctl {command}")), "{stdout}");
    }
    assert_eq!(policyctl(&[]).status.code(), Some(2));
    assert_eq!(policyctl(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn policyctl_generate_builds_a_large_valid_snapshot_with_known_raw_keys() {
    let out = policyctl(&["generate", "--orgs", "30", "--keys", "200", "--seed", "7"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json = text(&out.stdout);
    let document: Value = serde_json::from_str(&json).unwrap();
    let snapshot = policy::load_snapshot(&json).unwrap_or_else(|e| panic!("{e}"));
    let stats = snapshot.stats();
    assert_eq!(stats.api_keys, 200);
    assert_eq!(stats.organizations, 30);
    assert!(
        stats.users > 0 && stats.routes > 0 && stats.teams > 0,
        "{stats:?}"
    );
    let orgs = document["organizations"].as_array().unwrap();
    let subs = orgs.iter().filter(|o| o.get("parent").is_some()).count();
    assert!(subs > 0, "no sub-organizations");
    assert!(subs < orgs.len());

    // Same seed, same document.
    let again = policyctl(&["generate", "--orgs", "30", "--keys", "200", "--seed", "7"]);
    assert_eq!(again.stdout, out.stdout);

    // The documented raw-key scheme: api key number i of seed S is `gen-S-i`.
    let now = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
    let sources = Sources::default();
    let decide_with = |raw: &str| {
        let headers = [("x-api-key", raw)];
        let request = Request::from_parts(&sources, "GET", "localhost", "/profile", &headers);
        let decision = policy::decide(
            &snapshot,
            &request,
            &tenantgate_policy::Context::new(now, None),
        );
        assert_eq!(decision.route, Some("profile"));
        decision.reason
    };
    for raw in ["gen-7-0", "gen-7-1", "gen-7-199"] {
        assert_ne!(decide_with(raw), Some(Reason::InvalidApiKey), "{raw}");
    }
    assert_eq!(decide_with("gen-7-200"), Some(Reason::InvalidApiKey));
    assert_eq!(decide_with("gen-8-0"), Some(Reason::InvalidApiKey));
    // And the decision is annotated like any other in audit mode.
    let headers = [("x-api-key", "gen-7-0")];
    let request = Request::from_parts(&sources, "GET", "localhost", "/profile", &headers);
    let decision = policy::decide(
        &snapshot,
        &request,
        &tenantgate_policy::Context::new(now, None),
    );
    assert!(decision
        .annotations(Mode::Audit)
        .iter()
        .any(|(name, value)| *name == "x-principal" && value.starts_with("app:")));

    let out = policyctl(&["generate", "--orgs", "0", "--keys", "1"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn policyctl_explain_shows_the_plan_annotation_only_when_the_configuration_asks() {
    let dir = std::env::temp_dir().join(format!("policyctl-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let on = dir.join("plan.json");
    std::fs::write(
        &on,
        r#"{"environment": "prod", "annotations": {"plan": true}}"#,
    )
    .unwrap();
    let explain = |config: Option<&Path>, key: &str, path: &str| {
        let header = format!("x-api-key: {key}");
        let mut args = vec![
            "explain",
            "--policy",
            "policies/demo.json",
            "--method",
            "GET",
            "--path",
            path,
            "--header",
            &header,
            "--environment",
            "prod",
        ];
        let config = config.map(|c| c.to_string_lossy().into_owned());
        if let Some(config) = &config {
            args.extend(["--config", config]);
        }
        let out = policyctl(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let eval = explain(Some(&on), "demo-initech-key", "/reports/q3");
    assert_eq!(eval["headers"]["x-tenant-plan"], "evaluation", "{eval}");
    let paid = explain(Some(&on), "demo-storefront-key", "/orders/1");
    assert_eq!(paid["headers"]["x-tenant-plan"], "paid", "{paid}");
    let plain = explain(None, "demo-initech-key", "/reports/q3");
    assert_eq!(plain["headers"]["x-tenant-id"], "initech");
    assert!(plain["headers"].get("x-tenant-plan").is_none(), "{plain}");
    // `plugin-config --annotate-plan` writes the option.
    let out = policyctl(&[
        "plugin-config",
        "--policy",
        "policies/demo.json",
        "--annotate-plan",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config["annotations"], serde_json::json!({"plan": true}));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn policyctl_plugin_config_embeds_the_snapshot_as_json_or_compiled() {
    let out = policyctl(&[
        "plugin-config",
        "--policy",
        "policies/demo.json",
        "--environment",
        "prod",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config["mode"], "enforce");
    assert_eq!(config["environment"], "prod");
    assert_eq!(config["snapshot"]["inline"]["revision"], "r1");

    // `--compiled` is a flag: the snapshot embedded compiled, base64.
    let out = policyctl(&[
        "plugin-config",
        "--policy",
        "policies/demo.json",
        "--mode",
        "audit",
        "--compiled",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config["mode"], "audit");
    let compiled = config["snapshot"]["compiled"].as_str().unwrap();
    let bytes = tenantgate_policy::config::decode_base64(compiled).unwrap();
    assert_eq!(
        policy::load_snapshot_bytes(&bytes).unwrap().revision(),
        "r1"
    );
    tenantgate_policy::config::PluginConfig::parse(&out.stdout).unwrap();

    // It takes no value any more; a bad mode is a usage error.
    for args in [
        &["--compiled", "true"][..],
        &["--mode", "bogus"],
        &["--compiled", "--compiled"],
    ] {
        let mut all = vec!["plugin-config", "--policy", "policies/demo.json"];
        all.extend_from_slice(args);
        let out = policyctl(&all);
        let expected = if args == ["--compiled", "--compiled"] {
            0
        } else {
            2
        };
        assert_eq!(out.status.code(), Some(expected), "{args:?}");
    }
}

#[test]
fn policyctl_explain_decides_from_verified_claims() {
    let dir = std::env::temp_dir().join(format!("tg-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let payload = dir.join("alice.json");
    let explain = |claims: &str, headers: &[&str]| {
        std::fs::write(&payload, claims).unwrap();
        let mut args = vec![
            "explain",
            "--policy",
            "policies/demo.json",
            "--method",
            "GET",
        ];
        args.extend([
            "--path",
            "/orders/1",
            "--jwt-payload",
            payload.to_str().unwrap(),
        ]);
        for header in headers {
            args.extend(["--header", header]);
        }
        let out = policyctl(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let alice = r#"{"iss": "https://idp.globex.example", "sub": "alice"}"#;
    // The user header is not read beside a token: alice, not bob.
    let allowed = explain(alice, &["x-user-id: bob"]);
    assert_eq!(allowed["principal"], "user:alice");
    assert_eq!(allowed["decision"], "allow");
    let foreign = explain(
        r#"{"iss": "https://login.initech.example", "sub": "alice"}"#,
        &[],
    );
    assert_eq!(foreign["reason"], "issuer_not_trusted");
    let no_user = explain(r#"{"iss": "https://idp.globex.example"}"#, &[]);
    assert_eq!(no_user["reason"], "invalid_token_claims");
    std::fs::write(&payload, "not json").unwrap();
    let out = policyctl(&[
        "explain",
        "--policy",
        "policies/demo.json",
        "--method",
        "GET",
        "--path",
        "/orders/1",
        "--jwt-payload",
        payload.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not JSON"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn policyctl_test_checks_decision_tables_and_reports_what_differs() {
    let tables = [
        "policies/demo.tests.json",
        "testdata/cases/demo_decisions.json",
        "testdata/cases/token_decisions.json",
    ];
    let mut args = vec!["test", "--policy", "policies/demo.json"];
    args.extend(tables);
    let out = policyctl(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("policies/demo.tests.json: 11 cases, 11 passed, 0 failed"),
        "{stdout}"
    );
    // A compiled snapshot decides the same tables.
    let dir = std::env::temp_dir().join(format!("tg-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let compiled = dir.join("demo.tgsnap");
    let out = policyctl(&[
        "compile",
        "--policy",
        "policies/demo.json",
        "--out",
        compiled.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = policyctl(&["test", "--policy", compiled.to_str().unwrap(), tables[0]]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    // A wrong expectation: exit 1, the case named, each difference shown.
    let mut table: Value =
        serde_json::from_slice(&std::fs::read(repo().join(tables[0])).unwrap()).unwrap();
    table["cases"][2]["expect"]["tenant"] = "initech".into();
    table["cases"][2]["expect"]["principal"] = "app:other".into();
    let wrong = dir.join("wrong.json");
    std::fs::write(&wrong, table.to_string()).unwrap();
    let out = policyctl(&[
        "test",
        "--policy",
        "policies/demo.json",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("FAIL the storefront key reads orders in acme"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  tenant: got \"acme\", want \"initech\""),
        "{stdout}"
    );
    assert!(stdout.contains("  principal: got \"app:acme-storefront\", want \"app:other\""));
    assert!(
        stdout.contains(": 11 cases, 10 passed, 1 failed"),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("1 of 11 cases failed"));

    // A misspelled field is an unusable table (exit 2), never a passing case.
    for (field, value) in [("expected", json_null()), ("heders", json_null())] {
        let mut table = table.clone();
        table["cases"][0][field] = value;
        std::fs::write(&wrong, table.to_string()).unwrap();
        let out = policyctl(&[
            "test",
            "--policy",
            "policies/demo.json",
            wrong.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{field}: {}", text(&out.stdout));
        assert!(text(&out.stderr).contains(field), "{}", text(&out.stderr));
    }
    table["cases"][0]["expect"]["stauts"] = 200.into();
    std::fs::write(&wrong, table.to_string()).unwrap();
    let out = policyctl(&[
        "test",
        "--policy",
        "policies/demo.json",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`expect` has no field `stauts`"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn json_null() -> Value {
    Value::Null
}
