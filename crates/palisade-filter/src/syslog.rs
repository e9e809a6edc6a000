//! Splitting a syslog line (`TIMESTAMP HOST PROG[PID]: MSG`) without allocating.

/// The parts of a syslog line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Program name from the tag (`sshd`, `sshd-session`, `kernel`).
    pub prog: &'a [u8],
    /// Process id from the tag, if any.
    pub pid: Option<u32>,
    /// The message after `: `.
    pub msg: &'a [u8],
}

/// Why a line could not be split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotSyslog {
    /// The line does not start with a syslog timestamp at all (journald `MESSAGE` only).
    NoHeader,
    /// It starts like a syslog line but the host or tag is malformed.
    Malformed,
}

/// Length of the timestamp at the start of `line` if it has the shape of an RFC 3164
/// (`Mmm dd HH:MM:SS`) or RFC 3339 (`2025-03-03T10:00:00…`) stamp. Cheap shape check only.
#[inline]
pub fn timestamp_len(line: &[u8]) -> Option<usize> {
    if line.len() >= 16
        && line[3] == b' '
        && line[9] == b':'
        && line[12] == b':'
        && line[15] == b' '
        && line[0].is_ascii_uppercase()
    {
        return Some(15);
    }
    if line.len() >= 20 && line[0].is_ascii_digit() && line[4] == b'-' && line[10] == b'T' {
        return memchr::memchr(b' ', &line[..line.len().min(48)]);
    }
    None
}

/// Splits a syslog line into program, pid and message.
#[inline]
pub fn split(line: &[u8]) -> Result<Header<'_>, NotSyslog> {
    let tl = timestamp_len(line).ok_or(NotSyslog::NoHeader)?;
    let rest = &line[tl + 1..];
    let sp = memchr::memchr(b' ', rest).ok_or(NotSyslog::Malformed)?;
    let (mut tag, mut after) = (&rest[..sp], &rest[sp + 1..]);
    if tag.last() != Some(&b':') {
        // `HOST TAG: msg`: skip the host.
        let sp2 = memchr::memchr(b' ', after).ok_or(NotSyslog::Malformed)?;
        tag = &after[..sp2];
        after = &after[sp2 + 1..];
    }
    let tag = tag.strip_suffix(b":").ok_or(NotSyslog::Malformed)?;
    let (prog, pid) = match tag.strip_suffix(b"]") {
        Some(t) => {
            let lb = memchr::memchr(b'[', t).ok_or(NotSyslog::Malformed)?;
            (&t[..lb], crate::scan::parse_digits(&t[lb + 1..]))
        }
        None => (tag, None),
    };
    Ok(Header {
        prog,
        pid,
        msg: after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(split(b"Mar  3 00:00:05 host"), Err(NotSyslog::Malformed));
        assert_eq!(split(b""), Err(NotSyslog::NoHeader));
    }
}
