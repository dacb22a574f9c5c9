//! Steps 1 and 2 read the path as the most lenient upstream would (contract
//! v1.1, section 5): an attacker must not reach a resource through a spelling
//! that the route table reads as another, broader route.
//!
//! The canonical form of a path (query removed):
//! - `%XX` escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) decoded,
//!   every other escape kept with upper-case hex digits;
//! - runs of `/` merged into one;
//! - `;` parameters (`;` or `%3B` up to the next `/`) removed from every
//!   segment, as servlet containers do;
//! - with [`PathCase::Insensitive`], ASCII letters lower-cased.
//!
//! Refused ([`InvalidPath`], 400 `invalid_path`): an encoded `.`, `/` or `\`
//! (`%2e`, `%2f`, `%5c`, any case: v1 step 1), an encoded NUL, a raw `\` or
//! control byte (some upstreams read `\` as `/`, C-based ones stop at NUL), and
//! a `.` or `..` segment found after the rewriting above (`/a/..;/b`).
//!
//! Route prefixes are put in the same form when a snapshot is compiled, so a
//! prefix and a path compare byte for byte. The path sent upstream is never
//! rewritten: only the route match reads this form.

use std::borrow::Cow;

/// How route prefixes and request paths compare letter case (plugin
/// configuration `path_case`). `Insensitive` is for upstreams that serve
/// `/Orders` and `/orders` alike: with `Sensitive`, such an upstream would
/// serve `/orders/Admin/…` under a broader route than `/orders/admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathCase {
    /// Byte for byte (the default).
    #[default]
    Sensitive,
    /// ASCII letters compare without case.
    Insensitive,
}

/// The path is refused at step 1 (`invalid_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidPath;

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// A byte no path may carry, raw or encoded.
fn is_forbidden(byte: u8) -> bool {
    byte < 0x20 || byte == 0x7f || byte == b'\\'
}

/// Whether `path` may need rewriting at all: most paths are already canonical
/// and are then only checked, not copied.
fn needs_rewrite(path: &[u8], case: PathCase) -> bool {
    let mut previous = 0u8;
    for &byte in path {
        let special = matches!(byte, b'%' | b';')
            || is_forbidden(byte)
            || (byte == b'/' && previous == b'/')
            || (case == PathCase::Insensitive && byte.is_ascii_uppercase());
        if special {
            return true;
        }
        previous = byte;
    }
    false
}

fn has_dot_segment(path: &[u8]) -> bool {
    path.split(|&b| b == b'/')
        .any(|segment| segment == b"." || segment == b"..")
}

/// The canonical form of `path` (without its query), or why step 1 refuses it.
pub fn canonical(path: &[u8], case: PathCase) -> Result<Cow<'_, [u8]>, InvalidPath> {
    let canonical = if needs_rewrite(path, case) {
        Cow::Owned(rewrite(path, case)?)
    } else {
        Cow::Borrowed(path)
    };
    if has_dot_segment(&canonical) {
        return Err(InvalidPath);
    }
    Ok(canonical)
}

fn rewrite(path: &[u8], case: PathCase) -> Result<Vec<u8>, InvalidPath> {
    let fold = |byte: u8| match case {
        PathCase::Sensitive => byte,
        PathCase::Insensitive => byte.to_ascii_lowercase(),
    };
    let mut out = Vec::with_capacity(path.len());
    let mut in_parameters = false;
    let mut i = 0;
    while let Some(&byte) = path.get(i) {
        if is_forbidden(byte) {
            return Err(InvalidPath);
        }
        let escaped = match (byte, path.get(i + 1), path.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) => hex_value(hi).zip(hex_value(lo)),
            _ => None,
        };
        if let Some((hi, lo)) = escaped {
            let decoded = hi * 16 + lo;
            // v1 step 1: encoded dot, slash, backslash; and NUL.
            if matches!(decoded, b'.' | b'/' | b'\\' | 0) {
                return Err(InvalidPath);
            }
            i += 3;
            if in_parameters {
                continue;
            }
            if decoded == b';' {
                in_parameters = true;
            } else if is_unreserved(decoded) {
                out.push(fold(decoded));
            } else {
                out.extend_from_slice(&[b'%', upper_hex(hi), upper_hex(lo)]);
            }
            continue;
        }
        i += 1;
        match byte {
            b'/' => {
                in_parameters = false;
                if out.last() != Some(&b'/') {
                    out.push(b'/');
                }
            }
            _ if in_parameters => {}
            b';' => in_parameters = true,
            _ => out.push(fold(byte)),
        }
    }
    Ok(out)
}

fn upper_hex(nibble: u8) -> u8 {
    match nibble {
        0..=9 => b'0' + nibble,
        _ => b'A' + nibble - 10,
    }
}

/// A route prefix in canonical form (no trailing slash but for `/`), or why
/// it can never match a canonical path: a prefix with a `;` or a refused
/// spelling would silently cover other paths than it reads.
pub fn canonical_prefix(prefix: &str) -> Result<Vec<u8>, InvalidPath> {
    let bytes = prefix.as_bytes();
    let has_parameter =
        bytes.contains(&b';') || bytes.windows(3).any(|w| w.eq_ignore_ascii_case(b"%3b"));
    if has_parameter || !prefix.starts_with('/') || prefix.contains(['?', '#']) {
        return Err(InvalidPath);
    }
    let canonical = canonical(bytes, PathCase::Sensitive)?;
    Ok(trim_trailing_slashes(&canonical).to_vec())
}

/// `/api/` and `/api` are the same prefix; `/` stays `/`.
pub fn trim_trailing_slashes(prefix: &[u8]) -> &[u8] {
    let mut end = prefix.len();
    while end > 1 && prefix.get(end - 1) == Some(&b'/') {
        end -= 1;
    }
    prefix.get(..end).unwrap_or(b"/")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn exact(path: &str) -> Result<String, InvalidPath> {
        canonical(path.as_bytes(), PathCase::Sensitive)
            .map(|c| String::from_utf8(c.into_owned()).unwrap())
    }

    #[test]
    fn spellings_of_one_path_become_one() {
        for spelling in [
            "/orders/admin/purge",
            "/orders/%61dmin/purge",
            "/orders/%61%64min/purge",
            "/orders/admin;/purge",
            "/orders/admin;jsessionid=1/purge",
            "/orders/admin%3B/purge",
            "/orders/admin%3bx=1/purge",
            "/orders//admin/purge",
            "//orders///admin//purge",
            "/orders/;x/admin/purge",
        ] {
            assert_eq!(
                exact(spelling).unwrap(),
                "/orders/admin/purge",
                "{spelling}"
            );
        }
    }

    #[test]
    fn dot_segments_after_rewriting_are_refused() {
        for refused in [
            "/health/..;/orders/1",
            "/status/..;/billing/1",
            "/a/.;x/b",
            "/a/..",
            "/a/./b",
            "/a/%2e%2e/b",
            "/a/%2E/b",
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "/a%00b",
            "/a\u{1}b",
            "/a\u{7f}",
            "/x/.%2e/y",
        ] {
            assert_eq!(exact(refused), Err(InvalidPath), "{refused}");
        }
    }

    #[test]
    fn other_escapes_are_kept_upper_case_and_unrelated_bytes_untouched() {
        assert_eq!(exact("/a%20b%3a").unwrap(), "/a%20b%3A");
        assert_eq!(exact("/a%zz").unwrap(), "/a%zz");
        assert_eq!(exact("/a%4").unwrap(), "/a%4");
        assert_eq!(exact("/caf\u{e9}").unwrap(), "/caf\u{e9}");
        assert_eq!(exact("/a..b/.c/").unwrap(), "/a..b/.c/");
        assert!(matches!(
            canonical(b"/plain/path", PathCase::Sensitive),
            Ok(Cow::Borrowed(_))
        ));
        let raw = [b'/', 0xff, 0xfe];
        assert_eq!(&*canonical(&raw, PathCase::Sensitive).unwrap(), &raw);
    }

    #[test]
    fn case_folds_only_when_asked() {
        assert_eq!(exact("/Orders/Admin").unwrap(), "/Orders/Admin");
        let folded = canonical(b"/Orders/%41dmin%3a", PathCase::Insensitive).unwrap();
        assert_eq!(&*folded, b"/orders/admin%3A");
    }

    #[test]
    fn prefixes_are_canonical_or_refused() {
        assert_eq!(canonical_prefix("/orders/").unwrap(), b"/orders");
        assert_eq!(canonical_prefix("/").unwrap(), b"/");
        assert_eq!(canonical_prefix("//a//b").unwrap(), b"/a/b");
        assert_eq!(canonical_prefix("/%61pi").unwrap(), b"/api");
        for bad in ["/a;b", "/a%3Bb", "/a%3bb", "a", "/a?x", "/a/../b", "/a%2fb"] {
            assert_eq!(canonical_prefix(bad), Err(InvalidPath), "{bad}");
        }
    }

    #[test]
    fn long_hostile_paths_cost_linear_time() {
        let mut path = String::from("/");
        for _ in 0..20_000 {
            path.push_str("%61;x//");
        }
        assert!(exact(&path).unwrap().len() <= 20_001 * 2);
    }
}
