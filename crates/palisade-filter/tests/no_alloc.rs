//! Non-matching lines must not allocate: a counting global allocator proves it.

use palisade_core::Timestamp;
use palisade_filter::{build_builtin, BuiltinOptions, LineCtx, Mode, Outcome};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static ON: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Only the measuring thread counts: the test harness's own threads allocate at times
    /// (output capture, result channel) and must not make the count flaky.
    static MEASURING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn counting() -> bool {
    ON.load(Ordering::Relaxed) && MEASURING.try_with(|m| m.get()).unwrap_or(false)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const SSHD_NOISE: &[&str] = &[
    "Mar  3 00:00:15 bastion sshd[3689540]: Accepted password for erin from 10.20.0.190 port 46032 ssh2",
    "Mar  3 00:00:38 bastion sshd[3338334]: Accepted publickey for carol from 10.20.1.235 port 16557 ssh2: ED25519 SHA256:e9219ce37199a6f5f01db3974844a0d1",
    "Mar  3 00:00:15 bastion sshd[3689540]: pam_unix(sshd:session): session opened for user erin(uid=1004) by (uid=0)",
    "Mar  3 00:00:15 bastion systemd-logind[612]: New session 35243 of user erin.",
    "Mar  3 00:00:15 bastion systemd[1]: Started session-35243.scope - Session 35243 of User erin.",
    "Mar  3 00:00:29 bastion CRON[2481073]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
    "Mar  3 00:00:29 bastion CRON[2481074]: (root) CMD (/usr/local/bin/backup.sh >/dev/null 2>&1)",
    "Mar  3 00:00:45 bastion sudo:      bob : TTY=pts/4 ; PWD=/home/bob ; USER=root ; COMMAND=/usr/bin/tail -f /var/log/syslog",
    "Mar  3 00:00:45 bastion sudo: pam_unix(sudo:session): session opened for user root(uid=0) by bob(uid=1001)",
    "Mar  3 00:04:35 bastion sshd[3105823]: Received disconnect from 99.137.52.127 port 65114:11: disconnected by user",
    "Mar  3 00:04:35 bastion sshd[3105823]: Disconnected from user ci 99.137.52.127 port 65114",
    "Mar  3 00:04:35 bastion systemd-logind[612]: Session 22267 logged out. Waiting for processes to exit.",
    "Mar  3 00:01:56 bastion systemd[1]: Starting certbot.service - Certbot...",
    "Mar  3 00:01:26 bastion sshd[1002399]: error: kex_exchange_identification: Connection closed by remote host",
    "Mar  3 00:01:26 bastion sshd[1]: Server listening on 0.0.0.0 port 22.",
    "2025-03-03T10:00:00.123456+01:00 host sshd-session[7]: pam_unix(sshd:session): session closed for user erin",
    "",
    "garbage \u{0} \u{7f}",
    "<38>1 2024-05-01T10:00:03.123456+02:00 host CRON 104 - [x y=\"z\"] (root) CMD (true)",
    "Wed 2024-05-01 10:00:03 CEST host systemd[1]: Started session-1.scope.",
    "May 01 10:00:03.123456 host sshd[104]: Accepted publickey for erin from 10.20.0.190 port 1 ssh2: ED25519 SHA256:e9219ce37199a6f5f01db3974844a0d1",
    "May  1 10:00:03 host sshd[104]: Connection from 10.20.0.190 port 1 on 10.20.0.1 port 22 rdomain \"\"",
    "May  1 10:00:03 host authpriv.info sshd[104]: [ID 800047 auth.info] Postponed publickey for erin",
    "May  1 10:00:03 host last message repeated 2 times",
    "May  1 10:00:03 host sshd[104]: message repeated 2 times: [ Accepted password for erin from 10.20.0.190 port 1 ssh2]",
    "-- Boot 4b3f --",
];

const WEB_NOISE: &[&str] = &[
    r#"92.146.3.208 - - [03/Mar/2025:00:00:00 +0000] "GET /blog/incident-report-feb HTTP/2.0" 200 31662 "https://www.google.com/" "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0""#,
    r#"2a02:489b:3f1e:e8da::3da4 - - [03/Mar/2025:00:00:01 +0000] "GET /static/js/app.8b2e44.js HTTP/2.0" 304 0 "https://example.com/blog/incident-report-feb" "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36""#,
    r#"2a02:489b:3f1e:e8da::3da4 - - [03/Mar/2025:00:00:02 +0000] "GET /apple-touch-icon.png HTTP/2.0" 404 153 "-" "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36""#,
    r#"203.213.121.14 - - [03/Mar/2025:00:00:40 +0000] "POST /login HTTP/2.0" 302 0 "https://example.com/login" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)""#,
    r#"66.249.66.1 - - [03/Mar/2025:00:00:40 +0000] "GET /wp-login.php HTTP/1.1" 200 10 "-" "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)""#,
    r#"1.2.3.4 - - [03/Mar/2025:00:00:40 +0000] "GET / HTTP/1.1" 200 10"#,
];

const OTHER_NOISE: &[(&str, &str)] = &[
    ("nginx_error", "2025/03/03 10:00:00 [notice] 123#0: signal process started"),
    ("nginx_error", "2025/03/03 10:00:00 [error] 123#0: *1 open() \"/var/www/x\" failed (2: No such file or directory), client: 1.2.3.4, server: a"),
    ("apache_error", "[Wed Oct 11 14:32:52.123456 2000] [mpm_event:notice] [pid 1] AH00489: Apache/2.4 configured"),
    ("apache_error", "[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok /etc/httpd/conf/workers2.properties"),
    ("kernel_fw", "Mar  3 10:00:00 host kernel: [12345.678] [UFW ALLOW] IN=eth0 OUT= MAC=00 SRC=1.2.3.4 DST=5.6.7.8 PROTO=TCP SPT=1 DPT=22"),
    ("kernel_fw", "Mar  3 10:00:00 host kernel: [12345.678] usb 1-1: new high-speed USB device"),
    ("kernel_fw", "Mar  3 10:00:00 host CRON[1]: (root) CMD (true)"),
];

fn ctx() -> LineCtx<'static> {
    LineCtx {
        now: Timestamp::parse_rfc3339("2025-03-20T00:00:00Z").unwrap(),
        source_time: None,
        journal: None,
    }
}

/// Runs `lines` through `filter` many times with allocation counting on; returns the count.
fn count(filter: &str, mode: Mode, lines: &[&[u8]]) -> usize {
    let opts = BuiltinOptions {
        mode,
        tz: jiff::tz::TimeZone::UTC,
    };
    let mut f = build_builtin(filter, &opts).unwrap();
    let mut out = Vec::with_capacity(16);
    let c = ctx();
    ALLOCS.store(0, Ordering::SeqCst);
    MEASURING.with(|m| m.set(true));
    ON.store(true, Ordering::SeqCst);
    for _ in 0..2_000 {
        for l in lines {
            let o = f.process(l, &c, &mut out);
            assert_ne!(
                o,
                Outcome::Matched,
                "{filter}: noise line matched: {}",
                String::from_utf8_lossy(l)
            );
        }
    }
    ON.store(false, Ordering::SeqCst);
    MEASURING.with(|m| m.set(false));
    ALLOCS.load(Ordering::SeqCst)
}

#[test]
fn non_matching_lines_do_not_allocate() {
    // One test function: the counter is global and tests in one binary run in parallel.
    let sshd: Vec<&[u8]> = SSHD_NOISE.iter().map(|s| s.as_bytes()).collect();
    let web: Vec<&[u8]> = WEB_NOISE.iter().map(|s| s.as_bytes()).collect();
    for mode in [Mode::Normal, Mode::Aggressive] {
        assert_eq!(count("sshd", mode, &sshd), 0, "sshd {mode:?}");
        assert_eq!(
            count("nginx_access", mode, &web),
            0,
            "nginx_access {mode:?}"
        );
        // Syslog noise through the web and kernel filters too.
        assert_eq!(count("kernel_fw", mode, &sshd), 0);
        assert_eq!(count("nginx_access", mode, &sshd), 0);
    }
    for (name, line) in OTHER_NOISE {
        assert_eq!(
            count(name, Mode::Aggressive, &[line.as_bytes()]),
            0,
            "{name}: {line}"
        );
    }

    // The generated benchmark log (scripts/test.sh makes it and sets PALISADE_SSHD_LOG):
    // every benign line, no allocation.
    let Ok(path) = std::env::var("PALISADE_SSHD_LOG") else {
        return palisade_testkit::require_or_skip(
            "LOG",
            "PALISADE_SSHD_LOG is not set (generated-log part; bench/gen/gen_logs.py makes it)",
        );
    };
    match std::fs::read(&path) {
        Ok(data) => {
            let opts = BuiltinOptions {
                mode: Mode::Aggressive,
                tz: jiff::tz::TimeZone::UTC,
            };
            let mut f = build_builtin("sshd", &opts).unwrap();
            let c = ctx();
            let noise: Vec<&[u8]> = data
                .split(|&b| b == b'\n')
                .filter(|l| {
                    !l.windows(5).any(|w| w == b"sshd[")
                        || l.windows(9)
                            .any(|w| w == b"Accepted " || w == b"session o" || w == b"session c")
                        || l.windows(20).any(|w| w == b"disconnected by user")
                        || l.windows(19).any(|w| w == b"Disconnected from u")
                })
                .take(200_000)
                .collect();
            let mut out = Vec::with_capacity(16);
            ALLOCS.store(0, Ordering::SeqCst);
            ON.store(true, Ordering::SeqCst);
            let mut matched = 0;
            for l in &noise {
                if f.process(l, &c, &mut out) == Outcome::Matched {
                    matched += 1;
                }
            }
            ON.store(false, Ordering::SeqCst);
            assert_eq!(matched, 0);
            assert_eq!(
                ALLOCS.load(Ordering::SeqCst),
                0,
                "{} noise lines of {path}",
                noise.len()
            );
        }
        Err(e) => panic!("PALISADE_SSHD_LOG={path}: {e}"),
    }
}
