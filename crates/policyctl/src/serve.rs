//! `policyctl serve`: a small HTTP/1.1 policy server (hyper on a single-threaded tokio runtime)
//! for the demo, the tests and small deployments.
//!
//! * `GET|HEAD /snapshot`: the policy file's exact bytes with a strong
//!   `etag: "sha256:<first 32 hex digits of the SHA-256 of those bytes>"`, computed once per
//!   (re)load, so any change of the bytes changes it, whatever the revision says; 304 when
//!   `if-none-match` lists it (weak comparison, RFC 9110 section 13.1.2: `W/` is ignored; a
//!   list, several fields or `*`; a field that is not a valid list of entity tags is ignored).
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
//! leaves the last good one in place. The check and the answer run on tokio's blocking pool
//! (at most [`BLOCKING_THREADS`] threads), never on the thread that serves the connections.
//!
//! Connections: one thread runs every connection (hyper, keep-alive, pipelining), so thousands
//! of idle connections cost memory, not threads; at start the soft `RLIMIT_NOFILE` is raised to
//! the hard limit. Each request head goes through the screen in [`super::http1`] before hyper
//! sees it: heads larger than 32 KiB or not complete within
//! [`HEADER_TIMEOUT`](super::http1::HEADER_TIMEOUT) (a slow-loris client), ambiguous framing
//! (`content-length` with `transfer-encoding`: RFC 9112 section 6.3) and malformed requests are
//! refused with a JSON error and `connection: close` (or, for the timeout, just closed). Request
//! bodies are not read: one that has fully arrived is skipped, otherwise the connection is
//! closed after the response. A connection that neither reads nor writes for [`IDLE_TIMEOUT`]
//! is closed.
//!
//! stdout carries exactly one line `listening on IP:PORT` after binding, then one line per
//! request (`GET /snapshot 200 etag=sha256:…`, `GET /keys/64084db3… 404`, `- - 400 <reason>`,
//! ...), flushed per line; the parent must read or close it. Key hashes are cut to 8 characters
//! and header values are never printed. SIGTERM or SIGINT: stop accepting, close idle
//! connections, let responses in flight finish (at most [`SHUTDOWN_GRACE`]), print one line
//! `shut down on SIGTERM: stopped accepting and closed N connections (M cut off)` and exit 0.

use super::http1::{ConnState, Refusal, Screened};
use super::{fail, Flags};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::convert::Infallible;
use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tenantgate_policy as policy;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// A connection that neither reads nor writes a byte for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long responses in flight may take to finish after SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Threads that check files and build answers (the connections have one thread of their own).
pub const BLOCKING_THREADS: usize = 8;
/// A failed `accept` (out of file descriptors, say) is retried after this long.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// hyper's read buffer limit; the screen passes on heads of at most 32 KiB.
const HYPER_BUFFER: usize = 64 * 1024;
/// A file changed less than this long before it was read may change again without its
/// timestamps showing it (coarse timestamp granularity); it is re-read and compared by content
/// until it has been quiet for this long.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);
/// Characters of a key hash printed in the request log.
const HASH_PREFIX: usize = 8;
/// Characters of an unknown path printed in the request log.
const PATH_PREFIX: usize = 32;
/// Hex digits of the SHA-256 of the snapshot in its ETag (128 bits).
const ETAG_HEX: usize = 32;

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

/// Runs `policyctl serve ARGS`: 2 on a startup error, 0 after a signal.
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
    raise_open_file_limit();
    let listener = match std::net::TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => return fail(format_args!("cannot listen on `{listen}`: {e}")),
    };
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return fail(format_args!("cannot read the bound address: {e}")),
    };
    if let Err(e) = listener.set_nonblocking(true) {
        return fail(format_args!("cannot listen on `{listen}`: {e}"));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("serve-blocking")
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format_args!("cannot start the runtime: {e}")),
    };
    let server = Arc::new(Server {
        policy: Mutex::new(policy),
        keys,
        counters: Counters::default(),
    });
    let code = runtime.block_on(serve(server, listener, local));
    // Answers still being built after the grace period are abandoned.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
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

/// Raises the soft limit on open files to the hard one (each connection holds one), as far as
/// the kernel allows; failures leave the limit as it was.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct passed by reference.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let wanted = if limit.rlim_max == libc::RLIM_INFINITY {
            1 << 20
        } else {
            limit.rlim_max
        };
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
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

/// The policy as served: the file's bytes, its revision and its entity tag.
struct Served {
    body: Bytes,
    revision: String,
    content_type: &'static str,
    /// The entity tag without quotes: `sha256:` and the first [`ETAG_HEX`] hex digits of the
    /// SHA-256 of `body`.
    etag: String,
}

fn load_policy(bytes: &[u8]) -> Result<Arc<Served>, Vec<String>> {
    // JSON or a compiled snapshot (`policyctl compile`): both are validated.
    let snapshot = policy::load_snapshot_bytes(bytes).map_err(|e| e.problems())?;
    let content_type = if policy::binary::is_binary(bytes) {
        "application/octet-stream"
    } else {
        "application/json"
    };
    Ok(Arc::new(Served {
        content_type,
        body: Bytes::copy_from_slice(bytes),
        etag: etag_of(bytes),
        revision: snapshot.revision().to_string(),
    }))
}

/// The entity tag of `bytes` (without quotes).
fn etag_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut etag = String::from("sha256:");
    for byte in digest.iter().take(ETAG_HEX / 2) {
        etag.push_str(&format!("{byte:02x}"));
    }
    etag
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

// ---------------------------------------------------------------------------------------------
// Accepting, connections, shutdown
// ---------------------------------------------------------------------------------------------

/// Accepts connections until SIGTERM or SIGINT, then shuts down gracefully.
async fn serve(
    server: Arc<Server>,
    listener: std::net::TcpListener,
    local: SocketAddr,
) -> ExitCode {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return fail(format_args!("cannot listen on {local}: {e}")),
    };
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => return fail(format_args!("cannot handle signals: {e}")),
    };
    if !log_line(&format!("listening on {local}")) {
        return fail("cannot write to stdout");
    }
    // Every connection task holds a receiver: a value sent asks them to finish, and the channel
    // closes when the last one has.
    let (shutdown, connections) = watch::channel(());
    let signal_name = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(Arc::clone(&server), stream, connections.clone()));
                }
                Err(e) => {
                    eprintln!("policyctl serve: accept: {e}");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
        }
    };
    drop(listener);
    drop(connections);
    let open = shutdown.receiver_count();
    shutdown.send_replace(());
    let finished = tokio::time::timeout(SHUTDOWN_GRACE, shutdown.closed())
        .await
        .is_ok();
    let cut = if finished {
        0
    } else {
        shutdown.receiver_count()
    };
    log_line(&format!(
        "shut down on {signal_name}: stopped accepting and closed {open} connections \
         ({cut} cut off)"
    ));
    ExitCode::SUCCESS
}

/// Serves one connection until it closes, times out or the server shuts down.
async fn connection(server: Arc<Server>, stream: TcpStream, mut shutdown: watch::Receiver<()>) {
    // Responses are small; avoid Nagle delays between our write and the next request.
    let _ = stream.set_nodelay(true);
    let state = Arc::new(ConnState::default());
    let io = Screened::new(stream, Arc::clone(&state));
    let service = {
        let state = Arc::clone(&state);
        service_fn(move |request| respond(Arc::clone(&server), Arc::clone(&state), request))
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(HYPER_BUFFER)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let idle_until = state.last_activity() + IDLE_TIMEOUT;
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    // Resets, timeouts and early closes are routine; a parse error means hyper
                    // refused something the screen let through.
                    if e.is_parse() || e.is_user() {
                        eprintln!("policyctl serve: connection error: {e}");
                    }
                }
                return;
            }
            () = tokio::time::sleep_until(idle_until) => {
                if state.last_activity() + IDLE_TIMEOUT <= tokio::time::Instant::now() {
                    return;
                }
            }
            _ = shutdown.changed(), if !closing => {
                // Idle: closed now; a response in flight: closed once it is written.
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

type Reply = hyper::Response<Full<Bytes>>;

/// Answers one request on the blocking pool (file checks, the request log).
async fn respond(
    server: Arc<Server>,
    state: Arc<ConnState>,
    request: hyper::Request<Incoming>,
) -> Result<Reply, Infallible> {
    let refusal = state.next_request();
    // The body is not read: hyper skips it if it has arrived, else closes after the response.
    let (request, _) = request.into_parts();
    let answer = tokio::task::spawn_blocking(move || match refusal {
        Some(refusal) => refused(refusal),
        None => answer(&server, &request),
    })
    .await;
    Ok(answer.unwrap_or_else(|_| {
        Answer::error(StatusCode::INTERNAL_SERVER_ERROR, "internal").into_reply(true)
    }))
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// A response, and how it is logged.
struct Answer {
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

    fn error(status: StatusCode, error: &str) -> Answer {
        Answer::json(status, json!({ "error": error }).to_string())
    }

    fn into_reply(self, close: bool) -> Reply {
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
fn refused(refusal: Refusal) -> Reply {
    log_line(&format!("- - {} {}", refusal.status, refusal.reason));
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
    let error = match refusal.status {
        413 => "content_too_large",
        431 => "header_fields_too_large",
        _ => "bad_request",
    };
    let body = json!({ "error": error, "message": refusal.reason });
    Answer::json(status, body.to_string()).into_reply(true)
}

/// Answers a well-formed request and logs it.
fn answer(server: &Server, request: &http::request::Parts) -> Reply {
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

/// The `if-none-match` fields of a GET or HEAD, evaluated against the current `etag` (RFC 9110
/// section 13.1.2): true if one is `*` or lists an entity tag whose opaque tag equals `etag`
/// (weak comparison). Fields that are not `*` or a list of entity tags make the whole
/// condition void (false): a full answer is always safe.
fn none_match<'a>(fields: impl Iterator<Item = &'a HeaderValue>, etag: &str) -> bool {
    let mut star = false;
    let mut tags = Vec::new();
    for field in fields {
        let value = field.as_bytes().trim_ascii();
        if value == b"*" {
            star = true;
        } else if !entity_tags(value, &mut tags) {
            return false;
        }
    }
    if star {
        // `*` stands alone.
        return tags.is_empty();
    }
    tags.contains(&etag.as_bytes())
}

/// Appends the opaque tags (between the quotes) of the list `value` to `tags`; false if
/// `value` is not a list of entity tags. Empty list elements are allowed (RFC 9110 5.6.1.2).
fn entity_tags<'a>(value: &'a [u8], tags: &mut Vec<&'a [u8]>) -> bool {
    let mut rest = value;
    loop {
        rest = rest.trim_ascii_start();
        match rest.split_first() {
            None => return true,
            Some((b',', after)) => {
                rest = after;
                continue;
            }
            Some(_) => {}
        }
        let unweak = rest.strip_prefix(b"W/").unwrap_or(rest);
        let Some(quoted) = unweak.strip_prefix(b"\"") else {
            return false;
        };
        let Some(end) = quoted.iter().position(|&b| b == b'"') else {
            return false;
        };
        let (tag, after) = quoted.split_at(end);
        // etagc: %x21 / %x23-7E / obs-text
        if !tag
            .iter()
            .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
        {
            return false;
        }
        tags.push(tag);
        rest = after.get(1..).unwrap_or_default().trim_ascii_start();
        match rest.split_first() {
            None => return true,
            Some((b',', after)) => rest = after,
            Some(_) => return false,
        }
    }
}

fn snapshot(server: &Server, request: &http::request::Parts) -> Answer {
    let served = server.policy();
    bump(&server.counters.snapshot_requests);
    let not_modified = none_match(
        request.headers.get_all(header::IF_NONE_MATCH).iter(),
        &served.etag,
    );
    bump(if not_modified {
        &server.counters.snapshot_304
    } else {
        &server.counters.snapshot_200
    });
    let quoted = HeaderValue::from_str(&format!("\"{}\"", served.etag))
        .unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    Answer {
        status: if not_modified {
            StatusCode::NOT_MODIFIED
        } else {
            StatusCode::OK
        },
        headers: vec![
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(served.content_type),
            ),
            (header::ETAG, quoted),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body: served.body.clone(),
        note: format!("etag={}", served.etag),
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

    fn matches(fields: &[&str], etag: &str) -> bool {
        let values: Vec<HeaderValue> = fields
            .iter()
            .map(|f| HeaderValue::from_str(f).unwrap())
            .collect();
        none_match(values.iter(), etag)
    }

    #[test]
    fn if_none_match_forms() {
        let etag = "sha256:0123";
        assert!(matches(&["\"sha256:0123\""], etag));
        assert!(matches(&["W/\"sha256:0123\""], etag));
        assert!(matches(&["*"], etag));
        assert!(matches(&[" * "], etag));
        assert!(matches(&["\"a\", \"sha256:0123\""], etag));
        assert!(matches(&["\"a\",W/\"sha256:0123\" ,"], etag));
        assert!(matches(&[", ,\"a\",,\"sha256:0123\""], etag));
        assert!(matches(&["\"a\"", "\"sha256:0123\""], etag));
        assert!(matches(&["\"a,b\", \"sha256:0123\""], etag));
        assert!(!matches(&["\"sha256:0124\""], etag));
        assert!(!matches(&[], etag));
        // Not entity tags: the condition is void.
        assert!(!matches(&["sha256:0123"], etag));
        assert!(!matches(&["w/\"sha256:0123\""], etag));
        assert!(!matches(&["\"sha256:0123"], etag));
        assert!(!matches(&["\"sha256:0123\" x"], etag));
        assert!(!matches(&["\"a b\", \"sha256:0123\""], etag));
        assert!(!matches(&["*, \"sha256:0123\""], etag));
        assert!(!matches(&["*", "\"sha256:0123\""], etag));
        assert!(!matches(&["\"sha256:0123\"", "bogus"], etag));
    }

    #[test]
    fn etags_hash_the_bytes() {
        assert_eq!(etag_of(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb924");
        assert_eq!(etag_of(b"abc").len(), "sha256:".len() + ETAG_HEX);
        assert_ne!(
            etag_of(b"{\"revision\":\"r1\"}"),
            etag_of(b"{\"revision\": \"r1\"}")
        );
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
