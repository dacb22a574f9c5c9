//! The request mix: the sampling of `crates/policy/benches/decide.rs` (256 keys, evenly spaced
//! over the snapshot's keys, each on a route of its own app's organization), with
//! the method and route varied so that every check of the comparison decides some
//! requests, plus a few requests that must be denied (another tenant's route, an
//! unknown key).

use serde_json::{json, Value};
use std::collections::HashSet;
use tenantgate_policy::generate::generated_raw_key;

pub const DEFAULT_HOST: &str = "api.example.test";

/// One authorization question, in the form each engine takes it.
#[derive(Debug, Clone)]
pub struct Question {
    pub method: &'static str,
    /// The request's host (only routes listing hosts care).
    pub host: String,
    /// What tenantgate matches (`/t/<org>/catalog/item-<i>` ...).
    pub path: String,
    /// The route that path matches: what Cedar and Rego are asked about.
    pub route: String,
    /// The raw API key (every engine hashes it per decision).
    pub raw_key: String,
    /// A short label of what the question exercises.
    pub kind: &'static str,
}

fn str_at<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// `sample` questions over `doc`, generated with `seed`.
pub fn questions(doc: &Value, seed: u64, sample: usize) -> Vec<Question> {
    let empty = Vec::new();
    let keys = doc["api_keys"].as_array().unwrap_or(&empty);
    let apps = doc["apps"].as_array().unwrap_or(&empty);
    let orgs = doc["organizations"].as_array().unwrap_or(&empty);
    let org_ids: HashSet<&str> = orgs.iter().map(|o| str_at(o, "id")).collect();
    let top_orgs: Vec<&str> = orgs
        .iter()
        .filter(|o| o.get("parent").is_none())
        .map(|o| str_at(o, "id"))
        .collect();
    let step = (keys.len() / sample).max(1);
    (0..keys.len())
        .step_by(step)
        .take(sample)
        .enumerate()
        .map(|(j, i)| {
            // As crates/policy/benches/decide.rs: the key's app index from "app-<n>", its organization.
            let app_index: usize = str_at(&keys[i], "app")
                .get(4..)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let org = str_at(&apps[app_index], "organization").to_string();
            let raw = generated_raw_key(seed, i);
            let q =
                |method, org: &str, what: &str, route_suffix: &str, raw: String, kind| Question {
                    method,
                    host: DEFAULT_HOST.to_string(),
                    path: format!("/t/{org}/{what}/item-{i}"),
                    route: format!("{org}-{route_suffix}"),
                    raw_key: raw,
                    kind,
                };
            match j % 16 {
                0..=5 => q("GET", &org, "catalog", "catalog", raw, "get_catalog"),
                6..=8 => q("GET", &org, "orders", "orders", raw, "get_orders"),
                9 | 10 => q("POST", &org, "orders", "orders", raw, "post_orders"),
                11 => q("POST", &org, "catalog", "catalog", raw, "post_catalog"),
                12 => q(
                    "POST",
                    &org,
                    "orders/admin",
                    "admin",
                    raw,
                    "post_orders_admin",
                ),
                13 => {
                    // Another top-level organization's route: the app does not cover it.
                    let pos = top_orgs.iter().position(|o| *o == org).unwrap_or(0);
                    let other = top_orgs[(pos + 1) % top_orgs.len().max(1)];
                    q("GET", other, "orders", "orders", raw, "get_other_tenant")
                }
                14 => {
                    // A sub-organization of the app's organization when it has one.
                    let sub = [format!("{org}-sub0"), format!("{org}-sub1")]
                        .into_iter()
                        .find(|s| org_ids.contains(s.as_str()));
                    match sub {
                        Some(sub) => q("GET", &sub, "catalog", "catalog", raw, "get_sub_org"),
                        None => q("GET", &org, "catalog", "catalog", raw, "get_catalog"),
                    }
                }
                _ => q(
                    "GET",
                    &org,
                    "catalog",
                    "catalog",
                    format!("unknown-{seed}-{i}"),
                    "unknown_key",
                ),
            }
        })
        .collect()
}

/// The raw keys of the demo world (README.md), the corners world's extra key and
/// one unknown key.
pub const DEMO_KEYS: [&str; 13] = [
    "demo-storefront-key",
    "demo-storefront-staging-key",
    "demo-revoked-key",
    "demo-expired-key",
    "demo-pending-key",
    "demo-ops-key",
    "demo-readonly-key",
    "demo-legacy-app-key",
    "demo-research-key",
    "demo-initech-key",
    "demo-umbrella-key",
    "corner-hooli-key",
    "not-a-demo-key",
];

fn push(doc: &mut Value, field: &str, item: Value) {
    if let Some(a) = doc.get_mut(field).and_then(Value::as_array_mut) {
        a.push(item);
    }
}

/// The demo world plus the corners neither it nor the generator exercises, so
/// that every condition of the three policies decides some question:
/// sub-organizations of a suspended (`umbrella`) and of an expiring (`hooli`)
/// organization; an app subscribed to a product listing another tenant's route
/// (`hooli-api`: coverage decides) and a route of a sub-organization whose
/// environments are narrower (`shop-catalog` in staging: the tenant's
/// environments decide); a route with teams where only a `"*"` right can help
/// (`initech-reports`).
pub fn corners_world(demo: &Value) -> Value {
    let mut d = demo.clone();
    for (sub, parent) in [("umbrella-lab", "umbrella"), ("hooli-lab", "hooli")] {
        push(
            &mut d,
            "organizations",
            json!({"id": sub, "handle": format!("{sub}-h"), "name": sub,
            "parent": parent, "type": "paid", "status": "active", "environments": ["prod"]}),
        );
        push(
            &mut d,
            "routes",
            json!({"id": format!("{sub}-api"), "path_prefix": format!("/{sub}"), "tenant": sub}),
        );
    }
    push(
        &mut d,
        "apps",
        json!({"id": "hooli-app", "organization": "hooli", "status": "approved",
        "products": ["hooli-product"], "roles": ["admin"]}),
    );
    push(
        &mut d,
        "products",
        json!({"id": "hooli-product", "organization": "hooli",
        "routes": ["hooli-api", "hooli-lab-api"]}),
    );
    push(
        &mut d,
        "api_keys",
        json!({"id": "hooli-key", "app": "hooli-app",
        "sha256": tenantgate_policy::hash_key("corner-hooli-key"), "status": "active"}),
    );
    push(
        &mut d,
        "products",
        json!({"id": "acme-cross", "organization": "acme",
        "routes": ["hooli-api", "shop-catalog"]}),
    );
    for p in d["products"].as_array_mut().into_iter().flatten() {
        if p["id"] == "umbrella-api" {
            push(p, "routes", json!("umbrella-lab-api"));
        }
    }
    for a in d["apps"].as_array_mut().into_iter().flatten() {
        if a["id"] == "acme-storefront" {
            push(a, "products", json!("acme-cross"));
        }
    }
    for r in d["routes"].as_array_mut().into_iter().flatten() {
        if r["id"] == "initech-reports" {
            r["teams"] = json!(["initech-core"]);
        }
    }
    d
}

/// Every demo key on every route of `doc` (a path under its prefix, its first
/// host if it lists hosts) with GET and POST. The route id is filled in later
/// from the route tenantgate matches (`route` is empty here).
pub fn demo_questions(doc: &Value) -> Vec<Question> {
    let mut out = Vec::new();
    let empty = Vec::new();
    for route in doc["routes"].as_array().unwrap_or(&empty) {
        let prefix = str_at(route, "path_prefix").trim_end_matches('/');
        let host = route
            .get("hosts")
            .and_then(Value::as_array)
            .and_then(|h| h.first())
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_HOST);
        for raw in DEMO_KEYS {
            for method in ["GET", "POST"] {
                out.push(Question {
                    method,
                    host: host.to_string(),
                    path: format!("{prefix}/x"),
                    route: String::new(),
                    raw_key: raw.to_string(),
                    kind: "demo",
                });
            }
        }
    }
    out
}
