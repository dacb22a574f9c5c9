//! [`GrantTable`]: builds and de-duplicates [`Grants`] (most principals hold
//! one of a few shapes).

use super::orgs::Closure;
use super::principals::ScopedRoles;
use crate::document::{Document, Right};
use crate::records::{Grants, Idx, PrincipalRef};
use rustc_hash::FxHashMap;

/// A grant's identity: sorted roles, sorted team rights, the `*` right.
type GrantKey = (Vec<Idx>, Vec<(Idx, Right)>, Option<Right>);

/// Builds and de-duplicates [`Grants`]: most principals hold one of a few shapes.
pub(super) struct GrantTable<'a> {
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
    pub(super) fn new(
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

    /// Distinct grants built so far.
    pub(super) fn len(&self) -> usize {
        self.grants.len()
    }

    /// The grants, and each (principal, tenant)'s grant.
    #[allow(clippy::type_complexity)]
    pub(super) fn into_parts(self) -> (Vec<Grants>, FxHashMap<(PrincipalRef, Idx), Idx>) {
        (self.grants, self.by_principal)
    }

    pub(super) fn add(
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

    pub(super) fn build(
        &self,
        roles: &[Idx],
        rights: &[(Idx, Right)],
        star: Option<Right>,
    ) -> Grants {
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
            teams_header: teams.join(",").into(),
            best_team_right: rights.iter().map(|(_, r)| *r).max(),
            rights: rights.into(),
            star,
            permissions: permissions.into(),
        }
    }
}
