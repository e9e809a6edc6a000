//! A log line that stands for N failures (rsyslog's `message repeated N times: [ … ]`,
//! sysklogd's `last message repeated N times`) is counted N times by the engine: the `sshd`
//! filter emits one event per repetition, so thresholds see every attempt.

use palisade_core::Timestamp;
use palisade_detect::{Action, Engine, EngineConfig, JailParams};
use palisade_filter::{build_builtin, BuiltinOptions, LineCtx, Mode};
use std::time::Duration;

fn bans_for(lines: &[&str]) -> Vec<String> {
    let mut f = build_builtin(
        "sshd",
        &BuiltinOptions {
            mode: Mode::Normal,
            tz: jiff::tz::TimeZone::UTC,
        },
    )
    .unwrap();
    let mut engine = Engine::new(EngineConfig {
        jails: vec![JailParams {
            name: "sshd".into(),
            max_retry: 5,
            find_time: Duration::from_secs(600),
            ban_time: Some(Duration::from_secs(3600)),
            escalation: None,
            v6_prefix: 64,
            max_keys: 1000,
            dry_run: false,
        }],
        ..EngineConfig::default()
    });
    let ctx = LineCtx {
        now: Timestamp::parse_rfc3339("2024-04-01T00:00:00Z").unwrap(),
        source_time: None,
        journal: None,
    };
    let (mut out, mut actions, mut bans) = (Vec::new(), Vec::new(), Vec::new());
    for l in lines {
        out.clear();
        f.process(l.as_bytes(), &ctx, &mut out);
        for e in &out {
            engine.observe(0, e, &mut actions);
        }
        for a in actions.drain(..) {
            if let Action::Ban(d) = a {
                bans.push(d.target.addr().to_string());
            }
        }
    }
    bans
}

#[test]
fn repeated_failures_reach_the_threshold() {
    // 1 + 4 repetitions = 5 failures: banned (fail2ban counts 1 and misses the ban).
    assert_eq!(
        bans_for(&[
            "Mar 29 23:18:30 h sshd[6402]: Failed password for root from 192.0.2.106 port 56338 ssh2",
            "Mar 29 23:18:33 h sshd[6402]: message repeated 4 times: [ Failed password for root from 192.0.2.106 port 56338 ssh2]",
        ]),
        ["192.0.2.106"]
    );
    assert_eq!(
        bans_for(&[
            "Mar 29 23:18:30 h sshd[6402]: Failed password for root from 192.0.2.106 port 56338 ssh2",
            "Mar 29 23:18:33 h last message repeated 4 times",
        ]),
        ["192.0.2.106"]
    );
    // One short of the threshold: no ban.
    assert!(bans_for(&[
        "Mar 29 23:18:33 h sshd[6402]: message repeated 4 times: [ Failed password for root from 192.0.2.106 port 56338 ssh2]",
    ])
    .is_empty());
    // Repeated successes never count.
    assert!(bans_for(&[
        "Mar 29 23:18:33 h sshd[6402]: message repeated 9 times: [ Accepted password for erin from 192.0.2.7 port 1 ssh2]",
        "Mar 29 23:18:34 h last message repeated 9 times",
    ])
    .is_empty());
}
