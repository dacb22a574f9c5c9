//! A compiled snapshot's key and app tables cut into the buckets of a tier
//! as the bytes are read, never decoded into records.

use super::arena::Arena;
use super::{
    app_bucket_count_for, bucket_count_for, bucket_of, encode_bucket, Apps, KeyTier,
    APPS_PER_BUCKET,
};
use crate::binary::decode::{decode_parts, Leave};
use crate::binary::read::{Checksum, Fixed, Table};
use crate::binary::{principal_kind, principal_prefix, DecodeError};
use crate::records::PrincipalRef;
use crate::snapshot::Snapshot;

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
    /// Cut from a stream ([`super::StreamCut`]): the key buckets were
    /// written as the key table arrived (their count, and the keys'), and
    /// the table here is empty.
    streamed: Option<(u32, usize)>,
    /// Cut from a stream moving the apps: the app buckets were written as
    /// the apps and their grants arrived (their count).
    apps_streamed: Option<u32>,
}

impl KeyCut<'_> {
    /// The cut of what a stream kept, its key buckets (and app buckets)
    /// already written.
    pub(super) fn with_streamed(mut self, keys: (u32, usize), apps: Option<u32>) -> Self {
        self.streamed = Some(keys);
        self.apps_streamed = apps;
        self
    }

    /// What a stream wrote, when it wrote the key buckets (and the app
    /// buckets, moving the apps): a tier that borrows nothing, so that what
    /// the stream kept can be let go before the rest is published.
    pub fn written(&self) -> Option<super::Written> {
        let (buckets, keys) = self.streamed?;
        Some(super::Written {
            generation: self.generation,
            buckets,
            keys,
            apps: self.apps_streamed,
        })
    }

    /// Whether the app buckets were written as the snapshot arrived:
    /// [`KeyCut::app_bucket`] has none of them then.
    pub fn apps_written(&self) -> bool {
        self.apps_streamed.is_some()
    }

    /// The generation every bucket carries.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many buckets.
    pub fn count(&self) -> u32 {
        if let Some((buckets, _)) = self.streamed {
            return buckets;
        }
        u32::try_from(self.starts.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// How many keys.
    pub fn keys(&self) -> usize {
        self.streamed.map_or(self.table.count, |(_, keys)| keys)
    }

    /// Whether the key buckets were written as the snapshot arrived
    /// (streamed): [`KeyCut::bucket`] has none of them then.
    pub fn keys_written(&self) -> bool {
        self.streamed.is_some()
    }

    /// Bucket `i`, encoded now.
    pub fn bucket(&self, i: u32) -> Option<Vec<u8>> {
        if self.streamed.is_some() {
            return None;
        }
        let from = *self.starts.get(i as usize)?;
        let to = *self.starts.get(i as usize + 1)?;
        // Checked when cut: any index will do to read them again.
        let keys = (from..to)
            .map(|r| self.table.record(r as usize)?.key(usize::MAX, usize::MAX))
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        let keys: Vec<_> = keys.iter().collect();
        encode_bucket(self.generation, &keys)
    }

    /// How many app buckets (0 when the apps stay in the snapshot).
    pub fn app_count(&self) -> u32 {
        if let Some(buckets) = self.apps_streamed {
            return buckets;
        }
        self.apps
            .as_ref()
            .map_or(0, |(apps, _)| app_bucket_count_for(apps.count))
    }

    /// App bucket `i`, encoded now: each app's record as the snapshot holds
    /// it.
    pub fn app_bucket(&self, i: u32) -> Option<Vec<u8>> {
        if self.apps_streamed.is_some() {
            return None;
        }
        let (apps, _) = self.apps.as_ref()?;
        let from = i.checked_mul(APPS_PER_BUCKET)?;
        let to = from.saturating_add(APPS_PER_BUCKET).min(apps.count as u32);
        let mut arena = Arena::default();
        for app in from..to {
            arena.push(apps.record(app as usize).ok()?.bytes).ok()?;
        }
        arena.app_bucket(self.generation, from)
    }

    /// Grant bucket `i`, encoded now: the grants of app bucket `i`'s apps,
    /// from the snapshot's grant references.
    pub fn grant_bucket(&self, i: u32) -> Option<Vec<u8>> {
        if self.apps_streamed.is_some() {
            return None;
        }
        let (apps, by_principal) = self.apps.as_ref()?;
        let from = i.checked_mul(APPS_PER_BUCKET)?;
        let to = from.saturating_add(APPS_PER_BUCKET).min(apps.count as u32);
        // The grant references are sorted by principal: those of the apps
        // `from..to` are one run, walked once from where the first one is.
        let app_prefix = |app| principal_prefix(principal_kind(PrincipalRef::App(app)), app);
        let mut at = by_principal.range(&app_prefix(from)).start;
        let mut arena = Arena::default();
        for app in from..to {
            let prefix = app_prefix(app);
            let start = at;
            while at < by_principal.count && by_principal.record(at).bytes.starts_with(&prefix) {
                at += 1;
            }
            let grants = (start..at).filter_map(|r| {
                let mut r = by_principal.record(r);
                r.take(prefix.len()).ok()?;
                Some((r.u32_be().ok()?, r.u32_be().ok()?))
            });
            let count = at - start;
            arena
                .write(4 + 8 * count, |w| w.app_grants(count, grants))
                .ok()?;
        }
        arena.grant_bucket(self.generation, from)
    }

    /// Every bucket, encoded (for tests and small snapshots).
    pub fn into_tier(self) -> KeyTier {
        let buckets = (0..self.count()).filter_map(|i| self.bucket(i)).collect();
        let app_buckets = (0..self.app_count())
            .filter_map(|i| self.app_bucket(i))
            .collect();
        let grant_buckets = (0..self.app_count())
            .filter_map(|i| self.grant_bucket(i))
            .collect();
        KeyTier {
            generation: self.generation,
            buckets,
            keys: self.keys(),
            app_buckets,
            grant_buckets,
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
    cut_parts(bytes, generation, apps, Checksum::Check)
}

/// [`decode_split`], the checksum compared or not ([`Checksum`]).
pub(super) fn cut_parts(
    bytes: &[u8],
    generation: u64,
    apps: Apps,
    sum: Checksum,
) -> Result<(Snapshot, KeyCut<'_>), DecodeError> {
    let leave = match apps {
        Apps::Move => Leave::KeysAndApps,
        Apps::Keep => Leave::Keys,
    };
    let (snapshot, parts) = decode_parts(bytes, leave, sum)?;
    let (app_count, envs) = (parts.apps.count, parts.envs.len());
    let table = parts.keys;
    let count = bucket_count_for(table.count);
    let mut starts: Vec<u32> = Vec::with_capacity(count as usize + 1);
    // `decode_with` checked that no two keys share the leading bytes the
    // tier keeps of their digests.
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
            streamed: None,
            apps_streamed: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::binary::{decode, encode};
    use crate::records::DISTINCT_DIGEST_BYTES;

    /// A generated snapshot whose second key's digest is the first's but
    /// for a byte past the leading ones the tier keeps.
    fn with_keys_the_tier_cannot_tell_apart() -> Vec<u8> {
        let text = crate::generate::generate(4, 50, 3).to_string();
        let mut snapshot = crate::load_snapshot(&text).unwrap();
        let mut close = snapshot.keys[0].digest;
        close[DISTINCT_DIGEST_BYTES + 3] ^= 0x40;
        snapshot.keys[1].digest = close;
        encode(&snapshot)
    }

    #[test]
    fn keys_that_differ_only_past_the_tiers_bytes_are_refused() {
        let bytes = with_keys_the_tier_cannot_tell_apart();
        for apps in [Apps::Keep, Apps::Move] {
            let refused = decode_split(&bytes, 1, apps).err().unwrap();
            assert!(
                refused.to_string().contains("share the leading bytes"),
                "{refused}"
            );
        }
        // Decoded whole, the snapshot's key index refuses them too.
        assert!(decode(&bytes).is_err());
    }
}
