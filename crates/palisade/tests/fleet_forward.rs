//! The forwarder role with real `palisade` processes over loopback (issue 16 item 1): a
//! forwarder only ships raw lines, the server runs its own jails' filters and detection on
//! them, and the bans come back to the forwarder as fleet bans. The bans equal those of local
//! detection of the same log; a forwarder killed with SIGKILL while lines are written loses
//! and duplicates nothing.

#![cfg(feature = "fleet")]

mod common;

use common::fleet::*;
use common::{sshd_failed, syslog_now, wait_for, BIN};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Server settings: its own `sshd` jail (no files: it filters forwarded lines only).
fn server_jail(max_retry: u32) -> String {
    format!(
        r#"[defaults]
max_retry = {max_retry}
find_time = "10m"
ban_time = "1h"
responders = ["log"]
[recidive]
enabled = false
[[jail]]
name = "sshd"
filter = "sshd"
"#
    )
}

/// A forwarder's configuration: its `sshd` jail reads `files`; its own `max_retry = 1` is
/// never used (the server's jail decides).
fn forwarder_cfg(dir: &Path, name: &str, port: u16, files: &[&str]) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let files: Vec<String> = files
        .iter()
        .map(|f| {
            let p = d.join(f);
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .unwrap();
            format!("{:?}", p.display().to_string())
        })
        .collect();
    let p = d.join("palisade.toml");
    std::fs::write(
        &p,
        format!(
            r#"[general]
state_dir = "{d}/state"
socket = "{d}/palisade.sock"
timezone = "UTC"
[store]
url = "sqlite:{d}/palisade.db"
[defaults]
max_retry = 1
responders = ["log"]
[recidive]
enabled = false
[fleet]
role = "forwarder"
server = "wss://127.0.0.1:{port}"
name = "{name}"
[[jail]]
name = "sshd"
filter = "sshd"
files = [{files}]
"#,
            d = d.display(),
            files = files.join(", ")
        ),
    )
    .unwrap();
    p
}

/// `palisade run --from-start` (files empty or not, nothing written before the start is
/// missed), killed when dropped.
fn start_from_start(cfg: &Path, err: PathBuf) -> Proc {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&err)
        .unwrap();
    let child = Command::new(BIN)
        .args(["run", "--from-start", "--config"])
        .arg(cfg)
        .env("TZ", "UTC")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .unwrap();
    Proc {
        child: Some(child),
        err,
    }
}

fn start_server(dir: &Path, port: u16, max_retry: u32) -> (PathBuf, Proc) {
    let url = format!("sqlite:{}/palisade.db", dir.join("server").display());
    start_server_store(dir, port, max_retry, &url)
}

fn start_server_store(dir: &Path, port: u16, max_retry: u32, store: &str) -> (PathBuf, Proc) {
    let scfg = server_cfg_store(dir, port, &server_jail(max_retry), store);
    let server = Proc::start(&scfg, dir.join("server.err"));
    wait_for("the fleet listener", 20.0, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (scfg, server)
}

/// (target, jail) of the fleet bans `decisions list --json` shows.
fn fleet_bans(cfg: &Path) -> BTreeSet<(String, String)> {
    let o = cli(&["decisions", "list", "--json"], cfg);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|d| d["origin"] == "fleet")
        .map(|d| {
            (
                d["target"].as_str().unwrap_or_default().to_string(),
                d["jail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The same log, the same jail settings: `palisade replay` on one host and forwarder →
/// server give the same bans; the forwarder holds them as fleet bans (origin `fleet`); the
/// server stored one event per matching line, under the forwarder's name. The log holds
/// lines of no interest, lines that are not UTF-8, an address planted in a user name and an
/// overlong line.
#[test]
fn forwarder_bans_equal_local_detection() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let fcfg = forwarder_cfg(dir.path(), "fwd1", port, &["auth.log"]);
    let log = dir.path().join("fwd1/auth.log");

    let mut bytes: Vec<u8> = Vec::new();
    let mut line = |s: &[u8]| {
        bytes.extend_from_slice(s);
        bytes.push(b'\n');
    };
    let ts = syslog_now();
    for (ip, n) in [
        ("203.0.113.1", 5),
        ("203.0.113.2", 3),
        ("203.0.113.3", 2),
        ("2001:db8::7", 3),
        ("198.51.100.20", 1),
    ] {
        for _ in 0..n {
            line(sshd_failed(ip, "root").as_bytes());
            line(
                format!("{ts} web1 CRON[77]: pam_unix(cron:session): session opened for user root")
                    .as_bytes(),
            );
        }
    }
    // An address planted where the user name goes: only the real peer may be blamed.
    for _ in 0..3 {
        line(sshd_failed("203.0.113.4", "198.51.100.66").as_bytes());
    }
    line(format!("{ts} web1 kernel: {}", "x".repeat(40_000)).as_bytes());
    // A user name that is not UTF-8.
    for _ in 0..3 {
        let mut l = format!("{ts} web1 sshd[4242]: Failed password for invalid user ").into_bytes();
        l.extend_from_slice(b"\xff\xfeadm from 203.0.113.9 port 22 ssh2");
        line(&l);
    }
    std::fs::write(&log, &bytes).unwrap();

    // Local detection of the same log with the server's settings.
    let local_cfg = dir.path().join("local.toml");
    std::fs::write(
        &local_cfg,
        format!(
            "[general]\nstate_dir = \"{d}/local-state\"\ntimezone = \"UTC\"\n[store]\nurl = \"sqlite:{d}/local.db\"\n{jail}files = [\"{log}\"]\n",
            d = dir.path().display(),
            jail = server_jail(3),
            log = log.display()
        ),
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["replay", log.to_str().unwrap(), "--json", "--config"])
        .arg(&local_cfg)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let local: BTreeSet<(String, String)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|d| {
            let target = match d["ip"].as_str() {
                Some(ip) if ip.contains(':') => format!("{ip}/128"),
                Some(ip) => format!("{ip}/32"),
                None => d["cidr"].as_str().unwrap().to_string(),
            };
            (target, d["jail"].as_str().unwrap().to_string())
        })
        .collect();
    for want in ["203.0.113.1/32", "203.0.113.2/32"] {
        assert!(
            local.contains(&(want.to_string(), "sshd".to_string())),
            "{local:?}"
        );
    }
    assert!(!local.iter().any(|(t, _)| t.starts_with("203.0.113.3/")));
    assert!(!local.iter().any(|(t, _)| t.starts_with("198.51.100.66/")));
    // Lines that make an event, as the filter sees them.
    let o = Command::new(BIN)
        .args(["check", log.to_str().unwrap(), "--filter", "sshd", "--json"])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let matched = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .count() as u64;
    assert!(matched >= 13, "{}", String::from_utf8_lossy(&o.stdout));

    // Forwarder → server.
    let (scfg, server) = start_server(dir.path(), port, 3);
    let t = token(&scfg, &[]);
    let o = join(&fcfg, port, &t);
    assert!(o.status.success(), "{o:?}");
    let fwd = start_from_start(&fcfg, dir.path().join("fwd1.err"));
    wait_for("every matching line stored at the server", 60.0, || {
        events_of(&scfg, "fwd1") >= matched
    });
    wait_for("the bans of local detection at the forwarder", 30.0, || {
        fleet_bans(&fcfg) == local
    });
    // Nothing more comes: the same bans, one event per matching line, under its name.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(fleet_bans(&fcfg), local);
    assert_eq!(events_of(&scfg, "fwd1"), matched);
    let url = format!("sqlite:{}/server/palisade.db", dir.path().display());
    assert_eq!(
        palisade_store::fleet::open(&url)
            .unwrap()
            .host_event_count("fwd1")
            .unwrap(),
        matched
    );
    // The forwarder detected nothing itself (its own max_retry = 1 would have banned every
    // address) and stored no event of its own.
    let o = cli(&["decisions", "list", "--json"], &fcfg);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("\"origin\":\"jail\""));
    let furl = format!("sqlite:{}/fwd1/palisade.db", dir.path().display());
    assert_eq!(
        palisade_store::fleet::open(&furl)
            .unwrap()
            .local_head()
            .unwrap(),
        0
    );
    assert!(fwd.log().contains("not valid UTF-8"), "{}", fwd.log());
    drop(fwd);
    drop(server);
}

/// Writes `n` failure lines (each from its own address) to `path`, with a line of no
/// interest after every tenth, in chunks.
fn writer(path: PathBuf, n: usize, tag: u8) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let mut i = 0;
        while i < n {
            let mut buf = String::new();
            for _ in 0..50.min(n - i) {
                let ip = format!("10.{tag}.{}.{}", (i >> 8) & 255, i & 255);
                buf.push_str(&sshd_failed(&ip, "root"));
                buf.push('\n');
                if i % 10 == 0 {
                    buf.push_str(&format!("{} web1 CRON[1]: session closed\n", syslog_now()));
                }
                i += 1;
            }
            f.write_all(buf.as_bytes()).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

/// Two files of one jail are written while the forwarder is killed with SIGKILL and
/// restarted, then while the server is killed with SIGKILL and restarted: the server holds
/// exactly one event per failure line (each line names its own address: none missing, none
/// twice).
#[test]
fn forwarder_kill9_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}/server/palisade.db", dir.path().display());
    kill9_story(dir.path(), &url);
}

/// The same with the server on PostgreSQL (scripts/with-postgres.sh).
#[test]
fn forwarder_kill9_with_a_postgres_server() {
    let admin = match std::env::var("PALISADE_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            assert!(
                std::env::var("PALISADE_REQUIRE_PG").as_deref() != Ok("1"),
                "PALISADE_REQUIRE_PG=1 but PALISADE_TEST_PG_URL is not set"
            );
            eprintln!("SKIP: PALISADE_TEST_PG_URL is not set");
            return;
        }
    };
    let name = format!("palisade_fleet_fwd_{}", std::process::id());
    let psql = |sql: &str| {
        let o = Command::new("psql")
            .args([admin.as_str(), "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(o.status.success(), "{sql}: {o:?}");
    };
    psql(&format!("DROP DATABASE IF EXISTS {name}"));
    psql(&format!("CREATE DATABASE {name}"));
    let (base, _) = admin
        .rsplit_once('/')
        .expect("a postgres:// URL with a database");
    let dir = tempfile::tempdir().unwrap();
    kill9_story(dir.path(), &format!("{base}/{name}"));
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

fn kill9_story(dir: &Path, url: &str) {
    const N: usize = 12_000;
    let port = free_port();
    let fcfg = forwarder_cfg(dir, "fwd2", port, &["auth.log", "secure.log"]);
    let (scfg, mut server) = start_server_store(dir, port, 1_000_000, url);
    let t = token(&scfg, &[]);
    assert!(join(&fcfg, port, &t).status.success());
    let err = dir.join("fwd2.err");
    let mut fwd = start_from_start(&fcfg, err.clone());
    wait_for("fwd2 connected", 20.0, || {
        agent(&agents(&scfg), "fwd2").is_some_and(|a| a["connected"] == true)
    });

    let w1 = writer(dir.join("fwd2/auth.log"), N, 1);
    let w2 = writer(dir.join("fwd2/secure.log"), N, 2);
    wait_for("a quarter of the lines at the server", 120.0, || {
        events_of(&scfg, "fwd2") >= (N / 2) as u64
    });
    fwd.kill9();
    let at_kill = events_of(&scfg, "fwd2");
    assert!(
        at_kill < 2 * N as u64,
        "the lines were all in before the kill"
    );
    std::thread::sleep(Duration::from_millis(300));
    fwd = start_from_start(&fcfg, err.clone());
    w1.join().unwrap();
    w2.join().unwrap();
    wait_for("every line at the server", 300.0, || {
        events_of(&scfg, "fwd2") >= 2 * N as u64
    });
    std::thread::sleep(Duration::from_secs(1));
    let mut store = palisade_store::open(url).unwrap();
    let events = store
        .events(&palisade_store::EventQuery {
            jail: Some("sshd".into()),
            limit: Some(3 * N as u32),
            ..Default::default()
        })
        .unwrap();
    let distinct: BTreeSet<_> = events.iter().map(|e| e.event.ip).collect();
    assert_eq!(events.len(), 2 * N, "lost or duplicated events");
    assert_eq!(distinct.len(), 2 * N, "duplicated events");
    assert_eq!(events_of(&scfg, "fwd2"), 2 * N as u64);

    // The server is killed with SIGKILL; lines written meanwhile wait at the forwarder and
    // are all stored once it is back, none twice.
    server.kill9();
    const M: usize = 2_000;
    let w1 = writer(dir.join("fwd2/auth.log"), M, 3);
    let w2 = writer(dir.join("fwd2/secure.log"), M, 4);
    w1.join().unwrap();
    w2.join().unwrap();
    server = Proc::start(&scfg, dir.join("server.err"));
    wait_for("the lines written while the server was away", 120.0, || {
        events_of(&scfg, "fwd2") >= 2 * (N + M) as u64
    });
    std::thread::sleep(Duration::from_secs(1));
    let events = store
        .events(&palisade_store::EventQuery {
            jail: Some("sshd".into()),
            limit: Some(3 * (N + M) as u32),
            ..Default::default()
        })
        .unwrap();
    let distinct: BTreeSet<_> = events.iter().map(|e| e.event.ip).collect();
    assert_eq!(events.len(), 2 * (N + M), "lost or duplicated events");
    assert_eq!(distinct.len(), 2 * (N + M), "duplicated events");
    drop(fwd);
    drop(server);
}

/// The server's detection for a forwarder survives a server restart: two failures before
/// the server is killed with SIGKILL, one after, with `max_retry = 3`: banned (the new
/// server counts the stored failures again, as a single host's daemon does after a restart).
#[test]
fn forwarder_detection_survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let fcfg = forwarder_cfg(dir.path(), "fwd3", port, &["auth.log"]);
    let log = dir.path().join("fwd3/auth.log");
    let (scfg, mut server) = start_server(dir.path(), port, 3);
    let t = token(&scfg, &[]);
    assert!(join(&fcfg, port, &t).status.success());
    let _fwd = start_from_start(&fcfg, dir.path().join("fwd3.err"));
    let write = |n: usize| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        for _ in 0..n {
            writeln!(f, "{}", sshd_failed("203.0.113.50", "root")).unwrap();
        }
    };
    write(2);
    wait_for("two failures at the server", 30.0, || {
        events_of(&scfg, "fwd3") >= 2
    });
    server.kill9();
    server = Proc::start(&scfg, dir.path().join("server.err"));
    write(1);
    wait_for("the ban at the forwarder", 60.0, || {
        fleet_bans(&fcfg).contains(&("203.0.113.50/32".to_string(), "sshd".to_string()))
    });
    assert_eq!(events_of(&scfg, "fwd3"), 3);
    drop(server);
}
