//! The compiled snapshot as bytes: what `policyctl compile` writes, what the
//! filter's fetcher publishes to the other VMs, what a policy source may serve
//! instead of JSON, and what `policyctl bake` puts into the Otoroshi module.
//!
//! Loading it skips JSON parsing and the owned document entirely: [`decode`]
//! reads the compiled vectors and rebuilds the hash indexes, so a large
//! snapshot loads in a fraction of the time and memory.
//!
//! Every collection but the environments is a table with an offset per record,
//! kept sorted where it is searched (keys by digest) or accompanied by a sorted
//! index (organization names, app, user and Otoroshi ids), so that
//! [`decode_for`] can read just what one request needs: the Otoroshi plug-in
//! is instantiated afresh for every call and cannot afford to load 10k keys or
//! 2,000 organizations to decide one request.
//!
//! Layout: the magic, an XXH3-64 checksum of everything after it, revision,
//! counts, environment names; tables of organizations, organization names,
//! routes, products, apps, keys, users, grants; the sorted fixed records of
//! grant references and invitations; the id indexes of apps, users, Otoroshi
//! client ids, e-mails and team ids.
//!
//! The format is versioned by its magic; everything is little-endian, lengths
//! are `u32`, and every read is bounds-checked so that a truncated or hostile
//! buffer is an error, never a panic. Indexes are checked against the
//! collections they point into; an index that restates other records (the
//! organization names, the app and user ids) must equal what [`decode`]
//! computes from them, so [`decode_for`], which reads the index, decides
//! exactly as [`decode`] for any bytes [`decode`] accepts. Nothing derived is
//! trusted for the route match: [`decode_for`] decodes every route (there
//! are few) and builds the route index as [`decode`] does.

use crate::document::KeyStatus;
use crate::records::{Idx, PrincipalRef};

mod decode;
mod partial;
mod read;
pub mod tier;
mod write;

pub use decode::decode;
pub use partial::{decode_for, Wanted};
pub use write::{encode, encode_after};

/// Magic and format version: `TGSNAP`, a NUL, and the version byte.
pub const MAGIC: &[u8; 8] = b"TGSNAP\x00\x04";

/// Bytes of the header: the magic, then the checksum of everything after it.
pub(crate) const HEADER_LEN: usize = 16;

/// The checksum of a compiled snapshot's body: XXH3-64, which reads several
/// GB/s, so that even a baked 100k-key snapshot is verified on every
/// Otoroshi call for a fraction of the call. It detects corruption (a
/// truncated download, a bad copy, a flipped bit); authenticity is what
/// signed snapshots are for.
pub(crate) fn checksum(body: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(body)
}

/// The slot `policyctl bake` fills in the Otoroshi module: this marker, then
/// the address and length (`u32`, little-endian) of the data segment holding
/// the baked snapshot; `0xFFFFFFFF` (not zero, so that `wasm-opt` keeps the
/// bytes in the data segment) while nothing is baked.
pub const BAKE_SLOT: [u8; 16] = *b"TGBAKE\x00\x01\xff\xff\xff\xff\xff\xff\xff\xff";

/// Whether `bytes` look like an encoded snapshot (rather than JSON).
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC[..6])
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("compiled snapshot is corrupt at byte {offset}: {what}")]
pub struct DecodeError {
    /// Where in the bytes the problem is.
    pub offset: usize,
    /// What is wrong there.
    pub what: &'static str,
}

/// Size of one `by_principal` record: kind, principal, tenant, grant.
pub(crate) const GRANT_REF_SIZE: usize = 13;
/// Size of one `pending` record: user, organization.
pub(crate) const PENDING_SIZE: usize = 8;

/// way; a damaged file is refused by its checksum first).
pub fn seal(bytes: &mut [u8]) {
    let sum = checksum(bytes.get(HEADER_LEN..).unwrap_or_default());
    if let Some(slot) = bytes.get_mut(MAGIC.len()..HEADER_LEN) {
        slot.copy_from_slice(&sum.to_le_bytes());
    }
}

pub(crate) fn principal_kind(p: PrincipalRef) -> u8 {
    u8::from(matches!(p, PrincipalRef::User(_)))
}

pub(crate) fn principal_prefix(kind: u8, idx: Idx) -> [u8; 5] {
    let mut out = [kind, 0, 0, 0, 0];
    for (slot, byte) in out.iter_mut().skip(1).zip(idx.to_be_bytes()) {
        *slot = byte;
    }
    out
}

pub(crate) fn status_code(status: KeyStatus) -> u8 {
    match status {
        KeyStatus::Active => 0,
        KeyStatus::Revoked => 1,
        KeyStatus::Pending => 2,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::read::{read_parts, Table};
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn demo_bytes() -> Vec<u8> {
        encode(&crate::load_snapshot(include_str!("../../../policies/demo.json")).unwrap())
    }

    #[test]
    fn a_snapshot_encoded_after_a_prefix_is_the_prefix_then_its_encoding() {
        let snapshot = crate::load_snapshot(include_str!("../../../policies/demo.json")).unwrap();
        let whole = encode(&snapshot);
        for capacity in [0, 10, whole.len() + 6] {
            let framed = encode_after(b"head\n", capacity, &snapshot);
            assert_eq!(&framed[..5], b"head\n");
            assert_eq!(&framed[5..], &whole[..], "sealed as a snapshot of its own");
            assert!(decode(&framed[5..]).is_ok());
        }
        // Sized right, the buffer never grew.
        assert_eq!(
            encode_after(b"head\n", whole.len() + 5, &snapshot).capacity(),
            whole.len() + 5
        );
    }

    /// Where record `i` of `table` starts in the whole buffer.
    fn record_at(table: &Table<'_>, i: usize) -> usize {
        table.records_at + table.offset(i).unwrap()
    }

    #[test]
    fn an_index_that_disagrees_with_its_records_is_refused() {
        let mut bytes = demo_bytes();
        let (at, name) = {
            let parts = read_parts(&bytes).unwrap();
            let mut record = parts.org_names.record(0).unwrap();
            let name = record.str_ref().unwrap().to_string();
            (record_at(&parts.org_names, 0) + 4 + name.len(), name)
        };
        // Point the first organization name at another organization.
        let index = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        bytes[at..at + 4].copy_from_slice(&((index + 1) % 6).to_le_bytes());
        seal(&mut bytes);
        let err = decode(&bytes).err().unwrap();
        assert_eq!(err.what, "an id index disagrees with its records");
        let wanted = Wanted {
            tenant_selector: Some(name.as_bytes()),
            ..Wanted::default()
        };
        assert!(decode_for(&bytes, &wanted).is_err());
    }

    #[test]
    fn a_role_id_holding_a_comma_is_refused() {
        // Grants keep their roles as the comma-joined header only, so an id
        // with a comma would read back as two roles.
        let mut bytes = demo_bytes();
        let at = {
            let parts = read_parts(&bytes).unwrap();
            let with_role = (0..parts.grants.count).find(|&i| {
                let mut record = parts.grants.record(i).unwrap();
                record.len(4).unwrap() > 0 && record.str_ref().unwrap().len() > 2
            });
            // Past the role count and the first role's length.
            record_at(&parts.grants, with_role.unwrap()) + 8
        };
        bytes[at + 1] = b',';
        seal(&mut bytes);
        let err = decode(&bytes).err().unwrap();
        assert_eq!(err.what, "a role or team id is empty or holds a comma");
    }

    #[test]
    fn the_whole_and_the_partial_decoders_build_the_same_route_index() {
        let bytes = demo_bytes();
        let whole = decode(&bytes).unwrap();
        let part = decode_for(&bytes, &Wanted::default()).unwrap();
        for path in [
            "/orders/admin/x",
            "/orders/1",
            "/health",
            "/catalog",
            "/nowhere",
            "/",
        ] {
            for method in ["GET", "POST"] {
                let case = crate::PathCase::Sensitive;
                assert_eq!(
                    whole.match_route(method, "localhost", path.as_bytes(), case),
                    part.match_route(method, "localhost", path.as_bytes(), case),
                    "{method} {path}"
                );
            }
        }
    }

    #[test]
    fn two_apps_with_one_id_are_refused_whether_the_apps_are_decoded_or_left() {
        use crate::index::AppIds;
        let mut snapshot =
            crate::load_snapshot(include_str!("../../../policies/demo.json")).unwrap();
        assert!(decode(&encode(&snapshot)).is_ok());
        // The second app takes the first one's id; the index lists it once,
        // at the first, as the in-memory index of such apps would.
        snapshot.apps[1].principal = snapshot.apps[0].principal.clone();
        snapshot.app_by_id = AppIds::build(&snapshot.apps);
        let bytes = encode(&snapshot);
        assert!(decode(&bytes).is_err());
        for apps in [tier::Apps::Keep, tier::Apps::Move] {
            assert!(tier::decode_split(&bytes, 1, apps).is_err(), "{apps:?}");
        }
    }

    #[test]
    fn encoding_is_deterministic_and_round_trips() {
        let bytes = demo_bytes();
        assert_eq!(bytes, demo_bytes());
        assert_eq!(encode(&decode(&bytes).unwrap()), bytes);
    }
}
