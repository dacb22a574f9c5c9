//! `policyctl import otoroshi`: a realistic Otoroshi export
//! (`testdata/otoroshi/export.json`: tenants, teams, routes, service
//! groups, apikeys with `_loc`, admins with rights, and the legacy and unrelated
//! entities a full export also holds) converted into a valid snapshot that
//! decides as the export means.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use policyctl::import_otoroshi::{convert, Options};
use serde_json::{json, Value};
use std::process::Command;
use tenantgate_policy::{self as policy, hash_key, Request, Sources, Timestamp};
use tenantgate_policy::{Context, GatewayCaller};
mod support;
use support::POLICYCTL;

const EXPORT: &str = "testdata/otoroshi/export.json";

fn export() -> Value {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(EXPORT);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn imported() -> Value {
    let options = Options {
        environment: "prod".into(),
        revision: None,
    };
    convert(&export(), &options).unwrap().snapshot
}

fn find<'a>(snapshot: &'a Value, collection: &str, id: &str) -> &'a Value {
    snapshot[collection]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["id"] == id)
        .unwrap_or_else(|| panic!("no {collection} `{id}`"))
}

#[test]
fn the_command_prints_a_valid_snapshot_and_warns_about_what_it_left_out() {
    let out = Command::new(POLICYCTL)
        .args(["import", "otoroshi", EXPORT])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let snapshot = policy::load_snapshot(&text).expect("the printed snapshot loads");
    assert_eq!(snapshot.revision(), "otoroshi-2026-11-20T09:30:00Z");
    assert_eq!(snapshot.stats().organizations, 3);
    assert_eq!(snapshot.stats().api_keys, 6);
    let stderr = String::from_utf8(out.stderr).unwrap();
    for warning in [
        "route `route_acme-legacy`: disabled, skipped",
        "route `route_umbrella`: its `_loc.tenant` is not an exported tenant, skipped",
        "apikey `umbrella-key`: its `_loc.tenant` is not an exported tenant, skipped",
        "authorized entity `route_route_does-not-exist` is no imported route or group",
        "path cut at `:account`",
        "wildcard host",
        "exact path matching becomes prefix matching",
        "admin `nobody@elsewhere.example`: no right on an exported tenant, skipped",
        "1 legacy service descriptors not imported",
    ] {
        assert!(stderr.contains(warning), "no `{warning}` in:\n{stderr}");
    }
    let again = Command::new(POLICYCTL)
        .args([
            "import",
            "otoroshi",
            EXPORT,
            "--environment",
            "staging",
            "--revision",
            "r9",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap();
    let snapshot: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(snapshot["revision"], "r9");
    assert_eq!(
        find(&snapshot, "organizations", "acme")["environments"],
        json!(["staging"])
    );
}

#[test]
fn usage_errors_exit_2_and_help_explains_the_mapping() {
    for args in [
        vec!["import"],
        vec!["import", "kong", EXPORT],
        vec!["import", "otoroshi"],
        vec!["import", "otoroshi", "no-such-export.json"],
        vec!["import", "otoroshi", EXPORT, "--colour", "red"],
        vec!["import", "otoroshi", "Cargo.toml"],
    ] {
        let out = Command::new(POLICYCTL)
            .args(&args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
    let help = Command::new(POLICYCTL)
        .args(["import", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    assert!(text.contains("clientSecret, never the clientId"));
    let usage = Command::new(POLICYCTL).arg("--help").output().unwrap();
    assert!(String::from_utf8(usage.stdout)
        .unwrap()
        .contains("policyctl import otoroshi EXPORT.json"));
}

#[test]
fn entities_map_as_documented() {
    let s = imported();
    let acme = find(&s, "organizations", "acme");
    assert_eq!(acme["name"], "Acme Corp");
    assert_eq!(acme["handle"], "acme");
    assert_eq!(find(&s, "teams", "acme-billing")["organization"], "acme");

    let orders = find(&s, "routes", "route_acme-orders");
    assert_eq!(orders["hosts"], json!(["api.acme.example"]));
    assert_eq!(orders["path_prefix"], "/orders");
    assert_eq!(orders["tenant"], "acme");
    assert_eq!(orders["teams"], json!(["acme-platform"]));
    let billing = find(&s, "routes", "route_acme-billing");
    assert_eq!(billing["path_prefix"], "/billing");
    assert_eq!(billing["methods"], json!(["GET", "POST"]));
    assert_eq!(
        find(&s, "routes", "route_acme-billing-2")["hosts"],
        json!(["billing.acme.example"])
    );
    let catalog = find(&s, "routes", "route_acme-catalog");
    assert!(catalog.get("hosts").is_none());
    assert_eq!(catalog["teams"], json!(["*"]));

    // Products are named as Otoroshi names authorized entities.
    assert_eq!(
        find(&s, "products", "group_acme-public-apis")["routes"],
        json!(["route_acme-orders", "route_acme-catalog"])
    );
    assert_eq!(
        find(&s, "products", "route_route_initech-reports")["organization"],
        "initech"
    );

    let storefront = find(&s, "apps", "acme-storefront");
    assert_eq!(storefront["organization"], "acme");
    assert_eq!(
        storefront["otoroshi_client_ids"],
        json!(["acme-storefront"])
    );
    assert_eq!(storefront["teams"], json!({"acme-platform": "write"}));
    assert_eq!(
        storefront["products"],
        json!(["group_acme-public-apis", "route_route_acme-orders"])
    );
    let reporting = find(&s, "apps", "acme-reporting");
    assert_eq!(
        reporting["teams"],
        json!({"acme-platform": "read", "acme-billing": "read"})
    );
    // New-style `authorizations`, and `_loc.teams: ["*"]`.
    let trial = find(&s, "apps", "initech-trial");
    assert_eq!(trial["products"], json!(["route_route_initech-reports"]));
    assert_eq!(trial["teams"], json!({"*": "write"}));
    // A client id outside our id alphabet: the id is sanitized, the mapping is not.
    let partner = find(&s, "apps", "acme-partner-eu");
    assert_eq!(partner["otoroshi_client_ids"], json!(["acme-partner@eu"]));
    assert_eq!(partner["teams"], json!({"acme-platform": "write"}));

    // Keys: the secret's hash, never the client id's.
    let key = find(&s, "api_keys", "acme-storefront");
    assert_eq!(key["sha256"], hash_key("s3cr3t-storefront-9f2b"));
    assert_ne!(key["sha256"], hash_key("acme-storefront"));
    assert_eq!(key["status"], "active");
    assert_eq!(find(&s, "api_keys", "acme-old-mobile")["status"], "revoked");
    let reporting_key = find(&s, "api_keys", "acme-reporting");
    assert_eq!(reporting_key["read_only"], true);
    assert_eq!(reporting_key["expires_at"], "2027-01-01T00:00:00Z");
    assert_eq!(
        find(&s, "api_keys", "initech-trial")["expires_at"],
        "2026-06-29T22:00:00Z"
    );

    // Admins: rights → memberships, wildcards expanded.
    let admin = find(&s, "users", "admin-otoroshi.io");
    assert_eq!(admin["otoroshi_emails"], json!(["admin@otoroshi.io"]));
    let scopes: Vec<&str> = admin["memberships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["acme", "default", "initech"]);
    assert_eq!(admin["memberships"][0]["teams"], json!({"*": "write"}));
    let olga = find(&s, "users", "olga-acme.example");
    assert_eq!(
        olga["memberships"],
        json!([{"scope": "acme", "status": "active", "roles": ["otoroshi:tenant-write"],
                "teams": {"acme-platform": "write", "acme-billing": "read"}}])
    );
    let bruno = find(&s, "users", "bruno-acme.example");
    assert_eq!(
        bruno["memberships"][0],
        json!({"scope": "acme", "status": "active", "roles": ["otoroshi:tenant-read"],
               "teams": {"acme-platform": "read", "acme-billing": "read"}})
    );
    assert_eq!(
        bruno["memberships"][1]["teams"],
        json!({"*": "write"}),
        "no suffix means read-write"
    );
    let carla = find(&s, "users", "carla-initech.example");
    assert_eq!(
        carla["memberships"][0]["roles"],
        json!(["otoroshi:tenant-read"])
    );
}

/// Decisions over the imported snapshot, with the request's own API key and
/// with Otoroshi's validated identities.
#[test]
fn the_imported_snapshot_decides_as_the_export_means() {
    let text = imported().to_string();
    let snapshot = policy::load_snapshot(&text).unwrap();
    let sources = Sources::default();
    let now = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
    let decide = |method: &str, host: &str, path: &str, key: Option<&str>| {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        let request = Request::from_parts(&sources, method, host, path, &headers);
        let decision = policy::decide(&snapshot, &request, &Context::new(now, Some("prod")));
        (
            decision.reason.map(|r| r.code().to_string()),
            decision.principal.map(|p| p.to_string()),
        )
    };
    let storefront = Some("s3cr3t-storefront-9f2b");
    assert_eq!(
        decide("GET", "api.acme.example", "/orders/1", storefront),
        (None, Some("app:acme-storefront".into()))
    );
    assert_eq!(
        decide("GET", "shop.acme.example", "/catalog/9", storefront).0,
        None
    );
    // The client id is not a key.
    assert_eq!(
        decide(
            "GET",
            "api.acme.example",
            "/orders/1",
            Some("acme-storefront")
        )
        .0,
        Some("invalid_api_key".into())
    );
    assert_eq!(
        decide(
            "GET",
            "api.acme.example",
            "/orders/1",
            Some("s3cr3t-old-mobile")
        )
        .0,
        Some("api_key_revoked".into())
    );
    let reporting = Some("s3cr3t-reporting-77aa");
    assert_eq!(
        decide("GET", "api.acme.example", "/billing/42/invoices", reporting).0,
        None
    );
    assert_eq!(
        decide(
            "POST",
            "api.acme.example",
            "/billing/42/invoices",
            reporting
        )
        .0,
        Some("read_only_key".into())
    );
    // Not subscribed to the billing route, and no right on its team.
    assert_eq!(
        decide("GET", "billing.acme.example", "/", storefront).0,
        Some("product_not_subscribed".into())
    );
    // Expired at the end of June.
    assert_eq!(
        decide(
            "GET",
            "reports.initech.example",
            "/v1/reports",
            Some("s3cr3t-initech")
        )
        .0,
        Some("api_key_expired".into())
    );

    // Otoroshi's own identities, through the snapshot's extension.
    let request = Request::from_parts(
        &sources,
        "GET",
        "api.acme.example",
        "/orders/1",
        &[] as &[(&str, &str)],
    );
    let partner = GatewayCaller::apikey(&snapshot, "acme-partner@eu", false, None);
    let context = Context::new(now, Some("prod"));
    let decision = policy::decide(&snapshot, &request, &context.with_gateway(Some(&partner)));
    assert_eq!(decision.reason, None);
    assert_eq!(decision.principal.as_deref(), Some("app:acme-partner-eu"));
    let olga = GatewayCaller::user(
        &snapshot,
        "Olga@Acme.example",
        "user:otoroshi/Olga@Acme.example",
    );
    let decision = policy::decide(&snapshot, &request, &context.with_gateway(Some(&olga)));
    assert_eq!(decision.reason, None);
    assert_eq!(
        decision.principal.as_deref(),
        Some("user:olga-acme.example")
    );
    let carla = GatewayCaller::user(
        &snapshot,
        "carla@initech.example",
        "user:otoroshi/carla@initech.example",
    );
    let decision = policy::decide(&snapshot, &request, &context.with_gateway(Some(&carla)));
    assert_eq!(decision.reason.map(|r| r.code()), Some("not_a_member"));
}

// ---------------------------------------------------------------------------
// The access rules table: Otoroshi's admin rights against an entity's `_loc`,
// and what the imported snapshot decides for the same admin calling the
// imported route (GET = read, POST = write). The rules, and the Otoroshi
// sources they come from, are listed at the top of
// `crates/policyctl/src/import_otoroshi/`.
// ---------------------------------------------------------------------------

/// Tenants and teams of the generated exports: Otoroshi's `default`, the
/// `test-teams` tenant of Otoroshi's `TeamsSpec` (`Version150Spec.scala`) with
/// its teams, and two more tenants.
const TABLE_TENANTS: &[&str] = &["default", "test-teams", "t1", "t2"];
const TABLE_TEAMS: &[(&str, &str)] = &[
    ("default", "default"),
    ("team0", "test-teams"),
    ("team1", "test-teams"),
    ("team2", "test-teams"),
    ("a", "t1"),
    ("b", "t1"),
    ("c", "t2"),
];

/// An export holding the tenants and teams above, routes `e0`, `e1`, …
/// (host `api.example`, paths `/e0`, `/e1`, …) at `locs` (`None`: no `_loc`
/// at all) and one admin `u` with `rights`.
fn export_with(rights: &Value, locs: &[Option<&Value>]) -> Value {
    let routes: Vec<Value> = locs
        .iter()
        .enumerate()
        .map(|(i, loc)| {
            let mut route = json!({
                "id": format!("e{i}"), "enabled": true,
                "frontend": {"domains": [format!("api.example/e{i}")]},
            });
            if let Some(loc) = loc {
                route["_loc"] = (*loc).clone();
            }
            route
        })
        .collect();
    json!({
        "tenants": TABLE_TENANTS.iter().map(|t| json!({"id": t, "name": t})).collect::<Vec<_>>(),
        "teams": TABLE_TEAMS
            .iter()
            .map(|(id, tenant)| json!({"id": id, "tenant": tenant, "name": id}))
            .collect::<Vec<_>>(),
        "routes": routes,
        "simpleAdmins": [{"username": "u", "rights": rights}],
    })
}

/// The export converted and loaded.
fn load(export: &Value) -> policy::Snapshot {
    let options = Options {
        environment: "prod".into(),
        revision: Some("table".into()),
    };
    let snapshot = convert(export, &options).unwrap().snapshot.to_string();
    policy::load_snapshot(&snapshot).unwrap()
}

/// What `snapshot` decides for admin `u` calling `path` with GET and with
/// POST, `x-tenant-id: selector` when given: (read, write).
fn decides(snapshot: &policy::Snapshot, path: &str, selector: Option<&str>) -> (bool, bool) {
    let sources = Sources::default();
    let now = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
    let mut headers = vec![("x-user-id", "u")];
    if let Some(selector) = selector {
        headers.push(("x-tenant-id", selector));
    }
    let allowed = |method: &str| {
        let request = Request::from_parts(&sources, method, "api.example", path, &headers);
        policy::decide(snapshot, &request, &Context::new(now, Some("prod")))
            .reason
            .is_none()
    };
    (allowed("GET"), allowed("POST"))
}

/// One route at `loc`, imported and decided.
fn imported_decides(rights: &Value, loc: Option<&Value>, selector: Option<&str>) -> (bool, bool) {
    decides(&load(&export_with(rights, &[loc])), "/e0", selector)
}

/// Otoroshi's rules restated (a model for the table, not Otoroshi's code):
/// can admin `rights` (an export's `rights` value) read and write an entity
/// at `loc`, working in tenant `current` (the `Otoroshi-Tenant` header)?
mod otoroshi_model {
    use serde_json::Value;

    #[derive(Clone, Copy, PartialEq, PartialOrd)]
    enum Level {
        None,
        Read,
        Write,
    }

    struct Right {
        tenant: (String, Level),
        teams: Vec<(String, Level)>,
    }

    fn id(raw: &str) -> String {
        raw.to_lowercase().trim_matches(|c| c <= ' ').to_string()
    }

    /// `x:r`, `x:rw`, `x`: `TenantAccess`/`TeamAccess` (Java's `split` drops
    /// trailing empty parts; no part at all fails the right).
    fn access(raw: &str) -> Option<(String, Level)> {
        let raw = id(raw);
        if !raw.contains(':') {
            return Some((raw, Level::Write));
        }
        let mut parts: Vec<&str> = raw.split(':').collect();
        while parts.last() == Some(&"") {
            parts.pop();
        }
        let (head, last) = (parts.first()?, parts.last()?);
        let read = *last != "not" && last.contains('r');
        let level = match (read, last.contains('w')) {
            (false, _) => Level::None,
            (true, false) => Level::Read,
            (true, true) => Level::Write,
        };
        Some((id(head), level))
    }

    /// `matches`: `*`, or an entity id `*`, or the pattern as a regular
    /// expression with `.` escaped and `*` as `.*` (the table's ids and
    /// patterns use no other regular-expression syntax).
    fn matches(pattern: &str, id: &str) -> bool {
        if pattern == "*" || id == "*" {
            return true;
        }
        fn glob(p: &[u8], s: &[u8]) -> bool {
            match p.split_first() {
                None => s.is_empty(),
                Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
                Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
            }
        }
        glob(pattern.as_bytes(), id.as_bytes())
    }

    /// `EntityLocation.readFromKey`: no `_loc`, no `tenant`, no `teams`
    /// default to `default`; `teams: []` is no team.
    fn location(loc: Option<&Value>) -> (String, Vec<String>) {
        let Some(loc) = loc else {
            return ("default".into(), vec!["default".into()]);
        };
        let tenant = loc["tenant"].as_str().map_or("default".into(), id);
        let teams = match loc["teams"].as_array() {
            Some(list) if list.iter().all(Value::is_string) => {
                list.iter().filter_map(Value::as_str).map(id).collect()
            }
            _ => vec!["default".into()],
        };
        (tenant, teams)
    }

    /// (read, write) as `ApiActionContextCapable.canUserRead`/`canUserWrite`
    /// with `UserRights` decide it.
    pub fn decides(rights: &Value, loc: Option<&Value>, current: &str) -> (bool, bool) {
        // `UserRights.readFromObject`: no list of rights is a super admin.
        let Some(list) = rights.as_array() else {
            return (true, true);
        };
        let rights: Vec<Right> = list
            .iter()
            .filter_map(|r| {
                let tenant = access(r["tenant"].as_str()?)?;
                let teams = r["teams"]
                    .as_array()?
                    .iter()
                    .map(|t| access(t.as_str()?))
                    .collect::<Option<Vec<_>>>()?;
                Some(Right { tenant, teams })
            })
            .collect();
        let admin_of = |tenant_pattern: &dyn Fn(&str) -> bool| {
            rights.iter().any(|r| {
                tenant_pattern(&r.tenant.0)
                    && r.tenant.1 == Level::Write
                    && r.teams.iter().any(|(t, l)| t == "*" && *l == Level::Write)
            })
        };
        let super_admin = admin_of(&|t| t == "*");
        let tenant_admin = |tenant: &str| admin_of(&|t| matches(t, tenant));
        let tenant_level = |tenant: &str, level: Level| {
            tenant_admin(tenant)
                || rights
                    .iter()
                    .any(|r| matches(&r.tenant.0, tenant) && r.tenant.1 >= level)
        };
        let teams_level = |current: &str, teams: &[String], level: Level| {
            tenant_admin(current)
                || (tenant_level(current, Level::Read)
                    && teams.iter().any(|ut| {
                        rights
                            .iter()
                            .any(|r| r.teams.iter().any(|(t, l)| matches(t, ut) && *l >= level))
                    }))
        };
        let (tenant, teams) = location(loc);
        let current = id(current);
        let here = current == tenant || tenant == "*";
        let read = super_admin
            || (here
                && tenant_level(&tenant, Level::Read)
                && teams_level(&current, &teams, Level::Read));
        let write = super_admin
            || (here
                && tenant_level(&tenant, Level::Write)
                && teams_level(&current, &teams, Level::Write));
        (read, write)
    }
}

/// One row: an admin's rights, an entity's `_loc` (`None`: absent), the
/// tenant the admin works in for an entity at `*` (sent as `x-tenant-id`),
/// what Otoroshi grants and what the import grants: (read, write).
struct Row {
    what: &'static str,
    rights: Value,
    loc: Option<Value>,
    selector: Option<&'static str>,
    otoroshi: (bool, bool),
    imported: (bool, bool),
}

const RW: (bool, bool) = (true, true);
const R: (bool, bool) = (true, false);
const NONE: (bool, bool) = (false, false);

fn row(
    what: &'static str,
    rights: Value,
    loc: Value,
    selector: Option<&'static str>,
    otoroshi: (bool, bool),
) -> Row {
    Row {
        what,
        rights,
        loc: Some(loc),
        selector,
        otoroshi,
        imported: otoroshi,
    }
}

fn table() -> Vec<Row> {
    let admin = json!([{"tenant": "*", "teams": ["*"]}]);
    let tenant_admin = json!([{"tenant": "test-teams", "teams": ["*"]}]);
    let team1 = json!([{"tenant": "test-teams", "teams": ["team1"]}]);
    let team2 = json!([{"tenant": "test-teams", "teams": ["team2"]}]);
    let team1and2 = json!([{"tenant": "test-teams", "teams": ["team1", "team2"]}]);
    let at = |team: &str| json!({"tenant": "test-teams", "teams": [team]});
    let admin_api = json!({"tenant": "default", "teams": ["default"]});
    let mut rows = vec![
        // TeamsSpec, "check services number with different users": services in
        // team0, team1 and team2 of `test-teams`, and the admin API's own
        // service in `default`.
        row(
            "TeamsSpec: super admin, team0",
            admin.clone(),
            at("team0"),
            None,
            RW,
        ),
        row(
            "TeamsSpec: super admin, team1",
            admin.clone(),
            at("team1"),
            None,
            RW,
        ),
        row(
            "TeamsSpec: super admin, team2",
            admin.clone(),
            at("team2"),
            None,
            RW,
        ),
        row(
            "TeamsSpec: super admin, admin API",
            admin.clone(),
            admin_api.clone(),
            None,
            RW,
        ),
        row(
            "TeamsSpec: tenant admin, team0",
            tenant_admin.clone(),
            at("team0"),
            None,
            RW,
        ),
        row(
            "TeamsSpec: tenant admin, team1",
            tenant_admin.clone(),
            at("team1"),
            None,
            RW,
        ),
        row(
            "TeamsSpec: tenant admin, team2",
            tenant_admin.clone(),
            at("team2"),
            None,
            RW,
        ),
        row(
            "TeamsSpec: tenant admin, admin API",
            tenant_admin,
            admin_api.clone(),
            None,
            NONE,
        ),
        row(
            "TeamsSpec: team1 user, team0",
            team1.clone(),
            at("team0"),
            None,
            NONE,
        ),
        row(
            "TeamsSpec: team1 user, team1",
            team1.clone(),
            at("team1"),
            None,
            RW,
        ),
        row(
            "TeamsSpec: team1 user, team2",
            team1.clone(),
            at("team2"),
            None,
            NONE,
        ),
        row(
            "TeamsSpec: team1 user, admin API",
            team1,
            admin_api.clone(),
            None,
            NONE,
        ),
        row(
            "TeamsSpec: team2 user, team0",
            team2.clone(),
            at("team0"),
            None,
            NONE,
        ),
        row(
            "TeamsSpec: team2 user, team1",
            team2.clone(),
            at("team1"),
            None,
            NONE,
        ),
        row(
            "TeamsSpec: team2 user, team2",
            team2.clone(),
            at("team2"),
            None,
            RW,
        ),
        row(
            "TeamsSpec: team2 user, admin API",
            team2,
            admin_api,
            None,
            NONE,
        ),
        row(
            "TeamsSpec: team1and2 user, team0",
            team1and2.clone(),
            at("team0"),
            None,
            NONE,
        ),
        row(
            "TeamsSpec: team1and2 user, team1",
            team1and2.clone(),
            at("team1"),
            None,
            RW,
        ),
        row(
            "TeamsSpec: team1and2 user, team2",
            team1and2,
            at("team2"),
            None,
            RW,
        ),
        // Finding 1: the right on an entity is the lesser of the tenant right
        // and the team right.
        row(
            "finding 1: tenant t1:r, team a:rw",
            json!([{"tenant": "t1:r", "teams": ["a:rw"]}]),
            json!({"tenant": "t1", "teams": ["a"]}),
            None,
            R,
        ),
        row(
            "finding 1: tenant t1:rw, team a:r",
            json!([{"tenant": "t1:rw", "teams": ["a:r"]}]),
            json!({"tenant": "t1", "teams": ["a"]}),
            None,
            R,
        ),
        row(
            "finding 1: tenant t1:r, team *:rw (no tenant admin)",
            json!([{"tenant": "t1:r", "teams": ["*:rw"]}]),
            json!({"tenant": "t1", "teams": ["b"]}),
            None,
            R,
        ),
        row(
            "finding 1: tenant t1:r, entity in every team",
            json!([{"tenant": "t1:r", "teams": ["a:rw"]}]),
            json!({"tenant": "t1", "teams": ["*"]}),
            None,
            R,
        ),
        row(
            "finding 1: two rights on one tenant, each kept to its own tenant right",
            json!([{"tenant": "t1:r", "teams": ["a:rw"]}, {"tenant": "t1:rw", "teams": ["b:rw"]}]),
            json!({"tenant": "t1", "teams": ["b"]}),
            None,
            RW,
        ),
        // Finding 2: an entity in no team is for super and tenant admins only.
        row(
            "finding 2: no team, a team member",
            json!([{"tenant": "t1:rw", "teams": ["a:rw", "b:rw"]}]),
            json!({"tenant": "t1", "teams": []}),
            None,
            NONE,
        ),
        row(
            "finding 2: no team, team *:r is no tenant admin",
            json!([{"tenant": "t1:rw", "teams": ["*:r"]}]),
            json!({"tenant": "t1", "teams": []}),
            None,
            NONE,
        ),
        row(
            "finding 2: no team, tenant t1:r with team *:rw is no tenant admin",
            json!([{"tenant": "t1:r", "teams": ["*:rw"]}]),
            json!({"tenant": "t1", "teams": []}),
            None,
            NONE,
        ),
        row(
            "finding 2: no team, tenant admin",
            json!([{"tenant": "t1:rw", "teams": ["*:rw"]}]),
            json!({"tenant": "t1", "teams": []}),
            None,
            RW,
        ),
        row(
            "finding 2: no team, super admin",
            json!([{"tenant": "*:rw", "teams": ["*:rw"]}]),
            json!({"tenant": "t1", "teams": []}),
            None,
            RW,
        ),
        row(
            "finding 2: no team, another tenant's admin",
            json!([{"tenant": "t2:rw", "teams": ["*:rw"]}]),
            json!({"tenant": "t1", "teams": []}),
            None,
            NONE,
        ),
        // Finding 3: entities at tenant `*`, in the tenant the admin works in.
        row(
            "finding 3: tenant *, team member working in t1",
            json!([{"tenant": "t1:rw", "teams": ["a:rw"]}]),
            json!({"tenant": "*", "teams": ["a"]}),
            Some("t1"),
            RW,
        ),
        row(
            "finding 3: tenant *, read-only tenant right",
            json!([{"tenant": "t1:r", "teams": ["a:rw"]}]),
            json!({"tenant": "*", "teams": ["a"]}),
            Some("t1"),
            R,
        ),
        row(
            "finding 3: tenant *, every team",
            json!([{"tenant": "t1:rw", "teams": ["b:r"]}]),
            json!({"tenant": "*", "teams": ["*"]}),
            Some("t1"),
            R,
        ),
        row(
            "finding 3: tenant *, another tenant's team",
            json!([{"tenant": "t2:rw", "teams": ["c:rw"]}]),
            json!({"tenant": "*", "teams": ["a"]}),
            Some("t2"),
            NONE,
        ),
        row(
            "finding 3: tenant *, working in a tenant without right",
            json!([{"tenant": "t1:rw", "teams": ["a:rw"]}]),
            json!({"tenant": "*", "teams": ["a"]}),
            Some("t2"),
            NONE,
        ),
        row(
            "finding 3: tenant *, no team, tenant admin",
            json!([{"tenant": "t1:rw", "teams": ["*:rw"]}]),
            json!({"tenant": "*", "teams": []}),
            Some("t1"),
            RW,
        ),
        row(
            "finding 3: tenant *, no team, team member",
            json!([{"tenant": "t1:rw", "teams": ["a:rw"]}]),
            json!({"tenant": "*", "teams": []}),
            Some("t1"),
            NONE,
        ),
        // Finding 4: ids are compared case-insensitively.
        row(
            "finding 4: upper-case _loc",
            json!([{"tenant": "t1:rw", "teams": ["a:rw"]}]),
            json!({"tenant": "T1", "teams": ["A"]}),
            None,
            RW,
        ),
        row(
            "finding 4: upper-case rights",
            json!([{"tenant": "T1:RW", "teams": [" A:R "]}]),
            json!({"tenant": "t1", "teams": ["a"]}),
            None,
            R,
        ),
        row(
            "finding 4: upper-case _loc at tenant *",
            json!([{"tenant": "t1:rw", "teams": ["a:rw"]}]),
            json!({"tenant": "*", "teams": ["A"]}),
            Some("t1"),
            RW,
        ),
        // Parsing and matching.
        row(
            "no suffix is read-write",
            json!([{"tenant": "t1", "teams": ["a"]}]),
            json!({"tenant": "t1", "teams": ["a"]}),
            None,
            RW,
        ),
        row(
            "`w` alone is nothing",
            json!([{"tenant": "t1:w", "teams": ["a:rw"]}]),
            json!({"tenant": "t1", "teams": ["a"]}),
            None,
            NONE,
        ),
        row(
            "`not` is nothing",
            json!([{"tenant": "t1:rw", "teams": ["a:not"]}]),
            json!({"tenant": "t1", "teams": ["a"]}),
            None,
            NONE,
        ),
        row(
            "`wr` is read-write",
            json!([{"tenant": "t1:wr", "teams": ["a:wr"]}]),
            json!({"tenant": "t1", "teams": ["a"]}),
            None,
            RW,
        ),
        row(
            "tenant wildcard pattern",
            json!([{"tenant": "t*:rw", "teams": ["a:rw"]}]),
            json!({"tenant": "t1", "teams": ["a"]}),
            None,
            RW,
        ),
        row(
            "tenant wildcard pattern matching another tenant",
            json!([{"tenant": "test-*:rw", "teams": ["a:rw"]}]),
            json!({"tenant": "t1", "teams": ["a"]}),
            None,
            NONE,
        ),
        row(
            "team wildcard pattern",
            json!([{"tenant": "test-teams:rw", "teams": ["team*:r"]}]),
            json!({"tenant": "test-teams", "teams": ["team2"]}),
            None,
            R,
        ),
        row(
            "entity in several teams, right on one of them",
            json!([{"tenant": "t1:rw", "teams": ["b:rw"]}]),
            json!({"tenant": "t1", "teams": ["a", "b"]}),
            None,
            RW,
        ),
        row(
            "a right on the tenant only",
            json!([{"tenant": "t1:rw", "teams": []}]),
            json!({"tenant": "t1", "teams": ["a"]}),
            None,
            NONE,
        ),
        row(
            "a right without teams is ignored",
            json!([{"tenant": "t1:rw"}]),
            json!({"tenant": "t1", "teams": ["a"]}),
            None,
            NONE,
        ),
        row(
            "a right whose teams are not strings is ignored",
            json!([{"tenant": "t1:rw", "teams": ["a:rw", 7]}]),
            json!({"tenant": "t1", "teams": ["a"]}),
            None,
            NONE,
        ),
        row(
            "another tenant's right",
            json!([{"tenant": "t2:rw", "teams": ["*:rw"]}]),
            json!({"tenant": "t1", "teams": ["a"]}),
            None,
            NONE,
        ),
        row(
            "`_loc.teams` absent is the default team",
            json!([{"tenant": "default:rw", "teams": ["default:rw"]}]),
            json!({"tenant": "default"}),
            None,
            RW,
        ),
    ];
    rows.push(Row {
        what: "no `_loc` is tenant default, team default",
        rights: json!([{"tenant": "default:r", "teams": ["default:rw"]}]),
        loc: None,
        selector: None,
        otoroshi: R,
        imported: R,
    });
    rows.push(Row {
        what: "no `_loc`, another tenant's admin",
        rights: json!([{"tenant": "t1:rw", "teams": ["*:rw"]}]),
        loc: None,
        selector: None,
        otoroshi: NONE,
        imported: NONE,
    });
    // Where the import grants less than Otoroshi (each warned about).
    let less = |what, rights, loc: Option<Value>, selector, otoroshi, imported| Row {
        what,
        rights,
        loc,
        selector,
        otoroshi,
        imported,
    };
    rows.push(less(
        "less: Otoroshi applies one right's team rights to another right's tenant",
        json!([{"tenant": "t1:r", "teams": ["a:r"]}, {"tenant": "t2:rw", "teams": ["*:rw"]}]),
        Some(json!({"tenant": "t1", "teams": ["b"]})),
        None,
        R,
        NONE,
    ));
    rows.push(less(
        "less: Otoroshi writes an entity at * with a write right on any tenant",
        json!([{"tenant": "t1:r", "teams": ["a:rw"]}, {"tenant": "t2:rw", "teams": ["c:r"]}]),
        Some(json!({"tenant": "*", "teams": ["a"]})),
        Some("t1"),
        RW,
        R,
    ));
    rows.push(less(
        "less: a team of another tenant in `_loc.teams`",
        json!([{"tenant": "t1:rw", "teams": ["c:rw"]}]),
        Some(json!({"tenant": "t1", "teams": ["c"]})),
        None,
        RW,
        NONE,
    ));
    rows.push(less(
        "less: a team right on no exported team, entity in every team",
        json!([{"tenant": "t1:rw", "teams": ["ghost:rw"]}]),
        Some(json!({"tenant": "t1", "teams": ["*"]})),
        None,
        RW,
        NONE,
    ));
    rows.push(less(
        "less: `rights` that is no list makes a super admin in Otoroshi",
        json!({"tenant": "t1:r", "teams": ["a:r"]}),
        Some(json!({"tenant": "t1", "teams": ["a"]})),
        None,
        RW,
        NONE,
    ));
    rows
}

#[test]
fn the_import_grants_what_otoroshi_grants_row_by_row() {
    let mut failures = Vec::new();
    for row in table() {
        let current = row.selector.unwrap_or_else(|| {
            row.loc
                .as_ref()
                .and_then(|l| l["tenant"].as_str())
                .unwrap_or("default")
        });
        let model = otoroshi_model::decides(&row.rights, row.loc.as_ref(), current);
        assert_eq!(
            model, row.otoroshi,
            "the table disagrees with the rules: {}",
            row.what
        );
        assert!(
            row.imported.0 <= row.otoroshi.0 && row.imported.1 <= row.otoroshi.1,
            "a row granting more than Otoroshi: {}",
            row.what
        );
        let got = imported_decides(&row.rights, row.loc.as_ref(), row.selector);
        if got != row.imported {
            failures.push(format!(
                "{}: (read, write) expected {:?}, imported {:?}",
                row.what, row.imported, got
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Every combination of some rights and some `_loc`s: the import never grants
/// more than Otoroshi, whatever tenant the admin works in.
#[test]
fn the_import_never_grants_more_than_otoroshi() {
    let tenants = [
        "t1",
        "t1:r",
        "t1:w",
        "T1:RW",
        "t*:rw",
        "*",
        "*:r",
        "t2:rw",
        "test-teams",
    ];
    let team_sets = [
        json!([]),
        json!(["a"]),
        json!(["a:r"]),
        json!(["*:r"]),
        json!(["*"]),
        json!(["**:rw"]),
        json!(["b:rw", "a:r"]),
        json!(["c"]),
        json!(["ghost"]),
        json!(["A:RW"]),
        json!(["team*"]),
    ];
    let mut rights: Vec<Value> = Vec::new();
    for tenant in tenants {
        for teams in &team_sets {
            rights.push(json!([{"tenant": tenant, "teams": teams}]));
        }
    }
    // Pairs of rights, where rule 13 (team rights of other rights) matters.
    for (first, second) in [
        ("t1:r", "t2:rw"),
        ("t1:rw", "t1:r"),
        ("t1:r", "*:r"),
        ("t2", "t1:r"),
    ] {
        for (a, b) in [(1, 4), (2, 6), (6, 3), (4, 7), (9, 1)] {
            rights.push(json!([
                {"tenant": first, "teams": team_sets[a]},
                {"tenant": second, "teams": team_sets[b]}
            ]));
        }
    }
    rights.push(json!({"tenant": "t1", "teams": ["a"]}));
    rights.push(json!("*"));
    let mut locs: Vec<Option<Value>> = vec![None];
    for tenant in ["t1", "t2", "*", "T1", "test-teams", "default"] {
        for teams in [
            json!([]),
            json!(["a"]),
            json!(["b"]),
            json!(["a", "b"]),
            json!(["*"]),
            json!(["c"]),
            json!(["A"]),
            json!(["ghost"]),
            json!(["team1"]),
        ] {
            locs.push(Some(json!({"tenant": tenant, "teams": teams})));
        }
        locs.push(Some(json!({"tenant": tenant})));
    }
    let loc_refs: Vec<Option<&Value>> = locs.iter().map(Option::as_ref).collect();
    let mut checked = 0;
    let mut granted = 0;
    let mut over = Vec::new();
    for rights in &rights {
        let snapshot = load(&export_with(rights, &loc_refs));
        for (i, loc) in loc_refs.iter().enumerate() {
            let path = format!("/e{i}");
            let at_any = loc.and_then(|l| l["tenant"].as_str()) == Some("*");
            // The admin may work in any tenant (Otoroshi's header, our selector).
            let mut selectors = vec![None];
            if at_any {
                selectors.extend(TABLE_TENANTS.iter().map(|t| Some(*t)));
            }
            for selector in selectors {
                let ours = decides(&snapshot, &path, selector);
                let theirs = TABLE_TENANTS
                    .iter()
                    .map(|current| {
                        let current = match (selector, at_any) {
                            (Some(s), _) => s,
                            (None, true) => current,
                            (None, false) => {
                                loc.and_then(|l| l["tenant"].as_str()).unwrap_or("default")
                            }
                        };
                        otoroshi_model::decides(rights, *loc, current)
                    })
                    .fold((false, false), |a, b| (a.0 || b.0, a.1 || b.1));
                checked += 1;
                granted += usize::from(ours.0) + usize::from(ours.1);
                if (ours.0 && !theirs.0) || (ours.1 && !theirs.1) {
                    over.push(format!(
                        "rights {rights}, _loc {loc:?}, selector {selector:?}: imported {ours:?}, Otoroshi {theirs:?}"
                    ));
                }
            }
        }
    }
    assert!(checked > 10_000 && granted > 1_000, "{checked} {granted}");
    assert!(
        over.is_empty(),
        "{} over-grants:\n{}",
        over.len(),
        over.join("\n")
    );
}

/// Ids that differ only by case are one id to Otoroshi: one organization, one
/// team; one team id in two tenants gives nobody a right.
#[test]
fn ids_that_differ_by_case_are_one_id() {
    let export = json!({
        "tenants": [{"id": "Acme", "name": "Acme"}, {"id": "acme", "name": "acme again"},
                    {"id": "other"}],
        "teams": [{"id": "Ops", "tenant": "ACME"}, {"id": "ops", "tenant": "acme"},
                  {"id": "Shared", "tenant": "acme"}, {"id": "shared", "tenant": "other"}],
        "routes": [
            {"id": "ops", "frontend": {"domains": ["api.example/ops"]},
             "_loc": {"tenant": "ACME", "teams": ["OPS"]}},
            {"id": "shared", "frontend": {"domains": ["api.example/shared"]},
             "_loc": {"tenant": "acme", "teams": ["shared"]}},
        ],
        "simpleAdmins": [{"username": "u", "rights": [
            {"tenant": "acme:rw", "teams": ["ops:rw", "shared:rw"]}]}],
    });
    let options = Options {
        environment: "prod".into(),
        revision: None,
    };
    let imported = convert(&export, &options).unwrap();
    let s = &imported.snapshot;
    assert_eq!(s["organizations"].as_array().unwrap().len(), 2);
    assert_eq!(find(s, "organizations", "acme")["name"], "Acme");
    assert_eq!(
        s["teams"],
        json!([{"id": "ops", "organization": "acme", "name": "Ops"}])
    );
    assert_eq!(find(s, "routes", "ops")["teams"], json!(["ops"]));
    // Its only team is left out: for tenant admins only.
    let shared = find(s, "routes", "shared");
    assert!(shared.get("teams").is_none());
    assert_eq!(
        shared["permissions"],
        json!({"read": "otoroshi:tenant-admin", "write": "otoroshi:tenant-admin"})
    );
    let warnings = imported.warnings.join("\n");
    for warning in [
        "tenant `acme`: the same tenant as an earlier one",
        "team `ops`: the same team as an earlier one",
        "team `Shared`: one team id to Otoroshi (which compares ids case-insensitively) in several tenants, left out",
        "route `shared`: `_loc.teams` `shared` are no exported team of its tenant",
    ] {
        assert!(warnings.contains(warning), "no `{warning}` in:\n{warnings}");
    }
    let snapshot = load(&export);
    assert_eq!(decides(&snapshot, "/ops", None), (true, true));
    assert_eq!(decides(&snapshot, "/shared", None), (false, false));
}

/// A route at `_loc.tenant: "*"` keeps tenant `*`: a user calls it in the
/// tenant it names (or its only one), an apikey in its app's organization.
#[test]
fn routes_at_every_tenant_are_carried() {
    let export = json!({
        "tenants": [{"id": "default"}, {"id": "acme"}, {"id": "initech"}],
        "teams": [{"id": "ops", "tenant": "acme"}, {"id": "core", "tenant": "initech"}],
        "routes": [{"id": "shared", "frontend": {"domains": ["api.example/shared"]},
                    "_loc": {"tenant": "*", "teams": ["ops", "core"]}}],
        "apiKeys": [{"clientId": "acme-app", "clientSecret": "s3cr3t-acme-app",
                     "authorizedEntities": ["route_shared"],
                     "_loc": {"tenant": "acme", "teams": ["ops"]}},
                    {"clientId": "any", "clientSecret": "s3cr3t-any",
                     "authorizedEntities": ["route_shared"],
                     "_loc": {"tenant": "*", "teams": ["*"]}}],
        "simpleAdmins": [
            {"username": "u", "rights": [{"tenant": "acme:rw", "teams": ["ops:rw"]},
                                         {"tenant": "initech:r", "teams": ["core:rw"]}]},
        ],
    });
    let options = Options {
        environment: "prod".into(),
        revision: None,
    };
    let imported = convert(&export, &options).unwrap();
    let s = &imported.snapshot;
    let route = find(s, "routes", "shared");
    assert_eq!(route["tenant"], "*");
    assert_eq!(route["teams"], json!(["ops", "core"]));
    assert_eq!(
        find(s, "products", "route_shared")["organization"],
        "default"
    );
    let warnings = imported.warnings.join("\n");
    assert!(
        warnings.contains("apikey `any`: its `_loc.tenant` is not an exported tenant, skipped (an app belongs to one organization)"),
        "{warnings}"
    );
    // Otoroshi: write on a route at `*` with write on any tenant (rule 10).
    assert!(
        warnings.contains("admin `u`: Otoroshi lets it write routes at `_loc.tenant: *` also when working in `initech`"),
        "{warnings}"
    );
    let snapshot = load(&export);
    assert_eq!(decides(&snapshot, "/shared", Some("acme")), (true, true));
    assert_eq!(
        decides(&snapshot, "/shared", Some("initech")),
        (true, false)
    );
    assert_eq!(
        decides(&snapshot, "/shared", Some("default")),
        (false, false)
    );
    // Two organizations and no selector: which tenant is not known.
    assert_eq!(decides(&snapshot, "/shared", None), (false, false));
    let sources = Sources::default();
    let now = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
    let request = Request::from_parts(
        &sources,
        "POST",
        "api.example",
        "/shared",
        &[("x-api-key", "s3cr3t-acme-app")],
    );
    let decision = policy::decide(&snapshot, &request, &Context::new(now, Some("prod")));
    assert_eq!(decision.reason, None);
    assert_eq!(decision.tenant_id(), Some("acme"));
}
