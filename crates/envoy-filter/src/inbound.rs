//! What the filter needs of the request headers, taken in one pass over the
//! header map Envoy hands over (pure, so it is tested natively): the
//! pseudo-headers, the few headers the policy reads, and the names of the
//! inbound headers that are, or read upstream as, annotations (to remove).
//! Everything stays bytes: a non-UTF-8 value simply matches nothing, and the
//! path is never re-encoded.

use std::borrow::Cow;
use tenantgate_policy::{is_annotation_header, Sources};

/// The request as read from its header map.
#[derive(Debug, Default)]
pub struct Inbound<'b> {
    pub method: Cow<'b, str>,
    pub authority: Cow<'b, str>,
    pub path: &'b [u8],
    /// The headers the policy reads (key headers, user header, tenant selector).
    pub relevant: Vec<(&'b [u8], &'b [u8])>,
    /// Names of inbound annotation headers in any spelling, each once.
    pub forged: Vec<&'b [u8]>,
    /// `x-request-id` (Envoy's, for decision logs; checked before use).
    pub request_id: Option<&'b [u8]>,
}

impl<'b> Inbound<'b> {
    pub fn read(pairs: &[(&'b [u8], &'b [u8])], sources: &Sources) -> Inbound<'b> {
        let mut inbound = Inbound::default();
        for &(name, value) in pairs {
            match name {
                b":method" => inbound.method = String::from_utf8_lossy(value),
                b":path" => inbound.path = value,
                b":authority" => inbound.authority = String::from_utf8_lossy(value),
                b"x-request-id" => inbound.request_id = Some(value),
                _ => {
                    if is_annotation_header(name) && !inbound.forged.contains(&name) {
                        inbound.forged.push(name);
                    }
                    if is_read_by_policy(name, sources) {
                        inbound.relevant.push((name, value));
                    }
                }
            }
        }
        inbound
    }
}

fn is_read_by_policy(name: &[u8], sources: &Sources) -> bool {
    let is = |wanted: &str| name.eq_ignore_ascii_case(wanted.as_bytes());
    sources.user_header.as_deref().is_some_and(is)
        || is(&sources.tenant_header)
        || sources.api_key_headers.iter().any(|h| is(h))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_spelling_of_an_annotation_is_forged_and_values_stay_bytes() {
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"GET"),
            (b":path", b"/a?\xff"),
            (b":authority", b"h"),
            (b"x-tenant-id", b"a"),
            (b"x_tenant_id", b"b"),
            (b"x_principal", b"c"),
            (b"X.Policy.Revision", b"d"),
            (b"x-tenant-id", b"e"),
            (b"x-tenant", b"f"),
            (b"X_Tenant.Plan", b"paid"),
            (b"x-api-key", b"\xfe"),
            (b"accept", b"*/*"),
        ];
        let inbound = Inbound::read(&pairs, &Sources::default());
        assert_eq!(inbound.path, b"/a?\xff");
        assert_eq!(
            inbound.forged,
            vec![
                &b"x-tenant-id"[..],
                b"x_tenant_id",
                b"x_principal",
                b"X.Policy.Revision",
                b"X_Tenant.Plan"
            ]
        );
        assert_eq!(
            inbound.relevant,
            vec![
                (&b"x-tenant-id"[..], &b"a"[..]),
                (b"x-tenant-id", b"e"),
                (b"x-api-key", b"\xfe")
            ]
        );
    }
}
