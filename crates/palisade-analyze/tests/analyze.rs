//! `palisade analyze` logic on small logs with known answers, gzip rotations, time windows,
//! the allowlist, the per-address bound, and a real Apache log.

use palisade_analyze::analyze::{Analyzer, Level, Levels, Options};
use palisade_analyze::render::{self, ScriptKind};
use palisade_core::Timestamp;
use std::io::Write;
use std::net::IpAddr;

fn line(ip: &str, sec: u32, req: &str, status: u16, ua: &str) -> String {
    format!(
        "{ip} - - [03/Mar/2025:10:{:02}:{:02} +0000] \"{req}\" {status} 153 \"-\" \"{ua}\"\n",
        sec / 60,
        sec % 60
    )
}

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0";

/// A log with exactly known answers:
/// - 203.0.113.5: 30 `.env`/`.git` probes (scanner_path) → 30 suspicious
/// - 203.0.113.6: 40 random 404s in 40 s, nothing else (404 storm) → 40 suspicious
/// - 198.51.100.7: 20 page views + 2 stray 404s → 0 suspicious
/// - 198.51.100.8: 5 traversal probes answered 200 + 5 pages → 5 suspicious
/// - 127.0.0.1: 50 probes (allowlisted) → 50 suspicious, never proposed
/// - 2001:db8::9: 12 401s → 12 http_auth
fn fixture() -> String {
    let mut s = String::new();
    for i in 0..30 {
        let p = if i % 2 == 0 { "/.env" } else { "/.git/config" };
        s += &line(
            "203.0.113.5",
            i,
            &format!("GET {p} HTTP/1.1"),
            404,
            "curl/8",
        );
    }
    for i in 0..40 {
        s += &line(
            "203.0.113.6",
            i,
            &format!("GET /w{i}.php HTTP/1.1"),
            404,
            UA,
        );
    }
    for i in 0..20 {
        s += &line("198.51.100.7", i * 3, "GET /blog/x HTTP/2.0", 200, UA);
    }
    s += &line("198.51.100.7", 100, "GET /old-page HTTP/2.0", 404, UA);
    s += &line("198.51.100.7", 101, "GET /older HTTP/2.0", 404, UA);
    for i in 0..5 {
        s += &line(
            "198.51.100.8",
            200 + i,
            "GET /index.php?page=../../../../etc/passwd HTTP/1.1",
            200,
            UA,
        );
        s += &line("198.51.100.8", 210 + i, "GET / HTTP/1.1", 200, UA);
    }
    for i in 0..50 {
        s += &line("127.0.0.1", 300 + i, "GET /phpinfo.php HTTP/1.1", 404, UA);
    }
    for i in 0..12 {
        s += &line("2001:db8::9", 400 + i, "GET /admin/ HTTP/1.1", 401, UA);
    }
    s += "this is not an access log line\n";
    s
}

fn run(text: &str, opts: Options) -> palisade_analyze::analyze::Analysis {
    let mut a = Analyzer::new(opts);
    a.feed_reader("fixture", text.as_bytes(), &mut |_| {})
        .unwrap();
    a.finish(None)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn known_answers() {
    let r = run(
        &fixture(),
        Options {
            threshold: 10,
            record_lines: true,
            ..Default::default()
        },
    );
    let get = |s: &str| r.ips.iter().find(|x| x.ip == ip(s)).unwrap();
    assert_eq!(get("203.0.113.5").suspicious, 30);
    assert_eq!(get("203.0.113.6").suspicious, 40, "404 storm counts");
    assert_eq!(get("203.0.113.6").peak_per_minute, 40);
    assert_eq!(
        get("198.51.100.7").suspicious,
        0,
        "stray 404s of a visitor do not"
    );
    assert_eq!(get("198.51.100.7").requests, 22);
    assert_eq!(get("198.51.100.8").suspicious, 5);
    assert_eq!(get("127.0.0.1").suspicious, 50);
    assert!(get("127.0.0.1").allowlisted && !get("127.0.0.1").proposed);
    assert_eq!(get("2001:db8::9").suspicious, 12);
    let proposed: Vec<String> = r.proposed().map(|x| x.ip.to_string()).collect();
    assert_eq!(proposed, ["203.0.113.6", "203.0.113.5", "2001:db8::9"]);
    assert_eq!(r.lines, 30 + 40 + 22 + 10 + 50 + 12 + 1);
    assert_eq!(r.files[0].unparsed, 1);
    assert_eq!(r.suspicious, 30 + 40 + 5 + 50 + 12);
    assert_eq!(r.files[0].level, Level::Yellow);
    assert_eq!(
        get("203.0.113.5").first_seen,
        Some(Timestamp::parse_rfc3339("2025-03-03T10:00:00Z").unwrap())
    );
    // Every suspicious line is flagged with its address, and only those.
    assert_eq!(r.flagged.len() as u64, r.suspicious);
    assert!(r.flagged.iter().all(|f| f.ip != ip("198.51.100.7")));
    assert_eq!(r.flagged[0].line, 1);
    assert_eq!(r.flagged[0].rule, "scanner_path");
}

#[test]
fn levels_and_threshold_are_configurable() {
    let r = run(
        &fixture(),
        Options {
            threshold: 45,
            levels: Levels {
                yellow: 10,
                red: 50,
                critical: 100,
            },
            ..Default::default()
        },
    );
    assert_eq!(r.level, Level::Critical);
    assert_eq!(
        r.proposed().count(),
        0,
        "nobody has 45 hits but the allowlisted"
    );
}

#[test]
fn time_window() {
    let since = Timestamp::parse_rfc3339("2025-03-03T10:03:00Z").unwrap();
    let until = Timestamp::parse_rfc3339("2025-03-03T10:06:00Z").unwrap();
    let r = run(
        &fixture(),
        Options {
            since: Some(since),
            until: Some(until),
            ..Default::default()
        },
    );
    // Seconds 180..360: 198.51.100.8 (200..215) and 127.0.0.1 (300..350) only.
    let ips: Vec<String> = r.ips.iter().map(|x| x.ip.to_string()).collect();
    assert_eq!(ips, ["127.0.0.1", "198.51.100.8"]);
    assert_eq!(r.files[0].outside_window, r.lines - 60 - 1);
}

#[test]
fn gzip_rotations_and_several_files() {
    let dir = tempfile::tempdir().unwrap();
    let text = fixture();
    let a_end = text[..text.len() / 2].rfind('\n').unwrap() + 1;
    let a = &text[..a_end];
    let gz = dir.path().join("access.log.1.gz");
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    // Two gzip members, as `cat a.gz b.gz` rotations produce.
    let (a1, a2) = a.split_at(a[..a.len() / 2].rfind('\n').unwrap() + 1);
    e.write_all(a1.as_bytes()).unwrap();
    e.finish().unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&gz).unwrap();
    let mut e2 = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e2.write_all(a2.as_bytes()).unwrap();
    f.write_all(&e2.finish().unwrap()).unwrap();
    let plain = dir.path().join("access.log");
    std::fs::write(&plain, &text[a_end..]).unwrap();

    let mut an = Analyzer::new(Options {
        threshold: 10,
        ..Default::default()
    });
    an.feed_file(&gz, &mut |_| {}).unwrap();
    an.feed_file(&plain, &mut |_| {}).unwrap();
    let r = an.finish(None);
    let whole = run(
        &text,
        Options {
            threshold: 10,
            ..Default::default()
        },
    );
    assert_eq!(r.files.len(), 2);
    assert_eq!(r.lines, whole.lines);
    assert_eq!(r.suspicious, whole.suspicious);
    let p1: Vec<IpAddr> = r.proposed().map(|x| x.ip).collect();
    let p2: Vec<IpAddr> = whole.proposed().map(|x| x.ip).collect();
    assert_eq!(p1, p2);
}

#[test]
fn address_bound_keeps_suspicious_newcomers() {
    let mut s = String::new();
    for i in 0..100 {
        s += &line(&format!("192.0.2.{i}"), i, "GET / HTTP/1.1", 200, UA);
    }
    for i in 0..20 {
        s += &line("203.0.113.77", i, "GET /.env HTTP/1.1", 404, UA);
    }
    let r = run(
        &s,
        Options {
            max_ips: 10,
            threshold: 20,
            ..Default::default()
        },
    );
    assert_eq!(r.distinct_ips, 11);
    assert_eq!(r.untracked.requests, 90);
    assert_eq!(r.proposed().next().unwrap().ip, ip("203.0.113.77"));
}

#[test]
fn outputs_and_scripts() {
    let r = run(
        &fixture(),
        Options {
            threshold: 10,
            ..Default::default()
        },
    );
    let mut out = Vec::new();
    render::json(&r, 0, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["proposed"].as_array().unwrap().len(), 3);
    assert_eq!(v["files"][0]["level"], "YELLOW");
    let mut out = Vec::new();
    render::csv(&r, 0, &mut out).unwrap();
    let csv = String::from_utf8(out).unwrap();
    assert!(csv.starts_with("ip,requests,suspicious"));
    assert_eq!(csv.lines().count(), 1 + 5);
    let mut out = Vec::new();
    render::html(&r, 0, &mut out).unwrap();
    let html = String::from_utf8(out).unwrap();
    assert!(html.contains("<svg") && !html.contains("http://cdn") && !html.contains("<script"));
    // The page says what it covers and when it was made.
    let first = r.ips.iter().filter_map(|x| x.first_seen).min().unwrap();
    let first = first.to_jiff().strftime("%Y-%m-%d %H:%M:%S").to_string();
    assert!(
        html.contains(&format!(
            "Window: whole logs; requests seen from {first} to "
        )),
        "{html}"
    );
    let year = jiff::Timestamp::now().strftime("%Y").to_string();
    assert!(html.contains(&format!("Generated {year}-")), "{html}");
    let mut windowed = r.clone();
    windowed.since = Some(Timestamp::from_secs(1_700_000_000));
    let mut out = Vec::new();
    render::html(&windowed, 0, &mut out).unwrap();
    let html = String::from_utf8(out).unwrap();
    assert!(
        html.contains("Window: from 2023-11-14 22:13:20 UTC to the end;"),
        "{html}"
    );
    let mut out = Vec::new();
    render::table(&r, 10, &mut out).unwrap();
    assert!(String::from_utf8(out).unwrap().contains("BLOCK"));

    let ips: Vec<IpAddr> = r.proposed().map(|x| x.ip).collect();
    let now = Timestamp::from_secs(1_700_000_000);
    let mut out = Vec::new();
    render::script(
        ScriptKind::Iptables,
        &ips,
        "palisade analyze x\ny",
        now,
        &mut out,
    )
    .unwrap();
    let sh = String::from_utf8(out).unwrap();
    assert!(sh.contains("iptables -A INPUT --source 203.0.113.6 -j DROP"));
    assert!(sh.contains("ip6tables -A INPUT --source 2001:db8::9 -j DROP"));
    assert!(sh.contains("# Command: palisade analyze x y"), "{sh}");
    let mut out = Vec::new();
    render::script(ScriptKind::Nft, &ips, "x", now, &mut out).unwrap();
    let nft = String::from_utf8(out).unwrap();
    assert!(
        nft.contains("elements = { 203.0.113.6, 203.0.113.5 }"),
        "{nft}"
    );
    assert!(nft.contains("elements = { 2001:db8::9 }"));
    let mut out = Vec::new();
    render::script(ScriptKind::Ipset, &ips, "x", now, &mut out).unwrap();
    let ipset = String::from_utf8(out).unwrap();
    assert!(ipset.contains("ipset -exist add palisade-analyze6 2001:db8::9"));
}

/// A real Apache log (Elastic's example data set, read at test time).
#[test]
fn elastic_apache_log() {
    let Some(path) = palisade_testkit::shared_file("data/elastic_examples/apache_logs") else {
        return;
    };
    let path = path.as_path();
    let mut an = Analyzer::new(Options::default());
    an.feed_file(path, &mut |_| {}).unwrap();
    let r = an.finish(None);
    assert_eq!(r.lines, 10_000);
    assert_eq!(
        r.files[0].unparsed, 0,
        "every line is a combined-format record"
    );
    assert_eq!(r.requests, 10_000);
    assert!(r.distinct_ips > 1000, "{}", r.distinct_ips);
    // Nobody in this ordinary site's log reaches 100 suspicious hits, and the busiest client
    // (a search engine / feed reader) is not suspicious at all.
    assert_eq!(r.proposed().count(), 0);
    let busiest = r.ips.iter().max_by_key(|x| x.requests).unwrap();
    assert!(busiest.suspicious < busiest.requests / 10, "{busiest:?}");
    assert!(r.suspicious > 0 && r.suspicious < 1000, "{}", r.suspicious);
    // First and last records of the file.
    let first = r.ips.iter().filter_map(|x| x.first_seen).min().unwrap();
    assert_eq!(first.to_string(), "2015-05-17T10:05:00Z");
}

/// A log of several chunks (over 3 MiB) with everything the reader and counters must get
/// right at chunk boundaries: many addresses with minutes that cross chunks, 404 storms,
/// probes, CRLF endings, garbage and empty lines, an overlong line (kept to its first
/// 64 KiB) and a last line without a newline.
fn big_fixture() -> String {
    let mut s = String::new();
    let mut n = 0u32;
    while s.len() < 3_300_000 {
        let ip = format!("198.51.{}.{}", n % 3, n % 41);
        let sec = (n / 13) % 3600;
        let (req, status) = match n % 11 {
            0 => (format!("GET /w{}.php HTTP/1.1", n % 97), 404),
            1 => ("GET /.env HTTP/1.1".to_string(), 404),
            2 => ("GET /index.php?id=1%27%20OR%201=1 HTTP/1.1".into(), 200),
            3 => ("GET /admin/ HTTP/1.1".into(), 401),
            _ => (format!("GET /page/{} HTTP/2.0", n % 50), 200),
        };
        s += &line(&ip, sec, &req, status, UA);
        match n % 997 {
            5 => s += "garbage that is no access log record\n",
            6 => s += "\n",
            7 => {
                s.pop();
                s += "\r\n";
            }
            _ => {}
        }
        if n == 4321 {
            let long = "A".repeat(200_000);
            s += &line(
                "203.0.113.77",
                5,
                &format!("GET /.git/{long} HTTP/1.1"),
                404,
                UA,
            );
        }
        n += 1;
    }
    s += &line("203.0.113.78", 9, "GET /.env HTTP/1.1", 404, "curl/8");
    s.pop(); // no final newline
    s
}

/// Everything of an analysis except the time it took.
fn comparable(a: &palisade_analyze::analyze::Analysis) -> String {
    let mut v = serde_json::to_value(a).unwrap();
    v["seconds"] = serde_json::Value::Null;
    format!("{v}\n{:?}", a.flagged)
}

#[test]
fn threads_give_the_same_result_as_one_thread() {
    let text = big_fixture();
    let opts = |threads: usize, max_ips: usize| Options {
        threshold: 20,
        record_lines: true,
        max_ips,
        threads,
        ..Default::default()
    };
    for max_ips in [500_000, 60] {
        let one = run(&text, opts(1, max_ips));
        assert!(one.lines > 15_000, "{}", one.lines);
        assert!(one.flagged.len() > 1000);
        assert!(one.proposed().count() > 10);
        // Line by line, the plain way: split at newlines, cut to 64 KiB.
        let mut by_line = Analyzer::new(opts(1, max_ips));
        for l in text.split('\n') {
            by_line.line(&l.as_bytes()[..l.len().min(64 * 1024)]);
        }
        let by_line = by_line.finish(None);
        // (`line` without `feed_reader` names no input.)
        let mut one_renamed = comparable(&one);
        one_renamed = one_renamed.replace("\"path\":\"fixture\"", "\"path\":\"\"");
        assert_eq!(comparable(&by_line), one_renamed, "max_ips {max_ips}");
        for threads in [2, 3, 8] {
            let many = run(&text, opts(threads, max_ips));
            assert_eq!(comparable(&many), comparable(&one), "{threads} threads");
        }
        // A reader that hands out a few bytes at a time changes nothing either.
        let mut a = Analyzer::new(opts(2, max_ips));
        a.feed_reader("fixture", Dribble(text.as_bytes()), &mut |_| {})
            .unwrap();
        assert_eq!(comparable(&a.finish(None)), comparable(&one));
    }
}

/// Reads at most 7 bytes at a time.
struct Dribble<'a>(&'a [u8]);

impl std::io::Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(7).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}
