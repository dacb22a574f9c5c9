//! `policyctl serve`: a small HTTP/1.1 policy server (hyper on a single-threaded tokio runtime)
//! for the demo, the tests and small deployments.
//!
//! * `GET|HEAD /snapshot`: the policy file's exact bytes with a strong
//!   `etag: "sha256:<first 32 hex digits of the SHA-256 of those bytes>"`, computed once per
//!   (re)load, so any change of the bytes changes it, whatever the revision says; 304 when
//!   `if-none-match` lists it ([`etag`]). One byte range per request (`range: bytes=a-b`,
//!   `bytes=a-`, `bytes=-n`): 206 with `content-range`, 416 with `content-range: bytes */total`
//!   when no byte of it exists; several ranges get the whole snapshot (200). `if-match` with
//!   another ETag: 412; `if-range` with another: the whole snapshot ([`range`]).
//! * `GET /keys/<sha256>`: one entry of the optional `--keys` file (a JSON array of api key
//!   objects), 404 `{"error":"not_found"}` if unknown, 400 if the hash is malformed.
//! * `GET /stats`: request and reload counters as JSON.
//!
//! Reload ([`watched`]): no background thread. Before answering each request the files are
//! checked with one `stat`; a changed file is validated; if valid it is served from then on,
//! otherwise the last good one stays and one line `reload refused: <first problem> (+N more)`
//! goes to stderr. The check and the answer run on tokio's blocking pool (at most
//! [`BLOCKING_THREADS`] threads), never on the thread that serves the connections.
//!
//! Connections ([`listener`]): one thread runs every connection (hyper, keep-alive,
//! pipelining), so thousands of idle connections cost memory, not threads; at start the soft
//! `RLIMIT_NOFILE` is raised to the hard limit. Each request head goes through the [`screen`]
//! before hyper sees it: heads that are too large or too slow, requests that announce a body
//! (no endpoint takes one) and malformed requests are refused with a JSON error and
//! `connection: close`. A connection that neither reads nor writes for [`IDLE_TIMEOUT`] is
//! closed.
//!
//! stdout carries exactly one line `listening on IP:PORT` after binding, then one line per
//! request (`GET /snapshot 200 etag=sha256:…`, `GET /keys/64084db3… 404`, `- - 400 <reason>`,
//! ...), flushed per line; the parent must read or close it. Key hashes are cut to 8 characters
//! and header values are never printed. SIGTERM or SIGINT: stop accepting, close idle
//! connections, let responses in flight finish (at most [`SHUTDOWN_GRACE`]), print one line
//! `shut down on SIGTERM: stopped accepting and closed N connections (M cut off)` and exit 0.

mod answer;
mod content;
mod etag;
mod listener;
mod range;
mod screen;
mod screened;
mod state;
mod watched;

use state::Server;
use std::fmt;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A connection that neither reads nor writes a byte for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long responses in flight may take to finish after SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Threads that check files and build answers (the connections have one thread of their own).
pub const BLOCKING_THREADS: usize = 8;
pub use screen::HEADER_TIMEOUT;
pub use watched::RACY_WINDOW;

/// What to serve, and where.
#[derive(Debug, Clone)]
pub struct Options {
    pub policy: PathBuf,
    pub keys: Option<PathBuf>,
    /// An address to bind, such as `127.0.0.1:8081` (port 0: any free port).
    pub listen: String,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file that cannot be served.
    #[error("{0}")]
    Problems(Problems),
    #[error("cannot listen on `{addr}`: {source}")]
    Listen { addr: String, source: io::Error },
    #[error("cannot read the bound address: {0}")]
    LocalAddr(#[source] io::Error),
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] io::Error),
    #[error("cannot handle signals: {0}")]
    Signals(#[source] io::Error),
    #[error("cannot write to stdout")]
    Stdout,
}

/// Every problem of a file: printed one line each, `FILE: problem`.
#[derive(Debug)]
pub struct Problems {
    pub path: PathBuf,
    pub problems: Vec<String>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self
            .problems
            .iter()
            .map(|problem| format!("{}: {}", self.path.display(), one_line(problem)))
            .collect();
        f.write_str(&lines.join("\n"))
    }
}

/// Serves until SIGTERM or SIGINT; an error if it could not start.
pub fn run(options: &Options) -> Result<(), StartError> {
    let server = Arc::new(Server::open(options)?);
    raise_open_file_limit();
    let (listener, local) = bind(&options.listen)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("serve-blocking")
        .build()
        .map_err(StartError::Runtime)?;
    let served = runtime.block_on(listener::serve(server, listener, local));
    // Answers still being built after the grace period are abandoned.
    runtime.shutdown_timeout(Duration::from_millis(100));
    served
}

/// A non-blocking listener on `addr` (for tokio), and the address it got.
fn bind(addr: &str) -> Result<(TcpListener, SocketAddr), StartError> {
    let cannot_listen = |source| StartError::Listen {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).map_err(cannot_listen)?;
    let local = listener.local_addr().map_err(StartError::LocalAddr)?;
    listener.set_nonblocking(true).map_err(cannot_listen)?;
    Ok((listener, local))
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
