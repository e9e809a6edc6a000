//! Measurements behind the choice of ONE correlator (advisory lock) over address-hash
//! partitioning (ARCHITECTURE.md § Fleet mode): how fast the correlator's event tail reads
//! the events other servers stored, next to how fast the same database ingests them, and how
//! soon PostgreSQL hands the correlator lock to a waiting server once the holder's
//! connection is gone.
//!
//!   PALISADE_BENCH_PG_URL=postgres://… cargo run --release -p palisade-store --example cluster_bench [EVENTS]
//!
//! Uses the database as given (creates a bench agent; run it on a throwaway database, e.g.
//! under scripts/with-postgres.sh with PALISADE_BENCH_PG_URL=$PALISADE_TEST_PG_URL). Prints
//! one JSON line.

use palisade_core::{Clock, Event, SystemClock, Timestamp};
use palisade_store::cluster::{Candidate, EventTail};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let url = std::env::var("PALISADE_BENCH_PG_URL")
        .expect("PALISADE_BENCH_PG_URL=postgres://… (a throwaway database)");
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(200_000, |s| s.parse().expect("EVENTS is a number"));
    let mut fleet = palisade_store::fleet::open(&url).expect("open");
    let now = SystemClock.now();
    let tag = now.0;
    fleet
        .token_add(&format!("bench-token-{tag}"), 1, None, now)
        .unwrap();
    let agent = format!("bench-{tag}");
    fleet
        .enroll(
            &format!("bench-token-{tag}"),
            &agent,
            &agent,
            "bench-key",
            now,
            false,
        )
        .unwrap()
        .unwrap();
    fleet.high_water(&agent, 1).unwrap();

    // Ingest: batches of 500 as agents ship them.
    let t = Instant::now();
    let filter: Arc<str> = Arc::from("sshd");
    let rule: Arc<str> = Arc::from("failed_password");
    let mut seq = 0u64;
    while seq < n {
        let batch: Vec<(u64, String, Event)> = (0..500.min(n - seq))
            .map(|i| {
                let s = seq + i + 1;
                let ip = std::net::IpAddr::from([10, (s >> 16) as u8, (s >> 8) as u8, s as u8]);
                (
                    s,
                    "sshd".to_string(),
                    Event {
                        time: Timestamp(now.0 + s as i64),
                        ip,
                        filter: filter.clone(),
                        rule: rule.clone(),
                        failure: true,
                        user: None,
                        fields: Vec::new(),
                        evidence: Event::evidence_of(b""),
                    },
                )
            })
            .collect();
        let last = batch.last().unwrap().0;
        fleet.ingest(&agent, 1, last, &batch).unwrap();
        seq = last;
    }
    let ingest_s = t.elapsed().as_secs_f64();

    // The correlator's tail over the same events.
    let t = Instant::now();
    let mut tail = EventTail::connect(&url, now).unwrap();
    let mut read = 0u64;
    while read < n {
        read += tail
            .poll(5000)
            .unwrap()
            .iter()
            .filter(|e| e.host == agent)
            .count() as u64;
    }
    let tail_s = t.elapsed().as_secs_f64();

    // Lock hand-over: B waits (polling every 10 ms) while A holds; A's connection closes.
    let mut handover = Vec::new();
    for _ in 0..5 {
        let mut a = Candidate::connect(&url).unwrap();
        assert!(a.try_lead().unwrap());
        let mut b = Candidate::connect(&url).unwrap();
        assert!(!b.try_lead().unwrap());
        let t = Instant::now();
        drop(a);
        while !b.try_lead().unwrap() {
            std::thread::sleep(Duration::from_millis(10));
        }
        handover.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "{{\"events\":{n},\"ingest_events_per_s\":{:.0},\"tail_events_per_s\":{:.0},\"tail_over_ingest\":{:.2},\"lock_handover_ms\":{:?},\"late\":{},\"given_up\":{}}}",
        n as f64 / ingest_s,
        n as f64 / tail_s,
        ingest_s / tail_s,
        handover.iter().map(|h| (h * 10.0).round() / 10.0).collect::<Vec<_>>(),
        tail.stats().late,
        tail.stats().given_up,
    );
}
