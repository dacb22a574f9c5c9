//! What a decision resolved, and what the host does with it: the
//! [`Decision`], its annotations, the [`Verdict`] (answer or forward) and the
//! `policyctl explain` object.

use crate::reason::Reason;
use crate::records::{Grants, OrgEntry};
use std::borrow::Cow;

/// Inbound headers removed from every request, whatever the decision: the
/// annotations and the audit verdict, so that a client can never forge them.
/// Every spelling an upstream may fold into one of them is removed too
/// ([`is_annotation_header`]). `x-tenant-plan` (x3) is stripped whether or
/// not [`Annotations::plan`] sets it.
pub const STRIPPED_HEADERS: [&str; 8] = [
    "x-tenant-id",
    "x-tenant-handle",
    "x-tenant-plan",
    "x-tenant-teams",
    "x-tenant-roles",
    "x-principal",
    "x-policy-revision",
    "x-policy-decision",
];

/// Enforce denies; audit lets everything through and marks what it would deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny what the policy denies.
    #[default]
    Enforce,
    /// Let everything through; mark would-be denials (`x-policy-decision`).
    Audit,
}

/// Annotations beyond the contract's set, each turned on in the plugin
/// configuration (`"annotations": {"plan": true}`, x3). All are off by
/// default: each is one more header write per allowed request. Their inbound
/// copies are stripped either way ([`STRIPPED_HEADERS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Annotations {
    /// `x-tenant-plan: paid|evaluation`: the resolved tenant's `type`, for a
    /// rate limit that reads it (Envoy's `local_ratelimit` descriptors).
    #[serde(default)]
    pub plan: bool,
}

/// What the policy decided, with everything resolved up to the deciding step.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    /// `None` when the request is allowed.
    pub reason: Option<Reason>,
    /// The matched route's id (`None` before step 1 matched one).
    pub route: Option<&'a str>,
    /// The matched route is public (step 2): only tenant and revision annotate it.
    pub public: bool,
    pub(crate) tenant: Option<&'a OrgEntry>,
    /// The authenticated caller, spec §3 form (`user:<email>`, `app:<id>`, ...).
    pub principal: Option<Cow<'a, str>>,
    pub(crate) grants: Option<&'a Grants>,
    /// The snapshot's revision (`None` only when no snapshot is loaded).
    pub revision: Option<&'a str>,
    /// The path without the API key query parameter, when it had one: the
    /// host sets it whatever the decision, so that neither the upstream nor
    /// an access log of a denied request ever sees the key.
    pub forward_path: Option<&'a [u8]>,
}

/// What the host must do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'d> {
    /// Replace the path if given (access logs read it), then answer locally;
    /// the request does not reach the upstream.
    Respond {
        /// 401, 403, 404, 400 or 503 (spec §4).
        status: u16,
        /// The stable JSON deny body.
        body: &'static str,
        /// The path without the API key parameter, when it had one.
        path: Option<&'d [u8]>,
    },
    /// Strip [`STRIPPED_HEADERS`], set `headers`, replace the path if given, forward.
    Forward {
        /// The annotations (and, in audit mode, the would-be verdict).
        headers: Vec<(&'static str, &'d str)>,
        /// The path without the API key parameter, when it had one.
        path: Option<&'d [u8]>,
    },
}

impl<'a> Decision<'a> {
    pub(crate) fn new(revision: Option<&'a str>, forward_path: Option<&'a [u8]>) -> Self {
        Decision {
            reason: None,
            route: None,
            public: false,
            tenant: None,
            principal: None,
            grants: None,
            revision,
            forward_path,
        }
    }

    /// Step 0: no snapshot is loaded.
    pub fn no_policy(forward_path: Option<&'a [u8]>) -> Self {
        Decision {
            reason: Some(Reason::NoPolicy),
            ..Decision::new(None, forward_path)
        }
    }

    /// The same resolution, denied for `reason` (the deciding step's, or a
    /// shell's own, such as a failed key lookup).
    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }

    /// No step denied.
    pub fn allowed(&self) -> bool {
        self.reason.is_none()
    }

    /// The HTTP status of the decision: 200 when allowed.
    pub fn status(&self) -> u16 {
        self.reason.map_or(200, Reason::status)
    }

    /// The resolved tenant's id (`x-tenant-id`).
    pub fn tenant_id(&self) -> Option<&'a str> {
        self.tenant.map(|t| &*t.id)
    }

    /// The resolved tenant's handle (`x-tenant-handle`).
    pub fn tenant_handle(&self) -> Option<&'a str> {
        self.tenant.map(|t| &*t.handle)
    }

    /// The resolved tenant's plan (`x-tenant-plan`): `paid` or `evaluation`.
    pub fn plan(&self) -> Option<&'static str> {
        self.tenant.map(plan_of)
    }

    /// The tenant's teams the principal holds a right on (`["*"]` for a `"*"` right).
    pub fn teams(&self) -> impl Iterator<Item = &'a str> {
        self.grants.into_iter().flat_map(|g| g.teams())
    }

    /// The effective roles in the tenant, sorted.
    pub fn roles(&self) -> impl Iterator<Item = &'a str> {
        self.grants.into_iter().flat_map(|g| g.roles())
    }

    /// The annotation headers to set toward the upstream in `mode`.
    ///
    /// An allowed request gets the full set of spec §3 (a public route only the
    /// revision and a concrete tenant). A denied request gets none in enforce mode;
    /// in audit mode it gets what was resolved before the failing step, plus
    /// `x-policy-decision: deny; reason=<code>`.
    pub fn annotations(&self, mode: Mode) -> Vec<(&'static str, &str)> {
        self.annotations_with(mode, Annotations::default())
    }

    /// [`Decision::annotations`] plus the `extra` ones configured: with
    /// `plan`, `x-tenant-plan` follows `x-tenant-handle` wherever the tenant
    /// is annotated.
    pub fn annotations_with(&self, mode: Mode, extra: Annotations) -> Vec<(&'static str, &str)> {
        if self.reason.is_some() && mode == Mode::Enforce {
            return Vec::new();
        }
        let mut headers = Vec::with_capacity(8);
        if let Some(tenant) = self.tenant {
            headers.push(("x-tenant-id", &*tenant.id));
            headers.push(("x-tenant-handle", &*tenant.handle));
            if extra.plan {
                headers.push(("x-tenant-plan", plan_of(tenant)));
            }
        }
        if !self.public {
            if let Some(grants) = self.grants {
                headers.push(("x-tenant-teams", &*grants.teams_header));
                headers.push(("x-tenant-roles", &*grants.roles_header));
            }
            if let Some(principal) = &self.principal {
                headers.push(("x-principal", principal.as_ref()));
            }
        }
        if let Some(revision) = self.revision {
            headers.push(("x-policy-revision", revision));
        }
        if let Some(reason) = self.reason {
            headers.push(("x-policy-decision", reason.audit_header()));
        }
        headers
    }

    /// What the host does: answer with the deny body, or forward annotated.
    pub fn verdict(&self, mode: Mode) -> Verdict<'_> {
        self.verdict_with(mode, Annotations::default())
    }

    /// [`Decision::verdict`] with the `extra` annotations configured.
    pub fn verdict_with(&self, mode: Mode, extra: Annotations) -> Verdict<'_> {
        match self.reason {
            Some(reason) if mode == Mode::Enforce => Verdict::Respond {
                status: reason.status(),
                body: reason.body(),
                path: self.forward_path,
            },
            _ => Verdict::Forward {
                headers: self.annotations_with(mode, extra),
                path: self.forward_path,
            },
        }
    }

    /// The `policyctl explain` object of spec §4, fields in the spec's order.
    pub fn explain(&self, mode: Mode) -> Explain<'_> {
        self.explain_with(mode, Annotations::default())
    }

    /// [`Decision::explain`] whose `headers` include the `extra` annotations
    /// configured.
    pub fn explain_with(&self, mode: Mode, extra: Annotations) -> Explain<'_> {
        Explain {
            decision: if self.allowed() { "allow" } else { "deny" },
            status: self.status(),
            reason: self.reason.map(Reason::code),
            route: self.route,
            tenant: self.tenant_id(),
            principal: self.principal.as_deref(),
            teams: self.teams().collect(),
            roles: self.roles().collect(),
            headers: HeaderMap(self.annotations_with(mode, extra)),
        }
    }
}

/// The `policyctl explain` output; serialize it with `serde_json`.
#[derive(Debug, serde::Serialize)]
pub struct Explain<'d> {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The HTTP status the gateway answers (200 when allowed).
    pub status: u16,
    /// The stable reason code of a denial.
    pub reason: Option<&'static str>,
    /// The matched route's id.
    pub route: Option<&'d str>,
    /// The resolved tenant's id.
    pub tenant: Option<&'d str>,
    /// The authenticated caller.
    pub principal: Option<&'d str>,
    /// The tenant's teams the principal holds a right on.
    pub teams: Vec<&'d str>,
    /// The effective roles in the tenant, sorted.
    pub roles: Vec<&'d str>,
    /// The headers set toward the upstream, in order.
    pub headers: HeaderMap<'d>,
}

/// Header pairs serialized as a JSON object, in order.
#[derive(Debug)]
pub struct HeaderMap<'d>(pub Vec<(&'d str, &'d str)>);

impl serde::Serialize for HeaderMap<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// An organization's `type` as `x-tenant-plan` says it.
fn plan_of(tenant: &OrgEntry) -> &'static str {
    if tenant.evaluation {
        "evaluation"
    } else {
        "paid"
    }
}

/// GET, HEAD and OPTIONS, compared upper-case; every other method is a write.
pub fn is_safe_method(method: &str) -> bool {
    ["GET", "HEAD", "OPTIONS"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
}

/// Whether a header `name` is, or reads upstream as, one of
/// [`STRIPPED_HEADERS`]: compared without case and with `_` and `.` read as
/// `-`, as CGI, WSGI, PHP and Rack servers fold header names (`x_tenant_id`
/// becomes `HTTP_X_TENANT_ID`, exactly what `x-tenant-id` becomes).
pub fn is_annotation_header(name: &[u8]) -> bool {
    let fold = |b: u8| match b {
        b'_' | b'.' => b'-',
        other => other.to_ascii_lowercase(),
    };
    // Every annotation starts with `x`: most headers stop at the first byte.
    name.first().is_some_and(|&b| fold(b) == b'x')
        && STRIPPED_HEADERS.iter().any(|wanted| {
            wanted.len() == name.len() && wanted.bytes().zip(name).all(|(w, &n)| w == fold(n))
        })
}
