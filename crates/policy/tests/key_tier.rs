//! The key tier (issue 12): a snapshot's keys cut into buckets that live
//! outside the decision VMs. A keyless snapshot given the key found in its
//! bucket must decide every request exactly as the whole snapshot does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use tenantgate_policy::binary::tier::{
    bucket_count_for, bucket_of, find_key, split_keys, KeyTier, TierError,
};
use tenantgate_policy::binary::{decode, encode};
use tenantgate_policy::generate::{generate, generated_raw_key};
use tenantgate_policy::{
    self as policy, decide, Context, Mode, Reason, Request, Snapshot, Sources, Timestamp,
};

const SEED: u64 = 9;

/// A small xorshift: the same requests on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap()
}

/// A generated world, whole, and keyless (through its compiled form, as the
/// filter publishes it) with its tier.
fn world(keys: usize) -> (Snapshot, Snapshot, KeyTier) {
    let text = generate(60, keys, SEED).to_string();
    let full = policy::load_snapshot(&text).unwrap();
    let mut keyless = policy::load_snapshot(&text).unwrap();
    let tier = split_keys(&mut keyless, 0x5eed);
    let keyless = decode(&encode(&keyless)).unwrap();
    (full, keyless, tier)
}

fn bucket<'t>(tier: &'t KeyTier, digest: &[u8; 32]) -> &'t [u8] {
    let count = u32::try_from(tier.buckets.len()).unwrap();
    &tier.buckets[bucket_of(digest, count) as usize]
}

#[test]
fn a_keyless_snapshot_with_the_key_of_its_bucket_decides_as_the_whole() {
    let (full, keyless, tier) = world(2_000);
    assert_eq!(tier.keys, 2_000);
    assert_eq!(tier.buckets.len(), 16);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut allowed, mut found) = (0, 0);
    for i in 0..4_000 {
        // Keys past 2,000 are unknown: the bucket has no entry for them.
        let raw = generated_raw_key(SEED, rng.below(2_200));
        let org = format!("org-{}", rng.below(70));
        let path = match rng.below(3) {
            0 => format!("/t/{org}/orders/{i}"),
            1 => format!("/t/{org}/catalog"),
            _ => "/profile".to_string(),
        };
        let method = if rng.below(10) < 3 { "POST" } else { "GET" };
        let user = format!("user-{}", rng.below(300));
        let headers = if rng.below(10) < 8 {
            vec![("x-api-key", raw.as_str())]
        } else {
            vec![("x-user-id", user.as_str()), ("x-tenant-id", org.as_str())]
        };
        let request = Request::from_parts(&Sources::default(), method, "h", &path, &headers);
        let digest = policy::key_digest(&raw);
        let key = find_key(bucket(&tier, &digest), tier.generation, &digest, &keyless).unwrap();
        found += usize::from(key.is_some());
        let context = Context::new(now(), Some("prod"));
        let whole = decide(&full, &request, &context);
        allowed += usize::from(whole.allowed());
        let split = decide(&keyless, &request, &context.with_external_key(key.as_ref()));
        assert_eq!(
            serde_json::to_value(whole.explain(Mode::Audit)).unwrap(),
            serde_json::to_value(split.explain(Mode::Audit)).unwrap(),
            "{method} {path} {headers:?}"
        );
    }
    // The comparison covered allowed and denied requests, found and unknown keys.
    assert!(
        allowed > 500 && found > 2_000,
        "allowed {allowed}, found {found}"
    );
}

#[test]
fn without_its_bucket_a_keyless_snapshot_knows_no_key() {
    let (full, keyless, _) = world(200);
    let raw = generated_raw_key(SEED, 3);
    let headers = [("x-api-key", raw.as_str())];
    let request = Request::from_parts(&Sources::default(), "GET", "h", "/profile", &headers);
    let context = Context::new(now(), Some("prod"));
    assert_ne!(
        decide(&full, &request, &context).reason,
        Some(Reason::InvalidApiKey)
    );
    assert_eq!(
        decide(&keyless, &request, &context).reason,
        Some(Reason::InvalidApiKey)
    );
}

#[test]
fn a_bucket_of_another_generation_is_refused() {
    let (_, keyless, tier) = world(200);
    let digest = policy::key_digest(generated_raw_key(SEED, 3));
    let error = find_key(
        bucket(&tier, &digest),
        tier.generation + 1,
        &digest,
        &keyless,
    );
    assert_eq!(
        error.unwrap_err(),
        TierError::OtherGeneration {
            found: tier.generation,
            expected: tier.generation + 1
        }
    );
}

#[test]
fn a_bucket_pointing_past_the_snapshot_is_refused() {
    // Buckets of a world with 2,000 apps' keys read against a demo-sized one.
    let (_, _, tier) = world(2_000);
    let small = policy::load_snapshot(&generate(2, 10, SEED).to_string()).unwrap();
    let mut refused = 0;
    for n in 0..2_000 {
        let digest = policy::key_digest(generated_raw_key(SEED, n));
        match find_key(bucket(&tier, &digest), tier.generation, &digest, &small) {
            Err(TierError::Corrupt(_)) => refused += 1,
            Ok(Some(_)) => {} // an app index that happens to exist in the small world
            other => panic!("{other:?}"),
        }
    }
    assert!(refused > 1_000, "{refused}");
}

#[test]
fn corrupt_buckets_are_errors_never_panics() {
    let (_, keyless, tier) = world(300);
    let digest = policy::key_digest(generated_raw_key(SEED, 7));
    let good = bucket(&tier, &digest);
    assert!(find_key(good, tier.generation, &digest, &keyless)
        .unwrap()
        .is_some());
    for len in 0..good.len() {
        assert!(find_key(&good[..len], tier.generation, &digest, &keyless).is_err());
    }
    let mut rng = Rng(7);
    for _ in 0..2_000 {
        let mut bad = good.to_vec();
        let at = rng.below(bad.len());
        bad[at] ^= 1 << rng.below(8);
        let _ = find_key(&bad, tier.generation, &digest, &keyless);
    }
}

#[test]
fn buckets_hold_about_a_hundred_keys() {
    assert_eq!(bucket_count_for(0), 1);
    assert_eq!(bucket_count_for(128), 1);
    assert_eq!(bucket_count_for(129), 2);
    assert_eq!(bucket_count_for(1_000_000), 8_192);
    assert_eq!(bucket_count_for(usize::MAX / 2), 1 << 16);
    let (_, _, tier) = world(5_000);
    let total: usize = tier.buckets.iter().map(Vec::len).sum();
    assert!(tier
        .buckets
        .iter()
        .all(|b| b.len() < 4 * total / tier.buckets.len()));
}

#[test]
fn cutting_the_compiled_key_table_gives_the_same_tier_and_snapshot() {
    use tenantgate_policy::binary::tier::decode_split;
    let text = generate(60, 5_000, SEED).to_string();
    let mut in_memory = policy::load_snapshot(&text).unwrap();
    let compiled = encode(&in_memory);
    let tier = split_keys(&mut in_memory, 42);
    let (keyless, cut) = decode_split(&compiled, 42).unwrap();
    assert_eq!((cut.count(), cut.keys()), (64, 5_000));
    let cut = cut.into_tier();
    assert_eq!(cut.keys, tier.keys);
    assert_eq!(cut.buckets, tier.buckets, "byte for byte");
    assert_eq!(encode(&keyless), encode(&in_memory));
    assert_eq!(keyless.keys_held(), 0);
    assert_eq!(keyless.stats().api_keys, 5_000);
    // Through the loader a fetcher uses, JSON or compiled alike.
    for bytes in [text.as_bytes(), &compiled[..]] {
        let ((_, loaded), sequence) = policy::load_verified_split(bytes, None, 42).unwrap();
        let buckets: Vec<Vec<u8>> = (0..loaded.count())
            .map(|i| loaded.bucket(i).unwrap().into_owned())
            .collect();
        assert_eq!((buckets, sequence), (tier.buckets.clone(), None));
        assert_eq!((loaded.generation(), loaded.keys()), (42, 5_000));
    }
}

#[test]
fn a_damaged_compiled_snapshot_fails_the_cut_as_it_fails_decode() {
    use tenantgate_policy::binary::tier::decode_split;
    let snapshot = policy::load_snapshot(&generate(4, 50, SEED).to_string()).unwrap();
    let compiled = encode(&snapshot);
    // Every single-byte change that decode refuses, the cut refuses too.
    let mut refused = 0;
    for at in (16..compiled.len()).step_by(7) {
        let mut bad = compiled.clone();
        bad[at] ^= 0x5a;
        let whole = decode(&bad).is_ok();
        assert_eq!(decode_split(&bad, 1).is_ok(), whole, "byte {at}");
        refused += usize::from(!whole);
    }
    assert!(refused > 0);
}
