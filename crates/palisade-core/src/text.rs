//! Showing untrusted text (log lines, user names, HTTP input) in logs and messages.

use std::fmt;

/// Longest untrusted text shown; the rest is cut and marked with `…`.
pub const MAX_SHOWN: usize = 256;

/// Displays untrusted text on one line with every control character escaped (`\r`, `\n`,
/// `\u{1b}`, …), so it can neither forge log lines nor send terminal escapes; at most
/// [`MAX_SHOWN`] characters.
pub fn escape_untrusted(s: &str) -> Escaped<'_> {
    Escaped(s)
}

/// See [`escape_untrusted`].
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.chars().enumerate() {
            if i == MAX_SHOWN {
                return f.write_str("…");
            }
            if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c)
                || c == '\\'
            {
                for e in c.escape_default() {
                    fmt::Write::write_char(f, e)?;
                }
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let s = escape_untrusted("root\r\nJan 1 forged: \u{1b}[31mred\\").to_string();
        assert_eq!(s, "root\\r\\nJan 1 forged: \\u{1b}[31mred\\\\");
        assert!(!s.chars().any(char::is_control));
        assert_eq!(escape_untrusted("admin").to_string(), "admin");
        assert_eq!(escape_untrusted("é\u{202e}x").to_string(), "é\\u{202e}x");
        let long = "a".repeat(1000);
        assert_eq!(
            escape_untrusted(&long).to_string().chars().count(),
            MAX_SHOWN + 1
        );
    }
}
