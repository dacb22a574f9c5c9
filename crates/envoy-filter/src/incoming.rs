//! Where a fetch round puts the parts of a snapshot (issue 12): a compiled
//! one has its key table cut into key buckets (and, when the apps move into
//! the tier, its apps into app buckets) as the parts arrive, each written at
//! once into the spare slot of the shared data (the one no published
//! snapshot reads), so that the fetching VM never holds the keys or the
//! apps; the rest is kept and loaded once the snapshot is whole, its
//! checksum matched and its signature checked (`publish.rs`). JSON is kept
//! whole, as before.

use super::abi;
use super::live::SharedKeys;
use super::ranged::Assembly;
use tenantgate_policy::binary::tier::{Apps, TierSink};
use tenantgate_policy::intake::{Arrived, Intake};
use tenantgate_policy::signed::Verifier;
use tenantgate_policy::LoadError;

/// A round's parts, taken in as they arrive.
pub struct Incoming {
    keys: SharedKeys,
    /// The tier slot the buckets go into, their generation, and whether
    /// the apps move into the tier.
    slot: u8,
    generation: u64,
    apps: Apps,
    received: u64,
    /// The last round's buffer, until the first part.
    spare: Vec<u8>,
    intake: Option<Intake>,
    /// Bytes of the key buckets and of the app buckets written so far.
    written: Written,
}

/// Bytes of buckets written into the slot: key buckets, and app buckets
/// with their grant buckets.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub keys: usize,
    pub apps: usize,
}

/// The slot's buckets in the shared data, as a stream's sink.
struct Slot<'a> {
    keys: &'a SharedKeys,
    slot: u8,
    written: &'a mut Written,
}

impl TierSink for Slot<'_> {
    fn key_bucket(&mut self, i: u32, bucket: Vec<u8>) -> bool {
        self.written.keys += bucket.len();
        abi::set_shared_data(&self.keys.bucket(self.slot, i), &bucket, 0).is_ok()
    }

    fn app_bucket(&mut self, i: u32, bucket: Vec<u8>) -> bool {
        self.written.apps += bucket.len();
        abi::set_shared_data(&self.keys.app_bucket(self.slot, i), &bucket, 0).is_ok()
    }

    fn grant_bucket(&mut self, i: u32, bucket: Vec<u8>) -> bool {
        self.written.apps += bucket.len();
        abi::set_shared_data(&self.keys.grant_bucket(self.slot, i), &bucket, 0).is_ok()
    }
}

impl Incoming {
    /// Parts whose buckets go into `slot` with `generation` (drawn at random
    /// for the round), the apps too when they move; `spare` is the last
    /// round's buffer.
    pub fn new(
        keys: SharedKeys,
        slot: u8,
        generation: u64,
        apps: Apps,
        spare: Vec<u8>,
    ) -> Incoming {
        Incoming {
            keys,
            slot,
            generation,
            apps,
            received: 0,
            spare,
            intake: None,
            written: Written::default(),
        }
    }

    /// The slot written into, once a bucket has been.
    pub fn writing(&self) -> Option<u8> {
        (self.written.keys + self.written.apps > 0).then_some(self.slot)
    }

    /// The slot of the buckets written, and their bytes.
    pub fn tier(&self) -> (u8, Written) {
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
        self.intake = Some(Intake::new(total, self.generation, self.apps, spare));
        true
    }

    fn take(&mut self, part: &[u8]) -> Result<(), String> {
        let Some(intake) = self.intake.as_mut() else {
            return Err("a part before the first".into());
        };
        let mut sink = Slot {
            keys: &self.keys,
            slot: self.slot,
            written: &mut self.written,
        };
        intake.push(part, &mut sink).map_err(|e| e.to_string())?;
        self.received += part.len() as u64;
        Ok(())
    }

    fn reset(&mut self) {
        self.spare.clear();
        self.intake = None;
        self.received = 0;
        self.written = Written::default();
    }
}
