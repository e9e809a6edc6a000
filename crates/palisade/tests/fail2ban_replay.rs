//! `palisade replay` and `palisade check` with fail2ban's own sshd filter agree with fail2ban
//! itself on a generated sshd log: the same failures line for line, the same bans (address
//! and time), hence the same banned addresses.
//!
//! The log comes from the project's generator (`bench/gen/gen_logs.py`, fixed seed, a few
//! tens of thousands of lines); fail2ban's side is `bench/fail2ban/f2b_replay.py`, which
//! drives the Debian package's fail2ban modules as fail2ban-server does (maxretry 5, findtime
//! 600 s, bantime 600 s, per address). Both run in this test: there are no expected numbers
//! to go stale, only the two results to compare. Needs `/usr/bin/python3` with fail2ban and
//! its filters in /etc/fail2ban (`F2B` flag): a skip with a message otherwise, a failure
//! under `PALISADE_REQUIRE_F2B` (scripts/test.sh sets it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const SSHD: &str = "/etc/fail2ban/filter.d/sshd.conf";
const PYTHON: &str = "/usr/bin/python3";
/// Lines of the generated log: enough for thousands of failures and hundreds of bans, few
/// enough for fail2ban and a debug build to take seconds.
const LINES: &str = "30000";
/// fail2ban infers the missing year from its clock, Palisade from `--now`: the same instant
/// on both sides (and UTC, so that daylight saving stays out of the windows).
const NOW: &str = "2025-03-20T00:00:00Z";

fn config(dir: &Path) -> PathBuf {
    let p = dir.join("replay.toml");
    let text = format!(
        r#"
[general]
state_dir = "{d}"
socket = "{d}/palisade.sock"
timezone = "UTC"

[store]
url = "sqlite:{d}/palisade.db"

[defaults]
max_retry = 5
find_time = "10m"
ban_time = "10m"
ipv6_prefix = 128
responders = ["log"]

[escalation]
enabled = false

[recidive]
enabled = false

[allowlist]
addresses = []

[[jail]]
name = "sshd"
filter_file = "{SSHD}"
stdin = true
"#,
        d = dir.display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn run(cmd: &mut Command) -> (String, String) {
    let out = cmd.env("TZ", "UTC").output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{stderr}");
    (stdout, stderr)
}

/// `Lines: N, failures: F, bans: B of T targets, …` → F.
fn summary_failures(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("Lines:"))
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    let i = line.find("failures:").expect("failures in summary") + "failures:".len();
    line[i..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Reads `a<TAB>b` lines.
fn pairs(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (a, b) = l.split_once('\t').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect()
}

#[test]
fn replay_agrees_with_fail2ban_on_a_generated_sshd_log() {
    if !Path::new(SSHD).is_file() {
        return palisade_testkit::require_or_skip("F2B", &format!("{SSHD} is missing"));
    }
    let probe = Command::new(PYTHON)
        .args(["-c", "import fail2ban.server.filter"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return palisade_testkit::require_or_skip(
            "F2B",
            "fail2ban's Python modules are not importable by /usr/bin/python3",
        );
    }
    let root = palisade_testkit::workspace_root();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gen");
    run(Command::new(PYTHON)
        .arg(root.join("bench/gen/gen_logs.py"))
        .arg("--out-dir")
        .arg(&data)
        .args(["--lines", LINES]));
    let log = data.join("sshd_auth.log");

    // fail2ban.
    let (f2b_lines, f2b_bans) = (dir.path().join("f2b_lines"), dir.path().join("f2b_bans"));
    let (f2b_out, _) = run(Command::new(PYTHON)
        .arg(root.join("bench/fail2ban/f2b_replay.py"))
        .arg(&log)
        .arg("sshd")
        .args([
            "--maxretry",
            "5",
            "--findtime",
            "600",
            "--bantime",
            "600",
            "--now",
            NOW,
        ])
        .arg("--lines-out")
        .arg(&f2b_lines)
        .arg("--bans-out")
        .arg(&f2b_bans));
    let f2b: serde_json::Value = serde_json::from_str(f2b_out.trim()).unwrap();
    let f2b_failures: Vec<(u64, String)> = pairs(&f2b_lines)
        .into_iter()
        .map(|(n, ip)| (n.parse().unwrap(), ip))
        .collect();
    let f2b_bans: Vec<(String, i64)> = pairs(&f2b_bans)
        .into_iter()
        .map(|(ip, t)| (ip, t.parse().unwrap()))
        .collect();
    assert_eq!(
        f2b["failures"].as_u64().unwrap() as usize,
        f2b_failures.len()
    );
    // A comparison of two empty results would prove nothing.
    assert!(f2b_failures.len() > 1000, "{f2b}");
    assert!(f2b_bans.len() > 50, "{f2b}");

    let bin = env!("CARGO_BIN_EXE_palisade");
    // `check --filter-file`: the same failures, line for line, on the same addresses.
    let (out, _) = run(Command::new(bin).arg("check").arg(&log).args([
        "--filter-file",
        SSHD,
        "--json",
        "--now",
        NOW,
    ]));
    let ours: Vec<(u64, String)> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["line"].as_u64().unwrap(),
                v["ip"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(ours.len(), f2b_failures.len(), "failures");
    if let Some(i) = (0..ours.len()).find(|&i| ours[i] != f2b_failures[i]) {
        panic!(
            "first difference: palisade {:?}, fail2ban {:?}",
            ours[i], f2b_failures[i]
        );
    }

    // `replay`: the same bans at the same times.
    let cfg = config(dir.path());
    let (out, err) = run(Command::new(bin)
        .arg("replay")
        .arg(&log)
        .arg("--config")
        .arg(&cfg)
        .args(["--json", "--now", NOW]));
    eprintln!("{}\nfail2ban: {f2b}", err.trim());
    assert_eq!(
        summary_failures(&err),
        f2b_failures.len() as u64,
        "failures"
    );
    let mut ours: BTreeMap<(String, i64), u32> = BTreeMap::new();
    for l in out.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let start = palisade_core::Timestamp::parse_rfc3339(v["start"].as_str().unwrap()).unwrap();
        let key = (v["ip"].as_str().unwrap().to_string(), start.secs());
        *ours.entry(key).or_default() += 1;
    }
    let mut theirs: BTreeMap<(String, i64), u32> = BTreeMap::new();
    for b in f2b_bans {
        *theirs.entry(b).or_default() += 1;
    }
    assert_eq!(
        ours, theirs,
        "bans (address, start) of palisade vs fail2ban"
    );
    assert_eq!(
        ours.keys()
            .map(|k| &k.0)
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64,
        f2b["distinct_banned_ips"].as_u64().unwrap()
    );
}
