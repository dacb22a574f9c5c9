//! Otoroshi's rules, as `otoroshi/app/models/teams.scala` and `utils/regex.scala` apply them
//! (the numbers are the rules of the table in the module's documentation): ids, accesses,
//! patterns, entity locations, and the rights of one admin.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use tenantgate_policy::Timestamp;

/// A tenant or team id as Otoroshi keeps it (`TenantId`, `TeamId`): lower-cased,
/// and trimmed as Java trims (every character up to the space).
pub(super) fn otoroshi_id(raw: &str) -> String {
    raw.to_lowercase()
        .trim_matches(|c: char| c <= ' ')
        .to_string()
}

/// Otoroshi's access levels (`x:r`, `x:rw`, `x`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Access {
    #[default]
    None,
    Read,
    Write,
}

impl Access {
    pub(super) fn right(self) -> Option<&'static str> {
        match self {
            Access::None => None,
            Access::Read => Some("read"),
            Access::Write => Some("write"),
        }
    }
}

/// `id:perm` as `TenantAccess` and `TeamAccess` read it (rules 1 and 2): no
/// `:` is read-write; else the last non-empty part (Java's `split` drops
/// trailing empty ones) holding `r` reads, and `w` as well writes, unless it is
/// `not`. `None` where Otoroshi fails the whole right: nothing but `:`.
pub(super) fn parse_access(raw: &str) -> Option<(String, Access)> {
    let raw = otoroshi_id(raw);
    if !raw.contains(':') {
        return Some((raw, Access::Write));
    }
    let parts: Vec<&str> = raw.split(':').collect();
    let last = parts.get(parts.iter().rposition(|p| !p.is_empty())?)?;
    let head = parts.first()?;
    let access = if *last == "not" || !last.contains('r') {
        Access::None
    } else if last.contains('w') {
        Access::Write
    } else {
        Access::Read
    };
    Some((otoroshi_id(head), access))
}

/// A pattern that Otoroshi's regular expression (`RegexPool`: `.` escaped, `*`
/// as `.*`) reads as `matches` does: letters, digits, `-`, `_`, `.`, `@`, `*`.
pub(super) fn plain_pattern(pattern: &str) -> bool {
    pattern
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '*'))
}

/// Otoroshi's tenant and team patterns against an id, both as `otoroshi_id`
/// gives them (rules 3 and 4): `*`, an id `*`, or `*` wildcards in the pattern
/// (never across a line break, as `.*` does not).
pub(super) fn matches(pattern: &str, id: &str) -> bool {
    if pattern == "*" || id == "*" {
        return true;
    }
    if !pattern.contains('*') {
        return pattern == id;
    }
    if id.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']) {
        return false;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    if !id.starts_with(first) || id.len() < first.len() + last.len() || !id.ends_with(last) {
        return false;
    }
    let mut rest = id.get(first.len()..id.len() - last.len()).unwrap_or("");
    for middle in parts.iter().skip(1).take(parts.len().saturating_sub(2)) {
        match rest.find(middle) {
            Some(at) => rest = rest.get(at + middle.len()..).unwrap_or(""),
            None => return false,
        }
    }
    true
}

/// A team pattern of only `*`: every team (Otoroshi's `*`, or a wildcard that
/// matches every id).
pub(super) fn every_team(pattern: &str) -> bool {
    !pattern.is_empty() && pattern.chars().all(|c| c == '*')
}

/// An entity's `_loc` as `EntityLocation.readFromKey` reads it (rule 11), ids
/// as `otoroshi_id` gives them.
pub(super) struct Location {
    pub(super) tenant: String,
    pub(super) teams: Vec<String>,
}

pub(super) fn location(entity: &Value) -> Location {
    let default_teams = || vec!["default".to_string()];
    let Some(loc) = entity.get("_loc") else {
        return Location {
            tenant: "default".into(),
            teams: default_teams(),
        };
    };
    let tenant = match loc.get("tenant") {
        Some(Value::String(s)) => otoroshi_id(s),
        _ => "default".into(),
    };
    let teams = match loc.get("teams") {
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
            let mut teams: Vec<String> = Vec::new();
            for team in list.iter().filter_map(Value::as_str).map(otoroshi_id) {
                if !teams.contains(&team) {
                    teams.push(team);
                }
            }
            teams
        }
        // A list of team objects: the ids of those that read as teams.
        Some(Value::Array(list)) => {
            let teams: Vec<String> = list
                .iter()
                .filter(|t| t.get("tenant").is_some_and(Value::is_string))
                .filter_map(|t| t.get("id").and_then(Value::as_str))
                .map(otoroshi_id)
                .collect();
            if teams.is_empty() {
                default_teams()
            } else {
                teams
            }
        }
        _ => default_teams(),
    };
    Location { tenant, teams }
}

/// `validUntil`: Unix milliseconds or an ISO 8601 date-time.
pub(super) fn expiry(value: &Value) -> Option<Option<String>> {
    match value.get("validUntil") {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(ms)) => {
            let nanos = ms.as_i64()?.checked_mul(1_000_000)?;
            Some(Some(Timestamp::from_unix_nanos(nanos).to_string()))
        }
        Some(Value::String(s)) => Timestamp::parse_rfc3339(s).map(|t| Some(t.to_string())),
        Some(_) => None,
    }
}

/// A route's frontend domain as host filter and path prefix.
pub(super) fn split_domain(
    domain: &str,
    warnings: &mut Vec<String>,
    route: &str,
) -> (Vec<String>, String) {
    let (host, path) = match domain.find('/') {
        Some(at) => (
            domain.get(..at).unwrap_or(""),
            domain.get(at..).unwrap_or("/"),
        ),
        None => (domain, "/"),
    };
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let hosts = if host.is_empty() || host.contains('*') {
        if host.contains('*') {
            warnings.push(format!(
                "route `{route}`: domain `{domain}`: wildcard host, so the route matches any host"
            ));
        }
        Vec::new()
    } else {
        vec![host.to_ascii_lowercase()]
    };
    let mut prefix = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if segment.contains(['*', ':', '{', '$', '?', '#']) {
            warnings.push(format!(
                "route `{route}`: domain `{domain}`: path cut at `{segment}` (prefix match only)"
            ));
            break;
        }
        prefix.push('/');
        prefix.push_str(segment);
    }
    if prefix.is_empty() {
        prefix.push('/');
    }
    (hosts, prefix)
}

/// One of an admin's rights, as `UserRight` reads it: a tenant pattern and
/// access, and team patterns and accesses.
pub(super) struct AdminRight {
    pub(super) tenant: String,
    pub(super) access: Access,
    pub(super) teams: Vec<(String, Access)>,
}

/// Team rights in one tenant: on every team (`"*"`), and per team (ours).
#[derive(Default)]
pub(super) struct TeamRights {
    pub(super) every: Access,
    pub(super) teams: BTreeMap<String, Access>,
}

impl TeamRights {
    /// Grants `access` through team pattern `pattern` over `teams` (Otoroshi's
    /// id and ours); false when the pattern reaches none of them.
    pub(super) fn grant(
        &mut self,
        pattern: &str,
        access: Access,
        teams: &[(String, String)],
    ) -> bool {
        if every_team(pattern) {
            self.every = self.every.max(access);
            return true;
        }
        let mut reached = false;
        for (source, id) in teams {
            if matches(pattern, source) {
                let right = self.teams.entry(id.clone()).or_insert(Access::None);
                *right = (*right).max(access);
                reached = true;
            }
        }
        reached
    }

    /// Whether these rights reach further than `other` somewhere.
    pub(super) fn exceeds(&self, other: &TeamRights) -> bool {
        let on = |rights: &TeamRights, team: &str| {
            rights
                .every
                .max(rights.teams.get(team).copied().unwrap_or(Access::None))
        };
        self.every > other.every
            || self
                .teams
                .keys()
                .any(|team| on(self, team) > on(other, team))
    }

    /// As a membership's `teams`: rights on single teams that the `"*"` right
    /// does not already hold.
    pub(super) fn to_json(&self) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(right) = self.every.right() {
            out.insert("*".into(), right.into());
        }
        for (team, access) in &self.teams {
            if *access > self.every {
                if let Some(right) = access.right() {
                    out.insert(team.clone(), right.into());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::super::json::sanitize;
    use super::*;
    use serde_json::json;

    #[test]
    fn access_and_patterns_read_as_otoroshi_reads_them() {
        let write = Some(("org-1".to_string(), Access::Write));
        assert_eq!(parse_access("Org-1:RW"), write);
        assert_eq!(parse_access(" org-1:wr "), write);
        assert_eq!(parse_access("org-1"), write);
        assert_eq!(
            parse_access("org-1:r"),
            Some(("org-1".into(), Access::Read))
        );
        assert_eq!(
            parse_access("org-1:w"),
            Some(("org-1".into(), Access::None))
        );
        assert_eq!(
            parse_access("org-1:not"),
            Some(("org-1".into(), Access::None))
        );
        // Java's split drops trailing empty parts: the id is then the suffix.
        assert_eq!(parse_access("rw:"), Some(("rw".into(), Access::Write)));
        assert_eq!(parse_access("a:b:r"), Some(("a".into(), Access::Read)));
        assert_eq!(parse_access("::"), None);
        assert!(matches("team-*", "team-1"));
        assert!(matches("*-prod-*", "eu-prod-1"));
        assert!(!matches("team-*", "org-1"));
        assert!(matches("a*b*a", "aba"));
        assert!(!matches("a*x*c", "abc"));
        assert!(matches("team-1", "*"));
        assert!(!matches("team-*", "team-\n1"));
        assert!(matches("*", "team-\n1"));
        assert!(plain_pattern("team-*.eu_1@x"));
        assert!(!plain_pattern("team+"));
        assert!(!plain_pattern("t[1]"));
        assert_eq!(otoroshi_id(" Acme\t"), "acme");
        assert_eq!(sanitize("alice@acme.example"), "alice-acme.example");
    }

    #[test]
    fn locations_read_as_otoroshi_reads_them() {
        let read = |v: Value| {
            let l = location(&v);
            (l.tenant, l.teams)
        };
        let default = ("default".to_string(), vec!["default".to_string()]);
        assert_eq!(read(json!({})), default);
        assert_eq!(read(json!({"_loc": {}})), default);
        assert_eq!(read(json!({"_loc": {"teams": null}})), default);
        assert_eq!(
            read(json!({"_loc": {"tenant": "Acme", "teams": []}})),
            ("acme".into(), vec![])
        );
        assert_eq!(
            read(json!({"_loc": {"tenant": "t", "teams": ["A", "a", "*"]}})),
            ("t".into(), vec!["a".into(), "*".into()])
        );
        assert_eq!(
            read(json!({"_loc": {"tenant": "t", "teams": [{"id": "B", "tenant": "t"}, 3]}})),
            ("t".into(), vec!["b".into()])
        );
    }

    #[test]
    fn domains_become_hosts_and_prefixes() {
        let mut warnings = Vec::new();
        assert_eq!(
            split_domain("api.oto.tools:8080/orders/:id/items", &mut warnings, "r"),
            (vec!["api.oto.tools".to_string()], "/orders".to_string())
        );
        assert_eq!(
            split_domain("*.oto.tools", &mut warnings, "r"),
            (Vec::new(), "/".to_string())
        );
        assert_eq!(warnings.len(), 2);
    }
}
