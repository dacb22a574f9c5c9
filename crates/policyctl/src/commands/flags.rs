//! Flag values that clap cannot parse by itself; a value that does not parse is a usage error
//! (exit 2) naming the flag and, from these, what was expected.

use tenantgate_policy::Timestamp;

/// Why a flag value does not parse.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("expected 'name: value', got `{0}`")]
    Header(String),
    #[error("not an RFC 3339 date-time `{0}`")]
    Time(String),
    #[error("not a whole number of at least 1: `{0}`")]
    Count(String),
}

/// `name: value`, both trimmed.
pub fn header(text: &str) -> Result<(String, String), FlagError> {
    text.split_once(':')
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .ok_or_else(|| FlagError::Header(text.to_string()))
}

pub fn time(text: &str) -> Result<Timestamp, FlagError> {
    Timestamp::parse_rfc3339(text).ok_or_else(|| FlagError::Time(text.to_string()))
}

/// A whole number, at least 1.
pub fn count(text: &str) -> Result<usize, FlagError> {
    text.parse::<usize>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| FlagError::Count(text.to_string()))
}
