//! The digest from a real SQLite store, and its e-mail (text + HTML) through a real SMTP
//! server (aiosmtpd).

mod common;

use common::{make_certs, Smtp, SmtpSecurity};
use palisade_config::Config;
use palisade_core::{Decision, Event, Origin, Timestamp};
use palisade_notify::digest;
use palisade_notify::mail::Mailer;

const T_SQLITE: i64 = 1_741_000_000; // 2025-03-03T11:06:40Z

fn ev(ip: &str, t: i64, rule: &str) -> Event {
    Event {
        time: Timestamp::from_secs(t),
        ip: ip.parse().unwrap(),
        filter: "sshd".into(),
        rule: rule.into(),
        failure: true,
        user: None,
        fields: vec![],
        evidence: "line".into(),
    }
}

fn dec(target: &str, jail: &str, t: i64) -> Decision {
    Decision {
        id: 0,
        target: palisade_core::target_of(target.parse().unwrap()),
        jail: jail.into(),
        origin: Origin::Jail,
        reason: format!("failures in {jail} <script>"),
        created: Timestamp::from_secs(t),
        expires: Some(Timestamp::from_secs(t + 3600)),
        simulated: false,
        level: 0,
    }
}

fn filled_store(dir: &std::path::Path) -> Box<dyn palisade_store::Store> {
    let mut s = palisade_store::open(&format!("sqlite:{}", dir.join("p.db").display())).unwrap();
    fill(s.as_mut(), T_SQLITE);
    s
}

fn fill(s: &mut dyn palisade_store::Store, t0: i64) {
    #[allow(non_snake_case)]
    let T0 = t0;
    let mut sshd = Vec::new();
    for i in 0..5 {
        sshd.push(ev("203.0.113.1", T0 + i, "failed_password"));
    }
    for i in 0..3 {
        sshd.push(ev("203.0.113.2", T0 + 10 + i, "invalid_user"));
    }
    sshd.push(ev("203.0.113.9", T0 - 2 * 86_400, "failed_password")); // before the period
    s.record_events("sshd", &sshd).unwrap();
    s.record_events(
        "nginx",
        &[
            ev("2001:db8::5", T0 + 5, "probe"),
            ev("2001:db8::5", T0 + 6, "probe"),
        ],
    )
    .unwrap();
    s.insert_decision(&dec("203.0.113.1", "sshd", T0 - 3 * 86_400))
        .unwrap();
    s.insert_decision(&dec("203.0.113.1", "sshd", T0 + 100))
        .unwrap();
    s.insert_decision(&dec("203.0.113.2", "sshd", T0 + 200))
        .unwrap();
    s.insert_decision(&dec("203.0.113.9", "sshd", T0 - 2 * 86_400))
        .unwrap();
}

#[test]
fn digest_of_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = filled_store(dir.path());
    check_day(store.as_mut(), T_SQLITE, true);
}

/// The same on PostgreSQL when `PALISADE_TEST_PG_URL` is set (`scripts/with-postgres.sh`),
/// in a period of 2004 no other test writes to.
#[test]
fn digest_of_a_day_postgres() {
    let Ok(url) = std::env::var("PALISADE_TEST_PG_URL") else {
        return palisade_testkit::require_or_skip("PG", "PALISADE_TEST_PG_URL is not set");
    };
    let mut store = palisade_store::open(&url).unwrap();
    let t0 = 1_080_000_000 + i64::from(std::process::id() % 500) * 10 * 86_400;
    fill(store.as_mut(), t0);
    check_day(store.as_mut(), t0, false);
}

/// `exact_history`: the store holds nothing else (earlier runs on a shared PostgreSQL
/// database add bans of the same targets, which repeat-offender totals count).
fn check_day(store: &mut dyn palisade_store::Store, t0: i64, exact_history: bool) {
    #[allow(non_snake_case)]
    let T0 = t0;
    let until = Timestamp::from_secs(T0 + 3600);
    let since = Timestamp::from_secs(T0 + 3600 - 86_400);
    let d = digest::collect(store, since, until, 10, None).unwrap();
    let s = &d.summary;
    assert_eq!(s.events, 10);
    assert_eq!(s.failures, 10);
    assert_eq!(
        s.events_per_jail,
        [("sshd".to_string(), 8), ("nginx".to_string(), 2)]
    );
    assert_eq!(s.top_ips[0], ("203.0.113.1".parse().unwrap(), 5));
    assert_eq!(s.top_ips.len(), 3);
    assert_eq!(s.decisions_total, 2);
    assert_eq!(s.decisions[0].decision.target.to_string(), "203.0.113.2/32");
    if exact_history {
        assert_eq!(
            s.repeat_offenders,
            [("203.0.113.1/32".parse().unwrap(), 1, 2)]
        );
    } else {
        assert_eq!(s.repeat_offenders[0].0.to_string(), "203.0.113.1/32");
        assert!(s.repeat_offenders[0].2 >= 2);
    }
    let text = d.text();
    assert!(
        text.contains("New bans: 2\nEvents: 10 (10 failures)"),
        "{text}"
    );
    if exact_history {
        assert!(
            text.contains("203.0.113.1/32                           1 / 2"),
            "{text}"
        );
    }
    let html = d.html();
    assert!(html.contains("<svg") && html.contains("Events per jail"));
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"));
    assert_eq!(d.json()["summary"]["decisions_total"], 2);

    // Limits: one row per table.
    let d1 = digest::collect(store, since, until, 1, None).unwrap();
    assert_eq!(d1.summary.top_ips.len(), 1);
    assert_eq!(d1.summary.decisions.len(), 1);
    assert_eq!(d1.summary.decisions_total, 2);
}

#[test]
fn digest_email_has_text_and_html_parts() {
    let dir = tempfile::tempdir().unwrap();
    let mail_dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(dir.path());
    std::fs::write(dir.path().join("pw"), "digest-secret\n").unwrap();
    // STARTTLS required before AUTH; the server offers only PLAIN.
    let smtp = Smtp::start_with(
        mail_dir.path(),
        &SmtpSecurity {
            mode: "starttls",
            cert: Some((cert, key)),
            login: Some(("reports".into(), "digest-secret".into())),
            exclude_mechanisms: vec!["LOGIN"],
        },
    );
    let mut store = filled_store(dir.path());
    let until = Timestamp::from_secs(T_SQLITE + 3600);
    let d = digest::collect(
        store.as_mut(),
        until.minus(std::time::Duration::from_secs(86_400)),
        until,
        10,
        None,
    )
    .unwrap();
    let cfg = Config::parse(
        &format!(
            "[notify]\n[notify.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"starttls\"\nca_file = \"{}\"\nusername = \"reports\"\npassword_file = \"pw\"\nfrom = \"palisade@example.org\"\nto = [\"ops@example.org\"]\n",
            smtp.port,
            ca.display()
        ),
        &dir.path().join("p.toml"),
        &[],
    )
    .unwrap();
    let mailer = Mailer::new(cfg.notify.as_ref().unwrap().email.as_ref().unwrap(), &cfg).unwrap();
    d.send(&mailer).unwrap();
    let m = &smtp.parsed(1)[0];
    assert_eq!(m["tls"], true);
    assert_eq!(m["mechanism"], "PLAIN");
    assert_eq!(m["login"], "reports");
    assert_eq!(m["type"], "multipart/alternative");
    let subject = m["headers"]["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("[palisade] digest for ")
            && subject.ends_with(": 2 new bans, 10 events"),
        "{subject}"
    );
    assert_eq!(m["headers"]["to"], "ops@example.org");
    let parts = m["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["type"], "text/plain");
    assert_eq!(parts[1]["type"], "text/html");
    let text = parts[0]["body"].as_str().unwrap();
    assert!(
        text.contains("New bans: 2") && text.contains("sshd                     8"),
        "{text}"
    );
    let html = parts[1]["body"].as_str().unwrap();
    assert!(
        html.contains("<b>2</b> new bans") && html.contains("<svg"),
        "{html}"
    );
    assert!(html.contains(">203.0.113.1<"), "top address in the chart");
    // The hourly chart: both bans of the period in their hour, 11:00 UTC.
    let b = bars(html);
    assert_eq!(b.len(), 25, "every hour the period touches");
    let busy: Vec<_> = b.iter().filter(|x| x.1 > 0).collect();
    assert_eq!(busy.len(), 1);
    assert_eq!((busy[0].0.as_str(), busy[0].1), ("2025-03-03 11:00 UTC", 2));
    let text = text.replace("\r\n", "\n");
    assert!(
        text.contains("New bans per hour:\n  2025-03-03 11:00 UTC       2 ####"),
        "{text}"
    );
}

/// The `<rect class="bar">` columns of the hourly chart: (hour label, count, height).
fn bars(html: &str) -> Vec<(String, u64, f64)> {
    html.split("<rect class=\"bar\" ")
        .skip(1)
        .map(|r| {
            let attr = |name: &str| {
                let from = r.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                r[from..from + r[from..].find('"').unwrap()].to_string()
            };
            (
                attr("data-hour"),
                attr("data-count").parse().unwrap(),
                attr("height").parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn digest_chart_shows_bans_per_hour() {
    let dir = tempfile::tempdir().unwrap();
    let mut s =
        palisade_store::open(&format!("sqlite:{}", dir.path().join("p.db").display())).unwrap();
    // 2025-03-03 00:00 UTC; the period is that day.
    let day = 1_740_960_000;
    for (offset, n) in [
        (2 * 3600 + 5, 3),
        (2 * 3600 + 3599, 1),
        (7 * 3600, 2),
        (23 * 3600 + 59 * 60, 4),
    ] {
        for i in 0..n {
            s.insert_decision(&dec(
                &format!("198.51.100.{}", offset % 200 + i),
                "sshd",
                day + offset,
            ))
            .unwrap();
        }
    }
    s.insert_decision(&dec("198.51.100.250", "sshd", day - 1))
        .unwrap(); // before
    s.insert_decision(&dec("198.51.100.251", "sshd", day + 86_400))
        .unwrap(); // after
    let d = digest::collect(
        s.as_mut(),
        Timestamp::from_secs(day),
        Timestamp::from_secs(day + 86_400),
        5,
        None,
    )
    .unwrap();
    assert_eq!(d.summary.decisions_total, 10);
    assert_eq!(d.bans_per_hour.len(), 24);
    let b = bars(&d.html());
    assert_eq!(b.len(), 24, "one column per hour");
    assert_eq!(b[0].0, "2025-03-03 00:00 UTC");
    assert_eq!(b[23].0, "2025-03-03 23:00 UTC");
    let counts: Vec<u64> = b.iter().map(|x| x.1).collect();
    let mut want = vec![0u64; 24];
    want[2] = 4;
    want[7] = 2;
    want[23] = 4;
    assert_eq!(counts, want);
    assert_eq!(counts.iter().sum::<u64>(), d.summary.decisions_total);
    // Heights follow the counts: the busiest hours fill the plot, the rest in proportion.
    for (_, n, h) in &b {
        assert!((h - 140.0 * *n as f64 / 4.0).abs() < 0.01, "{n} → {h}");
    }
    assert!(d
        .html()
        .contains("<title>2025-03-03 07:00 UTC: 2 bans</title>"));
    let text = d.text();
    assert!(
        text.contains("New bans per hour:\n  2025-03-03 02:00 UTC       4 ########################################\n  2025-03-03 07:00 UTC       2 ####################\n"),
        "{text}"
    );
}
