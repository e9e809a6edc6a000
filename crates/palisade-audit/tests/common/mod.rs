//! Test harness: a real moto server on a free loopback port (stopped by PID), the python helper
//! that creates resources with boto3, and a scripted HTTP stub for what moto cannot do
//! (paging, throttling, malformed answers, bulk errors).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running moto server; killed (by its PID) on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts moto; `None` (test skipped) when `moto_server` is missing, unless
/// `PALISADE_REQUIRE_MOTO` is set, which makes a missing moto a failure.
pub fn moto(extra_env: &[(&str, &str)]) -> Option<Moto> {
    let port = free_port();
    let mut cmd = Command::new("moto_server");
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            palisade_testkit::require_or_skip("MOTO", &format!("moto_server cannot start: {e}"));
            return None;
        }
    };
    let m = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /moto-api/ HTTP/1.0\r\n\r\n");
            let mut buf = [0u8; 12];
            if s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {
                return Some(m);
            }
        }
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the python helper; returns its JSON output.
pub fn helper(url: &str, args: &[&str]) -> serde_json::Value {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../palisade-audit/tests/moto_helper.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(url)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "helper {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("helper prints JSON")
}

/// One request the stub received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Method and path with query.
    pub line: String,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Seen {
    /// The form parameter `k` of a Query-protocol body.
    pub fn param(&self, k: &str) -> Option<String> {
        self.body.split('&').find_map(|kv| {
            let (a, b) = kv.split_once('=')?;
            (a == k).then(|| percent_decode(b))
        })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A scripted HTTP server: `answer(request, n)` gives (status, body) for the n-th request.
pub struct Stub {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Every request, in order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

/// Starts a stub on a free loopback port (thread lives for the test process).
pub fn stub(answer: impl Fn(&Seen, usize) -> (u16, String) + Send + 'static) -> Stub {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            let mut headers = Vec::new();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    let k = k.trim().to_ascii_lowercase();
                    if k == "content-length" {
                        len = v.trim().parse().unwrap();
                    }
                    headers.push((k, v.trim().to_string()));
                }
            }
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).unwrap();
            let req = Seen {
                line: line.trim_end().to_string(),
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            let n = {
                let mut g = s2.lock().unwrap();
                g.push(req.clone());
                g.len() - 1
            };
            let (status, text) = answer(&req, n);
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    Stub { url, seen }
}
