//! The login limiter under a distributed, concurrent guessing attack (issue 19, finding 6):
//! 16 addresses × 60 concurrent attempts against one user name. Its own test binary, so the
//! process's peak memory (VmHWM) measures this server alone.

use palisade_server::LoginLimits;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::PASSWORD;

/// Peak resident memory of this process, in KiB.
fn vm_hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn attempt(src: IpAddr, addr: SocketAddr, user: &str, password: &str) -> u16 {
    post(
        src,
        addr,
        json!({"username": user, "password": password}).to_string(),
    )
    .await
}

async fn post(src: IpAddr, addr: SocketAddr, body: String) -> u16 {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(src, 0)).unwrap();
    let mut c = s.connect(addr).await.unwrap();
    let req = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn distributed_concurrent_guessing_is_bounded_and_the_owner_still_logs_in() {
    let limits = LoginLimits::default();
    let (per_ip, per_user) = (limits.per_ip, limits.per_user);
    let server = common::start(
        "admin",
        |cfg, _| {
            cfg.login_limits = limits;
            // The connection caps are not what this test is about.
            cfg.conn.max_connections = 4096;
            cfg.conn.per_address = 1024;
        },
        |_| {},
    );
    let addr = server.addr;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    const ADDRESSES: u8 = 16;
    const PER_ADDRESS: usize = 60;
    let burst = |bodies: &dyn Fn(u8, usize) -> String| -> Vec<u16> {
        rt.block_on(async {
            let mut tasks = Vec::new();
            for a in 0..ADDRESSES {
                let src = IpAddr::from([127, 0, 1, a + 1]);
                for i in 0..PER_ADDRESS {
                    let body = bodies(a, i);
                    tasks.push(tokio::spawn(async move { post(src, addr, body).await }));
                }
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
    };
    // Warm up: one verification, and the same burst of connections with bodies that never
    // reach the hash (the connections' own memory). Measure from there.
    let owner: IpAddr = "127.0.9.1".parse().unwrap();
    assert_eq!(rt.block_on(attempt(owner, addr, "admin", PASSWORD)), 200);
    let warm = burst(&|_, _| json!({"username": "admin"}).to_string());
    assert!(
        warm.iter().all(|c| (400..500).contains(c) && *c != 429),
        "{warm:?}"
    );
    let base = vm_hwm_kib();

    let codes = burst(&|a, i| {
        json!({"username": "admin", "password": format!("guess-{a}-{i}")}).to_string()
    });
    let evaluated = codes.iter().filter(|c| **c != 429).count();

    assert!(
        codes.iter().all(|c| matches!(c, 401 | 429)),
        "unexpected answers: {:?}",
        codes
            .iter()
            .filter(|c| !matches!(c, 401 | 429))
            .collect::<Vec<_>>()
    );
    // The configured limit: per_ip per address; and once the name is locked, only an
    // address without a failure gets one more try, so at most per_user + one per address.
    let configured = usize::from(ADDRESSES) * per_ip as usize;
    assert!(
        evaluated <= configured,
        "{evaluated} guesses evaluated > {configured}"
    );
    assert!(
        evaluated <= per_user as usize + usize::from(ADDRESSES),
        "{evaluated} guesses evaluated"
    );
    assert!(
        evaluated >= per_user as usize,
        "the limiter refused everything: {evaluated}"
    );

    // argon2 runs at most MAX_VERIFYING at once: peak memory grows by a few verifications'
    // worth (19 MiB each by default), not by one per concurrent request.
    let grown_mib = (vm_hwm_kib() - base) / 1024;
    let bound = 19 * palisade_server::auth::MAX_VERIFYING as u64 + 40;
    assert!(
        grown_mib <= bound,
        "peak RSS grew by {grown_mib} MiB (bound {bound})"
    );

    // The owner, from their usual address, logs in while the name is under attack; so does
    // an address with no failure. An attacking address does not, even with the password.
    assert_eq!(rt.block_on(attempt(owner, addr, "admin", PASSWORD)), 200);
    assert_eq!(
        rt.block_on(attempt(
            "127.0.9.2".parse().unwrap(),
            addr,
            "admin",
            PASSWORD
        )),
        200
    );
    assert_eq!(
        rt.block_on(attempt(
            "127.0.1.1".parse().unwrap(),
            addr,
            "admin",
            PASSWORD
        )),
        429
    );
    drop(server);
    drop(rt);
}
