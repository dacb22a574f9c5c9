//! The key tier: a snapshot's API keys cut into buckets, so that they can
//! live once per proxy process (the Envoy filter keeps them in Envoy's shared
//! data) while each decision VM holds the rest of the snapshot only, reading
//! the one bucket a request's key falls in.
//!
//! A bucket is the magic, the generation it belongs to, and a table of key
//! records sorted by digest (the records of the compiled form, see
//! [`super`]). A key's bucket is a function of its digest and the bucket
//! count alone. The generation ties buckets to the keyless snapshot they were
//! cut from: their records point at its apps and environments by index, so a
//! bucket of another generation must never be read against it, and
//! [`find_key`] refuses one ([`TierError::OtherGeneration`]): a reader that
//! meets one has an old snapshot and must pick up the new one first.

use super::decode::{decode_with, Keys};
use super::read::{digest_key, Reader, Table};
use super::write::Writer;
use super::DecodeError;
use crate::compile::keys::ExternalKey;
use crate::index::KeyIndex;
use crate::records::KeyEntry;
use crate::snapshot::Snapshot;
use std::borrow::Cow;

/// Magic and version of a bucket.
pub const BUCKET_MAGIC: &[u8; 8] = b"TGKEYS\x00\x01";

/// About this many keys per bucket: a first sight of a key copies one bucket
/// out of the shared store (a few KB), and a new revision writes
/// `keys / KEYS_PER_BUCKET` of them.
const KEYS_PER_BUCKET: usize = 128;

/// At most this many buckets (a bucket then holds ~15 keys per million).
const MAX_BUCKETS: u32 = 1 << 16;

/// A snapshot's keys, cut into buckets.
#[derive(Debug)]
pub struct KeyTier {
    /// The generation every bucket carries.
    pub generation: u64,
    /// Bucket `i` holds the keys [`bucket_of`] sends to `i`.
    pub buckets: Vec<Vec<u8>>,
    /// How many keys the buckets hold.
    pub keys: usize,
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

/// Moves the keys out of `snapshot` into a tier of `generation`; what is left
/// decides every request but those with an API key, which need the key found
/// with [`find_key`] (passed as the context's external key).
pub fn split_keys(snapshot: &mut Snapshot, generation: u64) -> KeyTier {
    let keys = std::mem::take(&mut snapshot.keys);
    snapshot.key_index = KeyIndex::default();
    let count = bucket_count_for(keys.len());
    let mut members: Vec<Vec<&KeyEntry>> = vec![Vec::new(); count as usize];
    for key in &keys {
        if let Some(bucket) = members.get_mut(bucket_of(&key.digest, count) as usize) {
            bucket.push(key);
        }
    }
    let buckets = members
        .iter()
        .map(|keys| encode_bucket(generation, keys))
        .collect();
    KeyTier {
        generation,
        buckets,
        keys: keys.len(),
    }
}

/// A compiled snapshot's key table cut into the buckets of a tier: every
/// record checked, none copied until its bucket is asked for, so the fetching
/// VM can write the tier one bucket at a time instead of holding all of it.
pub struct KeyCut<'b> {
    generation: u64,
    table: Table<'b>,
    /// Bucket `i` holds records `starts[i]..starts[i + 1]`.
    starts: Vec<u32>,
}

impl KeyCut<'_> {
    /// The generation every bucket carries.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many buckets.
    pub fn count(&self) -> u32 {
        u32::try_from(self.starts.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// How many keys.
    pub fn keys(&self) -> usize {
        self.table.count
    }

    /// Bucket `i`, encoded now.
    pub fn bucket(&self, i: u32) -> Option<Vec<u8>> {
        let from = *self.starts.get(i as usize)?;
        let to = *self.starts.get(i as usize + 1)?;
        let records: Vec<&[u8]> = (from..to)
            .filter_map(|r| self.table.record(r as usize).ok().map(|r| r.bytes))
            .collect();
        Some(encode_raw_bucket(self.generation, &records))
    }

    /// Every bucket, encoded (for tests and small snapshots).
    pub fn into_tier(self) -> KeyTier {
        let buckets = (0..self.count()).filter_map(|i| self.bucket(i)).collect();
        KeyTier {
            generation: self.generation,
            buckets,
            keys: self.keys(),
        }
    }
}

/// A compiled snapshot decoded without its keys, and its key table cut into
/// a tier of `generation` (each record checked as [`super::decode`] checks
/// it, none kept): a large snapshot's keys are never held as records in the
/// fetching VM.
pub fn decode_split(bytes: &[u8], generation: u64) -> Result<(Snapshot, KeyCut<'_>), DecodeError> {
    let (snapshot, parts) = decode_with(bytes, Keys::Leave)?;
    let (apps, envs) = (parts.apps.count, parts.envs.len());
    let table = parts.keys;
    let count = bucket_count_for(table.count);
    let mut starts: Vec<u32> = Vec::with_capacity(count as usize + 1);
    for i in 0..table.count {
        let key = table.record(i)?.key(apps, envs)?;
        // Sorted by digest, so a key's bucket is never before the current one.
        while starts.len() <= bucket_of(&key.digest, count) as usize {
            starts.push(u32::try_from(i).unwrap_or(u32::MAX));
        }
    }
    while starts.len() <= count as usize {
        starts.push(u32::try_from(table.count).unwrap_or(u32::MAX));
    }
    Ok((
        snapshot,
        KeyCut {
            generation,
            table,
            starts,
        },
    ))
}

/// A tier ready to be written: cut from compiled bytes, or built in memory
/// (from a JSON snapshot, [`split_keys`]).
pub enum Tier<'b> {
    /// [`decode_split`].
    Cut(KeyCut<'b>),
    /// [`split_keys`].
    Built(KeyTier),
}

impl Tier<'_> {
    /// The generation every bucket carries.
    pub fn generation(&self) -> u64 {
        match self {
            Tier::Cut(cut) => cut.generation(),
            Tier::Built(tier) => tier.generation,
        }
    }

    /// How many buckets.
    pub fn count(&self) -> u32 {
        match self {
            Tier::Cut(cut) => cut.count(),
            Tier::Built(tier) => u32::try_from(tier.buckets.len()).unwrap_or(u32::MAX),
        }
    }

    /// How many keys.
    pub fn keys(&self) -> usize {
        match self {
            Tier::Cut(cut) => cut.keys(),
            Tier::Built(tier) => tier.keys,
        }
    }

    /// Bucket `i`.
    pub fn bucket(&self, i: u32) -> Option<Cow<'_, [u8]>> {
        match self {
            Tier::Cut(cut) => cut.bucket(i).map(Cow::Owned),
            Tier::Built(tier) => tier.buckets.get(i as usize).map(|b| Cow::Borrowed(&b[..])),
        }
    }
}

fn encode_raw_bucket(generation: u64, records: &[&[u8]]) -> Vec<u8> {
    let mut w = Writer(BUCKET_MAGIC.to_vec());
    w.u64(generation);
    w.raw_table(records);
    w.0
}

fn encode_bucket(generation: u64, keys: &[&KeyEntry]) -> Vec<u8> {
    let mut w = Writer(BUCKET_MAGIC.to_vec());
    w.u64(generation);
    w.key_table(keys);
    w.0
}

/// The key with `digest` in `bucket`, compiled against `snapshot` (the
/// keyless snapshot of the same `generation`) as a key of its own would be.
/// `Ok(None)`: no such key.
pub fn find_key(
    bucket: &[u8],
    generation: u64,
    digest: &[u8; 32],
    snapshot: &Snapshot,
) -> Result<Option<ExternalKey>, TierError> {
    let mut r = Reader::new(bucket);
    if r.take(BUCKET_MAGIC.len())? != BUCKET_MAGIC {
        let what = "not a key bucket";
        return Err(DecodeError { offset: 0, what }.into());
    }
    let found = r.u64()?;
    if found != generation {
        return Err(TierError::OtherGeneration {
            found,
            expected: generation,
        });
    }
    let table = r.table()?;
    r.done()?;
    let Some(i) = table.search(digest_key, digest)? else {
        return Ok(None);
    };
    let entry = table
        .record(i)?
        .key(snapshot.apps.len(), snapshot.envs.len())?;
    Ok(Some(ExternalKey {
        digest: entry.digest,
        entry,
    }))
}
