//! Fleet bans with real processes in network namespaces the test creates (issue 16):
//!
//! ```text
//!   fa  a0 10.77.1.2/24 ──veth── sa0 10.77.1.1/24  fs (fleet server :7443)
//!   fb  b0 10.77.2.2/24 ──veth── sb0 10.77.2.1/24  fs
//! ```
//!
//! Agent A (in `fa`) and agent B (in `fb`) run `palisade run` with the nftables responder in
//! their own namespace. A ban taken locally on A is reported, shared, and reaches B's
//! nftables set within a second; `palisade decisions list --json` on B shows it with
//! `"origin": "fleet"`; an element deleted by hand from B's set comes back (the daemon's
//! periodic reconcile re-applies every decision in force); a fleet ban lifted on B alone comes
//! back through the checksum resync (B's checksum of its fleet bans no longer matches the
//! server's, which sends a snapshot); an unban on A
//! propagates; B's link goes down for 60 s and comes back up: B catches up with the bans it
//! missed (deltas from its ban cursor, no snapshot) and ships the events it logged meanwhile,
//! none lost or duplicated. Last, B is stopped while A bans another address and
//! restarted: it resumes from its ban cursor (the delta, no snapshot).
//!
//! Needs root, `ip netns` and nftables; without them the test prints `SKIP: …` and passes,
//! unless `PALISADE_REQUIRE_NETNS=1`, which makes it fail. Namespaces are deleted when the
//! test ends, failed or not (Drop).

#![cfg(feature = "fleet")]

mod common;
#[path = "../../palisade-respond/tests/netns_common.rs"]
mod netns_common;

use common::{sshd_failed, wait_child, wait_for, BIN};
use netns_common::run;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const IP: &str = "/usr/sbin/ip";
const NFT: &str = "/usr/sbin/nft";

#[test]
fn helper() {
    netns_common::helper_main();
}

static SEQ: AtomicU32 = AtomicU32::new(0);

struct Lab {
    ns: [String; 3],
    dir: tempfile::TempDir,
    procs: Vec<(String, Child)>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in &mut self.procs {
            let _ = Command::new("/bin/kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            if wait_child(c, 5.0).is_none() {
                let _ = c.kill();
            }
        }
        for ns in &self.ns {
            let _ = Command::new(IP).args(["netns", "del", ns]).output();
        }
        if std::thread::panicking() {
            for n in ["server", "a", "b"] {
                eprintln!("--- {n} ---\n{}", self.read(&format!("{n}.err")));
            }
        }
    }
}

impl Lab {
    fn new() -> Lab {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let base = format!("pf{}-{n}", std::process::id());
        let lab = Lab {
            ns: [
                format!("{base}-s"),
                format!("{base}-a"),
                format!("{base}-b"),
            ],
            dir: tempfile::tempdir().unwrap(),
            procs: Vec::new(),
        };
        for ns in &lab.ns {
            run(&[IP, "netns", "add", ns]);
            run(&[IP, "-n", ns, "link", "set", "lo", "up"]);
        }
        let s = &lab.ns[0];
        for (i, (srv_if, ag_if)) in [("sa0", "a0"), ("sb0", "b0")].iter().enumerate() {
            let ag = &lab.ns[i + 1];
            run(&[
                IP, "-n", s, "link", "add", srv_if, "type", "veth", "peer", "name", ag_if, "netns",
                ag,
            ]);
            let net = i + 1;
            run(&[
                IP,
                "-n",
                s,
                "addr",
                "add",
                &format!("10.77.{net}.1/24"),
                "dev",
                srv_if,
            ]);
            run(&[
                IP,
                "-n",
                ag,
                "addr",
                "add",
                &format!("10.77.{net}.2/24"),
                "dev",
                ag_if,
            ]);
            run(&[IP, "-n", s, "link", "set", srv_if, "up"]);
            run(&[IP, "-n", ag, "link", "set", ag_if, "up"]);
        }
        lab
    }

    fn p(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn read(&self, f: &str) -> String {
        std::fs::read_to_string(self.p(f)).unwrap_or_default()
    }

    fn server_cfg(&self) -> PathBuf {
        let d = self.p("server");
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("palisade.toml");
        std::fs::write(
            &p,
            format!(
                "[general]\nstate_dir = \"{d}/state\"\nsocket = \"{d}/p.sock\"\n[store]\nurl = \"sqlite:{d}/p.db\"\n[fleet]\nrole = \"server\"\nlisten = \"0.0.0.0:7443\"\n",
                d = d.display()
            ),
        )
        .unwrap();
        p
    }

    fn agent_cfg(&self, name: &str, net: u8) -> PathBuf {
        let d = self.p(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("auth.log"), "").unwrap();
        let p = d.join("palisade.toml");
        std::fs::write(
            &p,
            format!(
                r#"[general]
state_dir = "{d}/state"
socket = "{d}/p.sock"
timezone = "UTC"
reconcile_interval = "2s"
[store]
url = "sqlite:{d}/p.db"
[defaults]
max_retry = 3
find_time = "10m"
ban_time = "1h"
responders = ["nftables"]
[recidive]
enabled = false
[fleet]
role = "agent"
server = "wss://10.77.{net}.1:7443"
name = "{name}"
checksum_interval = "2s"
[[jail]]
name = "sshd"
filter = "sshd"
files = ["{d}/auth.log"]
"#,
                d = d.display()
            ),
        )
        .unwrap();
        p
    }

    fn start(&mut self, who: &str, ns: usize, cfg: &Path) {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.p(&format!("{who}.err")))
            .unwrap();
        let c = Command::new(IP)
            .args(["netns", "exec", &self.ns[ns], BIN, "run", "--config"])
            .arg(cfg)
            .env("TZ", "UTC")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        self.procs.push((who.into(), c));
    }

    fn stop(&mut self, who: &str) {
        let i = self.procs.iter().position(|(n, _)| n == who).unwrap();
        let (_, mut c) = self.procs.remove(i);
        let _ = Command::new("/bin/kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        assert!(wait_child(&mut c, 10.0).is_some(), "{who} did not stop");
    }

    fn cli(&self, ns: usize, args: &[&str], cfg: &Path) -> Output {
        Command::new(IP)
            .args(["netns", "exec", &self.ns[ns], BIN])
            .args(args)
            .arg("--config")
            .arg(cfg)
            .output()
            .unwrap()
    }

    fn nft_members(&self, ns: usize) -> Vec<String> {
        netns_common::nft_ban4_members(&self.ns[ns])
    }

    fn fail3(&self, who: &str, ip: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.p(&format!("{who}/auth.log")))
            .unwrap();
        for _ in 0..3 {
            writeln!(f, "{}", sshd_failed(ip, "root")).unwrap();
        }
    }

    fn agents(&self, scfg: &Path) -> Vec<serde_json::Value> {
        let o = self.cli(0, &["fleet", "agents", "--json"], scfg);
        assert!(o.status.success(), "{o:?}");
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn connected(&self, scfg: &Path, name: &str) -> bool {
        self.agents(scfg)
            .iter()
            .any(|a| a["name"] == name && a["connected"] == true)
    }
}

#[test]
fn bans_reach_every_agent_resync_and_catch_up() {
    if !netns_common::available(&[NFT]) {
        return;
    }
    let mut lab = Lab::new();
    let scfg = lab.server_cfg();
    let acfg = lab.agent_cfg("a", 1);
    let bcfg = lab.agent_cfg("b", 2);
    let o = lab.cli(0, &["fleet", "token", "add", "--uses", "2"], &scfg);
    assert!(o.status.success(), "{o:?}");
    let token = String::from_utf8_lossy(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .to_string();
    lab.start("server", 0, &scfg);
    for (ns, cfg, net) in [(1, &acfg, 1), (2, &bcfg, 2)] {
        let url = format!("wss://10.77.{net}.1:7443");
        let mut ok = false;
        for _ in 0..100 {
            if lab
                .cli(ns, &["fleet", "join", &url, "--token", &token], cfg)
                .status
                .success()
            {
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(ok, "join from namespace {ns} failed");
    }
    lab.start("a", 1, &acfg);
    lab.start("b", 2, &bcfg);
    wait_for("both agents connected", 30.0, || {
        lab.connected(&scfg, "a") && lab.connected(&scfg, "b")
    });

    // A local ban on A reaches B's nftables set within a second.
    const X: &str = "203.0.113.50";
    lab.fail3("a", X);
    wait_for("the ban on A", 20.0, || {
        lab.nft_members(1).iter().any(|m| m == X)
    });
    let t = Instant::now();
    wait_for("the fleet ban on B", 10.0, || {
        lab.nft_members(2).iter().any(|m| m == X)
    });
    let took = t.elapsed();
    eprintln!("A's set → B's set: {took:?}");
    assert!(took <= Duration::from_secs(1), "propagation took {took:?}");
    let o = lab.cli(2, &["decisions", "list", "--json"], &bcfg);
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    let fleet_ban = listed
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|d| d["target"] == format!("{X}/32"))
        .unwrap_or_else(|| panic!("no fleet decision on B: {listed}"));
    assert_eq!(fleet_ban["origin"], "fleet", "{fleet_ban}");

    // An element deleted by hand from B's set comes back.
    run(&[
        IP,
        "netns",
        "exec",
        &lab.ns[2],
        NFT,
        "delete",
        "element",
        "inet",
        "palisade",
        "ban4",
        &format!("{{ {X} }}"),
    ]);
    assert!(!lab.nft_members(2).iter().any(|m| m == X));
    wait_for("the element restored on B", 15.0, || {
        lab.nft_members(2).iter().any(|m| m == X)
    });

    // A fleet ban lifted on B alone (B's decision revoked by hand) drifts from the fleet
    // log: B's checksum no longer matches and the server's snapshot puts it back.
    let o = lab.cli(2, &["decisions", "delete", X], &bcfg);
    assert!(o.status.success(), "{o:?}");
    wait_for("the lifted fleet ban gone from B", 10.0, || {
        !lab.nft_members(2).iter().any(|m| m == X)
    });
    wait_for("the checksum resync re-applies it on B", 20.0, || {
        lab.nft_members(2).iter().any(|m| m == X)
    });
    assert!(lab.read("server.err").contains("checksum mismatch"));

    // An unban on A propagates.
    let o = lab.cli(1, &["decisions", "delete", X], &acfg);
    assert!(o.status.success(), "{o:?}");
    wait_for("the unban on B", 10.0, || {
        !lab.nft_members(2).iter().any(|m| m == X)
    });

    // B's link goes down for 60 s: A bans Y, B logs events; after the link is back B has
    // Y (a delta: no snapshot) and the server has every one of B's events, once. B's
    // reconnect backoff reaches its 60 s ceiling meanwhile, hence the waits of 150 s.
    const Y: &str = "203.0.113.77";
    let b_events_before = lab.agents(&scfg).iter().find(|a| a["name"] == "b").unwrap()["events"]
        .as_u64()
        .unwrap();
    let snapshots = |lab: &Lab| lab.read("b.err").matches("replaced by a snapshot").count();
    let snapshots_before_outage = snapshots(&lab);
    run(&[IP, "-n", &lab.ns[2], "link", "set", "b0", "down"]);
    lab.fail3("a", Y);
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(lab.p("b/auth.log"))
            .unwrap();
        for i in 0..200 {
            // Two failures per address: under B's threshold, no local ban.
            writeln!(f, "{}", sshd_failed(&format!("198.51.100.{}", i / 2), "x")).unwrap();
        }
    }
    std::thread::sleep(Duration::from_secs(60));
    assert!(
        !lab.nft_members(2).iter().any(|m| m == Y),
        "B got Y while cut off"
    );
    run(&[IP, "-n", &lab.ns[2], "link", "set", "b0", "up"]);
    wait_for("B catches up with Y", 150.0, || {
        lab.nft_members(2).iter().any(|m| m == Y)
    });
    assert_eq!(
        snapshots(&lab),
        snapshots_before_outage,
        "B caught up with a snapshot instead of the delta"
    );
    wait_for("B's events at the server", 150.0, || {
        lab.agents(&scfg)
            .iter()
            .find(|a| a["name"] == "b")
            .and_then(|a| a["events"].as_u64())
            == Some(b_events_before + 200)
    });
    let url = format!("sqlite:{}", lab.p("server/p.db").display());
    let stored = palisade_store::fleet::open(&url)
        .unwrap()
        .host_event_count("b")
        .unwrap();
    assert_eq!(stored, b_events_before + 200, "lost or duplicated events");

    // B stops; A bans W meanwhile; B comes back and resumes from its ban cursor with the
    // delta (no snapshot: its cursor is known and recent).
    const W: &str = "203.0.113.99";
    lab.stop("b");
    let before = snapshots(&lab);
    lab.fail3("a", W);
    wait_for("the ban of W on A", 20.0, || {
        lab.nft_members(1).iter().any(|m| m == W)
    });
    lab.start("b", 2, &bcfg);
    wait_for("W on B after its restart", 30.0, || {
        lab.nft_members(2).iter().any(|m| m == W)
    });
    assert_eq!(
        snapshots(&lab),
        before,
        "B got a snapshot instead of resuming from its cursor"
    );
}
