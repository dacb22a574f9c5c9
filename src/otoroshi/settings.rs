//! Our settings, from `config.config` of Otoroshi's input: the same JSON as the
//! Envoy plugin configuration (parsed by [`PluginConfig::parse`]), plus one
//! optional Otoroshi-only key that is removed before that parse:
//!
//! ```json
//! {"mode": "enforce", "environment": "prod", "snapshot": {"inline": {...}},
//!  "otoroshi": {"loc_fallback": false}}
//! ```
//!
//! `config.config` may also be a JSON string holding that object (for setups
//! that keep plugin settings as strings).

use crate::config::{PluginConfig, SnapshotSource};
use crate::policy::decide::GatewayDirectory;
use crate::policy::{Mode, Snapshot, Sources};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

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

/// The validated settings of one call.
pub struct Settings<'a> {
    pub mode: Mode,
    pub environment: Option<String>,
    pub sources: Sources,
    pub fail_open: bool,
    pub snapshot: Option<Snapshot>,
    pub options: OtoroshiOptions,
    /// The settings' text, for the [`GatewayDirectory`].
    text: Cow<'a, str>,
}

impl Settings<'_> {
    /// Where the inline snapshot document places Otoroshi identities. Read on
    /// demand: only requests that carry an Otoroshi apikey or user need it.
    pub fn directory(&self) -> GatewayDirectory {
        let fields: Fields<'_> = serde_json::from_str(&self.text).unwrap_or_default();
        fields
            .0
            .iter()
            .find(|(key, _)| key == "snapshot")
            .and_then(|(_, raw)| serde_json::from_str::<InlineOnly<'_>>(raw.get()).ok())
            .and_then(|snapshot| snapshot.inline)
            .and_then(|inline| GatewayDirectory::from_json(inline.get()).ok())
            .unwrap_or_default()
    }
}

/// Why the settings are unusable. The text is for operators (`check_config`),
/// never sent to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
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

#[derive(Deserialize)]
struct InlineOnly<'a> {
    #[serde(borrow, default)]
    inline: Option<&'a RawValue>,
}

/// Reads and validates our settings from the raw `config.config` value.
pub fn load(raw: Option<&RawValue>) -> Result<Settings<'_>, SettingsError> {
    let Some(raw) = raw else {
        // No settings at all: like an empty Envoy configuration.
        return parse("{}");
    };
    let text = raw.get();
    if text.starts_with('"') {
        let inner: String =
            serde_json::from_str(text).map_err(|e| SettingsError(format!("config.config: {e}")))?;
        return parse(&inner).map(Settings::into_owned);
    }
    parse(text)
}

impl Settings<'_> {
    fn into_owned(self) -> Settings<'static> {
        Settings {
            mode: self.mode,
            environment: self.environment,
            sources: self.sources,
            fail_open: self.fail_open,
            snapshot: self.snapshot,
            options: self.options,
            text: Cow::Owned(self.text.into_owned()),
        }
    }
}

fn parse(text: &str) -> Result<Settings<'_>, SettingsError> {
    let mut options = OtoroshiOptions::default();
    // The Envoy configuration as written, unless it holds our key (a cheap
    // test first: the text is mostly the snapshot, read once more below).
    let config_text: Cow<'_, str> = if text.contains("\"otoroshi\"") {
        let fields: Fields<'_> = serde_json::from_str(text)
            .map_err(|e| SettingsError(format!("plugin configuration is not valid: {e}")))?;
        let mut shared = Vec::with_capacity(fields.0.len());
        for (key, value) in &fields.0 {
            if key == OTOROSHI_KEY {
                options = serde_json::from_str(value.get()).map_err(|e| {
                    SettingsError(format!("plugin configuration: field `{OTOROSHI_KEY}`: {e}"))
                })?;
            } else {
                shared.push((key, *value));
            }
        }
        let mut out = String::with_capacity(text.len());
        out.push('{');
        for (i, (key, value)) in shared.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let key =
                serde_json::to_string(key.as_ref()).map_err(|e| SettingsError(e.to_string()))?;
            out.push_str(&key);
            out.push(':');
            out.push_str(value.get());
        }
        out.push('}');
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    };
    // Otoroshi instantiates the module for every call, so the snapshot is loaded
    // on every request: `snapshot.compiled` (handled by `PluginConfig::parse`)
    // loads it without parsing JSON. The `GatewayDirectory` (Otoroshi client
    // ids, e-mails) is read from a JSON snapshot only: with a compiled one,
    // Otoroshi identities are not mapped (the compiled form does not carry them
    // yet).
    let config =
        PluginConfig::parse(config_text.as_bytes()).map_err(|e| SettingsError(e.to_string()))?;
    if config.key_lookup.is_some() {
        return Err(SettingsError(
            "plugin configuration: field `key_lookup`: not available in Otoroshi (a plug-in makes no outbound calls); ship every key in the snapshot".into(),
        ));
    }
    let snapshot = match config.snapshot {
        SnapshotSource::Inline(snapshot) => Some(*snapshot),
        SnapshotSource::Absent => None,
        SnapshotSource::Remote(_) => {
            return Err(SettingsError(
                "plugin configuration: field `snapshot.remote`: not available in Otoroshi (a plug-in makes no outbound calls); use `snapshot.inline`".into(),
            ))
        }
    };
    Ok(Settings {
        mode: config.mode,
        environment: config.environment,
        sources: config.sources,
        fail_open: config.fail_policy.fail_open,
        snapshot,
        options,
        text: Cow::Borrowed(text),
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

    #[test]
    fn the_otoroshi_key_is_ours_and_the_rest_is_the_envoy_configuration() {
        let text = format!(
            r#"{{"mode": "audit", "otoroshi": {{"loc_fallback": true}}, "snapshot": {{"inline": {SNAPSHOT}}}}}"#
        );
        let value = raw(&text);
        let settings = load(Some(&value)).unwrap();
        assert_eq!(settings.mode, Mode::Audit);
        assert!(settings.options.loc_fallback);
        assert_eq!(settings.snapshot.as_ref().unwrap().revision(), "r1");
        assert!(settings
            .directory()
            .apikey(settings.snapshot.as_ref().unwrap(), "x", false, None)
            .is_key());
        let as_string = raw(&serde_json::to_string(&text).unwrap());
        assert!(load(Some(&as_string)).unwrap().options.loc_fallback);
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
            let error = load(Some(&value)).err().expect(text);
            assert!(error.0.contains(needle), "{text}: {}", error.0);
        }
        let settings = load(None).unwrap();
        assert!(settings.snapshot.is_none());
    }
}
