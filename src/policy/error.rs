//! Errors of loading a snapshot. Messages are lower-case and quote user input in
//! backticks; every problem names the object, the field and the offending value.

use std::borrow::Cow;
use std::fmt;

/// Why a snapshot document could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The text is not a JSON object at all.
    Syntax(SyntaxError),
    /// The JSON is well-formed but breaks one or more rules of the format.
    Invalid(InvalidSnapshot),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
}

/// Every problem found, not only the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSnapshot {
    pub problems: Vec<Problem>,
}

/// One broken rule: `<kind> `<id>`: field `<field>`: <what>`, where `what`
/// quotes the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The kind of object (`organization`, `api_key`, ...) or `snapshot` for top-level fields.
    pub kind: &'static str,
    /// The object's id (or its position when it has no usable id).
    pub id: String,
    /// The field, with a path inside the object where needed (`memberships[1].scope`).
    pub field: String,
    /// The bad or unresolved value, as written.
    pub value: String,
    /// What is wrong, lower-case, quoting the value in backticks.
    pub what: String,
}

impl fmt::Display for Problem {
    /// One line, whatever the document holds: control characters in ids and
    /// messages are escaped (values are escaped where they are quoted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} `{}`: field `{}`: {}",
            self.kind,
            escape_controls(&self.id),
            escape_controls(&self.field),
            escape_controls(&self.what)
        )
    }
}

/// A value from the document as it is quoted in a message: backslashes,
/// backticks and control characters escaped (`\n`, `\u{1b}`), so the quote
/// cannot end early and the message stays on one line.
pub fn escape_value(value: &str) -> Cow<'_, str> {
    escape(value, |c| c == '\\' || c == '`' || c.is_control())
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`): one line.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    escape(text, char::is_control)
}

fn escape(text: &str, needs: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            _ if !needs(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' | '`' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.extend(c.escape_unicode()),
        }
    }
    Cow::Owned(out)
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = escape_controls(&self.message);
        write!(f, "snapshot cannot be read: {message}")
    }
}

impl fmt::Display for InvalidSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        let plural = if count == 1 { "" } else { "s" };
        write!(f, "invalid snapshot ({count} problem{plural})")?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Syntax(e) => e.fmt(f),
            LoadError::Invalid(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LoadError {}
impl std::error::Error for SyntaxError {}
impl std::error::Error for InvalidSnapshot {}

impl LoadError {
    /// The individual problems (a syntax error is one problem about the snapshot).
    pub fn problems(&self) -> Vec<String> {
        match self {
            LoadError::Syntax(e) => vec![e.to_string()],
            LoadError::Invalid(e) => e.problems.iter().map(ToString::to_string).collect(),
        }
    }
}
