//! Framing through SSH certificate key ids, reproduced with a REAL OpenSSH sshd (issue 19,
//! finding 1): a client presents certificates whose key id (and a user name) carry text
//! shaped like sshd's own `from HOST port N ssh2: …` tail. sshd logs them verbatim after
//! `ssh2: `; the `sshd_plain` filter must never blame an address from that text.
//!
//! Runs sshd in a throwaway network namespace (loopback only, own host key, config, pid file
//! and log): the host's sshd is never touched. The hostbased attempt's client configuration
//! lives in `/etc/netns/NS/ssh` (what `ip netns exec` shows as `/etc/ssh`), removed after. Needs root, `ip netns`, sshd, ssh and
//! ssh-keygen; prints SKIP otherwise, or fails with `PALISADE_REQUIRE_NETNS=1`.

use palisade_core::Timestamp;
use palisade_filter::{build_builtin, BuiltinOptions, LineCtx, Mode};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const IP: &str = "/usr/sbin/ip";
const SSHD: &str = "/usr/sbin/sshd";
const SSH: &str = "/usr/bin/ssh";
const KEYGEN: &str = "/usr/bin/ssh-keygen";

fn available() -> bool {
    let require = std::env::var("PALISADE_REQUIRE_NETNS").as_deref() == Ok("1");
    let mut why = [IP, SSHD, SSH, KEYGEN]
        .iter()
        .find(|p| !std::path::Path::new(p).exists())
        .map(|p| format!("{p} is not installed"));
    if why.is_none() {
        let probe = format!("pal-frp-{}", std::process::id());
        match Command::new(IP).args(["netns", "add", &probe]).output() {
            Ok(o) if o.status.success() => {
                let _ = Command::new(IP).args(["netns", "del", &probe]).output();
            }
            Ok(o) => {
                why = Some(format!(
                    "cannot create a network namespace: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
            Err(e) => why = Some(format!("cannot run {IP}: {e}")),
        }
    }
    match why {
        None => true,
        Some(w) if require => panic!("PALISADE_REQUIRE_NETNS=1 but {w}"),
        Some(w) => {
            println!("SKIP: {w}");
            false
        }
    }
}

fn run(argv: &[&str]) -> std::process::Output {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    out
}

fn ok(argv: &[&str]) {
    let o = run(argv);
    assert!(
        o.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

struct Lab {
    ns: String,
    dir: tempfile::TempDir,
    sshd: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(c) = self.sshd.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(IP).args(["netns", "del", &self.ns]).output();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.ns));
    }
}

impl Lab {
    fn p(&self, f: &str) -> String {
        self.dir.path().join(f).to_str().unwrap().to_string()
    }

    /// A client login attempt with a certificate; fails (the CA is not trusted).
    fn attempt(&self, user: &str, cert: &str) {
        let key = self.p("ukey");
        let o = run(&[
            IP,
            "netns",
            "exec",
            &self.ns,
            SSH,
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ConnectTimeout=5",
            "-i",
            &key,
            "-o",
            &format!("CertificateFile={cert}"),
            "-l",
            user,
            "-p",
            "22",
            "127.0.0.1",
            "true",
        ]);
        assert!(!o.status.success(), "login must fail");
    }
}

#[test]
fn real_sshd_certificate_key_ids_never_frame() {
    if !available() {
        return;
    }
    let lab = Lab {
        ns: format!("pal-fr-{}", std::process::id()),
        dir: tempfile::tempdir().unwrap(),
        sshd: None,
    };
    let mut lab = lab;
    ok(&[IP, "netns", "add", &lab.ns]);
    ok(&[IP, "-n", &lab.ns, "link", "set", "lo", "up"]);
    let _ = std::fs::create_dir_all("/run/sshd");
    for k in ["hostkey", "ca", "ukey"] {
        ok(&[KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", &lab.p(k)]);
    }
    // Key ids written by the attacker: a plain fake tail, and one that fits sshd's grammar.
    let ids = [
        ("c1", "x from 203.0.113.47 port 9 ssh2: y"),
        (
            "c2",
            "x from 203.0.113.47 port 9 ssh2: ED25519-CERT SHA256:AAAA ID z",
        ),
    ];
    for (name, id) in ids {
        std::fs::copy(lab.p("ukey.pub"), lab.p(&format!("{name}.pub"))).unwrap();
        ok(&[
            KEYGEN,
            "-q",
            "-s",
            &lab.p("ca"),
            "-I",
            id,
            "-n",
            "nobody",
            "-z",
            "7",
            &lab.p(&format!("{name}.pub")),
        ]);
    }
    let conf = format!(
        "ListenAddress 127.0.0.1:22\nHostKey {h}\nPidFile {d}/sshd.pid\nUsePAM no\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel VERBOSE\n\
         HostbasedAuthentication yes\n",
        h = lab.p("hostkey"),
        d = lab.dir.path().display()
    );
    std::fs::write(lab.p("sshd_config"), conf).unwrap();
    let child = Command::new(IP)
        .args([
            "netns",
            "exec",
            &lab.ns,
            SSHD,
            "-D",
            "-f",
            &lab.p("sshd_config"),
            "-E",
            &lab.p("sshd.log"),
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("sshd");
    lab.sshd = Some(child);
    let read = |lab: &Lab| std::fs::read_to_string(lab.p("sshd.log")).unwrap_or_default();
    let t0 = Instant::now();
    while !read(&lab).contains("Server listening") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "sshd did not start: {}",
            read(&lab)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for user in [
        "nobody",
        "a from 198.51.100.9 port 1 ssh2: ED25519-CERT SHA256:x ID",
    ] {
        for (name, _) in ids {
            lab.attempt(user, &lab.p(&format!("{name}-cert.pub")));
        }
    }
    // Hostbased: the client's ssh-keysign signs with the client host key. `ip netns exec`
    // shows /etc/netns/NS/ssh as /etc/ssh inside the namespace, so the host's own /etc/ssh
    // is untouched. sshd logs `…: ED25519 FP, client user "root", client host "localhost"`.
    let etc = format!("/etc/netns/{}/ssh", lab.ns);
    std::fs::create_dir_all(&etc).unwrap();
    ok(&[
        KEYGEN,
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        &format!("{etc}/ssh_host_ed25519_key"),
    ]);
    std::fs::write(
        format!("{etc}/ssh_config"),
        "Host *\n  HostbasedAuthentication yes\n  EnableSSHKeysign yes\n",
    )
    .unwrap();
    let o = run(&[
        IP,
        "netns",
        "exec",
        &lab.ns,
        SSH,
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "PreferredAuthentications=hostbased",
        "-l",
        "nobody",
        "-p",
        "22",
        "127.0.0.1",
        "true",
    ]);
    assert!(!o.status.success(), "hostbased login must fail");
    // sshd writes its last lines as the client goes away.
    let t0 = Instant::now();
    while read(&lab).matches("Connection closed").count() < 5
        && t0.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = read(&lab);
    let cert_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("-CERT") && l.starts_with("Failed publickey"))
        .collect();
    assert!(
        cert_lines.len() >= 2,
        "sshd logged the certificates:\n{log}"
    );
    assert!(
        cert_lines
            .iter()
            .any(|l| l.contains("ID x from 203.0.113.47 port 9 ssh2: y (serial 7)")),
        "{log}"
    );

    let ctx = LineCtx {
        now: Timestamp::parse_rfc3339("2025-01-01T00:00:00Z").unwrap(),
        source_time: None,
        journal: None,
    };
    let mut f = build_builtin(
        "sshd_plain",
        &BuiltinOptions {
            mode: Mode::Aggressive,
            tz: jiff::tz::TimeZone::UTC,
        },
    )
    .unwrap();
    let mut events = Vec::new();
    for l in log.lines() {
        let mut out = Vec::new();
        f.process(l.as_bytes(), &ctx, &mut out);
        events.extend(out.into_iter().map(|e| (e.ip.to_string(), l.to_string())));
    }
    let wrong: Vec<_> = events.iter().filter(|(ip, _)| ip != "127.0.0.1").collect();
    assert!(wrong.is_empty(), "wrong-address blames: {wrong:#?}\n{log}");
    // The plain certificate line is attributed to the peer; the grammar-fitting ones are
    // refused as ambiguous (the -E log has no pid to tie them to their connection line).
    assert!(
        events.iter().any(
            |(_, l)| l.contains("ID x from 203.0.113.47 port 9 ssh2: y (serial 7)")
                && l.starts_with("Failed publickey for nobody")
        ),
        "{events:#?}"
    );
    assert!(f.stats().ambiguous >= 1, "{:?}", f.stats());
    // The real hostbased line (key, client user, client host) is read in sshd's grammar.
    assert!(
        events.iter().any(
            |(_, l)| l.starts_with("Failed hostbased for nobody from 127.0.0.1")
                && l.contains(", client user \"")
        ),
        "{events:#?}\n{log}"
    );
}
