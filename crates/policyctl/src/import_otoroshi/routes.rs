//! Routes, and the products that name them: one per route and one per service group.

use super::json::{array, strings, text, Ids};
use super::otoroshi::{location, split_domain, Location};
use super::{Converter, TENANT_ADMIN};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Service groups by Otoroshi id: their organization, and our ids of their routes.
type Groups = BTreeMap<String, (Option<String>, Vec<String>)>;

/// What every route made of one Otoroshi route shares.
struct Shape {
    /// An organization id, or `*` for every tenant (rule 10).
    tenant: String,
    methods: Vec<String>,
    /// `None`: for tenant admins only (rule 9).
    teams: Option<Vec<String>>,
}

/// One Otoroshi route imported: our routes (one per frontend domain), their ids, and the
/// organization of its product.
struct Imported {
    routes: Vec<Value>,
    ids: Vec<String>,
    org: String,
}

impl Converter<'_> {
    pub(super) fn routes_and_products(&mut self) -> (Vec<Value>, Vec<Value>) {
        let mut route_ids = Ids::default();
        let mut groups = self.service_groups();
        let mut routes = Vec::new();
        let mut products = Vec::new();
        for route in array(self.export, "routes") {
            let Some((source, imported)) = self.route(route, &mut route_ids) else {
                continue;
            };
            let product = self.products.assign(&format!("route_{source}"));
            products
                .push(json!({"id": product, "organization": imported.org, "routes": imported.ids}));
            for group in strings(route, "groups") {
                let entry = groups.entry(group).or_insert((None, Vec::new()));
                entry.0.get_or_insert_with(|| imported.org.clone());
                entry.1.extend(imported.ids.iter().cloned());
            }
            routes.extend(imported.routes);
        }
        products.extend(self.group_products(groups));
        (routes, products)
    }

    fn service_groups(&self) -> Groups {
        let mut groups = Groups::new();
        for group in array(self.export, "serviceGroups") {
            if let Some(id) = text(group, "id") {
                groups.insert(id, (self.org_at(&location(group)), Vec::new()));
            }
        }
        groups
    }

    /// One route of the export and its Otoroshi id; `None` (with a warning) if it is skipped.
    fn route(&mut self, route: &Value, route_ids: &mut Ids) -> Option<(String, Imported)> {
        let source = self.enabled_route_id(route)?;
        let loc = location(route);
        let (tenant, org) = self.route_tenant(&source, &loc)?;
        let frontend = route.get("frontend").unwrap_or(&Value::Null);
        let domains = strings(frontend, "domains");
        if domains.is_empty() {
            self.warnings
                .push(format!("route `{source}`: no frontend domain, skipped"));
            return None;
        }
        if frontend.get("exact") == Some(&Value::Bool(true)) {
            self.warnings.push(format!(
                "route `{source}`: exact path matching becomes prefix matching"
            ));
        }
        let shape = Shape {
            methods: strings(frontend, "methods")
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            teams: self.route_teams(&source, &tenant, &loc),
            tenant,
        };
        if shape.tenant == "*" {
            self.any_tenant_route = true;
        }
        let (routes, ids) = self.domain_routes(&source, &domains, &shape, route_ids);
        Some((source, Imported { routes, ids, org }))
    }

    fn enabled_route_id(&mut self, route: &Value) -> Option<String> {
        let Some(source) = text(route, "id") else {
            self.warnings.push("a route without id skipped".into());
            return None;
        };
        if route.get("enabled") == Some(&Value::Bool(false)) {
            self.warnings
                .push(format!("route `{source}`: disabled, skipped"));
            return None;
        }
        Some(source)
    }

    /// The route's tenant (`*` stays `*`) and the organization of its product.
    fn route_tenant(&mut self, source: &str, loc: &Location) -> Option<(String, String)> {
        if loc.tenant == "*" {
            let Some(org) = self.any_org() else {
                self.warnings.push(format!(
                    "route `{source}`: at `_loc.tenant: *` in an export without tenants, skipped"
                ));
                return None;
            };
            return Some(("*".to_string(), org));
        }
        let Some(org) = self.org_at(loc) else {
            self.warnings.push(format!(
                "route `{source}`: its `_loc.tenant` is not an exported tenant, skipped"
            ));
            return None;
        };
        Some((org.clone(), org))
    }

    /// The organization of products of routes at `*`: it only bounds their environments, which
    /// are the same for every imported organization.
    fn any_org(&self) -> Option<String> {
        self.orgs
            .get("default")
            .or_else(|| self.orgs.by_source.values().next().map(String::as_str))
            .map(str::to_string)
    }

    /// The route's teams: `["*"]` for every team, or `None`, for tenant admins only (rule 9).
    fn route_teams(&mut self, source: &str, tenant: &str, loc: &Location) -> Option<Vec<String>> {
        let Some((ours, others)) = self.loc_teams((tenant != "*").then_some(tenant), loc) else {
            return Some(vec!["*".to_string()]);
        };
        if !others.is_empty() {
            self.warnings.push(format!(
                "route `{source}`: `_loc.teams` `{}` are no exported team of its tenant: nobody gets a right on it through them{}",
                others.join(", "),
                if ours.is_empty() { ", so it is for tenant admins only" } else { "" }
            ));
        }
        (!ours.is_empty()).then_some(ours)
    }

    /// One route per frontend domain (`host/path`), and their ids.
    fn domain_routes(
        &mut self,
        source: &str,
        domains: &[String],
        shape: &Shape,
        route_ids: &mut Ids,
    ) -> (Vec<Value>, Vec<String>) {
        let mut routes = Vec::new();
        let mut ids = Vec::new();
        for (i, domain) in domains.iter().enumerate() {
            let id = if i == 0 {
                route_ids.assign(source)
            } else {
                route_ids.assign(&format!("{source}-{}", i + 1))
            };
            let (hosts, prefix) = split_domain(domain, &mut self.warnings, source);
            routes.push(route_document(&id, hosts, prefix, shape));
            ids.push(id);
        }
        (routes, ids)
    }

    fn group_products(&mut self, groups: Groups) -> Vec<Value> {
        let mut products = Vec::new();
        for (group, (org, ours)) in groups {
            let Some(org) = org else {
                self.warnings.push(format!(
                    "service group `{group}`: no tenant and no route, not a product"
                ));
                continue;
            };
            let product = self.products.assign(&format!("group_{group}"));
            products.push(json!({"id": product, "organization": org, "routes": ours}));
        }
        products
    }
}

fn route_document(id: &str, hosts: Vec<String>, prefix: String, shape: &Shape) -> Value {
    let mut value = json!({"id": id, "path_prefix": prefix, "tenant": shape.tenant});
    let Some(object) = value.as_object_mut() else {
        return value;
    };
    if !hosts.is_empty() {
        object.insert("hosts".into(), json!(hosts));
    }
    if !shape.methods.is_empty() {
        object.insert("methods".into(), json!(shape.methods));
    }
    match &shape.teams {
        Some(teams) => object.insert("teams".into(), json!(teams)),
        None => object.insert(
            "permissions".into(),
            json!({"read": TENANT_ADMIN, "write": TENANT_ADMIN}),
        ),
    };
    value
}
