//! A snapshot in memory (compiled from JSON) split into a keyless snapshot
//! and a [`KeyTier`].

use super::{
    app_bucket_count_for, bucket_count_for, bucket_of, encode_app_bucket, encode_bucket,
    encode_grant_bucket, Apps, KeyTier, APPS_PER_BUCKET,
};
use crate::binary::write::Writer;
use crate::index::{AppIds, KeyIndex};
use crate::records::{Idx, KeyEntry, PrincipalRef};
use crate::snapshot::Snapshot;

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
    let (app_buckets, grant_buckets) = match apps {
        Apps::Move => move_apps(snapshot, generation),
        Apps::Keep => (Vec::new(), Vec::new()),
    };
    KeyTier {
        generation,
        buckets,
        keys: keys.len(),
        app_buckets,
        grant_buckets,
    }
}

/// Takes the apps, their grants and ids out of `snapshot`, encoded as app
/// buckets and grant buckets.
fn move_apps(snapshot: &mut Snapshot, generation: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
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
    for list in &mut grants {
        list.sort_unstable();
    }
    let buckets = 0..app_bucket_count_for(apps.len());
    let range = |b: u32| {
        let from = (b * APPS_PER_BUCKET) as usize;
        from..(from + APPS_PER_BUCKET as usize).min(apps.len())
    };
    let encoded = |records: Vec<Vec<u8>>, b: u32, grants: bool| {
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let first = b * APPS_PER_BUCKET;
        match grants {
            false => encode_app_bucket(generation, first, &refs),
            true => encode_grant_bucket(generation, first, &refs),
        }
    };
    let app_buckets = buckets
        .clone()
        .map(|b| {
            let records = range(b)
                .filter_map(|a| apps.get(a))
                .map(|app| {
                    let mut w = Writer(Vec::new());
                    w.app(app);
                    w.0
                })
                .collect();
            encoded(records, b, false)
        })
        .collect();
    let grant_buckets = buckets
        .map(|b| {
            let lists = range(b)
                .filter_map(|a| grants.get(a))
                .map(|list| {
                    let mut w = Writer(Vec::new());
                    w.app_grants(list.iter().copied());
                    w.0
                })
                .collect();
            encoded(lists, b, true)
        })
        .collect();
    (app_buckets, grant_buckets)
}
