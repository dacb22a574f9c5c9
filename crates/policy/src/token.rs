//! Identity from a verified token (extension x3): the claims a gateway's own
//! token verifier accepted (Envoy's `jwt_authn`, Otoroshi's JWT verifiers),
//! read as the configuration says, never a token this crate would verify.
//!
//! Two modes ([`TokenMode`]): `identity` reads only the user from the token
//! (memberships come from the snapshot, as for the user header); `asserted`
//! also trusts the token's tenant, groups and roles. In both, the tenant the
//! request resolves to must trust the token's issuer (`token_issuers` of the
//! organization, its parent or its area): an identity provider of one tenant
//! never acts in another.

use serde::Deserialize;
use serde_json::Value;

/// At most this many groups or roles are read from a claim.
pub const MAX_CLAIM_ITEMS: usize = 64;

/// At most this many bytes in one claim value (an issuer, a user id, a
/// tenant, one group or role).
pub const MAX_CLAIM_BYTES: usize = 512;

/// How far the snapshot trusts a token's claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenMode {
    /// The token names a user; memberships come from the snapshot.
    #[default]
    Identity,
    /// The issuer is trusted for the tenant, groups and roles it asserts,
    /// each checked against the snapshot.
    Asserted,
}

/// Where a host finds the verified claims and which claims mean what
/// (`sources.token` of the plugin configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSource {
    /// `identity` (default) or `asserted`.
    #[serde(default)]
    pub mode: TokenMode,
    /// The claim holding the user id.
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// The claim holding the tenant (an organization id or handle); read in
    /// `asserted` mode only.
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// The claim holding group ids (a list of strings); `asserted` mode.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// The claim holding role ids (a list of strings); `asserted` mode.
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// Envoy: the dynamic metadata namespace of the verifying filter.
    #[serde(default = "default_namespace")]
    pub metadata_namespace: String,
    /// Envoy: the `payload_in_metadata` name the verifying filter writes.
    #[serde(default = "default_payload_key")]
    pub payload_key: String,
}

impl Default for TokenSource {
    /// `identity` mode, the user in `sub`, the payload where `jwt_authn`'s
    /// `payload_in_metadata: jwt_payload` leaves it.
    fn default() -> TokenSource {
        TokenSource {
            mode: TokenMode::Identity,
            user_claim: default_user_claim(),
            tenant_claim: None,
            groups_claim: None,
            roles_claim: None,
            metadata_namespace: default_namespace(),
            payload_key: default_payload_key(),
        }
    }
}

fn default_user_claim() -> String {
    "sub".into()
}

fn default_namespace() -> String {
    "envoy.filters.http.jwt_authn".into()
}

fn default_payload_key() -> String {
    "jwt_payload".into()
}

impl TokenSource {
    /// The claims this source reads, for checking names: `iss`, the user
    /// claim, and in `asserted` mode the configured tenant, groups and roles
    /// claims.
    pub fn claim_names(&self) -> impl Iterator<Item = &str> {
        let asserted = self.mode == TokenMode::Asserted;
        let optional = [&self.tenant_claim, &self.groups_claim, &self.roles_claim];
        ["iss", self.user_claim.as_str()].into_iter().chain(
            optional
                .into_iter()
                .filter(move |_| asserted)
                .filter_map(|c| c.as_deref()),
        )
    }
}

/// The claims a decision reads, taken from a verified token's payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenClaims {
    /// `iss`.
    pub issuer: String,
    /// The user claim (`sub` by default).
    pub user: String,
    /// `asserted` mode: the tenant claim, if configured and present.
    pub tenant: Option<String>,
    /// `asserted` mode: the groups claim (empty when absent).
    pub groups: Vec<String>,
    /// `asserted` mode: the roles claim (empty when absent).
    pub roles: Vec<String>,
}

/// Why a verified payload cannot identify anyone: the decision is
/// `invalid_token_claims` (401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    /// A required claim (`iss`, the user claim) is absent or empty.
    #[error("claim `{0}` is missing")]
    Missing(String),
    /// A claim of another type than configured (a string, a list of strings).
    #[error("claim `{0}` has the wrong type")]
    WrongType(String),
    /// A claim longer than [`MAX_CLAIM_BYTES`] or with more than
    /// [`MAX_CLAIM_ITEMS`] items.
    #[error("claim `{0}` is too large")]
    TooLarge(String),
}

/// What a host hands the decision: the verified claims, or why they are unusable.
pub type VerifiedToken = Result<TokenClaims, ClaimsError>;

/// One claim as a host read it, before the checks of [`TokenClaims::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimValue {
    /// A string.
    Text(String),
    /// A list of strings.
    List(Vec<String>),
    /// Anything else (a number, an object, a list holding other things).
    Other,
}

impl TokenClaims {
    /// The claims of a JSON payload (Otoroshi, `policyctl explain --jwt-payload`).
    pub fn from_json(payload: &Value, source: &TokenSource) -> VerifiedToken {
        TokenClaims::build(source, |name| payload.get(name).map(claim_of_json))
    }

    /// The claims `read` returns for each claim name `source` uses (`None`:
    /// absent): the one place the bounds and types are checked, whatever the
    /// host's payload format.
    pub fn build(
        source: &TokenSource,
        mut read: impl FnMut(&str) -> Option<ClaimValue>,
    ) -> VerifiedToken {
        let mut text = |name: &str, required: bool| -> Result<Option<String>, ClaimsError> {
            match read(name) {
                Some(ClaimValue::Text(t)) if t.len() > MAX_CLAIM_BYTES => {
                    Err(ClaimsError::TooLarge(name.into()))
                }
                Some(ClaimValue::Text(t)) if !t.is_empty() => Ok(Some(t)),
                None | Some(ClaimValue::Text(_)) if !required => Ok(None),
                None | Some(ClaimValue::Text(_)) => Err(ClaimsError::Missing(name.into())),
                Some(_) => Err(ClaimsError::WrongType(name.into())),
            }
        };
        let issuer = text("iss", true)?.unwrap_or_default();
        let user = text(&source.user_claim, true)?.unwrap_or_default();
        let mut claims = TokenClaims {
            issuer,
            user,
            ..TokenClaims::default()
        };
        if source.mode == TokenMode::Identity {
            return Ok(claims);
        }
        if let Some(name) = &source.tenant_claim {
            claims.tenant = text(name, false)?;
        }
        for (name, out) in [
            (&source.groups_claim, &mut claims.groups),
            (&source.roles_claim, &mut claims.roles),
        ] {
            if let Some(name) = name {
                *out = list(name, read(name))?;
            }
        }
        Ok(claims)
    }
}

/// A list claim: absent is empty; a single string is a list of one (as
/// identity providers write one group).
fn list(name: &str, value: Option<ClaimValue>) -> Result<Vec<String>, ClaimsError> {
    let items = match value {
        None => return Ok(Vec::new()),
        Some(ClaimValue::Text(t)) => vec![t],
        Some(ClaimValue::List(items)) => items,
        Some(ClaimValue::Other) => return Err(ClaimsError::WrongType(name.into())),
    };
    if items.len() > MAX_CLAIM_ITEMS || items.iter().any(|i| i.len() > MAX_CLAIM_BYTES) {
        return Err(ClaimsError::TooLarge(name.into()));
    }
    Ok(items)
}

fn claim_of_json(value: &Value) -> ClaimValue {
    match value {
        Value::String(s) => ClaimValue::Text(s.clone()),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map_or(ClaimValue::Other, ClaimValue::List),
        _ => ClaimValue::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn source(mode: TokenMode) -> TokenSource {
        TokenSource {
            mode,
            tenant_claim: Some("org".into()),
            groups_claim: Some("groups".into()),
            roles_claim: Some("roles".into()),
            ..serde_json::from_str("{}").unwrap()
        }
    }

    #[test]
    fn identity_mode_reads_issuer_and_user_only() {
        let payload =
            json!({"iss": "https://idp", "sub": "pat", "org": "acme", "roles": ["admin"]});
        let claims = TokenClaims::from_json(&payload, &source(TokenMode::Identity)).unwrap();
        assert_eq!(
            claims,
            TokenClaims {
                issuer: "https://idp".into(),
                user: "pat".into(),
                ..TokenClaims::default()
            }
        );
    }

    #[test]
    fn asserted_mode_reads_tenant_groups_and_roles() {
        let payload =
            json!({"iss": "i", "sub": "pat", "org": "acme", "groups": "g1", "roles": ["a", "b"]});
        let claims = TokenClaims::from_json(&payload, &source(TokenMode::Asserted)).unwrap();
        assert_eq!(claims.tenant.as_deref(), Some("acme"));
        assert_eq!(claims.groups, ["g1"]);
        assert_eq!(claims.roles, ["a", "b"]);
    }

    #[test]
    fn unusable_payloads_name_the_claim() {
        let asserted = source(TokenMode::Asserted);
        let cases = [
            (json!({"sub": "pat"}), ClaimsError::Missing("iss".into())),
            (
                json!({"iss": "i", "sub": ""}),
                ClaimsError::Missing("sub".into()),
            ),
            (
                json!({"iss": "i", "sub": 7}),
                ClaimsError::WrongType("sub".into()),
            ),
            (
                json!({"iss": "i", "sub": "p", "roles": [1]}),
                ClaimsError::WrongType("roles".into()),
            ),
            (
                json!({"iss": "i", "sub": "x".repeat(513)}),
                ClaimsError::TooLarge("sub".into()),
            ),
            (
                json!({"iss": "i", "sub": "p", "groups": vec!["g"; 65]}),
                ClaimsError::TooLarge("groups".into()),
            ),
        ];
        for (payload, error) in cases {
            assert_eq!(
                TokenClaims::from_json(&payload, &asserted),
                Err(error),
                "{payload}"
            );
        }
    }

    #[test]
    fn defaults_are_jwt_authn_and_sub() {
        let source: TokenSource = serde_json::from_str("{}").unwrap();
        assert_eq!(source.mode, TokenMode::Identity);
        assert_eq!(source.user_claim, "sub");
        assert_eq!(source.metadata_namespace, "envoy.filters.http.jwt_authn");
        assert_eq!(source.claim_names().collect::<Vec<_>>(), ["iss", "sub"]);
    }
}
