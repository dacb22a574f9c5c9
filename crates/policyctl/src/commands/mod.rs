//! The command line: one module per command, each with its arguments (clap
//! derive: their doc comments are the help text) and its `run`.
//!
//! Every command's help starts with its synopsis (`usage: policyctl ...`,
//! the `override_usage` of its arguments), then the whole doc comment of its
//! arguments, then its flags; `policyctl --help` lists every synopsis and the
//! first line of every doc comment.

use crate::Error;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;

mod bake;
mod compile;
mod diff;
mod explain;
mod flags;
mod generate;
mod hash_key;
mod import;
pub mod keygen;
pub mod oci;
mod plugin_config;
pub mod schema;
mod serve;
pub mod sign;
mod test;
mod validate;

/// validate, explain, generate and serve tenantgate policy snapshots
#[derive(Debug, Parser)]
#[command(
    name = "policyctl",
    after_help = "Run `policyctl COMMAND --help` for one command. Exit status: 0 success (any\n\
                  decision, for explain), 1 a check that found something (test failures, diff\n\
                  changes), 2 unusable input or argument.",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Validate(validate::Args),
    Explain(explain::Args),
    HashKey(hash_key::Args),
    Generate(generate::Args),
    PluginConfig(plugin_config::Args),
    Oci(oci::Args),
    Compile(compile::Args),
    Bake(bake::Args),
    Import(import::Args),
    Serve(serve::Args),
    Keygen(keygen::Args),
    Sign(sign::Args),
    Test(test::Args),
    Diff(diff::Args),
    Schema(schema::Args),
}

impl Command {
    pub fn run(&self) -> Result<(), Error> {
        match self {
            Command::Validate(args) => validate::run(args),
            Command::Explain(args) => explain::run(args),
            Command::HashKey(args) => hash_key::run(args),
            Command::Generate(args) => generate::run(args),
            Command::PluginConfig(args) => plugin_config::run(args),
            Command::Oci(args) => oci::run(args),
            Command::Compile(args) => compile::run(args),
            Command::Bake(args) => bake::run(args),
            Command::Import(args) => import::run(args),
            Command::Serve(args) => serve::run(args),
            Command::Keygen(args) => keygen::run(args),
            Command::Sign(args) => sign::run(args),
            Command::Test(args) => test::run(args),
            Command::Diff(args) => diff::run(args),
            Command::Schema(args) => schema::run(args),
        }
    }
}

/// How every help text is laid out: `{before-help}` is the command's doc comment.
const HELP_TEMPLATE: &str = "usage: {usage}\n\n{before-help}{all-args}{after-help}";
const TOP_HELP_TEMPLATE: &str =
    "policyctl: {about-with-newline}\nusage: {usage}\n\n{all-args}{after-help}";
/// Help text is wrapped to the terminal, and to this many columns at most.
const HELP_WIDTH: usize = 80;

/// The command line as clap sees it: the derived one, with the help layout
/// and the synopsis of every command as `policyctl --help`'s usage.
pub fn cli() -> clap::Command {
    let command = Cli::command();
    let synopsis: Vec<String> = command
        .get_subcommands()
        .filter_map(clap::Command::get_overridden_usage)
        .map(ToString::to_string)
        .collect();
    command
        .help_template(TOP_HELP_TEMPLATE)
        .max_term_width(HELP_WIDTH)
        .override_usage(synopsis.join("\n       "))
        .mut_subcommands(|sub| {
            // The whole doc comment, above flags listed one per line: clap would print
            // a flag's help below its name if the command had a `long_about`. Its first
            // line stays the `about` that `policyctl --help` lists.
            let description = sub.get_long_about().or(sub.get_about()).cloned();
            let sub = match description {
                Some(text) => sub.before_help(text),
                None => sub,
            };
            sub.long_about(None)
                .help_template(HELP_TEMPLATE)
                .max_term_width(HELP_WIDTH)
                // A flag given twice: the last one counts.
                .args_override_self(true)
        })
}

/// Parses `args` (the program name first) into the command to run.
pub fn parse<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = cli().try_get_matches_from(args)?;
    Ok(Cli::from_arg_matches(&matches)?.command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        cli().debug_assert();
    }
}
