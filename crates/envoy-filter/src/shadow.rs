//! The shadow revision (issue 14, `snapshot.shadow`): a second snapshot
//! source, fetched like the live one, that a sample of requests is also
//! decided with. Only the live decision is enforced; the two are compared,
//! counted (`tenantgate.shadow.agree`, on the tick,
//! `tenantgate.shadow.disagree.<live>.<shadow>`, `allow` for an allow) and
//! a sample of disagreements logged (route, tenant, principal, reasons —
//! never a key or a header value).

use super::abi::{self, Level, MetricKind};
use super::source::{Source, SourceKind};
use crate::decision_log::{Admit, DecisionLogger};
use std::cell::{Cell, RefCell};
use tenantgate_policy::config::{DecisionLog, ShadowSource};
use tenantgate_policy::{Decision, Reason};

/// Disagreements logged per second per worker, at most.
const LOGGED_PER_SECOND: u32 = 10;

pub struct Shadow {
    pub source: Source,
    /// Which requests are also decided with the shadow (sampling and the
    /// log budget, with the decision log's logic).
    sample: DecisionLogger,
    log_budget: DecisionLogger,
    agree: Option<u32>,
    /// Agreements since the last tick: counted here, handed to Envoy on the
    /// tick (a host call per request is the costliest part of shadowing).
    pending_agree: Cell<u64>,
    /// Counters of the disagreements met so far, defined on first sight.
    disagree: RefCell<Vec<(Pair, Option<u32>)>>,
}

/// The live and the shadow decision's reasons (`None`: allowed).
type Pair = (Option<Reason>, Option<Reason>);

impl Shadow {
    pub fn new(config: &ShadowSource) -> Shadow {
        let sampler = |rate, max| {
            DecisionLogger::new(DecisionLog {
                allow_sample_rate: rate,
                max_lines_per_second: max,
            })
        };
        Shadow {
            source: Source::new(SourceKind::Shadow, Some(&config.remote)),
            sample: sampler(config.sample_rate, 100_000),
            log_budget: sampler(0.0, LOGGED_PER_SECOND),
            agree: abi::define_metric(MetricKind::Counter, "tenantgate.shadow.agree").ok(),
            disagree: RefCell::new(Vec::new()),
            pending_agree: Cell::new(0),
        }
    }

    /// Hands the agreements counted since the last tick to Envoy.
    pub fn flush(&self) {
        let pending = self.pending_agree.replace(0);
        if let (Some(id), true) = (self.agree, pending > 0) {
            let _ = abi::increment_metric(id, i64::try_from(pending).unwrap_or(i64::MAX));
        }
    }

    /// Whether this request is decided with the shadow too.
    pub fn sampled(&self, now_ms: i64) -> bool {
        // An allow's sampling: the per-second budget is not the point here.
        self.sample.admit(false, now_ms, abi::random_u64) == Admit::Write
    }

    /// Counts (and perhaps logs) the two decisions of one request.
    pub fn compare(&self, live: &Decision<'_>, shadow: &Decision<'_>, now_ms: i64) {
        if live.reason == shadow.reason {
            self.pending_agree
                .set(self.pending_agree.get().saturating_add(1));
            return;
        }
        if let Some(id) = self.disagreement_counter(live.reason, shadow.reason) {
            let _ = abi::increment_metric(id, 1);
        }
        if self.log_budget.admit(true, now_ms, || 0) == Admit::Write {
            abi::log(
                Level::Info,
                &format!("tenantgate.shadow {}", describe(live, shadow)),
            );
        }
    }

    fn disagreement_counter(&self, live: Option<Reason>, shadow: Option<Reason>) -> Option<u32> {
        let mut known = self.disagree.try_borrow_mut().ok()?;
        if let Some((_, id)) = known.iter().find(|(pair, _)| *pair == (live, shadow)) {
            return *id;
        }
        let name = format!("tenantgate.shadow.disagree.{}.{}", code(live), code(shadow));
        let id = abi::define_metric(MetricKind::Counter, &name).ok();
        known.push(((live, shadow), id));
        id
    }
}

fn code(reason: Option<Reason>) -> &'static str {
    reason.map_or("allow", Reason::code)
}

/// A disagreement as a JSON line: ids and reason codes only.
fn describe(live: &Decision<'_>, shadow: &Decision<'_>) -> String {
    serde_json::json!({
        "route": live.route,
        "tenant": live.tenant_id(),
        "principal": live.principal.as_deref(),
        "live": code(live.reason),
        "shadow": code(shadow.reason),
        "revision": live.revision,
        "shadow_revision": shadow.revision,
    })
    .to_string()
}
