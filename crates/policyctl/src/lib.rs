//! `policyctl`, the tenantgate operator's command line, as a library so that
//! tests can drive it.
//!
//! - [`commands`]: the command line (clap), one module per command; each
//!   command's help text is the doc comment of its arguments.
//! - [`files`], [`error`]: reading files and policies, and what fails.
//! - The larger pieces behind some commands: [`bake`] (a snapshot into the
//!   Otoroshi module), [`import_otoroshi`] (an Otoroshi export as a snapshot),
//!   [`oci`] (the filter as a Wasm OCI image) and [`serve`] (the policy server).

pub mod bake;
pub mod commands;
pub mod error;
pub mod files;
pub mod import_otoroshi;
pub mod oci;
pub mod serve;

pub use error::Error;

use std::ffi::OsString;
use std::process::ExitCode;

/// Runs `policyctl` with `args` (the program name first). Exit status: 0 on
/// success (and for `--help`), 2 for an unusable input or argument.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let command = match commands::parse(args) {
        Ok(command) => command,
        Err(usage) => {
            // Help goes to stdout (exit 0); usage errors to stderr (exit 2).
            let _ = usage.print();
            return ExitCode::from(u8::try_from(usage.exit_code()).unwrap_or(2));
        }
    };
    match command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error.report();
            ExitCode::from(error.exit_code())
        }
    }
}
