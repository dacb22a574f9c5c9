//! Where a fetch round puts the parts of a snapshot (issue 12): a compiled
//! one has its key table cut into key buckets as the parts arrive, each
//! written at once into the spare slot of the shared data (the one no
//! published snapshot reads), so that the fetching VM never holds the key
//! table; the rest is kept and loaded once the snapshot is whole, its
//! checksum matched and its signature checked (`publish.rs`). JSON is kept
//! whole, as before.

use super::abi;
use super::live::SharedKeys;
use super::ranged::Assembly;
use tenantgate_policy::intake::{Arrived, Intake};
use tenantgate_policy::signed::Verifier;
use tenantgate_policy::LoadError;

/// A round's parts, taken in as they arrive.
pub struct Incoming {
    keys: SharedKeys,
    /// The tier slot the key buckets go into, and their generation.
    slot: u8,
    generation: u64,
    received: u64,
    /// The last round's buffer, until the first part.
    spare: Vec<u8>,
    intake: Option<Intake>,
    /// Bytes of key buckets written so far.
    written: usize,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("slot", &self.slot)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// Parts whose key buckets go into `slot` with `generation`; `spare` is
    /// the last round's buffer.
    pub fn new(keys: SharedKeys, slot: u8, generation: u64, spare: Vec<u8>) -> Incoming {
        Incoming {
            keys,
            slot,
            generation,
            received: 0,
            spare,
            intake: None,
            written: 0,
        }
    }

    /// The slot written into, once a key bucket has been.
    pub fn writing(&self) -> Option<u8> {
        (self.written > 0).then_some(self.slot)
    }

    /// The slot of the key buckets, and their bytes.
    pub fn tier(&self) -> (u8, usize) {
        (self.slot, self.written)
    }

    /// After the last part: the body to load whole, or what the stream kept.
    pub fn finish(&mut self, verifier: Option<&Verifier>) -> Result<Arrived, LoadError> {
        match self.intake.take() {
            Some(intake) => intake.finish(verifier),
            None => Ok(Arrived::Whole(std::mem::take(&mut self.spare))),
        }
    }

    /// A buffer for the next round.
    pub fn into_spare(self) -> Vec<u8> {
        self.spare
    }
}

impl Assembly for Incoming {
    fn taken(&self) -> u64 {
        self.received
    }

    fn start(&mut self, total: u64) -> bool {
        let Ok(total) = usize::try_from(total) else {
            return false;
        };
        let spare = std::mem::take(&mut self.spare);
        self.intake = Some(Intake::new(total, self.generation, spare));
        true
    }

    fn take(&mut self, part: &[u8]) -> Result<(), String> {
        let Some(intake) = self.intake.as_mut() else {
            return Err("a part before the first".into());
        };
        let (keys, slot, written) = (&self.keys, self.slot, &mut self.written);
        let mut sink = |i: u32, bucket: Vec<u8>| {
            *written += bucket.len();
            abi::set_shared_data(&keys.bucket(slot, i), &bucket, 0).is_ok()
        };
        intake.push(part, &mut sink).map_err(|e| e.to_string())?;
        self.received += part.len() as u64;
        Ok(())
    }

    fn reset(&mut self) {
        self.spare.clear();
        self.intake = None;
        self.received = 0;
        self.written = 0;
    }
}
