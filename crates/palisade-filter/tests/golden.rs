//! Golden tests: realistic lines → expected address, rule, user and time; hostile inputs.

use palisade_core::{Event, Timestamp};
use palisade_filter::{
    build_builtin, builtin_names, BuiltinOptions, Filter, LineCtx, Mode, Outcome,
};

fn opts(mode: Mode) -> BuiltinOptions {
    BuiltinOptions {
        mode,
        tz: jiff::tz::TimeZone::UTC,
    }
}

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2025-03-20T00:00:00Z").unwrap()
}

fn run_ctx(
    f: &mut dyn Filter,
    line: &[u8],
    source_time: Option<Timestamp>,
) -> (Outcome, Vec<Event>) {
    let mut out = Vec::new();
    let ctx = LineCtx {
        now: now(),
        source_time,
        journal: None,
    };
    let o = f.process(line, &ctx, &mut out);
    assert_eq!(o == Outcome::Matched, !out.is_empty());
    assert!(out.len() <= 1, "one event per line at most");
    (o, out)
}

fn one(filter: &str, mode: Mode, line: &str) -> Option<Event> {
    let mut f = build_builtin(filter, &opts(mode)).unwrap();
    let (_, mut ev) = run_ctx(&mut *f, line.as_bytes(), None);
    for e in &ev {
        assert!(f.rules().contains(&e.rule), "rule {} listed", e.rule);
        assert_eq!(&*e.filter, filter);
    }
    ev.pop()
}

/// Asserts `line` gives (ip, rule, user) in `mode`.
#[track_caller]
fn expect(filter: &str, mode: Mode, line: &str, ip: &str, rule: &str, user: Option<&str>) -> Event {
    let e = one(filter, mode, line).unwrap_or_else(|| panic!("no event for {line}"));
    assert_eq!(e.ip.to_string(), ip, "{line}");
    assert_eq!(&*e.rule, rule, "{line}");
    assert_eq!(e.user.as_deref(), user, "{line}");
    e
}

#[track_caller]
fn none(filter: &str, mode: Mode, line: &str) {
    assert!(
        one(filter, mode, line).is_none(),
        "unexpected event for {line}"
    );
}

fn t(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

const N: Mode = Mode::Normal;
const A: Mode = Mode::Aggressive;

#[test]
fn names_and_errors() {
    for n in builtin_names() {
        let f = build_builtin(n, &BuiltinOptions::default()).unwrap();
        assert_eq!(f.name(), *n);
        assert!(!f.rules().is_empty());
    }
    assert!(build_builtin("nope", &BuiltinOptions::default()).is_err());
    assert_eq!(BuiltinOptions::default().mode, Mode::Normal);
}

#[test]
fn sshd_rules() {
    let e = expect(
        "sshd",
        N,
        "Mar  3 00:00:13 bastion sshd[1029435]: Failed password for root from 16.11.217.18 port 35882 ssh2",
        "16.11.217.18",
        "failed_password",
        Some("root"),
    );
    assert_eq!(e.time, t("2025-03-03T00:00:13Z"));
    assert!(e.failure);
    expect("sshd", N, "Mar  3 00:00:08 bastion sshd[1977305]: Failed password for invalid user web from 108.154.15.105 port 62448 ssh2", "108.154.15.105", "failed_password", Some("web"));
    let e = expect("sshd", N, "Mar  3 00:05:38 bastion sshd[660611]: Failed publickey for administrator from 172.2.211.62 port 9900 ssh2: RSA SHA256:7c456e7a1ac70eb0ef9fd4fc76ccb911", "172.2.211.62", "failed_publickey", Some("administrator"));
    assert!(
        !e.failure,
        "rejected keys are recorded, not counted, in Normal mode"
    );
    assert!(one("sshd", A, "Mar  3 00:05:38 bastion sshd[660611]: Failed publickey for git from 172.2.211.62 port 9900 ssh2: RSA SHA256:x").unwrap().failure);
    expect("sshd", N, "Feb 25 14:34:10 belka sshd[31603]: Failed keyboard-interactive/pam for invalid user ROOT from aaaa:bbbb:cccc:1234::1:1 port 50273 ssh2", "aaaa:bbbb:cccc:1234::1:1", "failed_auth", Some("ROOT"));
    expect("sshd", N, "Feb 25 14:34:10 belka sshd[31602]: Failed password for invalid user ROOT from 194.117.26.70 port 12345", "194.117.26.70", "failed_password", Some("ROOT"));
    expect(
        "sshd",
        N,
        "Mar  3 00:00:05 bastion sshd[1977305]: Invalid user web from 108.154.15.105 port 62448",
        "108.154.15.105",
        "invalid_user",
        Some("web"),
    );
    expect(
        "sshd",
        N,
        "Mar  3 00:04:06 bastion sshd[429748]: Invalid user  from 80.23.186.143 port 4804",
        "80.23.186.143",
        "invalid_user",
        Some(""),
    );
    expect(
        "sshd",
        N,
        "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
        "173.234.31.186",
        "invalid_user",
        Some("webmaster"),
    );
    expect("sshd", N, "Mar  3 00:00:29 bastion sshd[1156160]: User tomcat from 113.44.194.219 not allowed because listed in DenyUsers", "113.44.194.219", "not_allowed", Some("tomcat"));
    expect("sshd", N, "Mar  3 00:07:32 bastion sshd[1467338]: User dev from 133.4.229.61 not allowed because none of user's groups are listed in AllowGroups", "133.4.229.61", "not_allowed", Some("dev"));
    expect("sshd", N, "Mar  3 00:00:25 bastion sshd[1029435]: error: maximum authentication attempts exceeded for root from 16.11.217.18 port 35882 ssh2 [preauth]", "16.11.217.18", "max_auth_attempts", Some("root"));
    expect("sshd", N, "Mar  3 00:00:25 bastion sshd[1029435]: error: maximum authentication attempts exceeded for invalid user admin from 16.11.217.18 port 35882 ssh2 [preauth]", "16.11.217.18", "max_auth_attempts", Some("admin"));
    expect("sshd", N, "Mar  3 00:00:25 bastion sshd[1029435]: Disconnecting authenticating user root 16.11.217.18 port 35882: Too many authentication failures [preauth]", "16.11.217.18", "too_many_auth_failures", Some("root"));
    let e = expect("sshd", N, "Mar  3 00:00:11 bastion sshd[1029435]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=16.11.217.18  user=root", "16.11.217.18", "pam_auth_failure", Some("root"));
    assert!(
        !e.failure,
        "PAM duplicates the Failed password line: recorded, not counted"
    );
    expect("sshd", N, "Mar  3 00:00:06 bastion sshd[1977305]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=108.154.15.105", "108.154.15.105", "pam_auth_failure", None);
    expect("sshd", N, "Dec 10 06:55:46 LabSZ sshd[24200]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=173.234.31.186 ", "173.234.31.186", "pam_auth_failure", None);
    expect("sshd", N, "Dec 10 06:55:46 LabSZ sshd[24200]: PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=173.234.31.186  user=root", "173.234.31.186", "pam_auth_failure", Some("root"));

    // Benign.
    none("sshd", A, "Mar  3 00:00:15 bastion sshd[3689540]: Accepted password for erin from 10.20.0.190 port 46032 ssh2");
    none("sshd", A, "Mar 10 00:00:07 bastion sshd[2744565]: Received disconnect from 124.168.110.34 port 52515:11: disconnected by user");
    none("sshd", A, "Mar 10 00:00:07 bastion sshd[2744565]: Disconnected from user erin 124.168.110.34 port 52515");
    none(
        "sshd",
        A,
        "Mar  3 00:00:06 bastion sshd[1977305]: pam_unix(sshd:auth): check pass; user unknown",
    );
    none("sshd", A, "Mar  3 00:00:29 bastion sudo: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4");
    none(
        "sshd",
        A,
        "Mar  3 00:00:29 bastion CRON[1]: Failed password for root from 1.2.3.4 port 1 ssh2",
    );
}

#[test]
fn sshd_aggressive_rules() {
    let l = "Mar  3 00:05:40 bastion sshd[2053496]: Connection closed by 144.108.63.249 port 41125 [preauth]";
    none("sshd", N, l);
    expect("sshd", A, l, "144.108.63.249", "preauth_close", None);
    expect("sshd", A, "Mar  3 00:09:11 bastion sshd[1747352]: Connection reset by 2001:41d0:23b8:11b0::5ec6 port 8848 [preauth]", "2001:41d0:23b8:11b0::5ec6", "preauth_close", None);
    expect("sshd", A, "Mar  3 00:00:41 bastion sshd[1793674]: Connection closed by authenticating user 1234 45.254.130.49 port 57596 [preauth]", "45.254.130.49", "preauth_close", Some("1234"));
    expect("sshd", A, "Mar  3 00:04:08 bastion sshd[429748]: Connection closed by invalid user  80.23.186.143 port 4804 [preauth]", "80.23.186.143", "preauth_close", Some(""));
    expect("sshd", A, "Mar  3 00:00:09 bastion sshd[1977305]: Disconnected from invalid user web 108.154.15.105 port 62448 [preauth]", "108.154.15.105", "preauth_close", Some("web"));
    expect("sshd", A, "Mar  3 00:02:57 bastion sshd[866620]: Disconnected from authenticating user root 2.227.25.104 port 3650 [preauth]", "2.227.25.104", "preauth_close", Some("root"));
    expect("sshd", A, "Mar  3 00:00:09 bastion sshd[1977305]: Received disconnect from 108.154.15.105 port 62448:11: Bye Bye [preauth]", "108.154.15.105", "preauth_disconnect", None);
    expect("sshd", A, "Dec 10 06:55:48 LabSZ sshd[24200]: Received disconnect from 173.234.31.186: 11: Bye Bye [preauth]", "173.234.31.186", "preauth_disconnect", None);
    none("sshd", N, "Mar  3 00:00:09 bastion sshd[1977305]: Received disconnect from 108.154.15.105 port 62448:11: Bye Bye [preauth]");
    expect("sshd", A, "Mar  3 00:03:17 bastion sshd[1376543]: Did not receive identification string from 19.8.254.242 port 18721", "19.8.254.242", "no_ident", None);
    expect("sshd", A, "Mar  3 00:06:06 bastion sshd[1825717]: banner exchange: Connection from 138.228.84.68 port 40954: invalid format", "138.228.84.68", "bad_banner", None);
    expect("sshd", A, "Mar  3 00:06:06 bastion sshd[1]: Bad protocol version identification 'GET / HTTP/1.1' from 138.228.84.68 port 40954", "138.228.84.68", "bad_banner", None);
    expect("sshd", A, "Mar  3 00:01:09 bastion sshd[1195103]: Unable to negotiate with 67.23.150.84 port 52953: no matching host key type found. Their offer: ssh-rsa [preauth]", "67.23.150.84", "unable_negotiate", None);
    expect("sshd", A, "Mar  3 00:01:09 bastion sshd[1195103]: fatal: Unable to negotiate with 67.23.150.84 port 52953: no matching cipher found [preauth]", "67.23.150.84", "unable_negotiate", None);
}

#[test]
fn sshd_kex_pid_state() {
    let mut f = build_builtin("sshd", &opts(A)).unwrap();
    let kex = b"Mar  3 00:01:26 bastion sshd[1002399]: error: kex_exchange_identification: Connection closed by remote host";
    let closed =
        b"Mar  3 00:01:26 bastion sshd[1002399]: Connection closed by 91.252.42.126 port 30615";
    let other = b"Mar  3 00:01:26 bastion sshd[55]: Connection closed by 91.252.42.127 port 30615";
    assert_eq!(run_ctx(&mut *f, kex, None).0, Outcome::Missed);
    assert_eq!(
        run_ctx(&mut *f, other, None).0,
        Outcome::Missed,
        "different pid"
    );
    let (o, ev) = run_ctx(&mut *f, closed, None);
    assert_eq!(o, Outcome::Matched);
    assert_eq!(ev[0].ip.to_string(), "91.252.42.126");
    assert_eq!(&*ev[0].rule, "kex_failure");
    assert_eq!(
        run_ctx(&mut *f, closed, None).0,
        Outcome::Missed,
        "mark is used once"
    );
    // Normal mode ignores both.
    let mut n = build_builtin("sshd", &opts(N)).unwrap();
    run_ctx(&mut *n, kex, None);
    assert_eq!(run_ctx(&mut *n, closed, None).0, Outcome::Missed);
}

#[test]
fn sshd_variants() {
    // OpenSSH 9.8+ sshd-session, RFC 3339 header.
    let e = expect("sshd", N, "2025-03-03T10:00:00.123456+01:00 host sshd-session[7]: Failed password for root from 1.2.3.4 port 22 ssh2", "1.2.3.4", "failed_password", Some("root"));
    assert_eq!(e.time, t("2025-03-03T09:00:00.123456Z"));
    expect(
        "sshd",
        N,
        "Mar 03 10:00:00 host /usr/sbin/sshd[7]: Invalid user x from ::ffff:1.2.3.4 port 22",
        "1.2.3.4",
        "invalid_user",
        Some("x"),
    );
    expect(
        "sshd",
        N,
        "Mar  3 10:00:00 host sshd-auth[7]: Invalid user x from 2001:db8::1 port 22",
        "2001:db8::1",
        "invalid_user",
        Some("x"),
    );
    // journald MESSAGE only: time from the source.
    let mut f = build_builtin("sshd", &opts(N)).unwrap();
    let st = t("2025-03-03T12:00:00.5Z");
    let (_, ev) = run_ctx(
        &mut *f,
        b"Failed password for root from 1.2.3.4 port 22 ssh2",
        Some(st),
    );
    assert_eq!(ev[0].time, st);
    // Without a source time, a bare message is not trusted as an sshd record.
    assert_eq!(
        run_ctx(
            &mut *f,
            b"Failed password for root from 1.2.3.4 port 22 ssh2",
            None
        )
        .0,
        Outcome::Missed
    );
    // Year inference across the new year.
    let mut f = build_builtin("sshd", &opts(N)).unwrap();
    let mut out = Vec::new();
    let ctx = LineCtx {
        now: t("2026-01-01T00:10:00Z"),
        source_time: None,
        journal: None,
    };
    f.process(
        b"Dec 31 23:59:58 h sshd[1]: Invalid user a from 1.2.3.4 port 1",
        &ctx,
        &mut out,
    );
    f.process(
        b"Jan  1 00:00:02 h sshd[1]: Invalid user a from 1.2.3.4 port 1",
        &ctx,
        &mut out,
    );
    assert_eq!(out[0].time, t("2025-12-31T23:59:58Z"));
    assert_eq!(out[1].time, t("2026-01-01T00:00:02Z"));
    // Local time zone.
    let mut f = build_builtin(
        "sshd",
        &BuiltinOptions {
            mode: N,
            tz: jiff::tz::TimeZone::get("America/New_York").unwrap(),
        },
    )
    .unwrap();
    let (_, ev) = run_ctx(
        &mut *f,
        b"Jul  4 12:00:00 h sshd[1]: Invalid user a from 1.2.3.4 port 1",
        None,
    );
    assert_eq!(ev[0].time, t("2024-07-04T16:00:00Z"));
}

#[test]
fn sshd_injection() {
    // A user name carrying " from IP port N ssh2": the real address is the last.
    expect("sshd", N, "Mar  3 00:00:25 bastion sshd[1839033]: Failed password for invalid user test from 10.10.1.2 port 55555 ssh2 from 203.0.113.9 port 4242 ssh2", "203.0.113.9", "failed_password", Some("test from 10.10.1.2 port 55555 ssh2"));
    expect("sshd", A, "Mar  3 00:36:33 bastion sshd[1991537]: Connection closed by authenticating user test 127.0.0.1 port 12345 198.51.100.8 port 5555 [preauth]", "198.51.100.8", "preauth_close", Some("test 127.0.0.1 port 12345"));
    expect("sshd", N, "Nov 11 08:04:51 redbamboo sshd[2737]: Failed password for invalid user from 10.10.1.1 from 127.0.0.1 port 58946 ssh2", "127.0.0.1", "failed_password", Some("from 10.10.1.1"));
    expect("sshd", N, "Sep 29 17:15:02 spaceman sshd[12946]: Failed password for user from 127.0.0.1 port 20000 ssh1: ruser from 1.2.3.4", "127.0.0.1", "failed_password", Some("user"));
    expect("sshd", N, "Mar  3 00:00:05 h sshd[1]: Invalid user x from 198.51.100.7 port 1 from 203.0.113.5 port 2", "203.0.113.5", "invalid_user", Some("x from 198.51.100.7 port 1"));
    expect("sshd", N, "Mar  3 00:00:05 h sshd[1]: User x from 198.51.100.7 not allowed because listed in DenyUsers from 203.0.113.5 not allowed because listed in DenyUsers", "203.0.113.5", "not_allowed", Some("x from 198.51.100.7 not allowed because listed in DenyUsers"));
    expect("sshd", N, "Mar  3 00:00:05 h sshd[1]: Disconnecting authenticating user x 198.51.100.7 port 1: Too many authentication failures 203.0.113.5 port 2: Too many authentication failures [preauth]", "203.0.113.5", "too_many_auth_failures", Some("x 198.51.100.7 port 1: Too many authentication failures"));
    expect("sshd", N, "Mar  3 00:00:05 h sshd[1]: error: maximum authentication attempts exceeded for x from 198.51.100.7 port 1 ssh2 from 203.0.113.5 port 2 ssh2 [preauth]", "203.0.113.5", "max_auth_attempts", Some("x from 198.51.100.7 port 1 ssh2"));
    // PAM: ruser precedes rhost and may carry the attempted name.
    expect("sshd", N, "Mar  3 00:00:05 h sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser=x rhost=198.51.100.7 rhost=203.0.113.5  user=root", "203.0.113.5", "pam_auth_failure", Some("root"));
    none("sshd", N, "Mar  3 00:00:05 h sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.5  user=a rhost=198.51.100.7 x");
    // The real host is a name (UseDNS): never fall back to an address inside the user name.
    for l in [
        "Mar  3 00:00:05 h sshd[1]: Failed password for x from 198.51.100.7 port 1 ssh2 from evil.example port 22 ssh2",
        "Mar  3 00:00:05 h sshd[1]: Invalid user x from 198.51.100.7 port 1 from evil.example port 22",
        "Mar  3 00:00:05 h sshd[1]: User x from 198.51.100.7 not allowed because y from evil.example not allowed because listed in DenyUsers",
    ] {
        let mut f = build_builtin("sshd", &opts(A)).unwrap();
        let (o, ev) = run_ctx(&mut *f, l.as_bytes(), None);
        assert!(ev.is_empty(), "{l}");
        assert_eq!(o, Outcome::Ignored, "{l}");
    }
    // Hostile names never break parsing or attribution.
    for name in [
        "$(touch /tmp/x)",
        "x; rm -rf /",
        "a\u{0}b",
        "`id`",
        "' OR 1=1 --",
        "\u{1b}[31m",
    ] {
        let l = format!("Mar  3 00:00:05 h sshd[1]: Invalid user {name} from 203.0.113.5 port 2");
        let e = expect(
            "sshd",
            N,
            &l,
            "203.0.113.5",
            "invalid_user",
            None.or(one("sshd", N, &l).unwrap().user.as_deref()),
        );
        assert!(!e.user.as_deref().unwrap().contains(['\u{0}', '\u{1b}']));
    }
    // Invalid UTF-8, NUL bytes, huge lines: no panic, no event with a bogus address.
    let mut f = build_builtin("sshd", &opts(A)).unwrap();
    let mut l =
        b"Mar  3 00:00:05 h sshd[1]: Invalid user \xff\xfe\x00 from 203.0.113.5 port 2".to_vec();
    let (_, ev) = run_ctx(&mut *f, &l, None);
    assert_eq!(ev[0].ip.to_string(), "203.0.113.5");
    l = b"Mar  3 00:00:05 h sshd[1]: Failed password for ".to_vec();
    l.extend(std::iter::repeat_n(b'A', 10 << 20));
    l.extend_from_slice(b" from 203.0.113.5 port 2 ssh2");
    let (_, ev) = run_ctx(&mut *f, &l, None);
    assert_eq!(ev[0].ip.to_string(), "203.0.113.5");
    assert!(ev[0].user.as_ref().unwrap().len() <= 128);
    assert!(ev[0].evidence.len() <= palisade_core::event::EVIDENCE_MAX);
    let junk: Vec<u8> = (0..=255u8).cycle().take(1 << 16).collect();
    for f in builtin_names() {
        let mut f = build_builtin(f, &opts(A)).unwrap();
        for w in junk.chunks(97) {
            run_ctx(&mut *f, w, Some(now()));
        }
        run_ctx(&mut *f, b"", None);
        run_ctx(&mut *f, &vec![b' '; 1 << 20], None);
        run_ctx(&mut *f, &vec![b'"'; 1 << 20], None);
        run_ctx(&mut *f, &vec![b'['; 1 << 20], None);
    }
    // Not addresses.
    none(
        "sshd",
        N,
        "Mar  3 00:00:05 h sshd[1]: Invalid user x from 1.2.3 port 2",
    );
    none(
        "sshd",
        N,
        "Mar  3 00:00:05 h sshd[1]: Invalid user x from 192.030.0.6 port 2",
    );
    none(
        "sshd",
        N,
        "Mar  3 00:00:05 h sshd[1]: Invalid user x from fe80::1%eth0 port 2",
    );
}

#[test]
fn access_rules() {
    let f = "nginx_access";
    let e = expect(
        f,
        N,
        r#"122.208.123.121 - admin [03/Mar/2025:00:02:33 +0000] "GET /admin/ HTTP/1.1" 401 179 "-" "Mozilla/5.0""#,
        "122.208.123.121",
        "http_auth",
        Some("admin"),
    );
    assert_eq!(e.time, t("2025-03-03T00:02:33Z"));
    assert_eq!(e.field("path"), Some("/admin/"));
    assert_eq!(e.field("status"), Some("401"));
    assert_eq!(e.field("method"), Some("GET"));
    let e = expect(
        f,
        N,
        r#"2a02:edb9:1c6:7265::2b93 - - [03/Mar/2025:00:02:15 -0700] "POST /xmlrpc.php HTTP/1.1" 404 153 "-" "Go-http-client/1.1""#,
        "2a02:edb9:1c6:7265::2b93",
        "scanner_path",
        None,
    );
    assert_eq!(e.time, t("2025-03-03T07:02:15Z"));
    expect(
        f,
        N,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:30 +0000] "GET /PhpMyAdmin/index.php HTTP/1.1" 404 153 "-" "curl/7.88.1""#,
        "1.2.3.4",
        "scanner_path",
        None,
    );
    expect(
        f,
        N,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:30 +0000] "GET /.git/config HTTP/1.1" 200 153 "-" "curl/7.88.1""#,
        "1.2.3.4",
        "scanner_path",
        None,
    );
    expect(
        f,
        N,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:30 +0000] "GET /api/.env HTTP/1.1" 404 153 "-" "-""#,
        "1.2.3.4",
        "scanner_path",
        None,
    );
    expect(
        f,
        N,
        r#"::ffff:1.2.3.4 - - [03/Mar/2025:00:00:30 +0000] "GET /cgi-bin/.%2e/.%2e/bin/sh HTTP/1.1" 400 1 "-" "-""#,
        "1.2.3.4",
        "probe",
        None,
    );
    expect(
        f,
        N,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:30 +0000] "GET /index.php?page=../../../../etc/passwd HTTP/1.1" 200 1 "-" "x""#,
        "1.2.3.4",
        "probe",
        None,
    );
    expect(
        f,
        N,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:30 +0000] "GET /?id=1%27%20OR%20%271%27=%271 HTTP/1.1" 200 1 "-" "x""#,
        "1.2.3.4",
        "probe",
        None,
    );
    expect(
        f,
        N,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:30 +0000] "GET /search?q=%3Cscript%3Ealert(1) HTTP/1.1" 200 1 "-" "x""#,
        "1.2.3.4",
        "probe",
        None,
    );
    expect(
        f,
        N,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:30 +0000] "GET / HTTP/1.1" 200 1 "-" "() { :; }; /bin/bash -c id""#,
        "1.2.3.4",
        "probe",
        None,
    );
    expect(
        f,
        N,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:30 +0000] "GET /blog HTTP/1.1" 200 1 "-" "EmailCollector""#,
        "1.2.3.4",
        "bad_bot",
        None,
    );
    expect(
        f,
        N,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:30 +0000] "GET /blog HTTP/1.1" 200 1 "-" "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)""#,
        "1.2.3.4",
        "bad_bot",
        None,
    );
    expect(
        f,
        N,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:30 +0000] "\x16\x03\x01\x00\xee\x01" 400 157 "-" "-""#,
        "1.2.3.4",
        "bad_request",
        None,
    );
    expect(
        f,
        N,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:30 +0000] "-" 400 157 "-" "-""#,
        "1.2.3.4",
        "bad_request",
        None,
    );
    expect(
        f,
        A,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:30 +0000] "GET /admin/old.zip HTTP/1.1" 404 153 "-" "Mozilla/5.0""#,
        "1.2.3.4",
        "not_found",
        None,
    );
    // Common log format (no referer/agent), apache escaping.
    expect(
        "apache_access",
        N,
        r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /wp-login.php HTTP/1.0" 404 2326"#,
        "1.2.3.4",
        "scanner_path",
        None,
    );
    expect(
        "apache_access",
        A,
        r#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /a\"b HTTP/1.0" 404 2326 "-" "x""#,
        "1.2.3.4",
        "not_found",
        None,
    );
    // A plain 404 is a broken link in normal mode, an event in aggressive mode only.
    none(
        f,
        N,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:30 +0000] "GET /admin/old.zip HTTP/1.1" 404 153 "-" "Mozilla/5.0""#,
    );
    // Benign.
    for l in [
        r#"1.2.3.4 - - [03/Mar/2025:00:00:02 +0000] "GET /apple-touch-icon.png HTTP/2.0" 404 153 "-" "Mozilla/5.0""#,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:02 +0000] "GET /apple-touch-icon-precomposed.png HTTP/2.0" 404 153 "-" "Mozilla/5.0""#,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:02 +0000] "GET /favicon.ico HTTP/2.0" 404 153 "-" "Mozilla/5.0""#,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:02 +0000] "GET /robots.txt HTTP/1.1" 404 153 "-" "Mozilla/5.0 (compatible; Googlebot/2.1)""#,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:02 +0000] "GET /wp-admin/ HTTP/1.1" 200 153 "-" "Mozilla/5.0""#,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:02 +0000] "GET / HTTP/1.1" 200 153 "-" "curl/8.5.0""#,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:02 +0000] "GET / HTTP/1.1" 200 153 "-" "python-requests/2.31.0""#,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:02 +0000] "GET / HTTP/1.1" 200 153 "-" "Go-http-client/1.1""#,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:02 +0000] "GET / HTTP/1.1" 200 153 "https://x/?q=../../etc/passwd" "Mozilla/5.0""#,
    ] {
        none(f, N, l);
    }
    // Injection: the address is always the first field.
    expect(
        f,
        A,
        r#"1.2.3.4 - - [03/Mar/2025:00:00:30 +0000] "GET /x?ip=9.9.9.9 HTTP/1.1" 404 1 "9.9.9.9" "9.9.9.9 - - [""#,
        "1.2.3.4",
        "not_found",
        None,
    );
    let mut fl = build_builtin(f, &opts(N)).unwrap();
    let (o, _) = run_ctx(
        &mut *fl,
        br#"example.com - - [03/Mar/2025:00:00:30 +0000] "GET /.env HTTP/1.1" 404 1 "-" "-""#,
        None,
    );
    assert_eq!(o, Outcome::Ignored);
}

#[test]
fn nginx_error_rules() {
    let f = "nginx_error";
    let e = expect(
        f,
        N,
        r#"2025/03/03 10:00:00 [error] 123#0: *1 user "admin": password mismatch, client: 1.2.3.4, server: example.com, request: "GET / HTTP/1.1", host: "example.com""#,
        "1.2.3.4",
        "auth_failure",
        Some("admin"),
    );
    assert_eq!(e.time, t("2025-03-03T10:00:00Z"));
    expect(
        f,
        N,
        r#"2025/03/03 10:00:00 [error] 123#0: *1 user "bob" was not found in "/etc/nginx/.htpasswd", client: 2001:db8::1, server: a, request: "GET / HTTP/1.1""#,
        "2001:db8::1",
        "user_not_found",
        Some("bob"),
    );
    let l = r#"2025/03/03 10:00:00 [error] 123#0: *1 no user/password was provided for basic authentication, client: 1.2.3.4, server: a, request: "GET / HTTP/1.1""#;
    none(f, N, l);
    expect(f, A, l, "1.2.3.4", "auth_missing", None);
    expect(
        f,
        N,
        r#"2025/03/03 10:00:00 [error] 123#0: *7 limiting requests, excess: 10.520 by zone "one", client: 1.2.3.4, server: a, request: "GET /x, client: 9.9.9.9, HTTP/1.1""#,
        "1.2.3.4",
        "limit_req",
        None,
    );
    // Forged client field in the user name or request: ambiguous → ignored, never 9.9.9.9.
    let mut fl = build_builtin(f, &opts(N)).unwrap();
    let (o, _) = run_ctx(&mut *fl, br#"2025/03/03 10:00:00 [error] 1#0: *1 user "x": password mismatch, client: 9.9.9.9, server: ": password mismatch, client: 1.2.3.4, server: a"#, None);
    assert_eq!(o, Outcome::Ignored);
}

#[test]
fn apache_error_rules() {
    let f = "apache_error";
    let e = expect(
        f,
        N,
        r#"[Wed Oct 11 14:32:52.123456 2000] [auth_basic:error] [pid 1] [client 1.2.3.4:5678] AH01617: user admin: authentication failure for "/": Password Mismatch"#,
        "1.2.3.4",
        "auth_failure",
        Some("admin"),
    );
    assert_eq!(e.time, t("2000-10-11T14:32:52.123456Z"));
    expect(
        f,
        N,
        r#"[Wed Oct 11 14:32:52 2000] [error] [client 1.2.3.4] user admin: authentication failure for "/": Password Mismatch"#,
        "1.2.3.4",
        "auth_failure",
        Some("admin"),
    );
    expect(
        f,
        N,
        r#"[Wed Oct 11 14:32:52.1 2000] [auth_basic:error] [pid 1:tid 2] [client [2001:db8::1]:5678] AH01618: user bob not found: /admin"#,
        "2001:db8::1",
        "user_not_found",
        Some("bob"),
    );
    expect(
        f,
        N,
        r#"[Wed Oct 11 14:32:52.1 2000] [authz_core:error] [pid 1] [client 2001:db8::2:52044] AH01630: client denied by server configuration: /srv/x"#,
        "2001:db8::2",
        "denied",
        None,
    );
    expect(
        f,
        N,
        r#"[Wed Oct 11 14:32:52.1 2000] [core:error] [pid 1] [client 1.2.3.4:1] AH10244: invalid URI path (/cgi-bin/.%2e/.%2e/bin/sh)"#,
        "1.2.3.4",
        "invalid_uri",
        None,
    );
    expect(
        f,
        N,
        r#"[Wed Oct 11 14:32:52.1 2000] [security2:error] [pid 1] [client 1.2.3.4:1] [client 1.2.3.4] ModSecurity: Access denied with code 403 (phase 2). [hostname "x"]"#,
        "1.2.3.4",
        "modsecurity",
        None,
    );
    let l = "[Sun Dec 04 05:15:09 2005] [error] [client 222.166.160.184] Directory index forbidden by rule: /var/www/html/";
    none(f, N, l);
    expect(f, A, l, "222.166.160.184", "dir_forbidden", None);
    // User text after the client field cannot move the address.
    expect(
        f,
        N,
        r#"[Wed Oct 11 14:32:52 2000] [error] [client 1.2.3.4] user [client 9.9.9.9]: authentication failure for "/": Password Mismatch"#,
        "1.2.3.4",
        "auth_failure",
        Some("[client 9.9.9.9]"),
    );
}

#[test]
fn kernel_fw_rules() {
    let f = "kernel_fw";
    let e = expect(f, N, "Mar  3 10:00:00 host kernel: [12345.678] [UFW BLOCK] IN=eth0 OUT= MAC=aa:bb SRC=1.2.3.4 DST=5.6.7.8 LEN=40 TOS=0x00 PREC=0x00 TTL=240 ID=54321 PROTO=TCP SPT=4242 DPT=22 WINDOW=1024 RES=0x00 SYN URGP=0", "1.2.3.4", "ufw_block", None);
    assert_eq!(e.field("dpt"), Some("22"));
    assert_eq!(e.field("proto"), Some("TCP"));
    assert_eq!(e.time, t("2025-03-03T10:00:00Z"));
    expect(f, N, "Mar  3 10:00:00 host kernel: nft-drop: IN=eth0 OUT= MAC=aa SRC=2001:db8::5 DST=2001:db8::1 LEN=40 PROTO=UDP SPT=1 DPT=53", "2001:db8::5", "fw_log", None);
    let mut fl = build_builtin(f, &opts(N)).unwrap();
    let st = t("2025-03-03T12:00:00Z");
    let (_, ev) = run_ctx(
        &mut *fl,
        b"[UFW BLOCK] IN=eth0 OUT= SRC=1.2.3.4 DST=5.6.7.8 PROTO=TCP DPT=23",
        Some(st),
    );
    assert_eq!(ev[0].time, st);
    none(f, N, "Mar  3 10:00:00 host kernel: [1.2] [UFW ALLOW] IN=eth0 OUT= SRC=1.2.3.4 DST=5.6.7.8 PROTO=TCP DPT=22");
    none(f, N, "Mar  3 10:00:00 host kernel: [1.2] [UFW AUDIT] IN=eth0 OUT= SRC=1.2.3.4 DST=5.6.7.8 PROTO=TCP DPT=22");
    none(
        f,
        N,
        "Mar  3 10:00:00 host sshd[1]: Invalid user IN= SRC=1.2.3.4 from 5.6.7.8",
    );
}
