//! The store queries the server needs, told identically on SQLite and PostgreSQL (the latter
//! when `PALISADE_TEST_PG_URL` is set, e.g. under `scripts/with-postgres.sh`; required when
//! `PALISADE_REQUIRE_PG=1`).

use palisade_core::{Decision, Event, Origin, Timestamp};
use palisade_store::Store;

mod common;

const H: i64 = 3_600;

fn ev(ip: &str, secs: i64, failure: bool) -> Event {
    Event {
        time: Timestamp::from_secs(secs),
        ip: ip.parse().unwrap(),
        filter: "sshd".into(),
        rule: "r".into(),
        failure,
        user: None,
        fields: vec![],
        evidence: "line".into(),
    }
}

fn ban(target: &str, created: i64, expires: Option<i64>) -> Decision {
    Decision {
        id: 0,
        target: target.parse().unwrap(),
        jail: "sshd".into(),
        origin: Origin::Jail,
        reason: "r".into(),
        created: Timestamp::from_secs(created),
        expires: expires.map(Timestamp::from_secs),
        simulated: false,
        level: 0,
    }
}

fn story(s: &mut dyn Store) {
    let base = 1_000 * H; // an hour boundary
    s.record_events(
        "sshd",
        &[
            ev("192.0.2.1", base + 10, true),
            ev("192.0.2.1", base + 20, true),
            ev("::ffff:192.0.2.1", base + H + 5, false),
            ev("2001:db8::1", base + 30, true),
        ],
    )
    .unwrap();
    s.record_events("nginx", &[ev("192.0.2.1", base + 2 * H, true)])
        .unwrap();

    // Hourly rollup, kept by the trigger.
    let hours = s
        .event_hours(
            Timestamp::from_secs(base),
            Timestamp::from_secs(base + 3 * H),
        )
        .unwrap();
    let got: Vec<(i64, &str, u64, u64)> = hours
        .iter()
        .map(|h| (h.hour.secs(), h.jail.as_str(), h.count, h.failures))
        .collect();
    assert_eq!(
        got,
        [
            (base, "sshd", 3, 3),
            (base + H, "sshd", 1, 0),
            (base + 2 * H, "nginx", 1, 1)
        ]
    );
    // `since` inside an hour starts at the next one.
    assert_eq!(
        s.event_hours(
            Timestamp::from_secs(base + 1),
            Timestamp::from_secs(base + 2 * H)
        )
        .unwrap()
        .len(),
        1
    );

    let id = s
        .insert_decision(&ban("192.0.2.1/32", base + 40, Some(base + 10 * H)))
        .unwrap();
    s.insert_decision(&ban("2001:db8::/64", base + H + 1, None))
        .unwrap();
    s.insert_decision(&ban("198.51.100.0/24", base + 50, Some(base + 60)))
        .unwrap();
    let bans = s
        .ban_hours(
            Timestamp::from_secs(base),
            Timestamp::from_secs(base + 5 * H),
        )
        .unwrap();
    assert_eq!(
        bans.iter()
            .map(|h| (h.hour.secs(), h.count))
            .collect::<Vec<_>>(),
        [(base, 2), (base + H, 1)]
    );
    assert_eq!(
        s.active_decision_count(Timestamp::from_secs(base + 2 * H))
            .unwrap(),
        2
    );
    // The total behind a page: the query's filters, not its limit.
    let count = |s: &mut dyn Store, q: palisade_store::DecisionQuery| {
        let n = s.decision_count(&q).unwrap();
        let listed = s
            .decisions(&palisade_store::DecisionQuery {
                limit: Some(1000),
                ..q.clone()
            })
            .unwrap()
            .len() as u64;
        assert_eq!(n, listed, "{q:?}");
        n
    };
    let all = palisade_store::DecisionQuery {
        limit: Some(1),
        ..Default::default()
    };
    assert_eq!(count(s, all.clone()), 3);
    let active = palisade_store::DecisionQuery {
        active_at: Some(Timestamp::from_secs(base + 2 * H)),
        ..all.clone()
    };
    assert_eq!(count(s, active), 2);
    let covering = palisade_store::DecisionQuery {
        target: Some("198.51.100.7/32".parse().unwrap()),
        ..all.clone()
    };
    assert_eq!(count(s, covering), 1);
    let d = s.decision(id).unwrap().unwrap();
    assert_eq!(d.decision.target.to_string(), "192.0.2.1/32");
    assert!(s.decision(id + 1000).unwrap().is_none());

    let top = s
        .top_offenders(Timestamp::from_secs(base), 10)
        .unwrap()
        .into_iter()
        .map(|h| (h.ip.to_string(), h.failures))
        .collect::<Vec<_>>();
    assert_eq!(
        top,
        [("192.0.2.1".to_string(), 3), ("2001:db8::1".to_string(), 1)]
    );
    assert_eq!(
        s.top_offenders(Timestamp::from_secs(base + 60), 10)
            .unwrap()
            .len(),
        1,
        "only addresses seen since"
    );

    let a = s
        .ip_activity("192.0.2.1".parse().unwrap(), Timestamp::from_secs(base))
        .unwrap();
    assert_eq!(a.jails, [("sshd".to_string(), 3), ("nginx".to_string(), 1)]);
    assert_eq!(
        a.hours
            .iter()
            .map(|(t, n)| (t.secs(), *n))
            .collect::<Vec<_>>(),
        [(base, 2), (base + H, 1), (base + 2 * H, 1)]
    );
    // `since` inside an hour: the timeline starts with that hour; jails are all-time.
    let a = s
        .ip_activity(
            "192.0.2.1".parse().unwrap(),
            Timestamp::from_secs(base + H + 1),
        )
        .unwrap();
    assert_eq!(a.jails.len(), 2);
    assert_eq!(
        a.hours
            .iter()
            .map(|(t, n)| (t.secs(), *n))
            .collect::<Vec<_>>(),
        [(base + H, 1), (base + 2 * H, 1)]
    );
    let none = s
        .ip_activity("192.0.2.200".parse().unwrap(), Timestamp::from_secs(0))
        .unwrap();
    assert!(none.jails.is_empty() && none.hours.is_empty());

    // Allowlist.
    let e1 = s
        .allowlist_add(
            &"10.1.2.3/8".parse().unwrap(),
            "lan",
            Timestamp::from_secs(1),
        )
        .unwrap();
    assert_eq!(e1.net.to_string(), "10.0.0.0/8");
    let again = s
        .allowlist_add(
            &"10.0.0.0/8".parse().unwrap(),
            "renamed",
            Timestamp::from_secs(2),
        )
        .unwrap();
    assert_eq!((again.id, again.created), (e1.id, e1.created));
    s.allowlist_add(
        &"2001:db8::/32".parse().unwrap(),
        "",
        Timestamp::from_secs(3),
    )
    .unwrap();
    let list = s.allowlist().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].comment, "renamed");
    assert!(s.allowlist_remove(e1.id).unwrap());
    assert!(!s.allowlist_remove(e1.id).unwrap());
    assert_eq!(s.allowlist().unwrap().len(), 1);

    // Accounts and tokens.
    assert_eq!(s.user_count().unwrap(), 0);
    s.user_set("alice", "$argon2id$x", Timestamp::from_secs(5))
        .unwrap();
    s.user_set("alice", "$argon2id$y", Timestamp::from_secs(6))
        .unwrap();
    assert_eq!(s.user_count().unwrap(), 1);
    s.user_logged_in("alice", Timestamp::from_secs(7)).unwrap();
    let u = s.user("alice").unwrap().unwrap();
    assert_eq!(
        (u.password_hash.as_str(), u.created.secs(), u.last_login),
        ("$argon2id$y", 5, Some(Timestamp::from_secs(7)))
    );
    assert!(s.user("bob").unwrap().is_none());
    s.user_set("bob", "$argon2id$z", Timestamp::from_secs(6))
        .unwrap();
    let names: Vec<String> = s.users().unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(s.user_remove("bob").unwrap());
    assert!(!s.user_remove("bob").unwrap());
    assert!(s.user("bob").unwrap().is_none());
    assert_eq!(s.user_count().unwrap(), 1);
    let t = s
        .token_add("ci", "read", "abc123", Timestamp::from_secs(8))
        .unwrap();
    assert_eq!(s.token_by_hash("abc123").unwrap().unwrap().scope, "read");
    assert!(s.token_by_hash("nope").unwrap().is_none());
    assert_eq!(s.tokens().unwrap().len(), 1);
    assert!(s.token_remove(t).unwrap());
    assert!(s.tokens().unwrap().is_empty());
}

#[test]
fn server_queries_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut s =
        palisade_store::open(&format!("sqlite:{}", dir.path().join("p.db").display())).unwrap();
    story(s.as_mut());
}

#[test]
fn server_queries_postgres() {
    let Ok(url) = std::env::var("PALISADE_TEST_PG_URL") else {
        return palisade_testkit::require_or_skip("PG", "PALISADE_TEST_PG_URL is not set");
    };
    let url = common::postgres_fresh(&url, "queries");
    let mut s = palisade_store::open(&url).unwrap();
    story(s.as_mut());
}
