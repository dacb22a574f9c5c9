//! The proxy-wasm shell for Envoy (and Istio, Envoy Gateway).
//!
//! Pure, tested natively:
//! - [`inbound`]: the request headers as the filter reads them.
//! - [`key_lookup`]: the per-worker key-lookup state machine (cache,
//!   single flight per digest, limits) and how an answer is classified.
//! - [`live`]: the live-snapshot protocol between worker VMs (lease,
//!   shared-data framing, jitter, signed sequences).
//! - [`ranged`]: one snapshot fetch in parts (`Range`), as a state machine.
//! - [`tier_cache`]: the keys a worker has read from the key tier.
//! - [`wire`]: the proxy-wasm header-map encoding, parsed without panicking.
//!
//! Host side (wasm32-wasip1 only):
//! - `abi`: the only code that calls the host, `Result`-returning wrappers.
//! - `exports`: the entry points the host calls; `dispatch`: the contexts.
//! - `root`: configuration, snapshot polling, key-lookup callouts;
//!   `publish`: a fetched snapshot published to the other VMs (key tier,
//!   keyless snapshot, meta) and the replaced tier emptied;
//!   `plugin`: the state requests share; `stream`: one request;
//!   `metrics`: counters and gauges.
//!
//! No proxy-wasm SDK: its dispatcher and host calls panic (an unexpected
//! status, an unknown callout token, a non-UTF-8 header value), and a panic
//! kills the VM and every request on the worker.

pub mod claims;
pub mod decision_log;
pub mod inbound;
pub mod key_lookup;
pub mod live;
pub mod ranged;
pub mod tier_cache;
pub mod wire;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod abi;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod dispatch;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod exports;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod incoming;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod metrics;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod plugin;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod publish;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod root;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod shadow;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod source;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod stream;
