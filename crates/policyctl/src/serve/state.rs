//! The server's state: the watched files and the request counters.

use super::content::{load_keys, load_policy, KeySet, Served};
use super::watched::{Check, Loader, Watched};
use super::{one_line, Options, Problems, StartError};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What `GET /stats` reports.
#[derive(Default)]
pub struct Counters {
    pub snapshot_requests: AtomicU64,
    pub snapshot_200: AtomicU64,
    pub snapshot_304: AtomicU64,
    pub snapshot_206: AtomicU64,
    pub snapshot_412: AtomicU64,
    pub snapshot_416: AtomicU64,
    pub key_requests: AtomicU64,
    pub key_hits: AtomicU64,
    pub key_misses: AtomicU64,
    pub reloads: AtomicU64,
    pub reloads_refused: AtomicU64,
    pub keys_reloads: AtomicU64,
    pub keys_reloads_refused: AtomicU64,
}

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The files served, each with its last good content.
pub struct Server {
    policy: Mutex<Watched<Arc<Served>>>,
    keys: Option<Mutex<Watched<KeySet>>>,
    pub counters: Counters,
}

/// Locks `mutex`; a poisoned lock (a panicking holder, which the lints rule out) is still usable
/// because every update leaves the state consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Server {
    /// Loads the files to serve; their problems if one is unusable.
    pub fn open(options: &Options) -> Result<Server, StartError> {
        let policy = watch(&options.policy, load_policy)?;
        let keys = match &options.keys {
            Some(path) => Some(Mutex::new(watch(path, load_keys)?)),
            None => None,
        };
        Ok(Server {
            policy: Mutex::new(policy),
            keys,
            counters: Counters::default(),
        })
    }

    /// Checks the policy file and returns what to serve.
    pub fn policy(&self) -> Arc<Served> {
        let mut watched = lock(&self.policy);
        let before = Arc::clone(&watched.current);
        match watched.check() {
            Check::Unchanged => {}
            Check::Reloaded => {
                bump(&self.counters.reloads);
                eprintln!(
                    "reloaded: revision {} (was {})",
                    one_line(&watched.current.revision),
                    one_line(&before.revision)
                );
            }
            Check::Refused(problems) => {
                bump(&self.counters.reloads_refused);
                report_refused(&problems);
            }
            Check::Unavailable(error) => eprintln!(
                "reload skipped: cannot read `{}`: {error} (keeping revision {})",
                watched.path.display(),
                one_line(&before.revision)
            ),
        }
        Arc::clone(&watched.current)
    }

    /// Checks the keys file and looks `hash` up: `None` without `--keys` or if unknown.
    pub fn key(&self, hash: &str) -> Option<String> {
        let mut watched = lock(self.keys.as_ref()?);
        self.check_keys(&mut watched);
        watched.current.get(hash).cloned()
    }

    /// Number of keys held (`None` without `--keys`), after checking the file.
    pub fn key_count(&self) -> Option<usize> {
        let mut watched = lock(self.keys.as_ref()?);
        self.check_keys(&mut watched);
        Some(watched.current.len())
    }

    fn check_keys(&self, watched: &mut Watched<KeySet>) {
        match watched.check() {
            Check::Unchanged => {}
            Check::Reloaded => {
                bump(&self.counters.keys_reloads);
                eprintln!("reloaded: {} api keys", watched.current.len());
            }
            Check::Refused(problems) => {
                bump(&self.counters.keys_reloads_refused);
                report_refused(&problems);
            }
            Check::Unavailable(error) => eprintln!(
                "reload skipped: cannot read `{}`: {error} (keeping {} api keys)",
                watched.path.display(),
                watched.current.len()
            ),
        }
    }
}

fn report_refused(problems: &[String]) {
    let first = problems.first().map_or("invalid", String::as_str);
    eprintln!(
        "reload refused: {} (+{} more)",
        one_line(first),
        problems.len().saturating_sub(1)
    );
}

fn watch<T>(path: &Path, load: Loader<T>) -> Result<Watched<T>, StartError> {
    Watched::open(path, load).map_err(|problems| {
        StartError::Problems(Problems {
            path: path.to_path_buf(),
            problems,
        })
    })
}
