//! How far a document may expand when compiled, checked before the work:
//! without these limits a few-MB hostile snapshot (every user in an area of
//! thousands of organizations, thousands of roles with wildcard permissions)
//! could exhaust a 32-bit VM. Each is far above what `policyctl generate`
//! produces for a million keys.

use super::orgs::Closure;
use super::Compiler;
use crate::error::Problem;

/// (principal, tenant) pairs whose grants are computed.
pub const MAX_GRANT_PAIRS: u64 = 8_000_000;
/// Those pairs times the roles and team rights folded into each.
pub const MAX_GRANT_WORK: u64 = 64_000_000;
/// Role permission patterns times the distinct permissions routes require.
pub const MAX_PERMISSION_WORK: u64 = 64_000_000;
/// 64-bit words of permission bit sets (per role and per grant).
pub const MAX_PERMISSION_WORDS: u64 = 16_000_000;

impl<'d> Compiler<'d> {
    pub(super) fn check_expansion(
        &self,
        closure: &Closure,
        vocabulary: usize,
    ) -> Result<(), Problem> {
        let doc = self.doc;
        let mut pairs = 0u64;
        let mut work = 0u64;
        let mut count = |covered: usize, items: usize| {
            let covered = covered as u64;
            pairs = pairs.saturating_add(covered);
            work = work.saturating_add(covered.saturating_mul(1 + items as u64));
        };
        for app in &doc.apps {
            if let Some(&org) = self.orgs.get(app.organization.as_str()) {
                count(
                    closure.org_cover(org).len(),
                    app.roles.len() + app.teams.len(),
                );
            }
        }
        for membership in doc.users.iter().flat_map(|u| &u.memberships) {
            if let Some(scope) = self.scope_of(&membership.scope) {
                let items = membership.roles.len() + membership.teams.len();
                let group_roles: usize = membership
                    .groups
                    .iter()
                    .filter_map(|g| self.groups.get(g.as_str()))
                    .filter_map(|&g| doc.groups.get(g as usize))
                    .map(|g| g.roles.len())
                    .sum();
                count(closure.cover(scope).len(), items + group_roles);
            }
        }
        let patterns: u64 = doc.roles.iter().map(|r| r.permissions.len() as u64).sum();
        let words = vocabulary.div_ceil(64) as u64;
        let checks = [
            (
                pairs,
                MAX_GRANT_PAIRS,
                "users[].memberships, apps[]",
                "(principal, tenant) grants",
            ),
            (
                work,
                MAX_GRANT_WORK,
                "users[].memberships, apps[]",
                "role and team entries over covered tenants",
            ),
            (
                patterns.saturating_mul(vocabulary as u64),
                MAX_PERMISSION_WORK,
                "roles[].permissions",
                "permission patterns × distinct route permissions",
            ),
            (
                (doc.roles.len() as u64)
                    .saturating_add(pairs)
                    .saturating_mul(words),
                MAX_PERMISSION_WORDS,
                "roles[].permissions",
                "64-bit permission words",
            ),
        ];
        for (amount, limit, field, what) in checks {
            if amount > limit {
                return Err(Problem {
                    kind: "snapshot",
                    id: "(top level)".into(),
                    field: field.into(),
                    value: amount.to_string(),
                    what: format!(
                        "the snapshot expands to {amount} {what}, more than the limit of {limit}"
                    ),
                });
            }
        }
        Ok(())
    }
}
