//! The access impact of a policy change (`policyctl diff`): every point of a
//! request space ([`Space`]: principal × request × environment) whose
//! decision differs between two compiled snapshots, with both decisions.
//!
//! Two implementations compute the same [`Diff`]:
//! - [`diff_exhaustive`] decides every point on both snapshots with
//!   [`crate::decide`]: the reference, slow at scale;
//! - [`diff`] decides one representative of each class of principals whose
//!   decision inputs are identical in both snapshots ([`classes`]), and
//!   skips the points where a principal holds nothing in the request's
//!   tenant (it is decided there as the unknown user is). Tests hold it
//!   equal to the reference.

mod classes;
mod space;

pub use space::{MethodClass, Principal, Probe, Space};

use crate::reason::Reason;
use crate::snapshot::Snapshot;
use crate::time::Timestamp;
use std::collections::BTreeMap;

/// What one snapshot decided at one point of the space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Outcome {
    /// `None`: allowed.
    pub reason: Option<Reason>,
    /// The matched route's id.
    pub route: Option<Box<str>>,
    /// The resolved tenant's id (step 7), if the decision got that far.
    pub tenant: Option<Box<str>>,
}

impl Outcome {
    /// No step denied.
    pub fn allowed(&self) -> bool {
        self.reason.is_none()
    }

    /// The HTTP status: 200 when allowed.
    pub fn status(&self) -> u16 {
        self.reason.map_or(200, Reason::status)
    }

    /// Whether `other` is another decision: allowed or denied, or denied
    /// for another reason. The route and tenant alone do not count.
    pub fn differs(&self, other: &Outcome) -> bool {
        self.reason != other.reason
    }
}

/// How a decision changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// Denied before, allowed after.
    Gain,
    /// Allowed before, denied after.
    Loss,
    /// Denied before and after, for another reason.
    Reason,
}

impl ChangeKind {
    /// `gain`, `loss` or `reason`.
    pub fn code(self) -> &'static str {
        match self {
            ChangeKind::Gain => "gain",
            ChangeKind::Loss => "loss",
            ChangeKind::Reason => "reason",
        }
    }
}

/// One change: the principals for which a request in an environment was
/// decided `before` by the old snapshot and `after` by the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Indexes into [`Space::principals`], ascending.
    pub principals: Vec<u32>,
    /// Index into [`Space::probes`].
    pub probe: u32,
    /// Index into [`Space::environments`].
    pub environment: u32,
    /// The old snapshot's decision.
    pub before: Outcome,
    /// The new snapshot's decision.
    pub after: Outcome,
}

impl Change {
    /// Gain, loss or another reason.
    pub fn kind(&self) -> ChangeKind {
        match (self.before.allowed(), self.after.allowed()) {
            (false, true) => ChangeKind::Gain,
            (true, false) => ChangeKind::Loss,
            _ => ChangeKind::Reason,
        }
    }
}

/// The changes between two snapshots over their request space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The points that were decided.
    pub space: Space,
    /// One entry per (probe, environment, before, after), in that order;
    /// empty when nothing changed.
    pub changes: Vec<Change>,
}

impl Diff {
    /// The number of changed points (principal × probe × environment) of `kind`.
    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes
            .iter()
            .filter(|c| c.kind() == kind)
            .map(|c| c.principals.len())
            .sum()
    }
}

/// The changes from `old` to `new` at time `now`, by classes of principals.
pub fn diff(old: &Snapshot, new: &Snapshot, now: Timestamp) -> Diff {
    let space = Space::of(old, new);
    let found = classes::grouped(&space, [old, new], now);
    Diff {
        changes: canonical(found),
        space,
    }
}

/// The changes from `old` to `new` at time `now`, deciding every point of
/// the space on both snapshots: the reference [`diff`] is tested against.
pub fn diff_exhaustive(old: &Snapshot, new: &Snapshot, now: Timestamp) -> Diff {
    let space = Space::of(old, new);
    let mut found = Found::new();
    for (p, principal) in space.principals.iter().enumerate() {
        let [old_caller, new_caller] =
            [old, new].map(|snap| space::Caller::of(snap, &space, principal));
        for (q, probe) in space.probes.iter().enumerate() {
            for (e, environment) in space.environments.iter().enumerate() {
                let [before, after] =
                    [(old, old_caller), (new, new_caller)].map(|(snap, caller)| {
                        space::decide_point(snap, probe, environment.as_deref(), &caller, now)
                    });
                if before.differs(&after) {
                    found.add(&[p as u32], q as u32, e as u32, before, after);
                }
            }
        }
    }
    Diff {
        changes: canonical(found),
        space,
    }
}

/// Changes as they are found, merged by point and outcomes.
pub(crate) struct Found(BTreeMap<(u32, u32, Outcome, Outcome), Vec<u32>>);

impl Found {
    pub(crate) fn new() -> Found {
        Found(BTreeMap::new())
    }

    /// `principals` go from `before` to `after` at probe `q` in environment `e`.
    pub(crate) fn add(
        &mut self,
        principals: &[u32],
        q: u32,
        e: u32,
        before: Outcome,
        after: Outcome,
    ) {
        self.0
            .entry((q, e, before, after))
            .or_default()
            .extend_from_slice(principals);
    }
}

fn canonical(found: Found) -> Vec<Change> {
    found
        .0
        .into_iter()
        .map(|((probe, environment, before, after), mut principals)| {
            principals.sort_unstable();
            principals.dedup();
            Change {
                principals,
                probe,
                environment,
                before,
                after,
            }
        })
        .collect()
}
