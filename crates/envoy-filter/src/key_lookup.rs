//! The on-demand key lookup of one worker, as a pure state machine (the host
//! calls are in `root.rs` and `stream.rs`): which keys are cached, which are
//! being looked up and who waits for them, and how many lookups may start.
//!
//! What an attacker cannot do with it:
//! - make one unknown key cost more than one lookup at a time: requests for a
//!   digest being looked up wait for that lookup ([`Ask::Join`]);
//! - make a flood of random keys cost more than `max_in_flight` concurrent
//!   lookups, or more than `max_per_second` a second ([`Ask::Throttled`],
//!   answered 503 and never let through by `fail_open`: an attacker could
//!   otherwise flood to get through), so snapshot fetches on the same
//!   cluster are never starved;
//! - push real keys out of the cache with random ones: "no such key" entries
//!   live in their own LRU;
//! - turn a bad answer into a pass: an answer that is malformed, for another
//!   digest, for an app the snapshot does not know or with an unknown status
//!   is an invalid key ([`Answer::Invalid`], 401), never a lookup failure
//!   (which `fail_open` may let through).

use lru::LruCache;
use rustc_hash::FxHashMap;
use std::num::NonZeroUsize;
use tenantgate_policy::{ExternalKey, Snapshot};

/// Largest `key_lookup.cache_size` accepted: entries per worker, for each of
/// the found and the not-found caches.
pub const MAX_CACHE_SIZE: u32 = 100_000;
/// An answer body larger than this is not read (an entry is a few hundred bytes).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The limits of one worker's lookups (from `key_lookup` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub cache_size: u32,
    pub ttl_ms: u32,
    pub negative_ttl_ms: u32,
    pub max_in_flight: u32,
    pub max_per_second: u32,
}

impl Default for Limits {
    /// No lookups configured: the smallest state.
    fn default() -> Limits {
        Limits {
            cache_size: 1,
            ttl_ms: 0,
            negative_ttl_ms: 0,
            max_in_flight: 0,
            max_per_second: 1,
        }
    }
}

impl From<&tenantgate_policy::config::KeyLookup> for Limits {
    fn from(config: &tenantgate_policy::config::KeyLookup) -> Limits {
        Limits {
            cache_size: config.cache_size,
            ttl_ms: config.ttl_ms,
            negative_ttl_ms: config.negative_ttl_ms,
            max_in_flight: config.max_in_flight,
            max_per_second: config.max_per_second,
        }
    }
}

/// What the lookup service said about a digest.
#[derive(Debug, Clone)]
pub enum Answer<K> {
    /// An `api_keys` entry, compiled against the current snapshot.
    Found(K),
    /// 404: no such key.
    NotFound,
    /// An answer that cannot be trusted (malformed, another digest, unknown
    /// app or status): the key is invalid.
    Invalid,
    /// No usable answer: timeout, connection failure, a 5xx.
    Failed,
}

/// What a request with an unknown key does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask<K> {
    /// Cached: decide with it.
    Found(K),
    /// Cached: no such key (or an invalid answer).
    Absent,
    /// Being looked up: wait for that answer (the request was added as a waiter).
    Join,
    /// Start a lookup, then call [`KeyLookups::started`].
    Dispatch,
    /// Too many lookups in flight or in the last second: 503.
    Throttled,
}

struct Flight {
    digest: [u8; 32],
    waiters: Vec<u32>,
}

/// A token bucket of `rate` lookups a second, holding at most `rate`.
struct Bucket {
    rate: u32,
    tokens_milli: u64,
    at_ms: i64,
}

impl Bucket {
    fn take(&mut self, now_ms: i64) -> bool {
        let elapsed = u64::try_from(now_ms.saturating_sub(self.at_ms)).unwrap_or(0);
        let full = u64::from(self.rate) * 1000;
        let refill = elapsed.saturating_mul(u64::from(self.rate));
        self.tokens_milli = self.tokens_milli.saturating_add(refill).min(full);
        self.at_ms = self.at_ms.max(now_ms);
        if self.tokens_milli >= 1000 {
            self.tokens_milli -= 1000;
            true
        } else {
            false
        }
    }
}

/// One worker's lookups. `K` is what a found key is kept as.
pub struct KeyLookups<K> {
    limits: Limits,
    /// The snapshot (etag) the cached keys were compiled against.
    generation: String,
    found: LruCache<[u8; 32], (K, i64)>,
    absent: LruCache<[u8; 32], i64>,
    flights: FxHashMap<u32, Flight>,
    bucket: Bucket,
}

impl<K: Clone> KeyLookups<K> {
    pub fn new(limits: Limits) -> KeyLookups<K> {
        let size = NonZeroUsize::new(limits.cache_size.clamp(1, MAX_CACHE_SIZE) as usize)
            .unwrap_or(NonZeroUsize::MIN);
        KeyLookups {
            limits,
            generation: String::new(),
            found: LruCache::new(size),
            absent: LruCache::new(size),
            flights: FxHashMap::default(),
            bucket: Bucket {
                rate: limits.max_per_second.max(1),
                tokens_milli: u64::from(limits.max_per_second.max(1)) * 1000,
                at_ms: i64::MIN,
            },
        }
    }

    /// Keys compiled against another snapshot may be wrong now: forget them.
    fn renew(&mut self, etag: &str) {
        if self.generation != etag {
            self.found.clear();
            self.absent.clear();
            self.generation = etag.to_string();
        }
    }

    /// What `waiter` (a request's context id) does about `digest`, with the
    /// snapshot `etag` current at `now_ms`.
    pub fn ask(&mut self, digest: &[u8; 32], etag: &str, now_ms: i64, waiter: u32) -> Ask<K> {
        self.renew(etag);
        if let Some((key, expires)) = self.found.get(digest) {
            if *expires > now_ms {
                return Ask::Found(key.clone());
            }
        }
        if self
            .absent
            .get(digest)
            .is_some_and(|expires| *expires > now_ms)
        {
            return Ask::Absent;
        }
        if let Some(flight) = self.flights.values_mut().find(|f| f.digest == *digest) {
            flight.waiters.push(waiter);
            return Ask::Join;
        }
        let room = self.flights.len() < self.limits.max_in_flight as usize;
        if !room || !self.bucket.take(now_ms) {
            return Ask::Throttled;
        }
        Ask::Dispatch
    }

    /// A lookup of `digest` started with callout `token` for `waiter`.
    pub fn started(&mut self, digest: [u8; 32], token: u32, waiter: u32) {
        self.flights.insert(
            token,
            Flight {
                digest,
                waiters: vec![waiter],
            },
        );
    }

    /// The answer to callout `token` arrived: cache it, and return the digest
    /// and the requests waiting for it (`None`: not one of our callouts).
    pub fn finished(
        &mut self,
        token: u32,
        answer: &Answer<K>,
        etag: &str,
        now_ms: i64,
    ) -> Option<([u8; 32], Vec<u32>)> {
        let flight = self.flights.remove(&token)?;
        self.renew(etag);
        let ttl = |ms: u32| now_ms.saturating_add(i64::from(ms));
        match answer {
            Answer::Found(key) => {
                self.absent.pop(&flight.digest);
                self.found
                    .put(flight.digest, (key.clone(), ttl(self.limits.ttl_ms)));
            }
            Answer::NotFound | Answer::Invalid => {
                self.absent
                    .put(flight.digest, ttl(self.limits.negative_ttl_ms));
            }
            Answer::Failed => {}
        }
        Some((flight.digest, flight.waiters))
    }

    /// The digest callout `token` looks up (`None`: not one of ours).
    pub fn digest_of(&self, token: u32) -> Option<[u8; 32]> {
        self.flights.get(&token).map(|f| f.digest)
    }

    /// A request went away (its stream ended) while it waited.
    pub fn forget(&mut self, waiter: u32) {
        for flight in self.flights.values_mut() {
            flight.waiters.retain(|&w| w != waiter);
        }
    }

    /// Lookups in flight.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }
}

/// Classifies a lookup answer for `digest`: the `:status` and, for a 200,
/// the body (read only when it is at most [`MAX_ANSWER_BYTES`]).
pub fn classify(
    status: Option<&[u8]>,
    body: Option<&[u8]>,
    snapshot: &Snapshot,
    digest: &[u8; 32],
) -> Answer<ExternalKey> {
    match status {
        Some(b"404") => Answer::NotFound,
        Some(b"200") => {
            let Some(text) = body.and_then(|b| std::str::from_utf8(b).ok()) else {
                return Answer::Invalid;
            };
            match tenantgate_policy::compile_external_key(snapshot, text) {
                Ok(key) if key.digest() == *digest => Answer::Found(key),
                _ => Answer::Invalid,
            }
        }
        _ => Answer::Failed,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const LIMITS: Limits = Limits {
        cache_size: 2,
        ttl_ms: 1000,
        negative_ttl_ms: 500,
        max_in_flight: 2,
        max_per_second: 3,
    };

    fn d(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn one_lookup_per_digest_and_waiters_share_it() {
        let mut l = KeyLookups::<&str>::new(LIMITS);
        assert_eq!(l.ask(&d(1), "e", 0, 10), Ask::Dispatch);
        l.started(d(1), 7, 10);
        assert_eq!(l.ask(&d(1), "e", 1, 11), Ask::Join);
        assert_eq!(l.ask(&d(1), "e", 2, 12), Ask::Join);
        l.forget(11);
        let (digest, waiters) = l.finished(7, &Answer::Found("k"), "e", 3).unwrap();
        assert_eq!((digest, waiters), (d(1), vec![10, 12]));
        assert_eq!(l.ask(&d(1), "e", 4, 13), Ask::Found("k"));
        assert_eq!(l.ask(&d(1), "e", 1003, 13), Ask::Dispatch, "expired");
        assert!(l.finished(99, &Answer::NotFound, "e", 5).is_none());
    }

    #[test]
    fn a_flood_of_random_keys_is_throttled() {
        let mut l = KeyLookups::<&str>::new(LIMITS);
        let mut dispatched = 0;
        for n in 0..100u8 {
            match l.ask(&d(n), "e", 0, u32::from(n)) {
                Ask::Dispatch => {
                    l.started(d(n), u32::from(n), u32::from(n));
                    dispatched += 1;
                }
                Ask::Throttled => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(dispatched, 2, "max_in_flight");
        l.finished(0, &Answer::NotFound, "e", 10);
        l.finished(1, &Answer::NotFound, "e", 10);
        assert_eq!(l.ask(&d(50), "e", 10, 50), Ask::Dispatch);
        l.started(d(50), 50, 50);
        l.finished(50, &Answer::NotFound, "e", 10);
        assert_eq!(l.ask(&d(51), "e", 10, 51), Ask::Throttled, "3 a second");
        assert_eq!(l.ask(&d(51), "e", 400, 51), Ask::Dispatch, "refilled");
    }

    #[test]
    fn absent_keys_never_push_out_found_ones() {
        let mut l = KeyLookups::<&str>::new(LIMITS);
        for (token, n) in [(1u32, 1u8), (2, 2)] {
            assert_eq!(l.ask(&d(n), "e", 0, 0), Ask::Dispatch);
            l.started(d(n), token, 0);
            l.finished(token, &Answer::Found("k"), "e", 0);
        }
        for n in 10..60u8 {
            let now = i64::from(n) * 1000;
            if l.ask(&d(n), "e", now, 0) == Ask::Dispatch {
                l.started(d(n), u32::from(n), 0);
                l.finished(u32::from(n), &Answer::Invalid, "e", now);
            }
        }
        assert_eq!(l.found.len(), 2);
        assert!(l.found.contains(&d(1)) && l.found.contains(&d(2)));
        assert_eq!(l.absent.len(), 2, "bounded by cache_size");
    }

    #[test]
    fn a_new_snapshot_forgets_cached_keys_and_failures_are_not_cached() {
        let mut l = KeyLookups::<&str>::new(LIMITS);
        assert_eq!(l.ask(&d(1), "e1", 0, 0), Ask::Dispatch);
        l.started(d(1), 1, 0);
        l.finished(1, &Answer::Found("k"), "e1", 0);
        assert_eq!(l.ask(&d(1), "e2", 1, 0), Ask::Dispatch);
        l.started(d(1), 2, 0);
        l.finished(2, &Answer::Failed, "e2", 1);
        assert_eq!(l.ask(&d(1), "e2", 2, 0), Ask::Dispatch);
        assert_eq!(l.in_flight(), 0);
    }

    #[test]
    fn answers_are_classified_strictly() {
        let snapshot =
            tenantgate_policy::load_snapshot(include_str!("../../../policies/demo.json")).unwrap();
        let digest = tenantgate_policy::key_digest(b"new-key");
        let hex = tenantgate_policy::hash_key_hex(&digest);
        let entry = |app: &str, status: &str, sha: &str| {
            format!(r#"{{"id": "k", "app": "{app}", "sha256": "{sha}", "status": "{status}"}}"#)
        };
        let ok = entry("acme-storefront", "active", &hex);
        let ask = |status: &[u8], body: &str| {
            classify(Some(status), Some(body.as_bytes()), &snapshot, &digest)
        };
        assert!(matches!(ask(b"200", &ok), Answer::Found(_)));
        assert!(matches!(ask(b"404", ""), Answer::NotFound));
        for invalid in [
            entry("deleted-app", "active", &hex),
            entry("acme-storefront", "disabled", &hex),
            entry("acme-storefront", "active", &"0".repeat(64)),
            "not json".to_string(),
            format!(
                r#"{{"id": "k", "app": "acme-storefront", "sha256": "{hex}", "status": "active", "extra": 1}}"#
            ),
        ] {
            assert!(
                matches!(ask(b"200", &invalid), Answer::Invalid),
                "{invalid}"
            );
        }
        assert!(matches!(
            classify(Some(b"200"), None, &snapshot, &digest),
            Answer::Invalid
        ));
        assert!(matches!(ask(b"503", ""), Answer::Failed));
        assert!(matches!(
            classify(None, None, &snapshot, &digest),
            Answer::Failed
        ));
    }
}
