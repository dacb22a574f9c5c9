//! Routes (canonical prefixes, teams, required permissions), the permission
//! bits of roles, and products (bundles of routes).

use super::Compiler;
use crate::records::{Idx, ListedTeam, OrgEntry, ProductEntry, RouteEntry, RouteTeams};
use crate::text::is_http_token;
use rustc_hash::FxHashMap;

enum Pattern<'a> {
    Prefix(&'a str),
    Exact(&'a str),
}

impl<'d> Compiler<'d> {
    pub(super) fn compile_routes(&mut self) -> (Vec<Box<str>>, Vec<RouteEntry>) {
        let doc = self.doc;
        let mut vocabulary: Vec<Box<str>> = Vec::new();
        let mut bit_of: FxHashMap<&'d str, Idx> = FxHashMap::default();
        let mut routes = Vec::with_capacity(doc.routes.len());
        for route in &doc.routes {
            let id = route.id.as_str();
            let prefix = crate::path::canonical_prefix(&route.path_prefix).unwrap_or_else(|_| {
                self.problem(
                    "route",
                    id,
                    "path_prefix",
                    &route.path_prefix,
                    "path_prefix must be a canonical path: `/` first, no `?`, `#`, `;` parameter, dot segment, backslash, control character or encoded `.`, `/`, backslash, `;` or NUL, got",
                );
                b"/".to_vec()
            });
            for host in &route.hosts {
                if host.is_empty() || host.contains(['/', ' ']) {
                    self.problem("route", id, "hosts", host, "not a host name");
                }
            }
            for method in &route.methods {
                if !is_http_token(method) {
                    self.problem("route", id, "methods", method, "not an HTTP method");
                }
            }
            let tenant = if route.tenant == "*" {
                None
            } else {
                self.resolve("organization", "route", id, "tenant", &route.tenant)
            };
            let teams = match &route.teams {
                None => RouteTeams::Unrestricted,
                Some(list) if list.is_empty() => {
                    self.problem(
                        "route",
                        id,
                        "teams",
                        "[]",
                        "teams must not be empty (omit the field for no team check), got",
                    );
                    RouteTeams::Unrestricted
                }
                Some(list) if list.iter().any(|t| t == "*") => {
                    if list.len() > 1 {
                        self.problem(
                            "route",
                            id,
                            "teams",
                            &list
                                .iter()
                                .map(String::as_str)
                                .collect::<Vec<_>>()
                                .join(","),
                            "`*` must be the only entry, got",
                        );
                    }
                    RouteTeams::AnyTeam
                }
                Some(list) => {
                    let mut resolved = Vec::new();
                    for team in list {
                        let Some(t) = self.resolve("team", "route", id, "teams", team) else {
                            continue;
                        };
                        let owner = doc.teams.get(t as usize).map(|t| t.organization.as_str());
                        if tenant.is_some() && owner != Some(route.tenant.as_str()) {
                            let what = format!(
                                "team belongs to `{}`, not to the route's tenant:",
                                owner.unwrap_or("")
                            );
                            self.problem("route", id, "teams", team, &what);
                        }
                        if let Some(&org) = owner.and_then(|o| self.orgs.get(o)) {
                            resolved.push(ListedTeam { team: t, org });
                        }
                    }
                    resolved.sort_unstable();
                    resolved.dedup();
                    RouteTeams::Listed(resolved.into())
                }
            };
            let mut permission =
                |field: &str, value: &'d Option<String>, this: &mut Self| -> Option<Idx> {
                    let text = value.as_deref()?;
                    if text.is_empty() {
                        this.problem(
                            "route",
                            id,
                            field,
                            text,
                            "permission must be non-empty, got",
                        );
                        return None;
                    }
                    let next = vocabulary.len() as Idx;
                    Some(*bit_of.entry(text).or_insert_with(|| {
                        vocabulary.push(text.into());
                        next
                    }))
                };
            let (read_permission, write_permission) = match &route.permissions {
                Some(p) => (
                    permission("permissions.read", &p.read, self),
                    permission("permissions.write", &p.write, self),
                ),
                None => (None, None),
            };
            routes.push(RouteEntry {
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
                teams,
                read_permission,
                write_permission,
                public: route.public,
            });
        }
        (vocabulary, routes)
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
