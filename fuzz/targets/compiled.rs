//! A compiled snapshot (`policyctl compile`, a policy source, a baked
//! module): `binary::decode`, on the bytes as given and, so that mutations
//! reach past the checksum, on the bytes sealed (checksum recomputed).
//!
//! Invariants: refusals are one-line errors, never panics; what `decode`
//! accepts re-encodes stably; `decode_for` accepts it too and decides the
//! requests derived from the input (their names, the demo's credentials,
//! the gateway's identities) with the same `explain` JSON as `decode`.

use super::common;
use tenantgate_policy::binary::{self, Wanted};

pub fn run(data: &[u8]) {
    if let Err(e) = binary::decode(data) {
        common::assert_one_line("decode", &e.to_string());
    }
    let mut sealed = data.to_vec();
    binary::seal(&mut sealed);
    match binary::decode(&sealed) {
        Ok(whole) => {
            common::check_round_trip(&whole);
            common::check_compiled_decides_alike(&whole, &sealed, data, 6, false);
        }
        Err(e) => {
            common::assert_one_line("decode", &e.to_string());
            // The partial decoder checks only what it reads: it may accept,
            // but never panics.
            let _ = binary::decode_for(&sealed, &Wanted::default());
            for derived in common::derived_requests(data, 2) {
                let sources = tenantgate_policy::Sources::default();
                let request = tenantgate_policy::Request::from_parts(
                    &sources,
                    derived.method,
                    &derived.host,
                    &derived.path,
                    &derived.headers,
                );
                let wanted = common::wanted(&derived, &request);
                if let Ok(partial) = binary::decode_for(&sealed, &wanted) {
                    let _ = common::decide_derived(&partial, &derived, &request);
                }
            }
        }
    }
}
