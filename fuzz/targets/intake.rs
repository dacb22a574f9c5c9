//! A snapshot taken in part after part (issue 12): `intake::Intake`, which
//! cuts a compiled snapshot's key table (and, moving the apps, its app table,
//! grant references and app id indexes) into buckets while it arrives
//! (signed or not) and keeps anything else whole. The input as given and,
//! when compiled, sealed (checksum recomputed) so that mutations reach the
//! key table's checks; in parts of a size the input picks.
//!
//! Invariants: never panics, a compiled snapshot's refusals are one-line
//! errors; the intake
//! accepts exactly what `load_verified_split` accepts on the whole bytes,
//! without a verifier and with the `signed` target's key, the apps moving or
//! kept (the input's first byte picks), and then yields the same keyless
//! snapshot, signed sequence, key, app and grant buckets.

use super::common;
use std::sync::OnceLock;
use tenantgate_policy::binary::tier::{Apps, MemoryTier, Tier};
use tenantgate_policy::binary::{self, encode};
use tenantgate_policy::intake::{Arrived, Intake};
use tenantgate_policy::signed::{self, Verifier};

const GENERATION: u64 = 0x51ea;

/// The key the `signed` target's seeds are signed with.
fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| match Verifier::new(&[signed::public_key(&[7; 32])]) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    })
}

pub fn run(data: &[u8]) {
    check(data);
    if binary::is_binary(data) {
        let mut sealed = data.to_vec();
        binary::seal(&mut sealed);
        check(&sealed);
    }
}

/// Buckets by index.
type Buckets = Vec<Vec<u8>>;

/// What a load yields, compared whole: the keyless snapshot's bytes, the
/// sequence, the key, app and grant buckets.
type Outcome = (Vec<u8>, Option<u64>, [Buckets; 3]);

fn check(bytes: &[u8]) {
    let part = 1 + usize::from(bytes.last().copied().unwrap_or(0)) * 13;
    let apps = match bytes.first() {
        Some(b) if b % 2 == 1 => Apps::Keep,
        _ => Apps::Move,
    };
    for verifier in [None, Some(verifier())] {
        let whole = whole(bytes, verifier, apps);
        let streamed = streamed(bytes, part, verifier, apps);
        // A compiled snapshot's refusals are one line (JSON's list every problem).
        if binary::is_binary(bytes) {
            for e in [whole.as_ref().err(), streamed.as_ref().err()]
                .into_iter()
                .flatten()
            {
                common::assert_one_line("intake", e);
            }
        }
        match (whole, streamed) {
            (Ok(w), Ok(s)) => assert!(w == s, "the intake loaded another snapshot or tier"),
            (Err(_), Err(_)) => {}
            (w, s) => panic!("whole: {:?}, streamed: {:?}", w.err(), s.err()),
        }
    }
}

/// The key, app and grant buckets of `tier`, those written as the snapshot
/// arrived taken from `written`.
fn tier_of(tier: &Tier<'_>, written: Option<MemoryTier>) -> Result<[Buckets; 3], String> {
    let written = written.unwrap_or_default();
    let cut = |count: u32, bucket: &dyn Fn(u32) -> Option<Vec<u8>>| -> Buckets {
        (0..count).map(|i| bucket(i).unwrap_or_default()).collect()
    };
    let keys = if tier.keys_written() {
        written.keys
    } else {
        cut(tier.count(), &|i| tier.bucket(i).map(|b| b.into_owned()))
    };
    let (apps, grants) = if tier.apps_written() {
        (written.apps, written.grants)
    } else {
        let count = tier.app_count();
        let apps = cut(count, &|i| tier.app_bucket(i).map(|b| b.into_owned()));
        (
            apps,
            cut(count, &|i| tier.grant_bucket(i).map(|b| b.into_owned())),
        )
    };
    let apps_count = tier.app_count() as usize;
    if keys.len() != tier.count() as usize || apps.len() != apps_count || grants.len() != apps_count
    {
        return Err(format!(
            "{} key buckets of {}, {} app and {} grant buckets of {apps_count}",
            keys.len(),
            tier.count(),
            apps.len(),
            grants.len(),
        ));
    }
    Ok([keys, apps, grants])
}

fn whole(bytes: &[u8], verifier: Option<&Verifier>, apps: Apps) -> Result<Outcome, String> {
    let ((snapshot, tier), sequence) =
        tenantgate_policy::load_verified_split(bytes, verifier, GENERATION, apps)
            .map_err(|e| e.to_string())?;
    Ok((encode(&snapshot), sequence, tier_of(&tier, None)?))
}

fn streamed(
    bytes: &[u8],
    part: usize,
    verifier: Option<&Verifier>,
    apps: Apps,
) -> Result<Outcome, String> {
    let mut intake = Intake::new(bytes.len(), GENERATION, apps, Vec::new());
    let mut written = MemoryTier::default();
    for chunk in bytes.chunks(part) {
        intake
            .push(chunk, &mut written)
            .map_err(|e| e.to_string())?;
    }
    match intake.finish(verifier).map_err(|e| e.to_string())? {
        Arrived::Whole(body) => whole(&body, verifier, apps),
        Arrived::Cut(taken) => {
            let (snapshot, cut, sequence) = taken.decode().map_err(|e| e.to_string())?;
            let buckets = tier_of(&Tier::Cut(cut), Some(written))?;
            Ok((encode(&snapshot), sequence, buckets))
        }
    }
}
