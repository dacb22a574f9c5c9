//! What every request of one plugin instance reads: its configuration, the
//! current snapshot, the key-lookup state and the metrics. Owned by the root
//! context, shared with request contexts through an `Rc`; a request takes a
//! cheap `Rc` of the snapshot current when it arrives, so a swap never
//! disturbs it.

use super::abi::{self, Level};
use super::key_lookup::KeyLookups;
use super::live::TierRef;
use super::metrics::Metrics;
use super::shadow::Shadow;
use super::source::{Source, SourceKind};
use crate::claims::TokenRead;
use crate::decision_log::DecisionLogger;
use std::cell::RefCell;
use std::rc::Rc;
use tenantgate_policy::config::{FailPolicy, FilterState, KeyLookup};
use tenantgate_policy::{Annotations, ExternalKey, Mode, Snapshot, Sources};

/// A compiled snapshot, the ETag it was fetched with, and its signed
/// sequence (`None`: unsigned).
pub struct Loaded {
    pub snapshot: Snapshot,
    pub etag: String,
    pub sequence: Option<u64>,
    /// Where the snapshot's API keys are when they are not in `snapshot`:
    /// the key tier in the shared data (remote sources).
    pub tier: Option<TierRef>,
}

/// What the key tier says of a digest.
pub enum TierLookup {
    Found(Rc<ExternalKey>),
    Absent,
    /// The tier was replaced: pick up the new snapshot and decide again.
    Stale,
    /// The tier cannot be read.
    Broken,
}

pub struct Plugin {
    /// The root context: key lookups are its callouts.
    pub root_id: u32,
    pub mode: Mode,
    pub environment: Option<String>,
    pub sources: Sources,
    pub fail_policy: FailPolicy,
    pub filter_state: FilterState,
    /// Annotations beyond the contract's set (`annotations.plan`).
    pub annotations: Annotations,
    pub key_lookup: Option<KeyLookup>,
    /// Identity from the verified token `jwt_authn` left in the metadata.
    pub token: Option<TokenRead>,
    /// Decision logs, if configured.
    pub decision_log: Option<DecisionLogger>,
    /// The snapshot decisions are enforced with.
    pub live: Source,
    /// The shadow revision compared with it, if configured.
    pub shadow: Option<Shadow>,
    pub lookups: RefCell<KeyLookups<Rc<ExternalKey>>>,
    pub metrics: Metrics,
}

impl Plugin {
    pub fn new(root_id: u32, config: tenantgate_policy::config::PluginConfig) -> Plugin {
        let remote = match &config.snapshot {
            tenantgate_policy::config::SnapshotSource::Remote(remote) => Some(remote),
            _ => None,
        };
        let limits = config.key_lookup.as_ref().map_or(
            super::key_lookup::Limits::default(),
            super::key_lookup::Limits::from,
        );
        Plugin {
            root_id,
            mode: config.mode,
            environment: config.environment,
            sources: config.sources,
            fail_policy: config.fail_policy,
            filter_state: config.filter_state,
            annotations: config.annotations,
            key_lookup: config.key_lookup,
            token: config.token.map(TokenRead::new),
            decision_log: config.decision_log.map(DecisionLogger::new),
            live: Source::new(SourceKind::Live, remote),
            shadow: config.shadow.as_ref().map(Shadow::new),
            lookups: RefCell::new(KeyLookups::new(limits)),
            metrics: Metrics::define(),
        }
    }

    /// The snapshot to decide with: absent, or older than `max_staleness_ms`,
    /// is none. A VM with none yet adopts the one another VM published (a new
    /// worker must not answer 503 while another holds a good snapshot).
    pub fn usable(&self, now_ms: i64) -> Option<Rc<Loaded>> {
        if self.current().is_none() {
            self.pick_up();
        }
        let current = self.current()?;
        match (
            self.fail_policy.max_staleness_ms,
            self.live.confirmed_ms.get(),
        ) {
            (Some(max), Some(confirmed))
                if now_ms.saturating_sub(confirmed) > i64::try_from(max).unwrap_or(i64::MAX) =>
            {
                None
            }
            _ => Some(current),
        }
    }

    /// The live snapshot.
    pub fn current(&self) -> Option<Rc<Loaded>> {
        self.live.current()
    }

    /// Adopts the live snapshot another VM published, if it differs from ours.
    pub fn pick_up(&self) {
        self.live.pick_up();
    }

    /// See [`Source::pick_up_new_tier`].
    pub fn pick_up_new_tier(&self) {
        self.live.pick_up_new_tier();
    }

    /// The key with `digest` in the live key tier.
    pub fn tier_key(&self, loaded: &Loaded, digest: &[u8; 32]) -> TierLookup {
        self.live.tier_key(loaded, digest)
    }
}

/// Loads with `load`, timing it for the log.
pub fn timed_load<T, E: std::fmt::Display>(
    load: impl FnOnce() -> Result<T, E>,
) -> Result<(T, i64), String> {
    let started = abi::now_nanos().unwrap_or(0);
    let loaded = load().map_err(|e| e.to_string())?;
    let elapsed_ms = abi::now_nanos().unwrap_or(started).saturating_sub(started) / 1_000_000;
    Ok((loaded, elapsed_ms))
}

/// Logs why a snapshot was refused: its first problem only (never the body:
/// it may be large, and it is the policy).
pub fn log_refused(what: &str, problem: &str) {
    let mut lines = problem.lines();
    let head = lines.next().unwrap_or("");
    let more = lines.count();
    let tail = if more == 0 {
        String::new()
    } else {
        format!(" (+{more} more lines)")
    };
    abi::log(Level::Error, &format!("tenantgate: {what}: {head}{tail}"));
}

/// Bytes of this VM's linear memory.
pub fn linear_memory_bytes() -> usize {
    core::arch::wasm32::memory_size(0) * 65_536
}
