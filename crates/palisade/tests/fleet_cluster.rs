//! Several fleet servers on one PostgreSQL (issue 18), with real `palisade` processes over
//! loopback and a throwaway database (under scripts/with-postgres.sh; skipped without
//! `PALISADE_TEST_PG_URL` unless `PALISADE_REQUIRE_PG=1`):
//! - a ban decided on server A (an agent's shared local ban) reaches an agent connected to
//!   server B, and a block list appended by the CLI reaches agents of both;
//! - server A killed with SIGKILL while its agents stream: they move to B, which stores every
//!   line once (enrolled through either server: both present the fleet's one certificate);
//! - the correlator killed with SIGKILL: the other server takes correlation over, warms up
//!   from the stored events and still bans a distributed attack that straddles the takeover;
//!   an allowlisted address attacked the same way is not banned.

#![cfg(all(feature = "fleet", feature = "postgres"))]

mod common;

use common::fleet::*;
use common::{sshd_failed, wait_for};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A fresh database on the throwaway cluster, dropped at the end.
struct Db {
    admin: String,
    name: String,
    url: String,
}

impl Db {
    fn new(tag: &str) -> Option<Db> {
        let Ok(admin) = std::env::var("PALISADE_TEST_PG_URL") else {
            palisade_testkit::require_or_skip("PG", "PALISADE_TEST_PG_URL is not set");
            return None;
        };
        let name = format!("palisade_cluster_{tag}_{}", std::process::id());
        let db = Db {
            url: format!(
                "{}/{name}",
                admin.rsplit_once('/').expect("a postgres:// URL").0
            ),
            admin,
            name,
        };
        db.psql(&format!("DROP DATABASE IF EXISTS {}", db.name));
        db.psql(&format!("CREATE DATABASE {}", db.name));
        Some(db)
    }
    fn psql(&self, sql: &str) {
        let o = Command::new("psql")
            .args([self.admin.as_str(), "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(o.status.success(), "{sql}: {o:?}");
    }
    fn host_events(&self, host: &str) -> u64 {
        palisade_store::fleet::open(&self.url)
            .unwrap()
            .host_event_count(host)
            .unwrap()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                self.admin.as_str(),
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// One server of the cluster: its own folder and port, the shared database.
struct Server {
    cfg: PathBuf,
    port: u16,
    err: PathBuf,
    proc: Option<Proc>,
}

impl Server {
    fn new(dir: &Path, tag: &str, db: &Db, extra: &str) -> Server {
        let port = free_port();
        let d = dir.join(tag);
        Server {
            cfg: server_cfg_store(&d, port, extra, &db.url),
            port,
            err: dir.join(format!("server-{tag}.err")),
            proc: None,
        }
    }
    fn start(&mut self) {
        self.proc = Some(Proc::start(&self.cfg, self.err.clone()));
        let port = self.port;
        wait_for("the fleet listener", 30.0, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }
    fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }
    fn url(&self) -> String {
        format!("wss://127.0.0.1:{}", self.port)
    }
}

/// An agent whose `[fleet] server` lists `servers` in order (it joined through the first).
fn agent_of(dir: &Path, name: &str, servers: &[&Server], max_retry: u32, token: &str) -> PathBuf {
    let c = agent_cfg(dir, name, servers[0].port, max_retry);
    let text = std::fs::read_to_string(&c).unwrap();
    let one = format!("server = \"wss://127.0.0.1:{}\"", servers[0].port);
    let list: Vec<String> = servers.iter().map(|s| format!("{:?}", s.url())).collect();
    assert!(text.contains(&one));
    std::fs::write(
        &c,
        text.replace(&one, &format!("server = [{}]", list.join(", "))),
    )
    .unwrap();
    let o = join(&c, servers[0].port, token);
    assert!(o.status.success(), "{name} joins: {o:?}");
    c
}

fn fleet_targets(cfg: &Path) -> Vec<String> {
    let o = cli(&["decisions", "list", "--json"], cfg);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|d| d["origin"] == "fleet")
        .filter_map(|d| d["target"].as_str().map(String::from))
        .collect()
}

fn connected(scfg: &Path, names: &[&str]) -> bool {
    let l = agents(scfg);
    names
        .iter()
        .all(|n| agent(&l, n).is_some_and(|a| a["connected"] == true))
}

fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

/// Server A decides a ban (web1's local ban, shared); web2, connected to server B only, gets
/// it. A reviewed block list appended by the CLI reaches both. Both servers present the
/// fleet's one certificate: web2 enrolled through B with a token printed for A.
#[test]
fn a_ban_decided_on_one_server_reaches_the_agents_of_another() {
    let Some(db) = Db::new("push") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut a = Server::new(dir.path(), "a", &db, "");
    let mut b = Server::new(dir.path(), "b", &db, "");
    // The token is printed before any server ran: its fingerprint is the certificate the
    // store now holds for the whole fleet.
    let t = token(&a.cfg, &["--uses", "2"]);
    a.start();
    b.start();
    let w1 = agent_of(dir.path(), "web1", &[&a], 2, &t);
    let w2 = agent_of(dir.path(), "web2", &[&b], 2, &t);
    let _p1 = Proc::start(&w1, dir.path().join("web1.err"));
    let _p2 = Proc::start(&w2, dir.path().join("web2.err"));
    wait_for("both agents connected", 30.0, || {
        connected(&a.cfg, &["web1", "web2"])
    });

    // web1 bans locally (2 failures, its max_retry); A appends the shared ban; B pushes it.
    let mut delays = Vec::new();
    for (i, ip) in ["203.0.113.10", "203.0.113.11", "203.0.113.12"]
        .iter()
        .enumerate()
    {
        let want = format!("{ip}/32");
        append(
            &dir.path().join("web1/auth.log"),
            &[sshd_failed(ip, "root"), sshd_failed(ip, "admin")],
        );
        let mut store = palisade_store::fleet::open(&db.url).unwrap();
        wait_for("the shared ban in the fleet log", 30.0, || {
            store
                .log_since(0, 100)
                .unwrap()
                .iter()
                .any(|e| e.target.to_string() == want && e.origin.as_deref() == Some("web1"))
        });
        let t0 = Instant::now();
        wait_for("the ban on web2 (server B)", 20.0, || {
            fleet_targets(&w2).contains(&want)
        });
        delays.push(t0.elapsed());
        assert_eq!(store.log_head().unwrap(), i as i64 + 1);
    }
    eprintln!("cross-server push delays (log append seen → on web2): {delays:?}");
    assert!(b.log().contains("fleet: agent connected"), "{}", b.log());
    // web1's own local ban is not pushed back to it as a fleet ban.
    assert!(fleet_targets(&w1).is_empty(), "{:?}", fleet_targets(&w1));

    // A block list appended by the CLI (no server involved) reaches the agents of both.
    let list = dir.path().join("block.txt");
    std::fs::write(&list, "192.0.2.77\n").unwrap();
    let o = cli(&["fleet", "block", &list.display().to_string()], &b.cfg);
    assert!(o.status.success(), "{o:?}");
    for c in [&w1, &w2] {
        wait_for("the block on every agent", 20.0, || {
            fleet_targets(c).contains(&"192.0.2.77/32".to_string())
        });
    }
    a.kill9();
    b.kill9();
}

/// Writes `n` failure lines (distinct addresses, none reaching a threshold) in chunks.
fn writer(path: PathBuf, tag: u8, n: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut i = 0;
        while i < n {
            let mut lines = Vec::new();
            for _ in 0..200.min(n - i) {
                lines.push(sshd_failed(
                    &format!("10.{tag}.{}.{}", (i >> 8) & 255, i & 255),
                    "root",
                ));
                i += 1;
            }
            append(&path, &lines);
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

/// Server A is killed with SIGKILL while its two agents stream: they move to B (their
/// `[fleet] server` lists both), and the store holds every line once. web2 enrolled through
/// B, web1 through A, with one token.
#[test]
fn agents_move_to_the_other_server_when_one_is_killed() {
    let Some(db) = Db::new("failover") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut a = Server::new(dir.path(), "a", &db, "");
    let mut b = Server::new(dir.path(), "b", &db, "");
    a.start();
    b.start();
    let t = token(&b.cfg, &["--uses", "2"]);
    const LINES: usize = 6_000;
    let w1 = agent_of(dir.path(), "web1", &[&a, &b], 1_000_000, &t);
    let w2c = agent_of(dir.path(), "web2", &[&b, &a], 1_000_000, &t);
    // web2 joined through B; it streams through A too (A first in its list).
    let text = std::fs::read_to_string(&w2c).unwrap();
    let (ua, ub) = (format!("{:?}", a.url()), format!("{:?}", b.url()));
    std::fs::write(
        &w2c,
        text.replace(&format!("[{ub}, {ua}]"), &format!("[{ua}, {ub}]")),
    )
    .unwrap();
    let _p1 = Proc::start(&w1, dir.path().join("web1.err"));
    let _p2 = Proc::start(&w2c, dir.path().join("web2.err"));
    wait_for("both agents connected", 30.0, || {
        connected(&b.cfg, &["web1", "web2"])
    });
    let on_a = a.log().matches("fleet: agent connected").count();
    assert_eq!(on_a, 2, "both agents start on A: {}", a.log());

    let ws = [
        writer(dir.path().join("web1/auth.log"), 1, LINES),
        writer(dir.path().join("web2/auth.log"), 2, LINES),
    ];
    wait_for("some lines stored through A", 60.0, || {
        db.host_events("web1") > 500 && db.host_events("web2") > 500
    });
    a.kill9();
    let killed = Instant::now();
    wait_for("both agents on B", 60.0, || {
        b.log().matches("fleet: agent connected").count() >= 2
    });
    eprintln!("agents back on B {:?} after A's SIGKILL", killed.elapsed());
    for w in ws {
        w.join().unwrap();
    }
    for n in ["web1", "web2"] {
        wait_for("every line at the server", 120.0, || {
            events_of(&b.cfg, n) >= LINES as u64
        });
    }
    std::thread::sleep(Duration::from_secs(1));
    for n in ["web1", "web2"] {
        assert_eq!(db.host_events(n), LINES as u64, "{n}: lost or duplicated");
        assert_eq!(events_of(&b.cfg, n), LINES as u64, "{n}");
    }
    assert!(connected(&b.cfg, &["web1", "web2"]));
    b.kill9();
}

/// An sshd failure line of now, from another host's syslog.
fn failed(ip: &str) -> String {
    sshd_failed(ip, "admin")
}

/// The correlator (whichever server won the lock) is killed with SIGKILL in the middle of a
/// distributed attack: 4 failures from 2 hosts before, 2 from a third host after (6 from 3
/// hosts is the fleet jail's threshold, each host stays under its own 3). The other server
/// takes correlation over, warms up from the stored events and bans the address on every
/// agent. An allowlisted address attacked the same way is not banned.
#[test]
fn correlation_moves_to_the_other_server_when_the_correlator_is_killed() {
    let Some(db) = Db::new("corr") else { return };
    let dir = tempfile::tempdir().unwrap();
    let jail = "[[fleet_jail]]\nname = \"fleet-ssh\"\njails = [\"sshd\"]\nmax_retry = 6\nfind_time = \"5m\"\nban_time = \"1h\"\nmin_hosts = 3\n";
    let allow = "[allowlist]\naddresses = [\"198.51.100.200/29\"]\n";
    // The allowlist is a top-level section: before [fleet].
    let mut a = Server::new(dir.path(), "a", &db, jail);
    let mut b = Server::new(dir.path(), "b", &db, jail);
    for s in [&a, &b] {
        let text = std::fs::read_to_string(&s.cfg).unwrap();
        std::fs::write(
            &s.cfg,
            text.replace("[fleet]\n", &format!("{allow}[fleet]\n")),
        )
        .unwrap();
    }
    a.start();
    b.start();
    wait_for("one correlator", 20.0, || {
        a.log().contains("this server is the correlator")
            || b.log().contains("this server is the correlator")
    });
    let (first, second) = if a.log().contains("this server is the correlator") {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    // Agents spread over both servers; each lists both.
    let t = token(&first.cfg, &["--uses", "3"]);
    let names = ["web1", "web2", "web3"];
    let mut cfgs = Vec::new();
    let mut procs = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let order: [&Server; 2] = if i % 2 == 0 {
            [&*first, &*second]
        } else {
            [&*second, &*first]
        };
        let c = agent_of(dir.path(), n, &order, 3, &t);
        procs.push(Proc::start(&c, dir.path().join(format!("{n}.err"))));
        cfgs.push(c);
    }
    wait_for("three agents connected", 30.0, || {
        connected(&first.cfg, &names)
    });
    const Z: &str = "203.0.113.99";
    const W: &str = "198.51.100.201";
    // R is on the runtime allowlist (kept in PostgreSQL, as the API adds it), not in any
    // configuration.
    const R: &str = "198.51.100.77";
    palisade_store::open(&db.url)
        .unwrap()
        .allowlist_add(
            &format!("{R}/32").parse().unwrap(),
            "partner",
            palisade_core::Timestamp(0),
        )
        .unwrap();
    // Two hosts, two failures each (the allowlisted ones first in every file).
    for n in &names[..2] {
        append(
            &dir.path().join(format!("{n}/auth.log")),
            &[
                failed(R),
                failed(R),
                failed(W),
                failed(W),
                failed(Z),
                failed(Z),
            ],
        );
    }
    wait_for("the first failures stored", 30.0, || {
        db.host_events("web1") >= 6 && db.host_events("web2") >= 6
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        cfgs.iter().all(|c| fleet_targets(c).is_empty()),
        "banned too early"
    );

    first.kill9();
    wait_for("the other server takes correlation over", 30.0, || {
        second.log().contains("this server is the correlator")
    });
    wait_for("the agents back", 60.0, || connected(&second.cfg, &names));
    append(
        &dir.path().join("web3/auth.log"),
        &[
            failed(R),
            failed(R),
            failed(W),
            failed(W),
            failed(Z),
            failed(Z),
        ],
    );
    for c in &cfgs {
        wait_for("the fleet ban on every agent", 30.0, || {
            fleet_targets(c).contains(&format!("{Z}/32"))
        });
    }
    // The allowlisted address's failures were correlated before Z's (earlier in each file):
    // it would be banned by now.
    assert!(
        second.log().contains("allowlisted address; not banned"),
        "{}",
        second.log()
    );
    assert!(
        second
            .log()
            .contains("on the runtime allowlist; not banned"),
        "{}",
        second.log()
    );
    for c in &cfgs {
        assert_eq!(fleet_targets(c), vec![format!("{Z}/32")]);
    }
    // Each agent saw 2 failures of Z, under its own 3: no local ban.
    for c in &cfgs {
        let o = cli(&["decisions", "list", "--json"], c);
        let local = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|d| d["origin"] == "jail")
            .count();
        assert_eq!(local, 0);
    }
    // Exactly one fleet ban was appended for Z.
    let log = palisade_store::fleet::open(&db.url)
        .unwrap()
        .log_since(0, 100)
        .unwrap();
    assert_eq!(
        log.iter()
            .filter(|e| e.target.to_string() == format!("{Z}/32"))
            .count(),
        1,
        "{log:?}"
    );
    second.kill9();
}
