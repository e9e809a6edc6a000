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
