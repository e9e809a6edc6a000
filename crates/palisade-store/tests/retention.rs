//! Retention: old events go, the per-address rollups stay exact, partitions appear when
//! needed, migrations convert populated databases, and the SQLite file stops growing.
//!
//! SQLite always runs. PostgreSQL runs under `scripts/with-postgres.sh` (it sets
//! `PALISADE_TEST_PG_URL`); without it those tests print SKIP, unless `PALISADE_REQUIRE_PG=1`,
//! when they fail instead.

use palisade_core::{Clock, Decision, Event, Origin, SystemClock, Timestamp};
use palisade_store::{EventQuery, Store, DAY_MICROS};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

const A: &str = "203.0.113.5";
const B: &str = "2001:db8::7";
const C: &str = "198.51.100.9";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn event(addr: &str, time: Timestamp, failure: bool, n: usize) -> Event {
    Event {
        time,
        ip: ip(addr),
        filter: Arc::from("sshd"),
        rule: Arc::from(if failure {
            "failed_password"
        } else {
            "accepted"
        }),
        failure,
        user: Some("root".into()),
        fields: vec![(Arc::from("port"), format!("{}", 1000 + n).into())],
        evidence: Event::evidence_of(
            format!("sshd[{n}]: Failed password for root from {addr} port 22 ssh2").as_bytes(),
        ),
    }
}

fn ban(target: &str, created: Timestamp) -> Decision {
    Decision {
        id: 0,
        target: target.parse().unwrap(),
        jail: "sshd".into(),
        origin: Origin::Jail,
        reason: "test".into(),
        created,
        expires: Some(created.plus(Duration::from_secs(3600))),
        simulated: false,
        level: 0,
    }
}

/// Noon (UTC) of the current day: the PostgreSQL store creates partitions on demand for days
/// around the real date, so the scenario lives there.
fn today_noon() -> Timestamp {
    let now = SystemClock.now().0;
    Timestamp(now - now.rem_euclid(DAY_MICROS) + DAY_MICROS / 2)
}

fn days_ago(now: Timestamp, days: i64, minute: i64) -> Timestamp {
    Timestamp(now.0 - days * DAY_MICROS + minute * 60 * Timestamp::MICROS)
}

fn all_events(s: &mut dyn Store) -> Vec<palisade_store::StoredEvent> {
    s.events(&EventQuery {
        limit: Some(100_000),
        ..Default::default()
    })
    .unwrap()
}

/// Everything the API and dashboard read about addresses, in one comparable value: all-time
/// totals, and the per-address hourly timeline since `since`.
fn rollups(s: &mut dyn Store, now: Timestamp, since: Timestamp) -> String {
    let far = Timestamp(now.0 - 400 * DAY_MICROS);
    let mut out = String::new();
    for a in [A, B, C] {
        out += &format!("{a}: {:?}\n", s.ip_history(ip(a)).unwrap());
        out += &format!("{a}: {:?}\n", s.ip_activity(ip(a), far).unwrap().jails);
        out += &format!("{a}: {:?}\n", s.ip_activity(ip(a), since).unwrap().hours);
    }
    out += &format!("top: {:?}\n", s.top_offenders(far, 10).unwrap());
    out += &format!(
        "hours: {:?}\n",
        s.event_hours(far, now.plus(Duration::from_secs(86400)))
            .unwrap()
    );
    out
}

/// The retention scenario on any backend: events over twelve days, retention of three.
/// Returns (events before the cutoff, events kept).
fn retention_story(s: &mut dyn Store) -> (usize, usize) {
    let now = today_noon();
    let mut old = 0;
    let mut kept = 0;
    // A: every day, a failure and a success. B: only long ago. C: only recently.
    for day in [12i64, 10, 5, 4, 1, 0] {
        let t = days_ago(now, day, -30);
        let batch = vec![
            event(A, t, true, 1),
            event(A, t.plus(Duration::from_secs(60)), false, 2),
        ];
        s.record_events("sshd", &batch).unwrap();
        if day >= 4 {
            old += 2;
        } else {
            kept += 2;
        }
    }
    let b: Vec<Event> = (0..7)
        .map(|i| event(B, days_ago(now, 10, i), true, i as usize))
        .collect();
    s.record_batch(
        &[("sshd", &b)],
        &[("file:/var/log/auth.log", "{\"offset\":1}")],
    )
    .unwrap();
    old += b.len();
    let c: Vec<Event> = (0..3)
        .map(|i| event(C, days_ago(now, 0, -i), true, i as usize))
        .collect();
    s.record_events("nginx", &c).unwrap();
    kept += c.len();
    s.insert_decision(&ban(&format!("{A}/32"), days_ago(now, 10, 0)))
        .unwrap();
    s.insert_decision(&ban(&format!("{A}/32"), days_ago(now, 0, -5)))
        .unwrap();
    s.insert_decision(&ban(&format!("{B}/128"), days_ago(now, 10, 10)))
        .unwrap();

    let cutoff = Timestamp(now.0 - 3 * DAY_MICROS - DAY_MICROS / 2);
    let before = rollups(s, now, cutoff);
    assert_eq!(all_events(s).len(), old + kept);
    let far = Timestamp(now.0 - 400 * DAY_MICROS);
    assert_eq!(s.ip_activity(ip(A), far).unwrap().hours.len(), 6);
    let h = s.ip_history(ip(A)).unwrap().unwrap();
    assert_eq!((h.events, h.failures, h.times_banned), (12, 6, 2));

    // Retention of 3 days: the cutoff is the start of the day 3 days ago, so the events of
    // 4 and more days ago go, those of 1 day ago and today stay.
    let report = s
        .maintain(now, Some(Duration::from_secs(3 * 86400)))
        .unwrap();
    assert_eq!(report.cutoff, Some(cutoff));
    let left = all_events(s);
    assert_eq!(left.len(), kept, "{report:?}");
    assert!(left.iter().all(|e| e.event.time >= cutoff));
    // The totals read exactly what they read before, and so does the timeline within the
    // retention period; the timeline's older hours went with the events.
    assert_eq!(rollups(s, now, cutoff), before);
    assert_eq!(s.ip_activity(ip(A), far).unwrap().hours.len(), 2);
    let h = s.ip_history(ip(B)).unwrap().unwrap();
    assert_eq!((h.events, h.failures, h.times_banned), (7, 7, 1));

    // New events after retention add to the totals.
    s.record_events("sshd", &[event(B, now, true, 99)]).unwrap();
    let h = s.ip_history(ip(B)).unwrap().unwrap();
    assert_eq!((h.events, h.failures), (8, 8));
    assert_eq!(h.last_seen, now);
    // A second run has nothing left to remove.
    let again = s
        .maintain(now, Some(Duration::from_secs(3 * 86400)))
        .unwrap();
    assert_eq!(
        (again.rows_deleted, again.partitions_dropped),
        (0, 0),
        "{again:?}"
    );
    // Retention off ("0"): nothing is removed.
    let off = s.maintain(now, Some(Duration::ZERO)).unwrap();
    assert_eq!(off.cutoff, None);
    assert_eq!(all_events(s).len(), kept + 1);
    (old, kept)
}

#[test]
fn sqlite_retention_deletes_old_rows_and_keeps_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let mut s =
        palisade_store::open(&format!("sqlite:{}", dir.path().join("p.db").display())).unwrap();
    retention_story(&mut *s);
}

#[test]
fn sqlite_retention_works_in_batches() {
    let mut s = palisade_store::open("sqlite::memory:").unwrap();
    let now = today_noon();
    let n = palisade_store::RETENTION_BATCH * 2 + 17;
    let old: Vec<Event> = (0..n)
        .map(|i| event(A, days_ago(now, 30, -((i % 600) as i64)), i % 2 == 0, i))
        .collect();
    s.record_events("sshd", &old).unwrap();
    s.record_events("sshd", &[event(A, now, true, 0)]).unwrap();
    let r = s
        .maintain(now, Some(Duration::from_secs(7 * 86400)))
        .unwrap();
    assert_eq!(r.rows_deleted, n as u64);
    assert_eq!(all_events(&mut *s).len(), 1);
    assert_eq!(s.ip_history(ip(A)).unwrap().unwrap().events, n as u64 + 1);
}

/// Size of the database file plus its write-ahead log.
fn file_size(path: &std::path::Path) -> u64 {
    let wal = path.with_extension("db-wal");
    std::fs::metadata(path).unwrap().len() + std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn sqlite_file_stops_growing_under_steady_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let mut s = palisade_store::open(&format!("sqlite:{}", path.display())).unwrap();
    let start = Timestamp::from_secs(1_700_006_400); // a UTC midnight
    let keep = Some(Duration::from_secs(2 * 86400));
    let per_day = 4000usize;
    let mut sizes = Vec::new();
    for day in 0..12i64 {
        let events: Vec<Event> = (0..per_day)
            .map(|i| {
                let t = Timestamp(start.0 + day * DAY_MICROS + (i as i64) * 10 * Timestamp::MICROS);
                // Many distinct addresses, so every table (events, history, rollups) grows.
                let a = format!("10.{}.{}.{}", day % 4, i / 250, i % 250);
                event(&a, t, true, i)
            })
            .collect();
        s.record_events("sshd", &events).unwrap();
        let now = Timestamp(start.0 + day * DAY_MICROS + DAY_MICROS - 1);
        let r = s.maintain(now, keep).unwrap();
        if day >= 3 {
            assert_eq!(r.rows_deleted, per_day as u64, "day {day}: {r:?}");
        }
        sizes.push(file_size(&path));
    }
    eprintln!("file sizes per day: {sizes:?}");
    // Without retention the file would grow by a day's events every day. With it, once three
    // days are held, later days add only the address rollups (4 distinct sets of addresses,
    // so after day 4 not even those).
    let settled = sizes[5];
    for (day, &size) in sizes.iter().enumerate().skip(6) {
        assert!(
            size <= settled + settled / 10,
            "day {day}: {size} bytes > {settled} + 10% (sizes {sizes:?})"
        );
    }
}

#[test]
fn sqlite_migrates_a_populated_v4_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL) STRICT;")
            .unwrap();
        for (v, sql) in [
            (1, include_str!("../migrations/sqlite/0001_init.sql")),
            (2, include_str!("../migrations/sqlite/0002_server.sql")),
            (3, include_str!("../migrations/sqlite/0003_ip_rollup.sql")),
            (
                4,
                include_str!("../migrations/sqlite/0004_source_positions.sql"),
            ),
        ] {
            c.execute_batch(sql).unwrap();
            c.execute("INSERT INTO schema_version VALUES (?1, 0)", [v])
                .unwrap();
        }
        // What a version-4 store wrote: events and the history rows.
        for (i, (a, failure)) in [(A, 1), (A, 0), (A, 1), (C, 1)].iter().enumerate() {
            c.execute(
                "INSERT INTO events (time, jail, filter, rule, ip, failure) VALUES (?1, 'sshd', 'sshd', 'r', ?2, ?3)",
                rusqlite::params![1_000_000 * i as i64, a, failure],
            )
            .unwrap();
        }
        c.execute_batch(&format!(
            "INSERT INTO ip_history (ip, ip_key, first_seen, last_seen, failures, times_banned, sample_count)
             VALUES ('{A}', x'04cb007105', 0, 2000000, 2, 1, 0), ('{C}', x'04c6336409', 3000000, 3000000, 1, 0, 0);"
        ))
        .unwrap();
    }
    let mut s = palisade_store::open(&format!("sqlite:{}", path.display())).unwrap();
    assert_eq!(
        s.schema_version().unwrap(),
        palisade_store::sqlite::SCHEMA_VERSION
    );
    let h = s.ip_history(ip(A)).unwrap().unwrap();
    assert_eq!((h.events, h.failures, h.times_banned), (3, 2, 1));
    assert_eq!(s.ip_history(ip(C)).unwrap().unwrap().events, 1);
    assert_eq!(all_events(&mut *s).len(), 4);
}

#[cfg(feature = "postgres")]
mod pg {
    use super::*;

    /// A uniquely named database on the test server, dropped when the test ends.
    struct TempDb {
        admin_url: String,
        name: String,
        url: String,
    }

    impl TempDb {
        fn create(admin_url: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let name = format!("palisade_ret_{}_{nanos}", std::process::id());
            let mut admin = postgres::Client::connect(admin_url, postgres::NoTls)
                .unwrap_or_else(|e| panic!("connect to PALISADE_TEST_PG_URL: {e}"));
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap();
            let url = match admin_url.find("://") {
                None => format!("{admin_url} dbname={name}"),
                Some(i) => {
                    let (head, rest) = admin_url.split_at(i + 3);
                    let end = rest.find(['/', '?']).unwrap_or(rest.len());
                    let (authority, tail) = rest.split_at(end);
                    let query = tail.find('?').map(|q| &tail[q..]).unwrap_or("");
                    format!("{head}{authority}/{name}{query}")
                }
            };
            TempDb {
                admin_url: admin_url.to_owned(),
                name,
                url,
            }
        }

        fn client(&self) -> postgres::Client {
            postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
        }

        fn scalar(&self, sql: &str) -> i64 {
            self.client().query_one(sql, &[]).unwrap().get(0)
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            if let Ok(mut admin) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
                let _ = admin.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ));
            }
        }
    }

    fn admin_url() -> Option<String> {
        match std::env::var("PALISADE_TEST_PG_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                palisade_testkit::require_or_skip(
                    "PG",
                    "PostgreSQL retention tests: PALISADE_TEST_PG_URL is not set (run under scripts/with-postgres.sh)",
                );
                None
            }
        }
    }

    /// `events_pYYYYMMDD` of the day holding `t`.
    fn partition_of(db: &TempDb, t: Timestamp) -> String {
        let day = t.0.div_euclid(DAY_MICROS);
        db.client()
            .query_one(
                "SELECT 'events_p' || to_char(DATE '1970-01-01' + $1::INTEGER, 'YYYYMMDD')",
                &[&(day as i32)],
            )
            .unwrap()
            .get(0)
    }

    fn exists(db: &TempDb, table: &str) -> bool {
        db.client()
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .unwrap()
            .get(0)
    }

    #[test]
    fn postgres_retention_drops_partitions_and_keeps_rollups() {
        let Some(admin) = admin_url() else { return };
        let db = TempDb::create(&admin);
        let mut s = palisade_store::open(&db.url).unwrap();
        let now = today_noon();
        let (old, kept) = retention_story(&mut *s);
        assert!(old > 0 && kept > 0);
        // The old days' partitions are gone, the kept days' are there, and the days ahead.
        for day in [12, 10, 5, 4] {
            let p = partition_of(&db, days_ago(now, day, -30));
            assert!(!exists(&db, &p), "{p} should be dropped");
        }
        for day in [1, 0, -1, -2] {
            let p = partition_of(&db, days_ago(now, day, -30));
            assert!(exists(&db, &p), "{p} should exist");
        }
        assert_eq!(db.scalar("SELECT COUNT(*) FROM events_default"), 0);
        // The rows are really gone from the database, not just hidden.
        assert_eq!(db.scalar("SELECT COUNT(*) FROM events"), kept as i64 + 1);
    }

    #[test]
    fn postgres_insert_into_a_day_without_partition() {
        let Some(admin) = admin_url() else { return };
        let db = TempDb::create(&admin);
        let mut s = palisade_store::open(&db.url).unwrap();
        let now = today_noon();

        // A past day nobody created: the insert creates its partition.
        let past = days_ago(now, 40, 0);
        let p = partition_of(&db, past);
        assert!(!exists(&db, &p));
        s.record_events("sshd", &[event(A, past, true, 1)]).unwrap();
        assert!(exists(&db, &p), "{p} created on demand");
        assert_eq!(db.scalar(&format!("SELECT COUNT(*) FROM {p}")), 1);

        // Far in the future: outside the on-demand window, the default partition takes it.
        let future = days_ago(now, -60, 0);
        s.record_batch(&[("sshd", &[event(A, future, true, 2)])], &[])
            .unwrap();
        assert!(!exists(&db, &partition_of(&db, future)));
        assert_eq!(db.scalar("SELECT COUNT(*) FROM events_default"), 1);

        // Another server's retention dropped a partition this store believes exists: the
        // insert still succeeds (default partition).
        let yesterday = days_ago(now, 1, 0);
        s.record_events("sshd", &[event(B, yesterday, true, 3)])
            .unwrap();
        let py = partition_of(&db, yesterday);
        db.client()
            .batch_execute(&format!("DROP TABLE {py}"))
            .unwrap();
        s.record_events("sshd", &[event(B, yesterday, true, 4)])
            .unwrap();
        assert_eq!(db.scalar("SELECT COUNT(*) FROM events_default"), 2);

        // Creating a day's partition moves its rows out of the default partition, ids kept.
        let ids_before: Vec<i64> = all_events(&mut *s).iter().map(|e| e.id).collect();
        let r = s.maintain(future, None).unwrap();
        assert_eq!(
            r.partitions_created,
            1 + palisade_store::PARTITIONS_AHEAD as u64
        );
        assert!(exists(&db, &partition_of(&db, future)));
        assert_eq!(db.scalar("SELECT COUNT(*) FROM events_default"), 1);
        assert_eq!(
            all_events(&mut *s).iter().map(|e| e.id).collect::<Vec<_>>(),
            ids_before
        );
        // Every event was counted once in the rollups.
        let a = s.ip_history(ip(A)).unwrap().unwrap();
        let b = s.ip_history(ip(B)).unwrap().unwrap();
        assert_eq!((a.events, b.events), (2, 2));
        assert_eq!(
            db.scalar("SELECT SUM(events)::BIGINT FROM ip_jail_events"),
            4
        );
        assert_eq!(db.scalar("SELECT SUM(events)::BIGINT FROM event_hourly"), 4);

        // Retention also clears old rows from the default partition.
        let r = s
            .maintain(
                Timestamp(now.0 + 100 * DAY_MICROS),
                Some(Duration::from_secs(30 * 86400)),
            )
            .unwrap();
        assert_eq!(r.rows_deleted, 1, "{r:?}");
        assert_eq!(db.scalar("SELECT COUNT(*) FROM events_default"), 0);
    }

    #[test]
    fn postgres_migrates_a_populated_v4_database() {
        let Some(admin) = admin_url() else { return };
        let db = TempDb::create(&admin);
        let now = today_noon();
        {
            let mut c = db.client();
            c.batch_execute(
                "CREATE TABLE schema_version (version BIGINT PRIMARY KEY, applied BIGINT NOT NULL)",
            )
            .unwrap();
            for (v, sql) in [
                (1i64, include_str!("../migrations/postgres/0001_init.sql")),
                (2, include_str!("../migrations/postgres/0002_server.sql")),
                (3, include_str!("../migrations/postgres/0003_ip_rollup.sql")),
                (
                    4,
                    include_str!("../migrations/postgres/0004_source_positions.sql"),
                ),
                // Fleet mode's version 5 adds `host` before this conversion: the value survives.
                (5, include_str!("../migrations/postgres/0005_fleet.sql")),
            ] {
                c.batch_execute(sql).unwrap();
                c.execute("INSERT INTO schema_version VALUES ($1, 0)", &[&v])
                    .unwrap();
            }
            // 300 events over 3 days and 3 addresses, as a version-4 store wrote them (the
            // triggers fill the hourly and per-address rollups).
            for i in 0..300i64 {
                let a = [A, B, C][(i % 3) as usize];
                let t = days_ago(now, 2 - i % 3, -i);
                c.execute(
                    "INSERT INTO events (time, jail, filter, rule, ip, failure, host)
                     VALUES ($1, 'sshd', 'sshd', 'r', $2, $3, $4)",
                    &[&t.0, &a, &(i % 2 == 0), &format!("agent-{}", i % 5)],
                )
                .unwrap();
            }
            c.batch_execute(
                "INSERT INTO ip_history (ip, ip_key, first_seen, last_seen, failures, times_banned)
                 SELECT ip, convert_to(ip, 'UTF8'), MIN(time), MAX(time),
                        SUM(CASE WHEN failure THEN 1 ELSE 0 END), 0
                 FROM events GROUP BY ip;
                 DELETE FROM events WHERE id % 10 = 0;",
            )
            .unwrap();
        }
        let max_id = db.scalar("SELECT MAX(id) FROM events");
        let ids: Vec<i64> = db
            .client()
            .query("SELECT id FROM events ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let hourly_before = db.scalar("SELECT SUM(events)::BIGINT FROM event_hourly");

        let mut s = palisade_store::open(&db.url).unwrap();
        assert_eq!(
            s.schema_version().unwrap(),
            palisade_store::postgres::SCHEMA_VERSION
        );
        // Partitioned, with the same rows, ids, columns and indexes.
        assert_eq!(
            db.scalar(
                "SELECT COUNT(*) FROM pg_partitioned_table WHERE partrelid = 'events'::regclass"
            ),
            1
        );
        let after: Vec<i64> = db
            .client()
            .query("SELECT id FROM events ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(after, ids);
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM events WHERE host = 'agent-1'"),
            60
        );
        assert_eq!(db.scalar("SELECT COUNT(*) FROM events_default"), 0);
        for index in [
            "events_time",
            "events_ip_time",
            "events_jail_time",
            "events_ip_id",
            "events_pkey",
        ] {
            assert_eq!(
                db.scalar(&format!("SELECT COUNT(*) FROM pg_indexes WHERE indexname = '{index}' AND tablename = 'events'")),
                1,
                "{index}"
            );
        }
        assert!(!exists(&db, "events_unpartitioned"));
        // The rollups were not counted twice by the copy; the event totals were backfilled.
        assert_eq!(
            db.scalar("SELECT SUM(events)::BIGINT FROM event_hourly"),
            hourly_before
        );
        let h = s.ip_history(ip(A)).unwrap().unwrap();
        assert_eq!(h.events, 90);
        // New events get fresh ids, above the old ones, and reach every rollup once.
        s.record_events("sshd", &[event(A, now, true, 1)]).unwrap();
        let newest = all_events(&mut *s)[0].id;
        // (The highest old id, 300, was deleted: it is not handed out again.)
        assert_eq!(max_id, 299);
        assert!(newest > 300, "{newest}");
        assert_eq!(s.ip_history(ip(A)).unwrap().unwrap().events, 91);
        assert_eq!(
            db.scalar("SELECT SUM(events)::BIGINT FROM event_hourly"),
            hourly_before + 1
        );
        // Retention works on the converted table.
        let r = s.maintain(now, Some(Duration::from_secs(86400))).unwrap();
        assert_eq!(r.partitions_dropped, 1, "{r:?}");
        assert_eq!(s.ip_history(ip(A)).unwrap().unwrap().events, 91);
    }
}

#[cfg(not(feature = "postgres"))]
#[test]
fn postgres_retention() {
    palisade_testkit::require_or_skip(
        "PG",
        "PostgreSQL retention tests: palisade-store was built without the `postgres` feature",
    );
}
