use super::*;
use proptest::prelude::*;

/// Cases per property: `default`, or `PROPTEST_CASES` when set (bench/fuzz raises it).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ts(s: i64) -> Timestamp {
    Timestamp::from_secs(s)
}

/// 20 failures in 1 h from ≥ 3 hosts, ban 1 d (the example).
fn spec20() -> FleetJailSpec {
    let mut s = FleetJailSpec::new(
        "ssh-fleet",
        20,
        Duration::from_secs(3600),
        Some(Duration::from_secs(86400)),
    );
    s.min_hosts = 3;
    s
}

#[test]
fn distributed_slow_brute_force_is_detected_once() {
    // 5 hosts, each sees 4 failures in the hour: below a local max_retry of 5 everywhere.
    let mut c = Correlator::new(&[spec20()]);
    let mut dets = Vec::new();
    for i in 0..20i64 {
        let host = format!("web{}", i % 5);
        dets.extend(c.observe(&host, "sshd", ip("203.0.113.9"), ts(1000 + i * 170), true));
    }
    assert_eq!(dets.len(), 1, "{dets:?}");
    let d = &dets[0];
    assert_eq!(d.fleet_jail, "ssh-fleet");
    assert_eq!(d.target, net("203.0.113.9/32"));
    assert_eq!(d.failures, 20);
    assert_eq!(d.hosts, ["web0", "web1", "web2", "web3", "web4"]);
    assert_eq!(d.ban_time, Some(Duration::from_secs(86400)));
    assert_eq!(d.time, ts(1000 + 19 * 170));
    // The ban is remembered; the counting state is gone.
    assert_eq!(c.tracked(), 0);
    assert_eq!(c.kept_failures(), 0);
    assert_eq!(c.stats()[0].1.detections, 1);
}

#[test]
fn the_same_count_from_one_host_is_not_a_fleet_detection() {
    let mut c = Correlator::new(&[spec20()]);
    for i in 0..200i64 {
        assert!(c
            .observe("web1", "sshd", ip("203.0.113.9"), ts(i), true)
            .is_empty());
    }
    // Two hosts are still not three.
    for i in 0..50i64 {
        assert!(c
            .observe("web2", "sshd", ip("203.0.113.9"), ts(200 + i), true)
            .is_empty());
    }
    // Only the newest max_retry failures of one host are kept.
    assert_eq!(c.kept_failures(), 40);
    // The third host completes it.
    let d = c.observe("web3", "sshd", ip("203.0.113.9"), ts(300), true);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].hosts, ["web1", "web2", "web3"]);
    assert_eq!(d[0].failures, 41);
}

#[test]
fn failures_outside_the_window_do_not_add_up() {
    let mut c = Correlator::new(&[spec20()]);
    // 20 failures from 4 hosts, spread over 2 h: never 20 within one hour.
    for i in 0..20i64 {
        let host = format!("h{}", i % 4);
        assert!(c
            .observe(&host, "sshd", ip("198.51.100.1"), ts(i * 379), true)
            .is_empty());
    }
    // Window boundary is half-open: a failure exactly find_time after another is not in its
    // window.
    let mut s = FleetJailSpec::new("f", 2, Duration::from_secs(10), None);
    s.min_hosts = 2;
    let mut c = Correlator::new(&[s]);
    assert!(c.observe("a", "j", ip("1.1.1.1"), ts(0), true).is_empty());
    assert!(c.observe("b", "j", ip("1.1.1.1"), ts(10), true).is_empty());
    assert_eq!(c.observe("a", "j", ip("1.1.1.1"), ts(19), true).len(), 1);
}

#[test]
fn ipv4_slash_24_aggregation() {
    let mut s = FleetJailSpec::new("f", 6, Duration::from_secs(600), None);
    s.ipv4_prefix = 24;
    s.min_hosts = 2;
    let mut c = Correlator::new(&[s.clone()]);
    let mut dets = Vec::new();
    for i in 0..6u8 {
        let a = format!("192.0.2.{}", 10 + i);
        dets.extend(c.observe(
            ["a", "b"][i as usize % 2],
            "sshd",
            ip(&a),
            ts(i as i64),
            true,
        ));
    }
    assert_eq!(dets.len(), 1);
    assert_eq!(dets[0].target, net("192.0.2.0/24"));
    // Per address (the default), the same failures are six separate offenders.
    s.ipv4_prefix = 32;
    let mut c = Correlator::new(&[s]);
    for i in 0..6u8 {
        let a = format!("192.0.2.{}", 10 + i);
        assert!(c
            .observe(
                ["a", "b"][i as usize % 2],
                "sshd",
                ip(&a),
                ts(i as i64),
                true
            )
            .is_empty());
    }
    assert_eq!(c.tracked(), 6);
    // IPv4-mapped IPv6 counts as IPv4.
    let mut s = FleetJailSpec::new("f", 2, Duration::from_secs(600), None);
    s.ipv4_prefix = 24;
    let mut c = Correlator::new(&[s]);
    c.observe("a", "j", ip("::ffff:192.0.2.1"), ts(0), true);
    let d = c.observe("b", "j", ip("192.0.2.200"), ts(1), true);
    assert_eq!(d[0].target, net("192.0.2.0/24"));
}

#[test]
fn ipv6_slash_64_aggregation() {
    let mut c = Correlator::new(&[FleetJailSpec::new(
        "f",
        4,
        Duration::from_secs(600),
        Some(Duration::from_secs(60)),
    )]);
    let mut dets = Vec::new();
    for (i, a) in [
        "2001:db8:1:2::1",
        "2001:db8:1:2::2",
        "2001:db8:1:2:ffff::9",
        "2001:db8:1:2::1",
    ]
    .iter()
    .enumerate()
    {
        dets.extend(c.observe(["a", "b"][i % 2], "sshd", ip(a), ts(i as i64), true));
    }
    assert_eq!(dets.len(), 1);
    assert_eq!(dets[0].target, net("2001:db8:1:2::/64"));
    // Another /64 is another offender.
    assert!(c
        .observe("a", "sshd", ip("2001:db8:1:3::1"), ts(10), true)
        .is_empty());
    assert_eq!(c.tracked(), 1);
}

#[test]
fn skewed_host_after_correction_behaves() {
    // web3's clock runs 2 h ahead; the server measured the offset and subtracts it.
    let offset = 7200i64;
    let events: Vec<(&str, i64)> = (0..20)
        .map(|i| (["web1", "web2", "web3"][i % 3], 5000 + i as i64 * 100))
        .collect();
    let run = |correct: bool| {
        let mut c = Correlator::new(&[spec20()]);
        let mut dets = Vec::new();
        for &(h, t) in &events {
            let raw = if h == "web3" { t + offset } else { t };
            let seen = if correct && h == "web3" {
                raw - offset
            } else {
                raw
            };
            dets.extend(c.observe(h, "sshd", ip("203.0.113.50"), ts(seen), true));
        }
        (dets, c.stats()[0].1)
    };
    let (corrected, _) = run(true);
    assert_eq!(corrected.len(), 1);
    assert_eq!(corrected[0].failures, 20);
    assert_eq!(corrected[0].hosts, ["web1", "web2", "web3"]);
    assert_eq!(corrected[0].time, ts(5000 + 19 * 100));
    // The same events with web3's raw clock give a different answer: the correction matters.
    let (raw, stats) = run(false);
    assert!(raw.is_empty(), "{raw:?}");
    assert!(stats.too_late > 0, "{stats:?}");
}

#[test]
fn no_second_detection_during_ban_time() {
    let mut s = FleetJailSpec::new(
        "f",
        3,
        Duration::from_secs(600),
        Some(Duration::from_secs(3600)),
    );
    s.min_hosts = 2;
    let mut c = Correlator::new(&[s]);
    let a = ip("203.0.113.7");
    let feed = |c: &mut Correlator, t0: i64| -> usize {
        (0..3)
            .map(|i| {
                c.observe(["x", "y", "z"][i], "sshd", a, ts(t0 + i as i64), true)
                    .len()
            })
            .sum()
    };
    assert_eq!(feed(&mut c, 0), 1);
    // During the hour: ignored, counted.
    for k in 0..50 {
        assert_eq!(feed(&mut c, 10 + k * 60), 0);
    }
    assert_eq!(c.stats()[0].1.while_banned, 150);
    assert_eq!(c.tracked(), 0);
    // The fleet clock moves on (another address): the ban ends at 2 + 3600.
    c.observe("x", "sshd", ip("198.51.100.1"), ts(3602), false);
    assert_eq!(feed(&mut c, 3603), 1);
    // Forget lifts the remembered ban at once.
    c.forget(&net("203.0.113.7/32"));
    assert_eq!(feed(&mut c, 3700), 1);
}

#[test]
fn permanent_ban_and_restored_bans() {
    let mut s = FleetJailSpec::new("f", 2, Duration::from_secs(600), None);
    s.min_hosts = 1;
    let mut c = Correlator::new(&[s]);
    assert_eq!(c.observe("a", "j", ip("10.0.0.1"), ts(0), true).len(), 0);
    assert_eq!(c.observe("a", "j", ip("10.0.0.1"), ts(1), true).len(), 1);
    for i in 0..10 {
        assert!(c
            .observe("a", "j", ip("10.0.0.1"), ts(1_000_000 * i), true)
            .is_empty());
    }
    // A ban restored from the log at start.
    c.note_ban("f", net("10.0.0.2/32"), Some(ts(5000)));
    c.note_ban("nope", net("10.0.0.3/32"), None);
    let mut g = FleetJailSpec::new("g", 1, Duration::from_secs(60), None);
    g.min_hosts = 1;
    let mut c2 = Correlator::new(&[g]);
    c2.note_ban("g", net("10.0.0.2/32"), Some(ts(5000)));
    assert!(c2
        .observe("a", "j", ip("10.0.0.2"), ts(4999), true)
        .is_empty());
    assert_eq!(
        c2.observe("a", "j", ip("10.0.0.2"), ts(5000), true).len(),
        1
    );
}

#[test]
fn out_of_order_within_the_window_counts_stale_does_not() {
    let mut s = FleetJailSpec::new("f", 4, Duration::from_secs(100), None);
    s.min_hosts = 2;
    let mut c = Correlator::new(&[s.clone()]);
    // Arrival order differs from event order (a host's batch arrives late).
    let arrivals = [("a", 50), ("a", 90), ("b", 10), ("b", 60)];
    let mut dets = Vec::new();
    for (h, t) in arrivals {
        dets.extend(c.observe(h, "j", ip("1.2.3.4"), ts(t), true));
    }
    assert_eq!(dets.len(), 1);
    assert_eq!(dets[0].failures, 4);
    // A late failure can complete an earlier window (not the newest one).
    let mut c = Correlator::new(&[s.clone()]);
    for (h, t) in [("a", 100), ("a", 110), ("a", 120), ("a", 215)] {
        assert!(c.observe(h, "j", ip("1.2.3.4"), ts(t), true).is_empty());
    }
    // Window (20, 120] holds a@100, a@110, b@116, a@120; the newest, (115, 215], only 3.
    let d = c.observe("b", "j", ip("1.2.3.4"), ts(116), true);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].failures, 4, "{d:?}");
    assert_eq!(d[0].hosts, ["a", "b"]);
    // Older than the newest failure's window: refused.
    let mut c = Correlator::new(&[s]);
    for (h, t) in [("a", 500), ("a", 501), ("a", 502)] {
        c.observe(h, "j", ip("1.2.3.4"), ts(t), true);
    }
    assert!(c.observe("b", "j", ip("1.2.3.4"), ts(400), true).is_empty());
    assert_eq!(c.stats()[0].1.too_late, 1);
}

#[test]
fn jails_filter_and_several_fleet_jails() {
    let mut ssh = FleetJailSpec::new("ssh", 2, Duration::from_secs(60), None);
    ssh.jails = vec!["sshd".into()];
    let mut web = FleetJailSpec::new("web", 3, Duration::from_secs(60), None);
    web.jails = vec!["nginx".into(), "apache".into()];
    let all = FleetJailSpec::new("all", 4, Duration::from_secs(60), None);
    let mut c = Correlator::new(&[ssh, web, all]);
    let a = ip("192.0.2.1");
    assert!(c.observe("h1", "nginx", a, ts(0), true).is_empty());
    assert!(c.observe("h2", "apache", a, ts(1), true).is_empty());
    let d = c.observe("h3", "sshd", a, ts(2), true);
    assert!(d.is_empty(), "{d:?}");
    let d = c.observe("h4", "nginx", a, ts(3), true);
    let names: Vec<&str> = d.iter().map(|d| d.fleet_jail.as_str()).collect();
    assert_eq!(names, ["web", "all"]);
    let d = c.observe("h5", "sshd", a, ts(4), true);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].fleet_jail, "ssh");
    // Non-failures count nothing.
    for i in 0..10 {
        assert!(c
            .observe("h1", "sshd", ip("192.0.2.2"), ts(5 + i), false)
            .is_empty());
    }
    assert_eq!(c.stats()[0].1.failures, 2);
}

#[test]
fn bounded_keys_hosts_and_failures() {
    let mut s = FleetJailSpec::new("f", 1000, Duration::from_secs(3600), None);
    s.max_keys = 100;
    s.max_hosts_per_key = 4;
    s.max_events = 500;
    s.min_hosts = 3;
    let mut c = Correlator::new(&[s]);
    for i in 0..10_000u32 {
        let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i % 400));
        let host = format!("h{}", i % 7);
        c.observe(&host, "j", a, ts(i as i64), true);
        assert!(c.tracked() <= 100);
        assert!(c.kept_failures() <= 500);
    }
    let st = c.stats()[0].1;
    assert!(st.keys_evicted > 0, "{st:?}");
    assert!(st.hosts_evicted > 0, "{st:?}");
    // The most recent target survived.
    assert!(c.jails[0].keys.contains_key(&net("10.0.1.143/32")));
    // Stale targets go on the sweep.
    c.observe("h1", "j", ip("1.1.1.1"), ts(1_000_000), false);
    assert_eq!(c.tracked(), 0);
    assert_eq!(c.kept_failures(), 0);
}

#[test]
fn many_hosts_on_one_target_keep_the_busiest_window_right() {
    // min_hosts above the default host bound raises it.
    let mut s = FleetJailSpec::new("f", 100, Duration::from_secs(600), None);
    s.min_hosts = 100;
    s.max_hosts_per_key = 8;
    let mut c = Correlator::new(&[s]);
    let mut d = Vec::new();
    for i in 0..100 {
        d.extend(c.observe(&format!("h{i}"), "j", ip("1.1.1.1"), ts(i), true));
    }
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].hosts.len(), 100);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(200)))]

    /// Any spread of failures below every host's own threshold, from at least `min_hosts`
    /// hosts, within one window, in any arrival order, is detected exactly once.
    #[test]
    fn distributed_spread_detected_once(
        per_host in proptest::collection::vec(1u32..5, 3..12),
        times in proptest::collection::vec(0i64..3599, 60),
        order in proptest::collection::vec(any::<u32>(), 60),
    ) {
        let total: u32 = per_host.iter().sum();
        let mut s = FleetJailSpec::new("f", total, Duration::from_secs(3600), Some(Duration::from_secs(600)));
        s.min_hosts = 3;
        let mut events: Vec<(String, i64, u32)> = Vec::new();
        let mut k = 0;
        for (h, &n) in per_host.iter().enumerate() {
            for _ in 0..n {
                events.push((format!("host{h}"), 10_000 + times[k % 60], order[k % 60]));
                k += 1;
            }
        }
        events.sort_by_key(|e| e.2);
        let mut c = Correlator::new(&[s]);
        let mut dets = Vec::new();
        for (h, t, _) in &events {
            dets.extend(c.observe(h, "sshd", ip("203.0.113.1"), ts(*t), true));
        }
        prop_assert_eq!(dets.len(), 1);
        prop_assert_eq!(dets[0].failures, total);
        prop_assert_eq!(dets[0].hosts.len(), per_host.len());
    }

    /// One host alone never makes a fleet detection when `min_hosts` ≥ 2, whatever it sends.
    #[test]
    fn one_host_alone_never(
        events in proptest::collection::vec((0u8..4, 0i64..10_000), 1..400),
        min_hosts in 2u32..5,
        max_retry in 1u32..10,
    ) {
        let mut s = FleetJailSpec::new("f", max_retry, Duration::from_secs(600), None);
        s.min_hosts = min_hosts;
        s.ipv4_prefix = 24;
        let mut c = Correlator::new(&[s]);
        for (a, t) in events {
            let d = c.observe("only", "j", IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, a)), ts(t), true);
            prop_assert!(d.is_empty());
        }
        prop_assert!(c.kept_failures() <= max_retry as usize);
    }

    /// The bounds hold under any stream.
    #[test]
    fn bounds_hold(
        events in proptest::collection::vec((0u16..300, 0u8..20, 0i64..5000), 1..2000),
    ) {
        let mut s = FleetJailSpec::new("f", 50, Duration::from_secs(1000), None);
        s.max_keys = 32;
        s.max_hosts_per_key = 5;
        s.max_events = 200;
        s.min_hosts = 5;
        let mut c = Correlator::new(&[s]);
        for (a, h, t) in events {
            c.observe(&format!("h{h}"), "j", IpAddr::V4(std::net::Ipv4Addr::from(a as u32 + 1)), ts(t), true);
            prop_assert!(c.tracked() <= 32);
            prop_assert!(c.kept_failures() <= 200);
            let counted: usize = c.jails[0].keys.values().map(|k| k.events.len()).sum();
            prop_assert_eq!(counted, c.kept_failures());
            for k in c.jails[0].keys.values() {
                let mut hs: Vec<u32> = k.events.iter().map(|e| e.1).collect();
                hs.sort_unstable();
                hs.dedup();
                prop_assert!(hs.len() <= 5);
                prop_assert!(k.events.windows(2).all(|w| w[0].0 <= w[1].0));
                for h in hs {
                    prop_assert!(k.events.iter().filter(|e| e.1 == h).count() <= 50);
                }
            }
            prop_assert!(c.hosts.scratch.iter().all(|&n| n == 0));
        }
    }
}

/// A brute-force model of the semantics in the module documentation: it keeps every accepted
/// failure, recomputes what is kept from scratch, and tries every window.
mod reference {
    use super::*;

    #[derive(Default)]
    struct RefKey {
        newest: i64,
        accepted: Vec<(i64, String)>,
    }

    pub struct RefJail {
        spec: FleetJailSpec,
        clock: Option<i64>,
        bans: Vec<(IpNet, Option<i64>)>,
        keys: Vec<(IpNet, RefKey)>,
    }

    fn mask(ip: IpAddr, v4: u8, v6: u8) -> IpNet {
        match ip {
            IpAddr::V4(a) => {
                let bits = u32::from(a) & (u32::MAX.checked_shl(32 - v4 as u32).unwrap_or(0));
                IpNet::new(IpAddr::V4(bits.into()), v4).unwrap()
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a) & (u128::MAX.checked_shl(128 - v6 as u32).unwrap_or(0));
                IpNet::new(IpAddr::V6(bits.into()), v6).unwrap()
            }
        }
    }

    impl RefJail {
        pub fn new(spec: FleetJailSpec) -> Self {
            RefJail {
                spec,
                clock: None,
                bans: Vec::new(),
                keys: Vec::new(),
            }
        }

        pub fn observe(
            &mut self,
            host: &str,
            jail: &str,
            ip: IpAddr,
            t: i64,
            failure: bool,
        ) -> Option<FleetDetection> {
            let s = &self.spec;
            if !s.jails.is_empty() && !s.jails.iter().any(|j| j == jail) {
                return None;
            }
            let ft = s.find_time.as_micros() as i64;
            let g = self.clock.map_or(t, |c| c.max(t));
            self.clock = Some(g);
            if !failure {
                return None;
            }
            let target = mask(ip, s.ipv4_prefix, s.ipv6_prefix);
            if let Some(i) = self.bans.iter().position(|b| b.0 == target) {
                if self.bans[i].1.is_none_or(|end| g < end) {
                    return None;
                }
                self.bans.remove(i);
            }
            if let Some(i) = self.keys.iter().position(|k| k.0 == target) {
                if self.keys[i].1.newest <= g - 2 * ft {
                    self.keys.remove(i);
                } else if t <= self.keys[i].1.newest - ft {
                    return None;
                }
            }
            let i = match self.keys.iter().position(|k| k.0 == target) {
                Some(i) => i,
                None => {
                    self.keys.push((
                        target,
                        RefKey {
                            newest: t,
                            accepted: Vec::new(),
                        },
                    ));
                    self.keys.len() - 1
                }
            };
            let key = &mut self.keys[i].1;
            key.accepted.push((t, host.to_string()));
            key.newest = key.newest.max(t);
            // Kept: within 2 × find_time of the newest, then each host's newest max_retry.
            let mut kept: Vec<(i64, String)> = Vec::new();
            let mut hosts: Vec<&String> = key.accepted.iter().map(|a| &a.1).collect();
            hosts.sort();
            hosts.dedup();
            for h in hosts {
                let mut mine: Vec<i64> = key
                    .accepted
                    .iter()
                    .filter(|a| &a.1 == h && a.0 > key.newest - 2 * ft)
                    .map(|a| a.0)
                    .collect();
                mine.sort_unstable_by(|a, b| b.cmp(a));
                mine.truncate(s.max_retry as usize);
                kept.extend(mine.into_iter().map(|t| (t, h.clone())));
            }
            let mut ends: Vec<i64> = kept.iter().map(|k| k.0).collect();
            ends.sort_unstable();
            ends.dedup();
            for end in ends {
                let inside: Vec<&(i64, String)> = kept
                    .iter()
                    .filter(|k| k.0 > end - ft && k.0 <= end)
                    .collect();
                let mut hs: Vec<String> = inside.iter().map(|k| k.1.clone()).collect();
                hs.sort();
                hs.dedup();
                if inside.len() >= s.max_retry as usize && hs.len() >= s.min_hosts as usize {
                    self.keys.remove(i);
                    self.bans
                        .push((target, s.ban_time.map(|b| g + b.as_micros() as i64)));
                    return Some(FleetDetection {
                        fleet_jail: s.name.clone(),
                        target,
                        hosts: hs,
                        failures: inside.len() as u32,
                        ban_time: s.ban_time,
                        time: Timestamp(g),
                    });
                }
            }
            None
        }
    }
}

fn arb_spec(name: &'static str) -> impl Strategy<Value = FleetJailSpec> {
    (
        1u32..8,
        1u64..400,
        prop_oneof![Just(None), (1u64..1500).prop_map(Some)],
        1u32..4,
        prop_oneof![Just(32u8), Just(24u8), Just(30u8)],
        prop_oneof![Just(128u8), Just(64u8), Just(48u8)],
        prop_oneof![
            Just(vec![]),
            Just(vec!["a".to_string()]),
            Just(vec!["a".to_string(), "b".to_string()])
        ],
    )
        .prop_map(move |(mr, ft, ban, mh, v4, v6, jails)| {
            let mut s = FleetJailSpec::new(
                name,
                mr,
                Duration::from_secs(ft),
                ban.map(Duration::from_secs),
            );
            s.min_hosts = mh;
            s.ipv4_prefix = v4;
            s.ipv6_prefix = v6;
            s.jails = jails;
            s
        })
}

/// (host, jail, address, time step, jitter, failure)
type Ev = (u8, u8, u8, u16, i16, bool);

fn addr(i: u8) -> IpAddr {
    match i % 8 {
        0..=2 => IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, i.wrapping_mul(37))),
        3..=4 => IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, i.wrapping_mul(11))),
        5..=6 => format!("2001:db8:0:{}::{}", i % 2, i).parse().unwrap(),
        _ => format!("2001:db8:1:{}::1", i % 3).parse().unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(600)))]

    /// The correlator's decisions equal the brute-force model's, event by event, over random
    /// multi-host, multi-prefix streams with out-of-order arrivals and two fleet jails.
    #[test]
    fn equals_brute_force_reference(
        a in arb_spec("one"),
        b in arb_spec("two"),
        events in proptest::collection::vec(
            (0u8..5, 0u8..3, any::<u8>(), 0u16..40, -300i16..300, proptest::bool::weighted(0.9)),
            1..400,
        ),
    ) {
        let mut c = Correlator::new(&[a.clone(), b.clone()]);
        let mut ra = reference::RefJail::new(a);
        let mut rb = reference::RefJail::new(b);
        let mut base = 1_000_000i64;
        for (k, (h, j, ip, step, jitter, failure)) in events.into_iter().enumerate() {
            let ev: Ev = (h, j, ip, step, jitter, failure);
            base += step as i64;
            // Some events arrive late (jitter), a few far behind.
            let t = base + if k % 17 == 0 { jitter as i64 * 4 } else { jitter as i64 / 10 };
            let t = Timestamp::from_secs(t);
            let host = format!("h{h}");
            let jail = ["a", "b", "c"][j as usize];
            let ip = addr(ip);
            let got = c.observe(&host, jail, ip, t, failure);
            let mut want: Vec<FleetDetection> = Vec::new();
            want.extend(ra.observe(&host, jail, ip, t.micros(), failure));
            want.extend(rb.observe(&host, jail, ip, t.micros(), failure));
            prop_assert_eq!(&got, &want, "event {} {:?}", k, ev);
        }
    }
}

#[test]
fn failures_that_can_no_longer_count_are_dropped() {
    let mut s = FleetJailSpec::new("f", 10, Duration::from_secs(100), None);
    s.min_hosts = 2;
    let mut c = Correlator::new(&[s]);
    for t in [0, 10, 20] {
        c.observe("a", "j", ip("1.2.3.4"), ts(t), true);
    }
    assert_eq!(c.kept_failures(), 3);
    // 2 × find_time after the target's newest failure, the old ones go.
    c.observe("b", "j", ip("1.2.3.4"), ts(215), true);
    assert_eq!(c.kept_failures(), 2, "20 and 215 are 195 s apart: 20 stays");
    c.observe("b", "j", ip("1.2.3.4"), ts(221), true);
    assert_eq!(c.kept_failures(), 2);
    assert_eq!(c.tracked(), 1);
}
