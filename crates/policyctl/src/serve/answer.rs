//! Answers: what each request gets, and the line it leaves in the request log.

use super::content::{Served, HASH_PREFIX};
use super::etag::none_match;
use super::log_line;
use super::range::{self, Ranged};
use super::screen::Refusal;
use super::state::{bump, read, Server};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::json;
use tenantgate_policy::text::is_sha256_hex;

/// Characters of an unknown path printed in the request log.
const PATH_PREFIX: usize = 32;

pub type Reply = hyper::Response<Full<Bytes>>;

/// A response, and how it is logged.
pub struct Answer {
    status: StatusCode,
    headers: Vec<(header::HeaderName, HeaderValue)>,
    /// Sent with `content-length` (also for HEAD and 304, where hyper leaves the body out).
    body: Bytes,
    /// Appended to the log line (`etag=sha256:…`).
    note: String,
}

impl Answer {
    fn json(status: StatusCode, body: String) -> Answer {
        Answer {
            status,
            headers: vec![(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: Bytes::from(body),
            note: String::new(),
        }
    }

    pub fn error(status: StatusCode, error: &str) -> Answer {
        Answer::json(status, json!({ "error": error }).to_string())
    }

    /// Adds a header whose value we wrote (digits, `bytes`, `/`, `-`, `*`).
    fn push(&mut self, name: header::HeaderName, value: &str) {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
    }

    pub fn into_reply(self, close: bool) -> Reply {
        let mut reply = hyper::Response::new(Full::new(self.body.clone()));
        *reply.status_mut() = self.status;
        let headers = reply.headers_mut();
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        if close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        reply
    }
}

/// The answer to a request the screen refused: logged as `- - STATUS reason`.
/// The answer to a request the screen refused: logged as `- - STATUS reason`.
pub fn refused(refusal: Refusal) -> Reply {
    log_line(&format!("- - {} {}", refusal.status, refusal.reason));
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
    let error = match refusal.status {
        431 => "header_fields_too_large",
        _ => "bad_request",
    };
    let body = json!({ "error": error, "message": refusal.reason });
    Answer::json(status, body.to_string()).into_reply(true)
}

/// Answers a well-formed request and logs it.
pub fn answer(server: &Server, request: &http::request::Parts) -> Reply {
    let (answer, logged_target) = route(server, request);
    let mut line = format!(
        "{} {logged_target} {}",
        request.method,
        answer.status.as_u16()
    );
    if !answer.note.is_empty() {
        line.push(' ');
        line.push_str(&answer.note);
    }
    log_line(&line);
    // hyper adds `connection: close` itself when the client asked for it.
    answer.into_reply(false)
}

/// The answer to a well-formed request, and the target as printed in the log.
fn route(server: &Server, request: &http::request::Parts) -> (Answer, String) {
    let path = request.uri.path();
    let readable = matches!(request.method, Method::GET | Method::HEAD);
    if readable && path == "/snapshot" {
        return (snapshot(server, request), path.to_string());
    }
    if readable && path == "/stats" {
        return (stats(server), path.to_string());
    }
    if let Some(hash) = path.strip_prefix("/keys/") {
        // At most 8 characters, and never more than half of whatever was sent.
        let limit = HASH_PREFIX.min(hash.chars().count() / 2);
        let logged = format!("/keys/{}…", printable_prefix(hash, limit));
        let answer = if readable {
            key(server, hash)
        } else {
            Answer::error(StatusCode::NOT_FOUND, "not_found")
        };
        return (answer, logged);
    }
    let logged = if path.chars().count() > PATH_PREFIX {
        format!("{}…", printable_prefix(path, PATH_PREFIX))
    } else {
        printable_prefix(path, PATH_PREFIX)
    };
    (Answer::error(StatusCode::NOT_FOUND, "not_found"), logged)
}

/// The first `limit` characters of `text`, anything but ASCII alphanumerics and `/-._~` shown
/// as `?`.
fn printable_prefix(text: &str, limit: usize) -> String {
    text.chars()
        .take(limit)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "/-._~".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The snapshot, its conditions evaluated in RFC 9110's order (13.2.2): `If-Match` (412),
/// `If-None-Match` (304), then `Range` (206, 416) unless `If-Range` names another version.
fn snapshot(server: &Server, request: &http::request::Parts) -> Answer {
    let served = server.policy();
    let c = &server.counters;
    bump(&c.snapshot_requests);
    let headers = &request.headers;
    let etag = served.etag.as_str();
    let note = format!("etag={etag}");
    if headers.contains_key(header::IF_MATCH)
        && !range::if_match(headers.get_all(header::IF_MATCH).iter(), etag)
    {
        bump(&c.snapshot_412);
        let mut answer = Answer::error(StatusCode::PRECONDITION_FAILED, "precondition_failed");
        answer.note = note;
        return answer;
    }
    if none_match(headers.get_all(header::IF_NONE_MATCH).iter(), etag) {
        bump(&c.snapshot_304);
        return snapshot_answer(&served, StatusCode::NOT_MODIFIED, served.body.clone(), note);
    }
    let total = served.body.len() as u64;
    let ranged =
        if request.method == Method::GET && range::if_range(headers.get(header::IF_RANGE), etag) {
            range::evaluate(headers.get_all(header::RANGE).iter(), total)
        } else {
            Ranged::Whole
        };
    match ranged {
        Ranged::Whole => {
            bump(&c.snapshot_200);
            snapshot_answer(&served, StatusCode::OK, served.body.clone(), note)
        }
        Ranged::Part { first, last } => {
            bump(&c.snapshot_206);
            let part = usize::try_from(first)
                .ok()
                .zip(usize::try_from(last).ok())
                .and_then(|(first, last)| served.body.get(first..=last))
                .map(|part| served.body.slice_ref(part))
                .unwrap_or_default();
            let content_range = format!("bytes {first}-{last}/{total}");
            let note = format!("{note} range={first}-{last}/{total}");
            let mut answer = snapshot_answer(&served, StatusCode::PARTIAL_CONTENT, part, note);
            answer.push(header::CONTENT_RANGE, &content_range);
            answer
        }
        Ranged::Unsatisfiable => {
            bump(&c.snapshot_416);
            let mut answer =
                Answer::error(StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable");
            answer.push(header::CONTENT_RANGE, &format!("bytes */{total}"));
            answer.note = note;
            answer
        }
    }
}

/// The snapshot's headers (type, ETag, no-cache, ranges accepted) around `body`.
fn snapshot_answer(served: &Served, status: StatusCode, body: Bytes, note: String) -> Answer {
    let quoted = HeaderValue::from_str(&format!("\"{}\"", served.etag))
        .unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    Answer {
        status,
        headers: vec![
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(served.content_type),
            ),
            (header::ETAG, quoted),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
        ],
        body,
        note,
    }
}

fn key(server: &Server, hash: &str) -> Answer {
    bump(&server.counters.key_requests);
    if !is_sha256_hex(hash) {
        return Answer::json(
            StatusCode::BAD_REQUEST,
            json!({
                "error": "bad_request",
                "message": "the key hash must be 64 lower-case hex digits",
            })
            .to_string(),
        );
    }
    match server.key(hash) {
        Some(object) => {
            bump(&server.counters.key_hits);
            Answer::json(StatusCode::OK, object)
        }
        None => {
            bump(&server.counters.key_misses);
            Answer::error(StatusCode::NOT_FOUND, "not_found")
        }
    }
}

fn stats(server: &Server) -> Answer {
    let served = server.policy();
    let keys = server.key_count();
    let c = &server.counters;
    let body = json!({
        "snapshot_requests": read(&c.snapshot_requests),
        "snapshot_200": read(&c.snapshot_200),
        "snapshot_304": read(&c.snapshot_304),
        "snapshot_206": read(&c.snapshot_206),
        "snapshot_412": read(&c.snapshot_412),
        "snapshot_416": read(&c.snapshot_416),
        "key_requests": read(&c.key_requests),
        "key_hits": read(&c.key_hits),
        "key_misses": read(&c.key_misses),
        "revision": served.revision,
        "reloads": read(&c.reloads),
        "reloads_refused": read(&c.reloads_refused),
        "keys": keys,
        "keys_reloads": read(&c.keys_reloads),
        "keys_reloads_refused": read(&c.keys_reloads_refused),
    });
    Answer::json(StatusCode::OK, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_prefixes_never_show_a_whole_hash() {
        let hash = "64084db3581b61a39984249dbe669dfb1233118846168bab3408cbe203ffa8de";
        assert_eq!(printable_prefix(hash, HASH_PREFIX), "64084db3");
        assert_eq!(printable_prefix("a\u{7f}b c", HASH_PREFIX), "a?b?c");
        assert_eq!(printable_prefix("/x y", PATH_PREFIX), "/x?y");
    }
}
