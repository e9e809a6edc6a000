//! `[[fleet_jail]]` sections.

use palisade_config::{Config, FleetJailSettings};
use std::path::Path;
use std::time::Duration;

fn parse(text: &str) -> Result<Config, palisade_config::ConfigError> {
    Config::parse(text, Path::new("fleet.toml"), &["sshd"])
}

#[test]
fn server_with_only_fleet_jails_is_valid_and_defaults_apply() {
    let text = r#"
[defaults]
max_retry = 7
find_time = "20m"
ban_time = "2h"

[[fleet_jail]]
name = "ssh-fleet"
jails = ["sshd", "sshd-ddos"]
max_retry = 20
find_time = "1h"
ban_time = "1d"
min_hosts = 3
ipv6_prefix = 56
ipv4_prefix = 24

[[fleet_jail]]
name = "all"
"#;
    let cfg = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.jails.is_empty());
    let s = cfg.fleet_jail_settings();
    assert_eq!(
        s[0],
        FleetJailSettings {
            name: "ssh-fleet".into(),
            jails: vec!["sshd".into(), "sshd-ddos".into()],
            max_retry: 20,
            find_time: Duration::from_secs(3600),
            ban_time: Some(Duration::from_secs(86400)),
            min_hosts: 3,
            ipv6_prefix: 56,
            ipv4_prefix: 24,
        }
    );
    assert_eq!(
        s[1],
        FleetJailSettings {
            name: "all".into(),
            jails: vec![],
            max_retry: 7,
            find_time: Duration::from_secs(1200),
            ban_time: Some(Duration::from_secs(7200)),
            min_hosts: 2,
            ipv6_prefix: 64,
            ipv4_prefix: 32,
        }
    );
}

#[test]
fn forever_ban() {
    let cfg = parse("[[fleet_jail]]\nname = \"f\"\nban_time = \"forever\"\n").unwrap();
    assert_eq!(cfg.fleet_jail_settings()[0].ban_time, None);
}

#[test]
fn bad_values_are_located_and_explained() {
    let text = r#"
[[jail]]
name = "sshd"
filter = "sshd"
files = ["/var/log/auth.log"]

[[fleet_jail]]
name = "sshd"
min_hosts = 0
ipv4_prefix = 33
ipv6_prefix = 16
max_retry = 0

[[fleet_jail]]
name = "typo"
min_host = 3

[[fleet_jail]]
name = "ok"
jails = ["bad name"]
find_time = 0

[[fleet_jail]]
name = "ok"
"#;
    let e = parse(text).unwrap_err();
    let all = e.to_string();
    eprintln!("{all}");
    let find = |needle: &str| {
        e.problems
            .iter()
            .find(|p| p.message.contains(needle))
            .unwrap_or_else(|| panic!("no problem with {needle:?} in:\n{all}"))
    };
    let p = find("min_hosts 0 must be between 1 and 1000");
    assert_eq!((p.line, p.col), (8, 8), "{all}");
    find("ipv4_prefix 33 must be between 8 and 32");
    find("ipv6_prefix 16 must be between 32 and 128");
    find("fleet jail \"sshd\": max_retry must be at least 1");
    find("a [[jail]] has this name too");
    let p = find("unknown field `min_host`");
    assert!(p.message.ends_with("did you mean `min_hosts`?"), "{all}");
    assert_eq!((p.line, p.col), (16, 1), "{all}");
    let p = find("fleet jail \"ok\" is defined twice");
    assert_eq!(p.line, 24, "{all}");
    let p = find("\"bad name\" is not a jail name");
    assert_eq!((p.line, p.col), (20, 10), "{all}");
    find("find_time must be at least 1 second");
}

#[test]
fn ipv4_prefix_bounds() {
    for (p, ok) in [(7, false), (8, true), (24, true), (32, true), (33, false)] {
        let r = parse(&format!(
            "[[fleet_jail]]\nname = \"f\"\nipv4_prefix = {p}\n"
        ));
        assert_eq!(r.is_ok(), ok, "ipv4_prefix {p}: {r:?}");
    }
    for (p, ok) in [
        (31, false),
        (32, true),
        (64, true),
        (128, true),
        (129, false),
    ] {
        let r = parse(&format!(
            "[[fleet_jail]]\nname = \"f\"\nipv6_prefix = {p}\n"
        ));
        assert_eq!(r.is_ok(), ok, "ipv6_prefix {p}: {r:?}");
    }
}

#[test]
fn fleet_jail_must_be_an_array_of_tables() {
    let e = parse("[fleet_jail]\nname = \"f\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("write [[fleet_jail]]"), "{e}");
    let e = parse("[[fleet_jails]]\nname = \"f\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("did you mean `fleet_jail`?"), "{e}");
}
