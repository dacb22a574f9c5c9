//! The request as the core sees it: method, host, path, and the few header
//! values the policy reads, extracted by the rules of spec §3 and the v1.1
//! amendments (canonical path, ambiguous credentials).
//!
//! Paths and header values are bytes: a host hands them over as received, a
//! value that is not UTF-8 simply matches nothing, and the path forwarded
//! upstream keeps every byte but the removed API key parameter.

use super::path::{self, InvalidPath, PathCase};
use std::borrow::Cow;

/// Where credentials and the tenant selector come from, and how paths are
/// matched. Header names are matched case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// Checked in order; the first present, non-empty header wins.
    pub api_key_headers: Vec<String>,
    /// Query parameter carrying an API key (empty: disabled).
    pub api_key_query: String,
    /// The user id header (`None`: no user identity from headers).
    pub user_header: Option<String>,
    /// The tenant selector header (spec §2 step 5).
    pub tenant_header: String,
    /// How route prefixes compare letter case.
    pub path_case: PathCase,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            api_key_headers: vec!["x-api-key".into()],
            api_key_query: "apikey".into(),
            user_header: Some("x-user-id".into()),
            tenant_header: "x-tenant-id".into(),
            path_case: PathCase::Sensitive,
        }
    }
}

/// Identity sources sent in a way that lets two readers disagree (contract
/// v1.1): refused instead of letting the first win.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ambiguity {
    /// A key header or the user header repeated, or different keys in
    /// different places (`ambiguous_credentials`).
    pub credentials: bool,
    /// The tenant selector repeated (`ambiguous_tenant`).
    pub tenant: bool,
}

/// One request, borrowed from the host's buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'r> {
    /// The HTTP method, as received.
    pub method: &'r str,
    /// The `:authority`/`Host`, possibly with a port.
    pub host: &'r str,
    /// Path with its query string, as received.
    pub path: &'r [u8],
    /// The canonical path the route is matched on, or why step 1 refuses it.
    pub route_path: Result<Cow<'r, [u8]>, InvalidPath>,
    /// How `route_path` was folded (the route index must match it).
    pub path_case: PathCase,
    /// The API key from the first source that holds one.
    pub api_key: Option<Cow<'r, [u8]>>,
    /// The user identity header's value.
    pub user_id: Option<&'r [u8]>,
    /// The tenant selector header's value.
    pub tenant_selector: Option<&'r [u8]>,
    /// Identity sent in a way two readers could disagree on.
    pub ambiguous: Ambiguity,
    /// The path to send upstream when the API key query parameter had to be removed.
    pub forward_path: Option<Vec<u8>>,
}

/// What one header source (a name, or the query parameter) held.
#[derive(Default)]
struct Seen<'r> {
    value: Option<&'r [u8]>,
    repeated: bool,
}

impl<'r> Seen<'r> {
    /// Counts one occurrence; empty values count as absent.
    fn add(&mut self, value: &'r [u8]) {
        if value.is_empty() {
            return;
        }
        if self.value.is_some() {
            self.repeated = true;
        } else {
            self.value = Some(value);
        }
    }
}

impl<'r> Request<'r> {
    /// Extracts what the policy reads from the request line and headers.
    ///
    /// - the API key: the first configured header present with a non-empty
    ///   value, else the query parameter; ambiguous when a key header or the
    ///   parameter is repeated, or two places hold different keys;
    /// - the user id and tenant selector: empty meaning absent, ambiguous when
    ///   repeated.
    pub fn from_parts<P, N, V>(
        sources: &Sources,
        method: &'r str,
        host: &'r str,
        path: &'r P,
        headers: &'r [(N, V)],
    ) -> Request<'r>
    where
        P: AsRef<[u8]> + ?Sized,
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let path = path.as_ref();
        let mut user = Seen::default();
        let mut tenant = Seen::default();
        // At most 16 key headers are configurable (the configuration checks it).
        let mut keys: [Seen<'r>; 16] = Default::default();
        let user_header = sources.user_header.as_deref().map(str::as_bytes);
        for (name, value) in headers {
            let (name, value) = (name.as_ref(), value.as_ref());
            if user_header.is_some_and(|h| name.eq_ignore_ascii_case(h)) {
                user.add(value);
            }
            if name.eq_ignore_ascii_case(sources.tenant_header.as_bytes()) {
                tenant.add(value);
            }
            for (seen, key_header) in keys.iter_mut().zip(&sources.api_key_headers) {
                if name.eq_ignore_ascii_case(key_header.as_bytes()) {
                    seen.add(value);
                }
            }
        }
        let query = take_query_param(path, sources.api_key_query.as_bytes());
        let path_only = path_without_query(path);
        let (api_key, key_ambiguous) = choose_key(&keys, query.value, query.repeated);
        Request {
            method,
            host,
            path,
            route_path: path::canonical(path_only, sources.path_case),
            path_case: sources.path_case,
            api_key,
            user_id: user.value,
            tenant_selector: tenant.value,
            ambiguous: Ambiguity {
                credentials: key_ambiguous || user.repeated,
                tenant: tenant.repeated,
            },
            forward_path: query.forward,
        }
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &'r [u8] {
        path_without_query(self.path)
    }
}

fn path_without_query(path: &[u8]) -> &[u8] {
    match path.iter().position(|&b| b == b'?') {
        Some(end) => path.get(..end).unwrap_or(path),
        None => path,
    }
}

/// The key the headers (in configured order) and the query carry, and
/// whether they disagree.
fn choose_key<'r>(
    headers: &[Seen<'r>],
    query: Option<Cow<'r, [u8]>>,
    query_repeated: bool,
) -> (Option<Cow<'r, [u8]>>, bool) {
    let mut chosen: Option<Cow<'r, [u8]>> = None;
    let mut ambiguous = query_repeated || headers.iter().any(|seen| seen.repeated);
    let values = headers
        .iter()
        .filter_map(|seen| seen.value.map(Cow::Borrowed))
        .chain(query);
    for value in values {
        match &chosen {
            None => chosen = Some(value),
            Some(first) => ambiguous |= *first != value,
        }
    }
    (chosen, ambiguous)
}

/// The API key query parameter of a path: its first non-empty value
/// (percent-decoded), whether a second non-empty one was sent, and the path
/// without any of them (`None` when there was none to remove).
struct QueryKey<'p> {
    value: Option<Cow<'p, [u8]>>,
    repeated: bool,
    forward: Option<Vec<u8>>,
}

fn take_query_param<'p>(path: &'p [u8], name: &[u8]) -> QueryKey<'p> {
    let none = QueryKey {
        value: None,
        repeated: false,
        forward: None,
    };
    let Some(at) = path.iter().position(|&b| b == b'?') else {
        return none;
    };
    let (base, query) = (
        path.get(..at).unwrap_or(path),
        path.get(at + 1..).unwrap_or(&[]),
    );
    if name.is_empty() {
        return none;
    }
    let is_key = |pair: &[u8]| {
        let key = pair.split(|&b| b == b'=').next().unwrap_or(pair);
        key == name || percent_decode(key) == name
    };
    if !query.split(|&b| b == b'&').any(is_key) {
        return none;
    }
    let mut value: Option<Cow<'p, [u8]>> = None;
    let mut repeated = false;
    let mut forward = Vec::with_capacity(path.len());
    forward.extend_from_slice(base);
    for pair in query.split(|&b| b == b'&') {
        if !is_key(pair) {
            if !pair.is_empty() {
                forward.push(if forward.len() == base.len() {
                    b'?'
                } else {
                    b'&'
                });
                forward.extend_from_slice(pair);
            }
            continue;
        }
        let raw = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => pair.get(eq + 1..).unwrap_or(&[]),
            None => &[],
        };
        if raw.is_empty() {
            continue;
        }
        match value {
            None => value = Some(percent_decode(raw)),
            Some(_) => repeated = true,
        }
    }
    QueryKey {
        value,
        repeated,
        forward: Some(forward),
    }
}

/// Decodes `%XX` escapes (and `+` as a space, as forms encode queries).
/// Borrowed when there is nothing to decode.
fn percent_decode(text: &[u8]) -> Cow<'_, [u8]> {
    if !text.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(text);
    }
    let hex = |b: Option<&u8>| b.and_then(|c| (*c as char).to_digit(16));
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'%' => match (hex(text.get(i + 1)), hex(text.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn req<'a>(path: &'a str, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request::from_parts(&Sources::default(), "GET", "h", path.as_bytes(), headers)
    }

    fn forward(r: &Request<'_>) -> Option<String> {
        r.forward_path
            .as_ref()
            .map(|p| String::from_utf8(p.clone()).unwrap())
    }

    #[test]
    fn header_key_equal_to_query_key_and_query_key_is_removed() {
        let r = req("/a?x=1&apikey=h&y=2", &[("X-Api-Key", "h")]);
        assert_eq!(r.api_key.as_deref(), Some(&b"h"[..]));
        assert!(!r.ambiguous.credentials);
        assert_eq!(forward(&r).as_deref(), Some("/a?x=1&y=2"));
        let r = req("/a?apikey=q%2Bk", &[]);
        assert_eq!(r.api_key.as_deref(), Some(&b"q+k"[..]));
        assert_eq!(forward(&r).as_deref(), Some("/a"));
    }

    #[test]
    fn empty_values_are_absent() {
        let r = req(
            "/a?apikey=",
            &[("x-api-key", ""), ("x-user-id", "u1"), ("x-user-id", "")],
        );
        assert_eq!(r.api_key, None);
        assert_eq!(forward(&r).as_deref(), Some("/a"));
        assert_eq!(r.user_id, Some(&b"u1"[..]));
        assert_eq!(r.ambiguous, Ambiguity::default());
        assert_eq!(r.tenant_selector, None);
    }

    #[test]
    fn repeated_or_conflicting_identities_are_ambiguous() {
        let credentials = |path: &'static str, headers: &'static [(&str, &str)]| {
            req(path, headers).ambiguous.credentials
        };
        assert!(credentials(
            "/a",
            &[("x-user-id", "u1"), ("x-user-id", "u2")]
        ));
        assert!(credentials(
            "/a",
            &[("x-user-id", "u1"), ("X-User-Id", "u1")]
        ));
        assert!(credentials(
            "/a",
            &[("x-api-key", "k1"), ("x-api-key", "k2")]
        ));
        assert!(credentials(
            "/a",
            &[("x-api-key", "k1"), ("x-api-key", "k1")]
        ));
        assert!(credentials("/a?apikey=k2", &[("x-api-key", "k1")]));
        assert!(credentials("/a?apikey=k1&apikey=k2", &[]));
        assert!(!credentials("/a?apikey=k1", &[("x-api-key", "k1")]));
        let r = req("/a", &[("x-tenant-id", "acme"), ("x-tenant-id", "initech")]);
        assert!(r.ambiguous.tenant && !r.ambiguous.credentials);
    }

    #[test]
    fn two_key_headers_must_agree() {
        let sources = Sources {
            api_key_headers: vec!["x-api-key".into(), "x-key".into()],
            ..Sources::default()
        };
        let headers = [("x-key", "k2"), ("x-api-key", "k1")];
        let r = Request::from_parts(&sources, "GET", "h", b"/a", &headers);
        assert!(r.ambiguous.credentials);
        let headers = [("x-key", "k1"), ("x-api-key", "k1")];
        let r = Request::from_parts(&sources, "GET", "h", b"/a", &headers);
        assert_eq!(r.api_key.as_deref(), Some(&b"k1"[..]));
        assert!(!r.ambiguous.credentials);
    }

    #[test]
    fn a_disabled_user_header_reads_nothing() {
        let sources = Sources {
            user_header: None,
            ..Sources::default()
        };
        let headers = [("x-user-id", "alice")];
        let r = Request::from_parts(&sources, "GET", "h", b"/a", &headers);
        assert_eq!(r.user_id, None);
    }

    #[test]
    fn every_apikey_parameter_is_removed_and_other_bytes_kept() {
        let r = req("/a?apikey=k1&b=2&apikey=k1", &[]);
        assert_eq!(r.api_key.as_deref(), Some(&b"k1"[..]));
        assert!(r.ambiguous.credentials, "a repeated parameter is ambiguous");
        assert_eq!(forward(&r).as_deref(), Some("/a?b=2"));
        let r = req("/a?api%6bey=k1", &[]);
        assert_eq!(r.api_key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(forward(&r).as_deref(), Some("/a"));
        assert_eq!(req("/a?apikeys=1", &[]).forward_path, None);
        let raw: &[u8] = b"/\xff%zz?\xfe=1&apikey=k&;=%";
        let r = Request::from_parts(&Sources::default(), "GET", "h", raw, &[] as &[(&str, &str)]);
        assert_eq!(r.forward_path.as_deref(), Some(&b"/\xff%zz?\xfe=1&;=%"[..]));
        let key: &[u8] = b"/a?apikey=%ff%00";
        let r = Request::from_parts(&Sources::default(), "GET", "h", key, &[] as &[(&str, &str)]);
        assert_eq!(r.api_key.as_deref(), Some(&[0xff, 0][..]));
    }

    #[test]
    fn the_route_path_is_canonical() {
        let r = req("/orders/%61dmin;x/purge?apikey=k", &[]);
        assert_eq!(r.route_path.as_deref(), Ok(&b"/orders/admin/purge"[..]));
        assert_eq!(req("/health/..;/orders", &[]).route_path, Err(InvalidPath));
    }
}
