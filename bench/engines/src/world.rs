//! Reading the snapshot document (the same JSON tenantgate loads) for the
//! converters, and the parts of it the comparison covers.

use serde_json::Value;
use tenantgate_policy::Timestamp;

pub fn arr<'a>(v: &'a Value, field: &str) -> &'a [Value] {
    v.get(field)
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
}

pub fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or_default()
}

pub fn strings<'a>(v: &'a Value, field: &str) -> Vec<&'a str> {
    arr(v, field).iter().filter_map(Value::as_str).collect()
}

/// RFC 3339 → Unix seconds (snapshot times are whole seconds).
pub fn unix_seconds(text: &str) -> Option<i64> {
    Timestamp::parse_rfc3339(text).map(|t| t.0.div_euclid(1_000_000_000))
}

/// Routes every engine is asked about: not public, a concrete tenant, and a
/// concrete team list (or none). Public routes, `"tenant": "*"` routes (the tenant
/// then comes from a selector header or the app's organization) and `["*"]` team
/// lists are the excluded corners (README.md).
pub fn compared_route(route: &Value) -> bool {
    let public = route
        .get("public")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let tenant = s(route, "tenant");
    let star_teams = strings(route, "teams").contains(&"*");
    !public && !tenant.is_empty() && tenant != "*" && !star_teams
}

/// Does a role permission (`*`, `prefix*`, or exact) grant `wanted`?
pub fn grant_matches(grant: &str, wanted: &str) -> bool {
    match grant.strip_suffix('*') {
        Some(prefix) => wanted.starts_with(prefix),
        None => grant == wanted,
    }
}

/// Every environment any organization lists.
pub fn all_environments(doc: &Value) -> Vec<String> {
    let mut envs: Vec<String> = arr(doc, "organizations")
        .iter()
        .flat_map(|o| strings(o, "environments"))
        .map(str::to_string)
        .collect();
    envs.sort();
    envs.dedup();
    envs
}
