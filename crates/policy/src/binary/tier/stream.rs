//! The key tier cut while a compiled snapshot arrives (issue 12), so that
//! the fetching VM never holds the key table, and, when the apps move into
//! the tier, the app table, the apps' grant references and the id indexes
//! into the apps: at 1M keys and 250,000 apps they are 66 of the snapshot's
//! 68 MB, and a VM's memory never shrinks.
//!
//! The snapshot is a sequence of sections. Those the stream reads as they
//! arrive are, in order: the app table (`apps.rs`), the key table
//! (`keys.rs`), the grant references (`refs.rs`), the app id index and the
//! Otoroshi client id index (`apps.rs`); with [`Apps::Keep`], the key table
//! alone. Every other byte is kept, and each streamed table's place in what
//! is kept holds an empty table (the grant references: the users' only).
//! What is kept is then a compiled snapshot without keys and (moving) apps,
//! which the whole-body decoder reads as it reads the full one with
//! [`Apps::Move`] (`decode.rs`, `Leave::KeysAndApps`).
//!
//! Each streamed record is checked as the whole-body decoder checks it, and
//! tables are read by [`table::Table`], which compares the offsets the
//! records make with those the table declares. Key, app and grant buckets
//! go to a [`TierSink`] as they are complete. The checksum is computed over
//! the bytes as
//! they arrive, and what was kept is decoded only once it matches. So a
//! stream accepts the bytes `decode_split` accepts and cuts the same tier
//! (but for the app id index, compared by a keyed sum: `apps.rs`).
//!
//! The sink's buckets are written before the checksum (and a signature) are
//! known: the caller writes them where nothing reads them until the whole
//! snapshot is accepted (the filter's spare tier slot, published only then).

mod apps;
mod keys;
mod refs;
mod table;

use super::cut::{cut_parts, KeyCut};
use super::Apps;
use crate::binary::read::{read_head, read_prefix, Checksum, Reader};
use crate::binary::{DecodeError, GRANT_REF_SIZE, HEADER_LEN, MAGIC, PENDING_SIZE};
use crate::snapshot::Snapshot;
use apps::{AppIds, AppRows, IdIndex, IdRows};
use keys::KeyRows;
use refs::{Bounds, Refs};
use table::{Read, Table};
use xxhash_rust::xxh3::Xxh3Default;

/// The fewest bytes a key record and its offset take: digest 32, app 4,
/// status 1, the expiry's, read-only's and environments' tags 1 each,
/// offset 4.
const MIN_KEY_BYTES: usize = 44;

/// Where a stream writes the tier as the snapshot arrives: the filter's
/// spare slot in Envoy's shared data; memory ([`MemoryTier`]) in tests.
/// Each bucket is stored once, in order of its kind; `false` if it could
/// not be, which ends the stream.
pub trait TierSink {
    /// Stores key bucket `i`.
    fn key_bucket(&mut self, i: u32, bucket: Vec<u8>) -> bool;
    /// Stores app bucket `i`.
    fn app_bucket(&mut self, i: u32, bucket: Vec<u8>) -> bool;
    /// Stores grant bucket `i` (the grants of app bucket `i`'s apps).
    fn grant_bucket(&mut self, i: u32, bucket: Vec<u8>) -> bool;
}

/// A [`TierSink`] in memory (tests, fuzzing, tools): it refuses a bucket
/// out of order.
#[derive(Debug, Default)]
pub struct MemoryTier {
    /// The key buckets, by index.
    pub keys: Vec<Vec<u8>>,
    /// The app buckets, by index.
    pub apps: Vec<Vec<u8>>,
    /// The grant buckets, by index.
    pub grants: Vec<Vec<u8>>,
}

/// Appends `bucket` as bucket `i` of `buckets`: `false` unless it is next.
fn next_bucket(buckets: &mut Vec<Vec<u8>>, i: u32, bucket: Vec<u8>) -> bool {
    let next = i as usize == buckets.len();
    buckets.push(bucket);
    next
}

impl TierSink for MemoryTier {
    fn key_bucket(&mut self, i: u32, bucket: Vec<u8>) -> bool {
        next_bucket(&mut self.keys, i, bucket)
    }

    fn app_bucket(&mut self, i: u32, bucket: Vec<u8>) -> bool {
        next_bucket(&mut self.apps, i, bucket)
    }

    fn grant_bucket(&mut self, i: u32, bucket: Vec<u8>) -> bool {
        next_bucket(&mut self.grants, i, bucket)
    }
}

/// The sections a stream reads as they arrive, in the snapshot's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Apps,
    Keys,
    Refs,
    AppIds,
    ClientIds,
}

const MOVING: &[Section] = &[
    Section::Apps,
    Section::Keys,
    Section::Refs,
    Section::AppIds,
    Section::ClientIds,
];
const KEEPING: &[Section] = &[Section::Keys];

/// The counts the sections are checked against, as they become known.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    envs: usize,
    orgs: usize,
    products: usize,
    apps: usize,
    users: usize,
    grants: usize,
}

/// A compiled snapshot being cut as it arrives.
pub struct StreamCut {
    generation: u64,
    apps: Apps,
    /// The snapshot's announced size.
    total: usize,
    /// Bytes pushed so far.
    seen: usize,
    /// XXH3-64 of every byte after the header, as they arrive.
    hasher: Xxh3Default,
    /// Every byte not streamed; an empty table in each streamed one's place.
    kept: Vec<u8>,
    /// Where the bytes kept since the last streamed section start: in
    /// `kept`, and in the snapshot.
    mark: usize,
    mark_at: usize,
    /// How many bytes to keep since `mark` before looking for the next
    /// section again: double what it last failed on, so that a run arriving
    /// in many small parts (or a hostile one, of millions of environments)
    /// is read a few times, not once per part.
    next_read: usize,
    /// Times a run of kept bytes was read (the tests' measure of the above).
    head_reads: usize,
    /// The sections to stream, and how many of them are behind.
    plan: &'static [Section],
    done: usize,
    counts: Counts,
    /// What the app table showed, for the app id index.
    ids: AppIds,
    /// Where the kept grant references' count goes, in `kept`.
    refs_count_at: usize,
    /// Key buckets and keys; app buckets: written.
    keys_written: Option<(u32, usize)>,
    apps_written: Option<u32>,
    phase: Phase,
}

enum Phase {
    /// Bytes are kept (until the next section is found in them, if any).
    Keep,
    Apps(Table<AppRows>),
    Keys(Table<KeyRows>),
    Refs(Refs),
    Ids(Table<IdRows>),
    Refused,
}

impl StreamCut {
    /// A cut of a snapshot of `total` bytes, whose buckets carry `generation`
    /// (drawn at random per round: it keys the app id comparison too);
    /// `buffer` (emptied, its capacity kept) holds what is kept.
    pub fn new(total: usize, generation: u64, apps: Apps, mut buffer: Vec<u8>) -> StreamCut {
        buffer.clear();
        StreamCut {
            generation,
            apps,
            total,
            seen: 0,
            hasher: Xxh3Default::new(),
            kept: buffer,
            mark: 0,
            mark_at: 0,
            next_read: 0,
            head_reads: 0,
            plan: match apps {
                Apps::Move => MOVING,
                Apps::Keep => KEEPING,
            },
            done: 0,
            counts: Counts::default(),
            ids: AppIds::default(),
            refs_count_at: 0,
            keys_written: None,
            apps_written: None,
            phase: Phase::Keep,
        }
    }

    /// Takes the next bytes of the snapshot; finished buckets go to `sink`.
    pub fn push(&mut self, bytes: &[u8], sink: &mut dyn TierSink) -> Result<(), DecodeError> {
        let skip = HEADER_LEN.saturating_sub(self.seen).min(bytes.len());
        self.hasher.update(bytes.get(skip..).unwrap_or_default());
        self.seen = self.seen.saturating_add(bytes.len());
        if self.seen > self.total {
            return self.refuse(self.total, "more bytes than announced");
        }
        let outcome = self.take(bytes, sink);
        if outcome.is_err() {
            self.phase = Phase::Refused;
        }
        outcome
    }

    /// With the apps kept, reserves what is kept once, from the first bytes:
    /// the snapshot less the least its key table can take (a key record is
    /// at least [`MIN_KEY_BYTES`] with its offset) by the key count the
    /// header announces. A header that lies only makes the buffer grow (or
    /// reserve no more than the whole snapshot would). Moving the apps, what
    /// is kept is small, and grows as it comes.
    fn reserve_for(&mut self, first: &[u8]) -> Result<(), DecodeError> {
        let mut r = Reader::new(first);
        let announced = r
            .take(MAGIC.len())
            .ok()
            .filter(|m| *m == MAGIC)
            .and_then(|_| {
                r.u64().ok()?;
                r.str_ref().ok()?;
                let counts: Vec<u32> = (0..5).map_while(|_| r.u32().ok()).collect();
                counts.get(4).map(|&keys| keys as usize)
            });
        // Not a header this reads (too short, or not compiled): grow as it comes.
        let Some(keys) = announced else {
            return Ok(());
        };
        let wanted = self
            .total
            .saturating_sub(keys.saturating_mul(MIN_KEY_BYTES));
        self.kept
            .try_reserve_exact(wanted)
            .map_err(|_| no_memory(wanted))
    }

    fn refuse(&mut self, offset: usize, what: &'static str) -> Result<(), DecodeError> {
        self.phase = Phase::Refused;
        Err(DecodeError { offset, what })
    }

    fn take(&mut self, bytes: &[u8], sink: &mut dyn TierSink) -> Result<(), DecodeError> {
        let read = match &mut self.phase {
            Phase::Keep => return self.take_kept(bytes, sink),
            Phase::Apps(table) => table.take(bytes, sink)?,
            Phase::Keys(table) => table.take(bytes, sink)?,
            Phase::Ids(table) => table.take(bytes, sink)?,
            Phase::Refs(refs) => refs.take(bytes, &mut self.kept, sink)?,
            Phase::Refused => {
                return Err(DecodeError {
                    offset: self.seen,
                    what: "the stream was refused",
                })
            }
        };
        match read {
            Read::More => Ok(()),
            Read::Done(rest) => {
                self.section_done();
                self.take(rest, sink)
            }
        }
    }

    /// Keeps `bytes`, and looks for the next section in what was kept since
    /// the last (every time it has doubled, and once the last byte is in).
    fn take_kept(&mut self, bytes: &[u8], sink: &mut dyn TierSink) -> Result<(), DecodeError> {
        match self.apps {
            Apps::Keep if self.kept.is_empty() => self.reserve_for(bytes)?,
            // What is kept is small, and grows by the part: exactly, for a
            // doubled buffer and its copy are the fetching VM's peak.
            Apps::Move => self
                .kept
                .try_reserve_exact(bytes.len())
                .map_err(|_| no_memory(bytes.len()))?,
            Apps::Keep => {}
        }
        keep(&mut self.kept, bytes)?;
        let Some(&section) = self.plan.get(self.done) else {
            return Ok(());
        };
        let since = self.kept.len() - self.mark;
        if since < self.next_read && self.seen < self.total {
            return Ok(());
        }
        match self.locate(section)? {
            Some(rest) => self.take(&rest, sink),
            None => {
                self.next_read = since.saturating_mul(2);
                Ok(())
            }
        }
    }

    /// Reads what was kept since the last section: once it holds what comes
    /// before `section` and its count, keeps an empty table in its place and
    /// hands back the bytes kept after its count (`None`: not yet there).
    fn locate(&mut self, section: Section) -> Result<Option<Vec<u8>>, DecodeError> {
        self.head_reads += 1;
        let mut r = Reader::at(self.kept.get(self.mark..).unwrap_or_default(), self.mark_at);
        let Ok(counts) = read_run(&mut r, section, self.apps, self.counts) else {
            return Ok(None);
        };
        let Ok(count) = r.u32().map(|n| n as usize) else {
            return Ok(None);
        };
        let (at, in_kept) = (self.mark_at + r.at - 4, self.mark + r.at - 4);
        // As `Reader::len` checks it against the whole snapshot.
        let least = if section == Section::Refs {
            GRANT_REF_SIZE
        } else {
            4
        };
        if count.saturating_mul(least) > self.total.saturating_sub(at + 4) {
            self.refuse(at, "length larger than the data")?;
        }
        self.counts = counts;
        let after = self.kept.get(in_kept + 4..).unwrap_or_default();
        let mut rest = Vec::new();
        rest.try_reserve_exact(after.len())
            .map_err(|_| no_memory(after.len()))?;
        rest.extend_from_slice(after);
        self.kept.truncate(in_kept);
        // An empty table (no records, one offset), or the users' references
        // counted once they are all read.
        let placeholder = if section == Section::Refs { 4 } else { 8 };
        self.kept.resize(in_kept + placeholder, 0);
        self.refs_count_at = in_kept;
        self.phase = self.section(section, count, at + 4);
        Ok(Some(rest))
    }

    /// The reader of `section`, of `count` records from `at`.
    fn section(&self, section: Section, count: usize, at: usize) -> Phase {
        let (key, c) = (self.generation, self.counts);
        let ids = |index| IdRows::new(key, c.apps, index);
        match section {
            Section::Apps => {
                let rows = AppRows::new(key, c.orgs, c.products);
                Phase::Apps(Table::new(count, at, key, rows))
            }
            Section::Keys => {
                let rows = KeyRows::new(key, count, c.apps, c.envs);
                Phase::Keys(Table::new(count, at, key, rows))
            }
            Section::Refs => {
                let bounds = Bounds {
                    apps: c.apps,
                    users: c.users,
                    orgs: c.orgs,
                    grants: c.grants,
                };
                Phase::Refs(Refs::new(key, count, at, bounds))
            }
            Section::AppIds => {
                let index = IdIndex::Apps {
                    seen: self.ids,
                    found: AppIds::default(),
                };
                Phase::Ids(Table::new(count, at, key, ids(index)))
            }
            Section::ClientIds => Phase::Ids(Table::new(count, at, key, ids(IdIndex::Clients))),
        }
    }

    /// After a streamed section: what it showed is noted, and bytes are kept
    /// from where it ended.
    fn section_done(&mut self) {
        let end_at = match std::mem::replace(&mut self.phase, Phase::Keep) {
            Phase::Apps(table) => {
                self.counts.apps = table.count;
                self.ids = table.rows.ids;
                self.apps_written = Some(table.rows.buckets);
                table.end_at()
            }
            Phase::Keys(table) => {
                self.keys_written = Some((table.rows.buckets, table.count));
                table.end_at()
            }
            Phase::Refs(refs) => {
                let count = refs.kept.to_le_bytes();
                let at = self.refs_count_at;
                if let Some(slot) = self.kept.get_mut(at..at + 4) {
                    slot.copy_from_slice(&count);
                }
                refs.end_at()
            }
            Phase::Ids(table) => table.end_at(),
            Phase::Keep | Phase::Refused => self.mark_at,
        };
        self.mark = self.kept.len();
        self.mark_at = end_at;
        self.next_read = 0;
        self.done += 1;
    }

    /// After the last byte: checks the checksum and hands back what was kept.
    pub fn finish(self) -> Result<Streamed, DecodeError> {
        let truncated = DecodeError {
            offset: self.seen,
            what: "truncated",
        };
        if self.seen != self.total {
            return Err(truncated);
        }
        match self.phase {
            Phase::Keep => {}
            Phase::Refused => {
                return Err(DecodeError {
                    offset: self.seen,
                    what: "the stream was refused",
                })
            }
            _ => return Err(truncated),
        }
        // Nothing found at all: everything was kept, and is decoded whole.
        if self.done == 0 {
            return Ok(Streamed {
                generation: self.generation,
                apps: self.apps,
                kept: self.kept,
                written: None,
            });
        }
        if self.done < self.plan.len() {
            return Err(truncated);
        }
        let sum = self
            .kept
            .get(MAGIC.len()..HEADER_LEN)
            .and_then(|b| b.try_into().ok());
        if sum.map(u64::from_le_bytes) != Some(self.hasher.digest()) {
            return Err(DecodeError {
                offset: MAGIC.len(),
                what: "checksum mismatch (the snapshot is damaged)",
            });
        }
        let mut kept = self.kept;
        if self.apps == Apps::Move {
            // Grown as it came (up to twice its length): the room past it
            // goes back to the allocator before the decode that follows.
            kept.shrink_to_fit();
        }
        Ok(Streamed {
            generation: self.generation,
            apps: self.apps,
            kept,
            written: self.keys_written.map(|keys| (keys, self.apps_written)),
        })
    }
}

/// Reads, from where the last streamed section ended, the kept sections
/// before `section`; the counts they tell.
fn read_run(
    r: &mut Reader<'_>,
    section: Section,
    apps: Apps,
    mut counts: Counts,
) -> Result<Counts, DecodeError> {
    match (section, apps) {
        (Section::Apps, _) => {
            let prefix = read_prefix(r, None)?;
            counts.envs = prefix.envs.len();
            counts.orgs = prefix.orgs.count;
            counts.products = prefix.products.count;
        }
        (Section::Keys, Apps::Keep) => {
            let head = read_head(r, None)?;
            counts.envs = head.envs.len();
            counts.apps = head.apps.count;
        }
        // Right after the app table.
        (Section::Keys, Apps::Move) => {}
        (Section::Refs, _) => {
            counts.users = r.table()?.count;
            counts.grants = r.table()?.count;
        }
        (Section::AppIds, _) => {
            r.fixed(PENDING_SIZE)?;
        }
        (Section::ClientIds, _) => {
            r.table()?;
        }
    }
    Ok(counts)
}

/// Appends `bytes`, refusing (not aborting) when the memory cannot grow:
/// whatever a hostile snapshot announces, a VM refuses it and keeps serving.
fn keep(buffer: &mut Vec<u8>, bytes: &[u8]) -> Result<(), DecodeError> {
    buffer
        .try_reserve(bytes.len())
        .map_err(|_| no_memory(bytes.len()))?;
    buffer.extend_from_slice(bytes);
    Ok(())
}

/// `Err(what)` at `at` when the sink refused a bucket.
fn stored(stored: bool, at: usize, what: &'static str) -> Result<(), DecodeError> {
    match stored {
        true => Ok(()),
        false => Err(DecodeError { offset: at, what }),
    }
}

fn no_memory(bytes: usize) -> DecodeError {
    DecodeError {
        offset: bytes,
        what: "cannot reserve the memory to take the snapshot in",
    }
}

/// What a stream kept of an accepted compiled snapshot.
pub struct Streamed {
    generation: u64,
    apps: Apps,
    kept: Vec<u8>,
    /// The key buckets written and the keys in them, and the app buckets
    /// written (moving the apps); `None` if nothing was found to stream,
    /// and the whole snapshot was kept.
    written: Option<((u32, usize), Option<u32>)>,
}

impl Streamed {
    /// Decodes what was kept: the snapshot without its keys (and apps if
    /// they move), and the cut that writes the rest of the tier.
    pub fn decode(&self) -> Result<(Snapshot, KeyCut<'_>), DecodeError> {
        match self.written {
            Some((keys, apps)) => {
                cut_parts(&self.kept, self.generation, self.apps, Checksum::Compared)
                    .map(|(snapshot, cut)| (snapshot, cut.with_streamed(keys, apps)))
            }
            None => cut_parts(&self.kept, self.generation, self.apps, Checksum::Check),
        }
    }

    /// How many bytes were kept (about what the snapshot without its keys
    /// and moving apps encodes to).
    pub fn kept_len(&self) -> usize {
        self.kept.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::binary::tier::decode_split;
    use crate::binary::{encode, seal};
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn compiled(orgs: usize, keys: usize) -> Vec<u8> {
        let text = crate::generate::generate(orgs, keys, 5).to_string();
        encode(&crate::load_snapshot(&text).unwrap())
    }

    /// A sink that cannot store anything.
    struct Full;

    impl TierSink for Full {
        fn key_bucket(&mut self, _: u32, _: Vec<u8>) -> bool {
            false
        }
        fn app_bucket(&mut self, _: u32, _: Vec<u8>) -> bool {
            false
        }
        fn grant_bucket(&mut self, _: u32, _: Vec<u8>) -> bool {
            false
        }
    }

    /// Streams `bytes` in parts of `part` bytes; the buckets written.
    fn stream(
        bytes: &[u8],
        part: usize,
        apps: Apps,
    ) -> Result<(Streamed, MemoryTier), DecodeError> {
        let mut tier = MemoryTier::default();
        let mut cut = StreamCut::new(bytes.len(), 9, apps, Vec::new());
        for chunk in bytes.chunks(part.max(1)) {
            cut.push(chunk, &mut tier)?;
        }
        let streamed = cut.finish()?;
        Ok((streamed, tier))
    }

    /// The stream cuts what `decode_split` cuts: the same keyless snapshot,
    /// the same key buckets, the same app buckets.
    fn assert_same_cut(bytes: &[u8], part: usize, apps: Apps) {
        let (snapshot, cut) = decode_split(bytes, 9, apps).unwrap();
        let (streamed, tier) = stream(bytes, part, apps).unwrap();
        let (s_snapshot, s_cut) = streamed.decode().unwrap();
        assert!(
            s_cut.keys_written(),
            "part {part}: the key table was streamed"
        );
        assert_eq!(s_cut.apps_written(), apps == Apps::Move);
        assert_eq!(encode(&s_snapshot), encode(&snapshot), "part {part}");
        assert_eq!((s_cut.count(), s_cut.keys()), (cut.count(), cut.keys()));
        let moved = (apps == Apps::Move).then_some(cut.app_count());
        let written = s_cut.written().unwrap();
        assert_eq!(
            (written.buckets, written.keys, written.apps),
            (cut.count(), cut.keys(), moved)
        );
        assert!(cut.written().is_none(), "a whole cut wrote nothing");
        assert_eq!(tier.keys.len(), cut.count() as usize, "part {part}");
        for (i, bucket) in tier.keys.iter().enumerate() {
            assert_eq!(Some(bucket), cut.bucket(i as u32).as_ref(), "bucket {i}");
        }
        assert_eq!(s_cut.app_count(), cut.app_count());
        match apps {
            Apps::Move => {
                assert_eq!(tier.apps.len(), cut.app_count() as usize);
                assert_eq!(tier.grants.len(), cut.app_count() as usize);
                for (i, bucket) in tier.apps.iter().enumerate() {
                    let expected = cut.app_bucket(i as u32);
                    assert_eq!(Some(bucket), expected.as_ref(), "app bucket {i}");
                }
                for (i, bucket) in tier.grants.iter().enumerate() {
                    let expected = cut.grant_bucket(i as u32);
                    assert_eq!(Some(bucket), expected.as_ref(), "grant bucket {i}");
                }
            }
            Apps::Keep => assert!(tier.apps.is_empty() && tier.grants.is_empty()),
        }
    }

    #[test]
    fn a_stream_cuts_what_the_whole_snapshot_cuts_whatever_its_parts() {
        let bytes = compiled(12, 3_000);
        for apps in [Apps::Move, Apps::Keep] {
            for part in [1, 3, 64, 4_096, 65_536, bytes.len()] {
                assert_same_cut(&bytes, part, apps);
            }
            // No keys (nor apps) at all: every key bucket is empty, and still written.
            assert_same_cut(&compiled(3, 0), 17, apps);
        }
    }

    /// Bytes arriving one at a time: each run of kept bytes is read a few
    /// times (its length doubling in between), not once per byte.
    #[test]
    fn the_kept_runs_are_read_a_logarithmic_number_of_times() {
        let bytes = compiled(12, 3_000);
        for apps in [Apps::Move, Apps::Keep] {
            let mut cut = StreamCut::new(bytes.len(), 9, apps, Vec::new());
            let mut tier = MemoryTier::default();
            for byte in bytes.chunks(1) {
                cut.push(byte, &mut tier).unwrap();
            }
            assert!(
                cut.head_reads <= 60,
                "{} reads of the kept runs",
                cut.head_reads
            );
            assert!(cut.finish().unwrap().decode().is_ok());
        }
    }

    /// Moving the apps, what a stream keeps is the snapshot without its keys
    /// and apps (what the fetcher publishes to the other VMs); keeping them,
    /// it is the snapshot less its key records.
    #[test]
    fn a_stream_keeps_neither_the_keys_nor_the_moving_apps() {
        let bytes = compiled(12, 20_000);
        let (keyless, _) = decode_split(&bytes, 9, Apps::Move).unwrap();
        let (streamed, _) = stream(&bytes, 65_536, Apps::Move).unwrap();
        let published = encode(&keyless).len();
        assert!(
            streamed.kept.len() <= published + 64,
            "kept {} vs {published}",
            streamed.kept.len()
        );
        // It grows as it comes: at most twice what it holds, and a part.
        let capacity = streamed.kept.capacity();
        assert!(
            capacity <= 2 * published + 65_536,
            "{capacity} vs {published}"
        );
        let (streamed, _) = stream(&bytes, 65_536, Apps::Keep).unwrap();
        assert!(streamed.kept.len() * 2 < bytes.len());
        assert!(streamed.kept.capacity() * 2 < bytes.len());
    }

    /// Halfway through the key records, the stream holds what it keeps and
    /// the record and bucket being filled: not the key table's offsets
    /// (4 bytes a key), which it compares by their digest instead.
    #[test]
    fn a_stream_never_holds_the_key_offsets() {
        let bytes = compiled(12, 20_000);
        let mut cut = StreamCut::new(bytes.len(), 9, Apps::Move, Vec::new());
        let mut tier = MemoryTier::default();
        let mut checked = 0;
        for chunk in bytes.chunks(4_096) {
            cut.push(chunk, &mut tier).unwrap();
            if let Phase::Keys(table) = &cut.phase {
                if table.halfway() {
                    let beyond = table.held() + table.rows.held();
                    assert!(beyond < 20_000, "{beyond} bytes held beside what is kept");
                    checked += 1;
                }
            }
        }
        assert!(checked > 0);
        assert!(cut.finish().unwrap().decode().is_ok());
    }

    /// A stream accepts exactly what `decode_split` accepts: every byte
    /// changed (and the checksum made right again, so that the structural
    /// checks are what decides), each part size, each app mode.
    #[test]
    fn a_stream_accepts_exactly_what_the_whole_snapshot_accepts() {
        let bytes = compiled(2, 12);
        let mut accepted = 0;
        for i in HEADER_LEN..bytes.len() {
            for flip in [0x01u8, 0x80] {
                let mut changed = bytes.clone();
                changed[i] ^= flip;
                seal(&mut changed);
                for apps in [Apps::Move, Apps::Keep] {
                    let whole = decode_split(&changed, 9, apps).is_ok();
                    for part in [5, 64, changed.len()] {
                        let streamed =
                            stream(&changed, part, apps).and_then(|(s, _)| s.decode().map(|_| ()));
                        assert_eq!(
                            streamed.is_ok(),
                            whole,
                            "byte {i} ^ {flip:#x}, parts of {part}, {apps:?}: {streamed:?}"
                        );
                    }
                    accepted += usize::from(whole);
                }
            }
        }
        assert!(
            accepted > 0,
            "some changes are harmless (a key's expiry, a name)"
        );
    }

    /// An app id index that names an app with another app's id, or leaves
    /// one out, is refused while it arrives, as the whole snapshot is.
    #[test]
    fn an_app_id_index_that_disagrees_with_the_apps_is_refused() {
        let text = crate::generate::generate(3, 40, 5).to_string();
        let snapshot = crate::load_snapshot(&text).unwrap();
        let bytes = encode(&snapshot);
        let id = |i: usize| {
            snapshot.apps[i]
                .principal
                .strip_prefix("app:")
                .unwrap()
                .to_owned()
        };
        let (a, b) = (id(0), id(1));
        assert_eq!(a.len(), b.len(), "two ids of one length swap in place");
        // Swap the two ids inside the index only (the apps keep theirs).
        let index_at = |bytes: &[u8], id: &str| {
            let mut needle = (id.len() as u32).to_le_bytes().to_vec();
            needle.extend_from_slice(id.as_bytes());
            bytes
                .windows(needle.len())
                .rposition(|w| w == needle)
                .unwrap()
                + 4
        };
        let mut swapped = bytes.clone();
        let (at_a, at_b) = (index_at(&bytes, &a), index_at(&bytes, &b));
        swapped[at_a..at_a + a.len()].copy_from_slice(b.as_bytes());
        swapped[at_b..at_b + b.len()].copy_from_slice(a.as_bytes());
        seal(&mut swapped);
        assert!(decode_split(&swapped, 9, Apps::Move).is_err());
        let refused = stream(&swapped, 97, Apps::Move).err().unwrap();
        assert!(
            refused.what.contains("id index") || refused.what.contains("sorted"),
            "{refused}"
        );
    }

    /// A snapshot announcing more than the memory can hold is refused, not
    /// an abort of the VM (a reservation that cannot be met).
    #[test]
    fn a_size_beyond_memory_is_refused_not_aborted() {
        let bytes = compiled(2, 10);
        // Past what any target can address, so no allocation is even tried.
        for total in [usize::MAX, usize::MAX / 2 + 1_000] {
            let mut cut = StreamCut::new(total, 1, Apps::Keep, Vec::new());
            let refused = cut.push(&bytes, &mut MemoryTier::default()).err().unwrap();
            assert!(refused.to_string().contains("cannot reserve"), "{refused}");
        }
    }

    #[test]
    fn a_damaged_or_cut_stream_is_refused() {
        let bytes = compiled(3, 500);
        for apps in [Apps::Move, Apps::Keep] {
            let mut damaged = bytes.clone();
            let last = damaged.len() - 1;
            damaged[last] ^= 1;
            let refused = stream(&damaged, 1_000, apps).err().unwrap();
            assert!(refused.to_string().contains("checksum"), "{refused}");
            // Fewer bytes than announced.
            let mut cut = StreamCut::new(bytes.len(), 1, apps, Vec::new());
            cut.push(&bytes[..bytes.len() - 1], &mut MemoryTier::default())
                .unwrap();
            assert!(cut.finish().is_err());
            // More bytes than announced.
            let mut cut = StreamCut::new(10, 1, apps, Vec::new());
            assert!(cut.push(&bytes[..11], &mut MemoryTier::default()).is_err());
            // A bucket the sink cannot store ends the stream.
            let mut cut = StreamCut::new(bytes.len(), 1, apps, Vec::new());
            let refused = cut.push(&bytes, &mut Full).err().unwrap();
            assert!(
                refused.to_string().contains("could not be stored"),
                "{refused}"
            );
            assert!(cut.finish().is_err());
        }
    }
}
