//! [`Event`]: one observation a filter made on one log line.

use crate::Timestamp;
use std::net::IpAddr;
use std::sync::Arc;

/// Longest evidence line kept with an event, in bytes; longer lines are cut.
pub const EVIDENCE_MAX: usize = 512;

/// A small typed observation: at `time`, address `ip` did what rule `rule` describes.
///
/// Only matching lines become events, so building one may allocate (the evidence copy);
/// non-matching lines never do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Event time, parsed from the line (or given by the source, e.g. journald).
    pub time: Timestamp,
    /// The offender, canonical (IPv4-mapped IPv6 is IPv4).
    pub ip: IpAddr,
    /// The filter that produced it (`sshd`, `nginx_access`, a fail2ban filter file name…).
    pub filter: Arc<str>,
    /// The rule inside the filter that matched (`failed_password`, `scanner_path`…).
    pub rule: Arc<str>,
    /// `false` for "no-failure" observations (fail2ban's `<F-NOFAIL>`): recorded, not counted.
    pub failure: bool,
    /// User name as logged, if the rule captures one (cut to 128 bytes, lossy UTF-8).
    pub user: Option<Box<str>>,
    /// Further captured fields (`path`, `status`, fail2ban `<F-NAME>` groups), name → value.
    pub fields: Vec<(Arc<str>, Box<str>)>,
    /// The line itself, lossy UTF-8, at most [`EVIDENCE_MAX`] bytes.
    pub evidence: Box<str>,
}

impl Event {
    /// Copies `line` into an evidence string: lossy UTF-8, control characters replaced so a
    /// hostile line cannot forge log records or terminal escapes, cut at [`EVIDENCE_MAX`].
    pub fn evidence_of(line: &[u8]) -> Box<str> {
        let cut = &line[..line.len().min(EVIDENCE_MAX)];
        let s = String::from_utf8_lossy(cut);
        s.chars()
            .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
            .collect::<String>()
            .into_boxed_str()
    }

    /// Value of a captured field by name.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| &**v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_is_sanitised_and_capped() {
        let e = Event::evidence_of(b"bad\nuser \x1b[31m\xff");
        assert!(!e.contains('\n') && !e.contains('\x1b'));
        let long = vec![b'a'; 10_000];
        assert_eq!(Event::evidence_of(&long).len(), EVIDENCE_MAX);
    }
}
