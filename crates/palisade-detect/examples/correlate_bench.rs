//! Throughput of the fleet correlator, for bench/fleet/correlate.sh.
//!
//! Builds a synthetic fleet stream in memory (deterministic, seeded): `--events N` events from
//! `--hosts H` hosts over 6 h of event time, arriving up to 5 s out of order:
//! * background: failures and successes of `--addresses` (50,000) scattered addresses (none reaches a
//!   threshold);
//! * 200 distributed attackers: 30 failures each within an hour, spread over 10 hosts (at
//!   most 3 per host, below any host's own threshold) — all must be detected;
//! * 50 single-host attackers: 40 failures each on one host — a fleet jail with
//!   `min_hosts = 3` must not detect them.
//!
//! Two fleet jails run: per address (20 failures / 1 h / ≥ 3 hosts) and per /24 (60 / 1 h /
//! ≥ 5 hosts). Only the `observe` loop is timed; wall time and CPU time (from
//! `/proc/self/schedstat`) are printed as one JSON line, with the detections checked against
//! the truth (exit 1 on a mismatch). As a yardstick measured in the same run, the same stream
//! also goes through two single-host [`Detector`]s (fail2ban's per-address counting, what one
//! host's jail does, without the host dimension): `baseline_*` in the output.

use palisade_core::Timestamp;
use palisade_detect::correlate::{Correlator, FleetJailSpec};
use palisade_detect::Detector;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Ev {
    arrival: i64,
    time: i64,
    host: u16,
    ip: IpAddr,
    failure: bool,
}

fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Resident memory (kB) from /proc/self/status.
fn rss_kb() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn public(r: &mut Rng) -> Ipv4Addr {
    // 11.0.0.0 – 126.255.255.255: no private, loopback or test ranges involved.
    Ipv4Addr::from(0x0b00_0000 + r.below(0x7400_0000) as u32)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str, d: u64| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .map_or(d, |v| v.parse().expect("a number"))
    };
    let n = get("--events", 2_000_000) as usize;
    let hosts = get("--hosts", 100).max(10) as u16;
    let addresses = get("--addresses", 50_000).max(1) as usize;
    let mut r = Rng(get("--seed", 7));
    let span = 6 * 3600 * Timestamp::MICROS;
    let t0 = 1_800_000_000 * Timestamp::MICROS;

    let mut evs: Vec<Ev> = Vec::with_capacity(n + 20_000);
    let mut truth_distributed = HashSet::new();
    let mut truth_single = HashSet::new();
    for _ in 0..200 {
        let ip = public(&mut r);
        truth_distributed.insert(ip);
        let start = t0 + r.below((span - 3600 * Timestamp::MICROS) as u64) as i64;
        let first_host = r.below(hosts as u64) as u16;
        for k in 0..30u16 {
            let time = start + r.below(3500 * Timestamp::MICROS as u64) as i64;
            let host = (first_host + k % 10) % hosts;
            evs.push(Ev {
                arrival: time,
                time,
                host,
                ip: IpAddr::V4(ip),
                failure: true,
            });
        }
    }
    for _ in 0..50 {
        let ip = public(&mut r);
        truth_single.insert(ip);
        let start = t0 + r.below((span - 3600 * Timestamp::MICROS) as u64) as i64;
        let host = r.below(hosts as u64) as u16;
        for _ in 0..40 {
            let time = start + r.below(3000 * Timestamp::MICROS as u64) as i64;
            evs.push(Ev {
                arrival: time,
                time,
                host,
                ip: IpAddr::V4(ip),
                failure: true,
            });
        }
    }
    let pool: Vec<Ipv4Addr> = (0..addresses).map(|_| public(&mut r)).collect();
    while evs.len() < n {
        let time = t0 + r.below(span as u64) as i64;
        evs.push(Ev {
            arrival: time,
            time,
            host: r.below(hosts as u64) as u16,
            ip: IpAddr::V4(pool[r.below(pool.len() as u64) as usize]),
            failure: r.below(10) < 7,
        });
    }
    // Arrival order: event time plus up to 5 s of shipping delay.
    for e in &mut evs {
        e.arrival = e.time + r.below(5 * Timestamp::MICROS as u64) as i64;
    }
    evs.sort_by_key(|e| e.arrival);
    let names: Vec<String> = (0..hosts).map(|h| format!("host{h:04}")).collect();

    let mut per_addr = FleetJailSpec::new(
        "fleet-ssh",
        20,
        Duration::from_secs(3600),
        Some(Duration::from_secs(86400)),
    );
    per_addr.min_hosts = 3;
    per_addr.jails = vec!["sshd".into()];
    let mut per_24 = FleetJailSpec::new(
        "fleet-ssh-24",
        60,
        Duration::from_secs(3600),
        Some(Duration::from_secs(86400)),
    );
    per_24.min_hosts = 5;
    per_24.ipv4_prefix = 24;
    let mut c = Correlator::new(&[per_addr, per_24]);

    let rss0 = rss_kb();
    let cpu0 = cpu_ns();
    let w = Instant::now();
    let mut dets = Vec::new();
    for e in &evs {
        dets.extend(c.observe(
            &names[e.host as usize],
            "sshd",
            e.ip,
            Timestamp(e.time),
            e.failure,
        ));
    }
    let wall = w.elapsed().as_secs_f64();
    let cpu = cpu_ns().zip(cpu0).map(|(a, b)| (a - b) as f64 / 1e9);
    let state_kb = rss_kb().zip(rss0).map(|(a, b)| a.saturating_sub(b));

    // Baseline: two local detectors (per address and per /24) over the same stream.
    let mut d32 = Detector::new(20, Duration::from_secs(3600), 100_000);
    let mut d24 = Detector::new(60, Duration::from_secs(3600), 100_000);
    let bcpu0 = cpu_ns();
    let bw = Instant::now();
    let mut local = 0u64;
    for e in &evs {
        if e.failure {
            let k = palisade_core::target_of(e.ip);
            local += d32.observe(k, Timestamp(e.time)).is_some() as u64;
            let k24 = match e.ip {
                IpAddr::V4(a) => ipnet::IpNet::V4(ipnet::Ipv4Net::new(a, 24).expect("24").trunc()),
                IpAddr::V6(_) => k,
            };
            local += d24.observe(k24, Timestamp(e.time)).is_some() as u64;
        }
    }
    let bwall = bw.elapsed().as_secs_f64();
    let bcpu = cpu_ns().zip(bcpu0).map(|(a, b)| (a - b) as f64 / 1e9);

    let found: HashSet<Ipv4Addr> = dets
        .iter()
        .filter(|d| d.fleet_jail == "fleet-ssh")
        .filter_map(|d| match d.target.addr() {
            IpAddr::V4(a) => Some(a),
            _ => None,
        })
        .collect();
    let missed = truth_distributed.difference(&found).count();
    let single = truth_single.intersection(&found).count();
    let other = found
        .iter()
        .filter(|a| !truth_distributed.contains(*a))
        .count();
    let per24 = dets
        .iter()
        .filter(|d| d.fleet_jail == "fleet-ssh-24")
        .count();
    let stats = c.stats();
    println!(
        "{{\"events\":{},\"hosts\":{},\"addresses\":{},\"wall_s\":{:.4},\"cpu_s\":{},\"events_per_s\":{:.0},\"events_per_cpu_s\":{},\"detections\":{},\"distributed_detected\":{},\"distributed_missed\":{},\"single_host_detected\":{},\"other_detected\":{},\"per_24_detections\":{},\"tracked\":{},\"kept_failures\":{},\"keys_evicted\":{},\"state_rss_kb\":{},\"baseline_wall_s\":{:.4},\"baseline_cpu_s\":{},\"baseline_events_per_cpu_s\":{},\"baseline_detections\":{}}}",
        evs.len(),
        hosts,
        addresses,
        wall,
        cpu.map_or("null".into(), |c| format!("{c:.4}")),
        evs.len() as f64 / wall,
        cpu.map_or("null".into(), |c| format!("{:.0}", evs.len() as f64 / c)),
        dets.len(),
        truth_distributed.len() - missed,
        missed,
        single,
        other,
        per24,
        c.tracked(),
        c.kept_failures(),
        stats.iter().map(|s| s.1.keys_evicted).sum::<u64>(),
        state_kb.map_or("null".into(), |k| k.to_string()),
        bwall,
        bcpu.map_or("null".into(), |c| format!("{c:.4}")),
        bcpu.map_or("null".into(), |c| format!("{:.0}", evs.len() as f64 / c)),
        local,
    );
    if missed > 0 || single > 0 || other > 0 {
        eprintln!("detections differ from the truth");
        std::process::exit(1);
    }
}
