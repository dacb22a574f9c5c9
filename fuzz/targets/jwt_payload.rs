//! The verified token payload Envoy hands the filter from `jwt_authn`'s
//! dynamic metadata (`envoy::claims`): the proxy-wasm pairs encoding, or a
//! serialized `google.protobuf.Struct`. The first byte picks the token mode
//! (bit 0: asserted) and the route; the rest is the payload.
//!
//! Invariants: a payload the parser refuses is `invalid_token_claims`, never
//! a panic; read claims are within the bounds of `policy::token`; and a
//! request decided with them allows only a caller whose issuer the demo
//! trusts, in a tenant that trusts it, never with a principal other than
//! `user:` plus the user claim.

use super::common;
use tenantgate_envoy::claims::{parse_payload, TokenRead};
use tenantgate_policy::token::{TokenMode, TokenSource, MAX_CLAIM_BYTES, MAX_CLAIM_ITEMS};
use tenantgate_policy::{self as policy, Context, Reason, Request, Sources, TokenCaller};

const PATHS: [&str; 4] = ["/orders/1", "/catalog/x", "/workspace", "/reports/q3"];

/// Which issuers the demo's organizations trust.
fn trusted(tenant: &str, issuer: &str) -> bool {
    match issuer {
        "https://idp.globex.example" => matches!(tenant, "acme" | "research" | "retail"),
        "https://login.initech.example" => tenant == "initech",
        _ => false,
    }
}

pub fn run(data: &[u8]) {
    let Some((&options, payload)) = data.split_first() else {
        return;
    };
    let fields = parse_payload(payload);
    let source = TokenSource {
        mode: if options & 1 == 1 {
            TokenMode::Asserted
        } else {
            TokenMode::Identity
        },
        tenant_claim: Some("org".into()),
        groups_claim: Some("groups".into()),
        roles_claim: Some("roles".into()),
        ..TokenSource::default()
    };
    let claims = TokenRead::new(source.clone()).claims(payload);
    if fields.is_none() {
        assert!(claims.is_err(), "claims from a payload the parser refused");
    }
    if let Ok(claims) = &claims {
        for text in [&claims.issuer, &claims.user]
            .into_iter()
            .chain(&claims.tenant)
        {
            assert!(
                !text.is_empty() && text.len() <= MAX_CLAIM_BYTES,
                "claim bounds"
            );
        }
        for list in [&claims.groups, &claims.roles] {
            assert!(list.len() <= MAX_CLAIM_ITEMS, "list bounds");
            assert!(
                list.iter().all(|i| i.len() <= MAX_CLAIM_BYTES),
                "item bounds"
            );
        }
    }
    decide(&source, &claims, options);
}

fn decide(source: &TokenSource, claims: &policy::token::VerifiedToken, options: u8) {
    let snapshot = common::demo();
    let caller = TokenCaller::resolve(snapshot, claims, source);
    let path = PATHS[usize::from(options >> 1) % PATHS.len()];
    let sources = Sources {
        user_header: None,
        ..Sources::default()
    };
    let headers: [(&str, &str); 0] = [];
    let request = Request::from_parts(&sources, "GET", "localhost", path, &headers);
    let context = Context::new(common::now(0), Some("prod")).with_token(Some(&caller));
    let decision = policy::decide(snapshot, &request, &context);
    let Ok(claims) = claims else {
        assert_eq!(
            decision.reason,
            Some(Reason::InvalidTokenClaims),
            "unusable claims decided"
        );
        return;
    };
    if decision.reason.is_none() {
        let explain = common::explain(&decision);
        let tenant = decision.tenant_id().unwrap_or_default();
        assert!(
            trusted(tenant, &claims.issuer),
            "allowed an untrusted issuer: {explain}"
        );
        let principal = policy::text::principal_text("user:", claims.user.as_bytes());
        assert_eq!(
            decision.principal.as_deref(),
            Some(principal.as_str()),
            "{explain}"
        );
    }
}
