//! palisade-audit against a real moto server: the scenario's exact findings, whitelists,
//! quiet re-runs, one event per mutation, accounts through AssumeRole, credentials errors.

mod common;

use palisade_audit::client::ClientOptions;
use palisade_audit::run::{run, RunOptions};
use palisade_audit::state::{diff, Event, EventKind, State};
use palisade_audit::AuditConfig;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// The credentials come from the process environment; tests that change it take this lock.
static ENV: Mutex<()> = Mutex::new(());

fn opts(url: &str) -> RunOptions {
    RunOptions {
        regions: vec!["us-east-1".into()],
        profile: None,
        client: ClientOptions {
            endpoint: Some(url.to_string()),
            ..ClientOptions::default()
        },
        now: jiff::Timestamp::now(),
    }
}

fn audit(url: &str, cfg: &AuditConfig, prev: &State) -> (State, Vec<Event>) {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::remove_var("AWS_SESSION_TOKEN");
    let out = run(cfg, &opts(url)).expect("audit run");
    assert!(
        out.evaluation.errored.is_empty(),
        "errored: {:?}",
        out.evaluation.errored
    );
    diff(prev, &out.evaluation, jiff::Timestamp::now())
}

fn set(events: &[Event]) -> BTreeSet<(String, String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e.event.as_str().to_string(),
                e.rule.clone(),
                e.subject.clone(),
            )
        })
        .collect()
}

fn config(ids: &serde_json::Value) -> AuditConfig {
    let trusted = ids["trusted"].as_str().unwrap();
    AuditConfig::from_toml(&format!(
        r#"
[audit]
whitelisted_ips = ["172.16.0.0/12"]
allowed = ["^ci-"]
[audit.whitelisted_entries."{trusted} (trusted)"]
"5000-6000" = ["192.168.0.0/16"]
"#
    ))
    .unwrap()
}

#[test]
fn scenario_mutations_and_quiet_reruns() {
    let Some(m) = common::moto(&[]) else { return };
    let ids = common::helper(&m.url, &["scenario"]);
    let cfg = config(&ids);
    let web = format!("{} (web)", ids["web"].as_str().unwrap());
    let trusted = format!("{} (trusted)", ids["trusted"].as_str().unwrap());
    let (s1, e1) = audit(&m.url, &cfg, &State::default());
    assert!(e1.iter().all(|e| e.event == EventKind::New));
    let got: BTreeSet<(String, String)> = e1
        .iter()
        .filter(|e| e.rule != "ec2_securitygroup_default_restrict_traffic")
        .map(|e| {
            let s = if e.detail.is_empty() {
                e.subject.clone()
            } else {
                format!("{} {}", e.subject, e.detail)
            };
            (e.rule.clone(), s)
        })
        .collect();
    let n = |r: &str, s: &str| (r.to_string(), s.to_string());
    let want: BTreeSet<(String, String)> = [
        n("secgroup_suspicious_ingress", &format!("{web} tcp 8080")),
        n(
            "secgroup_suspicious_ingress",
            &format!("{web} tcp 1000-2000"),
        ),
        n(
            "ec2_securitygroup_allow_ingress_from_internet_to_tcp_port_22",
            &web,
        ),
        n("ec2_securitygroup_allow_wide_open_public_ipv4", &trusted),
        n(
            "ec2_instance_imdsv2_enabled",
            ids["instance"].as_str().unwrap(),
        ),
        n("ec2_new_ami_in_use", ids["base_ami"].as_str().unwrap()),
        n("elb_listener_port_not_allowed", "lb1 8443"),
        n("elb_ssl_listeners", "lb1"),
        n("iam_user_group_added", "alice"),
        n("iam_user_mfa_enabled_console_access", "alice"),
        n("iam_group_administrator_access_policy", "admins"),
        n("iam_user_administrator_access_policy", "ci-bot"),
        n("iam_root_mfa_enabled", "123456789012"),
        n("s3_bucket_policy_public_write_access", "pub-write"),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    // Every VPC default group (moto makes them) is reported by the default-group check.
    assert!(e1
        .iter()
        .any(|e| e.rule == "ec2_securitygroup_default_restrict_traffic"
            && e.subject.ends_with("(default)")));
    // Whitelisted entries and ranges, allowed protocols: nothing on "trusted" but the wide range.
    assert!(!e1
        .iter()
        .any(|e| e.rule == "secgroup_suspicious_ingress" && e.subject == trusted));
    // Quiet second run.
    let (s2, e2) = audit(&m.url, &cfg, &s1);
    assert!(e2.is_empty(), "{e2:?}");
    assert_eq!(s2.findings.len(), s1.findings.len());

    // One mutation at a time, one event each.
    let web_id = ids["web"].as_str().unwrap();
    common::helper(&m.url, &["mutate", "new_rule", web_id]);
    let (s3, e3) = audit(&m.url, &cfg, &s2);
    assert_eq!(
        set(&e3),
        [(
            "new".into(),
            "secgroup_suspicious_ingress".into(),
            web.clone()
        )]
        .into()
    );
    assert_eq!(e3[0].detail, "tcp 9000");

    common::helper(&m.url, &["mutate", "group_added"]);
    let (s4, e4) = audit(&m.url, &cfg, &s3);
    assert_eq!(e4.len(), 1, "{e4:?}");
    assert_eq!(e4[0].event, EventKind::Changed);
    assert_eq!(e4[0].rule, "iam_user_group_added");
    assert_eq!(
        e4[0].before,
        Some(serde_json::json!({"groups": ["admins"]}))
    );
    assert_eq!(
        e4[0].data,
        serde_json::json!({"groups": ["admins", "devs"]})
    );

    let r = common::helper(
        &m.url,
        &["mutate", "new_ami", ids["instance"].as_str().unwrap()],
    );
    let (s5, e5) = audit(&m.url, &cfg, &s4);
    assert_eq!(
        set(&e5),
        [(
            "new".into(),
            "ec2_new_ami_in_use".into(),
            r["ami"].as_str().unwrap().to_string()
        )]
        .into()
    );

    common::helper(&m.url, &["mutate", "widen", web_id]);
    let (s6, e6) = audit(&m.url, &cfg, &s5);
    assert_eq!(e6.len(), 1, "{e6:?}");
    assert_eq!(e6[0].event, EventKind::Changed);
    assert_eq!(e6[0].detail, "tcp 8080");
    assert_eq!(
        e6[0].before.as_ref().unwrap()["ranges"],
        serde_json::json!(["10.1.2.0/24"])
    );
    assert_eq!(e6[0].data["ranges"], serde_json::json!(["10.1.0.0/16"]));

    common::helper(&m.url, &["mutate", "revoke", web_id]);
    let (s7, e7) = audit(&m.url, &cfg, &s6);
    assert_eq!(e7.len(), 1, "{e7:?}");
    assert_eq!(e7[0].event, EventKind::Resolved);
    assert_eq!(e7[0].detail, "tcp 1000-2000");
    let (_, e8) = audit(&m.url, &cfg, &s7);
    assert!(e8.is_empty(), "{e8:?}");
}

#[test]
fn accounts_through_assume_role_stay_apart() {
    let Some(m) = common::moto(&[]) else { return };
    let ids = common::helper(&m.url, &["accounts"]);
    let cfg = AuditConfig::from_toml(
        r#"
[audit]
[[audit.accounts]]
name = "a"
role_arn = "arn:aws:iam::111111111111:role/audit"
external_id = "ext-a"
[[audit.accounts]]
name = "b"
role_arn = "arn:aws:iam::222222222222:role/audit"
"#,
    )
    .unwrap();
    let (_, events) = audit(&m.url, &cfg, &State::default());
    let sg = |e: &Event| (e.rule == "secgroup_suspicious_ingress").then(|| e.subject.clone());
    for (acct, name) in [("111111111111", "only-a"), ("222222222222", "only-b")] {
        let mine: Vec<String> = events
            .iter()
            .filter(|e| e.account == acct)
            .filter_map(sg)
            .collect();
        assert_eq!(
            mine,
            vec![format!("{} ({name})", ids[acct].as_str().unwrap())],
            "{acct}"
        );
    }
    // No finding of the caller's own account (123456789012): only the listed accounts run.
    assert!(events.iter().all(|e| e.account != "123456789012"));
}

#[test]
fn bad_secret_and_unknown_key_are_clear_errors() {
    // Moto checks signatures only in its auth mode; the first 3 calls (the helper's set-up)
    // are let through.
    let Some(m) = common::moto(&[("INITIAL_NO_AUTH_ACTION_COUNT", "3")]) else {
        return;
    };
    let k = common::helper(&m.url, &["auth_user"]);
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    std::env::remove_var("AWS_SESSION_TOKEN");
    let try_run = |id: &str, secret: &str| {
        std::env::set_var("AWS_ACCESS_KEY_ID", id);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", secret);
        run(&AuditConfig::default(), &opts(&m.url))
    };
    let ok = try_run(k["id"].as_str().unwrap(), k["secret"].as_str().unwrap())
        .expect("the right secret works");
    assert!(
        ok.evaluation.errored.is_empty(),
        "{:?}",
        ok.evaluation.errored
    );
    let e = try_run(k["id"].as_str().unwrap(), "wrong-secret").unwrap_err();
    assert_eq!(e.code(), Some("SignatureDoesNotMatch"), "{e}");
    assert!(e.to_string().contains("GetCallerIdentity"), "{e}");
    assert!(!e.to_string().contains("wrong-secret"), "{e}");
    let e = try_run("AKIAUNKNOWNKEY000000", "x").unwrap_err();
    assert_eq!(e.code(), Some("InvalidClientTokenId"), "{e}");
}
