//! What the exports do, as pure functions from Otoroshi's input bytes to our
//! output bytes (so they are tested natively too).
//!
//! Both exports decide the request from scratch: Otoroshi runs them in
//! separate, fresh instances, so nothing survives from `access` to
//! `transform_request`.

use super::input::{self, Context, Headers};
use super::settings::{self, Policy, Settings};
use super::token;
use serde::Serialize;
use std::borrow::Cow;
use tenantgate_policy::binary::{self, Wanted};
use tenantgate_policy::text::principal_text;
use tenantgate_policy::token::{TokenMode, TokenSource, VerifiedToken};
use tenantgate_policy::{
    decide, Context as DecisionContext, GatewayCaller, GatewayLocation, TokenCaller, Verdict,
};
use tenantgate_policy::{is_annotation_header, Mode};
use tenantgate_policy::{Decision, HeaderMap, Reason, Request, Snapshot, Sources, Timestamp};

/// What one evaluation leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Allowed (or audited): forward with these annotations.
    Forward(Vec<(&'static str, String)>),
    /// Denied: answer `status` with `message` (`<reason>: <text>`).
    Deny {
        status: u16,
        message: Cow<'static, str>,
    },
    /// No snapshot and `fail_open`: through unchecked, nothing added.
    Unchecked,
}

impl Outcome {
    fn deny(reason: Reason) -> Outcome {
        Outcome::Deny {
            status: reason.status(),
            message: Cow::Owned(format!("{}: {}", reason.code(), reason.message())),
        }
    }

    fn invalid_settings() -> Outcome {
        Outcome::Deny {
            status: Reason::NoPolicy.status(),
            message: Cow::Borrowed(
                "no_policy: the tenantgate plugin configuration is invalid (the module's `check_config` export or `policyctl explain --config` tells why)",
            ),
        }
    }
}

#[derive(Serialize)]
struct AccessOut<'a> {
    result: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<AccessError<'a>>,
}

#[derive(Serialize)]
struct AccessError<'a> {
    status: u16,
    message: &'a str,
}

#[derive(Serialize)]
struct TransformOut<'a> {
    headers: HeaderMap<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
}

/// The `access` export: `{"result": true}`, or `{"result": false, "error":
/// {"status": S, "message": "<reason>: <text>"}}`. Every outcome is a result;
/// input that is not a JSON object denies with `host_error`.
pub fn access(input: &[u8], baked: Option<&[u8]>) -> Vec<u8> {
    let outcome = match input::parse(input) {
        Ok(ctx) => evaluate(&ctx, baked).0,
        Err(_) => Outcome::deny(Reason::HostError),
    };
    let out = match &outcome {
        Outcome::Forward(_) | Outcome::Unchecked => AccessOut {
            result: true,
            error: None,
        },
        Outcome::Deny { status, message } => AccessOut {
            result: false,
            error: Some(AccessError {
                status: *status,
                message,
            }),
        },
    };
    serde_json::to_vec(&out).unwrap_or_else(|_| br#"{"result":false}"#.to_vec())
}

/// The `transform_request` export: `{"headers": {...}, "url": "..."}`. The
/// headers replace every outgoing header: Otoroshi's `otoroshi_request.headers`
/// without the forged annotations, plus ours when the request is allowed (or
/// audited). The url is `otoroshi_request.url` without the API key query
/// parameter. A denied request (which `access` has already refused, when it
/// runs first) gets no annotation. Input that is not a JSON object is an error:
/// without it no header could be stripped.
pub fn transform_request(input: &[u8], baked: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let ctx = input::parse(input)?;
    let (outcome, sources) = evaluate(&ctx, baked);
    let outgoing = &ctx.otoroshi_request.0;
    let annotations: &[(&'static str, String)] = match &outcome {
        Outcome::Forward(annotations) => annotations,
        Outcome::Deny { .. } | Outcome::Unchecked => &[],
    };
    let mut headers: Vec<(&str, &str)> = outgoing
        .headers
        .0
        .iter()
        .filter(|(name, _)| !is_annotation_header(name.as_bytes()))
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    headers.extend(annotations.iter().map(|(n, v)| (*n, v.as_str())));
    let url = outgoing
        .url
        .get()
        .map(|url| without_key_param(&sources, url));
    let out = TransformOut {
        headers: HeaderMap(headers),
        url: url.as_deref(),
    };
    serde_json::to_vec(&out).map_err(|e| e.to_string())
}

/// The `check_config` export (for operators; Otoroshi never calls it): input is
/// our settings object (what goes into `config.config`), output
/// `{"ok": true, "revision": ..., ...}` or `{"ok": false, "error": "..."}`.
pub fn check_config(input: &[u8], baked: Option<&[u8]>) -> Vec<u8> {
    let raw = std::str::from_utf8(input)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            serde_json::value::RawValue::from_string(text.to_string()).map_err(|e| e.to_string())
        });
    let result = match &raw {
        Ok(raw) => settings::load(Some(raw), baked).map_err(|e| e.0),
        Err(e) => Err(format!("plugin configuration is not valid: {e}")),
    };
    // A compiled snapshot is decoded whole here, checking every record (a
    // call reads only what its request needs).
    let result = result.and_then(|settings| {
        let (snapshot, source) = match &settings.policy {
            Policy::Absent => (None, "none"),
            Policy::Whole(_) => (None, "inline"),
            Policy::Encoded(bytes) => {
                let source = match bytes {
                    Cow::Borrowed(_) => "baked",
                    Cow::Owned(_) => "compiled",
                };
                let whole = binary::decode(bytes).map_err(|e| e.to_string())?;
                (Some(whole), source)
            }
        };
        Ok((settings, snapshot, source))
    });
    let value = match result {
        Ok((settings, decoded, source)) => {
            let snapshot = match &settings.policy {
                Policy::Whole(snapshot) => Some(&**snapshot),
                _ => decoded.as_ref(),
            };
            let stats = snapshot.map(Snapshot::stats);
            serde_json::json!({
                "ok": true,
                "mode": match settings.mode { Mode::Enforce => "enforce", Mode::Audit => "audit" },
                "environment": settings.environment,
                "snapshot": source,
                "revision": snapshot.map(|s| s.revision().to_string()),
                "organizations": stats.map(|s| s.organizations),
                "api_keys": stats.map(|s| s.api_keys),
                "routes": stats.map(|s| s.routes),
                "loc_fallback": settings.options.loc_fallback,
                "token": settings.token.as_ref().map(|t| match t.mode {
                    TokenMode::Identity => "identity",
                    TokenMode::Asserted => "asserted",
                }),
            })
        }
        Err(error) => serde_json::json!({"ok": false, "error": error}),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// `url` without every `api_key_query` parameter (as the Envoy filter rewrites `:path`).
fn without_key_param<'u>(sources: &Sources, url: &'u str) -> Cow<'u, str> {
    let no_headers: &[(&str, &str)] = &[];
    match Request::from_parts(sources, "GET", "", url.as_bytes(), no_headers).forward_path {
        // Whole `&`-separated pairs were removed from valid UTF-8: still valid.
        Some(path) => Cow::Owned(String::from_utf8_lossy(&path).into_owned()),
        None => Cow::Borrowed(url),
    }
}

/// When Otoroshi received the request: `otoroshi.core.RequestStart` (Unix
/// milliseconds), else `otoroshi.core.RequestTimestamp` (ISO 8601).
fn now(ctx: &Context<'_>) -> Option<Timestamp> {
    let attrs = &ctx.attrs.0;
    if let Some(ms) = attrs
        .request_start
        .get()
        .and_then(|t| t.parse::<i64>().ok())
    {
        return ms.checked_mul(1_000_000).map(Timestamp::from_unix_nanos);
    }
    attrs
        .request_timestamp
        .get()
        .and_then(Timestamp::parse_rfc3339)
}

/// The path with its query string: `uri`, else `path` plus the decoded query
/// map re-encoded.
fn path_and_query<'c>(ctx: &'c Context<'_>) -> Cow<'c, str> {
    let request = &ctx.request.0;
    if let Some(uri) = request.uri.get() {
        return Cow::Borrowed(uri);
    }
    let path = request.path.get().unwrap_or("/");
    if request.query.0.is_empty() {
        return Cow::Borrowed(path);
    }
    let mut out = String::from(path);
    let mut first = true;
    for (name, values) in &request.query.0 {
        for value in values {
            out.push(if first { '?' } else { '&' });
            first = false;
            percent_encode_into(&mut out, name);
            out.push('=');
            percent_encode_into(&mut out, value);
        }
    }
    Cow::Owned(out)
}

fn percent_encode_into(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// Otoroshi's own identity of the caller: its validated apikey, else its
/// logged-in user.
enum GatewayIdentity<'c> {
    Apikey {
        client_id: &'c str,
        read_only: bool,
        /// Its `_loc` (organization, teams), with `loc_fallback`.
        location: Option<(&'c str, &'c [String])>,
    },
    User(&'c str),
}

impl<'c> GatewayIdentity<'c> {
    fn of(ctx: &'c Context<'_>, settings: &Settings<'_>) -> Option<GatewayIdentity<'c>> {
        let full = &ctx.attrs.0.apikey.0;
        if let Some(client_id) = ctx.apikey.0.client_id.get().or(full.client_id.get()) {
            // The full apikey's flags and location count only for the same apikey.
            let same = full.client_id.get().is_none_or(|id| id == client_id);
            let loc = &full.location.0;
            let location = match loc.tenant.get() {
                Some(tenant) if same && settings.options.loc_fallback => {
                    Some((tenant, loc.teams.0.as_slice()))
                }
                _ => None,
            };
            return Some(GatewayIdentity::Apikey {
                client_id,
                read_only: same && full.read_only.0,
                location,
            });
        }
        // Only the e-mail identifies a user: a display name is often chosen
        // by the user (`name: "alice@globex.example"`).
        ctx.user
            .0
            .email
            .get()
            .filter(|email| !email.trim().is_empty())
            .map(GatewayIdentity::User)
    }

    /// What a partial decode must load for this identity.
    fn wanted(&self, wanted: &mut Wanted<'c>) {
        match self {
            GatewayIdentity::Apikey {
                client_id,
                location,
                ..
            } => {
                wanted.client_id = Some(client_id);
                wanted.location_tenant = location.map(|(tenant, _)| tenant);
                wanted.location_teams = location.map_or(&[], |(_, teams)| teams);
            }
            GatewayIdentity::User(email) => wanted.email = Some(email),
        }
    }

    /// Placed in `snapshot`. Otoroshi's identities the snapshot does not name
    /// are `app:otoroshi/<client id>` and `user:otoroshi/<e-mail>`: no
    /// snapshot id holds a `/`, so neither can pass for one of its principals.
    fn caller(&self, snapshot: &Snapshot) -> GatewayCaller {
        match *self {
            GatewayIdentity::Apikey {
                client_id,
                read_only,
                location,
            } => {
                let principal = principal_text("app:otoroshi/", client_id.as_bytes());
                let location = location.map(|(tenant, teams)| GatewayLocation {
                    tenant,
                    teams,
                    principal: &principal,
                });
                GatewayCaller::apikey(snapshot, client_id, read_only, location)
            }
            GatewayIdentity::User(email) => {
                let principal = principal_text("user:otoroshi/", email.as_bytes());
                GatewayCaller::user(snapshot, email, &principal)
            }
        }
    }
}

/// Decides the request of `ctx`; also returns the sources, for the url rewrite.
fn evaluate(ctx: &Context<'_>, baked: Option<&[u8]>) -> (Outcome, Sources) {
    let settings = match settings::load(ctx.config.0.config, baked) {
        Ok(settings) => settings,
        Err(_) => return (Outcome::invalid_settings(), Sources::default()),
    };
    let outcome = decide_settled(ctx, &settings);
    (outcome, settings.sources)
}

fn decide_settled(ctx: &Context<'_>, settings: &Settings<'_>) -> Outcome {
    let raw = &ctx.request.0;
    let headers: &Headers = &raw.headers;
    let method = raw.method.get().unwrap_or("GET");
    let host = raw.host.get().or(headers.get("host")).unwrap_or("");
    let path = path_and_query(ctx);
    let request = Request::from_parts(&settings.sources, method, host, path.as_bytes(), &headers.0);
    let gateway = GatewayIdentity::of(ctx, settings);
    // Only with a token source: the payload Otoroshi's verifier accepted.
    let token: Option<(&TokenSource, VerifiedToken)> = settings.token.as_ref().and_then(|source| {
        token::verified(ctx.attrs.0.matched_input_token, source).map(|claims| (source, claims))
    });
    let partial;
    let snapshot = match &settings.policy {
        Policy::Whole(snapshot) => snapshot,
        Policy::Encoded(bytes) => {
            let wanted = wanted(&request, gateway.as_ref(), token.as_ref());
            match binary::decode_for(bytes, &wanted) {
                Ok(snapshot) => {
                    partial = snapshot;
                    &partial
                }
                Err(_) => return Outcome::invalid_settings(),
            }
        }
        Policy::Absent => {
            return if settings.fail_open {
                Outcome::Unchecked
            } else {
                outcome_of(&Decision::no_policy(None), settings)
            };
        }
    };
    let Some(now) = now(ctx) else {
        return outcome_of(
            &Decision::no_policy(None).with_reason(Reason::HostError),
            settings,
        );
    };
    let caller = gateway.map(|g| g.caller(snapshot));
    let token_caller =
        token.map(|(source, claims)| TokenCaller::resolve(snapshot, &claims, source));
    let decision = decide(
        snapshot,
        &request,
        &DecisionContext::new(now, settings.environment.as_deref())
            .with_gateway(caller.as_ref())
            .with_token(token_caller.as_ref()),
    );
    outcome_of(&decision, settings)
}

/// What a partial decode must load for this request: its own identities,
/// the gateway's caller, and the user (and, asserted, the tenant, roles and
/// groups) a verified token names.
fn wanted<'w>(
    request: &'w Request<'_>,
    gateway: Option<&'w GatewayIdentity<'_>>,
    token: Option<&'w (&TokenSource, VerifiedToken)>,
) -> Wanted<'w> {
    let mut wanted = Wanted::of(request);
    if let Some(gateway) = gateway {
        gateway.wanted(&mut wanted);
    }
    if let Some((source, Ok(claims))) = token {
        wanted.token_user = Some(&claims.user);
        if source.mode == TokenMode::Asserted {
            wanted.token_tenant = claims.tenant.as_deref();
            wanted.asserted = true;
        }
    }
    wanted
}

fn outcome_of(decision: &Decision<'_>, settings: &Settings<'_>) -> Outcome {
    match (
        decision.verdict_with(settings.mode, settings.annotations),
        decision.reason,
    ) {
        (Verdict::Forward { headers, .. }, _) => Outcome::Forward(
            headers
                .into_iter()
                .map(|(name, value)| (name, value.to_string()))
                .collect(),
        ),
        (Verdict::Respond { .. }, Some(reason)) => Outcome::deny(reason),
        (Verdict::Respond { status, .. }, None) => Outcome::Deny {
            status,
            message: Cow::Borrowed("denied"),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::{json, Value};

    const DEMO: &str = include_str!("../../../policies/demo.json");

    fn context(settings: Value, request: Value, extra: Value) -> Vec<u8> {
        let mut ctx = json!({
            "snowflake": "1",
            "config": {"functionName": "access", "config": settings},
            "request": request,
            "apikey": null,
            "user": null,
            "attrs": {"otoroshi.core.RequestTimestamp": "2026-12-01T01:00:00.000+01:00"},
        });
        if let (Some(ctx), Some(extra)) = (ctx.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                ctx.insert(k.clone(), v.clone());
            }
        }
        serde_json::to_vec(&ctx).unwrap()
    }

    fn demo_settings() -> Value {
        json!({"environment": "prod", "snapshot": {"inline": serde_json::from_str::<Value>(DEMO).unwrap()}})
    }

    fn call_access(input: &[u8]) -> Value {
        serde_json::from_slice(&access(input, None)).unwrap()
    }

    #[test]
    fn allow_and_deny_are_results() {
        let request = |key: &str| json!({"id": 1, "method": "GET", "uri": "/orders/1", "headers": {"Host": "localhost", "X-Api-Key": key}});
        let ok = call_access(&context(
            demo_settings(),
            request("demo-storefront-key"),
            json!({}),
        ));
        assert_eq!(ok, json!({"result": true}));
        let revoked = call_access(&context(
            demo_settings(),
            request("demo-revoked-key"),
            json!({}),
        ));
        assert_eq!(revoked["result"], false);
        assert_eq!(revoked["error"]["status"], 401);
        assert!(revoked["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("api_key_revoked: "));
    }

    #[test]
    fn no_clock_no_input_and_bad_settings_deny() {
        let request = json!({"method": "GET", "uri": "/orders/1", "headers": {"x-api-key": "demo-storefront-key"}});
        let no_clock = call_access(&context(
            demo_settings(),
            request.clone(),
            json!({"attrs": {}}),
        ));
        assert_eq!(no_clock["error"]["status"], 503);
        assert!(no_clock["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("host_error: "));
        let garbage = call_access(b"not json");
        assert!(garbage["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("host_error: "));
        let bad = call_access(&context(
            json!({"mode": "block"}),
            request.clone(),
            json!({}),
        ));
        assert_eq!(bad["error"]["status"], 503);
        assert!(bad["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("no_policy: "));
        let open = call_access(&context(json!({"fail_open": true}), request, json!({})));
        assert_eq!(open, json!({"result": true}));
        assert!(transform_request(b"[]", None).is_err());
    }

    #[test]
    fn transform_strips_annotates_and_rewrites_the_url() {
        let input = context(
            demo_settings(),
            json!({"method": "GET", "uri": "/orders/1?apikey=demo-storefront-key&x=1", "headers": {"Host": "localhost"}}),
            json!({"otoroshi_request": {
                "url": "https://backend.internal/orders/1?apikey=demo-storefront-key&x=1",
                "method": "GET",
                "headers": {"Host": "backend.internal", "X-Tenant-Id": "forged", "x-principal": "forged", "Accept": "*/*"}
            }}),
        );
        let out: Value = serde_json::from_slice(&transform_request(&input, None).unwrap()).unwrap();
        assert_eq!(out["url"], "https://backend.internal/orders/1?x=1");
        let headers = out["headers"].as_object().unwrap();
        assert_eq!(headers["Host"], "backend.internal");
        assert_eq!(headers["Accept"], "*/*");
        assert!(!headers.contains_key("X-Tenant-Id"));
        assert_eq!(headers["x-tenant-id"], "acme");
        assert_eq!(headers["x-principal"], "app:acme-storefront");
        assert_eq!(headers["x-policy-revision"], "r1");
    }

    #[test]
    fn the_plan_is_added_when_configured_and_a_forged_one_always_stripped() {
        let demo: Value = serde_json::from_str(DEMO).unwrap();
        let compiled = tenantgate_policy::config::encode_base64(&binary::encode(
            &tenantgate_policy::load_snapshot(DEMO).unwrap(),
        ));
        let transform = |settings: Value, key: &str, path: &str| {
            let input = context(
                settings,
                json!({"method": "GET", "uri": path, "headers": {"Host": "localhost", "x-api-key": key}}),
                json!({"otoroshi_request": {
                    "url": format!("https://backend.internal{path}"),
                    "method": "GET",
                    "headers": {"Host": "backend.internal", "X_Tenant_Plan": "paid", "x-tenant-plan": "paid"}
                }}),
            );
            let out: Value =
                serde_json::from_slice(&transform_request(&input, None).unwrap()).unwrap();
            out["headers"].as_object().unwrap().clone()
        };
        let plan_on = |snapshot: Value| json!({"environment": "prod", "annotations": {"plan": true}, "snapshot": snapshot});
        for settings in [
            plan_on(json!({"inline": demo})),
            plan_on(json!({"compiled": compiled})),
        ] {
            let eval = transform(settings.clone(), "demo-initech-key", "/reports/q3");
            assert_eq!(eval["x-tenant-plan"], "evaluation");
            assert!(!eval.contains_key("X_Tenant_Plan"));
            let paid = transform(settings, "demo-storefront-key", "/orders/1");
            assert_eq!(paid["x-tenant-plan"], "paid");
        }
        // Off (the default): no plan, and the client's copies are gone all the same.
        let off = transform(demo_settings(), "demo-initech-key", "/reports/q3");
        assert_eq!(off["x-tenant-id"], "initech");
        assert!(!off.contains_key("x-tenant-plan"));
        assert!(!off.contains_key("X_Tenant_Plan"));
    }

    #[test]
    fn check_config_explains() {
        let ok: Value = serde_json::from_slice(&check_config(
            serde_json::to_vec(&demo_settings()).unwrap().as_slice(),
            None,
        ))
        .unwrap();
        assert_eq!(ok["ok"], true);
        assert_eq!(ok["revision"], "r1");
        let bad: Value =
            serde_json::from_slice(&check_config(br#"{"mode": "block"}"#, None)).unwrap();
        assert_eq!(bad["ok"], false);
        assert!(bad["error"].as_str().unwrap().contains("mode"));
    }

    #[test]
    fn the_verified_payload_in_the_attributes_is_the_identity_and_no_header_is() {
        let demo: Value = serde_json::from_str(DEMO).unwrap();
        let compiled = tenantgate_policy::config::encode_base64(&binary::encode(
            &tenantgate_policy::load_snapshot(DEMO).unwrap(),
        ));
        let token =
            |mode: &str| json!({"mode": mode, "tenant_claim": "org", "roles_claim": "roles"});
        // An unverified token and payload-looking headers, which a client can send.
        let forged = json!({"Host": "localhost",
            "Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2lkcC5nbG9iZXguZXhhbXBsZSIsInN1YiI6ImFsaWNlIn0.",
            "otoroshi.core.MatchedInputToken": r#"{"iss":"https://idp.globex.example","sub":"alice"}"#,
            "x-user-id": "alice"});
        for snapshot in [json!({"inline": demo}), json!({"compiled": compiled})] {
            let settings = |mode: &str| json!({"environment": "prod", "snapshot": snapshot.clone(), "sources": {"token": token(mode)}});
            let run = |mode: &str, path: &str, payload: Option<Value>| {
                let mut attrs =
                    json!({"otoroshi.core.RequestTimestamp": "2026-12-01T01:00:00.000+01:00"});
                if let Some(payload) = payload {
                    attrs[token::PAYLOAD_ATTRIBUTE] = payload;
                }
                let request = json!({"method": "GET", "uri": path, "headers": forged});
                call_access(&context(settings(mode), request, json!({"attrs": attrs})))
            };
            let alice = json!({"iss": "https://idp.globex.example", "sub": "alice"});
            assert_eq!(
                run("identity", "/orders/1", Some(alice)),
                json!({"result": true})
            );
            for (payload, code) in [
                (None, "missing_credentials: "),
                (Some(Value::Null), "missing_credentials: "),
                (Some(json!("eyJ.eyJ.sig")), "invalid_token_claims: "),
                (
                    Some(json!({"iss": "https://login.initech.example", "sub": "bob"})),
                    "issuer_not_trusted: ",
                ),
            ] {
                let out = run("identity", "/orders/1", payload.clone());
                assert_eq!(out["result"], false, "{payload:?}");
                assert!(
                    out["error"]["message"].as_str().unwrap().starts_with(code),
                    "{payload:?}: {out}"
                );
            }
            // Asserted: the claimed tenant and roles, found in the compiled
            // form by the partial decode.
            let sso = json!({"iss": "https://idp.globex.example", "sub": "sso-7", "org": "acme-corp", "roles": ["api-consumer"]});
            assert_eq!(
                run("asserted", "/catalog/items", Some(sso)),
                json!({"result": true})
            );
            let unknown = json!({"iss": "https://idp.globex.example", "sub": "sso-7", "org": "acme", "roles": ["superuser"]});
            let out = run("asserted", "/catalog/items", Some(unknown));
            assert!(
                out["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("unknown_role: "),
                "{out}"
            );
        }
        let checked: Value = serde_json::from_slice(&check_config(
            br#"{"sources": {"token": {"mode": "asserted", "tenant_claim": "org"}}}"#,
            None,
        ))
        .unwrap();
        assert_eq!(checked["token"], "asserted");
    }

    #[test]
    fn a_path_without_uri_keeps_its_query() {
        let input = context(
            json!({}),
            json!({"path": "/a b", "query": {"apikey": ["k&1"], "x": ["é"]}}),
            json!({}),
        );
        let ctx = input::parse(&input).unwrap();
        assert_eq!(path_and_query(&ctx), "/a b?apikey=k%261&x=%C3%A9");
    }
}
