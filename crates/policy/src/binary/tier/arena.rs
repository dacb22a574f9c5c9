//! A bucket being filled: its records written one after another into one
//! buffer, then encoded with its header. Every growth is fallible: a hostile
//! snapshot can put every key in one bucket (it chooses the digests) or give
//! an app millions of grants, and the fetching VM must refuse it, not abort.

use super::{APP_BUCKET_MAGIC, BUCKET_MAGIC, GRANT_BUCKET_MAGIC};
use crate::binary::write::Writer;
use crate::binary::DecodeError;

/// Records of a bucket, back to back.
#[derive(Debug, Default)]
pub(super) struct Arena {
    bytes: Vec<u8>,
    /// Where each record ends.
    ends: Vec<usize>,
}

/// The memory for a bucket could not be had.
pub(super) fn no_room(at: usize) -> DecodeError {
    DecodeError {
        offset: at,
        what: "cannot reserve the memory for a bucket of the key tier",
    }
}

impl Arena {
    /// Appends the record `write` writes, of at most `most` bytes (reserved
    /// first; `Err` if it cannot be).
    pub(super) fn write(&mut self, most: usize, write: impl FnOnce(&mut Writer)) -> Result<(), ()> {
        self.bytes.try_reserve(most).map_err(|_| ())?;
        self.ends.try_reserve(1).map_err(|_| ())?;
        let mut w = Writer(std::mem::take(&mut self.bytes));
        write(&mut w);
        self.bytes = w.0;
        self.ends.push(self.bytes.len());
        Ok(())
    }

    /// Appends `record` as it is.
    pub(super) fn push(&mut self, record: &[u8]) -> Result<(), ()> {
        self.write(record.len(), |w| w.0.extend_from_slice(record))
    }

    /// How many records.
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Record `i`'s bytes.
    fn record(&self, i: usize) -> &[u8] {
        let start = i
            .checked_sub(1)
            .and_then(|j| self.ends.get(j))
            .copied()
            .unwrap_or(0);
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.bytes.get(start..end).unwrap_or_default()
    }

    /// The bytes it holds (tests).
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * std::mem::size_of::<usize>()
    }

    /// Empties it for the next bucket (its capacity kept).
    pub(super) fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    /// The bucket of `magic`: the generation, the first app's index (app
    /// and grant buckets), then the records as a run (`Writer::run_of`);
    /// `None` if its memory cannot be had.
    fn encode(&self, magic: &[u8; 8], generation: u64, first: Option<u32>) -> Option<Vec<u8>> {
        let marks = self.len().div_ceil(crate::binary::read::RUN_STRIDE);
        let size = magic.len() + 8 + 4 + 8 + 4 * marks + self.bytes.len();
        let mut out = Vec::new();
        out.try_reserve_exact(size).ok()?;
        let mut w = Writer(out);
        w.0.extend_from_slice(magic);
        w.u64(generation);
        if let Some(first) = first {
            w.u32(first);
        }
        w.run_of(
            self.len(),
            |i| self.record(i).len(),
            |w, i| w.0.extend_from_slice(self.record(i)),
        );
        Some(w.0)
    }

    /// A key bucket of these records (in the tier's form, sorted by digest).
    pub(super) fn key_bucket(&self, generation: u64) -> Option<Vec<u8>> {
        self.encode(BUCKET_MAGIC, generation, None)
    }

    /// An app bucket of these app records, the first app's index `first`.
    pub(super) fn app_bucket(&self, generation: u64, first: u32) -> Option<Vec<u8>> {
        self.encode(APP_BUCKET_MAGIC, generation, Some(first))
    }

    /// A grant bucket of these apps' grant lists, the first app's index
    /// `first`.
    pub(super) fn grant_bucket(&self, generation: u64, first: u32) -> Option<Vec<u8>> {
        self.encode(GRANT_BUCKET_MAGIC, generation, Some(first))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_bucket_is_its_header_then_its_records_as_a_run() {
        let mut arena = Arena::default();
        for i in 0..40u8 {
            arena.push(&vec![i; usize::from(i % 3) + 1]).unwrap();
        }
        let bucket = arena.app_bucket(7, 128).unwrap();
        assert_eq!(&bucket[..8], APP_BUCKET_MAGIC);
        assert_eq!(&bucket[8..16], &7u64.to_le_bytes());
        assert_eq!(&bucket[16..20], &128u32.to_le_bytes());
        assert_eq!(&bucket[20..24], &40u32.to_le_bytes());
        // Sized right: the buffer never grew.
        assert_eq!(bucket.len(), bucket.capacity());
        // A record past what the memory can hold is refused, not an abort
        // (past what any target can address, so no allocation is tried).
        let mut big = Arena::default();
        assert!(big.write(usize::MAX, |_| {}).is_err());
        assert_eq!(big.len(), 0);
    }
}
