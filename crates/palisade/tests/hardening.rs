//! Issue 19 through the real binary: idle HTTP connections under a low descriptor limit do not
//! stop a ban; a debug-level daemon does not log its AbuseIPDB key or webhook token; `check`
//! reads pipes, FIFOs and `/dev/stdin`, and survives hostile files.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::*;

/// A local HTTP receiver standing in for AbuseIPDB and the webhook: records every request
/// (head and body) and answers 200 with `{}`.
fn receiver() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            // Read the head, then the body by Content-Length.
            loop {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            g.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf).into_owned());
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            );
        }
    });
    (addr, got)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An idle connection from `src` (any 127/8 address).
fn idle_from(src: IpAddr, port: u16) -> Option<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().ok()?;
        s.bind(SocketAddr::new(src, 0)).ok()?;
        let c = s
            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .ok()?;
        c.into_std().ok()
    })
}

#[test]
fn idle_connections_under_a_low_fd_limit_do_not_stop_bans_and_debug_logs_keep_secrets() {
    let t = TestDir::new();
    let (api, got) = receiver();
    let port = free_port();
    const KEY: &str = "abuseipdb-key-4f1c9e0d7b";
    const TOKEN: &str = "hook-token-8a7d6c5b4e";
    let d = t.d();
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
geoip_country = "{d}/none.mmdb"
{base}
[defaults]
max_retry = 3
find_time = "10m"
ban_time = "1h"
responders = ["mark"]

[recidive]
enabled = false

[abuseipdb]
api_key = "{KEY}"
endpoint = "http://{api}/api/v2/report"

[notify]
window = "1s"
[notify.webhook]
url = "http://{api}/hook/{TOKEN}"
format = "json"
{mark}{jail}"#,
        base = t.base_config("timezone = \"UTC\"\nlog_level = \"debug\""),
        mark = t.mark_responder(),
        jail = t.sshd_jail(),
    );
    let cfg_path = t.write_config(&cfg);
    std::fs::write(t.p("auth.log"), "").unwrap();
    let err_path = t.p("daemon.err");
    // 256 descriptors, soft and hard: the daemon cannot raise it, so its connection cap
    // must leave room for the responder.
    let mut child = Command::new("prlimit")
        .args(["--nofile=256:256", "--", BIN, "run", "--config"])
        .arg(&cfg_path)
        .env("TZ", "UTC")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("prlimit (util-linux) runs");
    let log = || std::fs::read_to_string(&err_path).unwrap_or_default();
    wait_for("the API port", 20.0, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    std::thread::sleep(Duration::from_millis(400));

    // 12 addresses x 32 idle connections: more than the 256-descriptor process can hold.
    let mut idle = Vec::new();
    for a in 1..=12u8 {
        for _ in 0..32 {
            if let Some(c) = idle_from(IpAddr::from([127, 0, 2, a]), port) {
                idle.push(c);
            }
        }
    }
    assert!(idle.len() > 256, "only {} connections opened", idle.len());
    std::thread::sleep(Duration::from_millis(500));

    // A ban is still decided *and applied* (the command responder needs descriptors).
    let failures: Vec<String> = (0..3)
        .map(|_| sshd_failed("45.155.205.77", "root"))
        .collect();
    t.append("auth.log", &failures);
    let banned = t.p("banned-45.155.205.77");
    wait_for("the ban under fd pressure", 20.0, || banned.exists());
    // The reports went out too (through the HTTP client, at debug level).
    let reported = || {
        let g = got.lock().unwrap();
        g.iter().any(|r| r.contains("/api/v2/report")) && g.iter().any(|r| r.contains("/hook/"))
    };
    for _ in 0..200 {
        if reported() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        reported(),
        "no report: {:?}\n{}",
        got.lock().unwrap(),
        log()
            .lines()
            .filter(|l| !l.contains("connection"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        got.lock().unwrap().iter().any(|r| r.contains(KEY)),
        "the receiver did not get the key: the test would prove nothing"
    );
    // One idle client on the control socket does not hold up the next: `status` answers
    // while the idle connection is still open (not yet dropped by its read timeout).
    let mut quiet = std::os::unix::net::UnixStream::connect(t.p("palisade.sock")).unwrap();
    let st = t.cli(&["status", "--json", "--config", cfg_path.to_str().unwrap()]);
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(String::from_utf8_lossy(&st.stdout).contains("active_bans"));
    quiet.set_nonblocking(true).unwrap();
    let mut b = [0u8; 16];
    assert!(
        matches!(quiet.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the idle control client was served or closed before `status` could run"
    );
    drop(idle);
    signal(child.id(), "TERM");
    wait_child(&mut child, 20.0).expect("the daemon did not stop");
    let out = log();
    assert!(!out.contains("Too many open files"), "{out}");
    assert!(out.contains("DEBUG"), "not a debug-level run:\n{out}");
    assert!(
        !out.contains(KEY),
        "the AbuseIPDB key reached the log:\n{out}"
    );
    assert!(
        !out.contains(TOKEN),
        "the webhook token reached the log:\n{out}"
    );
}

const SSHD: &str =
    "Mar  3 10:00:01 h sshd[1]: Failed password for root from 203.0.113.9 port 1 ssh2\n";

fn check_json(path: &str, stdin: Option<&[u8]>) -> (String, String, bool) {
    let mut c = Command::new(BIN)
        .args([
            "check",
            path,
            "--filter",
            "sshd",
            "--json",
            "--now",
            "2025-03-20T00:00:00Z",
        ])
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(data) = stdin {
        let mut i = c.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = i.write_all(&data);
        });
    }
    let o = c.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.success(),
    )
}

#[test]
fn check_reads_pipes_fifos_and_dev_stdin() {
    let data = SSHD.repeat(3);
    // /dev/stdin backed by a pipe.
    let (out, err, ok) = check_json("/dev/stdin", Some(data.as_bytes()));
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "/dev/stdin: {out}\n{err}");
    // A FIFO.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("log.fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let f2 = fifo.clone();
    let d2 = data.clone();
    let writer = std::thread::spawn(move || {
        let mut w = std::fs::OpenOptions::new().write(true).open(&f2).unwrap();
        w.write_all(d2.as_bytes()).unwrap();
    });
    let (out, err, ok) = check_json(fifo.to_str().unwrap(), None);
    writer.join().unwrap();
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "FIFO: {out}\n{err}");
}

#[test]
fn hostile_check_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("huge line", "A".repeat(4 << 20).into_bytes()),
        (
            "huge matching line",
            format!(
                "Mar  3 10:00:01 h sshd[1]: Failed password for {} from 203.0.113.9 port 1 ssh2\n",
                "x".repeat(2 << 20)
            )
            .into_bytes(),
        ),
        ("invalid utf-8", b"\xff\xfe\xfd Failed password for \xc3\x28 from 203.0.113.9 port 1 ssh2\n".to_vec()),
        ("nuls", b"Mar  3 10:00:01 h sshd[1]: Failed\0password for root from 203.0.113.9\0port 1\n\0\0\0".to_vec()),
        ("empty", Vec::new()),
        ("only newlines", vec![b'\n'; 100_000]),
        ("carriage returns", "Mar  3 10:00:01 h sshd[1]: x\r\r\r\n".repeat(1000).into_bytes()),
        (
            "unbannable addresses",
            "Mar  3 10:00:01 h sshd[1]: Failed password for root from 0.0.0.0 port 1 ssh2\n\
             Mar  3 10:00:01 h sshd[1]: Failed password for root from 255.255.255.255 port 1 ssh2\n\
             Mar  3 10:00:01 h sshd[1]: Failed password for root from :: port 1 ssh2\n\
             Mar  3 10:00:01 h sshd[1]: Failed password for root from 224.0.0.1 port 1 ssh2\n"
                .as_bytes()
                .to_vec(),
        ),
    ];
    // Binary noise (a fixed xorshift sequence: reproducible).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    cases.push(("binary", noise));
    for (name, data) in cases {
        let p = dir.path().join("hostile.log");
        std::fs::write(&p, &data).unwrap();
        let (out, err, ok) = check_json(p.to_str().unwrap(), None);
        assert!(ok, "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        if name == "unbannable addresses" {
            assert_eq!(out.lines().count(), 0, "{name}: {out}");
        }
    }
}
