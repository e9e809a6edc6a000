//! End to end in network namespaces: a real OpenSSH `sshd` in a `server` namespace logs to a
//! file (`sshd -D -E FILE`), `palisade run` follows it in the same namespace and bans through
//! the real firewall (nftables, or ipset + iptables), and real `ssh` clients fail to log in
//! from an `attacker` and an allowlisted `friend` namespace.
//!
//! ```text
//!   att  a0 192.0.2.2/24     ──veth──  s0 192.0.2.1/24     srv (sshd :22, palisade)
//!   fr   f0 198.51.100.2/24  ──veth──  s1 198.51.100.1/24  srv
//! ```
//!
//! TEST-NET addresses only; nothing leaves the namespaces and the host's firewall and sshd
//! are never touched (own sshd config, pid file and host key in a temporary folder; sshd
//! listens only on the namespace addresses). A guard kills every process it started and
//! deletes the namespaces, whatever happens.
//!
//! Needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN) and the Debian packages `iproute2`,
//! `openssh-server`, `openssh-client`, `nftables`, `iptables`, `ipset`. Without them the
//! tests print `SKIP: …` and pass, unless `PALISADE_REQUIRE_NETNS=1`, which makes them fail.
//!
//! Wrong passwords come from the real client through `SSH_ASKPASS=/bin/echo` with
//! `SSH_ASKPASS_REQUIRE=force` (the prompt text is the password), so no `sshpass` is needed.
//! Hostile user names go through an ssh_config `User` line: the client refuses shell
//! metacharacters on its command line, not in its configuration.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod common;
#[path = "../../palisade-respond/tests/netns_common.rs"]
mod netns_common;
use common::{wait_child, wait_for, BIN};
use netns_common::{nft_ban4_members as nft_members, run};
const IP: &str = "/usr/sbin/ip";
const SSHD: &str = "/usr/sbin/sshd";
const SSH: &str = "/usr/bin/ssh";
const SSH_KEYGEN: &str = "/usr/bin/ssh-keygen";
const NFT: &str = "/usr/sbin/nft";
const IPSET: &str = "/usr/sbin/ipset";
const IPTABLES: &str = "/usr/sbin/iptables";
const IP6TABLES: &str = "/usr/sbin/ip6tables";

const SRV_A: &str = "192.0.2.1";
const ATT: &str = "192.0.2.2";
const SRV_F: &str = "198.51.100.1";
const FRIEND: &str = "198.51.100.2";
/// An address written inside a user name: must never be banned.
const DECOY: &str = "192.0.2.77";

const HELPER_ENV: &str = "PALISADE_E2E_CONNECT";

/// Re-executed inside a namespace as `TESTBIN --exact helper`: one TCP connect with a short
/// timeout; exit 0 if it succeeded. Without the environment variable it does nothing.
#[test]
fn helper() {
    let Ok(addr) = std::env::var(HELPER_ENV) else {
        return;
    };
    let addr: std::net::SocketAddr = addr.parse().expect("socket address");
    let ok = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(400)).is_ok();
    std::process::exit(if ok { 0 } else { 3 });
}

/// Whether the tests can run (the shared probe of the responder netns tests, plus sshd and
/// ssh); prints `SKIP: …` otherwise (panics with `PALISADE_REQUIRE_NETNS=1`).
fn available(programs: &[&str]) -> bool {
    let mut all = vec![SSHD, SSH, SSH_KEYGEN];
    all.extend_from_slice(programs);
    netns_common::available(&all)
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn next() -> u32 {
    SEQ.fetch_add(1, Ordering::SeqCst)
}

/// The scenario's namespaces, folder and processes; dropping it removes everything.
struct Lab {
    srv: String,
    att: String,
    fr: String,
    dir: tempfile::TempDir,
    sshd: Option<Child>,
    palisade: Option<Child>,
    clients: Vec<Child>,
    starts: u32,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in self.clients.iter_mut().chain(self.sshd.as_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut p) = self.palisade.take() {
            let _ = Command::new("/bin/kill")
                .args(["-TERM", &p.id().to_string()])
                .status();
            if wait_child(&mut p, 5.0).is_none() {
                let _ = p.kill();
            }
        }
        // Pre-auth sshd children of killed clients exit by themselves (LoginGraceTime);
        // deleting the namespaces takes their sockets away.
        for ns in [&self.srv, &self.att, &self.fr] {
            let _ = Command::new(IP).args(["netns", "del", ns]).output();
        }
        if std::thread::panicking() {
            // Keep the evidence for the failure message's reader.
            eprintln!("--- palisade log ---\n{}", self.read("palisade.err"));
            eprintln!("--- sshd log ---\n{}", self.read("sshd.log"));
        }
    }
}

impl Lab {
    fn new() -> Lab {
        let base = format!("pal-e2e-{}-{}", std::process::id(), next());
        let lab = Lab {
            srv: format!("{base}-srv"),
            att: format!("{base}-att"),
            fr: format!("{base}-fr"),
            dir: tempfile::tempdir().expect("tempdir"),
            sshd: None,
            palisade: None,
            clients: Vec::new(),
            starts: 0,
        };
        for ns in [&lab.srv, &lab.att, &lab.fr] {
            run(&[IP, "netns", "add", ns]);
            run(&[IP, "-n", ns, "link", "set", "lo", "up"]);
        }
        for (peer_ns, dev, peer, srv_a, peer_a) in [
            (&lab.att, "s0", "a0", "192.0.2.1/24", "192.0.2.2/24"),
            (&lab.fr, "s1", "f0", "198.51.100.1/24", "198.51.100.2/24"),
        ] {
            run(&[
                IP, "link", "add", dev, "netns", &lab.srv, "type", "veth", "peer", "name", peer,
                "netns", peer_ns,
            ]);
            for (ns, d, a) in [(&lab.srv, dev, srv_a), (peer_ns, peer, peer_a)] {
                run(&[IP, "-n", ns, "addr", "add", a, "dev", d]);
                run(&[IP, "-n", ns, "link", "set", d, "up"]);
            }
        }
        lab
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.p(name)).unwrap_or_default()
    }

    /// argv run inside `ns`.
    fn in_ns<'a>(ns: &'a str, argv: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![IP, "netns", "exec", ns];
        v.extend_from_slice(argv);
        v
    }

    fn run_srv(&self, argv: &[&str]) -> String {
        run(&Self::in_ns(&self.srv, argv))
    }

    /// Starts the real sshd in `srv`, logging to `sshd.log` with `-E`.
    fn start_sshd(&mut self) {
        // sshd insists on its privilege-separation folder (systemd makes it on a real host).
        let _ = std::fs::create_dir_all("/run/sshd");
        let d = self.dir.path().display().to_string();
        run(&[
            SSH_KEYGEN,
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            &format!("{d}/host_ed25519"),
        ]);
        // Own host key, pid file and listen addresses: the host's sshd is never affected.
        // No account can log in: passwords are wrong, root is refused, and a session would
        // only run /bin/false.
        let conf = format!(
            "ListenAddress {SRV_A}:22\nListenAddress {SRV_F}:22\nHostKey {d}/host_ed25519\n\
             PidFile {d}/sshd.pid\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication no\nUsePAM no\nPermitRootLogin no\nPermitEmptyPasswords no\n\
             LogLevel VERBOSE\nSyslogFacility AUTH\nMaxAuthTries 3\nLoginGraceTime 15\n\
             ForceCommand /bin/false\nDisableForwarding yes\nPermitTTY no\nUseDNS no\n"
        );
        std::fs::write(self.p("sshd_config"), conf).unwrap();
        let cfg = self.p("sshd_config");
        let log = self.p("sshd.log");
        let child = Command::new(IP)
            .args(["netns", "exec", &self.srv, SSHD, "-D", "-f"])
            .arg(&cfg)
            .arg("-E")
            .arg(&log)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd");
        self.sshd = Some(child);
        wait_for("sshd to listen", 10.0, || {
            self.read("sshd.log").matches("Server listening").count() >= 2
        });
    }

    /// Writes Palisade's configuration with `responder` (TOML body of a `[[responder]]`).
    fn config(&self, responder: &str) -> PathBuf {
        let d = self.dir.path().display();
        let text = format!(
            r#"
[general]
state_dir = "{d}/state"
socket = "{d}/palisade.sock"
log_level = "debug"

[store]
url = "sqlite:{d}/palisade.db"

[defaults]
max_retry = 3
find_time = "10m"
ban_time = "4s"
responders = ["fw"]

[allowlist]
addresses = ["{FRIEND}"]

[[responder]]
name = "fw"
{responder}

[[jail]]
name = "sshd"
filter = "sshd_plain"
files = ["{d}/sshd.log"]
"#
        );
        let p = self.p("palisade.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Starts `palisade run` inside `srv` (so its firewall commands act on `srv`).
    fn start_palisade(&mut self, cfg: &Path) {
        assert!(self.palisade.is_none());
        self.starts += 1;
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.p("palisade.err"))
            .unwrap();
        let child = Command::new(IP)
            .args(["netns", "exec", &self.srv, BIN, "run", "--config"])
            .arg(cfg)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("palisade");
        self.palisade = Some(child);
        let sock = self.p("palisade.sock");
        wait_for("palisade's control socket", 20.0, || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
        // The tailer opens the file and seeks to its end right after start-up.
        std::thread::sleep(Duration::from_millis(300));
    }

    fn stop_palisade(&mut self) {
        let mut p = self.palisade.take().expect("running");
        run(&["/bin/kill", "-TERM", &p.id().to_string()]);
        let st = wait_child(&mut p, 15.0).expect("palisade did not stop");
        assert!(
            st.success(),
            "palisade exit: {st:?}\n{}",
            self.read("palisade.err")
        );
    }

    fn assert_palisade_alive(&mut self) {
        let p = self.palisade.as_mut().expect("started");
        assert!(
            p.try_wait().unwrap().is_none(),
            "palisade died\n{}",
            self.read("palisade.err")
        );
        let s = self.sshd.as_mut().expect("started");
        assert!(s.try_wait().unwrap().is_none(), "sshd died");
    }

    /// The CLI (outside the namespaces: it talks to the daemon over its socket).
    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN).args(args).output().unwrap()
    }

    /// The CLI inside `srv` (for `palisade firewall`, which reads that namespace's firewall).
    fn cli_srv(&self, args: &[&str]) -> std::process::Output {
        Command::new(IP)
            .args(["netns", "exec", &self.srv, BIN])
            .args(args)
            .output()
            .unwrap()
    }

    /// Starts a real ssh client in `ns` logging in as `user` to `dst` with wrong passwords.
    fn ssh_fail(&mut self, ns: &str, dst: &str, user: &str) -> Child {
        let n = next();
        // The client refuses shell metacharacters in a command-line user name, not in its
        // configuration file.
        let cfg = self.p(&format!("ssh_config_{n}"));
        let quoted = user.replace('\\', "\\\\").replace('"', "\\\"");
        std::fs::write(
            &cfg,
            format!(
                "Host *\n  User \"{quoted}\"\n  StrictHostKeyChecking no\n  \
                 UserKnownHostsFile /dev/null\n  PreferredAuthentications password\n  \
                 PubkeyAuthentication no\n  IdentitiesOnly yes\n  ConnectTimeout 3\n  \
                 NumberOfPasswordPrompts 3\n  LogLevel ERROR\n"
            ),
        )
        .unwrap();
        Command::new(IP)
            .args(["netns", "exec", ns, SSH, "-F"])
            .arg(&cfg)
            .args([dst, "true"])
            .env("SSH_ASKPASS", "/bin/echo")
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env_remove("DISPLAY")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh")
    }

    /// One complete failed login (the client gives up after its password prompts).
    fn ssh_fail_wait(&mut self, ns: &str, dst: &str, user: &str) {
        let mut c = self.ssh_fail(ns, dst, user);
        let st = wait_child(&mut c, 15.0);
        assert!(st.is_some(), "ssh as {user:?} from {ns} hung");
    }

    /// Whether a TCP connect from `ns` to `dst:22` succeeds within 400 ms.
    fn connects(&self, ns: &str, dst: &str) -> bool {
        Command::new(IP)
            .args(["netns", "exec", ns])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "helper", "--nocapture", "--test-threads=1"])
            .env(HELPER_ENV, format!("{dst}:22"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    fn status_json(&self, cfg: &Path) -> serde_json::Value {
        let o = self.cli(&["status", "--json", "--config", cfg.to_str().unwrap()]);
        assert!(o.status.success(), "{o:?}");
        serde_json::from_slice(&o.stdout).unwrap()
    }

    fn firewall_status(&self, cfg: &Path) -> serde_json::Value {
        let o = self.cli_srv(&[
            "firewall",
            "status",
            "--json",
            "--config",
            cfg.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{o:?}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["responders"][0].clone()
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(o.status.success(), "{args:?}: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn cli_srv_ok(&self, args: &[&str]) -> String {
        let o = self.cli_srv(args);
        assert!(o.status.success(), "{args:?}: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

/// Members of ipset `palisade4` in `ns` (empty if absent).
fn ipset_members(ns: &str) -> Vec<String> {
    let out = Command::new(IP)
        .args(["netns", "exec", ns, IPSET, "list", "palisade4"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip_while(|l| !l.starts_with("Members:"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

/// User names that would run something if any component used a shell. They are relative
/// to the working folder of sshd and palisade (the lab folder): sshd logs a user name only
/// up to a `/`.
const HOSTILE: &[&str] = &[
    "$(touch pwned-1)",
    "x;touch pwned-2;",
    "`touch pwned-3`",
    "x; rm -rf /",
    "x from 192.0.2.77 port 22 ssh2",
];

/// The friend (allowlisted) fails with hostile user names: nothing runs, nothing crashes,
/// the friend is never banned and neither is the address inside a user name.
fn friend_fails_with_hostile_names(lab: &mut Lab, cfg: &Path) {
    let before = lab.status_json(cfg)["engine"]["allowlisted"]
        .as_u64()
        .unwrap_or(0);
    for u in HOSTILE {
        lab.ssh_fail_wait(&lab.fr.clone(), SRV_F, u);
    }
    // Every connection logs at least four failures; all must reach the engine.
    wait_for("the friend's failures to reach the engine", 10.0, || {
        lab.status_json(cfg)["engine"]["allowlisted"]
            .as_u64()
            .unwrap_or(0)
            >= before + 4 * HOSTILE.len() as u64
    });
    let log = lab.read("sshd.log");
    assert!(
        log.contains("Invalid user $(touch pwned-1) from 198.51.100.2"),
        "sshd did not log the hostile name as expected:\n{log}"
    );
    lab.assert_palisade_alive();
    for m in ["pwned-1", "pwned-2", "pwned-3"] {
        assert!(!lab.p(m).exists(), "a user name ran a command ({m})");
        assert!(
            !Path::new("/tmp").join(m).exists(),
            "a user name ran a command"
        );
    }
}

#[test]
fn nftables_sshd_end_to_end() {
    if !available(&[NFT]) {
        return;
    }
    let t0 = Instant::now();
    let mut lab = Lab::new();
    // An operator's own table with an accept rule for ssh: Palisade's drop must win, and
    // `palisade firewall uninstall` must leave exactly this.
    lab.run_srv(&[
        NFT,
        "add table inet hostfw; add chain inet hostfw input { type filter hook input priority 0; policy accept; }; add rule inet hostfw input tcp dport 22 accept",
    ]);
    let ruleset_before = lab.run_srv(&[NFT, "list", "ruleset"]);
    lab.start_sshd();
    let cfg = lab.config("type = \"nftables\"");
    let cfg_s = cfg.to_str().unwrap().to_string();
    lab.start_palisade(&cfg);
    assert!(lab.connects(&lab.att, SRV_A) && lab.connects(&lab.fr, SRV_F));

    friend_fails_with_hostile_names(&mut lab, &cfg);
    assert!(
        nft_members(&lab.srv).is_empty(),
        "{:?}",
        nft_members(&lab.srv)
    );

    // The attacker: an invalid user with wrong passwords; banned during its first
    // connection (max_retry 3).
    let att_ns = lab.att.clone();
    let c = lab.ssh_fail(&att_ns, SRV_A, "nosuchuser");
    lab.clients.push(c);
    let took = wait_for("the attacker's ban in nft set ban4", 10.0, || {
        nft_members(&lab.srv).contains(&ATT.to_string())
    });
    eprintln!("attacker banned {took:?} after the first ssh attempt started");
    assert!(
        !lab.connects(&lab.att, SRV_A),
        "banned attacker still connects"
    );
    assert!(lab.connects(&lab.fr, SRV_F), "the friend lost access");
    assert_eq!(nft_members(&lab.srv), [ATT], "only the attacker is banned");

    // `palisade firewall status` sees it, with the time left and the drops.
    let st = lab.firewall_status(&cfg);
    assert_eq!(st["installed"], true, "{st}");
    assert_eq!(st["elements"][0]["target"], format!("{ATT}/32"), "{st}");
    let left = st["elements"][0]["expires_in_secs"].as_u64().unwrap();
    assert!(left <= 4, "{st}");
    assert!(st["dropped_packets"].as_u64().unwrap() > 0, "{st}");
    let text = lab.cli_srv_ok(&["firewall", "status", "--config", &cfg_s]);
    assert!(text.contains(ATT) && text.contains("left"), "{text}");

    // The ban expires by itself (4 s); the attacker gets in again.
    for c in lab.clients.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    lab.clients.clear();
    wait_for("the ban to expire", 10.0, || {
        nft_members(&lab.srv).is_empty()
    });
    assert!(
        lab.connects(&lab.att, SRV_A),
        "attacker blocked after expiry"
    );

    // A manual ban through the control socket lands at once.
    lab.cli_ok(&[
        "decisions",
        "add",
        ATT,
        "--duration",
        "10m",
        "--config",
        &cfg_s,
    ]);
    wait_for("the manual ban", 5.0, || {
        nft_members(&lab.srv).contains(&ATT.to_string())
    });
    assert!(!lab.connects(&lab.att, SRV_A));

    // The daemon refuses to be uninstalled under its feet.
    let o = lab.cli_srv(&["firewall", "uninstall", "--config", &cfg_s]);
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("running"),
        "{o:?}"
    );

    // Restart: the ban is restored from the store (reconcile), even though the firewall
    // lost it meanwhile.
    lab.stop_palisade();
    lab.cli_srv_ok(&["firewall", "flush", "--config", &cfg_s]);
    assert!(nft_members(&lab.srv).is_empty());
    assert!(lab.connects(&lab.att, SRV_A), "flush did not lift the ban");
    lab.start_palisade(&cfg);
    wait_for("the restored ban", 5.0, || {
        nft_members(&lab.srv).contains(&ATT.to_string())
    });
    assert!(!lab.connects(&lab.att, SRV_A), "restored ban not enforced");
    let left = lab.firewall_status(&cfg)["elements"][0]["expires_in_secs"]
        .as_u64()
        .unwrap();
    assert!((500..=600).contains(&left), "restored with {left} s left");

    // `decisions delete` unbans at once.
    lab.cli_ok(&["decisions", "delete", ATT, "--config", &cfg_s]);
    assert!(
        nft_members(&lab.srv).is_empty(),
        "not lifted when the command returned"
    );
    assert!(lab.connects(&lab.att, SRV_A));
    lab.assert_palisade_alive();

    // Uninstall leaves the ruleset exactly as it was.
    lab.stop_palisade();
    let out = lab.cli_srv_ok(&["firewall", "uninstall", "--config", &cfg_s]);
    assert!(out.contains("table inet palisade"), "{out}");
    let ruleset_after = lab.run_srv(&[NFT, "list", "ruleset"]);
    assert_eq!(ruleset_before, ruleset_after);
    let st = lab.firewall_status(&cfg);
    assert_eq!(st["installed"], false, "{st}");
    eprintln!("nftables end-to-end: {:?}", t0.elapsed());
}

#[test]
fn ipset_sshd_end_to_end() {
    if !available(&[IPSET, IPTABLES, IP6TABLES]) {
        return;
    }
    let t0 = Instant::now();
    let mut lab = Lab::new();
    // The operator's own rules, so the tables exist before and must look the same after.
    lab.run_srv(&[
        IPTABLES, "-w", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT",
    ]);
    lab.run_srv(&[
        IP6TABLES, "-w", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT",
    ]);
    let state = |lab: &Lab| {
        [
            lab.run_srv(&[IPTABLES, "-w", "-S"]),
            lab.run_srv(&[IP6TABLES, "-w", "-S"]),
            lab.run_srv(&[IPSET, "list", "-n"]),
        ]
    };
    let before = state(&lab);
    lab.start_sshd();
    let cfg = lab.config("type = \"ipset\"\nports = [22]");
    let cfg_s = cfg.to_str().unwrap().to_string();
    lab.start_palisade(&cfg);
    assert!(lab.connects(&lab.att, SRV_A));

    friend_fails_with_hostile_names(&mut lab, &cfg);
    let att_ns = lab.att.clone();
    let c = lab.ssh_fail(&att_ns, SRV_A, "nosuchuser");
    lab.clients.push(c);
    wait_for("the attacker's ban in ipset palisade4", 10.0, || {
        ipset_members(&lab.srv).contains(&ATT.to_string())
    });
    assert!(
        !lab.connects(&lab.att, SRV_A),
        "banned attacker still connects"
    );
    assert!(lab.connects(&lab.fr, SRV_F), "the friend lost access");
    assert_eq!(ipset_members(&lab.srv), [ATT]);
    assert!(!ipset_members(&lab.srv).contains(&DECOY.to_string()));
    let st = lab.firewall_status(&cfg);
    assert_eq!(st["elements"][0]["target"], format!("{ATT}/32"), "{st}");
    assert!(st["dropped_packets"].as_u64().unwrap() > 0, "{st}");

    // Expiry: ipset's own timeout (and the daemon's revoke).
    for c in lab.clients.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    lab.clients.clear();
    wait_for("the ban to expire", 10.0, || {
        ipset_members(&lab.srv).is_empty()
    });
    assert!(lab.connects(&lab.att, SRV_A));

    // Manual ban, then `decisions delete` lifts it at once.
    lab.cli_ok(&[
        "decisions",
        "add",
        ATT,
        "--duration",
        "10m",
        "--config",
        &cfg_s,
    ]);
    wait_for("the manual ban", 5.0, || {
        ipset_members(&lab.srv).contains(&ATT.to_string())
    });
    assert!(!lab.connects(&lab.att, SRV_A));
    lab.cli_ok(&["decisions", "delete", ATT, "--config", &cfg_s]);
    assert!(ipset_members(&lab.srv).is_empty());
    assert!(lab.connects(&lab.att, SRV_A));

    // Restart restores an active ban.
    lab.cli_ok(&[
        "decisions",
        "add",
        ATT,
        "--duration",
        "10m",
        "--config",
        &cfg_s,
    ]);
    lab.stop_palisade();
    lab.cli_srv_ok(&["firewall", "flush", "--config", &cfg_s]);
    assert!(ipset_members(&lab.srv).is_empty());
    lab.start_palisade(&cfg);
    wait_for("the restored ban", 5.0, || {
        ipset_members(&lab.srv).contains(&ATT.to_string())
    });
    assert!(!lab.connects(&lab.att, SRV_A));
    lab.assert_palisade_alive();

    lab.stop_palisade();
    lab.cli_srv_ok(&["firewall", "uninstall", "--config", &cfg_s]);
    assert_eq!(before, state(&lab), "iptables/ipset state changed");
    assert!(lab.connects(&lab.att, SRV_A));
    eprintln!("ipset end-to-end: {:?}", t0.elapsed());
}
