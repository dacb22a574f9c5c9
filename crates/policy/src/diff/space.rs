//! The request space a diff decides: principals × probes (one request per
//! route, method class and tenant selector) × environments, taken from both
//! snapshots; and how one point of it is decided.

use crate::compile::keys::ExternalKey;
use crate::decide::{decide, is_safe_method, Context};
use crate::records::{KeyEntry, RouteEntry};
use crate::request::{Request, Sources};
use crate::snapshot::Snapshot;
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::Outcome;

/// The user id of a user no snapshot knows: outside the id alphabet, so
/// that no snapshot loaded from JSON holds it (a number is appended while a
/// snapshot does: a compiled one is not checked against the alphabet).
const UNKNOWN_USER: &str = "(unknown)";
/// The raw API key every key principal is sent with (a number appended
/// until neither snapshot holds its digest: a snapshot could otherwise ship
/// this public key and be decided for every key principal): the principal's
/// entry reaches the decision as an external key of this key's digest (the
/// raw keys of a snapshot are not in it), so a key is decided by its digest.
const PROBE_KEY: &str = "tenantgate-diff-probe-key";
/// The host of routes that list none: a reserved name no route lists.
const ANY_HOST: &str = "diff.invalid";

/// Who sends the requests.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Principal {
    /// A user id of either snapshot (header `x-user-id`).
    User(Box<str>),
    /// A user id neither snapshot knows (a member of nothing).
    UnknownUser,
    /// An API key of either snapshot, by the SHA-256 of its raw key; `app`
    /// is its app's id in the new snapshot, else in the old one.
    Key {
        /// SHA-256 of the raw key.
        digest: [u8; 32],
        /// The key's app.
        app: Box<str>,
    },
}

/// Safe methods (read) or the others (write), as steps 13 to 15 tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MethodClass {
    /// GET, HEAD, OPTIONS.
    Read,
    /// Every other method.
    Write,
}

impl MethodClass {
    /// `read` or `write`.
    pub fn code(self) -> &'static str {
        match self {
            MethodClass::Read => "read",
            MethodClass::Write => "write",
        }
    }
}

/// One request of the space, without its credential.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probe {
    /// The id of the route it was made for (in either snapshot).
    pub route: Box<str>,
    /// The method's class.
    pub class: MethodClass,
    /// GET for read, POST for write, or the first method of the class the
    /// route lists.
    pub method: Box<str>,
    /// The route's first host, or `diff.invalid` for a route listing none.
    pub host: Box<str>,
    /// The route's canonical path prefix.
    pub path: Box<str>,
    /// The tenant selector (`x-tenant-id`), for `"*"`-tenant routes.
    pub selector: Option<Box<str>>,
}

/// The points a diff decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    /// Users of either snapshot (by id), the unknown user, then API keys of
    /// either snapshot (by digest).
    pub principals: Vec<Principal>,
    /// For each route of either snapshot, a request of each method class it
    /// accepts; for a `"*"`-tenant route, without a selector and with each
    /// organization of either snapshot as selector.
    pub probes: Vec<Probe>,
    /// No gateway environment, then each environment of either snapshot.
    pub environments: Vec<Option<Box<str>>>,
    /// The raw key key principals are sent with ([`PROBE_KEY`]).
    pub(crate) probe_key: Box<str>,
    /// The id the unknown user is sent with ([`UNKNOWN_USER`]).
    pub(crate) unknown_user: Box<str>,
}

impl Space {
    /// The space of the change from `old` to `new`.
    pub fn of(old: &Snapshot, new: &Snapshot) -> Space {
        let snaps = [new, old];
        let mut environments: Vec<Option<Box<str>>> = vec![None];
        let names: BTreeSet<&str> = snaps
            .iter()
            .flat_map(|s| s.envs.keys().map(|e| &**e))
            .collect();
        environments.extend(names.into_iter().map(|e| Some(e.into())));
        Space {
            principals: principals(snaps),
            probes: probes(snaps),
            environments,
            probe_key: probe_key(snaps),
            unknown_user: unknown_user(snaps),
        }
    }
}

/// [`PROBE_KEY`], numbered if a snapshot holds its digest.
fn probe_key(snaps: [&Snapshot; 2]) -> Box<str> {
    first_free(PROBE_KEY, |key| {
        let digest = crate::key_digest(key);
        snaps
            .iter()
            .any(|s| s.key_index.find(&s.keys, &digest).is_some())
    })
}

/// [`UNKNOWN_USER`], numbered if a snapshot has a user of that id.
fn unknown_user(snaps: [&Snapshot; 2]) -> Box<str> {
    first_free(UNKNOWN_USER, |id| {
        snaps.iter().any(|s| s.user_by_id.contains_key(id))
    })
}

/// `base`, or `base-1`, `base-2`, … : the first that `taken` refuses.
fn first_free(base: &str, taken: impl Fn(&str) -> bool) -> Box<str> {
    let mut name = base.to_string();
    let mut n = 0u64;
    while taken(&name) {
        n += 1;
        name = format!("{base}-{n}");
    }
    name.into()
}

fn principals(snaps: [&Snapshot; 2]) -> Vec<Principal> {
    let users: BTreeSet<&str> = snaps
        .iter()
        .flat_map(|s| s.user_by_id.keys().map(|u| &**u))
        .collect();
    let mut keys: BTreeMap<[u8; 32], Box<str>> = BTreeMap::new();
    for snap in snaps {
        for key in &snap.keys {
            let app = snap
                .apps
                .get(key.app as usize)
                .map(|a| a.principal.strip_prefix("app:").unwrap_or(&a.principal));
            keys.entry(key.digest)
                .or_insert(app.unwrap_or_default().into());
        }
    }
    let mut principals: Vec<Principal> = users
        .into_iter()
        .map(|u| Principal::User(u.into()))
        .collect();
    principals.push(Principal::UnknownUser);
    principals.extend(
        keys.into_iter()
            .map(|(digest, app)| Principal::Key { digest, app }),
    );
    principals
}

fn probes(snaps: [&Snapshot; 2]) -> Vec<Probe> {
    let organizations: BTreeSet<&str> = snaps
        .iter()
        .flat_map(|s| s.orgs.iter().map(|o| &*o.id).filter(|id| !id.is_empty()))
        .collect();
    let mut probes = Vec::new();
    let mut seen = HashSet::new();
    for route in snaps.iter().flat_map(|s| s.routes.iter()) {
        for class in [MethodClass::Read, MethodClass::Write] {
            let Some(method) = method_for(route, class) else {
                continue;
            };
            let host = route.hosts.first().map_or(ANY_HOST, |h| &**h);
            let path = String::from_utf8_lossy(&route.prefix);
            let mut selectors = vec![None];
            if route.tenant.is_none() {
                selectors.extend(organizations.iter().map(|&o| Some(o)));
            }
            for selector in selectors {
                if seen.insert((method.clone(), host, path.to_string(), selector)) {
                    probes.push(Probe {
                        route: route.id.clone(),
                        class,
                        method: method.as_str().into(),
                        host: host.into(),
                        path: path.as_ref().into(),
                        selector: selector.map(Into::into),
                    });
                }
            }
        }
    }
    probes.sort();
    probes
}

/// The method a request of `class` to `route` is sent with: GET (read) or
/// POST (write), unless the route lists methods without it; then the first
/// safe method it lists (read: HEAD, OPTIONS) or the first other one (write).
/// `None`: the route takes no request of the class.
fn method_for(route: &RouteEntry, class: MethodClass) -> Option<String> {
    let preferred = match class {
        MethodClass::Read => "GET",
        MethodClass::Write => "POST",
    };
    if route.methods.is_empty()
        || route
            .methods
            .iter()
            .any(|m| m.eq_ignore_ascii_case(preferred))
    {
        return Some(preferred.to_string());
    }
    let read = class == MethodClass::Read;
    let listed = |safe: &str| route.methods.iter().find(|m| m.eq_ignore_ascii_case(safe));
    let chosen = if read {
        listed("HEAD").or_else(|| listed("OPTIONS"))
    } else {
        route
            .methods
            .iter()
            .find(|m| !is_safe_method(&m.to_ascii_uppercase()))
    };
    chosen.map(|m| m.to_ascii_uppercase())
}

/// A principal as one snapshot knows it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Caller<'a> {
    /// A user id (perhaps unknown to the snapshot).
    User(&'a str),
    /// A key, by its entry in the snapshot (`None`: not in it), sent as
    /// the raw key `probe_key`.
    Key {
        entry: Option<&'a KeyEntry>,
        probe_key: &'a str,
    },
}

impl<'a> Caller<'a> {
    /// How `snap` knows `principal` of `space`.
    pub(crate) fn of(snap: &'a Snapshot, space: &'a Space, principal: &'a Principal) -> Caller<'a> {
        match principal {
            Principal::User(id) => Caller::User(id),
            Principal::UnknownUser => Caller::User(&space.unknown_user),
            Principal::Key { digest, .. } => Caller::Key {
                entry: snap.key_index.find(&snap.keys, digest),
                probe_key: &space.probe_key,
            },
        }
    }
}

/// `snap`'s decision on `probe` sent by `caller` in `environment` at `now`.
pub(crate) fn decide_point(
    snap: &Snapshot,
    probe: &Probe,
    environment: Option<&str>,
    caller: &Caller<'_>,
    now: Timestamp,
) -> Outcome {
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(2);
    let external = match caller {
        Caller::User(id) => {
            headers.push(("x-user-id", id));
            None
        }
        Caller::Key { entry, probe_key } => {
            headers.push(("x-api-key", probe_key));
            entry.map(|entry| ExternalKey {
                digest: crate::key_digest(probe_key),
                entry: copy_key(entry),
                app: None,
            })
        }
    };
    if let Some(selector) = &probe.selector {
        headers.push(("x-tenant-id", selector));
    }
    let sources = Sources::default();
    let request = Request::from_parts(
        &sources,
        &probe.method,
        &probe.host,
        probe.path.as_bytes(),
        &headers,
    );
    let context = Context::new(now, environment).with_external_key(external.as_ref());
    let decision = decide(snap, &request, &context);
    Outcome {
        reason: decision.reason,
        route: decision.route.map(Into::into),
        tenant: decision.tenant_id().map(Into::into),
    }
}

fn copy_key(key: &KeyEntry) -> KeyEntry {
    KeyEntry {
        digest: key.digest,
        app: key.app,
        status: key.status,
        expires_at: key.expires_at,
        read_only: key.read_only,
        envs: key.envs.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use crate::generate::{generate, generated_raw_key};

    /// A key sent by its raw key is decided as its entry sent as an external
    /// key of the probe key: what lets a diff decide keys by digest.
    #[test]
    fn a_key_decides_by_its_digest_as_by_its_raw_key() {
        let (seed, count) = (5, 40);
        let snap = crate::load_snapshot(&generate(3, count, seed).to_string()).unwrap();
        let now = Timestamp::parse_rfc3339("2026-06-01T00:00:00Z").unwrap();
        let space = Space::of(&snap, &snap);
        let sources = Sources::default();
        for k in 0..count {
            let raw = generated_raw_key(seed, k);
            let digest = crate::key_digest(&raw);
            let caller = Caller::Key {
                entry: snap.key_index.find(&snap.keys, &digest),
                probe_key: &space.probe_key,
            };
            assert!(matches!(caller, Caller::Key { entry: Some(_), .. }));
            for probe in &space.probes {
                for environment in &space.environments {
                    let mut headers = vec![("x-api-key", raw.as_str())];
                    headers.extend(probe.selector.as_deref().map(|s| ("x-tenant-id", s)));
                    let request = Request::from_parts(
                        &sources,
                        &probe.method,
                        &probe.host,
                        probe.path.as_bytes(),
                        &headers,
                    );
                    let context = Context::new(now, environment.as_deref());
                    let by_raw = decide(&snap, &request, &context);
                    let by_digest =
                        decide_point(&snap, probe, environment.as_deref(), &caller, now);
                    assert_eq!(by_raw.reason, by_digest.reason, "{probe:?} {environment:?}");
                    assert_eq!(by_raw.route, by_digest.route.as_deref());
                    assert_eq!(by_raw.tenant_id(), by_digest.tenant.as_deref());
                }
            }
        }
    }
}
