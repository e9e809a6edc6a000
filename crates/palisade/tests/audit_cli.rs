//! `palisade audit aws` end to end against a real moto server: the interface contract (JSON
//! lines, exit 0, quiet re-run from the state file as after a restart), the [audit] options of
//! --config, the terminal table, and `palisade config check` on an [audit] section.

#![cfg(feature = "audit")]

#[path = "../../palisade-audit/tests/common/mod.rs"]
mod common;
#[path = "../../palisade-notify/tests/common/mod.rs"]
mod report_common;

use std::process::{Command, Output};

fn palisade(args: &[&str], home: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .env("HOME", home)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("palisade runs")
}

fn lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn interface_contract() {
    let Some(m) = common::moto(&[]) else { return };
    let ids = common::helper(&m.url, &["scenario"]);
    let web = format!("{} (web)", ids["web"].as_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("audit-state.json");
    let args = [
        "audit",
        "aws",
        "--endpoint",
        &m.url,
        "--region",
        "us-east-1",
        "--state",
        state.to_str().unwrap(),
        "--json",
    ];
    let o = palisade(&args, dir.path());
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let ev = lines(&o);
    assert!(!ev.is_empty());
    for e in &ev {
        assert_eq!(e["event"], "new");
        for k in ["rule", "subject", "severity", "region"] {
            assert!(e[k].is_string(), "{k} in {e}");
        }
    }
    let suspicious: Vec<(&str, &str)> = ev
        .iter()
        .filter(|e| e["rule"] == "secgroup_suspicious_ingress")
        .map(|e| {
            (
                e["subject"].as_str().unwrap(),
                e["detail"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        suspicious.len(),
        4, // web: 8080 and 1000-2000; trusted: 5000-6000 and 3000-3001 (no whitelist here)
        "{suspicious:?}"
    );
    assert!(suspicious.contains(&(web.as_str(), "tcp 8080")));
    assert!(ev
        .iter()
        .any(|e| e["rule"] == "secgroup_suspicious_ingress" && e["region"] == "us-east-1"));
    // A second process with the same state file (a restart): nothing.
    let o = palisade(&args, dir.path());
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // reddalert's options through --config: 8080 allowed now, so its finding resolves.
    let cfg = dir.path().join("palisade.toml");
    std::fs::write(&cfg, "[audit]\nallowed_ports = [22, 80, 443, 8080]\n").unwrap();
    let mut with_cfg = args.to_vec();
    with_cfg.extend(["--config", cfg.to_str().unwrap()]);
    let o = palisade(&with_cfg, dir.path());
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let ev = lines(&o);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["event"], "resolved");
    assert_eq!(ev[0]["subject"], web.as_str());
    assert_eq!(ev[0]["detail"], "tcp 8080");

    // The terminal table (without --json), from scratch.
    let o = palisade(
        &[
            "audit",
            "aws",
            "--endpoint",
            &m.url,
            "--region",
            "us-east-1",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let text = String::from_utf8(o.stdout).unwrap();
    let head = text.lines().next().unwrap();
    assert!(head.starts_with("EVENT") && head.contains("SEVERITY") && head.contains("RULE"));
    assert!(text.lines().any(|l| l.starts_with("new")
        && l.contains("secgroup_suspicious_ingress")
        && l.contains(&web)));
    // Rows are ordered by severity, most severe first.
    let sev: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    let rank = |s: &str| {
        ["critical", "high", "medium", "low"]
            .iter()
            .position(|x| *x == s)
            .unwrap()
    };
    assert!(sev.windows(2).all(|w| rank(w[0]) <= rank(w[1])), "{sev:?}");
}

#[test]
fn dead_endpoint_exits_2_naming_endpoint_and_operation() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let o = palisade(
        &[
            "audit",
            "aws",
            "--endpoint",
            &url,
            "--region",
            "us-east-1",
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&url) && err.contains("GetCallerIdentity"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    assert!(!err.contains("testing"), "no secret in errors: {err}");
}

#[test]
fn config_check_accepts_and_validates_the_audit_section() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[audit]\nregions = [\"eu-west-1\"]\nallowed_ports = [22]\n",
    )
    .unwrap();
    let o = palisade(&["config", "check", cfg.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    std::fs::write(&cfg, "[audit]\ndisabled = [\"no_such_rule\"]\n").unwrap();
    let o = palisade(&["config", "check", cfg.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no_such_rule"),
        "{o:?}"
    );
}

#[test]
fn audit_run_once_keeps_state_in_the_store_and_notifies_once_per_run() {
    let Some(m) = common::moto(&[]) else { return };
    common::helper(&m.url, &["scenario"]);
    let dir = tempfile::tempdir().unwrap();
    let mail_dir = dir.path().join("mail");
    std::fs::create_dir(&mail_dir).unwrap();
    let smtp = report_common::Smtp::start(&mail_dir);
    let hook = common::stub(|_, _| (200, "{}".into()));
    let db = dir.path().join("p.db");
    let cfg = dir.path().join("palisade.toml");
    std::fs::write(
        &cfg,
        format!(
            "[store]\nurl = \"sqlite:{}\"\n[audit]\nregions = [\"us-east-1\"]\n\
             [notify.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\n\
             from = \"palisade@example.org\"\nto = [\"ops@example.org\"]\n\
             [notify.webhook]\nurl = \"{}/hook\"\n",
            db.display(),
            smtp.port,
            hook.url
        ),
    )
    .unwrap();
    let args = [
        "audit",
        "run",
        "--once",
        "--json",
        "--config",
        cfg.to_str().unwrap(),
        "--endpoint",
        &m.url,
    ];
    let o = palisade(&args, dir.path());
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let ev = lines(&o);
    assert!(ev.len() > 10, "{ev:?}");
    // One web hook POST and one e-mail for the whole run.
    let seen = hook.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].line.starts_with("POST /hook "));
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(body["kind"], "audit");
    assert_eq!(body["events"].as_array().unwrap().len(), ev.len());
    let mails = smtp.parsed(1);
    assert_eq!(mails.len(), 1);
    let subject = mails[0]["headers"]["subject"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        subject.contains(&format!(
            "cloud audit: {} new, 0 changed, 0 resolved",
            ev.len()
        )),
        "{subject}"
    );
    // Again (a restart of the job): nothing printed, nothing sent, one more run row.
    let o = palisade(&args, dir.path());
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(hook.seen.lock().unwrap().len(), 1);
    let mut store = palisade_store::audit::open(&format!("sqlite:{}", db.display())).unwrap();
    let runs = store.runs(10).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].new, runs[0].changed, runs[0].resolved), (0, 0, 0));
    assert_eq!(runs[1].new as usize, ev.len());
    assert_eq!(store.events(None, 10_000).unwrap().len(), ev.len());
    assert_eq!(store.open_findings().unwrap().len(), ev.len());
}
