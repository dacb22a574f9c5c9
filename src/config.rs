//! The plugin configuration, shared by every host shell and by `policyctl explain --config`.
//!
//! ```json
//! {"mode": "enforce", "environment": "prod",
//!  "sources": {"api_key_headers": ["x-api-key"], "api_key_query": "apikey",
//!              "user_header": "x-user-id", "tenant_header": "x-tenant-id"},
//!  "snapshot": {"inline": { ...a snapshot document... }}}
//! ```

use crate::policy::{self, LoadError, Mode, Snapshot, Sources};
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
}

/// A validated plugin configuration.
#[derive(Debug)]
pub struct PluginConfig {
    pub mode: Mode,
    pub environment: Option<String>,
    pub sources: Sources,
    /// The compiled inline snapshot, when one was given.
    pub snapshot: Option<Snapshot>,
}

/// Why a plugin configuration was refused.
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Syntax(message) => {
                write!(f, "plugin configuration is not valid: {message}")
            }
            ConfigError::Invalid { field, value, what } => {
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

impl PluginConfig {
    /// Parses and validates a configuration; an inline snapshot is compiled.
    pub fn parse(bytes: &[u8]) -> Result<PluginConfig, ConfigError> {
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
        let sources = Sources {
            api_key_headers,
            api_key_query: raw.sources.api_key_query.unwrap_or(defaults.api_key_query),
            user_header: header_name(
                "sources.user_header",
                raw.sources.user_header.unwrap_or(defaults.user_header),
            )?,
            tenant_header: header_name(
                "sources.tenant_header",
                raw.sources.tenant_header.unwrap_or(defaults.tenant_header),
            )?,
        };
        let snapshot = match raw.snapshot.and_then(|s| s.inline) {
            Some(inline) => {
                Some(policy::load_snapshot(inline.get()).map_err(ConfigError::Snapshot)?)
            }
            None => None,
        };
        Ok(PluginConfig {
            mode,
            environment: raw.environment,
            sources,
            snapshot,
        })
    }
}
