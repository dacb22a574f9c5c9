//! The plan annotation (`x-tenant-plan`, x3): set only when the plugin
//! configuration turns it on, always stripped inbound, the same from a whole
//! snapshot and from the per-request partial decode the Otoroshi shell uses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use tenantgate_policy::binary::{self, Wanted};
use tenantgate_policy::config::PluginConfig;
use tenantgate_policy::{
    self as policy, is_annotation_header, Annotations, Context, Mode, Request, Snapshot, Sources,
    Timestamp, Verdict, STRIPPED_HEADERS,
};

const DEMO: &str = include_str!("../../../policies/demo.json");
const PLAN: Annotations = Annotations { plan: true };

fn demo() -> Snapshot {
    policy::load_snapshot(DEMO).unwrap()
}

fn context() -> Context<'static> {
    Context::new(
        Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap(),
        Some("prod"),
    )
}

fn request<'r>(method: &'r str, path: &'r str, headers: &'r [(&'r str, &'r str)]) -> Request<'r> {
    Request::from_parts(&Sources::default(), method, "localhost", path, headers)
}

fn header<'h>(headers: &[(&'static str, &'h str)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

#[test]
fn a_paid_and_an_evaluation_tenant_are_annotated_with_their_plan_when_configured() {
    let snapshot = demo();
    for (key, path, plan) in [
        ("demo-storefront-key", "/orders/1", "paid"),
        ("demo-research-key", "/research/x", "paid"),
        ("demo-initech-key", "/reports/q3", "evaluation"),
    ] {
        let headers = [("x-api-key", key)];
        let request = request("GET", path, &headers);
        let decision = policy::decide(&snapshot, &request, &context());
        assert!(decision.allowed(), "{key}: {:?}", decision.reason);
        assert_eq!(decision.plan(), Some(plan), "{key}");
        let with = decision.annotations_with(Mode::Enforce, PLAN);
        assert_eq!(header(&with, "x-tenant-plan"), Some(plan), "{key}");
        // Right after the handle; everything else as without the option.
        let handle = with.iter().position(|(n, _)| *n == "x-tenant-handle");
        let at = with.iter().position(|(n, _)| *n == "x-tenant-plan");
        assert_eq!(at, handle.map(|h| h + 1), "{key}: {with:?}");
        let without: Vec<_> = with
            .iter()
            .copied()
            .filter(|(n, _)| *n != "x-tenant-plan")
            .collect();
        assert_eq!(without, decision.annotations(Mode::Enforce), "{key}");
        // The default set is the contract's: no plan.
        assert_eq!(
            header(&decision.annotations(Mode::Enforce), "x-tenant-plan"),
            None
        );
        assert_eq!(
            decision.annotations_with(Mode::Enforce, Annotations::default()),
            decision.annotations(Mode::Enforce)
        );
        let Verdict::Forward { headers, .. } = decision.verdict_with(Mode::Enforce, PLAN) else {
            panic!("{key}: not forwarded")
        };
        assert_eq!(headers, with, "{key}");
        let explained = serde_json::to_value(decision.explain_with(Mode::Enforce, PLAN)).unwrap();
        assert_eq!(explained["headers"]["x-tenant-plan"], plan, "{key}");
        let plain = serde_json::to_value(decision.explain(Mode::Enforce)).unwrap();
        assert!(plain["headers"].get("x-tenant-plan").is_none(), "{key}");
    }
}

#[test]
fn the_plan_follows_the_tenant_denials_get_none_and_audit_what_was_resolved() {
    let snapshot = demo();
    // A public route with a concrete tenant annotates the tenant, so its plan too.
    let status = request("GET", "/status", &[]);
    let decision = policy::decide(&snapshot, &status, &context());
    assert_eq!(
        header(
            &decision.annotations_with(Mode::Enforce, PLAN),
            "x-tenant-plan"
        ),
        Some("paid")
    );
    // A public route of every tenant resolves none: no plan.
    let health = request("GET", "/health", &[]);
    let decision = policy::decide(&snapshot, &health, &context());
    assert_eq!(decision.plan(), None);
    assert_eq!(
        header(
            &decision.annotations_with(Mode::Enforce, PLAN),
            "x-tenant-plan"
        ),
        None
    );
    // A denial after the tenant resolved: nothing in enforce, the plan in audit.
    let headers = [("x-api-key", "demo-storefront-key")];
    let write = request("POST", "/orders/1", &headers);
    let decision = policy::decide(&snapshot, &write, &context());
    assert!(!decision.allowed());
    assert!(decision.annotations_with(Mode::Enforce, PLAN).is_empty());
    let audit = decision.annotations_with(Mode::Audit, PLAN);
    assert_eq!(header(&audit, "x-tenant-plan"), Some("paid"));
    assert!(header(&audit, "x-policy-decision").is_some());
}

#[test]
fn every_spelling_of_the_plan_header_is_stripped_inbound_whatever_the_option() {
    // The strip list does not depend on the configuration: a client must
    // never hand a rate limiter its own plan.
    assert!(STRIPPED_HEADERS.contains(&"x-tenant-plan"));
    for name in [
        "x-tenant-plan",
        "X-Tenant-Plan",
        "x_tenant_plan",
        "X.TENANT.PLAN",
        "x-tenant_plan",
    ] {
        assert!(is_annotation_header(name.as_bytes()), "{name}");
    }
    for name in ["x-tenant-plans", "x-tenant-pla", "tenant-plan", "x-plan"] {
        assert!(!is_annotation_header(name.as_bytes()), "{name}");
    }
}

#[test]
fn the_partial_decode_reads_the_same_plan_as_the_whole_snapshot() {
    let snapshot = demo();
    let compiled = binary::encode(&snapshot);
    for (key, path) in [
        ("demo-storefront-key", "/orders/1"),
        ("demo-initech-key", "/reports/q3"),
    ] {
        let headers = [("x-api-key", key)];
        let request = request("GET", path, &headers);
        let partial = binary::decode_for(&compiled, &Wanted::of(&request)).unwrap();
        let whole = policy::decide(&snapshot, &request, &context());
        let part = policy::decide(&partial, &request, &context());
        assert_eq!(
            part.annotations_with(Mode::Enforce, PLAN),
            whole.annotations_with(Mode::Enforce, PLAN),
            "{key}"
        );
        assert!(part.plan().is_some(), "{key}");
    }
}

#[test]
fn the_configuration_turns_the_plan_on() {
    let config = PluginConfig::parse(br#"{"annotations": {"plan": true}}"#).unwrap();
    assert_eq!(config.annotations, PLAN);
}
