//! Bounds-checked reading of the compiled form: a reader over bytes, tables
//! with an offset per record, sorted fixed-size records, and the located but
//! not yet decoded parts of a snapshot.

use super::{checksum, DecodeError, GRANT_REF_SIZE, HEADER_LEN, MAGIC, PENDING_SIZE};
use crate::document::{KeyStatus, Right};
use crate::records::{
    AppEntry, AssertedTables, Grants, Idx, IdxList, KeyEntry, ListedTeam, OrgEntry, PrincipalRef,
    ProductEntry, RouteEntry, RouteTeams, SnapshotStats, UserEntry, DISTINCT_DIGEST_BYTES,
};
use crate::time::Timestamp;
use rustc_hash::FxHashMap;
use std::cmp::Ordering;

pub(super) struct Reader<'b> {
    pub(super) bytes: &'b [u8],
    pub(super) at: usize,
    /// Where `bytes` start in the whole buffer, for error offsets.
    pub(super) base: usize,
}

pub(super) type Result<T> = std::result::Result<T, DecodeError>;

impl<'b> Reader<'b> {
    pub(super) fn new(bytes: &'b [u8]) -> Reader<'b> {
        Reader::at(bytes, 0)
    }
    /// A reader of `bytes`, which start at `base` in the whole buffer.
    pub(super) fn at(bytes: &'b [u8], base: usize) -> Reader<'b> {
        Reader { bytes, at: 0, base }
    }
    pub(super) fn fail<T>(&self, what: &'static str) -> Result<T> {
        Err(DecodeError {
            offset: self.base + self.at,
            what,
        })
    }
    pub(super) fn take(&mut self, n: usize) -> Result<&'b [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end.and_then(|e| self.bytes.get(self.at..e)) {
            Some(slice) => {
                self.at += n;
                Ok(slice)
            }
            None => self.fail("truncated"),
        }
    }
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice = self.take(N)?;
        slice.try_into().or_else(|_| self.fail("truncated"))
    }
    pub(super) fn u8(&mut self) -> Result<u8> {
        Ok(u8::from_le_bytes(self.array()?))
    }
    pub(super) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(super) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(super) fn u32_be(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(super) fn idx_be(&mut self, bound: usize) -> Result<Idx> {
        let i = self.u32_be()?;
        if (i as usize) < bound {
            Ok(i)
        } else {
            self.fail("index out of range")
        }
    }
    /// A collection length, sanity-checked against the bytes left (each element
    /// takes at least `min_size` bytes) so a corrupt length cannot allocate wildly.
    pub(super) fn len(&mut self, min_size: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size.max(1)) > self.bytes.len().saturating_sub(self.at) {
            return self.fail("length larger than the data");
        }
        Ok(n)
    }
    pub(super) fn bytes(&mut self) -> Result<&'b [u8]> {
        let n = self.len(1)?;
        self.take(n)
    }
    pub(super) fn str_ref(&mut self) -> Result<&'b str> {
        let raw = self.bytes()?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s),
            Err(_) => self.fail("string is not UTF-8"),
        }
    }
    pub(super) fn str(&mut self) -> Result<Box<str>> {
        self.str_ref().map(Box::from)
    }
    /// A list of ids (roles, teams), joined by commas as the annotation
    /// headers carry them: none may be empty or hold a comma, or the list
    /// could not be told apart again ([`crate::records::Grants::roles`]).
    pub(super) fn comma_joined(&mut self) -> Result<Box<str>> {
        let n = self.len(4)?;
        let mut joined = String::new();
        for i in 0..n {
            let item = self.str_ref()?;
            if item.is_empty() || item.contains(',') {
                return self.fail("a role or team id is empty or holds a comma");
            }
            if i > 0 {
                joined.push(',');
            }
            joined.push_str(item);
        }
        Ok(joined.into())
    }
    pub(super) fn strs(&mut self) -> Result<Box<[Box<str>]>> {
        let n = self.len(4)?;
        (0..n).map(|_| self.str()).collect()
    }
    pub(super) fn idx(&mut self, bound: usize) -> Result<Idx> {
        let i = self.u32()?;
        if (i as usize) < bound {
            Ok(i)
        } else {
            self.fail("index out of range")
        }
    }
    pub(super) fn idxs(&mut self, bound: usize) -> Result<Box<[Idx]>> {
        let n = self.len(4)?;
        (0..n).map(|_| self.idx(bound)).collect()
    }
    pub(super) fn opt_idx(&mut self, bound: usize) -> Result<Option<Idx>> {
        match self.u32()? {
            u32::MAX => Ok(None),
            i if (i as usize) < bound => Ok(Some(i)),
            _ => self.fail("index out of range"),
        }
    }
    pub(super) fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => self.fail("not a boolean"),
        }
    }
    pub(super) fn opt_time(&mut self) -> Result<Option<Timestamp>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(Timestamp::from_unix_nanos(self.u64()? as i64))),
            _ => self.fail("not an optional time"),
        }
    }
    pub(super) fn opt_right(&mut self) -> Result<Option<Right>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(Right::Read)),
            2 => Ok(Some(Right::Write)),
            _ => self.fail("not a team right"),
        }
    }
    /// A whole key record, its app and environments below `apps` and `envs`.
    pub(super) fn key(mut self, apps: usize, envs: usize) -> Result<KeyEntry> {
        let digest = self.array::<32>()?;
        self.key_after_digest(digest, apps, envs)
    }
    /// A key record of the key tier, which holds the digest's leading
    /// [`DISTINCT_DIGEST_BYTES`] (those of `digest`, the key searched for),
    /// the app, and the status, read-only and what follows packed into one
    /// byte ([`KeyFlags`]).
    pub(super) fn tier_key(
        mut self,
        digest: &[u8; 32],
        apps: usize,
        envs: usize,
    ) -> Result<KeyEntry> {
        let stored = self.take(DISTINCT_DIGEST_BYTES)?;
        if digest.get(..DISTINCT_DIGEST_BYTES) != Some(stored) {
            return self.fail("not the key searched for");
        }
        let app = self.idx(apps)?;
        let flags = self.u8()?;
        let status = match flags & KeyFlags::STATUS {
            0 if flags & !KeyFlags::ALL == 0 => KeyStatus::Active,
            1 if flags & !KeyFlags::ALL == 0 => KeyStatus::Revoked,
            2 if flags & !KeyFlags::ALL == 0 => KeyStatus::Pending,
            _ => return self.fail("not the flags of a key"),
        };
        let expires_at = match flags & KeyFlags::EXPIRES {
            0 => None,
            _ => Some(Timestamp::from_unix_nanos(self.u64()? as i64)),
        };
        let envs = match flags & KeyFlags::ENVS {
            0 => None,
            _ => Some(IdxList::from(self.idxs(envs)?.into_vec())),
        };
        self.done()?;
        Ok(KeyEntry {
            digest: *digest,
            app,
            status,
            expires_at,
            read_only: flags & KeyFlags::READ_ONLY != 0,
            envs,
        })
    }
    /// The next of records of `fields` laid back to back (a bucket of the
    /// key tier): a reader over that record alone, `self` moved past it.
    /// Its length is walked from its tags and lengths ([`walk`]); the tags
    /// themselves are checked when the record is read.
    pub(super) fn next_record(&mut self, fields: &[Field]) -> Result<Reader<'b>> {
        let start = self.at;
        let rest = self.bytes.get(start..).unwrap_or_default();
        let len = walk(fields, rest).unwrap_or(usize::MAX);
        let record = self.take(len)?;
        Ok(Reader::at(record, self.base + start))
    }
    /// A run of records laid back to back (a bucket of the key tier), with
    /// a mark every [`RUN_STRIDE`] records. What follows the run must be
    /// nothing: a bucket cut short or with bytes after its records is
    /// refused whatever is looked for.
    pub(super) fn run(&mut self, fields: &'static [Field]) -> Result<Run<'b>> {
        let count = self.u32()? as usize;
        let length = self.u32()? as usize;
        let marks = self.take(count.div_ceil(RUN_STRIDE).saturating_mul(4))?;
        let base = self.base + self.at;
        let bytes = self.take(length)?;
        self.done()?;
        Ok(Run {
            count,
            marks,
            records: Reader { bytes, at: 0, base },
            fields,
        })
    }
    fn key_after_digest(mut self, digest: [u8; 32], apps: usize, envs: usize) -> Result<KeyEntry> {
        let app = self.idx(apps)?;
        let status = match self.u8()? {
            0 => KeyStatus::Active,
            1 => KeyStatus::Revoked,
            2 => KeyStatus::Pending,
            _ => return self.fail("not a key status"),
        };
        let expires_at = self.opt_time()?;
        let read_only = self.bool()?;
        let envs = match self.u8()? {
            0 => None,
            1 => Some(IdxList::from(self.idxs(envs)?.into_vec())),
            _ => return self.fail("not an optional environment list"),
        };
        self.done()?;
        Ok(KeyEntry {
            digest,
            app,
            status,
            expires_at,
            read_only,
            envs,
        })
    }
    /// The end of a record: everything read.
    pub(super) fn done(&self) -> Result<()> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            self.fail("trailing bytes")
        }
    }
    pub(super) fn table(&mut self) -> Result<Table<'b>> {
        let count = self.len(4)?;
        let offsets_at = self.base + self.at;
        let offsets = self.take(count.saturating_add(1).saturating_mul(4))?;
        let last = offsets
            .get(count * 4..)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b: [u8; 4]| u32::from_le_bytes(b) as usize);
        let records_at = self.base + self.at;
        let records = self.take(last)?;
        Ok(Table {
            count,
            offsets,
            offsets_at,
            records,
            records_at,
        })
    }
    /// `count` fixed-size records.
    pub(super) fn fixed(&mut self, size: usize) -> Result<Fixed<'b>> {
        let count = self.len(size)?;
        let at = self.base + self.at;
        let bytes = self.take(count * size)?;
        Ok(Fixed {
            count,
            size,
            bytes,
            at,
        })
    }
}

/// Variable-size records, each reachable by its index.
pub(super) struct Table<'b> {
    pub(super) count: usize,
    pub(super) offsets: &'b [u8],
    pub(super) offsets_at: usize,
    pub(super) records: &'b [u8],
    pub(super) records_at: usize,
}

impl<'b> Table<'b> {
    pub(super) fn offset(&self, i: usize) -> Option<usize> {
        let raw: [u8; 4] = self.offsets.get(i * 4..i * 4 + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(raw) as usize)
    }
    /// A reader over record `i` alone.
    pub(super) fn record(&self, i: usize) -> Result<Reader<'b>> {
        let bounds = self.offset(i).zip(self.offset(i + 1));
        match bounds.and_then(|(start, end)| Some((start, self.records.get(start..end)?))) {
            Some((start, bytes)) => Ok(Reader::at(bytes, self.records_at + start)),
            None => Err(DecodeError {
                offset: self.offsets_at + i * 4,
                what: "record offsets out of order",
            }),
        }
    }
    /// In a table sorted by the bytes `key` reads: the record whose key is `target`.
    pub(super) fn search(
        &self,
        key: fn(&mut Reader<'b>) -> Result<&'b [u8]>,
        target: &[u8],
    ) -> Result<Option<usize>> {
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let mid = low + (high - low) / 2;
            match key(&mut self.record(mid)?)?.cmp(target) {
                Ordering::Less => low = mid + 1,
                Ordering::Greater => high = mid,
                Ordering::Equal => return Ok(Some(mid)),
            }
        }
        Ok(None)
    }
    /// In an (id, index) table sorted by id: the index of `id`.
    pub(super) fn find_id(&self, id: &str) -> Result<Option<Idx>> {
        let Some(i) = self.search(id_key, id.as_bytes())? else {
            return Ok(None);
        };
        let mut record = self.record(i)?;
        record.str_ref()?;
        record.u32().map(Some)
    }
    /// Checks a key table: sorted strictly by digest, and no two digests
    /// agreeing on their leading [`DISTINCT_DIGEST_BYTES`], the bytes the key
    /// tier keeps (one pass: they would be neighbours).
    pub(super) fn check_key_order(&self) -> Result<()> {
        let mut previous: Option<&[u8]> = None;
        for i in 0..self.count {
            let mut record = self.record(i)?;
            let current = digest_key(&mut record)?;
            if let Some(Err(what)) = previous.map(|p| key_follows(p, current)) {
                return record.fail(what);
            }
            previous = Some(current);
        }
        Ok(())
    }
    /// Checks that the table is sorted strictly by the bytes `key` reads.
    pub(super) fn check_sorted(&self, key: fn(&mut Reader<'b>) -> Result<&'b [u8]>) -> Result<()> {
        let mut previous: Option<&[u8]> = None;
        for i in 0..self.count {
            let mut record = self.record(i)?;
            let current = key(&mut record)?;
            if previous.is_some_and(|p| p >= current) {
                return record.fail("records not sorted");
            }
            previous = Some(current);
        }
        Ok(())
    }
}

/// Whether a key record whose digest is `current` may follow one whose
/// digest is `previous` in a key table: strictly after it, and not sharing
/// the leading [`DISTINCT_DIGEST_BYTES`] the key tier keeps.
pub(super) fn key_follows(
    previous: &[u8],
    current: &[u8],
) -> std::result::Result<(), &'static str> {
    if previous >= current {
        return Err("records not sorted");
    }
    if previous.get(..DISTINCT_DIGEST_BYTES) == current.get(..DISTINCT_DIGEST_BYTES) {
        return Err("two api keys share the leading bytes of their digests");
    }
    Ok(())
}

/// The sort key of a key record: its digest.
pub(super) fn digest_key<'b>(r: &mut Reader<'b>) -> Result<&'b [u8]> {
    r.take(32)
}

/// Records of a run between two marks: a reader walks at most these.
pub(super) const RUN_STRIDE: usize = 16;

/// Records laid back to back, with a mark (the offset of a record) every
/// [`RUN_STRIDE`] of them.
pub(super) struct Run<'b> {
    pub(super) count: usize,
    marks: &'b [u8],
    records: Reader<'b>,
    fields: &'static [Field],
}

impl<'b> Run<'b> {
    /// A reader over the records from mark `m` on.
    fn at_mark(&self, m: usize) -> Result<Reader<'b>> {
        let raw = self
            .marks
            .get(m * 4..m * 4 + 4)
            .and_then(|b| b.try_into().ok());
        let Some(at) = raw.map(|b: [u8; 4]| u32::from_le_bytes(b) as usize) else {
            return self.records.fail("a mark past the run");
        };
        let mut r = Reader {
            at: 0,
            ..self.records
        };
        r.take(at)?;
        Ok(r)
    }

    /// Record `j`: walked from the mark before it.
    pub(super) fn record(&self, j: usize) -> Result<Reader<'b>> {
        if j >= self.count {
            return self.records.fail("index out of range");
        }
        let mut r = self.at_mark(j / RUN_STRIDE)?;
        for _ in 0..j % RUN_STRIDE {
            r.next_record(self.fields)?;
        }
        r.next_record(self.fields)
    }

    /// In a run sorted by its records' leading `key.len()` bytes: the record
    /// that leads with `key`, walked from the last mark not after it.
    pub(super) fn find(&self, key: &[u8]) -> Result<Option<Reader<'b>>> {
        let lead = |m: usize| -> Result<std::cmp::Ordering> {
            let mut r = self.at_mark(m)?;
            Ok(r.take(key.len())?.cmp(key))
        };
        let marks = self.count.div_ceil(RUN_STRIDE);
        // The first mark whose record leads after `key`; the one before it.
        let (mut low, mut high) = (0, marks);
        while low < high {
            let mid = low + (high - low) / 2;
            if lead(mid)? == Ordering::Greater {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        let Some(m) = low.checked_sub(1) else {
            return Ok(None);
        };
        let mut r = self.at_mark(m)?;
        let last = self.count.min((m + 1) * RUN_STRIDE);
        for _ in m * RUN_STRIDE..last {
            let record = r.next_record(self.fields)?;
            match record.bytes.get(..key.len()).cmp(&Some(key)) {
                Ordering::Less => continue,
                Ordering::Greater => return Ok(None),
                Ordering::Equal => return Ok(Some(record)),
            }
        }
        Ok(None)
    }
}

/// A field of a record, as far as its length goes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Field {
    /// So many bytes.
    Bytes(usize),
    /// A string: its `u32` length, then its bytes.
    Str,
    /// A list of `u32` length, then so many bytes each.
    List(usize),
    /// A tag, then 8 bytes when it is 1.
    OptTime,
    /// A tag, then a list of 4-byte indexes when it is 1.
    OptIdxs,
    /// [`KeyFlags`], then an expiry and an environment list as they say.
    KeyFlags,
}

/// The fields of a compiled key record.
pub(super) const KEY_FIELDS: &[Field] = &[
    Field::Bytes(32 + 4 + 1),
    Field::OptTime,
    Field::Bytes(1),
    Field::OptIdxs,
];

/// The fields of a key bucket's record: the digest's leading
/// [`DISTINCT_DIGEST_BYTES`], the app, the [`KeyFlags`] and what they say
/// follows.
pub(super) const TIER_KEY_FIELDS: &[Field] =
    &[Field::Bytes(DISTINCT_DIGEST_BYTES + 4), Field::KeyFlags];

/// The byte a key bucket's record packs a key's status, read-only and
/// optional fields into (3 bytes a key less than the compiled record's
/// status, read-only and two tags: 2.9 MiB of Envoy's memory at 1M keys).
pub(super) struct KeyFlags;

impl KeyFlags {
    /// The status: 0 active, 1 revoked, 2 pending.
    pub(super) const STATUS: u8 = 0b11;
    pub(super) const READ_ONLY: u8 = 1 << 2;
    /// An expiry (8 bytes) follows.
    pub(super) const EXPIRES: u8 = 1 << 3;
    /// An environment list follows.
    pub(super) const ENVS: u8 = 1 << 4;
    /// Every bit a record may set.
    pub(super) const ALL: u8 = Self::STATUS | Self::READ_ONLY | Self::EXPIRES | Self::ENVS;
}

/// The fields of an app record: principal, organization and approved,
/// products.
pub(super) const APP_FIELDS: &[Field] = &[Field::Str, Field::Bytes(4 + 1), Field::List(4)];

/// The fields of an app's grants in a grant bucket: (tenant, grant) pairs.
pub(super) const GRANTS_FIELDS: &[Field] = &[Field::List(8)];

/// How long a record of `fields` is, from its first `bytes`: `Ok` once they
/// tell, else `Err` with how many bytes must be there before they do. A tag
/// other than 0 and 1 counts as 0 here; reading the record refuses it.
pub(super) fn walk(fields: &[Field], bytes: &[u8]) -> std::result::Result<usize, usize> {
    let byte = |at: usize| bytes.get(at).copied().ok_or(at + 1);
    let length = |at: usize| {
        let raw = bytes.get(at..at + 4).and_then(|b| b.try_into().ok());
        raw.map(|b| u32::from_le_bytes(b) as usize).ok_or(at + 4)
    };
    let mut at = 0usize;
    for field in fields {
        at = match *field {
            Field::Bytes(n) => at.saturating_add(n),
            Field::Str => at.saturating_add(4).saturating_add(length(at)?),
            Field::List(size) => at
                .saturating_add(4)
                .saturating_add(length(at)?.saturating_mul(size)),
            Field::OptTime if byte(at)? == 1 => at + 9,
            Field::OptTime => at + 1,
            Field::OptIdxs if byte(at)? == 1 => {
                let n = length(at + 1)?;
                (at + 5).saturating_add(n.saturating_mul(4))
            }
            Field::OptIdxs => at + 1,
            Field::KeyFlags => {
                let flags = byte(at)?;
                let at = at + 1 + if flags & KeyFlags::EXPIRES != 0 { 8 } else { 0 };
                match flags & KeyFlags::ENVS {
                    0 => at,
                    _ => (at + 4).saturating_add(length(at)?.saturating_mul(4)),
                }
            }
        };
    }
    Ok(at)
}

/// The sort key of an id index record: the id.
pub(super) fn id_key<'b>(r: &mut Reader<'b>) -> Result<&'b [u8]> {
    r.str_ref().map(str::as_bytes)
}

/// Fixed-size records, sorted by their leading bytes.
pub(super) struct Fixed<'b> {
    pub(super) count: usize,
    pub(super) size: usize,
    pub(super) bytes: &'b [u8],
    pub(super) at: usize,
}

impl<'b> Fixed<'b> {
    pub(super) fn record(&self, i: usize) -> Reader<'b> {
        let start = i * self.size;
        let bytes = self.bytes.get(start..start + self.size).unwrap_or_default();
        Reader::at(bytes, self.at + start)
    }
    /// Checks that the records are sorted strictly by their bytes.
    pub(super) fn check_sorted(&self) -> Result<()> {
        for i in 1..self.count {
            let (previous, current) = (self.record(i - 1), self.record(i));
            if previous.bytes >= current.bytes {
                return current.fail("records not sorted");
            }
        }
        Ok(())
    }

    /// The indexes of the records whose leading `prefix.len()` bytes equal `prefix`.
    pub(super) fn range(&self, prefix: &[u8]) -> std::ops::Range<usize> {
        let lead = |i: usize| {
            let start = i * self.size;
            self.bytes
                .get(start..start + prefix.len())
                .unwrap_or_default()
        };
        partition(self.count, |i| lead(i) < prefix)..partition(self.count, |i| lead(i) <= prefix)
    }
}

/// The first index in `0..count` for which `before` is false (it must be true
/// on a prefix of the range and false after).
pub(super) fn partition(count: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (0, count);
    while low < high {
        let mid = low + (high - low) / 2;
        if before(mid) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low
}

/// The parts of an encoded snapshot, located but (for the large tables) not
/// yet decoded.
pub(super) struct Parts<'b> {
    pub(super) revision: Box<str>,
    pub(super) stats: SnapshotStats,
    pub(super) envs: FxHashMap<Box<str>, Idx>,
    pub(super) orgs: Table<'b>,
    pub(super) org_names: Table<'b>,
    pub(super) routes: Table<'b>,
    pub(super) products: Table<'b>,
    pub(super) apps: Table<'b>,
    pub(super) keys: Table<'b>,
    pub(super) users: Table<'b>,
    pub(super) grants: Table<'b>,
    pub(super) by_principal: Fixed<'b>,
    pub(super) pending: Fixed<'b>,
    pub(super) app_ids: Table<'b>,
    pub(super) user_ids: Table<'b>,
    pub(super) client_ids: Table<'b>,
    pub(super) emails: Table<'b>,
    pub(super) teams: Table<'b>,
    pub(super) roles: Table<'b>,
    pub(super) groups: Table<'b>,
}

pub(super) fn read_parts(bytes: &[u8]) -> Result<Parts<'_>> {
    read_parts_with(bytes, Checksum::Check)
}

/// Whether [`read_parts_with`] compares the header's checksum with the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checksum {
    Check,
    /// Already compared, over the bytes as they arrived: the buffer read is
    /// what a streamed cut kept of them (its key table emptied).
    Compared,
}

/// The leading parts of a snapshot: its header and the tables before its
/// key table.
pub(super) struct Head<'b> {
    revision: Box<str>,
    stats: SnapshotStats,
    pub(super) envs: FxHashMap<Box<str>, Idx>,
    orgs: Table<'b>,
    org_names: Table<'b>,
    routes: Table<'b>,
    products: Table<'b>,
    pub(super) apps: Table<'b>,
}

/// Reads the header and the tables before the key table, leaving `r` at
/// the key table.
pub(super) fn read_head<'b>(r: &mut Reader<'b>, checksum_of: Option<&[u8]>) -> Result<Head<'b>> {
    let prefix = read_prefix(r, checksum_of)?;
    Ok(Head {
        revision: prefix.revision,
        stats: prefix.stats,
        envs: prefix.envs,
        orgs: prefix.orgs,
        org_names: prefix.org_names,
        routes: prefix.routes,
        products: prefix.products,
        apps: r.table()?,
    })
}

/// What comes before the app table: the header, the organizations, their
/// names, the routes and the products.
pub(super) struct Prefix<'b> {
    revision: Box<str>,
    stats: SnapshotStats,
    pub(super) envs: FxHashMap<Box<str>, Idx>,
    pub(super) orgs: Table<'b>,
    org_names: Table<'b>,
    routes: Table<'b>,
    pub(super) products: Table<'b>,
}

/// Reads the header and the tables before the app table, leaving `r` at
/// the app table.
pub(super) fn read_prefix<'b>(
    r: &mut Reader<'b>,
    checksum_of: Option<&[u8]>,
) -> Result<Prefix<'b>> {
    if r.take(MAGIC.len())? != MAGIC {
        return r.fail(
            "not a tenantgate compiled snapshot of this version (recompile it with this policyctl)",
        );
    }
    let sum = r.u64()?;
    if checksum_of.is_some_and(|body| sum != checksum(body)) {
        return r.fail("checksum mismatch (the snapshot is damaged)");
    }
    let revision = r.str()?;
    let mut counts = [0usize; 7];
    for count in &mut counts {
        *count = r.u32()? as usize;
    }
    let [organizations, teams, users, apps, api_keys, routes, grants] = counts;
    let stats = SnapshotStats {
        organizations,
        teams,
        users,
        apps,
        api_keys,
        routes,
        grants,
    };
    let env_count = r.len(4)?;
    let mut envs: FxHashMap<Box<str>, Idx> = FxHashMap::default();
    for i in 0..env_count {
        envs.insert(r.str()?, i as Idx);
    }
    Ok(Prefix {
        revision,
        stats,
        envs,
        orgs: r.table()?,
        org_names: r.table()?,
        routes: r.table()?,
        products: r.table()?,
    })
}

pub(super) fn read_parts_with(bytes: &[u8], sum: Checksum) -> Result<Parts<'_>> {
    let mut r = Reader::new(bytes);
    let body = bytes.get(HEADER_LEN..).unwrap_or_default();
    let head = read_head(&mut r, (sum == Checksum::Check).then_some(body))?;
    let parts = Parts {
        revision: head.revision,
        stats: head.stats,
        envs: head.envs,
        orgs: head.orgs,
        org_names: head.org_names,
        routes: head.routes,
        products: head.products,
        apps: head.apps,
        keys: r.table()?,
        users: r.table()?,
        grants: r.table()?,
        by_principal: r.fixed(GRANT_REF_SIZE)?,
        pending: r.fixed(PENDING_SIZE)?,
        app_ids: r.table()?,
        user_ids: r.table()?,
        client_ids: r.table()?,
        emails: r.table()?,
        teams: r.table()?,
        roles: r.table()?,
        groups: r.table()?,
    };
    r.done()?;
    Ok(parts)
}

impl Parts<'_> {
    /// Every role and group, for `asserted` tokens (x3).
    pub(super) fn asserted(&self) -> Result<AssertedTables> {
        let mut tables = AssertedTables::default();
        for i in 0..self.roles.count {
            let mut r = self.roles.record(i)?;
            let id = r.str()?;
            let word_count = r.len(8)?;
            let bits = (0..word_count)
                .map(|_| r.u64())
                .collect::<Result<Box<[u64]>>>()?;
            r.done()?;
            tables.roles.insert(id, bits.into());
        }
        for i in 0..self.groups.count {
            let mut r = self.groups.record(i)?;
            let id = r.str()?;
            let org = r.idx(self.orgs.count)?;
            let roles = r.strs()?;
            r.done()?;
            tables.groups.insert(id, (org, roles));
        }
        Ok(tables)
    }

    pub(super) fn org(&self, i: usize) -> Result<OrgEntry> {
        let mut r = self.orgs.record(i)?;
        let org = OrgEntry {
            id: r.str()?,
            handle: r.str()?,
            parent: r.opt_idx(self.orgs.count)?,
            suspended: r.bool()?,
            expires_at: r.opt_time()?,
            envs: r.idxs(self.envs.len())?.into(),
            evaluation: r.bool()?,
            issuers: r.strs()?,
        };
        r.done()?;
        Ok(org)
    }

    pub(super) fn route(&self, i: usize) -> Result<RouteEntry> {
        let mut r = self.routes.record(i)?;
        let id = r.str()?;
        let prefix: Box<[u8]> = r.bytes()?.into();
        let hosts = r.strs()?;
        let methods = r.strs()?;
        let tenant = r.opt_idx(self.orgs.count)?;
        let teams = match r.u8()? {
            0 => RouteTeams::Unrestricted,
            1 => RouteTeams::AnyTeam,
            2 => {
                let count = r.len(8)?;
                let mut teams = Vec::with_capacity(count);
                for _ in 0..count {
                    let team = r.idx(self.stats.teams)?;
                    let org = r.idx(self.orgs.count)?;
                    teams.push(ListedTeam { team, org });
                }
                RouteTeams::Listed(teams.into())
            }
            _ => return r.fail("not a route team rule"),
        };
        let route = RouteEntry {
            id,
            prefix,
            hosts,
            methods,
            tenant,
            teams,
            read_permission: r.opt_idx(usize::MAX)?,
            write_permission: r.opt_idx(usize::MAX)?,
            public: r.bool()?,
        };
        r.done()?;
        Ok(route)
    }

    pub(super) fn product(&self, i: usize) -> Result<ProductEntry> {
        let mut r = self.products.record(i)?;
        let product = ProductEntry {
            routes: r.idxs(self.routes.count)?.into(),
            envs: r.idxs(self.envs.len())?.into(),
        };
        r.done()?;
        Ok(product)
    }

    pub(super) fn app(&self, i: usize) -> Result<AppEntry> {
        let mut r = self.apps.record(i)?;
        let app = AppEntry {
            principal: r.str()?,
            org: r.idx(self.orgs.count)?,
            approved: r.bool()?,
            products: IdxList::from(r.idxs(self.products.count)?.into_vec()),
            home_grants: None,
        };
        r.done()?;
        Ok(app)
    }

    pub(super) fn key(&self, i: usize) -> Result<KeyEntry> {
        self.keys.record(i)?.key(self.apps.count, self.envs.len())
    }

    pub(super) fn user(&self, i: usize) -> Result<UserEntry> {
        let mut r = self.users.record(i)?;
        let user = UserEntry {
            principal: r.str()?,
            default_tenant: r.opt_idx(self.orgs.count)?,
        };
        r.done()?;
        Ok(user)
    }

    pub(super) fn grants(&self, i: usize) -> Result<Grants> {
        let mut r = self.grants.record(i)?;
        let roles_header = r.comma_joined()?;
        let teams_header = r.comma_joined()?;
        let right_count = r.len(5)?;
        let mut rights = Vec::with_capacity(right_count);
        for _ in 0..right_count {
            let team = r.u32()?;
            match r.opt_right()? {
                Some(right) => rights.push((team, right)),
                None => return r.fail("a team right is missing"),
            }
        }
        let star = r.opt_right()?;
        let word_count = r.len(8)?;
        let permissions = (0..word_count)
            .map(|_| r.u64())
            .collect::<Result<Box<[u64]>>>()?;
        r.done()?;
        Ok(Grants {
            roles_header,
            teams_header,
            best_team_right: rights.iter().map(|(_, right)| *right).max(),
            rights: rights.into(),
            star,
            permissions: permissions.into(),
        })
    }

    /// A `by_principal` record: principal, tenant, grant.
    pub(super) fn grant_ref(&self, r: &mut Reader<'_>) -> Result<(PrincipalRef, Idx, Idx)> {
        let principal = match r.u8()? {
            0 => PrincipalRef::App(r.idx_be(self.apps.count)?),
            1 => PrincipalRef::User(r.idx_be(self.users.count)?),
            _ => return r.fail("not a principal kind"),
        };
        Ok((
            principal,
            r.idx_be(self.orgs.count)?,
            r.idx_be(self.grants.count)?,
        ))
    }

    pub(super) fn pending_pair(&self, r: &mut Reader<'_>) -> Result<(Idx, Idx)> {
        Ok((r.idx_be(self.users.count)?, r.idx_be(self.orgs.count)?))
    }

    /// An (id, index) table read whole, checking each index against `bound`.
    pub(super) fn id_map(table: &Table<'_>, bound: usize) -> Result<FxHashMap<Box<str>, Idx>> {
        let mut map = FxHashMap::default();
        map.reserve(table.count);
        for i in 0..table.count {
            let mut r = table.record(i)?;
            let id = r.str()?;
            map.insert(id, r.idx(bound)?);
            r.done()?;
        }
        Ok(map)
    }

    /// Checks an (id, index) table as [`Parts::id_map`] does, building nothing.
    pub(super) fn check_id_table(table: &Table<'_>, bound: usize) -> Result<()> {
        for i in 0..table.count {
            let mut r = table.record(i)?;
            r.str_ref()?;
            r.idx(bound)?;
            r.done()?;
        }
        Ok(())
    }

    pub(super) fn team(&self, r: &mut Reader<'_>) -> Result<(Box<str>, (Idx, Idx))> {
        let id = r.str()?;
        let team = r.idx(self.stats.teams)?;
        let org = r.idx(self.orgs.count)?;
        r.done()?;
        Ok((id, (team, org)))
    }
}
