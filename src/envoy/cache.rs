//! A small least-recently-used map for the per-worker key-lookup cache.
//!
//! A hash map plus a use counter: `get` is one lookup; `put` of a new key at
//! capacity scans for the least recently used entry. That scan only happens on
//! a cache miss, which waits on a network lookup anyway, and it keeps the wasm
//! module about 17 KB smaller than the `lru` crate did.

use rustc_hash::FxHashMap;

pub struct Lru<V> {
    entries: FxHashMap<[u8; 32], (V, u64)>,
    capacity: usize,
    clock: u64,
}

impl<V> Lru<V> {
    pub fn new(capacity: usize) -> Lru<V> {
        Lru {
            entries: FxHashMap::default(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    pub fn get(&mut self, key: &[u8; 32]) -> Option<&V> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(value, used)| {
            *used = clock;
            &*value
        })
    }

    pub fn put(&mut self, key: [u8; 32], value: V) {
        self.clock += 1;
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (value, self.clock));
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn k(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn evicts_the_least_recently_used() {
        let mut lru = Lru::new(2);
        lru.put(k(1), "one");
        lru.put(k(2), "two");
        assert_eq!(lru.get(&k(1)), Some(&"one"));
        lru.put(k(3), "three");
        assert_eq!(lru.get(&k(2)), None, "2 was used least recently");
        assert_eq!(lru.get(&k(1)), Some(&"one"));
        assert_eq!(lru.get(&k(3)), Some(&"three"));
        lru.put(k(3), "three again");
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.get(&k(3)), Some(&"three again"));
        lru.clear();
        assert!(lru.is_empty());
    }
}
