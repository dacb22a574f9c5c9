//! The request header map Envoy hands the filter (proxy-wasm encoding):
//! `envoy::wire::parse_header_map`, then `Inbound::read` (what the filter
//! keeps of it in one pass), then `Request::from_parts` and `decide`
//! against the demo.
//!
//! Invariants: a malformed map is `None`, never a panic, and a map of text
//! round-trips through `encode_header_map`; every inbound header that is, or
//! reads upstream as, an annotation is listed once to be removed; keeping
//! only the headers the policy reads changes nothing the policy sees; and
//! the decision invariants of the `request` target.

use super::{common, request};
use tenantgate_envoy::inbound::Inbound;
use tenantgate_envoy::wire;
use tenantgate_policy::{is_annotation_header, Request, Sources};

pub fn run(data: &[u8]) {
    let Some(pairs) = wire::parse_header_map(data) else {
        return;
    };
    let text: Option<Vec<(&str, &str)>> = pairs
        .iter()
        .map(|(n, v)| Some((std::str::from_utf8(n).ok()?, std::str::from_utf8(v).ok()?)))
        .collect();
    if let Some(text) = text {
        let encoded = wire::encode_header_map(&text);
        assert_eq!(
            wire::parse_header_map(&encoded).as_ref(),
            Some(&pairs),
            "the header map does not round-trip"
        );
    }
    // The options of the request target: the sources and clock vary with the input.
    let options = data.last().copied().unwrap_or(0);
    let sources = request::sources(options);
    let inbound = Inbound::read(&pairs, &sources);
    for (name, _) in &pairs {
        let pseudo = matches!(*name, b":method" | b":path" | b":authority");
        if !pseudo && is_annotation_header(name) {
            assert!(
                inbound.forged.contains(name),
                "inbound annotation {:?} is not removed",
                common::lossy(name)
            );
        }
    }
    for (i, name) in inbound.forged.iter().enumerate() {
        assert!(
            is_annotation_header(name),
            "{:?} removed",
            common::lossy(name)
        );
        assert!(
            !inbound.forged.get(..i).unwrap_or_default().contains(name),
            "removed twice"
        );
    }
    let request = Request::from_parts(
        &sources,
        &inbound.method,
        &inbound.authority,
        inbound.path,
        &inbound.relevant,
    );
    same_identity(&sources, &request, &pairs);
    request::check_request(&sources, &request, options);
}

/// The identity read from every header equals the one read from the headers
/// the filter kept.
fn same_identity(sources: &Sources, kept: &Request<'_>, pairs: &[(&[u8], &[u8])]) {
    let all = Request::from_parts(sources, kept.method, kept.host, kept.path, pairs);
    assert_eq!(kept.api_key, all.api_key, "API key");
    assert_eq!(kept.user_id, all.user_id, "user id");
    assert_eq!(kept.tenant_selector, all.tenant_selector, "tenant selector");
    assert_eq!(kept.ambiguous, all.ambiguous, "ambiguity");
}
