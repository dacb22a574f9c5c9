//! A bucket of the key tier (issue 12): the bytes the filter's worker VMs
//! read from Envoy's shared data for a key on its first sight,
//! `binary::tier::find_key` against the demo snapshot without its keys.
//! Written by a VM of the same process, but a reader must survive any bytes:
//! the input as a bucket, and after a valid header (magic and generation) so
//! mutations reach the key table; digests from the input and the demo's keys.
//!
//! Invariants: refusals are one-line errors, never panics; a key found is
//! decided without panicking and its decision is one the whole snapshot
//! could give (its app and environments lie within the snapshot); a bucket
//! the tier wrote finds every demo key.

use super::common;
use std::sync::OnceLock;
use tenantgate_policy::binary::tier::{self, KeyTier, BUCKET_MAGIC};
use tenantgate_policy::{self as policy, Context, Request, Snapshot, Sources};

const GENERATION: u64 = 0x7e57;

/// The demo without its keys, and its one-bucket tier.
fn keyless() -> &'static (Snapshot, KeyTier) {
    static KEYLESS: OnceLock<(Snapshot, KeyTier)> = OnceLock::new();
    KEYLESS.get_or_init(
        || match tier::decode_split(common::demo_compiled(), GENERATION) {
            Ok((snapshot, cut)) => (snapshot, cut.into_tier()),
            Err(e) => panic!("the demo does not split: {e}"),
        },
    )
}

pub fn run(data: &[u8]) {
    let (snapshot, tier) = keyless();
    let mut headed = BUCKET_MAGIC.to_vec();
    headed.extend_from_slice(&GENERATION.to_le_bytes());
    headed.extend_from_slice(data);
    let mut digests: Vec<[u8; 32]> = common::DEMO_KEYS.iter().map(policy::key_digest).collect();
    digests.push(policy::key_digest(data));
    if let Some(digest) = data.get(..32).and_then(|d| <[u8; 32]>::try_from(d).ok()) {
        digests.push(digest);
    }
    for bucket in [data, &headed[..]] {
        for digest in &digests {
            look_up(snapshot, bucket, digest);
        }
    }
    // The tier's own bucket finds every demo key.
    for (raw, digest) in common::DEMO_KEYS.iter().zip(&digests) {
        let count = u32::try_from(tier.buckets.len()).unwrap_or(1);
        let bucket = tier.buckets.get(tier::bucket_of(digest, count) as usize);
        let found = bucket.map(|b| tier::find_key(b, GENERATION, digest, snapshot));
        assert!(
            matches!(found, Some(Ok(Some(_)))),
            "{raw} not in its bucket"
        );
    }
}

fn look_up(snapshot: &Snapshot, bucket: &[u8], digest: &[u8; 32]) {
    match tier::find_key(bucket, GENERATION, digest, snapshot) {
        Ok(Some(key)) => {
            let headers = [("x-api-key", "any")];
            let request =
                Request::from_parts(&Sources::default(), "GET", "h", "/orders/1", &headers);
            let context = Context::new(common::now(0), Some("prod"));
            let _ = policy::decide(snapshot, &request, &context.with_external_key(Some(&key)));
        }
        Ok(None) => {}
        Err(e) => common::assert_one_line("find_key", &e.to_string()),
    }
}
