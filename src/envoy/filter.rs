//! Root and HTTP contexts. The root context owns the configuration and the
//! compiled snapshot; each HTTP context holds an `Rc` to them.

use super::abi::{self, Level, MetricKind};
use super::wire;
use crate::config::PluginConfig;
use crate::policy::{
    self, Action as PolicyAction, Decision, Mode, Reason, Request, Snapshot, Sources, Timestamp,
    STRIPPED_HEADERS,
};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::borrow::Cow;
use std::rc::Rc;

proxy_wasm::main! {{
    std::panic::set_hook(Box::new(|info| {
        abi::log(Level::Critical, &format!("tenantgate: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// What every request of this plugin instance reads.
struct Shared {
    mode: Mode,
    environment: Option<String>,
    sources: Sources,
    snapshot: Option<Snapshot>,
    metrics: Metrics,
}

/// Counter ids, defined once per VM. `None` where the host refused a definition:
/// metrics are best effort and never fail a request.
struct Metrics {
    allowed: Option<u32>,
    denied: Vec<Option<u32>>,
    audit_would_deny: Vec<Option<u32>>,
}

impl Metrics {
    fn define() -> Metrics {
        let counter = |name: String| abi::define_metric(MetricKind::Counter, &name).ok();
        Metrics {
            allowed: counter("tenantgate.allowed".into()),
            denied: Reason::ALL
                .iter()
                .map(|r| counter(format!("tenantgate.denied.{}", r.code())))
                .collect(),
            audit_would_deny: Reason::ALL
                .iter()
                .map(|r| counter(format!("tenantgate.audit_would_deny.{}", r.code())))
                .collect(),
        }
    }

    fn count(&self, decision: Option<Reason>, mode: Mode) {
        let id = match (decision, mode) {
            (None, _) => self.allowed,
            (Some(r), Mode::Enforce) => self.denied.get(r as usize).copied().flatten(),
            (Some(r), Mode::Audit) => self.audit_would_deny.get(r as usize).copied().flatten(),
        };
        if let Some(id) = id {
            let _ = abi::increment_metric(id, 1);
        }
    }
}

/// Gauges describing the loaded snapshot.
fn publish_snapshot_gauges(snapshot: &Snapshot) {
    let revision: String = snapshot
        .revision()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let gauges = [
        (format!("tenantgate.snapshot.revision.{revision}"), 1u64),
        (
            "tenantgate.snapshot.api_keys".to_string(),
            snapshot.stats().api_keys as u64,
        ),
        (
            "tenantgate.snapshot.organizations".to_string(),
            snapshot.stats().organizations as u64,
        ),
    ];
    for (name, value) in gauges {
        if let Ok(id) = abi::define_metric(MetricKind::Gauge, &name) {
            let _ = abi::record_metric(id, value);
        }
    }
}

#[derive(Default)]
struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = match abi::plugin_configuration(plugin_configuration_size) {
            Ok(bytes) => bytes,
            Err(e) => {
                abi::log(
                    Level::Error,
                    &format!("tenantgate: cannot read the plugin configuration: {e}"),
                );
                return false;
            }
        };
        let config = match PluginConfig::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                // Returning false makes Envoy reject the configuration; the previous
                // one, if any, keeps serving.
                abi::log(
                    Level::Error,
                    &format!("tenantgate: configuration refused: {e}"),
                );
                return false;
            }
        };
        match &config.snapshot {
            Some(snapshot) => {
                publish_snapshot_gauges(snapshot);
                abi::log(
                    Level::Info,
                    &format!(
                        "tenantgate: snapshot `{}` loaded ({} organizations, {} api keys, {} routes); mode {:?}",
                        snapshot.revision(),
                        snapshot.stats().organizations,
                        snapshot.stats().api_keys,
                        snapshot.stats().routes,
                        config.mode
                    ),
                );
            }
            None => abi::log(
                Level::Warn,
                "tenantgate: no snapshot configured; every request is answered 503 no_policy",
            ),
        }
        self.shared = Some(Rc::new(Shared {
            mode: config.mode,
            environment: config.environment,
            sources: config.sources,
            snapshot: config.snapshot,
            metrics: Metrics::define(),
        }));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            shared: self.shared.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    shared: Option<Rc<Shared>>,
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            return respond(Reason::NoPolicy);
        };
        let buffer = match abi::request_header_buffer() {
            Ok(buffer) => buffer,
            Err(e) => {
                abi::log(
                    Level::Error,
                    &format!("tenantgate: cannot read request headers: {e}"),
                );
                return respond(Reason::HostError);
            }
        };
        let Some(raw_pairs) = wire::parse_header_map(&buffer) else {
            abi::log(Level::Error, "tenantgate: malformed request header map");
            return respond(Reason::HostError);
        };
        // Lossy conversion: a non-UTF-8 value can never match a key hash, a user
        // or an organization, so it simply fails to authenticate.
        let headers: Vec<(Cow<'_, str>, Cow<'_, str>)> = raw_pairs
            .iter()
            .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v)))
            .collect();
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, v)| v.as_ref())
        };
        let (method, path, authority) = (pseudo(":method"), pseudo(":path"), pseudo(":authority"));
        let request = Request::from_parts(&shared.sources, method, authority, path, &headers);
        let decision = match (&shared.snapshot, abi::now_nanos()) {
            (None, _) => Decision::no_policy(request.forward_path.as_deref()),
            (Some(snapshot), Ok(now)) => policy::decide(
                snapshot,
                &request,
                Timestamp::from_unix_nanos(now),
                shared.environment.as_deref(),
            ),
            (Some(_), Err(e)) => {
                abi::log(
                    Level::Error,
                    &format!("tenantgate: cannot read the clock: {e}"),
                );
                return respond(Reason::HostError);
            }
        };
        shared.metrics.count(decision.reason, shared.mode);
        record_filter_state(&decision);
        match decision.action(shared.mode) {
            // The access log (filter state) and the counters say why; no per-deny
            // log line, which would format a string on every denied request.
            PolicyAction::Respond { status, body } => send_deny(status, body),
            PolicyAction::Forward {
                headers: annotations,
                path,
            } => {
                // Remove forged copies; the ones we set are replaced anyway.
                for name in STRIPPED_HEADERS {
                    let inbound = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
                    let set_by_us = annotations.iter().any(|(n, _)| *n == name);
                    if inbound && !set_by_us {
                        if let Err(e) = abi::remove_request_header(name) {
                            abi::log(
                                Level::Error,
                                &format!("tenantgate: cannot remove `{name}`: {e}"),
                            );
                            return respond(Reason::HostError);
                        }
                    }
                }
                let mut writes: Vec<(&str, &str)> = annotations;
                if let Some(path) = path {
                    writes.push((":path", path));
                }
                for (name, value) in writes {
                    if let Err(e) = abi::set_request_header(name, value) {
                        abi::log(
                            Level::Error,
                            &format!("tenantgate: cannot set `{name}`: {e}"),
                        );
                        return respond(Reason::HostError);
                    }
                }
                Action::Continue
            }
        }
    }
}

fn record_filter_state(decision: &Decision<'_>) {
    let fields = [
        (
            "tenantgate.decision",
            Some(if decision.allowed() { "allow" } else { "deny" }),
        ),
        ("tenantgate.reason", decision.reason.map(Reason::code)),
        ("tenantgate.route", decision.route),
        ("tenantgate.tenant", decision.tenant_id()),
        ("tenantgate.principal", decision.principal.as_deref()),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            let _ = abi::set_property(key, value);
        }
    }
}

fn respond(reason: Reason) -> Action {
    send_deny(reason.status(), reason.body())
}

fn send_deny(status: u16, body: &str) -> Action {
    let headers = [("content-type", "application/json")];
    if let Err(e) = abi::send_local_response(status, "tenantgate_denied", body, &headers) {
        abi::log(
            Level::Error,
            &format!("tenantgate: cannot send the deny response: {e}"),
        );
    }
    Action::Pause
}
