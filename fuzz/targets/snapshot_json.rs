//! A snapshot document from a policy source: `load_snapshot_bytes` (what the
//! filter's fetcher calls) and, for UTF-8, `load_snapshot`.
//!
//! Invariants: every problem message is one line; a document that loads
//! loads alike through both entry points, compiles to bytes that decode
//! and re-encode to the same bytes, and its compiled form decides requests
//! derived from the document exactly as the document does, whole and per
//! request (`decode_for`); decisions keep every decision invariant.

use super::common;
use tenantgate_policy::{self as policy, binary, signed};

pub fn run(data: &[u8]) {
    let from_bytes = policy::load_snapshot_bytes(data);
    match &from_bytes {
        Ok(snapshot) => {
            common::check_round_trip(snapshot);
        }
        Err(e) => common::check_load_error(e),
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match policy::load_snapshot(text) {
        Err(e) => common::check_load_error(&e),
        Ok(snapshot) => {
            if !signed::is_signed(data) && !binary::is_binary(data) {
                match &from_bytes {
                    Ok(other) => {
                        assert_eq!(other.revision(), snapshot.revision());
                        assert!(other.stats() == snapshot.stats(), "stats differ");
                    }
                    Err(e) => panic!("load_snapshot accepts, load_snapshot_bytes refuses: {e}"),
                }
            }
            let bytes = common::check_round_trip(&snapshot);
            common::check_compiled_decides_alike(&snapshot, &bytes, data, 4, true);
        }
    }
}
