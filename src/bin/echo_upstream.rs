//! `echo-upstream`: a tiny std-only HTTP/1.1 origin used as Envoy's upstream in tests, demos
//! and benchmarks.
//!
//! Usage: `echo-upstream [--listen 127.0.0.1:0]`
//!
//! After binding, exactly one line `listening on 127.0.0.1:PORT` is printed on stdout (and
//! flushed) so a parent process can learn the ephemeral port. Nothing else is ever written to
//! stdout; diagnostics go to stderr. The process has no signal handling of its own: SIGTERM
//! (default disposition) ends it.
//!
//! Every request is answered with `200 OK`, `content-type: application/json`, an explicit
//! `content-length`, and the body
//!
//! ```json
//! {"method": "GET", "path": "/a?b=c", "headers": {"host": "...", "x-foo": "1, 2"}}
//! ```
//!
//! * `path` is the request target exactly as received (including the query string).
//! * header names are lower-cased; a header that occurs several times is reported once, its
//!   values joined with `", "` in the order received (so `headers` is always an object of
//!   strings). Keys are sorted.
//! * HEAD gets the same headers and no body.
//!
//! Connections are thread-per-connection and keep-alive (Envoy pools upstream connections):
//! request bodies are consumed according to `content-length` or `transfer-encoding: chunked`
//! (trailers are read and discarded), `expect: 100-continue` is honoured, and the connection is
//! only closed when the client asks for it (`connection: close`, or HTTP/1.0 without
//! `connection: keep-alive`), on EOF, or on a malformed request (answered with 400 first).

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;

/// Longest accepted request line / header line / chunk-size line.
const MAX_LINE: u64 = 16 * 1024;
/// Most header lines accepted per request (or trailer section).
const MAX_HEADERS: usize = 200;

fn main() -> ExitCode {
    let listen = match parse_args(std::env::args().skip(1)) {
        Ok(addr) => addr,
        Err(msg) => {
            eprintln!("echo-upstream: {msg}");
            eprintln!("usage: echo-upstream [--listen 127.0.0.1:0]");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo-upstream: cannot bind {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo-upstream: local_addr: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        let mut out = io::stdout().lock();
        if writeln!(out, "listening on {local}")
            .and_then(|()| out.flush())
            .is_err()
        {
            eprintln!("echo-upstream: cannot write to stdout");
            return ExitCode::FAILURE;
        }
    }
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let spawned = thread::Builder::new()
                    .name("echo-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve_connection(stream) {
                            // Resets from peers closing pooled connections are routine.
                            if !matches!(
                                e.kind(),
                                io::ErrorKind::ConnectionReset
                                    | io::ErrorKind::BrokenPipe
                                    | io::ErrorKind::UnexpectedEof
                            ) {
                                eprintln!("echo-upstream: connection error: {e}");
                            }
                        }
                    });
                if let Err(e) = spawned {
                    eprintln!("echo-upstream: cannot spawn thread: {e}");
                }
            }
            Err(e) => eprintln!("echo-upstream: accept: {e}"),
        }
    }
    ExitCode::SUCCESS
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<String, String> {
    let mut listen = String::from("127.0.0.1:0");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                listen = args
                    .next()
                    .ok_or_else(|| "--listen needs an address".to_string())?;
            }
            other => {
                if let Some(v) = other.strip_prefix("--listen=") {
                    listen = v.to_string();
                } else {
                    return Err(format!("unknown argument {other:?}"));
                }
            }
        }
    }
    Ok(listen)
}

/// One parsed request head.
struct Request {
    method: String,
    target: String,
    http10: bool,
    headers: Vec<(String, String)>,
}

impl Request {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// True if any comma-separated token of header `name` equals `token` (case-insensitive).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            false
        } else if self.http10 {
            self.has_token("connection", "keep-alive")
        } else {
            true
        }
    }
}

fn bad_request(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn serve_connection(stream: TcpStream) -> io::Result<()> {
    // Responses are small; avoid Nagle delays between our write and the next request.
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let req = match read_head(&mut reader) {
            Ok(Some(req)) => req,
            Ok(None) => return Ok(()), // clean EOF between requests
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let body = format!("{{\"error\": {}}}", json_string(&e.to_string()));
                write_response(&mut writer, "400 Bad Request", &body, true, false)?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if req.has_token("expect", "100-continue") && !req.http10 {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            writer.flush()?;
        }
        if let Err(e) = consume_body(&mut reader, &req) {
            if e.kind() == io::ErrorKind::InvalidData {
                let body = format!("{{\"error\": {}}}", json_string(&e.to_string()));
                write_response(&mut writer, "400 Bad Request", &body, true, false)?;
                return Ok(());
            }
            return Err(e);
        }
        let keep_alive = req.keep_alive();
        let body = echo_body(&req);
        let head_only = req.method.eq_ignore_ascii_case("HEAD");
        write_response(&mut writer, "200 OK", &body, !keep_alive, head_only)?;
        if !keep_alive {
            return Ok(());
        }
    }
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
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(bad_request("invalid header name"));
        }
        fields.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
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
    if method.is_empty() || target.is_empty() {
        return Err(bad_request("malformed request line"));
    }
    let headers = read_fields(reader)?;
    Ok(Some(Request {
        method: method.to_string(),
        target: target.to_string(),
        http10,
        headers,
    }))
}

/// Reads and discards the request body.
fn consume_body(reader: &mut BufReader<TcpStream>, req: &Request) -> io::Result<()> {
    let te: Vec<&str> = req.values("transfer-encoding").collect();
    if !te.is_empty() {
        if !req.has_token("transfer-encoding", "chunked") {
            return Err(bad_request("unsupported transfer-encoding"));
        }
        return consume_chunked(reader);
    }
    let mut lengths = req.values("content-length").flat_map(|v| v.split(','));
    let Some(first) = lengths.next() else {
        return Ok(()); // no body
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
    discard_exact(reader, len)
}

fn consume_chunked(reader: &mut BufReader<TcpStream>) -> io::Result<()> {
    loop {
        let line = read_required_line(reader)?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size =
            u64::from_str_radix(size_text, 16).map_err(|_| bad_request("invalid chunk size"))?;
        if size == 0 {
            read_fields(reader)?; // trailers, up to the final empty line
            return Ok(());
        }
        discard_exact(reader, size)?;
        let end = read_required_line(reader)?;
        if !end.is_empty() {
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

fn echo_body(req: &Request) -> String {
    let mut joined: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in &req.headers {
        joined
            .entry(name.as_str())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    let headers: serde_json::Map<String, serde_json::Value> = joined
        .into_iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
        .collect();
    let doc = serde_json::json!({
        "method": req.method,
        "path": req.target,
        "headers": headers,
    });
    doc.to_string()
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn write_response(
    w: &mut TcpStream,
    status: &str,
    body: &str,
    close: bool,
    head_only: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    if close {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(body);
    }
    w.write_all(out.as_bytes())?;
    w.flush()
}
