//! What one worker learned from the key tier (the snapshot's keys in Envoy's
//! shared data, once per process): the keys it has seen, so that only the
//! first sight of a key copies its bucket out of the shared store.
//!
//! Entries belong to one generation of the tier: a new one (a new snapshot)
//! empties the cache, so no key of a removed or changed entry outlives the
//! swap. Keys found and keys absent live in separate LRUs: a flood of random
//! keys cannot push real ones out.

use lru::LruCache;
use std::num::NonZeroUsize;

/// Keys found, per worker: an entry is about a hundred bytes.
pub const FOUND_ENTRIES: usize = 16_384;
/// Keys absent (unknown, or random ones an attacker sends), per worker.
pub const ABSENT_ENTRIES: usize = 4_096;

/// What the cache knows of a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached<K> {
    Found(K),
    Absent,
    /// Not seen in this generation: read its bucket.
    Unseen,
}

pub struct TierCache<K> {
    generation: Option<u64>,
    found: LruCache<[u8; 32], K>,
    absent: LruCache<[u8; 32], ()>,
}

impl<K: Clone> TierCache<K> {
    pub fn new(found: usize, absent: usize) -> TierCache<K> {
        let size = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        TierCache {
            generation: None,
            found: LruCache::new(size(found)),
            absent: LruCache::new(size(absent)),
        }
    }

    /// What is known of `digest` in `generation`.
    pub fn get(&mut self, generation: u64, digest: &[u8; 32]) -> Cached<K> {
        self.enter(generation);
        if let Some(key) = self.found.get(digest) {
            return Cached::Found(key.clone());
        }
        if self.absent.get(digest).is_some() {
            return Cached::Absent;
        }
        Cached::Unseen
    }

    /// Records what the bucket of `generation` said of `digest`.
    pub fn put(&mut self, generation: u64, digest: [u8; 32], key: Option<K>) {
        self.enter(generation);
        match key {
            Some(key) => {
                self.found.put(digest, key);
            }
            None => {
                self.absent.put(digest, ());
            }
        }
    }

    /// Entries of another generation are dropped.
    fn enter(&mut self, generation: u64) {
        if self.generation != Some(generation) {
            self.found.clear();
            self.absent.clear();
            self.generation = Some(generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_new_generation_forgets_every_key() {
        let mut cache = TierCache::new(4, 4);
        cache.put(1, [1; 32], Some("k1"));
        cache.put(1, [2; 32], None);
        assert_eq!(cache.get(1, &[1; 32]), Cached::Found("k1"));
        assert_eq!(cache.get(1, &[2; 32]), Cached::Absent);
        // A revoked key must not be served from the old generation's entry.
        assert_eq!(cache.get(2, &[1; 32]), Cached::Unseen);
        assert_eq!(cache.get(2, &[2; 32]), Cached::Unseen);
        assert_eq!(cache.get(1, &[1; 32]), Cached::Unseen);
    }

    #[test]
    fn random_keys_do_not_evict_real_ones() {
        let mut cache = TierCache::new(2, 2);
        cache.put(7, [1; 32], Some(1));
        cache.put(7, [2; 32], Some(2));
        for n in 10..200u8 {
            cache.put(7, [n; 32], None);
        }
        assert_eq!(cache.get(7, &[1; 32]), Cached::Found(1));
        assert_eq!(cache.get(7, &[2; 32]), Cached::Found(2));
        assert_eq!(cache.get(7, &[10; 32]), Cached::Unseen, "evicted");
        assert_eq!(cache.get(7, &[199; 32]), Cached::Absent);
    }
}
