//! The snapshot's indexes, built from its records: keys by digest and routes
//! by path prefix. They stay cheap when the snapshot is far larger than the
//! CPU cache: at a million keys each pointer followed on the request path is a
//! likely cache miss, so the key path follows as few as possible.

use crate::records::{AppEntry, Idx, KeyEntry, RouteEntry, DISTINCT_DIGEST_BYTES};
use rustc_hash::FxHashMap;

/// API keys by SHA-256 digest.
///
/// The digest is already uniformly distributed, so its first bytes choose the
/// slot (no hashing). Open addressing with linear probing over 8-byte slots,
/// each a 32-bit tag (more digest bits) and the key's index, kept at most half
/// full: a lookup reads one slot (rarely two), then the key entry, which holds
/// the whole digest to confirm. A general hash map reads its control bytes and
/// then a bucket: one cache miss more per request at scale.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    slots: Box<[u64]>,
}

const EMPTY: u64 = u64::MAX;

fn home(digest: &[u8; 32]) -> usize {
    let mut word = [0u8; 8];
    word.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(word) as usize
}

/// Whether two keys' digests agree on the bytes that must tell keys apart.
fn same_distinct_bytes(a: &KeyEntry, b: &KeyEntry) -> bool {
    a.digest.get(..DISTINCT_DIGEST_BYTES) == b.digest.get(..DISTINCT_DIGEST_BYTES)
}

fn tag(digest: &[u8; 32]) -> u64 {
    let mut word = [0u8; 4];
    word.copy_from_slice(digest.get(8..12).unwrap_or(&[0; 4]));
    u64::from(u32::from_le_bytes(word))
}

impl KeyIndex {
    /// Indexes `keys` by their digests; `Err(i)` if key `i` repeats the
    /// leading [`DISTINCT_DIGEST_BYTES`] of an earlier digest (the slot and
    /// tag come from those bytes, so such keys meet in one probe sequence).
    pub(crate) fn build(keys: &[KeyEntry]) -> Result<KeyIndex, usize> {
        let capacity = keys.len().saturating_mul(2).next_power_of_two().max(8);
        let mut slots = vec![EMPTY; capacity].into_boxed_slice();
        let mask = capacity - 1;
        for (i, key) in keys.iter().enumerate() {
            let wanted = tag(&key.digest);
            let mut at = home(&key.digest) & mask;
            loop {
                let Some(slot) = slots.get_mut(at) else {
                    return Err(i);
                };
                if *slot == EMPTY {
                    *slot = (wanted << 32) | i as u64;
                    break;
                }
                let other = (*slot & u64::from(u32::MAX)) as usize;
                if *slot >> 32 == wanted
                    && keys.get(other).is_some_and(|k| same_distinct_bytes(k, key))
                {
                    return Err(i);
                }
                at = (at + 1) & mask;
            }
        }
        Ok(KeyIndex { slots })
    }

    /// The key with `digest`, among the `keys` this index was built over.
    pub(crate) fn find<'k>(&self, keys: &'k [KeyEntry], digest: &[u8; 32]) -> Option<&'k KeyEntry> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let wanted = tag(digest);
        let mut at = home(digest) & mask;
        // Never more probes than slots: the table is at most half full, so an
        // empty slot ends every probe long before.
        for _ in 0..self.slots.len() {
            let slot = *self.slots.get(at)?;
            if slot == EMPTY {
                return None;
            }
            if slot >> 32 == wanted {
                let key = keys.get((slot & u64::from(u32::MAX)) as usize)?;
                if key.digest == *digest {
                    return Some(key);
                }
            }
            at = (at + 1) & mask;
        }
        None
    }
}

/// App ids (principals `app:<id>`) → app index, kept as the app indexes
/// sorted by id: a lookup is a binary search over the apps' own principals,
/// so the ids are not stored a second time (250,000 strings at 1M generated
/// keys, in every worker VM). Not on a key's request path: a key names its app
/// by index; ids are looked up to compile keys (shipped or looked up).
#[derive(Debug, Default)]
pub(crate) struct AppIds {
    sorted: Box<[Idx]>,
}

fn app_id(apps: &[AppEntry], app: Idx) -> Option<&str> {
    apps.get(app as usize)?.principal.strip_prefix("app:")
}

impl AppIds {
    /// Every app with an id; of apps sharing one, the first.
    pub(crate) fn build(apps: &[AppEntry]) -> AppIds {
        let count = Idx::try_from(apps.len()).unwrap_or(Idx::MAX);
        let mut sorted: Vec<Idx> = (0..count).filter(|&a| app_id(apps, a).is_some()).collect();
        sorted.sort_by(|&a, &b| app_id(apps, a).cmp(&app_id(apps, b)).then(a.cmp(&b)));
        sorted.dedup_by(|later, first| app_id(apps, *later) == app_id(apps, *first));
        AppIds {
            sorted: sorted.into_boxed_slice(),
        }
    }

    /// The app `id` among `apps` (those this index was built over).
    pub(crate) fn get(&self, apps: &[AppEntry], id: &str) -> Option<Idx> {
        let at = self
            .sorted
            .binary_search_by(|&a| app_id(apps, a).unwrap_or_default().cmp(id))
            .ok()?;
        self.sorted.get(at).copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.sorted.len()
    }

    /// (id, app) in id order.
    pub(crate) fn entries<'a>(&'a self, apps: &'a [AppEntry]) -> Vec<(&'a str, Idx)> {
        self.sorted
            .iter()
            .filter_map(|&a| Some((app_id(apps, a)?, a)))
            .collect()
    }
}

/// Routes by normalized path prefix, for the walk from the deepest boundary
/// of the path upwards. Slots as in [`KeyIndex`] (a hash of the prefix picks
/// the slot; a tag and an offset fill it), and each distinct prefix's record
/// (the prefix, then its candidate routes, best first) packed in one arena,
/// so a probe that hits reads a slot, one record and then the route: a
/// general map would read its control bytes, a bucket, the key's string and
/// the candidate vector on the way. A probe for a prefix no route has (most
/// of the walk) usually stops at an empty slot.
#[derive(Debug, Default)]
pub(crate) struct RouteIndex {
    slots: Box<[u64]>,
    /// Per prefix: its length (`u32`), its bytes, the candidate count (`u32`)
    /// and the candidates (`u32` each), little-endian.
    records: Vec<u8>,
    /// Length of the longest prefix.
    longest: usize,
}

fn prefix_hash(prefix: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(prefix);
    // Fibonacci mixing: the slot is taken from the high bits.
    hasher.finish().wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

impl RouteIndex {
    /// `groups`: each distinct prefix with its candidates, best first; the
    /// walk starts at `longest` bytes (the longest prefix).
    pub(crate) fn build(groups: &[(Vec<u8>, Vec<Idx>)], longest: usize) -> RouteIndex {
        let capacity = groups.len().saturating_mul(2).next_power_of_two().max(8);
        let shift = 64 - capacity.trailing_zeros();
        let mut slots = vec![EMPTY; capacity].into_boxed_slice();
        // Sized exactly: every decision VM holds one (and a folded one).
        let size = groups.iter().map(|(p, c)| 8 + p.len() + 4 * c.len()).sum();
        let mut records = Vec::with_capacity(size);
        let mask = capacity - 1;
        for (prefix, candidates) in groups {
            let offset = records.len() as u64;
            records.extend_from_slice(&(prefix.len() as u32).to_le_bytes());
            records.extend_from_slice(prefix);
            records.extend_from_slice(&(candidates.len() as u32).to_le_bytes());
            for route in candidates {
                records.extend_from_slice(&route.to_le_bytes());
            }
            let hash = prefix_hash(prefix);
            let mut at = (hash >> shift) as usize & mask;
            while let Some(slot) = slots.get_mut(at) {
                if *slot == EMPTY {
                    *slot = ((hash & u64::from(u32::MAX)) << 32) | offset;
                    break;
                }
                at = (at + 1) & mask;
            }
        }
        RouteIndex {
            slots,
            records,
            longest,
        }
    }

    pub(crate) fn longest_prefix(&self) -> usize {
        self.longest
    }

    /// The candidate routes of `prefix`, best first (none if no route has it).
    pub(crate) fn candidates(&self, prefix: &[u8]) -> impl Iterator<Item = Idx> + '_ {
        let found = self.record(prefix);
        let (start, count) = found.unwrap_or((0, 0));
        (0..count).filter_map(move |i| read_u32(&self.records, start + i * 4))
    }

    /// Where the candidates of `prefix` start in `records`, and how many.
    fn record(&self, prefix: &[u8]) -> Option<(usize, usize)> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let shift = 64 - self.slots.len().trailing_zeros();
        let hash = prefix_hash(prefix);
        let wanted = hash & u64::from(u32::MAX);
        let mut at = (hash >> shift) as usize & mask;
        for _ in 0..self.slots.len() {
            let slot = *self.slots.get(at)?;
            if slot == EMPTY {
                return None;
            }
            if slot >> 32 == wanted {
                let offset = (slot & u64::from(u32::MAX)) as usize;
                let len = read_u32(&self.records, offset)? as usize;
                let text = self.records.get(offset + 4..offset + 4 + len)?;
                if text == prefix {
                    let count = read_u32(&self.records, offset + 4 + len)? as usize;
                    return Some((offset + 8 + len, count));
                }
            }
            at = (at + 1) & mask;
        }
        None
    }
}

/// Each distinct route prefix (lower-cased with `fold`) with its candidate
/// routes, best first: host and method filters before catch-alls, then
/// document order.
pub(crate) fn route_groups(routes: &[RouteEntry], fold: bool) -> Vec<(Vec<u8>, Vec<Idx>)> {
    let mut table: FxHashMap<Vec<u8>, Vec<Idx>> = FxHashMap::default();
    for (i, route) in routes.iter().enumerate() {
        let mut prefix = route.prefix.to_vec();
        if fold {
            prefix.make_ascii_lowercase();
        }
        table.entry(prefix).or_default().push(i as Idx);
    }
    let mut groups: Vec<(Vec<u8>, Vec<Idx>)> = table.into_iter().collect();
    for (_, candidates) in &mut groups {
        candidates.sort_by_key(|&i| {
            let route = routes.get(i as usize);
            let hosts = route.is_some_and(|r| !r.hosts.is_empty());
            let methods = route.is_some_and(|r| !r.methods.is_empty());
            (!hosts, !methods, i)
        });
    }
    groups
}

fn route_index(routes: &[RouteEntry], fold: bool) -> RouteIndex {
    let groups = route_groups(routes, fold);
    let longest = groups.iter().map(|(p, _)| p.len()).max().unwrap_or(1);
    RouteIndex::build(&groups, longest)
}

/// The route index, and the case-folded one when it differs.
pub(crate) fn route_tables(routes: &[RouteEntry]) -> (RouteIndex, Option<RouteIndex>) {
    let has_upper = routes
        .iter()
        .any(|r| r.prefix.iter().any(u8::is_ascii_uppercase));
    (
        route_index(routes, false),
        has_upper.then(|| route_index(routes, true)),
    )
}

/// The prefixes the route walk probes for the canonical `path`, deepest
/// first: from the deepest segment boundary a route prefix can reach
/// (`longest` bytes), so a huge path costs no more than a short one, up to
/// `/`. Bytes, not characters: a cut inside a multi-byte character is as
/// good as any other (no prefix ends there).
pub(crate) fn route_walk(path: &[u8], longest: usize) -> impl Iterator<Item = &[u8]> {
    let start = match path.get(..=longest) {
        Some(head) if path.len() > longest => match head.iter().rposition(|&b| b == b'/') {
            Some(0) | None => &b"/"[..],
            Some(cut) => head.get(..cut).unwrap_or(b"/"),
        },
        _ => path,
    };
    let mut next = Some(start);
    std::iter::from_fn(move || {
        let prefix = crate::path::trim_trailing_slashes(next?);
        next = (prefix != b"/").then(|| match prefix.iter().rposition(|&b| b == b'/') {
            Some(0) | None => &b"/"[..],
            Some(cut) => prefix.get(..cut).unwrap_or(b"/"),
        });
        Some(prefix)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::document::KeyStatus;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn the_route_walk_starts_within_the_longest_prefix_for_any_bytes() {
        let path = format!("/{}", "\u{e9}\u{e9}/".repeat(1000));
        let walked: Vec<&[u8]> = route_walk(path.as_bytes(), 3).collect();
        assert_eq!(walked, vec![&b"/"[..]]);
        let walked: Vec<&[u8]> = route_walk(b"/ab/cd/ef", 6).collect();
        assert_eq!(walked, vec![&b"/ab/cd"[..], b"/ab", b"/"]);
        let walked: Vec<&[u8]> = route_walk(b"/ab//", 10).collect();
        assert_eq!(walked, vec![&b"/ab"[..], b"/"]);
        for longest in 0..40 {
            let first = route_walk(path.as_bytes(), longest).next().unwrap();
            assert!(first.len() <= longest.max(1), "{longest}");
        }
    }

    fn key(digest: [u8; 32]) -> KeyEntry {
        KeyEntry {
            digest,
            app: 0,
            status: KeyStatus::Active,
            expires_at: None,
            read_only: false,
            envs: None,
        }
    }

    #[test]
    fn finds_every_key_and_nothing_else_even_when_slots_collide() {
        // Digests that share their slot bits and tags: only later bytes tell them apart.
        let keys: Vec<KeyEntry> = (0..200u8)
            .map(|i| {
                let mut d = [0u8; 32];
                d[DISTINCT_DIGEST_BYTES - 1] = i;
                d[31] = i;
                d[0] = i % 3;
                key(d)
            })
            .collect();
        let index = KeyIndex::build(&keys).unwrap();
        for k in &keys {
            assert_eq!(
                index.find(&keys, &k.digest).map(|f| f.digest),
                Some(k.digest)
            );
        }
        let mut absent = [0u8; 32];
        absent[31] = 250;
        assert!(index.find(&keys, &absent).is_none());
        assert!(KeyIndex::default().find(&keys, &absent).is_none());
        let mut twice = keys;
        twice.push(key(twice[5].digest));
        assert_eq!(KeyIndex::build(&twice).err(), Some(200));
        // Two keys the key tier could not tell apart: their digests differ
        // only past the leading DISTINCT_DIGEST_BYTES.
        let mut close = twice[7].digest;
        close[DISTINCT_DIGEST_BYTES] ^= 1;
        twice[200] = key(close);
        assert_eq!(KeyIndex::build(&twice).err(), Some(200));
        close[DISTINCT_DIGEST_BYTES - 1] ^= 0x80;
        twice[200] = key(close);
        assert!(KeyIndex::build(&twice).is_ok());
    }

    #[test]
    fn route_prefixes_find_their_candidates_in_order() {
        let groups: Vec<(Vec<u8>, Vec<Idx>)> = (0..300u32)
            .map(|i| {
                (
                    format!("/t/org-{i}/catalog").into_bytes(),
                    vec![i, i + 1000],
                )
            })
            .chain([(b"/".to_vec(), vec![7])])
            .collect();
        let index = RouteIndex::build(&groups, 18);
        for (prefix, candidates) in &groups {
            assert_eq!(&index.candidates(prefix).collect::<Vec<_>>(), candidates);
        }
        assert_eq!(index.candidates(b"/t/org-1").count(), 0);
        assert_eq!(index.candidates(b"/t/org-1/catalo").count(), 0);
        assert_eq!(index.longest_prefix(), "/t/org-299/catalog".len());
        assert_eq!(RouteIndex::default().candidates(b"/").count(), 0);
        // Held by every decision VM: no spare capacity.
        assert_eq!(index.records.capacity(), index.records.len());
    }
}
