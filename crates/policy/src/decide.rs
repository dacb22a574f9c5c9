//! The decision of spec §3: [`decide`] runs the steps ([`steps`]) in order;
//! the first that fails decides. What it resolved and what the host does
//! with it are in [`verdict`]; who is calling, in [`caller`].

mod caller;
mod record;
mod steps;
mod verdict;

pub use caller::{GatewayCaller, GatewayLocation, TokenCaller};
pub use verdict::{
    is_annotation_header, is_safe_method, Annotations, Decision, Explain, HeaderMap, Mode, Verdict,
    STRIPPED_HEADERS,
};

use crate::compile::keys::ExternalKey;
use crate::request::Request;
use crate::snapshot::Snapshot;
use crate::time::Timestamp;

/// What a decision depends on besides the snapshot and the request: the
/// clock and the gateway's environment (step 10, 11), and what a host shell
/// knows that the snapshot does not (a looked-up key, a caller the gateway
/// authenticated).
#[derive(Debug, Clone, Copy)]
pub struct Context<'c> {
    /// The current time (the core reads no clock).
    pub now: Timestamp,
    /// The gateway's configured environment, if any.
    pub environment: Option<&'c str>,
    /// A key the snapshot does not ship, resolved elsewhere (the filter's key
    /// lookup): decided like a shipped key when the request carries it.
    pub external_key: Option<&'c ExternalKey>,
    /// A caller the host gateway authenticated itself (Otoroshi).
    pub gateway: Option<&'c GatewayCaller>,
    /// The caller a verified token names (x3).
    pub token: Option<&'c TokenCaller>,
}

impl<'c> Context<'c> {
    /// At `now`, in `environment`, with nothing else known.
    pub fn new(now: Timestamp, environment: Option<&'c str>) -> Context<'c> {
        Context {
            now,
            environment,
            external_key: None,
            gateway: None,
            token: None,
        }
    }

    /// With a key resolved outside the snapshot.
    pub fn with_external_key(self, external_key: Option<&'c ExternalKey>) -> Context<'c> {
        Context {
            external_key,
            ..self
        }
    }

    /// With a caller the gateway authenticated.
    pub fn with_gateway(self, gateway: Option<&'c GatewayCaller>) -> Context<'c> {
        Context { gateway, ..self }
    }

    /// With the caller of a verified token.
    pub fn with_token(self, token: Option<&'c TokenCaller>) -> Context<'c> {
        Context { token, ..self }
    }
}

/// Decides one request against a snapshot. Never panics; anything
/// unresolvable denies.
pub fn decide<'a>(
    snapshot: &'a Snapshot,
    request: &'a Request<'_>,
    context: &Context<'a>,
) -> Decision<'a> {
    let mut decision = Decision::new(Some(&snapshot.revision), request.forward_path.as_deref());
    match steps::run(snapshot, request, context, &mut decision) {
        Ok(()) => decision,
        Err(reason) => decision.with_reason(reason),
    }
}
