//! Reading and writing the files that commands name, with errors that say
//! which file; and loading a policy from one.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use tenantgate_policy::{self as policy, LoadError, Snapshot};

/// A file that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read `{}`: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot create `{}`: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write `{}`: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot write to stdout: {0}")]
    Stdout(#[source] io::Error),
}

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    File(#[from] FileError),
    /// Not a snapshot, or one that breaks rules of the format: the message
    /// lists every problem, each naming the object, the field and the value.
    #[error("`{}`: {source}", path.display())]
    Invalid { path: PathBuf, source: LoadError },
}

pub fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub fn write(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    std::fs::write(path, bytes).map_err(|source| FileError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to stdout and flushes it.
pub fn write_stdout(bytes: &[u8]) -> Result<(), FileError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(FileError::Stdout)
}

/// A snapshot file: JSON, compiled by `policyctl compile`, or signed by
/// `policyctl sign`.
pub fn load_policy(path: &Path) -> Result<Snapshot, PolicyError> {
    let bytes = read(path)?;
    policy::load_snapshot_bytes(&bytes).map_err(|source| PolicyError::Invalid {
        path: path.to_path_buf(),
        source,
    })
}
