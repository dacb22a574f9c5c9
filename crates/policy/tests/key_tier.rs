//! The key tier (issue 12): a snapshot's keys, and its apps with their
//! grants, cut into buckets that live outside the decision VMs. A keyless
//! (and appless) snapshot given the key found in its bucket, with its app
//! from its app bucket, must decide every request exactly as the whole
//! snapshot does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use tenantgate_policy::binary::tier::{
    app_bucket_count_for, bucket_count_for, bucket_of, find_key, split_keys, Apps, KeyTier,
    TierError, DISTINCT_DIGEST_BYTES,
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
    world_with(keys, Apps::Keep)
}

fn world_with(keys: usize, apps: Apps) -> (Snapshot, Snapshot, KeyTier) {
    let text = generate(60, keys, SEED).to_string();
    let full = policy::load_snapshot(&text).unwrap();
    let mut keyless = policy::load_snapshot(&text).unwrap();
    let tier = split_keys(&mut keyless, 0x5eed, apps);
    let keyless = decode(&encode(&keyless)).unwrap();
    (full, keyless, tier)
}

fn bucket<'t>(tier: &'t KeyTier, digest: &[u8; 32]) -> &'t [u8] {
    let count = u32::try_from(tier.buckets.len()).unwrap();
    &tier.buckets[bucket_of(digest, count) as usize]
}

/// The key with `digest` as a worker reads it: its bucket, then (apps in
/// the tier) its app's bucket and grant bucket.
fn lookup(tier: &KeyTier, keyless: &Snapshot, digest: &[u8; 32]) -> Option<policy::ExternalKey> {
    let apps_in_tier = !tier.app_buckets.is_empty();
    let key = find_key(
        bucket(tier, digest),
        tier.generation,
        digest,
        keyless,
        apps_in_tier,
    )
    .unwrap()?;
    let i = key.app_bucket() as usize;
    let buckets = apps_in_tier.then(|| (&tier.app_buckets[i][..], &tier.grant_buckets[i][..]));
    Some(key.resolve(buckets, tier.generation, keyless).unwrap())
}

#[test]
fn a_keyless_snapshot_with_the_key_of_its_bucket_decides_as_the_whole() {
    for apps in [Apps::Keep, Apps::Move] {
        decides_as_the_whole(apps);
    }
}

fn decides_as_the_whole(apps: Apps) {
    let (full, keyless, tier) = world_with(2_000, apps);
    assert_eq!(tier.keys, 2_000);
    assert_eq!(tier.buckets.len(), 8);
    match apps {
        Apps::Keep => assert!(tier.app_buckets.is_empty()),
        Apps::Move => assert_eq!(tier.app_buckets.len(), 500 / 128 + 1),
    }
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
        let key = lookup(&tier, &keyless, &digest);
        found += usize::from(key.is_some());
        let context = Context::new(now(), Some("prod"));
        let whole = decide(&full, &request, &context);
        allowed += usize::from(whole.allowed());
        let split = decide(&keyless, &request, &context.with_external_key(key.as_ref()));
        assert_eq!(
            serde_json::to_value(whole.explain(Mode::Audit)).unwrap(),
            serde_json::to_value(split.explain(Mode::Audit)).unwrap(),
            "{apps:?}: {method} {path} {headers:?}"
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
    let (_, keyless, tier) = world_with(200, Apps::Move);
    let digest = policy::key_digest(generated_raw_key(SEED, 3));
    let other = TierError::OtherGeneration {
        found: tier.generation,
        expected: tier.generation + 1,
    };
    let error = find_key(
        bucket(&tier, &digest),
        tier.generation + 1,
        &digest,
        &keyless,
        true,
    );
    assert_eq!(error.unwrap_err(), other);
    // An app bucket of another generation, too.
    let key = find_key(
        bucket(&tier, &digest),
        tier.generation,
        &digest,
        &keyless,
        true,
    )
    .unwrap()
    .unwrap();
    let i = key.app_bucket() as usize;
    let buckets = (&tier.app_buckets[i][..], &tier.grant_buckets[i][..]);
    let error = key.resolve(Some(buckets), tier.generation + 1, &keyless);
    assert_eq!(error.unwrap_err(), other);
}

#[test]
fn a_bucket_pointing_past_the_snapshot_is_refused() {
    // Buckets of a world with 2,000 apps' keys read against a demo-sized one.
    let (_, _, tier) = world(2_000);
    let small = policy::load_snapshot(&generate(2, 10, SEED).to_string()).unwrap();
    let mut refused = 0;
    for n in 0..2_000 {
        let digest = policy::key_digest(generated_raw_key(SEED, n));
        match find_key(
            bucket(&tier, &digest),
            tier.generation,
            &digest,
            &small,
            false,
        ) {
            Err(TierError::Corrupt(_)) => refused += 1,
            Ok(Some(_)) => {} // an app index that happens to exist in the small world
            other => panic!("{other:?}"),
        }
    }
    assert!(refused > 1_000, "{refused}");
}

#[test]
fn corrupt_buckets_are_errors_never_panics() {
    // 150 apps: two app buckets.
    let (_, keyless, tier) = world_with(600, Apps::Move);
    let digest = policy::key_digest(generated_raw_key(SEED, 7));
    let good = bucket(&tier, &digest);
    let find = |bytes: &[u8]| find_key(bytes, tier.generation, &digest, &keyless, true);
    let key = find(good).unwrap().unwrap();
    for len in 0..good.len() {
        assert!(find(&good[..len]).is_err());
    }
    let mut rng = Rng(7);
    for _ in 0..2_000 {
        let mut bad = good.to_vec();
        let at = rng.below(bad.len());
        bad[at] ^= 1 << rng.below(8);
        let _ = find(&bad);
    }
    // The app bucket and the grant bucket: every truncation refused, any
    // damage an error or a key.
    let i = key.app_bucket() as usize;
    let (apps, grants) = (&tier.app_buckets[i], &tier.grant_buckets[i]);
    let resolve = |apps: &[u8], grants: &[u8]| {
        let key = find(good).unwrap().unwrap();
        key.resolve(Some((apps, grants)), tier.generation, &keyless)
    };
    assert!(resolve(apps, grants).is_ok());
    for len in 0..apps.len() {
        assert!(resolve(&apps[..len], grants).is_err(), "{len}");
    }
    for len in 0..grants.len() {
        assert!(resolve(apps, &grants[..len]).is_err(), "{len}");
    }
    for _ in 0..2_000 {
        let (mut bad_apps, mut bad_grants) = (apps.to_vec(), grants.to_vec());
        let at = rng.below(bad_apps.len());
        bad_apps[at] ^= 1 << rng.below(8);
        let at = rng.below(bad_grants.len());
        bad_grants[at] ^= 1 << rng.below(8);
        let _ = resolve(&bad_apps, grants);
        let _ = resolve(apps, &bad_grants);
    }
    // The buckets of other apps do not hold this key's app, nor its grants;
    // an app bucket is not a grant bucket.
    let next = (i + 1) % tier.app_buckets.len();
    let (other_apps, other_grants) = (&tier.app_buckets[next], &tier.grant_buckets[next]);
    assert!(matches!(
        resolve(other_apps, grants),
        Err(TierError::Corrupt(_))
    ));
    assert!(matches!(
        resolve(apps, other_grants),
        Err(TierError::Corrupt(_))
    ));
    assert!(matches!(resolve(grants, apps), Err(TierError::Corrupt(_))));
}

#[test]
fn a_bucket_keeps_the_leading_bytes_of_each_digest_not_the_whole() {
    let (full, keyless, tier) = world(2_000);
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for raw in (0..2_000).step_by(97).map(|i| generated_raw_key(SEED, i)) {
        let digest = policy::key_digest(&raw);
        let held = bucket(&tier, &digest);
        assert!(contains(held, &digest[..DISTINCT_DIGEST_BYTES]), "{raw}");
        assert!(
            !contains(held, &digest[DISTINCT_DIGEST_BYTES - 4..]),
            "{raw}"
        );
    }
    // About 19 bytes less per key than the compiled key table: 12 of the
    // digest, the record's offset (a bucket's records delimit themselves,
    // a mark every 16 of them), 3 of status, read-only and tags packed into
    // one byte.
    let compiled = encode(&full).len() - encode(&keyless).len();
    let buckets: usize = tier.buckets.iter().map(Vec::len).sum();
    assert!(buckets + 18 * 2_000 < compiled, "{buckets} vs {compiled}");
}

#[test]
fn buckets_hold_a_few_hundred_keys() {
    assert_eq!(bucket_count_for(0), 1);
    assert_eq!(bucket_count_for(256), 1);
    assert_eq!(bucket_count_for(257), 2);
    assert_eq!(bucket_count_for(1_000_000), 4_096);
    assert_eq!(bucket_count_for(usize::MAX / 2), 1 << 16);
    assert_eq!(app_bucket_count_for(0), 0);
    assert_eq!(app_bucket_count_for(128), 1);
    assert_eq!(app_bucket_count_for(129), 2);
    assert_eq!(app_bucket_count_for(250_000), 1_954);
    let (_, _, tier) = world(5_000);
    let total: usize = tier.buckets.iter().map(Vec::len).sum();
    assert!(tier
        .buckets
        .iter()
        .all(|b| b.len() < 4 * total / tier.buckets.len()));
}

#[test]
fn cutting_the_compiled_key_table_gives_the_same_tier_and_snapshot() {
    for apps in [Apps::Keep, Apps::Move] {
        cut_equals_split(apps);
    }
}

fn cut_equals_split(apps: Apps) {
    use tenantgate_policy::binary::tier::decode_split;
    let text = generate(60, 5_000, SEED).to_string();
    let mut in_memory = policy::load_snapshot(&text).unwrap();
    let compiled = encode(&in_memory);
    let tier = split_keys(&mut in_memory, 42, apps);
    let (keyless, cut) = decode_split(&compiled, 42, apps).unwrap();
    assert_eq!((cut.count(), cut.keys()), (32, 5_000));
    let cut = cut.into_tier();
    assert_eq!(cut.keys, tier.keys);
    assert_eq!(cut.buckets, tier.buckets, "byte for byte");
    assert_eq!(cut.app_buckets, tier.app_buckets, "byte for byte");
    assert_eq!(cut.grant_buckets, tier.grant_buckets, "byte for byte");
    assert_eq!(encode(&keyless), encode(&in_memory));
    assert_eq!(keyless.keys_held(), 0);
    assert_eq!(keyless.stats().api_keys, 5_000);
    // Through the loader a fetcher uses, JSON or compiled alike.
    for bytes in [text.as_bytes(), &compiled[..]] {
        let ((_, loaded), sequence) = policy::load_verified_split(bytes, None, 42, apps).unwrap();
        let buckets: Vec<Vec<u8>> = (0..loaded.count())
            .map(|i| loaded.bucket(i).unwrap().into_owned())
            .collect();
        let app_buckets: Vec<Vec<u8>> = (0..loaded.app_count())
            .map(|i| loaded.app_bucket(i).unwrap().into_owned())
            .collect();
        let grant_buckets: Vec<Vec<u8>> = (0..loaded.app_count())
            .map(|i| loaded.grant_bucket(i).unwrap().into_owned())
            .collect();
        assert_eq!((buckets, sequence), (tier.buckets.clone(), None));
        assert_eq!(app_buckets, tier.app_buckets);
        assert_eq!(grant_buckets, tier.grant_buckets);
        assert_eq!((loaded.generation(), loaded.keys()), (42, 5_000));
    }
}

#[test]
fn a_snapshot_without_its_apps_is_much_smaller() {
    let text = generate(60, 20_000, SEED).to_string();
    let whole = encode(&policy::load_snapshot(&text).unwrap());
    let mut keys_moved = policy::load_snapshot(&text).unwrap();
    split_keys(&mut keys_moved, 1, Apps::Keep);
    let mut both_moved = policy::load_snapshot(&text).unwrap();
    let tier = split_keys(&mut both_moved, 1, Apps::Move);
    let (keys_moved, both_moved) = (encode(&keys_moved), encode(&both_moved));
    // 5,000 apps and their grants are most of what is left without the keys.
    assert!(
        both_moved.len() * 3 < keys_moved.len(),
        "{} vs {}",
        both_moved.len(),
        keys_moved.len()
    );
    assert!(keys_moved.len() < whole.len());
    let app_bytes: usize = tier
        .app_buckets
        .iter()
        .chain(&tier.grant_buckets)
        .map(Vec::len)
        .sum();
    assert!(app_bytes < keys_moved.len(), "apps once, not once per key");
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
        assert_eq!(
            decode_split(&bad, 1, Apps::Keep).is_ok(),
            whole,
            "byte {at}"
        );
        assert_eq!(
            decode_split(&bad, 1, Apps::Move).is_ok(),
            whole,
            "byte {at}"
        );
        refused += usize::from(!whole);
    }
    assert!(refused > 0);
}

#[test]
fn an_app_id_index_that_disagrees_with_apps_left_in_the_bytes_is_refused() {
    use tenantgate_policy::binary::seal;
    use tenantgate_policy::binary::tier::decode_split;
    let snapshot = policy::load_snapshot(&generate(4, 50, SEED).to_string()).unwrap();
    let mut compiled = encode(&snapshot);
    assert!(decode_split(&compiled, 1, Apps::Move).is_ok());
    // The index entry of app `app-3`: its length, its id, then its app index.
    let needle = [&5u32.to_le_bytes()[..], b"app-3"].concat();
    let at = compiled
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
        + needle.len();
    let index = u32::from_le_bytes(compiled[at..at + 4].try_into().unwrap());
    compiled[at..at + 4].copy_from_slice(&(index + 1).to_le_bytes());
    seal(&mut compiled);
    assert!(decode(&compiled).is_err());
    assert!(decode_split(&compiled, 1, Apps::Keep).is_err());
    assert!(decode_split(&compiled, 1, Apps::Move).is_err());
}
