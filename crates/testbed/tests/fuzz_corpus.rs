//! Replays the fuzzing corpus (`fuzz/corpus/<target>/`) and the crashes
//! found and fixed (`fuzz/regressions/<target>/`) through the targets'
//! own code (`fuzz/targets/`, included by path), on stable, in `cargo test`.
//! `make fuzz` runs the same targets under libFuzzer to find new inputs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

#[path = "../../../fuzz/targets/mod.rs"]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The files of `fuzz/<kind>/<target>/`, sorted (none when it is absent).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every corpus and regression input of `target` through `run`; fails
/// naming each input that panics.
fn replay(target: &str, run: fn(&[u8])) {
    let corpus = inputs("corpus", target);
    assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ has no seed");
    let mut failed = Vec::new();
    let files = corpus
        .iter()
        .chain(inputs("regressions", target).iter())
        .cloned()
        .collect::<Vec<_>>();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} inputs fail:\n{}",
        failed.len(),
        failed.join("\n")
    );
    eprintln!("{target}: {} inputs replayed", files.len());
}

#[test]
fn snapshot_json() {
    replay("snapshot_json", targets::snapshot_json::run);
}

#[test]
fn compiled() {
    replay("compiled", targets::compiled::run);
}

#[test]
fn key_bucket() {
    replay("key_bucket", targets::key_bucket::run);
}

#[test]
fn intake() {
    replay("intake", targets::intake::run);
}

#[test]
fn signed() {
    replay("signed", targets::signed::run);
}

#[test]
fn plugin_config() {
    replay("plugin_config", targets::plugin_config::run);
}

#[test]
fn request() {
    replay("request", targets::request::run);
}

#[test]
fn otoroshi_input() {
    replay("otoroshi_input", targets::otoroshi_input::run);
}

#[test]
fn envoy_headers() {
    replay("envoy_headers", targets::envoy_headers::run);
}

#[test]
fn jwt_payload() {
    replay("jwt_payload", targets::jwt_payload::run);
}

#[test]
fn lookup_answer() {
    replay("lookup_answer", targets::lookup_answer::run);
}

/// Every target directory of the fuzz crate is replayed here.
#[test]
fn every_target_is_replayed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "compiled",
            "envoy_headers",
            "intake",
            "jwt_payload",
            "key_bucket",
            "lookup_answer",
            "otoroshi_input",
            "plugin_config",
            "request",
            "signed",
            "snapshot_json"
        ]
    );
}
