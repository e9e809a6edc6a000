//! Web filters on real-world line shapes (written for these tests in the shapes seen in
//! loghub's Apache log, the elastic apache access log and current Apache/nginx releases):
//! Apache error-log client fields of every version, worm probes, and access-log lines that
//! ordinary readers and crawlers produce.

use palisade_core::{Event, Timestamp};
use palisade_filter::{build_builtin, BuiltinOptions, Filter, LineCtx, Mode, Outcome};

const N: Mode = Mode::Normal;
const A: Mode = Mode::Aggressive;

fn opts(mode: Mode) -> BuiltinOptions {
    BuiltinOptions {
        mode,
        tz: jiff::tz::TimeZone::UTC,
    }
}

fn ctx() -> LineCtx<'static> {
    LineCtx {
        now: Timestamp::parse_rfc3339("2025-03-20T00:00:00Z").unwrap(),
        source_time: None,
        journal: None,
    }
}

fn run(f: &mut dyn Filter, line: &str) -> (Outcome, Option<Event>) {
    let mut out = Vec::new();
    let o = f.process(line.as_bytes(), &ctx(), &mut out);
    assert_eq!(o == Outcome::Matched, !out.is_empty(), "{line}");
    assert!(out.len() <= 1);
    if let Some(e) = out.first() {
        assert!(f.rules().contains(&e.rule));
    }
    (o, out.pop())
}

fn one(filter: &str, mode: Mode, line: &str) -> (Outcome, Option<Event>) {
    let mut f = build_builtin(filter, &opts(mode)).unwrap();
    run(&mut *f, line)
}

#[track_caller]
fn expect(filter: &str, mode: Mode, line: &str, ip: &str, rule: &str) -> Event {
    let e = one(filter, mode, line)
        .1
        .unwrap_or_else(|| panic!("no event for {line}"));
    assert_eq!(e.ip.to_string(), ip, "{line}");
    assert_eq!(&*e.rule, rule, "{line}");
    e
}

#[track_caller]
fn none(filter: &str, mode: Mode, line: &str) {
    let (o, e) = one(filter, mode, line);
    assert!(e.is_none(), "unexpected event {e:?} for {line}");
    assert_ne!(o, Outcome::Matched);
}

const AE: &str = "apache_error";

#[test]
fn apache24_ipv6_client_without_brackets() {
    // 2.4 always appends the port; a bare IPv6 address carries it as a last `:` group.
    for (client, ip) in [
        ("2001:db8::a:49152", "2001:db8::a"),
        ("2001:db8::a:4915", "2001:db8::a"),
        ("2001:db8::a:80", "2001:db8::a"),
        ("2001:db8:1:2:3:4:5:6:443", "2001:db8:1:2:3:4:5:6"),
        ("[2001:db8::a]:4915", "2001:db8::a"),
        ("::ffff:192.0.2.7:51000", "192.0.2.7"),
        ("192.0.2.7:4915", "192.0.2.7"),
    ] {
        let l = format!("[Tue May 14 10:00:03.123456 2024] [core:info] [pid 4711:tid 140001] [client {client}] AH00126: Invalid URI in request GET /%%%% HTTP/1.1");
        let e = expect(AE, N, &l, ip, "invalid_uri");
        assert_eq!(e.time.to_string(), "2024-05-14T10:00:03.123456Z");
        // The same line with the module:level field only, or the pid field only.
        let l = format!("[Tue May 14 10:00:03 2024] [core:error] [client {client}] AH00135: Invalid method in request \\x16\\x03\\x01");
        expect(AE, N, &l, ip, "invalid_method");
        let l = format!("[Tue May 14 10:00:03 2024] [error] [pid 77] [client {client}] AH00135: Invalid method in request get /");
        expect(AE, N, &l, ip, "invalid_method");
    }
}

#[test]
fn apache22_client_is_the_address_as_written() {
    // 2.2 (and 2.0) never write a port: the last group of an IPv6 address is its own.
    for (client, ip) in [
        ("2001:db8::a:4915", "2001:db8::a:4915"),
        ("2001:db8::1", "2001:db8::1"),
        ("192.0.2.9", "192.0.2.9"),
    ] {
        let l = format!("[Fri Jun 10 01:23:50 2005] [error] [client {client}] Invalid URI in request GET /%%% HTTP/1.0");
        expect(AE, N, &l, ip, "invalid_uri");
    }
    // Five-digit last groups are not ports in 2.2; an IPv6 group has at most 4 hex digits.
    none(
        AE,
        N,
        "[Fri Jun 10 01:23:50 2005] [error] [client 2001:db8::a:49152] Invalid URI in request GET /x",
    );
    // A 2.4 field that is not an address with a port is ignored, never guessed.
    let (o, _) = one(
        AE,
        N,
        "[Tue May 14 10:00:03 2024] [core:error] [pid 1] [client 2001:db8::a:123456] AH00126: Invalid URI in request x",
    );
    assert_eq!(o, Outcome::Ignored);
}

#[test]
fn apache_worm_probes() {
    // loghub-shaped Apache 2.0 lines (awstats/xmlrpc worms of 2005, IIS worms).
    let l = "[Sat Jun 11 03:03:03 2005] [error] [client 192.0.2.20] script not found or unable to stat: /var/www/cgi-bin/awstats";
    let e = expect(AE, N, l, "192.0.2.20", "script_not_found");
    assert_eq!(e.field("path"), Some("/var/www/cgi-bin/awstats"));
    expect(AE, N, "[Sat Jun 11 03:03:04 2005] [error] [client 192.0.2.20] File does not exist: /var/www/html/awstats/awstats.pl", "192.0.2.20", "script_not_found");
    expect(AE, N, "[Sat Jun 11 03:03:04 2005] [error] [client 192.0.2.21] File does not exist: /var/www/html/scripts/root.exe", "192.0.2.21", "script_not_found");
    expect(AE, N, "[Sat Jun 11 03:03:04 2005] [error] [client 192.0.2.21] File does not exist: /var/www/html/scripts/..%5c..", "192.0.2.21", "probe");
    expect(AE, N, "[Sat Jun 11 03:03:04 2005] [error] [client 192.0.2.22] File does not exist: /var/www/html/phpmyadmin", "192.0.2.22", "probe");
    expect(AE, N, "[Sat Jun 11 03:03:04 2005] [error] [client 192.0.2.22] File does not exist: /var/www/html/wp-login.php, referer: http://example.org/", "192.0.2.22", "probe");
    // 2.4 wordings.
    expect(AE, N, "[Tue May 14 10:00:03.1 2024] [cgi:error] [pid 9] [client 192.0.2.23:40000] AH02811: script not found or unable to stat: /usr/lib/cgi-bin/test.cgi", "192.0.2.23", "script_not_found");
    expect(AE, N, "[Tue May 14 10:00:03.1 2024] [proxy_fcgi:error] [pid 9] [client 192.0.2.24:40000] AH01071: Got error 'Primary script unknown'", "192.0.2.24", "script_not_found").field("path").map(|_| ()).unwrap_or(());
    // A missing page or image is a broken link as often as a scan: aggressive only; files
    // browsers ask for on their own never count.
    let l = "[Sat Jun 11 03:03:04 2005] [error] [client 192.0.2.30] File does not exist: /var/www/html/blog";
    none(AE, N, l);
    expect(AE, A, l, "192.0.2.30", "not_found");
    for f in [
        "favicon.ico",
        "robots.txt",
        "apple-touch-icon-precomposed.png",
    ] {
        let l = format!("[Sat Jun 11 03:03:04 2005] [error] [client 192.0.2.31] File does not exist: /var/www/html/{f}");
        none(AE, N, &l);
        none(AE, A, &l);
    }
    // Request text after the client field cannot move the address.
    expect(AE, N, "[Sat Jun 11 03:03:04 2005] [error] [client 192.0.2.32] File does not exist: /var/www/html/[client 9.9.9.9] x.php", "192.0.2.32", "script_not_found");
}

#[test]
fn apache_overflows_and_old_invalid_uri() {
    expect(AE, N, "[Fri Jun 10 01:24:12 2005] [error] [client 192.0.2.40] Invalid method in request get /scripts/.%252e/.%252e/winnt/system32/cmd.exe?/c+dir", "192.0.2.40", "invalid_method");
    expect(AE, N, "[Fri Jun 10 01:24:12 2005] [error] [client 192.0.2.41] request failed: URI too long (longer than 8190)", "192.0.2.41", "invalid_uri");
    expect(AE, N, "[Tue May 14 10:00:03 2024] [core:error] [pid 1] [client 192.0.2.42:1] AH00566: request failed: invalid characters in URI", "192.0.2.42", "invalid_uri");
}
