//! Identity from the token Otoroshi verified (extension x3, `sources.token`).
//!
//! Where Otoroshi puts it (read in Otoroshi's source, MAIF/otoroshi):
//!
//! - Its JWT verifier plug-ins (`JwtVerification` "Jwt verifiers",
//!   `JwtVerificationOnly` "Jwt verification only", in
//!   `otoroshi/app/next/plugins/jwt.scala`; `OIDCJwtVerifier` there too) call
//!   `JwtVerifier.internalVerifySync`/`internalVerifyAsync`
//!   (`otoroshi/app/models/JWTVerifier.scala`). Only once the signature
//!   verification succeeded (`verification.build().verify(token)`) do these
//!   put the token's payload, as a JSON object, into the request's attributes
//!   under `otoroshi.plugins.Keys.MatchedInputTokenKey`
//!   (`TypedKey[JsValue]("otoroshi.core.MatchedInputToken")`,
//!   `otoroshi/app/plugins/keys.scala`), beside the raw token
//!   (`otoroshi.core.MatchedRawInputToken`) and the transformed ones
//!   (`...MatchedOutputToken`, `...MatchedRawOutputToken`). With the
//!   `DefaultToken` strategy and no token in the request, the payload is
//!   the one Otoroshi generated itself from the verifier's template.
//! - A wasm plug-in's input (`NgAccessContext.wasmJson` /
//!   `NgTransformerRequestContext.wasmJson`, `otoroshi/app/next/plugins/api.scala`)
//!   holds `"attrs" -> attrs.json`; `ConcurrentMutableTypedMap.json`
//!   (`otoroshi/app/utils/typedmap.scala`) writes a `JsValue` attribute as
//!   is under its key's display name. So the verified payload is
//!   `attrs["otoroshi.core.MatchedInputToken"]`, a JSON object.
//! - Access validators run in the route's order, one after the other, on
//!   the same attributes (`callAccessValidatorPlugins`,
//!   `otoroshi/app/next/proxy/engine.scala`): the verifier must come before
//!   tenantgate's `access`. Otherwise the attribute is absent and the
//!   request has no token (denied, never let through on a guess).
//! - Another wasm plug-in cannot write this attribute: an output's
//!   `attrs.set` only reaches the keys of `otoroshi.wasm.Http.possibleAttributes`
//!   (`otoroshi/app/wasm/host.scala`), which do not include it.
//!
//! The trust boundary: the payload is taken as verified because Otoroshi put
//! it there after checking the signature; this module verifies nothing and
//! never reads a token from the request (its `Authorization` header, a
//! cookie, the query), which a client can send unverified. The issuer is
//! whatever `iss` the verified payload holds: Otoroshi checks the signature
//! against the verifier's key, and `iss` only if the verifier's
//! verification settings require it, so each trusted issuer needs its own
//! key (a shared secret lets its holders write any `iss`).
//!
//! Bounds: a payload over [`MAX_PAYLOAD_BYTES`] is refused before it is
//! read; only the claims the source names are kept (every other member is
//! skipped without being built), and those are bounded by the core
//! ([`TokenClaims::build`]).

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;
use tenantgate_policy::token::{ClaimsError, TokenClaims, TokenSource, VerifiedToken};

/// The attribute holding the verified payload, as the wasm input names it.
pub const PAYLOAD_ATTRIBUTE: &str = "otoroshi.core.MatchedInputToken";

/// A verified payload longer than this (as JSON text) identifies nobody:
/// `invalid_token_claims`. Identity providers' tokens are a few KiB.
pub const MAX_PAYLOAD_BYTES: usize = 32 * 1024;

/// The claims of the verified payload `raw` (the attribute
/// [`PAYLOAD_ATTRIBUTE`]) as `source` reads them; `None` when Otoroshi left
/// none (no verifier ran, or a non-strict one found no token). A payload
/// that is too large or not an object is `invalid_token_claims`.
pub fn verified(raw: Option<&RawValue>, source: &TokenSource) -> Option<VerifiedToken> {
    let text = raw?.get();
    if text.len() > MAX_PAYLOAD_BYTES {
        return Some(Err(ClaimsError::TooLarge(PAYLOAD_ATTRIBUTE.into())));
    }
    let names: Vec<&str> = source.claim_names().collect();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let claims = Claims(&names)
        .deserialize(&mut deserializer)
        .and_then(|claims| deserializer.end().map(|()| claims));
    Some(match claims {
        Ok(claims) => TokenClaims::from_json(&Value::Object(claims), source),
        Err(_) => Err(ClaimsError::WrongType(PAYLOAD_ATTRIBUTE.into())),
    })
}

/// Reads a JSON object keeping only the members named (the last of a
/// repeated name); anything but an object is an error.
struct Claims<'n>(&'n [&'n str]);

impl<'de> DeserializeSeed<'de> for Claims<'_> {
    type Value = Map<String, Value>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Claims<'_> {
    type Value = Map<String, Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if self.0.contains(&name.as_str()) {
                let value: Value = map.next_value()?;
                out.insert(name, value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use tenantgate_policy::token::TokenMode;

    fn source(mode: TokenMode) -> TokenSource {
        TokenSource {
            mode,
            tenant_claim: Some("org".into()),
            groups_claim: Some("groups".into()),
            roles_claim: Some("roles".into()),
            ..TokenSource::default()
        }
    }

    fn read(text: &str, mode: TokenMode) -> Option<VerifiedToken> {
        let raw = RawValue::from_string(text.to_string()).unwrap();
        verified(Some(&raw), &source(mode))
    }

    #[test]
    fn no_attribute_is_no_token() {
        assert_eq!(verified(None, &source(TokenMode::Identity)), None);
    }

    #[test]
    fn the_payload_s_claims_as_the_source_names_them() {
        let payload = r#"{"iss": "https://idp", "sub": "pat", "exp": 1, "org": "acme",
            "groups": ["g"], "roles": "admin", "nested": {"deep": [1, {"x": null}]}}"#;
        let identity = read(payload, TokenMode::Identity).unwrap().unwrap();
        assert_eq!(
            identity,
            TokenClaims {
                issuer: "https://idp".into(),
                user: "pat".into(),
                ..TokenClaims::default()
            }
        );
        let asserted = read(payload, TokenMode::Asserted).unwrap().unwrap();
        assert_eq!(asserted.tenant.as_deref(), Some("acme"));
        assert_eq!(asserted.groups, ["g"]);
        assert_eq!(asserted.roles, ["admin"]);
    }

    #[test]
    fn unusable_payloads_are_invalid_claims_not_absent_tokens() {
        for text in [r#""eyJhbGciOi.eyJzdWIi.sig""#, "[1]", "42", "true"] {
            assert_eq!(
                read(text, TokenMode::Identity),
                Some(Err(ClaimsError::WrongType(PAYLOAD_ATTRIBUTE.into()))),
                "{text}"
            );
        }
        assert_eq!(
            read(r#"{"iss": "i"}"#, TokenMode::Identity),
            Some(Err(ClaimsError::Missing("sub".into())))
        );
        assert_eq!(
            read(r#"{"iss": "i", "sub": ["a"]}"#, TokenMode::Identity),
            Some(Err(ClaimsError::WrongType("sub".into())))
        );
    }

    #[test]
    fn a_huge_payload_is_refused_before_it_is_read() {
        let filler = "x".repeat(MAX_PAYLOAD_BYTES);
        let text = format!(r#"{{"iss": "i", "sub": "pat", "pad": "{filler}"}}"#);
        assert_eq!(
            read(&text, TokenMode::Identity),
            Some(Err(ClaimsError::TooLarge(PAYLOAD_ATTRIBUTE.into())))
        );
        // Just under the bound, every other member is skipped unbuilt.
        let members: String = (0..2_000).map(|i| format!(r#""c{i}": [{i}],"#)).collect();
        let text = format!(r#"{{{members} "iss": "i", "sub": "pat"}}"#);
        assert!(text.len() < MAX_PAYLOAD_BYTES);
        assert_eq!(
            read(&text, TokenMode::Identity).unwrap().unwrap().user,
            "pat"
        );
    }

    #[test]
    fn a_repeated_claim_counts_once_the_last() {
        let text = r#"{"iss": "i", "sub": "mallory", "sub": "pat"}"#;
        assert_eq!(
            read(text, TokenMode::Identity).unwrap().unwrap().user,
            "pat"
        );
    }
}
