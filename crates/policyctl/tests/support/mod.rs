//! What every `policyctl` test file needs: the binary under test, run from
//! the repository's root.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `policyctl` binary cargo built for these tests.
pub const POLICYCTL: &str = env!("CARGO_BIN_EXE_policyctl");

/// The repository's root (policies/, testdata/, docs/ are relative to it).
pub fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `policyctl args…` run in the repository's root.
pub fn policyctl(args: &[&str]) -> Output {
    Command::new(POLICYCTL)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}
