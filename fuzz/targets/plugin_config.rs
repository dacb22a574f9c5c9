//! The plugin configuration an operator (or a control plane) hands the
//! filter: `PluginConfig::parse`, `PluginConfig::parse_deferring_compiled`
//! (the Otoroshi shell's) and the Otoroshi `check_config` export.
//!
//! Invariants: errors are values, never panics; an error about the
//! configuration itself is one line (a snapshot's problems are one line
//! each); an accepted configuration has at most 16 API key headers (the
//! request reader keeps no more), valid lower-case header names, and its
//! sources read a request; an inline snapshot decides a request keeping the
//! decision invariants; `check_config` always answers a JSON object.

use super::common;
use tenantgate_policy::config::{ConfigError, PluginConfig, SnapshotSource};
use tenantgate_policy::{self as policy, Request};

fn check_error(error: &ConfigError) {
    match error {
        ConfigError::Snapshot(e) => common::check_load_error(e),
        other => common::assert_one_line("configuration error", &other.to_string()),
    }
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_digit() || b.is_ascii_lowercase() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

pub fn run(data: &[u8]) {
    match PluginConfig::parse(data) {
        Err(e) => check_error(&e),
        Ok(config) => {
            let sources = &config.sources;
            assert!(
                sources.api_key_headers.len() <= 16,
                "more than 16 key headers"
            );
            for name in sources
                .api_key_headers
                .iter()
                .chain(sources.user_header.iter())
                .chain([&sources.tenant_header])
            {
                assert!(is_header_name(name), "header name {name:?}");
            }
            if let Some(env) = &config.environment {
                assert!(!env.is_empty(), "empty environment");
            }
            let headers: Vec<(&str, &str)> = sources
                .api_key_headers
                .iter()
                .map(|h| (h.as_str(), "demo-storefront-key"))
                .collect();
            let path = format!("/orders/1?{}=demo-storefront-key", sources.api_key_query);
            let request = Request::from_parts(sources, "GET", "localhost", &path, &headers);
            if let SnapshotSource::Inline(snapshot) = &config.snapshot {
                let now = common::now(0);
                let decision = policy::decide(
                    snapshot,
                    &request,
                    &policy::Context::new(now, config.environment.as_deref()),
                );
                // A compiled snapshot is not re-validated: its values are not checked.
                check_decision_for(&request, &sources.api_key_query, &decision);
            }
        }
    }
    if let Err(e) = PluginConfig::parse_deferring_compiled(data) {
        check_error(&e);
    }
    {
        let out = tenantgate_otoroshi::shell::check_config(data, None);
        match serde_json::from_slice::<serde_json::Value>(&out) {
            Ok(value) => assert!(value["ok"].is_boolean(), "check_config answered {value}"),
            Err(e) => panic!(
                "check_config answered no JSON ({e}): {:?}",
                common::lossy(&out)
            ),
        }
    }
}

fn check_decision_for(request: &Request<'_>, query: &str, decision: &policy::Decision<'_>) {
    common::check_decision(request, query, decision, false);
}
