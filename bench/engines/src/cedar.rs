//! Cedar: entities (JSON, the format `Entities::from_json_str` reads) converted
//! from the snapshot document, the policy set of `policy.cedar`, and one decision.
//!
//! Entity types
//! - `Key::"<sha256>"` {status, expires?: Long, read_only: Bool, envs: Set<String>, app: App}
//! - `App::"<id>"` {status, org: Org, offers: {<env>: Set<Product>}, read_teams: Set<Team>,
//!   write_teams: Set<Team>, star: "none"|"read"|"write"}; parents: its `Role`s
//! - `Role::"<id>"`; parents: a `Perm` per permission string (`Perm::"apis:*"`)
//! - `Org::"<id>"` {status, envs: Set<String>, expires?: Long, parent?: Org}; parent: `Org`
//! - `Product::"<id>"`; `Route::"<id>"` {tenant: Org, teams: Set<Team>,
//!   read_grants?: Set<Perm>, write_grants?: Set<Perm>}; parents: the products listing it
//!
//! Cedar has no quantifier over a set and no dynamic prefix match, so two things
//! are shaped at conversion time (as tenantgate does at compile time):
//! `offers[env]` lists the app's products offered in `env` (an empty product
//! environment list meaning every environment of the product's organization), and
//! a route's `*_grants` lists the permission strings used by any role that match
//! the route's required permission (`*`, `prefix*`, exact). The role indirection
//! itself stays in Cedar: App → Role → Perm is the entity hierarchy, and the policy
//! asks `principal.app in resource.read_grants`.

use crate::world::{
    all_environments, arr, compared_route, grant_matches, s, strings, unix_seconds,
};
use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityId, EntityTypeName, EntityUid, PolicySet,
    Request, RestrictedExpression,
};
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use tenantgate_policy::{hash_key, is_safe_method};

fn uid(kind: &str, id: &str) -> Value {
    json!({"type": kind, "id": id})
}

fn eref(kind: &str, id: &str) -> Value {
    json!({"__entity": {"type": kind, "id": id}})
}

fn entity(kind: &str, id: &str, attrs: Map<String, Value>, parents: Vec<Value>) -> Value {
    json!({"uid": uid(kind, id), "attrs": attrs, "parents": parents})
}

/// The Cedar entities for `doc` (a JSON array).
pub fn entities_json(doc: &Value) -> Value {
    let envs = all_environments(doc);
    let mut out = Vec::new();
    let org_envs: HashMap<&str, Vec<&str>> = arr(doc, "organizations")
        .iter()
        .map(|o| (s(o, "id"), strings(o, "environments")))
        .collect();
    for org in arr(doc, "organizations") {
        let mut attrs = Map::new();
        attrs.insert("status".into(), json!(s(org, "status")));
        attrs.insert("envs".into(), json!(strings(org, "environments")));
        if let Some(at) = org.get("expires_at").and_then(Value::as_str) {
            attrs.insert("expires".into(), json!(unix_seconds(at)));
        }
        let mut parents = Vec::new();
        if let Some(parent) = org.get("parent").and_then(Value::as_str) {
            attrs.insert("parent".into(), eref("Org", parent));
            parents.push(uid("Org", parent));
        }
        out.push(entity("Org", s(org, "id"), attrs, parents));
    }
    let mut patterns: BTreeSet<&str> = BTreeSet::new();
    for role in arr(doc, "roles") {
        let perms = strings(role, "permissions");
        patterns.extend(perms.iter().copied());
        let parents = perms.iter().map(|p| uid("Perm", p)).collect();
        out.push(entity("Role", s(role, "id"), Map::new(), parents));
    }
    for p in &patterns {
        out.push(entity("Perm", p, Map::new(), Vec::new()));
    }
    // Products offered per environment, and the products listing each route.
    let mut offered: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    let mut route_products: HashMap<&str, Vec<&str>> = HashMap::new();
    for product in arr(doc, "products") {
        let id = s(product, "id");
        let mut penvs = strings(product, "environments");
        if penvs.is_empty() {
            penvs = org_envs
                .get(s(product, "organization"))
                .cloned()
                .unwrap_or_default();
        }
        offered.insert(id, penvs.into_iter().collect());
        for r in strings(product, "routes") {
            route_products.entry(r).or_default().push(id);
        }
        out.push(entity("Product", id, Map::new(), Vec::new()));
    }
    for app in arr(doc, "apps") {
        let products = strings(app, "products");
        let mut offers = Map::new();
        for env in &envs {
            let set: Vec<Value> = products
                .iter()
                .filter(|p| offered.get(*p).is_some_and(|e| e.contains(env.as_str())))
                .map(|p| eref("Product", p))
                .collect();
            offers.insert(env.clone(), Value::Array(set));
        }
        let (mut read, mut write, mut star) = (Vec::new(), Vec::new(), "none");
        if let Some(teams) = app.get("teams").and_then(Value::as_object) {
            for (team, right) in teams {
                let right = right.as_str().unwrap_or_default();
                if team == "*" {
                    star = if right == "write" { "write" } else { "read" };
                } else if right == "write" {
                    write.push(eref("Team", team));
                } else {
                    read.push(eref("Team", team));
                }
            }
        }
        let mut attrs = Map::new();
        attrs.insert("status".into(), json!(s(app, "status")));
        attrs.insert("org".into(), eref("Org", s(app, "organization")));
        attrs.insert("offers".into(), Value::Object(offers));
        attrs.insert("read_teams".into(), Value::Array(read));
        attrs.insert("write_teams".into(), Value::Array(write));
        attrs.insert("star".into(), json!(star));
        let parents = strings(app, "roles")
            .iter()
            .map(|r| uid("Role", r))
            .collect();
        out.push(entity("App", s(app, "id"), attrs, parents));
    }
    for key in arr(doc, "api_keys") {
        let mut attrs = Map::new();
        attrs.insert("status".into(), json!(s(key, "status")));
        if let Some(at) = key.get("expires_at").and_then(Value::as_str) {
            attrs.insert("expires".into(), json!(unix_seconds(at)));
        }
        let read_only = key
            .get("read_only")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        attrs.insert("read_only".into(), json!(read_only));
        attrs.insert("envs".into(), json!(strings(key, "environments")));
        attrs.insert("app".into(), eref("App", s(key, "app")));
        out.push(entity("Key", s(key, "sha256"), attrs, Vec::new()));
    }
    for route in arr(doc, "routes").iter().filter(|r| compared_route(r)) {
        let id = s(route, "id");
        let mut attrs = Map::new();
        attrs.insert("tenant".into(), eref("Org", s(route, "tenant")));
        let teams: Vec<Value> = strings(route, "teams")
            .iter()
            .map(|t| eref("Team", t))
            .collect();
        attrs.insert("teams".into(), Value::Array(teams));
        for (entry, attr) in [("read", "read_grants"), ("write", "write_grants")] {
            if let Some(wanted) = route
                .pointer(&format!("/permissions/{entry}"))
                .and_then(Value::as_str)
            {
                let grants: Vec<Value> = patterns
                    .iter()
                    .filter(|g| grant_matches(g, wanted))
                    .map(|g| eref("Perm", g))
                    .collect();
                attrs.insert(attr.into(), Value::Array(grants));
            }
        }
        let parents = route_products
            .get(id)
            .map(|ps| ps.iter().map(|p| uid("Product", p)).collect())
            .unwrap_or_default();
        out.push(entity("Route", id, attrs, parents));
    }
    Value::Array(out)
}

pub const POLICY_TEMPLATE: &str = include_str!("policy.cedar");

/// The policy set text for a gateway in `environment`.
pub fn policy_text(environment: &str) -> String {
    policy_text_from(POLICY_TEMPLATE, environment)
}

/// `template` (policy.cedar or a test's mutation of it) for `environment`.
pub fn policy_text_from(template: &str, environment: &str) -> String {
    template.replace("@ENV@", environment)
}

pub struct CedarEngine {
    authorizer: Authorizer,
    policies: PolicySet,
    entities: Entities,
    key_type: EntityTypeName,
    route_type: EntityTypeName,
    read: EntityUid,
    write: EntityUid,
}

impl CedarEngine {
    pub fn load(entities_json: &str, policy: &str) -> Result<Self, String> {
        let policies = PolicySet::from_str(policy).map_err(|e| format!("cedar policy: {e:?}"))?;
        let entities = Entities::from_json_str(entities_json, None)
            .map_err(|e| format!("cedar entities: {e:?}"))?;
        let name = |n: &str| EntityTypeName::from_str(n).map_err(|e| format!("{e:?}"));
        let action_type = name("Action")?;
        let action =
            |a: &str| EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(a));
        Ok(CedarEngine {
            authorizer: Authorizer::new(),
            policies,
            entities,
            key_type: name("Key")?,
            route_type: name("Route")?,
            read: action("read"),
            write: action("write"),
        })
    }

    pub fn entity_count(&self) -> usize {
        self.entities.iter().count()
    }

    /// One decision: hash the key, build the request, authorize.
    pub fn allowed(&self, raw_key: &str, route: &str, method: &str, now: i64) -> bool {
        let principal = EntityUid::from_type_name_and_id(
            self.key_type.clone(),
            EntityId::new(hash_key(raw_key)),
        );
        let resource =
            EntityUid::from_type_name_and_id(self.route_type.clone(), EntityId::new(route));
        let action = if is_safe_method(method) {
            &self.read
        } else {
            &self.write
        };
        let Ok(context) =
            Context::from_pairs([("now".to_string(), RestrictedExpression::new_long(now))])
        else {
            return false;
        };
        let Ok(request) = Request::new(principal, action.clone(), resource, context, None) else {
            return false;
        };
        self.authorizer
            .is_authorized(&request, &self.policies, &self.entities)
            .decision()
            == Decision::Allow
    }
}
