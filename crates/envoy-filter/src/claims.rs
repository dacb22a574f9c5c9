//! The verified token payload Envoy's `jwt_authn` left in the request's
//! dynamic metadata (`payload_in_metadata`), as the property API hands it
//! over. Envoy 1.40 serializes a map property in the proxy-wasm pairs format
//! (the header-map encoding, [`crate::wire::parse_header_map`]): claim names
//! and values, a string value as its bytes (measured: `jwt_identity.rs`).
//! Other Envoy versions export it as a serialized `google.protobuf.Struct`;
//! both are read. The pairs format carries no types: a number claim arrives
//! as 8 raw bytes, so claims the policy reads must be strings (x3).
//!
//! The Struct reader is written by hand rather than with prost: three message
//! types (Struct, Value, ListValue), only top-level string and
//! list-of-string fields; a generic decoder would cost more module than this
//! file, and this one is bounded (input size, field count, one level of list).

use tenantgate_policy::token::{ClaimValue, ClaimsError, TokenClaims, TokenSource, VerifiedToken};

/// Where a configured token source's payload is and how to read it.
#[derive(Debug)]
pub struct TokenRead {
    /// What the claims mean.
    pub source: TokenSource,
    /// `metadata.filter_metadata.<namespace>.<payload key>`, NUL-separated.
    path: Vec<u8>,
}

impl TokenRead {
    /// The property path of `source`'s payload, built once.
    pub fn new(source: TokenSource) -> TokenRead {
        let path = [
            "metadata",
            "filter_metadata",
            &source.metadata_namespace,
            &source.payload_key,
        ]
        .join("\0")
        .into_bytes();
        TokenRead { source, path }
    }

    /// The property path to ask the host for.
    pub fn path(&self) -> &[u8] {
        &self.path
    }

    /// The claims of a payload the host handed over; a payload that is not a
    /// Struct is unusable (`invalid_token_claims`).
    pub fn claims(&self, payload: &[u8]) -> VerifiedToken {
        let fields = parse_payload(payload).ok_or(ClaimsError::WrongType("payload".into()))?;
        // A repeated key: the last wins, as for a protobuf map.
        TokenClaims::build(&self.source, |name| {
            fields
                .iter()
                .rev()
                .find(|(key, _)| *key == name.as_bytes())
                .map(|(_, value)| value.clone())
        })
    }
}

/// A payload larger than this is not read (a JWT payload is a few hundred bytes).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// At most this many top-level claims are looked at.
const MAX_FIELDS: usize = 256;

/// The top-level claims of a serialized Struct: name → value. `None` when the
/// bytes are not a Struct (or too large): the shell then treats the token
/// as unusable.
pub fn parse_payload(bytes: &[u8]) -> Option<Vec<(&[u8], ClaimValue)>> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return None;
    }
    if let Some(pairs) = parse_pairs(bytes) {
        return Some(pairs);
    }
    parse_struct(bytes)
}

/// The pairs encoding, only when it accounts for every byte (a Struct's
/// bytes never do). A list claim is itself a pairs encoding, its items as
/// names with empty values (measured); anything else is its bytes.
fn parse_pairs(bytes: &[u8]) -> Option<Vec<(&[u8], ClaimValue)>> {
    let pairs = exact_pairs(bytes)?;
    let value = |bytes: &[u8]| match exact_pairs(bytes) {
        Some(items) if items.iter().all(|(_, v)| v.is_empty()) => {
            let items: Option<Vec<String>> = items
                .iter()
                .map(|(item, _)| std::str::from_utf8(item).ok().map(str::to_string))
                .collect();
            items.map_or(ClaimValue::Other, ClaimValue::List)
        }
        _ => match std::str::from_utf8(bytes) {
            Ok(text) => ClaimValue::Text(text.to_string()),
            Err(_) => ClaimValue::Other,
        },
    };
    Some(pairs.into_iter().map(|(k, v)| (k, value(v))).collect())
}

/// A pairs encoding that uses every byte, of at most [`MAX_FIELDS`] pairs.
fn exact_pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let pairs = crate::wire::parse_header_map(bytes)?;
    let used = 4 + pairs
        .iter()
        .map(|(k, v)| 10 + k.len() + v.len())
        .sum::<usize>();
    (used == bytes.len() && pairs.len() <= MAX_FIELDS).then_some(pairs)
}

/// A serialized `google.protobuf.Struct`.
fn parse_struct(bytes: &[u8]) -> Option<Vec<(&[u8], ClaimValue)>> {
    let mut fields = Vec::new();
    let mut struct_reader = Fields::new(bytes);
    while let Some((number, field)) = struct_reader.next()? {
        if number != 1 {
            continue;
        }
        let Field::Bytes(entry) = field else {
            return None;
        };
        if fields.len() == MAX_FIELDS {
            return None;
        }
        fields.push(entry_of(entry)?);
    }
    Some(fields)
}

/// One `Struct.FieldsEntry`: key (1), value (2).
fn entry_of(bytes: &[u8]) -> Option<(&[u8], ClaimValue)> {
    let (mut key, mut value) = (&[][..], ClaimValue::Other);
    let mut reader = Fields::new(bytes);
    while let Some((number, field)) = reader.next()? {
        match (number, field) {
            (1, Field::Bytes(k)) => key = k,
            (2, Field::Bytes(v)) => value = value_of(v, true)?,
            _ => {}
        }
    }
    Some((key, value))
}

/// A `google.protobuf.Value`: a string (3), a list (6, of strings only when
/// `list_allowed`), anything else is [`ClaimValue::Other`].
fn value_of(bytes: &[u8], list_allowed: bool) -> Option<ClaimValue> {
    let mut value = ClaimValue::Other;
    let mut reader = Fields::new(bytes);
    while let Some((number, field)) = reader.next()? {
        value = match (number, field) {
            (3, Field::Bytes(text)) => match std::str::from_utf8(text) {
                Ok(text) => ClaimValue::Text(text.to_string()),
                Err(_) => ClaimValue::Other,
            },
            (6, Field::Bytes(list)) if list_allowed => list_of(list)?,
            _ => ClaimValue::Other,
        };
    }
    Some(value)
}

/// A `ListValue` (values: 1) of strings; any other item makes it `Other`.
fn list_of(bytes: &[u8]) -> Option<ClaimValue> {
    let mut items = Vec::new();
    let mut reader = Fields::new(bytes);
    while let Some((number, field)) = reader.next()? {
        let (1, Field::Bytes(item)) = (number, field) else {
            continue;
        };
        match value_of(item, false)? {
            ClaimValue::Text(text) => items.push(text),
            _ => return Some(ClaimValue::Other),
        }
    }
    Some(ClaimValue::List(items))
}

enum Field<'b> {
    Bytes(&'b [u8]),
    Scalar,
}

/// The fields of one protobuf message, in order.
struct Fields<'b> {
    bytes: &'b [u8],
}

impl<'b> Fields<'b> {
    fn new(bytes: &'b [u8]) -> Fields<'b> {
        Fields { bytes }
    }

    /// The next field, `Some(None)` at the end, `None` on malformed bytes.
    fn next(&mut self) -> Option<Option<(u64, Field<'b>)>> {
        if self.bytes.is_empty() {
            return Some(None);
        }
        let tag = self.varint()?;
        let field = match tag & 7 {
            0 => self.varint().map(|_| Field::Scalar)?,
            1 => self.take(8).map(|_| Field::Scalar)?,
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                Field::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| Field::Scalar)?,
            _ => return None,
        };
        Some(Some((tag >> 3, field)))
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for (i, &byte) in self.bytes.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.bytes = self.bytes.get(i + 1..)?;
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, len: usize) -> Option<&'b [u8]> {
        let taken = self.bytes.get(..len)?;
        self.bytes = self.bytes.get(len..)?;
        Some(taken)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn len_field(number: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2];
        let mut len = body.len();
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend_from_slice(body);
        out
    }

    fn string_value(text: &str) -> Vec<u8> {
        len_field(3, text.as_bytes())
    }

    fn entry(key: &str, value: &[u8]) -> Vec<u8> {
        let mut body = len_field(1, key.as_bytes());
        body.extend(len_field(2, value));
        len_field(1, &body)
    }

    /// What Envoy hands over for `{"iss": "i", "sub": "pat", "exp": 1.0,
    /// "groups": ["a", "b"], "org": {"id": "x"}}`, built field by field.
    fn payload() -> Vec<u8> {
        let mut out = entry("iss", &string_value("i"));
        out.extend(entry("sub", &string_value("pat")));
        let mut number = vec![(2 << 3) | 1];
        number.extend(1.0f64.to_le_bytes());
        out.extend(entry("exp", &number));
        let mut list = len_field(1, &string_value("a"));
        list.extend(len_field(1, &string_value("b")));
        out.extend(entry("groups", &len_field(6, &list)));
        let nested = entry("id", &string_value("x"));
        out.extend(entry("org", &len_field(5, &nested)));
        out
    }

    #[test]
    fn reads_strings_and_string_lists_at_the_top_level() {
        let bytes = payload();
        let fields = parse_payload(&bytes).unwrap();
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| *k == name.as_bytes())
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("iss"), Some(ClaimValue::Text("i".into())));
        assert_eq!(get("sub"), Some(ClaimValue::Text("pat".into())));
        assert_eq!(get("exp"), Some(ClaimValue::Other));
        assert_eq!(
            get("groups"),
            Some(ClaimValue::List(vec!["a".into(), "b".into()]))
        );
        assert_eq!(get("org"), Some(ClaimValue::Other));
        assert_eq!(get("aud"), None);
    }

    /// The bytes Envoy 1.40 handed over for `{"iss": "i", "sub": "alice", "exp": …}`.
    #[test]
    fn reads_envoys_pairs_encoding() {
        let payload = crate::wire::encode_header_map(&[
            ("iss", "i"),
            ("sub", "alice"),
            ("exp", "\u{0}\u{0}\u{0}\u{0}\u{7f}\u{1}\u{2}\u{3}"),
        ]);
        let fields = parse_payload(&payload).unwrap();
        assert_eq!(fields.len(), 3);
        // A list claim, as Envoy 1.40 nests it: items as names, empty values.
        let groups = crate::wire::encode_header_map(&[("acme-admins", ""), ("ops", "")]);
        let groups = String::from_utf8(groups).unwrap();
        let with_list = crate::wire::encode_header_map(&[("iss", "i"), ("groups", &groups)]);
        let listed = parse_payload(&with_list).unwrap();
        let want = ClaimValue::List(vec!["acme-admins".into(), "ops".into()]);
        assert_eq!(listed[1], (&b"groups"[..], want));
        assert_eq!(fields[1], (&b"sub"[..], ClaimValue::Text("alice".into())));
        let mut trailing = payload.clone();
        trailing.push(0);
        assert!(
            parse_pairs(&trailing).is_none(),
            "bytes left over: not the pairs encoding"
        );
        let config = br#"{"sources": {"token": {}}}"#;
        let source = tenantgate_policy::config::PluginConfig::parse(config)
            .unwrap()
            .token
            .unwrap();
        let claims = TokenRead::new(source).claims(&payload).unwrap();
        assert_eq!(
            (claims.issuer.as_str(), claims.user.as_str()),
            ("i", "alice")
        );
    }

    #[test]
    fn malformed_or_oversized_bytes_are_refused() {
        let bytes = payload();
        for cut in 1..bytes.len() {
            // Every truncation is refused or reads fewer claims; none panics.
            let _ = parse_payload(&bytes[..cut]);
        }
        assert!(parse_struct(&[0x0a, 0xff]).is_none());
        assert!(
            parse_struct(&[0x0b]).is_none(),
            "wire type 3 (groups) is refused"
        );
        assert!(parse_payload(&vec![0u8; MAX_PAYLOAD_BYTES + 1]).is_none());
        let many: Vec<u8> = (0..=MAX_FIELDS)
            .flat_map(|_| entry("k", &string_value("v")))
            .collect();
        assert!(parse_struct(&many).is_none());
    }
}
