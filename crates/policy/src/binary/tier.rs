//! The key tier: a snapshot's API keys, and optionally its apps with their
//! grants, cut into buckets, so that they can live once per proxy process
//! (the Envoy filter keeps them in Envoy's shared data) while each decision
//! VM holds the rest of the snapshot only (organizations, routes, products,
//! users), reading the bucket a request's key falls in and its app's bucket.
//!
//! A key bucket is the magic, the generation it belongs to, a record count,
//! the records' length in bytes, the marks, and the key records sorted by
//! digest, back to back: each the leading [`DISTINCT_DIGEST_BYTES`] of the
//! digest, which tell a snapshot's keys apart, the app, one byte for the
//! status, read-only and what follows, then the expiry and environments if
//! any (`read.rs` `TIER_KEY_FIELDS`). A bucket has no offset table (4 bytes a key, 3.8 MiB of Envoy's
//! memory at 1M keys): a key record delimits itself, and only every 16th
//! record's offset is kept, so a first sight of a key searches those marks
//! and walks at most 16 records. A key's bucket is a function of its
//! digest and the bucket count alone. An app bucket is its magic, the
//! generation, the index of its first app, and [`APPS_PER_BUCKET`]
//! consecutive records of the snapshot's app table, back to back like a key
//! bucket's; its grant bucket (same index) is its magic, the generation, the
//! same first app, and each of those apps' grants (tenant, grant) sorted by
//! tenant, back to back. An app's buckets are
//! its index divided by [`APPS_PER_BUCKET`]. The grants are apart from the
//! apps because they come later in a compiled snapshot: a stream writes each
//! bucket once, as its records arrive (`stream.rs`), instead of rewriting
//! app buckets, which left Envoy's allocator holding the replaced copies.
//!
//! The generation ties buckets to the keyless snapshot they were cut from:
//! their records point at its apps, organizations, products, grants and
//! environments by index, so a bucket of another generation must never be
//! read against it, and [`find_key`] and [`TierKey::resolve`] refuse one
//! ([`TierError::OtherGeneration`]): a reader that meets one has an old
//! snapshot and must pick up the new one first.
mod arena;
mod cut;
mod find;
mod split;
mod stream;

pub use cut::{decode_split, KeyCut};
pub use find::{find_key, TierKey};
pub use split::split_keys;
pub use stream::{MemoryTier, StreamCut, Streamed, TierSink};

pub use crate::records::DISTINCT_DIGEST_BYTES;

use super::DecodeError;
use crate::records::{Idx, KeyEntry};
use arena::Arena;
use std::borrow::Cow;

/// Magic and version of a key bucket (2: digests cut to their leading
/// [`DISTINCT_DIGEST_BYTES`]; 3: no offset table).
pub const BUCKET_MAGIC: &[u8; 8] = b"TGKEYS\x00\x03";

/// Magic and version of an app bucket.
pub const APP_BUCKET_MAGIC: &[u8; 8] = b"TGAPPS\x00\x02";

/// Magic and version of a grant bucket: the grants of an app bucket's apps.
pub const GRANT_BUCKET_MAGIC: &[u8; 8] = b"TGGRNT\x00\x01";

/// Apps per app bucket: a first sight of a key copies one, and its grant
/// bucket (a few KB each). 128 rather than 64: half the shared-data entries,
/// each with its own name, map slot and allocation (1.2 MiB of Envoy's
/// memory at 1M keys), for a copy a few KB larger; a reader walks at most
/// 16 records from a mark either way.
pub const APPS_PER_BUCKET: u32 = 128;

/// About this many keys per bucket: a first sight of a key copies one bucket
/// out of the shared store (a few KB), and a new revision writes
/// `keys / KEYS_PER_BUCKET` of them (see [`APPS_PER_BUCKET`] for the size).
const KEYS_PER_BUCKET: usize = 256;

/// At most this many buckets (a bucket then holds ~15 keys per million).
const MAX_BUCKETS: u32 = 1 << 16;

/// A snapshot's keys (and apps), cut into buckets in memory.
#[derive(Debug)]
pub struct KeyTier {
    /// The generation every bucket carries.
    pub generation: u64,
    /// Bucket `i` holds the keys [`bucket_of`] sends to `i`.
    pub buckets: Vec<Vec<u8>>,
    /// How many keys the buckets hold.
    pub keys: usize,
    /// App bucket `i` holds apps `i * APPS_PER_BUCKET..`; empty when the
    /// snapshot keeps its apps.
    pub app_buckets: Vec<Vec<u8>>,
    /// Grant bucket `i` holds the grants of app bucket `i`'s apps.
    pub grant_buckets: Vec<Vec<u8>>,
}

/// Why a bucket could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TierError {
    /// The bucket belongs to another generation than the snapshot read with it.
    #[error("key bucket of generation {found:016x}, expected {expected:016x}")]
    OtherGeneration {
        /// The bucket's generation.
        found: u64,
        /// The snapshot's.
        expected: u64,
    },
    /// Not a bucket, or a corrupt one.
    #[error(transparent)]
    Corrupt(#[from] DecodeError),
}

/// How many buckets `keys` keys are cut into: a power of two.
pub fn bucket_count_for(keys: usize) -> u32 {
    let wanted = keys.div_ceil(KEYS_PER_BUCKET).max(1);
    u32::try_from(wanted.next_power_of_two())
        .unwrap_or(MAX_BUCKETS)
        .min(MAX_BUCKETS)
}

/// The bucket of the key with `digest`, among `count`: by the digest's
/// leading bits, so that the buckets are contiguous runs of a table sorted by
/// digest (the compiled form's key table is cut into buckets without
/// decoding a key).
pub fn bucket_of(digest: &[u8; 32], count: u32) -> u32 {
    let [a, b, c, d, ..] = *digest;
    let top = u64::from(u32::from_be_bytes([a, b, c, d]));
    u32::try_from((top * u64::from(count)) >> 32).unwrap_or(0)
}

/// How many app buckets `apps` apps are cut into.
pub fn app_bucket_count_for(apps: usize) -> u32 {
    u32::try_from(apps.div_ceil(APPS_PER_BUCKET as usize)).unwrap_or(u32::MAX)
}

/// The app bucket of app `app`.
pub fn app_bucket_of(app: Idx) -> u32 {
    app / APPS_PER_BUCKET
}

/// Whether the apps go into the tier with the keys ([`Apps::Move`]) or stay
/// in the snapshot ([`Apps::Keep`]: a host that compiles keys from elsewhere
/// against the snapshot's apps, such as the filter's key lookup, needs them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apps {
    /// Apps and their grants live in the tier's app buckets.
    Move,
    /// Apps stay in the snapshot.
    Keep,
}

/// A tier ready to be written: cut from compiled bytes, or built in memory
/// (from a JSON snapshot, [`split_keys`]), or written already as the
/// snapshot arrived.
pub enum Tier<'b> {
    /// [`decode_split`].
    Cut(KeyCut<'b>),
    /// [`split_keys`].
    Built(KeyTier),
    /// Written as the snapshot arrived ([`StreamCut`]; [`KeyCut::written`]):
    /// only the counts are left to record, and nothing is borrowed.
    Written(Written),
}

/// What a stream wrote of a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The generation every bucket carries.
    pub generation: u64,
    /// Key buckets.
    pub buckets: u32,
    /// The keys in them.
    pub keys: usize,
    /// App buckets (as many grant buckets), when the apps moved.
    pub apps: Option<u32>,
}

impl Tier<'_> {
    /// The generation every bucket carries.
    pub fn generation(&self) -> u64 {
        match self {
            Tier::Cut(cut) => cut.generation(),
            Tier::Built(tier) => tier.generation,
            Tier::Written(written) => written.generation,
        }
    }

    /// How many buckets.
    pub fn count(&self) -> u32 {
        match self {
            Tier::Cut(cut) => cut.count(),
            Tier::Built(tier) => u32::try_from(tier.buckets.len()).unwrap_or(u32::MAX),
            Tier::Written(written) => written.buckets,
        }
    }

    /// How many keys.
    pub fn keys(&self) -> usize {
        match self {
            Tier::Cut(cut) => cut.keys(),
            Tier::Built(tier) => tier.keys,
            Tier::Written(written) => written.keys,
        }
    }

    /// Whether the key buckets were written as the snapshot arrived
    /// ([`StreamCut`]): [`Tier::bucket`] has none of them then.
    pub fn keys_written(&self) -> bool {
        match self {
            Tier::Cut(cut) => cut.keys_written(),
            Tier::Built(_) => false,
            Tier::Written(_) => true,
        }
    }

    /// Whether the app buckets were written as the snapshot arrived
    /// ([`StreamCut`] moving the apps): [`Tier::app_bucket`] has none then.
    pub fn apps_written(&self) -> bool {
        match self {
            Tier::Cut(cut) => cut.apps_written(),
            Tier::Built(_) => false,
            Tier::Written(written) => written.apps.is_some(),
        }
    }

    /// Bucket `i`.
    pub fn bucket(&self, i: u32) -> Option<Cow<'_, [u8]>> {
        match self {
            Tier::Cut(cut) => cut.bucket(i).map(Cow::Owned),
            Tier::Built(tier) => tier.buckets.get(i as usize).map(|b| Cow::Borrowed(&b[..])),
            Tier::Written(_) => None,
        }
    }

    /// How many app buckets (0: the apps stay in the snapshot).
    pub fn app_count(&self) -> u32 {
        match self {
            Tier::Cut(cut) => cut.app_count(),
            Tier::Built(tier) => u32::try_from(tier.app_buckets.len()).unwrap_or(u32::MAX),
            Tier::Written(written) => written.apps.unwrap_or(0),
        }
    }

    /// Grant bucket `i` (the grants of app bucket `i`'s apps).
    pub fn grant_bucket(&self, i: u32) -> Option<Cow<'_, [u8]>> {
        match self {
            Tier::Cut(cut) => cut.grant_bucket(i).map(Cow::Owned),
            Tier::Built(tier) => tier
                .grant_buckets
                .get(i as usize)
                .map(|b| Cow::Borrowed(&b[..])),
            Tier::Written(_) => None,
        }
    }

    /// App bucket `i`.
    pub fn app_bucket(&self, i: u32) -> Option<Cow<'_, [u8]>> {
        match self {
            Tier::Cut(cut) => cut.app_bucket(i).map(Cow::Owned),
            Tier::Built(tier) => tier
                .app_buckets
                .get(i as usize)
                .map(|b| Cow::Borrowed(&b[..])),
            Tier::Written(_) => None,
        }
    }
}

/// The most bytes `key` takes in a key bucket: digest bytes, app, flags,
/// expiry, environment list.
pub(super) fn tier_key_most(key: &KeyEntry) -> usize {
    let envs = key.envs.as_ref().map_or(0, |envs| 4 + 4 * envs.len());
    DISTINCT_DIGEST_BYTES + 4 + 1 + 8 + envs
}

/// A key bucket of `keys`, in the tier's form (`None` if its memory cannot
/// be had).
pub(super) fn encode_bucket(generation: u64, keys: &[&KeyEntry]) -> Option<Vec<u8>> {
    let mut keys = keys.to_vec();
    keys.sort_unstable_by_key(|key| key.digest);
    let mut arena = Arena::default();
    for key in keys {
        arena.write(tier_key_most(key), |w| w.tier_key(key)).ok()?;
    }
    arena.key_bucket(generation)
}
