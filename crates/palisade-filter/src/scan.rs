//! Byte-scanning helpers for the hot path: no allocation, no regex.

use std::net::IpAddr;

/// `b` without the ASCII prefix `p`, if it starts with it.
#[inline]
pub fn strip_prefix<'a>(b: &'a [u8], p: &[u8]) -> Option<&'a [u8]> {
    b.strip_prefix(p)
}

/// `b` without the suffix `s`, if it ends with it.
#[inline]
pub fn strip_suffix<'a>(b: &'a [u8], s: &[u8]) -> Option<&'a [u8]> {
    b.strip_suffix(s)
}

/// Parses a run of 1..=10 ASCII digits that makes up all of `b`.
#[inline]
pub fn parse_digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 10 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    u32::try_from(v).ok()
}

/// Parses exactly `n` ASCII digits at the start of `b`.
#[inline]
pub fn digits_n(b: &[u8], n: usize) -> Option<u32> {
    if b.len() < n {
        return None;
    }
    let mut v = 0u32;
    for &c in &b[..n] {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Parses an address that makes up all of `b` (IPv4-mapped IPv6 becomes IPv4).
#[inline]
pub fn ip(b: &[u8]) -> Option<IpAddr> {
    // Cheap rejection before the std parser: addresses are hex digits, '.', ':'.
    if b.is_empty()
        || b.len() > 45
        || !b
            .iter()
            .all(|c| c.is_ascii_hexdigit() || *c == b'.' || *c == b':')
    {
        return None;
    }
    palisade_core::parse_ip_bytes(b)
}

/// If `b` ends with ` port DIGITS`, returns the part before it.
#[inline]
pub fn strip_port_suffix(b: &[u8]) -> Option<&[u8]> {
    let sp = memchr::memrchr(b' ', b)?;
    parse_digits(&b[sp + 1..])?;
    strip_suffix(&b[..sp], b" port")
}

/// Splits `b` at its last space: `(before, last_token)`. `None` if there is no space.
#[inline]
pub fn split_last_token(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = memchr::memrchr(b' ', b)?;
    Some((&b[..sp], &b[sp + 1..]))
}

/// Splits `b` at its first space: `(first_token, after)`; the whole of `b` if there is none.
#[inline]
pub fn split_first_token(b: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b' ', b) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

/// Parses `HOST[ port N]` at the start of `b`, returning the address and the rest after it.
/// The host is the text up to the first space or `:` that is followed by a non-address
/// character, i.e. `1.2.3.4 port 22: x` → `1.2.3.4`, `2001:db8::1 port 22` → `2001:db8::1`,
/// `1.2.3.4: 11: Bye` → `1.2.3.4`.
pub fn host_port_front(b: &[u8]) -> Option<(IpAddr, &[u8])> {
    let end = b
        .iter()
        .position(|&c| !(c.is_ascii_hexdigit() || c == b'.' || c == b':'))
        .unwrap_or(b.len());
    let mut tok = &b[..end];
    // A trailing ':' belongs to the message (`1.2.3.4: 11: Bye`), not the address.
    while let Some(t) = tok.strip_suffix(b":") {
        if ip(tok).is_some() {
            break;
        }
        tok = t;
    }
    let addr = ip(tok)?;
    let mut rest = &b[tok.len()..];
    if let Some(r) = strip_prefix(rest, b" port ") {
        let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &r[n..];
    }
    Some((addr, rest))
}

/// ASCII lower-case comparison of `a` with an already lower-case `lower`.
#[inline]
pub fn eq_ignore_case(a: &[u8], lower: &[u8]) -> bool {
    a.len() == lower.len()
        && a.iter()
            .zip(lower)
            .all(|(x, y)| x.to_ascii_lowercase() == *y)
}

/// `b` as `&str` if it is printable ASCII only (no control characters), the common case
/// that needs no lossy conversion or replacement.
#[inline]
pub fn printable_ascii(b: &[u8]) -> Option<&str> {
    if b.iter().all(|&c| (0x20..0x7f).contains(&c)) {
        std::str::from_utf8(b).ok()
    } else {
        None
    }
}

/// [`palisade_core::Event::evidence_of`] with a fast path for printable ASCII lines (same
/// result, one allocation).
pub fn evidence(line: &[u8]) -> Box<str> {
    let cut = &line[..line.len().min(palisade_core::event::EVIDENCE_MAX)];
    match printable_ascii(cut) {
        Some(s) => Box::from(s),
        None => palisade_core::Event::evidence_of(line),
    }
}

/// Lossy UTF-8 of at most `max` bytes with control characters replaced, for captured values.
pub fn capture(b: &[u8], max: usize) -> Box<str> {
    let cut = &b[..b.len().min(max)];
    if let Some(s) = printable_ascii(cut) {
        return Box::from(s);
    }
    String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect::<String>()
        .into_boxed_str()
}

/// The line without trailing `\r`, spaces and tabs (CRLF logs, stray padding).
#[inline]
pub fn trim_line_end(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && matches!(b[end - 1], b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    &b[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(parse_digits(b"12345"), Some(12345));
        assert_eq!(parse_digits(b"12a"), None);
        assert_eq!(parse_digits(b""), None);
        assert_eq!(parse_digits(b"99999999999"), None);
        assert_eq!(
            strip_port_suffix(b"x 1.2.3.4 port 22"),
            Some(&b"x 1.2.3.4"[..])
        );
        assert_eq!(strip_port_suffix(b"x 1.2.3.4 port x"), None);
        let (a, r) = host_port_front(b"1.2.3.4 port 22: x").unwrap();
        assert_eq!(a.to_string(), "1.2.3.4");
        assert_eq!(r, b": x");
        let (a, r) = host_port_front(b"2001:db8::1 port 22").unwrap();
        assert_eq!(a.to_string(), "2001:db8::1");
        assert_eq!(r, b"");
        let (a, r) = host_port_front(b"1.2.3.4: 11: Bye").unwrap();
        assert_eq!(a.to_string(), "1.2.3.4");
        assert_eq!(r, b": 11: Bye");
        let (a, _) = host_port_front(b"::ffff:1.2.3.4 port 1").unwrap();
        assert_eq!(a.to_string(), "1.2.3.4");
        assert!(host_port_front(b"example.com port 22").is_none());
        assert!(ip(b"1.2.3.4x").is_none());
        assert_eq!(&*capture(b"a\nb\xff", 128), "a\u{FFFD}b\u{FFFD}");
        for l in [
            &b"plain line"[..],
            b"tab\there",
            b"\xff\xfe bad",
            &[b'x'; 600][..],
            b"caf\xc3\xa9",
        ] {
            assert_eq!(evidence(l), palisade_core::Event::evidence_of(l));
        }
    }
}
