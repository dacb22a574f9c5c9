//! The filter's counters and gauges, defined once per VM: Envoy shows them
//! at `/stats` and `/stats/prometheus` (`tenantgate.*`).

use super::abi::{self, MetricKind};
use tenantgate_policy::{Mode, Reason, Snapshot};

/// Metric ids. `None` where the host refused a definition: metrics are best
/// effort and never fail a request.
pub struct Metrics {
    allowed: Option<u32>,
    denied: Vec<Option<u32>>,
    audit_would_deny: Vec<Option<u32>>,
    pub fail_open: Option<u32>,
    pub swaps: Option<u32>,
    pub fetch_ok: Option<u32>,
    pub fetch_not_modified: Option<u32>,
    pub fetch_failed: Option<u32>,
    pub fetch_invalid: Option<u32>,
    pub snapshot_age_ms: Option<u32>,
    pub lookup_hit: Option<u32>,
    pub lookup_miss: Option<u32>,
    pub lookup_negative_hit: Option<u32>,
    pub lookup_failed: Option<u32>,
    pub lookup_invalid: Option<u32>,
    pub lookup_throttled: Option<u32>,
    pub lookup_joined: Option<u32>,
}

fn counter(name: &str) -> Option<u32> {
    abi::define_metric(MetricKind::Counter, name).ok()
}

fn per_reason(prefix: &str) -> Vec<Option<u32>> {
    Reason::ALL
        .iter()
        .map(|r| counter(&format!("{prefix}.{}", r.code())))
        .collect()
}

impl Metrics {
    pub fn define() -> Metrics {
        Metrics {
            allowed: counter("tenantgate.allowed"),
            denied: per_reason("tenantgate.denied"),
            audit_would_deny: per_reason("tenantgate.audit_would_deny"),
            fail_open: counter("tenantgate.fail_open"),
            swaps: counter("tenantgate.snapshot.swaps"),
            fetch_ok: counter("tenantgate.fetch.ok"),
            fetch_not_modified: counter("tenantgate.fetch.not_modified"),
            fetch_failed: counter("tenantgate.fetch.failed"),
            fetch_invalid: counter("tenantgate.fetch.invalid"),
            snapshot_age_ms: abi::define_metric(MetricKind::Gauge, "tenantgate.snapshot.age_ms")
                .ok(),
            lookup_hit: counter("tenantgate.key_lookup.cache_hit"),
            lookup_miss: counter("tenantgate.key_lookup.cache_miss"),
            lookup_negative_hit: counter("tenantgate.key_lookup.negative_hit"),
            lookup_failed: counter("tenantgate.key_lookup.failed"),
            lookup_invalid: counter("tenantgate.key_lookup.invalid"),
            lookup_throttled: counter("tenantgate.key_lookup.throttled"),
            lookup_joined: counter("tenantgate.key_lookup.joined"),
        }
    }

    pub fn bump(&self, id: Option<u32>) {
        if let Some(id) = id {
            let _ = abi::increment_metric(id, 1);
        }
    }

    pub fn record(&self, id: Option<u32>, value: u64) {
        if let Some(id) = id {
            let _ = abi::record_metric(id, value);
        }
    }

    /// One decision: allowed, denied or (audit) would-deny, per reason.
    pub fn count(&self, decision: Option<Reason>, mode: Mode) {
        let id = match (decision, mode) {
            (None, _) => self.allowed,
            (Some(r), Mode::Enforce) => self.denied.get(r as usize).copied().flatten(),
            (Some(r), Mode::Audit) => self.audit_would_deny.get(r as usize).copied().flatten(),
        };
        self.bump(id);
    }
}

/// `tenantgate.snapshot.revision.<revision>` set to `value` (1 current, 0
/// replaced). Revisions are restricted to `A-Za-z0-9._:-` at load; `.` and
/// `:` would split or break the stat name, so they become `_`.
pub fn publish_revision_gauge(revision: &str, value: u64) {
    let revision: String = revision
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(id) = abi::define_metric(
        MetricKind::Gauge,
        &format!("tenantgate.snapshot.revision.{revision}"),
    ) {
        let _ = abi::record_metric(id, value);
    }
}

/// Gauges describing the loaded snapshot.
pub fn publish_snapshot_gauges(snapshot: &Snapshot) {
    publish_revision_gauge(snapshot.revision(), 1);
    let counts = [
        ("tenantgate.snapshot.api_keys", snapshot.stats().api_keys),
        (
            "tenantgate.snapshot.organizations",
            snapshot.stats().organizations,
        ),
    ];
    for (name, value) in counts {
        if let Ok(id) = abi::define_metric(MetricKind::Gauge, name) {
            let _ = abi::record_metric(id, value as u64);
        }
    }
}
