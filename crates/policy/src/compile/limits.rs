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

/// How far a document expands: (principal, tenant) pairs, and those pairs
/// times the roles and team rights folded into each.
#[derive(Default)]
struct Expansion {
    pairs: u64,
    work: u64,
}

impl Expansion {
    fn add(&mut self, covered: usize, items: usize) {
        let covered = covered as u64;
        self.pairs = self.pairs.saturating_add(covered);
        self.work = self
            .work
            .saturating_add(covered.saturating_mul(1 + items as u64));
    }
}

impl<'d> Compiler<'d> {
    /// The work and memory the grants and permission bits of this document
    /// take, checked against the limits before any of it is done.
    pub(super) fn check_expansion(
        &self,
        closure: &Closure,
        vocabulary: usize,
    ) -> Result<(), Problem> {
        let doc = self.doc;
        let expansion = self.expansion(closure);
        let patterns: u64 = doc.roles.iter().map(|r| r.permissions.len() as u64).sum();
        let words = vocabulary.div_ceil(64) as u64;
        let role_and_grant_words = (doc.roles.len() as u64)
            .saturating_add(expansion.pairs)
            .saturating_mul(words);
        let checks = [
            (
                expansion.pairs,
                MAX_GRANT_PAIRS,
                "users[].memberships, apps[]",
                "(principal, tenant) grants",
            ),
            (
                expansion.work,
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
                role_and_grant_words,
                MAX_PERMISSION_WORDS,
                "roles[].permissions",
                "64-bit permission words",
            ),
        ];
        match checks
            .into_iter()
            .find(|(amount, limit, _, _)| amount > limit)
        {
            Some((amount, limit, field, what)) => Err(Problem {
                kind: "snapshot",
                id: "(top level)".into(),
                field: field.into(),
                value: amount.to_string(),
                what: format!(
                    "the snapshot expands to {amount} {what}, more than the limit of {limit}"
                ),
            }),
            None => Ok(()),
        }
    }

    /// What the apps and the memberships expand to over the tenants they cover.
    fn expansion(&self, closure: &Closure) -> Expansion {
        let doc = self.doc;
        let mut expansion = Expansion::default();
        for app in &doc.apps {
            if let Some(&org) = self.orgs.get(app.organization.as_str()) {
                expansion.add(
                    closure.org_cover(org).len(),
                    app.roles.len() + app.teams.len(),
                );
            }
        }
        for membership in doc.users.iter().flat_map(|u| &u.memberships) {
            if let Some(scope) = self.scope_of(&membership.scope) {
                let group_roles: usize = membership
                    .groups
                    .iter()
                    .filter_map(|g| self.groups.get(g.as_str()))
                    .filter_map(|&g| doc.groups.get(g as usize))
                    .map(|g| g.roles.len())
                    .sum();
                let items = membership.roles.len() + membership.teams.len() + group_roles;
                expansion.add(closure.cover(scope).len(), items);
            }
        }
        expansion
    }
}
