//! The snapshot `policyctl bake` put into this module: an active data segment
//! at the end of the initial memory as linked (above the stack, the statics
//! and the heap's start), located by the slot below. The allocator only ever
//! grows memory past the initial pages, which `policyctl bake` raised to cover
//! the segment, so nothing writes to it; each fresh instance gets it by the
//! host copying the segment, with no parsing or decoding at all.

use tenantgate_policy::binary::BAKE_SLOT;

/// dlmalloc 0.2.11, pinned in Cargo.toml: its wasm backend takes memory only
/// by growing it past the current size, never from pages that exist already,
/// so it never hands out the baked segment. (std's own allocator changes with
/// the toolchain; a later dlmalloc also hands out pre-existing memory.)
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// Patched by `policyctl bake` (found by its marker in the data section).
#[used]
static SLOT: [u8; 16] = BAKE_SLOT;

fn word(slot: &[u8; 16], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = slot.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

/// The baked snapshot's bytes, if the module has one.
pub fn snapshot() -> Option<&'static [u8]> {
    // SAFETY: a read of our own static. Volatile because the bytes change
    // after compilation: the compiler must not fold in the initializer.
    let slot: [u8; 16] = unsafe { core::ptr::read_volatile(&SLOT) };
    let (address, len) = (word(&slot, 8)?, word(&slot, 12)?);
    if address == u32::MAX {
        return None;
    }
    let end = address.checked_add(len)? as usize;
    if address == 0 || end > core::arch::wasm32::memory_size(0) * 65_536 {
        return None;
    }
    // SAFETY: in bounds of linear memory (checked above); `policyctl bake`
    // placed the segment there, at or above the initial memory's end at link
    // time, where neither the stack, the statics nor the allocator (which
    // grows memory past the initial pages) ever write.
    Some(unsafe { core::slice::from_raw_parts(address as usize as *const u8, len as usize) })
}
