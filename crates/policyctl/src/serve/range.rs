//! Range requests on the snapshot (RFC 9110 section 14), so that a gateway whose HTTP client
//! buffers a bounded response (Envoy's async client: 32 MiB) fetches a larger snapshot in
//! parts, and conditions tying the parts to one revision (`If-Match`, `If-Range`).
//!
//! One range per request: `bytes=a-b`, `bytes=a-` or `bytes=-n`. A request for several ranges
//! gets the whole snapshot (200; RFC 9110 14.2 lets a server ignore `Range`), which spares a
//! multipart body no client of ours reads. A `Range` that is not a byte range at all is
//! ignored likewise.

use http::HeaderValue;

/// What a `Range` asks of a snapshot of `total` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranged {
    /// No range, several ranges, or not a byte range: the whole snapshot (200).
    Whole,
    /// Bytes `first..=last` (206).
    Part { first: u64, last: u64 },
    /// No byte of the range exists (416).
    Unsatisfiable,
}

/// Evaluates the `Range` fields of a GET against a representation of `total` bytes.
pub fn evaluate<'a>(mut fields: impl Iterator<Item = &'a HeaderValue>, total: u64) -> Ranged {
    let (Some(field), None) = (fields.next(), fields.next()) else {
        return Ranged::Whole;
    };
    let Ok(text) = field.to_str() else {
        return Ranged::Whole;
    };
    let Some((unit, set)) = text.trim().split_once('=') else {
        return Ranged::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return Ranged::Whole;
    };
    match (number(first), number(last)) {
        // bytes=a-b and bytes=a-: from a, to b or the end.
        (Some(first), last) if last.is_some() || last_is_empty(set) => {
            let last = last.unwrap_or(u64::MAX);
            if first > last {
                Ranged::Whole
            } else if first >= total {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part {
                    first,
                    last: last.min(total - 1),
                }
            }
        }
        // bytes=-n: the last n bytes.
        (None, Some(suffix)) if first.is_empty() => {
            if suffix == 0 || total == 0 {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part {
                    first: total.saturating_sub(suffix),
                    last: total - 1,
                }
            }
        }
        _ => Ranged::Whole,
    }
}

fn last_is_empty(set: &str) -> bool {
    set.trim().ends_with('-')
}

/// Decimal digits only, as RFC 9110's `1*DIGIT`; `None` for anything else (or an overflow).
fn number(digits: &str) -> Option<u64> {
    let digits = digits.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `If-Match` (RFC 9110 13.1.1), strong comparison: true if a field is `*` or lists
/// `"<etag>"`. Our entity tags never hold a comma, so splitting on commas cannot make a
/// foreign tag equal ours.
pub fn if_match<'a>(fields: impl Iterator<Item = &'a HeaderValue>, etag: &str) -> bool {
    let quoted = format!("\"{etag}\"");
    fields
        .flat_map(|field| field.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|tag| tag == b"*" || tag == quoted.as_bytes())
}

/// `If-Range` (RFC 9110 13.1.5): the range applies only if the field is exactly our strong
/// entity tag; a date (we send no `Last-Modified`) or any other tag means the whole snapshot.
pub fn if_range(field: Option<&HeaderValue>, etag: &str) -> bool {
    field.is_none_or(|value| value.as_bytes().trim_ascii() == format!("\"{etag}\"").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(fields: &[&str], total: u64) -> Ranged {
        let values: Vec<HeaderValue> = fields
            .iter()
            .map(|f| HeaderValue::from_str(f).unwrap())
            .collect();
        evaluate(values.iter(), total)
    }

    #[test]
    fn single_byte_ranges() {
        let part = |first, last| Ranged::Part { first, last };
        assert_eq!(range(&["bytes=0-9"], 100), part(0, 9));
        assert_eq!(range(&["bytes=90-200"], 100), part(90, 99));
        assert_eq!(range(&["bytes=10-"], 100), part(10, 99));
        assert_eq!(range(&["bytes=-10"], 100), part(90, 99));
        assert_eq!(range(&["bytes=-1000"], 100), part(0, 99));
        assert_eq!(range(&[" Bytes = 5-5 "], 100), part(5, 5));
        assert_eq!(range(&["bytes=100-"], 100), Ranged::Unsatisfiable);
        assert_eq!(range(&["bytes=100-200"], 100), Ranged::Unsatisfiable);
        assert_eq!(range(&["bytes=-0"], 100), Ranged::Unsatisfiable);
        assert_eq!(range(&["bytes=0-0"], 0), Ranged::Unsatisfiable);
    }

    #[test]
    fn anything_else_is_the_whole_snapshot() {
        for whole in [
            &["bytes=0-1,5-6"][..],
            &["bytes=0-1", "bytes=5-6"],
            &["items=0-1"],
            &["bytes=5-1"],
            &["bytes=a-b"],
            &["bytes=-"],
            &["bytes=+1-2"],
            &["bytes 0-1"],
            &[],
        ] {
            assert_eq!(range(whole, 100), Ranged::Whole, "{whole:?}");
        }
    }

    #[test]
    fn conditions_compare_strongly() {
        let value = |v: &str| HeaderValue::from_str(v).unwrap();
        let etag = "sha256:01";
        assert!(if_match([value("\"sha256:01\"")].iter(), etag));
        assert!(if_match([value("\"x\", \"sha256:01\"")].iter(), etag));
        assert!(if_match([value("*")].iter(), etag));
        assert!(!if_match([value("W/\"sha256:01\"")].iter(), etag));
        assert!(!if_match([value("\"sha256:02\"")].iter(), etag));
        assert!(if_range(None, etag));
        assert!(if_range(Some(&value("\"sha256:01\"")), etag));
        assert!(!if_range(Some(&value("W/\"sha256:01\"")), etag));
        assert!(!if_range(
            Some(&value("Sun, 06 Nov 1994 08:49:37 GMT")),
            etag
        ));
    }
}
