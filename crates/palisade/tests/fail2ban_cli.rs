//! fail2ban compatibility end to end: `check --filter-file`, jails with `filter_file` in
//! `config check` and `run`, and `import fail2ban`. fail2ban's files are read where the
//! Debian package installs them; the tests skip with a message when they are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
#[path = "../../palisade-respond/tests/netns_common.rs"]
mod netns_common;
use common::text;

const F2B: &str = "/etc/fail2ban";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_palisade"));
    c.env("TZ", "UTC");
    c
}

fn have_f2b() -> bool {
    let ok = Path::new(F2B).join("jail.conf").is_file()
        && Path::new(F2B).join("filter.d/sshd.conf").is_file();
    if !ok {
        palisade_testkit::require_or_skip("F2B", &format!("fail2ban is not installed in {F2B}"));
    }
    ok
}

const LOG: &str = "\
Mar  3 00:00:05 bastion sshd[100]: Invalid user web from 192.030.0.6 port 62448
Mar  3 00:00:06 bastion sshd[101]: Invalid user admin from example.com port 1
Mar  3 00:00:07 bastion cron[1]: (root) CMD (true)
Mar  3 00:00:08 bastion sshd[102]: Failed password for root from 203.0.113.9 port 22 ssh2
";

/// `check LOG --filter-file sshd.conf --json`: the results, stdout and stderr.
fn check_sshd_json(log: &Path) -> (Vec<serde_json::Value>, String, String) {
    let o = bin()
        .arg("check")
        .arg(log)
        .args([
            "--filter-file",
            "/etc/fail2ban/filter.d/sshd.conf",
            "--json",
        ])
        .args(["--now", "2026-11-22T00:00:00Z"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (v, out, err)
}

/// A line that is not UTF-8 is matched with replacement characters, not dropped, and the
/// lines around it are unaffected.
#[test]
fn check_filter_file_reads_invalid_utf8() {
    if !have_f2b() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    let mut bytes = LOG.as_bytes().to_vec();
    bytes.extend_from_slice(
        b"Mar  3 00:00:09 bastion sshd[103]: Invalid user \xff\xfeweb from 198.51.100.7 port 5\n",
    );
    bytes.extend_from_slice(
        b"Mar  3 00:00:10 bastion sshd[104]: Invalid user x from 198.51.100.8 port 5\n",
    );
    std::fs::write(&log, bytes).unwrap();
    let (v, out, _) = check_sshd_json(&log);
    assert_eq!(v.len(), 5, "{out}");
    assert_eq!(v[3]["line"], 5);
    assert_eq!(v[3]["ip"], "198.51.100.7");
    assert_eq!(v[3]["user"], "\u{fffd}\u{fffd}web");
    assert_eq!(v[4]["line"], 6);
    assert_eq!(v[4]["ip"], "198.51.100.8");
}

#[test]
fn check_filter_file_reports_raw_hosts_as_json() {
    if !have_f2b() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, LOG).unwrap();
    let (v, out, err) = check_sshd_json(&log);
    assert_eq!(v.len(), 3, "{out}");
    assert_eq!(v[0]["line"], 1);
    assert_eq!(v[0]["ip"], "192.030.0.6", "host exactly as written");
    assert_eq!(v[0]["time"], "2026-03-03T00:00:05Z");
    assert_eq!(v[0]["user"], "web");
    assert!(v[0]["rule"].as_str().unwrap().starts_with("failregex["));
    assert_eq!(
        v[1]["ip"], "example.com",
        "DNS names are reported, not resolved"
    );
    assert_eq!(v[2]["line"], 4);
    assert_eq!(v[2]["ip"], "203.0.113.9");
    assert!(err.contains("4 read, 3 matched"), "{err}");
    assert!(err.contains("1 missed"), "{err}");

    // options reach the filter; a bad option value is a clear error
    let o = bin()
        .arg("check")
        .arg(&log)
        .args(["--filter-file", "/etc/fail2ban/filter.d/sshd.conf"])
        .args(["--filter-option", "mode=aggressive"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(text(&o).0.contains("3 matched"), "{}", text(&o).0);
    let o = bin()
        .arg("check")
        .arg(&log)
        .args(["--filter-file", "/nonexistent/filter.d/x.conf"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("/nonexistent/filter.d/x.conf"),
        "{}",
        text(&o).1
    );
}

fn write_config(dir: &Path, jails: &str) -> PathBuf {
    let p = dir.join("palisade.toml");
    std::fs::write(
        &p,
        format!(
            r#"
[general]
state_dir = "{d}/state"
socket = "{d}/palisade.sock"
timezone = "UTC"

[store]
url = "sqlite:{d}/palisade.db"

[defaults]
responders = ["log"]
{jails}"#,
            d = dir.display()
        ),
    )
    .unwrap();
    p
}

#[test]
fn broken_filter_file_fails_config_check_and_is_skipped_by_run() {
    if !have_f2b() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, LOG).unwrap();
    let bad = dir.path().join("broken.conf");
    std::fs::write(&bad, "[Definition]\nfailregex = ^(unclosed <HOST>\n").unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[[jail]]
name = "sshd"
filter_file = "/etc/fail2ban/filter.d/sshd.conf"
options = {{ mode = "normal" }}
files = ["{log}"]

[[jail]]
name = "broken"
filter_file = "{bad}"
files = ["{log}"]
"#,
            log = log.display(),
            bad = bad.display()
        ),
    );
    let o = bin().args(["config", "check"]).arg(&cfg).output().unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("jail \"broken\""), "{err}");
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(err.contains("failregex[0]"), "names the option: {err}");

    // `run` keeps the good jail running
    let o = bin()
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .args(["--once", "--from-start", "--dry-run"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("jail skipped"), "{err}");
    assert!(err.contains("broken"), "{err}");
}

/// A fail2ban folder: the real jail.conf and filters (read-only, linked) plus our jail.local.
fn f2b_dir(dir: &Path) -> PathBuf {
    let d = dir.join("fail2ban");
    std::fs::create_dir_all(d.join("jail.d")).unwrap();
    for f in std::fs::read_dir(F2B).unwrap() {
        let f = f.unwrap();
        let name = f.file_name();
        let n = name.to_string_lossy();
        if n == "jail.conf" || n.starts_with("paths-") || n == "filter.d" || n == "action.d" {
            std::os::unix::fs::symlink(f.path(), d.join(&name)).unwrap();
        }
    }
    std::fs::write(
        d.join("jail.local"),
        "\
[DEFAULT]
ignoreip = 127.0.0.1/8 ::1, 192.0.2.0/24 trusted.example.org
bantime = 1h
findtime = 10m
bantime.increment = true
bantime.factor = 2
bantime.maxtime = 1w
banaction = nftables-multiport
banaction_allports = nftables-allports

[sshd]
enabled = true
port = ssh,2222
maxretry = 3
logpath = /var/log/auth.log
          /var/log/secure*

[nginx-http-auth]
enabled = true
backend = auto
logpath = /var/log/nginx/error.log
action = iptables-multiport[name=nginx, port=\"http,https\"]
         sendmail-whois[name=nginx]

[postfix]
enabled = true
backend = systemd
bantime = -1
",
    )
    .unwrap();
    std::fs::write(
        d.join("jail.d/custom.local"),
        "[dropbear]\nenabled = false\n",
    )
    .unwrap();
    d
}

#[test]
fn import_fail2ban_writes_a_config_that_checks() {
    if !have_f2b() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f2b = f2b_dir(dir.path());
    let out = dir.path().join("imported.toml");
    let o = bin()
        .args(["import", "fail2ban"])
        .arg(&f2b)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let t = std::fs::read_to_string(&out).unwrap();
    // jails
    assert!(t.contains("name = \"sshd\""), "{t}");
    assert!(
        t.contains(&format!(
            "filter_file = \"{}/filter.d/sshd.conf\"",
            f2b.display()
        )),
        "{t}"
    );
    assert!(
        t.contains("files = [\"/var/log/auth.log\", \"/var/log/secure*\"]"),
        "{t}"
    );
    assert!(t.contains("max_retry = 3"), "{t}");
    assert!(t.contains("options = { mode = \"normal\" }"), "{t}");
    assert!(t.contains("name = \"postfix\""), "{t}");
    assert!(
        t.contains("journal = [\"_SYSTEMD_UNIT=postfix.service\""),
        "{t}"
    );
    assert!(t.contains("ban_time = \"forever\""), "{t}");
    assert!(t.contains("logtype = \"journal\""), "{t}");
    // escalation, allowlist, responders
    assert!(t.contains("[escalation]\n"), "{t}");
    assert!(t.contains("max = \"1w\""), "{t}");
    assert!(t.contains("\"192.0.2.0/24\""), "{t}");
    assert!(t.contains("\"127.0.0.1/8\""), "{t}");
    assert!(t.contains("ports = [22, 2222]"), "{t}");
    assert!(t.contains("responders = [\"nftables-sshd\"]"), "{t}");
    // unmapped settings are listed, not dropped
    assert!(t.contains("trusted.example.org"), "{t}");
    assert!(t.contains("action sendmail-whois"), "{t}");
    assert!(t.contains("action iptables-multiport"), "{t}");
    assert!(t.contains("dropbear"), "disabled jails are listed: {t}");
    assert!(t.contains("[DEFAULT] destemail"), "{t}");
    // and the result is a valid configuration
    let o = bin().args(["config", "check"]).arg(&out).output().unwrap();
    let (so, se) = text(&o);
    assert!(o.status.success(), "{so}{se}\n{t}");
}

#[test]
fn import_real_etc_fail2ban_enables_sshd() {
    if !have_f2b() {
        return;
    }
    let o = bin().args(["import", "fail2ban", F2B]).output().unwrap();
    let (t, err) = text(&o);
    assert!(o.status.success(), "{err}");
    // Debian's jail.d/defaults-debian.conf enables sshd
    assert!(t.contains("[[jail]]\nname = \"sshd\""), "{t}");
    assert!(t.contains("Imported jails: sshd"), "{t}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.toml");
    std::fs::write(&p, &t).unwrap();
    let o = bin().args(["config", "check"]).arg(&p).output().unwrap();
    assert!(o.status.success(), "{}{}", text(&o).0, text(&o).1);
}

/// A network namespace of the test's own, deleted on drop; `None` (test skipped) where
/// namespaces cannot be made, unless PALISADE_REQUIRE_NETNS=1 (the shared probe panics then).
fn netns(name: &str) -> Option<NetNs> {
    if !netns_common::available(&["/usr/sbin/nft"]) {
        return None;
    }
    let st = Command::new("ip").args(["netns", "add", name]).status();
    assert!(st.is_ok_and(|s| s.success()), "ip netns add {name}");
    Some(NetNs(name.to_owned()))
}

struct NetNs(String);

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn run_takes_fail2ban_jails_directly() {
    if !have_f2b() {
        return;
    }
    // The imported jail bans with nftables: inside a namespace of its own, never the host's.
    let Some(ns) = netns(&format!("pal-f2b-{}", std::process::id())) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    // Lines of now, so the ban is in force (a syslog date has no year).
    let now = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let stamp = now.strftime("%b %e %H:%M:%S").to_string();
    let lines: String = LOG
        .lines()
        .map(|l| format!("{stamp}{}\n", &l[15..]))
        .collect();
    std::fs::write(&log, lines).unwrap();
    let f2b = dir.path().join("fail2ban");
    std::fs::create_dir_all(&f2b).unwrap();
    for n in [
        "jail.conf",
        "paths-common.conf",
        "paths-debian.conf",
        "filter.d",
    ] {
        std::os::unix::fs::symlink(Path::new(F2B).join(n), f2b.join(n)).unwrap();
    }
    std::fs::write(
        f2b.join("jail.local"),
        format!(
            "[DEFAULT]\nignoreip = 192.0.2.0/24\n\n[sshd]\nenabled = true\nmaxretry = 1\n\
             bantime = 1h\nlogpath = {}\n",
            log.display()
        ),
    )
    .unwrap();
    let cfg = write_config(dir.path(), "");
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            env!("CARGO_BIN_EXE_palisade"),
            "run",
        ])
        .arg("--config")
        .arg(&cfg)
        .arg("--fail2ban")
        .arg(&f2b)
        .args(["--once", "--from-start"])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    // fail2ban's filter, fail2ban's maxretry, Palisade's store and responder.
    let o = bin()
        .args(["decisions", "list", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("203.0.113.9/32"), "{out}");
    assert!(out.contains("\"sshd\""), "{out}");
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "nft",
            "list",
            "table",
            "inet",
            "nftables_sshd",
        ])
        .output()
        .unwrap();
    let (rules, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(rules.contains("203.0.113.9"), "{rules}");
    // The two host names fail2ban would capture are not addresses: nothing else banned.
    assert!(!rules.contains("192.30.0.6"), "{rules}");

    // A jail name taken by both is refused with a clear message.
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[jail]]\nname = \"sshd\"\nfilter = \"sshd\"\nfiles = [\"{}\"]\n",
            log.display()
        ),
    );
    let o = bin()
        .arg("run")
        .arg("--config")
        .arg(&cfg)
        .arg("--fail2ban")
        .arg(&f2b)
        .args(["--once", "--dry-run"])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("jail \"sshd\" is defined by the configuration and by fail2ban"),
        "{err}"
    );
}
