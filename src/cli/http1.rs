//! The std-only HTTP/1.1 server side shared by `policyctl serve` and the `echo-upstream` binary:
//! reading requests (head and body framing) and writing simple responses.
//!
//! * Request line and header lines end in CRLF (or LF) and are at most [`MAX_LINE`] bytes; a
//!   request has at most [`MAX_HEADERS`] header fields (as does a chunked trailer section).
//! * Only `HTTP/1.1` and `HTTP/1.0`; the method and header names must be tokens, the target must
//!   not contain control characters. Header names are lower-cased, values trimmed.
//! * The body (`content-length` or `transfer-encoding: chunked`, trailers included) is read and
//!   discarded, [`MAX_BODY`] bytes at most; `expect: 100-continue` is answered first.
//! * A malformed request is an [`io::ErrorKind::InvalidData`] error (see [`bad_request`]); answer
//!   it with [`refuse`]. Other errors are the connection's (EOF mid-request, resets, timeouts).

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// Longest accepted request line / header line / chunk-size line.
pub const MAX_LINE: u64 = 16 * 1024;
/// Most header lines accepted per request (or trailer section).
pub const MAX_HEADERS: usize = 100;
/// Longest accepted method.
pub const MAX_METHOD: usize = 32;
/// Largest request body read (and discarded) on a kept-alive connection.
pub const MAX_BODY: u64 = 1024 * 1024;
/// How long input is still drained after a 400, before the connection is closed.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

/// One request head; its body has been read and discarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target exactly as received (path and query string).
    pub target: String,
    pub http10: bool,
    /// Header fields in the order received, names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The connection stays open after the response: not `connection: close`, and for
    /// HTTP/1.0 only with `connection: keep-alive`.
    pub keep_alive: bool,
}

impl Request {
    /// The values of header `name` (lower-case), in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// True if any comma-separated token of header `name` equals `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The path, without the query string.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(path, _)| path)
    }

    /// True for `HEAD` (methods are case-sensitive): the response carries no body.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// What the response says about the connection.
    pub fn connection(&self) -> Connection {
        match (self.keep_alive, self.http10) {
            (false, _) => Connection::Close,
            (true, false) => Connection::KeepAlive,
            (true, true) => Connection::KeepAlive10,
        }
    }
}

/// The connection handling a response announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    /// `connection: close`; the caller closes the connection after the response.
    Close,
    /// Persistent HTTP/1.1: nothing to announce.
    KeepAlive,
    /// Persistent HTTP/1.0: confirmed with `connection: keep-alive`.
    KeepAlive10,
}

/// A malformed request: an [`io::ErrorKind::InvalidData`] error carrying `message`.
pub fn bad_request(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Reads the next request and discards its body. `Ok(None)` on a clean EOF between requests.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let Some(request) = read_head(reader)? else {
        return Ok(None);
    };
    let body = body_framing(&request)?;
    if body != Body::Empty && !request.http10 && request.has_token("expect", "100-continue") {
        let mut stream = reader.get_ref();
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        stream.flush()?;
    }
    match body {
        Body::Empty => {}
        Body::Length(len) => discard_exact(reader, len)?,
        Body::Chunked => consume_chunked(reader)?,
    }
    Ok(Some(request))
}

/// The reason phrase sent with `status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes one response: status line, `headers`, `content-length: body.len()` (also for HEAD and
/// 304, where the body is not sent: `send_body` false), the `connection` header if any, then
/// the body.
pub fn write_response(
    writer: &mut impl Write,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    send_body: bool,
    connection: Connection,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n", body.len()));
    match connection {
        Connection::Close => head.push_str("connection: close\r\n"),
        Connection::KeepAlive => {}
        Connection::KeepAlive10 => head.push_str("connection: keep-alive\r\n"),
    }
    head.push_str("\r\n");
    let mut out = BufWriter::new(writer);
    out.write_all(head.as_bytes())?;
    if send_body {
        out.write_all(body)?;
    }
    out.flush()
}

/// Answers a malformed request with 400 and the JSON `body`, and closes the connection: the
/// write side first, then what the client still sends is read and dropped for a moment
/// ([`LINGER_TIMEOUT`]), so that closing with unread input does not reset the connection before
/// the client has read the 400.
pub fn refuse(
    writer: &mut TcpStream,
    reader: &mut BufReader<TcpStream>,
    body: &[u8],
) -> io::Result<()> {
    let headers = [("content-type", "application/json".to_string())];
    write_response(writer, 400, &headers, body, true, Connection::Close)?;
    writer.shutdown(Shutdown::Write)?;
    writer.set_read_timeout(Some(LINGER_TIMEOUT))?;
    let _ = io::copy(&mut reader.by_ref().take(MAX_BODY), &mut io::sink());
    Ok(())
}

/// Reads one CRLF (or LF) terminated line, without the terminator. `Ok(None)` on EOF before any
/// byte was read.
fn read_line(reader: &mut BufReader<TcpStream>) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return if n as u64 >= MAX_LINE {
            Err(bad_request("line too long"))
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed mid-line",
            ))
        };
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| bad_request("line is not UTF-8"))
}

fn read_required_line(reader: &mut BufReader<TcpStream>) -> io::Result<String> {
    read_line(reader)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-request",
        )
    })
}

/// Reads header (or trailer) lines up to and including the empty line.
fn read_fields(reader: &mut BufReader<TcpStream>) -> io::Result<Vec<(String, String)>> {
    let mut fields = Vec::new();
    loop {
        let line = read_required_line(reader)?;
        if line.is_empty() {
            return Ok(fields);
        }
        if fields.len() >= MAX_HEADERS {
            return Err(bad_request("too many header fields"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad_request("header line without ':'"))?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(bad_request("invalid header name"));
        }
        fields.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
}

/// A `token` character (RFC 9110 section 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    // Tolerate stray empty lines between requests (RFC 9112 section 2.2).
    let line = loop {
        match read_line(reader)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_request("malformed request line"));
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(bad_request("unsupported HTTP version")),
    };
    if method.is_empty() || method.len() > MAX_METHOD || !method.bytes().all(is_tchar) {
        return Err(bad_request("malformed method"));
    }
    if target.is_empty() || target.chars().any(char::is_control) {
        return Err(bad_request("malformed request target"));
    }
    let mut request = Request {
        method: method.to_string(),
        target: target.to_string(),
        http10,
        headers: read_fields(reader)?,
        keep_alive: false,
    };
    request.keep_alive = if request.has_token("connection", "close") {
        false
    } else if http10 {
        request.has_token("connection", "keep-alive")
    } else {
        true
    };
    Ok(Some(request))
}

/// How a request's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    Empty,
    Length(u64),
    Chunked,
}

fn body_framing(request: &Request) -> io::Result<Body> {
    if request.values("transfer-encoding").next().is_some() {
        if !request.has_token("transfer-encoding", "chunked") {
            return Err(bad_request("unsupported transfer-encoding"));
        }
        return Ok(Body::Chunked);
    }
    let mut lengths = request.values("content-length").flat_map(|v| v.split(','));
    let Some(first) = lengths.next() else {
        return Ok(Body::Empty);
    };
    let len: u64 = first
        .trim()
        .parse()
        .map_err(|_| bad_request("invalid content-length"))?;
    for other in lengths {
        if other.trim().parse::<u64>().ok() != Some(len) {
            return Err(bad_request("conflicting content-length"));
        }
    }
    if len > MAX_BODY {
        return Err(bad_request("request body too large"));
    }
    Ok(if len == 0 {
        Body::Empty
    } else {
        Body::Length(len)
    })
}

fn consume_chunked(reader: &mut BufReader<TcpStream>) -> io::Result<()> {
    let mut total: u64 = 0;
    loop {
        let line = read_required_line(reader)?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size =
            u64::from_str_radix(size_text, 16).map_err(|_| bad_request("invalid chunk size"))?;
        if size == 0 {
            read_fields(reader)?; // trailers, up to the final empty line
            return Ok(());
        }
        total = total.saturating_add(size);
        if total > MAX_BODY {
            return Err(bad_request("request body too large"));
        }
        discard_exact(reader, size)?;
        if !read_required_line(reader)?.is_empty() {
            return Err(bad_request("missing CRLF after chunk data"));
        }
    }
}

fn discard_exact(reader: &mut BufReader<TcpStream>, len: u64) -> io::Result<()> {
    let copied = io::copy(&mut reader.by_ref().take(len), &mut io::sink())?;
    if copied == len {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-body",
        ))
    }
}
