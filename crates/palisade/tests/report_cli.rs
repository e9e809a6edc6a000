//! End-to-end tests of `palisade record` (fail2ban bridge), `palisade analyze` and
//! `palisade report` through the binary.

#[path = "../../palisade-notify/tests/common/mod.rs"]
mod report_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[macro_use]
mod common;
use common::*;

test_dir!(
    /// The folder of one test ([`TestDir`]).
    Env
);

impl Env {
    fn new() -> Self {
        Env(TestDir::new())
    }
    /// `mark` bans of the `sshd` jail; `extra` goes last.
    fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            r#"{base}
[defaults]
ban_time = "1h"
responders = ["mark"]

[allowlist]
addresses = ["192.0.2.0/24"]
{mark}{jail}{extra}
"#,
            base = self.base_config("timezone = \"UTC\""),
            mark = self.mark_responder(),
            jail = self.sshd_jail(),
        );
        std::fs::create_dir_all(self.p("state")).unwrap();
        std::fs::write(self.p("auth.log"), "").unwrap();
        self.write_config(&text)
    }
    fn decisions(&self, cfg: &Path) -> Vec<serde_json::Value> {
        let o = self.cli(&[
            "decisions",
            "list",
            "--all",
            "--json",
            "-c",
            cfg.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn record_rejects_bad_arguments_clearly() {
    let e = Env::new();
    let cfg = e.config("");
    let c = cfg.to_str().unwrap();
    let t = now().to_string();
    let future = (now() + 86_400).to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["1.2.3", "tcp", "22", "5", &t], "IP \"1.2.3\""),
        (
            &["1.2.3.4/24", "tcp", "22", "5", &t],
            "one IPv4 or IPv6 address",
        ),
        (&["0.0.0.0", "tcp", "22", "5", &t], "cannot be banned"),
        (&["ff02::1", "tcp", "22", "5", &t], "cannot be banned"),
        (&["$(id)", "tcp", "22", "5", &t], "IP"),
        (
            &["1.2.3.4", "sctp", "22", "5", &t],
            "expected tcp, udp, icmp or all",
        ),
        (&["1.2.3.4", "", "22", "5", &t], "PROTOCOL"),
        (
            &["1.2.3.4", "tcp", "65536", "5", &t],
            "ports are 0 to 65535",
        ),
        (&["1.2.3.4", "tcp", "22;reboot", "5", &t], "PORT"),
        (&["1.2.3.4", "tcp", "2000:1000", "5", &t], "runs backwards"),
        (
            &["1.2.3.4", "tcp", "nosuchservice", "5", &t],
            "unknown service",
        ),
        (&["1.2.3.4", "tcp", "", "5", &t], "PORT"),
        (&["1.2.3.4", "tcp", "22", "-1", &t], "FAILURES"),
        (&["1.2.3.4", "tcp", "22", "five", &t], "FAILURES"),
        (&["1.2.3.4", "tcp", "22", "99999999999", &t], "FAILURES"),
        (&["1.2.3.4", "tcp", "22", "5", "yesterday"], "Unix seconds"),
        (&["1.2.3.4", "tcp", "22", "5", "-5"], "TIME"),
        (&["1.2.3.4", "tcp", "22", "5", "12"], "before 2001"),
        (&["1.2.3.4", "tcp", "22", "5", &future], "in the future"),
        (&["1.2.3.4", "tcp", "22", "5", "1e9"], "TIME"),
        (&["1.2.3.4", "tcp", "22", "5", "1000000000"], "already over"),
    ];
    for (args, want) in cases {
        let mut v = vec!["record"];
        v.extend_from_slice(args);
        v.extend_from_slice(&["--config", c]);
        let o = e.cli(&v);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    }
    for (flag, value, want) in [
        ("--jail", "ssh d", "--jail"),
        ("--jail", "", "--jail"),
        ("--bantime", "0", "must be positive"),
        ("--bantime", "soon", "--bantime"),
    ] {
        let o = e.cli(&[
            "record", "1.2.3.4", "tcp", "22", "5", &t, flag, value, "--config", c,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{flag} {value:?}: {err}");
        assert!(err.contains(want), "{err}");
    }
    assert!(e.decisions(&cfg).is_empty(), "nothing was recorded");
}

#[test]
fn record_round_trip_through_the_store() {
    let e = Env::new();
    let cfg = e.config("");
    let c = cfg.to_str().unwrap();
    let t = now();
    let ts = format!("{t}.123456");
    let o = e.cli(&[
        "record",
        "203.0.113.7",
        "tcp",
        "ssh,80:90",
        "7",
        &ts,
        "--jail",
        "sshd-f2b",
        "--bantime",
        "600",
        "--config",
        c,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = e.cli(&[
        "record",
        "2001:db8::7",
        "all",
        "0:65535",
        "3",
        &t.to_string(),
        "--bantime",
        "-1",
        "--config",
        c,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The allowlist holds for fail2ban's bans too.
    let o = e.cli(&[
        "record",
        "192.0.2.9",
        "tcp",
        "22",
        "3",
        &t.to_string(),
        "--config",
        c,
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("allowlist"));

    let ds = e.decisions(&cfg);
    assert_eq!(ds.len(), 2, "{ds:?}");
    let v6 = &ds
        .iter()
        .find(|d| d["target"] == "2001:db8::7/128")
        .unwrap();
    assert_eq!(v6["origin"], "fail2ban");
    assert_eq!(v6["jail"], "fail2ban");
    assert!(v6["expires"].is_null(), "bantime -1 is permanent");
    let v4 = &ds.iter().find(|d| d["target"] == "203.0.113.7/32").unwrap();
    assert_eq!(v4["origin"], "fail2ban");
    assert_eq!(v4["jail"], "sshd-f2b");
    assert_eq!(v4["status"], "active");
    assert_eq!(
        v4["reason"],
        "fail2ban jail sshd-f2b: 7 failures (tcp port 22,80:90)"
    );
    let created = palisade_core_time(v4["created"].as_str().unwrap());
    let expires = palisade_core_time(v4["expires"].as_str().unwrap());
    assert_eq!(expires - created, 600_000_000);
    assert_eq!(created % 1_000_000, 123_456, "fraction of <time> kept");

    // fail2ban's actionunban.
    let o = e.cli(&["decisions", "delete", "203.0.113.7", "--config", c]);
    assert!(o.status.success());
    let ds = e.decisions(&cfg);
    let v4 = &ds.iter().find(|d| d["target"] == "203.0.113.7/32").unwrap();
    assert_eq!(v4["status"], "revoked");
}

fn palisade_core_time(s: &str) -> i64 {
    let t: jiff::Timestamp = s.parse().unwrap();
    t.as_microsecond()
}

#[test]
fn record_through_the_running_daemon() {
    let e = Env::new();
    // The daemon's notifier writes every decision it takes to a JSON-lines file.
    let notes = e.p("decisions.jsonl");
    let cfg = e.config(&format!("[notify]\nfile = \"{}\"\n", notes.display()));
    let c = cfg.to_str().unwrap();
    let child = e.start(&cfg, "daemon.err");
    let t = now().to_string();
    let o = e.cli(&[
        "record",
        "198.51.100.77",
        "tcp",
        "22",
        "5",
        &t,
        "--jail",
        "sshd",
        "--bantime",
        "3600",
        "--config",
        c,
    ]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("(daemon)"), "{out}");
    // Enforced through the responder, recorded by the store writer.
    wait_for("the responder", 20.0, || {
        e.p("banned-198.51.100.77").exists()
    });
    wait_for("the stored decision", 20.0, || {
        e.decisions(&cfg)
            .iter()
            .any(|d| d["target"] == "198.51.100.77/32" && d["origin"] == "fail2ban")
    });
    wait_for("the notification", 20.0, || {
        std::fs::read_to_string(&notes).is_ok_and(|t| {
            t.lines().any(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["event"] == "ban" && v["target"] == "198.51.100.77/32"
            })
        })
    });
    // Allowlisted: refused by the daemon too.
    let o = e.cli(&["record", "192.0.2.5", "tcp", "22", "5", &t, "--config", c]);
    assert!(!o.status.success());
    e.stop(child, "daemon.err");
}

fn access_log() -> String {
    let mut s = String::new();
    for i in 0..150 {
        s += &format!(
            "203.0.113.50 - - [03/Mar/2025:10:{:02}:{:02} +0000] \"GET /.env?{i} HTTP/1.1\" 404 153 \"-\" \"curl/8\"\n",
            i / 60,
            i % 60
        );
    }
    for i in 0..120 {
        s += &format!(
            "192.0.2.10 - - [03/Mar/2025:11:00:{:02} +0000] \"GET /wp-login.php HTTP/1.1\" 404 153 \"-\" \"x\"\n",
            i % 60
        );
    }
    for i in 0..30 {
        s += &format!(
            "198.51.100.20 - - [03/Mar/2025:11:00:{:02} +0000] \"GET / HTTP/1.1\" 200 153 \"-\" \"Mozilla/5.0\"\n",
            i
        );
    }
    s
}

#[test]
fn analyze_outputs_scripts_and_apply() {
    let e = Env::new();
    let cfg = e.config("");
    let log = e.p("access.log");
    std::fs::write(&log, access_log()).unwrap();
    let l = log.to_str().unwrap();
    let c = cfg.to_str().unwrap();

    // JSON report, nft script, flagged lines; the config's allowlist is respected.
    let script = e.p("block.nft");
    let flagged = e.p("flagged.tsv");
    let o = e.cli(&[
        "analyze",
        l,
        "--format",
        "json",
        "--config",
        c,
        "--emit",
        "nft",
        "--emit-to",
        script.to_str().unwrap(),
        "--flagged-lines",
        flagged.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["proposed"], serde_json::json!(["203.0.113.50"]));
    assert_eq!(v["level"], "YELLOW");
    let nft = std::fs::read_to_string(&script).unwrap();
    assert!(
        nft.starts_with("#!/usr/sbin/nft -f\n# Generated by palisade"),
        "{nft}"
    );
    assert!(nft.contains("# Command: ") && nft.contains("elements = { 203.0.113.50 }"));
    let fl = std::fs::read_to_string(&flagged).unwrap();
    assert_eq!(fl.lines().count(), 270);
    assert!(fl.starts_with("1\t203.0.113.50\tscanner_path\n"));

    // Without a config, 192.0.2.10 is proposed too; the script goes to standard output and
    // the table to standard error.
    let o = e.cli(&["analyze", l, "--emit", "iptables", "--threshold", "100"]);
    assert!(o.status.success());
    let sh = String::from_utf8_lossy(&o.stdout);
    assert!(
        sh.contains("iptables -A INPUT --source 192.0.2.10 -j DROP"),
        "{sh}"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("2 addresses proposed for blocking"));

    // --apply without a terminal needs --yes.
    let o = e.cli(&["analyze", l, "--config", c, "--apply", "--format", "csv"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--yes"));
    // --apply --yes without a daemon: recorded and applied through the responder.
    let o = e.cli(&[
        "analyze",
        l,
        "--config",
        c,
        "--apply",
        "--yes",
        "--ban-time",
        "2h",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(e.p("banned-203.0.113.50").exists());
    let ds = e.decisions(&cfg);
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0]["jail"], "analyze");
    assert_eq!(ds[0]["reason"], "palisade analyze: 150 suspicious requests");

    // The digest sees it.
    let o = e.cli(&["report", "--format", "json", "--config", c]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["summary"]["decisions_total"], 1);
    let o = e.cli(&[
        "report", "--format", "text", "--period", "1h", "--config", c,
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("New bans: 1"));
}

/// `palisade report --email` through a real SMTP server that requires STARTTLS and a login:
/// delivered with the right password (read from a file); with a wrong one a clear error, and
/// the password in neither the error nor the (trace-level) log.
#[test]
fn report_email_over_starttls_with_login() {
    let e = Env::new();
    let mail = tempfile::tempdir().unwrap();
    let (ca, cert, key) = report_common::make_certs(e.dir.path());
    let secret = "cli-Secret-42 with spaces";
    let smtp = report_common::Smtp::start_with(
        mail.path(),
        &report_common::SmtpSecurity {
            mode: "starttls",
            cert: Some((cert, key)),
            login: Some(("reports".into(), secret.into())),
            exclude_mechanisms: vec![],
        },
    );
    std::fs::write(e.p("smtp-password"), format!("{secret}\n")).unwrap();
    std::fs::write(e.p("wrong-password"), "Wrong-Secret-17\n").unwrap();
    let cfg = |pw: &str| {
        e.config(&format!(
            "[notify]\n[notify.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"starttls\"\nca_file = \"{}\"\nusername = \"reports\"\npassword_file = \"{pw}\"\nfrom = \"palisade@example.org\"\nto = [\"ops@example.org\"]\n",
            smtp.port,
            ca.display()
        ))
    };
    let run = |c: &Path| {
        Command::new(BIN)
            .args(["report", "--email", "--config", c.to_str().unwrap()])
            .env("TZ", "UTC")
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = run(&cfg("smtp-password"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("digest e-mailed to ops@example.org"), "{err}");
    assert!(!err.contains(secret) && !String::from_utf8_lossy(&o.stdout).contains(secret));
    let m = &smtp.parsed(1)[0];
    assert_eq!(m["tls"], true);
    assert_eq!(m["login"], "reports");
    let parts = m["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert!(parts[0]["body"].as_str().unwrap().contains("New bans: 0"));
    assert!(parts[1]["body"]
        .as_str()
        .unwrap()
        .contains("New bans per hour (UTC)"));

    let o = run(&cfg("wrong-password"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("refused the login of user \"reports\"") && err.contains("535"),
        "{err}"
    );
    assert!(
        !err.contains("Wrong-Secret-17") && !err.contains(secret),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("Wrong-Secret-17"));
    assert!(
        smtp.auth_log().ends_with("reports refused\n"),
        "{}",
        smtp.auth_log()
    );
}
