//! What the fetching VM keeps after cutting a large snapshot into its key
//! tier (issue 12): the keyless snapshot and nothing sized by the keys or the
//! apps that left it. One test in this binary, so that the allocation counter
//! counts it alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use tenantgate_policy::binary::tier::{decode_split, Apps};
use tenantgate_policy::binary::{decode, encode};
use tenantgate_policy::generate::generate;

/// The system allocator, counting the bytes held.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size(), SeqCst);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), SeqCst);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        HELD.fetch_add(size, SeqCst);
        HELD.fetch_sub(layout.size(), SeqCst);
        System.realloc(ptr, layout, size)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Bytes `make` allocates and its result still holds.
fn held_by<T>(make: impl FnOnce() -> T) -> (T, usize) {
    let before = HELD.load(SeqCst);
    let made = make();
    (made, HELD.load(SeqCst).saturating_sub(before))
}

#[test]
fn cutting_the_tier_keeps_no_more_than_the_keyless_snapshot() {
    let text = generate(60, 40_000, 7).to_string();
    let compiled = encode(&tenantgate_policy::load_snapshot(&text).unwrap());
    let ((keyless, cut), held_after_cut) =
        held_by(|| decode_split(&compiled, 1, Apps::Move).unwrap());
    assert_eq!(cut.keys(), 40_000);
    assert!(cut.app_count() > 0, "the apps move");
    let again = encode(&keyless);
    let (_, held_by_keyless) = held_by(|| decode(&again).unwrap());
    // Before: ~4.7x (a grant map reserved for every app's grants, and the
    // apps' gateway ids built, then emptied, keeping their capacity).
    assert!(
        held_after_cut <= held_by_keyless + held_by_keyless / 2 + 64 * 1024,
        "the cut keeps {held_after_cut} bytes; the keyless snapshot alone holds {held_by_keyless}"
    );
}
