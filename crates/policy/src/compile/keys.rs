//! API keys: shipped in the snapshot ([`Compiler::compile_keys`]), or looked
//! up on demand and compiled against a snapshot ([`compile_external_key`]),
//! by the same code ([`key_entry`]).

use super::Compiler;
use crate::document::ApiKey;
use crate::error::{escape_value, Problem};
use crate::records::{AppEntry, Idx, IdxList, KeyEntry, OrgEntry, TierApp};
use crate::snapshot::Snapshot;
use crate::text::decode_sha256_hex;
use crate::time::Timestamp;
use rustc_hash::FxHashMap;

/// An API key that is not in the snapshot but was resolved elsewhere (the
/// filter's on-demand key lookup, or the key tier), compiled against the
/// snapshot so that it is decided exactly like a key shipped in it.
#[derive(Debug)]
pub struct ExternalKey {
    pub(crate) digest: [u8; 32],
    pub(crate) entry: KeyEntry,
    /// The key's app when the snapshot does not hold its apps (they are in
    /// the key tier with the keys); `None`: the snapshot's own app.
    pub(crate) app: Option<TierApp>,
}

impl ExternalKey {
    /// The SHA-256 of the raw key.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
}

/// Why a looked-up key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalKeyError {
    /// Not an `api_keys` entry (malformed, or an unknown field or status).
    #[error("api key lookup answer: {0}")]
    Malformed(String),
    /// An entry that breaks a rule of the format against this snapshot
    /// (an unknown app, an environment not of its organization, ...).
    #[error("{0}")]
    Invalid(Problem),
}

/// Compiles an `api_keys` entry (JSON) that came from outside the snapshot
/// against it: its app must be in the snapshot and its environments those of
/// the app's organization, as at load time.
pub fn compile_external_key(
    snapshot: &Snapshot,
    json: &str,
) -> Result<ExternalKey, ExternalKeyError> {
    let key: ApiKey =
        serde_json::from_str(json).map_err(|e| ExternalKeyError::Malformed(e.to_string()))?;
    let mut problems = Vec::new();
    let (entry, _) = key_entry(&key, snapshot, &mut problems);
    match problems.into_iter().next() {
        Some(problem) => Err(ExternalKeyError::Invalid(problem)),
        None => Ok(ExternalKey {
            digest: entry.digest,
            entry,
            app: None,
        }),
    }
}

/// What compiling a key needs of its surroundings: the document being
/// compiled, or a compiled snapshot.
pub(crate) trait KeyScope {
    /// The app `id`.
    fn app(&self, id: &str) -> Option<Idx>;
    /// The id and environments of the organization of app `app`.
    fn app_org(&self, app: Idx) -> Option<(&str, &[Idx])>;
    /// The environment `name`.
    fn env(&self, name: &str) -> Option<Idx>;
}

impl KeyScope for Snapshot {
    fn app(&self, id: &str) -> Option<Idx> {
        self.app_by_id.get(&self.apps, id)
    }
    fn app_org(&self, app: Idx) -> Option<(&str, &[Idx])> {
        let org = self.apps.get(app as usize).and_then(|a| self.org(a.org))?;
        Some((&org.id, &org.envs))
    }
    fn env(&self, name: &str) -> Option<Idx> {
        self.envs.get(name).copied()
    }
}

/// The document's apps and organizations as compiled so far.
struct DocumentScope<'s> {
    app_ids: &'s FxHashMap<&'s str, Idx>,
    apps: &'s [AppEntry],
    orgs: &'s [OrgEntry],
    envs: &'s FxHashMap<Box<str>, Idx>,
}

impl KeyScope for DocumentScope<'_> {
    fn app(&self, id: &str) -> Option<Idx> {
        self.app_ids.get(id).copied()
    }
    fn app_org(&self, app: Idx) -> Option<(&str, &[Idx])> {
        let org = self
            .apps
            .get(app as usize)
            .and_then(|a| self.orgs.get(a.org as usize))?;
        Some((&org.id, &org.envs))
    }
    fn env(&self, name: &str) -> Option<Idx> {
        self.envs.get(name).copied()
    }
}

fn key_problem(key: &ApiKey, field: &str, value: &str, what: &str) -> Problem {
    Problem {
        kind: "api_key",
        id: key.id.clone(),
        field: field.into(),
        value: value.into(),
        what: format!("{what} `{}`", escape_value(value)),
    }
}

/// One key, compiled in `scope`, and its digest when `sha256` is one; each
/// broken rule is added to `problems`.
pub(crate) fn key_entry(
    key: &ApiKey,
    scope: &impl KeyScope,
    problems: &mut Vec<Problem>,
) -> (KeyEntry, Option<[u8; 32]>) {
    let app = scope.app(&key.app);
    if app.is_none() {
        problems.push(key_problem(key, "app", &key.app, "unknown app"));
    }
    let digest = decode_sha256_hex(&key.sha256);
    if digest.is_none() {
        let what = "sha256 must be 64 lower-case hex digits (the hash, never the raw key), got";
        problems.push(key_problem(key, "sha256", &key.sha256, what));
    }
    let expires_at = key.expires_at.as_deref().and_then(|text| {
        let parsed = Timestamp::parse_rfc3339(text);
        if parsed.is_none() {
            problems.push(key_problem(
                key,
                "expires_at",
                text,
                "not an RFC 3339 date-time",
            ));
        }
        parsed
    });
    let envs = (!key.environments.is_empty())
        .then(|| key_environments(key, app.and_then(|a| scope.app_org(a)), scope, problems));
    let entry = KeyEntry {
        // A key without a valid digest or app fails the compilation.
        digest: digest.unwrap_or_default(),
        app: app.unwrap_or(0),
        status: key.status,
        expires_at,
        read_only: key.read_only,
        envs,
    };
    (entry, digest)
}

/// The environments a key lists, each one of its app's organization.
fn key_environments(
    key: &ApiKey,
    org: Option<(&str, &[Idx])>,
    scope: &impl KeyScope,
    problems: &mut Vec<Problem>,
) -> IdxList {
    let Some((org_id, org_envs)) = org else {
        return IdxList::from(Vec::new());
    };
    let mut envs = Vec::with_capacity(key.environments.len());
    for name in &key.environments {
        match scope.env(name) {
            Some(env) if org_envs.contains(&env) => envs.push(env),
            _ => {
                let what = format!("not an environment of organization `{org_id}`:");
                problems.push(key_problem(key, "environments", name, &what));
            }
        }
    }
    envs.sort_unstable();
    envs.dedup();
    IdxList::from(envs)
}

impl<'d> Compiler<'d> {
    /// Every key of the document; digests unique across the snapshot.
    pub(super) fn compile_keys(&mut self, orgs: &[OrgEntry], apps: &[AppEntry]) -> Vec<KeyEntry> {
        let doc = self.doc;
        let scope = DocumentScope {
            app_ids: &self.apps,
            apps,
            orgs,
            envs: &self.envs,
        };
        let mut problems = Vec::new();
        let mut keys = Vec::with_capacity(doc.api_keys.len());
        let mut first_with: FxHashMap<[u8; 32], &str> = FxHashMap::default();
        first_with.reserve(doc.api_keys.len());
        for key in &doc.api_keys {
            let (entry, digest) = key_entry(key, &scope, &mut problems);
            if let Some(digest) = digest {
                if let Some(other) = first_with.insert(digest, &key.id) {
                    let what = format!("sha256 already used by api_key `{other}`:");
                    problems.push(key_problem(key, "sha256", &key.sha256, &what));
                }
            }
            keys.push(entry);
        }
        self.problems.extend(problems);
        keys
    }
}
