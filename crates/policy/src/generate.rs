//! A large, valid and realistic snapshot document for benchmarks and scale
//! tests (`policyctl generate`). Pure and deterministic for a given seed.

use crate::hash_key;
use serde_json::{json, Value};

/// splitmix64: tiny, deterministic, good enough to shape test data (also used
/// by the property-style tests).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// One of `items` (the default value when empty).
    pub fn pick<T: Copy + Default>(&mut self, items: &[T]) -> T {
        items
            .get(self.below(items.len()))
            .copied()
            .unwrap_or_default()
    }
}

fn set(object: &mut Value, field: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        map.insert(field.into(), value);
    }
}

/// The raw key of generated api key `index` for `seed`.
pub fn generated_raw_key(seed: u64, index: usize) -> String {
    format!("gen-{seed}-{index}")
}

/// Builds the document. Shape per top-level organization: up to two
/// sub-organizations, three teams each, groups granting the standard roles, a few
/// users (some invited, some area-wide), apps with products in two environments,
/// and routes of its own; plus shared `"*"` routes and a public health route.
pub fn generate(org_count: usize, key_count: usize, seed: u64) -> Value {
    let mut rng = Rng(seed);
    let envs = ["prod", "staging"];
    let area_count = org_count.div_ceil(50);
    let areas: Vec<Value> = (0..area_count)
        .map(|a| json!({"id": format!("area-{a}"), "name": format!("Area {a}")}))
        .collect();
    let roles = json!([
        {"id": "admin", "name": "Admin", "permissions": ["*"]},
        {"id": "api-manager", "name": "API Publisher", "permissions": ["apis:*"]},
        {"id": "api-consumer", "name": "API Subscriber", "permissions": ["apis:read", "orders:read"]},
        {"id": "order-writer", "permissions": ["orders:read", "orders:write"]},
        {"id": "billing-admin", "permissions": ["billing:*"]}
    ]);
    let mut organizations = Vec::new();
    let mut teams = Vec::new();
    let mut groups = Vec::new();
    let mut users = Vec::new();
    let mut products = Vec::new();
    let mut routes = vec![
        json!({"id": "health", "path_prefix": "/health", "tenant": "*", "public": true}),
        json!({"id": "profile", "path_prefix": "/profile", "tenant": "*", "teams": ["*"], "permissions": {"read": "apis:read"}}),
        json!({"id": "billing", "path_prefix": "/billing", "tenant": "*", "permissions": {"read": "billing:read", "write": "billing:write"}}),
    ];
    // (org id, is top-level) for every organization, to attach apps later.
    let mut org_ids: Vec<String> = Vec::new();
    let mut top_products: Vec<Vec<String>> = Vec::new();
    let mut top_count = 0usize;
    let mut o = 0usize;
    while organizations.len() < org_count {
        let top = format!("org-{o}");
        let area = format!("area-{}", o / 50);
        let evaluation = rng.chance(10);
        let mut org = json!({
            "id": top, "handle": format!("{top}-h"), "name": format!("Organization {o}"),
            "area": area, "type": if evaluation { "evaluation" } else { "paid" },
            "status": if rng.chance(3) { "suspended" } else { "active" },
            "environments": envs, "tags": ["generated"], "metadata": {"index": o}
        });
        if evaluation {
            set(
                &mut org,
                "expires_at",
                json!(if rng.chance(30) {
                    "2025-01-01T00:00:00Z"
                } else {
                    "2036-01-01T00:00:00Z"
                }),
            );
        }
        organizations.push(org);
        let mut family = vec![top.clone()];
        for s in 0..2 {
            if organizations.len() >= org_count || !rng.chance(40) {
                continue;
            }
            let sub = format!("{top}-sub{s}");
            organizations.push(json!({
                "id": sub, "handle": format!("{sub}-h"), "name": format!("Organization {o} / {s}"),
                "area": area, "parent": top, "type": "paid", "status": "active", "environments": ["prod"]
            }));
            family.push(sub);
        }
        for org_id in &family {
            for t in ["platform", "billing", "data"] {
                teams.push(
                    json!({"id": format!("{org_id}-{t}"), "organization": org_id, "name": t}),
                );
            }
            routes.push(json!({
                "id": format!("{org_id}-orders"), "path_prefix": format!("/t/{org_id}/orders"), "tenant": org_id,
                "teams": [format!("{org_id}-platform")],
                "permissions": {"read": "orders:read", "write": "orders:write"}
            }));
            routes.push(json!({
                "id": format!("{org_id}-admin"), "path_prefix": format!("/t/{org_id}/orders/admin"),
                "methods": ["POST", "DELETE"], "tenant": org_id, "permissions": {"write": "orders:admin"}
            }));
            routes.push(json!({
                "id": format!("{org_id}-catalog"), "path_prefix": format!("/t/{org_id}/catalog"), "tenant": org_id,
                "permissions": {"read": "apis:read"}
            }));
            org_ids.push(org_id.clone());
        }
        for (g, role) in [
            ("admins", "admin"),
            ("publishers", "api-manager"),
            ("subscribers", "api-consumer"),
        ] {
            groups.push(json!({"id": format!("{top}-{g}"), "organization": top, "roles": [role]}));
        }
        let route_ids: Vec<String> = family
            .iter()
            .flat_map(|f| {
                [
                    format!("{f}-orders"),
                    format!("{f}-admin"),
                    format!("{f}-catalog"),
                ]
            })
            .collect();
        products.push(json!({"id": format!("{top}-orders"), "organization": top, "routes": route_ids, "environments": envs}));
        products.push(json!({"id": format!("{top}-shared"), "organization": top, "routes": ["profile", "billing"], "environments": ["prod"]}));
        top_products.push(vec![format!("{top}-orders"), format!("{top}-shared")]);
        for u in 0..3 {
            let status = if rng.chance(10) { "invited" } else { "active" };
            let group = rng.pick(&["admins", "publishers", "subscribers"]);
            let team = rng.pick(&["platform", "billing", "data"]);
            let right = if rng.chance(50) { "read" } else { "write" };
            users.push(json!({"id": format!("{top}-user{u}"), "memberships": [{
                "scope": top, "status": status, "groups": [format!("{top}-{group}")],
                "teams": {format!("{top}-{team}"): right}
            }]}));
        }
        top_count += 1;
        o += 1;
    }
    for a in 0..area_count {
        users.push(json!({"id": format!("area-{a}-admin"), "memberships": [{
            "scope": format!("area-{a}"), "status": "active", "roles": ["admin"], "teams": {"*": "write"}
        }]}));
    }
    // Four keys per app on average, apps spread over the top-level organizations.
    let app_count = key_count.div_ceil(4).max(1);
    let mut apps = Vec::with_capacity(app_count);
    for a in 0..app_count {
        let t = rng.below(top_count);
        let org = format!("org-{t}");
        let roles = if rng.chance(20) {
            json!(["order-writer", "api-consumer"])
        } else {
            json!(["api-consumer"])
        };
        let right = if rng.chance(30) { "write" } else { "read" };
        apps.push(json!({
            "id": format!("app-{a}"), "organization": org, "developer": format!("dev{a}@example.test"),
            "status": if rng.chance(2) { "revoked" } else { "approved" },
            "products": top_products.get(t).cloned().unwrap_or_default(),
            "roles": roles, "teams": {format!("{org}-platform"): right}
        }));
    }
    let mut api_keys = Vec::with_capacity(key_count);
    for k in 0..key_count {
        let roll = rng.below(100);
        let status = match roll {
            0..=2 => "revoked",
            3..=4 => "pending",
            _ => "active",
        };
        let mut key = json!({
            "id": format!("key-{k}"), "app": format!("app-{}", k % app_count),
            "sha256": hash_key(generated_raw_key(seed, k)), "status": status
        });
        if rng.chance(5) {
            set(&mut key, "expires_at", json!("2025-06-01T00:00:00Z"));
        }
        if rng.chance(10) {
            set(&mut key, "read_only", json!(true));
        }
        if rng.chance(10) {
            set(&mut key, "environments", json!(["staging"]));
        }
        api_keys.push(key);
    }
    let _ = org_ids;
    json!({
        "revision": format!("gen-{seed}-{org_count}-{key_count}"),
        "areas": areas, "organizations": organizations, "teams": teams, "roles": roles,
        "groups": groups, "users": users, "apps": apps, "api_keys": api_keys,
        "products": products, "routes": routes
    })
}
