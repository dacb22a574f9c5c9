//! The key tier: a snapshot's API keys, and optionally its apps with their
//! grants, cut into buckets, so that they can live once per proxy process
//! (the Envoy filter keeps them in Envoy's shared data) while each decision
//! VM holds the rest of the snapshot only (organizations, routes, products,
//! users), reading the bucket a request's key falls in and its app's bucket.
//!
//! A key bucket is the magic, the generation it belongs to, and a table of
//! key records sorted by digest (the records of the compiled form, see
//! [`super`]). A key's bucket is a function of its digest and the bucket
//! count alone. An app bucket is its magic, the generation, the index of its
//! first app, and [`APPS_PER_BUCKET`] consecutive apps of the snapshot's app
//! table, each record followed by the app's grants (tenant, grant) sorted by
//! tenant; an app's bucket is its index divided by [`APPS_PER_BUCKET`].
//!
//! The generation ties buckets to the keyless snapshot they were cut from:
//! their records point at its apps, organizations, products, grants and
//! environments by index, so a bucket of another generation must never be
//! read against it, and [`find_key`] and [`TierKey::resolve`] refuse one
//! ([`TierError::OtherGeneration`]): a reader that meets one has an old
//! snapshot and must pick up the new one first.

use super::decode::{decode_with, Leave};
use super::read::{digest_key, Fixed, Reader, Table};
use super::write::Writer;
use super::{principal_kind, principal_prefix, DecodeError};
use crate::compile::keys::ExternalKey;
use crate::index::{AppIds, KeyIndex};
use crate::records::{AppEntry, Idx, IdxList, KeyEntry, PrincipalRef, TierApp};
use crate::snapshot::Snapshot;
use std::borrow::Cow;

/// Magic and version of a key bucket.
pub const BUCKET_MAGIC: &[u8; 8] = b"TGKEYS\x00\x01";

/// Magic and version of an app bucket.
pub const APP_BUCKET_MAGIC: &[u8; 8] = b"TGAPPS\x00\x01";

/// Apps per app bucket: a first sight of a key copies one (a few KB).
pub const APPS_PER_BUCKET: u32 = 64;

/// About this many keys per bucket: a first sight of a key copies one bucket
/// out of the shared store (a few KB), and a new revision writes
/// `keys / KEYS_PER_BUCKET` of them.
const KEYS_PER_BUCKET: usize = 128;

/// At most this many buckets (a bucket then holds ~15 keys per million).
const MAX_BUCKETS: u32 = 1 << 16;

/// A snapshot's keys (and apps), cut into buckets in memory.
#[derive(Debug)]
pub struct KeyTier {
    /// The generation every bucket carries.
    pub generation: u64,
    /// Bucket `i` holds the keys [`bucket_of`] sends to `i`.
    pub buckets: Vec<Vec<u8>>,
    /// How many keys the buckets hold.
    pub keys: usize,
    /// App bucket `i` holds apps `i * APPS_PER_BUCKET..`; empty when the
    /// snapshot keeps its apps.
    pub app_buckets: Vec<Vec<u8>>,
}

/// Why a bucket could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TierError {
    /// The bucket belongs to another generation than the snapshot read with it.
    #[error("key bucket of generation {found:016x}, expected {expected:016x}")]
    OtherGeneration {
        /// The bucket's generation.
        found: u64,
        /// The snapshot's.
        expected: u64,
    },
    /// Not a bucket, or a corrupt one.
    #[error(transparent)]
    Corrupt(#[from] DecodeError),
}

/// How many buckets `keys` keys are cut into: a power of two.
pub fn bucket_count_for(keys: usize) -> u32 {
    let wanted = keys.div_ceil(KEYS_PER_BUCKET).max(1);
    u32::try_from(wanted.next_power_of_two())
        .unwrap_or(MAX_BUCKETS)
        .min(MAX_BUCKETS)
}

/// The bucket of the key with `digest`, among `count`: by the digest's
/// leading bits, so that the buckets are contiguous runs of a table sorted by
/// digest (the compiled form's key table is cut into buckets without
/// decoding a key).
pub fn bucket_of(digest: &[u8; 32], count: u32) -> u32 {
    let [a, b, c, d, ..] = *digest;
    let top = u64::from(u32::from_be_bytes([a, b, c, d]));
    u32::try_from((top * u64::from(count)) >> 32).unwrap_or(0)
}

/// How many app buckets `apps` apps are cut into.
pub fn app_bucket_count_for(apps: usize) -> u32 {
    u32::try_from(apps.div_ceil(APPS_PER_BUCKET as usize)).unwrap_or(u32::MAX)
}

/// The app bucket of app `app`.
pub fn app_bucket_of(app: Idx) -> u32 {
    app / APPS_PER_BUCKET
}

/// Whether the apps go into the tier with the keys ([`Apps::Move`]) or stay
/// in the snapshot ([`Apps::Keep`]: a host that compiles keys from elsewhere
/// against the snapshot's apps, such as the filter's key lookup, needs them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apps {
    /// Apps and their grants live in the tier's app buckets.
    Move,
    /// Apps stay in the snapshot.
    Keep,
}

/// Moves the keys (and with [`Apps::Move`] the apps and their grants) out
/// of `snapshot` into a tier of `generation`; what is left decides every
/// request but those with an API key, which need the key found with
/// [`find_key`] and [`TierKey::resolve`] (passed as the context's external
/// key).
pub fn split_keys(snapshot: &mut Snapshot, generation: u64, apps: Apps) -> KeyTier {
    let keys = std::mem::take(&mut snapshot.keys);
    snapshot.key_index = KeyIndex::default();
    let count = bucket_count_for(keys.len());
    let mut members: Vec<Vec<&KeyEntry>> = vec![Vec::new(); count as usize];
    for key in &keys {
        if let Some(bucket) = members.get_mut(bucket_of(&key.digest, count) as usize) {
            bucket.push(key);
        }
    }
    let buckets = members
        .iter()
        .map(|keys| encode_bucket(generation, keys))
        .collect();
    let app_buckets = match apps {
        Apps::Move => move_apps(snapshot, generation),
        Apps::Keep => Vec::new(),
    };
    KeyTier {
        generation,
        buckets,
        keys: keys.len(),
        app_buckets,
    }
}

/// Takes the apps, their grants and ids out of `snapshot`, encoded as app
/// buckets.
fn move_apps(snapshot: &mut Snapshot, generation: u64) -> Vec<Vec<u8>> {
    let apps = std::mem::take(&mut snapshot.apps);
    snapshot.app_by_id = AppIds::default();
    snapshot.gateway.apps.clear();
    let mut grants: Vec<Vec<(Idx, Idx)>> = vec![Vec::new(); apps.len()];
    snapshot
        .grants_by_principal
        .retain(|&(principal, tenant), &mut grant| {
            let PrincipalRef::App(app) = principal else {
                return true;
            };
            if let Some(list) = grants.get_mut(app as usize) {
                list.push((tenant, grant));
            }
            false
        });
    (0..app_bucket_count_for(apps.len()))
        .map(|b| {
            let from = (b * APPS_PER_BUCKET) as usize;
            let to = (from + APPS_PER_BUCKET as usize).min(apps.len());
            let records: Vec<Vec<u8>> = (from..to)
                .map(|a| {
                    let (Some(app), Some(list)) = (apps.get(a), grants.get_mut(a)) else {
                        return Vec::new();
                    };
                    list.sort_unstable();
                    let mut w = Writer(Vec::new());
                    w.app(app);
                    w.app_grants(list.iter().copied());
                    w.0
                })
                .collect();
            let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            encode_app_bucket(generation, b * APPS_PER_BUCKET, &refs)
        })
        .collect()
}

/// A compiled snapshot's key table (and app table) cut into the buckets of
/// a tier: every record checked, none copied until its bucket is asked for,
/// so the fetching VM can write the tier one bucket at a time instead of
/// holding all of it.
pub struct KeyCut<'b> {
    generation: u64,
    table: Table<'b>,
    /// Bucket `i` holds records `starts[i]..starts[i + 1]`.
    starts: Vec<u32>,
    /// The app table and the grant references, when the apps move.
    apps: Option<(Table<'b>, Fixed<'b>)>,
}

impl KeyCut<'_> {
    /// The generation every bucket carries.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many buckets.
    pub fn count(&self) -> u32 {
        u32::try_from(self.starts.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// How many keys.
    pub fn keys(&self) -> usize {
        self.table.count
    }

    /// Bucket `i`, encoded now.
    pub fn bucket(&self, i: u32) -> Option<Vec<u8>> {
        let from = *self.starts.get(i as usize)?;
        let to = *self.starts.get(i as usize + 1)?;
        let records: Vec<&[u8]> = (from..to)
            .filter_map(|r| self.table.record(r as usize).ok().map(|r| r.bytes))
            .collect();
        Some(encode_raw_bucket(self.generation, &records))
    }

    /// How many app buckets (0 when the apps stay in the snapshot).
    pub fn app_count(&self) -> u32 {
        self.apps
            .as_ref()
            .map_or(0, |(apps, _)| app_bucket_count_for(apps.count))
    }

    /// App bucket `i`, encoded now: each app's record as the snapshot holds
    /// it, then its grants from the snapshot's grant references.
    pub fn app_bucket(&self, i: u32) -> Option<Vec<u8>> {
        let (apps, by_principal) = self.apps.as_ref()?;
        let from = i.checked_mul(APPS_PER_BUCKET)?;
        let to = from.saturating_add(APPS_PER_BUCKET).min(apps.count as u32);
        let mut records = Vec::new();
        for app in from..to {
            let mut w = Writer(apps.record(app as usize).ok()?.bytes.to_vec());
            let refs = by_principal.range(&principal_prefix(
                principal_kind(PrincipalRef::App(app)),
                app,
            ));
            let pairs = refs.filter_map(|r| {
                let mut r = by_principal.record(r);
                r.take(5).ok()?;
                Some((r.u32_be().ok()?, r.u32_be().ok()?))
            });
            w.app_grants(pairs);
            records.push(w.0);
        }
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        Some(encode_app_bucket(self.generation, from, &refs))
    }

    /// Every bucket, encoded (for tests and small snapshots).
    pub fn into_tier(self) -> KeyTier {
        let buckets = (0..self.count()).filter_map(|i| self.bucket(i)).collect();
        let app_buckets = (0..self.app_count())
            .filter_map(|i| self.app_bucket(i))
            .collect();
        KeyTier {
            generation: self.generation,
            buckets,
            keys: self.keys(),
            app_buckets,
        }
    }
}

/// A compiled snapshot decoded without its keys (and with [`Apps::Move`]
/// without its apps and their grants), and its key table cut into a tier of
/// `generation` (each record checked as [`super::decode`] checks it, none
/// kept): a large snapshot's keys and apps are never held as records in the
/// fetching VM.
pub fn decode_split(
    bytes: &[u8],
    generation: u64,
    apps: Apps,
) -> Result<(Snapshot, KeyCut<'_>), DecodeError> {
    let leave = match apps {
        Apps::Move => Leave::KeysAndApps,
        Apps::Keep => Leave::Keys,
    };
    let (snapshot, parts) = decode_with(bytes, leave)?;
    let (app_count, envs) = (parts.apps.count, parts.envs.len());
    let table = parts.keys;
    let count = bucket_count_for(table.count);
    let mut starts: Vec<u32> = Vec::with_capacity(count as usize + 1);
    for i in 0..table.count {
        let key = table.record(i)?.key(app_count, envs)?;
        // Sorted by digest, so a key's bucket is never before the current one.
        while starts.len() <= bucket_of(&key.digest, count) as usize {
            starts.push(u32::try_from(i).unwrap_or(u32::MAX));
        }
    }
    while starts.len() <= count as usize {
        starts.push(u32::try_from(table.count).unwrap_or(u32::MAX));
    }
    let apps = (apps == Apps::Move).then_some((parts.apps, parts.by_principal));
    Ok((
        snapshot,
        KeyCut {
            generation,
            table,
            starts,
            apps,
        },
    ))
}

/// A tier ready to be written: cut from compiled bytes, or built in memory
/// (from a JSON snapshot, [`split_keys`]).
pub enum Tier<'b> {
    /// [`decode_split`].
    Cut(KeyCut<'b>),
    /// [`split_keys`].
    Built(KeyTier),
}

impl Tier<'_> {
    /// The generation every bucket carries.
    pub fn generation(&self) -> u64 {
        match self {
            Tier::Cut(cut) => cut.generation(),
            Tier::Built(tier) => tier.generation,
        }
    }

    /// How many buckets.
    pub fn count(&self) -> u32 {
        match self {
            Tier::Cut(cut) => cut.count(),
            Tier::Built(tier) => u32::try_from(tier.buckets.len()).unwrap_or(u32::MAX),
        }
    }

    /// How many keys.
    pub fn keys(&self) -> usize {
        match self {
            Tier::Cut(cut) => cut.keys(),
            Tier::Built(tier) => tier.keys,
        }
    }

    /// Bucket `i`.
    pub fn bucket(&self, i: u32) -> Option<Cow<'_, [u8]>> {
        match self {
            Tier::Cut(cut) => cut.bucket(i).map(Cow::Owned),
            Tier::Built(tier) => tier.buckets.get(i as usize).map(|b| Cow::Borrowed(&b[..])),
        }
    }

    /// How many app buckets (0: the apps stay in the snapshot).
    pub fn app_count(&self) -> u32 {
        match self {
            Tier::Cut(cut) => cut.app_count(),
            Tier::Built(tier) => u32::try_from(tier.app_buckets.len()).unwrap_or(u32::MAX),
        }
    }

    /// App bucket `i`.
    pub fn app_bucket(&self, i: u32) -> Option<Cow<'_, [u8]>> {
        match self {
            Tier::Cut(cut) => cut.app_bucket(i).map(Cow::Owned),
            Tier::Built(tier) => tier
                .app_buckets
                .get(i as usize)
                .map(|b| Cow::Borrowed(&b[..])),
        }
    }
}

fn encode_raw_bucket(generation: u64, records: &[&[u8]]) -> Vec<u8> {
    let mut w = Writer(BUCKET_MAGIC.to_vec());
    w.u64(generation);
    w.raw_table(records);
    w.0
}

fn encode_bucket(generation: u64, keys: &[&KeyEntry]) -> Vec<u8> {
    let mut w = Writer(BUCKET_MAGIC.to_vec());
    w.u64(generation);
    w.key_table(keys);
    w.0
}

fn encode_app_bucket(generation: u64, first: u32, records: &[&[u8]]) -> Vec<u8> {
    let mut w = Writer(APP_BUCKET_MAGIC.to_vec());
    w.u64(generation);
    w.u32(first);
    w.raw_table(records);
    w.0
}

/// Reads a bucket's magic and generation, refusing another generation.
fn open<'b>(bucket: &'b [u8], magic: &[u8; 8], generation: u64) -> Result<Reader<'b>, TierError> {
    let mut r = Reader::new(bucket);
    if r.take(magic.len())? != magic {
        let what = "not a bucket of the key tier";
        return Err(DecodeError { offset: 0, what }.into());
    }
    let found = r.u64()?;
    if found != generation {
        return Err(TierError::OtherGeneration {
            found,
            expected: generation,
        });
    }
    Ok(r)
}

/// A key read from its bucket; its app is resolved with [`TierKey::resolve`].
#[derive(Debug)]
pub struct TierKey(KeyEntry);

/// The key with `digest` in `bucket`, compiled against `snapshot` (the
/// keyless snapshot of the same `generation`) as a key of its own would be;
/// `apps_in_tier`: the snapshot's apps are in the tier's app buckets.
/// `Ok(None)`: no such key.
pub fn find_key(
    bucket: &[u8],
    generation: u64,
    digest: &[u8; 32],
    snapshot: &Snapshot,
    apps_in_tier: bool,
) -> Result<Option<TierKey>, TierError> {
    let mut r = open(bucket, BUCKET_MAGIC, generation)?;
    let table = r.table()?;
    r.done()?;
    let Some(i) = table.search(digest_key, digest)? else {
        return Ok(None);
    };
    // An app in the tier is checked when its bucket is read.
    let app_bound = match apps_in_tier {
        true => Idx::MAX as usize,
        false => snapshot.apps.len(),
    };
    let entry = table.record(i)?.key(app_bound, snapshot.envs.len())?;
    Ok(Some(TierKey(entry)))
}

impl TierKey {
    /// The app bucket holding the key's app (when the apps are in the tier).
    pub fn app_bucket(&self) -> u32 {
        app_bucket_of(self.0.app)
    }

    /// The key, with its app read from `app_bucket` (the one
    /// [`TierKey::app_bucket`] names, of the same `generation`); `None` when
    /// the snapshot holds its apps.
    pub fn resolve(
        self,
        app_bucket: Option<&[u8]>,
        generation: u64,
        snapshot: &Snapshot,
    ) -> Result<ExternalKey, TierError> {
        let app = match app_bucket {
            Some(bucket) => Some(find_app(bucket, generation, self.0.app, snapshot)?),
            None => None,
        };
        Ok(ExternalKey {
            digest: self.0.digest,
            entry: self.0,
            app,
        })
    }
}

/// App `app` in `bucket`, checked against `snapshot` as the decoder checks
/// an app of its own, with its grants.
fn find_app(
    bucket: &[u8],
    generation: u64,
    app: Idx,
    snapshot: &Snapshot,
) -> Result<TierApp, TierError> {
    let mut r = open(bucket, APP_BUCKET_MAGIC, generation)?;
    let first = r.u32()?;
    let table = r.table()?;
    r.done()?;
    let Some(at) = app
        .checked_sub(first)
        .filter(|&at| (at as usize) < table.count)
    else {
        let what = "an api key's app is not in its bucket";
        return Err(DecodeError { offset: 0, what }.into());
    };
    let mut r = table.record(at as usize)?;
    let entry = AppEntry {
        principal: r.str()?,
        org: r.idx(snapshot.orgs.len())?,
        approved: r.bool()?,
        products: IdxList::from(r.idxs(snapshot.products.len())?.into_vec()),
        home_grants: None,
    };
    let count = r.len(8)?;
    let mut grants = Vec::with_capacity(count);
    for _ in 0..count {
        grants.push((r.idx(snapshot.orgs.len())?, r.idx(snapshot.grants.len())?));
    }
    r.done()?;
    if !grants.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0)) {
        return r
            .fail("an app's grants are not sorted by tenant")
            .map_err(Into::into);
    }
    Ok(TierApp {
        entry,
        grants: grants.into(),
    })
}
