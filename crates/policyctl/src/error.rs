//! Everything that makes a command fail, and so `policyctl` exit 2.

use crate::bake::BakeError;
use crate::commands::keygen::NoRandomness;
use crate::commands::oci::OciCommandError;
use crate::commands::sign::SignError;
use crate::files::{FileError, PolicyError};
use crate::import_otoroshi::ConvertError;
use crate::serve::StartError;
use std::path::PathBuf;
use tenantgate_policy::config::ConfigError;

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// `explain --config`: not a plugin configuration.
    #[error("`{}`: {source}", path.display())]
    Config { path: PathBuf, source: ConfigError },
    /// `plugin-config`: the configuration it rendered does not load.
    #[error(transparent)]
    RenderedConfig(ConfigError),
    /// `plugin-config --format istio|envoy-gateway`: no usable `--image`.
    #[error("{0}")]
    Manifest(String),
    /// `plugin-config` without `--compiled` needs the policy's JSON text.
    #[error("`{}` is compiled: use `--compiled`", path.display())]
    CompiledPolicy { path: PathBuf },
    /// `bake`: the module cannot take the snapshot.
    #[error("`{}`: {source}", path.display())]
    Bake { path: PathBuf, source: BakeError },
    /// `import`: the export is not JSON.
    #[error("`{}`: not JSON: {source}", path.display())]
    NotJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Import(#[from] ConvertError),
    #[error(transparent)]
    Keygen(#[from] NoRandomness),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error(transparent)]
    Serve(#[from] StartError),
    #[error(transparent)]
    Oci(#[from] OciCommandError),
    #[error("cannot render JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// `diff`: the change holds what `--fail-on` refuses (exit 1, not 2).
    #[error("{0}")]
    DiffRefused(String),
    /// `validate`: these files are invalid; it printed their problems itself.
    #[error("{count} invalid snapshot file(s)")]
    InvalidFiles { count: usize },
    /// `test`: a decision table that is not one.
    #[error("`{}`: {message}", path.display())]
    Table { path: PathBuf, message: String },
    /// `test`: cases decided otherwise than their table says (exit 1).
    #[error("{failed} of {total} cases failed")]
    TestsFailed { failed: usize, total: usize },
}

impl Error {
    /// The exit status: 1 when the command worked and found what it checks
    /// for (failing tests, a diff with changes), 2 for everything that kept
    /// a command from working.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::TestsFailed { .. } | Error::DiffRefused(_) => 1,
            _ => 2,
        }
    }

    /// Prints the error on stderr: `policyctl: <message>`, except for lists
    /// of problems, which are printed one line each, naming their file.
    pub fn report(&self) {
        match self {
            // Printed as they were found, in file order with the warnings.
            Error::InvalidFiles { .. } => {}
            Error::Serve(StartError::Problems(problems)) => eprintln!("{problems}"),
            other => eprintln!("policyctl: {other}"),
        }
    }
}
