//! A decision as one structured log line (issue 14, "decision logs"): what a
//! host writes to its log for denials and a sample of allows. It names the
//! route, tenant, principal and reason, never a key or a header value: the
//! principal is a snapshot id or an escaped unknown id, and the request id
//! is kept only when it has the shape of an id.

use super::verdict::{Decision, Mode};
use crate::time::Timestamp;
use serde::Serialize;

/// Longest request id kept (Envoy's are 36-character UUIDs).
const MAX_REQUEST_ID: usize = 128;

/// The fields of a decision log line, in order.
#[derive(Debug, Serialize)]
struct Record<'d> {
    ts: String,
    revision: Option<&'d str>,
    mode: &'static str,
    decision: &'static str,
    status: u16,
    reason: Option<&'static str>,
    route: Option<&'d str>,
    tenant: Option<&'d str>,
    principal: Option<&'d str>,
    request_id: Option<&'d str>,
}

impl Decision<'_> {
    /// The decision as one JSON line: `ts` (RFC 3339 UTC), `revision`,
    /// `mode`, `decision` (`allow` or `deny`: what was enforced, so an audit
    /// would-deny is an `allow` with its `reason`), `status`, `reason`,
    /// `route`, `tenant`, `principal` and `request_id` (the request's
    /// `x-request-id` when it is 1 to 128 characters of `A-Za-z0-9._:-`,
    /// else `null`).
    pub fn log_line(&self, now: Timestamp, mode: Mode, request_id: Option<&[u8]>) -> String {
        let enforced_deny = !self.allowed() && mode == Mode::Enforce;
        let record = Record {
            ts: now.to_string(),
            revision: self.revision,
            mode: match mode {
                Mode::Enforce => "enforce",
                Mode::Audit => "audit",
            },
            decision: if enforced_deny { "deny" } else { "allow" },
            status: if enforced_deny { self.status() } else { 200 },
            reason: self.reason.map(|r| r.code()),
            route: self.route,
            tenant: self.tenant_id(),
            principal: self.principal.as_deref(),
            request_id: request_id.and_then(id_text),
        };
        serde_json::to_string(&record).unwrap_or_default()
    }
}

/// `bytes` as a request id, if it looks like one.
fn id_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    (text.len() <= MAX_REQUEST_ID && crate::text::is_valid_id(text)).then_some(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::{decide, load_snapshot, Context, Mode, Request, Sources, Timestamp};
    use serde_json::{json, Value};
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const DEMO: &str = include_str!("../../../../policies/demo.json");

    fn line(headers: &[(&str, &str)], mode: Mode, request_id: &[u8]) -> Value {
        let snapshot = load_snapshot(DEMO).unwrap();
        let sources = Sources::default();
        let path = "/orders/1?apikey=demo-storefront-key";
        let request = Request::from_parts(&sources, "POST", "localhost", path, headers);
        let now = Timestamp::parse_rfc3339("2026-12-01T10:00:00.25Z").unwrap();
        let decision = decide(&snapshot, &request, &Context::new(now, Some("prod")));
        serde_json::from_str(&decision.log_line(now, mode, Some(request_id))).unwrap()
    }

    #[test]
    fn a_denial_names_route_tenant_principal_and_reason_never_the_key() {
        let got = line(&[("x-user-id", "bob\r\nx")], Mode::Enforce, b"7a0c-11");
        let want = json!({"ts": "2026-12-01T10:00:00.250000000Z", "revision": "r1", "mode": "enforce",
            "decision": "deny", "status": 403, "reason": "team_access_denied", "route": "orders",
            "tenant": "acme", "principal": "app:acme-storefront", "request_id": "7a0c-11"});
        assert_eq!(got, want);
        let text = got.to_string();
        assert!(
            !text.contains("demo-storefront-key") && !text.contains("bob"),
            "{text}"
        );
    }

    #[test]
    fn an_audited_denial_is_an_allow_with_its_reason_and_odd_request_ids_are_dropped() {
        let got = line(&[], Mode::Audit, b"id\"}, {\"forged\": 1");
        assert_eq!(got["decision"], "allow");
        assert_eq!(got["status"], 200);
        assert_eq!(got["reason"], "team_access_denied");
        assert_eq!(got["request_id"], Value::Null);
        assert_eq!(
            line(&[], Mode::Enforce, &[b'a'; 129])["request_id"],
            Value::Null
        );
    }
}
