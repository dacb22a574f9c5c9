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

/// The environments of top-level organizations and of their order products.
const ENVIRONMENTS: [&str; 2] = ["prod", "staging"];
/// Organizations per area.
const AREA_SIZE: usize = 50;
/// The groups of every top-level organization, each granting one role.
const GROUPS: [(&str, &str); 3] = [
    ("admins", "admin"),
    ("publishers", "api-manager"),
    ("subscribers", "api-consumer"),
];
const TEAMS: [&str; 3] = ["platform", "billing", "data"];

/// Builds the document. Shape per top-level organization: up to two
/// sub-organizations, three teams each, groups granting the standard roles, a few
/// users (some invited, some area-wide), apps with products in two environments,
/// and routes of its own; plus shared `"*"` routes and a public health route.
///
/// Every pseudo-random choice is drawn in a fixed order, so a seed always
/// gives the same document: keep that order when changing anything here.
pub fn generate(org_count: usize, key_count: usize, seed: u64) -> Value {
    let mut rng = Rng(seed);
    let mut document = Document {
        routes: shared_routes(),
        ..Document::default()
    };
    let mut o = 0usize;
    while document.organizations.len() < org_count {
        document.add_top_organization(&mut rng, o, org_count);
        o += 1;
    }
    let area_count = org_count.div_ceil(AREA_SIZE);
    document.users.extend((0..area_count).map(area_admin));
    // Four keys per app on average, apps spread over the top-level organizations.
    let app_count = key_count.div_ceil(4).max(1);
    let apps: Vec<Value> = (0..app_count)
        .map(|a| app(&mut rng, a, &document.top_products))
        .collect();
    let api_keys: Vec<Value> = (0..key_count)
        .map(|k| api_key(&mut rng, seed, k, app_count))
        .collect();
    json!({
        "revision": format!("gen-{seed}-{org_count}-{key_count}"),
        "areas": areas(area_count), "organizations": document.organizations,
        "teams": document.teams, "roles": roles(), "groups": document.groups,
        "users": document.users, "apps": apps, "api_keys": api_keys,
        "products": document.products, "routes": document.routes
    })
}

/// The collections built organization by organization.
#[derive(Default)]
struct Document {
    organizations: Vec<Value>,
    teams: Vec<Value>,
    groups: Vec<Value>,
    users: Vec<Value>,
    products: Vec<Value>,
    routes: Vec<Value>,
    /// The products of each top-level organization, for its apps.
    top_products: Vec<Vec<String>>,
}

impl Document {
    /// Top-level organization number `o`, its sub-organizations (while fewer
    /// than `org_count` organizations exist), and everything they hold.
    fn add_top_organization(&mut self, rng: &mut Rng, o: usize, org_count: usize) {
        let top = format!("org-{o}");
        let area = format!("area-{}", o / AREA_SIZE);
        self.organizations
            .push(top_organization(rng, o, &top, &area));
        let family = self.add_sub_organizations(rng, o, &top, &area, org_count);
        for org_id in &family {
            self.add_teams_and_routes(org_id);
        }
        for (g, role) in GROUPS {
            self.groups
                .push(json!({"id": format!("{top}-{g}"), "organization": top, "roles": [role]}));
        }
        self.add_products(&top, &family);
        for u in 0..3 {
            self.users.push(user(rng, &top, u));
        }
    }

    /// Up to two sub-organizations of `top`; returns `top` and their ids.
    fn add_sub_organizations(
        &mut self,
        rng: &mut Rng,
        o: usize,
        top: &str,
        area: &str,
        org_count: usize,
    ) -> Vec<String> {
        let mut family = vec![top.to_string()];
        for s in 0..2 {
            if self.organizations.len() >= org_count || !rng.chance(40) {
                continue;
            }
            let sub = format!("{top}-sub{s}");
            self.organizations.push(json!({
                "id": sub, "handle": format!("{sub}-h"), "name": format!("Organization {o} / {s}"),
                "area": area, "parent": top, "type": "paid", "status": "active", "environments": ["prod"]
            }));
            family.push(sub);
        }
        family
    }

    /// Three teams and three routes of organization `org_id`.
    fn add_teams_and_routes(&mut self, org_id: &str) {
        for t in TEAMS {
            self.teams
                .push(json!({"id": format!("{org_id}-{t}"), "organization": org_id, "name": t}));
        }
        self.routes.push(json!({
            "id": format!("{org_id}-orders"), "path_prefix": format!("/t/{org_id}/orders"), "tenant": org_id,
            "teams": [format!("{org_id}-platform")],
            "permissions": {"read": "orders:read", "write": "orders:write"}
        }));
        self.routes.push(json!({
            "id": format!("{org_id}-admin"), "path_prefix": format!("/t/{org_id}/orders/admin"),
            "methods": ["POST", "DELETE"], "tenant": org_id, "permissions": {"write": "orders:admin"}
        }));
        self.routes.push(json!({
            "id": format!("{org_id}-catalog"), "path_prefix": format!("/t/{org_id}/catalog"), "tenant": org_id,
            "permissions": {"read": "apis:read"}
        }));
    }

    /// The products of `top`: its family's routes, and the shared routes.
    fn add_products(&mut self, top: &str, family: &[String]) {
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
        self.products.push(json!({"id": format!("{top}-orders"), "organization": top, "routes": route_ids, "environments": ENVIRONMENTS}));
        self.products.push(json!({"id": format!("{top}-shared"), "organization": top, "routes": ["profile", "billing"], "environments": ["prod"]}));
        self.top_products
            .push(vec![format!("{top}-orders"), format!("{top}-shared")]);
    }
}

fn areas(area_count: usize) -> Vec<Value> {
    (0..area_count)
        .map(|a| json!({"id": format!("area-{a}"), "name": format!("Area {a}")}))
        .collect()
}

fn roles() -> Value {
    json!([
        {"id": "admin", "name": "Admin", "permissions": ["*"]},
        {"id": "api-manager", "name": "API Publisher", "permissions": ["apis:*"]},
        {"id": "api-consumer", "name": "API Subscriber", "permissions": ["apis:read", "orders:read"]},
        {"id": "order-writer", "permissions": ["orders:read", "orders:write"]},
        {"id": "billing-admin", "permissions": ["billing:*"]}
    ])
}

/// The routes of every tenant: a public health check, a profile and billing.
fn shared_routes() -> Vec<Value> {
    vec![
        json!({"id": "health", "path_prefix": "/health", "tenant": "*", "public": true}),
        json!({"id": "profile", "path_prefix": "/profile", "tenant": "*", "teams": ["*"], "permissions": {"read": "apis:read"}}),
        json!({"id": "billing", "path_prefix": "/billing", "tenant": "*", "permissions": {"read": "billing:read", "write": "billing:write"}}),
    ]
}

/// A top-level organization: paid, or an evaluation that may have expired.
fn top_organization(rng: &mut Rng, o: usize, top: &str, area: &str) -> Value {
    let evaluation = rng.chance(10);
    let mut org = json!({
        "id": top, "handle": format!("{top}-h"), "name": format!("Organization {o}"),
        "area": area, "type": if evaluation { "evaluation" } else { "paid" },
        "status": if rng.chance(3) { "suspended" } else { "active" },
        "environments": ENVIRONMENTS, "tags": ["generated"], "metadata": {"index": o}
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
    org
}

/// User `u` of `top`: a member of one of its groups and one of its teams.
fn user(rng: &mut Rng, top: &str, u: usize) -> Value {
    let status = if rng.chance(10) { "invited" } else { "active" };
    let group = rng.pick(&["admins", "publishers", "subscribers"]);
    let team = rng.pick(&TEAMS);
    let right = if rng.chance(50) { "read" } else { "write" };
    json!({"id": format!("{top}-user{u}"), "memberships": [{
        "scope": top, "status": status, "groups": [format!("{top}-{group}")],
        "teams": {format!("{top}-{team}"): right}
    }]})
}

/// The admin of area `a`: every organization in it.
fn area_admin(a: usize) -> Value {
    json!({"id": format!("area-{a}-admin"), "memberships": [{
        "scope": format!("area-{a}"), "status": "active", "roles": ["admin"], "teams": {"*": "write"}
    }]})
}

/// App `a`, of a top-level organization drawn at random.
fn app(rng: &mut Rng, a: usize, top_products: &[Vec<String>]) -> Value {
    let t = rng.below(top_products.len());
    let org = format!("org-{t}");
    let roles = if rng.chance(20) {
        json!(["order-writer", "api-consumer"])
    } else {
        json!(["api-consumer"])
    };
    let right = if rng.chance(30) { "write" } else { "read" };
    json!({
        "id": format!("app-{a}"), "organization": org, "developer": format!("dev{a}@example.test"),
        "status": if rng.chance(2) { "revoked" } else { "approved" },
        "products": top_products.get(t).cloned().unwrap_or_default(),
        "roles": roles, "teams": {format!("{org}-platform"): right}
    })
}

/// Api key `k` (raw key [`generated_raw_key`]), of app `k % app_count`.
fn api_key(rng: &mut Rng, seed: u64, k: usize, app_count: usize) -> Value {
    let status = match rng.below(100) {
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
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// The documents of a few sizes and seeds, pinned: a seed must keep giving
    /// the same document (benchmarks and tests rely on its raw keys and shape).
    #[test]
    fn a_seed_always_gives_the_same_document() {
        for (orgs, keys, seed, sha256) in [
            (
                1,
                1,
                1,
                "3bebbaef5a916f3f14d874ad2d1f9a8907bd93d652ed5ab8c4c239cacd44d28c",
            ),
            (
                3,
                5,
                2,
                "7ad74efdf3aa7db828c9ed2de8c73514ea1c53625155e9232ef7cf26fbb57171",
            ),
            (
                30,
                200,
                7,
                "0c5169016dfaec77f961f6af9abb7b3acef99d735f848da3465d1b2d54798d80",
            ),
            (
                77,
                200,
                42,
                "46720e0da49cbccfa15f2db83a73f01cdd27cb13eb7ea8268d944715e70f2a27",
            ),
            (
                77,
                0,
                99,
                "6abc7a98a0a6a779d270857e1e8f625548e79b79433ee08fb9c0d84d8b054869",
            ),
        ] {
            let document = generate(orgs, keys, seed).to_string();
            assert_eq!(
                hash_key(document),
                sha256,
                "--orgs {orgs} --keys {keys} --seed {seed}"
            );
        }
    }
}
