//! Entity tags: the snapshot's (a hash of the bytes served, so any change of them changes it,
//! whatever the revision says), and `if-none-match` evaluated against it.

use http::HeaderValue;

/// Hex digits of the SHA-256 of the snapshot in its ETag (128 bits).
const ETAG_HEX: usize = 32;

/// The entity tag of bytes whose SHA-256 is `digest` (computed once by the file watcher),
/// without quotes: `sha256:` and the first [`ETAG_HEX`] hex digits of it.
pub fn etag_of_digest(digest: &[u8; 32]) -> String {
    let mut etag = String::from("sha256:");
    for byte in digest.iter().take(ETAG_HEX / 2) {
        etag.push_str(&format!("{byte:02x}"));
    }
    etag
}

/// The `if-none-match` fields of a GET or HEAD, evaluated against the current `etag` (RFC 9110
/// section 13.1.2): true if one is `*` or lists an entity tag whose opaque tag equals `etag`
/// (weak comparison). Fields that are not `*` or a list of entity tags make the whole
/// condition void (false): a full answer is always safe.
pub fn none_match<'a>(fields: impl Iterator<Item = &'a HeaderValue>, etag: &str) -> bool {
    let mut star = false;
    let mut tags = Vec::new();
    for field in fields {
        let value = field.as_bytes().trim_ascii();
        if value == b"*" {
            star = true;
        } else if !entity_tags(value, &mut tags) {
            return false;
        }
    }
    if star {
        // `*` stands alone.
        return tags.is_empty();
    }
    tags.contains(&etag.as_bytes())
}

/// Appends the opaque tags (between the quotes) of the list `value` to `tags`; false if
/// `value` is not a list of entity tags. Empty list elements are allowed (RFC 9110 5.6.1.2).
fn entity_tags<'a>(value: &'a [u8], tags: &mut Vec<&'a [u8]>) -> bool {
    let mut rest = value;
    loop {
        rest = rest.trim_ascii_start();
        match rest.split_first() {
            None => return true,
            Some((b',', after)) => {
                rest = after;
                continue;
            }
            Some(_) => {}
        }
        let unweak = rest.strip_prefix(b"W/").unwrap_or(rest);
        let Some(quoted) = unweak.strip_prefix(b"\"") else {
            return false;
        };
        let Some(end) = quoted.iter().position(|&b| b == b'"') else {
            return false;
        };
        let (tag, after) = quoted.split_at(end);
        // etagc: %x21 / %x23-7E / obs-text
        if !tag
            .iter()
            .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
        {
            return false;
        }
        tags.push(tag);
        rest = after.get(1..).unwrap_or_default().trim_ascii_start();
        match rest.split_first() {
            None => return true,
            Some((b',', after)) => rest = after,
            Some(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(fields: &[&str], etag: &str) -> bool {
        let values: Vec<HeaderValue> = fields
            .iter()
            .map(|f| HeaderValue::from_str(f).unwrap())
            .collect();
        none_match(values.iter(), etag)
    }

    #[test]
    fn if_none_match_forms() {
        let etag = "sha256:0123";
        assert!(matches(&["\"sha256:0123\""], etag));
        assert!(matches(&["W/\"sha256:0123\""], etag));
        assert!(matches(&["*"], etag));
        assert!(matches(&[" * "], etag));
        assert!(matches(&["\"a\", \"sha256:0123\""], etag));
        assert!(matches(&["\"a\",W/\"sha256:0123\" ,"], etag));
        assert!(matches(&[", ,\"a\",,\"sha256:0123\""], etag));
        assert!(matches(&["\"a\"", "\"sha256:0123\""], etag));
        assert!(matches(&["\"a,b\", \"sha256:0123\""], etag));
        assert!(!matches(&["\"sha256:0124\""], etag));
        assert!(!matches(&[], etag));
        // Not entity tags: the condition is void.
        assert!(!matches(&["sha256:0123"], etag));
        assert!(!matches(&["w/\"sha256:0123\""], etag));
        assert!(!matches(&["\"sha256:0123"], etag));
        assert!(!matches(&["\"sha256:0123\" x"], etag));
        assert!(!matches(&["\"a b\", \"sha256:0123\""], etag));
        assert!(!matches(&["*, \"sha256:0123\""], etag));
        assert!(!matches(&["*", "\"sha256:0123\""], etag));
        assert!(!matches(&["\"sha256:0123\"", "bogus"], etag));
    }

    fn etag_of(bytes: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        etag_of_digest(&Sha256::digest(bytes).into())
    }

    #[test]
    fn etags_hash_the_bytes() {
        assert_eq!(etag_of(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb924");
        assert_eq!(etag_of(b"abc").len(), "sha256:".len() + ETAG_HEX);
        assert_ne!(
            etag_of(b"{\"revision\":\"r1\"}"),
            etag_of(b"{\"revision\": \"r1\"}")
        );
    }
}
