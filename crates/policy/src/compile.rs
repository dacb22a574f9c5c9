//! Compilation of a validated [`Document`] into a [`Snapshot`]: everything a
//! decision needs is resolved here, once (the scope closure, each
//! principal's effective roles, team rights and permissions per tenant it is
//! covered in, key digests, routes by prefix), and every rule of the format is
//! checked, reporting every problem, not only the first.
//!
//! By concern: [`orgs`] (organizations, environments, scopes), [`routes`]
//! (routes, permissions, products), [`principals`] (groups, apps, users and
//! their grants, through [`grants`]), [`keys`] (API keys, shipped and looked
//! up, by the same code), [`gateway`] (the Otoroshi identities), [`limits`]
//! (how far a document may expand).

mod gateway;
mod grants;
pub mod keys;
pub mod limits;
mod orgs;
mod principals;
mod routes;

use crate::document::Document;
use crate::error::{escape_value, InvalidSnapshot, Problem};
use crate::records::{AssertedTables, Idx, Inline, SnapshotStats};
use crate::snapshot::{Snapshot, SnapshotParts};
use crate::text::is_valid_id;
use crate::time::Timestamp;
use grants::GrantTable;
use rustc_hash::FxHashMap;

/// Compiles a parsed document, reporting every rule it breaks.
pub fn compile(doc: &Document) -> Result<Snapshot, InvalidSnapshot> {
    let mut compiler = Compiler::new(doc);
    compiler.index_all_ids();
    let parts = compiler.compile_parts();
    match parts {
        Some(parts) if compiler.problems.is_empty() => {
            Snapshot::assemble(parts).map_err(|_| InvalidSnapshot {
                // Digests were checked unique with a message naming both keys.
                problems: vec![],
            })
        }
        _ => Err(InvalidSnapshot {
            problems: compiler.problems,
        }),
    }
}

/// The document being compiled, its id indexes, and the problems found.
struct Compiler<'d> {
    doc: &'d Document,
    problems: Vec<Problem>,
    areas: FxHashMap<&'d str, Idx>,
    orgs: FxHashMap<&'d str, Idx>,
    teams: FxHashMap<&'d str, Idx>,
    roles: FxHashMap<&'d str, Idx>,
    groups: FxHashMap<&'d str, Idx>,
    apps: FxHashMap<&'d str, Idx>,
    products: FxHashMap<&'d str, Idx>,
    routes: FxHashMap<&'d str, Idx>,
    envs: FxHashMap<Box<str>, Idx>,
}

impl<'d> Compiler<'d> {
    fn new(doc: &'d Document) -> Self {
        Compiler {
            doc,
            problems: Vec::new(),
            areas: FxHashMap::default(),
            orgs: FxHashMap::default(),
            teams: FxHashMap::default(),
            roles: FxHashMap::default(),
            groups: FxHashMap::default(),
            apps: FxHashMap::default(),
            products: FxHashMap::default(),
            routes: FxHashMap::default(),
            envs: FxHashMap::default(),
        }
    }

    /// Indexes every collection's ids, reporting invalid and duplicate ones,
    /// and checks the revision.
    fn index_all_ids(&mut self) {
        let doc = self.doc;
        if !is_valid_id(&doc.revision) || doc.revision.len() > crate::text::MAX_REVISION_LEN {
            // It becomes a header value, an ETag and a metric name.
            let what = "revision must be 1 to 128 characters of `A-Za-z0-9._:-`, got";
            self.problem("snapshot", "(top level)", "revision", &doc.revision, what);
        }
        self.areas = self.index_ids("area", &doc.areas, |a| a.id.as_str());
        self.orgs = self.index_ids("organization", &doc.organizations, |o| o.id.as_str());
        self.teams = self.index_ids("team", &doc.teams, |t| t.id.as_str());
        self.roles = self.index_ids("role", &doc.roles, |r| r.id.as_str());
        self.groups = self.index_ids("group", &doc.groups, |g| g.id.as_str());
        self.index_ids("user", &doc.users, |u| u.id.as_str());
        self.apps = self.index_ids("app", &doc.apps, |a| a.id.as_str());
        self.index_ids("api_key", &doc.api_keys, |k| k.id.as_str());
        self.products = self.index_ids("product", &doc.products, |p| p.id.as_str());
        self.routes = self.index_ids("route", &doc.routes, |r| r.id.as_str());
    }

    /// Every part of the snapshot, in dependency order; `None` when the
    /// document expands beyond [`limits`] (refused before the work).
    fn compile_parts(&mut self) -> Option<SnapshotParts> {
        let doc = self.doc;
        let orgs = self.compile_orgs();
        let closure = self.scope_closure(&orgs);
        let team_org = self.team_orgs();
        let (vocabulary, routes) = self.compile_routes();
        if let Err(problem) = self.check_expansion(&closure, vocabulary.len()) {
            self.problems.push(problem);
            return None;
        }
        let role_bits = self.role_permission_bits(&vocabulary);
        let groups = self.compile_groups();
        let products = self.compile_products(&orgs);
        let apps = self.compile_apps();
        let keys = self.compile_keys(&orgs, &apps);
        let mut grants = GrantTable::new(doc, &closure, &team_org, &role_bits, vocabulary.len());
        self.grant_apps(&mut grants, &apps, &closure, &team_org);
        let (users, pending) = self.compile_users(&mut grants, &groups, &closure, &team_org);
        let gateway = self.gateway_ids(&team_org);
        let asserted = asserted_tables(doc, &role_bits, &groups);
        let stats = SnapshotStats {
            organizations: orgs.len(),
            teams: doc.teams.len(),
            users: users.len(),
            apps: apps.len(),
            api_keys: keys.len(),
            routes: routes.len(),
            grants: grants.len(),
        };
        let (grants, grants_by_principal) = grants.into_parts();
        Some(SnapshotParts {
            revision: doc.revision.as_str().into(),
            orgs,
            envs: std::mem::take(&mut self.envs),
            routes,
            apps,
            products,
            keys,
            users,
            grants,
            grants_by_principal,
            pending,
            gateway,
            asserted,
            stats,
        })
    }

    /// Each team's organization (`None` where it does not resolve, reported).
    fn team_orgs(&mut self) -> Vec<Option<Idx>> {
        let doc = self.doc;
        doc.teams
            .iter()
            .map(|t| {
                self.resolve(
                    "organization",
                    "team",
                    &t.id,
                    "organization",
                    &t.organization,
                )
            })
            .collect()
    }

    fn problem(
        &mut self,
        kind: &'static str,
        id: &str,
        field: impl Into<String>,
        value: &str,
        what: &str,
    ) {
        self.problems.push(Problem {
            kind,
            id: id.to_string(),
            field: field.into(),
            value: value.to_string(),
            what: format!("{what} `{}`", escape_value(value)),
        });
    }

    fn index_ids<T>(
        &mut self,
        kind: &'static str,
        items: &'d [T],
        id_of: impl Fn(&'d T) -> &'d str,
    ) -> FxHashMap<&'d str, Idx> {
        let mut index = FxHashMap::default();
        for (i, item) in items.iter().enumerate() {
            let id = id_of(item);
            if !is_valid_id(id) {
                self.problem(
                    kind,
                    id,
                    "id",
                    id,
                    "id must be non-empty and use only `A-Za-z0-9._:-`, got",
                );
            } else if index.insert(id, i as Idx).is_some() {
                self.problem(kind, id, "id", id, "duplicate id");
            }
        }
        index
    }

    fn resolve(
        &mut self,
        index_name: &'static str,
        kind: &'static str,
        id: &str,
        field: impl Into<String>,
        value: &str,
    ) -> Option<Idx> {
        let index = match index_name {
            "area" => &self.areas,
            "organization" => &self.orgs,
            "team" => &self.teams,
            "role" => &self.roles,
            "group" => &self.groups,
            "app" => &self.apps,
            "product" => &self.products,
            _ => &self.routes,
        };
        if let Some(&idx) = index.get(value) {
            return Some(idx);
        }
        let what = format!("unknown {index_name}");
        self.problem(kind, id, field, value, &what);
        None
    }

    fn parse_time(
        &mut self,
        kind: &'static str,
        id: &str,
        field: &str,
        value: Option<&str>,
    ) -> Option<Timestamp> {
        let text = value?;
        let parsed = Timestamp::parse_rfc3339(text);
        if parsed.is_none() {
            self.problem(kind, id, field, text, "not an RFC 3339 date-time");
        }
        parsed
    }
}

/// Roles by id with their permission bits, groups by id with their
/// organization and roles: what an `asserted` token's claims are checked
/// against (x3). Unresolved groups (reported) are left out.
fn asserted_tables(
    doc: &Document,
    role_bits: &[Box<[u64]>],
    groups: &[principals::CompiledGroup],
) -> AssertedTables {
    let roles = doc
        .roles
        .iter()
        .zip(role_bits)
        .map(|(role, bits)| (role.id.as_str().into(), Inline::from(bits.clone())))
        .collect();
    let groups = doc
        .groups
        .iter()
        .zip(groups)
        .filter_map(|(group, compiled)| {
            let roles = compiled
                .roles
                .iter()
                .filter_map(|&r| doc.roles.get(r as usize).map(|r| r.id.as_str().into()))
                .collect();
            Some((group.id.as_str().into(), (compiled.org?, roles)))
        })
        .collect();
    AssertedTables { roles, groups }
}
