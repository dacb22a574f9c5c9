//! tenantgate: multi-tenant access policy for API gateways.
//!
//! - [`policy`] is the core: snapshot documents, validation, compilation into an
//!   indexed [`policy::Snapshot`] and [`policy::decide`]. It performs no I/O, reads no
//!   clock and knows nothing about any proxy.
//! - [`config`] is the plugin configuration shared by every host shell.
//! - [`envoy`] is the proxy-wasm shell for Envoy, Istio and Envoy Gateway (its host
//!   side compiles only for wasm32-wasip1).

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod config;
#[cfg(feature = "otoroshi")]
pub mod otoroshi;
pub mod policy;

pub mod envoy;
