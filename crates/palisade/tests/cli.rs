//! `palisade check` and `palisade replay` on small logs with known answers.

use std::process::Command;

mod common;
use common::{outcome, TestDir, BIN};

fn run(args: &[&str], stdin: &str) -> (String, String, bool) {
    use std::io::Write;
    let mut c = Command::new(BIN)
        .args(args)
        .env("TZ", "UTC")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
        o.status.success(),
    )
}

const LOG: &str = "\
Mar  3 10:00:01 h sshd[1]: Failed password for invalid user test from 10.10.1.2 port 55555 ssh2 from 203.0.113.9 port 4242 ssh2
Mar  3 10:00:02 h sshd[2]: Connection closed by authenticating user test 127.0.0.1 port 12345 198.51.100.8 port 5555 [preauth]
Mar  3 10:00:03 h sshd[3]: Invalid user admin from ::ffff:203.0.113.10 port 22 
Mar  3 10:00:04 h CRON[4]: (root) CMD (run-parts /etc/cron.hourly)
Mar  3 10:00:05 h sshd[5]: Failed password for root from 2001:db8::7 port 2 ssh2
garbage \x00\x01 not a log line
";

#[test]
fn check_json_is_exact_and_injection_proof() {
    let (out, err, ok) = run(
        &[
            "check",
            "-",
            "--filter",
            "sshd",
            "--json",
            "--now",
            "2025-03-20T00:00:00Z",
        ],
        LOG,
    );
    assert!(ok, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{out}\n{err}");
    assert_eq!(rows[0]["line"], 1);
    assert_eq!(rows[0]["ip"], "203.0.113.9");
    assert_eq!(rows[0]["time"], "2025-03-03T10:00:01Z");
    assert_eq!(rows[0]["rule"], "failed_password");
    assert_eq!(rows[1]["ip"], "203.0.113.10", "IPv4-mapped IPv6 is IPv4");
    assert_eq!(rows[2]["ip"], "2001:db8::7");
    assert!(err.contains("Lines: 6 read, 3 matched"), "{err}");
    // The preauth close is an event in aggressive mode only, blamed on the real address.
    let (out, _, ok) = run(
        &[
            "check",
            "-",
            "--filter",
            "sshd",
            "--mode",
            "aggressive",
            "--json",
            "--now",
            "2025-03-20T00:00:00Z",
        ],
        LOG,
    );
    assert!(ok);
    let ips: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["ip"].to_string())
        .collect();
    assert!(ips.contains(&"\"198.51.100.8\"".to_string()), "{out}");
    assert!(
        !ips.iter()
            .any(|i| i.contains("127.0.0.1") || i.contains("10.10.1.2")),
        "{out}"
    );
}

#[test]
fn replay_prints_decisions_on_event_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[general]\ntimezone = \"UTC\"\n[defaults]\nmax_retry = 3\nfind_time = \"10m\"\nban_time = \"10m\"\n[[jail]]\nname = \"sshd\"\nfilter = \"sshd\"\nstdin = true\n",
    )
    .unwrap();
    let mut log = String::new();
    for i in 0..7 {
        log.push_str(&format!(
            "Mar  3 10:0{i}:00 h sshd[1]: Failed password for root from 203.0.113.9 port 1 ssh2\n"
        ));
    }
    let args = [
        "replay",
        "-",
        "--config",
        cfg.to_str().unwrap(),
        "--json",
        "--now",
        "2025-03-20T00:00:00Z",
    ];
    let (out, err, ok) = run(&args, &log);
    assert!(ok, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Failures at 10:00..10:02 ban until 10:12; those during the ban are not counted.
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["ip"], "203.0.113.9");
    assert_eq!(rows[0]["start"], "2025-03-03T10:02:00Z");
    assert_eq!(rows[0]["duration"], 600);
    assert_eq!(rows[0]["jail"], "sshd");
    // Deterministic: a second run prints the same.
    let (out2, _, _) = run(&args, &log);
    assert_eq!(out, out2);
}

#[test]
fn bad_input_is_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.log");
    let mut data: Vec<u8> = Vec::new();
    // Binary garbage, invalid UTF-8, NUL bytes.
    let mut x: u32 = 12345;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.push((x & 0xff) as u8);
    }
    data.extend_from_slice(
        b"\n\xff\xfe\x00 sshd[1]: Failed password for root from 203.0.113.1 port 1 ssh2\n",
    );
    // A 10 MB line that ends with an offending message: cut, so it is not trusted.
    data.extend(std::iter::repeat_n(b'A', 10 * 1024 * 1024));
    data.extend_from_slice(b" sshd[1]: Failed password for root from 203.0.113.2 port 1 ssh2\n");
    // A good line, then a truncated one without a newline at the end of the file.
    data.extend_from_slice(
        b"Mar  3 10:00:01 h sshd[1]: Failed password for root from 203.0.113.3 port 1 ssh2\n",
    );
    data.extend_from_slice(b"Mar  3 10:00:02 h sshd[1]: Failed password for ro");
    std::fs::write(&p, &data).unwrap();
    let (out, err, ok) = run(
        &[
            "check",
            p.to_str().unwrap(),
            "--filter",
            "sshd",
            "--json",
            "--now",
            "2025-03-20T00:00:00Z",
        ],
        "",
    );
    assert!(ok, "{err}");
    let ips: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["ip"].to_string())
        .collect();
    assert_eq!(ips, ["\"203.0.113.3\""], "{out}");
    assert!(
        err.contains(" 1 cut"),
        "the 10 MB line is counted as cut: {err}"
    );
}

/// Runs `args`, reads the first line of its output, closes the pipe (as `| head -1` does) and
/// returns the exit status, the line and standard error.
fn first_line_then_close(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    use std::io::{BufRead, Read};
    let mut c = Command::new(BIN)
        .args(args)
        .env("TZ", "UTC")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    {
        let mut r = std::io::BufReader::new(c.stdout.take().unwrap());
        r.read_line(&mut line).unwrap();
    } // closed here
    let mut err = String::new();
    c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (c.wait().unwrap(), line, err)
}

/// Far more output than a pipe buffers (64 KiB), so the writer must meet the closed pipe.
fn big_log(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let p = dir.join("auth.log");
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "Mar  3 10:00:01 h sshd[1]: Failed password for root from 10.{}.{}.{} port 22 ssh2\n",
            i / 65536 % 256,
            i / 256 % 256,
            i % 256
        ));
    }
    std::fs::write(&p, s).unwrap();
    p
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let log = big_log(dir.path(), 3000);
    let log_s = log.to_str().unwrap();
    // check --json | head -1
    let (st, line, err) = first_line_then_close(&[
        "check",
        log_s,
        "--filter",
        "sshd",
        "--json",
        "--now",
        "2025-03-20T00:00:00Z",
    ]);
    assert!(st.success(), "{st:?} {err}");
    assert!(line.contains("\"line\":1,"), "{line}");
    assert!(err.is_empty(), "noise on a closed pipe: {err}");

    // decisions list --all | head -1, with a store of 3000 bans from a batch run.
    let t = TestDir { dir };
    let cfg = t.write_config(&format!(
        r#"{base}
[defaults]
max_retry = 1
find_time = "3000d"
ban_time = "1h"
responders = ["log"]
[recidive]
enabled = false
{log}
[[jail]]
name = "sshd"
filter = "sshd"
files = ["{log_s}"]
"#,
        base = t.base_config("timezone = \"UTC\"\nlog_level = \"warn\""),
        log = TestDir::log_responder(),
    ));
    let o = t.cli(&[
        "run",
        "--once",
        "--from-start",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{o:?}");
    let cfg_s = cfg.to_str().unwrap();
    for args in [
        &[
            "decisions",
            "list",
            "--all",
            "--limit",
            "5000",
            "--config",
            cfg_s,
        ][..],
        &[
            "decisions",
            "list",
            "--all",
            "--limit",
            "5000",
            "--json",
            "--config",
            cfg_s,
        ],
    ] {
        let (st, line, err) = first_line_then_close(args);
        assert!(st.success(), "{args:?}: {st:?} {err}");
        assert!(!line.is_empty(), "{args:?}");
        assert!(err.is_empty(), "{args:?}: noise on a closed pipe: {err}");
    }
    // The whole list is there when read to the end.
    let o = Command::new(BIN)
        .args([
            "decisions",
            "list",
            "--all",
            "--limit",
            "5000",
            "--json",
            "--config",
            cfg_s,
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 3000);
    // No silent cap: a page, and the total with how to get more.
    let page = |extra: &[&str]| {
        let o = Command::new(BIN)
            .args(["decisions", "list", "--all", "--config", cfg_s])
            .args(extra)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let first = page(&[]);
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 1 + 100 + 1, "header, 100 rows, total line");
    assert_eq!(
        lines[101],
        "showing 1-100 of 3,000; --limit/--offset for more"
    );
    assert!(
        lines[1].contains(" UTC "),
        "times carry their zone: {}",
        lines[1]
    );
    let last = page(&["--limit", "50", "--offset", "2990"]);
    assert_eq!(last.lines().count(), 1 + 10 + 1, "{last}");
    assert!(last.ends_with("showing 2,991-3,000 of 3,000\n"), "{last}");
    // JSON keeps its shape: one decision per line, paged the same way.
    let json = page(&["--json", "--limit", "7", "--offset", "3"]);
    assert_eq!(json.lines().count(), 7);
    assert!(json.lines().all(|l| l.starts_with('{')), "{json}");
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    let (out, err, ok) = run(&["completions", "bash"], "");
    assert!(ok, "{err}");
    assert!(out.contains("decisions"), "{out}");
    assert!(
        out.contains("complete -F"),
        "a bash completion script: {out}"
    );
    for shell in ["zsh", "fish"] {
        let (out, err, ok) = run(&["completions", shell], "");
        assert!(ok && out.contains("decisions"), "{shell}: {err}");
    }
    let (_, err, ok) = run(&["completions", "tcsh-ish"], "");
    assert!(!ok, "an unknown shell is refused: {err}");
    // Hidden: packaging helpers are not in the everyday help.
    let (help, _, _) = run(&["--help"], "");
    assert!(!help.contains("completions"), "{help}");

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    let (_, err, ok) = run(&["man", "--out", out_dir.to_str().unwrap()], "");
    assert!(ok, "{err}");
    let main = std::fs::read_to_string(out_dir.join("palisade.1")).unwrap();
    assert!(main.contains(".TH PALISADE 1"), "{main}");
    assert!(main.contains("decisions"), "subcommands listed: {main}");
    let list = std::fs::read_to_string(out_dir.join("palisade-decisions-list.1")).unwrap();
    assert!(list.contains(".TH PALISADE-DECISIONS-LIST"), "{list}");
    assert!(list.contains("\\-\\-limit"), "options documented: {list}");
    for page in ["palisade-check.1", "palisade-status.1", "palisade-reload.1"] {
        assert!(out_dir.join(page).exists(), "{page}");
    }
    assert!(
        !out_dir.join("palisade-completions.1").exists(),
        "hidden commands get no page"
    );
}

#[test]
fn decisions_delete_says_what_it_lifted() {
    let t = TestDir::new();
    let cfg = t.write_config(&format!(
        "{}[defaults]\nresponders = [\"log\"]\n{}",
        t.base_config("log_level = \"warn\""),
        TestDir::log_responder()
    ));
    let cli = |args: &[&str]| outcome(&t.cli_config(&cfg, args));
    let (code, _, err) = cli(&["decisions", "add", "198.51.100.0/24", "--duration", "1h"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = cli(&["decisions", "add", "203.0.113.7"]);
    assert_eq!(code, Some(0), "{err}");

    // An address inside a banned network: the network's ban goes, and the output says so.
    let (code, out, err) = cli(&["decisions", "delete", "198.51.100.7"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("lifted 198.51.100.0/24 (covers 198.51.100.7)  jail=manual origin=manual"),
        "{out}"
    );
    let (code, out, err) = cli(&["decisions", "delete", "203.0.113.7"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("lifted 203.0.113.7  jail=manual origin=manual\n"),
        "{out}"
    );
    assert!(!out.contains("covers"), "{out}");

    // Nothing left: a message and exit status 1.
    let (code, out, err) = cli(&["decisions", "delete", "198.51.100.7"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        err.contains("nothing to lift: no ban in force covers 198.51.100.7"),
        "{err}"
    );
    let (_, out, _) = cli(&["decisions", "list"]);
    assert!(out.ends_with("no decisions\n"), "{out}");
}

#[test]
fn check_names_its_filter_and_its_log() {
    let code = |args: &[&str]| {
        let o = Command::new(BIN).args(args).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    std::fs::write(&log, LOG).unwrap();
    let log_s = log.to_str().unwrap();
    // No silent default filter: an error naming every built-in filter.
    let (c, out, err) = code(&["check", log_s]);
    assert_eq!(c, Some(2), "{out}{err}");
    assert!(out.is_empty(), "{out}");
    for name in palisade_filter_names() {
        assert!(err.contains(name), "{name} missing from: {err}");
    }
    // --help lists them too.
    let (c, help, _) = code(&["check", "--help"]);
    assert_eq!(c, Some(0));
    for name in palisade_filter_names() {
        assert!(help.contains(name), "{name} missing from --help: {help}");
    }
    // An unknown name is refused with the list.
    let (c, _, err) = code(&["check", log_s, "--filter", "sshdd"]);
    assert_eq!(c, Some(2));
    assert!(err.contains("nginx_access"), "{err}");
    // A missing log is an error, not "0 lines".
    let (c, out, err) = code(&["check", "/nonexistent.log", "--filter", "sshd"]);
    assert_eq!(c, Some(2), "{out}{err}");
    assert!(!out.contains("0 read"), "{out}");
    assert!(err.contains("/nonexistent.log"), "{err}");
    let (c, _, err) = code(&["check", dir.path().to_str().unwrap(), "--filter", "sshd"]);
    assert_eq!(c, Some(2), "a directory is no log: {err}");
    // The named filter runs.
    let (c, out, err) = code(&[
        "check",
        log_s,
        "--filter",
        "sshd",
        "--now",
        "2025-03-20T00:00:00Z",
    ]);
    assert_eq!(c, Some(0), "{err}");
    assert!(out.contains("6 read, 3 matched"), "{out}");
}

/// The built-in filter names, from the filter crate's registry.
fn palisade_filter_names() -> &'static [&'static str] {
    palisade_filter::builtin_names()
}

#[test]
fn user_add_list_delete() {
    let t = TestDir::new();
    let cfg = t.write_config(&t.base_config(""));
    let pw = t.p("pw");
    std::fs::write(&pw, "correct horse battery staple\n").unwrap();
    let cli = |args: &[&str]| outcome(&t.cli_config(&cfg, args));
    for name in ["bob", "alice"] {
        let (c, _, err) = cli(&["user", "add", name, "--password-file", pw.to_str().unwrap()]);
        assert_eq!(c, Some(0), "{err}");
    }
    let (c, out, err) = cli(&["user", "list"]);
    assert_eq!(c, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[1].starts_with("alice ") && lines[1].ends_with(" never"),
        "{out}"
    );
    assert!(lines[1].contains(" UTC "), "times carry their zone: {out}");
    assert!(lines[2].starts_with("bob "), "{out}");
    assert_eq!(lines[3], "2 users");
    assert!(!out.contains("argon2"), "no password hashes: {out}");

    let (c, out, err) = cli(&["user", "delete", "alice"]);
    assert_eq!(c, Some(0), "{err}");
    assert!(out.contains("deleted user alice"), "{out}");
    let (c, _, err) = cli(&["user", "delete", "alice"]);
    assert_eq!(c, Some(1), "deleting who is not there fails");
    assert!(err.contains("no user \"alice\""), "{err}");
    let (_, out, _) = cli(&["user", "list"]);
    assert!(!out.contains("alice") && out.contains("bob"), "{out}");
    assert!(out.ends_with("1 user\n"), "{out}");
}

#[test]
fn config_check_warns_of_a_public_listener_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let cfg = dir.path().join("palisade.toml");
    let write = |listen: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[general]\nstate_dir = \"{d}/state\"\n[store]\nurl = \"sqlite:{d}/p.db\"\n\
                 [server]\nlisten = \"{listen}\"\n"
            ),
        )
        .unwrap();
    };
    let check = || {
        let o = Command::new(BIN)
            .args(["config", "check", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    write("0.0.0.0:9380");
    let (c, err) = check();
    assert_eq!(c, Some(0), "a warning, not an error: {err}");
    assert!(
        err.contains(
            "warning: [server] listen = \"0.0.0.0:9380\" is reachable from other hosts without TLS"
        ),
        "{err}"
    );
    write("[::]:9380");
    assert!(check().1.contains("without TLS"));
    write("127.0.0.1:9380");
    let (c, err) = check();
    assert_eq!(c, Some(0));
    assert!(!err.contains("warning"), "loopback is fine: {err}");

    // Typos: "did you mean", with line and column.
    std::fs::write(&cfg, "[defaults]\nmaxretry = 3\n").unwrap();
    let (c, err) = check();
    assert_eq!(c, Some(1));
    assert!(err.contains(":2:1: unknown field `maxretry`"), "{err}");
    assert!(err.contains("did you mean `max_retry`?"), "{err}");
}

/// Lines whose header cannot be read are counted per reason in `check`'s summary, and a
/// line refused as ambiguous (framing attempt) is counted too.
#[test]
fn check_counts_unreadable_headers_and_ambiguous_lines() {
    let log = "\
garbage \x01 not a log line
May  1 10:00:03 host two words sshd[1]: Failed password for root from 192.0.2.1 port 4 ssh2

May  1 10:00:04 h sshd[7]: Failed publickey for a from 192.0.2.5 port 1 ssh2: ED25519-CERT SHA256:AAAA ID x from 203.0.113.47 port 9 ssh2: ED25519-CERT SHA256:AAAA ID z (serial 7) CA ED25519 SHA256:BBBB
<38>1 2024-05-01T10:00:05Z h sshd 8 - - Failed password for root from 192.0.2.9 port 2 ssh2
";
    let (out, err, ok) = run(
        &[
            "check",
            "-",
            "--filter",
            "sshd",
            "--mode",
            "aggressive",
            "--now",
            "2024-06-01T00:00:00Z",
        ],
        log,
    );
    assert!(ok, "{err}");
    assert!(out.contains("Lines: 5 read, 1 matched"), "{out}");
    assert!(out.contains("Unreadable headers:"), "{out}");
    for r in ["no_timestamp", "no_tag", "empty"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(r) && l.trim_end().ends_with(" 1")),
            "{r}: {out}"
        );
    }
    assert!(
        out.contains("Ambiguous (address not told apart from attacker text, not blamed): 1"),
        "{out}"
    );
    assert!(!out.contains("203.0.113.47"));
}

/// A log file whose last line has no newline (loghub's `OpenSSH_2k.log` ends so): `check`
/// and `replay` read the whole file, that line included, like the same bytes on stdin.
#[test]
fn offline_runs_read_an_unterminated_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..3 {
        text.push_str(&format!(
            "Mar  3 10:00:0{i} h sshd[1]: Failed password for root from 203.0.113.9 port 1 ssh2\n"
        ));
    }
    text.push_str(
        "Mar  3 10:00:09 h sshd[1]: Failed password for root from 203.0.113.9 port 1 ssh2",
    );
    let log = dir.path().join("auth.log");
    std::fs::write(&log, &text).unwrap();
    let log = log.to_str().unwrap();
    let now = "2025-03-20T00:00:00Z";
    for input in [log, "-"] {
        let (out, err, ok) = run(
            &["check", input, "--filter", "sshd", "--json", "--now", now],
            &text,
        );
        assert!(ok, "{err}");
        let lines: Vec<u64> = out
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(lines, [1, 2, 3, 4], "{input}: {out}");
    }
    // Four failures within find_time reach max_retry 4 only with the last line.
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[general]\ntimezone = \"UTC\"\n[defaults]\nmax_retry = 4\nfind_time = \"10m\"\nban_time = \"10m\"\n[[jail]]\nname = \"sshd\"\nfilter = \"sshd\"\nstdin = true\n",
    )
    .unwrap();
    let (out, err, ok) = run(
        &[
            "replay",
            log,
            "--config",
            cfg.to_str().unwrap(),
            "--json",
            "--now",
            now,
        ],
        "",
    );
    assert!(ok, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{out}\n{err}");
    assert_eq!(rows[0]["ip"], "203.0.113.9");
    assert_eq!(rows[0]["start"], "2025-03-03T10:00:09Z");
}

/// `config check` reports every problem of a configuration in one run: several in one
/// section, in several sections, semantic ones, a missing file, and the errors of the filters
/// (a fail2ban filter file at its own file:line, one without a line, a built-in filter's
/// options), sorted by place, with the count last; `run` refuses to start with the same list.
#[test]
fn config_check_reports_every_problem_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broken = d.join("broken.conf");
    std::fs::write(
        &broken,
        "[Definition]\nfailregex = ^auth failure from <HOST>$\nthis line has no delimiter\n",
    )
    .unwrap();
    let bad_regex = d.join("bad-regex.conf");
    std::fs::write(&bad_regex, "[Definition]\nfailregex = ^(unclosed <HOST>$\n").unwrap();
    let log = d.join("auth.log");
    std::fs::write(&log, "").unwrap();
    let cfg = d.join("palisade.toml");
    let (l, b, r) = (log.display(), broken.display(), bad_regex.display());
    let text = format!(
        r#"[general]
state_dir = "{d}/state"
dry_run = "yes"
log_levle = "info"

[store]
url = "sqlite:{d}/p.db"
colour = 1

[escalation]
factor = 500.0

[[jail]]
name = "a"
filter = "sshd"
files = ["{l}"]
max_retry = "three"
find_time = "soon"

[[jail]]
name = "f2b-broken"
filter_file = "{b}"
files = ["{l}"]

[[jail]]
name = "f2b-regex"
filter_file = "{r}"
files = ["{l}"]

[[jail]]
name = "missing"
filter_file = "{d}/nope.conf"
files = ["{l}"]

[[jail]]
name = "web"
filter = "nginx_access"
options = {{ log_format = "$nonsense" }}
files = ["{l}"]
"#,
        d = d.display()
    );
    std::fs::write(&cfg, text).unwrap();
    let c = cfg.display();
    let expected = [
        format!("{c}:3:11: invalid type: string \"yes\", expected a boolean"),
        format!("{c}:4:1: unknown field `log_levle`"),
        format!("{c}:8:1: unknown field `colour`"),
        format!("{c}:11:10: [escalation] factor 500 must be between 1 and 100"),
        format!("{c}:17:13: invalid type: string \"three\", expected u32"),
        format!("{c}:18:13: invalid duration \"soon\""),
        format!("{c}:32:15: jail \"missing\": filter_file {d}/nope.conf does not exist", d = d.display()),
        format!("{c}:37:10: jail \"web\": nginx_access: log_format \"$nonsense\": no client address field"),
        format!("{r}: jail \"f2b-regex\": failregex[0]: "),
        format!("{b}:3:1: jail \"f2b-broken\": cannot parse line \"this line has no delimiter\""),
    ];
    let o = Command::new(BIN)
        .args(["config", "check", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    for e in &expected {
        assert!(
            lines.iter().any(|l| l.starts_with(e.as_str())),
            "{e:?} missing from:\n{err}"
        );
    }
    // The configuration's own problems first, in file order, then the filter files' by path
    // (bad-regex.conf before broken.conf): the order of `expected`.
    let found: Vec<usize> = expected
        .iter()
        .map(|e| {
            lines
                .iter()
                .position(|l| l.starts_with(e.as_str()))
                .unwrap()
        })
        .collect();
    assert!(found.windows(2).all(|w| w[0] < w[1]), "{found:?}\n{err}");
    // One line per problem (a regex error goes on with an indented line), then the count.
    let heads = lines.iter().filter(|l| !l.starts_with(' ')).count();
    assert_eq!(heads, expected.len() + 1, "{err}");
    assert_eq!(
        lines.last(),
        Some(&"10 problems in the configuration"),
        "{err}"
    );

    // `run` reports the same list and starts nothing.
    let o = Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap(), "--once"])
        .output()
        .unwrap();
    let run_err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{run_err}");
    for e in &expected {
        assert!(
            run_err.contains(e.as_str()),
            "{e:?} missing from run's:\n{run_err}"
        );
    }
    assert!(
        run_err.contains("10 problems in the configuration"),
        "{run_err}"
    );
    assert!(!d.join("p.db").exists(), "nothing started");
}
