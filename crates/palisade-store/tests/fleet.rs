//! Fleet tables (schema 5) on both backends: tokens spend once and expire, names are unique,
//! revocation, the agent's spool and its cap, ingest with the high-water mark (duplicates
//! skipped, one transaction), the ban log and the active set. PostgreSQL runs under
//! scripts/with-postgres.sh (`PALISADE_TEST_PG_URL`); without it that test is skipped unless
//! `PALISADE_REQUIRE_PG=1`.

use palisade_core::{Event, Timestamp};
use palisade_store::fleet::{self, AgentUpdate, EnrollRefused, FleetLogEntry};
use std::sync::Arc;

fn ev(t: i64, ip: &str) -> Event {
    Event {
        time: Timestamp::from_secs(t),
        ip: ip.parse().unwrap(),
        filter: Arc::from("sshd"),
        rule: Arc::from("failed_password"),
        failure: true,
        user: Some("root".into()),
        fields: vec![(Arc::from("port"), "22".into())],
        evidence: "Failed password for root".into(),
    }
}

fn story(url: &str) {
    let mut main = palisade_store::open(url).unwrap();
    assert!(
        main.schema_version().unwrap() >= 5,
        "the fleet tables came with schema 5"
    );
    let mut f = fleet::open(url).unwrap();
    let now = Timestamp::from_secs(1_000_000);
    // Fleet decisions are stored with origin "fleet" (the CHECK constraint knows it).
    let fd = palisade_core::Decision {
        id: 0,
        target: "192.0.2.200/32".parse().unwrap(),
        jail: "sshd".into(),
        origin: palisade_core::Origin::Fleet,
        reason: "fleet".into(),
        created: now,
        expires: None,
        simulated: false,
        level: 0,
    };
    main.insert_decision(&fd).unwrap();
    let got = main
        .decisions(&palisade_store::DecisionQuery {
            origin: Some(palisade_core::Origin::Fleet),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].decision.origin, palisade_core::Origin::Fleet);

    // --- agent side: state and spool ---
    assert_eq!(f.state("epoch").unwrap(), None);
    f.set_state("epoch", "42").unwrap();
    f.set_state("epoch", "43").unwrap();
    assert_eq!(f.state("epoch").unwrap().as_deref(), Some("43"));
    let local: Vec<Event> = (0..10).map(|i| ev(1000 + i, "192.0.2.1")).collect();
    main.record_events("sshd", &local).unwrap();
    let head = f.local_head().unwrap();
    let all = f.local_events_after(0, 100).unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(all.last().unwrap().id, head);
    assert_eq!(all[0].event, local[0]);
    let after3 = f.local_events_after(all[2].id, 4).unwrap();
    assert_eq!(after3.len(), 4);
    assert_eq!(after3[0].id, all[3].id);
    // Cap: keep the newest 6 of those after the 2nd; then age drops the ones before t=1008.
    let dropped = f
        .spool_trim(all[1].id, 6, Timestamp::from_secs(0))
        .unwrap()
        .unwrap();
    assert_eq!(dropped, (all[1].id + 1, all[3].id));
    let left: Vec<i64> = f
        .local_events_after(0, 100)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(left.len(), 8, "two dropped: {left:?}");
    assert!(
        left.contains(&all[0].id) && left.contains(&all[1].id),
        "acked ones stay"
    );
    let dropped = f
        .spool_trim(all[3].id, 100, Timestamp::from_secs(1008))
        .unwrap()
        .unwrap();
    assert_eq!(dropped, (all[3].id + 1, all[7].id));
    assert_eq!(
        f.spool_trim(all[7].id, 100, Timestamp::from_secs(0))
            .unwrap(),
        None
    );

    // --- server side: tokens and enrollment ---
    f.token_add("h-once", 1, None, now).unwrap();
    f.token_add("h-old", 5, Some(Timestamp::from_secs(999_999)), now)
        .unwrap();
    assert_eq!(
        f.enroll("h-once", "web1", "a1", "k1", now, false).unwrap(),
        Ok(())
    );
    assert_eq!(
        f.enroll("h-once", "web2", "a2", "k2", now, false).unwrap(),
        Err(EnrollRefused::BadToken),
        "a one-use token works once"
    );
    assert_eq!(
        f.enroll("h-old", "web2", "a2", "k2", now, false).unwrap(),
        Err(EnrollRefused::BadToken),
        "expired"
    );
    assert_eq!(
        f.enroll("nope", "web2", "a2", "k2", now, false).unwrap(),
        Err(EnrollRefused::BadToken)
    );
    f.token_add("h-many", 3, None, now).unwrap();
    assert_eq!(
        f.enroll("h-many", "web1", "a2", "k2", now, false).unwrap(),
        Err(EnrollRefused::NameTaken("web1".into()))
    );
    assert_eq!(
        f.enroll("h-many", "web2", "a2", "k2", now, false).unwrap(),
        Ok(())
    );
    let a1 = f.agent("a1").unwrap().unwrap();
    assert_eq!((a1.name.as_str(), a1.key_hash.as_str()), ("web1", "k1"));
    assert!(!a1.revoked && !a1.connected);
    f.agent_update(
        "a1",
        &AgentUpdate {
            connected: Some(true),
            last_seen: Some(now),
            version: Some("0.1.0".into()),
            clock_offset_ms: Some(-40_000),
            head_seq: Some(99),
            ..Default::default()
        },
    )
    .unwrap();
    let a1 = f.agent("a1").unwrap().unwrap();
    assert!(a1.connected);
    assert_eq!(a1.clock_offset_ms, Some(-40_000));
    assert_eq!(a1.version, "0.1.0");
    assert_eq!(a1.head_seq, 99);
    f.disconnect_all().unwrap();
    assert!(!f.agent("a1").unwrap().unwrap().connected);

    // --- ingest: mark in the same transaction, duplicates skipped ---
    assert_eq!(f.high_water("a1", 7).unwrap(), 0);
    let batch: Vec<_> = (1..=5u64)
        .map(|s| (s, "sshd".to_string(), ev(2000 + s as i64, "198.51.100.7")))
        .collect();
    let r = f.ingest("a1", 7, 5, &batch).unwrap();
    assert_eq!((r.stored, r.mark), (5, 5));
    // Resent after a reconnect with two new ones: only the new ones are stored.
    let mut again = batch.clone();
    again.push((6, "nginx".into(), ev(2006, "198.51.100.7")));
    again.push((8, "sshd".into(), ev(2008, "198.51.100.8")));
    let r = f.ingest("a1", 7, 9, &again).unwrap();
    assert_eq!((r.stored, r.mark), (2, 9));
    assert_eq!(f.host_event_count("web1").unwrap(), 7);
    assert_eq!(f.agent("a1").unwrap().unwrap().events, 7);
    assert_eq!(f.high_water("a1", 7).unwrap(), 9);
    // Agent events are not the server's own local events.
    assert_eq!(f.local_events_after(all[7].id, 100).unwrap().len(), 2);
    // A batch of another epoch is refused, nothing stored.
    assert!(f
        .ingest("a1", 8, 12, &[(12, "sshd".into(), ev(1, "192.0.2.9"))])
        .is_err());
    assert_eq!(f.host_event_count("web1").unwrap(), 7);
    // A gap moves the mark and counts.
    f.gap("a1", 7, 10, 20).unwrap();
    let a1 = f.agent("a1").unwrap().unwrap();
    assert_eq!((a1.acked_seq, a1.gaps), (20, 11));
    // A new epoch (the agent's store was replaced) starts over.
    assert_eq!(f.high_water("a1", 8).unwrap(), 0);
    let r = f
        .ingest("a1", 8, 1, &[(1, "sshd".into(), ev(1, "192.0.2.9"))])
        .unwrap();
    assert_eq!((r.stored, r.mark), (1, 1));

    // --- group commit: several agents' batches in one call, in order ---
    assert_eq!(f.high_water("a2", 3).unwrap(), 0);
    let (w1, w2) = (
        f.host_event_count("web1").unwrap(),
        f.host_event_count("web2").unwrap(),
    );
    let a2_events = f.agent("a2").unwrap().unwrap().events;
    let shipped = |s: u64, jail: &str, ip: &str| (s, jail.to_string(), ev(2500 + s as i64, ip));
    let b1 = vec![
        shipped(2, "sshd", "198.51.100.20"),
        shipped(3, "sshd", "198.51.100.20"),
    ];
    let b2: Vec<_> = (1..=4u64)
        .map(|s| {
            shipped(
                s,
                if s % 2 == 0 { "nginx" } else { "sshd" },
                "198.51.100.21",
            )
        })
        .collect();
    // a1's second batch in the same group resends 3 and adds 4: only 4 is new.
    let b1b = vec![
        shipped(3, "sshd", "198.51.100.20"),
        shipped(4, "nginx", "198.51.100.20"),
    ];
    let job = |id, epoch, last_seq, events| fleet::IngestJob {
        id,
        epoch,
        last_seq,
        events,
    };
    let r = f
        .ingest_many(&[
            job("a1", 8, 3, &b1),
            job("a2", 3, 4, &b2),
            job("a1", 8, 4, &b1b),
        ])
        .unwrap();
    let got: Vec<_> = r.iter().map(|r| (r.stored, r.mark)).collect();
    assert_eq!(got, vec![(2, 3), (4, 4), (1, 4)]);
    // Each event is stored under its own agent's name.
    assert_eq!(f.host_event_count("web1").unwrap(), w1 + 3);
    assert_eq!(f.host_event_count("web2").unwrap(), w2 + 4);
    assert_eq!(f.agent("a2").unwrap().unwrap().events, a2_events + 4);
    assert_eq!(f.high_water("a1", 8).unwrap(), 4);
    assert_eq!(f.high_water("a2", 3).unwrap(), 4);
    // A group with a batch of a stale epoch fails; on a store with one transaction per group
    // (PostgreSQL) nothing of it is stored.
    let late = vec![shipped(5, "sshd", "198.51.100.22")];
    let stale = vec![shipped(9, "sshd", "198.51.100.23")];
    assert!(f
        .ingest_many(&[job("a2", 3, 5, &late), job("a1", 7, 9, &stale)])
        .is_err());
    if f.is_shared() {
        assert_eq!(f.high_water("a2", 3).unwrap(), 4, "all or none");
        assert_eq!(f.host_event_count("web2").unwrap(), w2 + 4);
    }
    assert_eq!(f.high_water("a1", 8).unwrap(), 4);

    // --- a forwarder's streams: a mark per stream, stored with the events in one transaction ---
    let (base, counted) = (
        f.host_event_count("web1").unwrap(),
        f.agent("a1").unwrap().unwrap().events,
    );
    let (auth, other) = ("sshd\t/var/log/auth.log", "sshd\t/var/log/other.log");
    assert_eq!(f.stream_mark("a1", auth, 5).unwrap(), 0);
    let line_ev = |s: u64| (s, "sshd".to_string(), ev(3000 + s as i64, "203.0.113.5"));
    // Lines 1..=4, of which 2 and 4 made events.
    let r = f
        .ingest_stream("a1", auth, 5, 4, &[line_ev(2), line_ev(4)])
        .unwrap();
    assert_eq!((r.before, r.stored, r.mark), (0, 2, 4));
    // Resent with more: only what is above the mark is stored.
    let r = f
        .ingest_stream("a1", auth, 5, 7, &[line_ev(2), line_ev(4), line_ev(6)])
        .unwrap();
    assert_eq!((r.before, r.stored, r.mark), (4, 1, 7));
    // Lines that made no event still move the mark.
    let r = f.ingest_stream("a1", auth, 5, 9, &[]).unwrap();
    assert_eq!((r.before, r.stored, r.mark), (7, 0, 9));
    // Another stream has its own mark.
    assert_eq!(f.stream_mark("a1", other, 5).unwrap(), 0);
    let r = f.ingest_stream("a1", other, 5, 1, &[line_ev(1)]).unwrap();
    assert_eq!((r.before, r.stored, r.mark), (0, 1, 1));
    assert_eq!(f.stream_mark("a1", auth, 5).unwrap(), 9);
    // A new forwarder epoch (its state was lost) starts its streams over.
    assert_eq!(f.stream_mark("a1", auth, 6).unwrap(), 0);
    assert_eq!(f.host_event_count("web1").unwrap(), base + 4);
    assert_eq!(f.agent("a1").unwrap().unwrap().events, counted + 4);
    // The agent's own epoch and mark are untouched (4 since the group commit above).
    assert_eq!(f.high_water("a1", 8).unwrap(), 4);
    // A host's recent events, oldest first; the newest when limited.
    let recent = f
        .host_events_since("web1", Timestamp::from_secs(3000), 10)
        .unwrap();
    let secs: Vec<i64> = recent.iter().map(|e| e.event.time.0 / 1_000_000).collect();
    assert_eq!(secs, [3002, 3004, 3006, 3001]);
    let last2 = f
        .host_events_since("web1", Timestamp::from_secs(3000), 2)
        .unwrap();
    assert_eq!(last2.len(), 2);
    assert_eq!(last2[1].event.time, Timestamp::from_secs(3001));
    assert!(f
        .host_events_since("nobody", Timestamp(0), 10)
        .unwrap()
        .is_empty());

    // --- revocation and --force ---
    assert!(f.revoke("web2").unwrap());
    assert!(!f.revoke("web2").unwrap());
    assert!(f.agent("a2").unwrap().unwrap().revoked);
    f.token_add("h-force", 2, None, now).unwrap();
    assert_eq!(
        f.enroll("h-force", "web1", "a3", "k3", now, true).unwrap(),
        Ok(())
    );
    assert!(
        f.agent("a1").unwrap().unwrap().revoked,
        "--force revokes the old"
    );
    let names: Vec<_> = f
        .agents()
        .unwrap()
        .into_iter()
        .map(|a| (a.name, a.id, a.revoked))
        .collect();
    assert_eq!(names.len(), 3);

    // --- the ban log ---
    assert_eq!(f.log_head().unwrap(), 0);
    let entry = |action: &str, target: &str, expires: Option<i64>| FleetLogEntry {
        seq: 0,
        action: action.into(),
        target: target.parse().unwrap(),
        jail: "sshd".into(),
        reason: "r".into(),
        created: now,
        expires: expires.map(Timestamp::from_secs),
        origin: Some("web1".into()),
        scope: None,
    };
    let s1 = f.log_append(&entry("ban", "203.0.113.7/32", None)).unwrap();
    let s2 = f
        .log_append(&entry("ban", "203.0.113.9/24", Some(2_000_000)))
        .unwrap();
    let s3 = f
        .log_append(&entry("ban", "198.51.100.1/32", Some(1)))
        .unwrap();
    let mut scoped = entry("ban", "192.0.2.50/32", None);
    scoped.scope = Some(vec!["web2".into()]);
    let s4 = f.log_append(&scoped).unwrap();
    let s5 = f
        .log_append(&entry("unban", "203.0.113.7/32", None))
        .unwrap();
    assert!(s1 < s2 && s2 < s3 && s3 < s4 && s4 < s5);
    assert_eq!(f.log_head().unwrap(), s5);
    let since = f.log_since(s2, 10).unwrap();
    assert_eq!(
        since.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![s3, s4, s5]
    );
    assert!(since[1].applies_to("web2") && !since[1].applies_to("web1"));
    assert_eq!(since[1].scope, Some(vec!["web2".to_string()]));
    assert_eq!(f.log_since(0, 2).unwrap().len(), 2);
    let active: Vec<String> = f
        .active_bans(now)
        .unwrap()
        .iter()
        .map(|e| e.target.to_string())
        .collect();
    // 203.0.113.7 unbanned, 198.51.100.1 expired; the /24 stored canonical.
    assert_eq!(active, vec!["203.0.113.0/24", "192.0.2.50/32"]);

    // Scoped entries appended together; per agent, the latest entry in ITS scope counts.
    let mut a = entry("ban", "192.0.2.60/32", None);
    a.scope = Some(vec!["web1".into(), "web3".into()]);
    let mut b = entry("ban", "192.0.2.50/32", None);
    b.scope = Some(vec!["web_".into()]);
    let seqs = f.log_append_all(&[a, b]).unwrap();
    assert_eq!(seqs.len(), 2);
    assert!(seqs[0] > s5 && seqs[1] > seqs[0]);
    let targets = |f: &mut Box<dyn palisade_store::fleet::FleetStore>, n: &str| -> Vec<String> {
        f.active_bans_for(now, n, i64::MAX)
            .unwrap()
            .iter()
            .map(|e| e.target.to_string())
            .collect()
    };
    assert_eq!(
        targets(&mut f, "web1"),
        vec!["203.0.113.0/24", "192.0.2.60/32"]
    );
    // web2 keeps its own ban of 192.0.2.50 though a later entry is scoped to `web_` only
    // (a LIKE wildcard that must not match web2).
    assert_eq!(
        targets(&mut f, "web2"),
        vec!["203.0.113.0/24", "192.0.2.50/32"]
    );
    assert_eq!(
        targets(&mut f, "web_"),
        vec!["203.0.113.0/24", "192.0.2.50/32"]
    );
    assert_eq!(
        targets(&mut f, "web3"),
        vec!["203.0.113.0/24", "192.0.2.60/32"]
    );
}

#[test]
fn fleet_tables_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    story(&format!("sqlite:{}", dir.path().join("p.db").display()));
}

#[cfg(feature = "postgres")]
#[test]
fn fleet_tables_postgres() {
    let admin = match std::env::var("PALISADE_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            if std::env::var("PALISADE_REQUIRE_PG").as_deref() == Ok("1") {
                panic!("PALISADE_REQUIRE_PG=1 but PALISADE_TEST_PG_URL is not set");
            }
            eprintln!("SKIP PostgreSQL fleet tables: PALISADE_TEST_PG_URL is not set");
            return;
        }
    };
    let name = format!("palisade_fleet_{}", std::process::id());
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = match admin.find("://") {
        Some(i) => {
            let rest = &admin[i + 3..];
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let q = rest[end..]
                .find('?')
                .map(|q| &rest[end + q..])
                .unwrap_or("");
            format!("{}{}/{name}{q}", &admin[..i + 3], &rest[..end])
        }
        None => format!("{admin} dbname={name}"),
    };
    story(&url);
    let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}
