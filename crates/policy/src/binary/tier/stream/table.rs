//! A table of the compiled form (a count, `count + 1` offsets, then the
//! records) read as it arrives, each record handed to its [`Rows`] whole,
//! and nothing of it kept.
//!
//! The offsets are not kept either (4 bytes a record; at 1M keys, 4 MB of
//! the fetching VM, whose memory never shrinks). The records the stream
//! reads are those that delimit themselves (their tags and lengths say how
//! long they are, `read.rs` `walk`), so they are read from the first offset on,
//! one after the other, and the offsets they make are compared with the
//! offsets the table declared: a 128-bit SipHash-1-3 of each sequence, taken
//! as they go, keyed by the round's random generation (which no source
//! sees, so none can aim for two sequences that agree). The whole-body decoder reads record `i` between declared offsets `i`
//! and `i + 1` and refuses a record that does not fill them exactly; so it
//! accepts a table only when the declared offsets are the ones the records
//! make, which is what the digests compare. A record whose length runs past
//! the table is refused at once.

use super::{keep, TierSink};
use crate::binary::read::{walk, Field};
use crate::binary::DecodeError;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;

/// What a table's records are, and what is done with each.
pub(super) trait Rows {
    /// The fields of a record, for `walk`.
    const FIELDS: &'static [Field];
    /// Record `i`, whole, which starts at `base` in the snapshot.
    fn row(
        &mut self,
        i: usize,
        record: &[u8],
        base: usize,
        sink: &mut dyn TierSink,
    ) -> Result<(), DecodeError>;
    /// After the last record; `at` is where the table's offsets start.
    fn end(&mut self, at: usize, sink: &mut dyn TierSink) -> Result<(), DecodeError>;
}

/// A table being read.
pub(super) struct Table<R> {
    pub(super) count: usize,
    /// Where its offsets start in the snapshot, for error offsets.
    offsets_at: usize,
    /// Bytes of the offsets read so far, and the offset being assembled.
    offset_bytes: usize,
    word: u32,
    /// The first offset (where record 0 starts) and the last one read.
    first: usize,
    last: Option<u32>,
    /// Keyed digests of the offsets as declared, and as the records make
    /// them.
    declared: SipHasher13,
    made: SipHasher13,
    /// Bytes of the records region read so far.
    at: usize,
    /// The record being read: `i`, from `start`; its end once its first
    /// bytes tell it.
    i: usize,
    start: usize,
    end: Option<usize>,
    record: Vec<u8>,
    pub(super) rows: R,
}

/// What reading a part of a table did.
pub(super) enum Read<'p> {
    /// The part is used up; the table goes on.
    More,
    /// The table is whole and checked; the rest of the part follows it.
    Done(&'p [u8]),
}

impl<R: Rows> Table<R> {
    /// A table of `count` records whose offsets start at `offsets_at`; `key`
    /// keys the offsets' digests.
    pub(super) fn new(count: usize, offsets_at: usize, key: u64, rows: R) -> Table<R> {
        Table {
            count,
            offsets_at,
            offset_bytes: 0,
            word: 0,
            first: 0,
            last: None,
            declared: SipHasher13::new_with_keys(key, !key),
            made: SipHasher13::new_with_keys(key, !key),
            at: 0,
            i: 0,
            start: 0,
            end: None,
            record: Vec::new(),
            rows,
        }
    }

    fn offsets_len(&self) -> usize {
        self.count.saturating_add(1).saturating_mul(4)
    }

    fn records_at(&self) -> usize {
        self.offsets_at.saturating_add(self.offsets_len())
    }

    /// The records region's length: the last offset (once all are read).
    fn region(&self) -> usize {
        self.last.map_or(0, |last| last as usize)
    }

    /// Where the table ends in the snapshot (once its offsets are read).
    pub(super) fn end_at(&self) -> usize {
        self.records_at().saturating_add(self.region())
    }

    /// Whether every offset has been read.
    pub(super) fn offsets_read(&self) -> bool {
        self.offset_bytes == self.offsets_len()
    }

    /// Takes the next bytes of the table.
    pub(super) fn take<'p>(
        &mut self,
        bytes: &'p [u8],
        sink: &mut dyn TierSink,
    ) -> Result<Read<'p>, DecodeError> {
        if self.offsets_read() {
            return self.take_records(bytes, sink);
        }
        let n = (self.offsets_len() - self.offset_bytes).min(bytes.len());
        let (mine, rest) = bytes.split_at(n);
        self.declared.write(mine);
        let mut mine = mine;
        // Whole offsets read as words; a part boundary may split one.
        while !mine.is_empty() {
            let word = mine.get(..4).and_then(|w| <[u8; 4]>::try_from(w).ok());
            match word {
                Some(word) if self.offset_bytes % 4 == 0 => {
                    self.offset_bytes += 4;
                    self.offset_read(u32::from_le_bytes(word))?;
                    mine = mine.get(4..).unwrap_or_default();
                }
                _ => {
                    let byte = mine.first().copied().unwrap_or_default();
                    self.word |= u32::from(byte) << (8 * (self.offset_bytes % 4));
                    self.offset_bytes += 1;
                    if self.offset_bytes % 4 == 0 {
                        let offset = std::mem::take(&mut self.word);
                        self.offset_read(offset)?;
                    }
                    mine = mine.get(1..).unwrap_or_default();
                }
            }
        }
        if !self.offsets_read() {
            return Ok(Read::More);
        }
        self.start = self.first;
        self.made.write(&(self.first as u32).to_le_bytes());
        self.take_records(rest, sink)
    }

    /// Offset `offset_bytes / 4 - 1` read: not below the one before.
    fn offset_read(&mut self, offset: u32) -> Result<(), DecodeError> {
        match self.last {
            None => self.first = offset as usize,
            Some(before) if before > offset => {
                let i = self.offset_bytes / 4 - 2;
                return Err(DecodeError {
                    offset: self.offsets_at + 4 * i,
                    what: "record offsets out of order",
                });
            }
            Some(_) => {}
        }
        self.last = Some(offset);
        Ok(())
    }

    fn take_records<'p>(
        &mut self,
        mut bytes: &'p [u8],
        sink: &mut dyn TierSink,
    ) -> Result<Read<'p>, DecodeError> {
        loop {
            if self.at < self.start {
                // Bytes before the first record (no offset points at them).
                if bytes.is_empty() {
                    return Ok(Read::More);
                }
                let n = (self.start - self.at).min(bytes.len());
                self.at += n;
                bytes = bytes.get(n..).unwrap_or_default();
                continue;
            }
            if self.i == self.count {
                self.close_table(sink)?;
                return Ok(Read::Done(bytes));
            }
            if self.record.is_empty() && self.end.is_none() {
                // Whole in this part (as nearly every record is): read where it lies.
                if let Some(len) = walk(R::FIELDS, bytes).ok().filter(|&l| l <= bytes.len()) {
                    self.end = Some(self.bounded(len)?);
                    let (record, rest) = bytes.split_at(len);
                    self.at += len;
                    self.close_record(record, sink)?;
                    bytes = rest;
                    continue;
                }
            }
            let wanted = self.wanted()?;
            if wanted == 0 {
                let record = std::mem::take(&mut self.record);
                self.close_record(&record, sink)?;
                self.record = record;
                self.record.clear();
                continue;
            }
            if bytes.is_empty() {
                return Ok(Read::More);
            }
            let (mine, rest) = bytes.split_at(wanted.min(bytes.len()));
            keep(&mut self.record, mine)?;
            self.at += mine.len();
            bytes = rest;
        }
    }

    /// How many more bytes the record being read wants: to its end once its
    /// first bytes tell where that is (`0`: it is whole), else those its
    /// length needs.
    fn wanted(&mut self) -> Result<usize, DecodeError> {
        if let Some(end) = self.end {
            return Ok(end - self.at);
        }
        match walk(R::FIELDS, &self.record) {
            Err(need) => Ok(need - self.record.len()),
            Ok(len) => {
                let end = self.bounded(len)?;
                self.end = Some(end);
                Ok(end - self.at)
            }
        }
    }

    /// The end of the record being read, `len` bytes long: within the table.
    fn bounded(&self, len: usize) -> Result<usize, DecodeError> {
        let end = self.start.saturating_add(len);
        if end > self.region() {
            return Err(DecodeError {
                offset: self.records_at() + self.start,
                what: "record offsets out of order",
            });
        }
        Ok(end)
    }

    /// The record being read, whole (`record`; `at` is past it).
    fn close_record(&mut self, record: &[u8], sink: &mut dyn TierSink) -> Result<(), DecodeError> {
        let base = self.records_at() + self.start;
        self.rows.row(self.i, record, base, sink)?;
        self.start = self.at;
        self.end = None;
        self.made.write(&(self.start as u32).to_le_bytes());
        self.i += 1;
        Ok(())
    }

    /// After the last record: it ends where the table does, and the offsets
    /// the records made are those declared.
    fn close_table(&mut self, sink: &mut dyn TierSink) -> Result<(), DecodeError> {
        let (made, declared) = (self.made.finish128(), self.declared.finish128());
        if self.start != self.region() || made != declared {
            return Err(DecodeError {
                offset: self.offsets_at,
                what: "record offsets out of order",
            });
        }
        self.rows.end(self.offsets_at, sink)
    }

    /// Past half of the records (tests).
    #[cfg(test)]
    pub(super) fn halfway(&self) -> bool {
        self.i * 2 >= self.count
    }

    /// The bytes this holds beside its rows' (tests).
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.record.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_record_tells_its_length_once_its_tags_and_lengths_are_there() {
        let fields = [Field::Str, Field::Bytes(2), Field::OptTime, Field::OptIdxs];
        let mut record = vec![3, 0, 0, 0, b'a', b'b', b'c', 9, 9, 1];
        record.extend_from_slice(&[0; 8]);
        record.extend_from_slice(&[1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(walk(&fields, &record), Ok(record.len()));
        // The last length (of the environments) is at bytes 19..23: from
        // there on the length is known, before that more bytes are asked for.
        for cut in 0..record.len() {
            match walk(&fields, &record[..cut]) {
                Err(need) => assert!(cut < 23 && need > cut && need <= 23, "{cut}: {need}"),
                Ok(len) => assert!(cut >= 23 && len == record.len(), "{cut}: {len}"),
            }
        }
        // A huge length saturates instead of wrapping.
        let huge = 0xffff_ffff_usize.saturating_mul(4).saturating_add(4);
        assert_eq!(walk(&[Field::List(4)], &[0xff; 4]), Ok(huge));
    }
}
