//! nftables responder against a real kernel, inside throwaway network namespaces, proven with
//! real TCP connections across veth links. Skips (passes with `SKIP:`) without root, unless
//! `PALISADE_REQUIRE_NETNS=1`.

#[path = "netns_common.rs"]
mod common;

use common::*;
use palisade_core::Timestamp;
use palisade_respond::{NftConfig, NftResponder, Responder};
use std::time::{Duration, Instant};

const NFT: &str = "/usr/sbin/nft";

#[test]
fn helper() {
    helper_main();
}

fn responder(t: &Topology, cfg: NftConfig) -> NftResponder {
    NftResponder::new(
        "nft",
        NftConfig {
            netns: Some(t.srv.clone()),
            ..cfg
        },
    )
    .unwrap()
}

fn ruleset(t: &Topology) -> String {
    run_in(&t.srv, &[NFT, "list", "ruleset"])
}

fn secs(t: Timestamp, s: i64) -> Timestamp {
    Timestamp(t.0 + s * 1_000_000)
}

#[test]
fn nft_bans_with_real_packets() {
    if !available(&[NFT]) {
        return;
    }
    let mut t = Topology::new();
    t.start_listener();
    // A foreign table that must survive everything.
    run_in(&t.srv, &[NFT, "add", "table", "inet", "other"]);
    run_in(
        &t.srv,
        &[
            NFT,
            "add",
            "chain",
            "inet",
            "other",
            "c",
            "{ type filter hook input priority 0; policy accept; }",
        ],
    );
    run_in(
        &t.srv,
        &[
            NFT, "add", "rule", "inet", "other", "c", "tcp", "dport", "9", "accept",
        ],
    );
    let original = ruleset(&t);
    assert_eq!(t.matrix(PORT), [true; 4], "baseline connectivity");

    let mut r = responder(
        &t,
        NftConfig {
            forward: true,
            ..Default::default()
        },
    );
    assert!(r.expires_natively());
    let now = now();
    let att4 = decision("192.0.2.2/32", now, Some(secs(now, 3600)));

    // Apply without a prior reconcile creates the table; applying twice equals once.
    r.apply(std::slice::from_ref(&att4), now).unwrap();
    assert_eq!(t.matrix(PORT), [false, true, true, true]);
    let st1 = r.status().unwrap();
    r.apply(std::slice::from_ref(&att4), now).unwrap();
    let st2 = r.status().unwrap();
    assert_eq!(st1.elements.len(), 1);
    assert_eq!(
        st1.elements.iter().map(|e| e.0).collect::<Vec<_>>(),
        st2.elements.iter().map(|e| e.0).collect::<Vec<_>>()
    );
    let left = st2.elements[0].1.unwrap();
    assert!(
        left > Duration::from_secs(3590) && left <= Duration::from_secs(3600),
        "{left:?}"
    );
    assert!(
        st2.dropped_packets.unwrap() > 0,
        "the counter saw the dropped SYNs"
    );
    // A fresh responder (daemon restart without reconcile) discovers the table.
    let mut r2 = responder(
        &t,
        NftConfig {
            forward: true,
            ..Default::default()
        },
    );
    r2.apply(std::slice::from_ref(&att4), now).unwrap();
    assert_eq!(r2.status().unwrap().elements.len(), 1);

    // Revoke; twice is fine; revoking something never banned is fine.
    r.revoke(std::slice::from_ref(&att4)).unwrap();
    assert_eq!(t.matrix(PORT), [true; 4]);
    r.revoke(&[att4.clone(), decision("203.0.113.0/24", now, None)])
        .unwrap();

    // CIDR bans, and a host ban inside a banned network (overlap) in the same batch.
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
    assert!(!t.matrix(PORT)[0], "the /32 still holds");
    r.revoke(&nets).unwrap();
    assert_eq!(t.matrix(PORT), [true; 4]);

    // Native expiry: 2 s remaining, gone after ~3 s.
    let short = decision(
        "192.0.2.2/32",
        secs(now, -100),
        Some(Timestamp(now.0 + 2_000_000)),
    );
    r.apply(std::slice::from_ref(&short), now).unwrap();
    assert!(!t.connects(&t.att, "192.0.2.1", PORT));
    std::thread::sleep(Duration::from_millis(3200));
    assert!(t.connects(&t.att, "192.0.2.1", PORT));
    assert!(r.status().unwrap().elements.is_empty());

    // Re-applying a longer ban replaces the timeout.
    r.apply(
        &[decision("198.51.100.9/32", now, Some(secs(now, 10)))],
        now,
    )
    .unwrap();
    r.apply(
        &[decision("198.51.100.9/32", now, Some(secs(now, 5000)))],
        now,
    )
    .unwrap();
    let left = r.status().unwrap().elements[0].1.unwrap();
    assert!(left > Duration::from_secs(4900), "{left:?}");

    // Reconcile: expired not restored, active restored with remaining time, stale dropped.
    let now = common::now();
    let active = [
        decision(FR4, secs(now, -1000), Some(secs(now, -10))),
        decision(ATT4, secs(now, -50), Some(secs(now, 100))),
        decision("fd00:5a1::2/128", now, None),
    ];
    r.reconcile(&active, now).unwrap();
    let els = r.status().unwrap().elements;
    assert_eq!(els.len(), 2, "{els:?}");
    assert_eq!(els[0].0, "192.0.2.2/32".parse().unwrap());
    let left = els[0].1.unwrap();
    assert!(
        left > Duration::from_secs(95) && left <= Duration::from_secs(100),
        "{left:?}"
    );
    assert_eq!(els[1], ("fd00:5a1::2/128".parse().unwrap(), None));
    assert_eq!(t.matrix(PORT), [false, false, true, true]);
    let listing = ruleset(&t);
    assert!(listing.contains("hook forward"), "{listing}");

    // Port-restricted bans: only the listed port is closed.
    let mut rp = responder(
        &t,
        NftConfig {
            ports: vec![PORT2],
            ..Default::default()
        },
    );
    rp.reconcile(&active, now).unwrap();
    assert_eq!(t.matrix(PORT), [true; 4]);
    assert_eq!(t.matrix(PORT2), [false, false, true, true]);
    assert!(
        !ruleset(&t).contains("hook forward"),
        "reconcile rebuilt the chains"
    );

    // Flush lifts everything but keeps the table.
    rp.flush().unwrap();
    assert_eq!(t.matrix(PORT2), [true; 4]);
    assert!(rp.status().unwrap().installed);

    // Uninstall restores the original ruleset exactly; twice is fine.
    rp.uninstall().unwrap();
    rp.uninstall().unwrap();
    assert_eq!(ruleset(&t), original);
    assert!(!rp.status().unwrap().installed);
    assert_eq!(t.matrix(PORT), [true; 4]);
}

/// Reconcile writes nft's native syntax; a table name nft reads as a keyword there makes it
/// fall back to JSON. Both must build the same table, and a failed native attempt must leave
/// nothing behind.
#[test]
fn nft_native_reconcile_matches_json() {
    if !available(&[NFT]) {
        return;
    }
    let t = Topology::new();
    let cfg = |table: &str| NftConfig {
        table: table.into(),
        ports: vec![PORT2, 22],
        protocols: vec![palisade_respond::Protocol::Tcp],
        forward: true,
        priority: -7,
        ..Default::default()
    };
    let now = now();
    let active = [
        decision("192.0.2.0/24", now, Some(secs(now, 600))),
        decision("192.0.2.2/32", now, None),
        decision("192.0.2.3/32", now, Some(secs(now, 90))),
        decision("192.0.2.3/32", now, Some(secs(now, 900))),
        decision("fd00:5a1::/64", now, Some(secs(now, 300))),
        decision("fd00:5a1::2/128", now, Some(secs(now, 300))),
        decision("::/0", now, Some(secs(now, 30))),
        decision("::ffff:203.0.113.5/128", now, Some(secs(now, 300))),
        decision("203.0.113.9/32", secs(now, -100), Some(secs(now, -1))),
    ];
    let mut native = responder(&t, cfg("palisade"));
    let mut json = responder(&t, cfg("counter"));
    for _ in 0..2 {
        native.reconcile(&active, now).unwrap();
        json.reconcile(&active, now).unwrap();
    }
    // (`nft list table inet counter` is itself a syntax error: read the whole ruleset.)
    let block = |listing: &str, table: &str| {
        let start = listing
            .find(&format!("table inet {table} {{"))
            .unwrap_or_else(|| panic!("no table {table}: {listing}"));
        let len = listing[start..].find("\n}\n").unwrap();
        // The name appears once, in the header (`counter` also names a statement).
        listing[start..start + len].replacen(table, "T", 1)
    };
    let terse = run_in(&t.srv, &[NFT, "-t", "list", "ruleset"]);
    let listing = block(&terse, "palisade");
    assert_eq!(listing, block(&terse, "counter"));
    assert!(listing.contains("priority filter - 7"), "{listing}");
    assert!(
        listing.contains("ip saddr & 255.255.255.0 == @ban4_24"),
        "{listing}"
    );
    // Elements: set name, value and timeout per table, sorted (hash order differs).
    let doc: serde_json::Value =
        serde_json::from_str(&run_in(&t.srv, &[NFT, "-j", "list", "ruleset"])).unwrap();
    let elements = |table: &str| {
        let mut v = Vec::new();
        for item in doc["nftables"].as_array().unwrap() {
            let set = &item["set"];
            if set["table"] != table {
                continue;
            }
            for e in set["elem"].as_array().into_iter().flatten() {
                let (val, timeout) = match e.get("elem") {
                    Some(i) => (i["val"].to_string(), i["timeout"].as_u64()),
                    None => (e.to_string(), None),
                };
                v.push((set["name"].as_str().unwrap().to_string(), val, timeout));
            }
        }
        v.sort();
        v
    };
    let got = elements("palisade");
    assert_eq!(got, elements("counter"));
    assert_eq!(got.len(), 7, "{got:?}");
    assert!(got.contains(&("ban4".into(), "\"192.0.2.2\"".into(), None)));
    assert!(got.contains(&("ban4".into(), "\"192.0.2.3\"".into(), Some(900))));
    assert!(got.contains(&("ban6_64".into(), "\"fd00:5a1::\"".into(), Some(300))));
    assert_eq!(native.status().unwrap().elements.len(), 7);
    native.uninstall().unwrap();
    json.uninstall().unwrap();
    assert!(!ruleset(&t).contains("table inet"), "{}", ruleset(&t));
}

#[test]
fn nft_timings_100k_reconcile_10k_apply() {
    if !available(&[NFT]) {
        return;
    }
    let t = Topology::new();
    let mut r = responder(&t, NftConfig::default());
    let now = now();
    let mut active = Vec::with_capacity(100_000);
    for i in 0..100_000u32 {
        let a = std::net::Ipv4Addr::from(0x0a00_0000 | i);
        let target = if i % 10 == 0 {
            format!("fd00:1::{:x}:{:x}/128", i >> 16, i & 0xffff)
        } else {
            format!("{a}/32")
        };
        active.push(decision(
            &target,
            now,
            Some(secs(now, 3600 + i64::from(i % 1000))),
        ));
    }
    let start = Instant::now();
    r.reconcile(&active, now).unwrap();
    let rec = start.elapsed();
    let n = r.status().unwrap().elements.len();
    assert_eq!(n, 100_000);

    let batch: Vec<_> = (0..10_000u32)
        .map(|i| {
            let a = std::net::Ipv4Addr::from(0x0b00_0000 | i);
            decision(&format!("{a}/32"), now, Some(secs(now, 600)))
        })
        .collect();
    let start = Instant::now();
    r.apply(&batch, now).unwrap();
    let apply_new = start.elapsed();
    let start = Instant::now();
    r.apply(&batch, now).unwrap();
    let apply_again = start.elapsed();
    let start = Instant::now();
    r.apply(&batch[..1], now).unwrap();
    let apply_one = start.elapsed();
    let start = Instant::now();
    r.revoke(&batch).unwrap();
    let revoke = start.elapsed();
    assert_eq!(r.status().unwrap().elements.len(), 100_000);
    let start = Instant::now();
    r.reconcile(&active, now).unwrap();
    let rec2 = start.elapsed();
    println!(
        "TIMING nft: reconcile 100k into empty {rec:?}; reconcile 100k over 100k {rec2:?}; \
         apply 10k new (set holds 100k) {apply_new:?}; apply same 10k again {apply_again:?}; \
         apply 1 {apply_one:?}; revoke 10k {revoke:?}"
    );
    r.uninstall().unwrap();
}

/// Issue 19, finding 3: a ban longer than an nft element timeout can hold (`--duration 200w`,
/// 1.9e10 s from fail2ban's `bantime.increment`) is a permanent element that the daemon
/// revokes at expiry; it never fails the batch it is in, nor a later start (reconcile).
#[test]
fn nft_overlong_bans_are_permanent_elements_and_never_fail_a_batch_or_start() {
    if !available(&[NFT]) {
        return;
    }
    let mut t = Topology::new();
    t.start_listener();
    let mut r = responder(&t, NftConfig::default());
    let now = now();
    let weeks200 = decision("192.0.2.2/32", now, Some(secs(now, 200 * 7 * 86400)));
    let huge = decision("203.0.113.7/32", now, Some(secs(now, 19_000_000_000)));
    let short = decision("fd00:5a1::2/128", now, Some(secs(now, 600)));
    let batch = [weeks200.clone(), huge.clone(), short.clone()];

    r.apply(&batch, now).unwrap();
    assert_eq!(t.matrix(PORT), [false, false, true, true]);
    let st = r.status().unwrap();
    let left: std::collections::HashMap<String, Option<Duration>> = st
        .elements
        .iter()
        .map(|(n, l)| (n.to_string(), *l))
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert_eq!(left["192.0.2.2/32"], None, "200 weeks: permanent element");
    assert_eq!(left["203.0.113.7/32"], None, "1.9e10 s: permanent element");
    assert!(left["fd00:5a1::2/128"].is_some_and(|l| l <= Duration::from_secs(600)));
    // The daemon revokes the permanent ones at expiry; the short one expires in the kernel.
    assert!(!r.expires_natively_for(&weeks200));
    assert!(!r.expires_natively_for(&huge));
    assert!(r.expires_natively_for(&short));

    // A start (reconcile, native syntax) with them in force works, twice.
    for _ in 0..2 {
        let mut fresh = responder(&t, NftConfig::default());
        fresh.reconcile(&batch, now).unwrap();
        assert_eq!(t.matrix(PORT), [false, false, true, true]);
        assert_eq!(fresh.status().unwrap().elements.len(), 3);
    }
    // And revoking them (what the daemon does at their end) lifts them.
    r.revoke(&[weeks200, huge]).unwrap();
    assert_eq!(t.matrix(PORT), [true, false, true, true]);
}
