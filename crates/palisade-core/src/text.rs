//! Showing untrusted text (log lines, user names, HTTP input) in logs and messages, and
//! hiding secrets in store URLs.

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

/// `url` with any password replaced by `***`, for errors and logs: the userinfo password of
/// a URL (`postgres://user:***@host/db`), a `password=` query parameter, and a `password=`
/// key/value pair (quoted or not). Errs on the side of hiding too much when the input is
/// malformed (an unescaped `@` in a password hides everything up to the last `@`).
pub fn redact_url(url: &str) -> String {
    if let Some(i) = url.find("://") {
        let (scheme, rest) = url.split_at(i + 3);
        let mut out = String::with_capacity(url.len());
        out.push_str(scheme);
        let rest = match rest.rfind('@') {
            Some(at) => {
                let userinfo = &rest[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push('@');
                &rest[at + 1..]
            }
            None => rest,
        };
        match rest.split_once('?') {
            Some((path, query)) => {
                out.push_str(path);
                out.push('?');
                let params: Vec<String> = query
                    .split('&')
                    .map(|kv| match kv.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                        _ => kv.to_owned(),
                    })
                    .collect();
                out.push_str(&params.join("&"));
            }
            None => out.push_str(rest),
        }
        out
    } else {
        redact_key_values(url)
    }
}

/// Redacts `password = value` pairs of a libpq key/value string; a quoted value runs to the
/// closing unescaped quote, a bare one to the next whitespace.
fn redact_key_values(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut i = 0;
    while let Some(off) = s[i..].to_ascii_lowercase().find("password") {
        let key_end = i + off + "password".len();
        let at_token_start = i + off == 0 || b[i + off - 1].is_ascii_whitespace();
        let mut j = key_end;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if !at_token_start || j >= b.len() || b[j] != b'=' {
            i = key_end;
            continue;
        }
        j += 1;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let value_start = j;
        if j < b.len() && b[j] == b'\'' {
            j += 1;
            while j < b.len() && b[j] != b'\'' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            j = (j + 1).min(b.len());
        } else {
            while j < b.len() && !b[j].is_ascii_whitespace() {
                j += 1;
            }
        }
        out.push_str(&s[copied..value_start]);
        out.push_str("***");
        copied = j;
        i = j;
    }
    out.push_str(&s[copied..]);
    out
}

/// Third-party log targets held at `warn` whatever the configured level: HTTP, TLS, SMTP and
/// database clients log request URLs (webhook tokens), headers (API keys) and connection
/// strings at debug and trace level.
pub const QUIET_TARGETS: &[&str] = &[
    "ureq",
    "ureq_proto",
    "rustls",
    "tokio_rustls",
    "hyper",
    "hyper_util",
    "h2",
    "lettre",
    "postgres",
    "tokio_postgres",
    "aws_config",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_sigv4",
    "aws_sdk_s3",
    "reqwest",
    "mio",
];

/// A log filter (`tracing_subscriber::EnvFilter` syntax) for `base` (a level such as
/// `debug`, or an operator's `RUST_LOG`) with every [`QUIET_TARGETS`] entry pinned to `warn`,
/// unless `base` names that target itself (an operator asking for it on purpose).
pub fn log_directives(base: &str) -> String {
    let mut out = base.trim().to_owned();
    for t in QUIET_TARGETS {
        let named = base.split(',').any(|d| {
            let target = d.split(['=', '[']).next().unwrap_or("").trim();
            target == *t || target.starts_with(&format!("{t}::"))
        });
        if !named {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(t);
            out.push_str("=warn");
        }
    }
    out
}

/// Checks one argument of a command template: every `{` closes with `}` around a name from
/// `allowed`, and no `}` stands alone (`{ip}}` is refused, not passed through).
pub fn check_placeholders(a: &str, allowed: &[&str]) -> Result<(), String> {
    let mut rest = a;
    while let Some(i) = rest.find(['{', '}']) {
        if rest.as_bytes()[i] == b'}' {
            return Err(format!("unbalanced '}}' in {a:?}"));
        }
        let Some(j) = rest[i..].find('}') else {
            return Err(format!("unclosed '{{' in {a:?}"));
        };
        let name = &rest[i + 1..i + j];
        if !allowed.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} in {a:?}; allowed: {}",
                allowed
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &rest[i + j + 1..];
    }
    Ok(())
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
