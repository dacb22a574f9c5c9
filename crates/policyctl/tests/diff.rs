//! `policyctl diff`: exit statuses, the JSON shape, `--fail-on`, compiled
//! inputs. (Its exactness is tested in the core: `crates/policy/tests/diff.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
mod support;
use support::{policyctl, repo};

const NOW: &str = "2026-11-29T12:00:00Z";

/// A directory of its own for each test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("policyctl-diff-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn demo() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join("policies/demo.json")).unwrap())
        .unwrap()
}

/// The demo with `change` applied, written to `dir/name`.
fn edited_demo(dir: &Path, name: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut document = demo();
    change(&mut document);
    let path = dir.join(name);
    std::fs::write(&path, document.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

fn item<'a>(document: &'a mut Value, collection: &str, id: &str) -> &'a mut Value {
    document[collection]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|item| item["id"] == id)
        .unwrap()
}

fn revoke_ops_console(document: &mut Value) {
    item(document, "api_keys", "ops-console")["status"] = json!("revoked");
}

fn diff_json(args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["diff", "--json", "--now", NOW];
    all.extend_from_slice(args);
    let out = policyctl(&all);
    let stdout = String::from_utf8(out.stdout).unwrap();
    (out.status.code(), serde_json::from_str(&stdout).unwrap())
}

#[test]
fn no_change_exits_0() {
    let out = policyctl(&[
        "diff",
        "policies/demo.json",
        "policies/demo.json",
        "--now",
        NOW,
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("no access change"), "{stdout}");
    let (code, report) = diff_json(&["policies/demo.json", "policies/demo.json"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        report["changed"],
        json!({"gain": 0, "loss": 0, "reason": 0})
    );
    assert_eq!(report["tenants"], json!([]));
}

#[test]
fn a_revoked_key_is_a_loss_in_the_json() {
    let dir = scratch("revoked");
    let new = edited_demo(&dir, "new.json", revoke_ops_console);
    let (code, report) = diff_json(&["policies/demo.json", &new]);
    assert_eq!(code, Some(1));
    for field in [
        "old", "new", "now", "space", "changed", "summary", "tenants",
    ] {
        assert!(report.get(field).is_some(), "{field} missing: {report}");
    }
    assert_eq!(report["changed"]["gain"], 0);
    assert!(report["changed"]["loss"].as_u64().unwrap() > 0);
    let summary: Vec<&str> = report["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(
        summary,
        ["key ops-console of app acme-ops-console becomes revoked"]
    );
    let acme = &report["tenants"][0];
    assert_eq!(acme["tenant"], "acme");
    let orders_get = acme["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["route"] == "orders" && c["method"] == "GET")
        .unwrap();
    assert_eq!(orders_get["kind"], "loss");
    assert_eq!(orders_get["class"], "read");
    assert_eq!(orders_get["path"], "/orders");
    assert_eq!(orders_get["environments"], json!([null, "prod", "staging"]));
    assert_eq!(orders_get["before"]["decision"], "allow");
    assert_eq!(orders_get["after"]["reason"], "api_key_revoked");
    assert_eq!(orders_get["after"]["status"], 401);
    let principal = &orders_get["principals"][0];
    assert_eq!(principal["key"], "ops-console");
    assert_eq!(principal["app"], "acme-ops-console");
    assert_eq!(principal["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn fail_on_picks_the_kind_that_exits_1() {
    let dir = scratch("fail-on");
    let loss = edited_demo(&dir, "loss.json", revoke_ops_console);
    let gain = edited_demo(&dir, "gain.json", |d| {
        item(d, "users", "pat")["memberships"][0]["roles"] = json!(["admin"]);
        item(d, "organizations", "umbrella")["status"] = json!("active");
    });
    for (new, fail_on, expected) in [
        (&loss, "loss", 1),
        (&loss, "gain", 0),
        (&loss, "any", 1),
        (&gain, "gain", 1),
        (&gain, "loss", 0),
        (&gain, "any", 1),
    ] {
        let out = policyctl(&[
            "diff",
            "policies/demo.json",
            new,
            "--now",
            NOW,
            "--fail-on",
            fail_on,
        ]);
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{new} --fail-on {fail_on}"
        );
    }
    let out = policyctl(&["diff", "policies/demo.json", &loss, "--now", NOW]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("policyctl: access changes: 0 gains, "),
        "{stderr}"
    );
}

#[test]
fn unusable_input_exits_2() {
    for (old, new) in [
        ("policies/demo.json", "policies/no-such-file.json"),
        ("policies/invalid/unresolved-app.json", "policies/demo.json"),
        ("Cargo.toml", "policies/demo.json"),
    ] {
        let out = policyctl(&["diff", old, new, "--now", NOW]);
        assert_eq!(out.status.code(), Some(2), "{old} {new}");
        assert!(out.stdout.is_empty());
        assert!(!out.stderr.is_empty());
    }
    let bad_flag = policyctl(&[
        "diff",
        "policies/demo.json",
        "policies/demo.json",
        "--fail-on",
        "some",
    ]);
    assert_eq!(bad_flag.status.code(), Some(2));
}

#[test]
fn compiled_snapshots_diff_as_their_documents() {
    let dir = scratch("compiled");
    let new = edited_demo(&dir, "new.json", revoke_ops_console);
    let (old_bin, new_bin) = (dir.join("old.tgsnap"), dir.join("new.tgsnap"));
    for (from, to) in [("policies/demo.json", &old_bin), (new.as_str(), &new_bin)] {
        let out = policyctl(&["compile", "--policy", from, "--out", to.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (_, from_json) = diff_json(&["policies/demo.json", &new]);
    let (code, compiled) = diff_json(&[old_bin.to_str().unwrap(), new_bin.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert_eq!(compiled["changed"], from_json["changed"]);
    assert_eq!(compiled["space"], from_json["space"]);
    // A compiled snapshot keeps no key ids: its keys are named by digest.
    let principal = &compiled["tenants"][0]["changes"][0]["principals"][0];
    assert_eq!(principal["key"], Value::Null);
    assert_eq!(principal["app"], "acme-ops-console");
}

#[test]
fn reasons_lists_denials_whose_reason_changed() {
    let dir = scratch("reasons");
    let new = edited_demo(&dir, "new.json", revoke_ops_console);
    let (_, without) = diff_json(&["policies/demo.json", &new]);
    let (_, with) = diff_json(&["policies/demo.json", &new, "--reasons"]);
    let kinds = |report: &Value| -> Vec<String> {
        let tenants = report["tenants"].as_array().unwrap();
        let changes = tenants
            .iter()
            .flat_map(|t| t["changes"].as_array().unwrap());
        changes
            .map(|c| c["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(kinds(&without).iter().all(|k| k == "loss"));
    assert!(kinds(&with).iter().any(|k| k == "reason"));
    assert_eq!(with["changed"], without["changed"]);
}
