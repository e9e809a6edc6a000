//! ufw responder inside a throwaway network namespace. ufw keeps its configuration in
//! `/etc/ufw`; `ip netns exec NS` shows `/etc/netns/NS/ufw` there, so the test gives the
//! namespace a private copy and the host's ufw is never touched. Skips (passes with
//! `SKIP:`) without root or without ufw, unless `PALISADE_REQUIRE_NETNS=1`.

#[path = "netns_common.rs"]
mod common;

use common::*;
use palisade_core::Timestamp;
use palisade_respond::{Responder, UfwConfig, UfwResponder};
use std::path::Path;

const UFW: &str = "/usr/sbin/ufw";

#[test]
fn helper() {
    helper_main();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn secs(t: Timestamp, s: i64) -> Timestamp {
    Timestamp(t.0 + s * 1_000_000)
}

#[test]
fn ufw_bans_with_real_packets() {
    if !available(&[UFW, "/usr/sbin/iptables"]) {
        return;
    }
    let mut t = Topology::new();
    let private = Path::new("/etc/netns").join(&t.srv);
    t.remove_on_drop(private.clone());
    copy_dir(Path::new("/etc/ufw"), &private.join("ufw"));
    t.start_listener();
    run_in(&t.srv, &[UFW, "--force", "enable"]);
    for p in [PORT, PORT2] {
        run_in(&t.srv, &[UFW, "allow", &format!("{p}/tcp")]);
    }
    run_in(&t.srv, &[UFW, "deny", "from", "203.0.113.5"]); // the operator's own rule
    assert_eq!(t.matrix(PORT), [true; 4], "baseline connectivity");

    let cfg = UfwConfig {
        netns: Some(t.srv.clone()),
        ..Default::default()
    };
    let mut r = UfwResponder::new("ufw", cfg).unwrap();
    assert!(!r.expires_natively());
    let now = now();
    let att4 = decision(ATT4, now, Some(secs(now, 3600)));
    r.apply(std::slice::from_ref(&att4), now).unwrap();
    r.apply(std::slice::from_ref(&att4), now).unwrap();
    assert_eq!(t.matrix(PORT), [false, true, true, true]);
    assert_eq!(r.current().unwrap().len(), 1);

    r.revoke(std::slice::from_ref(&att4)).unwrap();
    r.revoke(std::slice::from_ref(&att4)).unwrap();
    assert_eq!(t.matrix(PORT), [true; 4]);

    r.apply(&[decision("fd00:5a1::/64", now, None)], now)
        .unwrap();
    assert_eq!(t.matrix(PORT), [true, false, true, true]);

    // Reconcile: the stale /64 goes, the expired one is not added, the active one is.
    let active = [
        decision(FR4, secs(now, -100), Some(secs(now, -1))),
        decision("192.0.2.0/24", now, Some(secs(now, 100))),
    ];
    r.reconcile(&active, now).unwrap();
    assert_eq!(t.matrix(PORT), [false, true, true, true]);
    let cur = r.current().unwrap();
    assert_eq!(cur.len(), 1, "{cur:?}");

    r.flush().unwrap();
    assert!(r.current().unwrap().is_empty());
    assert_eq!(t.matrix(PORT), [true; 4]);
    let added = run_in(&t.srv, &[UFW, "show", "added"]);
    assert!(
        added.contains("ufw deny from 203.0.113.5\n"),
        "operator rule kept: {added}"
    );
}
