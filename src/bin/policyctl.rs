//! `policyctl`: validate, explain and generate tenantgate policy snapshots.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    tenantgate::cli::run(&args)
}
