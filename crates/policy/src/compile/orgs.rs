//! Organizations, their environments and the scopes memberships cover.

use super::Compiler;
use crate::document::OrgStatus;
use crate::records::{Idx, OrgEntry};
use crate::text::is_valid_id;
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
    pub(super) fn compile_orgs(&mut self) -> Vec<OrgEntry> {
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
