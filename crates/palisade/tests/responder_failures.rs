//! Responder failures are not silent (issue 19, finding 5): a `command` responder whose
//! program fails its first calls makes `decisions add` fail with the error, is retried until
//! the ban is applied, shows in `status`; the periodic reconcile puts back a ban the
//! enforcement point lost.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;

#[macro_use]
mod common;
use common::*;

test_dir!(
    /// The folder of one test ([`TestDir`]).
    Env
);

impl Env {
    /// The test's stand-in firewall: fails (exit 1, "firewall busy") while `fails` holds a
    /// number above 0, counting it down; then marks `banned-<ip>`.
    fn script(&self, fails: u32) -> PathBuf {
        let s = self.p("ban.sh");
        std::fs::write(self.p("fails"), fails.to_string()).unwrap();
        std::fs::write(
            &s,
            "#!/bin/sh\nd=\"$1\"\nn=$(cat \"$d/fails\")\n\
             if [ \"$n\" -gt 0 ]; then echo $((n-1)) > \"$d/fails\"; echo 'firewall busy' >&2; exit 1; fi\n\
             touch \"$d/banned-$2\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
        s
    }

    fn config(&self, script: &Path) -> PathBuf {
        let d = self.d();
        let s = script.display();
        let text = format!(
            r#"{base}
[defaults]
responders = ["fw"]

[recidive]
enabled = false

[[responder]]
name = "fw"
type = "command"
ban = ["{s}", "{d}", "{{ip}}"]
{jail}"#,
            base = self.base_config("timezone = \"UTC\"\nreconcile_interval = \"2s\""),
            jail = self.sshd_jail(),
        );
        self.write_config(&text)
    }

    fn start(&self, cfg: &Path) -> Child {
        self.0.start(cfg, "daemon.err")
    }
}

#[test]
fn failed_apply_is_reported_retried_counted_and_reconciled() {
    let env = Env(TestDir::new());
    std::fs::write(env.p("auth.log"), "").unwrap();
    let script = env.script(2);
    let cfg = env.config(&script);
    let child = env.start(&cfg);

    // The first apply fails: the CLI says so and exits non-zero, it never prints "banned".
    let o = env.cli_config(
        &cfg,
        &["decisions", "add", "203.0.113.9", "--duration", "1h"],
    );
    let (out, err) = text(&o);
    assert!(!o.status.success(), "stdout {out} stderr {err}");
    assert!(!out.contains("banned"), "{out}");
    assert!(
        err.contains("not applied") && err.contains("firewall busy"),
        "{err}"
    );

    // Retried with backoff (1 s, then 2 s) until the program succeeds, or put back by the
    // periodic reconcile, whichever comes first.
    let banned = env.p("banned-203.0.113.9");
    wait_for("ban applied on retry", 30.0, || banned.exists());

    let o = env.cli_config(&cfg, &["status", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &v["counters"];
    // Per responder: its health entry in the status report.
    let fw = v["responders"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "fw"))
        .unwrap_or_else(|| panic!("no responder fw in {v}"));
    assert_eq!(fw["failures"], 2, "{v}");
    assert!(
        fw["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("apply: ") && e.contains("firewall busy")),
        "{v}"
    );
    assert_eq!(fw["ok"], true, "applied on retry: {v}");
    // (The periodic reconcile may have applied it before the second retry.)
    assert!(c["responder_retries"].as_u64().unwrap() >= 1, "{c}");
    assert_eq!(c["responder_pending"], 0, "{c}");

    // A later ban whose apply works is reported as banned.
    let o = env.cli_config(
        &cfg,
        &["decisions", "add", "203.0.113.10", "--duration", "1h"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(env.p("banned-203.0.113.10").exists());

    // The enforcement point loses a ban: the periodic reconcile (2 s here) applies it again.
    std::fs::remove_file(&banned).unwrap();
    wait_for("ban restored by the periodic reconcile", 30.0, || {
        banned.exists()
    });

    env.stop(child, "daemon.err");
}

#[test]
fn decisions_add_refuses_zero_and_overlong_durations() {
    let env = Env(TestDir::new());
    let script = env.script(0);
    let cfg = env.config(&script);
    for (dur, want) in [("0", "at least 1 second"), ("11y", "10-year maximum")] {
        let o = env.cli_config(
            &cfg,
            &["decisions", "add", "203.0.113.9", "--duration", dur],
        );
        let (_, err) = text(&o);
        assert!(!o.status.success() && err.contains(want), "{dur}: {err}");
    }
    // Nothing was recorded.
    let mut store =
        palisade_store::open(&format!("sqlite:{}", env.p("palisade.db").display())).unwrap();
    let all = store
        .decisions(&palisade_store::DecisionQuery::default())
        .unwrap();
    assert!(all.is_empty(), "{all:?}");
}
