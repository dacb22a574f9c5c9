//! `policyctl import otoroshi`: a realistic Otoroshi export
//! (`tests/fixtures/otoroshi/export.json`: tenants, teams, routes, service
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

use serde_json::{json, Value};
use std::process::Command;
use tenantgate::cli::import_otoroshi::{convert, Options};
use tenantgate::policy::decide::decide_as;
use tenantgate::policy::{self, hash_key, Request, Sources, Timestamp};

const POLICYCTL: &str = env!("CARGO_BIN_EXE_policyctl");
const EXPORT: &str = "tests/fixtures/otoroshi/export.json";

fn export() -> Value {
    serde_json::from_str(&std::fs::read_to_string(EXPORT).unwrap()).unwrap()
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
        .current_dir(env!("CARGO_MANIFEST_DIR"))
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
        .current_dir(env!("CARGO_MANIFEST_DIR"))
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
            .current_dir(env!("CARGO_MANIFEST_DIR"))
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
        let decision = policy::decide(&snapshot, &request, now, Some("prod"));
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
    let partner = snapshot.gateway_apikey("acme-partner@eu", false, None);
    let decision = decide_as(&snapshot, &request, now, Some("prod"), Some(&partner));
    assert_eq!(decision.reason, None);
    assert_eq!(decision.principal.as_deref(), Some("app:acme-partner-eu"));
    let olga = snapshot.gateway_user("Olga@Acme.example");
    let decision = decide_as(&snapshot, &request, now, Some("prod"), Some(&olga));
    assert_eq!(decision.reason, None);
    assert_eq!(
        decision.principal.as_deref(),
        Some("user:olga-acme.example")
    );
    let carla = snapshot.gateway_user("carla@initech.example");
    let decision = decide_as(&snapshot, &request, now, Some("prod"), Some(&carla));
    assert_eq!(decision.reason.map(|r| r.code()), Some("not_a_member"));
}
