//! One request: read it, decide, act. Runs when its headers arrive, and again
//! (resumed by the root context) when the key lookup it waits for answers.

use super::abi::{self, Level};
use super::decision_log::{Admit, DecisionLogger};
use super::inbound::Inbound;
use super::key_lookup::{Answer, Ask};
use super::plugin::{Loaded, Plugin, TierLookup};
use super::shadow::Shadow;
use super::wire;
use std::rc::Rc;
use tenantgate_policy::config::FilterState;
use tenantgate_policy::token::VerifiedToken;
use tenantgate_policy::{
    self as policy, Context, Decision, ExternalKey, Reason, Request, Timestamp, TokenCaller,
    Verdict,
};

/// What the host does with the request after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue = 0,
    Pause = 1,
}

pub struct Stream {
    id: u32,
    plugin: Option<Rc<Plugin>>,
}

/// The key tier the snapshot reads was replaced while deciding.
struct Stale;

/// A request as the core sees it, the forged annotations to remove, and the clock.
struct Read<'b> {
    forged: &'b [&'b [u8]],
    request_id: Option<&'b [u8]>,
    request: Request<'b>,
    now_nanos: i64,
    /// The verified token's claims, when a token source is configured and
    /// `jwt_authn` left a payload.
    token: Option<VerifiedToken>,
}

impl Read<'_> {
    /// The decision's context against `snapshot`: the clock, the
    /// environment, and the caller the token names.
    fn context<'c>(&self, plugin: &'c Plugin, token: Option<&'c TokenCaller>) -> Context<'c> {
        let at = Timestamp::from_unix_nanos(self.now_nanos);
        Context::new(at, plugin.environment.as_deref()).with_token(token)
    }

    fn token_caller(&self, plugin: &Plugin, snapshot: &policy::Snapshot) -> Option<TokenCaller> {
        let source = &plugin.token.as_ref()?.source;
        let token = self.token.as_ref()?;
        Some(TokenCaller::resolve(snapshot, token, source))
    }
}

impl Stream {
    pub fn new(id: u32, plugin: Option<Rc<Plugin>>) -> Stream {
        Stream { id, plugin }
    }

    pub fn on_request_headers(&self) -> Next {
        self.evaluate(None)
    }

    /// The key lookup this request waited for answered: decide again with it.
    pub fn resume(&self, answer: &Answer<Rc<ExternalKey>>) {
        if self.evaluate(Some(answer)) == Next::Continue {
            if let Err(e) = abi::resume_request() {
                abi::log(
                    Level::Error,
                    &format!("tenantgate: cannot resume the request: {e}"),
                );
            }
        }
    }

    /// The request ended (perhaps while waiting for a lookup).
    pub fn on_delete(&self) {
        if let Some(plugin) = &self.plugin {
            if let Ok(mut lookups) = plugin.lookups.try_borrow_mut() {
                lookups.forget(self.id);
            }
        }
    }

    fn evaluate(&self, answer: Option<&Answer<Rc<ExternalKey>>>) -> Next {
        let Some(plugin) = self.plugin.as_deref() else {
            return deny(Reason::NoPolicy, None);
        };
        let buffer = match abi::request_header_buffer() {
            Ok(buffer) => buffer,
            Err(e) => return host_error(&format!("cannot read request headers: {e}"), None),
        };
        let Some(pairs) = wire::parse_header_map(&buffer) else {
            return host_error("malformed request header map", None);
        };
        let inbound = Inbound::read(&pairs, &plugin.sources);
        let request = Request::from_parts(
            &plugin.sources,
            &inbound.method,
            &inbound.authority,
            inbound.path,
            &inbound.relevant,
        );
        let Ok(now_nanos) = abi::now_nanos() else {
            return host_error("cannot read the clock", request.forward_path.as_deref());
        };
        // An API key wins over a token (step 4): no host call for one then.
        let token = match read_token(plugin, request.api_key.is_some()) {
            Ok(token) => token,
            Err(e) => return host_error(&e, request.forward_path.as_deref()),
        };
        let read = Read {
            forged: &inbound.forged,
            request_id: inbound.request_id,
            request,
            now_nanos,
            token,
        };
        // A key tier replaced under this request: once more with the new one.
        for _ in 0..2 {
            let Some(loaded) = plugin.usable(now_nanos / 1_000_000) else {
                return no_snapshot(plugin, &read);
            };
            match self.decide(plugin, &loaded, &read, answer) {
                Ok(next) => return next,
                Err(Stale) => plugin.pick_up_new_tier(),
            }
        }
        let path = read.request.forward_path.as_deref();
        act(plugin, &Decision::no_policy(path), &read)
    }

    fn decide(
        &self,
        plugin: &Plugin,
        loaded: &Loaded,
        read: &Read<'_>,
        answer: Option<&Answer<Rc<ExternalKey>>>,
    ) -> Result<Next, Stale> {
        let token = read.token_caller(plugin, &loaded.snapshot);
        let context = read.context(plugin, token.as_ref());
        let raw_key = read.request.api_key.as_deref();
        // With a key tier the snapshot holds no key: the request's key is
        // read from the tier first, so that the request is decided once.
        let tier_digest = raw_key
            .filter(|_| loaded.tier.is_some() && answer.is_none())
            .map(policy::key_digest);
        let tiered = match &tier_digest {
            Some(digest) => plugin.tier_key(loaded, digest),
            None => TierLookup::Absent,
        };
        let found = match &tiered {
            TierLookup::Found(key) => Some(key.as_ref()),
            TierLookup::Stale => return Err(Stale),
            TierLookup::Absent | TierLookup::Broken => None,
        };
        let decision = policy::decide(
            &loaded.snapshot,
            &read.request,
            &context.with_external_key(found),
        );
        // A key in neither the snapshot nor its tier may be known to the
        // lookup service; an unreadable tier decides nothing.
        let unknown_key = found.is_none() && decision.reason == Some(Reason::InvalidApiKey);
        let (true, Some(raw_key)) = (unknown_key, raw_key) else {
            return Ok(act(plugin, &decision, read));
        };
        if matches!(tiered, TierLookup::Broken) {
            let broken = decision.with_reason(Reason::NoPolicy);
            return Ok(act(plugin, &broken, read));
        }
        if plugin.key_lookup.is_none() {
            return Ok(act(plugin, &decision, read));
        }
        let digest = tier_digest.unwrap_or_else(|| policy::key_digest(raw_key));
        Ok(self.look_up(plugin, loaded, read, answer, digest, decision))
    }

    /// The key is in neither the snapshot nor its tier: ask the lookup
    /// service (or use its answer, when the request resumes with it).
    fn look_up(
        &self,
        plugin: &Plugin,
        loaded: &Loaded,
        read: &Read<'_>,
        answer: Option<&Answer<Rc<ExternalKey>>>,
        digest: [u8; 32],
        decision: Decision<'_>,
    ) -> Next {
        let token = read.token_caller(plugin, &loaded.snapshot);
        let context = read.context(plugin, token.as_ref());
        let ask = match answer {
            Some(answer) => answered(answer),
            None => self.ask(plugin, &digest, &loaded.etag, read.now_nanos / 1_000_000),
        };
        match ask {
            Ok(Ask::Found(key)) => {
                let found = policy::decide(
                    &loaded.snapshot,
                    &read.request,
                    &context.with_external_key(Some(&key)),
                );
                act(plugin, &found, read)
            }
            Ok(Ask::Absent) => act(plugin, &decision, read),
            Ok(Ask::Join) => Next::Pause,
            Ok(Ask::Dispatch) => match self.dispatch(plugin, digest) {
                Ok(()) => Next::Pause,
                Err(()) => lookup_failed(plugin, &decision, read),
            },
            Ok(Ask::Throttled) => {
                plugin.metrics.bump(plugin.metrics.lookup_throttled);
                let busy = decision.with_reason(Reason::KeyLookupUnavailable);
                act(plugin, &busy, read)
            }
            Err(()) => lookup_failed(plugin, &decision, read),
        }
    }

    fn ask(
        &self,
        plugin: &Plugin,
        digest: &[u8; 32],
        etag: &str,
        now_ms: i64,
    ) -> Result<Ask<Rc<ExternalKey>>, ()> {
        let ask = plugin
            .lookups
            .try_borrow_mut()
            .map_err(|_| ())?
            .ask(digest, etag, now_ms, self.id);
        let metric = match &ask {
            Ask::Found(_) => plugin.metrics.lookup_hit,
            Ask::Absent => plugin.metrics.lookup_negative_hit,
            Ask::Join => plugin.metrics.lookup_joined,
            Ask::Dispatch => plugin.metrics.lookup_miss,
            Ask::Throttled => None,
        };
        plugin.metrics.bump(metric);
        Ok(ask)
    }

    /// Starts the lookup of `digest` as a callout of the root context, so it
    /// outlives this request (others may wait for it too).
    fn dispatch(&self, plugin: &Plugin, digest: [u8; 32]) -> Result<(), ()> {
        let Some(lookup) = &plugin.key_lookup else {
            return Err(());
        };
        let path = format!("{}{}", lookup.path_prefix, policy::hash_key_hex(&digest));
        let headers = [
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", lookup.authority.as_str()),
        ];
        let started = abi::set_effective_context(plugin.root_id)
            .and_then(|()| abi::http_call(&lookup.cluster, &headers, lookup.timeout_ms));
        let back = abi::set_effective_context(self.id);
        match (started, back) {
            (Ok(token), Ok(())) => {
                if let Ok(mut lookups) = plugin.lookups.try_borrow_mut() {
                    lookups.started(digest, token, self.id);
                }
                Ok(())
            }
            (started, _) => {
                let why = started
                    .err()
                    .map_or("cannot return to the request".into(), |e| e.to_string());
                abi::log(
                    Level::Warn,
                    &format!(
                        "tenantgate: cannot look up a key on cluster `{}`: {why}",
                        lookup.cluster
                    ),
                );
                plugin.metrics.bump(plugin.metrics.lookup_failed);
                Err(())
            }
        }
    }
}

/// The answer a resumed request was given, as the cache would have said it.
fn answered(answer: &Answer<Rc<ExternalKey>>) -> Result<Ask<Rc<ExternalKey>>, ()> {
    match answer {
        Answer::Found(key) => Ok(Ask::Found(key.clone())),
        Answer::NotFound | Answer::Invalid => Ok(Ask::Absent),
        Answer::Failed => Err(()),
    }
}

/// No answer from the lookup service (transport failure, timeout, 5xx): the
/// fail policy decides. Only here may `fail_open` let an unknown key through.
fn lookup_failed(plugin: &Plugin, decision: &Decision<'_>, read: &Read<'_>) -> Next {
    if plugin.fail_policy.fail_open {
        plugin.metrics.bump(plugin.metrics.fail_open);
        return forward(read.forged, Vec::new(), decision.forward_path);
    }
    let unavailable = decision.clone().with_reason(Reason::KeyLookupUnavailable);
    act(plugin, &unavailable, read)
}

/// No usable snapshot: 503 `no_policy`, or through unchecked with `fail_open`.
fn no_snapshot(plugin: &Plugin, read: &Read<'_>) -> Next {
    let path = read.request.forward_path.as_deref();
    if plugin.fail_policy.fail_open {
        plugin.metrics.bump(plugin.metrics.fail_open);
        return forward(read.forged, Vec::new(), path);
    }
    act(plugin, &Decision::no_policy(path), read)
}

/// Counts, records and carries out a decision.
fn act(plugin: &Plugin, decision: &Decision<'_>, read: &Read<'_>) -> Next {
    let forged = read.forged;
    plugin.metrics.count(decision.reason, plugin.mode);
    if let Some(logger) = &plugin.decision_log {
        log_decision(plugin, logger, decision, read);
    }
    if let Some(shadow) = &plugin.shadow {
        decide_shadow(plugin, shadow, decision, read);
    }
    let record = match plugin.filter_state {
        FilterState::All => true,
        FilterState::Denials => !decision.allowed(),
        FilterState::None => false,
    };
    if record {
        record_filter_state(decision);
    }
    match decision.verdict_with(plugin.mode, plugin.annotations) {
        // The access log (filter state) and the counters say why; no per-deny
        // log line, which would format a string on every denied request.
        // Forged annotations go first: an access log reading
        // `%REQ(x-tenant-id)%` must not show a client's value on a denial.
        Verdict::Respond { status, body, path } => match remove_forged(forged, &[]) {
            Ok(()) => send_deny(status, body, path),
            Err(e) => host_error(&e, path),
        },
        Verdict::Forward { headers, path } => forward(forged, headers, path),
    }
}

/// Removes forged annotations in every spelling, but those about to be set
/// (setting replaces their exact names anyway).
fn remove_forged(forged: &[&[u8]], set: &[(&str, &str)]) -> Result<(), String> {
    for name in forged {
        let set_by_us = set.iter().any(|(n, _)| n.as_bytes() == *name);
        if !set_by_us {
            abi::remove_request_header(name)
                .map_err(|e| format!("cannot remove a forged annotation: {e}"))?;
        }
    }
    Ok(())
}

/// Removes forged annotations, sets ours, and rewrites `:path` if asked.
fn forward(forged: &[&[u8]], annotations: Vec<(&str, &str)>, path: Option<&[u8]>) -> Next {
    if let Err(e) = remove_forged(forged, &annotations) {
        return host_error(&e, path);
    }
    if let Some(path) = path {
        if let Err(e) = abi::set_request_header(":path", path) {
            return host_error(&format!("cannot rewrite `:path`: {e}"), None);
        }
    }
    for (name, value) in annotations {
        // A forged copy under this exact name is replaced (it was left in
        // place above); any other spelling is gone, so the name is absent and
        // the value is appended, which saves Envoy a lookup per annotation.
        let write = if forged.contains(&name.as_bytes()) {
            abi::set_request_header
        } else {
            abi::add_request_header
        };
        if let Err(e) = write(name, value.as_bytes()) {
            return host_error(&format!("cannot set `{name}`: {e}"), path);
        }
    }
    Next::Continue
}

fn record_filter_state(decision: &Decision<'_>) {
    let fields = [
        (
            "tenantgate.decision",
            Some(if decision.allowed() { "allow" } else { "deny" }),
        ),
        ("tenantgate.reason", decision.reason.map(Reason::code)),
        ("tenantgate.route", decision.route),
        ("tenantgate.tenant", decision.tenant_id()),
        ("tenantgate.principal", decision.principal.as_deref()),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            let _ = abi::set_property(key, value);
        }
    }
}

fn host_error(why: &str, path: Option<&[u8]>) -> Next {
    abi::log(Level::Error, &format!("tenantgate: {why}"));
    deny(Reason::HostError, path)
}

fn deny(reason: Reason, path: Option<&[u8]>) -> Next {
    send_deny(reason.status(), reason.body(), path)
}

/// Answers locally; first takes the API key out of `:path`, which access
/// logs of the denied request read.
fn send_deny(status: u16, body: &str, path: Option<&[u8]>) -> Next {
    if let Some(path) = path {
        if let Err(e) = abi::set_request_header(":path", path) {
            abi::log(
                Level::Error,
                &format!("tenantgate: cannot take the API key out of `:path`: {e}"),
            );
        }
    }
    let headers = [("content-type", "application/json")];
    if let Err(e) = abi::send_local_response(status, "tenantgate_denied", body, &headers) {
        abi::log(
            Level::Error,
            &format!("tenantgate: cannot send the deny response: {e}"),
        );
    }
    Next::Pause
}

/// The verified token's claims, if a token source is configured and the
/// verifying filter left a payload (none: the request carries no token).
fn read_token(plugin: &Plugin, has_key: bool) -> Result<Option<VerifiedToken>, String> {
    let Some(read) = plugin.token.as_ref().filter(|_| !has_key) else {
        return Ok(None);
    };
    match abi::get_property(read.path()) {
        Ok(payload) => Ok(payload.map(|p| read.claims(&p))),
        Err(e) => Err(format!("cannot read the verified token: {e}")),
    }
}

/// Writes a decision's log line if the logger admits it: to Envoy's log
/// (`tenantgate.decision {...}`) and, for access logs, as the filter state
/// `wasm.tenantgate.decision_log`.
fn log_decision(
    plugin: &Plugin,
    logger: &DecisionLogger,
    decision: &Decision<'_>,
    read: &Read<'_>,
) {
    let denied = !decision.allowed();
    match logger.admit(denied, read.now_nanos / 1_000_000, abi::random_u64) {
        Admit::Skip => {}
        Admit::Drop => plugin.metrics.bump(plugin.metrics.log_dropped),
        Admit::Write => {
            let now = Timestamp::from_unix_nanos(read.now_nanos);
            let line = decision.log_line(now, plugin.mode, read.request_id);
            abi::log(Level::Info, &format!("tenantgate.decision {line}"));
            // Envoy stores it as `wasm.tenantgate.decision_log`.
            let _ = abi::set_property("tenantgate.decision_log", &line);
        }
    }
}

/// For a sampled request: decides it again with the shadow revision and
/// compares (issue 14). Never changes what is enforced. Decisions the policy
/// did not make (no snapshot, a host or lookup failure) are not compared.
fn decide_shadow(plugin: &Plugin, shadow: &Shadow, live: &Decision<'_>, read: &Read<'_>) {
    let shell_reason = matches!(
        live.reason,
        Some(Reason::NoPolicy | Reason::HostError | Reason::KeyLookupUnavailable)
    );
    let now_ms = read.now_nanos / 1_000_000;
    if shell_reason || !shadow.sampled(now_ms) {
        return;
    }
    let Some(loaded) = shadow.source.current() else {
        return;
    };
    let token = read.token_caller(plugin, &loaded.snapshot);
    let context = read.context(plugin, token.as_ref());
    // A key the shadow holds in its own key tier, read before deciding (as
    // the enforced decision does), so that the request is decided once.
    let tiered = read
        .request
        .api_key
        .as_deref()
        .filter(|_| loaded.tier.is_some())
        .map(|raw_key| {
            shadow
                .source
                .tier_key(&loaded, &policy::key_digest(raw_key))
        });
    let found = match &tiered {
        Some(TierLookup::Found(key)) => Some(key.as_ref()),
        _ => None,
    };
    let context = context.with_external_key(found);
    let decided = policy::decide(&loaded.snapshot, &read.request, &context);
    shadow.compare(live, &decided, now_ms);
}
