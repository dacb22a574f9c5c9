//! The key table's records as they arrive: each checked as the whole-body
//! decoder checks it, and filed in its bucket, each bucket handed to the
//! sink as soon as it is complete.

use super::super::{bucket_count_for, bucket_of, encode_key_bucket};
use super::table::Rows;
use super::TierSink;
use crate::binary::read::{key_follows, Reader};
use crate::binary::read::{Field, KEY_FIELDS};
use crate::binary::write::Writer;
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
    arena: Vec<u8>,
    ends: Vec<usize>,
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
            arena: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// Hands the bucket being filled to `sink` and starts the next.
    fn emit(&mut self, sink: &mut dyn TierSink, at: usize) -> Result<(), DecodeError> {
        let mut records = Vec::with_capacity(self.ends.len());
        let mut start = 0;
        for &end in &self.ends {
            records.push(self.arena.get(start..end).unwrap_or_default());
            start = end;
        }
        let bucket = encode_key_bucket(self.generation, &records);
        let stored = sink.key_bucket(self.bucket, bucket);
        self.arena.clear();
        self.ends.clear();
        self.bucket += 1;
        if stored {
            Ok(())
        } else {
            Err(DecodeError {
                offset: at,
                what: "a key bucket could not be stored",
            })
        }
    }

    /// The bytes this holds (tests).
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.arena.capacity() + self.ends.capacity() * std::mem::size_of::<usize>()
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
        let reader = Reader {
            bytes: record,
            at: 0,
            base,
        };
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
        let mut arena = Writer(std::mem::take(&mut self.arena));
        arena.tier_key(&key);
        self.arena = arena.0;
        self.ends.push(self.arena.len());
        Ok(())
    }

    /// The buckets left, empty ones included.
    fn end(&mut self, at: usize, sink: &mut dyn TierSink) -> Result<(), DecodeError> {
        while self.bucket < self.buckets {
            self.emit(sink, at)?;
        }
        Ok(())
    }
}
