//! A signed snapshot (`policyctl sign`) from a policy source:
//! `policy::load_verified` without a verifier (signature unchecked) and with
//! one (the public key of a fixed test seed).
//!
//! Invariants: errors are one line; with public keys configured only a
//! signed snapshot loads, and it loads alike without them; a snapshot this
//! target signs itself with the configured key loads exactly when its
//! payload loads, with the signed sequence.

use super::common;
use tenantgate_policy::{self as policy, signed};

/// The seed of the configured key (`policy::signed` tests use the same).
pub const SEED: [u8; 32] = [7; 32];

fn verifier() -> &'static signed::Verifier {
    static VERIFIER: std::sync::OnceLock<signed::Verifier> = std::sync::OnceLock::new();
    VERIFIER.get_or_init(
        || match signed::Verifier::new(&[signed::public_key(&SEED)]) {
            Ok(verifier) => verifier,
            Err(e) => panic!("test key: {e}"),
        },
    )
}

pub fn run(data: &[u8]) {
    let open = policy::load_verified(data, None);
    let checked = policy::load_verified(data, Some(verifier()));
    for result in [&open, &checked] {
        if let Err(e) = result {
            common::check_load_error(e);
        }
    }
    if let Ok((snapshot, sequence)) = &checked {
        assert!(
            signed::is_signed(data),
            "an unsigned snapshot passed the verifier"
        );
        assert!(sequence.is_some(), "verified without a sequence");
        match &open {
            Ok((unchecked, unchecked_sequence)) => {
                assert_eq!(unchecked.revision(), snapshot.revision());
                assert_eq!(unchecked_sequence, sequence);
            }
            Err(e) => panic!("verified, but refused without a verifier: {e}"),
        }
    }
    if signed::is_signed(data) {
        return;
    }
    // Sign the input ourselves: the payload is then read behind a valid signature.
    let payload = policy::load_snapshot_bytes(data);
    let revision = match &payload {
        Ok(snapshot) => snapshot.revision().to_string(),
        Err(_) => "r1".to_string(),
    };
    let envelope = signed::sign(data, &revision, 42, &SEED);
    match (policy::load_verified(&envelope, Some(verifier())), &payload) {
        (Ok((snapshot, sequence)), Ok(_)) => {
            assert_eq!(snapshot.revision(), revision);
            assert_eq!(sequence, Some(42));
        }
        (Err(e), Ok(_)) => panic!("a validly signed valid snapshot is refused: {e}"),
        (Ok(_), Err(e)) => panic!("a signature made a refused payload load: {e}"),
        (Err(e), Err(_)) => common::check_load_error(&e),
    }
}
