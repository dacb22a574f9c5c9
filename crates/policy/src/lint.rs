//! Warnings about a valid snapshot: rules that hold but likely do not say
//! what their author meant. `policyctl validate` prints them; nothing else
//! changes.

use crate::error::{escape_value, Problem};
use crate::records::RouteEntry;
use crate::snapshot::Snapshot;

/// Every warning about `snapshot`, in route order.
pub fn warnings(snapshot: &Snapshot) -> Vec<Problem> {
    snapshot
        .routes
        .iter()
        .filter(|route| !route.methods.is_empty())
        .filter_map(|route| fall_through(snapshot, route))
        .collect()
}

/// A method-restricted route leaves its other methods to whatever broader
/// route matches the same paths: `orders-admin` (POST, DELETE on
/// `/orders/admin`) lets PUT and PATCH on `/orders/admin/…` be decided by
/// `orders`, often not what its author meant.
fn fall_through(snapshot: &Snapshot, route: &RouteEntry) -> Option<Problem> {
    let broader = snapshot
        .routes
        .iter()
        .filter(|other| !std::ptr::eq(*other, route))
        .filter(|other| covers(&other.prefix, &route.prefix))
        .filter(|other| hosts_overlap(other, route))
        .filter(|other| {
            other.methods.is_empty() || other.methods.iter().any(|m| !route.methods.contains(m))
        })
        .max_by_key(|other| other.prefix.len())?;
    let methods: Vec<&str> = route.methods.iter().map(|m| &**m).collect();
    let prefix = String::from_utf8_lossy(&route.prefix);
    let public = if broader.public { " (public)" } else { "" };
    Some(Problem {
        kind: "route",
        id: route.id.to_string(),
        field: "methods".into(),
        value: methods.join(","),
        what: format!(
            "lists only `{}`: other methods on `{}` fall through to the broader route `{}`{public}",
            escape_value(&methods.join(", ")),
            escape_value(&prefix),
            escape_value(&broader.id),
        ),
    })
}

/// Whether `prefix` matches every path `inner` matches (at a segment boundary).
fn covers(prefix: &[u8], inner: &[u8]) -> bool {
    prefix == b"/"
        || inner == prefix
        || (inner.starts_with(prefix) && inner.get(prefix.len()) == Some(&b'/'))
}

fn hosts_overlap(a: &RouteEntry, b: &RouteEntry) -> bool {
    a.hosts.is_empty() || b.hosts.is_empty() || a.hosts.iter().any(|h| b.hosts.contains(h))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_demo_warns_about_orders_admin_only() {
        let snapshot = crate::load_snapshot(include_str!("../../../policies/demo.json")).unwrap();
        let found = warnings(&snapshot);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].id, "orders-admin");
        assert_eq!(
            found[0].to_string(),
            "route `orders-admin`: field `methods`: lists only `POST, DELETE`: other methods on `/orders/admin` fall through to the broader route `orders`"
        );
    }

    #[test]
    fn segment_boundaries_and_hosts_count() {
        assert!(covers(b"/orders", b"/orders/admin"));
        assert!(covers(b"/", b"/x"));
        assert!(!covers(b"/order", b"/orders/admin"));
        let json = |methods: &str, hosts: &str| {
            format!(
                r#"{{"revision": "r", "organizations": [{{"id": "o", "handle": "o-h", "name": "O", "type": "paid", "status": "active", "environments": []}}],
                "routes": [{{"id": "wide", "path_prefix": "/a", "tenant": "o", "hosts": ["x.example"]}},
                           {{"id": "narrow", "path_prefix": "/a/b", "tenant": "o", "methods": {methods}, "hosts": {hosts}}}]}}"#
            )
        };
        let load = |text: String| crate::load_snapshot(&text).unwrap();
        assert_eq!(
            warnings(&load(json(r#"["GET"]"#, r#"["x.example"]"#))).len(),
            1
        );
        assert_eq!(
            warnings(&load(json(r#"["GET"]"#, r#"["y.example"]"#))).len(),
            0
        );
        assert_eq!(warnings(&load(json("[]", "[]"))).len(), 0);
    }
}
