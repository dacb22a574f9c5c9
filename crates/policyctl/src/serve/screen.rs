//! The request screen in front of hyper: every request head is read and checked here, with
//! `httparse` (hyper's own parser), before hyper sees a byte of it.
//!
//! hyper parses, routes, keeps connections alive and writes responses; the screen only decides
//! which bytes reach it. It exists because hyper (1.x) quietly *accepts* a request carrying
//! both `content-length` and `transfer-encoding` (it drops the length, reads the body as
//! chunked and closes afterwards), because hyper's own answer to a malformed request is an
//! empty 400 that the request log never sees, and to bound how long and how large a request
//! head may be.
//!
//! No endpoint takes a body, so a request that announces one is refused. What reaches hyper is
//! then a run of heads with no body between them: the screen never follows a body's framing
//! to find where the next head starts, which is where request smuggling hides.
//!
//! * A head is collected until its empty line: at most [`MAX_HEAD`] bytes (431 beyond) and a
//!   request line of at most [`MAX_REQUEST_LINE`] bytes (400 beyond), at most [`MAX_HEADERS`]
//!   fields (431 beyond). [`super::screened`] enforces [`HEADER_TIMEOUT`].
//! * Refused with 400: `content-length` together with `transfer-encoding` (RFC 9112 section
//!   6.3), any other `transfer-encoding`, a `content-length` other than 0 (equal repeats are
//!   fine) or that is not a non-negative decimal number, a malformed request line, header
//!   field or target, and an HTTP/1.1 request without exactly one `host`.
//! * A refused request is never shown to hyper: it gets a stand-in request instead, which the
//!   service answers with the refusal and `connection: close`, after the responses to the
//!   requests pipelined before it. Nothing after a refusal reaches hyper.

use std::time::Duration;

/// Largest request head (request line, header fields and the empty line).
pub const MAX_HEAD: usize = 32 * 1024;
/// Longest request line.
pub const MAX_REQUEST_LINE: usize = 16 * 1024;
/// Most header fields in a request (as hyper's default).
pub const MAX_HEADERS: usize = 100;
/// A request head must be complete within this long: of accepting the connection for its first
/// request, of its first byte for later ones. A slower client is disconnected without answer.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What hyper is given in place of a refused request: the service answers it with the refusal.
pub const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nhost: refused\r\nconnection: close\r\n\r\n";

/// Why a request was refused before hyper saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

const fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// Follows a connection's requests (sans I/O): feed it what the socket gives, pass on what it
/// puts in `out`.
#[derive(Debug, Default)]
pub struct Screen {
    /// The head being collected.
    head: Vec<u8>,
    /// Request heads passed on so far (stand-ins included).
    heads: u64,
    /// A refusal not yet collected by [`Screen::take_refusal`], with the index of its stand-in.
    refusal: Option<(u64, Refusal)>,
    /// Nothing more is passed on (after a refusal).
    stopped: bool,
}

impl Screen {
    /// Screens `input` (the next bytes from the client) and appends what hyper may read to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() && !self.stopped {
            input = self.feed_head(input, out);
        }
    }

    /// True while a request head has been started but not finished, and for the connection's
    /// first request until it has been received.
    pub fn head_pending(&self) -> bool {
        !self.stopped && (!self.head.is_empty() || self.heads == 0)
    }

    /// True once nothing more will be passed on.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The refusal decided since the last call, and the index of the request hyper will see in
    /// its place.
    pub fn take_refusal(&mut self) -> Option<(u64, Refusal)> {
        self.refusal.take()
    }

    /// Collects `input` into the head; returns what follows the head if it is complete.
    fn feed_head<'a>(&mut self, input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
        let input = if self.head.is_empty() {
            skip_empty_lines(input)
        } else {
            input
        };
        let before = self.head.len();
        // One byte past the limit tells a head that is too large from one that fits exactly.
        let take = input.len().min((MAX_HEAD + 1).saturating_sub(before));
        self.head
            .extend_from_slice(input.get(..take).unwrap_or_default());
        match head_end(&self.head, before.saturating_sub(2)) {
            Some(end) => {
                self.head.truncate(end);
                self.pass_or_refuse(out);
                input.get(end.saturating_sub(before)..).unwrap_or_default()
            }
            None => {
                if let Some(refusal) = self.oversized() {
                    self.refuse(refusal, out);
                }
                input.get(take..).unwrap_or_default()
            }
        }
    }

    /// Passes the complete head on, or the stand-in for its refusal.
    fn pass_or_refuse(&mut self, out: &mut Vec<u8>) {
        match screen_head(&self.head) {
            Ok(()) => {
                out.extend_from_slice(&self.head);
                self.heads += 1;
                self.head.clear();
            }
            Err(refusal) => self.refuse(refusal, out),
        }
    }

    /// The refusal of an unfinished head that already breaks a limit.
    fn oversized(&self) -> Option<Refusal> {
        let line_done = self
            .head
            .iter()
            .take(MAX_REQUEST_LINE + 1)
            .any(|&b| b == b'\n');
        if !line_done && self.head.len() > MAX_REQUEST_LINE {
            Some(refuse(400, "request line too long"))
        } else if self.head.len() > MAX_HEAD {
            Some(refuse(431, "request header fields too large"))
        } else {
            None
        }
    }

    fn refuse(&mut self, refusal: Refusal, out: &mut Vec<u8>) {
        self.refusal = Some((self.heads, refusal));
        out.extend_from_slice(STAND_IN);
        self.heads += 1;
        self.head = Vec::new();
        self.stopped = true;
    }
}

/// Empty lines before a request line are ignored (RFC 9112 section 2.2).
fn skip_empty_lines(input: &[u8]) -> &[u8] {
    let blank = input
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    input.get(blank..).unwrap_or_default()
}

/// The length of the head in `buf` (through its empty line), looking for line ends from `from`.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(&b) = buf.get(i) {
        if b == b'\n' {
            match (buf.get(i + 1), buf.get(i + 2)) {
                (Some(b'\n'), _) => return Some(i + 2),
                (Some(b'\r'), Some(b'\n')) => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Parses a complete request head: `Ok` if hyper may see it.
fn screen_head(head: &[u8]) -> Result<(), Refusal> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(refuse(400, "malformed request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(refuse(431, "too many header fields")),
        Err(error) => return Err(classify(head, error)),
    }
    if http::Uri::try_from(request.path.unwrap_or_default()).is_err() {
        return Err(refuse(400, "malformed request target"));
    }
    let framing = Framing::of(request.headers);
    framing.check(request.version == Some(0))
}

/// What a head's fields say about its body and its host.
#[derive(Default)]
struct Framing<'h> {
    hosts: usize,
    /// Every `content-length` value, lists split.
    lengths: Vec<&'h [u8]>,
    transfer_encoding: bool,
}

impl<'h> Framing<'h> {
    fn of(fields: &[httparse::Header<'h>]) -> Framing<'h> {
        let mut framing = Framing::default();
        for field in fields {
            if field.name.eq_ignore_ascii_case("host") {
                framing.hosts += 1;
            } else if field.name.eq_ignore_ascii_case("content-length") {
                framing.lengths.extend(field.value.split(|&b| b == b','));
            } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
                framing.transfer_encoding = true;
            }
        }
        framing
    }

    /// `Ok` for a request without a body and, in HTTP/1.1, with one host.
    fn check(&self, http10: bool) -> Result<(), Refusal> {
        if self.transfer_encoding && !self.lengths.is_empty() {
            // Named apart: it is how a smuggled request hides behind a front proxy.
            return Err(refuse(400, "both content-length and transfer-encoding"));
        }
        if self.transfer_encoding || content_length(&self.lengths)? != 0 {
            return Err(refuse(400, "request bodies are not accepted"));
        }
        if !http10 && self.hosts != 1 {
            // RFC 9112 section 3.2.
            return Err(refuse(
                400,
                "an HTTP/1.1 request needs exactly one host field",
            ));
        }
        Ok(())
    }
}

/// The body length the `content-length` values announce (0 without any).
fn content_length(values: &[&[u8]]) -> Result<u64, Refusal> {
    let mut length = None;
    for value in values {
        let value = value.trim_ascii();
        let parsed = std::str::from_utf8(value)
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok());
        match (parsed, length) {
            (None, _) => return Err(refuse(400, "invalid content-length")),
            (Some(n), Some(m)) if n != m => return Err(refuse(400, "conflicting content-length")),
            (Some(n), _) => length = Some(n),
        }
    }
    Ok(length.unwrap_or(0))
}

/// Names what is wrong with a head `httparse` refused: its request line, or a header field.
fn classify(head: &[u8], error: httparse::Error) -> Refusal {
    let line_end = head
        .iter()
        .position(|&b| b == b'\n')
        .map_or(head.len(), |i| i + 1);
    let mut line = head.get(..line_end).unwrap_or_default().to_vec();
    line.extend_from_slice(b"\r\n");
    let mut none = [httparse::EMPTY_HEADER; 0];
    let line_ok = httparse::Request::new(&mut none).parse(&line).is_ok();
    match error {
        _ if line_ok => refuse(400, "malformed header field"),
        httparse::Error::Version => refuse(400, "unsupported HTTP version"),
        _ => refuse(400, "malformed request line"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns what was passed on and the screen.
    fn run(input: &[u8], step: usize) -> (Vec<u8>, Screen) {
        let mut screen = Screen::default();
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            screen.feed(piece, &mut out);
        }
        (out, screen)
    }

    fn refusal_of(input: &[u8]) -> Option<Refusal> {
        let (out, mut screen) = run(input, input.len());
        let refusal = screen.take_refusal().map(|(_, r)| r);
        if refusal.is_some() {
            assert!(out.ends_with(STAND_IN));
        }
        refusal
    }

    #[test]
    fn valid_pipelines_pass_unchanged_whatever_the_read_sizes() {
        let stream: &[u8] = b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n\
            POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n\
            HEAD /c HTTP/1.1\r\nhost: x\r\ncontent-length: 0, 00\r\n\r\n\
            GET /d HTTP/1.0\n\n";
        for step in 1..=stream.len() {
            let (out, mut screen) = run(stream, step);
            assert_eq!(out, stream, "read size {step}");
            assert_eq!(screen.heads, 4);
            assert!(screen.take_refusal().is_none());
            assert!(!screen.stopped());
        }
    }

    #[test]
    fn empty_lines_before_a_request_are_dropped() {
        let (out, screen) = run(b"\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n", 3);
        assert_eq!(out, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
        assert_eq!(screen.heads, 1);
    }

    #[test]
    fn framing_attacks_and_bodies_are_refused() {
        let both = Some("both content-length and transfer-encoding");
        let body = Some("request bodies are not accepted");
        for (raw, reason) in [
            (&b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"[..], both),
            (b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 0\r\n\r\n", both),
            (b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n", body),
            (b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n", body),
            (b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n", body),
            (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello", body),
            (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5, 5\r\n\r\n", body),
            (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2000000\r\n\r\n", body),
            (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5, 6\r\n\r\n", Some("conflicting content-length")),
            (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\ncontent-length: 6\r\n\r\n", Some("conflicting content-length")),
            (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: +0\r\n\r\n", Some("invalid content-length")),
            (b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: \r\n\r\n", Some("invalid content-length")),
            (b"GET / HTTP/1.1\r\n\r\n", Some("an HTTP/1.1 request needs exactly one host field")),
            (b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", Some("an HTTP/1.1 request needs exactly one host field")),
        ] {
            let refusal = refusal_of(raw);
            let shown = String::from_utf8_lossy(raw);
            assert_eq!(refusal.map(|r| r.status), Some(400), "{shown}");
            assert_eq!(refusal.map(|r| r.reason), reason, "{shown}");
        }
    }

    #[test]
    fn malformed_heads_are_named() {
        let reason = |raw: &[u8]| refusal_of(raw).map(|r| r.reason);
        assert_eq!(reason(b"GARBAGE\r\n\r\n"), Some("malformed request line"));
        assert_eq!(
            reason(b"GET / HTTP/2.0\r\n\r\n"),
            Some("unsupported HTTP version")
        );
        assert_eq!(
            reason(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"),
            Some("malformed header field")
        );
        assert_eq!(
            reason(b"GET  / HTTP/1.1\r\nhost: x\r\n\r\n"),
            Some("malformed request line")
        );
    }

    #[test]
    fn heads_are_bounded() {
        let mut long_line = b"GET /".to_vec();
        long_line.extend(std::iter::repeat_n(b'a', MAX_REQUEST_LINE));
        let (out, mut screen) = run(&long_line, 1000);
        assert_eq!(out, STAND_IN);
        assert_eq!(
            screen.take_refusal(),
            Some((0, refuse(400, "request line too long")))
        );

        let mut big = b"GET / HTTP/1.1\r\nhost: x\r\n".to_vec();
        while big.len() <= MAX_HEAD {
            big.extend_from_slice(b"x-filler: ");
            big.extend(std::iter::repeat_n(b'f', 1000));
            big.extend_from_slice(b"\r\n");
        }
        let (_, mut screen) = run(&big, 4096);
        assert_eq!(screen.take_refusal().map(|(_, r)| r.status), Some(431));
        assert!(screen.head.capacity() <= MAX_HEAD);

        let mut many = b"GET / HTTP/1.1\r\nhost: x\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(refusal_of(&many).map(|r| r.status), Some(431));
    }

    #[test]
    fn nothing_after_a_refusal_is_passed_on() {
        let (out, mut screen) = run(
            b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\nBAD\r\n\r\nGET /c HTTP/1.1\r\nhost: x\r\n\r\n",
            7,
        );
        assert!(out.ends_with(STAND_IN));
        assert_eq!(screen.take_refusal().map(|(at, _)| at), Some(2));
        assert!(screen.stopped());
        assert!(!String::from_utf8_lossy(&out).contains("/c"));
        // A body that smuggles a request: the request that announced it is refused, so the
        // smuggled one is never parsed.
        let (out, mut screen) = run(
            b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 35\r\n\r\nGET /keys/0 HTTP/1.1\r\nhost: x\r\n\r\n",
            5,
        );
        assert_eq!(out, STAND_IN);
        assert_eq!(screen.take_refusal().map(|(at, _)| at), Some(0));
    }
}
