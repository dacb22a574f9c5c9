//! `policyctl serve` as a process: ETags and 304s, reloads (accepted, refused, file gone), key
//! lookups, keep-alive, malformed requests and the request log on stdout; request smuggling
//! (content-length with transfer-encoding), slow and oversized request heads, thousands of idle
//! connections and graceful shutdown on SIGTERM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_policyctl");
const DEMO: &str = include_str!("../../../policies/demo.json");
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// sha256 of the demo's first two api keys.
const STOREFRONT_PROD: &str = "64084db3581b61a39984249dbe669dfb1233118846168bab3408cbe203ffa8de";
const STOREFRONT_STAGING: &str = "dff19c2a5573372038feec3ba901cf4d82234225a6ead1cf7543a33997674ca8";
const OPS_CONSOLE: &str = "c7d3bcd76d31ed8b7760c96ee2c7b910402310b10ee17bf390c81f2574b119bc";
const UNKNOWN: &str = "0000000000000000000000000000000000000000000000000000000000000000";

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "tenantgate-serve-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(name);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The demo snapshot with another revision (same length as long as `revision` has 2 chars).
fn demo_with_revision(revision: &str) -> String {
    let out = DEMO.replacen(
        "\"revision\": \"r1\"",
        &format!("\"revision\": \"{revision}\""),
        1,
    );
    assert_ne!(out, DEMO, "demo.json no longer starts with revision r1");
    out
}

/// The demo's api key entry with this sha256.
fn demo_key(sha256: &str) -> Value {
    let doc: Value = serde_json::from_str(DEMO).unwrap();
    doc["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["sha256"] == sha256)
        .cloned()
        .unwrap_or_else(|| panic!("no demo key {sha256}"))
}

/// The demo with the storefront-prod key revoked and the same revision `r1`: a revocation whose
/// author forgot to bump the revision.
fn demo_revoked_same_revision() -> String {
    let mut doc: Value = serde_json::from_str(DEMO).unwrap();
    for key in doc["api_keys"].as_array_mut().unwrap() {
        if key["sha256"] == STOREFRONT_PROD {
            key["status"] = json!("revoked");
        }
    }
    assert_eq!(doc["revision"], "r1");
    serde_json::to_string_pretty(&doc).unwrap()
}

/// The entity tag the server must send for `bytes`, without quotes: `sha256:` and the first
/// 32 hex digits of their SHA-256.
fn etag_of(bytes: impl AsRef<[u8]>) -> String {
    let digest = Sha256::digest(bytes.as_ref());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{}", &hex[..32])
}

/// The same, quoted as in the `etag` header.
fn quoted_etag(bytes: impl AsRef<[u8]>) -> String {
    format!("\"{}\"", etag_of(bytes))
}

/// Writes `text` to a sibling temp file and renames it over `path` (an atomic replace).
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

/// A running `policyctl serve`; killed by pid (SIGKILL) and reaped on drop, also when the test
/// panics. stdout and stderr are drained by threads into memory.
struct Serve {
    child: Child,
    port: u16,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- policyctl serve stdout ----\n{}\n---- stderr ----\n{}",
                self.stdout_lines().join("\n"),
                self.stderr_text()
            );
        }
    }
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {BIN}: {e}"));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let mut serve = Serve {
            child,
            port: 0,
            stdout: Arc::default(),
            stderr: Arc::default(),
        };
        let (tx, rx) = mpsc::channel();
        let lines = Arc::clone(&serve.stdout);
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line.clone());
                lines.lock().unwrap().push(line);
            }
        });
        let text = Arc::clone(&serve.stderr);
        thread::spawn(move || {
            let mut reader = BufReader::new(err);
            let mut line = String::new();
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                text.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no `listening on` line; stderr: {}", serve.stderr_text()));
        let addr: SocketAddr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        assert_ne!(addr.port(), 0, "the real port must be printed");
        serve.port = addr.port();
        serve
    }

    fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stdout holds a line equal to `line` (lines are printed after the response).
    fn wait_stdout_line(&self, line: &str) {
        wait_for(
            || self.stdout_lines().iter().any(|l| l == line),
            || format!("no stdout line {line:?} in {:#?}", self.stdout_lines()),
        );
    }

    fn wait_stderr(&self, needle: &str) {
        wait_for(
            || self.stderr_text().contains(needle),
            || format!("stderr lacks {needle:?}: {}", self.stderr_text()),
        );
    }

    fn connect(&self) -> Conn {
        Conn::open(self.port)
    }

    /// One request on a fresh connection (`connection: close`).
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request("GET", path, headers)
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut headers = headers.to_vec();
        headers.push(("connection", "close"));
        let mut conn = self.connect();
        let resp = conn.request(method, path, &headers);
        assert_eq!(resp.header("connection"), Some("close"));
        resp
    }

    fn stats(&self) -> Value {
        let resp = self.get("/stats", &[]);
        assert_eq!(resp.status, 200);
        resp.json()
    }
}

fn wait_for(mut done: impl FnMut() -> bool, message: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{}", message());
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One connection, for as many requests as the server keeps it open.
struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Conn {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nhost: policy\r\n");
        for (name, value) in headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        raw.push_str("\r\n");
        self.send_raw(raw.as_bytes(), method == "HEAD")
    }

    fn send_raw(&mut self, raw: &[u8], head: bool) -> Resp {
        self.writer.write_all(raw).unwrap();
        self.writer.flush().unwrap();
        self.read_response(head)
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0 && line.ends_with("\r\n"), "truncated line {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    /// Every response must carry content-length; HEAD and 304 have no body. (hyper answers an
    /// HTTP/1.0 request with an HTTP/1.0 status line.)
    fn read_response(&mut self, head: bool) -> Resp {
        let status_line = self.read_line();
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.read_line();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = resp
            .header("content-length")
            .unwrap_or_else(|| panic!("no content-length: {resp:?}"))
            .parse()
            .unwrap();
        if !head && status != 304 {
            resp.body = vec![0; len];
            self.reader.read_exact(&mut resp.body).unwrap();
        }
        resp
    }

    /// True once the server has closed the connection (EOF, nothing more to read).
    fn is_closed(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(self.reader.read_to_end(&mut rest), Ok(0))
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn snapshot_etags_reloads_and_refusals() {
    let dir = TempDir::new();
    let policy = dir.path("policy.json");
    fs::write(&policy, DEMO).unwrap();
    let keys = dir.path("keys.json");
    fs::write(&keys, "[]").unwrap();
    let serve = Serve::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);

    let e1 = quoted_etag(DEMO);
    let resp = serve.get("/snapshot", &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("etag"), Some(e1.as_str()));
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("cache-control"), Some("no-cache"));
    assert_eq!(resp.body, DEMO.as_bytes(), "the file's exact bytes");

    let head = serve.request("HEAD", "/snapshot", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("etag"), Some(e1.as_str()));
    assert_eq!(
        head.header("content-length"),
        Some(DEMO.len().to_string().as_str())
    );

    let weak = format!("W/{e1}");
    let listed = format!("\"r0\", {e1}");
    for inm in [e1.as_str(), &weak, "*", &listed] {
        let resp = serve.get("/snapshot", &[("if-none-match", inm)]);
        assert_eq!(resp.status, 304, "if-none-match: {inm}");
        assert_eq!(resp.header("etag"), Some(e1.as_str()));
        assert!(resp.body.is_empty());
    }
    // Not an entity tag (unquoted): the condition is ignored (RFC 9110 13.1.2).
    let unquoted = etag_of(DEMO);
    let resp = serve.get("/snapshot", &[("if-none-match", &unquoted)]);
    assert_eq!(resp.status, 200, "if-none-match: {unquoted}");
    let resp = serve.get("/snapshot?x=1", &[("if-none-match", "\"r0\"")]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, DEMO.as_bytes());

    // Rewritten in place, same size, right after being read: must be noticed at once.
    let r2 = demo_with_revision("r2");
    assert_eq!(r2.len(), DEMO.len());
    let e2 = quoted_etag(&r2);
    fs::write(&policy, &r2).unwrap();
    let resp = serve.get("/snapshot", &[("if-none-match", &e1)]);
    assert_eq!(resp.status, 200, "the old etag no longer matches");
    assert_eq!(resp.header("etag"), Some(e2.as_str()));
    assert_eq!(resp.body, r2.as_bytes());
    assert_eq!(
        serve.get("/snapshot", &[("if-none-match", &e2)]).status,
        304
    );
    serve.wait_stderr("reloaded: revision r2 (was r1)");

    // Invalid (an unknown top-level field), then half-written: r2 stays.
    let invalid = demo_with_revision("r3").replacen("{", "{\"bogus\": 1,", 1);
    fs::write(&policy, &invalid).unwrap();
    let resp = serve.get("/snapshot", &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("etag"), Some(e2.as_str()));
    assert_eq!(resp.body, r2.as_bytes());
    let stats = serve.stats();
    assert_eq!(stats["revision"], "r2");
    assert_eq!(stats["reloads"], 1);
    assert!(stats["reloads_refused"].as_u64().unwrap() >= 1, "{stats}");
    serve.wait_stderr("reload refused: ");
    let refused = serve.stderr_text();
    let line = refused
        .lines()
        .find(|l| l.starts_with("reload refused: "))
        .unwrap();
    assert!(line.contains("bogus") && line.ends_with(" more)"), "{line}");

    fs::write(&policy, &r2.as_bytes()[..r2.len() / 2]).unwrap();
    assert_eq!(
        serve.get("/snapshot", &[]).header("etag"),
        Some(e2.as_str())
    );
    assert_eq!(serve.stats()["reloads_refused"], 2);

    // The file disappears: r2 is still served.
    fs::remove_file(&policy).unwrap();
    let resp = serve.get("/snapshot", &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, r2.as_bytes());
    serve.wait_stderr("reload skipped: ");

    // It comes back (atomically replaced) with r4.
    let r4 = demo_with_revision("r4");
    replace_file(&policy, &r4);
    let resp = serve.get("/snapshot", &[]);
    assert_eq!(resp.header("etag"), Some(quoted_etag(&r4).as_str()));
    assert_eq!(resp.body, r4.as_bytes());

    let stats = serve.stats();
    assert_eq!(stats["revision"], "r4");
    assert_eq!(stats["reloads"], 2);
    assert_eq!(stats["reloads_refused"], 2);
    // GET + HEAD + 4 x 304 + unquoted + query + 2 (r2) + invalid + half + gone + r4
    assert_eq!(stats["snapshot_requests"], 14);
    assert_eq!(stats["snapshot_304"], 5);
    assert_eq!(stats["snapshot_200"], 9);

    let (t1, t2, t4) = (etag_of(DEMO), etag_of(&r2), etag_of(&r4));
    serve.wait_stdout_line(&format!("GET /snapshot 200 etag={t1}"));
    serve.wait_stdout_line(&format!("HEAD /snapshot 200 etag={t1}"));
    serve.wait_stdout_line(&format!("GET /snapshot 304 etag={t1}"));
    serve.wait_stdout_line(&format!("GET /snapshot 200 etag={t2}"));
    serve.wait_stdout_line(&format!("GET /snapshot 304 etag={t2}"));
    serve.wait_stdout_line(&format!("GET /snapshot 200 etag={t4}"));
    serve.wait_stdout_line("GET /stats 200");
}

#[test]
fn key_lookups_and_keys_reload() {
    let dir = TempDir::new();
    let policy = dir.path("policy.json");
    fs::write(&policy, DEMO).unwrap();
    let keys = dir.path("keys.json");
    let first = json!([demo_key(STOREFRONT_PROD), demo_key(STOREFRONT_STAGING)]);
    fs::write(&keys, first.to_string()).unwrap();
    let serve = Serve::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
        "--listen=127.0.0.1:0",
    ]);

    let hit = serve.get(
        &format!("/keys/{STOREFRONT_PROD}"),
        &[("x-secret", "hunter2")],
    );
    assert_eq!(hit.status, 200);
    assert_eq!(hit.header("content-type"), Some("application/json"));
    assert_eq!(hit.json(), demo_key(STOREFRONT_PROD));

    let miss = serve.get(&format!("/keys/{UNKNOWN}"), &[]);
    assert_eq!(miss.status, 404);
    assert_eq!(miss.json(), json!({"error": "not_found"}));

    for bad in [
        "abc".to_string(),
        STOREFRONT_PROD.to_uppercase(),
        STOREFRONT_PROD[..63].to_string(),
        format!("{STOREFRONT_PROD}0"),
        format!("{}%2F", &STOREFRONT_PROD[..61]),
        String::new(),
    ] {
        let resp = serve.get(&format!("/keys/{bad}"), &[]);
        assert_eq!(resp.status, 400, "/keys/{bad}: {}", resp.text());
    }

    let stats = serve.stats();
    assert_eq!(stats["key_requests"], 8);
    assert_eq!(stats["key_hits"], 1);
    assert_eq!(stats["key_misses"], 1);

    // The keys file changes: the new set replaces the old one.
    fs::write(&keys, json!([demo_key(OPS_CONSOLE)]).to_string()).unwrap();
    assert_eq!(
        serve.get(&format!("/keys/{OPS_CONSOLE}"), &[]).json(),
        demo_key(OPS_CONSOLE)
    );
    assert_eq!(
        serve.get(&format!("/keys/{STOREFRONT_PROD}"), &[]).status,
        404
    );

    // Not an array, then a malformed hash: the last good set stays.
    for bad in [
        json!({"api_keys": []}).to_string(),
        json!([{"id": "x", "sha256": "not-a-hash"}]).to_string(),
        "[{".to_string(),
    ] {
        fs::write(&keys, &bad).unwrap();
        assert_eq!(
            serve.get(&format!("/keys/{OPS_CONSOLE}"), &[]).status,
            200,
            "{bad}"
        );
    }
    let stats = serve.stats();
    assert_eq!(stats["keys_reloads"], 1);
    assert_eq!(stats["keys_reloads_refused"], 3);
    assert_eq!(
        stats["reloads_refused"], 0,
        "the snapshot itself never changed"
    );
    assert_eq!(stats["revision"], "r1");
    serve.wait_stderr("reload refused: ");

    serve.wait_stdout_line("GET /keys/64084db3… 200");
    serve.wait_stdout_line(&format!("GET /keys/{}… 404", &UNKNOWN[..8]));
    serve.wait_stdout_line("GET /keys/a… 400");
    serve.wait_stdout_line("GET /keys/… 400");
    serve.wait_stdout_line("GET /stats 200");
    let log = serve.stdout_lines().join("\n");
    for hash in [STOREFRONT_PROD, OPS_CONSOLE, UNKNOWN] {
        assert!(!log.contains(hash), "a whole key hash was printed:\n{log}");
    }
    assert!(!log.contains("hunter2") && !log.contains("policy"), "{log}");
    assert!(!serve.stderr_text().contains(STOREFRONT_PROD));
}

#[test]
fn keep_alive_close_and_malformed_requests() {
    let dir = TempDir::new();
    let policy = dir.path("policy.json");
    fs::write(&policy, DEMO).unwrap();
    let serve = Serve::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);

    // Several requests on one connection, the last one asking to close.
    let mut conn = serve.connect();
    let first = conn.request("GET", "/snapshot", &[]);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("connection"), None);
    let second = conn.request("GET", "/snapshot", &[("if-none-match", &quoted_etag(DEMO))]);
    assert_eq!(second.status, 304);
    // An empty body is no body.
    let empty = conn.send_raw(
        b"GET /stats HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
        false,
    );
    assert_eq!(empty.status, 200);
    let third = conn.request("GET", "/nowhere", &[("connection", "close")]);
    assert_eq!(third.status, 404);
    assert_eq!(third.json(), json!({"error": "not_found"}));
    assert_eq!(third.header("connection"), Some("close"));
    assert!(conn.is_closed());

    // No endpoint takes a body: a request that announces one is refused and the connection
    // closed, after the answers to the requests before it.
    for raw in [
        &b"GET /stats HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello"[..],
        b"GET /stats HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ] {
        let mut conn = serve.connect();
        assert_eq!(conn.request("GET", "/stats", &[]).status, 200);
        let resp = conn.send_raw(raw, false);
        assert_eq!(resp.status, 400, "{}", String::from_utf8_lossy(raw));
        assert_eq!(resp.header("connection"), Some("close"));
        assert_eq!(
            resp.json(),
            json!({"error": "bad_request", "message": "request bodies are not accepted"})
        );
        assert!(conn.is_closed());
    }
    serve.wait_stdout_line("- - 400 request bodies are not accepted");

    // Pipelined requests are answered in order.
    let mut conn = serve.connect();
    conn.writer
        .write_all(
            b"GET /stats HTTP/1.1\r\nhost: x\r\n\r\nHEAD /snapshot HTTP/1.1\r\nhost: x\r\n\r\n",
        )
        .unwrap();
    assert_eq!(conn.read_response(false).status, 200);
    let head = conn.read_response(true);
    assert_eq!(head.header("etag"), Some(quoted_etag(DEMO).as_str()));

    // HTTP/1.0 closes unless asked to keep alive.
    let mut conn = serve.connect();
    let resp = conn.send_raw(b"GET /snapshot HTTP/1.0\r\n\r\n", false);
    assert_eq!(resp.status, 200);
    assert!(conn.is_closed());

    // Without --keys every key is unknown; other methods and paths are 404.
    assert_eq!(
        serve.get(&format!("/keys/{STOREFRONT_PROD}"), &[]).status,
        404
    );
    assert_eq!(
        serve
            .request("POST", "/snapshot", &[("content-length", "0")])
            .status,
        404
    );
    assert_eq!(serve.get("/", &[]).status, 404);
    assert_eq!(serve.get("/snapshot/", &[]).status, 404);

    // Malformed requests: 400, then the connection is closed; the server lives on.
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /snapshot HTTP/2.0\r\n\r\n",
        b"GET /snapshot HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /snapshot HTTP/1.1\r\ncontent-length: nope\r\n\r\n",
        b"GET /snapshot HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
        b"G\xffT /snapshot HTTP/1.1\r\n\r\n",
        b"GET  /snapshot HTTP/1.1\r\n\r\n",
    ] {
        let mut conn = serve.connect();
        let resp = conn.send_raw(raw, false);
        assert_eq!(resp.status, 400, "{:?}", String::from_utf8_lossy(raw));
        assert_eq!(resp.header("connection"), Some("close"));
        assert_eq!(resp.json()["error"], "bad_request");
        assert!(conn.is_closed());
    }
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'a', 20_000));
    long.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    assert_eq!(serve.connect().send_raw(&long, false).status, 400);
    // A client that goes away mid-request.
    {
        let mut conn = serve.connect();
        conn.writer
            .write_all(b"GET /snapshot HTTP/1.1\r\nhost:")
            .unwrap();
    }
    assert_eq!(serve.get("/snapshot", &[]).status, 200);
    serve.wait_stdout_line("- - 400 malformed request line");
    serve.wait_stdout_line("POST /snapshot 404");
    serve.wait_stdout_line("GET /nowhere 404");
    let stats = serve.stats();
    assert_eq!(stats["reloads"], 0);
    assert_eq!(stats["key_hits"], 0);
}

#[test]
fn unusable_input_exits_2() {
    let dir = TempDir::new();
    let invalid = dir.path("invalid.json");
    fs::write(
        &invalid,
        demo_with_revision("r9").replacen("{", "{\"bogus\": 1,", 1),
    )
    .unwrap();
    let good = dir.path("good.json");
    fs::write(&good, DEMO).unwrap();
    let bad_keys = dir.path("keys.json");
    fs::write(&bad_keys, "{}").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let stderr = run(&[
        "--policy",
        invalid.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(stderr.contains("bogus"), "{stderr}");
    run(&[
        "--policy",
        dir.path("missing.json").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    run(&[
        "--policy",
        good.to_str().unwrap(),
        "--keys",
        bad_keys.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    run(&["--policy", good.to_str().unwrap()]);
    run(&["--listen", "127.0.0.1:0"]);
    run(&[
        "--policy",
        good.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--bogus",
        "1",
    ]);
    run(&[
        "--policy",
        good.to_str().unwrap(),
        "--listen",
        "not an address",
    ]);

    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--listen ADDR"));
}

// ---------------------------------------------------------------------------------------------
// What an attacker found in the std-only server
// ---------------------------------------------------------------------------------------------

/// A fresh server on the demo policy; returns it with the policy's path (and its directory).
fn serve_demo() -> (Serve, PathBuf, TempDir) {
    let dir = TempDir::new();
    let policy = dir.path("policy.json");
    fs::write(&policy, DEMO).unwrap();
    let serve = Serve::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    (serve, policy, dir)
}

#[test]
fn etag_follows_the_bytes_not_the_revision() {
    let (serve, policy, _dir) = serve_demo();
    // A gateway polls and keeps the etag it got.
    let first = serve.get("/snapshot", &[]);
    assert_eq!(first.status, 200);
    let polled = first.header("etag").unwrap().to_string();
    assert_eq!(
        serve.get("/snapshot", &[("if-none-match", &polled)]).status,
        304
    );

    // A key is revoked, the revision left as it was.
    let revoked = demo_revoked_same_revision();
    replace_file(&policy, &revoked);
    let resp = serve.get("/snapshot", &[("if-none-match", &polled)]);
    assert_eq!(resp.status, 200, "the revocation must reach the poller");
    assert_eq!(resp.body, revoked.as_bytes());
    let fresh = resp.header("etag").unwrap().to_string();
    assert_ne!(fresh, polled);
    assert_eq!(polled, quoted_etag(DEMO));
    assert_eq!(fresh, quoted_etag(&revoked));
    // From then on the poller is told nothing changed.
    let again = serve.get("/snapshot", &[("if-none-match", &fresh)]);
    assert_eq!(again.status, 304);
    assert_eq!(again.header("etag"), Some(fresh.as_str()));
    let stats = serve.stats();
    assert_eq!(stats["revision"], "r1");
    assert_eq!(stats["reloads"], 1);
    serve.wait_stdout_line(&format!("GET /snapshot 200 etag={}", etag_of(&revoked)));
}

#[test]
fn content_length_with_transfer_encoding_is_refused_and_the_connection_closed() {
    let (serve, _policy, _dir) = serve_demo();
    // Each carries a second request a front proxy would take for body bytes.
    let smuggled = "GET /keys/0000 HTTP/1.1\r\nhost: x\r\n\r\n";
    for (name, head) in [
        (
            "CL.TE",
            "POST /snapshot HTTP/1.1\r\nhost: x\r\ncontent-length: 44\r\ntransfer-encoding: chunked\r\n\r\n",
        ),
        (
            "TE.CL",
            "GET /snapshot HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n",
        ),
        (
            "TE.CL on a kept-alive connection",
            "GET /stats HTTP/1.1\r\nhost: x\r\n\r\nGET /snapshot HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
    ] {
        let mut conn = serve.connect();
        let raw = format!("{head}0\r\n\r\n{smuggled}");
        conn.writer.write_all(raw.as_bytes()).unwrap();
        if name.contains("kept-alive") {
            assert_eq!(conn.read_response(false).status, 200, "{name}");
        }
        let resp = conn.read_response(false);
        assert_eq!(resp.status, 400, "{name}: {}", resp.text());
        assert_eq!(resp.header("connection"), Some("close"), "{name}");
        assert_eq!(
            resp.json(),
            json!({"error": "bad_request", "message": "both content-length and transfer-encoding"}),
            "{name}"
        );
        assert!(conn.is_closed(), "{name}: a second response followed");
    }
    serve.wait_stdout_line("- - 400 both content-length and transfer-encoding");
    let stats = serve.stats();
    assert_eq!(
        stats["key_requests"], 0,
        "the smuggled request was answered"
    );
    assert_eq!(stats["snapshot_requests"], 0);
}

#[test]
fn oversized_header_blocks_are_refused() {
    let (serve, _policy, _dir) = serve_demo();
    // 40 KiB of headers in lines of 1 KiB: each line is short, the block is not.
    let mut big = String::from("GET /snapshot HTTP/1.1\r\nhost: x\r\n");
    for i in 0..40 {
        big.push_str(&format!("x-filler-{i}: {}\r\n", "f".repeat(1000)));
    }
    big.push_str("\r\n");
    let mut conn = serve.connect();
    let resp = conn.send_raw(big.as_bytes(), false);
    assert_eq!(resp.status, 431, "{}", resp.text());
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(resp.json()["error"], "header_fields_too_large");
    assert!(conn.is_closed());

    // More than 100 header fields.
    let mut many = String::from("GET /snapshot HTTP/1.1\r\nhost: x\r\n");
    for i in 0..101 {
        many.push_str(&format!("x-{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    let mut conn = serve.connect();
    let resp = conn.send_raw(many.as_bytes(), false);
    assert_eq!(resp.status, 431, "{}", resp.text());
    assert!(conn.is_closed());

    // A head that never ends is not buffered: the refusal comes after 32 KiB, while the
    // client is still sending.
    let mut conn = serve.connect();
    conn.writer
        .write_all(b"GET /snapshot HTTP/1.1\r\nhost: x\r\nx-endless: ")
        .unwrap();
    let filler = vec![b'a'; 1024];
    let mut sent = 0;
    while sent < 64 * 1024 {
        if conn.writer.write_all(&filler).is_err() {
            break;
        }
        sent += filler.len();
    }
    let resp = conn.read_response(false);
    assert_eq!(resp.status, 431);
    serve.wait_stdout_line("- - 431 request header fields too large");
    assert_eq!(serve.stats()["snapshot_requests"], 0);
}

/// Sends a request head on `conn` one byte every 250 ms, never finishing it; returns how long
/// the server kept the connection open (at most `give_up`).
fn trickle_until_closed(mut conn: Conn, head: &[u8], give_up: Duration) -> Duration {
    conn.reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let start = Instant::now();
    let mut bytes = head.iter().cycle();
    while start.elapsed() < give_up {
        if conn.writer.write_all(&[*bytes.next().unwrap()]).is_err() {
            break;
        }
        let mut buf = [0u8; 256];
        match conn.reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => panic!(
                "answered instead of dropped: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break, // reset
        }
    }
    start.elapsed()
}

#[test]
fn slow_loris_heads_are_dropped_within_the_header_timeout() {
    let (serve, _policy, _dir) = serve_demo();
    let port = serve.port;
    let give_up = Duration::from_secs(30);
    // The first request of a connection, and a later one on a kept-alive connection.
    let slow_head = b"GET /snapshot HTTP/1.1\r\nhost: x\r\nx-slow: abcdefgh";
    let first = thread::spawn(move || trickle_until_closed(Conn::open(port), slow_head, give_up));
    let later = thread::spawn(move || {
        let mut conn = Conn::open(port);
        assert_eq!(conn.request("GET", "/stats", &[]).status, 200);
        // Idle for a while first: that is not a slow head.
        thread::sleep(Duration::from_secs(2));
        assert_eq!(conn.request("GET", "/stats", &[]).status, 200);
        trickle_until_closed(conn, slow_head, give_up)
    });
    // And one that connects and sends nothing at all.
    let silent = Conn::open(port);
    let silent_start = Instant::now();
    let mut silent = silent;
    silent
        .reader
        .get_ref()
        .set_read_timeout(Some(give_up))
        .unwrap();
    let mut buf = [0u8; 16];
    let n = silent.reader.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "answered instead of dropped");
    let silent_open = silent_start.elapsed();
    for (name, open) in [
        ("first", first.join().unwrap()),
        ("later", later.join().unwrap()),
        ("silent", silent_open),
    ] {
        // The header timeout is 10 s.
        assert!(
            open >= Duration::from_secs(9) && open < Duration::from_secs(15),
            "{name}: dropped after {open:?}"
        );
    }
    // The server is fine.
    assert_eq!(serve.get("/snapshot", &[]).status, 200);
}

/// Raises this process's soft limit on open files to its hard limit (the server, a child,
/// inherits it); returns the limit now in force.
fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    limit.rlim_cur
}

/// The number of threads of process `pid`.
fn threads_of(pid: u32) -> usize {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// Sends one request on `stream` and reads its response (which must carry `content-length`),
/// leaving the connection open; returns the status.
fn request_on(stream: &TcpStream, raw: &[u8]) -> u16 {
    (&*stream).write_all(raw).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    assert!(reader.buffer().is_empty());
    status
}

/// True if the peer has neither answered nor closed `stream`.
fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let open = matches!(
        (&*stream).read(&mut buf),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    );
    stream.set_nonblocking(false).unwrap();
    open
}

#[test]
fn thousands_of_idle_connections_cost_no_threads_and_block_no_fetch() {
    const IDLE: usize = 2_000;
    const SILENT: usize = 200;
    let limit = raise_open_file_limit();
    assert!(
        limit >= (IDLE + SILENT) as u64 + 200,
        "RLIMIT_NOFILE is {limit}: too low for {IDLE} connections"
    );
    let (serve, _policy, _dir) = serve_demo();
    let pid = serve.child.id();
    // Idle keep-alive connections, as gateways leave them between polls: each has made one
    // request and then nothing.
    let ping = b"GET /nowhere HTTP/1.1\r\nhost: x\r\n\r\n";
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| {
            let stream = TcpStream::connect(("127.0.0.1", serve.port)).unwrap();
            stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            assert_eq!(request_on(&stream, ping), 404);
            stream
        })
        .collect();
    // And connections that have not sent anything (yet): the header timeout drops them after
    // 10 s, not before.
    let silent: Vec<TcpStream> = (0..SILENT)
        .map(|_| TcpStream::connect(("127.0.0.1", serve.port)).unwrap())
        .collect();

    // A gateway's fetch is answered, fast.
    let start = Instant::now();
    let resp = serve.get("/snapshot", &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, DEMO.as_bytes());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let threads = threads_of(pid);
    assert!(
        threads <= 12,
        "{threads} threads for {} idle connections",
        IDLE + SILENT
    );

    // Every idle connection is still open, and still served.
    for (i, stream) in idle.iter().chain(&silent).enumerate() {
        assert!(
            still_open(stream),
            "idle connection {i} was answered or closed"
        );
    }
    for stream in idle.iter().step_by(100).chain(silent.iter().step_by(50)) {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        assert_eq!(
            request_on(stream, b"GET /stats HTTP/1.1\r\nhost: x\r\n\r\n"),
            200
        );
    }
}

#[test]
fn sigterm_lets_the_response_in_flight_finish_and_exits_0() {
    let dir = TempDir::new();
    let policy = dir.path("big.json");
    // A valid snapshot too large to sit in the socket buffers: its response stays in flight
    // until the client reads it.
    let big = format!("{DEMO}{}", " ".repeat(24 << 20));
    fs::write(&policy, &big).unwrap();
    let mut serve = Serve::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let port = serve.port;

    // An idle kept-alive connection, and a fetch whose response has started.
    let mut idle = serve.connect();
    assert_eq!(idle.request("GET", "/stats", &[]).status, 200);
    let mut slow = serve.connect();
    slow.writer
        .write_all(b"GET /snapshot HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut status_line = String::new();
    slow.reader.read_line(&mut status_line).unwrap();
    assert!(status_line.starts_with("HTTP/1.1 200"), "{status_line}");

    unsafe {
        assert_eq!(libc::kill(serve.child.id() as i32, libc::SIGTERM), 0);
    }
    // The idle connection is closed and nothing new is accepted...
    assert!(idle.is_closed());
    wait_for(
        || TcpStream::connect(("127.0.0.1", port)).is_err(),
        || "still accepting connections after SIGTERM".into(),
    );
    // ... while the response in flight is delivered whole, after a pause.
    thread::sleep(Duration::from_millis(500));
    let mut rest = Vec::new();
    slow.reader.read_to_end(&mut rest).unwrap();
    let text = String::from_utf8(rest).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {}", big.len())),
        "{head}"
    );
    assert_eq!(body.len(), big.len());
    assert!(body == big, "the body differs from the file");

    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    // The two connections, and maybe a probe that came in before the listener was closed.
    let lines = serve.stdout_lines();
    let last = lines.last().unwrap();
    let closed: usize = last
        .strip_prefix("shut down on SIGTERM: stopped accepting and closed ")
        .and_then(|rest| rest.strip_suffix(" connections (0 cut off)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected last line {last:?}"));
    assert!(closed >= 2, "{last}");
}

#[test]
fn snapshot_ranges_and_their_conditions() {
    let dir = TempDir::new();
    let policy = dir.path("policy.json");
    fs::write(&policy, DEMO).unwrap();
    let serve = Serve::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let bytes = DEMO.as_bytes();
    let total = bytes.len();
    let etag = quoted_etag(DEMO);

    let whole = serve.get("/snapshot", &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));

    // One range, in each of its three forms.
    let forms = [
        ("bytes=0-99".to_string(), 0, 99),
        (format!("bytes={}-", total - 10), total - 10, total - 1),
        ("bytes=-25".to_string(), total - 25, total - 1),
        (format!("bytes=100-{}", total + 1000), 100, total - 1),
    ];
    for (range, first, last) in forms {
        let part = serve.get("/snapshot", &[("range", &range)]);
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(
            part.header("content-range"),
            Some(format!("bytes {first}-{last}/{total}").as_str())
        );
        assert_eq!(part.header("etag"), Some(etag.as_str()));
        assert_eq!(part.body, &bytes[first..=last], "{range}");
    }
    // Parts reassemble into the file under If-Match.
    let mut assembled = Vec::new();
    while assembled.len() < total {
        let range = format!("bytes={}-{}", assembled.len(), assembled.len() + 999);
        let part = serve.get("/snapshot", &[("range", &range), ("if-match", &etag)]);
        assert_eq!(part.status, 206);
        assembled.extend_from_slice(&part.body);
    }
    assert_eq!(assembled, bytes);

    // Nothing of the range exists: 416 with the size.
    for range in [format!("bytes={total}-"), "bytes=-0".to_string()] {
        let none = serve.get("/snapshot", &[("range", &range)]);
        assert_eq!(none.status, 416, "{range}");
        assert_eq!(
            none.header("content-range"),
            Some(format!("bytes */{total}").as_str())
        );
    }
    // Several ranges, or not a byte range: the whole snapshot.
    for range in ["bytes=0-1,5-6", "items=0-1", "bytes=9-1"] {
        let all = serve.get("/snapshot", &[("range", range)]);
        assert_eq!((all.status, all.body.len()), (200, total), "{range}");
    }

    // If-Match with another ETag (a new revision between two parts): 412, with or without
    // a range; a weak tag never matches strongly; `*` does.
    for tag in ["\"sha256:0000\"", &format!("W/{etag}")] {
        let changed = serve.get("/snapshot", &[("range", "bytes=0-9"), ("if-match", tag)]);
        assert_eq!(changed.status, 412, "{tag}");
        assert_eq!(changed.json()["error"], "precondition_failed");
    }
    let any = serve.get("/snapshot", &[("range", "bytes=0-9"), ("if-match", "*")]);
    assert_eq!(any.status, 206);
    // If-None-Match still wins over Range.
    let same = serve.get(
        "/snapshot",
        &[("range", "bytes=0-9"), ("if-none-match", &etag)],
    );
    assert_eq!(same.status, 304);
    // If-Range: the range only for the current version.
    let current = serve.get("/snapshot", &[("range", "bytes=0-9"), ("if-range", &etag)]);
    assert_eq!(current.status, 206);
    let other = serve.get(
        "/snapshot",
        &[("range", "bytes=0-9"), ("if-range", "\"sha256:0\"")],
    );
    assert_eq!((other.status, other.body.len()), (200, total));
    // HEAD ignores Range.
    let head = serve.request("HEAD", "/snapshot", &[("range", "bytes=0-9")]);
    assert_eq!(head.status, 200);

    // The file replaced between two parts: the next part under the old ETag is refused.
    replace_file(&policy, &demo_with_revision("r2"));
    let next = serve.get(
        "/snapshot",
        &[("range", "bytes=100-199"), ("if-match", &etag)],
    );
    assert_eq!(next.status, 412);
    let fresh = serve.get("/snapshot", &[("range", "bytes=0-9")]);
    assert_eq!(
        fresh.header("etag"),
        Some(quoted_etag(demo_with_revision("r2")).as_str())
    );

    let stats = serve.stats();
    assert_eq!(stats["snapshot_412"], 3);
    assert_eq!(stats["snapshot_416"], 2);
    serve.wait_stdout_line(&format!(
        "GET /snapshot 206 etag={} range=0-99/{total}",
        etag_of(DEMO)
    ));
}
