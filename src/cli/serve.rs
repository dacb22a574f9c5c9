//! `policyctl serve`: a small std-only HTTP/1.1 policy server for the demo, the tests and small
//! deployments.
//!
//! * `GET|HEAD /snapshot`: the policy file's exact bytes with `etag: "<revision>"`; 304 when
//!   `if-none-match` matches.
//! * `GET /keys/<sha256>`: one entry of the optional `--keys` file (a JSON array of api key
//!   objects), 404 `{"error":"not_found"}` if unknown, 400 if the hash is malformed.
//! * `GET /stats`: request and reload counters as JSON.
//!
//! Reload strategy: no background thread. Before answering each request the files are checked
//! with one `stat` (mtime, ctime, size, inode); a file whose change time lies within
//! [`RACY_WINDOW`] of the moment it was last read is re-read and compared by content (SHA-256)
//! instead, so two same-size writes inside one timestamp tick are never missed. A changed file
//! is validated; if valid it is served from then on, otherwise the last good one stays and one
//! line `reload refused: <first problem> (+N more)` goes to stderr. A file that disappears
//! leaves the last good one in place.
//!
//! stdout carries exactly one line `listening on IP:PORT` after binding, then one line per
//! request (`GET /snapshot 200 etag=r1`, `GET /keys/64084db3… 404`, ...), flushed per line; the
//! parent must read or close it. Key hashes are cut to 8 characters and header values are never
//! printed. Connections are thread-per-connection and keep-alive; malformed requests get a 400
//! and the connection is closed. There is no signal handling: SIGTERM/SIGINT end the process.

use super::http1::{self, read_request, refuse, Connection, Request};
use super::{fail, Flags};
use crate::policy;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::io::{self, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Connections served at once; more are answered 503 and closed.
const MAX_CONNECTIONS: usize = 1024;
/// An idle (or stalled) connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A client that does not read its response within this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A file changed less than this long before it was read may change again without its
/// timestamps showing it (coarse timestamp granularity); it is re-read and compared by content
/// until it has been quiet for this long.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);
/// Characters of a key hash printed in the request log.
const HASH_PREFIX: usize = 8;
/// Characters of an unknown path printed in the request log.
const PATH_PREFIX: usize = 32;

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

/// Runs `policyctl serve ARGS`; returns only on a startup error (or if accepting stops).
pub fn run(args: &[String]) -> ExitCode {
    let flags = match Flags::parse(args, &["--policy", "--keys", "--listen"]) {
        Ok(flags) => flags,
        Err(message) => return fail(format_args!("{message} (see `policyctl serve --help`)")),
    };
    let (policy_path, listen) = match (flags.required("--policy"), flags.required("--listen")) {
        (Ok(p), Ok(l)) => (p, l),
        (Err(message), _) | (_, Err(message)) => {
            return fail(format_args!("{message} (see `policyctl serve --help`)"))
        }
    };
    let policy = match Watched::open(Path::new(policy_path), load_policy) {
        Ok(w) => w,
        Err(problems) => return fail_with_problems(policy_path, &problems),
    };
    let keys = match flags.get("--keys") {
        Some(path) => match Watched::open(Path::new(path), load_keys) {
            Ok(w) => Some(Mutex::new(w)),
            Err(problems) => return fail_with_problems(path, &problems),
        },
        None => None,
    };
    let listener = match TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => return fail(format_args!("cannot listen on `{listen}`: {e}")),
    };
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return fail(format_args!("cannot read the bound address: {e}")),
    };
    if !log_line(&format!("listening on {local}")) {
        return fail("cannot write to stdout");
    }
    let server = Arc::new(Server {
        policy: Mutex::new(policy),
        keys,
        counters: Counters::default(),
        connections: AtomicUsize::new(0),
    });
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => accept(&server, stream),
            Err(e) => {
                eprintln!("policyctl serve: accept: {e}");
                // Out of file descriptors and the like: do not spin.
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    ExitCode::SUCCESS
}

fn fail_with_problems(path: &str, problems: &[String]) -> ExitCode {
    for problem in problems {
        eprintln!("{path}: {}", one_line(problem));
    }
    ExitCode::from(2)
}

/// Writes one line on stdout and flushes it; false if stdout is gone.
fn log_line(line: &str) -> bool {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

/// `text` with every control character (newlines included) turned into a space.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Watched files
// ---------------------------------------------------------------------------------------------

/// What `stat` says about a file; any difference means it may have changed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    modified: Option<SystemTime>,
    /// The inode change time (unix): set by the kernel on every write, rename or `touch`.
    changed: Option<SystemTime>,
    len: u64,
    inode: u64,
    device: u64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let (changed, inode, device) = {
            use std::os::unix::fs::MetadataExt;
            let changed = u64::try_from(meta.ctime())
                .ok()
                .zip(u32::try_from(meta.ctime_nsec()).ok())
                .and_then(|(s, n)| UNIX_EPOCH.checked_add(Duration::new(s, n)));
            (changed, meta.ino(), meta.dev())
        };
        #[cfg(not(unix))]
        let (changed, inode, device) = (None, 0, 0);
        Stamp {
            modified: meta.modified().ok(),
            changed,
            len: meta.len(),
            inode,
            device,
        }
    }

    /// True if the file changed so shortly before `read_at` (or claims a future time) that a
    /// further change might not move its timestamps.
    fn is_racy(&self, read_at: SystemTime) -> bool {
        let latest = match (self.modified, self.changed) {
            (Some(m), Some(c)) => m.max(c),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => return true,
        };
        read_at
            .duration_since(latest)
            .map_or(true, |age| age < RACY_WINDOW)
    }
}

/// The outcome of checking a watched file.
enum Check {
    Unchanged,
    Reloaded,
    Refused(Vec<String>),
    Unavailable(String),
}

/// A file, the last good value loaded from it, and what is needed to notice a change.
struct Watched<T> {
    path: PathBuf,
    load: fn(&[u8]) -> Result<T, Vec<String>>,
    /// `stat` of the file when it was last read.
    stamp: Option<Stamp>,
    /// The stamp cannot be trusted yet (see [`Stamp::is_racy`]): re-read on the next check.
    racy: bool,
    /// SHA-256 of the content last read, whether it was accepted or refused.
    digest: [u8; 32],
    /// The last check could not read the file (reported once, until it is readable again).
    unavailable: bool,
    current: T,
}

impl<T> Watched<T> {
    fn open(path: &Path, load: fn(&[u8]) -> Result<T, Vec<String>>) -> Result<Self, Vec<String>> {
        let meta = fs::metadata(path).map_err(|e| vec![format!("cannot read: {e}")])?;
        let stamp = Stamp::of(&meta);
        let bytes = fs::read(path).map_err(|e| vec![format!("cannot read: {e}")])?;
        let current = load(&bytes)?;
        Ok(Watched {
            path: path.to_path_buf(),
            load,
            stamp: Some(stamp),
            racy: stamp.is_racy(SystemTime::now()),
            digest: Sha256::digest(&bytes).into(),
            unavailable: false,
            current,
        })
    }

    /// Re-reads the file if it may have changed and loads it if its content did.
    fn check(&mut self) -> Check {
        let stamp = match fs::metadata(&self.path) {
            Ok(meta) => Stamp::of(&meta),
            Err(e) => return self.unavailable(&e),
        };
        if !self.unavailable && !self.racy && self.stamp == Some(stamp) {
            return Check::Unchanged;
        }
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) => return self.unavailable(&e),
        };
        self.unavailable = false;
        self.stamp = Some(stamp);
        self.racy = stamp.is_racy(SystemTime::now());
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if digest == self.digest {
            return Check::Unchanged;
        }
        self.digest = digest;
        match (self.load)(&bytes) {
            Ok(value) => {
                self.current = value;
                Check::Reloaded
            }
            Err(problems) => Check::Refused(problems),
        }
    }

    fn unavailable(&mut self, error: &io::Error) -> Check {
        if self.unavailable {
            return Check::Unchanged;
        }
        self.unavailable = true;
        Check::Unavailable(error.to_string())
    }
}

/// The policy as served: the file's bytes and its revision.
struct Served {
    body: Arc<[u8]>,
    revision: String,
    content_type: &'static str,
    /// The entity tag without quotes (the revision, escaped to the ETag character set).
    etag: String,
}

fn load_policy(bytes: &[u8]) -> Result<Arc<Served>, Vec<String>> {
    // JSON or a compiled snapshot (`policyctl compile`): both are validated.
    let snapshot = policy::load_snapshot_bytes(bytes).map_err(|e| e.problems())?;
    let revision = snapshot.revision().to_string();
    let content_type = if policy::binary::is_binary(bytes) {
        "application/octet-stream"
    } else {
        "application/json"
    };
    Ok(Arc::new(Served {
        content_type,
        body: Arc::from(bytes),
        etag: etag_for(&revision),
        revision,
    }))
}

/// The revision as an entity tag: visible ASCII except `"`, `,`, `\` and `%` is kept, every
/// other byte is percent-encoded (so no revision can break the header or a list).
fn etag_for(revision: &str) -> String {
    let mut out = String::with_capacity(revision.len());
    for byte in revision.bytes() {
        match byte {
            b'"' | b',' | b'\\' | b'%' => out.push_str(&format!("%{byte:02X}")),
            0x21..=0x7e => out.push(char::from(byte)),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Api keys by `sha256`, each rendered as its JSON object.
type KeySet = HashMap<String, String>;

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks the shape the server relies on (an array of objects with a well-formed, unique
/// `sha256`); the filter validates the rest.
fn load_keys(bytes: &[u8]) -> Result<KeySet, Vec<String>> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| vec![format!("keys file is not JSON: {e}")])?;
    let Value::Array(items) = value else {
        return Err(vec![
            "keys file must be a JSON array of api key objects".into()
        ]);
    };
    let mut keys = KeySet::with_capacity(items.len());
    let mut problems = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Some(object) = item.as_object() else {
            problems.push(format!("keys[{index}]: must be an object"));
            continue;
        };
        let name = match object.get("id").and_then(Value::as_str) {
            Some(id) => format!("keys[{index}] (id `{id}`)"),
            None => format!("keys[{index}]"),
        };
        match object.get("sha256").and_then(Value::as_str) {
            Some(hash) if is_sha256_hex(hash) => {
                if keys.insert(hash.to_string(), item.to_string()).is_some() {
                    problems.push(format!(
                        "{name}: duplicate sha256 {}…",
                        hash.get(..HASH_PREFIX).unwrap_or_default()
                    ));
                }
            }
            // The value is not echoed: a malformed "hash" may well be a raw key.
            Some(_) => problems.push(format!("{name}: `sha256` must be 64 lower-case hex digits")),
            None => problems.push(format!("{name}: `sha256` (a string) is required")),
        }
    }
    if problems.is_empty() {
        Ok(keys)
    } else {
        Err(problems)
    }
}

// ---------------------------------------------------------------------------------------------
// Server state
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Counters {
    snapshot_requests: AtomicU64,
    snapshot_200: AtomicU64,
    snapshot_304: AtomicU64,
    key_requests: AtomicU64,
    key_hits: AtomicU64,
    key_misses: AtomicU64,
    reloads: AtomicU64,
    reloads_refused: AtomicU64,
    keys_reloads: AtomicU64,
    keys_reloads_refused: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

struct Server {
    policy: Mutex<Watched<Arc<Served>>>,
    keys: Option<Mutex<Watched<KeySet>>>,
    counters: Counters,
    connections: AtomicUsize,
}

/// Locks `mutex`; a poisoned lock (a panicking holder, which the lints rule out) is still usable
/// because every update leaves the state consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Server {
    /// Checks the policy file and returns what to serve.
    fn policy(&self) -> Arc<Served> {
        let mut watched = lock(&self.policy);
        let before = Arc::clone(&watched.current);
        match watched.check() {
            Check::Unchanged => {}
            Check::Reloaded => {
                bump(&self.counters.reloads);
                eprintln!(
                    "reloaded: revision {} (was {})",
                    one_line(&watched.current.revision),
                    one_line(&before.revision)
                );
            }
            Check::Refused(problems) => {
                bump(&self.counters.reloads_refused);
                report_refused(&problems);
            }
            Check::Unavailable(error) => eprintln!(
                "reload skipped: cannot read `{}`: {error} (keeping revision {})",
                watched.path.display(),
                one_line(&before.revision)
            ),
        }
        Arc::clone(&watched.current)
    }

    /// Checks the keys file and looks `hash` up: `None` without `--keys` or if unknown.
    fn key(&self, hash: &str) -> Option<String> {
        let mut watched = lock(self.keys.as_ref()?);
        self.check_keys(&mut watched);
        watched.current.get(hash).cloned()
    }

    /// Number of keys held (`None` without `--keys`), after checking the file.
    fn key_count(&self) -> Option<usize> {
        let mut watched = lock(self.keys.as_ref()?);
        self.check_keys(&mut watched);
        Some(watched.current.len())
    }

    fn check_keys(&self, watched: &mut Watched<KeySet>) {
        match watched.check() {
            Check::Unchanged => {}
            Check::Reloaded => {
                bump(&self.counters.keys_reloads);
                eprintln!("reloaded: {} api keys", watched.current.len());
            }
            Check::Refused(problems) => {
                bump(&self.counters.keys_reloads_refused);
                report_refused(&problems);
            }
            Check::Unavailable(error) => eprintln!(
                "reload skipped: cannot read `{}`: {error} (keeping {} api keys)",
                watched.path.display(),
                watched.current.len()
            ),
        }
    }
}

fn report_refused(problems: &[String]) {
    let first = problems.first().map_or("invalid", String::as_str);
    eprintln!(
        "reload refused: {} (+{} more)",
        one_line(first),
        problems.len().saturating_sub(1)
    );
}

/// Decrements the connection count when a connection's thread ends.
struct ConnectionSlot(Arc<Server>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

fn accept(server: &Arc<Server>, stream: TcpStream) {
    if server.connections.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
        server.connections.fetch_sub(1, Ordering::Relaxed);
        // A fresh socket's send buffer is empty: this small write cannot block.
        let _ = stream.set_nonblocking(true);
        let mut stream = stream;
        let response = Response::error(503, "unavailable");
        let _ = write_response(&mut stream, &response, Connection::Close, false);
        log_line("- - 503 too many connections");
        return;
    }
    let slot = ConnectionSlot(Arc::clone(server));
    let spawned = thread::Builder::new()
        .name("serve-conn".into())
        .spawn(move || {
            if let Err(e) = serve_connection(&slot.0, stream) {
                // Resets, timeouts and early closes of pooled connections are routine.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                ) {
                    eprintln!("policyctl serve: connection error: {e}");
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("policyctl serve: cannot spawn a connection thread: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// A response, and how it is logged.
struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Arc<[u8]>,
    /// Sent as `content-length` but not sent (304).
    omit_body: bool,
    /// Appended to the log line (`etag=r1`).
    note: String,
}

impl Response {
    fn json(status: u16, body: String) -> Response {
        Response {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: Arc::from(body.into_bytes()),
            omit_body: false,
            note: String::new(),
        }
    }

    fn error(status: u16, error: &str) -> Response {
        Response::json(status, json!({ "error": error }).to_string())
    }
}

fn serve_connection(server: &Server, stream: TcpStream) -> io::Result<()> {
    // Responses are small; avoid Nagle delays between our write and the next request.
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()), // clean EOF between requests
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                log_line(&format!("- - 400 {e}"));
                let body = json!({ "error": "bad_request", "message": e.to_string() });
                return refuse(&mut writer, &mut reader, body.to_string().as_bytes());
            }
            Err(e) => return Err(e),
        };
        let (response, logged_target) = route(server, &request);
        let written = write_response(
            &mut writer,
            &response,
            request.connection(),
            request.is_head(),
        );
        let mut line = format!("{} {logged_target} {}", request.method, response.status);
        if !response.note.is_empty() {
            line.push(' ');
            line.push_str(&response.note);
        }
        log_line(&line);
        written?;
        if !request.keep_alive {
            return Ok(());
        }
    }
}

/// The response to a well-formed request, and the target as printed in the log.
fn route(server: &Server, request: &Request) -> (Response, String) {
    let path = request.path();
    let readable = matches!(request.method.as_str(), "GET" | "HEAD");
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
        let response = if readable {
            key(server, hash)
        } else {
            Response::error(404, "not_found")
        };
        return (response, logged);
    }
    let logged = if path.chars().count() > PATH_PREFIX {
        format!("{}…", printable_prefix(path, PATH_PREFIX))
    } else {
        printable_prefix(path, PATH_PREFIX)
    };
    (Response::error(404, "not_found"), logged)
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

/// True if `if-none-match` lists `etag` (quoted or not, weak or strong) or is `*`.
fn etag_matches(request: &Request, etag: &str) -> bool {
    request
        .values("if-none-match")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            let tag = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(tag);
            tag == "*" || tag == etag
        })
}

fn snapshot(server: &Server, request: &Request) -> Response {
    let served = server.policy();
    bump(&server.counters.snapshot_requests);
    let quoted = format!("\"{}\"", served.etag);
    let not_modified = etag_matches(request, &served.etag);
    bump(if not_modified {
        &server.counters.snapshot_304
    } else {
        &server.counters.snapshot_200
    });
    Response {
        status: if not_modified { 304 } else { 200 },
        headers: vec![
            ("content-type", served.content_type.into()),
            ("etag", quoted),
            ("cache-control", "no-cache".into()),
        ],
        body: Arc::clone(&served.body),
        omit_body: not_modified,
        note: format!("etag={}", served.etag),
    }
}

fn key(server: &Server, hash: &str) -> Response {
    bump(&server.counters.key_requests);
    if !is_sha256_hex(hash) {
        return Response::json(
            400,
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
            Response::json(200, object)
        }
        None => {
            bump(&server.counters.key_misses);
            Response::error(404, "not_found")
        }
    }
}

fn stats(server: &Server) -> Response {
    let served = server.policy();
    let keys = server.key_count();
    let c = &server.counters;
    let body = json!({
        "snapshot_requests": read(&c.snapshot_requests),
        "snapshot_200": read(&c.snapshot_200),
        "snapshot_304": read(&c.snapshot_304),
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
    Response::json(200, body.to_string())
}

/// Sends `response`; HEAD and 304 get its headers (`content-length` included) but no body.
fn write_response(
    writer: &mut TcpStream,
    response: &Response,
    connection: Connection,
    head_only: bool,
) -> io::Result<()> {
    let send_body = !head_only && !response.omit_body;
    http1::write_response(
        writer,
        response.status,
        &response.headers,
        &response.body,
        send_body,
        connection,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(if_none_match: &[&str]) -> Request {
        Request {
            method: "GET".into(),
            target: "/snapshot".into(),
            http10: false,
            keep_alive: true,
            headers: if_none_match
                .iter()
                .map(|v| ("if-none-match".to_string(), (*v).to_string()))
                .collect(),
        }
    }

    #[test]
    fn if_none_match_forms() {
        assert!(etag_matches(&request_with(&["\"r1\""]), "r1"));
        assert!(etag_matches(&request_with(&["r1"]), "r1"));
        assert!(etag_matches(&request_with(&["W/\"r1\""]), "r1"));
        assert!(etag_matches(&request_with(&["*"]), "r1"));
        assert!(etag_matches(&request_with(&["\"a\", \"r1\""]), "r1"));
        assert!(etag_matches(&request_with(&["\"a\"", "\"r1\""]), "r1"));
        assert!(!etag_matches(&request_with(&["\"r2\""]), "r1"));
        assert!(!etag_matches(&request_with(&["\"r1"]), "r1"));
        assert!(!etag_matches(&request_with(&[]), "r1"));
    }

    #[test]
    fn etags_stay_in_the_etag_alphabet() {
        assert_eq!(etag_for("r1"), "r1");
        assert_eq!(etag_for("2024-05-01T10:00:00Z#3"), "2024-05-01T10:00:00Z#3");
        assert_eq!(etag_for("a \"b\",c\r\n"), "a%20%22b%22%2Cc%0D%0A");
        assert_eq!(etag_for("é"), "%C3%A9");
    }

    #[test]
    fn log_prefixes_never_show_a_whole_hash() {
        let hash = "64084db3581b61a39984249dbe669dfb1233118846168bab3408cbe203ffa8de";
        assert_eq!(printable_prefix(hash, HASH_PREFIX), "64084db3");
        assert_eq!(printable_prefix("a\u{7f}b c", HASH_PREFIX), "a?b?c");
        assert_eq!(printable_prefix("/x y", PATH_PREFIX), "/x?y");
    }

    #[test]
    fn keys_file_shape() {
        let hash = "64084db3581b61a39984249dbe669dfb1233118846168bab3408cbe203ffa8de";
        let ok = format!(r#"[{{"id":"a","app":"x","sha256":"{hash}","status":"active"}}]"#);
        let keys = load_keys(ok.as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys.get(hash).unwrap().contains("\"id\":\"a\""));
        assert!(load_keys(b"{}").is_err());
        assert!(load_keys(b"[1]").is_err());
        assert!(load_keys(br#"[{"sha256":"ABC"}]"#).is_err());
        let dup = format!(r#"[{{"sha256":"{hash}"}},{{"sha256":"{hash}"}}]"#);
        assert!(load_keys(dup.as_bytes()).is_err());
        assert!(load_keys(b"[]").unwrap().is_empty());
    }

    #[test]
    fn racy_stamps() {
        let now = SystemTime::now();
        let stamp = |t: SystemTime| Stamp {
            modified: Some(t),
            changed: Some(t),
            len: 1,
            inode: 1,
            device: 1,
        };
        assert!(stamp(now).is_racy(now));
        assert!(stamp(now + Duration::from_secs(60)).is_racy(now));
        assert!(!stamp(now - Duration::from_secs(60)).is_racy(now));
    }
}
