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
mod echo;
