//! `policyctl serve` as a process: ETags and 304s, reloads (accepted, refused, file gone), key
//! lookups, keep-alive, malformed requests and the request log on stdout.
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
const DEMO: &str = include_str!("../policies/demo.json");
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
    // A request body is read and discarded; the connection stays usable.
    let with_body = conn.send_raw(
        b"GET /stats HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello",
        false,
    );
    assert_eq!(with_body.status, 200);
    let chunked = conn.send_raw(
        b"GET /stats HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        false,
    );
    assert_eq!(chunked.status, 200);
    let third = conn.request("GET", "/nowhere", &[("connection", "close")]);
    assert_eq!(third.status, 404);
    assert_eq!(third.json(), json!({"error": "not_found"}));
    assert_eq!(third.header("connection"), Some("close"));
    assert!(conn.is_closed());

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
