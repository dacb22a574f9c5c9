//! Only `crates/envoy-filter/src/abi.rs` may call the proxy-wasm host: its wrappers return
//! `Result` and never panic. A host import declared anywhere else, or the
//! proxy-wasm SDK (whose host calls and dispatcher panic on an unexpected
//! status or a non-UTF-8 value, killing the VM), fails this test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_abi_rs_declares_host_imports_and_no_sdk_is_used() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let mut files = Vec::new();
    for krate in ["policy", "envoy-filter", "otoroshi-plugin", "policyctl"] {
        rust_files(&root.join("crates").join(krate).join("src"), &mut files);
    }
    assert!(
        files.len() > 10,
        "no sources found under {}",
        root.display()
    );
    let mut offenders = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(root).unwrap().display().to_string();
        let imports_host = text.contains("wasm_import_module") || text.contains("extern \"C\" {");
        // The Otoroshi plug-in calls the host through extism-pdk only.
        if imports_host && !name.ends_with("envoy-filter/src/abi.rs") {
            offenders.push(format!("{name}: declares host imports"));
        }
        if text.contains("proxy_wasm::") {
            offenders.push(format!("{name}: uses the proxy-wasm SDK"));
        }
    }
    let manifest = std::fs::read_to_string(root.join("crates/envoy-filter/Cargo.toml")).unwrap();
    if manifest
        .lines()
        .any(|l| l.trim_start().starts_with("proxy-wasm"))
    {
        offenders.push("Cargo.toml: depends on the proxy-wasm SDK".into());
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}
