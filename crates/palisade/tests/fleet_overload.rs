//! Fleet reconnect policy with real `palisade` processes over loopback (issue 18 item 2): an
//! overloaded server refuses new connections at the upgrade with HTTP 503 + `Retry-After`
//! (before any protocol message, so every protocol version and `fleet join` get it) and the
//! agent honours it instead of hammering; an agent whose first `[fleet] server` URL is dead
//! connects through the next one.

#![cfg(feature = "fleet")]

mod common;

use common::fleet::*;
use common::wait_for;
use std::time::{Duration, Instant};

fn connected(scfg: &std::path::Path, name: &str) -> bool {
    agent(&agents(scfg), name).is_some_and(|a| a["connected"] == true)
}

#[test]
fn an_overloaded_server_asks_agents_to_come_back_later_and_they_do() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // At most 2 connections in their handshake at once.
    let scfg = server_cfg_with(dir.path(), port, "max_handshakes = 2\n");
    let acfg = agent_cfg(dir.path(), "web1", port, 5);
    let bcfg = agent_cfg(dir.path(), "web2", port, 5);
    let tok = token(&scfg, &["--uses", "2"]);
    let _server = Proc::start(&scfg, dir.path().join("server.err"));
    wait_for("the fleet listener", 20.0, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let o = join(&acfg, port, &tok);
    assert!(o.status.success(), "{o:?}");

    // Three connections that never finish their TLS handshake (the server gives them 10 s):
    // the server is now over its limit.
    let stalled: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();

    // Enrollment is refused with 503 before any protocol message.
    let o = join(&bcfg, port, &tok);
    assert!(!o.status.success(), "enrolled while overloaded: {o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("busy"), "{err}");

    // The agent is told to come back in 10 s: one refusal, no retry before that.
    let a = Proc::start(&acfg, dir.path().join("web1.err"));
    wait_for("the agent's first refusal", 30.0, || {
        a.log().contains("asked to come back later")
    });
    let busy_msgs = || a.log().matches("asked to come back later").count();
    // Hold the overload for 7 s from the first refusal (the stalled sockets are cut by the
    // server's 10 s handshake timeout only after that).
    let until = t0 + Duration::from_secs(7);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        busy_msgs(),
        1,
        "the agent retried before Retry-After:\n{}",
        a.log()
    );
    assert!(!connected(&scfg, "web1"), "connected while overloaded");
    assert!(a.log().contains("after_secs=10"), "{}", a.log());
    drop(stalled);

    // Once the storm is over it comes back by itself (Retry-After 10 s, jittered to ≤ 15 s).
    wait_for("web1 connected after the overload", 60.0, || {
        connected(&scfg, "web1")
    });
    // And the enrollment works now.
    let o = join(&bcfg, port, &tok);
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn an_agent_connects_through_its_next_server_url_when_the_first_is_dead() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let dead = free_port();
    let scfg = server_cfg(dir.path(), port);
    let acfg = agent_cfg(dir.path(), "web1", port, 5);
    // `[fleet] server` lists a dead server first.
    let text = std::fs::read_to_string(&acfg).unwrap();
    let one = format!("server = \"wss://127.0.0.1:{port}\"");
    assert!(text.contains(&one));
    std::fs::write(
        &acfg,
        text.replace(
            &one,
            &format!("server = [\"wss://127.0.0.1:{dead}\", \"wss://127.0.0.1:{port}\"]"),
        ),
    )
    .unwrap();
    let tok = token(&scfg, &[]);
    let _server = Proc::start(&scfg, dir.path().join("server.err"));
    wait_for("the fleet listener", 20.0, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let o = join(&acfg, port, &tok);
    assert!(o.status.success(), "{o:?}");
    let a = Proc::start(&acfg, dir.path().join("web1.err"));
    wait_for("web1 connected through the second URL", 60.0, || {
        connected(&scfg, "web1")
    });
    let log = a.log();
    assert!(
        log.contains(&format!("127.0.0.1:{dead}")) && log.contains("cannot reach"),
        "the dead URL was not tried first:\n{log}"
    );
}
