//! The request as the core sees it: method, host, path, and the few header
//! values the policy reads, extracted by the rules of spec §3.

use std::borrow::Cow;

/// Where credentials and the tenant selector come from. Header names are
/// matched case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// Checked in order; the first present, non-empty header wins.
    pub api_key_headers: Vec<String>,
    /// Query parameter carrying an API key (empty: disabled).
    pub api_key_query: String,
    pub user_header: String,
    pub tenant_header: String,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            api_key_headers: vec!["x-api-key".into()],
            api_key_query: "apikey".into(),
            user_header: "x-user-id".into(),
            tenant_header: "x-tenant-id".into(),
        }
    }
}

/// One request, borrowed from the host's buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'r> {
    pub method: &'r str,
    /// The `:authority`/`Host`, possibly with a port.
    pub host: &'r str,
    /// Path with its query string, as received.
    pub path: &'r str,
    pub api_key: Option<Cow<'r, str>>,
    pub user_id: Option<&'r str>,
    pub tenant_selector: Option<&'r str>,
    /// The path to send upstream when the API key query parameter had to be removed.
    pub forward_path: Option<String>,
}

impl<'r> Request<'r> {
    /// Extracts what the policy reads from the request line and headers.
    ///
    /// - the API key: the first configured header present with a non-empty value
    ///   (the first occurrence of a repeated header), else the query parameter;
    /// - the user id and tenant selector: the first occurrence, empty meaning absent.
    pub fn from_parts<N, V>(
        sources: &Sources,
        method: &'r str,
        host: &'r str,
        path: &'r str,
        headers: &'r [(N, V)],
    ) -> Request<'r>
    where
        N: AsRef<str>,
        V: AsRef<str>,
    {
        let mut header_key: Option<(usize, &'r str)> = None;
        let mut user_id: Option<&'r str> = None;
        let mut tenant_selector: Option<&'r str> = None;
        let mut seen_user = false;
        let mut seen_tenant = false;
        // Bit `rank` set once header `rank` was seen (at most 64 key headers count).
        let mut seen_key = 0u64;
        for (name, value) in headers {
            let (name, value) = (name.as_ref(), value.as_ref());
            if !seen_user && name.eq_ignore_ascii_case(&sources.user_header) {
                seen_user = true;
                user_id = non_empty(value);
            }
            if !seen_tenant && name.eq_ignore_ascii_case(&sources.tenant_header) {
                seen_tenant = true;
                tenant_selector = non_empty(value);
            }
            for (rank, key_header) in sources.api_key_headers.iter().enumerate().take(64) {
                let bit = 1u64 << rank;
                if seen_key & bit == 0 && name.eq_ignore_ascii_case(key_header) {
                    seen_key |= bit;
                    if let Some(v) = non_empty(value) {
                        if header_key.is_none_or(|(best, _)| rank < best) {
                            header_key = Some((rank, v));
                        }
                    }
                }
            }
        }
        let (query_key, forward_path) = take_query_param(path, &sources.api_key_query);
        Request {
            method,
            host,
            path,
            api_key: header_key.map(|(_, v)| Cow::Borrowed(v)).or(query_key),
            user_id,
            tenant_selector,
            forward_path,
        }
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &'r str {
        self.path.split_once('?').map_or(self.path, |(p, _)| p)
    }
}

fn non_empty(value: &str) -> Option<&str> {
    (!value.is_empty()).then_some(value)
}

/// Finds the first non-empty `name` parameter (percent-decoded) and the path with
/// every `name` parameter removed. Returns no path when there was none to remove.
fn take_query_param<'p>(path: &'p str, name: &str) -> (Option<Cow<'p, str>>, Option<String>) {
    let Some((base, query)) = path.split_once('?') else {
        return (None, None);
    };
    if name.is_empty() {
        return (None, None);
    }
    let matches = |pair: &str| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        key == name || percent_decode(key).as_deref() == Some(name)
    };
    if !query.split('&').any(matches) {
        return (None, None);
    }
    let mut value = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        if matches(pair) {
            if value.is_none() {
                let raw = pair.split_once('=').map_or("", |(_, v)| v);
                if !raw.is_empty() {
                    value = Some(percent_decode(raw).unwrap_or(Cow::Borrowed(raw)));
                }
            }
        } else {
            kept.push(pair);
        }
    }
    let mut forward = String::with_capacity(path.len());
    forward.push_str(base);
    let kept: Vec<&str> = kept.into_iter().filter(|p| !p.is_empty()).collect();
    if !kept.is_empty() {
        forward.push('?');
        forward.push_str(&kept.join("&"));
    }
    (value, Some(forward))
}

/// Decodes `%XX` escapes (and `+` as a space, as forms encode queries); `None` if
/// the result is not UTF-8. Borrowed when there is nothing to decode.
fn percent_decode(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains(['%', '+']) {
        return Some(Cow::Borrowed(text));
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match b {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(hi), Some(lo)) => {
                    out.push(u8::try_from(hi * 16 + lo).ok()?);
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
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn req<'a>(path: &'a str, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request::from_parts(&Sources::default(), "GET", "h", path, headers)
    }

    #[test]
    fn header_key_wins_over_query_and_query_key_is_removed() {
        let r = req("/a?x=1&apikey=q&y=2", &[("X-Api-Key", "h")]);
        assert_eq!(r.api_key.as_deref(), Some("h"));
        assert_eq!(r.forward_path.as_deref(), Some("/a?x=1&y=2"));
        let r = req("/a?apikey=q%2Bk", &[]);
        assert_eq!(r.api_key.as_deref(), Some("q+k"));
        assert_eq!(r.forward_path.as_deref(), Some("/a"));
    }

    #[test]
    fn empty_values_are_absent_and_first_repeat_wins() {
        let r = req(
            "/a?apikey=",
            &[
                ("x-api-key", ""),
                ("x-user-id", "u1"),
                ("x-user-id", "u2"),
                ("x-tenant-id", ""),
            ],
        );
        assert_eq!(r.api_key, None);
        assert_eq!(r.forward_path.as_deref(), Some("/a"));
        assert_eq!(r.user_id, Some("u1"));
        assert_eq!(r.tenant_selector, None);
        let r = req("/a", &[("x-api-key", "k1"), ("x-api-key", "k2")]);
        assert_eq!(r.api_key.as_deref(), Some("k1"));
        assert_eq!(r.forward_path, None);
    }

    #[test]
    fn every_apikey_parameter_is_removed() {
        let r = req("/a?apikey=k1&b=2&apikey=k2", &[]);
        assert_eq!(r.api_key.as_deref(), Some("k1"));
        assert_eq!(r.forward_path.as_deref(), Some("/a?b=2"));
        let r = req("/a?api%6bey=k1", &[]);
        assert_eq!(r.api_key.as_deref(), Some("k1"));
        assert_eq!(r.forward_path.as_deref(), Some("/a"));
        assert_eq!(req("/a?apikeys=1", &[]).forward_path, None);
    }
}
