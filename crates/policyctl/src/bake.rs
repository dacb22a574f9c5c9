//! `policyctl bake`: puts a compiled snapshot into the Otoroshi module.
//!
//! Otoroshi instantiates the module for every call. With the snapshot in the
//! plug-in settings, every call receives it inside its JSON input (several
//! times: Otoroshi repeats the settings in the route it passes along) and has
//! to scan past it; baked into the module, it arrives with the instance (the
//! host copies the data segment) and the input carries only the request.
//!
//! The module is rewritten at the section level: the memory's initial size
//! grows by the snapshot's pages, an active data segment places the snapshot
//! at the old end of the initial memory (above the stack, the statics and
//! the heap's start; the allocator only grows memory past the initial pages),
//! and the slot marked [`BAKE_SLOT`] in the data section gets its address and
//! length. Nothing else changes, so the result is checked by the same tests.

use tenantgate_policy::binary::BAKE_SLOT;

const WASM_HEADER: &[u8; 8] = b"\0asm\x01\0\0\0";
const PAGE: usize = 65_536;
/// Pages of a 32-bit memory.
const MAX_PAGES: u64 = 65_536;
const SECTION_MEMORY: u8 = 5;
const SECTION_DATA: u8 = 11;
const SECTION_DATA_COUNT: u8 = 12;

/// A module with a snapshot baked in.
#[derive(Debug)]
pub struct Baked {
    pub module: Vec<u8>,
    /// Where the snapshot sits in linear memory.
    pub address: u32,
    /// The memory's initial size now, in 64 KiB pages.
    pub initial_pages: u32,
}

/// Why a module cannot take the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BakeError {
    #[error("not a WebAssembly module (version 1)")]
    NotWasm,
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("malformed LEB128 number in the module")]
    MalformedNumber,
    #[error("the module defines no memory (an Otoroshi build of tenantgate does)")]
    NoMemory,
    #[error("the module has no data section")]
    NoDataSection,
    #[error("the module must define exactly one memory")]
    MemoryCount,
    #[error("unsupported memory (flags {0:#x}: shared or 64-bit)")]
    UnsupportedMemory(u8),
    #[error("memory too large")]
    MemoryTooLarge,
    #[error("the snapshot does not fit in a 32-bit memory")]
    SnapshotDoesNotFit,
    #[error("snapshot too large")]
    SnapshotTooLarge,
    #[error("no bake slot in the module: bake dist/tenantgate-otoroshi.wasm (the Otoroshi build)")]
    NoSlot,
    #[error("more than one bake slot in the module")]
    SeveralSlots,
    #[error("the module already has a baked snapshot: bake the module `make dist` builds")]
    AlreadyBaked,
    #[error("bake slot inside the segment count")]
    SlotInSegmentCount,
}

/// Bakes `snapshot` (compiled bytes) into `module` (the Otoroshi build).
pub fn bake(module: &[u8], snapshot: &[u8]) -> Result<Baked, BakeError> {
    let mut sections = read_sections(module)?;
    let memory_at = position(&sections, SECTION_MEMORY).ok_or(BakeError::NoMemory)?;
    let data_at = position(&sections, SECTION_DATA).ok_or(BakeError::NoDataSection)?;
    let memory = Memory::read(payload(&sections, memory_at))?;
    let placement = place(&memory, snapshot)?;
    let mut data = data_with_snapshot(payload(&sections, data_at), &placement, snapshot)?;
    for (at, section) in sections.iter_mut().enumerate() {
        if at == memory_at {
            section.payload = memory.grown_by(placement.added_pages);
        } else if at == data_at {
            section.payload = std::mem::take(&mut data);
        } else if section.id == SECTION_DATA_COUNT {
            section.payload = count_plus_one(&section.payload)?;
        }
    }
    Ok(Baked {
        module: assemble(&sections),
        address: placement.address,
        initial_pages: u32::try_from(placement.initial_pages).unwrap_or(u32::MAX),
    })
}

/// A section of the module: its id and its payload.
struct Section {
    id: u8,
    payload: Vec<u8>,
}

fn read_sections(module: &[u8]) -> Result<Vec<Section>, BakeError> {
    let body = module.strip_prefix(WASM_HEADER).ok_or(BakeError::NotWasm)?;
    let mut sections = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let id = *body.get(at).ok_or(BakeError::Truncated("module"))?;
        at += 1;
        let size = usize::try_from(read_uleb(body, &mut at)?)
            .map_err(|_| BakeError::Truncated("module section"))?;
        let payload = at
            .checked_add(size)
            .and_then(|end| body.get(at..end))
            .ok_or(BakeError::Truncated("module section"))?;
        sections.push(Section {
            id,
            payload: payload.to_vec(),
        });
        at += size;
    }
    Ok(sections)
}

fn position(sections: &[Section], id: u8) -> Option<usize> {
    sections.iter().position(|s| s.id == id)
}

fn payload(sections: &[Section], at: usize) -> &[u8] {
    sections.get(at).map_or(&[], |s| s.payload.as_slice())
}

fn assemble(sections: &[Section]) -> Vec<u8> {
    let size = sections.iter().map(|s| s.payload.len() + 6).sum::<usize>();
    let mut out = Vec::with_capacity(WASM_HEADER.len() + size);
    out.extend_from_slice(WASM_HEADER);
    for section in sections {
        out.push(section.id);
        write_uleb(&mut out, section.payload.len() as u64);
        out.extend_from_slice(&section.payload);
    }
    out
}

/// The module's memory: exactly one, 32-bit, not shared; flags 0 (a minimum) or 1 (and a
/// maximum).
struct Memory {
    flags: u8,
    min: u64,
    max: Option<u64>,
}

impl Memory {
    fn read(payload: &[u8]) -> Result<Memory, BakeError> {
        let mut at = 0;
        if read_uleb(payload, &mut at)? != 1 {
            return Err(BakeError::MemoryCount);
        }
        let flags = *payload
            .get(at)
            .ok_or(BakeError::Truncated("memory section"))?;
        at += 1;
        let min = read_uleb(payload, &mut at)?;
        let max = match flags {
            0 => None,
            1 => Some(read_uleb(payload, &mut at)?),
            _ => return Err(BakeError::UnsupportedMemory(flags)),
        };
        Ok(Memory { flags, min, max })
    }

    /// The memory section's payload with `pages` more pages, initially and at most.
    fn grown_by(&self, pages: u64) -> Vec<u8> {
        let mut payload = vec![1, self.flags];
        write_uleb(&mut payload, self.min.saturating_add(pages));
        if let Some(max) = self.max {
            write_uleb(&mut payload, max.saturating_add(pages).min(MAX_PAGES));
        }
        payload
    }
}

/// Where the snapshot goes: at the old end of the initial memory (above the stack, the statics
/// and the heap's start), which grows by the snapshot's pages.
struct Placement {
    address: u32,
    len: u32,
    added_pages: u64,
    initial_pages: u64,
}

fn place(memory: &Memory, snapshot: &[u8]) -> Result<Placement, BakeError> {
    let address = usize::try_from(memory.min)
        .ok()
        .and_then(|pages| pages.checked_mul(PAGE))
        .ok_or(BakeError::MemoryTooLarge)?;
    let added_pages = snapshot.len().div_ceil(PAGE).max(1) as u64;
    let initial_pages = memory.min.saturating_add(added_pages);
    if initial_pages > MAX_PAGES {
        return Err(BakeError::SnapshotDoesNotFit);
    }
    Ok(Placement {
        address: u32::try_from(address).map_err(|_| BakeError::MemoryTooLarge)?,
        len: u32::try_from(snapshot.len()).map_err(|_| BakeError::SnapshotTooLarge)?,
        added_pages,
        initial_pages,
    })
}

/// The data section with its slot pointing at the snapshot, and one segment more: the
/// snapshot, active in memory 0 at its address.
fn data_with_snapshot(
    data: &[u8],
    placement: &Placement,
    snapshot: &[u8],
) -> Result<Vec<u8>, BakeError> {
    let slot = find_slot(data)?;
    let mut at = 0;
    let count = read_uleb(data, &mut at)?;
    let mut segments = data
        .get(at..)
        .ok_or(BakeError::Truncated("data section"))?
        .to_vec();
    let patch_at = slot.checked_sub(at).ok_or(BakeError::SlotInSegmentCount)?;
    let patch = [placement.address.to_le_bytes(), placement.len.to_le_bytes()].concat();
    segments
        .get_mut(patch_at + 8..patch_at + 16)
        .ok_or(BakeError::Truncated("bake slot"))?
        .copy_from_slice(&patch);
    let mut out = Vec::with_capacity(data.len() + snapshot.len() + 16);
    write_uleb(&mut out, count + 1);
    out.extend_from_slice(&segments);
    // An active segment of memory 0 at `i32.const address`.
    out.push(0);
    out.push(0x41);
    write_sleb(&mut out, i64::from(placement.address as i32));
    out.push(0x0b);
    write_uleb(&mut out, u64::from(placement.len));
    out.extend_from_slice(snapshot);
    Ok(out)
}

/// Where the one unbaked slot marked [`BAKE_SLOT`] starts in the data section.
fn find_slot(data: &[u8]) -> Result<usize, BakeError> {
    let marker = BAKE_SLOT.get(..8).unwrap_or_default();
    let slots: Vec<usize> = data
        .windows(BAKE_SLOT.len())
        .enumerate()
        .filter(|(_, w)| w.starts_with(marker))
        .map(|(i, _)| i)
        .collect();
    let slot = match slots.as_slice() {
        [one] => *one,
        [] => return Err(BakeError::NoSlot),
        _ => return Err(BakeError::SeveralSlots),
    };
    if data.get(slot..slot + BAKE_SLOT.len()) != Some(BAKE_SLOT.as_slice()) {
        return Err(BakeError::AlreadyBaked);
    }
    Ok(slot)
}

/// The data count section, counting the snapshot's segment too.
fn count_plus_one(payload: &[u8]) -> Result<Vec<u8>, BakeError> {
    let mut at = 0;
    let count = read_uleb(payload, &mut at)?;
    let mut out = Vec::new();
    write_uleb(&mut out, count + 1);
    Ok(out)
}

fn read_uleb(bytes: &[u8], at: &mut usize) -> Result<u64, BakeError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or(BakeError::Truncated("module"))?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(BakeError::MalformedNumber)
}
fn write_uleb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn write_sleb(out: &mut Vec<u8>, mut value: i64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn leb128_round_trips() {
        for v in [0u64, 1, 127, 128, 300, 65_536, u32::MAX as u64] {
            let mut out = Vec::new();
            write_uleb(&mut out, v);
            let mut at = 0;
            assert_eq!(read_uleb(&out, &mut at).unwrap(), v);
            assert_eq!(at, out.len());
        }
        let mut out = Vec::new();
        write_sleb(&mut out, 1_114_112);
        assert_eq!(out, [0x80, 0x80, 0xc4, 0x00]);
    }

    #[test]
    fn not_a_module_or_no_slot_is_refused() {
        assert_eq!(bake(b"hello", b"x").unwrap_err(), BakeError::NotWasm);
        // header, memory section (1 memory, min 1), data section (0 segments)
        let module = [&WASM_HEADER[..], &[5, 3, 1, 0, 1], &[11, 1, 0]].concat();
        assert_eq!(bake(&module, b"x").unwrap_err(), BakeError::NoSlot);
        assert!(BakeError::NoSlot.to_string().contains("no bake slot"));
    }
}
