//! The plain records a compiled [`crate::Snapshot`] is made of: indexes into
//! its collections instead of references, so that a snapshot is one owned value
//! and its binary form maps to it field for field. A leaf module: it imports
//! nothing of the crate but the document's enumerations and time.

use crate::document::{KeyStatus, Right};
use crate::time::Timestamp;
use rustc_hash::FxHashMap;
use std::ops::Deref;

/// An index into one of the snapshot's collections.
pub(crate) type Idx = u32;

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

/// Extension x3: what the roles and groups an `asserted` token names mean.
#[derive(Debug, Default)]
pub(crate) struct AssertedTables {
    /// Role id → its permission bits (over the routes' permissions).
    pub roles: FxHashMap<Box<str>, Inline<u64, 2>>,
    /// Group id → its organization and role ids.
    pub groups: FxHashMap<Box<str>, GroupRoles>,
}

/// A group's organization and the ids of the roles it grants.
pub(crate) type GroupRoles = (Idx, Box<[Box<str>]>);

/// Counts, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Organizations at every level (area, organization, sub-organization).
    pub organizations: usize,
    /// Teams, across organizations.
    pub teams: usize,
    /// Users.
    pub users: usize,
    /// Applications.
    pub apps: usize,
    /// API key hashes (a key held by several environments counts once per entry).
    pub api_keys: usize,
    /// Routes.
    pub routes: usize,
    /// Compiled (principal, organization) grant sets.
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
    /// `type: evaluation` (the plan annotation, x3).
    pub evaluation: bool,
    /// Token issuers trusted here: its own, its parent's and its area's;
    /// sorted, distinct (x3).
    pub issuers: Box<[Box<str>]>,
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

/// An app read from the key tier (issue 12: apps live there, once per
/// process, rather than in every decision VM): its record, and its grants as
/// (tenant, index into the keyless snapshot's grant table), sorted by tenant.
#[derive(Debug)]
pub(crate) struct TierApp {
    pub entry: AppEntry,
    pub grants: Box<[(Idx, Idx)]>,
}

#[derive(Debug)]
pub(crate) struct ProductEntry {
    /// Sorted route indexes.
    pub routes: IdxList,
    /// Resolved: an empty list in the document means every environment of the organization.
    pub envs: IdxList,
}

/// The keys of one snapshot differ within the first this many bytes of their
/// SHA-256 digests (a snapshot where two do not is refused), so the key tier
/// stores only these (issue 12: 12 bytes less per key, 11 MiB of Envoy's
/// memory at 1M keys). 160 bits keep a key that matches another's stored
/// bytes a second preimage (2^160 work), and two keys of one's own that
/// collide, which would only get the snapshot refused, at 2^80.
pub const DISTINCT_DIGEST_BYTES: usize = 20;

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
    /// The effective roles, sorted, comma-separated: the `x-tenant-roles`
    /// value, and the list itself ([`Grants::roles`]; ids never hold a
    /// comma). One string rather than a list and its header: each VM holds
    /// thousands of grants (issue 12).
    pub roles_header: Box<str>,
    /// The teams the principal holds a right on, sorted (`*` for a `"*"`
    /// right), comma-separated: the `x-tenant-teams` value.
    pub teams_header: Box<str>,
    /// Rights on the tenant's own teams, sorted by team index.
    pub rights: Box<[(Idx, Right)]>,
    pub star: Option<Right>,
    /// The strongest right held on any team of the tenant.
    pub best_team_right: Option<Right>,
    /// Bit set over the distinct permissions that routes require.
    pub permissions: Inline<u64, 2>,
}

impl RouteEntry {
    /// Whether the route's host and method filters accept a request.
    pub(crate) fn accepts(&self, method: &str, host: &str) -> bool {
        (self.hosts.is_empty() || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
            && (self.methods.is_empty()
                || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
    }
}

impl Grants {
    /// The effective roles, sorted.
    pub(crate) fn roles(&self) -> impl Iterator<Item = &str> + Clone {
        comma_list(&self.roles_header)
    }

    /// The teams the principal holds a right on, sorted (`*` for a `"*"` right).
    pub(crate) fn teams(&self) -> impl Iterator<Item = &str> + Clone {
        comma_list(&self.teams_header)
    }

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

/// A short list kept inline (no allocation, no pointer to chase) when it has
/// at most `N` items, as most do: an app's products, a key's or an
/// organization's environments, a product's routes, a grant's permission
/// words. Longer lists go to the heap. Construction is canonical (inline
/// exactly when it fits), so equal lists compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inline<T, const N: usize> {
    Short { len: u8, items: [T; N] },
    Long(Box<[T]>),
}

/// Indexes into another collection.
pub(crate) type IdxList = Inline<Idx, 3>;

impl<T: Copy + Default, const N: usize> From<Vec<T>> for Inline<T, N> {
    fn from(list: Vec<T>) -> Inline<T, N> {
        if list.len() > N {
            return Inline::Long(list.into_boxed_slice());
        }
        let mut items = [T::default(); N];
        for (slot, item) in items.iter_mut().zip(&list) {
            *slot = *item;
        }
        Inline::Short {
            len: list.len() as u8,
            items,
        }
    }
}

impl<T: Copy + Default, const N: usize> From<Box<[T]>> for Inline<T, N> {
    fn from(list: Box<[T]>) -> Inline<T, N> {
        Inline::from(list.into_vec())
    }
}

impl<T, const N: usize> Deref for Inline<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Inline::Short { len, items } => items.get(..usize::from(*len)).unwrap_or(&[]),
            Inline::Long(list) => list,
        }
    }
}

/// The items of a comma-separated list (none in an empty one).
fn comma_list(list: &str) -> impl Iterator<Item = &str> + Clone {
    list.split(',').filter(|item| !item.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn short_lists_are_inline() {
        for n in 0..6u32 {
            let list = IdxList::from((0..n).collect::<Vec<_>>());
            assert_eq!(&*list, (0..n).collect::<Vec<_>>().as_slice());
            assert_eq!(matches!(list, IdxList::Short { .. }), n <= 3);
        }
    }
}
