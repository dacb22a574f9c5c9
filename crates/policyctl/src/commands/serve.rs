//! `policyctl serve`: the policy server ([`crate::serve`]).

use crate::serve::{self, Options};
use crate::Error;
use std::path::PathBuf;

/// Serves a snapshot (and api keys) over HTTP/1.1, reloading changed files
///
/// Serves FILE over HTTP/1.1 (hyper; one thread for every connection, keep-alive):
///
///   GET|HEAD /snapshot   FILE's exact bytes, content-type: application/json (or
///                        application/octet-stream for a compiled snapshot),
///                        etag: "sha256:<first 32 hex digits of their SHA-256>",
///                        cache-control: no-cache, accept-ranges: bytes; 304 and
///                        no body if if-none-match lists that etag (W/ or not,
///                        lists) or is *; one range (bytes=a-b, a-, -n): 206 with
///                        content-range, or 416 if no byte of it exists; several
///                        ranges: 200 whole; if-match with another etag: 412;
///                        if-range with another etag: 200 whole
///   GET /keys/<sha256>   the --keys entry with that hash as JSON; 404
///                        {"error":"not_found"} if unknown or without --keys; 400
///                        unless 64 lower-case hex digits
///   GET /stats           counters: snapshot_requests, snapshot_200, snapshot_304,
///                        snapshot_206, snapshot_412, snapshot_416, key_requests, key_hits, key_misses, reloads,
///                        reloads_refused, and the current revision
///   anything else        404
///
/// Exits 2 listing the problems of FILE (or of --keys) if invalid at start.
///
/// Reload: before answering each request both files are checked with one stat
/// (mtime, ctime, size, inode; a file changed less than 2 s before it was read is
/// re-read and compared by content). A changed file that is valid is served from
/// then on; an invalid one is refused and the last good one kept, with one line
/// `reload refused: <first problem> (+N more)` on stderr. A file that disappears
/// leaves the last good one in place. Replace files by rename for atomic updates.
///
/// Requests: a head must arrive within 10 s (of connecting, or of its first byte)
/// and fit in 32 KiB and 100 fields. No endpoint takes a body: a request that
/// announces one (transfer-encoding, or a content-length other than 0), and
/// malformed requests, are refused (400 or 431 with a JSON error) and the
/// connection closed. A connection idle for 300 s is closed.
///
/// stdout: one line `listening on IP:PORT` once bound, then one line per request,
/// e.g. `GET /snapshot 200 etag=sha256:...`, `GET /snapshot 304 etag=sha256:...`,
/// `GET /snapshot 206 etag=sha256:... range=0-8388607/67914921`,
/// `GET /keys/64084db3… 404`, `GET /stats 200`, `- - 400 <reason>` for a refused
/// request (key hashes are cut to 8 characters; header values are never printed).
/// Keep reading stdout (or close it). SIGTERM or SIGINT: stop accepting, close idle
/// connections, let responses in flight finish (10 s at most), print `shut down on
/// SIGTERM: ...` and exit 0.
#[derive(Debug, clap::Args)]
#[command(
    override_usage = "policyctl serve --policy FILE [--keys FILE] --listen ADDR",
    verbatim_doc_comment
)]
pub struct Args {
    /// the snapshot (JSON, compiled or signed)
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// a JSON array of api key objects shaped like the snapshot's api_keys
    /// entries, each with a 64 lower-case hex `sha256`
    #[arg(long, value_name = "FILE")]
    keys: Option<PathBuf>,
    /// address to bind, e.g. 127.0.0.1:8081 (port 0: any free port)
    #[arg(long, value_name = "ADDR")]
    listen: String,
}

pub fn run(args: &Args) -> Result<(), Error> {
    let options = Options {
        policy: args.policy.clone(),
        keys: args.keys.clone(),
        listen: args.listen.clone(),
    };
    serve::run(&options)?;
    Ok(())
}
