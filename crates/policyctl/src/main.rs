//! `policyctl`: the operator's command line for tenantgate policy snapshots.

fn main() -> std::process::ExitCode {
    policyctl::run(std::env::args_os())
}
