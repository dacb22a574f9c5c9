//! The server: hyper on one thread, every request answered with its own echo.

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
use tokio::net::{TcpListener, TcpStream};

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
    let listener = match bind_and_announce(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("echo-upstream: {e}");
            return ExitCode::FAILURE;
        }
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream));
            }
            Err(e) => {
                eprintln!("echo-upstream: accept: {e}");
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Binds `listen` and prints the one stdout line `listening on IP:PORT`, from which a parent
/// learns the port.
async fn bind_and_announce(listen: &str) -> io::Result<TcpListener> {
    let context = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| context(&format!("cannot bind {listen}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| context("local_addr", e))?;
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {local}")
        .and_then(|()| out.flush())
        .map_err(|e| context("cannot write to stdout", e))?;
    Ok(listener)
}

async fn serve_connection(stream: TcpStream) {
    // Responses are small; avoid Nagle delays between our write and the next request.
    let _ = stream.set_nodelay(true);
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(echo));
    if let Err(e) = conn.await {
        // Resets, early closes of pooled connections and malformed requests (hyper has
        // answered 400) are routine.
        if e.is_user() {
            eprintln!("echo-upstream: connection error: {e}");
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
