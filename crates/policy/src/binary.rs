//! The compiled snapshot as bytes: what `policyctl compile` writes, what the
//! filter's fetcher publishes to the other VMs, what a policy source may serve
//! instead of JSON, and what `policyctl bake` puts into the Otoroshi module.
//!
//! Loading it skips JSON parsing and the owned document entirely: [`decode`]
//! reads the compiled vectors and rebuilds the hash indexes, so a large
//! snapshot loads in a fraction of the time and memory.
//!
//! Every collection but the environments is a table with an offset per record,
//! kept sorted where it is searched (keys by digest) or accompanied by a sorted
//! index (organization names, app, user and Otoroshi ids), so that
//! [`decode_for`] can read just what one request needs: the Otoroshi plug-in
//! is instantiated afresh for every call and cannot afford to load 10k keys or
//! 2,000 organizations to decide one request.
//!
//! Layout: the magic, an XXH3-64 checksum of everything after it, revision,
//! counts, environment names; tables of organizations, organization names,
//! routes, products, apps, keys, users, grants; the sorted fixed records of
//! grant references and invitations; the id indexes of apps, users, Otoroshi
//! client ids, e-mails and team ids.
//!
//! The format is versioned by its magic; everything is little-endian, lengths
//! are `u32`, and every read is bounds-checked so that a truncated or hostile
//! buffer is an error, never a panic. Indexes are checked against the
//! collections they point into; an index that restates other records (the
//! organization names, the app and user ids) must equal what [`decode`]
//! computes from them, so [`decode_for`], which reads the index, decides
//! exactly as [`decode`] for any bytes [`decode`] accepts. Nothing derived is
//! trusted for the route match: [`decode_for`] decodes every route (there
//! are few) and builds the route index as [`decode`] does.

use super::document::{KeyStatus, Right};
use super::snapshot::{
    ids_by_principal, link_home_grants, org_names, route_tables, AppEntry, GatewayIds, Grants, Idx,
    IdxList, KeyEntry, KeyIndex, ListedTeam, OrgEntry, PrincipalRef, ProductEntry, RouteEntry,
    RouteTeams, Snapshot, SnapshotStats, UserEntry,
};
use super::time::Timestamp;
use rustc_hash::{FxHashMap, FxHashSet};
use std::cmp::Ordering;
use std::fmt;

/// Magic and format version: `TGSNAP`, a NUL, and the version byte.
pub const MAGIC: &[u8; 8] = b"TGSNAP\x00\x03";

/// Bytes of the header: the magic, then the checksum of everything after it.
const HEADER_LEN: usize = 16;

/// The checksum of a compiled snapshot's body: XXH3-64, which reads several
/// GB/s, so that even a baked 100k-key snapshot is verified on every
/// Otoroshi call for a fraction of the call. It detects corruption (a
/// truncated download, a bad copy, a flipped bit); authenticity is what
/// signed snapshots are for.
fn checksum(body: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(body)
}

/// The slot `policyctl bake` fills in the Otoroshi module: this marker, then
/// the address and length (`u32`, little-endian) of the data segment holding
/// the baked snapshot; `0xFFFFFFFF` (not zero, so that `wasm-opt` keeps the
/// bytes in the data segment) while nothing is baked.
pub const BAKE_SLOT: [u8; 16] = *b"TGBAKE\x00\x01\xff\xff\xff\xff\xff\xff\xff\xff";

/// Whether `bytes` look like an encoded snapshot (rather than JSON).
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC[..6])
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub what: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "compiled snapshot is corrupt at byte {}: {}",
            self.offset, self.what
        )
    }
}

impl std::error::Error for DecodeError {}

/// Size of one `by_principal` record: kind, principal, tenant, grant.
const GRANT_REF_SIZE: usize = 13;
/// Size of one `pending` record: user, organization.
const PENDING_SIZE: usize = 8;

struct Writer(Vec<u8>);

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(clamp_u32(n));
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
    fn strs(&mut self, list: &[Box<str>]) {
        self.len(list.len());
        for s in list {
            self.str(s);
        }
    }
    fn idxs(&mut self, list: &[Idx]) {
        self.len(list.len());
        for &i in list {
            self.u32(i);
        }
    }
    /// `None` is `u32::MAX`: no collection here reaches that size.
    fn opt_idx(&mut self, v: Option<Idx>) {
        self.u32(v.unwrap_or(u32::MAX));
    }
    fn opt_time(&mut self, v: Option<Timestamp>) {
        match v {
            Some(t) => {
                self.u8(1);
                self.u64(t.unix_nanos() as u64);
            }
            None => self.u8(0),
        }
    }
    fn opt_right(&mut self, v: Option<Right>) {
        self.u8(match v {
            None => 0,
            Some(Right::Read) => 1,
            Some(Right::Write) => 2,
        });
    }
    /// A table: the record count, `count + 1` offsets into the records' bytes,
    /// then those bytes; `write` writes record `i`. (Not generic: the filter
    /// module pays for every instantiation.)
    fn table(&mut self, count: usize, write: &mut dyn FnMut(&mut Writer, usize)) {
        let mut records = Writer(Vec::new());
        let mut offsets = vec![0u32];
        for i in 0..count {
            write(&mut records, i);
            offsets.push(clamp_u32(records.0.len()));
        }
        self.len(count);
        for offset in offsets {
            self.u32(offset);
        }
        self.0.extend_from_slice(&records.0);
    }
    /// Fixed-size records (`records` holds them back to back), sorted by
    /// their bytes.
    fn fixed(&mut self, records: &[u8], size: usize) {
        let list: Vec<&[u8]> = records.chunks_exact(size).collect();
        let order = sorted_unique(&list);
        self.len(order.len());
        for record in order.iter().filter_map(|&p| list.get(p)) {
            self.0.extend_from_slice(record);
        }
    }
    /// A table of (id, index) records sorted by id, for lookups by id.
    fn id_index(&mut self, entries: &[(&str, Idx)]) {
        let keys: Vec<&[u8]> = entries.iter().map(|(id, _)| id.as_bytes()).collect();
        let order = sorted_unique(&keys);
        self.table(order.len(), &mut |w, i| {
            if let Some((id, idx)) = order.get(i).and_then(|&p| entries.get(p)) {
                w.str(id);
                w.u32(*idx);
            }
        });
    }
}

fn id_entries(map: &FxHashMap<Box<str>, Idx>) -> Vec<(&str, Idx)> {
    map.iter().map(|(id, &i)| (&**id, i)).collect()
}

/// The positions of `keys` in ascending key order, equal keys dropped.
fn sorted_unique(keys: &[&[u8]]) -> Vec<usize> {
    let mut positions: Vec<usize> = (0..keys.len()).collect();
    positions.sort_unstable_by(|&a, &b| keys.get(a).cmp(&keys.get(b)));
    positions.dedup_by(|a, b| keys.get(*a) == keys.get(*b));
    positions
}

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
    /// Where `bytes` start in the whole buffer, for error offsets.
    base: usize,
}

type Result<T> = std::result::Result<T, DecodeError>;

impl<'b> Reader<'b> {
    fn new(bytes: &'b [u8]) -> Reader<'b> {
        Reader {
            bytes,
            at: 0,
            base: 0,
        }
    }
    fn fail<T>(&self, what: &'static str) -> Result<T> {
        Err(DecodeError {
            offset: self.base + self.at,
            what,
        })
    }
    fn take(&mut self, n: usize) -> Result<&'b [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end.and_then(|e| self.bytes.get(self.at..e)) {
            Some(slice) => {
                self.at += n;
                Ok(slice)
            }
            None => self.fail("truncated"),
        }
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let slice = self.take(N)?;
        slice.try_into().or_else(|_| self.fail("truncated"))
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(u8::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn u32_be(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn idx_be(&mut self, bound: usize) -> Result<Idx> {
        let i = self.u32_be()?;
        if (i as usize) < bound {
            Ok(i)
        } else {
            self.fail("index out of range")
        }
    }
    /// A collection length, sanity-checked against the bytes left (each element
    /// takes at least `min_size` bytes) so a corrupt length cannot allocate wildly.
    fn len(&mut self, min_size: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size.max(1)) > self.bytes.len().saturating_sub(self.at) {
            return self.fail("length larger than the data");
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<&'b [u8]> {
        let n = self.len(1)?;
        self.take(n)
    }
    fn str_ref(&mut self) -> Result<&'b str> {
        let raw = self.bytes()?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s),
            Err(_) => self.fail("string is not UTF-8"),
        }
    }
    fn str(&mut self) -> Result<Box<str>> {
        self.str_ref().map(Box::from)
    }
    fn strs(&mut self) -> Result<Box<[Box<str>]>> {
        let n = self.len(4)?;
        (0..n).map(|_| self.str()).collect()
    }
    fn idx(&mut self, bound: usize) -> Result<Idx> {
        let i = self.u32()?;
        if (i as usize) < bound {
            Ok(i)
        } else {
            self.fail("index out of range")
        }
    }
    fn idxs(&mut self, bound: usize) -> Result<Box<[Idx]>> {
        let n = self.len(4)?;
        (0..n).map(|_| self.idx(bound)).collect()
    }
    fn opt_idx(&mut self, bound: usize) -> Result<Option<Idx>> {
        match self.u32()? {
            u32::MAX => Ok(None),
            i if (i as usize) < bound => Ok(Some(i)),
            _ => self.fail("index out of range"),
        }
    }
    fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => self.fail("not a boolean"),
        }
    }
    fn opt_time(&mut self) -> Result<Option<Timestamp>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(Timestamp::from_unix_nanos(self.u64()? as i64))),
            _ => self.fail("not an optional time"),
        }
    }
    fn opt_right(&mut self) -> Result<Option<Right>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(Right::Read)),
            2 => Ok(Some(Right::Write)),
            _ => self.fail("not a team right"),
        }
    }
    /// The end of a record: everything read.
    fn done(&self) -> Result<()> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            self.fail("trailing bytes")
        }
    }
    fn table(&mut self) -> Result<Table<'b>> {
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
    fn fixed(&mut self, size: usize) -> Result<Fixed<'b>> {
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
struct Table<'b> {
    count: usize,
    offsets: &'b [u8],
    offsets_at: usize,
    records: &'b [u8],
    records_at: usize,
}

impl<'b> Table<'b> {
    fn offset(&self, i: usize) -> Option<usize> {
        let raw: [u8; 4] = self.offsets.get(i * 4..i * 4 + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(raw) as usize)
    }
    /// A reader over record `i` alone.
    fn record(&self, i: usize) -> Result<Reader<'b>> {
        let bounds = self.offset(i).zip(self.offset(i + 1));
        match bounds.and_then(|(start, end)| Some((start, self.records.get(start..end)?))) {
            Some((start, bytes)) => Ok(Reader {
                bytes,
                at: 0,
                base: self.records_at + start,
            }),
            None => Err(DecodeError {
                offset: self.offsets_at + i * 4,
                what: "record offsets out of order",
            }),
        }
    }
    /// In a table sorted by the bytes `key` reads: the record whose key is `target`.
    fn search(
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
    fn find_id(&self, id: &str) -> Result<Option<Idx>> {
        let Some(i) = self.search(id_key, id.as_bytes())? else {
            return Ok(None);
        };
        let mut record = self.record(i)?;
        record.str_ref()?;
        record.u32().map(Some)
    }
    /// Checks that the table is sorted strictly by the bytes `key` reads.
    fn check_sorted(&self, key: fn(&mut Reader<'b>) -> Result<&'b [u8]>) -> Result<()> {
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

/// The sort key of a key record: its digest.
fn digest_key<'b>(r: &mut Reader<'b>) -> Result<&'b [u8]> {
    r.take(32)
}

/// The sort key of an id index record: the id.
fn id_key<'b>(r: &mut Reader<'b>) -> Result<&'b [u8]> {
    r.str_ref().map(str::as_bytes)
}

/// Fixed-size records, sorted by their leading bytes.
struct Fixed<'b> {
    count: usize,
    size: usize,
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Fixed<'b> {
    fn record(&self, i: usize) -> Reader<'b> {
        let start = i * self.size;
        Reader {
            bytes: self.bytes.get(start..start + self.size).unwrap_or_default(),
            at: 0,
            base: self.at + start,
        }
    }
    /// Checks that the records are sorted strictly by their bytes.
    fn check_sorted(&self) -> Result<()> {
        for i in 1..self.count {
            let (previous, current) = (self.record(i - 1), self.record(i));
            if previous.bytes >= current.bytes {
                return current.fail("records not sorted");
            }
        }
        Ok(())
    }

    /// The indexes of the records whose leading `prefix.len()` bytes equal `prefix`.
    fn range(&self, prefix: &[u8]) -> std::ops::Range<usize> {
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
fn partition(count: usize, before: impl Fn(usize) -> bool) -> usize {
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

fn principal_kind(p: PrincipalRef) -> u8 {
    u8::from(matches!(p, PrincipalRef::User(_)))
}

fn principal_prefix(kind: u8, idx: Idx) -> [u8; 5] {
    let mut out = [kind, 0, 0, 0, 0];
    for (slot, byte) in out.iter_mut().skip(1).zip(idx.to_be_bytes()) {
        *slot = byte;
    }
    out
}

fn status_code(status: KeyStatus) -> u8 {
    match status {
        KeyStatus::Active => 0,
        KeyStatus::Revoked => 1,
        KeyStatus::Pending => 2,
    }
}

/// Encodes a compiled snapshot. Deterministic: the same snapshot always gives
/// the same bytes (a source can use them for its ETag).
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64 + snapshot.keys.len() * 64));
    w.0.extend_from_slice(MAGIC);
    w.u64(0); // the checksum, filled in last
    w.str(&snapshot.revision);
    let stats = snapshot.stats;
    for n in [
        stats.organizations,
        stats.teams,
        stats.users,
        stats.apps,
        stats.api_keys,
        stats.routes,
        stats.grants,
    ] {
        w.len(n);
    }
    // Environment names by index.
    let mut envs: Vec<&str> = vec![""; snapshot.envs.len()];
    for (name, &i) in &snapshot.envs {
        if let Some(slot) = envs.get_mut(i as usize) {
            *slot = name;
        }
    }
    w.len(envs.len());
    for name in envs {
        w.str(name);
    }
    w.table(snapshot.orgs.len(), &mut |w, i| {
        if let Some(org) = snapshot.orgs.get(i) {
            w.str(&org.id);
            w.str(&org.handle);
            w.opt_idx(org.parent);
            w.u8(u8::from(org.suspended));
            w.opt_time(org.expires_at);
            w.idxs(&org.envs);
        }
    });
    // Ids and handles as the snapshot resolves them (an id wins over a handle).
    w.id_index(&id_entries(&snapshot.org_by_name));
    w.table(snapshot.routes.len(), &mut |w, i| {
        if let Some(route) = snapshot.routes.get(i) {
            w.str(&route.id);
            w.bytes(&route.prefix);
            w.strs(&route.hosts);
            w.strs(&route.methods);
            w.opt_idx(route.tenant);
            match &route.teams {
                RouteTeams::Unrestricted => w.u8(0),
                RouteTeams::AnyTeam => w.u8(1),
                RouteTeams::Listed(teams) => {
                    w.u8(2);
                    w.len(teams.len());
                    for listed in teams.iter() {
                        w.u32(listed.team);
                        w.u32(listed.org);
                    }
                }
            }
            w.opt_idx(route.read_permission);
            w.opt_idx(route.write_permission);
            w.u8(u8::from(route.public));
        }
    });
    w.table(snapshot.products.len(), &mut |w, i| {
        if let Some(product) = snapshot.products.get(i) {
            w.idxs(&product.routes);
            w.idxs(&product.envs);
        }
    });
    w.table(snapshot.apps.len(), &mut |w, i| {
        if let Some(app) = snapshot.apps.get(i) {
            w.str(&app.principal);
            w.u32(app.org);
            w.u8(u8::from(app.approved));
            w.idxs(&app.products);
        }
    });
    // Keys sorted by digest: a key's index is its rank.
    let keys = &snapshot.keys;
    let digests: Vec<&[u8]> = keys.iter().map(|key| &key.digest[..]).collect();
    let order = sorted_unique(&digests);
    w.table(order.len(), &mut |w, i| {
        if let Some(key) = order.get(i).and_then(|&p| keys.get(p)) {
            w.0.extend_from_slice(&key.digest);
            w.u32(key.app);
            w.u8(status_code(key.status));
            w.opt_time(key.expires_at);
            w.u8(u8::from(key.read_only));
            match &key.envs {
                None => w.u8(0),
                Some(envs) => {
                    w.u8(1);
                    w.idxs(envs);
                }
            }
        }
    });
    w.table(snapshot.users.len(), &mut |w, i| {
        if let Some(user) = snapshot.users.get(i) {
            w.str(&user.principal);
            w.opt_idx(user.default_tenant);
        }
    });
    w.table(snapshot.grants.len(), &mut |w, i| {
        if let Some(grants) = snapshot.grants.get(i) {
            w.strs(&grants.roles);
            w.strs(&grants.teams);
            w.len(grants.rights.len());
            for &(team, right) in grants.rights.iter() {
                w.u32(team);
                w.opt_right(Some(right));
            }
            w.opt_right(grants.star);
            w.len(grants.permissions.len());
            for &word in grants.permissions.iter() {
                w.u64(word);
            }
        }
    });
    // Fixed records whose bytes sort as their fields (big-endian).
    let mut by_principal: Vec<u8> =
        Vec::with_capacity(snapshot.grants_by_principal.len() * GRANT_REF_SIZE);
    for (&(principal, tenant), &grant) in &snapshot.grants_by_principal {
        let idx = match principal {
            PrincipalRef::App(i) | PrincipalRef::User(i) => i,
        };
        by_principal.extend_from_slice(&principal_prefix(principal_kind(principal), idx));
        by_principal.extend_from_slice(&tenant.to_be_bytes());
        by_principal.extend_from_slice(&grant.to_be_bytes());
    }
    w.fixed(&by_principal, GRANT_REF_SIZE);
    let mut pending: Vec<u8> = Vec::with_capacity(snapshot.pending.len() * PENDING_SIZE);
    for &(user, org) in &snapshot.pending {
        pending.extend_from_slice(&user.to_be_bytes());
        pending.extend_from_slice(&org.to_be_bytes());
    }
    w.fixed(&pending, PENDING_SIZE);
    let gateway = &snapshot.gateway;
    for map in [
        &snapshot.app_by_id,
        &snapshot.user_by_id,
        &gateway.apps,
        &gateway.users,
    ] {
        w.id_index(&id_entries(map));
    }
    let teams: Vec<(&str, (Idx, Idx))> = gateway.teams.iter().map(|(id, &t)| (&**id, t)).collect();
    let team_ids: Vec<&[u8]> = teams.iter().map(|(id, _)| id.as_bytes()).collect();
    let order = sorted_unique(&team_ids);
    w.table(order.len(), &mut |w, i| {
        if let Some((id, (team, org))) = order.get(i).and_then(|&p| teams.get(p)) {
            w.str(id);
            w.u32(*team);
            w.u32(*org);
        }
    });
    seal(&mut w.0);
    w.0
}

/// Recomputes the checksum of encoded bytes in place, after they were
/// changed on purpose (robustness tests and fuzzing reach the decoder this
/// way; a damaged file is refused by its checksum first).
pub fn seal(bytes: &mut [u8]) {
    let sum = checksum(bytes.get(HEADER_LEN..).unwrap_or_default());
    if let Some(slot) = bytes.get_mut(MAGIC.len()..HEADER_LEN) {
        slot.copy_from_slice(&sum.to_le_bytes());
    }
}

/// Joined like the compiler does (one `join` instantiation for the module).
fn comma_joined(items: &[Box<str>]) -> Box<str> {
    let refs: Vec<&str> = items.iter().map(|s| &**s).collect();
    refs.join(",").into()
}

/// The parts of an encoded snapshot, located but (for the large tables) not
/// yet decoded.
struct Parts<'b> {
    revision: Box<str>,
    stats: SnapshotStats,
    envs: FxHashMap<Box<str>, Idx>,
    orgs: Table<'b>,
    org_names: Table<'b>,
    routes: Table<'b>,
    products: Table<'b>,
    apps: Table<'b>,
    keys: Table<'b>,
    users: Table<'b>,
    grants: Table<'b>,
    by_principal: Fixed<'b>,
    pending: Fixed<'b>,
    app_ids: Table<'b>,
    user_ids: Table<'b>,
    client_ids: Table<'b>,
    emails: Table<'b>,
    teams: Table<'b>,
}

fn read_parts(bytes: &[u8]) -> Result<Parts<'_>> {
    let mut r = Reader::new(bytes);
    if r.take(MAGIC.len())? != MAGIC {
        return r.fail(
            "not a tenantgate compiled snapshot of this version (recompile it with this policyctl)",
        );
    }
    if r.u64()? != checksum(bytes.get(HEADER_LEN..).unwrap_or_default()) {
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
    let parts = Parts {
        revision,
        stats,
        envs,
        orgs: r.table()?,
        org_names: r.table()?,
        routes: r.table()?,
        products: r.table()?,
        apps: r.table()?,
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
    };
    r.done()?;
    Ok(parts)
}

impl Parts<'_> {
    fn org(&self, i: usize) -> Result<OrgEntry> {
        let mut r = self.orgs.record(i)?;
        let org = OrgEntry {
            id: r.str()?,
            handle: r.str()?,
            parent: r.opt_idx(self.orgs.count)?,
            suspended: r.bool()?,
            expires_at: r.opt_time()?,
            envs: r.idxs(self.envs.len())?.into(),
        };
        r.done()?;
        Ok(org)
    }

    fn route(&self, i: usize) -> Result<RouteEntry> {
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

    fn product(&self, i: usize) -> Result<ProductEntry> {
        let mut r = self.products.record(i)?;
        let product = ProductEntry {
            routes: r.idxs(self.routes.count)?.into(),
            envs: r.idxs(self.envs.len())?.into(),
        };
        r.done()?;
        Ok(product)
    }

    fn app(&self, i: usize) -> Result<AppEntry> {
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

    fn key(&self, i: usize) -> Result<KeyEntry> {
        let mut r = self.keys.record(i)?;
        let digest = r.array::<32>()?;
        let app = r.idx(self.apps.count)?;
        let status = match r.u8()? {
            0 => KeyStatus::Active,
            1 => KeyStatus::Revoked,
            2 => KeyStatus::Pending,
            _ => return r.fail("not a key status"),
        };
        let expires_at = r.opt_time()?;
        let read_only = r.bool()?;
        let envs = match r.u8()? {
            0 => None,
            1 => Some(IdxList::from(r.idxs(self.envs.len())?.into_vec())),
            _ => return r.fail("not an optional environment list"),
        };
        r.done()?;
        Ok(KeyEntry {
            digest,
            app,
            status,
            expires_at,
            read_only,
            envs,
        })
    }

    fn user(&self, i: usize) -> Result<UserEntry> {
        let mut r = self.users.record(i)?;
        let user = UserEntry {
            principal: r.str()?,
            default_tenant: r.opt_idx(self.orgs.count)?,
        };
        r.done()?;
        Ok(user)
    }

    fn grants(&self, i: usize) -> Result<Grants> {
        let mut r = self.grants.record(i)?;
        let roles = r.strs()?;
        let teams = r.strs()?;
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
            roles_header: comma_joined(&roles),
            teams_header: comma_joined(&teams),
            best_team_right: rights.iter().map(|(_, right)| *right).max(),
            roles,
            teams,
            rights: rights.into(),
            star,
            permissions: permissions.into(),
        })
    }

    /// A `by_principal` record: principal, tenant, grant.
    fn grant_ref(&self, r: &mut Reader<'_>) -> Result<(PrincipalRef, Idx, Idx)> {
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

    fn pending_pair(&self, r: &mut Reader<'_>) -> Result<(Idx, Idx)> {
        Ok((r.idx_be(self.users.count)?, r.idx_be(self.orgs.count)?))
    }

    /// An (id, index) table read whole, checking each index against `bound`.
    fn id_map(table: &Table<'_>, bound: usize) -> Result<FxHashMap<Box<str>, Idx>> {
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

    fn team(&self, r: &mut Reader<'_>) -> Result<(Box<str>, (Idx, Idx))> {
        let id = r.str()?;
        let team = r.idx(self.stats.teams)?;
        let org = r.idx(self.orgs.count)?;
        r.done()?;
        Ok((id, (team, org)))
    }
}

/// Decodes an encoded snapshot, checking every index (and that the searched
/// tables are sorted, as [`decode_for`] relies on it).
pub fn decode(bytes: &[u8]) -> Result<Snapshot> {
    let parts = read_parts(bytes)?;
    // Plain loops rather than `collect::<Result<_>>()`: each such adapter
    // instantiation costs the filter module code size.
    let mut orgs = Vec::with_capacity(parts.orgs.count);
    for i in 0..parts.orgs.count {
        orgs.push(parts.org(i)?);
    }
    let mut routes = Vec::with_capacity(parts.routes.count);
    for i in 0..parts.routes.count {
        routes.push(parts.route(i)?);
    }
    let mut products = Vec::with_capacity(parts.products.count);
    for i in 0..parts.products.count {
        products.push(parts.product(i)?);
    }
    let mut apps = Vec::with_capacity(parts.apps.count);
    for i in 0..parts.apps.count {
        apps.push(parts.app(i)?);
    }
    let mut keys = Vec::with_capacity(parts.keys.count);
    for k in 0..parts.keys.count {
        keys.push(parts.key(k)?);
    }
    let key_index = KeyIndex::build(&keys).map_err(|_| DecodeError {
        offset: bytes.len(),
        what: "duplicate key digest",
    })?;
    let mut users = Vec::with_capacity(parts.users.count);
    for i in 0..parts.users.count {
        users.push(parts.user(i)?);
    }
    let mut grants = Vec::with_capacity(parts.grants.count);
    for i in 0..parts.grants.count {
        grants.push(parts.grants(i)?);
    }
    let mut grants_by_principal = FxHashMap::default();
    grants_by_principal.reserve(parts.by_principal.count);
    for i in 0..parts.by_principal.count {
        let (principal, tenant, grant) = parts.grant_ref(&mut parts.by_principal.record(i))?;
        grants_by_principal.insert((principal, tenant), grant);
    }
    let mut pending = FxHashSet::default();
    for i in 0..parts.pending.count {
        pending.insert(parts.pending_pair(&mut parts.pending.record(i))?);
    }
    // What `decode_for` searches must be sorted (checked here, so a snapshot
    // that loads whole also loads per request).
    parts.by_principal.check_sorted()?;
    parts.pending.check_sorted()?;
    parts.keys.check_sorted(digest_key)?;
    for index in [
        &parts.org_names,
        &parts.app_ids,
        &parts.user_ids,
        &parts.client_ids,
        &parts.emails,
        &parts.teams,
    ] {
        index.check_sorted(id_key)?;
    }
    // The id indexes serve `decode_for`; here the maps come from the
    // records, and the indexes must say the same.
    let app_by_id = ids_by_principal(apps.iter().map(|a| &*a.principal), "app:");
    let user_by_id = ids_by_principal(users.iter().map(|u| &*u.principal), "user:");
    let org_by_name = org_names(&orgs);
    check_index(&parts.org_names, &org_by_name)?;
    check_index(&parts.app_ids, &app_by_id)?;
    check_index(&parts.user_ids, &user_by_id)?;
    let mut gateway = GatewayIds {
        apps: Parts::id_map(&parts.client_ids, apps.len())?,
        users: Parts::id_map(&parts.emails, users.len())?,
        teams: FxHashMap::default(),
    };
    for i in 0..parts.teams.count {
        let (id, team) = parts.team(&mut parts.teams.record(i)?)?;
        gateway.teams.insert(id, team);
    }
    let (route_index, folded_route_index) = route_tables(&routes);
    link_home_grants(&mut apps, &grants_by_principal);
    Ok(Snapshot {
        revision: parts.revision,
        org_by_name,
        orgs,
        envs: parts.envs,
        route_index,
        folded_route_index,
        routes,
        app_by_id,
        apps,
        products,
        keys,
        key_index,
        user_by_id,
        users,
        grants,
        grants_by_principal,
        pending,
        gateway,
        stats: parts.stats,
    })
}

/// Checks that an (id, index) table holds exactly the entries of `expected`.
fn check_index(table: &Table<'_>, expected: &FxHashMap<Box<str>, Idx>) -> Result<()> {
    if table.count != expected.len() {
        return Err(index_mismatch(table));
    }
    for i in 0..table.count {
        let mut r = table.record(i)?;
        let id = r.str_ref()?;
        if expected.get(id) != Some(&r.u32()?) {
            return Err(index_mismatch(table));
        }
    }
    Ok(())
}

fn index_mismatch(table: &Table<'_>) -> DecodeError {
    DecodeError {
        offset: table.offsets_at,
        what: "an id index disagrees with its records",
    }
}

/// What one request can be decided as and by: what [`decode_for`] loads.
#[derive(Debug, Default, Clone, Copy)]
pub struct Wanted<'w> {
    /// SHA-256 of the request's API key.
    pub key_digest: Option<[u8; 32]>,
    /// The user id header's value.
    pub user_id: Option<&'w [u8]>,
    /// The tenant selector header's value.
    pub tenant_selector: Option<&'w [u8]>,
    /// The gateway's apikey client id (Otoroshi).
    pub client_id: Option<&'w str>,
    /// The gateway's user e-mail or name (Otoroshi), as given.
    pub email: Option<&'w str>,
    /// The organization and team ids of the gateway apikey's location (Otoroshi `_loc`).
    pub location_tenant: Option<&'w str>,
    pub location_teams: &'w [String],
}

impl<'w> Wanted<'w> {
    /// What the request itself names: its API key, user id and tenant selector.
    pub fn of(request: &'w super::Request<'_>) -> Wanted<'w> {
        Wanted {
            key_digest: request.api_key.as_deref().map(super::decide::key_digest),
            user_id: request.user_id,
            tenant_selector: request.tenant_selector,
            ..Wanted::default()
        }
    }
}

fn placeholder_org() -> OrgEntry {
    OrgEntry {
        id: Box::default(),
        handle: Box::default(),
        parent: None,
        suspended: false,
        expires_at: None,
        envs: Vec::new().into(),
    }
}

fn placeholder_product() -> ProductEntry {
    ProductEntry {
        routes: Vec::new().into(),
        envs: Vec::new().into(),
    }
}

/// A partial snapshot being collected. Organizations, routes and products keep
/// their indexes (entries not needed stay empty placeholders, which cost no
/// allocation); apps, users and grants are renumbered.
struct Subset<'p, 'b> {
    parts: &'p Parts<'b>,
    orgs: Vec<OrgEntry>,
    org_loaded: Vec<bool>,
    products: Vec<ProductEntry>,
    product_loaded: Vec<bool>,
    /// (index in the encoded snapshot, index here).
    apps: Vec<(Idx, Idx)>,
    users: Vec<(Idx, Idx)>,
    grants: Vec<(Idx, Idx)>,
    app_entries: Vec<AppEntry>,
    user_entries: Vec<UserEntry>,
    grant_entries: Vec<Grants>,
    grants_by_principal: FxHashMap<(PrincipalRef, Idx), Idx>,
    pending: FxHashSet<(Idx, Idx)>,
}

fn local(map: &[(Idx, Idx)], global: Idx) -> Option<Idx> {
    map.iter().find(|(g, _)| *g == global).map(|(_, l)| *l)
}

impl Subset<'_, '_> {
    /// Organization `i` and its ancestors.
    fn org(&mut self, i: Idx) -> Result<()> {
        let mut next = Some(i);
        while let Some(i) = next {
            match self.org_loaded.get_mut(i as usize) {
                Some(loaded) if !*loaded => *loaded = true,
                _ => return Ok(()),
            }
            let org = self.parts.org(i as usize)?;
            next = org.parent;
            if let Some(slot) = self.orgs.get_mut(i as usize) {
                *slot = org;
            }
        }
        Ok(())
    }

    fn product(&mut self, i: Idx) -> Result<()> {
        match self.product_loaded.get_mut(i as usize) {
            Some(loaded) if !*loaded => *loaded = true,
            _ => return Ok(()),
        }
        let product = self.parts.product(i as usize)?;
        if let Some(slot) = self.products.get_mut(i as usize) {
            *slot = product;
        }
        Ok(())
    }

    fn grant(&mut self, global: Idx) -> Result<Idx> {
        if let Some(l) = local(&self.grants, global) {
            return Ok(l);
        }
        let l = self.grant_entries.len() as Idx;
        self.grant_entries.push(self.parts.grants(global as usize)?);
        self.grants.push((global, l));
        Ok(l)
    }

    /// Every grant of principal `global` (kind 0 app, 1 user), under `here`.
    fn grants_of(&mut self, kind: u8, global: Idx, here: PrincipalRef) -> Result<()> {
        let refs: Vec<(Idx, Idx)> = self
            .parts
            .by_principal
            .range(&principal_prefix(kind, global))
            .map(|i| {
                let mut r = self.parts.by_principal.record(i);
                self.parts.grant_ref(&mut r).map(|(_, t, g)| (t, g))
            })
            .collect::<Result<_>>()?;
        for (tenant, grant) in refs {
            let l = self.grant(grant)?;
            self.grants_by_principal.insert((here, tenant), l);
        }
        Ok(())
    }

    fn app(&mut self, global: Idx) -> Result<Idx> {
        if let Some(l) = local(&self.apps, global) {
            return Ok(l);
        }
        let l = self.app_entries.len() as Idx;
        let app = self.parts.app(global as usize)?;
        self.org(app.org)?;
        for &p in app.products.iter() {
            self.product(p)?;
        }
        self.app_entries.push(app);
        self.apps.push((global, l));
        self.grants_of(0, global, PrincipalRef::App(l))?;
        Ok(l)
    }

    fn user(&mut self, global: Idx) -> Result<Idx> {
        if let Some(l) = local(&self.users, global) {
            return Ok(l);
        }
        let l = self.user_entries.len() as Idx;
        let user = self.parts.user(global as usize)?;
        if let Some(tenant) = user.default_tenant {
            self.org(tenant)?;
        }
        self.user_entries.push(user);
        self.users.push((global, l));
        self.grants_of(1, global, PrincipalRef::User(l))?;
        let orgs: Vec<Idx> = self
            .parts
            .pending
            .range(&global.to_be_bytes())
            .map(|i| {
                let mut r = self.parts.pending.record(i);
                self.parts.pending_pair(&mut r).map(|(_, org)| org)
            })
            .collect::<Result<_>>()?;
        for org in orgs {
            self.pending.insert((l, org));
        }
        Ok(l)
    }

    /// `name` (an organization id or handle) for `org_by_name`.
    fn org_name(&mut self, name: &str, names: &mut FxHashMap<Box<str>, Idx>) -> Result<()> {
        if let Some(org) = self.parts.org_names.find_id(name)? {
            self.org(org)?;
            let entry = self.orgs.get(org as usize);
            if !entry.is_some_and(|o| &*o.id == name || &*o.handle == name) {
                return Err(index_mismatch(&self.parts.org_names));
            }
            names.insert(name.into(), org);
        }
        Ok(())
    }
}

/// Decodes the part of an encoded snapshot that decides one request: every
/// route, and the organizations, products, apps, keys, users and grants its
/// identities reach, each found by binary search and decoded alone.
/// Deciding that request (with those identities) against the result gives the
/// same decision as against the whole snapshot, for a cost that does not grow
/// with the snapshot. Only the records read are checked; [`decode`] checks
/// everything.
pub fn decode_for(bytes: &[u8], wanted: &Wanted<'_>) -> Result<Snapshot> {
    let parts = read_parts(bytes)?;
    let mut subset = Subset {
        parts: &parts,
        orgs: (0..parts.orgs.count).map(|_| placeholder_org()).collect(),
        org_loaded: vec![false; parts.orgs.count],
        products: (0..parts.products.count)
            .map(|_| placeholder_product())
            .collect(),
        product_loaded: vec![false; parts.products.count],
        apps: Vec::new(),
        users: Vec::new(),
        grants: Vec::new(),
        app_entries: Vec::new(),
        user_entries: Vec::new(),
        grant_entries: Vec::new(),
        grants_by_principal: FxHashMap::default(),
        pending: FxHashSet::default(),
    };
    // Every route: the route index is built here exactly as `decode` builds
    // it, never read from the bytes (routes are few).
    let mut routes = Vec::with_capacity(parts.routes.count);
    for i in 0..parts.routes.count {
        let route = parts.route(i)?;
        if let Some(tenant) = route.tenant {
            subset.org(tenant)?;
        }
        routes.push(route);
    }
    let mut keys = Vec::new();
    if let Some(digest) = wanted.key_digest {
        if let Some(k) = parts.keys.search(digest_key, &digest)? {
            let mut key = parts.key(k)?;
            key.app = subset.app(key.app)?;
            keys.push(key);
        }
    }
    let key_index = KeyIndex::build(&keys).unwrap_or_default();
    if let Some(id) = wanted.user_id.and_then(|id| std::str::from_utf8(id).ok()) {
        if let Some(user) = parts.user_ids.find_id(id)? {
            let l = subset.user(user)?;
            let principal = subset.user_entries.get(l as usize).map(|u| &*u.principal);
            if principal.and_then(|p| p.strip_prefix("user:")) != Some(id) {
                return Err(index_mismatch(&parts.user_ids));
            }
        }
    }
    let mut org_by_name = FxHashMap::default();
    let selector = wanted
        .tenant_selector
        .and_then(|s| std::str::from_utf8(s).ok());
    for name in [selector, wanted.location_tenant].into_iter().flatten() {
        subset.org_name(name, &mut org_by_name)?;
    }
    let mut gateway = GatewayIds::default();
    if let Some(client_id) = wanted.client_id {
        if let Some(app) = parts.client_ids.find_id(client_id)? {
            gateway.apps.insert(client_id.into(), subset.app(app)?);
        }
    }
    if let Some(email) = wanted.email {
        let email = email.to_ascii_lowercase();
        if let Some(user) = parts.emails.find_id(&email)? {
            gateway.users.insert(email.into(), subset.user(user)?);
        }
    }
    for team in wanted.location_teams {
        if let Some(i) = parts.teams.search(id_key, team.as_bytes())? {
            let (id, placed) = parts.team(&mut parts.teams.record(i)?)?;
            gateway.teams.insert(id, placed);
        }
    }
    let Subset {
        orgs,
        products,
        mut app_entries,
        user_entries,
        grant_entries,
        grants_by_principal,
        pending,
        ..
    } = subset;
    let (route_index, folded_route_index) = route_tables(&routes);
    link_home_grants(&mut app_entries, &grants_by_principal);
    Ok(Snapshot {
        revision: parts.revision,
        org_by_name,
        orgs,
        envs: parts.envs,
        route_index,
        folded_route_index,
        routes,
        app_by_id: ids_by_principal(app_entries.iter().map(|a| &*a.principal), "app:"),
        apps: app_entries,
        products,
        keys,
        key_index,
        user_by_id: ids_by_principal(user_entries.iter().map(|u| &*u.principal), "user:"),
        users: user_entries,
        grants: grant_entries,
        grants_by_principal,
        pending,
        gateway,
        stats: parts.stats,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn demo_bytes() -> Vec<u8> {
        encode(&crate::load_snapshot(include_str!("../../../policies/demo.json")).unwrap())
    }

    /// Where record `i` of `table` starts in the whole buffer.
    fn record_at(table: &Table<'_>, i: usize) -> usize {
        table.records_at + table.offset(i).unwrap()
    }

    #[test]
    fn an_index_that_disagrees_with_its_records_is_refused() {
        let mut bytes = demo_bytes();
        let (at, name) = {
            let parts = read_parts(&bytes).unwrap();
            let mut record = parts.org_names.record(0).unwrap();
            let name = record.str_ref().unwrap().to_string();
            (record_at(&parts.org_names, 0) + 4 + name.len(), name)
        };
        // Point the first organization name at another organization.
        let index = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        bytes[at..at + 4].copy_from_slice(&((index + 1) % 6).to_le_bytes());
        seal(&mut bytes);
        let err = decode(&bytes).err().unwrap();
        assert_eq!(err.what, "an id index disagrees with its records");
        let wanted = Wanted {
            tenant_selector: Some(name.as_bytes()),
            ..Wanted::default()
        };
        assert!(decode_for(&bytes, &wanted).is_err());
    }

    #[test]
    fn the_whole_and_the_partial_decoders_build_the_same_route_index() {
        let bytes = demo_bytes();
        let whole = decode(&bytes).unwrap();
        let part = decode_for(&bytes, &Wanted::default()).unwrap();
        for path in [
            "/orders/admin/x",
            "/orders/1",
            "/health",
            "/catalog",
            "/nowhere",
            "/",
        ] {
            for method in ["GET", "POST"] {
                let case = crate::PathCase::Sensitive;
                assert_eq!(
                    whole.match_route(method, "localhost", path.as_bytes(), case),
                    part.match_route(method, "localhost", path.as_bytes(), case),
                    "{method} {path}"
                );
            }
        }
    }

    #[test]
    fn encoding_is_deterministic_and_round_trips() {
        let bytes = demo_bytes();
        assert_eq!(bytes, demo_bytes());
        assert_eq!(encode(&decode(&bytes).unwrap()), bytes);
    }
}
