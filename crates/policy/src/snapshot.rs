//! The compiled, immutable [`Snapshot`]: records ([`crate::records`]) and the
//! indexes a decision reads ([`crate::index`]). One constructor,
//! [`Snapshot::assemble`], builds every derived index from the records, for
//! the compiler and for both binary decoders alike.

use crate::index::{route_tables, route_walk, AppIds, KeyIndex, RouteIndex};
use crate::path::PathCase;
use crate::records::{
    AppEntry, AssertedTables, GatewayIds, Grants, Idx, KeyEntry, OrgEntry, PrincipalRef,
    ProductEntry, RouteEntry, SnapshotStats, UserEntry,
};
use rustc_hash::{FxHashMap, FxHashSet};

/// A compiled, immutable policy snapshot. Build it with
/// [`crate::load_snapshot`] (or [`crate::compile::compile`],
/// [`crate::binary::decode`]); share it behind an `Rc`/`Arc`.
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
    /// `None` when no prefix has an upper-case letter (it would equal
    /// `route_index`).
    pub(crate) folded_route_index: Option<RouteIndex>,
    pub(crate) apps: Vec<AppEntry>,
    pub(crate) app_by_id: AppIds,
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
    /// Roles and groups by id, for `asserted` tokens (x3).
    pub(crate) asserted: AssertedTables,
    pub(crate) stats: SnapshotStats,
}

/// The records a snapshot is assembled from: what the compiler produces and
/// what the binary form stores. Everything else is derived by
/// [`Snapshot::assemble`].
#[derive(Debug)]
pub(crate) struct SnapshotParts {
    pub revision: Box<str>,
    pub orgs: Vec<OrgEntry>,
    pub envs: FxHashMap<Box<str>, Idx>,
    pub routes: Vec<RouteEntry>,
    pub apps: Vec<AppEntry>,
    pub products: Vec<ProductEntry>,
    pub keys: Vec<KeyEntry>,
    pub users: Vec<UserEntry>,
    pub grants: Vec<Grants>,
    pub grants_by_principal: FxHashMap<(PrincipalRef, Idx), Idx>,
    pub pending: FxHashSet<(Idx, Idx)>,
    pub gateway: GatewayIds,
    pub asserted: AssertedTables,
    pub stats: SnapshotStats,
}

/// Two keys of the parts share a digest (`Err(i)`: key `i` repeats an earlier one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DuplicateDigest(pub usize);

impl Snapshot {
    /// The one way to build a snapshot: derives every index from `parts`
    /// (names of organizations, app and user ids, routes by prefix, keys by
    /// digest, each app's grants in its own organization).
    pub(crate) fn assemble(parts: SnapshotParts) -> Result<Snapshot, DuplicateDigest> {
        let SnapshotParts {
            revision,
            orgs,
            envs,
            routes,
            mut apps,
            products,
            keys,
            users,
            grants,
            grants_by_principal,
            pending,
            gateway,
            asserted,
            stats,
        } = parts;
        let key_index = KeyIndex::build(&keys).map_err(DuplicateDigest)?;
        let (route_index, folded_route_index) = route_tables(&routes);
        link_home_grants(&mut apps, &grants_by_principal);
        Ok(Snapshot {
            revision,
            org_by_name: org_names(&orgs),
            orgs,
            envs,
            route_index,
            folded_route_index,
            routes,
            app_by_id: AppIds::build(&apps),
            apps,
            products,
            keys,
            key_index,
            user_by_id: ids_by_principal(users.iter().map(|u| &*u.principal), "user:"),
            users,
            grants,
            grants_by_principal,
            pending,
            gateway,
            asserted,
            stats,
        })
    }

    /// The snapshot's revision (header-safe: the id alphabet).
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// Counts of what the snapshot holds, for logs and metrics.
    pub fn stats(&self) -> SnapshotStats {
        self.stats
    }

    /// The API keys this value holds itself: all of them, or none once they
    /// were moved into a key tier ([`crate::binary::tier::split_keys`]; the
    /// stats still count them).
    pub fn keys_held(&self) -> usize {
        self.keys.len()
    }

    /// Drops the Otoroshi extension's id tables (client ids, e-mails, team
    /// ids of located apikeys): for a host that never passes a gateway
    /// identity. The Envoy filter's decision VMs hold one copy each of what
    /// the snapshot it publishes keeps (issue 12: 6,000 team ids were 0.3 MB
    /// of each VM). A gateway identity decided against the result finds none
    /// of its ids there.
    pub fn forget_gateway_ids(&mut self) {
        self.gateway = GatewayIds::default();
    }

    pub(crate) fn org(&self, idx: Idx) -> Option<&OrgEntry> {
        self.orgs.get(idx as usize)
    }

    /// The longest segment-boundary route prefix of the canonical `path`
    /// among routes whose host and method filters accept the request.
    pub(crate) fn match_route(
        &self,
        method: &str,
        host: &str,
        path: &[u8],
        case: PathCase,
    ) -> Option<Idx> {
        if !path.starts_with(b"/") {
            return None;
        }
        let host = host_without_port(host);
        let index = match (case, &self.folded_route_index) {
            (PathCase::Insensitive, Some(folded)) => folded,
            _ => &self.route_index,
        };
        // From the deepest boundary a route prefix can reach: a huge path
        // costs no more than a short one.
        route_walk(path, index.longest_prefix()).find_map(|prefix| {
            index.candidates(prefix).find(|&i| {
                self.routes
                    .get(i as usize)
                    .is_some_and(|route| route.accepts(method, host))
            })
        })
    }
}

/// The host without its port, IPv6 brackets kept.
fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .find(']')
            .and_then(|end| host.get(..=end))
            .unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Points every app at its grants in its own organization.
fn link_home_grants(apps: &mut [AppEntry], by_principal: &FxHashMap<(PrincipalRef, Idx), Idx>) {
    for (i, app) in apps.iter_mut().enumerate() {
        app.home_grants = by_principal
            .get(&(PrincipalRef::App(i as Idx), app.org))
            .copied();
    }
}

/// Organization ids, then handles (a handle never shadows another's id).
/// Entries with an empty id are placeholders of a partial decode: skipped.
pub(crate) fn org_names(orgs: &[OrgEntry]) -> FxHashMap<Box<str>, Idx> {
    let mut names: FxHashMap<Box<str>, Idx> = FxHashMap::default();
    let present = || {
        orgs.iter()
            .enumerate()
            .filter(|(_, org)| !org.id.is_empty())
    };
    for (i, org) in present() {
        names.insert(org.id.clone(), i as Idx);
    }
    for (i, org) in present() {
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
