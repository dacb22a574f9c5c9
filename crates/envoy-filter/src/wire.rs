//! The proxy-wasm header-map encoding: a little-endian `u32` count, then a
//! (`u32` name length, `u32` value length) pair per entry, then each name and
//! value followed by a NUL byte.

/// Splits an encoded header map into borrowed (name, value) pairs; `None` if the
/// buffer is malformed.
pub fn parse_header_map(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let read_u32 = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let count = read_u32(0)?;
    // Each entry needs at least 8 bytes of sizes and 2 NULs: reject absurd counts
    // before allocating.
    if count > bytes.len() / 10 + 1 {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    for n in 0..count {
        let sizes = 4 + n * 8;
        let (name_len, value_len) = (read_u32(sizes)?, read_u32(sizes + 4)?);
        let name = bytes.get(data..data.checked_add(name_len)?)?;
        data = data.checked_add(name_len)?.checked_add(1)?;
        let value = bytes.get(data..data.checked_add(value_len)?)?;
        data = data.checked_add(value_len)?.checked_add(1)?;
        pairs.push((name, value));
    }
    Some(pairs)
}

/// Encodes header pairs (for a local response).
pub fn encode_header_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(n, v)| 10 + n.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len32(pairs.len()));
    for (name, value) in pairs {
        out.extend_from_slice(&len32(name.len()));
        out.extend_from_slice(&len32(value.len()));
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn round_trips_and_keeps_non_utf8_values() {
        let encoded = encode_header_map(&[(":path", "/a"), ("x-api-key", "k"), ("empty", "")]);
        let pairs = parse_header_map(&encoded).unwrap();
        assert_eq!(
            pairs,
            vec![
                (&b":path"[..], &b"/a"[..]),
                (b"x-api-key", b"k"),
                (b"empty", b"")
            ]
        );
        let mut raw = encode_header_map(&[("x", "ab")]);
        let at = raw.len() - 3;
        raw[at] = 0xff;
        assert_eq!(parse_header_map(&raw).unwrap()[0].1, &[0xff, b'b'][..]);
    }

    #[test]
    fn malformed_buffers_are_rejected_not_panicked_on() {
        let encoded = encode_header_map(&[("name", "value"), ("n2", "v2")]);
        for cut in 0..encoded.len() {
            let _ = parse_header_map(&encoded[..cut]);
        }
        assert_eq!(parse_header_map(&[0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(
            parse_header_map(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
            None
        );
    }
}
