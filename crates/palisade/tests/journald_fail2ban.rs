//! The daemon's journald path with a fail2ban filter file: a fake `journalctl` (first in the
//! daemon's PATH) prints entries of two interleaved sshd connections as `journalctl -o json`
//! does, the jail runs `/etc/fail2ban/filter.d/sshd.conf` in journal mode, and the bans are
//! those fail2ban would decide from its `host sshd[pid]: message` lines (the connection id
//! `<F-MLFID>` includes the pid).
//!
//! Needs Debian's fail2ban filters; skipped without them unless `PALISADE_REQUIRE_F2B=1`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
#[path = "../../palisade-fail2ban/tests/journal_entries/mod.rs"]
mod journal_entries;
use common::*;

const SSHD: &str = "/etc/fail2ban/filter.d/sshd.conf";

/// `(pid, MESSAGE)`. With fail2ban's connection ids the failures are: 203.0.113.10 once
/// (entry 3, its address from entry 1 of the same pid), 192.0.2.30 twice (8, 9), 192.0.2.70
/// once (12). Were the pid left out, the address-less entry 3 would be charged to
/// 198.51.100.20 and the successful logins of 198.51.100.20 and 198.51.100.40 counted as
/// failures (two and three of them).
const ENTRIES: &[(&str, &str)] = journal_entries::CONNECTIONS;

/// The entries as `journalctl -o json` lines, one second apart ending a minute ago, plus a
/// binary (non-UTF-8) message and an entry without a message.
fn canned() -> String {
    let start = jiff::Timestamp::now().as_microsecond() - 60_000_000;
    let mut out = String::new();
    for (i, (pid, msg)) in ENTRIES.iter().enumerate() {
        let e = serde_json::json!({
            "__CURSOR": format!("s=1;i={i}"),
            "__REALTIME_TIMESTAMP": (start + i as i64 * 1_000_000).to_string(),
            "__MONOTONIC_TIMESTAMP": "1000000",
            "_BOOT_ID": "0123456789abcdef0123456789abcdef",
            "_HOSTNAME": "bastion",
            "SYSLOG_IDENTIFIER": "sshd",
            "_COMM": "sshd",
            "SYSLOG_PID": pid,
            "_PID": pid,
            "_SYSTEMD_UNIT": "ssh.service",
            "MESSAGE": msg,
        });
        out.push_str(&e.to_string());
        out.push('\n');
    }
    // A failure of 192.0.2.31 with an invalid byte in the user name: counted (once).
    let mut bytes = b"Failed password for invalid user b".to_vec();
    bytes.push(0xff);
    bytes.extend_from_slice(b"d from 192.0.2.31 port 1 ssh2");
    out.push_str(
        &serde_json::json!({
            "__CURSOR": "s=1;i=100",
            "__REALTIME_TIMESTAMP": (start + 30_000_000).to_string(),
            "_HOSTNAME": "bastion",
            "SYSLOG_IDENTIFIER": "sshd",
            "_PID": "5000",
            "MESSAGE": bytes,
        })
        .to_string(),
    );
    out.push('\n');
    out.push_str(r#"{"__CURSOR":"s=1;i=101","_HOSTNAME":"bastion","SYSLOG_IDENTIFIER":"sshd"}"#);
    out.push('\n');
    out
}

#[test]
fn journald_jail_with_fail2ban_sshd_filter_tells_connections_apart() {
    if !Path::new(SSHD).is_file() {
        return palisade_testkit::require_or_skip(
            "F2B",
            &format!("{SSHD} not installed (fail2ban package)"),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin = d.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(d.join("canned.json"), canned()).unwrap();
    let fake = bin.join("journalctl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{d}/args'\ncat '{d}/canned.json'\n\
             for a in \"$@\"; do [ \"$a\" = --follow ] && exec sleep 60; done\nexit 0\n",
            d = d.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

    let dd = d.display();
    let cfg = d.join("palisade.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[general]
state_dir = "{dd}/state"
socket = "{dd}/palisade.sock"
timezone = "UTC"

[store]
url = "sqlite:{dd}/palisade.db"

[defaults]
max_retry = 2
find_time = "10m"
ban_time = "1h"
responders = ["mark"]

[recidive]
enabled = false

[[responder]]
name = "mark"
type = "command"
ban = ["/usr/bin/touch", "{dd}/banned-{{ip}}"]

[[jail]]
name = "sshd-journal"
filter_file = "{SSHD}"
journal = ["_SYSTEMD_UNIT=ssh.service"]
"#
        ),
    )
    .unwrap();

    let mut path = bin.as_os_str().to_owned();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let mut child = Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("TZ", "UTC")
        .env("PATH", path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("daemon.err")).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(d.join("daemon.err")).unwrap_or_default();
    let status = || {
        let o = Command::new(BIN)
            .args(["status", "--json", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap_or_default()
    };
    let entries = ENTRIES.len() as u64 + 1;
    wait_for("all journal entries read", 20.0, || {
        status()["counters"]["lines"] == entries
    });
    wait_for("ban of 192.0.2.30", 10.0, || {
        d.join("banned-192.0.2.30").exists()
    });
    // Let anything else that was going to happen happen.
    std::thread::sleep(Duration::from_millis(500));
    let v = status();
    let banned: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.strip_prefix("banned-").map(str::to_string)
        })
        .collect();
    assert_eq!(banned, ["192.0.2.30"], "{v}\n{}", log());
    assert_eq!(v["active_bans"], 1, "{v}");
    // 203.0.113.10, 192.0.2.30 ×2, 192.0.2.70, 192.0.2.31.
    assert_eq!(v["counters"]["events"], 5, "{v}");
    let args = std::fs::read_to_string(d.join("args")).unwrap();
    assert!(
        args.contains("_HOSTNAME") && args.contains("-- _SYSTEMD_UNIT=ssh.service"),
        "{args}"
    );

    signal(child.id(), "TERM");
    let st = wait_child(&mut child, 20.0).expect("the daemon did not stop");
    assert!(st.success(), "daemon exit: {st:?}\n{}", log());
}
