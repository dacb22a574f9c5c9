//! tenantgate: multi-tenant access policy for API gateways.
//!
//! - [`policy`] is the core: snapshot documents, validation, compilation into an
//!   indexed [`policy::Snapshot`] and [`policy::decide`]. It performs no I/O, reads no
//!   clock and knows nothing about any proxy.
//! - [`config`] is the plugin configuration shared by every host shell.
//! - `envoy` (wasm32-wasip1 only) is the proxy-wasm shell for Envoy, Istio and Envoy Gateway.

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod config;
pub mod policy;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod envoy;
