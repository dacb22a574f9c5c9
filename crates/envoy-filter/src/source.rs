//! One snapshot source of a plugin: the live one (`snapshot`), or the shadow
//! revision (`snapshot.shadow`, issue 14) decided beside it and never
//! enforced. Each holds its current snapshot, the shared-data keys its
//! fetcher publishes under, and this worker's cache of its key tier.

use super::abi::{self, Level};
use super::live::{self, Meta, SharedKeys};
use super::metrics::{self, FetchCounters};
use super::plugin::{linear_memory_bytes, log_refused, timed_load, Loaded, TierLookup};
use super::tier_cache::{Cached, TierCache, ABSENT_ENTRIES, FOUND_ENTRIES};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use tenantgate_policy::binary::tier::{self, TierError};
use tenantgate_policy::config::RemoteSource;
use tenantgate_policy::{self as policy, ExternalKey};

/// Which source: its metrics, shared-data keys and log lines differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Live,
    Shadow,
}

impl SourceKind {
    fn label(self) -> &'static str {
        match self {
            SourceKind::Live => "",
            SourceKind::Shadow => "shadow ",
        }
    }
}

pub struct Source {
    pub kind: SourceKind,
    current: RefCell<Option<Rc<Loaded>>>,
    /// When the source last confirmed the current snapshot (remote sources only).
    pub confirmed_ms: Cell<Option<i64>>,
    /// Shared-data keys of the remote source, if any.
    pub remote_keys: Option<SharedKeys>,
    /// A published etag this VM could not compile; not retried until it changes.
    rejected_etag: RefCell<Option<String>>,
    /// The keys this worker has read from the key tier.
    tier_keys: RefCell<TierCache<Rc<ExternalKey>>>,
    /// The tier generation last logged as unreadable: logged once, not by
    /// every request that meets it.
    broken_tier_logged: Cell<Option<u64>>,
    /// Its fetch and swap counters.
    pub counters: FetchCounters,
}

impl Source {
    pub fn new(kind: SourceKind, remote: Option<&RemoteSource>) -> Source {
        let remote_keys = remote.map(|r| match kind {
            SourceKind::Live => SharedKeys::new(&r.cluster, &r.path),
            SourceKind::Shadow => SharedKeys::shadow(&r.cluster, &r.path),
        });
        Source {
            kind,
            current: RefCell::new(None),
            confirmed_ms: Cell::new(None),
            remote_keys,
            rejected_etag: RefCell::new(None),
            tier_keys: RefCell::new(TierCache::new(FOUND_ENTRIES, ABSENT_ENTRIES)),
            broken_tier_logged: Cell::new(None),
            counters: FetchCounters::define(match kind {
                SourceKind::Live => "tenantgate",
                SourceKind::Shadow => "tenantgate.shadow",
            }),
        }
    }

    pub fn current(&self) -> Option<Rc<Loaded>> {
        self.current.try_borrow().ok().and_then(|c| c.clone())
    }

    /// Makes `loaded` current; `compile_ms` is how long loading took.
    pub fn install(&self, loaded: Loaded, compile_ms: i64) {
        let Ok(mut current) = self.current.try_borrow_mut() else {
            return;
        };
        let old = current.replace(Rc::new(loaded));
        if let (Some(old), SourceKind::Live) = (old, self.kind) {
            metrics::publish_revision_gauge(old.snapshot.revision(), 0);
        }
        if let Some(new) = current.as_ref() {
            if self.kind == SourceKind::Live {
                metrics::publish_snapshot_gauges(&new.snapshot);
            }
            let stats = new.snapshot.stats();
            abi::log(
                Level::Info,
                &format!(
                    "tenantgate: {}snapshot `{}` loaded ({} organizations, {} api keys, {} of them in this VM, {} routes) in {compile_ms} ms; linear memory {} bytes",
                    self.kind.label(),
                    new.snapshot.revision(),
                    stats.organizations,
                    stats.api_keys,
                    new.snapshot.keys_held(),
                    stats.routes,
                    linear_memory_bytes(),
                ),
            );
        }
        self.counters.bump(self.counters.swaps);
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
                self.counters.bump(self.counters.fetch_invalid);
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
        let found = read_bucket(&name).and_then(|bucket| {
            let apps_in_tier = tier.apps > 0;
            let snapshot = &loaded.snapshot;
            let found = tier::find_key(&bucket, tier.generation, digest, snapshot, apps_in_tier);
            let Some(key) = found? else {
                return Ok(None);
            };
            let app_buckets = if apps_in_tier {
                let i = key.app_bucket();
                let apps = read_bucket(&keys.app_bucket(tier.slot, i))?;
                Some((apps, read_bucket(&keys.grant_bucket(tier.slot, i))?))
            } else {
                None
            };
            let buckets = app_buckets.as_ref().map(|(a, g)| (&a[..], &g[..]));
            Ok(Some(key.resolve(buckets, tier.generation, snapshot)?))
        });
        match found {
            Ok(found) => {
                let found = found.map(Rc::new);
                cache.put(tier.generation, *digest, found.clone());
                found.map_or(TierLookup::Absent, TierLookup::Found)
            }
            Err(BucketError::Tier(TierError::OtherGeneration { .. }) | BucketError::Emptied) => {
                TierLookup::Stale
            }
            Err(BucketError::Host) => TierLookup::Broken,
            Err(BucketError::Tier(e)) => {
                if self.broken_tier_logged.replace(Some(tier.generation)) != Some(tier.generation) {
                    abi::log(Level::Error, &format!("tenantgate: key tier: {e}"));
                }
                TierLookup::Broken
            }
        }
    }
}

/// Why a bucket of the key tier could not be read.
enum BucketError {
    /// Emptied or never there: the slot now holds a smaller tier (a newer
    /// snapshot is published).
    Emptied,
    /// The host refused the read.
    Host,
    /// Read, but of another generation or corrupt.
    Tier(TierError),
}

impl From<TierError> for BucketError {
    fn from(e: TierError) -> BucketError {
        BucketError::Tier(e)
    }
}

/// A bucket of the key tier, copied out of the shared data.
fn read_bucket(name: &str) -> Result<Vec<u8>, BucketError> {
    match abi::get_shared_data(name) {
        Ok(Some((bytes, _))) if !bytes.is_empty() => Ok(bytes),
        Ok(_) => Err(BucketError::Emptied),
        Err(_) => Err(BucketError::Host),
    }
}
