//! `echo-upstream`: a tiny HTTP/1.1 origin (hyper on a single-threaded tokio runtime) used as
//! Envoy's upstream in tests, demos and benchmarks.
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
//!   strings; bytes that are not UTF-8 become U+FFFD). Keys are sorted.
//! * HEAD gets the same headers and no body.
//!
//! Connections are keep-alive (Envoy pools upstream connections) and all served by one thread.
//! Request bodies (`content-length` or `transfer-encoding: chunked`, trailers included) are read
//! and discarded, 1 MiB at most (413 beyond, and the connection is closed); hyper answers
//! `expect: 100-continue`. The connection is only closed when the client asks for it
//! (`connection: close`, or HTTP/1.0 without `connection: keep-alive`), on EOF, or on a
//! malformed request, which hyper answers with an empty 400 first.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    echo::main()
}

// The crate's tests are also built for wasm targets, which build every binary.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod echo {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, Limited};
    use hyper::body::Incoming;
    use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use std::collections::BTreeMap;
    use std::convert::Infallible;
    use std::io::{self, Write};
    use std::process::ExitCode;
    use std::time::Duration;
    use tokio::net::TcpListener;

    /// Largest request body read (and discarded).
    const MAX_BODY: usize = 1024 * 1024;

    pub fn main() -> ExitCode {
        let listen = match parse_args(std::env::args().skip(1)) {
            Ok(addr) => addr,
            Err(msg) => {
                eprintln!("echo-upstream: {msg}");
                eprintln!("usage: echo-upstream [--listen 127.0.0.1:0]");
                return ExitCode::from(2);
            }
        };
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("echo-upstream: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        runtime.block_on(serve(&listen))
    }

    async fn serve(listen: &str) -> ExitCode {
        let listener = match TcpListener::bind(listen).await {
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
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    // Responses are small; avoid Nagle delays between our write and the next
                    // request.
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let conn = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service_fn(echo));
                        if let Err(e) = conn.await {
                            // Resets, early closes of pooled connections and malformed requests
                            // (hyper has answered 400) are routine.
                            if e.is_user() {
                                eprintln!("echo-upstream: connection error: {e}");
                            }
                        }
                    });
                }
                Err(e) => {
                    eprintln!("echo-upstream: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
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

    async fn echo(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let (parts, body) = request.into_parts();
        if Limited::new(body, MAX_BODY).collect().await.is_err() {
            let mut response = reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "{\"error\": \"request body too large or incomplete\"}".into(),
            );
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            return Ok(response);
        }
        Ok(reply(StatusCode::OK, echo_body(&parts)))
    }

    fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
        let length = body.len();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // Also sent for HEAD, whose body hyper leaves out.
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        response
    }

    fn echo_body(parts: &http::request::Parts) -> String {
        let mut joined: BTreeMap<&str, String> = BTreeMap::new();
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            joined
                .entry(name.as_str())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        let headers: serde_json::Map<String, serde_json::Value> = joined
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
            .collect();
        let doc = serde_json::json!({
            "method": parts.method.as_str(),
            "path": parts.uri.to_string(),
            "headers": headers,
        });
        doc.to_string()
    }
}
