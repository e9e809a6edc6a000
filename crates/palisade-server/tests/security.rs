//! The security regression suite (issue 19's scorecard, kept): authentication on every API
//! route and method/path variant (enumerated from the OpenAPI document, so a new route is
//! covered the day it is added), CSRF, token scopes on every write, SQL injection in every
//! query parameter, path traversal on the asset routes, size limits, the `Host` check,
//! connection caps and timeouts, session lifetime, and escaped logging of untrusted names.
//!
//! Everything runs against a real server on loopback over a real SQLite store; the daemon is a
//! recorder (the daemon side has its own end-to-end tests in the `palisade` crate).

use palisade_core::Timestamp;
use palisade_server::ServerConfig;
use palisade_store::{DecisionQuery, EventQuery};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

mod common;
use common::{Server as Env, PASSWORD};

/// Log output of this test binary (a global subscriber; the server logs from its threads).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static L: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    L.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                palisade_core::log_directives("debug"),
            ))
            .with_ansi(false)
            .with_writer(move || LogWriter(w.clone()))
            .try_init();
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);
impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn env_with(tweak: impl FnOnce(&mut ServerConfig)) -> Env {
    logs();
    common::start(
        "alice",
        |c, _| tweak(c),
        |s| {
            // An enrolled fleet agent named as path parameters are filled in (`sshd`), so a
            // refused revoke would show in the store's fingerprint.
            let f = s.fleet_views().as_fleet();
            f.token_add("t", 1, None, Timestamp::from_secs(1)).unwrap();
            f.enroll("t", "sshd", "id1", "k", Timestamp::from_secs(1), false)
                .unwrap()
                .unwrap();
        },
    )
}

fn env() -> Env {
    env_with(|_| {})
}

struct Resp {
    status: u16,
    head: String,
    body: String,
}

/// Sends raw bytes on a fresh connection and reads the answer to its end.
fn raw(addr: SocketAddr, bytes: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Resp {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn request(e: &Env, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        e.addr,
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    raw(e.addr, req.as_bytes())
}

fn login(e: &Env) -> (String, String) {
    let r = request(
        e,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        &json!({"username": "alice", "password": PASSWORD}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie = r
        .head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let body = r
        .body
        .rsplit("\r\n")
        .find(|l| l.starts_with('{'))
        .unwrap_or(&r.body);
    let csrf = serde_json::from_str::<Value>(body).unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    (cookie, csrf)
}

fn token(e: &Env, scope: &str) -> String {
    let (t, h) = palisade_server::auth::new_api_token();
    let mut s = palisade_store::open(&e.url).unwrap();
    s.token_add("t", scope, &h, Timestamp::from_secs(1))
        .unwrap();
    t
}

/// Every (method, concrete path) of the OpenAPI document, with path parameters filled in.
fn operations(e: &Env) -> Vec<(String, String, Value)> {
    let r = request(e, "GET", "/api/v1/openapi.json", &[], "");
    assert_eq!(r.status, 200);
    let doc: Value = serde_json::from_str(&r.body).unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{id}", "1")
            .replace("{ip}", "192.0.2.1")
            .replace("{name}", "sshd");
        assert!(!concrete.contains('{'), "unfilled path parameter in {path}");
        for (method, op) in item.as_object().unwrap() {
            ops.push((method.to_uppercase(), concrete.clone(), op.clone()));
        }
    }
    assert!(
        ops.len() >= 15,
        "the OpenAPI document lists too few operations: {ops:?}"
    );
    ops
}

const PUBLIC: &[&str] = &[
    "/api/v1/health",
    "/api/v1/openapi.json",
    "/api/v1/auth/login",
];

fn is_public(path: &str) -> bool {
    PUBLIC.contains(&path)
}

/// A fingerprint of everything a request could change in the store.
fn store_state(e: &Env) -> String {
    let mut s = palisade_store::open(&e.url).unwrap();
    let d = s
        .decisions(&DecisionQuery {
            limit: Some(10_000),
            ..Default::default()
        })
        .unwrap()
        .len();
    let ev = s
        .events(&EventQuery {
            limit: Some(10_000),
            ..Default::default()
        })
        .unwrap()
        .len();
    let mut f = palisade_store::fleet::open(&e.url).unwrap();
    let fleet = format!(
        "fleet_log={} revoked={}",
        f.log_head().unwrap(),
        f.agents().unwrap().iter().filter(|a| a.revoked).count()
    );
    format!(
        "users={} tokens={} allow={} decisions={d} events={ev} {fleet} alice={}",
        s.user_count().unwrap(),
        s.tokens().unwrap().len(),
        s.allowlist().unwrap().len(),
        s.user("alice").unwrap().unwrap().password_hash
    )
}

/// An answer without data: an error status, or the dashboard's static page (paths outside
/// the API's exact spelling fall through to the dashboard, which holds no data).
fn no_data(r: &Resp) -> bool {
    match r.status {
        400 | 401 | 404 | 405 | 413 | 421 => true,
        200 => {
            r.head
                .to_ascii_lowercase()
                .contains("content-type: text/html")
                && !r.body.contains("\"items\"")
                && !r.body.contains("203.0.113")
        }
        _ => false,
    }
}

#[test]
fn every_route_and_variant_needs_authentication() {
    let e = env();
    let ops = operations(&e);
    for (method, path, _) in &ops {
        if is_public(path) {
            continue;
        }
        let body = if method == "GET" { "" } else { "{}" };
        let variants = [
            path.clone(),
            format!("{path}/"),
            format!("{path}?x=1"),
            format!("{path}#frag"),
            path.replacen("/api/v1", "/api/v1/", 1),
            path.replacen("/api/v1", "/API/V1", 1),
            path.replacen("/api/v1", "/api/v1/.", 1),
            path.replacen("/api/v1", "/api/./v1", 1),
            path.replacen("/api/v1", "/api/v1%2f", 1),
        ];
        for v in &variants {
            for m in [method.as_str(), "HEAD", "OPTIONS", "PUT", "PATCH"] {
                let r = request(&e, m, v, &[("Content-Type", "application/json")], body);
                assert!(
                    no_data(&r),
                    "{m} {v} answered {} without credentials: {}",
                    r.status,
                    r.body
                );
                // Wrong credentials are no better than none.
                let r = request(
                    &e,
                    m,
                    v,
                    &[
                        ("Authorization", "Bearer pal_not_a_token"),
                        ("Cookie", "palisade_session=forged"),
                    ],
                    body,
                );
                assert!(
                    no_data(&r),
                    "{m} {v} answered {} with forged credentials",
                    r.status
                );
            }
        }
    }
    for p in ["/metrics", "/metrics?x=1", "/api/v1/feed?x=1"] {
        assert_eq!(request(&e, "GET", p, &[], "").status, 401, "{p}");
    }
    for p in ["/metrics/", "/METRICS", "/metrics/."] {
        let r = request(&e, "GET", p, &[], "");
        assert!(
            no_data(&r) && !r.body.contains("palisade_"),
            "{p}: {}",
            r.body
        );
    }
    assert!(
        e.daemon.writes().is_empty(),
        "an unauthenticated call reached the daemon"
    );
}

#[test]
fn read_tokens_and_missing_csrf_tokens_are_refused_on_every_write() {
    let e = env();
    let read = token(&e, "read");
    let before = store_state(&e);
    let (cookie, csrf) = login(&e);
    let (_other_cookie, other_csrf) = login(&e);
    let ops = operations(&e);
    let writes: Vec<_> = ops
        .iter()
        .filter(|(m, p, _)| m != "GET" && !is_public(p))
        .collect();
    assert!(writes.len() >= 5, "{writes:?}");
    let bodies = [
        json!({"target": "203.0.113.9", "duration": "1h", "reason": "x"}).to_string(),
        json!({"net": "203.0.113.0/24", "comment": "x"}).to_string(),
    ];
    for (method, path, _) in &writes {
        for body in &bodies {
            let bearer = format!("Bearer {read}");
            let r = request(
                &e,
                method,
                path,
                &[
                    ("Authorization", &bearer),
                    ("Content-Type", "application/json"),
                ],
                body,
            );
            assert_eq!(r.status, 403, "read token: {method} {path}: {}", r.body);
            // CSRF: a session without the header, with a wrong one, with another session's,
            // with an empty one, or with the token in the query string.
            for h in [None, Some("wrong"), Some(other_csrf.as_str()), Some("")] {
                let mut headers = vec![
                    ("Cookie", cookie.as_str()),
                    ("Content-Type", "application/json"),
                ];
                if let Some(h) = h {
                    headers.push(("X-CSRF-Token", h));
                }
                let r = request(&e, method, path, &headers, body);
                assert_eq!(r.status, 403, "csrf {h:?}: {method} {path}: {}", r.body);
            }
            let q = format!("{path}?csrf_token={csrf}&x_csrf_token={csrf}");
            let r = request(
                &e,
                method,
                &q,
                &[
                    ("Cookie", cookie.as_str()),
                    ("Content-Type", "application/json"),
                ],
                body,
            );
            assert_eq!(r.status, 403, "csrf in the query: {method} {path}");
        }
    }
    // A cross-site form cannot log in (JSON only).
    let r = request(
        &e,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("username=alice&password={PASSWORD}"),
    );
    assert!(matches!(r.status, 400 | 415), "{}", r.status);
    assert!(
        e.daemon.writes().is_empty(),
        "{:?}",
        e.daemon.calls.lock().unwrap()
    );
    assert_eq!(store_state(&e), before, "a refused write changed the store");
}

#[test]
fn sql_injection_in_every_query_parameter_has_no_effect() {
    let e = env();
    let admin = format!("Bearer {}", token(&e, "admin"));
    let before = store_state(&e);
    let attacks = [
        "' OR '1'='1",
        "1; DROP TABLE users; --",
        "1' UNION SELECT password_hash FROM users --",
        "\") OR 1=1 --",
        "%27%20OR%201%3D1--",
        "1)/**/OR/**/1=1",
        "'; UPDATE users SET password_hash='x' --",
        "\u{0}",
        "192.0.2.1' --",
    ];
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    let mut tried = 0;
    for (method, path, op) in operations(&e) {
        if method != "GET" {
            continue;
        }
        let params: Vec<String> = op["parameters"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|p| p["in"] == "query")
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for p in &params {
            for a in attacks {
                let url = format!("{path}?{p}={}", enc(a));
                let r = request(&e, "GET", &url, &[("Authorization", &admin)], "");
                assert!(r.status < 500, "GET {url}: {} {}", r.status, r.body);
                assert!(!r.body.contains("$argon2"), "GET {url} leaked a hash");
                tried += 1;
            }
        }
        // And in path parameters.
        if path.contains("192.0.2.1") {
            for a in attacks {
                let url = path.replace("192.0.2.1", &enc(a));
                let r = request(&e, "GET", &url, &[("Authorization", &admin)], "");
                assert!(r.status < 500 && r.status != 200, "GET {url}: {}", r.status);
                tried += 1;
            }
        }
    }
    assert!(tried >= 50, "only {tried} injection requests");
    assert_eq!(
        store_state(&e),
        before,
        "an injection string changed the store"
    );
}

#[test]
fn path_traversal_on_asset_routes_serves_nothing_outside() {
    let e = env();
    for p in [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/assets/../../../../etc/passwd",
        "/assets/..%2f..%2f..%2fCargo.toml",
        "/assets/%2e%2e%5c%2e%2e%5cCargo.toml",
        "//etc/passwd",
        "/.%2e/.%2e/etc/passwd",
        "/assets/....//....//etc/passwd",
        "/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        "/index.html/../../../etc/passwd",
        "/assets/%00../../etc/passwd",
        "/./Cargo.toml",
        "/../Cargo.toml",
        "/src/lib.rs",
    ] {
        let r = request(&e, "GET", p, &[], "");
        assert!(!r.body.contains("root:x:0:0"), "{p} served /etc/passwd");
        assert!(!r.body.contains("[package]"), "{p} served a Cargo.toml");
        assert!(
            !r.body.contains("#![warn(missing_docs)]"),
            "{p} served source"
        );
        assert!(r.status != 500, "{p}");
    }
}

#[test]
fn request_size_limits_hold() {
    let e = env();
    let admin = format!("Bearer {}", token(&e, "admin"));
    // A body over 64 KiB.
    let big = format!(
        "{{\"net\":\"203.0.113.0/24\",\"comment\":\"{}\"}}",
        "x".repeat(70_000)
    );
    let r = request(
        &e,
        "POST",
        "/api/v1/allowlist",
        &[
            ("Authorization", &admin),
            ("Content-Type", "application/json"),
        ],
        &big,
    );
    assert_eq!(r.status, 413, "{}", r.body);
    // A header block over the buffer limit is refused, not buffered.
    let huge = format!(
        "GET /api/v1/health HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\n\r\n",
        e.addr,
        "a".repeat(200_000)
    );
    let r = raw(e.addr, huge.as_bytes());
    assert!(
        r.status == 431 || r.status == 400 || r.status == 0,
        "{}",
        r.status
    );
    // Many headers.
    let mut many = format!("GET /api/v1/health HTTP/1.1\r\nHost: {}\r\n", e.addr);
    for i in 0..500 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let r = raw(e.addr, many.as_bytes());
    assert_ne!(r.status, 200, "500 headers accepted");
    // A login name is cut, not stored or echoed whole.
    let r = request(
        &e,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        &json!({"username": "u".repeat(60_000), "password": "x"}).to_string(),
    );
    assert_eq!(r.status, 401);
    assert!(e.daemon.writes().is_empty());
}

#[test]
fn unknown_host_names_are_refused() {
    let e = env_with(|c| c.conn.allowed_hosts = vec!["palisade.example.org".into()]);
    let get = |host: &str| {
        raw(
            e.addr,
            format!("GET /api/v1/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .status
    };
    assert_eq!(get("evil.example"), 421, "a rebinding name must be refused");
    assert_eq!(get("127.0.0.1.evil.example:9380"), 421);
    assert_eq!(get(&e.addr.to_string()), 200);
    assert_eq!(get("localhost"), 200);
    assert_eq!(get("palisade.example.org:443"), 200);
}

/// A connection from `src` (any 127/8 address works on Linux loopback).
fn connect_from(src: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.bind(SocketAddr::new(src, 0))?;
        let c = s.connect(addr).await?;
        let c = c.into_std()?;
        c.set_nonblocking(false)?;
        Ok(c)
    })
}

/// Whether the server closed `s` (EOF or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn idle_connections_are_capped_per_address_and_closed_after_the_header_timeout() {
    let e = env_with(|c| {
        c.conn.max_connections = 12;
        c.conn.per_address = 4;
        c.conn.header = Duration::from_secs(2);
    });
    let a: IpAddr = "127.0.0.1".parse().unwrap();
    let mut idle: Vec<TcpStream> = (0..4).map(|_| connect_from(a, e.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // A fifth idle connection from the same address is closed at once.
    let mut fifth = connect_from(a, e.addr).unwrap();
    assert!(
        closed_within(&mut fifth, Duration::from_secs(1)),
        "per-address cap not applied"
    );
    // Another address is still served, and so is the global cap's remainder.
    let b: IpAddr = "127.0.0.2".parse().unwrap();
    let mut s = connect_from(b, e.addr).unwrap();
    write!(
        s,
        "GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // Fill the global cap from many addresses: the next connection is refused.
    let mut more = Vec::new();
    for i in 3..=10u8 {
        more.push(connect_from(IpAddr::from([127, 0, 0, i]), e.addr).unwrap());
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut over = connect_from("127.0.0.20".parse().unwrap(), e.addr).unwrap();
    assert!(
        closed_within(&mut over, Duration::from_secs(1)),
        "global cap not applied"
    );
    // Idle connections (no request header) are closed after the header timeout.
    let start = Instant::now();
    for c in idle.iter_mut().chain(more.iter_mut()) {
        assert!(
            closed_within(c, Duration::from_secs(10)),
            "an idle connection stayed open"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    // With the idle ones gone, the server takes connections again.
    let r = raw(
        e.addr,
        b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    // A keep-alive connection idle after its answer is closed too.
    let mut k = connect_from(a, e.addr).unwrap();
    write!(k, "GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    k.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(k.read(&mut buf).unwrap() > 0);
    assert!(
        closed_within(&mut k, Duration::from_secs(10)),
        "idle keep-alive stayed open"
    );
}

#[test]
fn sessions_end_on_password_change_and_after_their_lifetime() {
    let e = env_with(|c| c.session_max = Duration::from_secs(3));
    let (cookie, _) = login(&e);
    let me = |c: &str| request(&e, "GET", "/api/v1/auth/me", &[("Cookie", c)], "").status;
    assert_eq!(me(&cookie), 200);
    // Absolute lifetime: however busy, the session ends.
    let deadline = Instant::now() + Duration::from_secs(15);
    while me(&cookie) == 200 {
        assert!(
            Instant::now() < deadline,
            "the session outlived its absolute lifetime"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // A password change ends a fresh session (checked against the store within seconds).
    let e = env();
    let (cookie, _) = login(&e);
    assert_eq!(
        request(&e, "GET", "/api/v1/auth/me", &[("Cookie", &cookie)], "").status,
        200
    );
    {
        let mut s = palisade_store::open(&e.url).unwrap();
        let h = palisade_server::auth::hash_password("another password 2").unwrap();
        s.user_set("alice", &h, Timestamp::from_secs(2)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while request(&e, "GET", "/api/v1/auth/me", &[("Cookie", &cookie)], "").status == 200 {
        assert!(
            Instant::now() < deadline,
            "the session survived a password change"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn untrusted_login_names_are_logged_escaped_on_one_line() {
    let e = env();
    let name =
        "mallory\r\nJan  1 00:00:00 host palisade: INFO dashboard login user=admin\x1b[2J\x1b[31m";
    let r = request(
        &e,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        &json!({"username": name, "password": "x"}).to_string(),
    );
    assert_eq!(r.status, 401);
    std::thread::sleep(Duration::from_millis(200));
    let out = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("mallory")).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].contains("dashboard login failed"), "{}", lines[0]);
    assert!(lines[0].contains("mallory\\r\\nJan"), "{}", lines[0]);
    assert!(!out.contains('\x1b'), "an escape sequence reached the log");
    assert!(
        !out.lines().any(|l| l.starts_with("Jan  1")),
        "a forged line reached the log"
    );
}
