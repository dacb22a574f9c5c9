//! The JSON context Otoroshi passes the plug-in (its request, apikey, user,
//! attributes, and our settings in `config.config`):
//! `otoroshi::shell::access` and `otoroshi::shell::transform_request`.
//!
//! Invariants: `access` always answers `{"result": bool, ...}` JSON, a deny
//! with a status of the contract and a message; `transform_request`
//! answers JSON headers (an error only for input that is not an object,
//! which `access` denies with `host_error`); the outgoing headers carry no
//! inbound annotation, only ours, once each, and none when `access` denies;
//! the outgoing url keeps no API key parameter.

use super::common;
use tenantgate_otoroshi::{input, settings, shell};
use tenantgate_policy::{is_annotation_header, STRIPPED_HEADERS};

pub fn run(data: &[u8]) {
    let access = shell::access(data, None);
    let access: serde_json::Value = match serde_json::from_slice(&access) {
        Ok(value) => value,
        Err(e) => panic!(
            "access answered no JSON ({e}): {:?}",
            common::lossy(&access)
        ),
    };
    let allowed = match access["result"].as_bool() {
        Some(result) => result,
        None => panic!("access answered {access}"),
    };
    if !allowed {
        let status = access["error"]["status"].as_u64();
        assert!(
            matches!(status, Some(400 | 401 | 403 | 404 | 503)),
            "deny status {access}"
        );
        assert!(
            access["error"]["message"].is_string(),
            "deny message {access}"
        );
    }
    let transformed = match shell::transform_request(data, None) {
        Ok(out) => out,
        Err(_) => {
            let message = access["error"]["message"].as_str().unwrap_or_default();
            assert!(
                !allowed && message.starts_with("host_error"),
                "transform_request refused an input access took: {access}"
            );
            return;
        }
    };
    let out: serde_json::Value = match serde_json::from_slice(&transformed) {
        Ok(value) => value,
        Err(e) => panic!(
            "transform_request answered no JSON ({e}): {:?}",
            common::lossy(&transformed)
        ),
    };
    let Some(headers) = out["headers"].as_object() else {
        panic!("transform_request answered no headers: {out}");
    };
    // Count annotation names in the raw output: a JSON object read into a
    // map would hide a repeated name.
    let mut ours = Vec::new();
    for name in headers.keys() {
        if is_annotation_header(name.as_bytes()) {
            assert!(
                STRIPPED_HEADERS.contains(&name.as_str()),
                "an inbound annotation reaches the upstream: {name:?}"
            );
            ours.push(name.as_str());
        }
    }
    for name in &ours {
        let quoted = format!("\"{name}\":");
        let count = transformed
            .windows(quoted.len())
            .filter(|w| *w == quoted.as_bytes())
            .count();
        assert!(count <= 1, "annotation {name} set {count} times");
    }
    if !allowed {
        assert!(ours.is_empty(), "a denied request is annotated: {ours:?}");
    }
    if let Some(url) = out["url"].as_str() {
        let query = match input::parse(data) {
            Ok(ctx) => match settings::load(ctx.config.0.config, None) {
                Ok(settings) => settings.sources.api_key_query,
                Err(_) => "apikey".to_string(),
            },
            Err(_) => "apikey".to_string(),
        };
        assert!(
            !common::has_param(url.as_bytes(), query.as_bytes()),
            "the upstream url keeps the API key: {url}"
        );
    }
}
