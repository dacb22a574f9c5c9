//! The v1.1 amendments and the hardening of the core, each through the public
//! API with a small snapshot: every test here fails on the code before the fix
//! it guards (the closing note of issue #10 lists them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{json, Value};
use tenantgate_policy::{
    self as policy, binary, decide, LoadError, Mode, PathCase, Request, Sources, Timestamp,
};

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap()
}

fn org(id: &str, area: Option<&str>) -> Value {
    let mut org = json!({"id": id, "handle": format!("{id}-h"), "name": id, "type": "paid",
                         "status": "active", "environments": ["prod"]});
    if let Some(area) = area {
        org["area"] = json!(area);
    }
    org
}

/// Two organizations of area `globex` (`acme`, `beta`), one outside
/// (`initech`), a team in each, an admin role granted by an `acme` group.
fn world(users: Value, routes: Value) -> String {
    json!({
        "revision": "h1",
        "areas": [{"id": "globex", "name": "Globex"}],
        "organizations": [org("acme", Some("globex")), org("beta", Some("globex")), org("initech", None)],
        "teams": [
            {"id": "acme-dev", "organization": "acme", "name": "Dev"},
            {"id": "beta-dev", "organization": "beta", "name": "Dev"},
            {"id": "initech-dev", "organization": "initech", "name": "Dev"}
        ],
        "roles": [{"id": "admin", "permissions": ["*"]}, {"id": "reader", "permissions": ["x:read"]}],
        "groups": [{"id": "acme-admins", "organization": "acme", "roles": ["admin"]}],
        "users": users,
        "routes": routes
    })
    .to_string()
}

fn problems(text: &str) -> Vec<String> {
    match policy::load_snapshot(text) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems(),
    }
}

fn decide_for(
    text: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    sources: &Sources,
) -> Value {
    let snapshot = policy::load_snapshot(text).unwrap();
    let request = Request::from_parts(sources, method, "h", path, headers);
    let decision = decide(
        &snapshot,
        &request,
        &tenantgate_policy::Context::new(now(), None),
    );
    serde_json::to_value(decision.explain(Mode::Enforce)).unwrap()
}

#[test]
fn a_membership_cannot_name_a_group_of_another_organization() {
    let users = json!([{"id": "mallory", "memberships": [
        {"scope": "initech", "status": "active", "groups": ["acme-admins"]}]}]);
    let found = problems(&world(users, json!([])));
    assert_eq!(
        found,
        vec!["user `mallory`: field `memberships[0].groups`: group belongs to organization `acme`, outside the membership's scope `initech`: `acme-admins`"]
    );
}

#[test]
fn a_group_grants_its_roles_only_within_its_organization() {
    // An area membership may name a group of an organization of the area;
    // its roles count in that organization, not in the area's others.
    let users = json!([{"id": "alice", "memberships": [
        {"scope": "globex", "status": "active", "groups": ["acme-admins"]}]}]);
    let routes = json!([{"id": "any", "path_prefix": "/x", "tenant": "*", "permissions": {"read": "x:read"}}]);
    let text = world(users, routes);
    let sources = Sources::default();
    let ask = |tenant| {
        decide_for(
            &text,
            "GET",
            "/x",
            &[("x-user-id", "alice"), ("x-tenant-id", tenant)],
            &sources,
        )
    };
    assert_eq!(ask("acme")["decision"], "allow");
    assert_eq!(ask("acme")["roles"], json!(["admin"]));
    let beta = ask("beta");
    assert_eq!(beta["reason"], "permission_denied", "{beta}");
    assert_eq!(beta["roles"], json!([]));
}

#[test]
fn a_star_team_right_covers_the_resolved_tenant_s_teams_only() {
    let users = json!([{"id": "ivan", "memberships": [
        {"scope": "initech", "status": "active", "teams": {"*": "write"}}]}]);
    // A `"*"`-tenant route listing only `acme`'s team.
    let routes = json!([{"id": "shared", "path_prefix": "/shared", "tenant": "*", "teams": ["acme-dev"]},
                        {"id": "both", "path_prefix": "/both", "tenant": "*", "teams": ["acme-dev", "initech-dev"]}]);
    let text = world(users, routes);
    let headers = [("x-user-id", "ivan"), ("x-tenant-id", "initech")];
    let sources = Sources::default();
    let denied = decide_for(&text, "GET", "/shared/1", &headers, &sources);
    assert_eq!(denied["reason"], "team_access_denied", "{denied}");
    let allowed = decide_for(&text, "GET", "/both/1", &headers, &sources);
    assert_eq!(allowed["decision"], "allow", "{allowed}");
}

#[test]
fn revisions_are_header_safe_and_messages_stay_on_one_line() {
    for (revision, bad) in [
        ("r1\r\nx-tenant-id: acme", true),
        ("r 1", true),
        ("r\"1", true),
        (&"r".repeat(129), true),
        (&"r".repeat(128), false),
        ("2026-11-29T10:00:00Z", false),
    ] {
        let text = json!({"revision": revision}).to_string();
        let found = problems(&text);
        assert_eq!(!found.is_empty(), bad, "{revision:?}: {found:?}");
        for problem in found {
            assert!(!problem.contains(['\n', '\r']), "{problem:?}");
        }
    }
    let text = json!({"revision": "r1", "teams": [{"id": "a\nb", "organization": "x\u{1b}[2J", "name": "T"}]}).to_string();
    let err = policy::load_snapshot(&text).unwrap_err();
    let shown = err.to_string();
    assert_eq!(shown.lines().count(), 1 + err.problems().len(), "{shown}");
    assert!(shown.contains("`x\\u{1b}[2J`"), "{shown}");
}

#[test]
fn route_prefixes_are_canonical_and_case_folding_is_a_choice() {
    let routes = json!([{"id": "wide", "path_prefix": "/Orders", "tenant": "acme"},
                        {"id": "narrow", "path_prefix": "/Orders/Admin", "tenant": "acme", "permissions": {"read": "x:admin"}},
                        {"id": "encoded", "path_prefix": "/%61pi//v1/", "tenant": "acme"}]);
    let users = json!([{"id": "u", "memberships": [{"scope": "acme", "status": "active", "roles": ["reader"]}]}]);
    let text = world(users, routes);
    let headers = [("x-user-id", "u")];
    let exact = Sources::default();
    let folded = Sources {
        path_case: PathCase::Insensitive,
        ..Sources::default()
    };
    let route = |path: &str, sources: &Sources| {
        decide_for(&text, "GET", path, &headers, sources)["route"].clone()
    };
    assert_eq!(route("/orders/admin/1", &exact), Value::Null);
    assert_eq!(route("/Orders/admin/1", &exact), "wide");
    assert_eq!(route("/orders/ADMIN/1", &folded), "narrow");
    assert_eq!(route("/oRdErS/x", &folded), "wide");
    assert_eq!(route("/api/v1/x", &exact), "encoded");
    assert_eq!(route("/%61pi/%76%31", &exact), "encoded");
}

#[test]
fn a_huge_path_of_multibyte_characters_costs_no_more_than_a_short_one() {
    let text = world(
        json!([]),
        json!([{"id": "r", "path_prefix": "/ab", "tenant": "acme", "public": true}]),
    );
    let snapshot = policy::load_snapshot(&text).unwrap();
    let sources = Sources::default();
    // 100 KB of segments of two-byte characters: the longest prefix (3
    // bytes) ends inside a character. Walked from the whole path, every one
    // of the 20,000 segments would be hashed with all before it (minutes).
    let path = format!("/{}", "\u{e9}\u{e9}/".repeat(20_000));
    let headers: [(&str, &str); 0] = [];
    for _ in 0..50 {
        let request = Request::from_parts(&sources, "GET", "h", path.as_str(), &headers);
        let decision = decide(
            &snapshot,
            &request,
            &tenantgate_policy::Context::new(now(), None),
        );
        assert_eq!(decision.route, None);
    }
    let request = Request::from_parts(&sources, "GET", "h", "/ab/\u{e9}", &headers);
    assert_eq!(
        decide(
            &snapshot,
            &request,
            &tenantgate_policy::Context::new(now(), None)
        )
        .route,
        Some("r")
    );
}

#[test]
fn compilation_refuses_expansions_beyond_its_limits_before_doing_them() {
    // 3,000 organizations in one area, 3,000 users scoped to it: 9 million
    // (user, tenant) grants from a document of a few hundred kilobytes.
    let organizations: Vec<Value> = (0..3000)
        .map(|i| org(&format!("o{i}"), Some("globex")))
        .collect();
    let users: Vec<Value> = (0..3000)
        .map(|i| json!({"id": format!("u{i}"), "memberships": [{"scope": "globex", "status": "active"}]}))
        .collect();
    let text = json!({"revision": "big", "areas": [{"id": "globex", "name": "G"}],
                      "organizations": organizations, "users": users})
    .to_string();
    assert!(text.len() < 1_000_000);
    match policy::load_snapshot(&text) {
        Err(LoadError::Invalid(invalid)) => {
            let shown = invalid.problems[0].to_string();
            assert!(
                shown
                    .contains("9000000 (principal, tenant) grants, more than the limit of 8000000"),
                "{shown}"
            );
        }
        other => panic!("{:?}", other.map(|s| s.stats())),
    }
    // Wildcard permissions: 2,000 roles of 40 patterns over 2,000 route permissions.
    let roles: Vec<Value> = (0..2000)
        .map(|i| json!({"id": format!("r{i}"), "permissions": (0..40).map(|p| format!("p{p}:*")).collect::<Vec<_>>()}))
        .collect();
    let routes: Vec<Value> = (0..2000)
        .map(|i| json!({"id": format!("rt{i}"), "path_prefix": format!("/r{i}"), "tenant": "*", "permissions": {"read": format!("p{}:x{i}", i % 40)}}))
        .collect();
    let text = json!({"revision": "big", "roles": roles, "routes": routes}).to_string();
    let found = problems(&text);
    assert!(
        found[0].contains("permission patterns × distinct route permissions"),
        "{found:?}"
    );
}

#[test]
fn a_damaged_compiled_snapshot_is_refused_by_its_checksum() {
    let demo = policy::load_snapshot(include_str!("../../../policies/demo.json")).unwrap();
    let bytes = binary::encode(&demo);
    assert!(binary::decode(&bytes).is_ok());
    for at in [20, bytes.len() / 2, bytes.len() - 1] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x40;
        let err = binary::decode(&damaged).expect_err("a flipped bit is refused");
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        let wanted = binary::Wanted::default();
        assert!(binary::decode_for(&damaged, &wanted).is_err());
    }
}

#[test]
fn ambiguous_identities_are_refused_in_their_step() {
    let text = include_str!("../../../policies/demo.json");
    let sources = Sources::default();
    let ask =
        |path: &str, headers: &[(&str, &str)]| decide_for(text, "GET", path, headers, &sources);
    // Public routes ignore credentials, ambiguous ones too.
    assert_eq!(
        ask("/health", &[("x-user-id", "a"), ("x-user-id", "b")])["decision"],
        "allow"
    );
    let out = ask(
        "/orders/1",
        &[
            ("x-api-key", "demo-storefront-key"),
            ("x-api-key", "demo-ops-key"),
        ],
    );
    assert_eq!(
        (out["status"].clone(), out["reason"].clone()),
        (json!(401), json!("ambiguous_credentials"))
    );
    let out = ask(
        "/orders/1?apikey=demo-ops-key",
        &[("x-api-key", "demo-storefront-key")],
    );
    assert_eq!(out["reason"], "ambiguous_credentials");
    let out = ask(
        "/profile",
        &[
            ("x-user-id", "alice"),
            ("x-tenant-id", "acme"),
            ("X-Tenant-Id", "acme"),
        ],
    );
    assert_eq!(
        (out["status"].clone(), out["reason"].clone()),
        (json!(400), json!("ambiguous_tenant"))
    );
}
