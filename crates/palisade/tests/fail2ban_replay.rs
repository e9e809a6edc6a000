//! `palisade replay` with fail2ban's own sshd filter agrees with fail2ban's server path
//! (`../shared/bench/f2b_replay.py LOG sshd --maxretry 5 --findtime 600 --bantime 600`) on the
//! generated 1M-line sshd log: 150,692 failures, 6,254 bans of 2,992 addresses.
//!
//! The expected numbers are fail2ban's own result on the output of `../shared/bench/gen_sshd.py`
//! (deterministic, seed fixed), so this one test keeps using that generator: scripts/test.sh
//! generates the log with it and sets `PALISADE_SSHD_LOG`. Needs that log (`LOG` flag) and
//! fail2ban's filters in /etc/fail2ban (`F2B` flag); skipped with a message otherwise, a
//! failure under `PALISADE_REQUIRE_LOG` / `PALISADE_REQUIRE_F2B` (scripts/test.sh sets both). A debug build replays the million lines
//! too slowly, so the release binary next to the test's (`target/release/palisade`) is used
//! when it exists; without it the test runs the debug binary only with
//! `PALISADE_SLOW_TESTS=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

const SSHD: &str = "/etc/fail2ban/filter.d/sshd.conf";

fn binary() -> Option<PathBuf> {
    let debug = PathBuf::from(env!("CARGO_BIN_EXE_palisade"));
    let release = debug
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("release").join("palisade"));
    if let Some(r) = release.filter(|r| r.is_file()) {
        return Some(r);
    }
    std::env::var_os("PALISADE_SLOW_TESTS").map(|_| debug)
}

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

/// `Lines: N, failures: F, bans: B of T targets, …` → (F, B, T).
fn summary(stderr: &str) -> (u64, u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("Lines:"))
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    let num = |key: &str| -> u64 {
        let i = line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len();
        line[i..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (num("failures:"), num("bans:"), num(" of "))
}

#[test]
fn replay_agrees_with_fail2ban_on_1m_sshd_log() {
    let Some(log) = std::env::var_os("PALISADE_SSHD_LOG").map(PathBuf::from) else {
        return palisade_testkit::require_or_skip(
            "LOG",
            "PALISADE_SSHD_LOG is not set (scripts/test.sh generates the log)",
        );
    };
    if !log.is_file() {
        return palisade_testkit::require_or_skip("LOG", &format!("{} is missing", log.display()));
    }
    if !Path::new(SSHD).is_file() {
        return palisade_testkit::require_or_skip("F2B", &format!("{SSHD} is missing"));
    }
    let Some(bin) = binary() else {
        let why =
            "no release binary (cargo build --release -p palisade) and PALISADE_SLOW_TESTS unset";
        // scripts/test.sh builds the release binary: there, a skip would hide a failure.
        return palisade_testkit::require_or_skip("LOG", why);
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    // f2b_replay.py infers the year from the real "now" and reads dates in the local zone;
    // a fixed "now" in November puts the log's March dates in the same year, and UTC on both
    // sides keeps daylight saving out of the windows.
    let out = Command::new(&bin)
        .env("TZ", "UTC")
        .args(["replay"])
        .arg(&log)
        .arg("--config")
        .arg(&cfg)
        .args(["--json", "--now", "2026-11-22T00:00:00Z"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (failures, bans, banned) = summary(&stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut ips = std::collections::HashSet::new();
    let mut n = 0;
    for l in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        ips.insert(v["ip"].as_str().unwrap().to_string());
        n += 1;
    }
    eprintln!("{}", stderr.trim());
    assert_eq!(failures, 150_692, "failures");
    assert_eq!(bans, 6_254, "bans");
    assert_eq!(banned, 2_992, "distinct banned addresses");
    assert_eq!((n, ips.len()), (6_254, 2_992), "printed decisions");
}
