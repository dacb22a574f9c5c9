//! `policyctl diff --json`: the report as one JSON object (its shape is in
//! the README), written as it is serialised: a change that reaches every
//! principal lists each of them, and a tree of values would hold them all
//! several times over.

use super::report::{Report, Row};
use serde::ser::{Serialize, Serializer};
use std::io::Write;
use tenantgate_policy::diff::{ChangeKind, Outcome, Principal};
use tenantgate_policy::hash_key_hex;

#[derive(serde::Serialize)]
struct Document<'r> {
    old: Revision<'r>,
    new: Revision<'r>,
    now: String,
    space: Space<'r>,
    changed: Counts,
    summary: Vec<String>,
    tenants: Vec<Tenant<'r>>,
}

#[derive(serde::Serialize)]
struct Revision<'r> {
    revision: &'r str,
}

#[derive(serde::Serialize)]
struct Space<'r> {
    principals: usize,
    requests: usize,
    environments: Vec<Option<&'r str>>,
    points: usize,
}

#[derive(serde::Serialize)]
struct Counts {
    gain: usize,
    loss: usize,
    reason: usize,
}

#[derive(serde::Serialize)]
struct Tenant<'r> {
    tenant: &'r str,
    changes: Vec<Change<'r>>,
}

#[derive(serde::Serialize)]
struct Change<'r> {
    kind: &'static str,
    route: &'r str,
    class: &'static str,
    method: &'r str,
    host: &'r str,
    path: &'r str,
    selector: Option<&'r str>,
    environments: Vec<Option<&'r str>>,
    before: Decision<'r>,
    after: Decision<'r>,
    principals: Principals<'r>,
}

#[derive(serde::Serialize)]
struct Decision<'r> {
    decision: &'static str,
    status: u16,
    reason: Option<&'static str>,
    route: Option<&'r str>,
    tenant: Option<&'r str>,
}

/// A row's principals, each serialised when it is written.
struct Principals<'r> {
    report: &'r Report<'r>,
    list: &'r [u32],
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum PrincipalJson<'r> {
    User {
        user: Option<&'r str>,
    },
    Key {
        key: Option<&'r str>,
        sha256: String,
        app: &'r str,
    },
}

impl Serialize for Principals<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let report = self.report;
        serializer.collect_seq(self.list.iter().filter_map(|&p| principal(report, p)))
    }
}

fn principal<'r>(report: &'r Report<'_>, p: u32) -> Option<PrincipalJson<'r>> {
    Some(match report.diff.space.principals.get(p as usize)? {
        Principal::User(id) => PrincipalJson::User { user: Some(id) },
        Principal::UnknownUser => PrincipalJson::User { user: None },
        Principal::Key { digest, app } => PrincipalJson::Key {
            key: report.key_ids.get(digest).map(String::as_str),
            sha256: hash_key_hex(digest),
            app,
        },
    })
}

/// Writes the report as one JSON object and a newline.
pub fn write(report: &Report<'_>, out: &mut impl Write) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, &document(report)).map_err(std::io::Error::from)?;
    writeln!(out)
}

fn document<'r>(report: &'r Report<'r>) -> Document<'r> {
    let space = &report.diff.space;
    let [old, new] = report.revisions;
    let tenants = report
        .tenants
        .iter()
        .map(|(tenant, rows)| Tenant {
            tenant,
            changes: rows.iter().map(|row| change(report, row)).collect(),
        })
        .collect();
    Document {
        old: Revision { revision: old },
        new: Revision { revision: new },
        now: report.now.to_string(),
        space: Space {
            principals: space.principals.len(),
            requests: space.probes.len(),
            environments: space.environments.iter().map(|e| e.as_deref()).collect(),
            points: space.principals.len() * space.probes.len() * space.environments.len(),
        },
        changed: Counts {
            gain: report.diff.count(ChangeKind::Gain),
            loss: report.diff.count(ChangeKind::Loss),
            reason: report.diff.count(ChangeKind::Reason),
        },
        summary: report.summary(),
        tenants,
    }
}

fn change<'r>(report: &'r Report<'r>, row: &'r Row<'r>) -> Change<'r> {
    let probe = row.probe;
    let environments = row
        .environments
        .iter()
        .filter_map(|&e| report.diff.space.environments.get(e as usize))
        .map(|e| e.as_deref())
        .collect();
    Change {
        kind: row.kind().code(),
        route: &probe.route,
        class: probe.class.code(),
        method: &probe.method,
        host: &probe.host,
        path: &probe.path,
        selector: probe.selector.as_deref(),
        environments,
        before: decision(row.before),
        after: decision(row.after),
        principals: Principals {
            report,
            list: row.principals,
        },
    }
}

fn decision(outcome: &Outcome) -> Decision<'_> {
    Decision {
        decision: if outcome.allowed() { "allow" } else { "deny" },
        status: outcome.status(),
        reason: outcome.reason.map(|r| r.code()),
        route: outcome.route.as_deref(),
        tenant: outcome.tenant.as_deref(),
    }
}
