//! Compilation of a validated [`Document`] into an immutable, indexed [`Snapshot`].
//!
//! Everything a decision needs is resolved here, once: the scope closure
//! (area → organizations → sub-organizations), each principal's effective roles,
//! team rights and permissions per tenant it is covered in, key hashes, and a
//! route table keyed by path prefix. A decision is then a handful of hash lookups.

use super::document::*;
use super::error::{escape_value, InvalidSnapshot, Problem};
pub(crate) use super::lookup::{IdxList, Inline, KeyIndex, RouteIndex};
use super::time::Timestamp;
use rustc_hash::{FxHashMap, FxHashSet};

pub(crate) type Idx = u32;

/// A compiled, immutable policy snapshot. Build it with [`Snapshot::compile`] or
/// [`super::load_snapshot`]; share it behind an `Rc`/`Arc`.
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) revision: Box<str>,
    pub(crate) orgs: Vec<OrgEntry>,
    /// Organization ids and handles (they never collide) → organization.
    pub(crate) org_by_name: FxHashMap<Box<str>, Idx>,
    pub(crate) envs: FxHashMap<Box<str>, Idx>,
    pub(crate) routes: Vec<RouteEntry>,
    /// Canonical path prefix → candidate routes, best first.
    pub(crate) route_index: RouteIndex,
    /// The same with prefixes lower-cased, for `path_case: insensitive`;
    /// `None` when no prefix has an upper-case letter (then it would equal
    /// `route_index`).
    pub(crate) folded_route_index: Option<RouteIndex>,
    pub(crate) apps: Vec<AppEntry>,
    pub(crate) app_by_id: FxHashMap<Box<str>, Idx>,
    pub(crate) products: Vec<ProductEntry>,
    pub(crate) keys: Vec<KeyEntry>,
    pub(crate) key_index: KeyIndex,
    pub(crate) users: Vec<UserEntry>,
    pub(crate) user_by_id: FxHashMap<Box<str>, Idx>,
    pub(crate) grants: Vec<Grants>,
    pub(crate) grants_by_principal: FxHashMap<(PrincipalRef, Idx), Idx>,
    /// (user, org) pairs covered only by an invited membership.
    pub(crate) pending: FxHashSet<(Idx, Idx)>,
    /// Where the host gateway's own identities land (Otoroshi extension).
    pub(crate) gateway: GatewayIds,
    pub(crate) stats: SnapshotStats,
}

/// The snapshot format's Otoroshi extension, compiled: the gateway's
/// validated apikeys and users placed among the snapshot's principals, and
/// team ids for apikeys the gateway places by their location (`_loc`).
#[derive(Debug, Default)]
pub(crate) struct GatewayIds {
    /// `apps[].otoroshi_client_ids` → app.
    pub apps: FxHashMap<Box<str>, Idx>,
    /// `users[].otoroshi_emails`, lower-cased → user.
    pub users: FxHashMap<Box<str>, Idx>,
    /// Team id → (team index, organization).
    pub teams: FxHashMap<Box<str>, (Idx, Idx)>,
}

/// Counts, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    pub organizations: usize,
    pub teams: usize,
    pub users: usize,
    pub apps: usize,
    pub api_keys: usize,
    pub routes: usize,
    pub grants: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PrincipalRef {
    App(Idx),
    User(Idx),
}

#[derive(Debug)]
pub(crate) struct OrgEntry {
    pub id: Box<str>,
    pub handle: Box<str>,
    pub parent: Option<Idx>,
    pub suspended: bool,
    pub expires_at: Option<Timestamp>,
    pub envs: IdxList,
}

#[derive(Debug)]
pub(crate) enum RouteTeams {
    Unrestricted,
    AnyTeam,
    /// The listed teams (sorted) and the organization of each.
    Listed(Box<[ListedTeam]>),
}

/// A team a route lists, with its organization: a `"*"` right counts only
/// for teams of the resolved tenant (contract v1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ListedTeam {
    pub team: Idx,
    pub org: Idx,
}

#[derive(Debug)]
pub(crate) struct RouteEntry {
    pub id: Box<str>,
    /// The canonical `path_prefix` ([`super::path::canonical_prefix`]).
    pub prefix: Box<[u8]>,
    pub hosts: Box<[Box<str>]>,
    pub methods: Box<[Box<str>]>,
    pub tenant: Option<Idx>,
    pub teams: RouteTeams,
    pub read_permission: Option<Idx>,
    pub write_permission: Option<Idx>,
    pub public: bool,
}

#[derive(Debug)]
pub(crate) struct AppEntry {
    pub principal: Box<str>,
    pub org: Idx,
    pub approved: bool,
    pub products: IdxList,
    /// The app's grants in its own organization, the usual tenant: found here
    /// rather than by a probe into the large `grants_by_principal` map (a cold
    /// cache line per decision in snapshots with millions of keys).
    pub home_grants: Option<Idx>,
}

#[derive(Debug)]
pub(crate) struct ProductEntry {
    /// Sorted route indexes.
    pub routes: IdxList,
    /// Resolved: an empty list in the document means every environment of the organization.
    pub envs: IdxList,
}

#[derive(Debug)]
pub(crate) struct KeyEntry {
    /// SHA-256 of the raw key.
    pub digest: [u8; 32],
    pub app: Idx,
    pub status: KeyStatus,
    pub expires_at: Option<Timestamp>,
    pub read_only: bool,
    /// `None` when the key lists no environments (no restriction of its own).
    pub envs: Option<IdxList>,
}

#[derive(Debug)]
pub(crate) struct UserEntry {
    pub principal: Box<str>,
    pub default_tenant: Option<Idx>,
}

/// What a principal holds in one tenant: computed at load time, shared between
/// principals that hold the same thing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Grants {
    pub roles: Box<[Box<str>]>,
    pub roles_header: Box<str>,
    pub teams: Box<[Box<str>]>,
    pub teams_header: Box<str>,
    /// Rights on the tenant's own teams, sorted by team index.
    pub rights: Box<[(Idx, Right)]>,
    pub star: Option<Right>,
    /// The strongest right held on any team of the tenant.
    pub best_team_right: Option<Right>,
    /// Bit set over the distinct permissions that routes require.
    pub permissions: Inline<u64, 2>,
}

impl Grants {
    pub(crate) fn has_permission(&self, bit: Idx) -> bool {
        let word = (bit / 64) as usize;
        self.permissions
            .get(word)
            .is_some_and(|w| w & (1u64 << (bit % 64)) != 0)
    }

    pub(crate) fn right_on(&self, team: Idx) -> Option<Right> {
        self.rights
            .binary_search_by_key(&team, |(t, _)| *t)
            .ok()
            .and_then(|i| self.rights.get(i))
            .map(|(_, r)| *r)
    }
}

impl Snapshot {
    /// Compiles an `api_keys` entry that came from outside the snapshot (an
    /// on-demand key lookup) against it: its app must be in the snapshot and its
    /// environments those of the app's organization, as at load time.
    pub fn external_key(&self, json: &str) -> Result<super::decide::ExternalKey, String> {
        let key: ApiKey =
            serde_json::from_str(json).map_err(|e| format!("api key lookup answer: {e}"))?;
        let problem = |field: &str, what: &str, value: &str| {
            format!("api_key `{}`: field `{field}`: {what} `{value}`", key.id)
        };
        let digest = decode_sha256_hex(&key.sha256).ok_or_else(|| {
            problem(
                "sha256",
                "sha256 must be 64 lower-case hex digits, got",
                &key.sha256,
            )
        })?;
        let app = *self
            .app_by_id
            .get(key.app.as_str())
            .ok_or_else(|| problem("app", "unknown app", &key.app))?;
        let org = self.apps.get(app as usize).and_then(|a| self.org(a.org));
        let expires_at = match &key.expires_at {
            Some(text) => Some(
                Timestamp::parse_rfc3339(text)
                    .ok_or_else(|| problem("expires_at", "not an RFC 3339 date-time", text))?,
            ),
            None => None,
        };
        let envs = if key.environments.is_empty() {
            None
        } else {
            let mut envs = Vec::with_capacity(key.environments.len());
            for env in &key.environments {
                match self.envs.get(env.as_str()) {
                    Some(&e) if org.is_some_and(|o| o.envs.contains(&e)) => envs.push(e),
                    _ => {
                        return Err(problem(
                            "environments",
                            "not an environment of the app's organization:",
                            env,
                        ))
                    }
                }
            }
            envs.sort_unstable();
            envs.dedup();
            Some(envs.into())
        };
        Ok(super::decide::ExternalKey {
            digest,
            entry: KeyEntry {
                digest,
                app,
                status: key.status,
                expires_at,
                read_only: key.read_only,
                envs,
            },
        })
    }

    pub fn revision(&self) -> &str {
        &self.revision
    }

    pub fn stats(&self) -> SnapshotStats {
        self.stats
    }

    pub(crate) fn org(&self, idx: Idx) -> Option<&OrgEntry> {
        self.orgs.get(idx as usize)
    }

    /// Compiles a parsed document, reporting every rule it breaks.
    pub fn compile(doc: &Document) -> Result<Snapshot, InvalidSnapshot> {
        Compiler::new(doc).run()
    }
}

/// Longest revision accepted: it is echoed in every annotated request.
pub const MAX_REVISION_LEN: usize = 128;

/// The id alphabet of spec §1, `A-Za-z0-9._:-`, non-empty.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub(crate) fn decode_sha256_hex(text: &str) -> Option<[u8; 32]> {
    if !is_sha256_hex(text) {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let hi = (*pair.first()? as char).to_digit(16)?;
        let lo = (*pair.get(1)? as char).to_digit(16)?;
        *byte = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

fn is_http_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Roles confined to the tenants an organization covers (a group's), or
/// valid wherever their membership covers (`None`).
type ScopedRoles = (Option<Idx>, Vec<Idx>);
/// Roles and (team or `*`, right) pairs collected for one tenant.
type TenantAccumulator = (Vec<ScopedRoles>, Vec<(Option<Idx>, Right)>);

/// A group: its organization and its roles.
struct CompiledGroup {
    org: Option<Idx>,
    roles: Vec<Idx>,
}

/// Limits on what compiling a snapshot may expand to, so that its cost stays
/// proportional to the document: without them a few-MB hostile snapshot
/// (every user in an area of thousands of organizations, thousands of roles
/// with wildcard permissions) could exhaust a 32-bit VM. Each is far above
/// what `policyctl generate` produces for a million keys.
pub mod limits {
    /// (principal, tenant) pairs whose grants are computed.
    pub const MAX_GRANT_PAIRS: u64 = 8_000_000;
    /// Those pairs times the roles and team rights folded into each.
    pub const MAX_GRANT_WORK: u64 = 64_000_000;
    /// Role permission patterns times the distinct permissions routes require.
    pub const MAX_PERMISSION_WORK: u64 = 64_000_000;
    /// 64-bit words of permission bit sets (per role and per grant).
    pub const MAX_PERMISSION_WORDS: u64 = 16_000_000;
}
/// A grant's identity: sorted roles, sorted team rights, the `*` right.
type GrantKey = (Vec<Idx>, Vec<(Idx, Right)>, Option<Right>);

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

#[derive(Clone, Copy)]
enum Scope {
    Area(Idx),
    Org(Idx),
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

    /// Indexes one collection's ids, reporting invalid and duplicate ones.
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

    fn intern_env(&mut self, name: &str) -> Idx {
        let next = self.envs.len() as Idx;
        *self.envs.entry(name.into()).or_insert(next)
    }

    fn run(mut self) -> Result<Snapshot, InvalidSnapshot> {
        let doc = self.doc;
        if !is_valid_id(&doc.revision) || doc.revision.len() > MAX_REVISION_LEN {
            // It becomes a header value, an ETag and a metric name.
            let what = "revision must be 1 to 128 characters of `A-Za-z0-9._:-`, got";
            self.problem("snapshot", "(top level)", "revision", &doc.revision, what);
        }
        self.areas = self.index_ids("area", &doc.areas, |a| a.id.as_str());
        self.orgs = self.index_ids("organization", &doc.organizations, |o| o.id.as_str());
        self.teams = self.index_ids("team", &doc.teams, |t| t.id.as_str());
        self.roles = self.index_ids("role", &doc.roles, |r| r.id.as_str());
        self.groups = self.index_ids("group", &doc.groups, |g| g.id.as_str());
        let _users = self.index_ids("user", &doc.users, |u| u.id.as_str());
        self.apps = self.index_ids("app", &doc.apps, |a| a.id.as_str());
        let _keys = self.index_ids("api_key", &doc.api_keys, |k| k.id.as_str());
        self.products = self.index_ids("product", &doc.products, |p| p.id.as_str());
        self.routes = self.index_ids("route", &doc.routes, |r| r.id.as_str());

        let orgs = self.compile_orgs();
        let closure = self.scope_closure(&orgs);
        let team_org: Vec<Option<Idx>> = doc
            .teams
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
            .collect();
        let (permission_bits, routes) = self.compile_routes();
        if let Err(problem) = self.check_expansion(&closure, permission_bits.len()) {
            // Refused before anything proportional to the expansion is allocated.
            self.problems.push(problem);
            return Err(InvalidSnapshot {
                problems: self.problems,
            });
        }
        let role_bits = self.role_permission_bits(&permission_bits);
        let groups = self.compile_groups();
        let products = self.compile_products(&orgs);
        let mut apps = self.compile_apps();
        let keys = self.compile_keys(&orgs, &apps);

        let mut grants =
            GrantTable::new(doc, &closure, &team_org, &role_bits, permission_bits.len());
        self.grant_apps(&mut grants, &apps, &closure, &team_org);
        let (user_entries, pending) = self.compile_users(&mut grants, &groups, &closure, &team_org);

        let mut gateway = self.check_otoroshi_identities();
        for (position, (team, org)) in doc.teams.iter().zip(&team_org).enumerate() {
            if let Some(org) = *org {
                gateway
                    .teams
                    .entry(team.id.as_str().into())
                    .or_insert((position as Idx, org));
            }
        }

        if !self.problems.is_empty() {
            return Err(InvalidSnapshot {
                problems: self.problems,
            });
        }

        let org_by_name = org_names(&orgs);
        let (route_index, folded_route_index) = route_tables(&routes);
        let stats = SnapshotStats {
            organizations: orgs.len(),
            teams: doc.teams.len(),
            users: user_entries.len(),
            apps: apps.len(),
            api_keys: keys.len(),
            routes: routes.len(),
            grants: grants.grants.len(),
        };
        link_home_grants(&mut apps, &grants.by_principal);
        // Digests were checked unique above.
        let key_index = KeyIndex::build(&keys).unwrap_or_default();
        Ok(Snapshot {
            revision: doc.revision.as_str().into(),
            orgs,
            org_by_name,
            envs: self.envs,
            routes,
            route_index,
            folded_route_index,
            app_by_id: ids_by_principal(apps.iter().map(|a| &*a.principal), "app:"),
            apps,
            products,
            keys,
            key_index,
            user_by_id: ids_by_principal(user_entries.iter().map(|u| &*u.principal), "user:"),
            users: user_entries,
            grants: grants.grants,
            grants_by_principal: grants.by_principal,
            pending,
            gateway,
            stats,
        })
    }

    /// How much work and memory the grants and permission bits of this
    /// document take, checked against [`limits`] before any of it is done.
    fn check_expansion(&self, closure: &Closure, vocabulary: usize) -> Result<(), Problem> {
        let doc = self.doc;
        let mut pairs = 0u64;
        let mut work = 0u64;
        let mut count = |covered: usize, items: usize| {
            let covered = covered as u64;
            pairs = pairs.saturating_add(covered);
            work = work.saturating_add(covered.saturating_mul(1 + items as u64));
        };
        for app in &doc.apps {
            if let Some(&org) = self.orgs.get(app.organization.as_str()) {
                count(
                    closure.org_cover(org).len(),
                    app.roles.len() + app.teams.len(),
                );
            }
        }
        for membership in doc.users.iter().flat_map(|u| &u.memberships) {
            if let Some(scope) = self.scope_of(&membership.scope) {
                let items = membership.roles.len() + membership.teams.len();
                let group_roles: usize = membership
                    .groups
                    .iter()
                    .filter_map(|g| self.groups.get(g.as_str()))
                    .filter_map(|&g| doc.groups.get(g as usize))
                    .map(|g| g.roles.len())
                    .sum();
                count(closure.cover(scope).len(), items + group_roles);
            }
        }
        let patterns: u64 = doc.roles.iter().map(|r| r.permissions.len() as u64).sum();
        let words = vocabulary.div_ceil(64) as u64;
        let checks = [
            (
                pairs,
                limits::MAX_GRANT_PAIRS,
                "users[].memberships, apps[]",
                "(principal, tenant) grants",
            ),
            (
                work,
                limits::MAX_GRANT_WORK,
                "users[].memberships, apps[]",
                "role and team entries over covered tenants",
            ),
            (
                patterns.saturating_mul(vocabulary as u64),
                limits::MAX_PERMISSION_WORK,
                "roles[].permissions",
                "permission patterns × distinct route permissions",
            ),
            (
                (doc.roles.len() as u64)
                    .saturating_add(pairs)
                    .saturating_mul(words),
                limits::MAX_PERMISSION_WORDS,
                "roles[].permissions",
                "64-bit permission words",
            ),
        ];
        for (amount, limit, field, what) in checks {
            if amount > limit {
                return Err(Problem {
                    kind: "snapshot",
                    id: "(top level)".into(),
                    field: field.into(),
                    value: amount.to_string(),
                    what: format!(
                        "the snapshot expands to {amount} {what}, more than the limit of {limit}"
                    ),
                });
            }
        }
        Ok(())
    }

    fn scope_of(&self, name: &str) -> Option<Scope> {
        if let Some(&org) = self.orgs.get(name) {
            Some(Scope::Org(org))
        } else {
            self.areas.get(name).map(|&area| Scope::Area(area))
        }
    }

    /// Apps: their organization covers itself and its sub-organizations.
    fn grant_apps(
        &mut self,
        grants: &mut GrantTable<'_>,
        apps: &[AppEntry],
        closure: &Closure,
        team_org: &[Option<Idx>],
    ) {
        let doc = self.doc;
        for (app_idx, (app, entry)) in doc.apps.iter().zip(apps).enumerate() {
            let roles: Vec<Idx> = app
                .roles
                .iter()
                .filter_map(|r| self.resolve("role", "app", &app.id, "roles", r))
                .collect();
            let scope = Scope::Org(entry.org);
            let rights = self.resolve_rights(
                "app", &app.id, "teams", &app.teams, scope, closure, team_org,
            );
            let roles = [(None, roles)];
            for &tenant in closure.org_cover(entry.org) {
                grants.add(PrincipalRef::App(app_idx as Idx), tenant, &roles, &rights);
            }
        }
    }

    /// Users: the union over active memberships covering each tenant.
    fn compile_users(
        &mut self,
        grants: &mut GrantTable<'_>,
        groups: &[CompiledGroup],
        closure: &Closure,
        team_org: &[Option<Idx>],
    ) -> (Vec<UserEntry>, FxHashSet<(Idx, Idx)>) {
        let doc = self.doc;
        let mut user_entries = Vec::with_capacity(doc.users.len());
        let mut pending = FxHashSet::default();
        for (user_idx, user) in doc.users.iter().enumerate() {
            let user_idx = user_idx as Idx;
            let mut per_tenant: FxHashMap<Idx, TenantAccumulator> = FxHashMap::default();
            let mut invited_tenants = Vec::new();
            let mut active_scopes: Vec<Option<Idx>> = Vec::new();
            for (m_index, membership) in user.memberships.iter().enumerate() {
                let field = |name: &str| format!("memberships[{m_index}].{name}");
                let scope = self.scope_of(&membership.scope);
                if scope.is_none() {
                    let what = "unknown area or organization";
                    self.problem("user", &user.id, field("scope"), &membership.scope, what);
                }
                let roles =
                    self.membership_roles(&user.id, m_index, membership, scope, groups, closure);
                let Some(scope) = scope else { continue };
                let rights = self.resolve_rights(
                    "user",
                    &user.id,
                    &field("teams"),
                    &membership.teams,
                    scope,
                    closure,
                    team_org,
                );
                let covered = closure.cover(scope);
                match membership.status {
                    MembershipStatus::Invited => invited_tenants.extend_from_slice(covered),
                    MembershipStatus::Active => {
                        active_scopes.push(match scope {
                            Scope::Org(org) => Some(org),
                            Scope::Area(_) => None,
                        });
                        for &tenant in covered {
                            let slot = per_tenant.entry(tenant).or_default();
                            slot.0.extend(roles.iter().cloned());
                            slot.1.extend(rights.iter().copied());
                        }
                    }
                }
            }
            for (tenant, (roles, rights)) in &per_tenant {
                grants.add(PrincipalRef::User(user_idx), *tenant, roles, rights);
            }
            for tenant in invited_tenants {
                if !per_tenant.contains_key(&tenant) {
                    pending.insert((user_idx, tenant));
                }
            }
            let default_tenant = match active_scopes.split_first() {
                Some((first @ Some(_), rest)) if rest.iter().all(|s| s == first) => *first,
                _ => None,
            };
            user_entries.push(UserEntry {
                principal: format!("user:{}", user.id).into(),
                default_tenant,
            });
        }
        (user_entries, pending)
    }

    /// A membership's roles, each with the organization its group confines
    /// it to (`None`: the membership's own roles, valid wherever it covers).
    /// A group must belong to the organization the membership is scoped to,
    /// or to an organization of the area it is scoped to (contract v1.1).
    fn membership_roles(
        &mut self,
        user: &str,
        m_index: usize,
        membership: &Membership,
        scope: Option<Scope>,
        groups: &[CompiledGroup],
        closure: &Closure,
    ) -> Vec<ScopedRoles> {
        let field = |name: &str| format!("memberships[{m_index}].{name}");
        let own: Vec<Idx> = membership
            .roles
            .iter()
            .filter_map(|r| self.resolve("role", "user", user, field("roles"), r))
            .collect();
        let mut roles = vec![(None, own)];
        for group in &membership.groups {
            let Some(g) = self.resolve("group", "user", user, field("groups"), group) else {
                continue;
            };
            let Some(compiled) = groups.get(g as usize) else {
                continue;
            };
            let Some(org) = compiled.org else { continue };
            let inside = match scope {
                Some(Scope::Org(scope_org)) => org == scope_org,
                Some(Scope::Area(_)) => scope.is_some_and(|s| closure.cover(s).contains(&org)),
                None => true,
            };
            if !inside {
                let owner = self
                    .doc
                    .groups
                    .get(g as usize)
                    .map_or("", |g| g.organization.as_str());
                let what = format!(
                    "group belongs to organization `{owner}`, outside the membership's scope `{}`:",
                    membership.scope
                );
                self.problem("user", user, field("groups"), group, &what);
                continue;
            }
            roles.push((Some(org), compiled.roles.clone()));
        }
        roles
    }

    fn compile_orgs(&mut self) -> Vec<OrgEntry> {
        let doc = self.doc;
        let mut handles: FxHashMap<&str, &str> = FxHashMap::default();
        let mut orgs = Vec::with_capacity(doc.organizations.len());
        for org in &doc.organizations {
            if self.areas.contains_key(org.id.as_str()) {
                self.problem(
                    "organization",
                    &org.id,
                    "id",
                    &org.id,
                    "id is also an area id, so a membership scope naming it is ambiguous:",
                );
            }
            if !is_valid_id(&org.handle) {
                self.problem(
                    "organization",
                    &org.id,
                    "handle",
                    &org.handle,
                    "handle must be non-empty and use only `A-Za-z0-9._:-`, got",
                );
            } else if let Some(other) = handles.insert(&org.handle, &org.id) {
                let what = format!("handle already used by organization `{other}`:");
                self.problem("organization", &org.id, "handle", &org.handle, &what);
            }
            if let Some(&owner) = self.orgs.get(org.handle.as_str()) {
                if doc.organizations.get(owner as usize).map(|o| o.id.as_str())
                    != Some(org.id.as_str())
                {
                    self.problem(
                        "organization",
                        &org.id,
                        "handle",
                        &org.handle,
                        "handle equals another organization's id",
                    );
                }
            }
            let area = match &org.area {
                Some(a) => self.resolve("area", "organization", &org.id, "area", a),
                None => None,
            };
            let parent = match &org.parent {
                Some(p) => self.resolve("organization", "organization", &org.id, "parent", p),
                None => None,
            };
            if let Some(parent_doc) = parent.and_then(|p| doc.organizations.get(p as usize)) {
                if let Some(grandparent) = &parent_doc.parent {
                    let what = format!("parent has a parent (`{grandparent}`); sub-organizations cannot have children:");
                    self.problem("organization", &org.id, "parent", &parent_doc.id, &what);
                }
                if let (Some(own), parent_area) = (&org.area, &parent_doc.area) {
                    if parent_area.as_deref() != Some(own.as_str()) {
                        let what = format!(
                            "a sub-organization's area must equal its parent's (`{}`), got",
                            parent_area.as_deref().unwrap_or("none")
                        );
                        self.problem("organization", &org.id, "area", own, &what);
                    }
                }
            }
            let _ = area;
            let expires_at = self.parse_time(
                "organization",
                &org.id,
                "expires_at",
                org.expires_at.as_deref(),
            );
            let mut envs = Vec::new();
            for env in &org.environments {
                if !is_valid_id(env) {
                    self.problem(
                        "organization",
                        &org.id,
                        "environments",
                        env,
                        "environment must use only `A-Za-z0-9._:-`, got",
                    );
                }
                envs.push(self.intern_env(env));
            }
            envs.sort_unstable();
            envs.dedup();
            orgs.push(OrgEntry {
                id: org.id.as_str().into(),
                handle: org.handle.as_str().into(),
                parent,
                suspended: org.status == OrgStatus::Suspended,
                expires_at,
                envs: envs.into(),
            });
        }
        orgs
    }

    fn scope_closure(&self, orgs: &[OrgEntry]) -> Closure {
        let doc = self.doc;
        let mut org_cover: Vec<Vec<Idx>> = (0..orgs.len() as Idx).map(|i| vec![i]).collect();
        let mut area_cover: Vec<Vec<Idx>> = vec![Vec::new(); doc.areas.len()];
        for (i, org) in doc.organizations.iter().enumerate() {
            let parent = orgs.get(i).and_then(|o| o.parent);
            if let Some(list) = parent.and_then(|p| org_cover.get_mut(p as usize)) {
                list.push(i as Idx);
            }
            // A sub-organization belongs to its parent's area.
            let area_name = match parent.and_then(|p| doc.organizations.get(p as usize)) {
                Some(parent_doc) => parent_doc.area.as_deref(),
                None => org.area.as_deref(),
            };
            let area = area_name.and_then(|a| self.areas.get(a));
            if let Some(list) = area.and_then(|a| area_cover.get_mut(*a as usize)) {
                list.push(i as Idx);
            }
        }
        Closure {
            org_cover,
            area_cover,
        }
    }

    /// Resolves a team-rights map; each team must belong to an organization the scope covers.
    #[allow(clippy::too_many_arguments)]
    fn resolve_rights(
        &mut self,
        kind: &'static str,
        id: &str,
        field: &str,
        rights: &TeamRights,
        scope: Scope,
        closure: &Closure,
        team_org: &[Option<Idx>],
    ) -> Vec<(Option<Idx>, Right)> {
        let mut out = Vec::with_capacity(rights.len());
        for &(ref team, right) in rights {
            if team == "*" {
                out.push((None, right));
                continue;
            }
            let Some(team_idx) = self.resolve("team", kind, id, field, team) else {
                continue;
            };
            let Some(org) = team_org.get(team_idx as usize).copied().flatten() else {
                continue;
            };
            if !closure.cover(scope).contains(&org) {
                let owner = self
                    .doc
                    .teams
                    .get(team_idx as usize)
                    .map(|t| t.organization.as_str())
                    .unwrap_or("");
                let what = format!("team belongs to organization `{owner}`, outside the scope:");
                self.problem(kind, id, field, team, &what);
                continue;
            }
            out.push((Some(team_idx), right));
        }
        out
    }

    fn compile_routes(&mut self) -> (Vec<Box<str>>, Vec<RouteEntry>) {
        let doc = self.doc;
        let mut vocabulary: Vec<Box<str>> = Vec::new();
        let mut bit_of: FxHashMap<&'d str, Idx> = FxHashMap::default();
        let mut routes = Vec::with_capacity(doc.routes.len());
        for route in &doc.routes {
            let id = route.id.as_str();
            let prefix = super::path::canonical_prefix(&route.path_prefix).unwrap_or_else(|_| {
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

    fn role_permission_bits(&mut self, vocabulary: &[Box<str>]) -> Vec<Box<[u64]>> {
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

    fn compile_groups(&mut self) -> Vec<CompiledGroup> {
        let doc = self.doc;
        doc.groups
            .iter()
            .map(|group| {
                let org = self.resolve(
                    "organization",
                    "group",
                    &group.id,
                    "organization",
                    &group.organization,
                );
                let roles = group
                    .roles
                    .iter()
                    .filter_map(|r| self.resolve("role", "group", &group.id, "roles", r))
                    .collect();
                CompiledGroup { org, roles }
            })
            .collect()
    }

    /// Environments named by a key or product must be environments of its organization;
    /// an empty list means all of them.
    fn resolve_envs(
        &mut self,
        kind: &'static str,
        id: &str,
        listed: &[String],
        org: Option<&OrgEntry>,
    ) -> Box<[Idx]> {
        let Some(org) = org else { return Box::new([]) };
        if listed.is_empty() {
            return Box::from(&*org.envs);
        }
        let mut out = Vec::with_capacity(listed.len());
        for env in listed {
            match self.envs.get(env.as_str()) {
                Some(&e) if org.envs.contains(&e) => out.push(e),
                _ => {
                    let what = format!("not an environment of organization `{}`:", org.id);
                    self.problem(kind, id, "environments", env, &what);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out.into()
    }

    fn compile_products(&mut self, orgs: &[OrgEntry]) -> Vec<ProductEntry> {
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

    /// Extension (Otoroshi shell): `apps[].otoroshi_client_ids` and
    /// `users[].otoroshi_emails` are non-empty and unique across the snapshot
    /// (e-mails case-insensitively), so an Otoroshi identity names one principal.
    /// Checks the Otoroshi identities and places them (apps and users are
    /// compiled in document order).
    fn check_otoroshi_identities(&mut self) -> GatewayIds {
        use std::collections::hash_map::Entry;
        let doc = self.doc;
        let mut placed = GatewayIds::default();
        let mut client_ids: FxHashMap<&str, &str> = FxHashMap::default();
        for (app_idx, app) in doc.apps.iter().enumerate() {
            for client_id in &app.otoroshi_client_ids {
                if client_id.trim().is_empty() {
                    let what = "an Otoroshi client id must be non-empty, got";
                    self.problem("app", &app.id, "otoroshi_client_ids", client_id, what);
                    continue;
                }
                match client_ids.entry(client_id) {
                    Entry::Vacant(slot) => {
                        slot.insert(&app.id);
                        placed
                            .apps
                            .insert(client_id.as_str().into(), app_idx as Idx);
                    }
                    Entry::Occupied(owner) => {
                        let what = format!("client id already used by app `{}`:", owner.get());
                        self.problem("app", &app.id, "otoroshi_client_ids", client_id, &what);
                    }
                }
            }
        }
        let mut emails: FxHashMap<String, &str> = FxHashMap::default();
        for (user_idx, user) in doc.users.iter().enumerate() {
            for email in &user.otoroshi_emails {
                if email.trim().is_empty() {
                    let what = "an Otoroshi e-mail must be non-empty, got";
                    self.problem("user", &user.id, "otoroshi_emails", email, what);
                    continue;
                }
                match emails.entry(email.to_ascii_lowercase()) {
                    Entry::Vacant(slot) => {
                        placed
                            .users
                            .insert(slot.key().as_str().into(), user_idx as Idx);
                        slot.insert(&user.id);
                    }
                    Entry::Occupied(owner) => {
                        let what = format!("e-mail already used by user `{}`:", owner.get());
                        self.problem("user", &user.id, "otoroshi_emails", email, &what);
                    }
                }
            }
        }
        placed
    }

    fn compile_apps(&mut self) -> Vec<AppEntry> {
        let doc = self.doc;
        let mut out = Vec::with_capacity(doc.apps.len());
        for app in &doc.apps {
            let org = self.resolve(
                "organization",
                "app",
                &app.id,
                "organization",
                &app.organization,
            );
            if let Some(developer) = &app.developer {
                if developer.is_empty() {
                    self.problem(
                        "app",
                        &app.id,
                        "developer",
                        developer,
                        "developer must be non-empty when given, got",
                    );
                }
            }
            let products: Vec<Idx> = app
                .products
                .iter()
                .filter_map(|p| self.resolve("product", "app", &app.id, "products", p))
                .collect();
            out.push(AppEntry {
                principal: format!("app:{}", app.id).into(),
                org: org.unwrap_or(0),
                approved: app.status == AppStatus::Approved,
                products: IdxList::from(products),
                home_grants: None,
            });
        }
        out
    }

    fn compile_keys(&mut self, orgs: &[OrgEntry], apps: &[AppEntry]) -> Vec<KeyEntry> {
        let doc = self.doc;
        let mut keys = Vec::with_capacity(doc.api_keys.len());
        let mut by_hash: FxHashMap<[u8; 32], Idx> = FxHashMap::default();
        by_hash.reserve(doc.api_keys.len());
        for (i, key) in doc.api_keys.iter().enumerate() {
            let app = self.resolve("app", "api_key", &key.id, "app", &key.app);
            let digest = decode_sha256_hex(&key.sha256);
            match digest {
                None => self.problem(
                    "api_key",
                    &key.id,
                    "sha256",
                    &key.sha256,
                    "sha256 must be 64 lower-case hex digits (the hash, never the raw key), got",
                ),
                Some(digest) => {
                    if let Some(other) = by_hash.insert(digest, i as Idx) {
                        let other_id = doc
                            .api_keys
                            .get(other as usize)
                            .map(|k| k.id.as_str())
                            .unwrap_or("");
                        let what = format!("sha256 already used by api_key `{other_id}`:");
                        self.problem("api_key", &key.id, "sha256", &key.sha256, &what);
                    }
                }
            }
            let expires_at =
                self.parse_time("api_key", &key.id, "expires_at", key.expires_at.as_deref());
            let org = app
                .and_then(|a| apps.get(a as usize))
                .and_then(|a| orgs.get(a.org as usize));
            let envs = (!key.environments.is_empty())
                .then(|| self.resolve_envs("api_key", &key.id, &key.environments, org));
            keys.push(KeyEntry {
                // A key without a valid digest fails the compilation.
                digest: digest.unwrap_or_default(),
                app: app.unwrap_or(0),
                status: key.status,
                expires_at,
                read_only: key.read_only,
                envs: envs.map(|e| IdxList::from(e.into_vec())),
            });
        }
        keys
    }
}

enum Pattern<'a> {
    Prefix(&'a str),
    Exact(&'a str),
}

struct Closure {
    org_cover: Vec<Vec<Idx>>,
    area_cover: Vec<Vec<Idx>>,
}

impl Closure {
    fn org_cover(&self, org: Idx) -> &[Idx] {
        self.org_cover.get(org as usize).map_or(&[], Vec::as_slice)
    }

    fn cover(&self, scope: Scope) -> &[Idx] {
        match scope {
            Scope::Org(org) => self.org_cover(org),
            Scope::Area(area) => self
                .area_cover
                .get(area as usize)
                .map_or(&[], Vec::as_slice),
        }
    }
}

/// Builds and de-duplicates [`Grants`]: most principals hold one of a few shapes.
struct GrantTable<'a> {
    doc: &'a Document,
    closure: &'a Closure,
    team_org: &'a [Option<Idx>],
    role_bits: &'a [Box<[u64]>],
    words: usize,
    grants: Vec<Grants>,
    interned: FxHashMap<GrantKey, Idx>,
    by_principal: FxHashMap<(PrincipalRef, Idx), Idx>,
}

impl<'a> GrantTable<'a> {
    fn new(
        doc: &'a Document,
        closure: &'a Closure,
        team_org: &'a [Option<Idx>],
        role_bits: &'a [Box<[u64]>],
        vocabulary: usize,
    ) -> Self {
        GrantTable {
            doc,
            closure,
            team_org,
            role_bits,
            words: vocabulary.div_ceil(64),
            grants: Vec::new(),
            interned: FxHashMap::default(),
            by_principal: FxHashMap::default(),
        }
    }

    fn add(
        &mut self,
        principal: PrincipalRef,
        tenant: Idx,
        roles: &[ScopedRoles],
        rights: &[(Option<Idx>, Right)],
    ) {
        // Sorted vectors rather than sets and maps: the same result, and less
        // code in the wasm module than another collection type would add.
        let mut star = None;
        let mut tenant_rights: Vec<(Idx, Right)> = Vec::with_capacity(rights.len());
        for &(team, right) in rights {
            match team {
                None => star = star.max(Some(right)),
                Some(t) if self.team_org.get(t as usize).copied().flatten() == Some(tenant) => {
                    tenant_rights.push((t, right));
                }
                Some(_) => {}
            }
        }
        tenant_rights.sort_unstable();
        // Keep the strongest right per team: `later` follows `kept` in sort order.
        tenant_rights.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = kept.1.max(later.1);
            }
            same
        });
        // A group's roles count only in the tenants its organization covers.
        let mut roles: Vec<Idx> = roles
            .iter()
            .filter(|(org, _)| org.is_none_or(|o| self.closure.org_cover(o).contains(&tenant)))
            .flat_map(|(_, roles)| roles.iter().copied())
            .collect();
        roles.sort_unstable();
        roles.dedup();
        let key = (roles, tenant_rights, star);
        let idx = match self.interned.get(&key) {
            Some(&idx) => idx,
            None => {
                let grants = self.build(&key.0, &key.1, key.2);
                let idx = self.grants.len() as Idx;
                self.grants.push(grants);
                self.interned.insert(key, idx);
                idx
            }
        };
        self.by_principal.insert((principal, tenant), idx);
    }

    fn build(&self, roles: &[Idx], rights: &[(Idx, Right)], star: Option<Right>) -> Grants {
        let mut role_ids: Vec<&str> = roles
            .iter()
            .filter_map(|&r| self.doc.roles.get(r as usize).map(|r| r.id.as_str()))
            .collect();
        role_ids.sort_unstable();
        role_ids.dedup();
        let mut permissions = vec![0u64; self.words];
        for &r in roles {
            for (word, bits) in permissions
                .iter_mut()
                .zip(self.role_bits.get(r as usize).into_iter().flatten())
            {
                *word |= bits;
            }
        }
        let teams: Vec<&str> = if star.is_some() {
            vec!["*"]
        } else {
            let mut ids: Vec<&str> = rights
                .iter()
                .filter_map(|(t, _)| self.doc.teams.get(*t as usize).map(|t| t.id.as_str()))
                .collect();
            ids.sort_unstable();
            ids
        };
        Grants {
            roles_header: role_ids.join(",").into(),
            roles: role_ids.iter().map(|&r| r.into()).collect(),
            teams_header: teams.join(",").into(),
            teams: teams.iter().map(|&t| t.into()).collect(),
            best_team_right: rights.iter().map(|(_, r)| *r).max(),
            rights: rights.into(),
            star,
            permissions: permissions.into(),
        }
    }
}

/// Each distinct route prefix (lower-cased with `fold`) with its candidate
/// routes, best first: host and method filters before catch-alls, then
/// document order.
pub(crate) fn route_groups(routes: &[RouteEntry], fold: bool) -> Vec<(Vec<u8>, Vec<Idx>)> {
    let mut table: FxHashMap<Vec<u8>, Vec<Idx>> = FxHashMap::default();
    for (i, route) in routes.iter().enumerate() {
        let mut prefix = route.prefix.to_vec();
        if fold {
            prefix.make_ascii_lowercase();
        }
        table.entry(prefix).or_default().push(i as Idx);
    }
    let mut groups: Vec<(Vec<u8>, Vec<Idx>)> = table.into_iter().collect();
    for (_, candidates) in &mut groups {
        candidates.sort_by_key(|&i| {
            let route = routes.get(i as usize);
            let hosts = route.is_some_and(|r| !r.hosts.is_empty());
            let methods = route.is_some_and(|r| !r.methods.is_empty());
            (!hosts, !methods, i)
        });
    }
    groups
}

fn route_index(routes: &[RouteEntry], fold: bool) -> RouteIndex {
    let groups = route_groups(routes, fold);
    let longest = groups.iter().map(|(p, _)| p.len()).max().unwrap_or(1);
    RouteIndex::build(&groups, longest)
}

/// The route index, and the case-folded one when it differs.
pub(crate) fn route_tables(routes: &[RouteEntry]) -> (RouteIndex, Option<RouteIndex>) {
    let has_upper = routes
        .iter()
        .any(|r| r.prefix.iter().any(u8::is_ascii_uppercase));
    (
        route_index(routes, false),
        has_upper.then(|| route_index(routes, true)),
    )
}

/// The prefixes the route walk probes for the canonical `path`, deepest
/// first: from the deepest segment boundary a route prefix can reach
/// (`longest` bytes), so a huge path costs no more than a short one, up to
/// `/`. Bytes, not characters: a cut inside a multi-byte character is as
/// good as any other (no prefix ends there).
pub(crate) fn route_walk(path: &[u8], longest: usize) -> impl Iterator<Item = &[u8]> {
    let start = match path.get(..=longest) {
        Some(head) if path.len() > longest => match head.iter().rposition(|&b| b == b'/') {
            Some(0) | None => &b"/"[..],
            Some(cut) => head.get(..cut).unwrap_or(b"/"),
        },
        _ => path,
    };
    let mut next = Some(start);
    std::iter::from_fn(move || {
        let prefix = super::path::trim_trailing_slashes(next?);
        next = (prefix != b"/").then(|| match prefix.iter().rposition(|&b| b == b'/') {
            Some(0) | None => &b"/"[..],
            Some(cut) => prefix.get(..cut).unwrap_or(b"/"),
        });
        Some(prefix)
    })
}

/// Points every app at its grants in its own organization.
pub(crate) fn link_home_grants(
    apps: &mut [AppEntry],
    by_principal: &FxHashMap<(PrincipalRef, Idx), Idx>,
) {
    for (i, app) in apps.iter_mut().enumerate() {
        app.home_grants = by_principal
            .get(&(PrincipalRef::App(i as Idx), app.org))
            .copied();
    }
}

/// Organization ids, then handles (a handle never shadows another's id).
pub(crate) fn org_names(orgs: &[OrgEntry]) -> FxHashMap<Box<str>, Idx> {
    let mut names: FxHashMap<Box<str>, Idx> = FxHashMap::default();
    for (i, org) in orgs.iter().enumerate() {
        names.insert(org.id.clone(), i as Idx);
    }
    for (i, org) in orgs.iter().enumerate() {
        names.entry(org.handle.clone()).or_insert(i as Idx);
    }
    names
}

/// Ids from principals (`app:<id>`, `user:<id>`) → index; the first one wins.
pub(crate) fn ids_by_principal<'p>(
    principals: impl Iterator<Item = &'p str>,
    prefix: &str,
) -> FxHashMap<Box<str>, Idx> {
    let mut ids: FxHashMap<Box<str>, Idx> = FxHashMap::default();
    for (i, principal) in principals.enumerate() {
        if let Some(id) = principal.strip_prefix(prefix) {
            ids.entry(id.into()).or_insert(i as Idx);
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_route_walk_starts_within_the_longest_prefix_for_any_bytes() {
        let path = format!("/{}", "\u{e9}\u{e9}/".repeat(1000));
        let walked: Vec<&[u8]> = route_walk(path.as_bytes(), 3).collect();
        assert_eq!(walked, vec![&b"/"[..]]);
        let walked: Vec<&[u8]> = route_walk(b"/ab/cd/ef", 6).collect();
        assert_eq!(walked, vec![&b"/ab/cd"[..], b"/ab", b"/"]);
        let walked: Vec<&[u8]> = route_walk(b"/ab//", 10).collect();
        assert_eq!(walked, vec![&b"/ab"[..], b"/"]);
        for longest in 0..40 {
            let first = route_walk(path.as_bytes(), longest).next().unwrap();
            assert!(first.len() <= longest.max(1), "{longest}");
        }
    }
}
