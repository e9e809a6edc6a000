//! Durations are bounded at every entry (issue 19, finding 3): at most 10 years, and a ban
//! length is never zero.

use palisade_config::{parse_ban_duration, parse_duration, Config, MAX_DURATION};
use std::time::Duration;

#[test]
fn durations_over_ten_years_and_zero_bans_are_refused() {
    assert_eq!(
        parse_duration("200w").unwrap(),
        Duration::from_secs(200 * 7 * 86400)
    );
    assert_eq!(
        parse_duration(&MAX_DURATION.as_secs().to_string()).unwrap(),
        MAX_DURATION
    );
    for bad in ["19000000000", "11y", "600w", "315360001"] {
        let e = parse_duration(bad).unwrap_err();
        assert!(e.contains("10-year maximum"), "{bad}: {e}");
    }
    assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    for zero in ["0", "0s"] {
        let e = parse_ban_duration(zero).unwrap_err();
        assert!(e.contains("at least 1 second"), "{zero}: {e}");
    }
}

fn config_error(section: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("palisade.toml");
    std::fs::write(&p, section).unwrap();
    match Config::load(&p, &["sshd"]) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_refuses_overlong_and_zero_ban_times() {
    for (text, want) in [
        ("[defaults]\nban_time = 19000000000\n", "10-year maximum"),
        ("[defaults]\nban_time = \"600w\"\n", "10-year maximum"),
        ("[defaults]\nban_time = 0\n", "at least 1 second"),
        ("[defaults]\nban_time = \"0s\"\n", "at least 1 second"),
        ("[defaults]\nfind_time = 19000000000\n", "10-year maximum"),
        ("[escalation]\nmax = \"11y\"\n", "10-year maximum"),
    ] {
        let e = config_error(text);
        assert!(e.contains(want), "{text:?}: {e}");
    }
    let e = config_error("[defaults]\nban_time = \"200w\"\n");
    assert!(!e.contains("ban_time") && !e.contains("maximum"), "{e}");
}
