//! Routes (canonical prefixes, teams, required permissions), the permission
//! bits of roles, and products (bundles of routes).

use super::Compiler;
use crate::document::Route;
use crate::records::{Idx, ListedTeam, OrgEntry, ProductEntry, RouteEntry, RouteTeams};
use crate::text::is_http_token;
use rustc_hash::FxHashMap;

enum Pattern<'a> {
    Prefix(&'a str),
    Exact(&'a str),
}

/// The distinct permissions routes require, each a bit of the grants'
/// permission sets (in the order first seen).
#[derive(Default)]
pub(super) struct Vocabulary<'d> {
    pub(super) names: Vec<Box<str>>,
    bit_of: FxHashMap<&'d str, Idx>,
}

impl<'d> Vocabulary<'d> {
    fn bit(&mut self, name: &'d str) -> Idx {
        let next = self.names.len() as Idx;
        *self.bit_of.entry(name).or_insert_with(|| {
            self.names.push(name.into());
            next
        })
    }
}

impl<'d> Compiler<'d> {
    /// Every route; the permissions they require become the vocabulary.
    pub(super) fn compile_routes(&mut self) -> (Vec<Box<str>>, Vec<RouteEntry>) {
        let doc = self.doc;
        let mut vocabulary = Vocabulary::default();
        let routes = doc
            .routes
            .iter()
            .map(|route| self.compile_route(route, &mut vocabulary))
            .collect();
        (vocabulary.names, routes)
    }

    fn compile_route(&mut self, route: &'d Route, vocabulary: &mut Vocabulary<'d>) -> RouteEntry {
        let id = route.id.as_str();
        let prefix = crate::path::canonical_prefix(&route.path_prefix).unwrap_or_else(|_| {
            let what = "path_prefix must be a canonical path: `/` first, no `?`, `#`, `;` parameter, dot segment, backslash, control character or encoded `.`, `/`, backslash, `;` or NUL, got";
            self.problem("route", id, "path_prefix", &route.path_prefix, what);
            b"/".to_vec()
        });
        for host in route
            .hosts
            .iter()
            .filter(|h| h.is_empty() || h.contains(['/', ' ']))
        {
            self.problem("route", id, "hosts", host, "not a host name");
        }
        for method in route.methods.iter().filter(|m| !is_http_token(m)) {
            self.problem("route", id, "methods", method, "not an HTTP method");
        }
        let tenant = match route.tenant.as_str() {
            "*" => None,
            name => self.resolve("organization", "route", id, "tenant", name),
        };
        let (read, write) = match &route.permissions {
            Some(p) => (
                self.route_permission(id, "permissions.read", p.read.as_deref(), vocabulary),
                self.route_permission(id, "permissions.write", p.write.as_deref(), vocabulary),
            ),
            None => (None, None),
        };
        RouteEntry {
            id: id.into(),
            prefix: prefix.into(),
            hosts: route
                .hosts
                .iter()
                .map(|h| h.to_ascii_lowercase().into())
                .collect(),
            methods: route
                .methods
                .iter()
                .map(|m| m.to_ascii_uppercase().into())
                .collect(),
            tenant,
            teams: self.route_teams(route, tenant.is_some()),
            read_permission: read,
            write_permission: write,
            public: route.public,
        }
    }

    /// A route's teams: none (no check), `["*"]` alone, or listed teams, of
    /// the route's tenant when it is concrete.
    fn route_teams(&mut self, route: &Route, concrete_tenant: bool) -> RouteTeams {
        let id = route.id.as_str();
        match &route.teams {
            None => RouteTeams::Unrestricted,
            Some(list) if list.is_empty() => {
                let what = "teams must not be empty (omit the field for no team check), got";
                self.problem("route", id, "teams", "[]", what);
                RouteTeams::Unrestricted
            }
            Some(list) if list.iter().any(|t| t == "*") => {
                if list.len() > 1 {
                    let what = "`*` must be the only entry, got";
                    self.problem("route", id, "teams", &list.join(","), what);
                }
                RouteTeams::AnyTeam
            }
            Some(list) => {
                RouteTeams::Listed(self.listed_teams(route, list, concrete_tenant).into())
            }
        }
    }

    fn listed_teams(
        &mut self,
        route: &Route,
        list: &[String],
        concrete_tenant: bool,
    ) -> Vec<ListedTeam> {
        let doc = self.doc;
        let mut resolved = Vec::new();
        for team in list {
            let Some(t) = self.resolve("team", "route", &route.id, "teams", team) else {
                continue;
            };
            let owner = doc.teams.get(t as usize).map(|t| t.organization.as_str());
            if concrete_tenant && owner != Some(route.tenant.as_str()) {
                let what = format!(
                    "team belongs to `{}`, not to the route's tenant:",
                    owner.unwrap_or("")
                );
                self.problem("route", &route.id, "teams", team, &what);
            }
            if let Some(&org) = owner.and_then(|o| self.orgs.get(o)) {
                resolved.push(ListedTeam { team: t, org });
            }
        }
        resolved.sort_unstable();
        resolved.dedup();
        resolved
    }

    /// A permission a route requires, as its bit; an empty one is refused.
    fn route_permission(
        &mut self,
        id: &str,
        field: &str,
        permission: Option<&'d str>,
        vocabulary: &mut Vocabulary<'d>,
    ) -> Option<Idx> {
        let text = permission?;
        if text.is_empty() {
            self.problem(
                "route",
                id,
                field,
                text,
                "permission must be non-empty, got",
            );
            return None;
        }
        Some(vocabulary.bit(text))
    }

    pub(super) fn role_permission_bits(&mut self, vocabulary: &[Box<str>]) -> Vec<Box<[u64]>> {
        let words = vocabulary.len().div_ceil(64);
        let mut out = Vec::with_capacity(self.doc.roles.len());
        for role in &self.doc.roles {
            let mut bits = vec![0u64; words];
            for grant in &role.permissions {
                let pattern = match grant.strip_suffix('*') {
                    Some(prefix) if !prefix.contains('*') => Pattern::Prefix(prefix),
                    _ if grant.is_empty() || grant.contains('*') => {
                        self.problem(
                            "role",
                            &role.id,
                            "permissions",
                            grant,
                            "a permission must be non-empty, with `*` only at the end, got",
                        );
                        continue;
                    }
                    _ => Pattern::Exact(grant),
                };
                for (bit, needed) in vocabulary.iter().enumerate() {
                    let granted = match pattern {
                        Pattern::Prefix(prefix) => needed.starts_with(prefix),
                        Pattern::Exact(exact) => **needed == *exact,
                    };
                    if granted {
                        if let Some(word) = bits.get_mut(bit / 64) {
                            *word |= 1u64 << (bit % 64);
                        }
                    }
                }
            }
            out.push(bits.into());
        }
        out
    }

    pub(super) fn compile_products(&mut self, orgs: &[OrgEntry]) -> Vec<ProductEntry> {
        let doc = self.doc;
        let mut out = Vec::with_capacity(doc.products.len());
        for product in &doc.products {
            let org = self.resolve(
                "organization",
                "product",
                &product.id,
                "organization",
                &product.organization,
            );
            let mut routes: Vec<Idx> = product
                .routes
                .iter()
                .filter_map(|r| self.resolve("route", "product", &product.id, "routes", r))
                .collect();
            routes.sort_unstable();
            routes.dedup();
            let envs = self.resolve_envs(
                "product",
                &product.id,
                &product.environments,
                org.and_then(|o| orgs.get(o as usize)),
            );
            out.push(ProductEntry {
                routes: routes.into(),
                envs: envs.into(),
            });
        }
        out
    }
}
