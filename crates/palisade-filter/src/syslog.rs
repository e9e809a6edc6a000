//! Splitting a syslog line (`TIMESTAMP HOST PROG[PID]: MSG`) without allocating.
//!
//! Accepted line headers (the timestamp is located here and parsed later, only for lines
//! that produce an event, by [`crate::time::TimeParser::parse_stamp`]):
//!
//! * RFC 3164 `Mmm dd HH:MM:SS HOST TAG: MSG`, also with fractional seconds (`journalctl -o
//!   short-precise`), an optional `<PRI>` in front, and no host (`Mmm dd HH:MM:SS TAG: MSG`);
//! * ISO 8601 / RFC 3339 `2024-05-01T10:00:03[.frac][Z|+02:00|+0200|+02]` (rsyslog high
//!   precision, `journalctl -o short-iso`/`short-iso-precise`), a space instead of `T`, no
//!   zone (local time);
//! * `journalctl -o short-full`: `Wed 2024-05-01 10:00:03 CEST HOST TAG: MSG` (local time;
//!   the zone abbreviation is informative only, except `UTC`/`GMT`/`Z`);
//! * `journalctl -o short-unix`: `1714550403.123456 HOST TAG: MSG`;
//! * RFC 5424 `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG` (nil values `-`, structured
//!   data elements skipped, a UTF-8 BOM before the message dropped);
//! * between host and tag, an optional `facility.level` field (BusyBox syslogd,
//!   `%syslogfacility-text%.%syslogseverity-text%` templates);
//! * a tag that is a full program path (`/usr/sbin/sshd[1]:`), with or without `[PID]`;
//! * Solaris' message id `[ID 800047 auth.info] ` at the start of the message is removed.
//!
//! A line that has none of these shapes is refused with an [`Unreadable`] reason, which the
//! filters count in their [`crate::FilterStats`].

/// Where the timestamp of a header is and how to read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StampKind {
    /// RFC 3164 `Mmm dd HH:MM:SS[.frac]`.
    Rfc3164,
    /// ISO 8601 `YYYY-MM-DD[T ]HH:MM:SS[.frac][zone]`.
    Iso,
    /// `journalctl -o short-full`: `YYYY-MM-DD HH:MM:SS ZONE` (after the weekday).
    ShortFull,
    /// `journalctl -o short-unix`: `SECONDS.MICROS`.
    Unix,
    /// RFC 5424 nil timestamp `-`: the line has no time.
    Nil,
}

/// The parts of a syslog line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// The timestamp's bytes (`stamp_kind` tells the form).
    pub stamp: &'a [u8],
    /// Form of `stamp`.
    pub stamp_kind: StampKind,
    /// Host name field (empty when the line has none).
    pub host: &'a [u8],
    /// Program name from the tag (`sshd`, `sshd-session`, `/usr/sbin/sshd`, `kernel`).
    pub prog: &'a [u8],
    /// Process id from the tag, if any.
    pub pid: Option<u32>,
    /// The message after `: `.
    pub msg: &'a [u8],
}

/// Why a line's header could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unreadable {
    /// The line does not start with any known timestamp.
    NoTimestamp,
    /// The timestamp has a known shape but impossible values (month 13, Feb 30, 25:00).
    BadTimestamp,
    /// Timestamp found, but no `PROG:`/`PROG[PID]:` tag where one belongs.
    NoTag,
    /// An RFC 5424 header with a malformed field or structured data.
    BadRfc5424,
    /// An empty line.
    Empty,
}

impl Unreadable {
    /// Every reason, in counter order.
    pub const ALL: [Unreadable; 5] = [
        Unreadable::NoTimestamp,
        Unreadable::BadTimestamp,
        Unreadable::NoTag,
        Unreadable::BadRfc5424,
        Unreadable::Empty,
    ];

    /// The reason's name as shown in `check` and `status` (`no_timestamp`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Unreadable::NoTimestamp => "no_timestamp",
            Unreadable::BadTimestamp => "bad_timestamp",
            Unreadable::NoTag => "no_tag",
            Unreadable::BadRfc5424 => "bad_rfc5424",
            Unreadable::Empty => "empty",
        }
    }

    /// Index into counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a line could not be split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotSyslog {
    /// The line does not start with a syslog timestamp at all (normal for journald `MESSAGE`
    /// lines, which carry the bare message).
    NoHeader,
    /// It starts like a syslog line but cannot be read.
    Malformed(Unreadable),
}

impl NotSyslog {
    /// The reason to count when the line was expected to carry a header.
    pub fn reason(self, line: &[u8]) -> Unreadable {
        match self {
            NotSyslog::NoHeader if line.is_empty() => Unreadable::Empty,
            NotSyslog::NoHeader => Unreadable::NoTimestamp,
            NotSyslog::Malformed(r) => r,
        }
    }
}

#[inline]
fn all_digits(b: &[u8], r: std::ops::Range<usize>) -> bool {
    b.len() >= r.end && b[r].iter().all(u8::is_ascii_digit)
}

/// `.ffff` / `,ffff` fraction length (0 if none).
#[inline]
fn frac_len(b: &[u8]) -> usize {
    if matches!(b.first(), Some(b'.' | b',')) {
        let n = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n > 0 {
            return 1 + n;
        }
    }
    0
}

/// Zone designator length: `Z`, `+HH:MM`, `+HHMM`, `+HH` (0 if none).
#[inline]
fn zone_len(b: &[u8]) -> usize {
    match b.first() {
        Some(b'Z' | b'z') => 1,
        Some(b'+' | b'-') if all_digits(b, 1..3) => {
            if b.get(3) == Some(&b':') && all_digits(b, 4..6) {
                6
            } else if all_digits(b, 3..5) {
                5
            } else {
                3
            }
        }
        _ => 0,
    }
}

/// `HH:MM:SS` shape at `b[i..]`.
#[inline]
fn hms_shape(b: &[u8], i: usize) -> bool {
    b.len() >= i + 8
        && b[i + 2] == b':'
        && b[i + 5] == b':'
        && all_digits(b, i..i + 2)
        && all_digits(b, i + 3..i + 5)
        && all_digits(b, i + 6..i + 8)
}

/// Length of an ISO 8601 timestamp at the start of `b` (date, time, fraction, zone).
#[inline]
fn iso_len(b: &[u8]) -> Option<usize> {
    if b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && all_digits(b, 0..4)
        && all_digits(b, 5..7)
        && all_digits(b, 8..10)
        && hms_shape(b, 11)
    {
        let mut n = 19 + frac_len(&b[19..]);
        n += zone_len(&b[n..]);
        Some(n)
    } else {
        None
    }
}

/// Finds the timestamp at the start of `b`: (kind, stamp start, stamp end, bytes to skip
/// including the stamp, not the following space).
#[inline]
fn stamp(b: &[u8]) -> Result<(StampKind, usize, usize, usize), NotSyslog> {
    let Some(&c0) = b.first() else {
        return Err(NotSyslog::NoHeader);
    };
    if c0.is_ascii_uppercase() {
        // `Mmm dd HH:MM:SS[.frac]`
        if b.len() >= 15 && b[3] == b' ' && b[6] == b' ' && b[9] == b':' && b[12] == b':' {
            // Shape only (the hot path): the values are checked when an event's time is
            // read, and an impossible one is counted as `bad_timestamp` then.
            let n = 15 + frac_len(&b[15..]);
            return Ok((StampKind::Rfc3164, 0, n, n));
        }
        // `Www YYYY-MM-DD HH:MM:SS ZONE` (journalctl short-full)
        if b.len() >= 24 && b[3] == b' ' && b[0..3].iter().all(u8::is_ascii_alphabetic) {
            if let Some(n) = iso_len(&b[4..]) {
                let s = &b[4..];
                if s[10] != b' ' {
                    return Err(NotSyslog::Malformed(Unreadable::BadTimestamp));
                }
                // The zone abbreviation (`CEST`, `UTC`, `+03`) is one more token.
                let mut end = 4 + n;
                if b.get(end) == Some(&b' ') {
                    let z = &b[end + 1..];
                    let zl = z
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-'))
                        .count();
                    if zl > 0 && zl <= 6 && z.get(zl) == Some(&b' ') {
                        end += 1 + zl;
                    }
                }
                return Ok((StampKind::ShortFull, 4, end, end));
            }
        }
        return Err(NotSyslog::NoHeader);
    }
    if c0.is_ascii_digit() {
        if let Some(n) = iso_len(b) {
            return Ok((StampKind::Iso, 0, n, n));
        }
        if b.len() >= 5 && b[4] == b'-' && all_digits(b, 0..4) {
            return Err(NotSyslog::Malformed(Unreadable::BadTimestamp));
        }
        // `1714550403.123456` (short-unix): 9–11 digits, optional fraction.
        let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
        if (9..=11).contains(&n) {
            let n = n + frac_len(&b[n..]);
            if b.get(n) == Some(&b' ') {
                return Ok((StampKind::Unix, 0, n, n));
            }
        }
    }
    Err(NotSyslog::NoHeader)
}

/// Well-known syslog facility names (`facility.level` fields).
const FACILITIES: &[&[u8]] = &[
    b"auth",
    b"authpriv",
    b"kern",
    b"user",
    b"mail",
    b"daemon",
    b"syslog",
    b"lpr",
    b"news",
    b"uucp",
    b"cron",
    b"ftp",
    b"local0",
    b"local1",
    b"local2",
    b"local3",
    b"local4",
    b"local5",
    b"local6",
    b"local7",
    b"security",
    b"ntp",
    b"console",
    b"solaris-cron",
];
const LEVELS: &[&[u8]] = &[
    b"emerg", b"alert", b"crit", b"err", b"error", b"warn", b"warning", b"notice", b"info",
    b"debug", b"panic", b"none",
];

/// `facility.level` (`authpriv.info`, `auth.notice`).
#[inline]
fn is_fac_level(t: &[u8]) -> bool {
    match memchr::memchr(b'.', t) {
        Some(i) => FACILITIES.contains(&&t[..i]) && LEVELS.contains(&&t[i + 1..]),
        None => false,
    }
}

/// Splits `PROG[PID]` / `PROG` (the `:` already gone).
#[inline]
fn tag_parts(tag: &[u8]) -> Option<(&[u8], Option<u32>)> {
    if tag.is_empty() {
        return None;
    }
    match tag.strip_suffix(b"]") {
        Some(t) => {
            // A short slice: a plain scan beats memrchr's set-up.
            let lb = t.iter().rposition(|&c| c == b'[')?;
            if lb == 0 {
                return None;
            }
            Some((&t[..lb], crate::scan::parse_digits(&t[lb + 1..])))
        }
        None => Some((tag, None)),
    }
}

/// Removes Solaris' `[ID 800047 auth.info] ` message id.
#[inline]
fn strip_solaris_id(msg: &[u8]) -> &[u8] {
    let Some(r) = msg.strip_prefix(b"[ID ") else {
        return msg;
    };
    let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || r.get(n) != Some(&b' ') {
        return msg;
    }
    let r = &r[n + 1..];
    match memchr::memchr(b']', &r[..r.len().min(32)]) {
        Some(i) if is_fac_level(&r[..i]) => {
            let r = &r[i + 1..];
            r.strip_prefix(b" ").unwrap_or(r)
        }
        _ => msg,
    }
}

/// Length of an optional `<PRI>` (1–3 digits) at the start of `b`.
#[inline]
fn pri_len(b: &[u8]) -> usize {
    if b.first() != Some(&b'<') {
        return 0;
    }
    let n = b[1..]
        .iter()
        .take(4)
        .take_while(|c| c.is_ascii_digit())
        .count();
    if (1..=3).contains(&n) && b.get(1 + n) == Some(&b'>') {
        n + 2
    } else {
        0
    }
}

/// Splits the RFC 5424 rest after `<PRI>1 `.
fn split_5424(b: &[u8]) -> Result<Header<'_>, NotSyslog> {
    const BAD: NotSyslog = NotSyslog::Malformed(Unreadable::BadRfc5424);
    let (kind, sl) = if b.first() == Some(&b'-') {
        (StampKind::Nil, 1)
    } else {
        match iso_len(b) {
            Some(n) if b[10] != b' ' => (StampKind::Iso, n),
            _ => return Err(NotSyslog::Malformed(Unreadable::BadTimestamp)),
        }
    };
    let stamp = &b[..sl];
    let mut rest = b.get(sl..).and_then(|r| r.strip_prefix(b" ")).ok_or(BAD)?;
    let mut fields: [&[u8]; 4] = [&[]; 4];
    for f in &mut fields {
        let sp = memchr::memchr(b' ', rest).ok_or(BAD)?;
        if sp == 0 {
            return Err(BAD);
        }
        *f = &rest[..sp];
        rest = &rest[sp + 1..];
    }
    let nil = |f: &'_ [u8]| -> bool { f == b"-" };
    let [host, app, procid, _msgid] = fields;
    // Structured data: `-` or `[id k="v" …]…` (quotes may hold escaped `\]`, `\"`).
    if rest.first() == Some(&b'-') {
        rest = &rest[1..];
    } else if rest.first() == Some(&b'[') {
        let mut i = 0;
        while rest.get(i) == Some(&b'[') {
            i += 1;
            let mut in_q = false;
            loop {
                match rest.get(i) {
                    None => return Err(BAD),
                    Some(b'\\') if in_q => i += 2,
                    Some(b'"') => {
                        in_q = !in_q;
                        i += 1
                    }
                    Some(b']') if !in_q => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
        }
        rest = &rest[i..];
    } else {
        return Err(BAD);
    }
    let msg = match rest.first() {
        None => rest,
        Some(b' ') => &rest[1..],
        Some(_) => return Err(BAD),
    };
    let msg = msg.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(msg);
    if nil(app) {
        return Err(NotSyslog::Malformed(Unreadable::NoTag));
    }
    Ok(Header {
        stamp,
        stamp_kind: kind,
        host: if nil(host) { &[] } else { host },
        prog: app,
        pid: if nil(procid) {
            None
        } else {
            crate::scan::parse_digits(procid)
        },
        msg: strip_solaris_id(msg),
    })
}

/// Length of the timestamp at the start of `line` if it has the shape of a syslog stamp.
/// Cheap shape check only.
#[inline]
pub fn timestamp_len(line: &[u8]) -> Option<usize> {
    stamp(line).ok().map(|s| s.3)
}

/// Splits a syslog line into timestamp, host, program, pid and message.
#[inline]
pub fn split(line: &[u8]) -> Result<Header<'_>, NotSyslog> {
    let pl = pri_len(line);
    let b = &line[pl..];
    if pl > 0 && b.starts_with(b"1 ") {
        return split_5424(&b[2..]);
    }
    let (kind, s0, s1, skip) = stamp(b)?;
    let stamp = &b[s0..s1];
    let rest = match b.get(skip) {
        Some(b' ') => &b[skip + 1..],
        _ => return Err(NotSyslog::Malformed(Unreadable::NoTag)),
    };
    // `HOST [FACILITY.LEVEL ]TAG: msg` or `TAG: msg`.
    let bad = NotSyslog::Malformed(Unreadable::NoTag);
    let (t1, r1) = next_token(rest).ok_or(bad)?;
    let (host, tag, msg) = if let Some(tag) = t1.strip_suffix(b":") {
        (&[][..], tag, r1)
    } else {
        let (t2, r2) = next_token(r1).ok_or(bad)?;
        if let Some(tag) = t2.strip_suffix(b":") {
            (t1, tag, r2)
        } else if is_fac_level(t2) {
            let (t3, r3) = next_token(r2).ok_or(bad)?;
            (t1, t3.strip_suffix(b":").ok_or(bad)?, r3)
        } else {
            return Err(bad);
        }
    };
    let (prog, pid) = tag_parts(tag).ok_or(bad)?;
    Ok(Header {
        stamp,
        stamp_kind: kind,
        host,
        prog,
        pid,
        msg: strip_solaris_id(msg),
    })
}

/// sysklogd's `TIMESTAMP HOST last message repeated N times` (the host's previous line was
/// written N more times): (host, N).
pub fn last_repeated(line: &[u8]) -> Option<(&[u8], u32)> {
    let b = &line[pri_len(line)..];
    let (_, _, _, skip) = stamp(b).ok()?;
    let rest = b.get(skip..)?.strip_prefix(b" ")?;
    let (host, r) = match rest.strip_prefix(b"last message repeated ") {
        Some(r) => (&[][..], r),
        None => {
            let (h, r) = next_token(rest)?;
            (h, r.strip_prefix(b"last message repeated ")?)
        }
    };
    let sp = memchr::memchr(b' ', r)?;
    if &r[sp..] != b" times" {
        return None;
    }
    Some((host, crate::scan::parse_digits(&r[..sp])?))
}

/// The token up to the next space and what follows that space; a token ending the line is
/// returned with an empty rest (a tag `sshd:` with an empty message).
#[inline]
fn next_token(b: &[u8]) -> Option<(&[u8], &[u8])> {
    if b.is_empty() {
        return None;
    }
    Some(match memchr::memchr(b' ', b) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(l: &str) -> (String, Option<u32>, String, String) {
        let h = split(l.as_bytes()).unwrap_or_else(|e| panic!("{l}: {e:?}"));
        (
            String::from_utf8_lossy(h.prog).into(),
            h.pid,
            String::from_utf8_lossy(h.msg).into(),
            String::from_utf8_lossy(h.host).into(),
        )
    }

    #[test]
    fn forms() {
        let h = split(b"Mar  3 00:00:05 bastion sshd[1977305]: Invalid user web").unwrap();
        assert_eq!(
            (h.prog, h.pid, h.msg),
            (&b"sshd"[..], Some(1977305), &b"Invalid user web"[..])
        );
        let h = split(b"2025-03-03T10:00:00.123456+01:00 host sshd-session[7]: x y").unwrap();
        assert_eq!(
            (h.prog, h.pid, h.msg),
            (&b"sshd-session"[..], Some(7), &b"x y"[..])
        );
        let h = split(b"Mar 03 00:00:05 host kernel: [1.2] IN=").unwrap();
        assert_eq!(
            (h.prog, h.pid, h.msg),
            (&b"kernel"[..], None, &b"[1.2] IN="[..])
        );
        let h = split(b"Mar  3 00:00:05 sshd[5]: no host").unwrap();
        assert_eq!((h.prog, h.msg), (&b"sshd"[..], &b"no host"[..]));
        assert_eq!(split(b"Failed password for root"), Err(NotSyslog::NoHeader));
        assert_eq!(
            split(b"Mar  3 00:00:05 host"),
            Err(NotSyslog::Malformed(Unreadable::NoTag))
        );
        assert_eq!(split(b""), Err(NotSyslog::NoHeader));
    }

    #[test]
    fn more_forms() {
        let m = "Failed password for root from 192.0.2.7 port 4 ssh2".to_string();
        for (l, host, prog, pid) in [
            (
                "<38>1 2024-05-01T10:00:03.123456+02:00 host sshd 104 - - MSG",
                "host",
                "sshd",
                Some(104),
            ),
            (
                "<38>1 2024-05-01T10:00:03Z host sshd - ID47 [a b=\"]\\\"x\"][c] \u{feff}MSG",
                "host",
                "sshd",
                None,
            ),
            ("<38>1 - - sshd 1 - - MSG", "", "sshd", Some(1)),
            (
                "<38>May  1 10:00:03 host sshd[104]: MSG",
                "host",
                "sshd",
                Some(104),
            ),
            (
                "2024-05-01T10:00:03Z host sshd[104]: MSG",
                "host",
                "sshd",
                Some(104),
            ),
            (
                "2024-05-01T10:00:03+0200 host sshd[104]: MSG",
                "host",
                "sshd",
                Some(104),
            ),
            (
                "2024-05-01T10:00:03+02 host sshd[104]: MSG",
                "host",
                "sshd",
                Some(104),
            ),
            (
                "2024-05-01 10:00:03 host sshd[104]: MSG",
                "host",
                "sshd",
                Some(104),
            ),
            (
                "2024-05-01 10:00:03,123 host sshd[104]: MSG",
                "host",
                "sshd",
                Some(104),
            ),
            (
                "2024-05-01T10:00:03.5 host sshd[104]: MSG",
                "host",
                "sshd",
                Some(104),
            ),
            (
                "May 01 10:00:03.123456 host sshd[104]: MSG",
                "host",
                "sshd",
                Some(104),
            ),
            (
                "Wed 2024-05-01 10:00:03 CEST host sshd[104]: MSG",
                "host",
                "sshd",
                Some(104),
            ),
            (
                "Wed 2024-05-01 10:00:03.123456 UTC host sshd[104]: MSG",
                "host",
                "sshd",
                Some(104),
            ),
            (
                "1714550403.123456 host sshd[104]: MSG",
                "host",
                "sshd",
                Some(104),
            ),
            (
                "May  1 10:00:03 host sshd[104]: [ID 800047 auth.info] MSG",
                "host",
                "sshd",
                Some(104),
            ),
            (
                "May  1 10:00:03 host authpriv.info sshd[104]: MSG",
                "host",
                "sshd",
                Some(104),
            ),
            (
                "May  1 10:00:03 host /usr/sbin/sshd[104]: MSG",
                "host",
                "/usr/sbin/sshd",
                Some(104),
            ),
            ("May  1 10:00:03 host sshd: MSG", "host", "sshd", None),
            (
                "May  1 10:00:03 host sshd-session[9]: MSG",
                "host",
                "sshd-session",
                Some(9),
            ),
            (
                "May  1 10:00:03 host sshd-auth[9]: MSG",
                "host",
                "sshd-auth",
                Some(9),
            ),
            (
                "Jun 10 17:16:34 combo sshd(pam_unix)[3353]: MSG",
                "combo",
                "sshd(pam_unix)",
                Some(3353),
            ),
        ] {
            let line = l.replace("MSG", &m);
            let p = parts(&line);
            assert_eq!((p.3.as_str(), p.0.as_str(), p.1), (host, prog, pid), "{l}");
            assert_eq!(p.2, m, "{l}");
        }
    }

    #[test]
    fn reasons() {
        for (l, r) in [
            (
                "2024-05-01X10:00:03 host sshd[1]: x",
                Unreadable::BadTimestamp,
            ),
            ("May  1 10:00:03 host word sshd[1]: x", Unreadable::NoTag),
            ("May  1 10:00:03", Unreadable::NoTag),
            (
                "<38>1 2024-05-01T10:00:03Z host sshd 1 -",
                Unreadable::BadRfc5424,
            ),
            (
                "<38>1 2024-05-01T10:00:03Z host sshd 1 - [x y=\"]",
                Unreadable::BadRfc5424,
            ),
            (
                "<38>1 2024-05-01T10:00:03Z host - 1 - - x",
                Unreadable::NoTag,
            ),
            ("-- Boot 4b3f --", Unreadable::NoTimestamp),
            ("", Unreadable::Empty),
        ] {
            let e = split(l.as_bytes()).unwrap_err();
            assert_eq!(e.reason(l.as_bytes()), r, "{l}");
        }
        assert_eq!(
            last_repeated(b"Sep 28 09:08:56 combo last message repeated 2 times"),
            Some((&b"combo"[..], 2))
        );
        assert_eq!(
            last_repeated(b"Sep 28 09:08:56 last message repeated 14 times"),
            Some((&b""[..], 14))
        );
        assert_eq!(
            last_repeated(b"Sep 28 09:08:56 combo last message repeated x times"),
            None
        );
    }
}
