//! The `ufw` responder: one `deny` rule per ban, prepended (so it precedes `allow` rules) and
//! tagged with a comment (`palisade` by default) so Palisade only ever touches its own rules.
//!
//! ufw has no timeouts: [`Responder::expires_natively`] is `false` and the daemon revokes bans
//! when they end. ufw runs one Python process per rule change (~0.2–0.5 s each), so this
//! responder suits hosts with few bans; prefer `nftables` for anything busy.
//!
//! Argv per ban (per protocol when ports/protocols restrict it):
//! `ufw prepend deny from 192.0.2.0/24 [to any [port 22,80] proto tcp] comment palisade`,
//! revoked with `ufw delete deny from … comment palisade` (the comment is part of the match,
//! so an operator's identical rule without it is left alone). Both are idempotent in ufw
//! itself ("Skipping inserting existing rule", "Could not delete non-existent rule").
//! Reconcile reads `ufw show added` and adds/deletes only the difference.

use crate::firewall_util::{match_lists, remaining_secs, run_program, validate_netns, wrap_netns};
use crate::nft::Protocol;
use crate::{RespondError, Responder};
use ipnet::IpNet;
use palisade_core::{Decision, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// Configuration of a [`UfwResponder`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UfwConfig {
    /// Absolute path of `ufw`.
    pub program: String,
    /// Deny only these destination ports (empty: all traffic).
    pub ports: Vec<u16>,
    /// Deny only these protocols (empty: all, or TCP and UDP when `ports` is set).
    pub protocols: Vec<Protocol>,
    /// Comment marking Palisade's rules (letters, digits, `_`, `-`).
    pub comment: String,
    /// Run `ufw` inside this network namespace (`ip netns exec NAME ufw …`). ufw keeps its
    /// rules in `/etc/ufw`; `ip netns exec` shows `/etc/netns/NAME/ufw` there when it exists,
    /// which gives each namespace its own ufw configuration.
    pub netns: Option<String>,
    /// How long one `ufw` run may take, in seconds.
    pub timeout_secs: u64,
}

impl Default for UfwConfig {
    fn default() -> Self {
        UfwConfig {
            program: "/usr/sbin/ufw".into(),
            ports: Vec::new(),
            protocols: Vec::new(),
            comment: "palisade".into(),
            netns: None,
            timeout_secs: 30,
        }
    }
}

impl UfwConfig {
    /// Checks the configuration without touching the system.
    pub fn validate(&self) -> Result<(), RespondError> {
        if !self.program.starts_with('/') {
            return Err(RespondError::Config(format!(
                "ufw program {:?} must be an absolute path",
                self.program
            )));
        }
        let c = self.comment.as_bytes();
        if c.is_empty()
            || c.len() > 32
            || !c
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            return Err(RespondError::Config(format!(
                "ufw comment {:?}: letters, digits, '_' or '-' (at most 32)",
                self.comment
            )));
        }
        if self.ports.contains(&0) || self.ports.len() > 15 {
            return Err(RespondError::Config(
                "ufw ports: 1 to 15 non-zero ports".into(),
            ));
        }
        if self.timeout_secs == 0 {
            return Err(RespondError::Config("timeout_secs must be positive".into()));
        }
        if let Some(ns) = &self.netns {
            validate_netns(ns)?;
        }
        Ok(())
    }
}

/// Bans through ufw rules. See the module documentation.
#[derive(Debug)]
pub struct UfwResponder {
    name: String,
    cfg: UfwConfig,
}

impl UfwResponder {
    /// Creates the responder after validating `cfg`; touches nothing until used.
    pub fn new(name: impl Into<String>, cfg: UfwConfig) -> Result<Self, RespondError> {
        cfg.validate()?;
        Ok(UfwResponder {
            name: name.into(),
            cfg,
        })
    }

    /// The rule(s) for one target, as ufw arguments after the verb, ending with the
    /// comment — the same text `ufw show added` prints (apart from the comment's quotes).
    pub fn rule_specs(&self, target: &IpNet) -> Vec<Vec<String>> {
        let net = target.trunc();
        // ufw prints host addresses without a prefix length.
        let from = if net.prefix_len() == net.max_prefix_len() {
            net.addr().to_string()
        } else {
            net.to_string()
        };
        let (protos, ports) = match_lists(&self.cfg.protocols, &self.cfg.ports);
        let ports = ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let base = |extra: &[&str]| {
            let mut v: Vec<String> = ["deny", "from", &from].map(String::from).to_vec();
            v.extend(extra.iter().map(|s| s.to_string()));
            v.extend(["comment".to_string(), self.cfg.comment.clone()]);
            v
        };
        if protos.is_empty() {
            return vec![base(&[])];
        }
        protos
            .into_iter()
            .map(|p| {
                if ports.is_empty() {
                    base(&["to", "any", "proto", p])
                } else {
                    base(&["to", "any", "port", &ports, "proto", p])
                }
            })
            .collect()
    }

    fn run(&self, args: &[String]) -> Result<String, RespondError> {
        let mut v = vec![self.cfg.program.clone()];
        v.extend(args.iter().cloned());
        let argv = wrap_netns(self.cfg.netns.as_deref(), v);
        run_program(&argv, None, Duration::from_secs(self.cfg.timeout_secs))
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn verb(&self, verb: &str, spec: &[String]) -> Result<(), RespondError> {
        let mut args = vec![verb.to_string()];
        // `delete` takes the rule without the verb `prepend`: `ufw delete deny from …`.
        args.extend(spec.iter().cloned());
        self.run(&args).map(|_| ())
    }

    /// Palisade's rules currently in ufw (from `ufw show added`), as rule specs.
    pub fn current(&self) -> Result<BTreeSet<Vec<String>>, RespondError> {
        let out = self.run(&["show".into(), "added".into()])?;
        let tail = format!(" comment '{}'", self.cfg.comment);
        Ok(out
            .lines()
            .filter_map(|l| {
                let body = l.trim().strip_prefix("ufw ")?.strip_suffix(&tail)?;
                let mut v: Vec<String> = body.split_whitespace().map(String::from).collect();
                v.extend(["comment".to_string(), self.cfg.comment.clone()]);
                Some(v)
            })
            .collect())
    }

    /// Deletes every Palisade rule from ufw.
    pub fn flush(&mut self) -> Result<(), RespondError> {
        let mut first = None;
        for spec in self.current()? {
            if let Err(e) = self.verb("delete", &spec) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Responder for UfwResponder {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(&mut self, batch: &[Decision], now: Timestamp) -> Result<(), RespondError> {
        let mut first = None;
        let mut done = BTreeSet::new();
        for d in batch {
            if remaining_secs(d, now).is_none() {
                continue;
            }
            for spec in self.rule_specs(&d.target) {
                if done.insert(spec.clone()) {
                    if let Err(e) = self.verb("prepend", &spec) {
                        first.get_or_insert(e);
                    }
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn revoke(&mut self, batch: &[Decision]) -> Result<(), RespondError> {
        let mut first = None;
        let mut done = BTreeSet::new();
        for d in batch {
            for spec in self.rule_specs(&d.target) {
                if done.insert(spec.clone()) {
                    if let Err(e) = self.verb("delete", &spec) {
                        first.get_or_insert(e);
                    }
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn reconcile(&mut self, active: &[Decision], now: Timestamp) -> Result<(), RespondError> {
        let want: BTreeSet<Vec<String>> = active
            .iter()
            .filter(|d| remaining_secs(d, now).is_some())
            .flat_map(|d| self.rule_specs(&d.target))
            .collect();
        let have = self.current()?;
        let mut first = None;
        for spec in have.difference(&want) {
            if let Err(e) = self.verb("delete", spec) {
                first.get_or_insert(e);
            }
        }
        for spec in want.difference(&have) {
            if let Err(e) = self.verb("prepend", spec) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let r = UfwResponder::new("u", UfwConfig::default()).unwrap();
        assert_eq!(
            r.rule_specs(&"192.0.2.9/32".parse().unwrap()),
            [["deny", "from", "192.0.2.9", "comment", "palisade"]]
        );
        assert_eq!(
            r.rule_specs(&"2001:db8::5/64".parse().unwrap())[0][2],
            "2001:db8::/64"
        );
        let r = UfwResponder::new(
            "u",
            UfwConfig {
                ports: vec![80, 22],
                ..Default::default()
            },
        )
        .unwrap();
        let s = r.rule_specs(&"198.51.100.0/24".parse().unwrap());
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[1].join(" "),
            "deny from 198.51.100.0/24 to any port 22,80 proto udp comment palisade"
        );
        assert!(UfwConfig {
            comment: "x'y".into(),
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
