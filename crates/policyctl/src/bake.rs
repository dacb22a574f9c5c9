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

fn read_uleb(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or("truncated module")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("malformed LEB128 number in the module".into())
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

/// Bakes `snapshot` (compiled bytes) into `module` (the Otoroshi build).
pub fn bake(module: &[u8], snapshot: &[u8]) -> Result<Baked, String> {
    if !module.starts_with(WASM_HEADER) {
        return Err("not a WebAssembly module (version 1)".into());
    }
    let mut sections: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut at = WASM_HEADER.len();
    while at < module.len() {
        let id = *module.get(at).ok_or("truncated module")?;
        at += 1;
        let size = usize::try_from(read_uleb(module, &mut at)?).map_err(|e| e.to_string())?;
        let payload = at
            .checked_add(size)
            .and_then(|end| module.get(at..end))
            .ok_or("truncated module section")?;
        sections.push((id, payload.to_vec()));
        at += size;
    }
    let find = |id: u8| sections.iter().position(|(s, _)| *s == id);
    let memory = find(SECTION_MEMORY)
        .ok_or("the module defines no memory (an Otoroshi build of tenantgate does)")?;
    let data = find(SECTION_DATA).ok_or("the module has no data section")?;

    // The memory: one, 32-bit, not shared; flags 0 (minimum) or 1 (and maximum).
    let (flags, old_min, old_max) = {
        let payload = &sections.get(memory).ok_or("no memory")?.1;
        let mut at = 0;
        if read_uleb(payload, &mut at)? != 1 {
            return Err("the module must define exactly one memory".into());
        }
        let flags = *payload.get(at).ok_or("truncated memory section")?;
        at += 1;
        let min = read_uleb(payload, &mut at)?;
        let max = match flags {
            0 => None,
            1 => Some(read_uleb(payload, &mut at)?),
            _ => {
                return Err(format!(
                    "unsupported memory (flags {flags:#x}: shared or 64-bit)"
                ))
            }
        };
        (flags, min, max)
    };
    let address = usize::try_from(old_min)
        .ok()
        .and_then(|pages| pages.checked_mul(PAGE))
        .ok_or("memory too large")?;
    let added_pages = snapshot.len().div_ceil(PAGE).max(1) as u64;
    let new_min = old_min + added_pages;
    if new_min > 65_536 {
        return Err("the snapshot does not fit in a 32-bit memory".into());
    }
    let address = u32::try_from(address).map_err(|_| "memory too large".to_string())?;
    let len = u32::try_from(snapshot.len()).map_err(|_| "snapshot too large".to_string())?;
    let mut memory_payload = vec![1, flags];
    write_uleb(&mut memory_payload, new_min);
    if let Some(max) = old_max {
        write_uleb(
            &mut memory_payload,
            max.saturating_add(added_pages).min(65_536),
        );
    }

    // The data section: the slot patched, one segment appended.
    let data_payload = &sections.get(data).ok_or("no data")?.1;
    let marker = BAKE_SLOT.get(..8).ok_or("slot")?;
    let slots: Vec<usize> = data_payload
        .windows(BAKE_SLOT.len())
        .enumerate()
        .filter(|(_, w)| w.starts_with(marker))
        .map(|(i, _)| i)
        .collect();
    let slot = match slots.as_slice() {
        [one] => *one,
        [] => return Err(
            "no bake slot in the module: bake dist/tenantgate-otoroshi.wasm (the Otoroshi build)"
                .into(),
        ),
        _ => return Err("more than one bake slot in the module".into()),
    };
    if data_payload.get(slot..slot + BAKE_SLOT.len()) != Some(&BAKE_SLOT[..]) {
        return Err(
            "the module already has a baked snapshot: bake the module `make dist` builds".into(),
        );
    }
    let mut at = 0;
    let count = read_uleb(data_payload, &mut at)?;
    let mut new_data = Vec::with_capacity(data_payload.len() + snapshot.len() + 16);
    write_uleb(&mut new_data, count + 1);
    let mut segments = data_payload
        .get(at..)
        .ok_or("truncated data section")?
        .to_vec();
    let patch_at = slot
        .checked_sub(at)
        .ok_or("bake slot inside the segment count")?;
    let patch = [address.to_le_bytes(), len.to_le_bytes()].concat();
    segments
        .get_mut(patch_at + 8..patch_at + 16)
        .ok_or("bake slot truncated")?
        .copy_from_slice(&patch);
    new_data.extend_from_slice(&segments);
    // Active segment of memory 0 at `i32.const address`.
    new_data.push(0);
    new_data.push(0x41);
    write_sleb(&mut new_data, i64::from(address as i32));
    new_data.push(0x0b);
    write_uleb(&mut new_data, u64::from(len));
    new_data.extend_from_slice(snapshot);

    let mut out = Vec::with_capacity(module.len() + snapshot.len() + 64);
    out.extend_from_slice(WASM_HEADER);
    for (i, (id, payload)) in sections.iter().enumerate() {
        let payload: Vec<u8> = if i == memory {
            memory_payload.clone()
        } else if i == data {
            std::mem::take(&mut new_data)
        } else if *id == SECTION_DATA_COUNT {
            let mut at = 0;
            let n = read_uleb(payload, &mut at)?;
            let mut p = Vec::new();
            write_uleb(&mut p, n + 1);
            p
        } else {
            payload.clone()
        };
        out.push(*id);
        write_uleb(&mut out, payload.len() as u64);
        out.extend_from_slice(&payload);
    }
    Ok(Baked {
        module: out,
        address,
        initial_pages: u32::try_from(new_min).unwrap_or(u32::MAX),
    })
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
        assert!(bake(b"hello", b"x")
            .unwrap_err()
            .contains("not a WebAssembly"));
        // header, memory section (1 memory, min 1), data section (0 segments)
        let module = [&WASM_HEADER[..], &[5, 3, 1, 0, 1], &[11, 1, 0]].concat();
        assert!(bake(&module, b"x").unwrap_err().contains("no bake slot"));
    }
}
