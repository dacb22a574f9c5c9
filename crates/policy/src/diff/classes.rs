//! The grouped diff: principals whose decision inputs are the same in both
//! snapshots decide alike everywhere, so one of each class is decided; and
//! where the request itself names a tenant in which a class holds nothing,
//! the class is decided as the unknown user is, without a decision of its own.
//!
//! Why that is exact: a decision reads of a principal only what a
//! [`Signature`] holds (a key: its app's organization, products and grants,
//! its status, expiry at `now`, read-only flag and environments; a user: its
//! default tenant, grants and invitations). Its name reaches only the
//! `x-principal` annotation, which a diff does not compare. A usable caller
//! with no grant and no invitation in the tenant of a concrete route (or of
//! the selector, for a `"*"` route) passes steps 1 to 8 exactly as an
//! unknown user does and stops at step 9 with `not_a_member` as it does.

use super::space::{decide_point, Caller, Space};
use super::{Found, Outcome, Probe};
use crate::document::KeyStatus;
use crate::reason::Reason;
use crate::records::{Idx, KeyEntry, PrincipalRef};
use crate::snapshot::Snapshot;
use crate::time::Timestamp;
use rustc_hash::FxHashMap;

/// What one snapshot's decision reads of a principal, its name aside.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Signature {
    /// A user: its default tenant, grants by tenant, invited-only tenants.
    User {
        default_tenant: Option<Idx>,
        grants: Vec<(Idx, Idx)>,
        pending: Vec<Idx>,
    },
    /// A key denied at step 5 whatever it asks: unknown, pending, revoked,
    /// expired, or of a revoked app.
    DeadKey(Reason),
    /// A usable key: its app's class and its own flags.
    LiveKey {
        app: u32,
        read_only: bool,
        envs: Option<Vec<Idx>>,
    },
}

/// An app's part of a usable key's signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AppSignature {
    org: Idx,
    products: Vec<Idx>,
    grants: Vec<(Idx, Idx)>,
}

/// What the grouped diff needs to know of a class.
#[derive(Debug, Default)]
struct ClassInfo {
    /// A key denied at step 5 cannot be decided as the unknown user.
    live: bool,
    /// Tenants where it holds grants or an invitation, sorted.
    tenants: Vec<Idx>,
}

/// The classes of one snapshot's principals.
struct Classes<'s> {
    snap: &'s Snapshot,
    now: Timestamp,
    grants: FxHashMap<PrincipalRef, Vec<(Idx, Idx)>>,
    pending: FxHashMap<Idx, Vec<Idx>>,
    app_ids: FxHashMap<AppSignature, u32>,
    ids: FxHashMap<Signature, u32>,
    info: Vec<ClassInfo>,
}

impl<'s> Classes<'s> {
    fn new(snap: &'s Snapshot, now: Timestamp) -> Classes<'s> {
        let mut grants: FxHashMap<PrincipalRef, Vec<(Idx, Idx)>> = FxHashMap::default();
        for (&(principal, tenant), &grant) in &snap.grants_by_principal {
            grants.entry(principal).or_default().push((tenant, grant));
        }
        grants.values_mut().for_each(|list| list.sort_unstable());
        let mut pending: FxHashMap<Idx, Vec<Idx>> = FxHashMap::default();
        for &(user, tenant) in &snap.pending {
            pending.entry(user).or_default().push(tenant);
        }
        pending.values_mut().for_each(|list| list.sort_unstable());
        Classes {
            snap,
            now,
            grants,
            pending,
            app_ids: FxHashMap::default(),
            ids: FxHashMap::default(),
            info: Vec::new(),
        }
    }

    /// The class of `caller` in this snapshot.
    fn class_of(&mut self, caller: Caller<'_>) -> u32 {
        let (signature, tenants) = match caller {
            Caller::User(id) => self.user_signature(id),
            Caller::Key { entry, .. } => self.key_signature(entry),
        };
        if let Some(&class) = self.ids.get(&signature) {
            return class;
        }
        let class = self.info.len() as u32;
        let live = !matches!(signature, Signature::DeadKey(_));
        self.info.push(ClassInfo { live, tenants });
        self.ids.insert(signature, class);
        class
    }

    fn user_signature(&self, id: &str) -> (Signature, Vec<Idx>) {
        let user = self.snap.user_by_id.get(id).copied();
        let grants = user
            .and_then(|u| self.grants.get(&PrincipalRef::User(u)))
            .cloned()
            .unwrap_or_default();
        let pending = user
            .and_then(|u| self.pending.get(&u))
            .cloned()
            .unwrap_or_default();
        let default_tenant = user
            .and_then(|u| self.snap.users.get(u as usize))
            .and_then(|u| u.default_tenant);
        let mut tenants: Vec<Idx> = grants
            .iter()
            .map(|&(t, _)| t)
            .chain(pending.iter().copied())
            .collect();
        tenants.sort_unstable();
        tenants.dedup();
        let signature = Signature::User {
            default_tenant,
            grants,
            pending,
        };
        (signature, tenants)
    }

    /// A key: dead for the step-5 reason that denies it, in step 5's order,
    /// else live with its app's class.
    fn key_signature(&mut self, key: Option<&KeyEntry>) -> (Signature, Vec<Idx>) {
        let app = key.and_then(|k| self.snap.apps.get(k.app as usize).map(|app| (k, app)));
        let Some((key, app)) = app else {
            return (Signature::DeadKey(Reason::InvalidApiKey), Vec::new());
        };
        let dead = match key.status {
            KeyStatus::Pending => Some(Reason::ApiKeyPending),
            KeyStatus::Revoked => Some(Reason::ApiKeyRevoked),
            KeyStatus::Active if key.expires_at.is_some_and(|at| self.now >= at) => {
                Some(Reason::ApiKeyExpired)
            }
            KeyStatus::Active => (!app.approved).then_some(Reason::AppRevoked),
        };
        if let Some(reason) = dead {
            return (Signature::DeadKey(reason), Vec::new());
        }
        let grants = self
            .grants
            .get(&PrincipalRef::App(key.app))
            .cloned()
            .unwrap_or_default();
        let tenants: Vec<Idx> = grants.iter().map(|&(t, _)| t).collect();
        let app_signature = AppSignature {
            org: app.org,
            products: app.products.to_vec(),
            grants,
        };
        let next = self.app_ids.len() as u32;
        let app_class = *self.app_ids.entry(app_signature).or_insert(next);
        let signature = Signature::LiveKey {
            app: app_class,
            read_only: key.read_only,
            envs: key.envs.as_ref().map(|e| e.to_vec()),
        };
        (signature, tenants)
    }
}

/// Principals in the same class in the old snapshot and in the new one.
struct Pair {
    classes: [u32; 2],
    /// Indexes into the space's principals, ascending.
    members: Vec<u32>,
}

/// Who a probe's decision depends on, in one snapshot.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// Decided before credentials are read (steps 1 to 3): the same for all.
    Everyone,
    /// The request names the tenant: the same for all usable callers that
    /// hold nothing there.
    Tenant(Idx),
    /// The selector names no organization: the same for all usable callers.
    NoOrganization,
    /// A `"*"` route without selector: the caller's own organization decides.
    Caller,
}

/// A probe as one snapshot sees it: the unknown user's outcome and scope.
struct Fact {
    base: Outcome,
    scope: Scope,
}

impl Fact {
    /// `unknown_user`: the id no snapshot of the space knows.
    fn of(snap: &Snapshot, probe: &Probe, unknown_user: &str, now: Timestamp) -> Fact {
        let base = decide_point(snap, probe, None, &Caller::User(unknown_user), now);
        let route = base
            .route
            .as_deref()
            .and_then(|id| snap.routes.iter().find(|r| &*r.id == id));
        let scope = match route {
            None => Scope::Everyone,
            Some(route) if route.public => Scope::Everyone,
            Some(route) => match (route.tenant, &probe.selector) {
                (Some(tenant), _) => Scope::Tenant(tenant),
                (None, None) => Scope::Caller,
                (None, Some(name)) => snap
                    .org_by_name
                    .get(&**name)
                    .map_or(Scope::NoOrganization, |&t| Scope::Tenant(t)),
            },
        };
        Fact { base, scope }
    }

    /// The outcome of a caller of class `info`, when it is the unknown user's.
    fn shortcut(&self, info: &ClassInfo) -> Option<&Outcome> {
        let same = match self.scope {
            Scope::Everyone => true,
            Scope::NoOrganization => info.live,
            Scope::Tenant(tenant) => info.live && info.tenants.binary_search(&tenant).is_err(),
            Scope::Caller => false,
        };
        same.then_some(&self.base)
    }
}

/// The changes of `space` from `snaps[0]` to `snaps[1]`, by classes.
pub(super) fn grouped(space: &Space, snaps: [&Snapshot; 2], now: Timestamp) -> Found {
    let [old, new] = snaps;
    let mut classes = [Classes::new(old, now), Classes::new(new, now)];
    let pairs = pairs(space, &mut classes);
    let [old_classes, new_classes] = classes;
    let facts: Vec<[Fact; 2]> = space
        .probes
        .iter()
        .map(|probe| {
            let unknown = &space.unknown_user;
            [old, new].map(|snap| Fact::of(snap, probe, unknown, now))
        })
        .collect();
    let mut found = Found::new();
    for pair in &pairs {
        let [o, n] = pair.classes;
        let (Some(old_info), Some(new_info)) = (
            old_classes.info.get(o as usize),
            new_classes.info.get(n as usize),
        ) else {
            continue;
        };
        let Some(principal) = pair
            .members
            .first()
            .and_then(|&p| space.principals.get(p as usize))
        else {
            continue;
        };
        let sides = [
            Side {
                snap: old,
                caller: Caller::of(old, space, principal),
                info: old_info,
            },
            Side {
                snap: new,
                caller: Caller::of(new, space, principal),
                info: new_info,
            },
        ];
        decide_pair(space, &facts, &sides, &pair.members, now, &mut found);
    }
    found
}

/// The principals of `space` by their pair of classes.
fn pairs(space: &Space, classes: &mut [Classes<'_>; 2]) -> Vec<Pair> {
    let mut index: FxHashMap<[u32; 2], usize> = FxHashMap::default();
    let mut pairs: Vec<Pair> = Vec::new();
    for (p, principal) in space.principals.iter().enumerate() {
        let ids = [0, 1].map(|side| {
            classes.get_mut(side).map_or(0, |c| {
                let caller = Caller::of(c.snap, space, principal);
                c.class_of(caller)
            })
        });
        let at = *index.entry(ids).or_insert_with(|| {
            pairs.push(Pair {
                classes: ids,
                members: Vec::new(),
            });
            pairs.len() - 1
        });
        if let Some(pair) = pairs.get_mut(at) {
            pair.members.push(p as u32);
        }
    }
    pairs
}

/// One snapshot's view of a pair's representative.
struct Side<'a> {
    snap: &'a Snapshot,
    caller: Caller<'a>,
    info: &'a ClassInfo,
}

/// Decides a pair's representative at every point where its class is not
/// decided as the unknown user, and records each change for all `members`.
fn decide_pair(
    space: &Space,
    facts: &[[Fact; 2]],
    sides: &[Side<'_>; 2],
    members: &[u32],
    now: Timestamp,
    found: &mut Found,
) {
    let [old, new] = sides;
    for (q, (probe, [old_fact, new_fact])) in space.probes.iter().zip(facts).enumerate() {
        let shortcuts = [old_fact.shortcut(old.info), new_fact.shortcut(new.info)];
        let [old_shortcut, new_shortcut] = shortcuts;
        if let [Some(before), Some(after)] = shortcuts {
            // Neither decision depends on the environment (steps 1 to 9).
            if before.differs(after) {
                for e in 0..space.environments.len() {
                    found.add(members, q as u32, e as u32, before.clone(), after.clone());
                }
            }
            continue;
        }
        for (e, environment) in space.environments.iter().enumerate() {
            let [before, after] =
                [(old, old_shortcut), (new, new_shortcut)].map(|(side, shortcut)| {
                    shortcut.cloned().unwrap_or_else(|| {
                        decide_point(side.snap, probe, environment.as_deref(), &side.caller, now)
                    })
                });
            if before.differs(&after) {
                found.add(members, q as u32, e as u32, before, after);
            }
        }
    }
}
