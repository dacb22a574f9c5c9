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
//! Connections are thread-per-connection and keep-alive (Envoy pools upstream connections).
//! Requests are read by [`tenantgate::cli::http1`] (shared with `policyctl serve`): request
//! bodies are consumed according to `content-length` or `transfer-encoding: chunked` (trailers
//! are read and discarded, 1 MiB at most), `expect: 100-continue` is honoured, and the connection
//! is only closed when the client asks for it (`connection: close`, or HTTP/1.0 without
//! `connection: keep-alive`), on EOF, or on a malformed request (answered with 400
//! `{"error": "<reason>"}` first).

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    echo::main()
}

// The crate's tests are also built for wasm targets, which build every binary.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod echo {
    use std::collections::BTreeMap;
    use std::io::{self, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::process::ExitCode;
    use std::thread;
    use tenantgate::cli::http1::{read_request, refuse, write_response, Request};

    pub fn main() -> ExitCode {
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
                    let spawned =
                        thread::Builder::new()
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

    fn serve_connection(stream: TcpStream) -> io::Result<()> {
        // Responses are small; avoid Nagle delays between our write and the next request.
        stream.set_nodelay(true)?;
        let mut writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        loop {
            let req = match read_request(&mut reader) {
                Ok(Some(req)) => req,
                Ok(None) => return Ok(()), // clean EOF between requests
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    let body = format!("{{\"error\": {}}}", json_string(&e.to_string()));
                    return refuse(&mut writer, &mut reader, body.as_bytes());
                }
                Err(e) => return Err(e),
            };
            let body = echo_body(&req);
            let headers = [("content-type", "application/json".to_string())];
            write_response(
                &mut writer,
                200,
                &headers,
                body.as_bytes(),
                !req.is_head(),
                req.connection(),
            )?;
            if !req.keep_alive {
                return Ok(());
            }
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
}
