//! The `command` responder: runs an argv template per decision. Never a shell.
//!
//! Placeholders, substituted inside argv elements only (never re-split, never interpreted):
//! `{ip}` (the address, or the network address of a CIDR target), `{cidr}` (`1.2.3.4/32`),
//! `{jail}`, `{duration}` (ban length in whole seconds, `0` for permanent), `{family}`
//! (`inet`/`inet6`). Values are rendered from the parsed [`IpNet`], so a log line can never
//! smuggle text into a command.

use crate::{RespondError, Responder};
use ipnet::IpNet;
use palisade_core::{Decision, Timestamp};
use std::time::Duration;

/// Names accepted inside `{…}` in a template.
pub const PLACEHOLDERS: &[&str] = &["ip", "cidr", "jail", "duration", "family"];

/// A validated argv template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandTemplate {
    argv: Vec<String>,
}

impl CommandTemplate {
    /// Validates a template: non-empty, absolute program path, known placeholders only,
    /// balanced braces, no placeholder in the program position.
    pub fn new(argv: Vec<String>) -> Result<Self, String> {
        let Some(prog) = argv.first() else {
            return Err("command template is empty".into());
        };
        if !prog.starts_with('/') {
            return Err(format!(
                "program {prog:?} must be an absolute path (no PATH lookup, no shell)"
            ));
        }
        if prog.contains('{') {
            return Err("the program (first element) cannot contain a placeholder".into());
        }
        for a in &argv {
            check_placeholders(a)?;
        }
        Ok(CommandTemplate { argv })
    }

    /// The template as given.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// Renders the template for one decision.
    pub fn render(&self, d: &Decision, now: Timestamp) -> Vec<String> {
        let secs = d
            .expires
            .map(|e| e.since(now.max(d.created)).as_secs().max(1))
            .unwrap_or(0);
        self.argv
            .iter()
            .map(|a| {
                let mut out = String::with_capacity(a.len() + 16);
                let mut rest = a.as_str();
                while let Some(i) = rest.find('{') {
                    out.push_str(&rest[..i]);
                    let end = rest[i..].find('}').map(|j| i + j).unwrap_or(rest.len() - 1);
                    let name = &rest[i + 1..end];
                    match name {
                        "ip" => out.push_str(&d.target.network().to_string()),
                        "cidr" => out.push_str(&d.target.to_string()),
                        "jail" => out.push_str(&d.jail),
                        "duration" => out.push_str(&secs.to_string()),
                        "family" => out.push_str(match d.target {
                            IpNet::V4(_) => "inet",
                            IpNet::V6(_) => "inet6",
                        }),
                        _ => out.push_str(&rest[i..=end]),
                    }
                    rest = &rest[end + 1..];
                }
                out.push_str(rest);
                out
            })
            .collect()
    }
}

fn check_placeholders(a: &str) -> Result<(), String> {
    palisade_core::text::check_placeholders(a, PLACEHOLDERS)
}

/// Runs `ban` for each applied decision and `unban` for each revoked one.
#[derive(Debug)]
pub struct CommandResponder {
    name: String,
    ban: CommandTemplate,
    unban: Option<CommandTemplate>,
    timeout: Duration,
}

impl CommandResponder {
    /// Creates the responder; `unban` may be absent when bans expire elsewhere.
    pub fn new(
        name: impl Into<String>,
        ban: CommandTemplate,
        unban: Option<CommandTemplate>,
        timeout: Duration,
    ) -> Self {
        CommandResponder {
            name: name.into(),
            ban,
            unban,
            timeout,
        }
    }

    fn run(&self, argv: &[String]) -> Result<(), RespondError> {
        run_argv(argv, self.timeout)
    }
}

/// Runs one argv with a timeout; stdin closed, output captured and discarded (stderr kept for
/// the error message). The environment is reduced to `PATH` and `LANG=C`.
pub fn run_argv(argv: &[String], timeout: Duration) -> Result<(), RespondError> {
    crate::firewall_util::run_program(argv, None, timeout).map(|_| ())
}

impl Responder for CommandResponder {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(&mut self, batch: &[Decision], now: Timestamp) -> Result<(), RespondError> {
        let mut first_err = None;
        for d in batch {
            if let Err(e) = self.run(&self.ban.render(d, now)) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn revoke(&mut self, batch: &[Decision]) -> Result<(), RespondError> {
        let Some(unban) = &self.unban else {
            return Ok(());
        };
        let mut first_err = None;
        for d in batch {
            if let Err(e) = self.run(&unban.render(d, d.created)) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// A command target has no readable state: reconcile re-applies every active decision
    /// (templates are expected to be idempotent, e.g. `ipset add -exist`).
    fn reconcile(&mut self, active: &[Decision], now: Timestamp) -> Result<(), RespondError> {
        self.apply(active, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::Origin;

    fn dec(target: &str) -> Decision {
        Decision {
            id: 1,
            target: target.parse().unwrap(),
            jail: "sshd".into(),
            origin: Origin::Jail,
            reason: "r".into(),
            created: Timestamp::from_secs(1000),
            expires: Some(Timestamp::from_secs(1600)),
            simulated: false,
            level: 0,
        }
    }

    fn t(v: &[&str]) -> Result<CommandTemplate, String> {
        CommandTemplate::new(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn validation() {
        assert!(t(&[]).is_err());
        assert!(t(&["echo", "{ip}"]).unwrap_err().contains("absolute"));
        assert!(t(&["/bin/echo", "{host}"])
            .unwrap_err()
            .contains("unknown placeholder"));
        assert!(t(&["/bin/echo", "{ip"]).unwrap_err().contains("unclosed"));
        assert!(t(&["/bin/echo", "ip}"]).unwrap_err().contains("unbalanced"));
        assert!(t(&["/bin/echo", "{ip}}"])
            .unwrap_err()
            .contains("unbalanced"));
        assert!(t(&["/bin/echo", "{{ip}"]).is_err());
        assert!(t(&["/bin/{jail}"]).is_err());
        assert!(t(&["/bin/echo", "x{ip}y", "{cidr}", "{duration}s"]).is_ok());
    }

    #[test]
    fn render() {
        let tpl = t(&[
            "/bin/echo",
            "--src={ip}",
            "{cidr}",
            "{jail}",
            "{duration}",
            "{family}",
        ])
        .unwrap();
        let v = tpl.render(&dec("1.2.3.4/32"), Timestamp::from_secs(1100));
        assert_eq!(
            v,
            [
                "/bin/echo",
                "--src=1.2.3.4",
                "1.2.3.4/32",
                "sshd",
                "500",
                "inet"
            ]
        );
        let v = tpl.render(&dec("2001:db8::/64"), Timestamp::from_secs(1000));
        assert_eq!(v[1], "--src=2001:db8::");
        assert_eq!(v[5], "inet6");
        let mut p = dec("1.2.3.4/32");
        p.expires = None;
        assert_eq!(tpl.render(&p, Timestamp::from_secs(1000))[4], "0");
    }

    #[test]
    fn runs_argv_without_shell() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let out = dir.path().join("out");
        // A jail name full of shell syntax is passed as one literal argument.
        let tpl = t(&[
            "/usr/bin/touch",
            &format!("{}/{{jail}}", dir.path().display()),
        ])
        .unwrap();
        let mut d = dec("1.2.3.4/32");
        d.jail = format!("x; touch {}", marker.display());
        let mut r = CommandResponder::new("c", tpl, None, Duration::from_secs(5));
        // The file name contains '/', so touch fails, and nothing else ran.
        let _ = r.apply(&[d], Timestamp::from_secs(1000));
        assert!(!marker.exists());
        let tpl = t(&["/usr/bin/touch", &format!("{}", out.display())]).unwrap();
        let mut r = CommandResponder::new("c", tpl.clone(), Some(tpl), Duration::from_secs(5));
        r.apply(&[dec("1.2.3.4/32")], Timestamp::from_secs(1000))
            .unwrap();
        assert!(out.exists());
        std::fs::remove_file(&out).unwrap();
        r.revoke(&[dec("1.2.3.4/32")]).unwrap();
        assert!(out.exists());
    }

    #[test]
    fn failures_and_timeouts_are_errors() {
        let mut r = CommandResponder::new(
            "c",
            t(&["/bin/false"]).unwrap(),
            None,
            Duration::from_secs(5),
        );
        let e = r
            .apply(&[dec("1.2.3.4/32")], Timestamp::from_secs(1000))
            .unwrap_err();
        assert!(e.to_string().contains("/bin/false"));
        let mut r = CommandResponder::new(
            "c",
            t(&["/bin/sleep", "5"]).unwrap(),
            None,
            Duration::from_millis(100),
        );
        let e = r
            .apply(&[dec("1.2.3.4/32")], Timestamp::from_secs(1000))
            .unwrap_err();
        assert!(e.to_string().contains("timeout"));
        let mut r = CommandResponder::new(
            "c",
            t(&["/nonexistent/prog"]).unwrap(),
            None,
            Duration::from_secs(1),
        );
        assert!(matches!(
            r.apply(&[dec("1.2.3.4/32")], Timestamp::from_secs(1000)),
            Err(RespondError::Spawn { .. })
        ));
    }
}
