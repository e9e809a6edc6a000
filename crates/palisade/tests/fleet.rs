//! Fleet mode with real `palisade` processes over loopback (issue 16): enrollment (a token
//! works once, an expired or used token is refused, a revoked or unknown agent is refused and
//! a revoked agent is cut off), and event shipping that loses and duplicates nothing when the
//! agent is killed with SIGKILL while 50,000 lines are written, and when the server is killed
//! with a backlog waiting.

#![cfg(feature = "fleet")]

mod common;

use common::fleet::*;
use common::{sshd_failed, wait_for};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[test]
fn enrollment_tokens_identity_and_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let scfg = server_cfg(dir.path(), port);
    let acfg = agent_cfg(dir.path(), "web1", port, 5);
    let bcfg = agent_cfg(dir.path(), "web2", port, 5);
    let ccfg = agent_cfg(dir.path(), "web3", port, 5);

    // A token is made whether or not the server runs.
    let once = token(&scfg, &[]);
    let short = token(&scfg, &["--ttl", "1s"]);
    let twice = token(&scfg, &["--uses", "2"]);
    let _server = Proc::start(&scfg, dir.path().join("server.err"));
    wait_for("the fleet listener", 20.0, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    let o = join(&acfg, port, &once);
    assert!(o.status.success(), "{o:?}");
    // The token worked once.
    let o = join(&bcfg, port, &once);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("401"), "{o:?}");
    // Expired.
    std::thread::sleep(Duration::from_millis(1500));
    let o = join(&bcfg, port, &short);
    assert!(!o.status.success(), "an expired token enrolled: {o:?}");
    // A name already enrolled is refused without --force.
    let o = cli(
        &[
            "fleet",
            "join",
            &format!("wss://127.0.0.1:{port}"),
            "--token",
            &twice,
            "--name",
            "web1",
        ],
        &bcfg,
    );
    assert!(!o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("409"), "{o:?}");
    assert!(join(&bcfg, port, &twice).status.success());
    // A token for another server (wrong fingerprint) fails the TLS pin.
    let fake = format!("{}.{}", twice.rsplit_once('.').unwrap().0, "0".repeat(64));
    let o = join(&ccfg, port, &fake);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("fingerprint"),
        "{o:?}"
    );

    // The agents connect; web2's key is tampered with: unknown, refused before the upgrade.
    let ident = dir.path().join("web2/state/fleet/identity.json");
    let mut id: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ident).unwrap()).unwrap();
    id["key"] = "forged-key-forged-key".into();
    std::fs::write(&ident, id.to_string()).unwrap();
    let a = Proc::start(&acfg, dir.path().join("web1.err"));
    let b = Proc::start(&bcfg, dir.path().join("web2.err"));
    wait_for("web1 connected", 20.0, || {
        agent(&agents(&scfg), "web1").is_some_and(|a| a["connected"] == true)
    });
    wait_for("web2 refused", 20.0, || b.log().contains("401"));
    assert!(agent(&agents(&scfg), "web2").is_some_and(|a| a["connected"] == false));
    // Secrets never reach the logs.
    assert!(!b.log().contains("forged-key"));

    // Revocation cuts the live connection at once and refuses the next.
    let o = cli(&["fleet", "agents", "revoke", "web1"], &scfg);
    assert!(o.status.success(), "{o:?}");
    wait_for("web1 cut off", 5.0, || a.log().contains("revoked"));
    wait_for("web1 refused after revocation", 20.0, || {
        a.log().contains("401")
    });
    let list = agents(&scfg);
    let w1 = list.iter().find(|x| x["name"] == "web1").unwrap();
    assert_eq!(w1["revoked"], true);
    assert_eq!(w1["connected"], false);
    // Revoking an unknown name is an error.
    assert!(!cli(&["fleet", "agents", "revoke", "nobody"], &scfg)
        .status
        .success());
}

fn writer(path: PathBuf, n: usize, chunk: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let mut i = 0;
        while i < n {
            let mut buf = String::new();
            for _ in 0..chunk.min(n - i) {
                let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
                buf.push_str(&sshd_failed(&ip, "root"));
                buf.push('\n');
                i += 1;
            }
            f.write_all(buf.as_bytes()).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

fn local_events(agent_db: &Path) -> u64 {
    let url = format!("sqlite:{}", agent_db.display());
    let mut f = match palisade_store::fleet::open(&url) {
        Ok(f) => f,
        Err(_) => return 0,
    };
    f.local_head().unwrap_or(0) as u64
}

#[test]
fn shipping_survives_kill9_of_agent_and_server() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("server/palisade.db").display());
    ship_story(dir.path(), &url, 50_000, 5_000);
}

/// The same with the server's store on PostgreSQL (under scripts/with-postgres.sh; skipped
/// without `PALISADE_TEST_PG_URL` unless `PALISADE_REQUIRE_PG=1`).
#[cfg(feature = "postgres")]
#[test]
fn shipping_to_a_postgres_server_survives_kill9() {
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
    let name = format!("palisade_fleet_ship_{}", std::process::id());
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
    let url = format!("{base}/{name}");
    let dir = tempfile::tempdir().unwrap();
    ship_story(dir.path(), &url, 20_000, 2_000);
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

fn ship_story(dir: &Path, store_url: &str, lines: usize, more: usize) {
    let port = free_port();
    let scfg = server_cfg_store(dir, port, "", store_url);
    let acfg = agent_cfg(dir, "web1", port, 1_000_000);
    let t = token(&scfg, &[]);
    let mut server = Proc::start(&scfg, dir.join("server.err"));
    wait_for("the fleet listener", 20.0, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(join(&acfg, port, &t).status.success());
    let aerr = dir.join("web1.err");
    let mut agent_p = Proc::start(&acfg, aerr.clone());
    wait_for("web1 connected", 20.0, || {
        agent(&agents(&scfg), "web1").is_some_and(|a| a["connected"] == true)
    });

    // The lines are written; the agent is killed with SIGKILL meanwhile, then restarted.
    let log = dir.join("web1/auth.log");
    let w = writer(log.clone(), lines, 500);
    let db = dir.join("web1/palisade.db");
    wait_for("a third of the lines stored by the agent", 120.0, || {
        local_events(&db) >= (lines / 3) as u64
    });
    agent_p.kill9();
    std::thread::sleep(Duration::from_millis(500));
    agent_p = Proc::start(&acfg, aerr.clone());
    w.join().unwrap();
    wait_for("every line at the server", 300.0, || {
        events_of(&scfg, "web1") >= lines as u64
    });
    std::thread::sleep(Duration::from_secs(1));
    let url = store_url.to_string();
    let stored = palisade_store::fleet::open(&url)
        .unwrap()
        .host_event_count("web1")
        .unwrap();
    assert_eq!(stored, lines as u64, "lost or duplicated events");
    assert_eq!(events_of(&scfg, "web1"), lines as u64);

    // The server is killed; a backlog builds up at the agent; nothing is lost after restart.
    server.kill9();
    let before = local_events(&db);
    let w = writer(log, more, 500);
    w.join().unwrap();
    wait_for("the backlog stored by the agent", 120.0, || {
        local_events(&db) >= before + more as u64
    });
    server = Proc::start(&scfg, dir.join("server.err"));
    wait_for("the backlog at the server", 300.0, || {
        events_of(&scfg, "web1") >= (lines + more) as u64
    });
    std::thread::sleep(Duration::from_secs(1));
    let stored = palisade_store::fleet::open(&url)
        .unwrap()
        .host_event_count("web1")
        .unwrap();
    assert_eq!(stored, (lines + more) as u64, "lost or duplicated events");
    drop(agent_p);
    drop(server);
}

/// An sshd failure line stamped by a host whose clock is `skew_secs` off.
fn sshd_failed_at(ip: &str, skew_secs: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(skew_secs);
    let z = t.to_zoned(jiff::tz::TimeZone::UTC);
    format!(
        "{} web sshd[4242]: Failed password for invalid user admin from {ip} port 50522 ssh2",
        z.strftime("%b %e %H:%M:%S")
    )
}

/// Three agents, one of them with its clock 2 minutes behind (faketime; its log lines carry
/// its own clock, as a real host's syslog would): each sees 2 failures of one address, under
/// its own threshold of 3; the fleet jail (6 failures from 3 hosts within 1 minute) bans it on
/// every agent. Without the clock-offset correction the skewed host's failures would fall
/// outside the one-minute window. The skewed agent is flagged by `fleet agents`.
#[test]
fn slow_distributed_brute_force_is_banned_on_every_agent() {
    if Command::new("faketime").arg("--help").output().is_err() {
        assert!(
            std::env::var("PALISADE_REQUIRE_FAKETIME").as_deref() != Ok("1"),
            "PALISADE_REQUIRE_FAKETIME=1 but faketime is missing (scripts/install-deps.sh test installs it)"
        );
        eprintln!(
            "SKIP: faketime is not installed (set PALISADE_REQUIRE_FAKETIME=1 to fail instead)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let scfg = server_cfg_with(
        dir.path(),
        port,
        "[[fleet_jail]]\nname = \"fleet-ssh\"\njails = [\"sshd\"]\nmax_retry = 6\nfind_time = \"1m\"\nban_time = \"1h\"\nmin_hosts = 3\n",
    );
    let t = token(&scfg, &["--uses", "3"]);
    let _server = Proc::start(&scfg, dir.path().join("server.err"));
    wait_for("the fleet listener", 20.0, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let names = ["web1", "web2", "web3"];
    let mut procs = Vec::new();
    let mut cfgs = Vec::new();
    let skew = |n: &str| if n == "web3" { -120 } else { 0 };
    for n in names {
        let c = agent_cfg(dir.path(), n, port, 3);
        assert!(join(&c, port, &t).status.success());
        let s = (skew(n) != 0).then_some("-120s");
        procs.push(Proc::start_skewed(
            &c,
            dir.path().join(format!("{n}.err")),
            s,
        ));
        cfgs.push(c);
    }
    wait_for("three agents connected", 30.0, || {
        let l = agents(&scfg);
        names
            .iter()
            .all(|n| agent(&l, n).is_some_and(|a| a["connected"] == true))
    });
    const Z: &str = "198.51.100.99";
    // Y attacks the same way but is on the server's runtime allowlist (as the API or the
    // dashboard adds it, after the server started): the correlator must not ban it.
    const Y: &str = "198.51.100.7";
    {
        let url = format!("sqlite:{}/palisade.db", dir.path().join("server").display());
        let mut st = palisade_store::open(&url).unwrap();
        st.allowlist_add(
            &"198.51.100.0/28".parse().unwrap(),
            "office",
            palisade_core::Timestamp(0),
        )
        .unwrap();
    }
    let fleet_ban_of = |cfg: &Path, ip: &str| -> bool {
        let o = cli(&["decisions", "list", "--json"], cfg);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|d| d["target"] == format!("{ip}/32") && d["origin"] == "fleet")
    };
    let fleet_ban = |cfg: &Path| fleet_ban_of(cfg, Z);
    // The skewed agent's clock offset is measured (ping/pong) and flagged.
    wait_for("web3's clock offset measured", 30.0, || {
        agent(&agents(&scfg), "web3").is_some_and(|a| a["skewed"] == true)
    });
    let l = agents(&scfg);
    let off = agent(&l, "web3").unwrap()["clock_offset_ms"]
        .as_i64()
        .unwrap();
    assert!((-125_000..=-115_000).contains(&off), "offset {off} ms");
    assert_eq!(agent(&l, "web1").unwrap()["skewed"], false);
    for (i, n) in names.iter().enumerate() {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(format!("{n}/auth.log")))
            .unwrap();
        for _ in 0..2 {
            writeln!(f, "{}", sshd_failed_at(Y, skew(n))).unwrap();
        }
        for _ in 0..2 {
            writeln!(f, "{}", sshd_failed_at(Z, skew(n))).unwrap();
        }
        drop(f);
        if i < 2 {
            // Below the fleet threshold so far: no ban anywhere.
            std::thread::sleep(Duration::from_millis(1500));
            assert!(cfgs.iter().all(|c| !fleet_ban(c)), "banned too early");
        }
    }
    for c in &cfgs {
        wait_for("the fleet ban on every agent", 20.0, || fleet_ban(c));
    }
    // Y's lines came first in every log: its detection was decided before Z's ban.
    assert!(
        cfgs.iter().all(|c| !fleet_ban_of(c, Y)),
        "an address on the runtime allowlist was banned"
    );
    // No agent banned it locally: each saw 2 failures, under its own threshold of 3.
    for c in &cfgs {
        let o = cli(&["decisions", "list", "--json"], c);
        let local = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|d| d["origin"] == "jail")
            .count();
        assert_eq!(local, 0);
    }
}

/// The spool cap: with the server away, an agent keeps at most `spool_max_events` unshipped
/// events, drops the oldest beyond (never bans) and reports the gap; the server counts it.
#[test]
fn spool_cap_drops_oldest_and_reports_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let scfg = server_cfg(dir.path(), port);
    let acfg = agent_cfg_with(
        dir.path(),
        "web1",
        port,
        1_000_000,
        "spool_max_events = 100",
    );
    let t = token(&scfg, &[]);
    let mut server = Proc::start(&scfg, dir.path().join("server.err"));
    wait_for("the fleet listener", 20.0, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(join(&acfg, port, &t).status.success());
    server.kill9();
    let a = Proc::start(&acfg, dir.path().join("web1.err"));
    wait_for("the agent's daemon running", 20.0, || {
        a.log().contains("palisade running")
    });
    writer(dir.path().join("web1/auth.log"), 500, 100)
        .join()
        .unwrap();
    let db = dir.path().join("web1/palisade.db");
    wait_for("the agent stored the lines", 60.0, || {
        local_events(&db) >= 500
    });
    wait_for("the spool cap applied", 60.0, || {
        a.log().contains("spool cap")
    });
    let _server = Proc::start(&scfg, dir.path().join("server.err"));
    wait_for("the agent reconnected and shipped", 60.0, || {
        agent(&agents(&scfg), "web1").is_some_and(|x| x["events"] == 100 && x["gaps"] == 400)
    });
    std::thread::sleep(Duration::from_secs(1));
    let x = agents(&scfg);
    let w = agent(&x, "web1").unwrap();
    assert_eq!(
        (w["events"].as_u64(), w["gaps"].as_u64()),
        (Some(100), Some(400)),
        "{w}"
    );
    assert_eq!(w["backlog"], 0);
}

/// `palisade fleet block`: a reviewed list appended by the CLI (another process than the
/// running server) reaches exactly the agents it is scoped to, with origin `fleet`; a bad line
/// fails with FILE:LINE and appends nothing; an unknown agent name is refused.
#[test]
fn fleet_block_reaches_only_the_scoped_agents() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let scfg = server_cfg(dir.path(), port);
    let t = token(&scfg, &["--uses", "2"]);
    let server = Proc::start(&scfg, dir.path().join("server.err"));
    wait_for("the fleet listener", 20.0, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let mut procs = Vec::new();
    let mut cfgs = Vec::new();
    for n in ["web1", "web2"] {
        let c = agent_cfg_with(dir.path(), n, port, 5, "checksum_interval = \"1s\"");
        assert!(join(&c, port, &t).status.success());
        procs.push(Proc::start(&c, dir.path().join(format!("{n}.err"))));
        cfgs.push(c);
    }
    wait_for("two agents connected", 30.0, || {
        let l = agents(&scfg);
        ["web1", "web2"]
            .iter()
            .all(|n| agent(&l, n).is_some_and(|a| a["connected"] == true))
    });
    let fleet_targets = |cfg: &Path| -> Vec<String> {
        let o = cli(&["decisions", "list", "--json"], cfg);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|d| d["origin"] == "fleet")
            .filter_map(|d| d["target"].as_str().map(String::from))
            .collect()
    };
    let log_head = || -> i64 {
        let url = format!("sqlite:{}/server/palisade.db", dir.path().display());
        palisade_store::fleet::open(&url)
            .unwrap()
            .log_head()
            .unwrap()
    };

    // A bad line: non-zero exit naming FILE:LINE, nothing appended.
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "# reviewed\n203.0.113.5\n\n203.0.113.300\n").unwrap();
    let bad_s = bad.display().to_string();
    let o = cli(&["fleet", "block", &bad_s, "--agents", "web1"], &scfg);
    assert!(!o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{bad_s}:4:")), "{err}");
    // A non-bannable entry is refused the same way.
    std::fs::write(&bad, "0.0.0.0/0\n").unwrap();
    let o = cli(&["fleet", "block", &bad_s], &scfg);
    assert!(!o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("{bad_s}:1:")));
    // Unknown agents are refused and listed.
    let good = dir.path().join("good.txt");
    std::fs::write(
        &good,
        "# reviewed list\n203.0.113.5\n198.51.100.0/24   # a range\n",
    )
    .unwrap();
    let good_s = good.display().to_string();
    let o = cli(
        &["fleet", "block", &good_s, "--agents", "web1,db9,db8"],
        &scfg,
    );
    assert!(!o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("db9, db8"), "{err}");
    assert_eq!(log_head(), 0, "a refused block appended entries");

    // Scoped to web1: it gets both, web2 never does.
    let o = cli(
        &[
            "fleet",
            "block",
            &good_s,
            "--agents",
            "web1",
            "--duration",
            "1d",
        ],
        &scfg,
    );
    assert!(o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("appended 2"),
        "{o:?}"
    );
    assert_eq!(log_head(), 2);
    wait_for("the block on web1", 20.0, || {
        let t = fleet_targets(&cfgs[0]);
        t.contains(&"203.0.113.5/32".to_string()) && t.contains(&"198.51.100.0/24".to_string())
    });
    // An unscoped block afterwards reaches both; when web2 has it, the scoped entries (older)
    // would have reached it too had they been pushed to it.
    std::fs::write(&good, "192.0.2.77\n").unwrap();
    let o = cli(&["fleet", "block", &good_s], &scfg);
    assert!(o.status.success(), "{o:?}");
    for c in &cfgs {
        wait_for("the unscoped block", 20.0, || {
            fleet_targets(c).contains(&"192.0.2.77/32".to_string())
        });
    }
    assert_eq!(fleet_targets(&cfgs[1]), vec!["192.0.2.77/32".to_string()]);
    // And it stays so across checksum rounds (the expectation excludes out-of-scope bans:
    // web1 is not resynced away from its scoped bans, web2 is not given them; a checksum sent
    // while a push is in flight is compared as of the cursor it reports): no mismatch at all.
    std::thread::sleep(Duration::from_millis(2500));
    // (The server logs at info level, where a mismatch would show.)
    assert!(server.log().contains("fleet: agent connected"));
    assert!(
        !server.log().contains("checksum mismatch"),
        "{}",
        server.log()
    );
    assert_eq!(fleet_targets(&cfgs[1]), vec!["192.0.2.77/32".to_string()]);
    let mut t1 = fleet_targets(&cfgs[0]);
    t1.sort();
    assert_eq!(
        t1,
        vec!["192.0.2.77/32", "198.51.100.0/24", "203.0.113.5/32"]
    );
}
