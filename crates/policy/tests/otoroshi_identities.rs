//! The snapshot format's Otoroshi extension in the core:
//! `apps[].otoroshi_client_ids` and `users[].otoroshi_emails` are checked at
//! load (non-empty, unique), and a gateway identity placed by them (or by an
//! apikey's `_loc`) is decided by the same steps as the request's own
//! credentials.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{json, Value};
use tenantgate_policy::{self as policy, Request, Sources, Timestamp};
use tenantgate_policy::{decide, Context, GatewayCaller, GatewayLocation};

const DEMO: &str = include_str!("../../../policies/demo.json");

fn demo_with(edit: impl FnOnce(&mut Value)) -> String {
    let mut doc: Value = serde_json::from_str(DEMO).unwrap();
    edit(&mut doc);
    doc.to_string()
}

fn set(doc: &mut Value, collection: &str, id: &str, field: &str, value: Value) {
    let item = doc[collection]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|item| item["id"] == id)
        .unwrap();
    item[field] = value;
}

fn problems(text: &str) -> Vec<String> {
    match policy::load_snapshot(text) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems(),
    }
}

#[test]
fn identities_are_non_empty_and_unique_at_load() {
    let text = demo_with(|d| {
        set(
            d,
            "apps",
            "acme-storefront",
            "otoroshi_client_ids",
            json!(["oto-1", " "]),
        );
        set(
            d,
            "apps",
            "acme-ops-console",
            "otoroshi_client_ids",
            json!(["oto-1"]),
        );
        set(
            d,
            "users",
            "alice",
            "otoroshi_emails",
            json!(["alice@globex.example", ""]),
        );
        set(
            d,
            "users",
            "bob",
            "otoroshi_emails",
            json!(["Alice@Globex.example"]),
        );
    });
    let found = problems(&text);
    for want in [
        "app `acme-storefront`: field `otoroshi_client_ids`: an Otoroshi client id must be non-empty, got ` `",
        "app `acme-ops-console`: field `otoroshi_client_ids`: client id already used by app `acme-storefront`: `oto-1`",
        "user `alice`: field `otoroshi_emails`: an Otoroshi e-mail must be non-empty, got ``",
        "user `bob`: field `otoroshi_emails`: e-mail already used by user `alice`: `Alice@Globex.example`",
    ] {
        assert!(
            found.iter().any(|p| p == want),
            "missing `{want}` in {found:#?}"
        );
    }
    assert_eq!(found.len(), 4, "{found:#?}");
    // Not lists of strings: refused by the format.
    let text = demo_with(|d| {
        set(
            d,
            "apps",
            "acme-storefront",
            "otoroshi_client_ids",
            json!("oto-1"),
        )
    });
    assert!(!problems(&text).is_empty());
    // Optional: the demo has none and loads.
    assert!(problems(DEMO).is_empty());
}

/// The demo with a client id for the ops console and an e-mail for pat.
fn demo_with_gateway_ids() -> String {
    demo_with(|d| {
        set(
            d,
            "apps",
            "acme-ops-console",
            "otoroshi_client_ids",
            json!(["oto-ops"]),
        );
        set(
            d,
            "users",
            "pat",
            "otoroshi_emails",
            json!(["pat@research.example"]),
        );
    })
}

#[test]
fn gateway_identities_rank_and_decide_like_the_request_s_own_credentials() {
    let text = demo_with_gateway_ids();
    let compiled = policy::load_snapshot(&text).unwrap();
    // The compiled form carries the identities too.
    let decoded = policy::load_snapshot_bytes(&policy::binary::encode(&compiled)).unwrap();
    let sources = Sources::default();
    let now = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
    for snapshot in [&compiled, &decoded] {
        let decide = |method: &str, path: &str, headers: &[(&str, &str)], gateway| {
            let request = Request::from_parts(&sources, method, "localhost", path, headers);
            let context = Context::new(now, Some("prod")).with_gateway(gateway);
            let decision = decide(snapshot, &request, &context);
            serde_json::to_value(decision.explain(policy::Mode::Enforce)).unwrap()
        };
        let ops = GatewayCaller::apikey(snapshot, "oto-ops", false, None);
        assert!(ops.is_key());
        // The same decision as the ops console's own key.
        assert_eq!(
            decide("POST", "/orders/1", &[], Some(&ops)),
            decide("POST", "/orders/1", &[("x-api-key", "demo-ops-key")], None)
        );
        // Ranked before the request's API key.
        let out = decide(
            "GET",
            "/orders/1",
            &[("x-api-key", "demo-revoked-key")],
            Some(&ops),
        );
        assert_eq!(out["decision"], "allow");
        // A read-only gateway key, like a read-only key of the snapshot.
        let read_only = GatewayCaller::apikey(snapshot, "oto-ops", true, None);
        assert_eq!(
            decide("POST", "/orders/1", &[], Some(&read_only))["reason"],
            "read_only_key"
        );
        // Unknown and unplaced: invalid_api_key.
        let unknown = GatewayCaller::apikey(snapshot, "oto-nobody", false, None);
        assert_eq!(
            decide("GET", "/orders/1", &[], Some(&unknown))["reason"],
            "invalid_api_key"
        );
        // Placed by its location: a member of that organization only, with its
        // teams there, no role.
        let teams = ["acme-platform".to_string(), "research-lab".to_string()];
        let location = GatewayLocation {
            tenant: "acme-corp",
            teams: &teams,
            principal: "app:otoroshi/oto-nobody",
        };
        let located = GatewayCaller::apikey(snapshot, "oto-nobody", false, Some(location));
        let out = decide("GET", "/sandbox", &[], Some(&located));
        assert_eq!(out["decision"], "allow", "{out}");
        // `app:otoroshi/…`: no app id holds a `/`, so an app named
        // `otoroshi:oto-nobody` can never be confused with this apikey.
        assert_eq!(out["principal"], "app:otoroshi/oto-nobody");
        assert_eq!(out["teams"], json!(["acme-platform"]));
        assert_eq!(out["roles"], json!([]));
        assert_eq!(
            decide("GET", "/orders/1", &[], Some(&located))["reason"],
            "permission_denied"
        );
        assert_eq!(
            decide("GET", "/research/x", &[], Some(&located))["reason"],
            "not_a_member"
        );
        // Users: by e-mail, case-insensitively; ranked after the request's key
        // and before the user header.
        let pat = GatewayCaller::user(
            snapshot,
            "PAT@research.example",
            "user:otoroshi/PAT@research.example",
        );
        assert!(!pat.is_key());
        assert_eq!(
            decide("GET", "/research/x", &[("x-user-id", "bob")], Some(&pat)),
            decide("GET", "/research/x", &[("x-user-id", "pat")], None)
        );
        assert_eq!(
            decide(
                "GET",
                "/research/x",
                &[("x-api-key", "demo-revoked-key")],
                Some(&pat)
            )["reason"],
            "api_key_revoked"
        );
        let stranger = GatewayCaller::user(
            snapshot,
            "who@where.example",
            "user:otoroshi/who@where.example",
        );
        let out = decide("GET", "/orders/1", &[], Some(&stranger));
        assert_eq!(out["reason"], "not_a_member");
        assert_eq!(out["principal"], "user:otoroshi/who@where.example");
        let odd = GatewayCaller::user(
            snapshot,
            "a/b c@x",
            &tenantgate_policy::text::principal_text("user:otoroshi/", b"a/b c@x"),
        );
        let out = decide("GET", "/orders/1", &[], Some(&odd));
        assert_eq!(out["principal"], "user:otoroshi/a%2Fb%20c@x");
    }
}

/// What the Envoy filter publishes to its decision VMs (issue 12): the
/// snapshot without the Otoroshi tables, smaller, finding no gateway
/// identity, and deciding every request of its own as before.
#[test]
fn a_snapshot_without_gateway_ids_finds_none_and_decides_requests_alike() {
    let text = demo_with_gateway_ids();
    let whole = policy::load_snapshot(&text).unwrap();
    let mut forgotten = policy::load_snapshot(&text).unwrap();
    forgotten.forget_gateway_ids();
    let encoded = policy::binary::encode(&forgotten);
    assert!(encoded.len() < policy::binary::encode(&whole).len());
    let decoded = policy::load_snapshot_bytes(&encoded).unwrap();
    fn decide_as(
        snapshot: &policy::Snapshot,
        (method, path, headers): (&str, &str, &[(&str, &str)]),
        gateway: Option<&GatewayCaller>,
    ) -> Value {
        let sources = Sources::default();
        let now = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
        let request = Request::from_parts(&sources, method, "localhost", path, headers);
        let context = Context::new(now, Some("prod")).with_gateway(gateway);
        serde_json::to_value(decide(snapshot, &request, &context).explain(policy::Mode::Enforce))
            .unwrap()
    }
    let teams = ["acme-platform".to_string()];
    for snapshot in [&forgotten, &decoded] {
        let ops = GatewayCaller::apikey(snapshot, "oto-ops", false, None);
        assert_eq!(
            decide_as(snapshot, ("GET", "/orders/1", &[]), Some(&ops))["reason"],
            "invalid_api_key"
        );
        let location = GatewayLocation {
            tenant: "acme-corp",
            teams: &teams,
            principal: "app:otoroshi/oto-nobody",
        };
        let located = GatewayCaller::apikey(snapshot, "oto-nobody", false, Some(location));
        assert_eq!(
            decide_as(snapshot, ("GET", "/sandbox", &[]), Some(&located))["teams"],
            json!([])
        );
        let pat = GatewayCaller::user(snapshot, "pat@research.example", "user:otoroshi/pat");
        assert_eq!(
            decide_as(snapshot, ("GET", "/research/x", &[]), Some(&pat))["principal"],
            "user:otoroshi/pat"
        );
        for (method, path, headers) in [
            ("POST", "/orders/1", &[("x-api-key", "demo-ops-key")][..]),
            ("GET", "/research/x", &[("x-user-id", "pat")][..]),
            ("GET", "/orders/1", &[("x-api-key", "demo-revoked-key")][..]),
            ("GET", "/sandbox", &[][..]),
        ] {
            assert_eq!(
                decide_as(snapshot, (method, path, headers), None),
                decide_as(&whole, (method, path, headers), None),
                "{method} {path}"
            );
        }
    }
}
