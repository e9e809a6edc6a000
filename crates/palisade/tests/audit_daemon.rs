//! The cloud audit inside `palisade run`, against a real moto server: runs on the `[audit]`
//! schedule on its own thread; a run that fails is logged and recorded as failed, and the next
//! one still happens; detection goes on meanwhile; a reload hands the audit its new settings;
//! the findings reach the API.

#![cfg(feature = "audit")]

#[path = "../../palisade-audit/tests/common/mod.rs"]
mod audit_common;
mod common;

use common::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

fn config(dir: &Path, port: u16, endpoint: &str, interval: &str) -> String {
    let d = dir.display();
    format!(
        r#"
[general]
state_dir = "{d}/state"
socket = "{d}/palisade.sock"
timezone = "UTC"
log_level = "info"

[store]
url = "sqlite:{d}/palisade.db"

[defaults]
max_retry = 3
find_time = "10m"
ban_time = "1h"
responders = ["mark"]

[recidive]
enabled = false

[[responder]]
name = "mark"
type = "command"
ban = ["/usr/bin/touch", "{d}/banned-{{ip}}"]
unban = ["/bin/rm", "-f", "{d}/banned-{{ip}}"]

[[jail]]
name = "sshd"
filter = "sshd"
files = ["{d}/auth.log"]

[server]
listen = "127.0.0.1:{port}"

[audit]
interval = "{interval}"
endpoint = "{endpoint}"
regions = ["us-east-1"]
"#
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn runs(url: &str) -> Vec<palisade_store::audit::AuditRun> {
    palisade_store::audit::open(url)
        .and_then(|mut s| s.runs(100))
        .unwrap_or_default()
}

/// `GET path` with a bearer token; (status, body).
fn get(port: u16, path: &str, token: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    // The API answers small bodies with a Content-Length, never chunked here.
    (status, body.to_string())
}

#[test]
fn daemon_audits_on_schedule_survives_failed_runs_and_reloads() {
    let Some(m) = audit_common::moto(&[]) else {
        return;
    };
    audit_common::helper(&m.url, &["scenario"]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("auth.log"), "").unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let port = free_port();
    let cfg = d.join("palisade.toml");
    std::fs::write(&cfg, config(d, port, &dead, "2s")).unwrap();
    let store = format!("sqlite:{}/palisade.db", d.display());
    let mut child = Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap()])
        .env("TZ", "UTC")
        .env("HOME", d)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("daemon.err")).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(d.join("daemon.err")).unwrap_or_default();
    wait_for("control socket", 20.0, || {
        std::os::unix::net::UnixStream::connect(d.join("palisade.sock")).is_ok()
    });

    // A dead endpoint: every run fails, is logged and recorded, and the next one still runs.
    wait_for("two failed audit runs", 60.0, || {
        runs(&store)
            .iter()
            .filter(|r| r.accounts.is_empty())
            .count()
            >= 2
    });
    let failed = runs(&store);
    assert!(failed.iter().all(|r| r.accounts.is_empty()), "{failed:?}");
    assert!(failed[0].errors.contains(&dead[7..]), "{:?}", failed[0]);
    assert!(log().contains("cloud audit run failed"), "{}", log());
    assert!(palisade_store::audit::open(&store)
        .unwrap()
        .open_findings()
        .unwrap()
        .is_empty());

    // Detection goes on while the audit fails.
    std::thread::sleep(std::time::Duration::from_millis(400));
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.join("auth.log"))
            .unwrap();
        for _ in 0..3 {
            writeln!(f, "{}", sshd_failed("203.0.113.77", "root")).unwrap();
        }
    }
    wait_for("the ban of 203.0.113.77", 20.0, || {
        d.join("banned-203.0.113.77").exists()
    });

    // A reload points the audit at moto: its next run reads the account.
    std::fs::write(&cfg, config(d, port, &m.url, "2s")).unwrap();
    signal(child.id(), "HUP");
    wait_for("a successful audit run", 60.0, || {
        runs(&store).iter().any(|r| !r.accounts.is_empty())
    });
    let ok = runs(&store)
        .into_iter()
        .find(|r| !r.accounts.is_empty())
        .unwrap();
    assert!(ok.new > 0, "{ok:?}");
    let open = palisade_store::audit::open(&store)
        .unwrap()
        .open_findings()
        .unwrap();
    assert_eq!(
        open.len() as i64,
        ok.new,
        "the first good run reports every finding"
    );
    assert!(open
        .iter()
        .any(|f| f.rule == "secgroup_suspicious_ingress" && f.subject.ends_with("(web)")));
    // The next run, with nothing changed, records a run and no event.
    wait_for("a second successful run", 60.0, || {
        runs(&store)
            .iter()
            .filter(|r| !r.accounts.is_empty())
            .count()
            >= 2
    });
    let quiet = runs(&store)
        .into_iter()
        .find(|r| !r.accounts.is_empty())
        .unwrap();
    assert_eq!(
        (quiet.new, quiet.changed, quiet.resolved),
        (0, 0, 0),
        "{quiet:?}"
    );

    // The findings reach the API; a read-only token may read them.
    let (token, hash) = palisade_server::auth::new_api_token();
    palisade_store::open(&store)
        .unwrap()
        .token_add(
            "audit-test",
            "read",
            &hash,
            palisade_core::Timestamp::from_secs(1),
        )
        .unwrap();
    let (status, body) = get(port, "/api/v1/audit/findings?severity=high", &token);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let items = v["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items.iter().all(|f| f["severity"] == "high"));
    assert_eq!(
        v["by_severity"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|n| n.as_u64())
            .sum::<u64>(),
        open.len() as u64
    );
    let (status, body) = get(port, "/api/v1/audit/runs?limit=100", &token);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let items = v["items"].as_array().unwrap();
    assert!(items.iter().any(|r| r["ok"] == false) && items.iter().any(|r| r["ok"] == true));

    // An invalid [audit] refuses the whole reload; the daemon and its audit keep running.
    std::fs::write(
        &cfg,
        config(d, port, &m.url, "2s").replace("regions = [", "no_such_option = 1\nregions = ["),
    )
    .unwrap();
    let before = runs(&store).len();
    signal(child.id(), "HUP");
    wait_for("the reload to be refused", 20.0, || {
        log().contains("no_such_option")
    });
    wait_for("another run after the refused reload", 60.0, || {
        runs(&store).len() > before
    });

    signal(child.id(), "TERM");
    let status = wait_child(&mut child, 20.0).expect("the daemon did not stop");
    assert!(status.success(), "{status:?}\n{}", log());
}
