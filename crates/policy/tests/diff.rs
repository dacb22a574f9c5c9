//! `diff` is exact: on the demo and on generated worlds, after random edits,
//! the grouped diff equals the exhaustive one (every principal × probe ×
//! environment decided on both snapshots).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{json, Value};
use tenantgate_policy::diff::{diff, diff_exhaustive, ChangeKind};
use tenantgate_policy::generate::{generate, Rng};
use tenantgate_policy::{load_snapshot, Snapshot, Timestamp};

const DEMO: &str = include_str!("../../../policies/demo.json");

fn load(document: &Value) -> Option<Snapshot> {
    load_snapshot(&document.to_string()).ok()
}

const NOW: &str = "2026-06-01T00:00:00Z";

fn now() -> Timestamp {
    Timestamp::parse_rfc3339(NOW).unwrap()
}

fn items<'a>(document: &'a mut Value, collection: &str) -> &'a mut Vec<Value> {
    document[collection].as_array_mut().unwrap()
}

/// One random edit of the kinds a policy change makes; `false` when the
/// document has nothing to edit that way.
fn edit(document: &mut Value, rng: &mut Rng) -> bool {
    let kind = rng.below(12);
    let collection = match kind {
        0 | 1 => "users",
        2..=4 => "api_keys",
        5 | 6 => "routes",
        7 | 8 => "organizations",
        9 | 10 => "apps",
        _ => "products",
    };
    let list = items(document, collection);
    if list.is_empty() {
        return false;
    }
    let at = rng.below(list.len());
    let item = &mut list[at];
    match kind {
        0 => {
            let memberships = item["memberships"].as_array_mut().unwrap();
            if memberships.is_empty() {
                return false;
            }
            memberships.remove(rng.below(memberships.len()));
        }
        1 => {
            let Some(membership) = item["memberships"].as_array_mut().unwrap().first_mut() else {
                return false;
            };
            let invited = membership["status"] == "invited";
            membership["status"] = json!(if invited { "active" } else { "invited" });
        }
        2 => item["status"] = json!(["revoked", "pending", "active"][rng.below(3)]),
        // Expired before `now`, or exactly at it (expired: now ≥ expires_at).
        3 => item["expires_at"] = json!(["2026-01-01T00:00:00Z", NOW][rng.below(2)]),
        4 => item["read_only"] = json!(rng.chance(50)),
        5 => {
            let permission = ["orders:read", "apis:read", "billing:write", "*"][rng.below(4)];
            let class = ["read", "write"][rng.below(2)];
            item["permissions"] = json!({class: permission});
        }
        6 => item["public"] = json!(rng.chance(30)),
        7 => {
            item["status"] = json!(if rng.chance(50) {
                "suspended"
            } else {
                "active"
            })
        }
        8 => item["expires_at"] = json!(["2026-03-01T00:00:00Z", NOW][rng.below(2)]),
        9 => {
            item["status"] = json!(if rng.chance(50) {
                "revoked"
            } else {
                "approved"
            })
        }
        10 => {
            let products = item["products"].as_array_mut().unwrap();
            if products.is_empty() {
                return false;
            }
            products.remove(rng.below(products.len()));
        }
        _ => item["environments"] = json!([]),
    }
    true
}

/// The edited document, if it still loads.
fn edited(document: &Value, rng: &mut Rng, edits: usize) -> Option<(Value, Snapshot)> {
    let mut changed = document.clone();
    for _ in 0..edits {
        edit(&mut changed, rng);
    }
    let snapshot = load(&changed)?;
    Some((changed, snapshot))
}

/// Diffs `old` against random edits of it, `rounds` times; returns how many
/// rounds found changes (so that a test can tell it exercised something).
fn grouped_equals_exhaustive(document: &Value, seed: u64, rounds: usize) -> usize {
    let old = load(document).expect("the original loads");
    let mut rng = Rng(seed);
    let mut with_changes = 0;
    for round in 0..rounds {
        let edits = 1 + rng.below(3);
        let Some((_, new)) = edited(document, &mut rng, edits) else {
            continue;
        };
        let (fast, reference) = (diff(&old, &new, now()), diff_exhaustive(&old, &new, now()));
        assert_eq!(fast, reference, "seed {seed}, round {round}");
        // And backwards: a change and its undoing are the same points.
        assert_eq!(diff(&new, &old, now()), diff_exhaustive(&new, &old, now()));
        with_changes += usize::from(!fast.changes.is_empty());
    }
    with_changes
}

#[test]
fn no_change_is_no_diff() {
    let demo: Value = serde_json::from_str(DEMO).unwrap();
    let snapshot = load(&demo).unwrap();
    let found = diff(&snapshot, &snapshot, now());
    assert!(found.changes.is_empty());
    assert!(diff_exhaustive(&snapshot, &snapshot, now())
        .changes
        .is_empty());
    assert!(found.space.principals.len() > 15 && found.space.probes.len() > 20);
}

#[test]
fn grouped_diff_is_exact_on_the_demo() {
    let demo: Value = serde_json::from_str(DEMO).unwrap();
    let changed = grouped_equals_exhaustive(&demo, 7, 60);
    assert!(changed > 30, "only {changed} rounds changed anything");
}

#[test]
fn grouped_diff_is_exact_on_generated_worlds() {
    let mut changed = 0;
    for seed in 0..8 {
        let world = generate(2 + seed as usize % 4, 30, seed);
        changed += grouped_equals_exhaustive(&world, seed, 8);
    }
    assert!(changed > 30, "only {changed} rounds changed anything");
}

#[test]
fn revoking_a_key_is_a_loss_for_that_key_only() {
    let demo: Value = serde_json::from_str(DEMO).unwrap();
    let old = load(&demo).unwrap();
    let mut revoked = demo.clone();
    let key = revoked["api_keys"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|k| k["id"] == "ops-console")
        .unwrap();
    key["status"] = json!("revoked");
    let new = load(&revoked).unwrap();
    let found = diff(&old, &new, now());
    assert!(found.count(ChangeKind::Loss) > 0);
    assert_eq!(found.count(ChangeKind::Gain), 0);
    for change in &found.changes {
        assert_eq!(change.principals.len(), 1);
        assert_eq!(
            change.after.reason.map(|r| r.code()),
            Some("api_key_revoked")
        );
    }
}

/// At a larger scale than the tests above can afford in a debug build:
/// `cargo test --release -p tenantgate-policy --test diff -- --ignored`.
#[test]
#[ignore = "seconds in a release build, minutes in a debug one"]
fn grouped_diff_is_exact_on_a_larger_world() {
    let world = generate(60, 1500, 3);
    assert!(grouped_equals_exhaustive(&world, 3, 4) > 0);
}

/// A snapshot that ships the diff's own probe key (its raw key is public)
/// cannot make every key principal decide as that key.
#[test]
fn a_snapshot_holding_the_probe_key_hides_nothing() {
    let demo: Value = serde_json::from_str(DEMO).unwrap();
    let old = load(&demo).unwrap();
    let mut changed = demo.clone();
    let keys = changed["api_keys"].as_array_mut().unwrap();
    for key in keys.iter_mut().filter(|k| k["id"] == "ops-console") {
        key["status"] = json!("revoked");
    }
    keys.push(
        json!({"id": "probe", "app": "acme-storefront", "status": "active",
        "sha256": tenantgate_policy::hash_key("tenantgate-diff-probe-key")}),
    );
    let new = load(&changed).unwrap();
    let found = diff(&old, &new, now());
    assert_eq!(found, diff_exhaustive(&old, &new, now()));
    let revoked: Vec<_> = found
        .changes
        .iter()
        .filter(|c| c.after.reason.map(|r| r.code()) == Some("api_key_revoked"))
        .collect();
    assert!(!revoked.is_empty());
    assert!(
        found.count(ChangeKind::Gain) > 0,
        "the shipped probe key gains"
    );
}
