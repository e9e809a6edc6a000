//! Write-throughput sanity check (reports, never asserts a time):
//!
//! ```text
//! cargo test -p palisade-store --release --test perf -- --ignored --nocapture
//! ```
//!
//! Inserts 100 000 events in batches of 1000 into a fresh SQLite file (and into PostgreSQL
//! too when `PALISADE_TEST_PG_URL` is set). Target on SQLite: about a second or less.

use palisade_core::{Event, Timestamp};
use palisade_store::{EventQuery, Store};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

const TOTAL: usize = 100_000;
const BATCH: usize = 1_000;

/// A day of sshd noise from `addresses` addresses, one event every ~0.86 s.
fn events(addresses: usize) -> Vec<Event> {
    let filter: Arc<str> = Arc::from("sshd");
    let rule: Arc<str> = Arc::from("failed_password");
    let port: Arc<str> = Arc::from("port");
    let t0 = Timestamp::from_secs(1_740_996_000);
    (0..TOTAL)
        .map(|i| {
            let n = (i * 7919 % addresses) as u32;
            let ip = IpAddr::V4(Ipv4Addr::from(0xC633_6400 + n)); // 198.51.100.0 + n
            Event {
                time: Timestamp(t0.0 + i as i64 * 864_000),
                ip,
                filter: filter.clone(),
                rule: rule.clone(),
                failure: true,
                user: Some("admin".into()),
                fields: vec![(port.clone(), "22".into())],
                evidence: Event::evidence_of(
                    format!("sshd[4242]: Failed password for admin from {ip} port 22 ssh2")
                        .as_bytes(),
                ),
            }
        })
        .collect()
}

fn run(name: &str, addresses: usize, mut store: Box<dyn Store>) {
    let events = events(addresses);
    let start = Instant::now();
    for batch in events.chunks(BATCH) {
        store.record_events("sshd", batch).unwrap();
    }
    let took = start.elapsed();
    let newest = store
        .events(&EventQuery {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(newest.len(), 1);
    println!(
        "{name}: {TOTAL} events from {addresses} addresses in batches of {BATCH}: \
         {:.3} s ({:.0} events/s)",
        took.as_secs_f64(),
        TOTAL as f64 / took.as_secs_f64()
    );
}

#[test]
#[ignore = "throughput report; run with --release -- --ignored --nocapture"]
fn insert_100k_events() {
    let dir = tempfile::tempdir().unwrap();
    // Many addresses per batch (every batch updates ~1000 history rows) and few (an attack
    // from a small botnet: mostly event rows).
    for addresses in [5000, 50] {
        let url = format!(
            "sqlite:{}",
            dir.path().join(format!("perf-{addresses}.db")).display()
        );
        run("sqlite", addresses, palisade_store::open(&url).unwrap());
    }

    #[cfg(feature = "postgres")]
    let pg = std::env::var("PALISADE_TEST_PG_URL").ok();
    #[cfg(feature = "postgres")]
    if pg.is_none() {
        palisade_testkit::require_or_skip(
            "PG",
            "PALISADE_TEST_PG_URL is not set (PostgreSQL part)",
        );
    }
    #[cfg(feature = "postgres")]
    if let Some(admin_url) = pg {
        // Fresh database, dropped afterwards.
        let name = format!("palisade_perf_{}", std::process::id());
        let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) if admin_url.contains("://") => format!("{base}/{name}"),
            _ => format!("{admin_url} dbname={name}"),
        };
        run("postgres", 5000, palisade_store::open(&url).unwrap());
        admin
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .unwrap();
    }
}

/// PostgreSQL disk per million events (bench/store/disk.sh runs it under a throwaway cluster):
/// `PALISADE_DISK_EVENTS` events (default 1,000,000) through `record_batch`, sshd noise from
/// 20,000 addresses over 10 days, then the size of every relation of the store (events
/// partitions with their indexes, rollups) after `VACUUM ANALYZE`. Reports, never asserts a
/// size.
#[cfg(feature = "postgres")]
#[test]
#[ignore = "disk report; run bench/store/disk.sh"]
fn postgres_disk_per_million_events() {
    let Ok(url) = std::env::var("PALISADE_TEST_PG_URL") else {
        panic!("PALISADE_TEST_PG_URL is not set (run bench/store/disk.sh)");
    };
    let total: usize = std::env::var("PALISADE_DISK_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut store = palisade_store::open(&url).unwrap();
    let filter: Arc<str> = Arc::from("sshd");
    let rule: Arc<str> = Arc::from("failed_password");
    let port: Arc<str> = Arc::from("port");
    let now = palisade_core::Clock::now(&palisade_core::SystemClock);
    let span = 10 * 86_400 * Timestamp::MICROS;
    let t0 = Timestamp(now.0 - span);
    let step = span / total as i64;
    let start = Instant::now();
    let mut batch = Vec::with_capacity(5000);
    for i in 0..total {
        let n = (i * 7919 % 20_000) as u32;
        let ip = IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + n));
        batch.push(Event {
            time: Timestamp(t0.0 + i as i64 * step),
            ip,
            filter: filter.clone(),
            rule: rule.clone(),
            failure: true,
            user: Some(["root", "admin", "ubuntu", "test"][i % 4].into()),
            fields: vec![(port.clone(), format!("{}", 30000 + i % 30000).into())],
            evidence: Event::evidence_of(
                format!(
                    "sshd[{}]: Failed password for root from {ip} port 22 ssh2",
                    i % 65536
                )
                .as_bytes(),
            ),
        });
        if batch.len() == 5000 || i + 1 == total {
            store
                .record_batch(&[("sshd", &batch)], &[("bench", &i.to_string())])
                .unwrap();
            batch.clear();
        }
    }
    let took = start.elapsed();
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute("VACUUM ANALYZE").unwrap();
    let rows = c
        .query(
            "SELECT CASE WHEN c.relname LIKE 'events_p%' THEN 'events (day partitions)'
                         ELSE c.relname::TEXT END AS rel,
                    SUM(pg_total_relation_size(c.oid))::BIGINT
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind = 'r'
             GROUP BY 1 ORDER BY 2 DESC",
            &[],
        )
        .unwrap();
    let mut sum = 0i64;
    println!("events: {total}, inserted in {:.1} s", took.as_secs_f64());
    for r in &rows {
        let (rel, bytes): (String, i64) = (r.get(0), r.get(1));
        sum += bytes;
        println!("{rel:<28} {:>10.1} MiB", bytes as f64 / 1048576.0);
    }
    let db: i64 = c
        .query_one("SELECT pg_database_size(current_database())", &[])
        .unwrap()
        .get(0);
    println!("{:<28} {:>10.1} MiB", "all tables", sum as f64 / 1048576.0);
    println!("{:<28} {:>10.1} MiB", "database", db as f64 / 1048576.0);
    println!(
        "per million events: {:.1} MiB (tables), {:.0} bytes per event",
        sum as f64 / 1048576.0 * 1e6 / total as f64,
        sum as f64 / total as f64
    );
}
