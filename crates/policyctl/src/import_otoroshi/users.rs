//! Admins: users with one membership per tenant they may read, granting what Otoroshi grants
//! (rules 1 to 13), or less with a warning.

use super::json::{array, text, Ids};
use super::otoroshi::{matches, parse_access, plain_pattern, Access, AdminRight, TeamRights};
use super::{Converter, TENANT_ADMIN};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Team patterns of an admin's rights, and whether they reached an exported team.
type Reached<'r> = BTreeMap<&'r str, bool>;

/// One tenant's membership, and the admin's access to the tenant.
struct Membership {
    document: Value,
    access: Access,
}

impl Converter<'_> {
    pub(super) fn users(&mut self) -> Vec<Value> {
        let export = self.export;
        let orgs: Vec<(String, String)> = self
            .orgs
            .by_source
            .iter()
            .map(|(s, id)| (s.clone(), id.clone()))
            .collect();
        let mut user_ids = Ids::default();
        let mut emails = BTreeSet::new();
        let mut out = Vec::new();
        let admins = ["simpleAdmins", "admins", "webauthnAdmins"]
            .iter()
            .flat_map(|kind| array(export, kind));
        for admin in admins {
            let Some(username) = text(admin, "username") else {
                continue;
            };
            let Some(memberships) = self.memberships(&username, admin, &orgs) else {
                continue;
            };
            let id = user_ids.assign(&username);
            let mut user = json!({"id": id, "memberships": memberships});
            // An email names one user: the first admin with it.
            if emails.insert(username.to_ascii_lowercase()) {
                if let Some(object) = user.as_object_mut() {
                    object.insert("otoroshi_emails".into(), json!([username]));
                }
            }
            out.push(user);
        }
        out
    }

    /// An admin's memberships in the exported tenants `orgs` (Otoroshi's id, ours); `None`
    /// (with a warning) when it has none.
    fn memberships(
        &mut self,
        username: &str,
        admin: &Value,
        orgs: &[(String, String)],
    ) -> Option<Vec<Value>> {
        let rights = self.admin_rights(username, admin)?;
        self.warn_about_unmatched_tenants(username, &rights, orgs);
        let mut memberships = Vec::new();
        let mut reached = Reached::new();
        let mut read_only_in = Vec::new();
        for (source, org) in orgs {
            let Some(membership) = self.membership(username, &rights, source, org, &mut reached)
            else {
                continue;
            };
            if membership.access == Access::Read {
                read_only_in.push(org.clone());
            }
            memberships.push(membership.document);
        }
        self.warn_about_unreached_teams(username, &reached);
        self.warn_about_any_tenant_routes(username, &rights, &read_only_in);
        if memberships.is_empty() {
            self.warnings.push(format!(
                "admin `{username}`: no right on an exported tenant, skipped"
            ));
            return None;
        }
        Some(memberships)
    }

    /// The membership in tenant `source` (organization `org`), if a right reads it.
    fn membership<'r>(
        &mut self,
        username: &str,
        rights: &'r [AdminRight],
        source: &str,
        org: &str,
        reached: &mut Reached<'r>,
    ) -> Option<Membership> {
        let here: Vec<&AdminRight> = rights
            .iter()
            .filter(|r| matches(&r.tenant, source))
            .collect();
        let access = here.iter().map(|r| r.access).max().unwrap_or(Access::None);
        if access == Access::None {
            return None;
        }
        // Rule 6: one right with write on the tenant and on team `*`.
        let tenant_admin = here.iter().any(|r| {
            r.access == Access::Write
                && r.teams.iter().any(|(t, a)| t == "*" && *a == Access::Write)
        });
        let teams = self.teams_of(org);
        let mut granted = granted_team_rights(&here, &teams, reached);
        if tenant_admin {
            granted.every = Access::Write;
        }
        if pooled_team_rights(rights, access, &teams).exceeds(&granted) {
            self.warnings.push(format!(
                "admin `{username}`: in tenant `{org}`, Otoroshi also counts the team rights of its other rights; here each counts with its own tenant right, so less is granted"
            ));
        }
        let role = match (tenant_admin, access) {
            (true, _) => TENANT_ADMIN,
            (false, Access::Write) => "otoroshi:tenant-write",
            (false, _) => "otoroshi:tenant-read",
        };
        let document = json!({
            "scope": org, "status": "active", "roles": [role], "teams": granted.to_json(),
        });
        Some(Membership { document, access })
    }

    /// The exported teams of organization `org`: Otoroshi's id and ours.
    fn teams_of(&self, org: &str) -> Vec<(String, String)> {
        self.teams
            .by_source
            .iter()
            .filter(|(_, id)| self.team_org.get(*id).map(String::as_str) == Some(org))
            .map(|(s, id)| (s.clone(), id.clone()))
            .collect()
    }

    /// An admin's rights as Otoroshi reads them (rules 1, 2 and 12), less the
    /// patterns it would read as regular expressions; `None` when `rights` is
    /// not a list (a super admin to Otoroshi, not imported).
    fn admin_rights(&mut self, username: &str, admin: &Value) -> Option<Vec<AdminRight>> {
        let Some(list) = admin.get("rights").and_then(Value::as_array) else {
            self.warnings.push(format!(
                "admin `{username}`: `rights` is not a list, which Otoroshi reads as a super admin: not imported (grant it as `[{{\"tenant\": \"*:rw\", \"teams\": [\"*:rw\"]}}]` if meant)"
            ));
            return None;
        };
        let mut out = Vec::new();
        for (n, right) in list.iter().enumerate() {
            let Some(right) = parse_right(right) else {
                self.warnings.push(format!(
                    "admin `{username}`: right {} ignored, as Otoroshi ignores it (a `tenant` string and a `teams` list of strings, none only `:`)",
                    n + 1
                ));
                continue;
            };
            if !plain_pattern(&right.tenant) {
                self.warnings.push(format!(
                    "admin `{username}`: tenant right `{}` left out: Otoroshi reads it as a regular expression",
                    right.tenant
                ));
                continue;
            }
            out.push(AdminRight {
                teams: self.plain_team_rights(username, right.teams),
                ..right
            });
        }
        Some(out)
    }

    /// `teams` without repeats and without the patterns Otoroshi reads as regular expressions.
    fn plain_team_rights(
        &mut self,
        username: &str,
        teams: Vec<(String, Access)>,
    ) -> Vec<(String, Access)> {
        let mut kept: Vec<(String, Access)> = Vec::new();
        for (team, access) in teams {
            if !plain_pattern(&team) {
                self.warnings.push(format!(
                    "admin `{username}`: team right `{team}` left out: Otoroshi reads it as a regular expression"
                ));
            } else if !kept.contains(&(team.clone(), access)) {
                kept.push((team, access));
            }
        }
        kept
    }

    fn warn_about_unmatched_tenants(
        &mut self,
        username: &str,
        rights: &[AdminRight],
        orgs: &[(String, String)],
    ) {
        for right in rights {
            if !orgs
                .iter()
                .any(|(source, _)| matches(&right.tenant, source))
            {
                self.warnings.push(format!(
                    "admin `{username}`: tenant right `{}` matches no exported tenant",
                    right.tenant
                ));
            }
        }
    }

    fn warn_about_unreached_teams(&mut self, username: &str, reached: &Reached<'_>) {
        let unreached: Vec<&str> = reached
            .iter()
            .filter(|(_, hit)| !**hit)
            .map(|(pattern, _)| *pattern)
            .collect();
        if !unreached.is_empty() {
            self.warnings.push(format!(
                "admin `{username}`: team rights `{}` match no exported team of their tenants: nobody gets a right through them",
                unreached.join(", ")
            ));
        }
    }

    /// Rule 10: Otoroshi lets an admin with write somewhere write routes at `*` while working
    /// in a tenant it may only read.
    fn warn_about_any_tenant_routes(
        &mut self,
        username: &str,
        rights: &[AdminRight],
        read_only_in: &[String],
    ) {
        let writes_somewhere = rights.iter().any(|r| r.access == Access::Write);
        if self.any_tenant_route && writes_somewhere && !read_only_in.is_empty() {
            self.warnings.push(format!(
                "admin `{username}`: Otoroshi lets it write routes at `_loc.tenant: *` also when working in `{}`, where it may only read; here it may not",
                read_only_in.join("`, `")
            ));
        }
    }
}

/// A right `{"tenant": "T:perm", "teams": ["X:perm", …]}` as `UserRight` reads it; `None`
/// where Otoroshi ignores it.
fn parse_right(right: &Value) -> Option<AdminRight> {
    let tenant = right.get("tenant").and_then(Value::as_str)?;
    let teams: Vec<&str> = right
        .get("teams")
        .and_then(Value::as_array)
        .and_then(|teams| teams.iter().map(Value::as_str).collect())?;
    let (tenant, access) = parse_access(tenant)?;
    let teams: Option<Vec<(String, Access)>> = teams.iter().map(|t| parse_access(t)).collect();
    Some(AdminRight {
        tenant,
        access,
        teams: teams?,
    })
}

/// What the rights that match a tenant grant on its `teams` (rule 8: each team right counts
/// with its own right's tenant right); marks the team patterns that reached a team.
fn granted_team_rights<'r>(
    here: &[&'r AdminRight],
    teams: &[(String, String)],
    reached: &mut Reached<'r>,
) -> TeamRights {
    let mut granted = TeamRights::default();
    for right in here {
        for (pattern, access) in &right.teams {
            let access = (*access).min(right.access);
            if access == Access::None {
                continue;
            }
            let hit = granted.grant(pattern, access, teams);
            *reached.entry(pattern.as_str()).or_default() |= hit;
        }
    }
    granted
}

/// What Otoroshi grants on a tenant's `teams` (rule 13): any right's team rights, with the
/// admin's access to the tenant.
fn pooled_team_rights(
    rights: &[AdminRight],
    access: Access,
    teams: &[(String, String)],
) -> TeamRights {
    let mut pooled = TeamRights::default();
    for (pattern, team_access) in rights.iter().flat_map(|r| &r.teams) {
        pooled.grant(pattern, (*team_access).min(access), teams);
    }
    pooled
}
