use palisade_config::Config;
use std::path::Path;

const FILTERS: &[&str] = &[
    "sshd",
    "nginx_access",
    "apache_access",
    "nginx_error",
    "apache_error",
    "kernel_fw",
];

fn parse(text: &str) -> Result<Config, palisade_config::ConfigError> {
    Config::parse(text, Path::new("test.toml"), FILTERS)
}

#[test]
fn shipped_example_is_valid() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/palisade.toml");
    let cfg = Config::load(&p, FILTERS).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.jails.len(), 4);
    assert_eq!(cfg.jails[0].name.get_ref(), "sshd");
    assert_eq!(cfg.defaults.find_time.0.as_secs(), 600);
    assert_eq!(cfg.jails[1].find_time.unwrap().0.as_secs(), 60);
    assert_eq!(cfg.allowlist.parsed.len(), 2);
    assert!(cfg.recidive.as_ref().unwrap().enabled);
}

#[test]
fn reports_every_problem_with_line_and_allowed_values() {
    let text = r#"
[general]
dry_run = "yes"

[defaults]
find_time = "10 parsecs"

[bogus]
x = 1

[[jail]]
name = "a"
filter = "sshd"
files = ["/var/log/auth.log"]
colour = "red"

[[jail]]
name = "b"
filter = "nope"
files = ["/x"]
responders = ["missing"]

[[jail]]
name = "b"
filter = "sshd"
"#;
    let err = parse(text).unwrap_err();
    let all: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    let joined = all.join("\n");
    eprintln!("{joined}");
    assert!(
        joined.contains("test.toml:3:11:") && joined.contains("invalid type"),
        "{joined}"
    );
    assert!(
        joined.contains("test.toml:6:13:") && joined.contains("invalid duration"),
        "{joined}"
    );
    assert!(
        joined.contains("test.toml:8:2: unknown section `bogus`, expected one of: general"),
        "{joined}"
    );
    assert!(
        joined.contains("test.toml:15:1: unknown field `colour`, expected one of"),
        "{joined}"
    );
    assert!(
        joined.contains("unknown filter \"nope\"; built-in filters: sshd"),
        "{joined}"
    );
    assert!(
        joined.contains("no responder named \"missing\""),
        "{joined}"
    );
    assert!(joined.contains("jail \"b\" is defined twice"), "{joined}");
    assert!(joined.contains("give exactly one source"), "{joined}");
    assert!(err.problems.len() >= 8, "{joined}");
}

#[test]
fn syntax_error_has_location() {
    let err = parse("[general\n").unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert_eq!(err.problems[0].line, 1);
}

#[test]
fn durations_and_forever() {
    let cfg = parse(
        r#"
[defaults]
find_time = 90
ban_time = "forever"
[[jail]]
name = "s"
filter = "sshd"
stdin = true
ban_time = "1w"
"#,
    )
    .unwrap();
    assert_eq!(cfg.defaults.find_time.0.as_secs(), 90);
    assert_eq!(cfg.defaults.ban_time.0, None);
    assert_eq!(cfg.jails[0].ban_time.unwrap().0.unwrap().as_secs(), 604800);
}

#[test]
fn command_responder_is_checked() {
    let err = parse(
        r#"
[[responder]]
name = "c"
type = "command"
ban = ["sh", "-c", "iptables -A INPUT -s {ip} -j DROP"]
unban = ["/sbin/x", "{host}"]
table = "t"

[[responder]]
name = "d"
type = "teleport"
"#,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("must be an absolute path"), "{err}");
    assert!(err.contains("unknown placeholder {host}"), "{err}");
    assert!(err.contains("`table` is only for type nftables"), "{err}");
    assert!(err.contains("unknown responder type \"teleport\""), "{err}");
    // A stray brace is an error, not text passed to the program.
    let err = parse(
        "[[responder]]\nname = \"c\"\ntype = \"command\"\nban = [\"/bin/x\", \"{ip}}\"]\nunban = [\"/bin/x\", \"{ip}\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unbalanced '}'"), "{err}");
}

#[test]
fn allowlist_entries_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("allow.txt");
    std::fs::write(&f, "192.0.2.0/24\n# comment\nnot-an-ip\n").unwrap();
    let text = format!(
        "[allowlist]\naddresses = [\"10.0.0.0/8\", \"300.1.1.1\"]\nfiles = [{:?}]\n",
        f.display().to_string()
    );
    // Files are read by `load` (the I/O step), never by `parse` (pure validation).
    let conf = dir.path().join("palisade.toml");
    let load = |text: &str| {
        std::fs::write(&conf, text).unwrap();
        Config::load(&conf, FILTERS)
    };
    let err = load(&text).unwrap_err();
    let s = err.to_string();
    assert!(s.contains("\"300.1.1.1\" is not an IP address"), "{s}");
    assert!(s.contains("allow.txt:3:1: \"not-an-ip\""), "{s}");
    std::fs::write(&f, "192.0.2.0/24\n").unwrap();
    let text = format!(
        "[allowlist]\naddresses = [\"10.0.0.0/8\"]\nfiles = [{:?}]\n",
        f.display().to_string()
    );
    assert_eq!(load(&text).unwrap().allowlist.parsed.len(), 2);
}

#[test]
fn parse_reads_no_file_load_does() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[allowlist]\nfiles = [\"missing-allow.txt\"]\n\n[[jail]]\nname = \"f\"\nfilter_file = \"missing.conf\"\nstdin = true\n";
    let conf = dir.path().join("palisade.toml");
    let cfg = Config::parse(text, &conf, FILTERS).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.allowlist.parsed.is_empty());
    std::fs::write(&conf, text).unwrap();
    let err = Config::load(&conf, FILTERS).unwrap_err().to_string();
    assert!(
        err.contains("palisade.toml:2:10: cannot read allowlist file"),
        "{err}"
    );
    assert!(
        err.contains("palisade.toml:6:15: jail \"f\": filter_file")
            && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn responder_types_take_only_their_own_keys() {
    let err = parse(
        r#"
[[responder]]
name = "fw"
type = "ipset"
ports = [22]
netns = "x"
priority = 5
colour = "red"

[[responder]]
name = "u"
type = "ufw"
ports = ["ssh"]
"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("test.toml:7:1: responder \"fw\": `priority` is only for type nftables (this one is ipset; allowed: name, type, ports, netns)"),
        "{err}"
    );
    assert!(
        err.contains("test.toml:8:1: responder \"fw\": unknown key `colour` for type ipset; allowed: name, type, ports, netns"),
        "{err}"
    );
    assert!(
        err.contains("test.toml:13:9: invalid type: string \"ssh\", expected u16"),
        "{err}"
    );
    let cfg = parse(
        "[[responder]]\nname = \"fw\"\ntype = \"nftables\"\ntable = \"t\"\nports = [22]\nforward = true\n\n[[responder]]\nname = \"c\"\ntype = \"command\"\nban = [\"/bin/true\", \"{ip}\"]\ntimeout = \"5s\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    match &cfg.responder("fw").unwrap().spec {
        palisade_config::ResponderSpec::Nftables(n) => {
            assert_eq!(n.table.as_deref(), Some("t"));
            assert_eq!(n.ports.as_deref(), Some(&[22][..]));
            assert_eq!(n.forward, Some(true));
        }
        other => panic!("{other:?}"),
    }
    match &cfg.responder("c").unwrap().spec {
        palisade_config::ResponderSpec::Command(c) => {
            assert_eq!(c.timeout.unwrap().0.as_secs(), 5)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cfg.responder("log").unwrap().spec.kind(), "log");
    assert_eq!(cfg.responder("nftables").unwrap().spec.kind(), "nftables");
}

#[test]
fn webhook_format_is_an_enum() {
    let base = "[notify.webhook]\nurl = \"https://example.org/h\"\n";
    let cfg = parse(&format!("{base}format = \"slack\"\n")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.notify.unwrap().webhook.unwrap().format,
        palisade_config::WebhookFormat::Slack
    );
    let err = parse(&format!("{base}format = \"teams\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test.toml:3:10: [notify.webhook] format \"teams\": expected \"json\", \"slack\" or \"discord\""),
        "{err}"
    );
}

#[test]
fn redacts_store_password() {
    let err = parse("[store]\nurl = \"mysql://root:hunter2@db/x\"\n")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("root:***@db"), "{err}");
    // libpq keyword form (`host=… password=…`) hides its password too.
    assert_eq!(
        palisade_config::redact_url("host=db user=p password=hunter2 dbname=x"),
        "host=db user=p password=*** dbname=x"
    );
    assert_eq!(
        palisade_config::redact_url("host=db password='a b\\' c' dbname=x"),
        "host=db password=*** dbname=x"
    );
}

#[test]
fn email_tls_options_are_checked() {
    let base = "[notify]\n[notify.email]\nsmtp_host = \"mx\"\nfrom = \"a@example.org\"\nto = [\"b@example.org\"]\n";
    let cfg = parse(&format!(
        "{base}tls = \"tls\"\nca_file = \"ca.pem\"\nusername = \"u\"\npassword_file = \"pw\"\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let e = cfg.notify.unwrap().email.unwrap();
    assert_eq!(e.tls, "tls");
    assert_eq!(e.ca_file.as_deref(), Some("ca.pem"));
    let err = parse(&format!("{base}tls = \"ssl\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expected \"starttls\", \"tls\" or \"none\""),
        "{err}"
    );
    let err = parse(&format!("{base}tls = \"none\"\nca_file = \"ca.pem\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ca_file needs tls"), "{err}");
    let err = parse(&format!("{base}password = \"hunter2\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs `username`"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    // A login over plain SMTP only to a loopback relay.
    let err = parse(&format!(
        "{base}tls = \"none\"\nusername = \"u\"\npassword = \"hunter2\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("clear text"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let local = base.replace("\"mx\"", "\"127.0.0.1\"");
    parse(&format!(
        "{local}tls = \"none\"\nusername = \"u\"\npassword = \"hunter2\"\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn server_limits_and_hosts() {
    let cfg = parse("[server]\nallowed_hosts = [\"palisade.example.org\"]\nmax_connections = 64\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let s = cfg.server.unwrap();
    assert_eq!(s.allowed_hosts, ["palisade.example.org"]);
    assert_eq!((s.max_connections, s.max_connections_per_address), (64, 32));
    let err = parse("[server]\nmax_connections = 0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 1"), "{err}");
    let err = parse("[server]\nallowed_hosts = [\"a b\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a host name"), "{err}");
}

#[test]
fn access_jails_take_log_format_and_trusted_proxies() {
    let ok = r#"
[[jail]]
name = "web"
filter = "nginx_access"
options = { log_format = "combined_xff", trusted_proxies = "10.0.0.0/8" }
stdin = true
"#;
    let cfg = parse(ok).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.jails[0].options["log_format"], "combined_xff");
    let bad = r#"
[[jail]]
name = "ssh"
filter = "sshd"
options = { log_format = "combined" }
stdin = true
"#;
    let e = parse(bad).unwrap_err().to_string();
    assert!(
        e.contains("unknown option \"log_format\"") && e.contains("allowed: mode"),
        "{e}"
    );
}

#[test]
fn typos_get_a_did_you_mean() {
    let text = r#"
[defaults]
maxretry = 3

[servre]
listen = "127.0.0.1:1"

[[jail]]
name = "ssh"
filter = "shd"
files = ["/var/log/auth.log"]

[[jail]]
name = "web"
filter = "wordpress"
files = ["/var/log/x.log"]
"#;
    let e = parse(text).unwrap_err();
    let all = e.to_string();
    let find = |needle: &str| {
        e.problems
            .iter()
            .find(|p| p.message.contains(needle))
            .unwrap_or_else(|| panic!("no problem with {needle:?} in:\n{all}"))
    };
    let p = find("maxretry");
    assert!(p.message.ends_with("did you mean `max_retry`?"), "{all}");
    assert_eq!((p.line, p.col), (3, 1), "{all}");
    let p = find("servre");
    assert!(p.message.ends_with("did you mean `server`?"), "{all}");
    let p = find("\"shd\"");
    assert!(p.message.contains("did you mean \"sshd\"?"), "{all}");
    assert_eq!(p.line, 10, "{all}");
    // Nothing close: no guess, the full list is still there.
    let p = find("\"wordpress\"");
    assert!(!p.message.contains("did you mean"), "{all}");
    assert!(p.message.contains("nginx_access"), "{all}");
    assert_eq!(
        palisade_config::did_you_mean("zzz", ["sshd", "nginx_error"]),
        None
    );
}

/// Every bad key and value of a section is reported, not only the first, in every section,
/// together with the semantic problems, each at its line and column, in file order.
#[test]
fn every_problem_of_every_section_in_one_pass() {
    let text = r#"
[general]
dry_run = "yes"
log_levle = "info"
max_line = "big"
reconcile_interval = "soon"

[defaults]
max_retry = 0
maxretry = 3
find_time = "10 parsecs"

[notify]
max_per_hour = 0
[notify.email]
smtp_host = 3
from = "a@b"
to = []
colour = "red"

[[responder]]
name = "fw"
type = "nftables"
ports = ["ssh"]
priority = "high"

[[jail]]
name = "a"
filter = "sshd"
files = ["/var/log/auth.log"]
max_retry = "three"
colour = "red"

[[jail]]
name = "b"
filter = "shd"
files = ["/x"]
max_retry = 0
"#;
    let err = parse(text).unwrap_err();
    let got: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
    let all = err.to_string();
    let expected = [
        "test.toml:3:11: invalid type: string \"yes\", expected a boolean",
        "test.toml:4:1: unknown field `log_levle`, expected one of `state_dir`, `socket`, `dry_run`, `log_level`, `timezone`, `max_line`, `reconcile_interval`; did you mean `log_level`?",
        "test.toml:5:12: invalid type: string \"big\", expected usize",
        "test.toml:6:22: invalid duration \"soon\"",
        "test.toml:9:13: [defaults]: max_retry must be at least 1",
        "test.toml:10:1: unknown field `maxretry`, expected one of `max_retry`, `find_time`, `ban_time`, `ipv6_prefix`, `max_keys`, `responders`; did you mean `max_retry`?",
        "test.toml:11:13: invalid duration \"10 parsecs\"",
        "test.toml:14:16: [notify] max_per_hour must be at least 1",
        "test.toml:16:13: invalid type: integer `3`, expected a string",
        "test.toml:19:1: unknown field `colour`, expected one of `smtp_host`, `smtp_port`, `tls`, `username`, `password`, `password_file`, `ca_file`, `from`, `to`, `subject_prefix`, `timeout`",
        "test.toml:24:9: invalid type: string \"ssh\", expected u16",
        "test.toml:25:12: invalid type: string \"high\", expected i32",
        "test.toml:31:13: invalid type: string \"three\", expected u32",
        "test.toml:32:1: unknown field `colour`, expected one of",
        "test.toml:36:10: jail \"b\": unknown filter \"shd\"; did you mean \"sshd\"?",
        "test.toml:38:13: jail \"b\": max_retry must be at least 1",
    ];
    for (i, e) in expected.iter().enumerate() {
        assert!(
            got.iter().any(|g| g.starts_with(e)),
            "problem {i} {e:?} missing from:\n{all}"
        );
    }
    assert_eq!(got.len(), expected.len(), "{all}");
    assert!(all.ends_with("16 problems in the configuration\n"), "{all}");
    // In file order.
    let lines: Vec<usize> = err.problems.iter().map(|p| p.line).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}

/// A bad value is reported once: the checks that its (default) stand-in would fail are not
/// reported on top of it.
#[test]
fn a_bad_value_is_not_reported_again_by_the_checks() {
    let text = r#"
[server]
tls_cert = 3
tls_key = "/k.pem"

[[jail]]
name = "a"
filter = 7
files = ["/var/log/auth.log"]

[[jail]]
name = "b"
filter = "sshd"
files = "/var/log/auth.log"
"#;
    let err = parse(text).unwrap_err();
    let all = err.to_string();
    assert_eq!(err.problems.len(), 3, "{all}");
    assert!(
        all.contains("test.toml:3:12: invalid type: integer `3`, expected a string"),
        "{all}"
    );
    assert!(
        all.contains("test.toml:8:10: invalid type: integer `7`"),
        "{all}"
    );
    assert!(
        all.contains("test.toml:14:9: invalid type: string"),
        "{all}"
    );
    assert!(
        !all.contains("go together") && !all.contains("missing `filter`"),
        "{all}"
    );
    assert!(!all.contains("exactly one source"), "{all}");
}

#[test]
fn store_retention_default_zero_and_floor() {
    // Default: 90 days.
    let cfg = parse("").unwrap();
    assert_eq!(cfg.store.retention.0.as_secs(), 90 * 86400);
    assert_eq!(cfg.store.retention.0, palisade_config::DEFAULT_RETENTION);
    let cfg = parse("[store]\nretention = \"30d\"\n").unwrap();
    assert_eq!(cfg.store.retention.0.as_secs(), 30 * 86400);
    // 0 keeps events forever.
    for zero in ["0", "\"0\"", "\"0s\""] {
        let cfg = parse(&format!("[store]\nretention = {zero}\n")).unwrap();
        assert!(cfg.store.retention.0.is_zero(), "{zero}");
    }
    // Shorter than a day: refused, with the way out named.
    let err = parse("[store]\nretention = \"12h\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("[store] retention of 43200 s"), "{err}");
    assert!(err.contains("use 0 to keep events forever"), "{err}");
    // Shorter than a jail's find_time: its events would be gone before a restart counts them.
    let err = parse(
        "[store]\nretention = \"2d\"\n[[jail]]\nname = \"sshd\"\nfilter = \"sshd\"\nfiles = [\"/var/log/auth.log\"]\nfind_time = \"3d\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("shorter than 259200 s"), "{err}");
    // Not a duration.
    let err = parse("[store]\nretention = \"ninety days\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("test.toml:2:13: invalid duration"), "{err}");
}
