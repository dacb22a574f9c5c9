//! Reading a key, and its app, out of the tier's buckets against the keyless
//! snapshot of the same generation.

use super::{app_bucket_of, TierError, APP_BUCKET_MAGIC, BUCKET_MAGIC, GRANT_BUCKET_MAGIC};
use crate::binary::read::{Field, Reader, APP_FIELDS, GRANTS_FIELDS, TIER_KEY_FIELDS};
use crate::binary::DecodeError;
use crate::compile::keys::ExternalKey;
use crate::records::{AppEntry, Idx, IdxList, KeyEntry, TierApp, DISTINCT_DIGEST_BYTES};
use crate::snapshot::Snapshot;

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
    let run = open(bucket, BUCKET_MAGIC, generation)?.run(TIER_KEY_FIELDS)?;
    let Some(distinct) = digest.get(..DISTINCT_DIGEST_BYTES) else {
        return Ok(None);
    };
    let Some(record) = run.find(distinct)? else {
        return Ok(None);
    };
    // An app in the tier is checked when its bucket is read.
    let app_bound = if apps_in_tier {
        Idx::MAX as usize
    } else {
        snapshot.apps.len()
    };
    let entry = record.tier_key(digest, app_bound, snapshot.envs.len())?;
    Ok(Some(TierKey(entry)))
}

impl TierKey {
    /// The app bucket (and grant bucket) holding the key's app (when the
    /// apps are in the tier).
    pub fn app_bucket(&self) -> u32 {
        app_bucket_of(self.0.app)
    }

    /// The key, with its app read from `buckets` (the app bucket and the
    /// grant bucket [`TierKey::app_bucket`] names, of the same
    /// `generation`); `None` when the snapshot holds its apps.
    pub fn resolve(
        self,
        buckets: Option<(&[u8], &[u8])>,
        generation: u64,
        snapshot: &Snapshot,
    ) -> Result<ExternalKey, TierError> {
        let app = match buckets {
            Some((apps, grants)) => Some(find_app(apps, grants, generation, self.0.app, snapshot)?),
            None => None,
        };
        Ok(ExternalKey {
            digest: self.0.digest,
            entry: self.0,
            app,
        })
    }
}

/// Record `app` of a bucket of `magic` whose records are `fields` (its
/// first app after the generation, then its records back to back).
fn app_record<'b>(
    bucket: &'b [u8],
    magic: &[u8; 8],
    generation: u64,
    app: Idx,
    fields: &'static [Field],
) -> Result<Reader<'b>, TierError> {
    let mut r = open(bucket, magic, generation)?;
    let first = r.u32()?;
    let run = r.run(fields)?;
    let Some(at) = app
        .checked_sub(first)
        .filter(|&at| (at as usize) < run.count)
    else {
        let what = "an api key's app is not in its bucket";
        return Err(DecodeError { offset: 0, what }.into());
    };
    Ok(run.record(at as usize)?)
}

/// App `app` in `apps`, its grants in `grants`, checked against `snapshot`
/// as the decoder checks an app of its own and its grants.
fn find_app(
    apps: &[u8],
    grants: &[u8],
    generation: u64,
    app: Idx,
    snapshot: &Snapshot,
) -> Result<TierApp, TierError> {
    let mut r = app_record(apps, APP_BUCKET_MAGIC, generation, app, APP_FIELDS)?;
    let entry = AppEntry {
        principal: r.str()?,
        org: r.idx(snapshot.orgs.len())?,
        approved: r.bool()?,
        products: IdxList::from(r.idxs(snapshot.products.len())?.into_vec()),
        home_grants: None,
    };
    r.done()?;
    let mut r = app_record(grants, GRANT_BUCKET_MAGIC, generation, app, GRANTS_FIELDS)?;
    let count = r.len(8)?;
    let mut list = Vec::with_capacity(count);
    for _ in 0..count {
        list.push((r.idx(snapshot.orgs.len())?, r.idx(snapshot.grants.len())?));
    }
    r.done()?;
    if !list.windows(2).all(|w| matches!(w, [a, b] if a.0 < b.0)) {
        return r
            .fail("an app's grants are not sorted by tenant")
            .map_err(Into::into);
    }
    Ok(TierApp {
        entry,
        grants: list.into(),
    })
}
