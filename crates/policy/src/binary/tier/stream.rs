//! The key tier cut while a compiled snapshot arrives (issue 12), so that
//! the fetching VM never holds the key table: at 1M keys its records are
//! 41 of the snapshot's 68 MB, and a VM's memory never shrinks.
//!
//! Bytes before and after the key table are kept; the key table's place in
//! what is kept holds an empty table. Its records are checked one at a time
//! as they arrive, exactly as [`decode_split`](super::decode_split) checks
//! them (each a whole key record of a known app and environments, sorted by
//! digest, no two sharing the digest bytes the tier keeps), and grouped into
//! their buckets, each handed to a sink as soon as it is complete. The
//! checksum is computed over the bytes as they arrive, and what was kept is
//! decoded only once it matches. So a stream accepts exactly the bytes
//! `decode_split` accepts, and cuts the same tier.
//!
//! The sink's buckets are written before the checksum (and a signature) are
//! known: the caller writes them where nothing reads them until the whole
//! snapshot is accepted (the filter's spare tier slot, published only then).

use super::cut::{cut_parts, KeyCut};
use super::{bucket_count_for, bucket_of, encode_raw_bucket, Apps};
use crate::binary::read::{key_follows, read_head, Checksum, Reader};
use crate::binary::{DecodeError, HEADER_LEN, MAGIC};
use crate::snapshot::Snapshot;
use xxhash_rust::xxh3::Xxh3Default;

/// The fewest bytes a key record and its offset take: digest 32, app 4,
/// status 1, the expiry's, read-only's and environments' tags 1 each,
/// offset 4.
const MIN_KEY_BYTES: usize = 44;

/// Takes a finished key bucket (its index and bytes); `false` if it could
/// not be stored, which ends the stream.
pub type BucketSink<'s> = dyn FnMut(u32, Vec<u8>) -> bool + 's;

/// A compiled snapshot being cut as it arrives.
pub struct StreamCut {
    generation: u64,
    /// The snapshot's announced size.
    total: usize,
    /// Bytes pushed so far.
    seen: usize,
    /// XXH3-64 of every byte after the header, as they arrive.
    hasher: Xxh3Default,
    /// Every byte but the key table's; an empty table in its place.
    kept: Vec<u8>,
    /// How many bytes to keep before the head is read again: double what
    /// it last failed on, so that a head arriving in many small parts (or a
    /// hostile one, of millions of environments) is read a few times, not
    /// once per part.
    next_head_read: usize,
    /// Times the head was read (the tests' measure of the above).
    head_reads: usize,
    phase: Phase,
}

enum Phase {
    /// The key table not yet located: bytes are kept.
    Head,
    /// The key table's offsets, `need` bytes of them in all.
    Offsets {
        keys: Keys,
        need: usize,
    },
    Records(Keys),
    /// After the key table: bytes are kept.
    Tail {
        buckets: u32,
        keys: usize,
    },
    Refused,
}

/// The key table being read.
struct Keys {
    count: usize,
    apps: usize,
    envs: usize,
    /// Where its offsets start in the snapshot, for error offsets.
    offsets_at: usize,
    /// Its `count + 1` offsets, as they came (little-endian `u32`s).
    offsets: Vec<u8>,
    /// Bytes of its records region read so far.
    at: usize,
    /// The record being read: `i`.
    i: usize,
    record: Vec<u8>,
    previous: Option<[u8; 32]>,
    buckets: u32,
    /// The bucket being filled, and its records so far.
    bucket: u32,
    arena: Vec<u8>,
    ends: Vec<usize>,
}

impl StreamCut {
    /// A cut of a snapshot of `total` bytes, whose buckets carry `generation`;
    /// `buffer` (emptied, its capacity kept) holds what is kept.
    pub fn new(total: usize, generation: u64, mut buffer: Vec<u8>) -> StreamCut {
        buffer.clear();
        StreamCut {
            generation,
            total,
            seen: 0,
            hasher: Xxh3Default::new(),
            kept: buffer,
            next_head_read: 0,
            head_reads: 0,
            phase: Phase::Head,
        }
    }

    /// Takes the next bytes of the snapshot; finished key buckets go to `sink`.
    pub fn push(&mut self, bytes: &[u8], sink: &mut BucketSink<'_>) -> Result<(), DecodeError> {
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

    /// Reserves what is kept once, from the first bytes: the snapshot less
    /// the least its key table can take (a key record is at least
    /// [`MIN_KEY_BYTES`] with its offset) by the key count the header
    /// announces. A header that lies only makes the buffer grow (or reserve
    /// no more than the whole snapshot would).
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

    fn take(&mut self, bytes: &[u8], sink: &mut BucketSink<'_>) -> Result<(), DecodeError> {
        match &mut self.phase {
            Phase::Head => {
                if self.kept.is_empty() {
                    self.reserve_for(bytes)?;
                }
                keep(&mut self.kept, bytes)?;
                if self.kept.len() < self.next_head_read {
                    return Ok(());
                }
                self.locate(bytes, sink)
            }
            Phase::Offsets { .. } => self.take_offsets(bytes, sink),
            Phase::Records(_) => self.take_records(bytes, sink),
            Phase::Tail { .. } => keep(&mut self.kept, bytes),
            Phase::Refused => Err(DecodeError {
                offset: self.seen,
                what: "the stream was refused",
            }),
        }
    }

    /// Once the bytes kept (`part` the last of them) reach the key table:
    /// keeps an empty table in its place and reads the real one from the
    /// bytes kept after it.
    fn locate(&mut self, part: &[u8], sink: &mut BucketSink<'_>) -> Result<(), DecodeError> {
        self.head_reads += 1;
        let mut r = Reader::new(&self.kept);
        let located = read_head(&mut r, None)
            .and_then(|head| Ok((head.apps.count, head.envs.len(), r.u32()? as usize)));
        let Ok((apps, envs, count)) = located else {
            // Not yet there (or never: then `finish` decodes all it kept).
            self.next_head_read = self.kept.len().saturating_mul(2);
            return Ok(());
        };
        let at = r.at - 4;
        // As `Reader::len` checks it against the whole snapshot.
        if count.saturating_mul(4) > self.total.saturating_sub(at + 4) {
            return self.refuse(at, "length larger than the data");
        }
        // What follows the key count: in `part` (no copy) when the head ended
        // in it, as it does when parts are large; else moved out of `kept`.
        let part_at = self.kept.len() - part.len();
        let moved;
        let after = match (at + 4).checked_sub(part_at) {
            Some(from) => part.get(from..).unwrap_or_default(),
            None => {
                moved = self.kept.split_off(at + 4);
                &moved
            }
        };
        self.kept.truncate(at);
        self.kept.extend_from_slice(&0u32.to_le_bytes());
        self.kept.extend_from_slice(&0u32.to_le_bytes());
        let keys = Keys {
            count,
            apps,
            envs,
            offsets_at: at + 4,
            offsets: Vec::new(),
            at: 0,
            i: 0,
            record: Vec::new(),
            previous: None,
            buckets: bucket_count_for(count),
            bucket: 0,
            arena: Vec::new(),
            ends: Vec::new(),
        };
        let need = (count + 1) * 4;
        let mut keys = keys;
        if keys.offsets.try_reserve_exact(need).is_err() {
            return Err(no_memory(need));
        }
        self.phase = Phase::Offsets { keys, need };
        self.take_offsets(after, sink)
    }

    fn take_offsets(&mut self, bytes: &[u8], sink: &mut BucketSink<'_>) -> Result<(), DecodeError> {
        let Phase::Offsets { keys, need } = &mut self.phase else {
            return Ok(());
        };
        let n = need.saturating_sub(keys.offsets.len()).min(bytes.len());
        let (mine, rest) = bytes.split_at(n);
        keys.offsets.extend_from_slice(mine);
        if keys.offsets.len() < *need {
            return Ok(());
        }
        let Phase::Offsets { keys, .. } = std::mem::replace(&mut self.phase, Phase::Refused) else {
            return Ok(());
        };
        if let Some(i) = (0..keys.count).find(|&i| keys.offset(i) > keys.offset(i + 1)) {
            return self.refuse(keys.offsets_at + 4 * i, "record offsets out of order");
        }
        let region = keys.offset(keys.count);
        let records_at = keys.offsets_at + keys.offsets.len();
        // What is kept is known now: reserve the rest of it once.
        let tail = self.total.saturating_sub(records_at.saturating_add(region));
        if self.kept.try_reserve_exact(tail).is_err() {
            return Err(no_memory(tail));
        }
        self.phase = Phase::Records(keys);
        self.take_records(rest, sink)
    }

    fn take_records(
        &mut self,
        mut bytes: &[u8],
        sink: &mut BucketSink<'_>,
    ) -> Result<(), DecodeError> {
        let generation = self.generation;
        let Phase::Records(keys) = &mut self.phase else {
            return Ok(());
        };
        let records_at = keys.offsets_at + keys.offsets.len();
        let region = keys.offset(keys.count);
        loop {
            let (start, end) = keys.bounds();
            if keys.i < keys.count && keys.at >= start && keys.at == end {
                if let Err(e) = keys.close_record(records_at + start, generation, sink) {
                    self.phase = Phase::Refused;
                    return Err(e);
                }
                continue;
            }
            if keys.i == keys.count && keys.at == region {
                if let Err(e) = keys.close_buckets(generation, sink) {
                    self.phase = Phase::Refused;
                    return Err(e);
                }
                self.phase = Phase::Tail {
                    buckets: keys.buckets,
                    keys: keys.count,
                };
                return keep(&mut self.kept, bytes);
            }
            if bytes.is_empty() {
                return Ok(());
            }
            // Inside record `i`, or before it (bytes no offset points at).
            let inside = keys.i < keys.count && keys.at >= start;
            let next = if keys.i < keys.count {
                if inside {
                    end
                } else {
                    start
                }
            } else {
                region
            };
            let n = next.saturating_sub(keys.at).min(bytes.len());
            let (mine, rest) = bytes.split_at(n);
            if inside {
                keep(&mut keys.record, mine)?;
            }
            keys.at += n;
            bytes = rest;
        }
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
        let keys = match self.phase {
            // Never located: everything was kept, and is decoded whole.
            Phase::Head => None,
            Phase::Tail { buckets, keys } => Some((buckets, keys)),
            Phase::Offsets { .. } | Phase::Records(_) => return Err(truncated),
            Phase::Refused => {
                return Err(DecodeError {
                    offset: self.seen,
                    what: "the stream was refused",
                })
            }
        };
        if keys.is_some() {
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
        }
        Ok(Streamed {
            generation: self.generation,
            kept: self.kept,
            keys,
        })
    }
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

fn no_memory(bytes: usize) -> DecodeError {
    DecodeError {
        offset: bytes,
        what: "cannot reserve the memory to take the snapshot in",
    }
}

impl Keys {
    /// Where record `i` starts and ends in the records region (`0, 0` past
    /// the last).
    fn bounds(&self) -> (usize, usize) {
        (self.offset(self.i), self.offset(self.i + 1))
    }

    /// Offset `i` (`0` past the last).
    fn offset(&self, i: usize) -> usize {
        let raw = self
            .offsets
            .get(i * 4..i * 4 + 4)
            .and_then(|b| b.try_into().ok());
        raw.map_or(0, |b| u32::from_le_bytes(b) as usize)
    }

    /// Checks the record read (which starts at `base` in the snapshot) as
    /// `decode_split` does, and files it in its bucket.
    fn close_record(
        &mut self,
        base: usize,
        generation: u64,
        sink: &mut BucketSink<'_>,
    ) -> Result<(), DecodeError> {
        let reader = Reader {
            bytes: &self.record,
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
            self.emit(generation, sink, base)?;
        }
        self.arena.extend_from_slice(&self.record);
        self.ends.push(self.arena.len());
        self.record.clear();
        self.i += 1;
        Ok(())
    }

    /// Hands the bucket being filled to `sink` and starts the next.
    fn emit(
        &mut self,
        generation: u64,
        sink: &mut BucketSink<'_>,
        at: usize,
    ) -> Result<(), DecodeError> {
        let mut records = Vec::with_capacity(self.ends.len());
        let mut start = 0;
        for &end in &self.ends {
            records.push(self.arena.get(start..end).unwrap_or_default());
            start = end;
        }
        let stored = encode_raw_bucket(generation, &records).is_some_and(|b| sink(self.bucket, b));
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

    /// After the last record: the buckets left, empty ones included.
    fn close_buckets(
        &mut self,
        generation: u64,
        sink: &mut BucketSink<'_>,
    ) -> Result<(), DecodeError> {
        let at = self.offsets_at;
        while self.bucket < self.buckets {
            self.emit(generation, sink, at)?;
        }
        Ok(())
    }
}

/// What a stream kept of an accepted compiled snapshot.
pub struct Streamed {
    generation: u64,
    kept: Vec<u8>,
    /// The key buckets written and the keys in them; `None` if the key table
    /// was never located, and the whole snapshot was kept.
    keys: Option<(u32, usize)>,
}

impl Streamed {
    /// Decodes what was kept: the snapshot without its keys (and apps if
    /// they move), and the cut that writes the rest of the tier.
    pub fn decode(&self, apps: Apps) -> Result<(Snapshot, KeyCut<'_>), DecodeError> {
        match self.keys {
            Some((buckets, keys)) => {
                cut_parts(&self.kept, self.generation, apps, Checksum::Compared)
                    .map(|(snapshot, cut)| (snapshot, cut.with_streamed(buckets, keys)))
            }
            None => cut_parts(&self.kept, self.generation, apps, Checksum::Check),
        }
    }

    /// The buffer, emptied, for the next stream.
    pub fn into_buffer(mut self) -> Vec<u8> {
        self.kept.clear();
        self.kept
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

    /// Key buckets by index, as a sink received them.
    type Buckets = Vec<Option<Vec<u8>>>;

    /// Streams `bytes` in parts of `part` bytes; the buckets by index.
    fn stream(bytes: &[u8], part: usize) -> Result<(Streamed, Buckets), DecodeError> {
        let mut buckets: Buckets = Vec::new();
        let mut cut = StreamCut::new(bytes.len(), 9, Vec::new());
        let mut sink = |i: u32, b: Vec<u8>| {
            let i = i as usize;
            if buckets.len() <= i {
                buckets.resize(i + 1, None);
            }
            // Each bucket once, in order.
            buckets[i].is_none() && buckets[..i].iter().all(Option::is_some) && {
                buckets[i] = Some(b);
                true
            }
        };
        for chunk in bytes.chunks(part.max(1)) {
            cut.push(chunk, &mut sink)?;
        }
        let streamed = cut.finish()?;
        Ok((streamed, buckets))
    }

    /// The stream cuts what `decode_split` cuts: the same keyless snapshot,
    /// the same key buckets, the same app buckets.
    fn assert_same_cut(bytes: &[u8], part: usize) {
        let (snapshot, cut) = decode_split(bytes, 9, Apps::Move).unwrap();
        let (streamed, buckets) = stream(bytes, part).unwrap();
        let (s_snapshot, s_cut) = streamed.decode(Apps::Move).unwrap();
        assert!(
            s_cut.keys_written(),
            "part {part}: the key table was streamed"
        );
        assert_eq!(encode(&s_snapshot), encode(&snapshot), "part {part}");
        assert_eq!((s_cut.count(), s_cut.keys()), (cut.count(), cut.keys()));
        assert_eq!(buckets.len(), cut.count() as usize, "part {part}");
        for (i, bucket) in buckets.iter().enumerate() {
            assert_eq!(bucket.as_ref(), cut.bucket(i as u32).as_ref(), "bucket {i}");
        }
        assert_eq!(s_cut.app_count(), cut.app_count());
        for i in 0..cut.app_count() {
            assert_eq!(s_cut.app_bucket(i), cut.app_bucket(i), "app bucket {i}");
        }
    }

    #[test]
    fn a_stream_cuts_what_the_whole_snapshot_cuts_whatever_its_parts() {
        let bytes = compiled(12, 3_000);
        for part in [1, 3, 64, 4_096, 65_536, bytes.len()] {
            assert_same_cut(&bytes, part);
        }
        // No keys at all: every bucket is empty, and still written.
        assert_same_cut(&compiled(3, 0), 17);
    }

    /// Bytes arriving one at a time: the head is read a few times (its
    /// length doubling in between), not once per byte.
    #[test]
    fn the_head_is_read_a_logarithmic_number_of_times() {
        let bytes = compiled(12, 3_000);
        let mut cut = StreamCut::new(bytes.len(), 9, Vec::new());
        for byte in bytes.chunks(1) {
            cut.push(byte, &mut |_, _| true).unwrap();
        }
        assert!(cut.head_reads <= 24, "{} reads of the head", cut.head_reads);
        assert!(cut.finish().unwrap().decode(Apps::Move).is_ok());
    }

    #[test]
    fn a_stream_never_holds_the_key_records() {
        let bytes = compiled(12, 20_000);
        let (streamed, _) = stream(&bytes, 65_536).unwrap();
        // The key records are most of a large snapshot; what is kept is the rest.
        assert!(
            streamed.kept.len() * 2 < bytes.len(),
            "kept {} of {} bytes",
            streamed.kept.len(),
            bytes.len()
        );
        assert!(streamed.kept.capacity() * 2 < bytes.len());
    }

    /// A stream accepts exactly what `decode_split` accepts: every byte
    /// changed (and the checksum made right again, so that the structural
    /// checks are what decides), each part size.
    #[test]
    fn a_stream_accepts_exactly_what_the_whole_snapshot_accepts() {
        let bytes = compiled(2, 12);
        let mut accepted = 0;
        for i in HEADER_LEN..bytes.len() {
            for flip in [0x01u8, 0x80] {
                let mut changed = bytes.clone();
                changed[i] ^= flip;
                seal(&mut changed);
                let whole = decode_split(&changed, 9, Apps::Move).is_ok();
                for part in [5, 64, changed.len()] {
                    let streamed =
                        stream(&changed, part).and_then(|(s, _)| s.decode(Apps::Move).map(|_| ()));
                    assert_eq!(
                        streamed.is_ok(),
                        whole,
                        "byte {i} ^ {flip:#x}, parts of {part}: {streamed:?}"
                    );
                }
                accepted += usize::from(whole);
            }
        }
        assert!(
            accepted > 0,
            "some changes are harmless (a key's expiry, a name)"
        );
    }

    /// A snapshot announcing more than the memory can hold is refused, not
    /// an abort of the VM (a reservation that cannot be met).
    #[test]
    fn a_size_beyond_memory_is_refused_not_aborted() {
        let bytes = compiled(2, 10);
        // Past what any target can address, so no allocation is even tried.
        for total in [usize::MAX, usize::MAX / 2 + 1_000] {
            let mut cut = StreamCut::new(total, 1, Vec::new());
            let refused = cut.push(&bytes, &mut |_, _| true).err().unwrap();
            assert!(refused.to_string().contains("cannot reserve"), "{refused}");
        }
    }

    #[test]
    fn a_damaged_or_cut_stream_is_refused() {
        let bytes = compiled(3, 500);
        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        let refused = stream(&damaged, 1_000).err().unwrap();
        assert!(refused.to_string().contains("checksum"), "{refused}");
        // Fewer bytes than announced.
        let mut cut = StreamCut::new(bytes.len(), 1, Vec::new());
        cut.push(&bytes[..bytes.len() - 1], &mut |_, _| true)
            .unwrap();
        assert!(cut.finish().is_err());
        // More bytes than announced.
        let mut cut = StreamCut::new(10, 1, Vec::new());
        assert!(cut.push(&bytes[..11], &mut |_, _| true).is_err());
        // A bucket the sink cannot store ends the stream.
        let mut cut = StreamCut::new(bytes.len(), 1, Vec::new());
        let refused = cut.push(&bytes, &mut |_, _| false).err().unwrap();
        assert!(
            refused.to_string().contains("could not be stored"),
            "{refused}"
        );
        assert!(cut.finish().is_err());
    }
}
