//! A diff as people and CI read it: rows grouped by tenant (a change that is
//! the same in several environments is one row), summary lines, and both as
//! a table or as one JSON object ([`super::json`]; the shape is documented
//! in the README).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use tenantgate_policy::diff::{ChangeKind, Diff, Outcome, Principal, Probe};
use tenantgate_policy::{hash_key_hex, Reason, Timestamp};

/// The host of probes to routes that list none (see `diff::Space`).
const ANY_HOST: &str = "diff.invalid";
/// Principals named in a table row before "+N more".
const NAMED_PER_ROW: usize = 3;
/// Summary lines the table prints (the JSON has them all).
const SUMMARY_LINES: usize = 40;

/// A diff, grouped for reporting.
pub struct Report<'d> {
    pub(super) diff: &'d Diff,
    pub(super) key_ids: &'d HashMap<[u8; 32], String>,
    pub(super) revisions: [&'d str; 2],
    pub(super) now: Timestamp,
    pub(super) tenants: BTreeMap<String, Vec<Row<'d>>>,
}

/// Principals whose decision on a probe changed alike in `environments`.
pub(super) struct Row<'d> {
    pub probe: &'d Probe,
    pub environments: Vec<u32>,
    pub before: &'d Outcome,
    pub after: &'d Outcome,
    pub principals: &'d [u32],
}

impl Row<'_> {
    pub(super) fn kind(&self) -> ChangeKind {
        match (self.before.allowed(), self.after.allowed()) {
            (false, true) => ChangeKind::Gain,
            (true, false) => ChangeKind::Loss,
            _ => ChangeKind::Reason,
        }
    }
}

impl<'d> Report<'d> {
    pub fn new(
        diff: &'d Diff,
        key_ids: &'d HashMap<[u8; 32], String>,
        revisions: [&'d str; 2],
        now: Timestamp,
        reasons: bool,
    ) -> Report<'d> {
        type Merged<'d> = BTreeMap<(u32, &'d Outcome, &'d Outcome, &'d [u32]), Vec<u32>>;
        let mut merged: Merged<'d> = BTreeMap::new();
        let listed = diff
            .changes
            .iter()
            .filter(|c| reasons || c.kind() != ChangeKind::Reason);
        for change in listed {
            let key = (
                change.probe,
                &change.before,
                &change.after,
                &*change.principals,
            );
            merged.entry(key).or_default().push(change.environment);
        }
        let mut tenants: BTreeMap<String, Vec<Row<'d>>> = BTreeMap::new();
        for ((probe, before, after, principals), environments) in merged {
            let Some(probe) = diff.space.probes.get(probe as usize) else {
                continue;
            };
            let tenant = after
                .tenant
                .as_deref()
                .or(before.tenant.as_deref())
                .or(probe.selector.as_deref())
                .unwrap_or("(no tenant)");
            tenants.entry(tenant.to_string()).or_default().push(Row {
                probe,
                environments,
                before,
                after,
                principals,
            });
        }
        Report {
            diff,
            key_ids,
            revisions,
            now,
            tenants,
        }
    }

    /// The counts of changed points (principal × request × environment).
    pub fn counts_text(&self) -> String {
        let [gain, loss, reason] =
            [ChangeKind::Gain, ChangeKind::Loss, ChangeKind::Reason].map(|k| self.diff.count(k));
        format!(
            "{gain} gains, {loss} losses (principal x request x environment); \
             {reason} denials with another reason"
        )
    }

    /// The summary: one line per tenant, kind, method class and route path
    /// (how many principals gain or lose it; with `--reasons`, one line per
    /// tenant for other deny reasons), and one per key that becomes unusable.
    pub fn summary(&self) -> Vec<String> {
        type Target<'t> = (&'t str, ChangeKind, &'t str, String);
        let mut routes: BTreeMap<Target<'_>, BTreeSet<u32>> = BTreeMap::new();
        let mut keys: BTreeSet<String> = BTreeSet::new();
        for (tenant, rows) in &self.tenants {
            for row in rows {
                let (class, path) = match row.kind() {
                    ChangeKind::Reason => ("", String::new()),
                    _ => (row.probe.class.code(), request_path(row.probe)),
                };
                for &p in row.principals {
                    if let Some(line) = self.key_line(p, row) {
                        keys.insert(line);
                        continue;
                    }
                    let target = (&**tenant, row.kind(), class, path.clone());
                    routes.entry(target).or_default().insert(p);
                }
            }
        }
        let mut lines: Vec<String> = routes
            .into_iter()
            .map(|((tenant, kind, class, path), who)| {
                route_line(tenant, kind, class, &path, who.len())
            })
            .collect();
        lines.extend(keys);
        lines
    }

    /// "key K of app A becomes revoked": a key's change that step 5 explains.
    fn key_line(&self, p: u32, row: &Row<'_>) -> Option<String> {
        let Some(Principal::Key { app, .. }) = self.diff.space.principals.get(p as usize) else {
            return None;
        };
        let phrase = match row.after.reason? {
            Reason::ApiKeyRevoked => "becomes revoked",
            Reason::ApiKeyPending => "becomes pending",
            Reason::ApiKeyExpired => "expires",
            Reason::AppRevoked => "is refused: its app is revoked",
            Reason::InvalidApiKey => "is removed",
            _ => return None,
        };
        let name = self.label(p);
        let name = name.strip_prefix("key:").unwrap_or(&name);
        Some(format!("key {name} of app {app} {phrase}"))
    }

    /// `user:<id>`, `user:(unknown)`, `key:<id>` or `key:sha256:<12 hex>`.
    fn label(&self, p: u32) -> String {
        match self.diff.space.principals.get(p as usize) {
            Some(Principal::User(id)) => format!("user:{id}"),
            Some(Principal::UnknownUser) => "user:(unknown)".to_string(),
            Some(Principal::Key { digest, .. }) => match self.key_ids.get(digest) {
                Some(id) => format!("key:{id}"),
                None => format!(
                    "key:sha256:{}",
                    hash_key_hex(digest).get(..12).unwrap_or("")
                ),
            },
            None => "?".to_string(),
        }
    }

    fn environments_text(&self, environments: &[u32]) -> String {
        if environments.len() == self.diff.space.environments.len() {
            return "*".to_string();
        }
        let names: Vec<&str> = environments
            .iter()
            .filter_map(|&e| self.diff.space.environments.get(e as usize))
            .map(|e| e.as_deref().unwrap_or("-"))
            .collect();
        names.join(",")
    }
}

/// The table: a header, rows by tenant, the summary.
impl Report<'_> {
    pub fn table(&self) -> String {
        let space = &self.diff.space;
        let points = space.principals.len() * space.probes.len() * space.environments.len();
        let [old, new] = self.revisions;
        let mut out = format!(
            "policyctl diff: revision {old} -> {new}, decided at {}\n{} principals x {} requests x {} environments = {points} points\n",
            self.now,
            space.principals.len(),
            space.probes.len(),
            space.environments.len(),
        );
        out.push_str(&format!("{}\n", self.counts_text()));
        if self.tenants.is_empty() {
            out.push_str("no access change\n");
            return out;
        }
        for (tenant, rows) in &self.tenants {
            out.push_str(&format!("\n{tenant}\n"));
            let cells: Vec<[String; 6]> = rows.iter().map(|row| self.cells(row)).collect();
            let header =
                ["ROUTE", "REQUEST", "ENV", "BEFORE", "AFTER", "PRINCIPALS"].map(String::from);
            out.push_str(&aligned(&[header], &cells));
        }
        out.push_str("\nsummary\n");
        let summary = self.summary();
        for line in summary.iter().take(SUMMARY_LINES) {
            out.push_str(&format!("  {line}\n"));
        }
        if summary.len() > SUMMARY_LINES {
            out.push_str(&format!(
                "  ... and {} more (--json lists all)\n",
                summary.len() - SUMMARY_LINES
            ));
        }
        out
    }

    fn cells(&self, row: &Row<'_>) -> [String; 6] {
        let mut named: Vec<String> = row
            .principals
            .iter()
            .take(NAMED_PER_ROW)
            .map(|&p| self.label(p))
            .collect();
        if row.principals.len() > NAMED_PER_ROW {
            named.push(format!("+{} more", row.principals.len() - NAMED_PER_ROW));
        }
        [
            row.probe.route.to_string(),
            request_text(row.probe),
            self.environments_text(&row.environments),
            outcome_text(row.before),
            outcome_text(row.after),
            named.join(", "),
        ]
    }
}

fn route_line(tenant: &str, kind: ChangeKind, class: &str, path: &str, count: usize) -> String {
    let (who, s) = if count == 1 {
        ("principal", "s")
    } else {
        ("principals", "")
    };
    match kind {
        ChangeKind::Gain => format!("{count} {who} gain{s} {class} on {path} in {tenant}"),
        ChangeKind::Loss => format!("{count} {who} lose{s} {class} on {path} in {tenant}"),
        ChangeKind::Reason => {
            format!("{count} {who} denied in {tenant} for another reason than before")
        }
    }
}

/// The probe's host (when the route lists one) and path.
fn request_path(probe: &Probe) -> String {
    if &*probe.host == ANY_HOST {
        probe.path.to_string()
    } else {
        format!("{}{}", probe.host, probe.path)
    }
}

fn request_text(probe: &Probe) -> String {
    let selector = probe
        .selector
        .as_deref()
        .map(|s| format!(" [x-tenant-id: {s}]"))
        .unwrap_or_default();
    format!("{} {}{selector}", probe.method, request_path(probe))
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome.reason {
        None => "allow".to_string(),
        Some(reason) => format!("{} {}", reason.status(), reason.code()),
    }
}

/// Rows padded to their columns' widths, two spaces in front.
fn aligned(header: &[[String; 6]], rows: &[[String; 6]]) -> String {
    let mut widths = [0usize; 6];
    for row in header.iter().chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in header.iter().chain(rows) {
        let mut line = String::from(" ");
        for (cell, width) in row.iter().zip(widths) {
            line.push_str(&format!(" {cell:<width$}"));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
