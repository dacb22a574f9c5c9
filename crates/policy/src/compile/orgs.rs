//! Organizations, their environments and the scopes memberships cover.

use super::Compiler;
use crate::document::{OrgStatus, OrgType, Organization};
use crate::records::{Idx, OrgEntry};
use crate::text::{is_valid_id, is_valid_issuer};
use rustc_hash::FxHashMap;

/// What a membership (or an app) is scoped to.
#[derive(Clone, Copy)]
pub(super) enum Scope {
    Area(Idx),
    Org(Idx),
}

/// Which organizations each organization and each area covers.
pub(super) struct Closure {
    org_cover: Vec<Vec<Idx>>,
    area_cover: Vec<Vec<Idx>>,
}

impl Closure {
    pub(super) fn org_cover(&self, org: Idx) -> &[Idx] {
        self.org_cover.get(org as usize).map_or(&[], Vec::as_slice)
    }

    pub(super) fn cover(&self, scope: Scope) -> &[Idx] {
        match scope {
            Scope::Org(org) => self.org_cover(org),
            Scope::Area(area) => self
                .area_cover
                .get(area as usize)
                .map_or(&[], Vec::as_slice),
        }
    }
}

impl<'d> Compiler<'d> {
    /// Every organization: its handle, its place in the hierarchy, its
    /// standing and its environments.
    pub(super) fn compile_orgs(&mut self) -> Vec<OrgEntry> {
        let doc = self.doc;
        let mut handles: FxHashMap<&str, &str> = FxHashMap::default();
        let mut orgs = Vec::with_capacity(doc.organizations.len());
        for org in &doc.organizations {
            self.check_org_names(org, &mut handles);
            if let Some(area) = &org.area {
                self.resolve("area", "organization", &org.id, "area", area);
            }
            let parent = match &org.parent {
                Some(p) => self.resolve("organization", "organization", &org.id, "parent", p),
                None => None,
            };
            self.check_hierarchy(org, parent);
            let expires_at = self.parse_time(
                "organization",
                &org.id,
                "expires_at",
                org.expires_at.as_deref(),
            );
            orgs.push(OrgEntry {
                id: org.id.as_str().into(),
                handle: org.handle.as_str().into(),
                parent,
                suspended: org.status == OrgStatus::Suspended,
                expires_at,
                envs: self.org_environments(org).into(),
                evaluation: org.org_type == OrgType::Evaluation,
                issuers: Box::new([]),
            });
        }
        self.link_issuers(&mut orgs);
        orgs
    }

    /// Each organization's trusted token issuers: its own, its parent's and
    /// its area's (a sub-organization's area is its parent's), so a token of
    /// one tenant's identity provider acts only where that tenant trusts it.
    fn link_issuers(&mut self, orgs: &mut [OrgEntry]) {
        let doc = self.doc;
        for area in &doc.areas {
            self.check_issuers("area", &area.id, &area.token_issuers);
        }
        for org in &doc.organizations {
            self.check_issuers("organization", &org.id, &org.token_issuers);
        }
        let areas = &self.areas;
        let area_issuers = |name: Option<&String>| {
            let area = name
                .and_then(|n| areas.get(n.as_str()))
                .and_then(|&a| doc.areas.get(a as usize));
            area.map_or(&[][..], |a| a.token_issuers.as_slice())
        };
        for (i, entry) in orgs.iter_mut().enumerate() {
            let Some(org) = doc.organizations.get(i) else {
                continue;
            };
            let parent = entry.parent.and_then(|p| doc.organizations.get(p as usize));
            let area = parent.map_or(org.area.as_ref(), |p| p.area.as_ref());
            let mut issuers: Vec<Box<str>> = org
                .token_issuers
                .iter()
                .chain(parent.map_or(&[][..], |p| p.token_issuers.as_slice()))
                .chain(area_issuers(area))
                .map(|iss| iss.as_str().into())
                .collect();
            issuers.sort_unstable();
            issuers.dedup();
            entry.issuers = issuers.into();
        }
    }

    fn check_issuers(&mut self, kind: &'static str, id: &str, issuers: &[String]) {
        for issuer in issuers {
            if !is_valid_issuer(issuer) {
                let what = "token issuer must be 1 to 512 visible ASCII characters, got";
                self.problem(kind, id, "token_issuers", issuer, what);
            }
        }
    }

    /// An organization's id is no area id; its handle is an id, unique, and
    /// no other organization's id.
    fn check_org_names(
        &mut self,
        org: &'d Organization,
        handles: &mut FxHashMap<&'d str, &'d str>,
    ) {
        let doc = self.doc;
        if self.areas.contains_key(org.id.as_str()) {
            let what = "id is also an area id, so a membership scope naming it is ambiguous:";
            self.problem("organization", &org.id, "id", &org.id, what);
        }
        if !is_valid_id(&org.handle) {
            let what = "handle must be non-empty and use only `A-Za-z0-9._:-`, got";
            self.problem("organization", &org.id, "handle", &org.handle, what);
        } else if let Some(other) = handles.insert(&org.handle, &org.id) {
            let what = format!("handle already used by organization `{other}`:");
            self.problem("organization", &org.id, "handle", &org.handle, &what);
        }
        if let Some(&owner) = self.orgs.get(org.handle.as_str()) {
            let owner_id = doc.organizations.get(owner as usize).map(|o| o.id.as_str());
            if owner_id != Some(org.id.as_str()) {
                let what = "handle equals another organization's id";
                self.problem("organization", &org.id, "handle", &org.handle, what);
            }
        }
    }

    /// Two levels under an area: a parent has no parent, and a
    /// sub-organization's area, if given, is its parent's.
    fn check_hierarchy(&mut self, org: &Organization, parent: Option<Idx>) {
        let Some(parent_doc) = parent.and_then(|p| self.doc.organizations.get(p as usize)) else {
            return;
        };
        if let Some(grandparent) = &parent_doc.parent {
            let what = format!(
                "parent has a parent (`{grandparent}`); sub-organizations cannot have children:"
            );
            self.problem("organization", &org.id, "parent", &parent_doc.id, &what);
        }
        if let Some(own) = &org.area {
            if parent_doc.area.as_deref() != Some(own.as_str()) {
                let what = format!(
                    "a sub-organization's area must equal its parent's (`{}`), got",
                    parent_doc.area.as_deref().unwrap_or("none")
                );
                self.problem("organization", &org.id, "area", own, &what);
            }
        }
    }

    /// An organization's environments, interned, sorted.
    fn org_environments(&mut self, org: &Organization) -> Vec<Idx> {
        let mut envs = Vec::with_capacity(org.environments.len());
        for env in &org.environments {
            if !is_valid_id(env) {
                let what = "environment must use only `A-Za-z0-9._:-`, got";
                self.problem("organization", &org.id, "environments", env, what);
            }
            envs.push(self.intern_env(env));
        }
        envs.sort_unstable();
        envs.dedup();
        envs
    }

    pub(super) fn scope_closure(&self, orgs: &[OrgEntry]) -> Closure {
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

    pub(super) fn scope_of(&self, name: &str) -> Option<Scope> {
        if let Some(&org) = self.orgs.get(name) {
            Some(Scope::Org(org))
        } else {
            self.areas.get(name).map(|&area| Scope::Area(area))
        }
    }

    pub(super) fn intern_env(&mut self, name: &str) -> Idx {
        let next = self.envs.len() as Idx;
        *self.envs.entry(name.into()).or_insert(next)
    }

    pub(super) fn resolve_envs(
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
}
