//! The app table and the two id indexes that point into it (app ids,
//! Otoroshi client ids), read as they arrive when the apps move into the
//! tier: at 1M keys and 250,000 apps they are 15 of the 23 MB a streamed
//! cut kept before (issue 12).
//!
//! Each app record is checked as the whole-body decoder checks it and goes
//! into its app bucket at once; its grants come later in the snapshot, with
//! the grant references, into grant buckets (`refs.rs`). The whole-body
//! decoder checks that the app id index
//! names every app with an id once, at its app; the stream compares the
//! index with the apps it saw by a sum of SipHash-2-4 values of each
//! (app, id) pair, keyed by the round's generation (drawn at random for each
//! fetch, never sent anywhere), with the counts and the index's strict order.
//! A source cannot aim for a collision it cannot compute; two different
//! sets of pairs agree by chance with probability 2^-64.

use super::super::arena::{no_room, Arena};
use super::super::APPS_PER_BUCKET;
use super::table::Rows;
use super::TierSink;
use crate::binary::decode::index_mismatch_at;
use crate::binary::read::Reader;
use crate::binary::read::{Field, APP_FIELDS};
use crate::binary::DecodeError;
use siphasher::sip::SipHasher24;
use std::hash::Hasher;

/// The apps seen, as the app id index must restate them.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct AppIds {
    /// Apps whose principal is `app:<id>`.
    pub(super) with_id: usize,
    /// The keyed sum of their (index, id) pairs.
    pub(super) sum: u64,
}

/// The keyed value of an (app, id) pair.
fn pair_value(key: u64, app: u32, id: &[u8]) -> u64 {
    let mut hasher = SipHasher24::new_with_keys(key, !key);
    hasher.write_u32(app);
    hasher.write(id);
    hasher.finish()
}

/// The app table's records, and the app bucket being filled.
pub(super) struct AppRows {
    generation: u64,
    /// The bounds of an app's organization and products.
    orgs: usize,
    products: usize,
    pub(super) ids: AppIds,
    arena: Arena,
    /// App buckets handed to the sink.
    pub(super) buckets: u32,
}

impl AppRows {
    pub(super) fn new(generation: u64, orgs: usize, products: usize) -> AppRows {
        AppRows {
            generation,
            orgs,
            products,
            ids: AppIds::default(),
            arena: Arena::default(),
            buckets: 0,
        }
    }

    /// Hands the app bucket being filled to `sink`.
    fn emit(&mut self, sink: &mut dyn TierSink, at: usize) -> Result<(), DecodeError> {
        let first = self.buckets.saturating_mul(APPS_PER_BUCKET);
        let bucket = self
            .arena
            .app_bucket(self.generation, first)
            .ok_or(no_room(at))?;
        let stored = sink.app_bucket(self.buckets, bucket);
        self.arena.clear();
        self.buckets += 1;
        super::stored(stored, at, "an app bucket could not be stored")
    }
}

impl Rows for AppRows {
    /// Principal; organization and approved; products.
    const FIELDS: &'static [Field] = APP_FIELDS;

    /// Checks an app record as the decoder does (`Parts::app`), and files it.
    fn row(
        &mut self,
        i: usize,
        record: &[u8],
        base: usize,
        sink: &mut dyn TierSink,
    ) -> Result<(), DecodeError> {
        let mut r = Reader::at(record, base);
        let principal = r.str_ref()?;
        r.idx(self.orgs)?;
        r.bool()?;
        r.idxs(self.products)?;
        r.done()?;
        if let Some(id) = principal.strip_prefix("app:") {
            let app = u32::try_from(i).unwrap_or(u32::MAX);
            self.ids.with_id += 1;
            let value = pair_value(self.generation, app, id.as_bytes());
            self.ids.sum = self.ids.sum.wrapping_add(value);
        }
        self.arena.push(record).map_err(|()| no_room(base))?;
        if self.arena.len() == APPS_PER_BUCKET as usize {
            self.emit(sink, base)?;
        }
        Ok(())
    }

    /// The last, partly filled, bucket.
    fn end(&mut self, at: usize, sink: &mut dyn TierSink) -> Result<(), DecodeError> {
        if self.arena.len() == 0 {
            return Ok(());
        }
        self.emit(sink, at)
    }
}

/// Which id index is read.
pub(super) enum IdIndex {
    /// The app ids, compared with the apps seen.
    Apps { seen: AppIds, found: AppIds },
    /// The Otoroshi client ids, each an app's.
    Clients,
}

/// An (id, app) index pointing into the app table, sorted by id.
pub(super) struct IdRows {
    generation: u64,
    apps: usize,
    index: IdIndex,
    previous: Option<Vec<u8>>,
}

impl IdRows {
    pub(super) fn new(generation: u64, apps: usize, index: IdIndex) -> IdRows {
        IdRows {
            generation,
            apps,
            index,
            previous: None,
        }
    }
}

impl Rows for IdRows {
    /// Id, app.
    const FIELDS: &'static [Field] = &[Field::Str, Field::Bytes(4)];

    /// As the decoder reads them: sorted strictly by id (`check_sorted`);
    /// an app id index entry must name an app (`check_app_ids_in_bytes`),
    /// a client id's app must be in range (`check_id_table`).
    fn row(
        &mut self,
        _: usize,
        record: &[u8],
        base: usize,
        _: &mut dyn TierSink,
    ) -> Result<(), DecodeError> {
        let mut r = Reader::at(record, base);
        let id = r.str_ref()?;
        if self.previous.as_deref().is_some_and(|p| p >= id.as_bytes()) {
            return Err(DecodeError {
                offset: base,
                what: "records not sorted",
            });
        }
        match &mut self.index {
            IdIndex::Clients => {
                r.idx(self.apps)?;
            }
            IdIndex::Apps { found, .. } => {
                let app = r.u32()?;
                if app as usize >= self.apps {
                    return Err(index_mismatch_at(base));
                }
                found.with_id += 1;
                let value = pair_value(self.generation, app, id.as_bytes());
                found.sum = found.sum.wrapping_add(value);
            }
        }
        r.done()?;
        let previous = self.previous.get_or_insert_with(Vec::new);
        previous.clear();
        previous.try_reserve(id.len()).map_err(|_| no_room(base))?;
        previous.extend_from_slice(id.as_bytes());
        Ok(())
    }

    /// The app id index names exactly the apps with an id.
    fn end(&mut self, at: usize, _: &mut dyn TierSink) -> Result<(), DecodeError> {
        match &self.index {
            IdIndex::Apps { seen, found }
                if seen.with_id != found.with_id || seen.sum != found.sum =>
            {
                Err(index_mismatch_at(at))
            }
            _ => Ok(()),
        }
    }
}
