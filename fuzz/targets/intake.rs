//! A snapshot taken in part after part (issue 12): `intake::Intake`, which
//! cuts a compiled snapshot's key table into key buckets while it arrives
//! (signed or not) and keeps anything else whole. The input as given and,
//! when compiled, sealed (checksum recomputed) so that mutations reach the
//! key table's checks; in parts of a size the input picks.
//!
//! Invariants: never panics, a compiled snapshot's refusals are one-line
//! errors; the intake
//! accepts exactly what `load_verified_split` accepts on the whole bytes,
//! without a verifier and with the `signed` target's key, and then yields
//! the same keyless snapshot, signed sequence, key buckets and app buckets.

use super::common;
use std::sync::OnceLock;
use tenantgate_policy::binary::tier::{Apps, Tier};
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

/// What a load yields, compared whole: the keyless snapshot's bytes, the
/// sequence, the key buckets, the app buckets.
type Outcome = (Vec<u8>, Option<u64>, Vec<Vec<u8>>, Vec<Vec<u8>>);

fn check(bytes: &[u8]) {
    let part = 1 + usize::from(bytes.last().copied().unwrap_or(0)) * 13;
    for verifier in [None, Some(verifier())] {
        let whole = whole(bytes, verifier);
        let streamed = streamed(bytes, part, verifier);
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

fn tier_of(tier: &Tier<'_>, keys: Option<Vec<Vec<u8>>>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let keys = keys.unwrap_or_else(|| {
        (0..tier.count())
            .map(|i| tier.bucket(i).map(|b| b.into_owned()).unwrap_or_default())
            .collect()
    });
    let apps = (0..tier.app_count())
        .map(|i| {
            tier.app_bucket(i)
                .map(|b| b.into_owned())
                .unwrap_or_default()
        })
        .collect();
    (keys, apps)
}

fn whole(bytes: &[u8], verifier: Option<&Verifier>) -> Result<Outcome, String> {
    let ((snapshot, tier), sequence) =
        tenantgate_policy::load_verified_split(bytes, verifier, GENERATION, Apps::Move)
            .map_err(|e| e.to_string())?;
    let (keys, apps) = tier_of(&tier, None);
    Ok((encode(&snapshot), sequence, keys, apps))
}

fn streamed(bytes: &[u8], part: usize, verifier: Option<&Verifier>) -> Result<Outcome, String> {
    let mut intake = Intake::new(bytes.len(), GENERATION, Vec::new());
    let mut written: Vec<Vec<u8>> = Vec::new();
    let mut sink = |i: u32, bucket: Vec<u8>| {
        // Each bucket once, in order.
        let next = i as usize == written.len();
        written.push(bucket);
        next
    };
    for chunk in bytes.chunks(part) {
        intake.push(chunk, &mut sink).map_err(|e| e.to_string())?;
    }
    match intake.finish(verifier).map_err(|e| e.to_string())? {
        Arrived::Whole(body) => whole(&body, verifier),
        Arrived::Cut(taken) => {
            let (snapshot, cut, sequence) = taken.decode(Apps::Move).map_err(|e| e.to_string())?;
            let tier = Tier::Cut(cut);
            if written.len() != tier.count() as usize {
                return Err(format!("{} key buckets of {}", written.len(), tier.count()));
            }
            let (keys, apps) = tier_of(&tier, Some(written));
            Ok((encode(&snapshot), sequence, keys, apps))
        }
    }
}
