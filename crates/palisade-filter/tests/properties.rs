//! Property tests (proptest) for every parser here that reads outside input: the built-in
//! filters, syslog headers, timestamps and addresses. They assert no panic on any bytes,
//! the framing invariant on sshd's grammar with attacker-chosen fields, and round trips.
//!
//! CI runs few cases (`PROPTEST_CASES` unset: 64 per property); `bench/fuzz/run.sh` runs
//! hundreds of thousands. Bounded time is structural (no regex here; candidate scans are
//! capped) and the fuzz script reports the slowest line per filter.

use palisade_core::Timestamp;
use palisade_filter::syslog::{split, NotSyslog};
use palisade_filter::time::TimeParser;
use palisade_filter::{build_builtin, builtin_names, BuiltinOptions, LineCtx, Mode, Outcome};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn cfg() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var("PROPTEST_CASES").is_err() {
        c.cases = 64;
    }
    c.failure_persistence = None;
    c
}

fn ctx() -> LineCtx<'static> {
    LineCtx {
        now: Timestamp::parse_rfc3339("2024-06-01T00:00:00Z").unwrap(),
        source_time: None,
        journal: None,
    }
}

fn opts(mode: Mode) -> BuiltinOptions {
    BuiltinOptions {
        mode,
        tz: jiff::tz::TimeZone::get("Europe/Berlin").unwrap(),
    }
}

/// Seed corpus: the framing corpus and hostile lines.
fn seeds() -> Vec<String> {
    let p = format!("{}/tests/data/framing/sshd.log", env!("CARGO_MANIFEST_DIR"));
    let mut v: Vec<String> = std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(_, l)| l.to_string()))
        .collect();
    v.extend(
        [
            "<38>1 2024-05-01T10:00:03.123456+02:00 host sshd 104 - [a b=\"\\]\"] Failed password for root from 192.0.2.1 port 1 ssh2",
            "May  1 10:00:03 host sshd[1]: message repeated 3 times: [ message repeated 3 times: [ Failed password for x from 192.0.2.1 port 1 ssh2]]",
            "Wed 2024-05-01 10:00:03 CEST host sshd[1]: Connection from 192.0.2.1 port 1 on 192.0.2.2 port 22",
            "Jun 11 09:45:45 combo sshd(pam_unix)[6472]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=192.0.2.34  user=root",
            "May  1 10:00:03 host kernel: [UFW BLOCK] IN=eth0 OUT= SRC=192.0.2.1 DST=192.0.2.2 PROTO=TCP SPT=1 DPT=22",
            "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET /wp-login.php HTTP/1.1\" 404 1 \"-\" \"x\"",
        ]
        .map(String::from),
    );
    v
}

/// Mutates a seed: a byte flip, an insertion of a grammar piece, a cut.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let s = seeds();
    (
        0..s.len(),
        proptest::collection::vec(
            (any::<u16>(), 0usize..PIECES.len(), any::<u8>(), 0u8..3),
            0..6,
        ),
    )
        .prop_map(move |(i, muts)| {
            let mut b = s[i].as_bytes().to_vec();
            for (pos, piece, byte, kind) in muts {
                let at = if b.is_empty() {
                    0
                } else {
                    pos as usize % (b.len() + 1)
                };
                match kind {
                    0 if at < b.len() => b[at] = byte,
                    1 => {
                        let p = PIECES[piece].as_bytes();
                        b.splice(at..at, p.iter().copied());
                    }
                    _ => b.truncate(at),
                }
            }
            b
        })
}

/// Pieces of sshd's and syslog's grammar, for "token soup" lines.
const PIECES: &[&str] = &[
    " from ",
    " port ",
    " ssh2",
    ": ",
    " ssh2: ",
    "203.0.113.5",
    "192.0.2.7",
    "2001:db8::1",
    "::ffff:203.0.113.6",
    "Failed password for ",
    "Failed publickey for ",
    "Failed hostbased for ",
    "invalid user ",
    "authenticating user ",
    "ED25519-CERT SHA256:AAAA",
    "RSA SHA256:BBBB",
    " ID ",
    " (serial 7) CA ED25519 SHA256:CCCC",
    "client user \"",
    "\", client host \"",
    "\"",
    " [preauth]",
    "message repeated 3 times: [ ",
    "]",
    "Disconnecting: Too many authentication failures",
    "Connection closed by ",
    "Invalid user ",
    "User ",
    " not allowed because listed in DenyUsers",
    "rhost=",
    "  user=",
    "pam_unix(sshd:auth): authentication failure; ",
    "Received disconnect from ",
    ":11: Bye Bye",
    "Connection from ",
    " on 192.0.2.1 port 22",
    "error: ",
    "x",
    " ",
    "[",
    "<38>1 ",
    "\u{0}",
    "\u{feff}",
    "é",
];

fn soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(0usize..PIECES.len(), 0..24)
        .prop_map(|v| v.into_iter().map(|i| PIECES[i]).collect::<String>())
}

/// Text an attacker may choose (user names, key ids, client host names): fake tails with
/// 203.0.113.0/24 addresses included.
fn attacker_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            3 => (0usize..PIECES.len()).prop_map(|i| PIECES[i].to_string()),
            1 => (1u8..255).prop_map(|d| format!(" from 203.0.113.{d} port 9 ssh2")),
            1 => (1u8..255).prop_map(|d| format!(" from 203.0.113.{d} port 9 ssh2: ED25519 SHA256:AAAA")),
            1 => (1u8..255).prop_map(|d| format!("x from 203.0.113.{d} port 9 ssh2: ED25519-CERT SHA256:AAAA ID z")),
            1 => "[a-zA-Z0-9 ._:\\-]{0,12}",
        ],
        0..6,
    )
    .prop_map(|v| v.concat())
}

fn real_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (1u8..255).prop_map(|d| IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))),
        any::<u16>().prop_map(|d| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, d))),
    ]
}

const FP: &str = "SHA256:plIBYe9x6VKUpXjYP4NkwQ7Eyu6Ghsavv1XhkMRrcBQ";

/// One sshd message in its real grammar with attacker-chosen user, key id and client names.
fn sshd_message() -> impl Strategy<Value = (String, IpAddr)> {
    (real_ip(), attacker_text(), attacker_text(), attacker_text(), 0u8..9, any::<bool>(), any::<u16>())
        .prop_map(|(ip, user, keyid, chost, kind, invalid, port)| {
            let inv = if invalid { "invalid user " } else { "" };
            let m = match kind {
                0 => format!("Failed password for {inv}{user} from {ip} port {port} ssh2"),
                1 => format!("Failed publickey for {inv}{user} from {ip} port {port} ssh2: ED25519 {FP}"),
                2 => format!("Failed publickey for {inv}{user} from {ip} port {port} ssh2: ED25519-CERT {FP} ID {keyid} (serial 7) CA ED25519 {FP}"),
                3 => format!("Failed hostbased for {user} from {ip} port {port} ssh2: ECDSA {FP}, client user \"{keyid}\", client host \"{chost}\""),
                4 => format!("Invalid user {user} from {ip} port {port}"),
                5 => format!("error: maximum authentication attempts exceeded for {inv}{user} from {ip} port {port} ssh2 [preauth]"),
                6 => format!("Connection closed by {}user {user} {ip} port {port} [preauth]", if invalid { "invalid " } else { "authenticating " }),
                7 => format!("message repeated 2 times: [ Failed publickey for {user} from {ip} port {port} ssh2: RSA-CERT ID {keyid} (serial 1) CA RSA {FP}]"),
                _ => format!("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser={user} rhost={ip}  user=root"),
            };
            (m, ip)
        })
}

proptest! {
    #![proptest_config(cfg())]

    /// Any bytes through every built-in filter, both modes: no panic, events only with a
    /// sane evidence size.
    #[test]
    fn filters_never_panic(lines in proptest::collection::vec(
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            mutated(),
            soup().prop_map(|s| format!("May  1 10:00:03 h sshd[1]: {s}").into_bytes()),
        ], 1..8))
    {
        for name in builtin_names() {
            for mode in [Mode::Normal, Mode::Aggressive] {
                let mut f = build_builtin(name, &opts(mode)).unwrap();
                for l in &lines {
                    let mut out = Vec::new();
                    let o = f.process(l, &ctx(), &mut out);
                    prop_assert_eq!(o == Outcome::Matched, !out.is_empty());
                    for e in &out {
                        prop_assert!(e.evidence.len() <= palisade_core::event::EVIDENCE_MAX);
                    }
                }
            }
        }
    }

    /// The framing invariant on sshd's own grammar: whatever the attacker writes into the
    /// user name, key id or hostbased client names, an event is only ever blamed on the
    /// peer's address (or the line is refused).
    #[test]
    fn sshd_blames_only_the_peer(msgs in proptest::collection::vec((sshd_message(), 1u32..40), 1..6),
                                 header in 0u8..4)
    {
        for mode in [Mode::Normal, Mode::Aggressive] {
            let mut f = build_builtin("sshd", &opts(mode)).unwrap();
            for ((m, ip), pid) in &msgs {
                let line = match header {
                    0 => format!("May  1 10:00:03 bastion sshd[{pid}]: {m}"),
                    1 => format!("<38>1 2024-05-01T10:00:03Z bastion sshd {pid} - - {m}"),
                    2 => format!("Wed 2024-05-01 10:00:03 CEST bastion sshd-session[{pid}]: {m}"),
                    _ => format!("2024-05-01 10:00:03 bastion authpriv.info /usr/sbin/sshd[{pid}]: {m}"),
                };
                let mut out = Vec::new();
                f.process(line.as_bytes(), &ctx(), &mut out);
                for e in &out {
                    let ok = e.ip == *ip
                        // An address-less line of the same pid may follow an earlier message.
                        || msgs.iter().any(|((_, other), p)| p == pid && e.ip == *other);
                    prop_assert!(ok, "{} blamed for {}", e.ip, line);
                    prop_assert!(!e.ip.to_string().starts_with("203.0.113."), "{}", line);
                }
            }
        }
    }

    /// Token soup: every reported address occurs in the line itself (no filter invents or
    /// combines addresses) unless it came from the same process's earlier line.
    #[test]
    fn reported_address_is_in_the_line(parts in soup()) {
        let line = format!("May  1 10:00:03 h sshd[1]: {parts}");
        for mode in [Mode::Normal, Mode::Aggressive] {
            let mut f = build_builtin("sshd", &opts(mode)).unwrap();
            let mut out = Vec::new();
            f.process(line.as_bytes(), &ctx(), &mut out);
            for e in &out {
                let s = e.ip.to_string();
                prop_assert!(line.contains(&s), "{} not in {}", s, line);
            }
        }
    }

    /// Header splitting: any bytes, no panic; a split line's parts are its own bytes.
    #[test]
    fn syslog_split_parts_are_in_the_line(l in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        mutated(),
    ]) {
        match split(&l) {
            Ok(h) => {
                prop_assert!(l.ends_with(h.msg) || l.windows(h.msg.len().max(1)).any(|w| w == h.msg) || h.msg.is_empty());
                prop_assert!(!h.prog.is_empty());
            }
            Err(NotSyslog::NoHeader) | Err(NotSyslog::Malformed(_)) => {}
        }
    }

    /// Timestamps: any bytes through every parser, no panic.
    #[test]
    fn time_parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut p = TimeParser::new(jiff::tz::TimeZone::get("America/New_York").unwrap());
        let now = ctx().now;
        let _ = p.parse_rfc3164(&b, now);
        let _ = p.parse_rfc3339(&b);
        let _ = p.parse_clf(&b);
        let _ = p.parse_apache_error(&b);
        let _ = p.parse_syslog(&b, now);
        for k in [palisade_filter::syslog::StampKind::Rfc3164, palisade_filter::syslog::StampKind::Iso,
                  palisade_filter::syslog::StampKind::ShortFull, palisade_filter::syslog::StampKind::Unix] {
            let _ = p.parse_stamp(k, &b, now);
        }
        let _ = palisade_filter::time::journald_micros(&b);
    }

    /// ISO 8601 with an explicit zone reads back the instant jiff computes.
    #[test]
    fn iso_timestamps_round_trip(secs in 0i64..4_102_444_800, us in 0u32..1_000_000,
                                 off_min in -14i32 * 60..=14 * 60, form in 0u8..4) {
        let ts = jiff::Timestamp::from_second(secs).unwrap();
        let off = jiff::tz::Offset::from_seconds(off_min * 60).unwrap();
        let dt = ts.to_zoned(jiff::tz::TimeZone::fixed(off)).datetime();
        let sign = if off_min < 0 { '-' } else { '+' };
        let (h, m) = (off_min.abs() / 60, off_min.abs() % 60);
        let base = format!("{:04}-{:02}-{:02}{}{:02}:{:02}:{:02}.{us:06}",
            dt.year(), dt.month(), dt.day(), if form % 2 == 0 { 'T' } else { ' ' },
            dt.hour(), dt.minute(), dt.second());
        let zone = match form {
            0 => format!("{sign}{h:02}:{m:02}"),
            1 => format!("{sign}{h:02}{m:02}"),
            _ if off_min == 0 => "Z".to_string(),
            _ => format!("{sign}{h:02}:{m:02}"),
        };
        let s = format!("{base}{zone} host x: y");
        let mut p = TimeParser::new(jiff::tz::TimeZone::UTC);
        let (t, n) = p.parse_rfc3339(s.as_bytes()).unwrap();
        prop_assert_eq!(t, Timestamp(secs * 1_000_000 + i64::from(us)));
        prop_assert_eq!(&s[n..n + 1], " ");
    }

    /// Addresses: any bytes, no panic; every address's text reads back canonically.
    #[test]
    fn address_parsing(b in proptest::collection::vec(any::<u8>(), 0..64), ip in any::<IpAddr>()) {
        let _ = palisade_filter::scan::ip(&b);
        let _ = palisade_filter::scan::host_port_front(&b);
        let _ = palisade_core::parse_ip_bytes(&b);
        let s = ip.to_string();
        // Unspecified, broadcast and multicast addresses are never offenders (issue 19).
        let want = palisade_core::is_bannable(ip).then(|| palisade_core::canonical_ip(ip));
        prop_assert_eq!(palisade_filter::scan::ip(s.as_bytes()), want);
        let with_port = format!("{s} port 22: x");
        match want {
            Some(w) => {
                let (a, rest) = palisade_filter::scan::host_port_front(with_port.as_bytes()).unwrap();
                prop_assert_eq!(a, w);
                prop_assert_eq!(rest, &b": x"[..]);
            }
            None => prop_assert!(palisade_filter::scan::host_port_front(with_port.as_bytes()).is_none()),
        }
    }
}
