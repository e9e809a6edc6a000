//! Shared harness for the network-namespace tests (`#[path]`-included by `netns_nft.rs`,
//! `netns_ipset.rs`, `netns_ufw.rs`, and for its `available` probe by the binary's `netns_e2e.rs`
//! and `fail2ban_cli.rs`; compiled alone it only runs its own helper entry).
//!
//! Topology, all in throwaway namespaces (TEST-NET and ULA addresses, never routed):
//!
//! ```text
//!   att  a0 192.0.2.2/24    fd00:5a1::2/64  ──veth──  s0 192.0.2.1/24    fd00:5a1::1/64  srv
//!   fr   f0 198.51.100.2/24 fd00:5a2::2/64  ──veth──  s1 198.51.100.1/24 fd00:5a2::1/64  srv
//! ```
//!
//! `srv` runs a TCP listener (this test binary re-executed as a helper); `att` and `fr`
//! probe it with a 300 ms connect timeout, also through a re-executed helper. Everything is
//! argv, no shell. The guard kills helpers and deletes the namespaces on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The `ip` program.
pub const IP: &str = "/usr/sbin/ip";
/// Port of the listener in `srv`.
pub const PORT: u16 = 8080;
/// A second listening port (for port-restricted bans).
pub const PORT2: u16 = 8081;

const HELPER_ENV: &str = "PALISADE_NETNS_HELPER";

/// Entry point of the re-executed helper: every test file has a top-level `#[test] fn
/// helper()` calling this; without the environment variable it does nothing.
pub fn helper_main() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    let addrs: Vec<SocketAddr> = std::env::var("PALISADE_NETNS_ADDRS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("socket address"))
        .collect();
    match mode.as_str() {
        "listen" => {
            for a in addrs {
                let l = TcpListener::bind(a).expect("bind");
                std::thread::spawn(move || {
                    for c in l.incoming() {
                        drop(c);
                    }
                });
            }
            println!("PALISADE-READY");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "connect" => {
            let ok = TcpStream::connect_timeout(&addrs[0], Duration::from_millis(300)).is_ok();
            std::process::exit(if ok { 0 } else { 3 });
        }
        other => panic!("unknown helper mode {other}"),
    }
}

/// Runs argv, panicking with its stderr on failure; returns stdout.
pub fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Addresses in the nftables set `inet palisade ban4` of namespace `ns` (empty if absent).
pub fn nft_ban4_members(ns: &str) -> Vec<String> {
    let out = Command::new(IP)
        .args([
            "netns",
            "exec",
            ns,
            "/usr/sbin/nft",
            "-j",
            "list",
            "set",
            "inet",
            "palisade",
            "ban4",
        ])
        .output()
        .unwrap();
    if !out.status.success() {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut m = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        for e in item["set"]["elem"].as_array().into_iter().flatten() {
            let val = e.get("elem").map_or(e, |i| &i["val"]);
            if let Some(s) = val.as_str() {
                m.push(s.to_string());
            }
        }
    }
    m
}

/// Runs argv inside namespace `ns`.
pub fn run_in(ns: &str, argv: &[&str]) -> String {
    let mut v = vec![IP, "netns", "exec", ns];
    v.extend_from_slice(argv);
    run(&v)
}

/// The test topology; dropping it removes everything.
pub struct Topology {
    /// Server namespace (where the firewall is changed).
    pub srv: String,
    /// Attacker namespace.
    pub att: String,
    /// Friend namespace (must keep working while the attacker is banned).
    pub fr: String,
    children: Vec<Child>,
    extra_dirs: Vec<std::path::PathBuf>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.srv, &self.att, &self.fr] {
            let _ = Command::new(IP).args(["netns", "del", ns]).output();
        }
        for d in &self.extra_dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Attacker's IPv4 address.
pub const ATT4: &str = "192.0.2.2";
/// Attacker's IPv6 address.
pub const ATT6: &str = "fd00:5a1::2";
/// Friend's IPv4 address.
pub const FR4: &str = "198.51.100.2";
/// Friend's IPv6 address.
pub const FR6: &str = "fd00:5a2::2";

/// Whether the tests can run: root, `ip netns` works, and the programs exist. Prints
/// `SKIP: …` and returns false otherwise (or panics with `PALISADE_REQUIRE_NETNS=1`).
pub fn available(programs: &[&str]) -> bool {
    let mut why = None;
    for p in std::iter::once(&IP).chain(programs) {
        if !std::path::Path::new(p).exists() {
            why = Some(format!("{p} is not installed"));
        }
    }
    if why.is_none() {
        let probe = format!(
            "pal-probe-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        match Command::new(IP).args(["netns", "add", &probe]).output() {
            Ok(o) if o.status.success() => {
                let _ = Command::new(IP).args(["netns", "del", &probe]).output();
            }
            Ok(o) => {
                why = Some(format!(
                    "cannot create a network namespace (need root/CAP_SYS_ADMIN): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
            Err(e) => why = Some(format!("cannot run {IP}: {e}")),
        }
    }
    match why {
        None => true,
        Some(w) => {
            palisade_testkit::require_or_skip("NETNS", &w);
            false
        }
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Topology {
    /// Creates the three namespaces and the two veth links.
    pub fn new() -> Topology {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let base = format!("pal-t-{}-{n}", std::process::id());
        let t = Topology {
            srv: format!("{base}-srv"),
            att: format!("{base}-att"),
            fr: format!("{base}-fr"),
            children: Vec::new(),
            extra_dirs: Vec::new(),
        };
        for ns in [&t.srv, &t.att, &t.fr] {
            run(&[IP, "netns", "add", ns]);
            run_in(ns, &[IP, "link", "set", "lo", "up"]);
        }
        for (peer_ns, dev, peer, srv4, srv6, p4, p6) in [
            (
                &t.att,
                "s0",
                "a0",
                "192.0.2.1/24",
                "fd00:5a1::1/64",
                "192.0.2.2/24",
                "fd00:5a1::2/64",
            ),
            (
                &t.fr,
                "s1",
                "f0",
                "198.51.100.1/24",
                "fd00:5a2::1/64",
                "198.51.100.2/24",
                "fd00:5a2::2/64",
            ),
        ] {
            run(&[
                IP, "link", "add", dev, "netns", &t.srv, "type", "veth", "peer", "name", peer,
                "netns", peer_ns,
            ]);
            for (ns, d, a4, a6) in [(&t.srv, dev, srv4, srv6), (peer_ns, peer, p4, p6)] {
                run_in(ns, &[IP, "addr", "add", a4, "dev", d]);
                run_in(ns, &[IP, "-6", "addr", "add", a6, "dev", d, "nodad"]);
                run_in(ns, &[IP, "link", "set", d, "up"]);
            }
        }
        t
    }

    /// Starts the listener in `srv` on both ports of every server address.
    pub fn start_listener(&mut self) {
        let mut addrs = Vec::new();
        for a in [
            "192.0.2.1",
            "[fd00:5a1::1]",
            "198.51.100.1",
            "[fd00:5a2::1]",
        ] {
            for p in [PORT, PORT2] {
                addrs.push(format!("{a}:{p}"));
            }
        }
        let mut child = self
            .helper_cmd(&self.srv.clone(), "listen", &addrs.join(","))
            .stdout(Stdio::piped())
            .spawn()
            .expect("listener");
        let out = child.stdout.take().expect("stdout");
        self.children.push(child);
        for line in BufReader::new(out).lines() {
            if line.expect("listener output").contains("PALISADE-READY") {
                return;
            }
        }
        panic!("listener did not start");
    }

    fn helper_cmd(&self, ns: &str, mode: &str, addrs: &str) -> Command {
        let exe = std::env::current_exe().expect("current exe");
        let mut c = Command::new(IP);
        c.args(["netns", "exec", ns])
            .arg(exe)
            .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
            .env(HELPER_ENV, mode)
            .env("PALISADE_NETNS_ADDRS", addrs)
            .stderr(Stdio::null());
        c
    }

    /// Whether a TCP connect from `ns` to `dst` succeeds within 300 ms.
    pub fn connects(&self, ns: &str, dst: &str, port: u16) -> bool {
        let addr = if dst.contains(':') {
            format!("[{dst}]:{port}")
        } else {
            format!("{dst}:{port}")
        };
        self.helper_cmd(ns, "connect", &addr)
            .stdout(Stdio::null())
            .status()
            .expect("probe")
            .success()
    }

    /// Connectivity of (attacker v4, attacker v6, friend v4, friend v6) to `port`.
    pub fn matrix(&self, port: u16) -> [bool; 4] {
        [
            self.connects(&self.att, "192.0.2.1", port),
            self.connects(&self.att, "fd00:5a1::1", port),
            self.connects(&self.fr, "198.51.100.1", port),
            self.connects(&self.fr, "fd00:5a2::1", port),
        ]
    }

    /// Removes `dir` when the topology is dropped.
    pub fn remove_on_drop(&mut self, dir: std::path::PathBuf) {
        self.extra_dirs.push(dir);
    }
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}

/// A decision for tests.
pub fn decision(
    target: &str,
    created: palisade_core::Timestamp,
    expires: Option<palisade_core::Timestamp>,
) -> palisade_core::Decision {
    palisade_core::Decision {
        id: 0,
        target: target.parse().unwrap_or_else(|_| {
            ipnet::IpNet::from(target.parse::<std::net::IpAddr>().expect("target"))
        }),
        jail: "test".into(),
        origin: palisade_core::Origin::Jail,
        reason: "netns test".into(),
        created,
        expires,
        simulated: false,
        level: 0,
    }
}

/// Wall-clock now.
pub fn now() -> palisade_core::Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    palisade_core::Timestamp(d.as_micros() as i64)
}
