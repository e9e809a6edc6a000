//! The fast paths give exactly the results of the plain one: the one-pass rule automaton,
//! the shape memo of capture results, the guarded form of lookahead patterns and the
//! two-thread split ([`run_split`]) against every failregex tried in order with plain
//! searches, on real logs and on hostile lines, with fail2ban's own filters.

use palisade_core::Timestamp;
use palisade_fail2ban::date::TimeCx;
use palisade_fail2ban::filter::{run_split, FilterDef, LoadOptions, MatchOptions, RawMatch};
use std::path::Path;

const FILTERS: &str = "/etc/fail2ban/filter.d";

fn filters_available() -> bool {
    if Path::new(FILTERS).join("sshd.conf").is_file() {
        return true;
    }
    palisade_testkit::require_or_skip("F2B", &format!("{FILTERS} has no sshd.conf"));
    false
}

fn cx() -> TimeCx {
    TimeCx {
        now: Timestamp::from_secs(1_790_000_000),
        tz: jiff::tz::TimeZone::UTC,
        default_offset_min: None,
    }
}

type Results = Vec<(u64, Vec<RawMatch>)>;

fn sequential(def: &std::sync::Arc<FilterDef>, opts: MatchOptions, lines: &[String]) -> Results {
    let mut m = def.matcher(opts);
    let cx = cx();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let mut res = Vec::new();
        m.process_line(l, None, &cx, &mut res);
        if !res.is_empty() {
            out.push((i as u64 + 1, res));
        }
    }
    out
}

fn split(def: &std::sync::Arc<FilterDef>, lines: &[String]) -> Option<Results> {
    let (mut a, mut b) = (
        def.matcher(MatchOptions::default()),
        def.matcher(MatchOptions::default()),
    );
    if !a.can_split() {
        return None;
    }
    let cx = cx();
    let mut out = Vec::new();
    run_split(
        &mut a,
        &mut b,
        &cx,
        |f| {
            for (i, l) in lines.iter().enumerate() {
                f(i as u64 + 1, l, None);
            }
        },
        |no, _, res| out.push((no, res.to_vec())),
    );
    Some(out)
}

/// Lines of a log, invalid UTF-8 replaced as the readers do.
fn read_lines(path: &Path, max: usize) -> Vec<String> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    raw.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .take(max)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

/// sshd lines built to stress the lookahead guards, the conditionals, the memo (same shape,
/// different text) and the Unicode path.
fn hostile() -> Vec<String> {
    let users = [
        "root",
        "web",
        "test from 10.9.9.9",
        "a from b",
        "x from 10.0.0.1 port 22 ssh2",
        "$(reboot)",
        "fr om",
        "ü-user",
        "",
        " ",
        "from",
    ];
    let mut v = Vec::new();
    let mut pid = 1000;
    for (i, u) in users.iter().enumerate() {
        for ip in ["192.0.2.7", "198.51.100.23", "2001:db8::5", "192.030.0.6"] {
            pid += 1;
            let h = format!("Mar  3 10:{:02}:{:02} host sshd[{pid}]:", i % 60, pid % 60);
            v.push(format!("{h} Invalid user {u} from {ip} port 4242"));
            v.push(format!(
                "{h} Failed password for invalid user {u} from {ip} port 4242 ssh2"
            ));
            v.push(format!(
                "{h} Failed password for {u} from {ip} port 4242 ssh2"
            ));
            v.push(format!(
                "{h} Failed publickey for {u} from {ip} port 4242 ssh2: RSA SHA256:x"
            ));
            v.push(format!(
                "{h} Failed publickey for invalid user {u} from {ip} port 4242 ssh2: RSA x"
            ));
            v.push(format!(
                "{h} pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user={u}"
            ));
            v.push(format!(
                "{h} Accepted password for {u} from {ip} port 4242 ssh2"
            ));
            v.push(format!(
                "{h} Received disconnect from {ip} port 4242:11: Bye Bye [preauth]"
            ));
            v.push(format!(
                "{h} Connection closed by authenticating user {u} {ip} port 4242 [preauth]"
            ));
            v.push(format!(
                "{h} Disconnecting: Too many authentication failures for {u} [preauth]"
            ));
        }
    }
    v
}

fn compare(name: &str, opts: &[(&str, &str)], lines: &[String]) -> usize {
    let def = FilterDef::load(
        &Path::new(FILTERS).join(format!("{name}.conf")),
        &LoadOptions {
            init: opts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            now_year: Some(2026),
            ..LoadOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let plain = sequential(
        &def,
        MatchOptions {
            prefilter: false,
            memo: false,
            ..MatchOptions::default()
        },
        lines,
    );
    let fast = sequential(&def, MatchOptions::default(), lines);
    assert_eq!(fast.len(), plain.len(), "{name} {opts:?}: result lines");
    for (a, b) in fast.iter().zip(&plain) {
        assert_eq!(a, b, "{name} {opts:?}: rule automaton + memo");
    }
    match split(&def, lines) {
        Some(two) => {
            assert_eq!(two.len(), plain.len(), "{name} {opts:?}: split lines");
            for (a, b) in two.iter().zip(&plain) {
                assert_eq!(a, b, "{name} {opts:?}: split");
            }
        }
        None => assert_ne!(name, "sshd", "sshd.conf can be split"),
    }
    plain.iter().map(|(_, r)| r.len()).sum()
}

#[test]
fn fast_paths_agree_with_plain_matching() {
    if !filters_available() {
        return;
    }
    let mut logs: Vec<Vec<String>> = Vec::new();
    // Real logs from ../shared (skipped, or a failure under PALISADE_REQUIRE_SHARED).
    for p in [
        "data/loghub/OpenSSH/OpenSSH_2k.log",
        "data/elastic_examples/auth.log",
        "data/loghub_full/Linux.log",
    ] {
        if let Some(path) = palisade_testkit::shared_file(p) {
            logs.push(read_lines(&path, 40_000));
        }
    }
    match std::env::var_os("PALISADE_SSHD_LOG") {
        Some(p) => logs.push(read_lines(Path::new(&p), 100_000)),
        None => palisade_testkit::require_or_skip("LOG", "PALISADE_SSHD_LOG is not set"),
    }
    let mut h = hostile();
    // a repeated block: the second pass is answered by the memo
    let again = h.clone();
    h.extend(again);
    logs.push(h);
    let mut total = 0;
    for lines in &logs {
        for (name, opts) in [
            ("sshd", &[][..]),
            ("sshd", &[("mode", "aggressive")][..]),
            ("sshd", &[("publickey", "invalid")][..]),
            ("pam-generic", &[][..]),
            ("dropbear", &[][..]),
        ] {
            total += compare(name, opts, lines);
        }
    }
    eprintln!("fast paths: {total} results compared");
    assert!(total > 1000, "too few results to compare ({total})");
}
