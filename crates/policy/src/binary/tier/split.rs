//! A snapshot in memory (compiled from JSON) split into a keyless snapshot
//! and a [`KeyTier`].

use super::arena::Arena;
use super::{
    app_bucket_count_for, bucket_count_for, bucket_of, encode_bucket, Apps, KeyTier,
    APPS_PER_BUCKET,
};
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
    // A bucket whose memory could not be had is left empty: its keys read
    // as a tier that cannot be read, 503, never a pass.
    let buckets = members
        .iter()
        .map(|keys| encode_bucket(generation, keys).unwrap_or_default())
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
    let app_buckets = buckets
        .clone()
        .map(|b| {
            let mut arena = Arena::default();
            for app in range(b).filter_map(|a| apps.get(a)) {
                let most = 4 + app.principal.len() + 4 + 1 + 4 + 4 * app.products.len();
                arena.write(most, |w| w.app(app)).ok()?;
            }
            arena.app_bucket(generation, b * APPS_PER_BUCKET)
        })
        // As a key bucket above: whole, or empty.
        .map(Option::unwrap_or_default)
        .collect();
    let grant_buckets = buckets
        .map(|b| {
            let mut arena = Arena::default();
            for list in range(b).filter_map(|a| grants.get(a)) {
                let most = 4 + 8 * list.len();
                arena
                    .write(most, |w| w.app_grants(list.len(), list.iter().copied()))
                    .ok()?;
            }
            arena.grant_bucket(generation, b * APPS_PER_BUCKET)
        })
        .map(Option::unwrap_or_default)
        .collect();
    (app_buckets, grant_buckets)
}
