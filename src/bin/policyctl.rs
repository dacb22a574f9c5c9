//! `policyctl`: validate, explain and generate tenantgate policy snapshots.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    tenantgate::cli::run(&args)
}

// The crate's tests are also built for wasm targets, which build every binary.
#[cfg(target_arch = "wasm32")]
fn main() {}
