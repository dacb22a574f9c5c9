//! Our settings, from `config.config` of Otoroshi's input: the same JSON as the
//! Envoy plugin configuration (parsed by [`PluginConfig::parse_deferring_compiled`]), plus one
//! optional Otoroshi-only key that is removed before that parse:
//!
//! ```json
//! {"mode": "enforce", "environment": "prod", "snapshot": {"inline": {...}},
//!  "otoroshi": {"loc_fallback": false}}
//! ```
//!
//! `config.config` may also be a JSON string holding that object (for setups
//! that keep plugin settings as strings).
//!
//! The snapshot: `snapshot.inline` (JSON, compiled whole on every call),
//! `snapshot.compiled` (kept as bytes and searched per request), or, when the
//! settings name none, the one `policyctl bake` put into the module.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use tenantgate_policy::config::{PluginConfig, SnapshotSource};
use tenantgate_policy::token::TokenSource;
use tenantgate_policy::{Annotations, Mode, Snapshot, Sources};

/// The key of `config.config` that only the Otoroshi shell reads.
pub const OTOROSHI_KEY: &str = "otoroshi";

/// Otoroshi-only options (`config.config.otoroshi`).
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtoroshiOptions {
    /// An Otoroshi apikey that no app names (`apps[].otoroshi_client_ids`) is
    /// placed by its `_loc` (tenant and teams) instead of being refused.
    #[serde(default)]
    pub loc_fallback: bool,
}

/// The snapshot a call decides against.
pub enum Policy<'b> {
    /// None in the settings and none baked into the module.
    Absent,
    /// `snapshot.inline`: a JSON document, compiled whole.
    Whole(Box<Snapshot>),
    /// A compiled snapshot: `snapshot.compiled`, or the one `policyctl bake`
    /// put into the module. Each call decodes only what its request needs
    /// ([`tenantgate_policy::binary::decode_for`]): the call's cost does not grow
    /// with the number of keys.
    Encoded(Cow<'b, [u8]>),
}

/// The validated settings of one call.
pub struct Settings<'b> {
    /// Enforce or audit.
    pub mode: Mode,
    /// The gateway's environment (spec §2 step 9).
    pub environment: Option<String>,
    /// Where credentials and the tenant selector come from.
    pub sources: Sources,
    /// `fail_open`: with no snapshot, requests pass unchecked (forged annotations
    /// still stripped, none added) instead of 503 `no_policy`.
    pub fail_open: bool,
    /// The snapshot to decide against.
    pub policy: Policy<'b>,
    /// The Otoroshi-only options.
    pub options: OtoroshiOptions,
    /// Annotations beyond the contract's set (`annotations.plan`).
    pub annotations: Annotations,
    /// `sources.token` (x3): identity from the token Otoroshi's JWT verifier
    /// accepted ([`crate::token`]). Its Envoy-only fields
    /// (`metadata_namespace`, `payload_key`) are not read here.
    pub token: Option<TokenSource>,
}

/// Why the settings are unusable. The text is for operators (`check_config`),
/// never sent to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// The top-level keys of our settings object, values kept raw.
#[derive(Default)]
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    fields.push((key, value));
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(V(std::marker::PhantomData))
    }
}

/// Reads and validates our settings from the raw `config.config` value.
/// `baked` is the snapshot baked into the module, used when the settings name
/// none.
pub fn load<'b>(
    raw: Option<&RawValue>,
    baked: Option<&'b [u8]>,
) -> Result<Settings<'b>, SettingsError> {
    let Some(raw) = raw else {
        // No settings at all: like an empty Envoy configuration.
        return parse("{}", baked);
    };
    let text = raw.get();
    if text.starts_with('"') {
        let inner: String =
            serde_json::from_str(text).map_err(|e| SettingsError(format!("config.config: {e}")))?;
        return parse(&inner, baked);
    }
    parse(text, baked)
}

fn parse<'b>(text: &str, baked: Option<&'b [u8]>) -> Result<Settings<'b>, SettingsError> {
    let (options, config_text) = split_otoroshi_options(text)?;
    // Otoroshi instantiates the module for every call, so the snapshot is
    // loaded on every request: a compiled one is kept as bytes and decoded per
    // request, for that request only.
    let (config, compiled) = PluginConfig::parse_deferring_compiled(config_text.as_bytes())
        .map_err(|e| SettingsError(e.to_string()))?;
    if config.key_lookup.is_some() {
        return Err(SettingsError(
            "plugin configuration: field `key_lookup`: not available in Otoroshi (a plug-in makes no outbound calls); ship every key in the snapshot".into(),
        ));
    }
    let policy = choose_policy(config.snapshot, compiled, baked)?;
    let mut sources = config.sources;
    if !config.user_header_configured {
        // Otoroshi's own validated user is the user; a header names one only
        // when the operator says which (one that a module in front sets and
        // a client cannot).
        sources.user_header = None;
    }
    Ok(Settings {
        mode: config.mode,
        environment: config.environment,
        sources,
        fail_open: config.fail_policy.fail_open,
        policy,
        options,
        annotations: config.annotations,
        token: config.token,
    })
}

/// Takes our `otoroshi` key out of the settings: its options, and the Envoy
/// configuration without it (the text as written when it has no such key; a
/// cheap test first, since the text is mostly the snapshot).
fn split_otoroshi_options(text: &str) -> Result<(OtoroshiOptions, Cow<'_, str>), SettingsError> {
    if !text.contains("\"otoroshi\"") {
        return Ok((OtoroshiOptions::default(), Cow::Borrowed(text)));
    }
    let fields: Fields<'_> = serde_json::from_str(text)
        .map_err(|e| SettingsError(format!("plugin configuration is not valid: {e}")))?;
    let mut options = OtoroshiOptions::default();
    let mut out = String::with_capacity(text.len());
    out.push('{');
    for (key, value) in &fields.0 {
        if key == OTOROSHI_KEY {
            options = serde_json::from_str(value.get()).map_err(|e| {
                SettingsError(format!("plugin configuration: field `{OTOROSHI_KEY}`: {e}"))
            })?;
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        let key = serde_json::to_string(key.as_ref()).map_err(|e| SettingsError(e.to_string()))?;
        out.push_str(&key);
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
    Ok((options, Cow::Owned(out)))
}

/// The snapshot of the settings, else the baked one. A remote snapshot needs
/// outbound calls, which a plug-in cannot make.
fn choose_policy<'b>(
    source: SnapshotSource,
    compiled: Option<Vec<u8>>,
    baked: Option<&'b [u8]>,
) -> Result<Policy<'b>, SettingsError> {
    Ok(match (source, compiled) {
        (_, Some(bytes)) => Policy::Encoded(Cow::Owned(bytes)),
        (SnapshotSource::Inline(snapshot), None) => Policy::Whole(snapshot),
        (SnapshotSource::Absent, None) => match baked {
            Some(bytes) => Policy::Encoded(Cow::Borrowed(bytes)),
            None => Policy::Absent,
        },
        (SnapshotSource::Remote(_), None) => {
            return Err(SettingsError(
                "plugin configuration: field `snapshot.remote`: not available in Otoroshi (a plug-in makes no outbound calls); use `snapshot.inline`".into(),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    const SNAPSHOT: &str = r#"{"revision": "r1", "organizations": [], "teams": []}"#;

    fn revision(settings: &Settings<'_>) -> String {
        match &settings.policy {
            Policy::Whole(snapshot) => snapshot.revision().to_string(),
            Policy::Encoded(bytes) => tenantgate_policy::binary::decode(bytes)
                .unwrap()
                .revision()
                .to_string(),
            Policy::Absent => "absent".into(),
        }
    }

    #[test]
    fn the_otoroshi_key_is_ours_and_the_rest_is_the_envoy_configuration() {
        let text = format!(
            r#"{{"mode": "audit", "otoroshi": {{"loc_fallback": true}}, "snapshot": {{"inline": {SNAPSHOT}}}}}"#
        );
        let value = raw(&text);
        let settings = load(Some(&value), None).unwrap();
        assert_eq!(settings.mode, Mode::Audit);
        assert!(settings.options.loc_fallback);
        assert_eq!(revision(&settings), "r1");
        let as_string = raw(&serde_json::to_string(&text).unwrap());
        assert!(load(Some(&as_string), None).unwrap().options.loc_fallback);
    }

    #[test]
    fn a_compiled_snapshot_is_kept_encoded_and_a_baked_one_is_the_default() {
        let compiled = |revision: &str| {
            let text = SNAPSHOT.replace("r1", revision);
            tenantgate_policy::binary::encode(&tenantgate_policy::load_snapshot(&text).unwrap())
        };
        let baked = compiled("baked");
        let settings_compiled = raw(&format!(
            r#"{{"snapshot": {{"compiled": "{}"}}}}"#,
            tenantgate_policy::config::encode_base64(&compiled("r2"))
        ));
        let settings = load(Some(&settings_compiled), Some(&baked)).unwrap();
        assert!(matches!(settings.policy, Policy::Encoded(Cow::Owned(_))));
        assert_eq!(revision(&settings), "r2", "the settings' snapshot wins");
        let inline = raw(&format!(r#"{{"snapshot": {{"inline": {SNAPSHOT}}}}}"#));
        assert_eq!(revision(&load(Some(&inline), Some(&baked)).unwrap()), "r1");
        let none = raw(r#"{"mode": "audit"}"#);
        let settings = load(Some(&none), Some(&baked)).unwrap();
        assert!(matches!(settings.policy, Policy::Encoded(Cow::Borrowed(_))));
        assert_eq!(revision(&settings), "baked");
        assert_eq!(revision(&load(None, Some(&baked)).unwrap()), "baked");
        assert_eq!(revision(&load(Some(&none), None).unwrap()), "absent");
        // Not a compiled snapshot: refused when the settings are read.
        let wrong = raw(r#"{"snapshot": {"compiled": "eyJhIjoxfQ=="}}"#);
        assert!(load(Some(&wrong), None)
            .err()
            .unwrap()
            .0
            .contains("snapshot.compiled"));
    }

    #[test]
    fn unknown_fields_and_host_calls_are_refused() {
        for (text, needle) in [
            (r#"{"colour": 1}"#, "colour"),
            (r#"{"otoroshi": {"loc": true}}"#, "otoroshi"),
            (
                r#"{"snapshot": {"remote": {"cluster": "policy"}}}"#,
                "snapshot.remote",
            ),
            (r#"{"key_lookup": {"cluster": "policy"}}"#, "key_lookup"),
            (r#"[1]"#, "not valid"),
        ] {
            let value = raw(text);
            let error = load(Some(&value), None).err().expect(text);
            assert!(error.0.contains(needle), "{text}: {}", error.0);
        }
        let settings = load(None, None).unwrap();
        assert!(matches!(settings.policy, Policy::Absent));
    }
}
