//! The key table's records as they arrive: each checked as the whole-body
//! decoder checks it, and filed in its bucket, each bucket handed to the
//! sink as soon as it is complete.

use super::super::arena::{no_room, Arena};
use super::super::{bucket_count_for, bucket_of, tier_key_most};
use super::table::Rows;
use super::TierSink;
use crate::binary::read::{key_follows, Field, Reader, KEY_FIELDS};
use crate::binary::DecodeError;

/// The key table's records, and the bucket being filled.
pub(super) struct KeyRows {
    generation: u64,
    /// The bounds of a key's app and environment indexes.
    apps: usize,
    envs: usize,
    previous: Option<[u8; 32]>,
    pub(super) buckets: u32,
    bucket: u32,
    arena: Arena,
}

impl KeyRows {
    pub(super) fn new(generation: u64, count: usize, apps: usize, envs: usize) -> KeyRows {
        KeyRows {
            generation,
            apps,
            envs,
            previous: None,
            buckets: bucket_count_for(count),
            bucket: 0,
            arena: Arena::default(),
        }
    }

    /// Hands the bucket being filled to `sink` and starts the next.
    fn emit(&mut self, sink: &mut dyn TierSink, at: usize) -> Result<(), DecodeError> {
        let bucket = self.arena.key_bucket(self.generation).ok_or(no_room(at))?;
        let stored = sink.key_bucket(self.bucket, bucket);
        self.arena.clear();
        self.bucket += 1;
        super::stored(stored, at, "a key bucket could not be stored")
    }
}

#[cfg(test)]
impl KeyRows {
    /// The bytes this holds (tests).
    pub(super) fn held(&self) -> usize {
        self.arena.held()
    }
}

impl Rows for KeyRows {
    /// Digest, app and status; expiry; read-only; environments.
    const FIELDS: &'static [Field] = KEY_FIELDS;

    /// Checks a key record as `decode_split` does, and files it in its
    /// bucket.
    fn row(
        &mut self,
        _: usize,
        record: &[u8],
        base: usize,
        sink: &mut dyn TierSink,
    ) -> Result<(), DecodeError> {
        let reader = Reader::at(record, base);
        let key = reader.key(self.apps, self.envs)?;
        if let Some(Err(what)) = self.previous.map(|p| key_follows(&p, &key.digest)) {
            return Err(DecodeError { offset: base, what });
        }
        self.previous = Some(key.digest);
        // Sorted by digest, so a key's bucket is never before the current one.
        let bucket = bucket_of(&key.digest, self.buckets);
        while self.bucket < bucket {
            self.emit(sink, base)?;
        }
        let most = tier_key_most(&key);
        self.arena
            .write(most, |w| w.tier_key(&key))
            .map_err(|()| no_room(base))
    }

    /// The buckets left, empty ones included.
    fn end(&mut self, at: usize, sink: &mut dyn TierSink) -> Result<(), DecodeError> {
        while self.bucket < self.buckets {
            self.emit(sink, at)?;
        }
        Ok(())
    }
}
