//! The fleet's REST API (issue 16 item 8) on a real server over a real store, SQLite and
//! PostgreSQL (the latter when `PALISADE_TEST_PG_URL` is set, e.g. under
//! `scripts/with-postgres.sh`; required when `PALISADE_REQUIRE_PG=1`): events with their host
//! and the `host` filter, the agents with their event rate, the fleet ban log, pushing a block
//! list, revoking an agent, the fleet overview, and the live feed filtered by host. The fleet
//! tables are filled through the store's own fleet paths (`enroll`, `ingest`, `log_append`),
//! as the fleet server fills them.

use palisade_core::{Clock, Event, SystemClock, Timestamp};
use palisade_server::FeedItem;
use palisade_store::fleet::{FleetLogEntry, FleetStore};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::{request, Resp, Server as Env};

fn ev(ip: &str, time: Timestamp) -> Event {
    Event {
        time,
        ip: ip.parse().unwrap(),
        filter: "sshd".into(),
        rule: "failed_password".into(),
        failure: true,
        user: None,
        fields: vec![],
        evidence: format!("Failed password for root from {ip} port 22 ssh2").into(),
    }
}

fn now() -> Timestamp {
    SystemClock.now()
}

fn token(e: &Env, scope: &str) -> String {
    let (t, h) = palisade_server::auth::new_api_token();
    let mut s = palisade_store::open(&e.url).unwrap();
    s.token_add(scope, scope, &h, Timestamp::from_secs(1))
        .unwrap();
    format!("Bearer {t}")
}

fn get(e: &Env, path: &str, auth: &str) -> Resp {
    request(e.addr, "GET", path, &[("Authorization", auth)], None)
}

fn post(e: &Env, path: &str, auth: &str, body: &Value) -> Resp {
    request(
        e.addr,
        "POST",
        path,
        &[
            ("Authorization", auth),
            ("Content-Type", "application/json"),
        ],
        Some(&body.to_string()),
    )
}

/// Stores `n` events of agent `id` (as the fleet server's ingest does), continuing its
/// sequence.
fn ship(f: &mut dyn FleetStore, id: &str, ips: &[&str]) {
    let mark = f.high_water(id, 1).unwrap();
    let t = now();
    let batch: Vec<_> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| (mark + 1 + i as u64, "sshd".to_string(), ev(ip, t)))
        .collect();
    let last = mark + ips.len() as u64;
    let r = f.ingest(id, 1, last, &batch).unwrap();
    assert_eq!(r.stored, ips.len() as u64);
}

fn hosts(r: &Resp) -> Vec<Value> {
    r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["host"].clone())
        .collect()
}

fn story(e: &Env) {
    let read = token(e, "read");
    let admin = token(e, "admin");
    let mut f = palisade_store::fleet::open(&e.url).unwrap();
    let t0 = now();
    f.token_add("h", 3, None, t0).unwrap();
    for (name, id) in [("web1", "a1"), ("web2", "b2")] {
        f.enroll("h", name, id, "k", t0, false).unwrap().unwrap();
    }
    {
        let mut s = palisade_store::open(&e.url).unwrap();
        s.record_events("sshd", &[ev("192.0.2.1", t0), ev("192.0.2.2", t0)])
            .unwrap();
    }
    ship(
        f.as_mut(),
        "a1",
        &["198.51.100.1", "198.51.100.2", "198.51.100.3"],
    );
    ship(f.as_mut(), "b2", &["198.51.100.9"]);

    // Events carry their host; the filter narrows them.
    let r = get(e, "/api/v1/events", &read);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut all = hosts(&r);
    all.sort_by_key(|v| v.to_string());
    assert_eq!(
        all,
        vec![
            json!("web1"),
            json!("web1"),
            json!("web1"),
            json!("web2"),
            json!(null),
            json!(null)
        ]
    );
    let r = get(e, "/api/v1/events?host=web1", &read);
    assert_eq!(hosts(&r), vec![json!("web1"); 3]);
    let ips: Vec<String> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ip"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ips, ["198.51.100.3", "198.51.100.2", "198.51.100.1"]);
    // Paged with the cursor, the filter holds.
    let r = get(e, "/api/v1/events?host=web1&limit=2", &read);
    let cursor = r.json()["next_cursor"].as_i64().unwrap();
    let r = get(
        e,
        &format!("/api/v1/events?host=web1&limit=2&cursor={cursor}"),
        &read,
    );
    assert_eq!(hosts(&r), vec![json!("web1")]);
    assert!(r.json().get("next_cursor").is_none());
    let r = get(e, "/api/v1/events?host=%40local", &read);
    assert_eq!(hosts(&r), vec![json!(null); 2]);
    assert_eq!(
        get(e, "/api/v1/events?host=nobody", &read).json()["items"],
        json!([])
    );
    for bad in ["web1%27%20OR%201%3D1", "a%2Fb", &"x".repeat(65), "%20@x"] {
        let r = get(e, &format!("/api/v1/events?host={bad}"), &read);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    // The IP page's events carry their host too.
    let r = get(e, "/api/v1/ips/198.51.100.9", &read);
    assert_eq!(r.json()["recent_events"][0]["host"], "web2");

    // Agents: events per second over the last minute.
    let r = get(e, "/api/v1/fleet/agents", &read);
    assert_eq!(r.status, 200);
    let a = r.json()["items"].clone();
    assert_eq!(a[0]["name"], "web1");
    assert_eq!(a[0]["events"], 3);
    assert_eq!(a[0]["events_per_sec"], json!(3.0 / 60.0));
    assert_eq!(a[1]["events_per_sec"], json!(1.0 / 60.0));

    // A block list: admin only, every entry and agent checked, all or nothing.
    let body = json!({"targets": ["203.0.113.7", "203.0.113.0/28", "2001:db8::/64"],
                      "agents": ["web1"], "duration": "1d", "reason": "reviewed"});
    assert_eq!(post(e, "/api/v1/fleet/block", &read, &body).status, 403);
    for (bad, why) in [
        (
            json!({"targets": ["203.0.113.7", "nonsense"]}),
            "targets[1]",
        ),
        (json!({"targets": ["0.0.0.0/0"]}), "not bannable"),
        (json!({"targets": ["224.0.0.1"]}), "not bannable"),
        (json!({"targets": []}), "no address"),
        (
            json!({"targets": ["203.0.113.7"], "agents": ["ghost"]}),
            "unknown or revoked",
        ),
        (
            json!({"targets": ["203.0.113.7"], "agents": []}),
            "no agent",
        ),
        (
            json!({"targets": ["203.0.113.7"], "agents": ["a b"]}),
            "no agent name",
        ),
        (
            json!({"targets": ["203.0.113.7"], "duration": "soon"}),
            "duration",
        ),
        (json!({"targets": "203.0.113.7"}), ""),
    ] {
        let r = post(e, "/api/v1/fleet/block", &admin, &bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(r.text().contains(why), "{bad}: {}", r.text());
    }
    assert_eq!(
        f.log_head().unwrap(),
        0,
        "a refused block appended something"
    );
    let r = post(e, "/api/v1/fleet/block", &admin, &body);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["appended"], 3);
    let log = f.log_since(0, 10).unwrap();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|l| l.scope == Some(vec!["web1".to_string()])
        && l.jail == "fleet-block"
        && l.reason == "reviewed"
        && l.expires.is_some()));
    // A local ban web2 shared (origin web2, every agent).
    f.log_append(&FleetLogEntry {
        seq: 0,
        action: "ban".into(),
        target: "192.0.2.77/32".parse().unwrap(),
        jail: "sshd".into(),
        reason: "shared".into(),
        created: now(),
        expires: None,
        origin: Some("web2".into()),
        scope: None,
    })
    .unwrap();

    // The fleet ban log: in force, by host.
    let targets = |r: &Resp| -> Vec<String> {
        r.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["target"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = get(e, "/api/v1/fleet/decisions", &read);
    assert_eq!(r.status, 200);
    assert_eq!(
        targets(&r),
        [
            "192.0.2.77/32",
            "2001:db8::/64",
            "203.0.113.0/28",
            "203.0.113.7/32"
        ]
    );
    let items = r.json()["items"].clone();
    assert_eq!(items[0]["origin"], "fleet");
    assert_eq!(items[0]["origin_agent"], "web2");
    assert!(items[0].get("scope").is_none());
    assert_eq!(items[1]["scope"], json!(["web1"]));
    assert!(items
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["in_force"] == true));
    // web2 took one and gets it; the block list is web1's only.
    let r = get(e, "/api/v1/fleet/decisions?host=web2", &read);
    assert_eq!(targets(&r), ["192.0.2.77/32"]);
    let r = get(e, "/api/v1/fleet/decisions?host=web1", &read);
    assert_eq!(targets(&r).len(), 4);
    let r = get(e, "/api/v1/fleet/decisions?host=%40local", &read);
    assert_eq!(r.json()["items"], json!([]));
    // The whole log, paged.
    let r = get(e, "/api/v1/fleet/decisions?status=all&limit=3", &read);
    assert_eq!(targets(&r).len(), 3);
    let c = r.json()["next_cursor"].as_i64().unwrap();
    let r = get(
        e,
        &format!("/api/v1/fleet/decisions?status=all&limit=3&cursor={c}"),
        &read,
    );
    assert_eq!(targets(&r), ["203.0.113.7/32"]);
    assert_eq!(
        get(e, "/api/v1/fleet/decisions?status=maybe", &read).status,
        400
    );
    // Local decisions belong to this host: an agent's filter selects none of them.
    let r = get(e, "/api/v1/decisions?host=web1&status=all", &read);
    assert_eq!(r.json()["items"], json!([]));

    // The overview: agents connected of total, events and fleet bans per agent.
    let r = get(e, "/api/v1/fleet/overview", &read);
    assert_eq!(r.status, 200, "{}", r.text());
    let o = r.json();
    assert_eq!(o["agents_total"], 2);
    assert_eq!(o["agents_connected"], 0);
    assert_eq!(o["fleet_bans"], 4);
    assert_eq!(o["events_per_sec"], json!(4.0 / 60.0));
    assert_eq!(
        o["hosts"],
        json!([
            {"host": "web1", "connected": false, "events": 3, "events_per_sec": 3.0 / 60.0, "fleet_bans": 4},
            {"host": "web2", "connected": false, "events": 1, "events_per_sec": 1.0 / 60.0, "fleet_bans": 1},
        ])
    );

    // The live feed by host: web1's events only, with their host; fleet bans that concern it.
    let (cookie, csrf) = login(e);
    let rx = feed(e, "/api/v1/feed?host=web1", &cookie);
    e.feed
        .publish(FeedItem::event("sshd", &ev("192.0.2.200", now())));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen: Vec<Value> = Vec::new();
    let mut k = 0;
    while !seen.iter().any(|v| v["type"] == "event") {
        assert!(
            Instant::now() < deadline,
            "no web1 event on the feed: {seen:?}"
        );
        // The feed starts at the store's head when someone listens: ship until one shows.
        k += 1;
        ship(f.as_mut(), "a1", &[&format!("198.51.100.{}", 100 + k)]);
        ship(f.as_mut(), "b2", &["198.51.100.250"]);
        while let Ok(v) = rx.recv_timeout(Duration::from_millis(1500)) {
            seen.push(v);
        }
    }
    for v in &seen {
        assert_eq!(v["type"], "event", "{v}");
        assert_eq!(v["host"], "web1", "{v}");
        assert_ne!(v["ip"], "192.0.2.200");
    }
    let r = request(
        e.addr,
        "POST",
        "/api/v1/fleet/block",
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
            ("Content-Type", "application/json"),
        ],
        Some(&json!({"targets": ["203.0.113.99"], "agents": ["web1"]}).to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let v = loop {
        let v = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a fleet_decision");
        if v["type"] == "fleet_decision" {
            break v;
        }
    };
    assert_eq!(v["target"], "203.0.113.99/32");
    assert_eq!(v["scope"], json!(["web1"]));
    assert!(v.get("expires").is_none());
    assert_eq!(
        request(
            e.addr,
            "GET",
            "/api/v1/feed?host=bad%20name",
            &[("Cookie", &cookie)],
            None
        )
        .status,
        400
    );

    // Revoke: admin only, known names only, then refused by the store's agent list.
    let r = post(e, "/api/v1/fleet/agents/web2/revoke", &read, &json!({}));
    assert_eq!(r.status, 403);
    let r = post(e, "/api/v1/fleet/agents/ghost/revoke", &admin, &json!({}));
    assert_eq!(r.status, 404);
    let r = post(e, "/api/v1/fleet/agents/a%20b/revoke", &admin, &json!({}));
    assert_eq!(r.status, 400);
    let r = post(e, "/api/v1/fleet/agents/web2/revoke", &admin, &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["revoked"], "web2");
    assert!(f
        .agents()
        .unwrap()
        .iter()
        .any(|a| a.name == "web2" && a.revoked));
    let r = post(e, "/api/v1/fleet/agents/web2/revoke", &admin, &json!({}));
    assert_eq!(r.status, 404, "revoked twice");
    let r = get(e, "/api/v1/fleet/agents", &read);
    assert_eq!(r.json()["items"][1]["revoked"], true);
    assert_eq!(r.json()["items"][1]["fleet_bans"], 0);
    // A block list to a revoked agent is refused.
    let r = post(
        e,
        "/api/v1/fleet/block",
        &admin,
        &json!({"targets": ["203.0.113.5"], "agents": ["web2"]}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        get(e, "/api/v1/fleet/overview", &read).json()["agents_total"],
        1
    );
}

fn login(e: &Env) -> (String, String) {
    let r = request(
        e.addr,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        Some(&json!({"username": "alice", "password": common::PASSWORD}).to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = r.json()["csrf_token"].as_str().unwrap().to_owned();
    (cookie, csrf)
}

/// Subscribes to the live feed at `path`; its items' JSON data arrive on the channel.
fn feed(e: &Env, path: &str, cookie: &str) -> mpsc::Receiver<Value> {
    let mut s = TcpStream::connect(e.addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("200"), "{line}");
    for _ in 0..200 {
        if e.feed.has_subscribers() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if let Some(d) = line.trim().strip_prefix("data: ") {
                if let Ok(v) = serde_json::from_str::<Value>(d) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

#[test]
fn fleet_api_sqlite() {
    let e = common::start("alice", |_, _| {}, |_| {});
    story(&e);
}

#[test]
fn fleet_api_postgres() {
    let Ok(url) = std::env::var("PALISADE_TEST_PG_URL") else {
        return palisade_testkit::require_or_skip("PG", "PALISADE_TEST_PG_URL is not set");
    };
    let url = common::postgres_fresh(&url, "fleet");
    let e = common::start_on(
        url,
        tempfile::tempdir().unwrap(),
        "alice",
        |_, _| {},
        |_| {},
    );
    story(&e);
}
