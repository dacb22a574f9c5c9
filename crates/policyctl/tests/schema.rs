//! `policyctl schema` and `docs/policy.schema.json`: the committed schema is
//! what the command prints, and an independent JSON Schema validator (the
//! `jsonschema` crate, draft 2020-12) accepts every snapshot the loader
//! accepts and rejects the shape errors of `policies/invalid/`.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
mod support;
use support::{repo, POLICYCTL};

const COMMITTED: &str = "docs/policy.schema.json";

/// Files of `policies/invalid/` the schema accepts: their problem lies
/// between objects (a reference, a duplicate, a hierarchy or scope rule),
/// which a schema of each value on its own cannot see. Every
/// other invalid file must be rejected by the schema; a new file goes in this
/// list only if it is of that kind.
const SCHEMA_CANNOT_SEE: &[&str] = &[
    "app-team-outside-app-org.json",
    "duplicate-handle.json",
    "duplicate-id.json",
    "duplicate-sha256.json",
    "grandchild-organization.json",
    "group-outside-membership-scope.json",
    "handle-equals-other-org-id.json",
    "key-environment-not-in-org.json",
    "org-id-equals-area-id.json",
    "product-environment-not-in-org.json",
    "route-team-of-other-tenant.json",
    "several-problems.json",
    "sub-org-area-differs-from-parent.json",
    "team-outside-membership-scope.json",
    "unresolved-app.json",
    "unresolved-area.json",
    "unresolved-group-organization.json",
    "unresolved-group.json",
    "unresolved-membership-scope.json",
    "unresolved-organization-parent.json",
    "unresolved-product.json",
    "unresolved-role.json",
    "unresolved-route-team.json",
    "unresolved-route-tenant.json",
    "unresolved-route.json",
    "unresolved-team-in-rights.json",
    "unresolved-team-organization.json",
];

fn json_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&read_json(&repo().join(COMMITTED))).unwrap()
}

/// The validator's messages for `instance`, one per line, with where each is.
fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_committed_schema_is_what_policyctl_schema_prints() {
    let out = Command::new(POLICYCTL).arg("schema").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(repo().join(COMMITTED)).unwrap();
    assert!(
        printed == committed,
        "{COMMITTED} differs from `policyctl schema`: run\n  \
         cargo run -q --bin policyctl -- schema --out {COMMITTED}"
    );
    // Deterministic, and --out writes the same bytes.
    let again = Command::new(POLICYCTL).arg("schema").output().unwrap();
    assert_eq!(again.stdout, printed.as_bytes());
    let dir = std::env::temp_dir().join(format!("policyctl-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("policy.schema.json");
    let out = Command::new(POLICYCTL)
        .args(["schema", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), printed);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let schema = read_json(&repo().join(COMMITTED));
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::draft202012::meta::validate(&schema).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"], serde_json::json!(["revision"]));
}

#[test]
fn every_example_policy_is_valid_and_names_the_schema() {
    let validator = validator();
    let policies: Vec<PathBuf> = json_files("policies")
        .into_iter()
        .filter(|p| !name(p).ends_with(".tests.json")) // decision tables, not snapshots
        .collect();
    assert!(policies.len() >= 2, "{policies:?}");
    for path in &policies {
        let policy = read_json(path);
        assert_eq!(policy["$schema"], "../docs/policy.schema.json", "{path:?}");
        let errors = schema_errors(&validator, &policy);
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        tenantgate_policy::load_snapshot(&policy.to_string()).unwrap();
    }
}

#[test]
fn generated_and_imported_snapshots_are_valid() {
    let validator = validator();
    let out = Command::new(POLICYCTL)
        .args(["generate", "--orgs", "12", "--keys", "20", "--seed", "7"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let generated: Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = schema_errors(&validator, &generated);
    assert!(errors.is_empty(), "generated: {errors:#?}");

    let export = read_json(&repo().join("testdata/otoroshi/export.json"));
    let options = policyctl::import_otoroshi::Options {
        environment: "prod".into(),
        revision: None,
    };
    let imported = policyctl::import_otoroshi::convert(&export, &options)
        .unwrap()
        .snapshot;
    let errors = schema_errors(&validator, &imported);
    assert!(errors.is_empty(), "imported: {errors:#?}");
}

#[test]
fn shape_errors_of_the_invalid_corpus_are_rejected_by_the_schema() {
    let validator = validator();
    let files = json_files("policies/invalid");
    assert!(files.len() >= 30, "{files:?}");
    let mut wrong = Vec::new();
    for path in &files {
        let name = name(path);
        // Every one of them is an invalid snapshot (crates/policy/tests/validation.rs).
        let text = std::fs::read_to_string(path).unwrap();
        assert!(tenantgate_policy::load_snapshot(&text).is_err(), "{name}");
        let errors = schema_errors(&validator, &serde_json::from_str(&text).unwrap());
        match (
            SCHEMA_CANNOT_SEE.contains(&name.as_str()),
            errors.is_empty(),
        ) {
            (true, false) => wrong.push(format!(
                "{name}: listed as invisible to the schema, but rejected: {errors:?}"
            )),
            (false, true) => wrong.push(format!("{name}: accepted by the schema")),
            _ => {}
        }
    }
    for listed in SCHEMA_CANNOT_SEE {
        assert!(
            files.iter().any(|p| name(p) == *listed),
            "{listed} is listed but not in policies/invalid/"
        );
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn the_validator_says_where_and_what() {
    let validator = validator();
    let check = |file: &str| schema_errors(&validator, &read_json(&repo().join(file)));
    assert_eq!(
        check("policies/invalid/bad-enum-value.json"),
        [r#"/organizations/0/status: "paused" is not one of "active" or "suspended""#]
    );
    assert_eq!(
        check("policies/invalid/unknown-nested-field.json"),
        ["/users/0/memberships/0: Additional properties are not allowed ('role' was unexpected)"]
    );
    assert_eq!(
        check("policies/invalid/sha256-uppercase.json"),
        [
            r#"/api_keys/0/sha256: "71268DDA6F3FBDC95A0B78333E33FA8922DB3EDA0CB8EF4A9D68F745B0CE5CD9" does not match "^[0-9a-f]{64}$""#
        ]
    );
}

/// A snapshot naming the schema loads like one without it, and the field
/// is still checked by both: a string.
#[test]
fn the_schema_field_is_accepted_by_the_loader_and_the_schema() {
    let validator = validator();
    let mut policy = read_json(&repo().join("policies/minimal.json"));
    tenantgate_policy::load_snapshot(&policy.to_string()).unwrap();
    policy["$schema"] = Value::from(7);
    assert!(tenantgate_policy::load_snapshot(&policy.to_string()).is_err());
    assert_eq!(
        schema_errors(&validator, &policy),
        [r#"/$schema: 7 is not of types "null", "string""#]
    );
}

/// Values at the edge of each format: the schema accepts exactly what the
/// loader accepts (checked on minimal.json with one value set).
#[test]
fn the_schema_and_the_loader_agree_at_the_edges_of_each_format() {
    use serde_json::json;
    let validator = validator();
    let minimal = read_json(&repo().join("policies/minimal.json"));
    let cases = [
        ("/$schema", json!(null), true),
        (
            "/$schema",
            json!("https://example.invalid/policy.schema.json"),
            true,
        ),
        ("/revision", json!("r".repeat(128)), true),
        ("/revision", json!("r".repeat(129)), false),
        (
            "/organizations/0/expires_at",
            json!("2027-01-22 00:00:00z"),
            true,
        ),
        (
            "/organizations/0/expires_at",
            json!("2027-01-22T00:00:00.5+01:00"),
            true,
        ),
        (
            "/organizations/0/expires_at",
            json!("2027-01-22T00:00:00"),
            false,
        ),
        ("/organizations/0/expires_at", json!(null), true),
        (
            "/organizations/0/metadata",
            json!({"any": [1, null, "x"]}),
            true,
        ),
        (
            "/organizations/0/environments/1",
            json!("pre-prod.eu:2"),
            true,
        ),
        (
            "/areas/0/token_issuers",
            json!(["https://idp.example/a?b=c"]),
            true,
        ),
        (
            "/areas/0/token_issuers",
            json!(["https://idp.example/ a"]),
            false,
        ),
        ("/apps/0/otoroshi_client_ids", json!(["\u{feff}"]), true),
        ("/apps/0/otoroshi_client_ids", json!([" \t"]), false),
        ("/apps/0/developer", json!("d"), true),
        ("/apps/0/teams", json!({"*": "write"}), true),
        ("/apps/0/teams", json!({"*": "admin"}), false),
        ("/roles/0/permissions", json!(["*", "orders*", "a:b"]), true),
        ("/roles/0/permissions", json!(["**"]), false),
        ("/routes/1/path_prefix", json!("/orders/%20x/"), true),
        ("/routes/1/path_prefix", json!("/orders/\u{7f}"), false),
        ("/routes/1/path_prefix", json!("/orders\\x"), false),
        ("/routes/1/methods", json!(["get", "M-SEARCH"]), true),
        ("/routes/1/hosts", json!(["shop.example:8443"]), true),
        ("/routes/1/teams", json!(["*"]), true),
        ("/routes/1/teams", json!(null), true),
        ("/routes/1/permissions", json!({"read": "*"}), true),
        ("/routes/0/public", json!("true"), false),
        ("/users/0/memberships/0/status", json!("invited"), true),
    ];
    let mut disagree = Vec::new();
    for (pointer, value, valid) in cases {
        let mut policy = minimal.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let slot = policy.pointer_mut(parent).unwrap();
        match slot {
            Value::Object(object) => {
                object.insert(key.to_string(), value.clone());
            }
            Value::Array(items) => items[key.parse::<usize>().unwrap()] = value.clone(),
            _ => panic!("{pointer}"),
        }
        let loads = tenantgate_policy::load_snapshot(&policy.to_string()).is_ok();
        let errors = schema_errors(&validator, &policy);
        if loads != valid || errors.is_empty() != valid {
            disagree.push(format!(
                "{pointer} = {value}: loads {loads}, schema {errors:?}, expected {valid}"
            ));
        }
    }
    assert!(disagree.is_empty(), "{disagree:#?}");
}
