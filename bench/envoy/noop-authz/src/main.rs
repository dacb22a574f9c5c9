//! `noop-authz`: an Envoy `ext_authz` HTTP authorization service that allows everything.
//!
//! Usage: `noop-authz [--listen 127.0.0.1:0]`
//!
//! It is the floor of every external policy decision point (OPA-Envoy, Authorino, Cerbos, ...):
//! Envoy pays for the check request and the round trip over loopback, the service for
//! accepting, parsing and answering it, and no policy is evaluated at all. Every request, whatever
//! its method and path, is answered `200 OK` with an empty body; Envoy's HTTP `ext_authz` takes a
//! 200 as "allow".
//!
//! After binding, exactly one line `listening on IP:PORT` is printed on stdout (and flushed), so
//! bench/envoy/run.sh learns the ephemeral port. One thread (a current-thread tokio runtime), so
//! the process fits on the one core it is pinned to and its CPU time is the service's. No signal
//! handling of its own: SIGTERM (default disposition) ends it.

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let listen = match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => "127.0.0.1:0".to_string(),
        (Some("--listen"), Some(addr), None) => addr,
        _ => {
            eprintln!("usage: noop-authz [--listen 127.0.0.1:0]");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("noop-authz: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(&listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("noop-authz: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: &str) -> io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {}", listener.local_addr()?)?;
    out.flush()?;
    drop(out);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream));
            }
            // Out of file descriptors and the like: say so, do not spin, keep serving.
            Err(e) => {
                eprintln!("noop-authz: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream) {
    // Envoy pools these connections and sends one small check at a time on each: no Nagle delay.
    let _ = stream.set_nodelay(true);
    let service = service_fn(|_: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
    });
    // Resets and closes of pooled connections are routine; nothing to report.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
