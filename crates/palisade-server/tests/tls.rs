//! HTTPS in-process: a self-signed certificate made at test time (rcgen), the server on
//! 127.0.0.1:0 with it, and a blocking rustls client that trusts only that certificate.

use palisade_server::{ServerConfig, TlsFiles};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

mod common;
use common::PASSWORD;

/// A server, and the certificate (DER) when it serves HTTPS.
struct Server {
    _server: common::Server,
    addr: SocketAddr,
    cert: Option<CertificateDer<'static>>,
}

fn start(tls: bool) -> Server {
    start_with(tls, |_| {})
}

fn start_with(tls: bool, tweak: impl FnOnce(&mut ServerConfig)) -> Server {
    let mut cert = None;
    let s = common::start(
        "alice",
        |cfg, dir| {
            cfg.tls = tls.then(|| {
                let ck = rcgen::generate_simple_self_signed(vec![
                    "localhost".into(),
                    "127.0.0.1".into(),
                ])
                .unwrap();
                let files = TlsFiles {
                    cert: dir.join("cert.pem"),
                    key: dir.join("key.pem"),
                };
                std::fs::write(&files.cert, ck.cert.pem()).unwrap();
                std::fs::write(&files.key, ck.signing_key.serialize_pem()).unwrap();
                cert = Some(ck.cert.der().clone());
                files
            });
            tweak(cfg);
        },
        |_| {},
    );
    let url = s.handle.as_ref().unwrap().url();
    assert_eq!(url.starts_with("https://"), tls, "{url}");
    Server {
        addr: s.addr,
        _server: s,
        cert,
    }
}

/// The raw request for a login.
fn login_request(addr: SocketAddr) -> String {
    let body = json!({"username": "alice", "password": PASSWORD}).to_string();
    format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn get_request(addr: SocketAddr, path: &str, cookie: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n")
}

/// Sends `req` over plain TCP; everything the server sent back (possibly nothing).
fn plain(addr: SocketAddr, req: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    raw
}

/// Sends `req` over TLS, trusting only `cert`, checking the name `host`.
fn https(addr: SocketAddr, cert: &CertificateDer<'static>, host: &str, req: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    // The server closes after the answer (Connection: close); a missing close_notify is
    // not what is tested here.
    if let Err(e) = tls.read_to_end(&mut raw) {
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }
    raw
}

fn status_and_head(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    (status, head)
}

fn set_cookie(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("set-cookie")
                .then(|| v.trim().to_owned())
        })
        .expect("a Set-Cookie header")
}

#[test]
fn https_login_sets_a_secure_cookie_and_the_session_works() {
    let s = start(true);
    let cert = s.cert.as_ref().unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let raw = https(s.addr, cert, host, &login_request(s.addr));
        let (status, head) = status_and_head(&raw);
        assert_eq!(status, 200, "{head}");
        let cookie = set_cookie(&head);
        let attrs: Vec<&str> = cookie.split(';').map(str::trim).collect();
        assert!(attrs.contains(&"Secure"), "{cookie}");
        assert!(attrs.contains(&"HttpOnly"), "{cookie}");
        assert!(attrs.contains(&"SameSite=Strict"), "{cookie}");
        // The session works over the same TLS listener.
        let pair = attrs[0];
        let me = https(
            s.addr,
            cert,
            host,
            &get_request(s.addr, "/api/v1/auth/me", pair),
        );
        let (status, head) = status_and_head(&me);
        assert_eq!(status, 200, "{head}");
        assert!(String::from_utf8_lossy(&me).contains("\"user\":\"alice\""));
        let health = https(
            s.addr,
            cert,
            host,
            &get_request(s.addr, "/api/v1/health", pair),
        );
        assert_eq!(status_and_head(&health).0, 200);
    }
}

#[test]
fn plain_http_to_the_tls_port_gets_no_http_answer() {
    let s = start(true);
    let raw = plain(s.addr, &login_request(s.addr));
    assert!(
        !raw.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&raw)
    );
    // At most a TLS alert record (content type 21), then the connection is closed.
    assert!(raw.is_empty() || raw[0] == 0x15, "{raw:?}");
    // The listener still serves TLS afterwards.
    let ok = https(
        s.addr,
        s.cert.as_ref().unwrap(),
        "localhost",
        &login_request(s.addr),
    );
    assert_eq!(status_and_head(&ok).0, 200);
}

#[test]
fn a_client_that_does_not_trust_the_certificate_is_refused() {
    let s = start(true);
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other = other.cert.der().clone();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(other).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(s.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let err = tls
        .write_all(login_request(s.addr).as_bytes())
        .and_then(|_| tls.read_to_end(&mut Vec::new()))
        .expect_err("the handshake must fail");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[test]
fn plain_http_login_cookie_is_not_secure() {
    let s = start(false);
    assert!(s.cert.is_none());
    let raw = plain(s.addr, &login_request(s.addr));
    let (status, head) = status_and_head(&raw);
    assert_eq!(status, 200, "{head}");
    let cookie = set_cookie(&head);
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(!cookie.split(';').any(|a| a.trim() == "Secure"), "{cookie}");
}

#[test]
fn silent_clients_count_against_the_caps_and_lose_the_handshake_race() {
    use std::io::Read;
    let s = start_with(true, |c| {
        c.conn.per_address = 2;
        c.conn.handshake = Duration::from_secs(4);
    });
    let silent: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(s.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A third connection from the same address while two handshakes are pending: closed.
    let mut third = std::net::TcpStream::connect(s.addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 16];
    let r = third.read(&mut b);
    assert!(
        matches!(&r, Ok(0))
            || r.as_ref().is_err_and(|e| !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )),
        "a connection over the per-address cap was kept: {r:?}"
    );
    // The silent ones are dropped once the handshake time is up.
    for mut c in silent {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        match c.read(&mut b) {
            Ok(0) => {}
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "a silent TLS client stayed connected"
            ),
            Ok(n) => panic!("{n} bytes to a client that never said hello"),
        }
    }
}
