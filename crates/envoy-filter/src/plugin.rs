//! What every request of one plugin instance reads: its configuration, the
//! current snapshot, the key-lookup state and the metrics. Owned by the root
//! context, shared with request contexts through an `Rc`; a request takes a
//! cheap `Rc` of the snapshot current when it arrives, so a swap never
//! disturbs it.

use super::abi::{self, Level};
use super::key_lookup::KeyLookups;
use super::live::{self, Meta, SharedKeys, TierRef};
use super::metrics::{self, Metrics};
use super::tier_cache::{Cached, TierCache, ABSENT_ENTRIES, FOUND_ENTRIES};
use crate::claims::TokenRead;
use crate::decision_log::DecisionLogger;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use tenantgate_policy::binary::tier::{self, TierError};
use tenantgate_policy::config::{FailPolicy, FilterState, KeyLookup};
use tenantgate_policy::{self as policy, Annotations, ExternalKey, Mode, Snapshot, Sources};

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
    current: RefCell<Option<Rc<Loaded>>>,
    /// When the source last confirmed the current snapshot (remote sources only).
    pub confirmed_ms: Cell<Option<i64>>,
    /// Shared-data keys of the remote source, if any.
    pub remote_keys: Option<SharedKeys>,
    /// A published etag this VM could not compile; not retried until it changes.
    rejected_etag: RefCell<Option<String>>,
    pub lookups: RefCell<KeyLookups<Rc<ExternalKey>>>,
    /// The keys this worker has read from the key tier.
    tier_keys: RefCell<TierCache<Rc<ExternalKey>>>,
    /// The tier generation last logged as unreadable: logged once, not by
    /// every request that meets it.
    broken_tier_logged: Cell<Option<u64>>,
    pub metrics: Metrics,
}

impl Plugin {
    pub fn new(root_id: u32, config: tenantgate_policy::config::PluginConfig) -> Plugin {
        let remote_keys = match &config.snapshot {
            tenantgate_policy::config::SnapshotSource::Remote(remote) => {
                Some(SharedKeys::new(&remote.cluster, &remote.path))
            }
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
            current: RefCell::new(None),
            confirmed_ms: Cell::new(None),
            remote_keys,
            rejected_etag: RefCell::new(None),
            lookups: RefCell::new(KeyLookups::new(limits)),
            tier_keys: RefCell::new(TierCache::new(FOUND_ENTRIES, ABSENT_ENTRIES)),
            broken_tier_logged: Cell::new(None),
            metrics: Metrics::define(),
        }
    }

    pub fn current(&self) -> Option<Rc<Loaded>> {
        self.current.try_borrow().ok().and_then(|c| c.clone())
    }

    /// The snapshot to decide with: absent, or older than `max_staleness_ms`,
    /// is none. A VM with none yet adopts the one another VM published (a new
    /// worker must not answer 503 while another holds a good snapshot).
    pub fn usable(&self, now_ms: i64) -> Option<Rc<Loaded>> {
        if self.current().is_none() {
            self.pick_up();
        }
        let current = self.current()?;
        match (self.fail_policy.max_staleness_ms, self.confirmed_ms.get()) {
            (Some(max), Some(confirmed))
                if now_ms.saturating_sub(confirmed) > i64::try_from(max).unwrap_or(i64::MAX) =>
            {
                None
            }
            _ => Some(current),
        }
    }

    /// Makes `loaded` current; `compile_ms` is how long loading took.
    pub fn install(&self, loaded: Loaded, compile_ms: i64) {
        let Ok(mut current) = self.current.try_borrow_mut() else {
            return;
        };
        if let Some(old) = current.replace(Rc::new(loaded)) {
            metrics::publish_revision_gauge(old.snapshot.revision(), 0);
        }
        if let Some(new) = current.as_ref() {
            metrics::publish_snapshot_gauges(&new.snapshot);
            let stats = new.snapshot.stats();
            abi::log(
                Level::Info,
                &format!(
                    "tenantgate: snapshot `{}` loaded ({} organizations, {} api keys, {} of them in this VM, {} routes) in {compile_ms} ms; linear memory {} bytes",
                    new.snapshot.revision(),
                    stats.organizations,
                    stats.api_keys,
                    new.snapshot.keys_held(),
                    stats.routes,
                    linear_memory_bytes(),
                ),
            );
        }
        self.metrics.bump(self.metrics.swaps);
    }

    /// Adopts the snapshot another VM published, if it differs from ours.
    pub fn pick_up(&self) {
        self.adopt_published(false);
    }

    /// Adopts the published snapshot even if its etag is ours: the key tier
    /// ours reads was replaced (the same etag published again by another
    /// fetcher, with a new tier).
    pub fn pick_up_new_tier(&self) {
        self.adopt_published(true);
    }

    fn adopt_published(&self, new_tier_only: bool) {
        let Some(keys) = &self.remote_keys else {
            return;
        };
        let Ok(Some((meta_bytes, _))) = abi::get_shared_data(&keys.meta) else {
            return;
        };
        let Some(meta) = Meta::decode(&meta_bytes) else {
            return;
        };
        self.confirmed_ms.set(Some(meta.confirmed_ms));
        let current = self.current();
        let current_etag = current.as_ref().map(|l| l.etag.as_str());
        let rejected = self.rejected_etag.try_borrow().ok().and_then(|r| r.clone());
        let known = current_etag == Some(&meta.etag) && !new_tier_only;
        if known || rejected.as_deref() == Some(&meta.etag) {
            return;
        }
        let Ok(Some((packed, _))) = abi::get_shared_data(&keys.snapshot) else {
            return;
        };
        let Some(published) = live::unpack_snapshot(&packed) else {
            return;
        };
        let same = current.as_ref().is_some_and(|l| {
            l.etag == published.etag && (!new_tier_only || l.tier == published.tier)
        });
        if !same {
            self.load_published(&published, meta.sequence);
        }
    }

    fn load_published(&self, published: &live::Published<'_>, sequence: Option<u64>) {
        let etag = published.etag;
        // Published by a VM of this process, which verified it: not re-verified.
        match timed_load(|| policy::load_snapshot_bytes(published.body)) {
            Ok((snapshot, ms)) => {
                let loaded = Loaded {
                    snapshot,
                    etag: etag.to_string(),
                    sequence,
                    tier: published.tier,
                };
                self.install(loaded, ms);
            }
            Err(problem) => {
                self.metrics.bump(self.metrics.fetch_invalid);
                log_refused(&format!("published snapshot {etag} refused here"), &problem);
                if let Ok(mut slot) = self.rejected_etag.try_borrow_mut() {
                    *slot = Some(etag.to_string());
                }
            }
        }
    }

    /// The key with `digest` in the key tier of `loaded`: from this worker's
    /// cache, or on its first sight from its bucket in the shared data.
    pub fn tier_key(&self, loaded: &Loaded, digest: &[u8; 32]) -> TierLookup {
        let (Some(tier), Some(keys)) = (loaded.tier, &self.remote_keys) else {
            return TierLookup::Absent;
        };
        let Ok(mut cache) = self.tier_keys.try_borrow_mut() else {
            return TierLookup::Broken;
        };
        match cache.get(tier.generation, digest) {
            Cached::Found(key) => return TierLookup::Found(key),
            Cached::Absent => return TierLookup::Absent,
            Cached::Unseen => {}
        }
        let name = keys.bucket(tier.slot, tier::bucket_of(digest, tier.buckets));
        let bucket = match abi::get_shared_data(&name) {
            Ok(Some((bytes, _))) if !bytes.is_empty() => bytes,
            // Emptied or never there: the slot now holds a smaller tier.
            Ok(_) => return TierLookup::Stale,
            Err(_) => return TierLookup::Broken,
        };
        match tier::find_key(&bucket, tier.generation, digest, &loaded.snapshot) {
            Ok(found) => {
                let found = found.map(Rc::new);
                cache.put(tier.generation, *digest, found.clone());
                found.map_or(TierLookup::Absent, TierLookup::Found)
            }
            Err(TierError::OtherGeneration { .. }) => TierLookup::Stale,
            Err(e) => {
                if self.broken_tier_logged.replace(Some(tier.generation)) != Some(tier.generation) {
                    abi::log(Level::Error, &format!("tenantgate: key tier: {e}"));
                }
                TierLookup::Broken
            }
        }
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
fn linear_memory_bytes() -> usize {
    core::arch::wasm32::memory_size(0) * 65_536
}
