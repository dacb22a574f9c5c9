//! Load-time validation (spec §1).
//!
//! `policies/invalid/` holds one small snapshot per load-time rule, each
//! `policies/minimal.json` with one change. Every file there must fail to load,
//! and the table below says which object, field and value its message must name.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tenantgate_policy::{
    self as policy, InvalidSnapshot, LoadError, Problem, Reason, Request, Sources, Timestamp,
};

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn invalid_dir() -> PathBuf {
    repo().join("policies/invalid")
}

/// Every `*.json` in `policies/invalid/`, sorted by name.
fn invalid_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(invalid_dir())
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

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn load_file(path: &Path) -> Result<policy::Snapshot, LoadError> {
    let text = std::fs::read_to_string(path).unwrap();
    policy::load_snapshot(&text)
}

fn problems_of(name: &str) -> Vec<Problem> {
    match load_file(&invalid_dir().join(name)) {
        Ok(_) => panic!("{name}: loaded, but it must be rejected"),
        Err(LoadError::Invalid(InvalidSnapshot { problems })) => problems,
        Err(LoadError::Syntax(e)) => panic!("{name}: expected rule violations, got `{e}`"),
    }
}

/// One expected problem: file, kind, object id, field, the bad value. The value must appear in `Problem::value` and in the
/// message; the message must read `` <kind> `<id>`: field `<field>`: ... ``.
type Expect = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// One row per single-rule file (each is minimal.json with one change).
#[rustfmt::skip]
const CASES: &[Expect] = &[
    ("unknown-top-level-field.json", "snapshot", "(top level)", "organisations", "organisations"),
    ("unknown-nested-field.json", "user", "ann", "memberships[0].role", "role"),
    ("unknown-field-in-route-permissions.json", "route", "orders", "permissions.delete", "delete"),
    ("bad-id-characters.json", "team", "shop qa", "id", "shop qa"),
    ("empty-id.json", "role", "", "id", ""),
    ("duplicate-id.json", "role", "reader", "id", "reader"),
    ("unresolved-organization-parent.json", "organization", "shop-eu", "parent", "shopp"),
    ("unresolved-area.json", "organization", "shop", "area", "exampel"),
    ("unresolved-team-organization.json", "team", "shop-qa", "organization", "shoop"),
    ("unresolved-group-organization.json", "group", "shop-readers", "organization", "shoop"),
    ("unresolved-team-in-rights.json", "user", "ann", "memberships[0].teams", "shop-devs"),
    ("unresolved-role.json", "user", "ann", "memberships[0].roles", "auditor"),
    ("unresolved-group.json", "user", "ann", "memberships[0].groups", "shop-reader"),
    ("unresolved-app.json", "api_key", "shop-web-key", "app", "shop-website"),
    ("unresolved-product.json", "app", "shop-web", "products", "shop-apis"),
    ("unresolved-route.json", "product", "shop-api", "routes", "invoices"),
    ("unresolved-route-tenant.json", "route", "orders", "tenant", "shop-co"),
    ("unresolved-route-team.json", "route", "orders", "teams", "shop-devs"),
    ("unresolved-membership-scope.json", "user", "ann", "memberships[0].scope", "shop-co"),
    ("grandchild-organization.json", "organization", "shop-eu-north", "parent", "shop-eu"),
    ("sub-org-area-differs-from-parent.json", "organization", "shop-eu", "area", "elsewhere"),
    ("duplicate-handle.json", "organization", "shop-eu", "handle", "shop-co"),
    ("handle-equals-other-org-id.json", "organization", "shop-eu", "handle", "shop"),
    ("bad-handle-characters.json", "organization", "shop-eu", "handle", "shop eu"),
    ("org-id-equals-area-id.json", "organization", "example", "id", "example"),
    ("bad-environment-name.json", "organization", "shop", "environments", "pre prod"),
    ("sha256-not-hex.json", "api_key", "shop-web-key", "sha256", "minimal-shop-web-key"),
    ("sha256-uppercase.json", "api_key", "shop-web-key", "sha256", "71268DDA6F3FBDC95A0B"),
    ("sha256-wrong-length.json", "api_key", "shop-web-key", "sha256", "71268dda6f3fbdc95a0b78333e33fa8922db3eda"),
    ("duplicate-sha256.json", "api_key", "shop-web-key-2", "sha256", "71268dda6f3fbdc95a0b"),
    ("team-outside-membership-scope.json", "user", "eve", "memberships[0].teams", "shop-dev"),
    ("app-team-outside-app-org.json", "app", "eu-web", "teams", "shop-dev"),
    ("key-environment-not-in-org.json", "api_key", "shop-web-key", "environments", "dev"),
    ("product-environment-not-in-org.json", "product", "shop-api", "environments", "qa"),
    ("bad-expires-at.json", "organization", "shop", "expires_at", "2027-02-30"),
    ("bad-key-expires-at.json", "api_key", "shop-web-key", "expires_at", "next tuesday"),
    ("bad-enum-value.json", "organization", "shop", "status", "paused"),
    ("bad-team-right.json", "user", "ann", "memberships[0].teams.shop-dev", "admin"),
    ("missing-required-field.json", "organization", "shop-eu", "handle", "handle"),
    ("missing-revision.json", "snapshot", "(top level)", "revision", ""),
    ("empty-revision.json", "snapshot", "(top level)", "revision", ""),
    ("wrong-type.json", "api_key", "shop-web-key", "read_only", "yes"),
    ("revision-not-a-string.json", "snapshot", "(top level)", "revision", "7"),
    ("collection-not-an-array.json", "snapshot", "(top level)", "teams", "shop-dev"),
    ("route-path-prefix-without-slash.json", "route", "orders", "path_prefix", "orders"),
    ("route-path-prefix-with-query.json", "route", "orders", "path_prefix", "/orders?v=2"),
    ("route-bad-host.json", "route", "orders", "hosts", "https://shop.example/"),
    ("route-bad-method.json", "route", "orders", "methods", "GET POST"),
    ("route-teams-empty.json", "route", "orders", "teams", "[]"),
    ("route-teams-star-mixed.json", "route", "orders", "teams", "*,shop-dev"),
    ("route-team-of-other-tenant.json", "route", "orders", "teams", "shop-eu-ops"),
    ("route-permission-empty.json", "route", "orders", "permissions.write", ""),
    ("role-permission-star-in-middle.json", "role", "writer", "permissions", "orders:*:write"),
    ("role-permission-empty.json", "role", "writer", "permissions", ""),
    ("app-developer-empty.json", "app", "shop-web", "developer", ""),
    ("revision-control-character.json", "snapshot", "(top level)", "revision", "minimal-1"),
    ("token-issuer-control-character.json", "area", "example", "token_issuers", "https://idp.example"),
    ("group-outside-membership-scope.json", "user", "eve", "memberships[0].groups", "shop-readers"),
    ("route-path-prefix-parameter.json", "route", "orders", "path_prefix", "/orders;v=2"),
];

/// Files that are not a JSON object at all: the error has no object to name.
const SYNTAX_CASES: &[(&str, &str)] = &[(
    "top-level-not-an-object.json",
    "the top level must be a JSON object",
)];

/// Files with several problems: every one must be reported.
#[rustfmt::skip]
const MULTI_CASES: &[(&str, &[Expect])] = &[
    ("several-problems.json", &[
        ("", "organization", "shop-eu", "parent", "shopp"),
        ("", "api_key", "shop-web-key", "app", "shop-website"),
        ("", "product", "shop-api", "routes", "invoices"),
        ("", "user", "ann", "memberships[0].roles", "auditor"),
    ]),
    ("several-parse-problems.json", &[
        ("", "organization", "shop", "status", "paused"),
        ("", "user", "ann", "memberships[0].role", "role"),
        ("", "route", "orders", "path", "path"),
    ]),
    ("shape-and-reference-problems.json", &[
        ("", "api_key", "shop-web-key", "read_only", "yes"),
        ("", "product", "shop-api", "routes", "invoices"),
    ]),
];

/// Whether `problem` names the expected kind, id, field and value.
fn matches(problem: &Problem, expect: &Expect) -> bool {
    let &(_, kind, id, field, value) = expect;
    let message = problem.to_string();
    problem.kind == kind
        && problem.id == id
        && problem.field == field
        && problem.value.contains(value)
        && message == format!("{kind} `{id}`: field `{}`: {}", problem.field, problem.what)
        && problem.what.contains(value)
}

#[test]
fn every_invalid_file_fails_to_load() {
    let mut loaded = Vec::new();
    for path in invalid_files() {
        if load_file(&path).is_ok() {
            loaded.push(file_name(&path));
        }
    }
    assert!(
        loaded.is_empty(),
        "these invalid snapshots loaded: {loaded:?}"
    );
}

#[test]
fn every_invalid_file_has_a_table_row_and_a_readme_row() {
    let readme = std::fs::read_to_string(invalid_dir().join("README.md")).unwrap();
    let known: BTreeSet<&str> = CASES
        .iter()
        .map(|c| c.0)
        .chain(SYNTAX_CASES.iter().map(|c| c.0))
        .chain(MULTI_CASES.iter().map(|c| c.0))
        .collect();
    let mut missing = Vec::new();
    for path in invalid_files() {
        let name = file_name(&path);
        if !known.contains(name.as_str()) {
            missing.push(format!("{name}: no row in tests/validation.rs"));
        }
        if !readme.contains(&format!("[`{name}`]({name})")) {
            missing.push(format!("{name}: no row in policies/invalid/README.md"));
        }
    }
    for name in known {
        if !invalid_dir().join(name).is_file() {
            missing.push(format!("{name}: in the table but not in policies/invalid/"));
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn each_message_names_the_object_the_field_and_the_value() {
    let mut failures = Vec::new();
    for expect in CASES {
        let file = expect.0;
        let problems = problems_of(file);
        // Each file is minimal.json with one change: exactly one problem.
        if problems.len() != 1 {
            failures.push(format!(
                "{file}: expected exactly one problem, got {problems:#?}"
            ));
            continue;
        }
        if !matches(&problems[0], expect) {
            failures.push(format!(
                "{file}: expected {expect:?}, got {:?} / `{}`",
                problems[0], problems[0]
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_non_object_snapshot_is_a_syntax_error() {
    for &(file, what) in SYNTAX_CASES {
        match load_file(&invalid_dir().join(file)) {
            Err(LoadError::Syntax(e)) => assert!(e.to_string().contains(what), "{file}: {e}"),
            other => panic!("{file}: expected a syntax error, got {other:?}"),
        }
    }
    for garbage in [
        "",
        "   ",
        "{",
        "null",
        "[]",
        "7",
        "\"revision\"",
        "{\"revision\": \"r\"} x",
    ] {
        assert!(
            matches!(policy::load_snapshot(garbage), Err(LoadError::Syntax(_))),
            "{garbage:?}"
        );
    }
}

#[test]
fn a_file_with_several_problems_reports_all_of_them() {
    for &(file, expected) in MULTI_CASES {
        let problems = problems_of(file);
        assert_eq!(problems.len(), expected.len(), "{file}: {problems:#?}");
        for expect in expected {
            assert!(
                problems.iter().any(|p| matches(p, expect)),
                "{file}: no problem matches {expect:?} in {problems:#?}"
            );
        }
        // The Display text lists every problem, one per line.
        let error = load_file(&invalid_dir().join(file)).unwrap_err();
        let display = error.to_string();
        assert!(
            display.starts_with(&format!("invalid snapshot ({} problems)", expected.len())),
            "{display}"
        );
        assert_eq!(error.problems().len(), expected.len());
        for problem in &problems {
            assert!(display.contains(&format!("\n  - {problem}")), "{display}");
        }
    }
}

#[test]
fn minimal_and_demo_snapshots_are_valid() {
    for name in ["policies/minimal.json", "policies/demo.json"] {
        let snapshot = load_file(&repo().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(snapshot.stats().organizations > 0);
    }
}

#[test]
fn minimal_snapshot_is_useful() {
    let snapshot = load_file(&repo().join("policies/minimal.json")).unwrap();
    let now = Timestamp::parse_rfc3339("2027-01-01T00:00:00Z").unwrap();
    let sources = Sources::default();
    let run = |method: &str, path: &str, headers: &[(&str, &str)], env: Option<&str>| {
        let request = Request::from_parts(&sources, method, "localhost", path, headers);
        let decision = policy::decide(
            &snapshot,
            &request,
            &tenantgate_policy::Context::new(now, env),
        );
        (decision.reason, decision.tenant_id().map(str::to_string))
    };
    let key = [("x-api-key", "minimal-shop-web-key")];
    let ann = [("x-user-id", "ann")];
    let eve = [("x-user-id", "eve")];
    assert_eq!(run("GET", "/health", &[], None).0, None);
    assert_eq!(
        run("GET", "/orders/1", &key, Some("prod")),
        (None, Some("shop".into()))
    );
    assert_eq!(
        run("GET", "/orders/1", &key, Some("staging")).0,
        Some(Reason::EnvironmentNotAllowed)
    );
    assert_eq!(
        run("GET", "/orders/1", &ann, None),
        (None, Some("shop".into()))
    );
    assert_eq!(
        run("POST", "/orders", &ann, None).0,
        Some(Reason::TeamAccessDenied)
    );
    assert_eq!(run("POST", "/eu/orders", &eve, None).0, None);
    // A membership of the parent covers the sub-organization, but ann has no EU team.
    assert_eq!(
        run("GET", "/eu/orders", &ann, None).0,
        Some(Reason::TeamAccessDenied)
    );
    assert_eq!(
        run("GET", "/orders", &eve, None).0,
        Some(Reason::NotAMember)
    );
    assert_eq!(
        run("GET", "/orders", &[], None).0,
        Some(Reason::MissingCredentials)
    );
}
