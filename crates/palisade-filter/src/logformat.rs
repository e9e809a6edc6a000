//! Access-log formats: nginx `log_format` and Apache `LogFormat` strings, compiled once into
//! a field splitter (literal separators found with `memchr`/`memmem`, quoted fields read up
//! to their unescaped closing quote; no regex), and `trusted_proxies`: who may name the
//! client in `X-Forwarded-For`.
//!
//! Presets: `combined` and `common` (the built-in fast path, [`LogFormat::preset`] gives
//! `None` for them), `vhost_combined` (Apache's `%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i"
//! "%{User-Agent}i"`) and `combined_xff` (combined followed by `"$http_x_forwarded_for"`).

use crate::scan::{self, strip_prefix};
use memchr::memmem;
use palisade_core::Allowlist;
use std::net::IpAddr;

/// What a field of the format holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// The TCP peer (`$remote_addr`, `%h`, `%a`).
    Peer,
    /// `$remote_user`, `%u`.
    User,
    /// CLF time `10/Oct/2000:13:55:36 -0700` (`$time_local`, `%t` without its brackets).
    Time,
    /// ISO 8601 time (`$time_iso8601`).
    TimeIso,
    /// The request line (`$request`, `%r`).
    Request,
    /// Final status (`$status`, `%>s`, `%s`).
    Status,
    /// `Referer` header.
    Referer,
    /// `User-Agent` header.
    UserAgent,
    /// `X-Forwarded-For` header.
    Xff,
    /// Virtual host or `Host` header (`$host`, `$server_name`, `%v`, `%V`, `%{Host}i`).
    Host,
    /// Anything else (sizes, durations, ports, other headers).
    Other,
}

/// How a field's end is found.
#[derive(Debug)]
enum End {
    /// Up to the next unescaped `"` (the field is between quotes).
    Quote,
    /// Up to the next occurrence of this byte.
    Byte(u8),
    /// Up to the next occurrence of this literal.
    Lit(Box<memmem::Finder<'static>>),
    /// The rest of the line.
    Line,
}

#[derive(Debug)]
enum Tok {
    Lit(Box<[u8]>),
    Field(FieldKind, End),
}

/// A compiled access-log format.
#[derive(Debug)]
pub struct LogFormat {
    toks: Vec<Tok>,
    has_peer: bool,
    has_xff: bool,
}

/// The fields of one line (empty when the format has no such field).
#[derive(Debug, Default, Clone, Copy)]
pub struct Fields<'a> {
    /// TCP peer.
    pub peer: &'a [u8],
    /// Authenticated user.
    pub user: &'a [u8],
    /// CLF time.
    pub time: &'a [u8],
    /// ISO 8601 time.
    pub time_iso: &'a [u8],
    /// Request line.
    pub req: &'a [u8],
    /// Status.
    pub status: &'a [u8],
    /// Referer.
    pub referer: &'a [u8],
    /// User agent.
    pub ua: &'a [u8],
    /// X-Forwarded-For.
    pub xff: &'a [u8],
    /// Virtual host.
    pub host: &'a [u8],
}

/// A format string that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log_format {format:?}: {reason}")]
pub struct FormatError {
    /// The format as given.
    pub format: String,
    /// What is wrong.
    pub reason: String,
}

const VHOST_COMBINED: &str =
    r#"%v:%p %h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\""#;
const COMBINED_XFF: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for""#;

fn nginx_var(name: &str) -> FieldKind {
    match name {
        "remote_addr" => FieldKind::Peer,
        "remote_user" => FieldKind::User,
        "time_local" => FieldKind::Time,
        "time_iso8601" => FieldKind::TimeIso,
        "request" => FieldKind::Request,
        "status" => FieldKind::Status,
        "http_referer" => FieldKind::Referer,
        "http_user_agent" => FieldKind::UserAgent,
        "http_x_forwarded_for" | "proxy_add_x_forwarded_for" => FieldKind::Xff,
        "host" | "server_name" | "http_host" => FieldKind::Host,
        _ => FieldKind::Other,
    }
}

fn apache_directive(arg: Option<&str>, c: char) -> FieldKind {
    match (c, arg.map(str::to_ascii_lowercase).as_deref()) {
        ('h' | 'a', None) => FieldKind::Peer,
        ('u', _) => FieldKind::User,
        ('t', None) => FieldKind::Time,
        ('r', _) => FieldKind::Request,
        ('s', _) => FieldKind::Status,
        ('i', Some("referer")) => FieldKind::Referer,
        ('i', Some("user-agent")) => FieldKind::UserAgent,
        ('i', Some("x-forwarded-for")) => FieldKind::Xff,
        ('i', Some("host")) | ('v' | 'V', None) => FieldKind::Host,
        _ => FieldKind::Other,
    }
}

/// One piece of a format string before the end rules are worked out.
enum Piece {
    Lit(Vec<u8>),
    Field(FieldKind),
}

fn push_lit(p: &mut Vec<Piece>, b: &[u8]) {
    if let Some(Piece::Lit(l)) = p.last_mut() {
        l.extend_from_slice(b);
    } else if !b.is_empty() {
        p.push(Piece::Lit(b.to_vec()));
    }
}

/// nginx: `$name` or `${name}`; a configuration written as `'…' '…'` segments is joined.
fn parse_nginx(f: &str) -> Result<Vec<Piece>, String> {
    let mut p = Vec::new();
    let b = f.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let (name, next) = if b.get(i + 1) == Some(&b'{') {
                let close = f[i + 2..]
                    .find('}')
                    .ok_or_else(|| format!("unclosed ${{ at byte {i}"))?;
                (&f[i + 2..i + 2 + close], i + 3 + close)
            } else {
                let len = b[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                (&f[i + 1..i + 1 + len], i + 1 + len)
            };
            if name.is_empty() {
                push_lit(&mut p, b"$");
                i += 1;
                continue;
            }
            p.push(Piece::Field(nginx_var(name)));
            i = next;
        } else {
            let n = b[i..].iter().take_while(|c| **c != b'$').count();
            push_lit(&mut p, &b[i..i + n]);
            i += n;
        }
    }
    Ok(p)
}

/// Apache: `%X`, `%>s`, `%{arg}X`, condition modifiers (`%400,501{User-agent}i`, `%!200r`),
/// `%%`; `\"`, `\\`, `\t`, `\n` as in a configuration file.
fn parse_apache(f: &str) -> Result<Vec<Piece>, String> {
    let mut p = Vec::new();
    let cs: Vec<char> = f.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        match cs[i] {
            '\\' if i + 1 < cs.len() => {
                let c = match cs[i + 1] {
                    't' => '\t',
                    'n' => '\n',
                    c => c,
                };
                push_lit(&mut p, c.encode_utf8(&mut [0; 4]).as_bytes());
                i += 2;
            }
            '%' => {
                i += 1;
                if cs.get(i) == Some(&'%') {
                    push_lit(&mut p, b"%");
                    i += 1;
                    continue;
                }
                while i < cs.len()
                    && (cs[i].is_ascii_digit() || matches!(cs[i], ',' | '!' | '<' | '>'))
                {
                    i += 1;
                }
                let mut arg = None;
                if cs.get(i) == Some(&'{') {
                    let close = cs[i..]
                        .iter()
                        .position(|c| *c == '}')
                        .ok_or_else(|| "unclosed %{".to_string())?;
                    arg = Some(cs[i + 1..i + close].iter().collect::<String>());
                    i += close + 1;
                }
                let c = *cs.get(i).ok_or_else(|| "format ends in %".to_string())?;
                i += 1;
                let kind = apache_directive(arg.as_deref(), c);
                if kind == FieldKind::Time {
                    // `%t` is `[10/Oct/2000:13:55:36 -0700]`, brackets included.
                    push_lit(&mut p, b"[");
                    p.push(Piece::Field(kind));
                    push_lit(&mut p, b"]");
                } else {
                    p.push(Piece::Field(kind));
                }
            }
            c => {
                push_lit(&mut p, c.encode_utf8(&mut [0; 4]).as_bytes());
                i += 1;
            }
        }
    }
    Ok(p)
}

fn is_nginx(f: &str) -> bool {
    let b = f.as_bytes();
    b.windows(2)
        .any(|w| w[0] == b'$' && (w[1].is_ascii_alphabetic() || w[1] == b'_' || w[1] == b'{'))
}

/// nginx configuration quoting: `'a ' '"b"'` → `a "b"`.
fn unquote_nginx(f: &str) -> String {
    let t = f.trim();
    if !t.starts_with('\'') {
        return t.to_string();
    }
    let mut out = String::new();
    let mut rest = t;
    while let Some(r) = rest.trim_start().strip_prefix('\'') {
        match r.find('\'') {
            Some(e) => {
                out.push_str(&r[..e]);
                rest = &r[e + 1..];
            }
            None => {
                out.push_str(r);
                rest = "";
            }
        }
    }
    out
}

impl LogFormat {
    /// The format named `name` (a preset) or written in `name` (an nginx `log_format` or
    /// Apache `LogFormat` string). `Ok(None)`: the built-in combined/common parser applies.
    pub fn preset(name: &str) -> Result<Option<LogFormat>, FormatError> {
        match name.trim() {
            "combined" | "common" | "" => Ok(None),
            "vhost_combined" => Self::compile(VHOST_COMBINED).map(Some),
            "combined_xff" => Self::compile(COMBINED_XFF).map(Some),
            other => Self::compile(other).map(Some),
        }
    }

    /// Compiles an nginx or Apache format string.
    pub fn compile(format: &str) -> Result<LogFormat, FormatError> {
        let err = |reason: String| FormatError {
            format: format.to_string(),
            reason,
        };
        let pieces = if is_nginx(format) {
            parse_nginx(&unquote_nginx(format))
        } else {
            parse_apache(format)
        }
        .map_err(err)?;
        let mut toks = Vec::with_capacity(pieces.len());
        let (mut has_peer, mut has_xff, mut has_req, mut has_status) = (false, false, false, false);
        for (i, p) in pieces.iter().enumerate() {
            match p {
                Piece::Lit(l) => toks.push(Tok::Lit(l.clone().into_boxed_slice())),
                Piece::Field(k) => {
                    let prev_quote = matches!(i.checked_sub(1).map(|j| &pieces[j]), Some(Piece::Lit(l)) if l.ends_with(b"\""));
                    let end = match pieces.get(i + 1) {
                        None => End::Line,
                        Some(Piece::Field(_)) => {
                            return Err(err(
                                "two fields without a separator between them cannot be split"
                                    .into(),
                            ))
                        }
                        Some(Piece::Lit(l)) if prev_quote && l.starts_with(b"\"") => End::Quote,
                        Some(Piece::Lit(l)) if l.len() == 1 => End::Byte(l[0]),
                        Some(Piece::Lit(l)) => {
                            End::Lit(Box::new(memmem::Finder::new(l).into_owned()))
                        }
                    };
                    match k {
                        FieldKind::Peer => has_peer = true,
                        FieldKind::Xff => has_xff = true,
                        FieldKind::Request => has_req = true,
                        FieldKind::Status => has_status = true,
                        _ => {}
                    }
                    toks.push(Tok::Field(*k, end));
                }
            }
        }
        if !has_peer && !has_xff {
            return Err(err(
                "no client address field ($remote_addr, %h, %a or X-Forwarded-For)".into(),
            ));
        }
        if !has_req || !has_status {
            return Err(err(
                "the request ($request, %r) and the status ($status, %>s) are needed".into(),
            ));
        }
        Ok(LogFormat {
            toks,
            has_peer,
            has_xff,
        })
    }

    /// Whether the format logs `X-Forwarded-For`.
    pub fn has_xff(&self) -> bool {
        self.has_xff
    }

    /// Splits `line`; `None` if it does not fit the format.
    pub fn split<'a>(&self, line: &'a [u8]) -> Option<Fields<'a>> {
        let mut f = Fields::default();
        let mut pos = 0;
        for t in &self.toks {
            let rest = &line[pos..];
            match t {
                Tok::Lit(l) => {
                    strip_prefix(rest, l)?;
                    pos += l.len();
                }
                Tok::Field(k, end) => {
                    let len = match end {
                        End::Line => rest.len(),
                        End::Byte(b) => memchr::memchr(*b, rest)?,
                        End::Lit(fd) => fd.find(rest)?,
                        End::Quote => quote_end(rest)?,
                    };
                    let v = &rest[..len];
                    pos += len;
                    let slot = match k {
                        FieldKind::Peer => &mut f.peer,
                        FieldKind::User => &mut f.user,
                        FieldKind::Time => &mut f.time,
                        FieldKind::TimeIso => &mut f.time_iso,
                        FieldKind::Request => &mut f.req,
                        FieldKind::Status => &mut f.status,
                        FieldKind::Referer => &mut f.referer,
                        FieldKind::UserAgent => &mut f.ua,
                        FieldKind::Xff => &mut f.xff,
                        FieldKind::Host => &mut f.host,
                        FieldKind::Other => continue,
                    };
                    // The first occurrence of a field counts (a format may log one twice).
                    if slot.is_empty() {
                        *slot = v;
                    }
                }
            }
        }
        Some(f)
    }

    /// The client of a split line: the peer, or, when the peer is a trusted proxy, the
    /// right-most `X-Forwarded-For` entry that is not one (see [`client`]). A format without
    /// a peer field starts from the right-most `X-Forwarded-For` entry.
    pub fn client(&self, f: &Fields<'_>, trusted: Option<&Allowlist>) -> Option<IpAddr> {
        if self.has_peer {
            let peer = scan::ip(f.peer)?;
            client(peer, f.xff, trusted)
        } else {
            let mut it = xff_entries(f.xff);
            let first = parse_entry(it.next()?)?;
            match trusted {
                Some(t) if t.contains(first) => walk(it, t),
                _ => Some(first),
            }
        }
    }
}

/// Length of a quoted field's inside: up to the first `"` not escaped by a backslash
/// (Apache writes `\"`, nginx `\x22`).
fn quote_end(b: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let i = from + memchr::memchr(b'"', &b[from..])?;
        let backslashes = b[..i].iter().rev().take_while(|&&c| c == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(i);
        }
        from = i + 1;
    }
}

/// `X-Forwarded-For` entries, right-most first (`-` and empty entries skipped).
fn xff_entries(xff: &[u8]) -> impl Iterator<Item = &[u8]> {
    xff.rsplit(|&c| c == b',')
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty() && *e != b"-")
}

/// One entry: `1.2.3.4`, `2001:db8::1`, `1.2.3.4:5678`, `[2001:db8::1]:5678`.
fn parse_entry(e: &[u8]) -> Option<IpAddr> {
    if let Some(ip) = scan::ip(e) {
        return Some(ip);
    }
    if let Some(r) = strip_prefix(e, b"[") {
        let i = memchr::memchr(b']', r)?;
        return scan::ip(&r[..i]);
    }
    let i = memchr::memchr(b':', e)?;
    if memchr::memchr(b':', &e[i + 1..]).is_some() {
        return None;
    }
    scan::digits_n(&e[i + 1..], e.len() - i - 1)?;
    scan::ip(&e[..i])
}

fn walk<'a>(entries: impl Iterator<Item = &'a [u8]>, trusted: &Allowlist) -> Option<IpAddr> {
    for e in entries {
        // An entry that is not an address where the client should be: nobody is blamed.
        let ip = parse_entry(e)?;
        if !trusted.contains(ip) {
            return Some(ip);
        }
    }
    // Only trusted proxies: nobody outside to blame.
    None
}

/// The client of a request from `peer` with `X-Forwarded-For: xff`: the peer itself unless it
/// is in `trusted`; then the right-most entry of `xff` that is not in `trusted`. The header
/// is never read for a peer outside `trusted` (anyone can send it). `None` when a trusted
/// peer sent no usable client (no header, a malformed entry, only trusted addresses): the
/// proxy is never blamed.
pub fn client(peer: IpAddr, xff: &[u8], trusted: Option<&Allowlist>) -> Option<IpAddr> {
    match trusted {
        Some(t) if t.contains(peer) => walk(xff_entries(xff), t),
        _ => Some(peer),
    }
}

/// Parses `trusted_proxies`: CIDRs or addresses separated by commas or white space.
pub fn parse_trusted(s: &str) -> Result<Allowlist, String> {
    let mut nets = Vec::new();
    for e in s
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
    {
        nets.push(
            Allowlist::parse_entry(e)
                .ok_or_else(|| format!("trusted_proxies: {e:?} is not an address or CIDR"))?,
        );
    }
    if nets.is_empty() {
        return Err("trusted_proxies: empty list".into());
    }
    Ok(Allowlist::new(nets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_split() {
        let f = LogFormat::preset("vhost_combined").unwrap().unwrap();
        let l = br#"www.example.org:443 192.0.2.1 - bob [10/Oct/2000:13:55:36 -0700] "GET /a\"b HTTP/1.1" 404 12 "https://www.example.org/" "Mozilla/5.0""#;
        let s = f.split(l).unwrap();
        assert_eq!(s.host, b"www.example.org");
        assert_eq!(s.peer, b"192.0.2.1");
        assert_eq!(s.user, b"bob");
        assert_eq!(s.time, b"10/Oct/2000:13:55:36 -0700");
        assert_eq!(s.req, br#"GET /a\"b HTTP/1.1"#);
        assert_eq!(s.status, b"404");
        assert_eq!(s.referer, b"https://www.example.org/");
        assert_eq!(s.ua, b"Mozilla/5.0");
        let f = LogFormat::preset("combined_xff").unwrap().unwrap();
        let l = br#"203.0.113.5 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 1 "-" "x" "198.51.100.1, 203.0.113.9""#;
        let s = f.split(l).unwrap();
        assert_eq!(s.xff, b"198.51.100.1, 203.0.113.9");
        assert!(f.has_xff());
        assert!(LogFormat::preset("combined").unwrap().is_none());
        assert!(f.split(b"203.0.113.5 - - [x").is_none());
    }

    #[test]
    fn bad_formats() {
        assert!(LogFormat::compile("$remote_addr$status $request").is_err());
        assert!(LogFormat::compile("%h %l %u %t").is_err());
        assert!(LogFormat::compile("$status \"$request\"").is_err());
        assert!(LogFormat::compile("%h %{Referer").is_err());
    }

    #[test]
    fn nginx_quoted_config() {
        let f = LogFormat::compile(
            r#"'$http_x_forwarded_for - $remote_user [$time_local] ' '"$request" $status $body_bytes_sent'"#,
        )
        .unwrap();
        let s = f.split(br#"198.51.100.1, 10.0.0.2 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5"#).unwrap();
        assert_eq!(s.xff, b"198.51.100.1, 10.0.0.2");
        assert_eq!(s.status, b"200");
        let t = parse_trusted("10.0.0.0/8").unwrap();
        assert_eq!(f.client(&s, Some(&t)), "198.51.100.1".parse().ok());
        assert_eq!(f.client(&s, None), "10.0.0.2".parse().ok());
    }

    #[test]
    fn xff_walk() {
        let t = parse_trusted("10.0.0.0/8, 2001:db8:ffff::/48 192.0.2.10").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // untrusted peer: the header is never read
        assert_eq!(
            client(ip("198.51.100.7"), b"1.1.1.1", Some(&t)),
            Some(ip("198.51.100.7"))
        );
        // trusted peer: right-most untrusted; spoofed left-most entries are not reached
        assert_eq!(
            client(
                ip("10.0.0.1"),
                b"6.6.6.6, 198.51.100.8, 192.0.2.10",
                Some(&t)
            ),
            Some(ip("198.51.100.8"))
        );
        assert_eq!(
            client(
                ip("10.0.0.1"),
                b"[2001:db8::5]:443, 10.1.1.1:8080",
                Some(&t)
            ),
            Some(ip("2001:db8::5"))
        );
        // nothing usable: nobody blamed
        assert_eq!(client(ip("10.0.0.1"), b"-", Some(&t)), None);
        assert_eq!(client(ip("10.0.0.1"), b"10.2.2.2", Some(&t)), None);
        assert_eq!(client(ip("10.0.0.1"), b"1.1.1.1, junk", Some(&t)), None);
        // no trusted list: the peer
        assert_eq!(
            client(ip("10.0.0.1"), b"1.1.1.1", None),
            Some(ip("10.0.0.1"))
        );
        assert!(parse_trusted("10.0.0.0/33").is_err());
        assert!(parse_trusted("").is_err());
    }
}
