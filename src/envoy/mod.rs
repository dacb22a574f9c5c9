//! The proxy-wasm shell for Envoy (and Istio, Envoy Gateway).
//!
//! - [`cache`]: the per-worker LRU of looked-up keys, pure.
//! - [`live`]: the live-snapshot protocol between worker VMs (lease, shared-data
//!   framing, jitter), pure.
//! - [`wire`]: the proxy-wasm header-map encoding, parsed without panicking.
//!   Pure, so it is tested natively.
//! - `abi` (wasm only): small `Result`-returning wrappers over the raw host
//!   functions. The SDK's `hostcalls` panic on an unexpected status and on a
//!   non-UTF-8 header value; a panic kills the VM and every request on the
//!   worker, so the request path never goes through them.
//! - `filter` (wasm only): the root and HTTP contexts.

pub mod cache;
pub mod live;
pub mod wire;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod abi;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod filter;
