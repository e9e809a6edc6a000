//! Notifications: web hook to a local HTTP receiver, e-mail to a real SMTP server (aiosmtpd),
//! the JSON-lines file, aggregation, de-duplication and the hourly limit.

mod common;

use common::{Receiver, Smtp};
use palisade_config::Config;
use palisade_core::Observer;
use palisade_core::{Clock, Decision, Origin, Timestamp};
use palisade_notify::notify::build_notifier_with;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A clock the test moves.
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

impl TestClock {
    fn new() -> Arc<Self> {
        Arc::new(TestClock(AtomicI64::new(
            Timestamp::from_secs(1_741_000_000).0,
        )))
    }
    fn advance(&self, secs: i64) {
        self.0.fetch_add(secs * Timestamp::MICROS, Ordering::SeqCst);
    }
}

fn config(text: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("palisade.toml");
    Config::parse(text, &p, palisade_filter::builtin_names()).unwrap()
}

fn ban(ip: &str, jail: &str) -> Decision {
    Decision {
        id: 0,
        target: palisade_core::target_of(ip.parse().unwrap()),
        jail: jail.into(),
        origin: Origin::Jail,
        reason: "5 failures in 10m (sshd) @everyone <b>".into(),
        created: Timestamp::from_secs(1_741_000_000),
        expires: Some(Timestamp::from_secs(1_741_003_600)),
        simulated: false,
        level: 0,
    }
}

fn wave(o: &dyn Observer, n: u32, prefix: &str) {
    for i in 0..n {
        o.ban(&ban(
            &format!("{prefix}.{}.{}", i / 250, i % 250 + 1),
            "sshd",
        ));
    }
}

#[test]
fn webhook_json_one_message_per_wave() {
    let rx = Receiver::start(200);
    let clock = TestClock::new();
    let cfg = config(&format!(
        "[notify]\nwindow = \"60s\"\n[notify.webhook]\nurl = \"{}/hook/secret-token\"\nformat = \"json\"\n",
        rx.url
    ));
    let n = build_notifier_with(&cfg, clock.clone()).unwrap().unwrap();
    wave(n.as_ref(), 1000, "198.51");
    for _ in 0..100 {
        n.ban(&ban("198.51.0.1", "sshd")); // the same target again and again
    }
    // Within the window nothing is sent (the worker has taken the whole wave first, so the
    // clock moves only after it: no race with a loaded machine).
    n.sync();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(rx.requests().is_empty());
    clock.advance(61);
    let got = rx.wait_for(1);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(rx.requests().len(), 1, "one message for the whole wave");
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hook/secret-token");
    assert_eq!(r.headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["source"], "palisade");
    assert_eq!(v["bans"].as_array().unwrap().len(), 50);
    assert_eq!(v["more_bans"], 950);
    assert_eq!(v["duplicates"], 100);
    assert_eq!(v["total_bans"], 1100);
    assert_eq!(v["bans"][0]["target"], "198.51.0.1");
    assert_eq!(v["bans"][0]["jail"], "sshd");
    assert_eq!(v["bans"][0]["expires"], "2025-03-03T12:06:40Z");
}

#[test]
fn hourly_limit_holds_back_and_summarises() {
    let rx = Receiver::start(200);
    let clock = TestClock::new();
    let cfg = config(&format!(
        "[notify]\nwindow = \"10s\"\nmax_per_hour = 2\ndedup = \"1s\"\n[notify.webhook]\nurl = \"{}/h\"\nformat = \"slack\"\n",
        rx.url
    ));
    let n = build_notifier_with(&cfg, clock.clone()).unwrap().unwrap();
    for w in 0..5 {
        wave(n.as_ref(), 3, &format!("203.{w}"));
        n.sync(); // the whole wave is in before the window ends
        clock.advance(11);
        n.flush();
    }
    assert_eq!(rx.wait_for(2).len(), 2);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(rx.requests().len(), 2, "at most 2 per hour");
    // An hour later the held-back bans (3 waves × 3) go out in one message.
    clock.advance(3600);
    n.flush();
    let got = rx.wait_for(3);
    assert_eq!(got.len(), 3);
    let v: serde_json::Value = serde_json::from_str(&got[2].body).unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(text.contains("9 bans"), "{text}");
    assert!(text.contains("203.4.0.3"));
    // Slack markup in reasons is escaped.
    assert!(
        text.contains("&lt;b&gt;") && !text.contains("<b>"),
        "{text}"
    );
}

#[test]
fn discord_format_defuses_mentions() {
    let rx = Receiver::start(204);
    let clock = TestClock::new();
    let cfg = config(&format!(
        "[notify]\n[notify.webhook]\nurl = \"{}/d\"\nformat = \"discord\"\n",
        rx.url
    ));
    let n = build_notifier_with(&cfg, clock.clone()).unwrap().unwrap();
    wave(n.as_ref(), 2, "192.0");
    n.flush();
    let got = rx.wait_for(1);
    let v: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
    let c = v["content"].as_str().unwrap();
    assert!(c.contains("2 bans") && !c.contains("@everyone"), "{c}");
    assert_eq!(v["allowed_mentions"]["parse"], serde_json::json!([]));
}

#[test]
fn json_lines_file_gets_every_decision() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("decisions.jsonl");
    let clock = TestClock::new();
    let cfg = config(&format!(
        "[notify]\nunbans = true\nfile = \"{}\"\n",
        file.display()
    ));
    let n = build_notifier_with(&cfg, clock).unwrap().unwrap();
    wave(n.as_ref(), 5, "198.51");
    n.ban(&ban("198.51.0.1", "sshd"));
    n.unban(
        &ban("198.51.0.2", "sshd"),
        palisade_detect::UnbanReason::Manual,
    );
    let mut sim = ban("198.51.0.9", "sshd");
    sim.simulated = true;
    n.ban(&sim);
    n.flush();
    let text = std::fs::read_to_string(&file).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 8, "{text}");
    assert_eq!(rows[0]["event"], "ban");
    assert_eq!(rows[0]["target"], "198.51.0.1/32");
    assert_eq!(rows[6]["event"], "unban");
    assert_eq!(rows[7]["simulated"], true);
}

#[test]
fn email_to_a_real_smtp_server() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(dir.path());
    let clock = TestClock::new();
    let cfg = config(&format!(
        "[notify]\n[notify.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\nfrom = \"Palisade <palisade@example.org>\"\nto = [\"ops@example.org\", \"sec@example.org\"]\nsubject_prefix = \"[pal]\"\n",
        smtp.port
    ));
    let n = build_notifier_with(&cfg, clock.clone()).unwrap().unwrap();
    wave(n.as_ref(), 3, "203.0");
    n.flush();
    let msgs = smtp.parsed(1);
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m["mail_from"], "palisade@example.org");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["ops@example.org", "sec@example.org"])
    );
    let subject = m["headers"]["subject"].as_str().unwrap();
    assert!(subject.starts_with("[pal] 3 bans on "), "{subject}");
    assert_eq!(m["type"], "text/plain");
    let body = m["parts"][0]["body"].as_str().unwrap();
    for ip in ["203.0.0.1", "203.0.0.2", "203.0.0.3"] {
        assert!(
            body.contains(&format!("BAN   {ip} jail=sshd for 1h")),
            "{body}"
        );
    }
    let _ = Path::new("");
}
