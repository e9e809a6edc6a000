//! The AbuseIPDB reporter against a local stub of the API that records every request.

mod common;

use common::{form, Receiver};
use palisade_config::Config;
use palisade_core::Observer;
use palisade_core::{Clock, Decision, Event, Origin, Timestamp};
use palisade_notify::abuseipdb::build_reporter_with;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

fn config(text: &str) -> Config {
    let p = std::env::temp_dir().join("palisade-abuse-test.toml");
    Config::parse(text, &p, palisade_filter::builtin_names()).unwrap()
}

fn ban(ip: &str, jail: &str) -> Decision {
    Decision {
        id: 0,
        target: ip
            .parse::<ipnet::IpNet>()
            .unwrap_or_else(|_| palisade_core::target_of(ip.parse().unwrap())),
        jail: jail.into(),
        origin: Origin::Jail,
        reason: "5 failures in 10m".into(),
        created: Timestamp::from_secs(1_741_000_000),
        expires: None,
        simulated: false,
        level: 0,
    }
}

fn event(ip: &str, evidence: &str) -> Event {
    Event {
        time: Timestamp::from_secs(1_741_000_000),
        ip: ip.parse().unwrap(),
        filter: "sshd".into(),
        rule: "failed_password".into(),
        failure: true,
        user: None,
        fields: vec![],
        evidence: Event::evidence_of(evidence.as_bytes()),
    }
}

#[test]
fn reports_with_limits_and_redacted_key() {
    let api = Receiver::start(200);
    let key = "k3y-0123456789abcdef";
    let clock = Arc::new(TestClock(AtomicI64::new(
        Timestamp::from_secs(1_741_000_000).0,
    )));
    let cfg = config(&format!(
        "[abuseipdb]\napi_key = \"{key}\"\nendpoint = \"{}/api/v2/report\"\ndaily_quota = 3\ncategories = {{ custom = [4, 20] }}\n",
        api.url
    ));
    assert!(
        !format!("{cfg:?}").contains(key),
        "the key never shows in Debug"
    );
    let r = build_reporter_with(&cfg, clock.clone()).unwrap().unwrap();
    assert!(!format!("{r:?}").contains(key));

    r.event("sshd", &event("45.33.32.50", "Mar  3 sshd[1]: Failed password for admin@example.com from 45.33.32.50 port 22\u{1b}[2J"));
    r.ban(&ban("45.33.32.50", "sshd"));
    r.ban(&ban("45.33.32.50", "sshd")); // within 15 minutes: not reported again
    r.ban(&ban("10.0.0.5", "sshd")); // private: never reported
    r.ban(&ban("203.0.113.0/24", "sshd")); // a network: never reported
    let mut sim = ban("45.33.32.52", "sshd");
    sim.simulated = true;
    r.ban(&sim); // simulated: not by default
    r.ban(&ban("2001:db8:1::1", "nginx")); // documentation prefix: not global
    r.ban(&ban("2a02:1:2:3::4", "nginx-scan"));
    r.ban(&ban("91.240.118.9", "custom"));
    r.ban(&ban("91.240.118.200", "other")); // quota of 3 is used up by now
    r.flush();
    let got = api.wait_for(3);
    assert_eq!(got.len(), 3, "{got:#?}");
    for q in &got {
        assert_eq!(q.method, "POST");
        assert_eq!(q.path, "/api/v2/report");
        assert_eq!(q.headers["key"], key);
        assert_eq!(q.headers["accept"], "application/json");
        assert_eq!(
            q.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
    }
    let f0 = form(&got[0].body);
    assert_eq!(f0["ip"], "45.33.32.50");
    assert_eq!(f0["categories"], "18,22");
    assert_eq!(f0["timestamp"], "2025-03-03T11:06:40Z");
    let c = &f0["comment"];
    assert!(
        c.starts_with("Banned by Palisade, jail sshd (jail): 5 failures in 10m"),
        "{c}"
    );
    assert!(
        c.contains("evidence: Mar 3 sshd[1]: Failed password for [email] from 45.33.32.50"),
        "{c}"
    );
    assert!(!c.contains('\u{1b}') && !c.contains("example.com"), "{c}");
    let f1 = form(&got[1].body);
    assert_eq!(
        (f1["ip"].as_str(), f1["categories"].as_str()),
        ("2a02:1:2:3::4", "21,15")
    );
    let f2 = form(&got[2].body);
    assert_eq!(
        (f2["ip"].as_str(), f2["categories"].as_str()),
        ("91.240.118.9", "4,20")
    );
    let n = &r.counters;
    assert_eq!(n.sent.load(Ordering::SeqCst), 3);
    assert_eq!(n.rate_limited.load(Ordering::SeqCst), 1);
    assert_eq!(n.over_quota.load(Ordering::SeqCst), 1);
    assert_eq!(n.skipped.load(Ordering::SeqCst), 4);

    // The next UTC day the quota is fresh, and 15 minutes later the same address may be
    // reported again.
    clock
        .0
        .fetch_add(86_400 * Timestamp::MICROS, Ordering::SeqCst);
    r.ban(&ban("45.33.32.50", "sshd"));
    r.flush();
    assert_eq!(api.wait_for(4).len(), 4);
}

#[test]
fn refusals_stop_for_the_day() {
    let api = Receiver::start(429);
    let clock = Arc::new(TestClock(AtomicI64::new(
        Timestamp::from_secs(1_741_000_000).0,
    )));
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("key");
    std::fs::write(&keyfile, "from-file-key\n").unwrap();
    let cfg = config(&format!(
        "[abuseipdb]\napi_key_file = \"{}\"\nendpoint = \"{}/r\"\n",
        keyfile.display(),
        api.url
    ));
    let r = build_reporter_with(&cfg, clock).unwrap().unwrap();
    r.ban(&ban("45.33.32.60", "sshd"));
    r.ban(&ban("45.33.32.61", "sshd"));
    r.flush();
    let got = api.wait_for(1);
    assert_eq!(got.len(), 1, "after a 429 nothing more today");
    assert_eq!(got[0].headers["key"], "from-file-key");
    assert_eq!(r.counters.failed.load(Ordering::SeqCst), 1);
    assert_eq!(r.counters.over_quota.load(Ordering::SeqCst), 1);
}

#[test]
fn configuration_is_checked() {
    let p = std::env::temp_dir().join("x.toml");
    let e = Config::parse("[abuseipdb]\ncategories = { sshd = [99] }\n", &p, &[]).unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("exactly one of `api_key` or `api_key_file`"),
        "{m}"
    );
    assert!(m.contains("categories [99]"), "{m}");
}
