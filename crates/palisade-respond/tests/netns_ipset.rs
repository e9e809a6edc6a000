//! ipset + iptables/ip6tables responder against a real kernel, inside throwaway network
//! namespaces, proven with real TCP connections. Skips (passes with `SKIP:`) without root,
//! unless `PALISADE_REQUIRE_NETNS=1`.

#[path = "netns_common.rs"]
mod common;

use common::*;
use palisade_core::Timestamp;
use palisade_respond::{IpsetConfig, IpsetResponder, Responder};
use std::time::{Duration, Instant};

const IPSET: &str = "/usr/sbin/ipset";
const IPT: &str = "/usr/sbin/iptables";
const IP6T: &str = "/usr/sbin/ip6tables";

#[test]
fn helper() {
    helper_main();
}

fn responder(t: &Topology, cfg: IpsetConfig) -> IpsetResponder {
    IpsetResponder::new(
        "ipset",
        IpsetConfig {
            netns: Some(t.srv.clone()),
            ..cfg
        },
    )
    .unwrap()
}

fn secs(t: Timestamp, s: i64) -> Timestamp {
    Timestamp(t.0 + s * 1_000_000)
}

/// iptables-save + ip6tables-save + set names, without comments and counters.
fn snapshot(t: &Topology) -> String {
    let mut s = String::new();
    for p in ["/usr/sbin/iptables-save", "/usr/sbin/ip6tables-save"] {
        for line in run_in(&t.srv, &[p]).lines() {
            if !line.starts_with('#') {
                let line = match line.split_once(" [") {
                    Some((a, _)) if line.starts_with(':') => a,
                    _ => line,
                };
                s.push_str(line);
                s.push('\n');
            }
        }
    }
    s.push_str(&run_in(&t.srv, &[IPSET, "list", "-n"]));
    s
}

#[test]
fn ipset_bans_with_real_packets() {
    if !available(&[IPSET, IPT, IP6T]) {
        return;
    }
    let mut t = Topology::new();
    t.start_listener();
    // Foreign rules and a foreign set that must survive everything.
    run_in(
        &t.srv,
        &[
            IPT, "-w", "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT",
        ],
    );
    run_in(
        &t.srv,
        &[
            IP6T, "-w", "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT",
        ],
    );
    run_in(&t.srv, &[IPSET, "create", "other", "hash:ip"]);
    let original = snapshot(&t);
    assert_eq!(t.matrix(PORT), [true; 4], "baseline connectivity");

    let mut r = responder(&t, IpsetConfig::default());
    assert!(!r.expires_natively());
    let now = now();
    let att4 = decision("192.0.2.2/32", now, Some(secs(now, 3600)));

    r.apply(std::slice::from_ref(&att4), now).unwrap();
    assert_eq!(t.matrix(PORT), [false, true, true, true]);
    r.apply(std::slice::from_ref(&att4), now).unwrap();
    let st = r.status().unwrap();
    assert_eq!(st.elements.len(), 1, "{st:?}");
    let left = st.elements[0].1.unwrap();
    assert!(left > Duration::from_secs(3590), "{left:?}");
    assert!(st.dropped_packets.unwrap() > 0);
    // A second responder (restart) does not duplicate the jump or the rules.
    let mut r2 = responder(&t, IpsetConfig::default());
    r2.apply(std::slice::from_ref(&att4), now).unwrap();
    let rules = run_in(&t.srv, &[IPT, "-w", "-S"]);
    assert_eq!(rules.matches("-j PALISADE").count(), 1, "{rules}");
    assert_eq!(rules.matches("--match-set palisade4").count(), 1, "{rules}");

    r.revoke(std::slice::from_ref(&att4)).unwrap();
    r.revoke(std::slice::from_ref(&att4)).unwrap();
    assert_eq!(t.matrix(PORT), [true; 4]);

    // CIDR bans, overlapping host ban, permanent v6 /64.
    let nets = [
        decision("192.0.2.0/24", now, Some(secs(now, 600))),
        decision("fd00:5a1::/64", now, None),
        decision("192.0.2.2/32", now, Some(secs(now, 60))),
    ];
    r.apply(&nets, now).unwrap();
    assert_eq!(t.matrix(PORT), [false, false, true, true]);
    let els = r.status().unwrap().elements;
    assert_eq!(els.len(), 3, "{els:?}");
    assert!(els.contains(&("fd00:5a1::/64".parse().unwrap(), None)));
    r.revoke(&nets[..1]).unwrap();
    assert!(
        !t.connects(&t.att, "192.0.2.1", PORT),
        "the /32 still holds"
    );
    r.revoke(&nets).unwrap();
    assert_eq!(t.matrix(PORT), [true; 4]);

    // Native expiry (safety net even though the daemon also revokes).
    let short = decision("192.0.2.2/32", now, Some(Timestamp(now.0 + 2_000_000)));
    r.apply(std::slice::from_ref(&short), now).unwrap();
    assert!(!t.connects(&t.att, "192.0.2.1", PORT));
    std::thread::sleep(Duration::from_millis(3200));
    assert!(t.connects(&t.att, "192.0.2.1", PORT));

    // Re-apply updates the timeout.
    r.apply(&[decision(FR4, now, Some(secs(now, 10)))], now)
        .unwrap();
    r.apply(&[decision(FR4, now, Some(secs(now, 5000)))], now)
        .unwrap();
    let els = r.status().unwrap().elements;
    assert!(els[0].1.unwrap() > Duration::from_secs(4900), "{els:?}");

    // Reconcile.
    let now = common::now();
    let active = [
        decision(FR4, secs(now, -1000), Some(secs(now, -10))),
        decision(ATT4, secs(now, -50), Some(secs(now, 100))),
        decision("fd00:5a1::2/128", now, None),
        decision("203.0.113.0/24", now, Some(secs(now, 40 * 86400))),
    ];
    r.reconcile(&active, now).unwrap();
    let els = r.status().unwrap().elements;
    assert_eq!(els.len(), 3, "{els:?}");
    assert_eq!(els[0].0, "192.0.2.2/32".parse().unwrap());
    let left = els[0].1.unwrap();
    assert!(
        left > Duration::from_secs(95) && left <= Duration::from_secs(100),
        "{left:?}"
    );
    assert_eq!(
        els[1],
        ("203.0.113.0/24".parse().unwrap(), None),
        "beyond ipset's max"
    );
    assert_eq!(els[2], ("fd00:5a1::2/128".parse().unwrap(), None));
    assert_eq!(t.matrix(PORT), [false, false, true, true]);
    let sets = run_in(&t.srv, &[IPSET, "list", "-n"]);
    assert!(!sets.contains("-tmp"), "{sets}");

    // Port-restricted: reconcile rewrites the chain.
    let mut rp = responder(
        &t,
        IpsetConfig {
            ports: vec![PORT2],
            ..Default::default()
        },
    );
    rp.reconcile(&active, now).unwrap();
    assert_eq!(t.matrix(PORT), [true; 4]);
    assert_eq!(t.matrix(PORT2), [false, false, true, true]);

    rp.flush().unwrap();
    assert_eq!(t.matrix(PORT2), [true; 4]);

    rp.uninstall().unwrap();
    rp.uninstall().unwrap();
    assert_eq!(snapshot(&t), original);
    assert!(!rp.status().unwrap().installed);
}

#[test]
fn ipset_timings_100k_reconcile_10k_apply() {
    if !available(&[IPSET, IPT, IP6T]) {
        return;
    }
    let t = Topology::new();
    let mut r = responder(&t, IpsetConfig::default());
    let now = now();
    let active: Vec<_> = (0..100_000u32)
        .map(|i| {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 | i);
            decision(&format!("{a}/32"), now, Some(secs(now, 3600)))
        })
        .collect();
    let start = Instant::now();
    r.reconcile(&active, now).unwrap();
    let rec = start.elapsed();
    assert_eq!(r.status().unwrap().elements.len(), 100_000);
    let batch: Vec<_> = (0..10_000u32)
        .map(|i| {
            let a = std::net::Ipv4Addr::from(0x0b00_0000 | i);
            decision(&format!("{a}/32"), now, Some(secs(now, 600)))
        })
        .collect();
    let start = Instant::now();
    r.apply(&batch, now).unwrap();
    let apply = start.elapsed();
    let start = Instant::now();
    r.revoke(&batch).unwrap();
    let revoke = start.elapsed();
    println!("TIMING ipset: reconcile 100k {rec:?}; apply 10k {apply:?}; revoke 10k {revoke:?}");
    r.uninstall().unwrap();
}
