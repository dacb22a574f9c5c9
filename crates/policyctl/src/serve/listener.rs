//! Accepting connections, serving each with hyper behind the screen, and shutting down.

use super::answer::{answer, refused, Answer, Reply};
use super::screened::{ConnState, Screened};
use super::state::Server;
use super::{log_line, StartError, IDLE_TIMEOUT, SHUTDOWN_GRACE};
use http::StatusCode;
use hyper::body::Incoming;
use hyper::service::service_fn;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

/// A failed `accept` (out of file descriptors, say) is retried after this long.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// hyper's read buffer limit; the screen passes on heads of at most 32 KiB.
const HYPER_BUFFER: usize = 64 * 1024;

/// Accepts connections until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn serve(
    server: Arc<Server>,
    listener: std::net::TcpListener,
    local: SocketAddr,
) -> Result<(), StartError> {
    let listener = TcpListener::from_std(listener).map_err(|source| StartError::Listen {
        addr: local.to_string(),
        source,
    })?;
    let signals = Signals::new().map_err(StartError::Signals)?;
    if !log_line(&format!("listening on {local}")) {
        return Err(StartError::Stdout);
    }
    // Every connection task holds a receiver: a value sent asks them to finish, and the channel
    // closes when the last one has.
    let (shutdown, connections) = watch::channel(());
    let signal_name = accept_until_signal(&server, &listener, &connections, signals).await;
    drop(listener);
    drop(connections);
    shut_down(signal_name, shutdown).await;
    Ok(())
}

/// The signals that stop the server.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// Spawns a task for every connection accepted; returns the name of the signal that stopped it.
async fn accept_until_signal(
    server: &Arc<Server>,
    listener: &TcpListener,
    connections: &watch::Receiver<()>,
    mut signals: Signals,
) -> &'static str {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(Arc::clone(server), stream, connections.clone()));
                }
                Err(e) => {
                    eprintln!("policyctl serve: accept: {e}");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            _ = signals.term.recv() => return "SIGTERM",
            _ = signals.int.recv() => return "SIGINT",
        }
    }
}

/// Asks every connection to finish, waits for them (at most [`SHUTDOWN_GRACE`]) and says so.
async fn shut_down(signal_name: &str, shutdown: watch::Sender<()>) {
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

/// Answers one request on the blocking pool (file checks, the request log).
async fn respond(
    server: Arc<Server>,
    state: Arc<ConnState>,
    request: hyper::Request<Incoming>,
) -> Result<Reply, Infallible> {
    let refusal = state.next_request();
    // The screen lets no request with a body through: there is nothing to read.
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
