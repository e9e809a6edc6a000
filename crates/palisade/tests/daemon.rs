//! End-to-end tests of the `palisade` binary: the daemon follows a real file, bans through a
//! command responder, survives reload and restart, obeys the allowlist, and the CLI talks to
//! it over the control socket.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

#[macro_use]
mod common;
use common::*;

test_dir!(
    /// The folder of one test ([`TestDir`]) with the daemon set-up of these tests.
    Env
);

impl Env {
    fn new() -> Self {
        Env(TestDir::new())
    }
    /// `mark` bans of the `sshd` jail after `max_retry` failures; `extra` goes last (keys of the
    /// jail, or more sections).
    fn config(&self, max_retry: u32, extra: &str) -> PathBuf {
        let text = format!(
            r#"{base}
[defaults]
max_retry = {max_retry}
find_time = "10m"
ban_time = "1h"
responders = ["mark"]

[allowlist]
addresses = ["192.0.2.0/24"]

[recidive]
enabled = false
{mark}{jail}{extra}
"#,
            base = self.base_config("timezone = \"UTC\"\nlog_level = \"debug\""),
            mark = self.mark_responder(),
            jail = self.sshd_jail(),
        );
        self.write_config(&text)
    }
    fn start(&self, cfg: &Path) -> Child {
        let child = self.0.start(cfg, "daemon.err");
        // Give the tailer time to open the file and seek to its end.
        std::thread::sleep(Duration::from_millis(400));
        child
    }
    fn append(&self, lines: &[String]) {
        self.0.append("auth.log", lines);
    }
    fn stop(&self, child: Child) {
        self.0.stop(child, "daemon.err");
    }
    fn log(&self) -> String {
        self.read("daemon.err")
    }
    /// `palisade status --json` (Null when it fails).
    fn status(&self, cfg: &Path) -> serde_json::Value {
        let o = self.cli_config(cfg, &["status", "--json"]);
        serde_json::from_slice(&o.stdout).unwrap_or_default()
    }
    /// Waits until the daemon's counter `counters.<name>` reaches `n` (instead of sleeping
    /// after a SIGHUP).
    fn wait_counter(&self, cfg: &Path, name: &str, n: u64) {
        wait_for(&format!("counters.{name} = {n}"), 20.0, || {
            self.status(cfg)["counters"][name].as_u64() == Some(n)
        });
    }
}

#[test]
fn daemon_bans_unbans_reloads_restarts() {
    let env = Env::new();
    std::fs::write(env.p("auth.log"), "old line before start\n").unwrap();
    let cfg = env.config(3, "");
    let child = env.start(&cfg);

    // Hostile user names: an address inside a user name is never the offender, and shell
    // syntax never runs.
    let pwned = env.p("pwned");
    let hostile = [
        sshd_failed("203.0.113.9", "x from 198.51.100.7 port 1"),
        sshd_failed("203.0.113.9", &format!("$(touch {})", pwned.display())),
        sshd_failed("203.0.113.9", &format!("x;touch {}", pwned.display())),
    ];
    // An allowlisted address is never banned, however often it fails.
    let friends: Vec<String> = (0..10).map(|_| sshd_failed("192.0.2.55", "root")).collect();
    env.append(&friends);
    env.append(&hostile);
    let banned = env.p("banned-203.0.113.9");
    wait_for("ban of 203.0.113.9", 10.0, || banned.exists());
    assert!(
        !env.p("banned-198.51.100.7").exists(),
        "injected address was banned"
    );
    assert!(
        !env.p("banned-192.0.2.55").exists(),
        "allowlisted address was banned"
    );
    assert!(!pwned.exists(), "a user name ran a command");

    // status and decisions list see it.
    let st = env.cli_config(&cfg, &["status", "--json"]);
    assert!(st.status.success(), "{st:?}");
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["active_bans"], 1);
    assert_eq!(v["engine"]["allowlisted"], 10);
    wait_for("stored decision", 10.0, || {
        let o = env.cli_config(&cfg, &["decisions", "list", "--json"]);
        String::from_utf8_lossy(&o.stdout).contains("203.0.113.9/32")
    });

    // Manual unban through the socket revokes at the responder.
    let o = env.cli_config(&cfg, &["decisions", "delete", "203.0.113.9"]);
    assert!(o.status.success(), "{o:?}");
    wait_for("unban", 5.0, || !banned.exists());
    let o = env.cli_config(&cfg, &["decisions", "list", "--all", "--json"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"revoked\""),
        "{o:?}"
    );

    // Manual ban of a network, expiring by itself.
    let o = env.cli_config(
        &cfg,
        &["decisions", "add", "198.51.100.0/24", "--duration", "2s"],
    );
    assert!(o.status.success(), "{o:?}");
    let net = env.p("banned-198.51.100.0");
    wait_for("manual ban", 5.0, || net.exists());
    wait_for("expiry of the manual ban", 10.0, || !net.exists());
    // The allowlist refuses a ban that would cover a friend.
    let o = env.cli_config(&cfg, &["decisions", "add", "192.0.2.0/25"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("allowlist"),
        "{o:?}"
    );

    // A permanent ban, then reload with a stricter threshold: state survives.
    let o = env.cli_config(&cfg, &["decisions", "add", "203.0.113.77"]);
    assert!(o.status.success(), "{o:?}");
    let perm = env.p("banned-203.0.113.77");
    wait_for("permanent ban", 5.0, || perm.exists());
    env.append(&[sshd_failed("203.0.113.20", "a")]);
    std::thread::sleep(Duration::from_millis(300));
    env.config(2, "");
    signal(child.id(), "HUP");
    env.wait_counter(&cfg, "reloads", 1);
    // One more failure reaches the new threshold of 2, counted with the one before reload.
    env.append(&[sshd_failed("203.0.113.20", "b")]);
    wait_for("ban after reload", 10.0, || {
        env.p("banned-203.0.113.20").exists()
    });
    // A bad configuration on SIGHUP is refused; the daemon keeps running.
    let good = env.p("good.toml");
    std::fs::copy(&cfg, &good).unwrap();
    std::fs::write(&cfg, "[general]\nbogus = 1\n").unwrap();
    signal(child.id(), "HUP");
    env.wait_counter(&good, "reload_failures", 1);
    let st = env.cli(&[
        "status",
        "--json",
        "--config",
        env.config(2, "").to_str().unwrap(),
    ]);
    assert!(
        st.status.success(),
        "daemon died after a bad reload: {}",
        env.log()
    );
    env.stop(child);
    assert!(env.log().contains("reload refused"), "{}", env.log());

    // Restart: bans in force are restored at the responder (reconcile), lines written while
    // stopped are read (saved offsets), nothing is read twice.
    std::fs::remove_file(&perm).unwrap();
    env.append(&[
        sshd_failed("203.0.113.30", "c"),
        sshd_failed("203.0.113.30", "d"),
    ]);
    let child = env.start(&cfg);
    wait_for("restored permanent ban", 10.0, || perm.exists());
    wait_for("ban from lines written while stopped", 10.0, || {
        env.p("banned-203.0.113.30").exists()
    });
    let st = env.cli_config(&cfg, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(
        v["counters"]["lines"], 2,
        "exactly the two new lines were read: {v}"
    );
    env.stop(child);
}

#[test]
fn bad_config_starts_nothing() {
    let env = Env::new();
    let cfg = env.config(3, "colour = \"red\"");
    let o = env.cli_config(&cfg, &["run"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("palisade.toml:") && err.contains("unknown field `colour`"),
        "{err}"
    );
    assert!(!env.p("palisade.sock").exists());
    assert!(!env.p("palisade.db").exists());
    let o = env.cli(&["config", "check", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    // A store that cannot be opened: clear error, no socket left behind.
    let cfg = env.config(3, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("sqlite:", "sqlite:/nonexistent-dir/");
    std::fs::write(&cfg, text).unwrap();
    let o = env.cli_config(&cfg, &["run"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("store"),
        "{o:?}"
    );
    assert!(!env.p("palisade.sock").exists());
    // The daemon reads [store] password_file like every command does: a missing one is an
    // error naming it, before anything starts.
    let cfg = env.config(3, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[store]\n",
        "[store]\npassword_file = \"/nonexistent/db-password\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let o = env.cli_config(&cfg, &["run"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("[store] password_file /nonexistent/db-password"),
        "{err}"
    );
    assert!(!env.p("palisade.sock").exists());
}

#[test]
fn dry_run_records_but_never_enforces() {
    let env = Env::new();
    std::fs::write(env.p("auth.log"), "").unwrap();
    let cfg = env.config(2, "dry_run = true");
    let child = env.start(&cfg);
    env.append(&[
        sshd_failed("203.0.113.50", "a"),
        sshd_failed("203.0.113.50", "b"),
    ]);
    wait_for("simulated decision", 10.0, || {
        let o = env.cli_config(&cfg, &["decisions", "list", "--json"]);
        String::from_utf8_lossy(&o.stdout).contains("\"simulated\":true")
    });
    assert!(!env.p("banned-203.0.113.50").exists());
    env.stop(child);
}

/// A plain HTTP/1.1 request to the daemon's API (no client library needed for a test).
fn http(port: u16, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (code, body.to_owned())
}

#[test]
fn run_serves_the_api_and_enforces_its_allowlist() {
    let env = Env::new();
    std::fs::write(env.p("auth.log"), "").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n");
    // `extra` lands inside the jail table; [server] goes first instead.
    let cfg = env.config(3, "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{server}{text}")).unwrap();

    let o = env.cli_config(&cfg, &["token", "add", "--scope", "admin"]);
    assert!(o.status.success(), "{o:?}");
    let token = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert!(token.starts_with("pal_"), "{token}");

    let child = env.start(&cfg);
    wait_for("the API port", 20.0, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let (code, body) = http(port, "GET", "/api/v1/jails", &token, "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("sshd"), "{body}");
    let (code, _) = http(port, "GET", "/api/v1/jails", "pal_wrong", "");
    assert_eq!(code, 401);

    // 198.51.100.4 is banned; a dashboard allowlist entry lifts the ban and keeps it from
    // being banned again, also across a reload.
    let lines: Vec<String> = (0..3)
        .map(|_| sshd_failed("198.51.100.4", "root"))
        .collect();
    env.append(&lines);
    let banned = env.p("banned-198.51.100.4");
    wait_for("ban of 198.51.100.4", 10.0, || banned.exists());
    let (code, body) = http(
        port,
        "POST",
        "/api/v1/allowlist",
        &token,
        r#"{"net":"198.51.100.0/28","comment":"office"}"#,
    );
    assert_eq!(code, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["daemon_updated"], true, "{body}");
    wait_for("ban lifted by the allowlist entry", 5.0, || {
        !banned.exists()
    });
    env.append(&lines);
    signal(child.id(), "HUP"); // reload keeps the dashboard's entries
    env.wait_counter(&cfg, "reloads", 1);
    env.append(&lines);
    // An address outside the entry is still banned (the daemon did read those lines).
    env.append(
        &(0..3)
            .map(|_| sshd_failed("198.51.100.40", "root"))
            .collect::<Vec<_>>(),
    );
    wait_for("ban of 198.51.100.40", 10.0, || {
        env.p("banned-198.51.100.40").exists()
    });
    assert!(!banned.exists(), "an allowlisted address was banned again");

    // Removing the entry: the address can be banned again.
    let id = v["items"][0]["id"].as_i64().unwrap();
    let (code, body) = http(
        port,
        "DELETE",
        &format!("/api/v1/allowlist/{id}"),
        &token,
        "",
    );
    assert_eq!(code, 200, "{body}");
    env.append(&lines);
    wait_for("ban after the entry was removed", 10.0, || banned.exists());
    env.stop(child);
}

#[test]
fn status_human_and_json_reload_command_missing_file() {
    let env = Env::new();
    // No daemon: status and reload say so and exit 3.
    let cfg = env.config(3, "");
    for cmd in ["status", "reload"] {
        let o = env.cli_config(&cfg, &[cmd]);
        assert_eq!(o.status.code(), Some(3), "{cmd}: {o:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("not running"),
            "{o:?}"
        );
    }

    std::fs::write(env.p("auth.log"), "").unwrap();
    let d = env.dir.path().display().to_string();
    let web =
        format!("\n[[jail]]\nname = \"web\"\nfilter = \"sshd\"\nfiles = [\"{d}/missing.log\"]\n");
    let cfg = env.config(3, &web);
    let child = env.start(&cfg);
    let lines: Vec<String> = (0..3)
        .map(|_| sshd_failed("203.0.113.44", "root"))
        .collect();
    env.append(&lines);
    wait_for("ban of 203.0.113.44", 10.0, || {
        env.p("banned-203.0.113.44").exists()
    });

    // JSON: the typed status report.
    let auth = env.p("auth.log").display().to_string();
    let missing = env.p("missing.log").display().to_string();
    wait_for("the ban and the source in status", 10.0, || {
        let v = env.status(&cfg);
        v["last_ban"]["target"] == "203.0.113.44/32"
            && v["sources"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|s| s["path"] == auth.as_str() && s["lines"] == 3)
            })
    });
    let v = env.status(&cfg);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    assert_eq!(v["active_bans"], 1, "{v}");
    assert_eq!(v["counters"]["lines"], 3, "{v}");
    assert_eq!(v["counters"]["reloads"], 0, "{v}");
    assert_eq!(v["jail_names"], serde_json::json!(["sshd", "web"]), "{v}");
    assert_eq!(v["store"]["kind"], "sqlite", "{v}");
    assert_eq!(v["store"]["ok"], true, "{v}");
    assert_eq!(v["responders"][0]["name"], "mark", "{v}");
    assert_eq!(v["responders"][0]["ok"], true, "{v}");
    let src = |path: &str| {
        v["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("no source {path} in {v}"))
    };
    assert_eq!(src(&auth)["state"], "ok", "{v}");
    assert!(src(&auth)["last_line"].is_string(), "{v}");
    assert_eq!(src(&missing)["state"], "missing", "{v}");
    assert_eq!(src(&missing)["lines"], 0, "{v}");
    // The missing file was a warning in the log, which has no colour codes (not a terminal).
    let log = env.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("log file missing") && l.contains(&missing)),
        "{log}"
    );
    assert!(!log.contains('\x1b'), "ANSI escapes in a log file:\n{log}");

    // Human form.
    let o = env.cli_config(&cfg, &["status"]);
    assert!(o.status.success(), "{o:?}");
    let (out, _) = text(&o);
    for want in [
        &format!("palisade {} is running", env!("CARGO_PKG_VERSION")) as &str,
        &format!("config        {}", cfg.display()),
        "bans in force 1",
        "lines/s",
        "last ban      203.0.113.44/32 in sshd at ",
        " UTC (",
        "sshd                 failures 3",
        &format!("ok         {auth}  3 lines, last at "),
        &format!("missing    {missing}  0 lines (waiting for the file)"),
        "store           sqlite ok",
        "mark                 ok",
    ] {
        assert!(out.contains(want), "status lacks {want:?}:\n{out}");
    }
    assert!(!out.trim_start().starts_with('{'), "{out}");

    // `palisade reload`: applied, counted; a bad file is refused with its error.
    let o = env.cli_config(&cfg, &["reload"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        text(&o)
            .0
            .contains("configuration reloaded (1 reload(s) since start)"),
        "{o:?}"
    );
    assert_eq!(env.status(&cfg)["counters"]["reloads"], 1);
    let good = env.p("good.toml");
    std::fs::copy(&cfg, &good).unwrap();
    std::fs::write(&cfg, "[general]\nbogus = 1\n").unwrap();
    let o = env.cli(&["reload", "--config", good.to_str().unwrap()]);
    assert!(!o.status.success(), "{o:?}");
    let (_, err) = text(&o);
    assert!(err.contains("reload refused"), "{err}");
    assert!(
        err.contains("bogus"),
        "the validation error is shown: {err}"
    );
    let v = env.status(&good);
    assert_eq!(v["counters"]["reloads"], 1, "{v}");
    assert_eq!(v["counters"]["reload_failures"], 1, "{v}");
    std::fs::copy(&good, &cfg).unwrap();
    env.stop(child);
}

#[test]
fn old_history_is_recorded_not_banned_and_lifted() {
    let env = Env::new();
    let cfg = env.config(2, "");
    // Two failures from 2020 (a ban of 1 h, over long ago), two from today.
    let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC);
    let stamp = today.strftime("%b %e %H:%M:%S").to_string();
    let log = format!(
        "2020-03-03T10:00:01+00:00 h sshd[1]: Failed password for root from 203.0.113.50 port 1 ssh2\n\
         2020-03-03T10:00:02+00:00 h sshd[1]: Failed password for root from 203.0.113.50 port 1 ssh2\n\
         {stamp} h sshd[2]: Failed password for root from 203.0.113.60 port 1 ssh2\n\
         {stamp} h sshd[2]: Failed password for root from 203.0.113.60 port 1 ssh2\n"
    );
    std::fs::write(env.p("auth.log"), log).unwrap();
    let o = env.cli_config(&cfg, &["run", "--once", "--from-start"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // The recent offender is banned (and stays banned: --once leaves bans in force).
    assert!(env.p("banned-203.0.113.60").exists(), "{err}");
    // The old one: no ban applied, no unban either; still in the history.
    let in_force = recorded_not_enforced(&env, &cfg, "203.0.113.50", &err);
    assert!(in_force.contains("203.0.113.60"), "{in_force}");
}

/// `ip` was banned only as history: no mark, no "ban"/"unban" line in the daemon's log `err`,
/// a decision in `decisions list --all` but not among those in force (returned).
fn recorded_not_enforced(env: &Env, cfg: &Path, ip: &str, err: &str) -> String {
    assert!(!env.p(&format!("banned-{ip}")).exists(), "enforced: {err}");
    let noisy: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(ip) && (l.contains(" ban") || l.contains("unban")))
        .filter(|l| !l.contains("recorded, not enforced"))
        .collect();
    assert!(noisy.is_empty(), "banned and lifted at once: {noisy:?}");
    let list = env.cli_config(cfg, &["decisions", "list", "--all", "--json"]);
    let out = String::from_utf8_lossy(&list.stdout);
    assert!(out.contains(&format!("{ip}/32")), "recorded: {out}");
    let now_list = env.cli_config(cfg, &["decisions", "list", "--json"]);
    let now_out = String::from_utf8_lossy(&now_list.stdout).into_owned();
    assert!(!now_out.contains(ip), "not in force: {now_out}");
    now_out
}

/// Lines whose header cannot be read, and lines whose offender cannot be told apart from
/// attacker text, are counted in `status` (issue 14: never silently dropped), and neither
/// bans anyone.
#[test]
fn unreadable_and_ambiguous_lines_are_counted_in_status() {
    let env = Env::new();
    std::fs::write(env.p("auth.log"), "").unwrap();
    let cfg = env.config(1, "");
    let child = env.start(&cfg);
    let now = sshd_failed("192.0.2.1", "x");
    let stamp = &now[..15];
    env.append(&[
        "garbage \u{1} not a log line".to_string(),
        format!(
            "{stamp} h sshd[7]: Failed publickey for a from 192.0.2.5 port 1 ssh2: \
             ED25519-CERT SHA256:AAAA ID x from 203.0.113.47 port 9 ssh2: ED25519-CERT \
             SHA256:AAAA ID z (serial 7) CA ED25519 SHA256:BBBB"
        ),
    ]);
    wait_for("both counted in status", 10.0, || {
        let v = env.status(&cfg);
        v["counters"]["header_rejects"] == 1 && v["counters"]["ambiguous_lines"] == 1
    });
    let o = env.cli_config(&cfg, &["status"]);
    let (out, _) = text(&o);
    assert!(
        out.contains("skipped lines 1 with an unreadable header, 1 ambiguous"),
        "{out}"
    );
    assert!(!env.p("banned-203.0.113.47").exists());
    assert!(!env.p("banned-192.0.2.5").exists());
    env.stop(child);
}

/// After a restart, the warm-up replays the failures stored within the find time; a ban they
/// reach that would already be over (a 60 s ban from failures 5 minutes old) goes the same way
/// as one from old log lines: recorded as history, never enforced nor lifted.
#[test]
fn warm_up_ban_already_over_is_recorded_not_enforced() {
    let env = Env::new();
    std::fs::write(env.p("auth.log"), "").unwrap();
    let cfg = env.config(2, "ban_time = \"60s\"");
    let then = palisade_core::Timestamp::from_secs(jiff::Timestamp::now().as_second() - 300);
    let ev = |s: i64| palisade_core::Event {
        time: then.plus(Duration::from_secs(s as u64)),
        ip: "203.0.113.70".parse().unwrap(),
        filter: "sshd".into(),
        rule: "failed_password".into(),
        failure: true,
        user: Some("root".into()),
        fields: Vec::new(),
        evidence: "Failed password for root from 203.0.113.70 port 1 ssh2".into(),
    };
    let mut store =
        palisade_store::open(&format!("sqlite:{}", env.p("palisade.db").display())).unwrap();
    // Stored before a crash took the daemon down before its decision.
    store.record_events("sshd", &[ev(0), ev(1)]).unwrap();
    drop(store);
    let o = env.cli_config(&cfg, &["run", "--once"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("failure counts restored from stored events"),
        "{err}"
    );
    recorded_not_enforced(&env, &cfg, "203.0.113.70", &err);
}

/// `[store] retention`: the daemon's maintenance thread removes events older than the
/// retention at start (whole UTC days) and keeps the address's totals.
#[test]
fn daemon_applies_store_retention_at_start() {
    use palisade_core::{Clock, Event, SystemClock, Timestamp};
    let env = Env::new();
    let cfg = env.config(5, "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replace("[defaults]", "retention = \"2d\"\n\n[defaults]");
    std::fs::write(&cfg, text).unwrap();
    let url = format!("sqlite:{}", env.p("palisade.db").display());
    let now = SystemClock.now();
    let day = 86_400 * Timestamp::MICROS;
    let ev = |days: i64| Event {
        time: Timestamp(now.0 - days * day),
        ip: "203.0.113.77".parse().unwrap(),
        filter: std::sync::Arc::from("sshd"),
        rule: std::sync::Arc::from("failed_password"),
        failure: true,
        user: None,
        fields: Vec::new(),
        evidence: Event::evidence_of(b"Failed password"),
    };
    let count = || {
        palisade_store::open(&url)
            .unwrap()
            .events(&palisade_store::EventQuery::default())
            .unwrap()
            .len()
    };
    palisade_store::open(&url)
        .unwrap()
        .record_events("sshd", &[ev(30), ev(5), ev(0)])
        .unwrap();
    assert_eq!(count(), 3);
    let child = env.start(&cfg);
    wait_for("old events removed", 30.0, || count() == 1);
    env.stop(child);
    let h = palisade_store::open(&url)
        .unwrap()
        .ip_history("203.0.113.77".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!((h.events, h.failures), (3, 3));
    assert!(env.log().contains("store maintenance"), "{}", env.log());
}
