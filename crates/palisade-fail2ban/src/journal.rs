//! The line fail2ban's systemd backend shows a filter for one journal entry.
//!
//! fail2ban does not hand journal filters the bare `MESSAGE`: it rebuilds a syslog-like line
//! from the entry's fields, which `logtype = journal` filters (`__prefix_line` of
//! `[lt_journal]` in `common.conf`) then parse, e.g. into sshd's `<F-MLFID>` (host and
//! `sshd[pid]:`, which tells connections apart). [`journal_line`] is the one place where
//! Palisade builds that line; the rules were learnt from fail2ban 1.0's behaviour (and
//! python-systemd's field conversions), not copied from its code.

use palisade_core::JournalFields;
use std::fmt::Write as _;

/// Longest host name, identifier or pid copied into the prefix, in bytes. Longer values (only
/// a broken or hostile sender writes them) are cut at a character boundary, so that a line is
/// at most the message plus a few hundred bytes (newlines in it count twice, escaped).
pub const PREFIX_FIELD_MAX: usize = 256;

/// Writes into `out` (cleared first) the line fail2ban builds for a journal entry with
/// `fields` and `message` (its `MESSAGE`, bytes):
///
/// `[_HOSTNAME ][IDENT[\[PID\]]: [[%12.6f] ]]MESSAGE`, elements joined by one space, where
///
/// * the host name is left out when absent or empty;
/// * IDENT is `SYSLOG_IDENTIFIER`, else `_COMM` (empty counts as absent); without either,
///   there is no `IDENT:` element and no pid;
/// * PID is `SYSLOG_PID`, else `_PID`, a value counting as absent when empty or when it is
///   the number 0. A number (surrounding blanks, sign, `_` between digits allowed) is written
///   in decimal (`[0042]` becomes `[42]`); other text is written as it is (fail2ban would
///   show Python's `b'…'` form of such a value);
/// * a kernel message (the element is exactly `kernel:`) gets the monotonic time in seconds,
///   `_SOURCE_MONOTONIC_TIMESTAMP` else `__MONOTONIC_TIMESTAMP`, formatted `[%12.6f]` as
///   dmesg does; left out when the entry has neither (fail2ban drops such an entry);
/// * text that is not UTF-8 is decoded with U+FFFD replacement characters;
/// * every newline of the whole line becomes the two characters `\n`, so a message can never
///   forge a second line.
///
/// Host name, identifier and pid are cut to [`PREFIX_FIELD_MAX`] bytes. Allocates only when
/// `out` must grow.
pub fn journal_line(fields: &JournalFields<'_>, message: &[u8], out: &mut String) {
    out.clear();
    if let Some(host) = non_empty(fields.hostname) {
        push_escaped(out, cut(host));
    }
    let ident = non_empty(fields.syslog_identifier).or(non_empty(fields.comm));
    if let Some(ident) = ident {
        space(out);
        let start = out.len();
        push_escaped(out, cut(ident));
        let pid = pid_value(fields.syslog_pid).or_else(|| pid_value(fields.pid));
        if let Some(pid) = pid {
            out.push('[');
            match pid {
                Pid::Number { negative, digits } => {
                    if negative {
                        out.push('-');
                    }
                    push_digits(out, digits);
                }
                Pid::Text(t) => push_escaped(out, cut(t)),
            }
            out.push(']');
        }
        out.push(':');
        if &out[start..] == "kernel:" {
            if let Some(us) = fields.source_monotonic.or(fields.monotonic) {
                // `[%12.6f]`: the seconds right-aligned in 12 columns, 6 decimals.
                let _ = write!(out, " [{:>5}.{:06}]", us / 1_000_000, us % 1_000_000);
            }
        }
    }
    space(out);
    match std::str::from_utf8(message) {
        Ok(s) => push_escaped(out, s),
        Err(_) => {
            for chunk in message.utf8_chunks() {
                push_escaped(out, chunk.valid());
                if !chunk.invalid().is_empty() {
                    out.push(char::REPLACEMENT_CHARACTER);
                }
            }
        }
    }
}

/// A space between elements (none before the first).
fn space(out: &mut String) {
    if !out.is_empty() {
        out.push(' ');
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// `s` cut to at most [`PREFIX_FIELD_MAX`] bytes, at a character boundary.
fn cut(s: &str) -> &str {
    if s.len() <= PREFIX_FIELD_MAX {
        return s;
    }
    let mut i = PREFIX_FIELD_MAX;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

/// Appends `s` with each newline written as `\n`.
fn push_escaped(out: &mut String, s: &str) {
    let mut rest = s;
    while let Some(i) = rest.find('\n') {
        out.push_str(&rest[..i]);
        out.push_str("\\n");
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// A pid field as fail2ban sees it.
enum Pid<'a> {
    /// An integer, `digits` being its ASCII digits and `_` separators, leading zeros
    /// included (never all zeros).
    Number { negative: bool, digits: &'a str },
    /// Anything else, not empty.
    Text(&'a str),
}

/// The value of a pid field, `None` when it counts as absent (missing, empty, zero).
fn pid_value(v: Option<&str>) -> Option<Pid<'_>> {
    let v = v?;
    let t = v.trim();
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if is_integer(body) {
        if body.bytes().all(|b| b == b'0' || b == b'_') {
            return None;
        }
        return Some(Pid::Number {
            negative,
            digits: cut(body),
        });
    }
    (!v.is_empty()).then_some(Pid::Text(v))
}

/// ASCII digits with single `_` between digits (an integer literal as Python's `int()`
/// reads it).
fn is_integer(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_digit()
        && b[b.len() - 1].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_digit() || *c == b'_')
        && !s.contains("__")
}

/// Appends an integer's digits without separators nor leading zeros.
fn push_digits(out: &mut String, digits: &str) {
    let digits = digits.trim_start_matches(['0', '_']);
    for c in digits.chars().filter(|c| *c != '_') {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fields: &JournalFields<'_>, message: &[u8]) -> String {
        let mut out = String::from("stale content");
        journal_line(fields, message, &mut out);
        out
    }

    fn sshd(pid: &str) -> JournalFields<'_> {
        JournalFields {
            hostname: Some("bastion"),
            syslog_identifier: Some("sshd"),
            comm: Some("sshd-session"),
            syslog_pid: Some(pid),
            pid: Some("1"),
            ..JournalFields::default()
        }
    }

    #[test]
    fn host_ident_pid_message() {
        assert_eq!(
            line(
                &sshd("4242"),
                b"Failed password for root from 203.0.113.5 port 22 ssh2"
            ),
            "bastion sshd[4242]: Failed password for root from 203.0.113.5 port 22 ssh2"
        );
    }

    #[test]
    fn identifier_and_pid_fallbacks() {
        // SYSLOG_IDENTIFIER missing or empty: _COMM.
        for ident in [None, Some("")] {
            let f = JournalFields {
                syslog_identifier: ident,
                ..sshd("7")
            };
            assert_eq!(line(&f, b"m"), "bastion sshd-session[7]: m");
        }
        // SYSLOG_PID missing, empty or zero: _PID.
        for pid in [None, Some(""), Some("0"), Some(" 00 ")] {
            let f = JournalFields {
                syslog_pid: pid,
                pid: Some("1234"),
                ..sshd("")
            };
            assert_eq!(line(&f, b"m"), "bastion sshd[1234]: m", "{pid:?}");
        }
        // Neither pid: no brackets.
        let f = JournalFields {
            pid: None,
            ..sshd("")
        };
        assert_eq!(line(&f, b"m"), "bastion sshd: m");
        // Numbers are written as numbers; other text as it is.
        assert_eq!(line(&sshd(" +0042 "), b"m"), "bastion sshd[42]: m");
        assert_eq!(line(&sshd("-5"), b"m"), "bastion sshd[-5]: m");
        assert_eq!(line(&sshd("1_000"), b"m"), "bastion sshd[1000]: m");
        assert_eq!(line(&sshd("12ab"), b"m"), "bastion sshd[12ab]: m");
        // No identifier at all: no pid either, only host and message.
        let f = JournalFields {
            hostname: Some("h"),
            pid: Some("9"),
            ..JournalFields::default()
        };
        assert_eq!(line(&f, b"m"), "h m");
    }

    #[test]
    fn missing_hostname_and_empty_entry() {
        let f = JournalFields {
            hostname: None,
            ..sshd("3")
        };
        assert_eq!(line(&f, b"hello"), "sshd[3]: hello");
        let f = JournalFields {
            hostname: Some(""),
            ..sshd("3")
        };
        assert_eq!(line(&f, b"hello"), "sshd[3]: hello");
        assert_eq!(line(&JournalFields::default(), b"bare"), "bare");
        assert_eq!(line(&JournalFields::default(), b""), "");
        assert_eq!(
            line(&sshd("3"), b""),
            "bastion sshd[3]: ",
            "joined with a space"
        );
    }

    #[test]
    fn hostile_message_cannot_forge_lines_or_prefix() {
        let msg = b"Accepted password for x from 10.0.0.1 port 1 ssh2\nbastion sshd[99]: Failed password for root from 1.2.3.4 port 22 ssh2\n";
        let l = line(&sshd("4242"), msg);
        assert!(!l.contains('\n'), "{l}");
        assert_eq!(
            l,
            "bastion sshd[4242]: Accepted password for x from 10.0.0.1 port 1 ssh2\\nbastion sshd[99]: Failed password for root from 1.2.3.4 port 22 ssh2\\n"
        );
        // Newlines in other fields are escaped too.
        let f = JournalFields {
            hostname: Some("a\nb"),
            syslog_identifier: Some("x\ny"),
            ..sshd("1")
        };
        assert_eq!(line(&f, b"m"), "a\\nb x\\ny[1]: m");
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        // What journalctl writes as a byte array: "fo", NUL, an invalid byte, a cut
        // three-byte sequence, "é".
        let l = line(&sshd("1"), b"fo\0\xff\xe2\x82 \xc3\xa9");
        assert_eq!(l, "bastion sshd[1]: fo\0\u{fffd}\u{fffd} é");
    }

    #[test]
    fn kernel_monotonic_time() {
        let f = JournalFields {
            hostname: Some("fw"),
            syslog_identifier: Some("kernel"),
            source_monotonic: Some(5_123_456),
            monotonic: Some(9_000_000),
            ..JournalFields::default()
        };
        assert_eq!(
            line(&f, b"IN=eth0 SRC=1.2.3.4"),
            "fw kernel: [    5.123456] IN=eth0 SRC=1.2.3.4"
        );
        let f = JournalFields {
            source_monotonic: None,
            monotonic: Some(1_234_567_890_123),
            ..f
        };
        assert_eq!(line(&f, b"m"), "fw kernel: [1234567.890123] m");
        let f = JournalFields {
            monotonic: None,
            ..f
        };
        assert_eq!(line(&f, b"m"), "fw kernel: m");
        // With a pid it is not the kernel's prefix.
        let f = JournalFields {
            syslog_pid: Some("5"),
            monotonic: Some(1),
            ..f
        };
        assert_eq!(line(&f, b"m"), "fw kernel[5]: m");
    }

    #[test]
    fn buffer_is_reused() {
        let mut out = String::with_capacity(256);
        let p = out.as_ptr();
        for pid in ["1", "22", "333"] {
            journal_line(
                &sshd(pid),
                b"Failed password for root from 192.0.2.1 port 22 ssh2\xff",
                &mut out,
            );
            assert_eq!(
                out.as_ptr(),
                p,
                "no new allocation while the buffer is big enough"
            );
        }
        assert!(out.starts_with("bastion sshd[333]: Failed"), "{out}");
    }

    #[test]
    fn long_prefix_fields_are_cut() {
        let long = "é".repeat(200);
        let f = JournalFields {
            hostname: Some(&long),
            syslog_identifier: Some(&long),
            syslog_pid: Some(&long),
            ..JournalFields::default()
        };
        let l = line(&f, b"m");
        let want = "é".repeat(PREFIX_FIELD_MAX / 2);
        assert_eq!(l, format!("{want} {want}[{want}]: m"));
    }
}
