//! The plugin configuration, shared by every host shell and by `policyctl explain --config`.
//!
//! ```json
//! {"mode": "enforce", "environment": "prod",
//!  "sources": {"api_key_headers": ["x-api-key"], "api_key_query": "apikey",
//!              "user_header": "x-user-id", "tenant_header": "x-tenant-id"},
//!  "snapshot": {"inline": { ...a snapshot document... }}}
//! ```
//!
//! or, for a live snapshot, `"snapshot": {"remote": {"cluster": "policy",
//! "path": "/snapshot", "authority": "policy.local", "poll_ms": 5000,
//! "timeout_ms": 2000}}` with `"fail_open"` and `"max_staleness_ms"`.

use crate::policy::{self, LoadError, Mode, PathCase, Snapshot, Sources};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    mode: Option<String>,
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
    filter_state: Option<String>,
    #[serde(default)]
    path_case: PathCase,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSources {
    api_key_headers: Option<Vec<String>>,
    api_key_query: Option<String>,
    user_header: Option<String>,
    tenant_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnapshotSource {
    inline: Option<Box<RawValue>>,
    /// Base64 of a compiled snapshot (`policyctl compile`).
    compiled: Option<String>,
    remote: Option<RawRemote>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    cluster: String,
    #[serde(default = "default_snapshot_path")]
    path: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default = "default_poll_ms")]
    poll_ms: u32,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u32,
    /// Base64 Ed25519 public keys: when given, only snapshots signed by one
    /// of them are accepted (several during a key rotation).
    #[serde(default)]
    public_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyLookup {
    cluster: String,
    #[serde(default = "default_keys_path")]
    path_prefix: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default = "default_lookup_timeout_ms")]
    timeout_ms: u32,
    #[serde(default = "default_ttl_ms")]
    ttl_ms: u32,
    #[serde(default = "default_negative_ttl_ms")]
    negative_ttl_ms: u32,
    #[serde(default = "default_cache_size")]
    cache_size: u32,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: u32,
    #[serde(default = "default_max_per_second")]
    max_per_second: u32,
}

fn default_max_in_flight() -> u32 {
    16
}

fn default_max_per_second() -> u32 {
    100
}

fn default_keys_path() -> String {
    "/keys/".into()
}

fn default_lookup_timeout_ms() -> u32 {
    500
}

fn default_ttl_ms() -> u32 {
    60_000
}

fn default_negative_ttl_ms() -> u32 {
    10_000
}

fn default_cache_size() -> u32 {
    10_000
}

/// Where keys missing from the snapshot are looked up: `GET <path_prefix><sha256>`
/// on an Envoy cluster, answered with an `api_keys` entry (200) or 404.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLookup {
    pub cluster: String,
    pub path_prefix: String,
    pub authority: String,
    pub timeout_ms: u32,
    /// How long a found key is trusted before it is looked up again.
    pub ttl_ms: u32,
    /// How long "no such key" is remembered.
    pub negative_ttl_ms: u32,
    /// Entries per worker (least recently used evicted first), for found
    /// keys and, separately, for unknown ones.
    pub cache_size: u32,
    /// Lookups one worker runs at once; more unknown keys are answered 503
    /// (never let through by `fail_open`).
    pub max_in_flight: u32,
    /// Lookups one worker starts per second, likewise.
    pub max_per_second: u32,
}

fn key_lookup(raw: RawKeyLookup) -> Result<KeyLookup, ConfigError> {
    let invalid = |field, value: String, what| Err(ConfigError::Invalid { field, value, what });
    if raw.cluster.is_empty() {
        return invalid(
            "key_lookup.cluster",
            raw.cluster,
            "must name an Envoy cluster, got",
        );
    }
    if !raw.path_prefix.starts_with('/') {
        return invalid(
            "key_lookup.path_prefix",
            raw.path_prefix,
            "must start with `/`, got",
        );
    }
    if raw.timeout_ms == 0 {
        return invalid("key_lookup.timeout_ms", "0".into(), "must be positive, got");
    }
    let bounded = |field, value: u32, max: u32| {
        if value == 0 || value > max {
            Err(ConfigError::Invalid {
                field,
                value: value.to_string(),
                what: "must be between 1 and its maximum (cache_size 100000, max_in_flight 1024, max_per_second 100000), got",
            })
        } else {
            Ok(())
        }
    };
    bounded("key_lookup.cache_size", raw.cache_size, 100_000)?;
    bounded("key_lookup.max_in_flight", raw.max_in_flight, 1024)?;
    bounded("key_lookup.max_per_second", raw.max_per_second, 100_000)?;
    Ok(KeyLookup {
        authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
        cluster: raw.cluster,
        path_prefix: raw.path_prefix,
        timeout_ms: raw.timeout_ms,
        ttl_ms: raw.ttl_ms,
        negative_ttl_ms: raw.negative_ttl_ms,
        cache_size: raw.cache_size,
        max_in_flight: raw.max_in_flight,
        max_per_second: raw.max_per_second,
    })
}

fn default_snapshot_path() -> String {
    "/snapshot".into()
}

fn default_poll_ms() -> u32 {
    5000
}

fn default_timeout_ms() -> u32 {
    2000
}

/// Where a remote snapshot is fetched from: an Envoy cluster and a path.
#[derive(Debug, Clone)]
pub struct RemoteSource {
    pub cluster: String,
    pub path: String,
    /// `:authority` of the fetch (default: the cluster name).
    pub authority: String,
    pub poll_ms: u32,
    pub timeout_ms: u32,
    /// Only snapshots signed by one of these keys are accepted (`None`:
    /// signatures are not required).
    pub verifier: Option<policy::signed::Verifier>,
}

impl PartialEq for RemoteSource {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.cluster,
            &self.path,
            &self.authority,
            self.poll_ms,
            self.timeout_ms,
        ) == (
            &other.cluster,
            &other.path,
            &other.authority,
            other.poll_ms,
            other.timeout_ms,
        ) && self.verifier.is_some() == other.verifier.is_some()
    }
}

/// The snapshot a plugin instance starts from.
#[derive(Debug)]
pub enum SnapshotSource {
    /// None configured: every request is answered per the fail policy.
    Absent,
    Inline(Box<Snapshot>),
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

/// A validated plugin configuration.
#[derive(Debug)]
pub struct PluginConfig {
    pub mode: Mode,
    pub environment: Option<String>,
    pub sources: Sources,
    pub snapshot: SnapshotSource,
    pub fail_policy: FailPolicy,
    pub key_lookup: Option<KeyLookup>,
    pub filter_state: FilterState,
    /// Whether `sources.user_header` was written (the Otoroshi shell reads no
    /// user header unless the operator names one).
    pub user_header_configured: bool,
}

/// Which decisions the filter records as filter state for access logs. Each
/// value is one host call per request, the costliest kind (Envoy creates a
/// filter-state object for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilterState {
    /// decision, reason, route, tenant and principal of every request.
    #[default]
    All,
    /// Only of denied (or audit would-deny) requests; allowed ones still carry
    /// tenant and principal in their annotated request headers.
    Denials,
    None,
}
#[derive(Debug)]
pub enum ConfigError {
    Syntax(String),
    Invalid {
        field: &'static str,
        value: String,
        what: &'static str,
    },
    Snapshot(LoadError),
}

impl fmt::Display for ConfigError {
    /// One line, whatever the configuration holds (it goes to the proxy's
    /// log): control characters are escaped, as in snapshot problems.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::policy::error::{escape_controls, escape_value};
        match self {
            ConfigError::Syntax(message) => {
                let message = escape_controls(message);
                write!(f, "plugin configuration is not valid: {message}")
            }
            ConfigError::Invalid { field, value, what } => {
                let value = escape_value(value);
                write!(f, "plugin configuration: field `{field}`: {what} `{value}`")
            }
            ConfigError::Snapshot(e) => {
                write!(f, "plugin configuration: field `snapshot.inline`: {e}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

fn header_name(field: &'static str, value: String) -> Result<String, ConfigError> {
    let valid = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if valid {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(ConfigError::Invalid {
            field,
            value,
            what: "not a header name:",
        })
    }
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

fn remote_source(raw: RawRemote) -> Result<RemoteSource, ConfigError> {
    let invalid = |field, value: String, what| Err(ConfigError::Invalid { field, value, what });
    if raw.cluster.is_empty() {
        return invalid(
            "snapshot.remote.cluster",
            raw.cluster,
            "must name an Envoy cluster, got",
        );
    }
    if !raw.path.starts_with('/') {
        return invalid("snapshot.remote.path", raw.path, "must start with `/`, got");
    }
    if raw.poll_ms < 100 {
        return invalid(
            "snapshot.remote.poll_ms",
            raw.poll_ms.to_string(),
            "must be at least 100, got",
        );
    }
    if raw.timeout_ms == 0 {
        return invalid(
            "snapshot.remote.timeout_ms",
            "0".into(),
            "must be positive, got",
        );
    }
    let verifier = public_keys(&raw.public_keys)?;
    Ok(RemoteSource {
        authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
        cluster: raw.cluster,
        path: raw.path,
        poll_ms: raw.poll_ms,
        timeout_ms: raw.timeout_ms,
        verifier,
    })
}

/// At most 16 keys, each the base64 of a 32-byte Ed25519 public key.
fn public_keys(encoded: &[String]) -> Result<Option<policy::signed::Verifier>, ConfigError> {
    const FIELD: &str = "snapshot.remote.public_keys";
    if encoded.is_empty() {
        return Ok(None);
    }
    if encoded.len() > 16 {
        return Err(ConfigError::Invalid {
            field: FIELD,
            value: encoded.len().to_string(),
            what: "at most 16 keys, got",
        });
    }
    let mut keys = Vec::with_capacity(encoded.len());
    for text in encoded {
        let key: [u8; 32] = decode_base64(text)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| ConfigError::Invalid {
                field: FIELD,
                value: text.clone(),
                what: "not the base64 of a 32-byte Ed25519 public key:",
            })?;
        keys.push(key);
    }
    policy::signed::Verifier::new(&keys)
        .map(Some)
        .map_err(|_| ConfigError::Invalid {
            field: FIELD,
            value: encoded.join(","),
            what: "not an Ed25519 public key:",
        })
}

impl PluginConfig {
    /// Parses and validates a configuration; an inline snapshot is compiled.
    pub fn parse(bytes: &[u8]) -> Result<PluginConfig, ConfigError> {
        PluginConfig::parse_inner(bytes, false).map(|(config, _)| config)
    }

    /// Like [`PluginConfig::parse`], but `snapshot.compiled` is returned as
    /// its bytes (checked for the format's magic only, `snapshot` left
    /// `Absent`) for a host that decodes per request just what the request
    /// needs (`policy::binary::decode_for`): the Otoroshi plug-in.
    pub fn parse_deferring_compiled(
        bytes: &[u8],
    ) -> Result<(PluginConfig, Option<Vec<u8>>), ConfigError> {
        PluginConfig::parse_inner(bytes, true)
    }

    fn parse_inner(
        bytes: &[u8],
        defer_compiled: bool,
    ) -> Result<(PluginConfig, Option<Vec<u8>>), ConfigError> {
        let text = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}" as &[u8]
        } else {
            bytes
        };
        let raw: RawConfig =
            serde_json::from_slice(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let mode = match raw.mode.as_deref() {
            None | Some("enforce") => Mode::Enforce,
            Some("audit") => Mode::Audit,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    field: "mode",
                    value: other.into(),
                    what: "must be `enforce` or `audit`, got",
                })
            }
        };
        if let Some(env) = &raw.environment {
            if env.is_empty() {
                return Err(ConfigError::Invalid {
                    field: "environment",
                    value: env.clone(),
                    what: "must be non-empty, got",
                });
            }
        }
        let defaults = Sources::default();
        let api_key_headers = match raw.sources.api_key_headers {
            None => defaults.api_key_headers,
            Some(list) if list.len() > 16 => {
                return Err(ConfigError::Invalid {
                    field: "sources.api_key_headers",
                    value: list.len().to_string(),
                    what: "at most 16 headers, got",
                })
            }
            Some(list) => list
                .into_iter()
                .map(|h| header_name("sources.api_key_headers", h))
                .collect::<Result<_, _>>()?,
        };
        let user_header_configured = raw.sources.user_header.is_some();
        let user_header = match raw.sources.user_header {
            None => defaults.user_header,
            // An empty name turns the user header off (contract extension).
            Some(name) if name.is_empty() => None,
            Some(name) => Some(header_name("sources.user_header", name)?),
        };
        let sources = Sources {
            api_key_headers,
            api_key_query: raw.sources.api_key_query.unwrap_or(defaults.api_key_query),
            user_header,
            path_case: raw.path_case,
            tenant_header: header_name(
                "sources.tenant_header",
                raw.sources.tenant_header.unwrap_or(defaults.tenant_header),
            )?,
        };
        let mut deferred = None;
        let snapshot = match raw.snapshot {
            None => SnapshotSource::Absent,
            Some(source) => {
                let given = [
                    source.inline.is_some(),
                    source.compiled.is_some(),
                    source.remote.is_some(),
                ];
                if given.iter().filter(|&&g| g).count() > 1 {
                    return Err(ConfigError::Invalid {
                        field: "snapshot",
                        value: "inline, compiled, remote".into(),
                        what: "give one source of",
                    });
                }
                if let Some(inline) = source.inline {
                    SnapshotSource::Inline(Box::new(
                        policy::load_snapshot(inline.get()).map_err(ConfigError::Snapshot)?,
                    ))
                } else if let Some(encoded) = source.compiled {
                    let bytes = decode_base64(&encoded)
                        .filter(|b| !defer_compiled || b.starts_with(policy::binary::MAGIC))
                        .ok_or(ConfigError::Invalid {
                            field: "snapshot.compiled",
                            value: String::new(),
                            what: "must be the base64 of `policyctl compile` output",
                        })?;
                    if defer_compiled {
                        deferred = Some(bytes);
                        SnapshotSource::Absent
                    } else {
                        SnapshotSource::Inline(Box::new(
                            policy::load_snapshot_bytes(&bytes).map_err(ConfigError::Snapshot)?,
                        ))
                    }
                } else if let Some(remote) = source.remote {
                    SnapshotSource::Remote(remote_source(remote)?)
                } else {
                    SnapshotSource::Absent
                }
            }
        };
        if raw.max_staleness_ms == Some(0) {
            return Err(ConfigError::Invalid {
                field: "max_staleness_ms",
                value: "0".into(),
                what: "must be positive, got",
            });
        }
        let fail_policy = FailPolicy {
            fail_open: raw.fail_open,
            max_staleness_ms: raw.max_staleness_ms,
        };
        let key_lookup = raw.key_lookup.map(key_lookup).transpose()?;
        let filter_state = match raw.filter_state.as_deref() {
            None | Some("all") => FilterState::All,
            Some("denials") => FilterState::Denials,
            Some("none") => FilterState::None,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    field: "filter_state",
                    value: other.into(),
                    what: "must be `all`, `denials` or `none`, got",
                })
            }
        };
        let config = PluginConfig {
            mode,
            environment: raw.environment,
            sources,
            snapshot,
            fail_policy,
            key_lookup,
            filter_state,
            user_header_configured,
        };
        Ok((config, deferred))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_compiled_snapshot_loads_like_its_json() {
        let json = include_str!("../policies/demo.json");
        let compiled = policy::binary::encode(&policy::load_snapshot(json).unwrap());
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
