//! Merging a second configuration into a first: `palisade run --config FILE --fail2ban DIR`
//! adds the jails imported from fail2ban (their responders and allowlist) to the file's.
//!
//! This lives here, not in the fail2ban crate, because it is configuration on configuration:
//! the fail2ban crate turns fail2ban's files into Palisade TOML, this crate parses that TOML
//! like any other and merges the result, so neither crate depends on the other.

use crate::Config;

/// A name defined on both sides.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{kind} {name:?} is defined by the configuration and by fail2ban's jails")]
pub struct MergeError {
    /// `jail` or `responder`.
    pub kind: &'static str,
    /// The name.
    pub name: String,
}

impl Config {
    /// Adds `imported`'s jails, responders and allowlist entries to this configuration; its
    /// other settings are ignored (this file's `[general]`, `[store]`, `[defaults]` rule). A
    /// jail or responder name defined by both is an error (rename the Palisade one); nothing
    /// is changed then.
    pub fn merge_imported(&mut self, imported: Config) -> Result<(), MergeError> {
        let dup = |kind, name: &String| MergeError {
            kind,
            name: name.clone(),
        };
        if let Some(r) = imported.responders.iter().find(|r| {
            self.responders
                .iter()
                .any(|x| x.name.get_ref() == r.name.get_ref())
        }) {
            return Err(dup("responder", r.name.get_ref()));
        }
        if let Some(j) = imported.jails.iter().find(|j| {
            self.jails
                .iter()
                .any(|x| x.name.get_ref() == j.name.get_ref())
        }) {
            return Err(dup("jail", j.name.get_ref()));
        }
        self.responders.extend(imported.responders);
        self.jails.extend(imported.jails);
        for a in imported.allowlist.parsed {
            if !self.allowlist.parsed.contains(&a) {
                self.allowlist.parsed.push(a);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("/etc/palisade/x.toml"), &["sshd"]).unwrap()
    }

    const BASE: &str = r#"
[defaults]
responders = ["log"]
[allowlist]
addresses = ["192.0.2.0/24"]
[[responder]]
name = "log"
type = "log"
[[jail]]
name = "sshd"
filter = "sshd"
files = ["/var/log/auth.log"]
"#;

    #[test]
    fn adds_jails_responders_and_allowlist() {
        let mut cfg = parse(BASE);
        let imported = parse(
            r#"
[allowlist]
addresses = ["192.0.2.0/24", "198.51.100.1"]
[[responder]]
name = "f2b-log"
type = "log"
[[jail]]
name = "f2b-sshd"
filter = "sshd"
files = ["/var/log/secure"]
"#,
        );
        cfg.merge_imported(imported).unwrap();
        let jails: Vec<&str> = cfg
            .jails
            .iter()
            .map(|j| j.name.get_ref().as_str())
            .collect();
        assert_eq!(jails, ["sshd", "f2b-sshd"]);
        assert_eq!(cfg.responders.len(), 2);
        assert_eq!(cfg.allowlist.parsed.len(), 2, "no duplicate entry");
    }

    #[test]
    fn a_name_on_both_sides_is_refused_and_nothing_changes() {
        let mut cfg = parse(BASE);
        let err = cfg.merge_imported(parse(BASE)).unwrap_err();
        assert_eq!(err.kind, "responder");
        assert_eq!(cfg.jails.len(), 1);
        let mut only_jail = parse(BASE);
        only_jail.responders.clear();
        let err = cfg.merge_imported(only_jail).unwrap_err();
        assert_eq!(
            err.to_string(),
            "jail \"sshd\" is defined by the configuration and by fail2ban's jails"
        );
    }
}
