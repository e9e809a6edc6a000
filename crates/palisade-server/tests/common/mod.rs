//! Shared by the server's integration tests: the stand-in daemon (a recorder of what the API
//! asks of it) and a server on 127.0.0.1:0 over a fresh SQLite store.
#![allow(dead_code)]

use ipnet::IpNet;
use palisade_core::{Decision, Origin, Timestamp};
use palisade_proto::{Counters, JailStatus, StatusReport};
use palisade_server::{ControlApi, ControlError, FeedHub, ServerConfig};
use palisade_store::Store;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The password of the user every test server is made with.
pub const PASSWORD: &str = "correct horse battery";

/// Records every call (`status`, `ban TARGET Some(SECS) REASON`, `unban TARGET`,
/// `allowlist COUNT`); refuses
/// bans inside 10.0.0.0/8 like an allowlist would; keeps the allowlist it is given.
#[derive(Default)]
pub struct FakeDaemon {
    /// The calls, in order.
    pub calls: Mutex<Vec<String>>,
    /// The last allowlist pushed.
    pub allow: Mutex<Vec<IpNet>>,
}

impl FakeDaemon {
    /// The calls that would change something (all but `status`).
    pub fn writes(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| *c != "status")
            .cloned()
            .collect()
    }
}

impl ControlApi for FakeDaemon {
    fn status(&self) -> Result<StatusReport, ControlError> {
        self.calls.lock().unwrap().push("status".into());
        Ok(StatusReport {
            counters: Counters {
                lines: 1234,
                events: 56,
                decisions: 7,
                responder_errors: 1,
                ..Counters::default()
            },
            jails: vec![JailStatus {
                name: "sshd".into(),
                failures: 50,
                detections: 7,
                tracked: 3,
                evicted: 0,
                max_retry: 5,
                find_time: 600,
                ban_time: Some(3600),
                dry_run: false,
            }],
            active_bans: 2,
            ..StatusReport::default()
        })
    }
    fn ban(
        &self,
        target: IpNet,
        dur: Option<Duration>,
        reason: &str,
    ) -> Result<Decision, ControlError> {
        let secs = dur.map(|d| d.as_secs());
        let target_s = target.to_string();
        self.calls
            .lock()
            .unwrap()
            .push(format!("ban {target_s} {secs:?} {reason}"));
        if target_s.starts_with("10.") {
            return Err(ControlError::Refused(format!(
                "{target_s} is covered by the allowlist; not banned"
            )));
        }
        let now = Timestamp::from_secs(1_700_000_000);
        Ok(Decision {
            id: 0,
            target,
            jail: "manual".into(),
            origin: Origin::Manual,
            reason: reason.into(),
            created: now,
            expires: dur.map(|d| now.plus(d)),
            simulated: false,
            level: 0,
        })
    }
    fn unban(&self, target: IpNet) -> Result<u64, ControlError> {
        self.calls.lock().unwrap().push(format!("unban {target}"));
        Ok(1)
    }
    fn set_allowlist(&self, nets: Vec<IpNet>) -> Result<(), ControlError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("allowlist {}", nets.len()));
        *self.allow.lock().unwrap() = nets;
        Ok(())
    }
}

/// A running server; shut down on drop.
pub struct Server {
    /// Holds the store (and whatever the test put there); removed on drop.
    pub dir: tempfile::TempDir,
    /// The store's URL.
    pub url: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The daemon it talks to.
    pub daemon: Arc<FakeDaemon>,
    /// The live feed it serves.
    pub feed: FeedHub,
    /// The server itself.
    pub handle: Option<palisade_server::ServerHandle>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

/// A server on 127.0.0.1:0 over a new SQLite store in a new folder, with the dashboard user
/// `user` (password [`PASSWORD`]) and what `seed` adds; `tweak` adjusts its configuration
/// (it gets the folder, for files such as TLS certificates).
pub fn start(
    user: &str,
    tweak: impl FnOnce(&mut ServerConfig, &Path),
    seed: impl FnOnce(&mut dyn Store),
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("p.db").display());
    start_on(url, dir, user, tweak, seed)
}

/// [`start`] over the store `url` (SQLite or PostgreSQL).
pub fn start_on(
    url: String,
    dir: tempfile::TempDir,
    user: &str,
    tweak: impl FnOnce(&mut ServerConfig, &Path),
    seed: impl FnOnce(&mut dyn Store),
) -> Server {
    {
        let mut s = palisade_store::open(&url).unwrap();
        let h = palisade_server::auth::hash_password(PASSWORD).unwrap();
        s.user_set(user, &h, Timestamp::from_secs(1)).unwrap();
        seed(s.as_mut());
    }
    let daemon = Arc::new(FakeDaemon::default());
    let feed = FeedHub::new();
    let mut cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    tweak(&mut cfg, dir.path());
    let handle = palisade_server::spawn(cfg, url.clone(), daemon.clone(), feed.clone()).unwrap();
    Server {
        addr: handle.local_addr(),
        dir,
        url,
        daemon,
        feed,
        handle: Some(handle),
    }
}

/// Points a PostgreSQL URL at a fresh database created for this test (`tag` tells the tests
/// of one process apart).
pub fn postgres_fresh(url: &str, tag: &str) -> String {
    let (head, _db) = url.rsplit_once('/').expect("postgres://…/db");
    let name = format!("palisade_srv_{tag}_{}", std::process::id());
    let ok = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "could not create a test database with psql");
    format!("{head}/{name}")
}

/// An HTTP answer.
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Header fields.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
    out
}

/// One request on a fresh connection (a tiny blocking HTTP/1.1 client).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}
