//! The request screen in front of hyper for `policyctl serve`: every request head is read and
//! checked here, with `httparse` (hyper's own parser), before hyper sees a byte of it.
//!
//! hyper parses, routes, keeps connections alive and writes responses; this module only decides
//! which bytes reach it. It exists because hyper (1.x) quietly *accepts* a request carrying
//! both `content-length` and `transfer-encoding` (it drops the length, reads the body as chunked
//! and closes afterwards), because hyper's own answer to a malformed request is an empty 400 that
//! the request log never sees, and to bound how long and how large a request head may be.
//!
//! * A head is collected until its empty line: at most [`MAX_HEAD`] bytes (431 beyond) and a
//!   request line of at most [`MAX_REQUEST_LINE`] bytes (400 beyond), at most [`MAX_HEADERS`]
//!   fields (431 beyond). It must be complete within [`HEADER_TIMEOUT`]: of accepting the
//!   connection for the first request, of its first byte for later ones. A client that is
//!   slower is disconnected without an answer.
//! * Framing (RFC 9112 section 6): `transfer-encoding` and `content-length` together, a
//!   `transfer-encoding` whose last coding is not `chunked` or that repeats `chunked`, one in an
//!   HTTP/1.0 request, a `content-length` that is not one non-negative decimal number (equal
//!   repeats are fine), or a body over [`MAX_BODY`] (413) are refused. So are a malformed request
//!   line, header field or target, and an HTTP/1.1 request without exactly one `host`.
//! * A refused request is never shown to hyper: it gets a stand-in request instead, and the
//!   service, told by [`ConnState::next_request`], answers it with the refusal and
//!   `connection: close`, after the responses to the requests pipelined before it. Nothing the
//!   client sends afterwards is read, except to drain it briefly before closing (so that the
//!   kernel does not reset the connection before the client has read the refusal).
//! * Bodies are passed through while their framing (a length, or chunks and trailers) is
//!   followed, so that the next head is found where hyper will look for it. A body that breaks
//!   its framing or exceeds [`MAX_BODY`] stops the connection: nothing more reaches hyper.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Largest request head (request line, header fields and the empty line).
pub const MAX_HEAD: usize = 32 * 1024;
/// Longest request line.
pub const MAX_REQUEST_LINE: usize = 16 * 1024;
/// Most header fields in a request (as hyper's default).
pub const MAX_HEADERS: usize = 100;
/// Largest request body passed on (no endpoint reads one).
pub const MAX_BODY: u64 = 1024 * 1024;
/// Longest chunk extension, and longest trailer section, of a chunked body.
const MAX_CHUNK_META: usize = 4 * 1024;
/// A request head must be complete within this long (see the module docs).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// After a refusal: how long, and how many bytes, of what the client still sends are read and
/// dropped before the connection is closed.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;

/// What hyper is given in place of a refused request: the service answers it with the refusal.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nhost: refused\r\nconnection: close\r\n\r\n";

/// Why a request was refused before hyper saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
}

const fn refuse(status: u16, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

// ---------------------------------------------------------------------------------------------
// The screen: a byte stream in, the bytes hyper may see out
// ---------------------------------------------------------------------------------------------

/// How the body of an accepted request is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

#[derive(Debug)]
enum State {
    /// Collecting a request head.
    Head,
    /// Passing on this many more body bytes.
    Body(u64),
    Chunked(Chunked),
    /// Nothing more is passed on (after a refusal, or a body that broke its framing).
    Stopped,
}

/// Follows a connection's requests (sans I/O): feed it what the socket gives, pass on what it
/// puts in `out`.
#[derive(Debug)]
pub struct Screen {
    state: State,
    head: Vec<u8>,
    /// Request heads passed on so far (stand-ins included).
    heads: u64,
    /// A refusal not yet collected by [`Screen::take_refusal`], with the index of its stand-in.
    refusal: Option<(u64, Refusal)>,
}

impl Default for Screen {
    fn default() -> Self {
        Screen {
            state: State::Head,
            head: Vec::new(),
            heads: 0,
            refusal: None,
        }
    }
}

impl Screen {
    /// Screens `input` (the next bytes from the client) and appends what hyper may read to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match &mut self.state {
                State::Stopped => return,
                State::Head => input = self.feed_head(input, out),
                State::Body(left) => {
                    let take = usize::try_from(*left).map_or(input.len(), |l| l.min(input.len()));
                    let (body, rest) = input.split_at(take);
                    out.extend_from_slice(body);
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::Head;
                    }
                    input = rest;
                }
                State::Chunked(chunked) => match chunked.feed(input) {
                    Ok((used, done)) => {
                        let (body, rest) = input.split_at(used.min(input.len()));
                        out.extend_from_slice(body);
                        if done {
                            self.state = State::Head;
                        }
                        input = rest;
                    }
                    Err(_) => self.state = State::Stopped,
                },
            }
        }
    }

    /// True while a request head has been started but not finished, and for the connection's
    /// first request until it has been received.
    pub fn head_pending(&self) -> bool {
        matches!(self.state, State::Head) && (!self.head.is_empty() || self.heads == 0)
    }

    /// True once nothing more will be passed on.
    pub fn stopped(&self) -> bool {
        matches!(self.state, State::Stopped)
    }

    /// The refusal decided since the last call, and the index of the request hyper will see in
    /// its place.
    pub fn take_refusal(&mut self) -> Option<(u64, Refusal)> {
        self.refusal.take()
    }

    fn feed_head<'a>(&mut self, mut input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
        if self.head.is_empty() {
            // Empty lines before a request line are ignored (RFC 9112 section 2.2).
            let blank = input
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            input = input.get(blank..).unwrap_or_default();
            if input.is_empty() {
                return input;
            }
        }
        let before = self.head.len();
        // One byte past the limit tells a head that is too large from one that fits exactly.
        let take = input.len().min((MAX_HEAD + 1).saturating_sub(before));
        self.head
            .extend_from_slice(input.get(..take).unwrap_or_default());
        let Some(end) = head_end(&self.head, before.saturating_sub(2)) else {
            let line_done = self
                .head
                .iter()
                .take(MAX_REQUEST_LINE + 1)
                .any(|&b| b == b'\n');
            if !line_done && self.head.len() > MAX_REQUEST_LINE {
                self.refuse(refuse(400, "request line too long"), out);
            } else if self.head.len() > MAX_HEAD {
                self.refuse(refuse(431, "request header fields too large"), out);
            }
            return input.get(take..).unwrap_or_default();
        };
        let rest = input.get(end.saturating_sub(before)..).unwrap_or_default();
        self.head.truncate(end);
        match screen_head(&self.head) {
            Ok(framing) => {
                out.extend_from_slice(&self.head);
                self.heads += 1;
                self.state = match framing {
                    Framing::None => State::Head,
                    Framing::Length(n) => State::Body(n),
                    Framing::Chunked => State::Chunked(Chunked::default()),
                };
            }
            Err(refusal) => self.refuse(refusal, out),
        }
        self.head.clear();
        rest
    }

    fn refuse(&mut self, refusal: Refusal, out: &mut Vec<u8>) {
        self.refusal = Some((self.heads, refusal));
        out.extend_from_slice(STAND_IN);
        self.heads += 1;
        self.head = Vec::new();
        self.state = State::Stopped;
    }
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

/// Parses a complete request head and decides how its body is framed.
fn screen_head(head: &[u8]) -> Result<Framing, Refusal> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(refuse(400, "malformed request head")),
        Err(httparse::Error::TooManyHeaders) => return Err(refuse(431, "too many header fields")),
        Err(error) => return Err(classify(head, error)),
    }
    let http10 = request.version == Some(0);
    let target = request.path.unwrap_or_default();
    if http::Uri::try_from(target).is_err() {
        return Err(refuse(400, "malformed request target"));
    }
    let mut hosts = 0;
    let mut lengths: Vec<&[u8]> = Vec::new();
    let mut codings: Vec<&[u8]> = Vec::new();
    for field in request.headers.iter() {
        if field.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if field.name.eq_ignore_ascii_case("content-length") {
            lengths.extend(field.value.split(|&b| b == b','));
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            codings.extend(field.value.split(|&b| b == b','));
        }
    }
    let chunked_body = !codings.is_empty();
    if chunked_body {
        if http10 {
            return Err(refuse(400, "transfer-encoding in an HTTP/1.0 request"));
        }
        if !lengths.is_empty() {
            return Err(refuse(400, "both content-length and transfer-encoding"));
        }
        let codings: Vec<&[u8]> = codings
            .into_iter()
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty())
            .collect();
        let chunked: Vec<bool> = codings
            .iter()
            .map(|c| c.eq_ignore_ascii_case(b"chunked"))
            .collect();
        if !matches!(chunked.split_last(), Some((true, before)) if !before.contains(&true)) {
            return Err(refuse(400, "unsupported transfer-encoding"));
        }
    }
    let mut length = None;
    for value in lengths {
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
    if !http10 && hosts != 1 {
        // RFC 9112 section 3.2.
        return Err(refuse(
            400,
            "an HTTP/1.1 request needs exactly one host field",
        ));
    }
    match length {
        _ if chunked_body => Ok(Framing::Chunked),
        None | Some(0) => Ok(Framing::None),
        Some(n) if n > MAX_BODY => Err(refuse(413, "request body too large")),
        Some(n) => Ok(Framing::Length(n)),
    }
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

/// Where a chunked body is (RFC 9112 section 7.1), strict about CRLF as hyper is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    SizeSpace,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
}

#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    /// The size being read, then the data left in the chunk.
    size: u64,
    digits: u8,
    /// Extension and trailer bytes so far.
    meta: usize,
    total: u64,
}

impl Chunked {
    /// Follows `input`: how many of its bytes belong to the body, and whether it is complete.
    fn feed(&mut self, input: &[u8]) -> Result<(usize, bool), &'static str> {
        use ChunkState::*;
        let mut used = 0;
        while let Some(&byte) = input.get(used) {
            if self.state == Data {
                let rest = input.len() - used;
                let take = usize::try_from(self.size).map_or(rest, |s| s.min(rest));
                used += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = DataCr;
                }
                continue;
            }
            used += 1;
            self.state = match (self.state, byte) {
                (Size, _) if byte.is_ascii_hexdigit() => {
                    if self.digits >= 16 {
                        return Err("chunk size too large");
                    }
                    let digit = u64::from(char::from(byte).to_digit(16).unwrap_or(0));
                    self.size = self.size << 4 | digit;
                    self.digits += 1;
                    Size
                }
                (Size, b' ' | b'\t') if self.digits > 0 => SizeSpace,
                (SizeSpace, b' ' | b'\t') => SizeSpace,
                (Size | SizeSpace, b';') if self.digits > 0 => Extension,
                (Size | SizeSpace, b'\r') if self.digits > 0 => SizeLf,
                (Extension, b'\r') => SizeLf,
                (Extension, b'\n') => return Err("newline in a chunk extension"),
                (Extension, _) => {
                    self.meta += 1;
                    if self.meta > MAX_CHUNK_META {
                        return Err("chunk extensions too long");
                    }
                    Extension
                }
                (SizeLf, b'\n') => {
                    self.total = self.total.saturating_add(self.size);
                    if self.total > MAX_BODY {
                        return Err("request body too large");
                    }
                    self.digits = 0;
                    if self.size == 0 {
                        self.meta = 0;
                        TrailerStart
                    } else {
                        Data
                    }
                }
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => Size,
                (TrailerStart, b'\r') => EndLf,
                (TrailerStart | Trailer, b'\n') => return Err("bare newline in trailers"),
                (TrailerStart | Trailer, _) => {
                    self.meta += 1;
                    if self.meta > MAX_CHUNK_META {
                        return Err("trailer section too long");
                    }
                    if byte == b'\r' {
                        TrailerLf
                    } else {
                        Trailer
                    }
                }
                (TrailerLf, b'\n') => TrailerStart,
                (EndLf, b'\n') => return Ok((used, true)),
                _ => return Err("malformed chunked body"),
            };
        }
        Ok((used, false))
    }
}

// ---------------------------------------------------------------------------------------------
// The connection, as hyper sees it
// ---------------------------------------------------------------------------------------------

/// What a connection's I/O, its service and its task share.
#[derive(Debug)]
pub struct ConnState {
    start: Instant,
    /// Milliseconds from `start` to the last byte read or written.
    last_activity: AtomicU64,
    /// Requests hyper has handed to the service so far.
    requests: AtomicU64,
    refusal: Mutex<Option<(u64, Refusal)>>,
}

impl Default for ConnState {
    fn default() -> Self {
        ConnState {
            start: Instant::now(),
            last_activity: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            refusal: Mutex::new(None),
        }
    }
}

impl ConnState {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity.store(ms, Ordering::Relaxed);
    }

    /// When the connection last read or wrote a byte (its start if never).
    pub fn last_activity(&self) -> Instant {
        self.start + Duration::from_millis(self.last_activity.load(Ordering::Relaxed))
    }

    /// Called by the service once per request, in order: the refusal to answer instead, if this
    /// request is the stand-in for a refused one.
    pub fn next_request(&self) -> Option<Refusal> {
        let index = self.requests.fetch_add(1, Ordering::Relaxed);
        let refusal = self.refusal.lock().unwrap_or_else(PoisonError::into_inner);
        match *refusal {
            Some((at, refusal)) if at == index => Some(refusal),
            _ => None,
        }
    }
}

/// A client connection behind the [`Screen`]: what hyper reads and writes.
pub struct Screened {
    stream: TcpStream,
    screen: Screen,
    state: Arc<ConnState>,
    /// Screened bytes hyper has not read yet, from `sent` on.
    ready: Vec<u8>,
    sent: usize,
    eof: bool,
    /// The header timeout, then the linger deadline.
    timer: Option<Pin<Box<Sleep>>>,
    /// When the head being read was started (the connection's start for the first request).
    head_since: Option<Instant>,
    /// Closing after a refusal: our side is shut, input is drained until this deadline.
    linger: Option<(Instant, usize)>,
}

impl Screened {
    pub fn new(stream: TcpStream, state: Arc<ConnState>) -> Screened {
        let start = state.start;
        Screened {
            stream,
            screen: Screen::default(),
            state,
            ready: Vec::new(),
            sent: 0,
            eof: false,
            timer: None,
            head_since: Some(start),
            linger: None,
        }
    }

    /// True once `deadline` has passed, polling a timer for it otherwise (so that the task is
    /// woken then).
    fn expired(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready()
    }

    fn screen(&mut self, bytes: &[u8]) {
        self.screen.feed(bytes, &mut self.ready);
        if let Some(refusal) = self.screen.take_refusal() {
            *self
                .state
                .refusal
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(refusal);
        }
        self.head_since = match (self.screen.head_pending(), self.head_since) {
            (false, _) => None,
            (true, Some(since)) => Some(since),
            (true, None) => Some(Instant::now()),
        };
    }
}

impl Read for Screened {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(pending) = this.ready.get(this.sent..).filter(|p| !p.is_empty()) {
                let n = pending.len().min(buf.remaining());
                buf.put_slice(pending.get(..n).unwrap_or_default());
                this.sent += n;
                return Poll::Ready(Ok(()));
            }
            this.ready.clear();
            this.sent = 0;
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.screen.stopped() {
                // hyper closes after answering the stand-in; the connection task times out
                // anything else.
                return Poll::Pending;
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.stream).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => this.eof = true,
                Poll::Ready(Ok(())) => {
                    this.state.touch();
                    let filled = read.filled();
                    this.screen(filled);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if let Some(since) = this.head_since {
                        if this.expired(cx, since + HEADER_TIMEOUT) {
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "request head not received in time",
                            )));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Write for Screened {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.stream).poll_write(cx, buf))?;
        this.state.touch();
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.stream).poll_write_vectored(cx, bufs))?;
        this.state.touch();
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    /// Shuts our side; after a refusal, also reads and drops what the client still sends for a
    /// moment, so that closing with unread input does not reset the connection before the
    /// client has read the refusal.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.linger.is_none() {
            ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
            if !this.screen.stopped() || this.eof {
                return Poll::Ready(Ok(()));
            }
            this.linger = Some((Instant::now() + LINGER_TIME, 0));
        }
        let Some((deadline, mut drained)) = this.linger else {
            return Poll::Ready(Ok(()));
        };
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.stream).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if !read.filled().is_empty() && drained < LINGER_BYTES => {
                    drained += read.filled().len();
                    this.linger = Some((deadline, drained));
                }
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending if this.expired(cx, deadline) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns what was passed on and the refusals.
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
            POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello\
            PUT /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n\
            3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nx-trailer: t\r\n\r\n\
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
    fn framing_attacks_are_refused() {
        for raw in [
            &b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5, 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: \r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
        ] {
            let refusal = refusal_of(raw);
            assert_eq!(
                refusal.map(|r| r.status),
                Some(400),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(
            refusal_of(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5, 5\r\n\r\n"),
            None
        );
        assert_eq!(
            refusal_of(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2000000\r\n\r\n")
                .map(|r| r.status),
            Some(413)
        );
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
        assert!(screen.head.capacity() <= MAX_HEAD + READ_CHUNK);

        let mut many = b"GET / HTTP/1.1\r\nhost: x\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(refusal_of(&many).map(|r| r.status), Some(431));
    }

    #[test]
    fn a_refusal_after_pipelined_requests_is_numbered() {
        let (out, mut screen) = run(
            b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\nBAD\r\n\r\nGET /c HTTP/1.1\r\nhost: x\r\n\r\n",
            7,
        );
        assert!(out.ends_with(STAND_IN));
        assert_eq!(screen.take_refusal().map(|(at, _)| at), Some(2));
        assert!(screen.stopped());
        assert!(!String::from_utf8_lossy(&out).contains("/c"));
    }

    #[test]
    fn broken_chunked_bodies_stop_the_connection() {
        for body in [
            &b"5\r\nhello\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n",
            b"x\r\n",
            b"\r\n",
            b"11111111111111111\r\n",
            b"0\r\n\n",
            b"200000\r\n",
        ] {
            let mut raw =
                b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            raw.extend_from_slice(body);
            raw.extend_from_slice(b"GET /next HTTP/1.1\r\nhost: x\r\n\r\n");
            let (out, screen) = run(&raw, 2);
            let ok = body == b"5\r\nhello\r\n0\r\n\r\n";
            assert_eq!(!screen.stopped(), ok, "{}", String::from_utf8_lossy(body));
            assert_eq!(screen.heads, if ok { 2 } else { 1 });
            assert_eq!(out == raw, ok);
        }
    }
}
