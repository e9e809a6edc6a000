//! Errors of the loader.

use std::path::PathBuf;

/// Why a fail2ban filter could not be loaded. Every variant names the file; option-level
/// variants also name the option.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// INI syntax error.
    #[error("{path}:{line}: {reason}")]
    Syntax {
        /// File.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// `[INCLUDES]` names a file that includes (directly or not) the including file.
    #[error("{path}: [INCLUDES] {option} = {target}: include loop ({chain})")]
    IncludeLoop {
        /// Including file.
        path: PathBuf,
        /// `before` or `after`.
        option: String,
        /// The included file.
        target: PathBuf,
        /// The include chain.
        chain: String,
    },
    /// `[INCLUDES]` names a file that does not exist (optional `*.local` files excepted).
    #[error("{path}: [INCLUDES] {option} = {target}: file not found")]
    MissingInclude {
        /// Including file.
        path: PathBuf,
        /// `before` or `after`.
        option: String,
        /// The missing file.
        target: PathBuf,
    },
    /// `%(name)s` interpolation or `<tag>` substitution failed.
    #[error("{path}: [{section}] {option}: {reason}")]
    Interpolation {
        /// Filter file.
        path: PathBuf,
        /// Section.
        section: String,
        /// Option.
        option: String,
        /// What is wrong.
        reason: String,
    },
    /// An option has an unusable value.
    #[error("{path}: {option}: {reason}")]
    BadOption {
        /// Filter file.
        path: PathBuf,
        /// Option.
        option: String,
        /// What is wrong.
        reason: String,
    },
    /// A regular expression does not compile.
    #[error("{path}: {option}[{index}]: {reason}\n  regex: {regex}")]
    Regex {
        /// Filter file.
        path: PathBuf,
        /// `failregex`, `ignoreregex`, `prefregex` or `datepattern`.
        option: String,
        /// Index within a multi-line option.
        index: usize,
        /// The regex after tag substitution.
        regex: String,
        /// What is wrong.
        reason: String,
    },
    /// A `<TAG>` that is neither a standard fail2ban tag nor a defined option.
    #[error("{path}: {option}[{index}]: unknown tag {tag}")]
    UnknownTag {
        /// Filter file.
        path: PathBuf,
        /// Option.
        option: String,
        /// Index within a multi-line option.
        index: usize,
        /// The tag as written.
        tag: String,
    },
    /// The filter defines no `failregex`.
    #[error("{path}: no failregex defined")]
    NoFailregex {
        /// Filter file.
        path: PathBuf,
    },
}

impl LoadError {
    /// The file the problem is in (the filter file, or a file it includes) and, for a syntax
    /// error, its 1-based line.
    pub fn place(&self) -> (&std::path::Path, Option<usize>) {
        match self {
            LoadError::Syntax { path, line, .. } => (path, Some(*line)),
            LoadError::Io { path, .. }
            | LoadError::IncludeLoop { path, .. }
            | LoadError::MissingInclude { path, .. }
            | LoadError::Interpolation { path, .. }
            | LoadError::BadOption { path, .. }
            | LoadError::Regex { path, .. }
            | LoadError::UnknownTag { path, .. }
            | LoadError::NoFailregex { path } => (path, None),
        }
    }

    /// The message without the place that starts it ([`LoadError::place`] gives that).
    pub fn reason(&self) -> String {
        let full = self.to_string();
        let (path, line) = self.place();
        let prefix = match line {
            Some(l) => format!("{}:{l}: ", path.display()),
            None => format!("{}: ", path.display()),
        };
        full.strip_prefix(&prefix)
            .map_or(full.clone(), str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::LoadError;
    use std::path::PathBuf;

    #[test]
    fn place_and_reason_split_the_message() {
        let e = LoadError::Syntax {
            path: PathBuf::from("/f/x.conf"),
            line: 3,
            reason: "cannot parse line \"x\"".into(),
        };
        assert_eq!(e.place(), (PathBuf::from("/f/x.conf").as_path(), Some(3)));
        assert_eq!(e.reason(), "cannot parse line \"x\"");
        let e = LoadError::NoFailregex {
            path: PathBuf::from("/f/y.conf"),
        };
        assert_eq!(e.place().1, None);
        assert_eq!(e.reason(), "no failregex defined");
    }
}
