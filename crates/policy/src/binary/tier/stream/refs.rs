//! The grant references (principal, tenant, grant; sorted) read as they
//! arrive when the apps move into the tier. Each is checked as the
//! whole-body decoder checks it. A user's is kept (the snapshot's users
//! need it); an app's goes into the grant bucket of that app's bucket: apps
//! come first in this order, by index, so each grant bucket is complete
//! once the references pass its last app, and is stored then, exactly as
//! the whole-body cut builds it (`cut.rs` `KeyCut::grant_bucket`).

use super::super::arena::{no_room, Arena};
use super::super::{app_bucket_count_for, APPS_PER_BUCKET};
use super::table::Read;
use super::{keep, TierSink};
use crate::binary::read::Reader;
use crate::binary::{DecodeError, GRANT_REF_SIZE};
use crate::records::Idx;

/// The bounds of what a reference points at.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    pub(super) apps: usize,
    pub(super) users: usize,
    pub(super) orgs: usize,
    pub(super) grants: usize,
}

/// The grant references being read.
pub(super) struct Refs {
    generation: u64,
    bounds: Bounds,
    count: usize,
    /// Where the records start in the snapshot.
    at: usize,
    read: usize,
    record: Vec<u8>,
    previous: Option<Vec<u8>>,
    /// User references kept.
    pub(super) kept: u32,
    /// Grant buckets in all (one per app bucket), the next to store, and
    /// the grants (app, tenant, grant) of its apps so far.
    app_buckets: u32,
    next: u32,
    grants: Vec<(Idx, Idx, Idx)>,
}

impl Refs {
    pub(super) fn new(generation: u64, count: usize, at: usize, bounds: Bounds) -> Refs {
        Refs {
            generation,
            bounds,
            count,
            at,
            read: 0,
            record: Vec::with_capacity(GRANT_REF_SIZE),
            previous: None,
            kept: 0,
            app_buckets: app_bucket_count_for(bounds.apps),
            next: 0,
            grants: Vec::new(),
        }
    }

    /// Where the references end in the snapshot.
    pub(super) fn end_at(&self) -> usize {
        self.at
            .saturating_add(self.count.saturating_mul(GRANT_REF_SIZE))
    }

    /// Takes the next bytes of the references; a user's goes to `kept`.
    pub(super) fn take<'p>(
        &mut self,
        mut bytes: &'p [u8],
        kept: &mut Vec<u8>,
        sink: &mut dyn TierSink,
    ) -> Result<Read<'p>, DecodeError> {
        loop {
            if self.read == self.count {
                let at = self.at;
                while self.next < self.app_buckets {
                    self.complete(sink, at)?;
                }
                return Ok(Read::Done(bytes));
            }
            if bytes.is_empty() {
                return Ok(Read::More);
            }
            let n = (GRANT_REF_SIZE - self.record.len()).min(bytes.len());
            let (mine, rest) = bytes.split_at(n);
            self.record.extend_from_slice(mine);
            bytes = rest;
            if self.record.len() == GRANT_REF_SIZE {
                self.row(kept, sink)?;
                self.record.clear();
                self.read += 1;
            }
        }
    }

    /// Checks a reference as the decoder does (sorted strictly, `grant_ref`).
    fn row(&mut self, kept: &mut Vec<u8>, sink: &mut dyn TierSink) -> Result<(), DecodeError> {
        let base = self.at + self.read * GRANT_REF_SIZE;
        let mut r = Reader::at(&self.record, base);
        if self
            .previous
            .as_deref()
            .is_some_and(|p| p >= self.record.as_slice())
        {
            return r.fail("records not sorted");
        }
        let app = match r.u8()? {
            0 => Some(r.idx_be(self.bounds.apps)?),
            1 => r.idx_be(self.bounds.users).map(|_| None)?,
            _ => return r.fail("not a principal kind"),
        };
        let tenant = r.idx_be(self.bounds.orgs)?;
        let grant = r.idx_be(self.bounds.grants)?;
        let previous = self.previous.get_or_insert_with(Vec::new);
        previous.clear();
        previous.extend_from_slice(&self.record);
        match app {
            Some(app) => {
                while self.next < app / APPS_PER_BUCKET {
                    self.complete(sink, base)?;
                }
                // A hostile snapshot can give one app millions of grants.
                self.grants.try_reserve(1).map_err(|_| no_room(base))?;
                self.grants.push((app, tenant, grant));
                Ok(())
            }
            None => {
                self.kept += 1;
                keep(kept, &self.record)
            }
        }
    }

    /// Stores grant bucket `next`: each of its apps' grants (none for an
    /// app without any).
    fn complete(&mut self, sink: &mut dyn TierSink, at: usize) -> Result<(), DecodeError> {
        let first = self.next.saturating_mul(APPS_PER_BUCKET);
        let apps = u32::try_from(self.bounds.apps).unwrap_or(u32::MAX);
        let last = first.saturating_add(APPS_PER_BUCKET).min(apps);
        let mut arena = Arena::default();
        let mut grants = self.grants.as_slice();
        for app in first..last {
            let n = grants.iter().take_while(|g| g.0 == app).count();
            let (mine, rest) = grants.split_at(n);
            let pairs = mine.iter().map(|&(_, tenant, grant)| (tenant, grant));
            arena
                .write(4 + 8 * n, |w| w.app_grants(n, pairs))
                .map_err(|()| no_room(at))?;
            grants = rest;
        }
        let bucket = arena
            .grant_bucket(self.generation, first)
            .ok_or(no_room(at))?;
        let stored = sink.grant_bucket(self.next, bucket);
        super::stored(stored, at, "a grant bucket could not be stored")?;
        self.grants.clear();
        self.next += 1;
        Ok(())
    }
}
