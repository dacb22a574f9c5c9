//! The buckets of the key tier (issue 12): the bytes the filter's worker VMs
//! read from Envoy's shared data for a key on its first sight,
//! `binary::tier::find_key` and `TierKey::resolve` against the demo snapshot
//! without its keys and apps. Written by a VM of the same process, but a
//! reader must survive any bytes: the input as a key bucket, as an app
//! bucket and as a grant bucket, each also after a valid header (magic and generation) so
//! mutations reach the tables; digests from the input and the demo's keys.
//!
//! Invariants: refusals are one-line errors, never panics; a key found is
//! decided (with the demo's raw key when known, so the decision reads it)
//! without panicking; the tier's own buckets find every demo key and its app.

use super::common;
use std::sync::OnceLock;
use tenantgate_policy::binary::tier::{
    self, Apps, KeyTier, APP_BUCKET_MAGIC, BUCKET_MAGIC, GRANT_BUCKET_MAGIC,
};
use tenantgate_policy::{self as policy, Context, ExternalKey, Request, Snapshot, Sources};

const GENERATION: u64 = 0x7e57;

/// The demo without its keys and apps, and its tier.
fn keyless() -> &'static (Snapshot, KeyTier) {
    static KEYLESS: OnceLock<(Snapshot, KeyTier)> = OnceLock::new();
    KEYLESS.get_or_init(|| {
        match tier::decode_split(common::demo_compiled(), GENERATION, Apps::Move) {
            Ok((snapshot, cut)) => (snapshot, cut.into_tier()),
            Err(e) => panic!("the demo does not split: {e}"),
        }
    })
}

/// `magic`, the generation, then `data`.
fn headed(magic: &[u8; 8], data: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_vec();
    bytes.extend_from_slice(&GENERATION.to_le_bytes());
    bytes.extend_from_slice(data);
    bytes
}

pub fn run(data: &[u8]) {
    let (snapshot, tier) = keyless();
    let mut digests: Vec<(Option<&str>, [u8; 32])> = common::DEMO_KEYS
        .iter()
        .map(|raw| (Some(*raw), policy::key_digest(raw)))
        .collect();
    digests.push((None, policy::key_digest(data)));
    if let Some(digest) = data.get(..32).and_then(|d| <[u8; 32]>::try_from(d).ok()) {
        digests.push((None, digest));
    }
    let key_headed = headed(BUCKET_MAGIC, data);
    let app_headed = headed(APP_BUCKET_MAGIC, data);
    let grant_headed = headed(GRANT_BUCKET_MAGIC, data);
    for (raw, digest) in &digests {
        // The input as the key bucket, the tier's app buckets after it.
        for bucket in [data, &key_headed[..]] {
            look_up(snapshot, tier, bucket, Own::Both, *raw, digest);
        }
        // The tier's key bucket, the input as the app bucket or as the grant bucket.
        let count = u32::try_from(tier.buckets.len()).unwrap_or(1);
        if let Some(bucket) = tier.buckets.get(tier::bucket_of(digest, count) as usize) {
            for apps in [data, &app_headed[..]] {
                look_up(snapshot, tier, bucket, Own::Grants(apps), *raw, digest);
            }
            for grants in [data, &grant_headed[..]] {
                look_up(snapshot, tier, bucket, Own::Apps(grants), *raw, digest);
            }
        }
    }
    // The tier's own buckets find every demo key and its app.
    for (raw, digest) in digests.iter().take(common::DEMO_KEYS.len()) {
        let count = u32::try_from(tier.buckets.len()).unwrap_or(1);
        let bucket = tier.buckets.get(tier::bucket_of(digest, count) as usize);
        let found = bucket.and_then(|b| resolve(snapshot, tier, b, Own::Both, digest).transpose());
        assert!(matches!(found, Some(Ok(_))), "{raw:?} not in its buckets");
    }
}

/// Which of a key's app bucket and grant bucket are the tier's own (the
/// other one given).
#[derive(Clone, Copy)]
enum Own<'a> {
    Both,
    /// The tier's app bucket, this grant bucket.
    Apps(&'a [u8]),
    /// The tier's grant bucket, this app bucket.
    Grants(&'a [u8]),
}

/// The key of `digest` in `bucket`, its app from the buckets `own` says.
fn resolve(
    snapshot: &Snapshot,
    tier: &KeyTier,
    bucket: &[u8],
    own: Own<'_>,
    digest: &[u8; 32],
) -> Result<Option<ExternalKey>, tier::TierError> {
    let Some(key) = tier::find_key(bucket, GENERATION, digest, snapshot, true)? else {
        return Ok(None);
    };
    let i = key.app_bucket() as usize;
    let own_apps = tier
        .app_buckets
        .get(i)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let own_grants = tier
        .grant_buckets
        .get(i)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let buckets = match own {
        Own::Both => (own_apps, own_grants),
        Own::Apps(grants) => (own_apps, grants),
        Own::Grants(apps) => (apps, own_grants),
    };
    key.resolve(Some(buckets), GENERATION, snapshot).map(Some)
}

fn look_up(
    snapshot: &Snapshot,
    tier: &KeyTier,
    bucket: &[u8],
    own: Own<'_>,
    raw: Option<&str>,
    digest: &[u8; 32],
) {
    match resolve(snapshot, tier, bucket, own, digest) {
        Ok(Some(key)) => {
            let headers = [("x-api-key", raw.unwrap_or("any"))];
            let request =
                Request::from_parts(&Sources::default(), "GET", "h", "/orders/1", &headers);
            let context = Context::new(common::now(0), Some("prod"));
            let _ = policy::decide(snapshot, &request, &context.with_external_key(Some(&key)));
        }
        Ok(None) => {}
        Err(e) => common::assert_one_line("find_key", &e.to_string()),
    }
}
