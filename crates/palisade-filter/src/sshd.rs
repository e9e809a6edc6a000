//! The `sshd` filter: OpenSSH 4–10 (`sshd`, `sshd-session` of 9.8+, `sshd-auth` of 10, and
//! the pre-2005 Linux-PAM tag `sshd(pam_unix)`).
//!
//! Every message is recognised by its fixed OpenSSH wording with hand-written byte parsing:
//! the program tag is checked first (other programs cost a few comparisons), then the first
//! bytes of the message select at most one parser. The timestamp is parsed only for lines
//! that produce an event.
//!
//! Addresses are taken from where sshd writes them, never from text a client chose (user
//! names, certificate key ids, hostbased client user and host):
//! * sshd's `from HOST port N[ ssh2][: INFO]` tail is located from the end. Without INFO
//!   (password, keyboard-interactive…) the tail ends the line, so only the last ` from ` can
//!   be sshd's. With INFO (publickey, hostbased) every ` from ` whose INFO fits sshd's key
//!   description grammar is a candidate; the grammar accepts every real INFO, so one
//!   candidate is the peer and several are ambiguous: then only the address the same
//!   connection logged before may be blamed, else the line is refused and counted
//!   ([`crate::FilterStats::ambiguous`]).
//! * Where attacker text comes *after* the address (client disconnect messages, key-exchange
//!   offers), it is parsed from the front.
//! * If the tail's host is not an address (UseDNS) the line is ignored rather than falling
//!   back to an address inside attacker text.
//!
//! A bounded connection table keyed by host and pid (direct-mapped, newest wins) remembers
//! each sshd process's address from its own unambiguous lines (and `Connection from` at
//! LogLevel VERBOSE). Lines without an address are attributed through it:
//! `Disconnecting: Too many authentication failures [preauth]`, older OpenSSH's
//! `maximum authentication attempts exceeded for USER [preauth]`, `Connection closed by
//! authenticating user USER [preauth]`, and (Aggressive) `kex_exchange_identification: …`
//! followed by `Connection closed by HOST port N` of the same process (rule `kex_failure`).
//!
//! `Failed none for invalid user …` and a client's `Received disconnect from HOST: 3: …: Auth
//! fail` count in every mode (rules `failed_auth`, `client_auth_fail`); a valid user's
//! `Failed none` only in Aggressive mode (routine at LogLevel VERBOSE).
//!
//! rsyslog's `message repeated N times: [ MSG ]` and sysklogd's `last message repeated N
//! times` give N events for a failure (at most [`REPEAT_MAX`]), one for anything else.

use crate::builtin::{Base, BuiltinOptions, Mode};
use crate::scan::{self, strip_prefix, strip_suffix};
use crate::time::TimeParser;
use crate::{Filter, FilterStats, LineCtx, Outcome};
use memchr::memmem;
use palisade_core::{Event, Timestamp};
use std::net::IpAddr;
use std::sync::Arc;

/// Rule names of the `sshd` filter, in rule-index order.
pub const RULES: &[&str] = &[
    "failed_password",
    "failed_publickey",
    "failed_auth",
    "invalid_user",
    "not_allowed",
    "max_auth_attempts",
    "too_many_auth_failures",
    "pam_auth_failure",
    "preauth_close",
    "preauth_disconnect",
    "no_ident",
    "bad_banner",
    "kex_failure",
    "unable_negotiate",
    "client_auth_fail",
];

const FAILED_PASSWORD: usize = 0;
const FAILED_PUBLICKEY: usize = 1;
const FAILED_AUTH: usize = 2;
const INVALID_USER: usize = 3;
const NOT_ALLOWED: usize = 4;
const MAX_AUTH: usize = 5;
const TOO_MANY: usize = 6;
const PAM_AUTH: usize = 7;
const PREAUTH_CLOSE: usize = 8;
const PREAUTH_DISCONNECT: usize = 9;
const NO_IDENT: usize = 10;
const BAD_BANNER: usize = 11;
const KEX_FAILURE: usize = 12;
const UNABLE_NEGOTIATE: usize = 13;
const CLIENT_AUTH_FAIL: usize = 14;

/// Slots of the per-connection table (direct-mapped on host and pid, overwritten on
/// collision: a bounded map whose eviction is "the newer connection wins").
const CONN_SLOTS: usize = 4096;
/// A key-exchange mark is only honoured this many lines after it was set.
const KEX_WINDOW: u64 = 20_000;
/// A remembered connection address is only used this many lines after it was last seen.
const CONN_WINDOW: u64 = 200_000;
/// At most this many events are made of one `message repeated N times` line.
pub const REPEAT_MAX: u32 = 100;
/// At most this many ` from ` candidates are examined in a line whose tail may carry
/// attacker text after the address (publickey/hostbased); more make the line ambiguous.
const CANDIDATES_MAX: usize = 16;

/// Client disconnect reasons (sent before authentication) typical of scanners and brute-force
/// kits rather than people.
const SCANNER_BYES: &[&[u8]] = &[
    b"Bye Bye",
    b"Normal Shutdown",
    b"Ha ha",
    b"com.jcraft.jsch",
    b"Client Disconnect",
];

/// A parse result: rule, address, optional user.
struct Hit<'a> {
    rule: usize,
    ip: Option<IpAddr>,
    user: Option<&'a [u8]>,
    failure: bool,
}

impl<'a> Hit<'a> {
    fn new(rule: usize, ip: Option<IpAddr>, user: Option<&'a [u8]>) -> Self {
        Hit {
            rule,
            ip,
            user,
            failure: true,
        }
    }
}

/// What the message parser decided.
enum Parsed<'a> {
    /// An event with the address from the line itself (or none usable).
    Hit(Hit<'a>),
    /// An event whose line carries no address: it belongs to the pid's connection.
    PidOnly(Hit<'a>),
    /// `Connection from HOST port N on …`: remember the connection's address.
    Connect(IpAddr),
    /// Recognised, not an event, with a key-exchange mark to set on the pid.
    Mark,
    /// A failure line whose address cannot be told apart from attacker text: refused.
    Ambiguous,
    None,
}

/// One remembered sshd connection (process).
#[derive(Clone, Copy, Default)]
struct Conn {
    pid: u32,
    host: u32,
    /// Line number when the address was last confirmed; 0 = no address.
    seen: u64,
    ip: Option<IpAddr>,
    /// Line number of a pending key-exchange failure mark; 0 = none.
    kex: u64,
    /// Old-style `sshd(pam_unix)` failures counted and not yet matched by sshd's own
    /// `Failed password` line for the same attempt.
    pam_pending: u16,
}

/// The `sshd` filter. Build it with [`crate::build_builtin`]`("sshd", …)`, or
/// `("sshd_plain", …)` for sshd's own log format (see [`Sshd::new_plain`]).
pub struct Sshd {
    base: Base,
    aggressive: bool,
    /// `sshd_plain`: lines are bare messages (no syslog header).
    plain: bool,
    time: TimeParser,
    seq: u64,
    conns: Box<[Conn]>,
    stats: FilterStats,
    /// The previous line if it was an sshd failure (its host hash and bytes), for sysklogd's
    /// `last message repeated N times`; the buffer is reused, so keeping it costs no
    /// allocation per line.
    last: Option<u32>,
    last_line: Vec<u8>,
}

impl Sshd {
    /// A new filter with `opts`.
    pub fn new(opts: &BuiltinOptions) -> Self {
        Sshd {
            base: Base::new("sshd", RULES, &["repeated"]),
            aggressive: opts.mode == Mode::Aggressive,
            plain: false,
            time: TimeParser::new(opts.tz.clone()),
            seq: 0,
            conns: vec![Conn::default(); CONN_SLOTS].into_boxed_slice(),
            stats: FilterStats::default(),
            last: None,
            last_line: Vec::new(),
        }
    }

    /// The `sshd_plain` filter: for the file sshd writes itself with `sshd -E FILE` (or its
    /// standard error with `-e`). OpenSSH writes those lines as the bare message, without a
    /// syslog header (OpenSSH 9.2: `Invalid user x from 192.0.2.2 port 40000`, ending in
    /// CR LF); a `sshd: `/`sshd-session[PID]: ` program prefix is accepted too. The lines
    /// carry no time, so events get the time they are read.
    ///
    /// A separate name rather than a fallback of `sshd`: in a syslog file a line without a
    /// header is not an sshd record, and must not be trusted as one.
    pub fn new_plain(opts: &BuiltinOptions) -> Self {
        Sshd {
            base: Base::new("sshd_plain", RULES, &["repeated"]),
            plain: true,
            ..Sshd::new(opts)
        }
    }

    fn slot(&self, host: u32, pid: u32) -> usize {
        ((pid ^ host.rotate_left(12)) as usize) % CONN_SLOTS
    }

    /// The remembered connection of (host, pid), if it is still fresh.
    fn conn(&self, host: u32, pid: Option<u32>) -> Option<&Conn> {
        let pid = pid?;
        let c = &self.conns[self.slot(host, pid)];
        (c.pid == pid && c.host == host && (c.seen != 0 || c.kex != 0)).then_some(c)
    }

    fn conn_ip(&self, host: u32, pid: Option<u32>) -> Option<IpAddr> {
        let c = self.conn(host, pid)?;
        (c.seen != 0 && self.seq - c.seen <= CONN_WINDOW)
            .then_some(c.ip)
            .flatten()
    }

    /// The slot of (host, pid), taken over for it if another connection held it.
    fn conn_mut(&mut self, host: u32, pid: u32) -> &mut Conn {
        let i = self.slot(host, pid);
        let c = &mut self.conns[i];
        if c.pid != pid || c.host != host {
            *c = Conn {
                pid,
                host,
                ..Conn::default()
            };
        }
        c
    }

    fn remember(&mut self, host: u32, pid: Option<u32>, ip: IpAddr) {
        let Some(pid) = pid else { return };
        let seq = self.seq;
        let c = self.conn_mut(host, pid);
        if c.ip != Some(ip) {
            c.pam_pending = 0;
        }
        c.ip = Some(ip);
        c.seen = seq;
    }
}

/// FNV-1a of the host name (part of the connection key: one file may hold many hosts).
fn host_hash(h: &[u8]) -> u32 {
    let mut x: u32 = 0x811c_9dc5;
    for &c in h {
        x = (x ^ u32::from(c)).wrapping_mul(0x0100_0193);
    }
    x
}

/// Strips an optional `PROG: ` / `PROG[PID]: ` program prefix (sshd's) from a plain line;
/// returns the message and the pid.
fn plain_message(line: &[u8]) -> (&[u8], Option<u32>) {
    if !line.starts_with(b"sshd") && !line.starts_with(b"/") {
        return (line, None);
    }
    let Some(i) = memmem::find(&line[..line.len().min(64)], b": ") else {
        return (line, None);
    };
    let tag = &line[..i];
    if tag.contains(&b' ') {
        return (line, None);
    }
    let (prog, pid) = match tag.strip_suffix(b"]") {
        Some(t) => match memchr::memchr(b'[', t) {
            Some(lb) => (&t[..lb], scan::parse_digits(&t[lb + 1..])),
            None => return (line, None),
        },
        None => (tag, None),
    };
    if is_sshd(prog) {
        (&line[i + 2..], pid)
    } else {
        (line, None)
    }
}

#[inline]
fn is_sshd(prog: &[u8]) -> bool {
    // A short slice: a plain scan beats memrchr's set-up.
    let p = match prog.iter().rposition(|&c| c == b'/') {
        Some(i) => &prog[i + 1..],
        None => prog,
    };
    p == b"sshd" || p == b"sshd-session" || p == b"sshd-auth"
}

/// The program tag of Linux-PAM before 0.78 (2005): `sshd(pam_unix)[PID]`.
#[inline]
fn is_old_pam(prog: &[u8]) -> bool {
    prog == b"sshd(pam_unix)"
}

/// What sshd writes after `ssh2: ` for an authentication method.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Info {
    /// Nothing (password, keyboard-interactive, none, gssapi): the tail ends the line.
    Nothing,
    /// A publickey key description, possibly with attacker-chosen text inside (a
    /// certificate's key id).
    Key,
    /// A hostbased key description and the client's user and host names.
    Hostbased,
    /// Anything after `: ` (SSH-1 era `ssh1: ruser …` lines): used only when the line does
    /// not end with sshd's tail, and only when a single ` from ` fits.
    Any,
}

/// A key type as sshd prints it: `RSA`, `ED25519`, `ECDSA-SK`, `ED25519-CERT`.
fn key_type(t: &[u8]) -> bool {
    !t.is_empty()
        && t.len() <= 24
        && t.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'-')
        && t[0].is_ascii_uppercase()
}

/// A fingerprint: `SHA256:<base64>` or `MD5:<hex pairs>`.
fn fingerprint(t: &[u8]) -> bool {
    if let Some(b) = t.strip_prefix(b"SHA256:") {
        !b.is_empty()
            && b.len() <= 64
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
    } else if let Some(b) = t.strip_prefix(b"MD5:") {
        !b.is_empty() && b.len() <= 64 && b.iter().all(|c| c.is_ascii_hexdigit() || *c == b':')
    } else {
        false
    }
}

/// `TYPE FP` exactly.
fn type_fp(t: &[u8]) -> bool {
    match memchr::memchr(b' ', t) {
        Some(i) => key_type(&t[..i]) && fingerprint(&t[i + 1..]),
        None => false,
    }
}

/// The fixed start of sshd's key description: `TYPE FP` (plain key: `true` and the rest
/// after it) or `TYPE-CERT [FP ]ID ` (certificate: `false` and the rest, which begins with
/// the key id).
fn key_prefix(info: &[u8]) -> Option<(bool, &[u8])> {
    let sp = memchr::memchr(b' ', info)?;
    let (ty, r) = (&info[..sp], &info[sp + 1..]);
    if !key_type(ty) {
        return None;
    }
    // The fingerprint ends at a space, or at the `,` before hostbased's client names.
    let end = r
        .iter()
        .position(|&c| c == b' ' || c == b',')
        .unwrap_or(r.len());
    let (tok, after) = (&r[..end], &r[end..]);
    let after = strip_prefix(after, b" ").unwrap_or(after);
    if ty.ends_with(b"-CERT") {
        // OpenSSH 8+ prints the certificate's fingerprint before `ID`; 7.x does not.
        let r = if fingerprint(tok) { after } else { r };
        return Some((false, strip_prefix(r, b"ID ")?));
    }
    fingerprint(tok).then_some((true, after))
}

/// A certificate's `KEYID (serial N) CA TYPE FP` ending (the key id is the signer's text):
/// the last ` (serial ` must start sshd's fixed suffix.
fn cert_suffix(r: &[u8]) -> bool {
    let Some(p) = memmem::rfind(r, b" (serial ") else {
        return false;
    };
    let t = &r[p + 9..];
    let n = t.iter().take_while(|c| c.is_ascii_digit()).count();
    n > 0 && t[n..].strip_prefix(b") CA ").is_some_and(type_fp)
}

/// What sshd appends after `ssh2: ` for a publickey result: `TYPE FP` or
/// `TYPE-CERT [FP ]ID <key id> (serial N) CA TYPE FP`.
///
/// The check is complete for sshd's own text (whatever the key id holds, the real info
/// passes), so a second passing ` from ` candidate always means ambiguity, never a swap.
fn publickey_info(info: &[u8]) -> bool {
    match key_prefix(info) {
        Some((true, rest)) => rest.is_empty(),
        Some((false, rest)) => cert_suffix(rest),
        None => false,
    }
}

/// What sshd appends for a hostbased result: `KEY, client user "CU", client host "CH"`
/// (KEY as for publickey) or the method info alone. CU, CH and a certificate's key id are
/// the client's text, so only the fixed start and the closing quote are checked (complete
/// for sshd's own text, as [`publickey_info`]).
fn hostbased_info(info: &[u8]) -> bool {
    if !info.ends_with(b"\"") || info.len() < 2 {
        return false;
    }
    if info.starts_with(b"client user \"") {
        return true;
    }
    match key_prefix(info) {
        Some((true, rest)) => rest.starts_with(b", client user \""),
        Some((false, _)) => true,
        None => false,
    }
}

/// The result of locating sshd's `from HOST port N ssh2` tail.
enum Tail<'a> {
    No,
    /// (text before ` from `, host token).
    One(&'a [u8], &'a [u8]),
    Many,
}

/// Checks the text after ` from ` of a candidate: `HOST port N[ sshV][: INFO]`.
fn tail_host(t: &[u8], info: Info) -> Option<&[u8]> {
    let (host, r) = scan::split_first_token(t);
    let r = strip_prefix(r, b"port ")?;
    let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || n > 5 {
        return None;
    }
    let r = &r[n..];
    let r = strip_prefix(r, b" ssh2")
        .or_else(|| strip_prefix(r, b" ssh1"))
        .unwrap_or(r);
    match info {
        Info::Nothing => r.is_empty().then_some(host),
        Info::Key => {
            if r.is_empty() {
                return Some(host);
            }
            publickey_info(strip_prefix(r, b": ")?).then_some(host)
        }
        Info::Hostbased => {
            if r.is_empty() {
                return Some(host);
            }
            hostbased_info(strip_prefix(r, b": ")?).then_some(host)
        }
        Info::Any => (r.is_empty() || r.starts_with(b": ")).then_some(host),
    }
}

/// `… from HOST port N[ sshV][: info]` as written by sshd's auth log.
///
/// Text before ` from ` (the user name) and, for [`Info::Key`], inside the info (key id,
/// hostbased client names) is the client's. For [`Info::Nothing`] the tail ends the line,
/// so only the last ` from ` can be sshd's. For [`Info::Key`] every ` from ` whose tail
/// fits the grammar is a candidate; one candidate is the answer, several are ambiguous
/// unless one of them is `known` (the address the same connection logged before).
fn from_tail(s: &[u8], info: Info, known: Option<IpAddr>) -> Tail<'_> {
    if info == Info::Nothing {
        let Some(p) = memmem::rfind(s, b" from ") else {
            return Tail::No;
        };
        return match tail_host(&s[p + 6..], info) {
            Some(h) => Tail::One(&s[..p], h),
            None => from_tail(s, Info::Any, known),
        };
    }
    let mut found: Option<(&[u8], &[u8])> = None;
    let mut count = 0usize;
    let mut known_one: Option<(&[u8], &[u8])> = None;
    for (i, p) in memmem::rfind_iter(s, b" from ").enumerate() {
        if i >= CANDIDATES_MAX {
            return if count == 0 { Tail::No } else { Tail::Many };
        }
        if let Some(h) = tail_host(&s[p + 6..], info) {
            count += 1;
            found.get_or_insert((&s[..p], h));
            if known.is_some() && known_one.is_none() && scan::ip(h) == known {
                // The right-most candidate naming the connection's own address.
                known_one = Some((&s[..p], h));
            }
        }
    }
    match count {
        0 => Tail::No,
        1 => {
            let (u, h) = found.unwrap_or_default();
            Tail::One(u, h)
        }
        // Several fit: the one naming the address this connection already logged is the
        // peer (blaming that address is right whichever candidate wrote it).
        _ if known_one.is_some() => {
            let (u, h) = known_one.unwrap_or_default();
            Tail::One(u, h)
        }
        _ => Tail::Many,
    }
}

/// Strict `USER from HOST[ port N]` at the end of `s`: only the last " from " is considered.
fn from_tail_strict(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let p = memmem::rfind(s, b" from ")?;
    let t = &s[p + 6..];
    let host = scan::strip_port_suffix(t).unwrap_or(t);
    if host.contains(&b' ') {
        return None;
    }
    Some((&s[..p], host))
}

/// What [`user_host_port`] found.
enum UserHost<'a> {
    /// `[… user USER ]HOST port N`: (user, host).
    Addr(Option<&'a [u8]>, &'a [u8]),
    /// `(authenticating|invalid) user USER` without an address (older OpenSSH).
    NoAddr(&'a [u8]),
}

/// `[(authenticating|invalid) user USER ]HOST port N` (the `[preauth]` suffix already gone).
fn user_host_port(s: &[u8]) -> Option<UserHost<'_>> {
    let Some(s2) = scan::strip_port_suffix(s) else {
        // No port: an address alone (OpenSSH 6), or a user without an address (OpenSSH
        // before 7.5). sshd never writes a user followed by an address without its port, so
        // an address at the end of such a line is the user name's: the connection decides.
        if let Some(u) =
            strip_prefix(s, b"authenticating user ").or_else(|| strip_prefix(s, b"invalid user "))
        {
            return Some(UserHost::NoAddr(u));
        }
        return match scan::split_last_token(s) {
            None => Some(UserHost::Addr(None, s)),
            Some((before, host)) => user_before(before, host),
        };
    };
    match scan::split_last_token(s2) {
        None => Some(UserHost::Addr(None, s2)),
        Some((before, host)) => user_before(before, host),
    }
}

fn user_before<'a>(before: &'a [u8], host: &'a [u8]) -> Option<UserHost<'a>> {
    let user = strip_prefix(before, b"authenticating user ")
        .or_else(|| strip_prefix(before, b"invalid user "))
        .or_else(|| strip_prefix(before, b"user "));
    match user {
        Some(u) => Some(UserHost::Addr(Some(u), host)),
        // `invalid user  HOST` (empty name): `before` is "invalid user".
        None if before == b"invalid user" || before == b"authenticating user" => {
            Some(UserHost::Addr(Some(&b""[..]), host))
        }
        None => None,
    }
}

/// `message repeated N times: [ MSG]` (rsyslog's repeated-message reduction): (N, MSG).
fn repeated(msg: &[u8]) -> Option<(u32, &[u8])> {
    let r = strip_prefix(msg, b"message repeated ")?;
    let sp = memchr::memchr(b' ', r)?;
    let n = scan::parse_digits(&r[..sp])?;
    let inner = strip_prefix(&r[sp..], b" times: [ ")?;
    let inner = strip_suffix(inner, b"]")?;
    Some((n, inner))
}

impl Sshd {
    fn parse<'a>(&self, msg: &'a [u8], known: Option<IpAddr>, old_pam: bool) -> Parsed<'a> {
        let a = self.aggressive;
        if old_pam {
            return parse_pam(msg, true);
        }
        let msg = strip_prefix(msg, b"error: ")
            .or_else(|| strip_prefix(msg, b"fatal: "))
            .unwrap_or(msg);
        let Some(&first) = msg.first() else {
            return Parsed::None;
        };
        let hit = |rule, host: &[u8], user| Parsed::Hit(Hit::new(rule, scan::ip(host), user));
        match first {
            b'F' => {
                let Some(r) = strip_prefix(msg, b"Failed ") else {
                    return Parsed::None;
                };
                let Some(sp) = memmem::find(r, b" for ") else {
                    return Parsed::None;
                };
                let method = &r[..sp];
                let rest = &r[sp + 5..];
                let info = match method {
                    b"publickey" => Info::Key,
                    b"hostbased" => Info::Hostbased,
                    _ => Info::Nothing,
                };
                let (user, host) = match from_tail(rest, info, known) {
                    Tail::One(u, h) => (u, h),
                    Tail::Many => return Parsed::Ambiguous,
                    Tail::No => return Parsed::None,
                };
                let invalid = strip_prefix(user, b"invalid user ");
                let user = invalid.unwrap_or(user);
                let (rule, failure) = match method {
                    b"password" => (FAILED_PASSWORD, true),
                    // Clients offer several keys in turn: a rejected key is normal for a
                    // legitimate user, so it only counts in Aggressive mode.
                    b"publickey" => (FAILED_PUBLICKEY, a),
                    // Every client tries `none` first; at LogLevel VERBOSE a valid user's
                    // `Failed none` precedes each ordinary login, so it counts in Aggressive
                    // mode only. For an invalid user it is an attempt on a name that does not
                    // exist, logged at INFO (fail2ban counts both in normal mode).
                    b"none" if !a && invalid.is_none() => return Parsed::None,
                    _ => (FAILED_AUTH, true),
                };
                let mut h = Hit::new(rule, scan::ip(host), Some(user));
                h.failure = failure;
                Parsed::Hit(h)
            }
            b'I' => {
                let Some(r) = strip_prefix(msg, b"Invalid user ") else {
                    return Parsed::None;
                };
                // `Invalid user  from HOST` (empty name) leaves `r` = " from HOST…".
                let Some((user, host)) = from_tail_strict(r) else {
                    return Parsed::None;
                };
                hit(INVALID_USER, host, Some(user))
            }
            b'U' => {
                if let Some(r) = strip_prefix(msg, b"User ") {
                    let Some(p) = memmem::rfind(r, b" not allowed because ") else {
                        return Parsed::None;
                    };
                    let Some((user, host)) = from_tail_strict(&r[..p]) else {
                        return Parsed::None;
                    };
                    hit(NOT_ALLOWED, host, Some(user))
                } else if let Some(r) = strip_prefix(msg, b"Unable to negotiate with ") {
                    if !a {
                        return Parsed::None;
                    }
                    match scan::host_port_front(r) {
                        Some((ip, rest)) if rest.starts_with(b": ") => {
                            Parsed::Hit(Hit::new(UNABLE_NEGOTIATE, Some(ip), None))
                        }
                        _ => Parsed::None,
                    }
                } else {
                    Parsed::None
                }
            }
            b'm' => {
                let Some(r) = strip_prefix(msg, b"maximum authentication attempts exceeded for ")
                else {
                    return Parsed::None;
                };
                let r = strip_suffix(r, b" [preauth]").unwrap_or(r);
                match from_tail(r, Info::Nothing, known) {
                    Tail::One(user, host) => {
                        let user = strip_prefix(user, b"invalid user ").unwrap_or(user);
                        hit(MAX_AUTH, host, Some(user))
                    }
                    // Older OpenSSH: `… exceeded for USER [preauth]`, no address.
                    _ => {
                        let user = strip_prefix(r, b"invalid user ").unwrap_or(r);
                        Parsed::PidOnly(Hit::new(MAX_AUTH, None, Some(user)))
                    }
                }
            }
            b'D' => {
                if let Some(r) =
                    strip_prefix(msg, b"Disconnecting: Too many authentication failures")
                {
                    // OpenSSH before 7.5: no address; `for [invalid user ]USER` before 6.x.
                    let r = strip_suffix(r, b" [preauth]").unwrap_or(r);
                    let user = strip_prefix(r, b" for ")
                        .map(|u| strip_prefix(u, b"invalid user ").unwrap_or(u));
                    if user.is_none() && !r.is_empty() {
                        return Parsed::None;
                    }
                    Parsed::PidOnly(Hit::new(TOO_MANY, None, user))
                } else if let Some(r) = strip_prefix(msg, b"Disconnecting ") {
                    let r = strip_suffix(r, b" [preauth]").unwrap_or(r);
                    let Some(r) = strip_suffix(r, b": Too many authentication failures") else {
                        return Parsed::None;
                    };
                    match user_host_port(r) {
                        Some(UserHost::Addr(user, host)) => hit(TOO_MANY, host, user),
                        Some(UserHost::NoAddr(u)) => {
                            Parsed::PidOnly(Hit::new(TOO_MANY, None, Some(u)))
                        }
                        None => Parsed::None,
                    }
                } else if let Some(r) = strip_prefix(msg, b"Disconnected from ") {
                    // Without [preauth] this is the normal end of a session.
                    let Some(r) = strip_suffix(r, b" [preauth]") else {
                        return Parsed::None;
                    };
                    if !a {
                        return Parsed::None;
                    }
                    self.close(r)
                } else if let Some(r) =
                    strip_prefix(msg, b"Did not receive identification string from ")
                {
                    if !a {
                        return Parsed::None;
                    }
                    let host = scan::strip_port_suffix(r).unwrap_or(r);
                    hit(NO_IDENT, host, None)
                } else {
                    Parsed::None
                }
            }
            b'C' => {
                if let Some(r) = strip_prefix(msg, b"Connection from ") {
                    // LogLevel VERBOSE: `Connection from HOST port N on ADDR port N[ rdomain …]`.
                    return match scan::host_port_front(r) {
                        Some((ip, rest)) if rest.starts_with(b" on ") => Parsed::Connect(ip),
                        _ => Parsed::None,
                    };
                }
                let r = match strip_prefix(msg, b"Connection closed by ")
                    .or_else(|| strip_prefix(msg, b"Connection reset by "))
                {
                    Some(r) => r,
                    None => return Parsed::None,
                };
                if !a {
                    return Parsed::None;
                }
                match strip_suffix(r, b" [preauth]") {
                    Some(r) => self.close(r),
                    None => {
                        // `Connection closed by HOST port N` after a failed key exchange of the
                        // same process (checked by the caller through the pid mark).
                        let host = scan::strip_port_suffix(r).unwrap_or(r);
                        if host.contains(&b' ') {
                            return Parsed::None;
                        }
                        Parsed::Hit(Hit::new(KEX_FAILURE, scan::ip(host), None))
                    }
                }
            }
            b'R' => {
                let Some(r) = strip_prefix(msg, b"Received disconnect from ") else {
                    return Parsed::None;
                };
                let r0 = strip_suffix(r, b" [preauth]");
                let preauth = r0.is_some();
                // Normal mode only wants `… Auth fail`: skip ordinary disconnects cheaply.
                if !a && !r0.unwrap_or(r).ends_with(b"Auth fail") {
                    return Parsed::None;
                }
                // The address is sshd's, parsed from the front: the reason after it is the
                // client's text.
                let Some((ip, rest)) = scan::host_port_front(r0.unwrap_or(r)) else {
                    return Parsed::None;
                };
                // `:11: Bye Bye` or `: 11: Bye Bye`.
                let Some(rest) = strip_prefix(rest, b":") else {
                    return Parsed::None;
                };
                let rest = strip_prefix(rest, b" ").unwrap_or(rest);
                let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
                let reason = strip_prefix(&rest[n..], b": ").unwrap_or(&[]);
                // Reason 3 with `…: Auth fail`: the client (JSch and the kits built on it)
                // reports that its own authentication failed. Only the peer can send it, and
                // it comes before authentication, so it counts in every mode.
                if &rest[..n] == b"3" && reason.ends_with(b": Auth fail") {
                    return Parsed::Hit(Hit::new(CLIENT_AUTH_FAIL, Some(ip), None));
                }
                if !a || !preauth {
                    return Parsed::None;
                }
                if SCANNER_BYES.iter().any(|b| reason.starts_with(b)) {
                    Parsed::Hit(Hit::new(PREAUTH_DISCONNECT, Some(ip), None))
                } else {
                    Parsed::None
                }
            }
            b'b' => {
                let Some(r) = strip_prefix(msg, b"banner exchange: Connection from ") else {
                    return Parsed::None;
                };
                if !a {
                    return Parsed::None;
                }
                match scan::host_port_front(r) {
                    Some((ip, rest)) if rest.starts_with(b": ") => {
                        Parsed::Hit(Hit::new(BAD_BANNER, Some(ip), None))
                    }
                    _ => Parsed::None,
                }
            }
            b'B' => {
                let Some(r) = strip_prefix(msg, b"Bad protocol version identification ") else {
                    return Parsed::None;
                };
                if !a {
                    return Parsed::None;
                }
                match from_tail_strict(r) {
                    Some((_, host)) => hit(BAD_BANNER, host, None),
                    None => Parsed::None,
                }
            }
            b'k' => {
                if a && msg.starts_with(b"kex_exchange_identification: ") {
                    Parsed::Mark
                } else {
                    Parsed::None
                }
            }
            b'p' | b'P' => parse_pam(msg, false),
            _ => Parsed::None,
        }
    }

    /// `Connection closed by …` / `Disconnected from …` with `[preauth]` (Aggressive mode).
    fn close<'a>(&self, r: &'a [u8]) -> Parsed<'a> {
        match user_host_port(r) {
            Some(UserHost::Addr(user, host)) => {
                Parsed::Hit(Hit::new(PREAUTH_CLOSE, scan::ip(host), user))
            }
            Some(UserHost::NoAddr(u)) => Parsed::PidOnly(Hit::new(PREAUTH_CLOSE, None, Some(u))),
            None => Parsed::None,
        }
    }
}

/// PAM's `authentication failure; … rhost=HOST[  user=USER]` and `PAM N more authentication
/// failures; …`. `old` is the pre-2005 `sshd(pam_unix)[PID]: authentication failure; …`
/// form, whose message has no `pam_unix(sshd:auth): ` prefix.
fn parse_pam(msg: &[u8], old: bool) -> Parsed<'_> {
    let r = if old {
        strip_prefix(msg, b"authentication failure; ")
    } else {
        strip_prefix(msg, b"pam_unix(sshd:auth): authentication failure; ")
    };
    let (r, summary) = match r {
        Some(r) => (r, false),
        None => {
            let m = if old {
                msg
            } else {
                match strip_prefix(msg, b"PAM ") {
                    Some(m) => m,
                    None => return Parsed::None,
                }
            };
            let n = m.iter().take_while(|c| c.is_ascii_digit()).count();
            match strip_prefix(&m[n..], b" more authentication failures; ") {
                Some(r) if n > 0 => (r, true),
                _ => return Parsed::None,
            }
        }
    };
    // `… ruser=R rhost=H[  user=U]`: ruser comes first and may carry the attempted name,
    // so the last ` rhost=` is the real one; what follows must be the optional
    // `  user=NAME` (local account names have no spaces).
    let Some(p) = memmem::rfind(r, b"rhost=") else {
        return Parsed::None;
    };
    if p > 0 && r[p - 1] != b' ' {
        return Parsed::None;
    }
    let t = &r[p + 6..];
    let t = strip_suffix(t, b" [preauth]").unwrap_or(t);
    let (host, tail) = match memchr::memchr(b' ', t) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, &b""[..]),
    };
    let user = match strip_prefix(tail, b"  user=") {
        Some(u) if !u.contains(&b' ') => Some(u),
        _ if tail.iter().all(|&c| c == b' ') => None,
        _ => return Parsed::None,
    };
    // The remote host may be a name (UseDNS): only an address is an offender, and no name
    // is ever resolved.
    let mut h = Hit::new(PAM_AUTH, scan::ip(host), user);
    // Modern sshd logs the same attempt again as `Failed password …`: counting both would
    // double every attempt, so the PAM line is recorded, not counted. The old
    // `sshd(pam_unix)` line is counted (syslog often filed it apart from sshd's own lines;
    // when both are present the caller records sshd's line instead). Summaries repeat
    // failures already logged one by one.
    h.failure = old && !summary;
    Parsed::Hit(h)
}

impl Filter for Sshd {
    fn name(&self) -> &str {
        &self.base.name
    }

    fn rules(&self) -> &[Arc<str>] {
        &self.base.rules
    }

    fn stats(&self) -> FilterStats {
        self.stats
    }

    fn process(&mut self, line: &[u8], ctx: &LineCtx, out: &mut Vec<Event>) -> Outcome {
        // Files written on (or copied through) Windows keep a CR before the LF.
        let line = crate::scan::trim_line_end(line);
        self.seq += 1;
        // Only the line right after a failure may repeat it.
        let last = self.last.take();
        let split = if self.plain {
            let (msg, pid) = plain_message(line);
            Ok(crate::syslog::Header {
                stamp: &[],
                stamp_kind: crate::syslog::StampKind::Nil,
                host: &[],
                prog: b"sshd",
                pid,
                msg,
            })
        } else {
            crate::syslog::split(line)
        };
        let (hdr, has_header) = match split {
            // Plain lines have no time of their own (`has_header` false).
            Ok(h) if self.plain => (h, false),
            Ok(h) if is_sshd(h.prog) || is_old_pam(h.prog) => (h, true),
            Ok(_) => return Outcome::Missed,
            // journald MESSAGE-only lines: the whole line is the message.
            // The entry's own host and pid (when given) key the connection table.
            Err(crate::syslog::NotSyslog::NoHeader) if ctx.source_time.is_some() => (
                crate::syslog::Header {
                    stamp: &[],
                    stamp_kind: crate::syslog::StampKind::Nil,
                    host: ctx
                        .journal
                        .and_then(|j| j.hostname)
                        .map_or(&[][..], str::as_bytes),
                    prog: b"sshd",
                    pid: ctx.journal.and_then(|j| j.pid()),
                    msg: line,
                },
                false,
            ),
            Err(e) => {
                if let Some((host, n)) = crate::syslog::last_repeated(line) {
                    if last != Some(host_hash(host)) {
                        return Outcome::Missed;
                    }
                    // The previous line (sshd's failure) was written n more times: read it
                    // again and repeat its events.
                    let prev = std::mem::take(&mut self.last_line);
                    let first = out.len();
                    let o = self.process(&prev, ctx, out);
                    self.last_line = prev;
                    let ev: Vec<Event> = out.drain(first..).collect();
                    for _ in 0..n.clamp(1, REPEAT_MAX) {
                        out.extend(ev.iter().cloned());
                    }
                    return o;
                }
                self.stats.unreadable(e.reason(line));
                return Outcome::Missed;
            }
        };
        let pid = hdr.pid;
        let old_pam = is_old_pam(hdr.prog);
        let (logged_times, msg) = match repeated(hdr.msg) {
            Some((n, m)) => (Some(n), m),
            None => (None, hdr.msg),
        };
        let times = logged_times.map_or(1, |n| n.clamp(1, REPEAT_MAX));
        // Most lines are no event: the connection table is only consulted for those that are.
        let parsed = self.parse(msg, None, old_pam);
        if matches!(parsed, Parsed::None) {
            return Outcome::Missed;
        }
        let host = host_hash(hdr.host);
        let known = self.conn_ip(host, pid);
        let parsed = match parsed {
            // Several candidates: the connection's own address may settle it.
            Parsed::Ambiguous if known.is_some() => self.parse(msg, known, old_pam),
            p => p,
        };
        let (mut hit, pid_only) = match parsed {
            Parsed::None => return Outcome::Missed,
            Parsed::Mark => {
                if let Some(pid) = pid {
                    let seq = self.seq;
                    self.conn_mut(host, pid).kex = seq;
                }
                return Outcome::Missed;
            }
            Parsed::Connect(ip) => {
                self.remember(host, pid, ip);
                return Outcome::Missed;
            }
            Parsed::Ambiguous => {
                self.stats.ambiguous += 1;
                return Outcome::Ignored;
            }
            Parsed::Hit(h) => (h, false),
            Parsed::PidOnly(h) => (h, true),
        };
        if hit.rule == KEX_FAILURE {
            let Some(pid) = pid else {
                return Outcome::Missed;
            };
            let seq = self.seq;
            let c = self.conn_mut(host, pid);
            if c.kex == 0 || seq - c.kex > KEX_WINDOW {
                return Outcome::Missed;
            }
            c.kex = 0;
        }
        if pid_only {
            hit.ip = known;
        }
        let Some(ip) = hit.ip else {
            return Outcome::Ignored;
        };
        if !pid_only {
            self.remember(host, pid, ip);
        }
        if let Some(pid) = pid {
            // One attempt, two lines (old PAM and sshd's own): count it once.
            let c = self.conn_mut(host, pid);
            if old_pam && hit.failure {
                c.pam_pending = c
                    .pam_pending
                    .saturating_add(times.min(u32::from(u16::MAX)) as u16);
            } else if hit.failure
                && matches!(hit.rule, FAILED_PASSWORD | FAILED_AUTH)
                && c.pam_pending > 0
            {
                c.pam_pending -= 1;
                hit.failure = false;
            }
        }
        let time = if has_header {
            let t = self.time.parse_stamp(hdr.stamp_kind, hdr.stamp, ctx.now);
            if t.is_none() && hdr.stamp_kind != crate::syslog::StampKind::Nil {
                self.stats
                    .unreadable(crate::syslog::Unreadable::BadTimestamp);
            }
            t
        } else {
            None
        };
        let time: Timestamp = time.or(ctx.source_time).unwrap_or(ctx.now);
        // A repeated success or no-failure observation is recorded once, never multiplied.
        let n = if hit.failure { times } else { 1 };
        let mut nb = [0u8; 10];
        let fields: &[(usize, &[u8])] = if let Some(logged) = logged_times {
            let len = write_u32(&mut nb, logged);
            &[(0, &nb[..len])][..]
        } else {
            &[]
        };
        for _ in 0..n {
            out.push(
                self.base
                    .event(line, time, ip, hit.rule, hit.failure, hit.user, fields),
            );
        }
        if hit.failure && has_header {
            self.last = Some(host);
            self.last_line.clear();
            self.last_line.extend_from_slice(line);
        }
        Outcome::Matched
    }
}

/// Decimal digits of `v` into `buf`; returns the length.
fn write_u32(buf: &mut [u8; 10], mut v: u32) -> usize {
    let mut tmp = [0u8; 10];
    let mut n = 0;
    loop {
        tmp[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..n {
        buf[i] = tmp[n - 1 - i];
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: &mut Sshd, line: &[u8]) -> (Outcome, Vec<Event>) {
        let ctx = LineCtx {
            now: Timestamp::from_secs(1_700_000_000),
            source_time: None,
            journal: None,
        };
        let mut out = Vec::new();
        (f.process(line, &ctx, &mut out), out)
    }

    /// Lines exactly as OpenSSH 9.2 (Debian 12) writes them with `sshd -D -E FILE`.
    #[test]
    fn plain_sshd_e_format() {
        let mut f = Sshd::new_plain(&BuiltinOptions::default());
        assert_eq!(f.name(), "sshd_plain");
        for (line, rule, user) in [
            (&b"Invalid user nosuchuser from 192.0.2.2 port 32842\r"[..], "invalid_user", "nosuchuser"),
            (b"Failed password for root from 192.0.2.2 port 42330 ssh2\r", "failed_password", "root"),
            (b"Failed password for invalid user $(touch  from 192.0.2.2 port 42336 ssh2\r", "failed_password", "$(touch "),
            (b"maximum authentication attempts exceeded for root from 192.0.2.2 port 42330 ssh2 [preauth]\r", "max_auth_attempts", "root"),
            (b"Disconnecting invalid user x; rm -rf  192.0.2.2 port 42342: Too many authentication failures [preauth]\r", "too_many_auth_failures", "x; rm -rf "),
            (b"sshd-session[77]: Invalid user a from 192.0.2.2 port 1", "invalid_user", "a"),
            (b"sshd: Invalid user a from 192.0.2.2 port 1", "invalid_user", "a"),
        ] {
            let (o, ev) = run(&mut f, line);
            assert_eq!(o, Outcome::Matched, "{}", String::from_utf8_lossy(line));
            assert_eq!(ev[0].ip.to_string(), "192.0.2.2");
            assert_eq!(&*ev[0].rule, rule);
            assert_eq!(ev[0].user.as_deref(), Some(user));
            assert_eq!(ev[0].time, Timestamp::from_secs(1_700_000_000), "time of reading");
        }
        // The address inside a user name is never the offender.
        let (_, ev) = run(
            &mut f,
            b"Failed password for invalid user x from 198.51.100.2 port 22 ssh2 from 192.0.2.2 port 5 ssh2",
        );
        assert_eq!(ev[0].ip.to_string(), "192.0.2.2");
        for miss in [
            &b"Server listening on 192.0.2.1 port 22.\r"[..],
            b"Connection from 192.0.2.2 port 32842 on 192.0.2.1 port 22 rdomain \"\"\r",
            b"Accepted publickey for root from 192.0.2.2 port 1 ssh2",
            b"cron: Invalid user a from 192.0.2.2 port 1",
            b"",
        ] {
            assert_eq!(
                run(&mut f, miss).0,
                Outcome::Missed,
                "{}",
                String::from_utf8_lossy(miss)
            );
        }
        // The syslog filter still refuses bare lines from a file.
        let mut s = Sshd::new(&BuiltinOptions::default());
        assert_eq!(
            run(&mut s, b"Invalid user nosuchuser from 192.0.2.2 port 32842").0,
            Outcome::Missed
        );
    }
}
