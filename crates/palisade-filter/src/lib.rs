//! Filters: turn one raw log line (`&[u8]`) into zero or more [`Event`]s.
//!
//! The hot path allocates nothing for a line that does not match: lines are byte slices, a
//! cheap literal prefilter rejects most of them, and only matching lines build an `Event`.
//! Filters are synchronous and own any per-filter state (multi-line buffers, time caches).
//!
//! Built-in filters ([`build_builtin`]): `sshd`, `sshd_plain` (sshd's own `-E` log),
//! `nginx_access`, `apache_access`, `nginx_error`, `apache_error`, `kernel_fw`. They parse
//! with hand-written byte scanning and take the offender's address from the position the
//! *program* writes it, never from text an attacker controls (user names, request lines):
//! sshd messages are parsed anchored at their end, web logs at their first field.
//!
//! One limit no filter can lift: if a program writes attacker text containing a newline
//! unescaped, the forged second physical line is indistinguishable from a real record.
//! OpenSSH, rsyslog and journald escape control characters, so this needs a broken writer.
#![warn(missing_docs)]

use palisade_core::{Event, JournalFields, Timestamp};

mod builtin;
pub mod kernel;
pub mod logformat;
pub mod scan;
pub mod sshd;
pub mod syslog;
pub mod time;
pub mod web;

pub use builtin::{
    build_builtin, build_builtin_with, builtin_names, builtin_option_keys, BuiltinOptions, Mode,
};

/// Errors building a filter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// The name is not one of [`builtin_names`].
    #[error("unknown built-in filter {0:?} (known: {known})", known = builtin_names().join(", "))]
    UnknownBuiltin(String),
    /// A filter option (`log_format`, `trusted_proxies`…) that cannot be used.
    #[error("{0}")]
    Option(String),
}

/// Per-line context given by the source.
#[derive(Clone, Copy, Debug)]
pub struct LineCtx<'a> {
    /// "Now" for inferring the year of RFC 3164 timestamps (a date is never put in the future
    /// relative to this instant). Fixed by `--now` in check/replay.
    pub now: Timestamp,
    /// Time the source itself attached to the line (journald `__REALTIME_TIMESTAMP`), used
    /// when the line carries no timestamp of its own.
    pub source_time: Option<Timestamp>,
    /// The journal entry's other fields (host, identifier, pid) when the line is a journald
    /// `MESSAGE`; `None` for files and streams. Built-in filters ignore it; fail2ban filter
    /// files in journal mode rebuild fail2ban's `host ident[pid]: message` line from it.
    pub journal: Option<JournalFields<'a>>,
}

/// What a filter made of one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// At least one event was pushed.
    Matched,
    /// Nothing of interest.
    Missed,
    /// Matched a failure rule but also an ignore rule, or an event without a usable address.
    Ignored,
}

/// Counters a filter keeps about lines it could not read (shown by `check`, exposed for
/// `status`). Only built-in filters fill them; a line counted here produced no event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Lines whose syslog header could not be read, per [`syslog::Unreadable`] reason.
    pub unreadable_header: [u64; syslog::Unreadable::ALL.len()],
    /// Lines of the filter's program whose offender could not be told apart from address
    /// text an attacker wrote into the same line (refused, never blamed).
    pub ambiguous: u64,
}

impl FilterStats {
    /// Counts one unreadable header.
    #[inline]
    pub fn unreadable(&mut self, r: syslog::Unreadable) {
        self.unreadable_header[r.index()] += 1;
    }

    /// `(reason, count)` for every reason with a non-zero count.
    pub fn unreadable_reasons(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        syslog::Unreadable::ALL
            .iter()
            .map(|r| (r.as_str(), self.unreadable_header[r.index()]))
            .filter(|(_, n)| *n > 0)
    }

    /// Total unreadable headers.
    pub fn unreadable_total(&self) -> u64 {
        self.unreadable_header.iter().sum()
    }
}

/// A compiled filter for one log format.
pub trait Filter: Send {
    /// The filter's name as configured (`sshd`, `nginx_access`, `my-filter.conf`).
    fn name(&self) -> &str;
    /// Names of all rules, for per-rule statistics. `Event::rule` is one of these.
    fn rules(&self) -> &[std::sync::Arc<str>];
    /// Examines one line (without its trailing newline) and appends events to `out`.
    /// Must not allocate when the line does not match.
    fn process(&mut self, line: &[u8], ctx: &LineCtx<'_>, out: &mut Vec<Event>) -> Outcome;
    /// Counters about lines the filter could not read (zero for filters that keep none).
    fn stats(&self) -> FilterStats {
        FilterStats::default()
    }
}
