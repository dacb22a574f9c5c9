//! Watched files: a file, the last good value loaded from it, and what is needed to notice a
//! change without a background thread.
//!
//! A check costs one `stat` (mtime, ctime, size, inode). A file whose change time lies within
//! the racy window of the moment it was last read is re-read and compared by content (SHA-256)
//! instead, so two same-size writes inside one timestamp tick are never missed. The window is
//! [`RACY_WINDOW`] for timestamps in whole seconds, [`FINE_RACY_WINDOW`] for timestamps with a
//! sub-second part (Linux's are the kernel's coarse clock, a few ms a tick): a 66 MB snapshot
//! re-read and hashed for every ranged part a proxy asks for during two seconds after each
//! change made its fetch take three times as long. A file that disappears leaves the last good
//! value in place.

use sha2::{Digest, Sha256};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A file changed less than this long before it was read may change again without its
/// timestamps showing it (coarse timestamp granularity); it is re-read and compared by content
/// until it has been quiet for this long.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// The same for timestamps with a sub-second part: many times the coarsest kernel clock tick
/// (10 ms at `HZ=100`).
pub const FINE_RACY_WINDOW: Duration = Duration::from_millis(100);

/// What `stat` says about a file; any difference means it may have changed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    modified: Option<SystemTime>,
    /// The inode change time (unix): set by the kernel on every write, rename or `touch`.
    changed: Option<SystemTime>,
    len: u64,
    inode: u64,
    device: u64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let (changed, inode, device) = {
            use std::os::unix::fs::MetadataExt;
            let changed = u64::try_from(meta.ctime())
                .ok()
                .zip(u32::try_from(meta.ctime_nsec()).ok())
                .and_then(|(s, n)| UNIX_EPOCH.checked_add(Duration::new(s, n)));
            (changed, meta.ino(), meta.dev())
        };
        #[cfg(not(unix))]
        let (changed, inode, device) = (None, 0, 0);
        Stamp {
            modified: meta.modified().ok(),
            changed,
            len: meta.len(),
            inode,
            device,
        }
    }

    /// True if the file changed so shortly before `read_at` (or claims a future time) that a
    /// further change might not move its timestamps.
    fn is_racy(&self, read_at: SystemTime) -> bool {
        let latest = match (self.modified, self.changed) {
            (Some(m), Some(c)) => m.max(c),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => return true,
        };
        read_at
            .duration_since(latest)
            .map_or(true, |age| age < self.racy_window())
    }

    /// [`FINE_RACY_WINDOW`] when either timestamp has a sub-second part (a filesystem that
    /// keeps them), else [`RACY_WINDOW`].
    fn racy_window(&self) -> Duration {
        let fine = [self.modified, self.changed]
            .into_iter()
            .flatten()
            .any(|t| {
                t.duration_since(UNIX_EPOCH)
                    .is_ok_and(|d| d.subsec_nanos() != 0)
            });
        if fine {
            FINE_RACY_WINDOW
        } else {
            RACY_WINDOW
        }
    }
}

/// Loads a file's bytes, given their SHA-256 (computed once, for the change
/// check, and reusable as an ETag).
pub type Loader<T> = fn(Vec<u8>, &[u8; 32]) -> Result<T, Vec<String>>;

/// The outcome of checking a watched file.
pub enum Check {
    Unchanged,
    Reloaded,
    Refused(Vec<String>),
    Unavailable(String),
}

/// A file, the last good value loaded from it, and what is needed to notice a change.
pub struct Watched<T> {
    pub path: PathBuf,
    load: Loader<T>,
    /// `stat` of the file when it was last read.
    stamp: Option<Stamp>,
    /// The stamp cannot be trusted yet (see [`Stamp::is_racy`]): re-read on the next check.
    racy: bool,
    /// SHA-256 of the content last read, whether it was accepted or refused.
    digest: [u8; 32],
    /// The last check could not read the file (reported once, until it is readable again).
    unavailable: bool,
    /// The last good value.
    pub current: T,
}

impl<T> Watched<T> {
    pub fn open(path: &Path, load: Loader<T>) -> Result<Self, Vec<String>> {
        let meta = fs::metadata(path).map_err(|e| vec![format!("cannot read: {e}")])?;
        let stamp = Stamp::of(&meta);
        let bytes = fs::read(path).map_err(|e| vec![format!("cannot read: {e}")])?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let current = load(bytes, &digest)?;
        Ok(Watched {
            path: path.to_path_buf(),
            load,
            stamp: Some(stamp),
            racy: stamp.is_racy(SystemTime::now()),
            digest,
            unavailable: false,
            current,
        })
    }

    /// Re-reads the file if it may have changed and loads it if its content did.
    pub fn check(&mut self) -> Check {
        let stamp = match fs::metadata(&self.path) {
            Ok(meta) => Stamp::of(&meta),
            Err(e) => return self.unavailable(&e),
        };
        if !self.unavailable && !self.racy && self.stamp == Some(stamp) {
            return Check::Unchanged;
        }
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) => return self.unavailable(&e),
        };
        self.unavailable = false;
        self.stamp = Some(stamp);
        self.racy = stamp.is_racy(SystemTime::now());
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if digest == self.digest {
            return Check::Unchanged;
        }
        self.digest = digest;
        match (self.load)(bytes, &digest) {
            Ok(value) => {
                self.current = value;
                Check::Reloaded
            }
            Err(problems) => Check::Refused(problems),
        }
    }

    fn unavailable(&mut self, error: &io::Error) -> Check {
        if self.unavailable {
            return Check::Unchanged;
        }
        self.unavailable = true;
        Check::Unavailable(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn racy_stamps() {
        let now = SystemTime::now();
        let stamp = |t: SystemTime| Stamp {
            modified: Some(t),
            changed: Some(t),
            len: 1,
            inode: 1,
            device: 1,
        };
        assert!(stamp(now).is_racy(now));
        assert!(stamp(now + Duration::from_secs(60)).is_racy(now));
        assert!(!stamp(now - Duration::from_secs(60)).is_racy(now));
        // Whole-second timestamps stay racy for two seconds, fine ones briefly.
        let whole = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(stamp(whole).is_racy(whole + Duration::from_millis(1_500)));
        assert!(!stamp(whole).is_racy(whole + RACY_WINDOW));
        let fine = whole + Duration::from_nanos(123_456_789);
        assert!(stamp(fine).is_racy(fine + Duration::from_millis(50)));
        assert!(!stamp(fine).is_racy(fine + FINE_RACY_WINDOW));
        assert!(!stamp(fine).is_racy(fine + Duration::from_millis(1_500)));
    }
}
