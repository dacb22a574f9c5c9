//! The filter's counters and gauges, defined once per VM: Envoy shows them
//! at `/stats` and `/stats/prometheus` (`tenantgate.*`).
//!
//! The decision counters (one per request) are counted inside the VM and
//! handed to Envoy on the root context's tick (at most a second later): a host
//! call per request was about 0.4 µs of the filter's cost (issue 12,
//! `mimic_no_counter` in bench/envoy). Rare events are counted at once.

use super::abi::{self, MetricKind};
use std::cell::Cell;
use tenantgate_policy::{Mode, Reason, Snapshot};

/// A counter bumped on every request: counted here, flushed on the tick.
struct Deferred {
    id: Option<u32>,
    pending: Cell<u64>,
}

impl Deferred {
    fn new(id: Option<u32>) -> Deferred {
        Deferred {
            id,
            pending: Cell::new(0),
        }
    }

    fn flush(&self) {
        let pending = self.pending.replace(0);
        if let (Some(id), true) = (self.id, pending > 0) {
            let _ = abi::increment_metric(id, i64::try_from(pending).unwrap_or(i64::MAX));
        }
    }
}

/// The fetch and swap counters of one snapshot source:
/// `<prefix>.fetch.ok|not_modified|failed|invalid` and `<prefix>.snapshot.swaps`.
pub struct FetchCounters {
    pub swaps: Option<u32>,
    pub fetch_ok: Option<u32>,
    pub fetch_not_modified: Option<u32>,
    pub fetch_failed: Option<u32>,
    pub fetch_invalid: Option<u32>,
}

impl FetchCounters {
    pub fn define(prefix: &str) -> FetchCounters {
        let named = |name: &str| counter(&format!("{prefix}.{name}"));
        FetchCounters {
            swaps: named("snapshot.swaps"),
            fetch_ok: named("fetch.ok"),
            fetch_not_modified: named("fetch.not_modified"),
            fetch_failed: named("fetch.failed"),
            fetch_invalid: named("fetch.invalid"),
        }
    }

    pub fn bump(&self, id: Option<u32>) {
        if let Some(id) = id {
            let _ = abi::increment_metric(id, 1);
        }
    }
}

/// Metric ids. `None` where the host refused a definition: metrics are best
/// effort and never fail a request.
pub struct Metrics {
    allowed: Deferred,
    denied: Vec<Deferred>,
    audit_would_deny: Vec<Deferred>,
    /// Whether a tick flushes the decision counters; until one is set up
    /// (or if it cannot be), they go to the host at once.
    deferring: Cell<bool>,
    pub fail_open: Option<u32>,
    pub snapshot_age_ms: Option<u32>,
    pub lookup_hit: Option<u32>,
    pub lookup_miss: Option<u32>,
    pub lookup_negative_hit: Option<u32>,
    pub lookup_failed: Option<u32>,
    pub lookup_invalid: Option<u32>,
    pub lookup_throttled: Option<u32>,
    pub lookup_joined: Option<u32>,
    /// Decision log lines over `max_lines_per_second`, not written.
    pub log_dropped: Option<u32>,
}

fn counter(name: &str) -> Option<u32> {
    abi::define_metric(MetricKind::Counter, name).ok()
}

fn per_reason(prefix: &str) -> Vec<Deferred> {
    Reason::ALL
        .iter()
        .map(|r| Deferred::new(counter(&format!("{prefix}.{}", r.code()))))
        .collect()
}

impl Metrics {
    pub fn define() -> Metrics {
        Metrics {
            allowed: Deferred::new(counter("tenantgate.allowed")),
            denied: per_reason("tenantgate.denied"),
            audit_would_deny: per_reason("tenantgate.audit_would_deny"),
            deferring: Cell::new(false),
            fail_open: counter("tenantgate.fail_open"),
            snapshot_age_ms: abi::define_metric(MetricKind::Gauge, "tenantgate.snapshot.age_ms")
                .ok(),
            lookup_hit: counter("tenantgate.key_lookup.cache_hit"),
            lookup_miss: counter("tenantgate.key_lookup.cache_miss"),
            lookup_negative_hit: counter("tenantgate.key_lookup.negative_hit"),
            lookup_failed: counter("tenantgate.key_lookup.failed"),
            lookup_invalid: counter("tenantgate.key_lookup.invalid"),
            lookup_throttled: counter("tenantgate.key_lookup.throttled"),
            lookup_joined: counter("tenantgate.key_lookup.joined"),
            log_dropped: counter("tenantgate.decision_log.dropped"),
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
        let counter = match (decision, mode) {
            (None, _) => Some(&self.allowed),
            (Some(r), Mode::Enforce) => self.denied.get(r as usize),
            (Some(r), Mode::Audit) => self.audit_would_deny.get(r as usize),
        };
        if let Some(counter) = counter {
            counter.pending.set(counter.pending.get().saturating_add(1));
            if !self.deferring.get() {
                counter.flush();
            }
        }
    }

    /// From now on the decision counters wait for [`Metrics::flush`], which
    /// the root context calls on every tick.
    pub fn defer_to_tick(&self) {
        self.deferring.set(true);
    }

    /// Hands the decision counts made since the last flush to the host.
    pub fn flush(&self) {
        self.allowed.flush();
        self.denied.iter().for_each(Deferred::flush);
        self.audit_would_deny.iter().for_each(Deferred::flush);
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
