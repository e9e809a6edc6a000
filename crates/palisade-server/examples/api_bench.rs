//! Benchmark helper for `bench/api/run.sh`.
//!
//! - `api_bench seed URL EVENTS IPS` fills a store with EVENTS events from IPS addresses
//!   spread over the last 30 days (plus one decision per 25 addresses).
//! - `api_bench serve URL ADDR` serves the API on ADDR over that store with a stand-in
//!   daemon, prints a read API token on standard output, and sets up the dashboard account
//!   `bench` (password from `PALISADE_BENCH_PASSWORD`, default `bench`).
//! - `api_bench ip N` prints the seed's address number N (0 is the heaviest offender; the
//!   higher N, the fewer events).

use palisade_core::{Clock, Decision, Event, Origin, SystemClock, Timestamp};
use palisade_server::{ControlApi, ControlError, FeedHub, ServerConfig};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

struct Idle;

impl ControlApi for Idle {
    fn status(&self) -> Result<palisade_proto::StatusReport, ControlError> {
        Ok(palisade_proto::StatusReport::default())
    }
    fn ban(
        &self,
        _: ipnet::IpNet,
        _: Option<std::time::Duration>,
        _: &str,
    ) -> Result<palisade_core::Decision, ControlError> {
        Err(ControlError::Unavailable("benchmark".into()))
    }
    fn unban(&self, _: ipnet::IpNet) -> Result<u64, ControlError> {
        Err(ControlError::Unavailable("benchmark".into()))
    }
}

/// A deterministic pseudo-random sequence (xorshift), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn ip_of(i: u64) -> IpAddr {
    // Spread over public-looking space, deterministic.
    let x = (i.wrapping_mul(2_654_435_761) % 0xC000_0000) as u32 + 0x0100_0000;
    IpAddr::V4(Ipv4Addr::from(x))
}

fn seed(url: &str, events: u64, ips: u64) {
    let mut store = palisade_store::open(url).expect("open store");
    let now = SystemClock.now().secs();
    let span: u64 = 30 * 86_400;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let jails = ["sshd", "nginx", "postfix", "dovecot"];
    let t0 = std::time::Instant::now();
    let batch = 5_000;
    let mut done = 0;
    while done < events {
        let n = batch.min(events - done);
        let mut by_jail: Vec<Vec<Event>> = vec![Vec::new(); jails.len()];
        for _ in 0..n {
            // Zipf-ish: low indexes (heavy hitters) far more often.
            let r = rng.next();
            let idx = ((r % ips) as f64 * ((rng.next() % 1000) as f64 / 1000.0).powi(3)) as u64;
            let ip = ip_of(idx);
            let secs = now - (rng.next() % span) as i64;
            let j = (rng.next() % 10) as usize % jails.len();
            by_jail[j].push(Event {
                time: Timestamp::from_secs(secs),
                ip,
                filter: jails[j].into(),
                rule: "failed_password".into(),
                failure: true,
                user: Some("root".into()),
                fields: vec![("port".into(), "22".into())],
                evidence: format!("Failed password for root from {ip} port 22 ssh2").into(),
            });
        }
        for (j, evs) in by_jail.iter().enumerate() {
            store.record_events(jails[j], evs).expect("record");
        }
        done += n;
    }
    // Make sure every address exists at least once.
    let mut extra = Vec::new();
    for i in 0..ips {
        extra.push(Event {
            time: Timestamp::from_secs(now - (i % span) as i64),
            ip: ip_of(i),
            filter: "sshd".into(),
            rule: "failed_password".into(),
            failure: true,
            user: None,
            fields: vec![],
            evidence: "".into(),
        });
        if extra.len() == batch as usize {
            store.record_events("sshd", &extra).expect("record");
            extra.clear();
        }
    }
    store.record_events("sshd", &extra).expect("record");
    for i in (0..ips).step_by(25) {
        let created = now - (rng.next() % span) as i64;
        store
            .insert_decision(&Decision {
                id: 0,
                target: palisade_core::target_of(ip_of(i)),
                jail: "sshd".into(),
                origin: Origin::Jail,
                reason: "5 failures in 10m".into(),
                created: Timestamp::from_secs(created),
                expires: Some(Timestamp::from_secs(created + 3600)),
                simulated: false,
                level: 0,
            })
            .expect("decision");
    }
    eprintln!(
        "seeded {} events, {ips} addresses in {:.1} s",
        events + ips,
        t0.elapsed().as_secs_f64()
    );
}

fn serve(url: &str, addr: &str) {
    let (token, hash) = palisade_server::auth::new_api_token();
    let mut store = palisade_store::open(url).expect("open store");
    store
        .token_add("bench", "read", &hash, SystemClock.now())
        .expect("token");
    // A dashboard account for bench/api/paint.mjs.
    let password = std::env::var("PALISADE_BENCH_PASSWORD").unwrap_or_else(|_| "bench".into());
    let pw_hash = palisade_server::auth::hash_password(&password).expect("hash");
    store
        .user_set("bench", &pw_hash, SystemClock.now())
        .expect("user");
    drop(store);
    let geo = std::env::var("PALISADE_BENCH_GEOIP").ok().map(Into::into);
    let cfg = ServerConfig {
        listen: addr.parse().expect("ADDR"),
        geoip: palisade_server::GeoPaths {
            country: geo,
            ..Default::default()
        },
        ..ServerConfig::default()
    };
    let h =
        palisade_server::spawn(cfg, url.to_owned(), Arc::new(Idle), FeedHub::new()).expect("spawn");
    println!("{token}");
    eprintln!("serving {} (stop with a signal)", h.url());
    loop {
        std::thread::park();
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a.get(1).map(String::as_str) {
        Some("seed") if a.len() == 5 => seed(&a[2], a[3].parse().unwrap(), a[4].parse().unwrap()),
        Some("serve") if a.len() == 4 => serve(&a[2], &a[3]),
        Some("ip") if a.len() == 3 => println!("{}", ip_of(a[2].parse().unwrap())),
        _ => {
            eprintln!(
                "usage: api_bench seed URL EVENTS IPS | api_bench serve URL ADDR | api_bench ip N"
            );
            std::process::exit(2);
        }
    }
}
