//! The API in-process: a server on 127.0.0.1:0 over a temporary SQLite store, with a fake
//! daemon that records what it is asked. A tiny blocking HTTP/1.1 client keeps the test free
//! of extra dependencies.

use ipnet::IpNet;
use palisade_core::{Decision, Event, Origin, Timestamp};
use palisade_server::{FeedHub, FeedItem, LoginLimits, ServerConfig};
use palisade_store::Store;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{request, FakeDaemon, Resp, Server as Env, PASSWORD};

fn ev(ip: &str, secs: i64, failure: bool) -> Event {
    Event {
        time: Timestamp::from_secs(secs),
        ip: ip.parse().unwrap(),
        filter: "sshd".into(),
        rule: "failed_password".into(),
        failure,
        user: Some("root".into()),
        fields: vec![("port".into(), "22".into())],
        evidence: format!("Failed password for root from {ip} port 22 ssh2").into(),
    }
}

fn env_with(limits: LoginLimits, seed: impl FnOnce(&mut dyn Store)) -> Env {
    common::start("alice", |c, _| c.login_limits = limits, seed)
}

fn env() -> Env {
    env_with(LoginLimits::default(), |_| {})
}

/// Logs in; returns (cookie header value, csrf token).
fn login(e: &Env) -> (String, String) {
    let r = request(
        e.addr,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        Some(&json!({"username": "alice", "password": PASSWORD}).to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let set = r.header("set-cookie").unwrap().to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    let csrf = r.json()["csrf_token"].as_str().unwrap().to_owned();
    (cookie, csrf)
}

fn token(e: &Env, scope: &str) -> String {
    let (t, h) = palisade_server::auth::new_api_token();
    let mut s = palisade_store::open(&e.url).unwrap();
    s.token_add("test", scope, &h, Timestamp::from_secs(1))
        .unwrap();
    t
}

fn get(e: &Env, path: &str, auth: (&str, &str)) -> Resp {
    request(e.addr, "GET", path, &[auth], None)
}

#[test]
fn unauthenticated_visitors_get_401_and_the_login_page() {
    let e = env();
    for p in [
        "/api/v1/events",
        "/api/v1/decisions",
        "/api/v1/stats",
        "/api/v1/ips/192.0.2.1",
        "/api/v1/allowlist",
        "/api/v1/jails",
        "/api/v1/feed",
        "/api/v1/auth/me",
        "/metrics",
    ] {
        let r = request(e.addr, "GET", p, &[], None);
        assert_eq!(r.status, 401, "{p}");
        assert_eq!(r.json()["error"], "unauthenticated", "{p}");
    }
    let r = request(
        e.addr,
        "POST",
        "/api/v1/decisions",
        &[("Content-Type", "application/json")],
        Some("{}"),
    );
    assert_eq!(r.status, 401);
    // The dashboard (or its fallback page) is public: it shows the login form.
    let r = request(e.addr, "GET", "/", &[], None);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.header("content-security-policy").is_some());
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    let r = request(e.addr, "GET", "/decisions", &[], None);
    assert_eq!(r.status, 200, "client-side routes get index.html");
    let r = request(e.addr, "GET", "/api/v1/nope", &[], None);
    assert_eq!(r.status, 404);
    let r = request(e.addr, "GET", "/api/v1/health", &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["store"], true);
    assert_eq!(r.json()["status"], "ok");
    assert!(r.json().get("counters").is_none(), "{}", r.text());
    assert!(e.daemon.calls.lock().unwrap().is_empty());
    // IP pages are deep-linkable: a dot in the path does not make it a file.
    for page in ["/ips/203.0.113.7", "/ip/203.0.113.7", "/ips/2001:db8::1"] {
        let r = request(e.addr, "GET", page, &[], None);
        assert_eq!(r.status, 200, "{page}");
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
    }
    for file in ["/assets/gone-1234.js", "/favicon.ico"] {
        assert_eq!(
            request(e.addr, "GET", file, &[], None).status,
            404,
            "{file}"
        );
    }
}

#[test]
fn health_tells_a_signed_in_caller_the_daemon_state() {
    let e = env();
    let t = token(&e, "read");
    let r = get(
        &e,
        "/api/v1/health",
        ("Authorization", &format!("Bearer {t}")),
    );
    assert_eq!(r.status, 200);
    let h = r.json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["daemon"], true);
    assert_eq!(h["counters"]["responder_errors"], 1);
    assert_eq!(e.daemon.calls.lock().unwrap().as_slice(), ["status"]);
}

#[test]
fn login_sets_a_strict_http_only_cookie_and_csrf_guards_writes() {
    let e = env();
    let bad = request(
        e.addr,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        Some(&json!({"username": "alice", "password": "nope"}).to_string()),
    );
    assert_eq!(bad.status, 401);
    assert!(bad.header("set-cookie").is_none());
    let unknown = request(
        e.addr,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        Some(&json!({"username": "mallory", "password": PASSWORD}).to_string()),
    );
    assert_eq!(unknown.status, 401);
    // A cross-site form cannot send JSON: form-encoded logins are refused.
    let form = request(
        e.addr,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("username=alice&password=x"),
    );
    assert_eq!(form.status, 400);

    let r = request(
        e.addr,
        "POST",
        "/api/v1/auth/login",
        &[("Content-Type", "application/json")],
        Some(&json!({"username": "alice", "password": PASSWORD}).to_string()),
    );
    assert_eq!(r.status, 200);
    let set = r.header("set-cookie").unwrap();
    assert!(set.starts_with("palisade_session="), "{set}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set} lacks {flag}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: no Secure flag");
    let cookie = set.split(';').next().unwrap().to_owned();
    let csrf = r.json()["csrf_token"].as_str().unwrap().to_owned();

    let me = get(&e, "/api/v1/auth/me", ("Cookie", &cookie));
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["user"], "alice");
    assert_eq!(me.json()["csrf_token"], csrf.as_str());

    let ban = json!({"target": "203.0.113.9", "duration": "1h"}).to_string();
    let no_csrf = request(
        e.addr,
        "POST",
        "/api/v1/decisions",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        Some(&ban),
    );
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.text());
    let wrong = request(
        e.addr,
        "POST",
        "/api/v1/decisions",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/json"),
            ("X-CSRF-Token", "forged"),
        ],
        Some(&ban),
    );
    assert_eq!(wrong.status, 403);
    assert!(
        e.daemon.calls.lock().unwrap().is_empty(),
        "nothing reached the daemon"
    );
    let ok = request(
        e.addr,
        "POST",
        "/api/v1/decisions",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/json"),
            ("X-CSRF-Token", &csrf),
        ],
        Some(&ban),
    );
    assert_eq!(ok.status, 201, "{}", ok.text());
    assert_eq!(
        e.daemon.calls.lock().unwrap().as_slice(),
        ["ban 203.0.113.9/32 Some(3600) manual ban by alice"]
    );

    // Logout needs the CSRF token too, then the cookie is dead.
    let out = request(
        e.addr,
        "POST",
        "/api/v1/auth/logout",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        None,
    );
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(get(&e, "/api/v1/auth/me", ("Cookie", &cookie)).status, 401);
}

#[test]
fn tokens_have_scopes() {
    let e = env();
    let read = token(&e, "read");
    let admin = token(&e, "admin");
    let rb = format!("Bearer {read}");
    let ab = format!("Bearer {admin}");
    assert_eq!(
        get(&e, "/api/v1/events", ("Authorization", &rb)).status,
        200
    );
    assert_eq!(
        get(&e, "/api/v1/auth/me", ("Authorization", &rb)).json()["scope"],
        "read"
    );
    assert_eq!(
        get(&e, "/api/v1/events", ("Authorization", "Bearer pal_bogus")).status,
        401
    );
    assert_eq!(
        get(&e, "/api/v1/events", ("Authorization", "Basic YTpi")).status,
        401
    );
    let body = json!({"target": "198.51.100.7"}).to_string();
    let r = request(
        e.addr,
        "POST",
        "/api/v1/decisions",
        &[("Authorization", &rb), ("Content-Type", "application/json")],
        Some(&body),
    );
    assert_eq!(r.status, 403, "a read token cannot write");
    let r = request(
        e.addr,
        "POST",
        "/api/v1/decisions",
        &[("Authorization", &ab), ("Content-Type", "application/json")],
        Some(&body),
    );
    assert_eq!(
        r.status,
        201,
        "an admin token needs no CSRF token: {}",
        r.text()
    );
    // Refusals from the daemon map to 422.
    let r = request(
        e.addr,
        "POST",
        "/api/v1/decisions",
        &[("Authorization", &ab), ("Content-Type", "application/json")],
        Some(&json!({"target": "10.1.2.3"}).to_string()),
    );
    assert_eq!(r.status, 422);
    assert!(r.json()["message"].as_str().unwrap().contains("allowlist"));
    let r = request(
        e.addr,
        "POST",
        "/api/v1/decisions",
        &[("Authorization", &ab), ("Content-Type", "application/json")],
        Some(&json!({"target": "not-an-ip"}).to_string()),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn logins_are_rate_limited_per_user_and_per_address() {
    let e = env_with(
        LoginLimits {
            per_ip: 5,
            per_user: 3,
            window: Duration::from_secs(60),
        },
        |_| {},
    );
    let attempt = |user: &str, pw: &str| {
        request(
            e.addr,
            "POST",
            "/api/v1/auth/login",
            &[("Content-Type", "application/json")],
            Some(&json!({"username": user, "password": pw}).to_string()),
        )
    };
    for _ in 0..3 {
        assert_eq!(attempt("alice", "wrong").status, 401);
    }
    let r = attempt("alice", PASSWORD);
    assert_eq!(r.status, 429, "even the right password waits out the limit");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() > 0);
    // Per address: two more failures (any user) reach the address limit.
    assert_eq!(attempt("bob", "x").status, 401);
    assert_eq!(attempt("carol", "x").status, 401);
    assert_eq!(attempt("dave", "x").status, 429);
}

#[test]
fn first_start_creates_an_admin_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("p.db").display());
    let cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    let s = palisade_server::spawn(
        cfg.clone(),
        url.clone(),
        Arc::new(FakeDaemon::default()),
        FeedHub::new(),
    )
    .unwrap();
    s.shutdown();
    let mut st = palisade_store::open(&url).unwrap();
    assert_eq!(st.user_count().unwrap(), 1);
    let admin = st.user("admin").unwrap().unwrap();
    assert!(admin.password_hash.starts_with("$argon2id$"));
    assert!(
        !format!("{admin:?}").contains("argon2"),
        "Debug hides the hash"
    );
    drop(st);
    let s = palisade_server::spawn(
        cfg,
        url.clone(),
        Arc::new(FakeDaemon::default()),
        FeedHub::new(),
    )
    .unwrap();
    s.shutdown();
    let mut st = palisade_store::open(&url).unwrap();
    assert_eq!(
        st.user("admin").unwrap().unwrap().password_hash,
        admin.password_hash
    );
}

fn seeded() -> Env {
    env_with(LoginLimits::default(), |s| {
        let now = palisade_core::SystemClock;
        use palisade_core::Clock;
        let t = now.now().secs();
        let mut evs = Vec::new();
        for i in 0..30 {
            evs.push(ev("192.0.2.1", t - 3600 + i, true));
        }
        for i in 0..5 {
            evs.push(ev("198.51.100.2", t - 7200 + i, i % 2 == 0));
        }
        s.record_events("sshd", &evs).unwrap();
        s.record_events("nginx", &[ev("192.0.2.1", t - 60, true)])
            .unwrap();
        s.insert_decision(&Decision {
            id: 0,
            target: "192.0.2.1/32".parse().unwrap(),
            jail: "sshd".into(),
            origin: Origin::Jail,
            reason: "5 failures in 10m".into(),
            created: Timestamp::from_secs(t - 3000),
            expires: Some(Timestamp::from_secs(t + 3600)),
            simulated: false,
            level: 0,
        })
        .unwrap();
        s.insert_decision(&Decision {
            id: 0,
            target: "198.51.100.0/24".parse().unwrap(),
            jail: "manual".into(),
            origin: Origin::Manual,
            reason: "old".into(),
            created: Timestamp::from_secs(t - 90_000),
            expires: Some(Timestamp::from_secs(t - 80_000)),
            simulated: false,
            level: 0,
        })
        .unwrap();
    })
}

#[test]
fn every_read_endpoint_answers() {
    let e = seeded();
    let (cookie, csrf) = login(&e);
    let c = ("Cookie", cookie.as_str());

    // Events: filters and cursor pagination.
    let p1 = get(&e, "/api/v1/events?limit=20", c).json();
    assert_eq!(p1["items"].as_array().unwrap().len(), 20);
    let cur = p1["next_cursor"].as_i64().unwrap();
    let p2 = get(&e, &format!("/api/v1/events?limit=20&cursor={cur}"), c).json();
    assert_eq!(p2["items"].as_array().unwrap().len(), 16);
    assert!(p2.get("next_cursor").is_none());
    assert!(p2["items"][0]["id"].as_i64().unwrap() < cur);
    let only = get(&e, "/api/v1/events?ip=198.51.100.2&jail=sshd", c).json();
    assert_eq!(only["items"].as_array().unwrap().len(), 5);
    assert_eq!(only["items"][0]["fields"]["port"], "22");
    let nginx = get(&e, "/api/v1/events?jail=nginx", c).json();
    assert_eq!(nginx["items"].as_array().unwrap().len(), 1);
    let since = get(&e, "/api/v1/events?since=2999-01-01T00:00:00Z", c).json();
    assert!(since["items"].as_array().unwrap().is_empty());
    assert_eq!(get(&e, "/api/v1/events?since=yesterday", c).status, 400);
    assert_eq!(get(&e, "/api/v1/events?ip=bad", c).status, 400);

    // Decisions.
    let act = get(&e, "/api/v1/decisions", c).json();
    assert_eq!(act["items"].as_array().unwrap().len(), 1);
    assert_eq!(act["items"][0]["target"], "192.0.2.1/32");
    assert_eq!(act["items"][0]["in_force"], true);
    let all = get(&e, "/api/v1/decisions?status=all", c).json();
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let by_ip = get(&e, "/api/v1/decisions?status=all&ip=198.51.100.9", c).json();
    assert_eq!(by_ip["items"][0]["target"], "198.51.100.0/24");
    let by_origin = get(&e, "/api/v1/decisions?status=all&origin=manual", c).json();
    assert_eq!(by_origin["items"].as_array().unwrap().len(), 1);
    assert_eq!(get(&e, "/api/v1/decisions?status=maybe", c).status, 400);

    // IP detail.
    let d = get(&e, "/api/v1/ips/192.0.2.1", c).json();
    assert_eq!(d["history"]["failures"], 31);
    assert_eq!(d["history"]["times_banned"], 1);
    assert_eq!(d["history"]["events"], 31);
    assert_eq!(d["jails"][0], json!({"jail": "sshd", "events": 30}));
    assert_eq!(d["jails"][1], json!({"jail": "nginx", "events": 1}));
    let tl: u64 = d["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["events"].as_u64().unwrap())
        .sum();
    assert_eq!(tl, 31);
    assert_eq!(d["current_ban"]["target"], "192.0.2.1/32");
    assert_eq!(d["recent_events"].as_array().unwrap().len(), 31);
    let unseen = get(&e, "/api/v1/ips/2001:db8::1", c).json();
    assert!(unseen.get("history").is_none() && unseen.get("current_ban").is_none());
    assert_eq!(get(&e, "/api/v1/ips/nope", c).status, 400);

    // Stats.
    let s = get(&e, "/api/v1/stats", c).json();
    assert_eq!(s["range"], "24h");
    assert_eq!(s["events"].as_array().unwrap().len(), 24);
    assert_eq!(s["totals"]["events"], 36);
    assert_eq!(s["totals"]["failures"], 34);
    assert_eq!(s["totals"]["bans"], 1);
    assert_eq!(s["totals"]["active_bans"], 1);
    assert_eq!(s["most_offending_ip"]["ip"], "192.0.2.1");
    assert_eq!(s["top_ips"].as_array().unwrap().len(), 2);
    assert_eq!(s["top_jails"][0]["jail"], "sshd");
    let bans: u64 = s["bans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["bans"].as_u64().unwrap())
        .sum();
    assert_eq!(bans, 1);
    let m = get(&e, "/api/v1/stats?range=30d", c).json();
    assert_eq!(
        (m["bucket"].as_str(), m["events"].as_array().unwrap().len()),
        (Some("day"), 30)
    );
    assert_eq!(m["totals"]["bans"], 2);
    assert_eq!(
        get(&e, "/api/v1/stats?range=7d", c).json()["events"]
            .as_array()
            .unwrap()
            .len(),
        168
    );
    assert_eq!(get(&e, "/api/v1/stats?range=1y", c).status, 400);

    // Jails, meta, metrics (from the daemon's status).
    let j = get(&e, "/api/v1/jails", c).json();
    assert_eq!(j["jails"][0]["name"], "sshd");
    assert_eq!(j["active_bans"], 2);
    let meta = get(&e, "/api/v1/meta", c).json();
    assert!(meta["version"].is_string());
    let m = get(&e, "/metrics", c);
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let t = m.text();
    for want in [
        "palisade_up 1",
        "palisade_lines_read_total 1234",
        "palisade_events_total 56",
        "palisade_decisions_total 7",
        "palisade_responder_errors_total 1",
        "palisade_jail_failures_total{jail=\"sshd\"} 50",
        "palisade_reloads_total 0",
        "palisade_api_store_seconds_count",
        "# TYPE palisade_api_store_seconds histogram",
    ] {
        assert!(t.contains(want), "metrics lack {want:?}:\n{t}");
    }
    let _ = csrf;
}

#[test]
fn ip_page_is_bounded_and_older_events_are_paged() {
    const IP: &str = "203.0.113.9";
    let now = palisade_core::Clock::now(&palisade_core::SystemClock).secs();
    let e = env_with(LoginLimits::default(), |s| {
        // 120 events over the last 5 days, 10 older than the timeline's 30 days.
        let recent: Vec<Event> = (0..120).map(|i| ev(IP, now - i * 3_600, true)).collect();
        s.record_events("sshd", &recent[..100]).unwrap();
        s.record_events("nginx", &recent[100..]).unwrap();
        let old: Vec<Event> = (0..10)
            .map(|i| ev(IP, now - 40 * 86_400 - i, false))
            .collect();
        s.record_events("sshd", &old).unwrap();
    });
    let t = token(&e, "read");
    let auth = format!("Bearer {t}");
    let c = ("Authorization", auth.as_str());

    let d = get(&e, &format!("/api/v1/ips/{IP}"), c).json();
    assert_eq!(d["jails"][0], json!({"jail": "sshd", "events": 110}));
    assert_eq!(d["jails"][1], json!({"jail": "nginx", "events": 20}));
    let tl = d["timeline"].as_array().unwrap();
    assert_eq!(
        tl.len(),
        120,
        "one point per hour with events, last 30 days only"
    );
    assert!(tl
        .windows(2)
        .all(|w| w[0]["t"].as_str() < w[1]["t"].as_str()));
    assert_eq!(
        tl.iter()
            .map(|p| p["events"].as_u64().unwrap())
            .sum::<u64>(),
        120
    );
    // The latest 50 events, newest first, and a cursor for the rest.
    let first = d["recent_events"].as_array().unwrap();
    assert_eq!(first.len(), 50);
    let mut ids: Vec<i64> = first.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let mut cursor = d["recent_events_cursor"].as_i64().expect("a cursor");
    assert_eq!(cursor, *ids.last().unwrap());
    let mut pages = 0;
    loop {
        let p = get(
            &e,
            &format!("/api/v1/events?ip={IP}&cursor={cursor}&limit=50"),
            c,
        )
        .json();
        ids.extend(
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_i64().unwrap()),
        );
        pages += 1;
        match p.get("next_cursor").and_then(Value::as_i64) {
            Some(n) => cursor = n,
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(ids.len(), 130);
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );

    // An address with few events: no cursor.
    let few = env_with(LoginLimits::default(), |s| {
        s.record_events("sshd", &[ev(IP, now, true)]).unwrap();
    });
    let t = token(&few, "read");
    let auth = format!("Bearer {t}");
    let d = get(
        &few,
        &format!("/api/v1/ips/{IP}"),
        ("Authorization", auth.as_str()),
    )
    .json();
    assert_eq!(d["recent_events"].as_array().unwrap().len(), 1);
    assert!(d.get("recent_events_cursor").is_none());
}

#[test]
fn writes_go_through_the_daemon_and_the_allowlist_is_stored() {
    let e = seeded();
    let (cookie, csrf) = login(&e);
    let h = [
        ("Cookie", cookie.as_str()),
        ("Content-Type", "application/json"),
        ("X-CSRF-Token", csrf.as_str()),
    ];
    // Unban by decision id and by target.
    let id = get(&e, "/api/v1/decisions", h[0]).json()["items"][0]["id"]
        .as_i64()
        .unwrap();
    let r = request(
        e.addr,
        "DELETE",
        &format!("/api/v1/decisions/{id}"),
        &h,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["lifted"], 1);
    assert_eq!(
        request(e.addr, "DELETE", "/api/v1/decisions/999999", &h, None).status,
        404
    );
    let r = request(
        e.addr,
        "POST",
        "/api/v1/decisions/unban",
        &h,
        Some(r#"{"target":"2001:db8::/64"}"#),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        e.daemon.calls.lock().unwrap().as_slice(),
        ["unban 192.0.2.1/32", "unban 2001:db8::/64"]
    );

    // Allowlist CRUD, pushed to the daemon.
    let r = request(
        e.addr,
        "POST",
        "/api/v1/allowlist",
        &h,
        Some(r#"{"net":"192.0.2.77","comment":"office"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = request(
        e.addr,
        "POST",
        "/api/v1/allowlist",
        &h,
        Some(r#"{"net":"10.9.0.0/16"}"#),
    );
    let items = r.json()["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 2);
    assert_eq!(items[0]["net"], "192.0.2.77/32");
    assert_eq!(items[0]["comment"], "office");
    assert_eq!(r.json()["daemon_updated"], true);
    assert_eq!(e.daemon.allow.lock().unwrap().len(), 2);
    assert_eq!(
        request(
            e.addr,
            "POST",
            "/api/v1/allowlist",
            &h,
            Some(r#"{"net":"300.1.1.1"}"#)
        )
        .status,
        400
    );
    let id = items[0]["id"].as_i64().unwrap();
    let r = request(
        e.addr,
        "DELETE",
        &format!("/api/v1/allowlist/{id}"),
        &h,
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        e.daemon.allow.lock().unwrap().as_slice(),
        ["10.9.0.0/16".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        request(
            e.addr,
            "DELETE",
            &format!("/api/v1/allowlist/{id}"),
            &h,
            None
        )
        .status,
        404
    );
    let l = get(&e, "/api/v1/allowlist", h[0]).json();
    assert_eq!(l["items"][0]["net"], "10.9.0.0/16");

    // Bodies are capped.
    let big = format!(
        "{{\"net\":\"1.2.3.4\",\"comment\":\"{}\"}}",
        "x".repeat(100_000)
    );
    assert_eq!(
        request(e.addr, "POST", "/api/v1/allowlist", &h, Some(&big)).status,
        413
    );
    let r = request(e.addr, "POST", "/api/v1/decisions", &h, Some("{not json"));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_request");
}

#[test]
fn live_feed_pushes_events_and_decisions() {
    let e = seeded();
    let (cookie, _) = login(&e);
    let mut s = TcpStream::connect(e.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /api/v1/feed HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("200"), "{line}");
    // Wait until the subscription exists, then publish.
    for _ in 0..100 {
        if e.feed.has_subscribers() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    e.feed.publish(FeedItem::event(
        "sshd",
        &ev("192.0.2.55", 1_700_000_000, true),
    ));
    e.feed.publish(FeedItem::Ban {
        decision: Decision {
            id: 9,
            target: "192.0.2.55/32".parse().unwrap(),
            jail: "sshd".into(),
            origin: Origin::Jail,
            reason: "r".into(),
            created: Timestamp::from_secs(1_700_000_000),
            expires: None,
            simulated: false,
            level: 0,
        },
    });
    let mut got = Vec::new();
    while got.len() < 2 {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let l = line.trim();
        if let Some(ev) = l.strip_prefix("event: ") {
            got.push(ev.to_owned());
        }
        if let Some(d) = l.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(d).unwrap();
            assert!(v["type"].is_string());
            if v["type"] == "event" {
                assert_eq!(v["ip"], "192.0.2.55");
                assert_eq!(v["jail"], "sshd");
            }
        }
    }
    assert_eq!(got, ["event", "ban"]);
}

#[test]
fn openapi_document_is_valid_and_complete() {
    let e = env();
    let r = request(e.addr, "GET", "/api/v1/openapi.json", &[], None);
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["title"], "Palisade API");
    let paths = doc["paths"].as_object().unwrap();
    for (p, methods) in [
        ("/api/v1/health", &["get"][..]),
        ("/api/v1/auth/login", &["post"]),
        ("/api/v1/auth/logout", &["post"]),
        ("/api/v1/auth/me", &["get"]),
        ("/api/v1/events", &["get"]),
        ("/api/v1/decisions", &["get", "post"]),
        ("/api/v1/decisions/{id}", &["delete"]),
        ("/api/v1/decisions/unban", &["post"]),
        ("/api/v1/ips/{ip}", &["get"]),
        ("/api/v1/stats", &["get"]),
        ("/api/v1/allowlist", &["get", "post"]),
        ("/api/v1/allowlist/{id}", &["delete"]),
        ("/api/v1/jails", &["get"]),
        ("/api/v1/meta", &["get"]),
        ("/api/v1/feed", &["get"]),
        ("/api/v1/openapi.json", &["get"]),
        ("/metrics", &["get"]),
        ("/api/v1/audit/findings", &["get"]),
        ("/api/v1/audit/events", &["get"]),
        ("/api/v1/audit/runs", &["get"]),
        ("/api/v1/fleet/agents", &["get"]),
        ("/api/v1/fleet/agents/{name}/revoke", &["post"]),
        ("/api/v1/fleet/decisions", &["get"]),
        ("/api/v1/fleet/block", &["post"]),
        ("/api/v1/fleet/overview", &["get"]),
    ] {
        for m in methods {
            assert!(paths[p][m].is_object(), "{m} {p} missing");
            assert!(
                paths[p][m]["responses"].is_object(),
                "{m} {p} has no responses"
            );
        }
    }
    // Every $ref points at a schema that exists.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        out.push(x.as_str().unwrap().to_owned());
                    } else {
                        refs(x, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 20);
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(schemas.contains_key(name), "dangling {r}");
    }
    let sec = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(sec.contains_key("session") && sec.contains_key("token"));
}

#[test]
fn deleting_a_user_ends_their_sessions() {
    let e = env();
    let (cookie, _) = login(&e);
    let me = get(&e, "/api/v1/auth/me", ("Cookie", &cookie));
    assert_eq!(me.status, 200, "{}", me.text());
    // As `palisade user delete alice` does, from another process.
    let mut s = palisade_store::open(&e.url).unwrap();
    assert!(s.user_remove("alice").unwrap());
    assert!(!s.user_remove("alice").unwrap(), "gone once");
    // Sessions are re-checked against the store every few seconds (as after a password
    // change): the deleted account's session ends within that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let me = loop {
        let me = get(&e, "/api/v1/auth/me", ("Cookie", &cookie));
        if me.status == 401 || std::time::Instant::now() > deadline {
            break me;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert_eq!(me.status, 401, "{}", me.text());
    // Re-creating the name does not revive the old session.
    let h = palisade_server::auth::hash_password(PASSWORD).unwrap();
    s.user_set("alice", &h, Timestamp::from_secs(2)).unwrap();
    let me = get(&e, "/api/v1/auth/me", ("Cookie", &cookie));
    assert_eq!(me.status, 401);
}

/// Audit rows as `palisade-audit` stores them (JSON bodies beside the queried columns).
fn audit_rows(
    rule: &str,
    subject: &str,
    severity: &str,
    data: Value,
) -> (palisade_store::audit::AuditFinding, Value) {
    let key = format!("123456789012|us-east-1|{rule}|{subject}|tcp 8080");
    let body = json!({
        "account": "123456789012", "region": "us-east-1", "rule": rule, "subject": subject,
        "detail": "tcp 8080", "severity": severity, "data": data,
        "fingerprint": format!("fp-{data}"), "first_seen": "2026-01-01T00:00:00Z",
        "last_seen": "2026-01-02T00:00:00Z",
        "explanation": "A security group lets a range in.", "remediation": "Narrow it."
    });
    let f = palisade_store::audit::AuditFinding {
        key,
        account: "123456789012".into(),
        region: "us-east-1".into(),
        rule: rule.into(),
        subject: subject.into(),
        severity: severity.into(),
        fingerprint: format!("fp-{data}"),
        first_seen: "2026-01-01T00:00:00Z".into(),
        last_seen: "2026-01-02T00:00:00Z".into(),
        body: body.to_string(),
    };
    (f, body)
}

fn audit_event(
    kind: &str,
    f: &palisade_store::audit::AuditFinding,
    body: &Value,
    before: Option<Value>,
    time: &str,
) -> palisade_store::audit::AuditEvent {
    let mut b = body.clone();
    b["event"] = kind.into();
    b["key"] = f.key.clone().into();
    b["time"] = time.into();
    if let Some(x) = before {
        b["before"] = x;
    }
    palisade_store::audit::AuditEvent {
        run_id: 0,
        time: time.into(),
        kind: kind.into(),
        key: f.key.clone(),
        rule: f.rule.clone(),
        subject: f.subject.clone(),
        severity: f.severity.clone(),
        fingerprint: f.fingerprint.clone(),
        body: b.to_string(),
    }
}

#[test]
fn audit_findings_history_with_diff_and_runs() {
    use palisade_store::audit::AuditRun;
    let e = env();
    let (a1, a1b) = audit_rows(
        "secgroup_suspicious_ingress",
        "sg-1 (web)",
        "high",
        json!({"ranges": ["10.1.2.0/24"], "ports": "8080"}),
    );
    let (a2, a2b) = audit_rows(
        "secgroup_suspicious_ingress",
        "sg-1 (web)",
        "high",
        json!({"ranges": ["10.1.0.0/16"], "ports": "8080"}),
    );
    let (b, bb) = audit_rows(
        "ec2_securitygroup_allow_ingress_from_internet_to_all_ports",
        "sg-2 (open)",
        "critical",
        json!({"ranges": ["0.0.0.0/0"]}),
    );
    let (c, cb) = audit_rows(
        "elb_internet_facing",
        "lb1",
        "low",
        json!({"scheme": "internet-facing"}),
    );
    {
        let mut s = palisade_store::audit::open(&e.url).unwrap();
        let run = |t: &str, accounts: &str, new: i64, changed: i64, errors: &str| AuditRun {
            started: t.into(),
            finished: t.into(),
            accounts: accounts.into(),
            new,
            changed,
            errors: errors.into(),
            ..AuditRun::default()
        };
        let t1 = "2026-01-01T00:00:00Z";
        let t2 = "2026-01-02T00:00:00Z";
        s.record_run(
            &run(t1, "123456789012", 3, 0, "[]"),
            &[
                audit_event("new", &a1, &a1b, None, t1),
                audit_event("new", &b, &bb, None, t1),
                audit_event("new", &c, &cb, None, t1),
            ],
            &[a1.clone(), b.clone(), c.clone()],
        )
        .unwrap();
        s.record_run(
            &run(t2, "123456789012", 0, 1, "[]"),
            &[audit_event(
                "changed",
                &a2,
                &a2b,
                Some(a1b["data"].clone()),
                t2,
            )],
            &[a2.clone(), b.clone(), c.clone()],
        )
        .unwrap();
        s.record_run(
            &run(
                "2026-01-03T00:00:00Z",
                "",
                0,
                0,
                r#"["sts: connection refused"]"#,
            ),
            &[],
            &[a2.clone(), b.clone(), c.clone()],
        )
        .unwrap();
    }
    // A read-only token reads everything; nobody else does.
    let read = format!("Bearer {}", token(&e, "read"));
    let auth = ("Authorization", read.as_str());
    for p in [
        "/api/v1/audit/findings",
        "/api/v1/audit/events",
        "/api/v1/audit/runs",
    ] {
        assert_eq!(request(e.addr, "GET", p, &[], None).status, 401, "{p}");
        assert_eq!(get(&e, p, auth).status, 200, "{p}");
    }

    // Open findings, most severe first, counted by severity.
    let r = get(&e, "/api/v1/audit/findings", auth).json();
    let sev: Vec<&str> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["severity"].as_str().unwrap())
        .collect();
    assert_eq!(sev, ["critical", "high", "low"]);
    assert_eq!(r["total"], 3);
    assert_eq!(
        r["by_severity"],
        json!({"critical": 1, "high": 1, "medium": 0, "low": 1})
    );
    let high = &r["items"][1];
    assert_eq!(high["key"], a2.key.as_str());
    assert_eq!(high["detail"], "tcp 8080");
    assert_eq!(high["data"]["ranges"], json!(["10.1.0.0/16"]));
    assert_eq!(high["explanation"], "A security group lets a range in.");
    // Filters.
    let r = get(&e, "/api/v1/audit/findings?severity=critical", auth).json();
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
    assert_eq!(r["items"][0]["subject"], "sg-2 (open)");
    assert_eq!(r["total"], 1);
    let r = get(&e, "/api/v1/audit/findings?rule=elb_internet_facing", auth).json();
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
    assert_eq!(r["items"][0]["subject"], "lb1");
    let r = get(&e, "/api/v1/audit/findings?limit=1", auth).json();
    assert_eq!(
        (r["items"].as_array().unwrap().len(), r["total"].as_u64()),
        (1, Some(3))
    );
    assert_eq!(
        get(&e, "/api/v1/audit/findings?severity=urgent", auth).status,
        400
    );

    // One finding's history, newest first, the change with its diff.
    let key = a2
        .key
        .replace(' ', "%20")
        .replace('|', "%7C")
        .replace('(', "%28")
        .replace(')', "%29");
    let r = get(&e, &format!("/api/v1/audit/events?key={key}"), auth).json();
    let items = r["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|x| x["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["changed", "new"]);
    assert_eq!(items[0]["before"]["ranges"], json!(["10.1.2.0/24"]));
    assert_eq!(
        items[0]["diff"],
        json!([
            {"path": "ranges", "before": "10.1.2.0/24"},
            {"path": "ranges", "after": "10.1.0.0/16"}
        ])
    );
    assert!(items[1].get("diff").is_none() && items[1].get("before").is_none());
    assert_eq!(r["finding"]["key"], a2.key.as_str());
    // Every finding's events, or one kind.
    let r = get(&e, "/api/v1/audit/events", auth).json();
    assert_eq!(r["items"].as_array().unwrap().len(), 4);
    assert!(r.get("finding").is_none());
    let r = get(&e, "/api/v1/audit/events?kind=changed", auth).json();
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
    assert_eq!(get(&e, "/api/v1/audit/events?kind=gone", auth).status, 400);

    // Runs, newest first; the failed one says why.
    let r = get(&e, "/api/v1/audit/runs", auth).json();
    let runs = r["items"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0]["ok"], false);
    assert_eq!(runs[0]["errors"], json!(["sts: connection refused"]));
    assert_eq!(runs[1]["ok"], true);
    assert_eq!(runs[1]["changed"], 1);
    assert_eq!(runs[1]["accounts"], json!(["123456789012"]));
    let r = get(&e, "/api/v1/audit/runs?limit=1", auth).json();
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
}

/// `GET /api/v1/fleet/agents`: the fleet server's agents with the fields of
/// `palisade fleet agents --json` (the same report), for a read-only token too.
#[test]
fn fleet_agents_lists_the_enrolled_agents() {
    use palisade_store::fleet::AgentUpdate;
    let e = env();
    let read = format!("Bearer {}", token(&e, "read"));
    let auth = ("Authorization", read.as_str());
    // No agents yet (not a fleet server): an empty list.
    let r = get(&e, "/api/v1/fleet/agents", auth);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["items"], serde_json::json!([]));
    assert_eq!(
        request(e.addr, "GET", "/api/v1/fleet/agents", &[], None).status,
        401
    );
    let mut f = palisade_store::fleet::open(&e.url).unwrap();
    let t0 = palisade_core::Timestamp::from_secs(1_000_000);
    f.token_add("h", 2, None, t0).unwrap();
    for (name, id) in [("web2", "b2"), ("web1", "a1")] {
        f.enroll("h", name, id, "k", t0, false).unwrap().unwrap();
    }
    f.agent_update(
        "a1",
        &AgentUpdate {
            connected: Some(true),
            last_seen: Some(t0),
            version: Some("9.9.9".into()),
            protocol: Some(2),
            head_seq: Some(7),
            clock_offset_ms: Some(-45_000),
            ban_cursor: Some(3),
        },
    )
    .unwrap();
    f.revoke("web2").unwrap();
    let r = get(&e, "/api/v1/fleet/agents", auth);
    assert_eq!(r.status, 200);
    let mut items = r.json()["items"].clone();
    let now = palisade_core::Clock::now(&palisade_core::SystemClock);
    let want = serde_json::to_value(palisade_store::fleet::agent_reports(f.as_mut(), now).unwrap())
        .unwrap();
    // The report's fields, plus the API's own: the event rate and the fleet bans.
    for a in items.as_array_mut().unwrap() {
        let a = a.as_object_mut().unwrap();
        assert_eq!(a.remove("events_per_sec"), Some(json!(0.0)));
        assert_eq!(a.remove("fleet_bans"), Some(json!(0)));
    }
    assert_eq!(items, want);
    let items = r.json()["items"].clone();
    let a = &items[0];
    assert_eq!(a["name"], "web1");
    assert_eq!(a["version"], "9.9.9");
    assert_eq!(a["backlog"], 7);
    assert_eq!(a["skewed"], true);
    // Last seen long ago: not connected whatever the row says.
    assert_eq!(a["connected"], false);
    assert_eq!(a["ban_cursor"], 3);
    assert_eq!(items[1]["name"], "web2");
    assert_eq!(items[1]["revoked"], true);
    assert!(a.get("key_hash").is_none());
}
