//! [`Secret`]: a string that never shows itself in `Debug` or `Display` (API keys,
//! passwords, web hook URLs with tokens in them).

use std::fmt;

/// A secret value. Read it with [`Secret::expose`] at the one place it is used.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (surrounding whitespace, e.g. a key file's newline, is removed).
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into().trim().to_string())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reads the value from `inline` or, failing that, from the file `file`.
    pub fn from_config(
        inline: Option<&palisade_config::SecretString>,
        file: Option<&std::path::Path>,
    ) -> std::io::Result<Option<Secret>> {
        if let Some(s) = inline {
            return Ok(Some(Secret::new(s.0.clone())));
        }
        match file {
            Some(p) => Ok(Some(Secret::new(std::fs::read_to_string(p)?))),
            None => Ok(None),
        }
    }

    /// Replaces every occurrence of the secret in `text` with `***` (for error messages that
    /// might echo it back).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "***")
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shown() {
        let s = Secret::new("abc123\n");
        assert_eq!(s.expose(), "abc123");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.scrub("key abc123 failed"), "key *** failed");
    }
}
