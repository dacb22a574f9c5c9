//! Reason codes of spec §3 with their statuses and the fixed deny bodies.

macro_rules! reasons {
    ($($variant:ident => $code:literal, $status:literal, $error:literal, $message:literal;)*) => {
        /// Why a request is (or would be) denied. The code strings are a stable API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(missing_docs)] // each variant is documented by its code and message below
        pub enum Reason {
            $($variant,)*
        }

        impl Reason {
            /// Every reason: the decision steps' in step order, then the shells' own.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The stable reason code, e.g. `invalid_api_key`.
            pub const fn code(self) -> &'static str {
                match self { $(Reason::$variant => $code,)* }
            }

            /// The HTTP status a denial for this reason answers.
            pub const fn status(self) -> u16 {
                match self { $(Reason::$variant => $status,)* }
            }

            /// The error category of the deny body (`unauthorized`, `forbidden`, ...).
            pub const fn error(self) -> &'static str {
                match self { $(Reason::$variant => $error,)* }
            }

            /// The human-readable message of the deny body.
            pub const fn message(self) -> &'static str {
                match self { $(Reason::$variant => $message,)* }
            }

            /// The JSON deny body, built at compile time so a deny never allocates.
            pub const fn body(self) -> &'static str {
                match self {
                    $(Reason::$variant => concat!(
                        "{\"error\":\"", $error, "\",\"reason\":\"", $code,
                        "\",\"message\":\"", $message, "\"}"
                    ),)*
                }
            }

            /// The audit-mode header value, `deny; reason=<code>`.
            pub const fn audit_header(self) -> &'static str {
                match self { $(Reason::$variant => concat!("deny; reason=", $code),)* }
            }

            /// The reason with this stable code.
            pub fn from_code(code: &str) -> Option<Reason> {
                match code { $($code => Some(Reason::$variant),)* _ => None }
            }
        }
    };
}

reasons! {
    NoPolicy => "no_policy", 503, "unavailable", "no policy snapshot is loaded";
    InvalidPath => "invalid_path", 400, "bad_request", "the path contains a dot segment or an encoded dot, slash or backslash";
    // Extension (v1.1): two API keys or user identities, or one sent twice.
    AmbiguousCredentials => "ambiguous_credentials", 401, "unauthorized", "the request carries more than one API key or user identity";
    // Extension (v1.1): the tenant selector sent twice.
    AmbiguousTenant => "ambiguous_tenant", 400, "bad_request", "the request carries more than one tenant selector";
    NoRoute => "no_route", 404, "not_found", "no route matches this host, method and path";
    MissingCredentials => "missing_credentials", 401, "unauthorized", "an API key or a user identity is required";
    InvalidApiKey => "invalid_api_key", 401, "unauthorized", "the API key is not known";
    ApiKeyPending => "api_key_pending", 401, "unauthorized", "the API key is awaiting approval";
    ApiKeyRevoked => "api_key_revoked", 401, "unauthorized", "the API key has been revoked";
    ApiKeyExpired => "api_key_expired", 401, "unauthorized", "the API key has expired";
    AppRevoked => "app_revoked", 401, "unauthorized", "the application of this API key has been revoked";
    // Extension x3: the verified token lacks the issuer or user claim, or a claim is malformed.
    InvalidTokenClaims => "invalid_token_claims", 401, "unauthorized", "the verified token does not carry a usable issuer and user";
    UnknownOrganization => "unknown_organization", 403, "forbidden", "the selected organization does not exist";
    TenantRequired => "tenant_required", 403, "forbidden", "the organization could not be determined; select one";
    TenantMismatch => "tenant_mismatch", 403, "forbidden", "the selected organization is not the organization of this route";
    // Extension x3: an asserted token names a group the snapshot does not know, or one of another organization.
    UnknownGroup => "unknown_group", 403, "forbidden", "the token names a group this organization does not have";
    // Extension x3: an asserted token names a role the snapshot does not know.
    UnknownRole => "unknown_role", 403, "forbidden", "the token names a role the policy does not define";
    // Extension x3: the organization does not trust the token's issuer.
    IssuerNotTrusted => "issuer_not_trusted", 403, "forbidden", "the organization does not trust the issuer of this token";
    NotAMember => "not_a_member", 403, "forbidden", "the caller is not a member of this organization";
    MembershipPending => "membership_pending", 403, "forbidden", "the invitation to this organization has not been accepted";
    OrganizationSuspended => "organization_suspended", 403, "forbidden", "the organization is suspended";
    OrganizationExpired => "organization_expired", 403, "forbidden", "the organization has expired";
    EnvironmentNotAllowed => "environment_not_allowed", 403, "forbidden", "this environment is not allowed for the organization, key or product";
    ProductNotSubscribed => "product_not_subscribed", 403, "forbidden", "the application is not subscribed to a product containing this route";
    ReadOnlyKey => "read_only_key", 403, "forbidden", "the API key is read-only";
    TeamAccessDenied => "team_access_denied", 403, "forbidden", "the caller lacks the required right on a team of this route";
    PermissionDenied => "permission_denied", 403, "forbidden", "the caller's roles do not grant the required permission";
    // Extension: the on-demand key lookup timed out or failed (fail closed).
    KeyLookupUnavailable => "key_lookup_unavailable", 503, "unavailable", "the API key could not be verified right now";
    // Extension: the host failed to hand over the request (fail closed).
    HostError => "host_error", 503, "unavailable", "the gateway could not evaluate this request";
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn bodies_are_valid_json_with_the_code() {
        for &reason in Reason::ALL {
            let body: serde_json::Value = serde_json::from_str(reason.body()).unwrap();
            assert_eq!(body["reason"], reason.code());
            assert_eq!(body["error"], reason.error());
            assert_eq!(Reason::from_code(reason.code()), Some(reason));
        }
    }
}
