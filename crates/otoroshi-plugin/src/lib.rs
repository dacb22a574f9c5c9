//! The Otoroshi shell: an Extism plug-in (`dist/tenantgate-otoroshi.wasm`,
//! target wasm32-unknown-unknown, cargo feature `otoroshi`) over the same core
//! as the Envoy filter, for Otoroshi's `WasmAccessValidator` (export `access`)
//! and `WasmRequestTransformer` (export `transform_request`).
//!
//! Otoroshi builds a fresh instance for every call and passes one JSON string
//! (its plugin context); our settings are that context's `config.config`, the
//! same JSON as the Envoy plugin configuration. Nothing survives between
//! calls, so each call loads its snapshot: an inline JSON one is compiled
//! whole; a compiled one (`snapshot.compiled`, or baked into the module by
//! `policyctl bake`) is only searched for the request's identities, so the
//! call's cost does not grow with the number of keys.
//!
//! - [`input`]: Otoroshi's contexts, read leniently.
//! - [`settings`]: `config.config` → [`tenantgate_policy::config::PluginConfig`] plus the
//!   Otoroshi-only options.
//! - [`shell`]: the exports' logic, pure (bytes in, bytes out).
//! - [`token`]: the payload Otoroshi's JWT verifier accepted, read from the
//!   request's attributes (`sources.token`).
//! - `exports` (wasm32 only): the `extern "C"` exports over `extism-pdk`.
//!
//! Identity: the request's own credentials exactly as in Envoy (API key
//! headers, then the query parameter; the user header; the tenant selector);
//! with `sources.token`, the token Otoroshi's JWT verifier accepted instead of
//! a user header; and Otoroshi's validated apikey and user, placed in the
//! snapshot by its Otoroshi extension (`apps[].otoroshi_client_ids`,
//! `users[].otoroshi_emails`) or, with `otoroshi.loc_fallback`, an unnamed
//! apikey by its `_loc`. Ranking: Otoroshi's apikey, the request's API key,
//! the verified token, Otoroshi's user, the user header.

pub mod input;
pub mod settings;
pub mod shell;
pub mod token;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod baked;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod exports;
