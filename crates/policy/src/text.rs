//! Checks of the text a snapshot or a configuration names things with, in
//! one place: ids, HTTP tokens (methods, header names), key digests.

/// Longest revision accepted: it is echoed in every annotated request.
pub const MAX_REVISION_LEN: usize = 128;

/// The id alphabet of spec §1, `A-Za-z0-9._:-`, non-empty.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Longest token issuer accepted (x3).
pub const MAX_ISSUER_LEN: usize = 512;

/// A token issuer (`iss`) a snapshot may trust: 1 to [`MAX_ISSUER_LEN`]
/// visible ASCII characters (issuers are URLs in practice; no space or
/// control character can reach a log line or a header through one).
pub fn is_valid_issuer(issuer: &str) -> bool {
    (1..=MAX_ISSUER_LEN).contains(&issuer.len()) && issuer.bytes().all(|b| b.is_ascii_graphic())
}

/// An RFC 9110 token: a method or a header name.
pub fn is_http_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `text` is a SHA-256 digest as snapshots write it: 64 lower-case hex digits.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The digest `text` writes, if it is one ([`is_sha256_hex`]).
pub fn decode_sha256_hex(text: &str) -> Option<[u8; 32]> {
    if !is_sha256_hex(text) {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let hi = (*pair.first()? as char).to_digit(16)?;
        let lo = (*pair.get(1)? as char).to_digit(16)?;
        *byte = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// A digest as lower-case hex.
pub fn sha256_hex(digest: &[u8; 32]) -> String {
    use std::fmt::Write;
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// `prefix` and an identity the snapshot does not know (a request's user
/// id, a gateway's e-mail or client id), as an annotation and log value:
/// bytes outside `A-Za-z0-9._:@+-` percent-encoded, so the value is safe in
/// a header and a log line, and no two identities give the same text (a
/// snapshot id never needs escaping, so it reads as itself).
pub fn principal_text(prefix: &str, id: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(prefix.len() + id.len());
    out.push_str(prefix);
    for &b in id {
        if b.is_ascii_alphanumeric() || b".:_@+-".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn ids_tokens_and_digests() {
        assert!(is_valid_id("acme-corp.eu:1_x"));
        assert!(!is_valid_id("") && !is_valid_id("a b") && !is_valid_id("a/b"));
        assert!(is_http_token("GET") && is_http_token("x-api-key"));
        assert!(!is_http_token("GET POST") && !is_http_token(""));
        let digest = [0xabu8; 32];
        assert_eq!(decode_sha256_hex(&sha256_hex(&digest)), Some(digest));
        assert_eq!(decode_sha256_hex(&"AB".repeat(32)), None);
        assert_eq!(decode_sha256_hex("ab"), None);
    }
}
