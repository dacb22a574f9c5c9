//! Groups, apps and users, and the grants each holds in every tenant it is
//! covered in (through [`super::grants::GrantTable`]).

use super::grants::GrantTable;
use super::orgs::{Closure, Scope};
use super::Compiler;
use crate::document::{AppStatus, Membership, MembershipStatus, Right, TeamRights, User};
use crate::records::{AppEntry, Idx, IdxList, PrincipalRef, UserEntry};
use rustc_hash::{FxHashMap, FxHashSet};

/// Roles confined to the tenants an organization covers (a group's), or
/// valid wherever their membership covers (`None`).
pub(super) type ScopedRoles = (Option<Idx>, Vec<Idx>);
/// Roles and (team or `*`, right) pairs collected for one tenant.
type TenantAccumulator = (Vec<ScopedRoles>, Vec<(Option<Idx>, Right)>);

/// What one user's memberships add up to.
#[derive(Default)]
struct UserReading {
    /// Active memberships' roles and rights, per covered tenant.
    per_tenant: FxHashMap<Idx, TenantAccumulator>,
    /// Tenants covered by invitations.
    invited: Vec<Idx>,
    /// The organization of each active membership (`None`: an area).
    active_scopes: Vec<Option<Idx>>,
}

impl UserReading {
    /// The organization of every active membership, when they all name the
    /// same one: the tenant a request without a selector resolves to.
    fn default_tenant(&self) -> Option<Idx> {
        match self.active_scopes.split_first() {
            Some((first @ Some(_), rest)) if rest.iter().all(|s| s == first) => *first,
            _ => None,
        }
    }
}

/// A group: its organization and its roles.
pub(super) struct CompiledGroup {
    pub(super) org: Option<Idx>,
    pub(super) roles: Vec<Idx>,
}

impl<'d> Compiler<'d> {
    pub(super) fn compile_groups(&mut self) -> Vec<CompiledGroup> {
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

    pub(super) fn compile_apps(&mut self) -> Vec<AppEntry> {
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

    pub(super) fn grant_apps(
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
                ("app", &app.id, "teams"),
                &app.teams,
                scope,
                closure,
                team_org,
            );
            let roles = [(None, roles)];
            for &tenant in closure.org_cover(entry.org) {
                grants.add(PrincipalRef::App(app_idx as Idx), tenant, &roles, &rights);
            }
        }
    }

    pub(super) fn compile_users(
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
            let reading = self.read_memberships(user, groups, closure, team_org);
            for (tenant, (roles, rights)) in &reading.per_tenant {
                grants.add(PrincipalRef::User(user_idx), *tenant, roles, rights);
            }
            // An invitation counts only where no active membership covers.
            for &tenant in &reading.invited {
                if !reading.per_tenant.contains_key(&tenant) {
                    pending.insert((user_idx, tenant));
                }
            }
            user_entries.push(UserEntry {
                principal: format!("user:{}", user.id).into(),
                default_tenant: reading.default_tenant(),
            });
        }
        (user_entries, pending)
    }

    /// One user's memberships: what each active one grants per tenant, and
    /// where the invited ones point.
    fn read_memberships(
        &mut self,
        user: &User,
        groups: &[CompiledGroup],
        closure: &Closure,
        team_org: &[Option<Idx>],
    ) -> UserReading {
        let mut reading = UserReading::default();
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
                ("user", &user.id, &field("teams")),
                &membership.teams,
                scope,
                closure,
                team_org,
            );
            let covered = closure.cover(scope);
            match membership.status {
                MembershipStatus::Invited => reading.invited.extend_from_slice(covered),
                MembershipStatus::Active => {
                    reading.active_scopes.push(match scope {
                        Scope::Org(org) => Some(org),
                        Scope::Area(_) => None,
                    });
                    for &tenant in covered {
                        let slot = reading.per_tenant.entry(tenant).or_default();
                        slot.0.extend(roles.iter().cloned());
                        slot.1.extend(rights.iter().copied());
                    }
                }
            }
        }
        reading
    }

    pub(super) fn membership_roles(
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

    /// Resolves a team-rights map; each team must belong to an organization
    /// the scope covers.
    pub(super) fn resolve_rights(
        &mut self,
        (kind, id, field): (&'static str, &str, &str),
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
}
