//! The plugin configuration, shared by every host shell and by `policyctl
//! explain --config`.
//!
//! ```json
//! {"mode": "enforce", "environment": "prod", "path_case": "sensitive",
//!  "sources": {"api_key_headers": ["x-api-key"], "api_key_query": "apikey",
//!              "user_header": "x-user-id", "tenant_header": "x-tenant-id"},
//!  "snapshot": {"inline": { ...a snapshot document... }}}
//! ```
//!
//! or, for a live snapshot, `"snapshot": {"remote": {"cluster": "policy",
//! "path": "/snapshot", "authority": "policy.local", "poll_ms": 5000,
//! "timeout_ms": 2000}}` with `"fail_open"` and `"max_staleness_ms"`
//! ([`remote`]). Unknown fields anywhere are errors.

mod remote;

pub use remote::{KeyLookup, RemoteSource, DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES, MIN_CHUNK_BYTES};

use crate::error::{escape_controls, escape_value};
use crate::request::Sources;
use crate::text::is_http_token;
use crate::token::{TokenMode, TokenSource};
use crate::{Annotations, LoadError, Mode, PathCase, Snapshot};
use remote::{RawKeyLookup, RawRemote};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The configuration as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    sources: RawSources,
    #[serde(default)]
    snapshot: Option<RawSnapshotSource>,
    #[serde(default)]
    key_lookup: Option<RawKeyLookup>,
    #[serde(default)]
    fail_open: bool,
    #[serde(default)]
    max_staleness_ms: Option<u64>,
    #[serde(default)]
    filter_state: FilterState,
    #[serde(default)]
    path_case: PathCase,
    /// Annotations beyond the contract's set (x3): `{"plan": true}`.
    #[serde(default)]
    annotations: Annotations,
    #[serde(default)]
    decision_log: Option<DecisionLog>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSources {
    api_key_headers: Option<Vec<String>>,
    api_key_query: Option<String>,
    user_header: Option<String>,
    tenant_header: Option<String>,
    /// Extension x3: the user (and in `asserted` mode tenant, groups, roles)
    /// from a token the gateway verified.
    token: Option<TokenSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnapshotSource {
    inline: Option<Box<RawValue>>,
    /// Base64 of a compiled snapshot (`policyctl compile`).
    compiled: Option<String>,
    remote: Option<RawRemote>,
    /// Issue 14: a second remote source decided alongside, never enforced.
    shadow: Option<RawShadow>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShadow {
    remote: RawRemote,
    #[serde(default = "default_shadow_rate")]
    sample_rate: f64,
}

fn default_shadow_rate() -> f64 {
    1.0
}

/// A shadow revision (issue 14, `snapshot.shadow`): fetched like the live
/// snapshot, decided for a sample of requests, compared, never enforced.
#[derive(Debug, Clone)]
pub struct ShadowSource {
    /// Where it comes from (the options of `snapshot.remote`).
    pub remote: RemoteSource,
    /// The fraction of requests also decided with it, 0 to 1 (default 1).
    pub sample_rate: f64,
}

/// The snapshot a plugin instance starts from.
#[derive(Debug)]
pub enum SnapshotSource {
    /// None configured: every request is answered per the fail policy.
    Absent,
    /// `snapshot.inline` or `snapshot.compiled`, loaded.
    Inline(Box<Snapshot>),
    /// `snapshot.remote`: fetched and kept current.
    Remote(RemoteSource),
}

/// What happens while no usable snapshot is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailPolicy {
    /// Let requests through (forged annotations still stripped, none added)
    /// instead of answering 503 `no_policy`.
    pub fail_open: bool,
    /// A snapshot not confirmed by the source for this long counts as absent.
    pub max_staleness_ms: Option<u64>,
}

/// Which decisions the filter records as filter state for access logs. Each
/// value is one host call per request, the costliest kind (Envoy creates a
/// filter-state object for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterState {
    /// decision, reason, route, tenant and principal of every request.
    All,
    /// Only of denied (or audit would-deny) requests; allowed ones carry
    /// tenant and principal in their annotated request headers, which access
    /// logs read (`%REQ(x-tenant-id)%`). The default since issue 12: the four
    /// values of an allowed request were four host calls, about 2.5 µs, a
    /// fifth of the filter's cost.
    #[default]
    Denials,
    /// Nothing.
    None,
}

/// Decision logs (issue 14): a JSON line per denial, and per sampled allow,
/// in the proxy's log ([`crate::Decision::log_line`]).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionLog {
    /// The fraction of allowed requests logged, 0 to 1 (default 0).
    #[serde(default)]
    pub allow_sample_rate: f64,
    /// At most this many lines per second per worker: a flood of denied
    /// requests must not become a flood of log lines (the rest are counted,
    /// `tenantgate.decision_log.dropped`). 1 to 100,000, default 100.
    #[serde(default = "default_max_lines")]
    pub max_lines_per_second: u32,
}

fn default_max_lines() -> u32 {
    100
}

impl DecisionLog {
    fn checked(self) -> Result<DecisionLog, ConfigError> {
        let rate = self.allow_sample_rate;
        if !(0.0..=1.0).contains(&rate) {
            let what = "must be a fraction from 0 to 1, got";
            return Err(invalid(
                "decision_log.allow_sample_rate",
                &rate.to_string(),
                what,
            ));
        }
        if !(1..=100_000).contains(&self.max_lines_per_second) {
            let value = self.max_lines_per_second.to_string();
            let what = "must be 1 to 100000, got";
            return Err(invalid("decision_log.max_lines_per_second", &value, what));
        }
        Ok(self)
    }
}

/// A validated plugin configuration.
#[derive(Debug)]
pub struct PluginConfig {
    /// Enforce, or only mark what would be denied.
    pub mode: Mode,
    /// The gateway's environment (steps 11 and 12).
    pub environment: Option<String>,
    /// Where credentials come from, and how paths match.
    pub sources: Sources,
    /// Where the snapshot comes from.
    pub snapshot: SnapshotSource,
    /// What happens without a usable snapshot.
    pub fail_policy: FailPolicy,
    /// The on-demand key lookup, if any.
    pub key_lookup: Option<KeyLookup>,
    /// What the Envoy filter records for access logs.
    pub filter_state: FilterState,
    /// The annotations beyond the contract's set that the shells add
    /// (`annotations.plan`: `x-tenant-plan`); none by default.
    pub annotations: Annotations,
    /// Whether `sources.user_header` was written (the Otoroshi shell reads no
    /// user header unless the operator names one).
    pub user_header_configured: bool,
    /// Identity from a verified token (x3): where its claims are and what
    /// they mean. With it, no user header is read.
    pub token: Option<TokenSource>,
    /// Decision logs, if any.
    pub decision_log: Option<DecisionLog>,
    /// A shadow revision to compare decisions with, if any.
    pub shadow: Option<ShadowSource>,
}

/// Why a plugin configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not the configuration's shape (JSON, a field's type or name). Both
    /// messages are one line whatever the configuration holds (they go to the
    /// proxy's log): control characters are escaped.
    #[error("plugin configuration is not valid: {}", escape_controls(.0))]
    Syntax(String),
    /// A field with a value it may not take.
    #[error("plugin configuration: field `{field}`: {what} `{}`", escape_value(.value))]
    Invalid {
        /// The field, dotted (`snapshot.remote.poll_ms`).
        field: &'static str,
        /// The value, as written.
        value: String,
        /// What is wrong with it.
        what: &'static str,
    },
    /// An inline or compiled snapshot that does not load.
    #[error("plugin configuration: field `snapshot.inline`: {0}")]
    Snapshot(#[source] LoadError),
}

impl PluginConfig {
    /// Parses and validates a configuration; an inline snapshot is compiled.
    pub fn parse(bytes: &[u8]) -> Result<PluginConfig, ConfigError> {
        PluginConfig::parse_inner(bytes, false).map(|(config, _)| config)
    }

    /// Like [`PluginConfig::parse`], but `snapshot.compiled` is returned as
    /// its bytes (checked for the format's magic only, `snapshot` left
    /// `Absent`) for a host that decodes per request just what the request
    /// needs ([`crate::binary::decode_for`]): the Otoroshi plug-in.
    pub fn parse_deferring_compiled(
        bytes: &[u8],
    ) -> Result<(PluginConfig, Option<Vec<u8>>), ConfigError> {
        PluginConfig::parse_inner(bytes, true)
    }

    fn parse_inner(
        bytes: &[u8],
        defer_compiled: bool,
    ) -> Result<(PluginConfig, Option<Vec<u8>>), ConfigError> {
        let raw = read_raw(bytes)?;
        if raw.environment.as_deref() == Some("") {
            return Err(invalid("environment", "", "must be non-empty, got"));
        }
        if raw.max_staleness_ms == Some(0) {
            return Err(invalid("max_staleness_ms", "0", "must be positive, got"));
        }
        let user_header_configured = raw.sources.user_header.is_some();
        let mut raw_sources = raw.sources;
        let token = raw_sources.token.take().map(token_source).transpose()?;
        if token.is_some() {
            refuse_user_header_beside_token(raw_sources.user_header.take())?;
            // Off: users come from the token only.
            raw_sources.user_header = Some(String::new());
        }
        let sources = sources(raw_sources, raw.path_case)?;
        let mut raw_snapshot = raw.snapshot;
        let shadow = raw_snapshot
            .as_mut()
            .and_then(|s| s.shadow.take())
            .map(shadow_source)
            .transpose()?;
        let (snapshot, deferred) = snapshot_source(raw_snapshot, defer_compiled)?;
        let config = PluginConfig {
            mode: raw.mode,
            environment: raw.environment,
            sources,
            snapshot,
            fail_policy: FailPolicy {
                fail_open: raw.fail_open,
                max_staleness_ms: raw.max_staleness_ms,
            },
            key_lookup: raw.key_lookup.map(remote::key_lookup).transpose()?,
            filter_state: raw.filter_state,
            annotations: raw.annotations,
            user_header_configured,
            token,
            decision_log: raw.decision_log.map(DecisionLog::checked).transpose()?,
            shadow,
        };
        Ok((config, deferred))
    }
}

fn invalid(field: &'static str, value: &str, what: &'static str) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: value.into(),
        what,
    }
}

/// The raw configuration; an empty one is `{}`. Shape errors name the field
/// (`field `filter_state`: unknown variant ...`).
fn read_raw(bytes: &[u8]) -> Result<RawConfig, ConfigError> {
    let text = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}" as &[u8]
    } else {
        bytes
    };
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            ConfigError::Syntax(inner.to_string())
        } else {
            ConfigError::Syntax(format!("field `{path}`: {inner}"))
        }
    })
}

/// Where credentials come from: the defaults, as overridden.
fn sources(raw: RawSources, path_case: PathCase) -> Result<Sources, ConfigError> {
    let defaults = Sources::default();
    let api_key_headers = match raw.api_key_headers {
        None => defaults.api_key_headers,
        Some(list) if list.len() > 16 => {
            return Err(invalid(
                "sources.api_key_headers",
                &list.len().to_string(),
                "at most 16 headers, got",
            ))
        }
        Some(list) => list
            .into_iter()
            .map(|h| header_name("sources.api_key_headers", h))
            .collect::<Result<_, _>>()?,
    };
    let user_header = match raw.user_header {
        None => defaults.user_header,
        // An empty name turns the user header off (contract extension).
        Some(name) if name.is_empty() => None,
        Some(name) => Some(header_name("sources.user_header", name)?),
    };
    Ok(Sources {
        api_key_headers,
        api_key_query: raw.api_key_query.unwrap_or(defaults.api_key_query),
        user_header,
        tenant_header: match raw.tenant_header {
            Some(name) => header_name("sources.tenant_header", name)?,
            None => defaults.tenant_header,
        },
        path_case,
    })
}

/// A user header beside a token source would let a request without a token
/// name any user: refused unless it is written empty (off).
fn refuse_user_header_beside_token(user_header: Option<String>) -> Result<(), ConfigError> {
    match user_header {
        Some(name) if !name.is_empty() => Err(ConfigError::Invalid {
            field: "sources.user_header",
            value: name,
            what: "must be absent or empty when sources.token is set (users come from the token only), got",
        }),
        _ => Ok(()),
    }
}

/// The token source, its names checked: claim names 1 to 128 bytes, the
/// metadata namespace and payload key non-empty.
fn token_source(source: TokenSource) -> Result<TokenSource, ConfigError> {
    let optional = [
        &source.tenant_claim,
        &source.groups_claim,
        &source.roles_claim,
    ];
    let names = optional.into_iter().flatten().chain([&source.user_claim]);
    for name in names {
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(invalid(
                "sources.token",
                name,
                "a claim name must be 1 to 128 characters without controls, got",
            ));
        }
    }
    for (field, value) in [
        (
            "sources.token.metadata_namespace",
            &source.metadata_namespace,
        ),
        ("sources.token.payload_key", &source.payload_key),
    ] {
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(invalid(
                field,
                value,
                "must be non-empty, without controls, got",
            ));
        }
    }
    if source.mode == TokenMode::Asserted && source.tenant_claim.is_none() {
        return Err(invalid(
            "sources.token.tenant_claim",
            "",
            "is required in asserted mode (the token names its tenant), got nothing:",
        ));
    }
    Ok(source)
}

fn header_name(field: &'static str, value: String) -> Result<String, ConfigError> {
    if is_http_token(&value) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(ConfigError::Invalid {
            field,
            value,
            what: "not a header name:",
        })
    }
}

/// The snapshot source, at most one of `inline`, `compiled`, `remote`; a
/// compiled one is kept as bytes when `defer_compiled`.
fn snapshot_source(
    raw: Option<RawSnapshotSource>,
    defer_compiled: bool,
) -> Result<(SnapshotSource, Option<Vec<u8>>), ConfigError> {
    let Some(source) = raw else {
        return Ok((SnapshotSource::Absent, None));
    };
    let given = [
        source.inline.is_some(),
        source.compiled.is_some(),
        source.remote.is_some(),
    ];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err(invalid(
            "snapshot",
            "inline, compiled, remote",
            "give one source of",
        ));
    }
    if let Some(inline) = source.inline {
        let snapshot = crate::load_snapshot(inline.get()).map_err(ConfigError::Snapshot)?;
        return Ok((SnapshotSource::Inline(Box::new(snapshot)), None));
    }
    if let Some(encoded) = source.compiled {
        return compiled_source(&encoded, defer_compiled);
    }
    match source.remote {
        Some(remote) => Ok((SnapshotSource::Remote(remote::remote_source(remote)?), None)),
        None => Ok((SnapshotSource::Absent, None)),
    }
}

/// `snapshot.shadow`: a remote source and its sample rate.
fn shadow_source(raw: RawShadow) -> Result<ShadowSource, ConfigError> {
    if !(0.0..=1.0).contains(&raw.sample_rate) {
        let what = "must be a fraction from 0 to 1, got";
        return Err(invalid(
            "snapshot.shadow.sample_rate",
            &raw.sample_rate.to_string(),
            what,
        ));
    }
    Ok(ShadowSource {
        remote: remote::remote_source(raw.remote)?,
        sample_rate: raw.sample_rate,
    })
}

fn compiled_source(
    encoded: &str,
    defer: bool,
) -> Result<(SnapshotSource, Option<Vec<u8>>), ConfigError> {
    let bytes = decode_base64(encoded)
        .filter(|b| !defer || b.starts_with(crate::binary::MAGIC))
        .ok_or(ConfigError::Invalid {
            field: "snapshot.compiled",
            value: String::new(),
            what: "must be the base64 of `policyctl compile` output",
        })?;
    if defer {
        return Ok((SnapshotSource::Absent, Some(bytes)));
    }
    let snapshot = crate::load_snapshot_bytes(&bytes).map_err(ConfigError::Snapshot)?;
    Ok((SnapshotSource::Inline(Box::new(snapshot)), None))
}

/// Standard base64 (RFC 4648, `=` padding optional); `None` for anything else.
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    BASE64.decode(text).ok()
}

/// Standard base64 with padding (what `policyctl plugin-config --compiled` writes).
pub fn encode_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    BASE64.encode(bytes)
}

/// Writes padding, accepts it or not.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_token_source_turns_the_user_header_off_and_refuses_one_beside_it() {
        let config = PluginConfig::parse(br#"{"sources": {"token": {}}}"#).unwrap();
        assert_eq!(config.sources.user_header, None);
        assert_eq!(config.token.unwrap().user_claim, "sub");
        let off = br#"{"sources": {"user_header": "", "token": {"mode": "identity"}}}"#;
        assert!(PluginConfig::parse(off).unwrap().token.is_some());
        let both = br#"{"sources": {"user_header": "x-user-id", "token": {}}}"#;
        let error = PluginConfig::parse(both).unwrap_err().to_string();
        assert!(error.contains("sources.user_header"), "{error}");
        for bad in [
            &br#"{"sources": {"token": {"user_claim": ""}}}"#[..],
            br#"{"sources": {"token": {"roles_claim": "r\u0000"}}}"#,
            br#"{"sources": {"token": {"payload_key": ""}}}"#,
            br#"{"sources": {"token": {"mode": "trusting"}}}"#,
            br#"{"sources": {"token": {"claims": {}}}}"#,
        ] {
            assert!(
                PluginConfig::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_shadow_source_takes_the_remote_options_and_a_sample_rate() {
        let config =
            br#"{"snapshot": {"shadow": {"remote": {"cluster": "next"}, "sample_rate": 0.25}}}"#;
        let shadow = PluginConfig::parse(config).unwrap().shadow.unwrap();
        assert_eq!(
            (shadow.remote.cluster.as_str(), shadow.sample_rate),
            ("next", 0.25)
        );
        for bad in [
            &br#"{"snapshot": {"shadow": {"remote": {"cluster": "next"}, "sample_rate": 1.5}}}"#[..],
            br#"{"snapshot": {"shadow": {"remote": {"cluster": ""}}}}"#,
            br#"{"snapshot": {"shadow": {"inline": {}}}}"#,
            br#"{"decision_log": {"allow_sample_rate": -0.1}}"#,
            br#"{"decision_log": {"max_lines_per_second": 0}}"#,
        ] {
            assert!(
                PluginConfig::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_configuration_error_is_one_line_whatever_the_configuration_holds() {
        for config in [
            &b"{\"\x7f\""[..],
            br#"{"mode": "enforce\r\nconfiguration accepted"}"#,
            br#"{"sources": {"tenant_header": "x\u001b[2Jy"}}"#,
            br#"{"\n": 1}"#,
        ] {
            let message = PluginConfig::parse(config).unwrap_err().to_string();
            assert!(!message.chars().any(char::is_control), "{message:?}");
        }
    }

    #[test]
    fn the_plan_annotation_is_off_unless_turned_on_and_unknown_ones_are_refused() {
        assert_eq!(
            PluginConfig::parse(b"{}").unwrap().annotations,
            Annotations { plan: false }
        );
        let on = PluginConfig::parse(br#"{"annotations": {"plan": true}}"#).unwrap();
        assert!(on.annotations.plan);
        let off = PluginConfig::parse(br#"{"annotations": {}}"#).unwrap();
        assert!(!off.annotations.plan);
        for bad in [
            r#"{"annotations": {"plans": true}}"#,
            r#"{"annotations": {"plan": "yes"}}"#,
            r#"{"annotations": true}"#,
        ] {
            let message = PluginConfig::parse(bad.as_bytes()).unwrap_err().to_string();
            assert!(message.contains("annotations"), "{bad}: {message}");
        }
    }

    #[test]
    fn base64_round_trips() {
        for len in 0..40u8 {
            let bytes: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(decode_base64(&encode_base64(&bytes)), Some(bytes));
        }
        assert_eq!(encode_base64(b"hello"), "aGVsbG8=");
    }

    #[test]
    fn base64_decodes_with_and_without_padding_and_refuses_garbage() {
        assert_eq!(decode_base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode_base64("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode_base64("aGVsbG8h").as_deref(), Some(&b"hello!"[..]));
        assert_eq!(decode_base64("").as_deref(), Some(&b""[..]));
        for bad in ["a", "aGV*bG8=", "aGVsbG8===", "aGVs\nbG8="] {
            assert_eq!(decode_base64(bad), None, "{bad}");
        }
    }

    fn remote_with(extra: &str) -> Result<PluginConfig, ConfigError> {
        let config = format!(r#"{{"snapshot": {{"remote": {{"cluster": "policy"{extra}}}}}}}"#);
        PluginConfig::parse(config.as_bytes())
    }

    #[test]
    fn chunk_bytes_defaults_well_under_envoys_buffer_and_is_bounded() {
        let SnapshotSource::Remote(remote) = remote_with("").unwrap().snapshot else {
            panic!("not remote")
        };
        assert_eq!(remote.chunk_bytes, 256 << 10);
        let SnapshotSource::Remote(remote) =
            remote_with(r#", "chunk_bytes": 65536"#).unwrap().snapshot
        else {
            panic!("not remote")
        };
        assert_eq!(remote.chunk_bytes, 65536);
        for bad in ["65535", "0", "33554433"] {
            let message = remote_with(&format!(r#", "chunk_bytes": {bad}"#))
                .unwrap_err()
                .to_string();
            assert!(
                message.contains("snapshot.remote.chunk_bytes") && message.contains(bad),
                "{message}"
            );
        }
        assert!(remote_with(r#", "chunk_bytes": -1"#).is_err());
    }

    #[test]
    fn a_compiled_snapshot_loads_like_its_json() {
        let json = include_str!("../../../policies/demo.json");
        let compiled = crate::binary::encode(&crate::load_snapshot(json).unwrap());
        let encoded = encode_base64(&compiled);
        let config = format!(r#"{{"snapshot": {{"compiled": "{encoded}"}}}}"#);
        let parsed = PluginConfig::parse(config.as_bytes()).unwrap();
        let SnapshotSource::Inline(snapshot) = parsed.snapshot else {
            panic!("not inline")
        };
        assert_eq!(snapshot.revision(), "r1");
        let both = format!(r#"{{"snapshot": {{"compiled": "{encoded}", "inline": {json}}}}}"#);
        assert!(PluginConfig::parse(both.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("give one source of"));
        let corrupt = r#"{"snapshot": {"compiled": "VEdTTkFQAAE="}}"#;
        assert!(PluginConfig::parse(corrupt.as_bytes()).is_err());
    }
}
