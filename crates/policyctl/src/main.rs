//! `policyctl`: the operator's command line for tenantgate policy snapshots.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    policyctl::run(&args)
}
