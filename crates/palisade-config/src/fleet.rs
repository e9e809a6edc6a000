//! `[fleet]`: fleet mode (agents on every host, one central server). Absent section = a
//! single host, as before. The fleet crate (`palisade-fleet`) reads this; the checks here are
//! the ones that need no I/O.

use crate::schema::Dur;
use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// What this process is in a fleet.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FleetRole {
    /// The central server: takes agents' events, correlates, keeps the fleet ban log.
    Server,
    /// A host that detects and bans locally, ships its events and applies fleet bans.
    Agent,
    /// A tiny host that only ships raw lines (the server runs the filters).
    Forwarder,
}

impl FleetRole {
    /// As written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            FleetRole::Server => "server",
            FleetRole::Agent => "agent",
            FleetRole::Forwarder => "forwarder",
        }
    }
}

/// `server = "wss://a:7443"` or `server = ["wss://a:7443", "wss://b:7443"]`.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(s) => vec![s],
        Raw::Many(v) => v,
    })
}

/// `[fleet]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FleetSection {
    /// `server`, `agent` or `forwarder`.
    pub role: FleetRole,
    /// Server: address and port of the fleet listener (TLS WebSocket), default `0.0.0.0:7443`.
    #[serde(default = "default_listen")]
    pub listen: std::net::SocketAddr,
    /// Agent: the server's URL (`wss://host:7443`), or a list of them.
    #[serde(default, deserialize_with = "one_or_many")]
    pub server: Vec<String>,
    /// Agent: its name in the fleet (default: the host name).
    #[serde(default)]
    pub name: Option<String>,
    /// Server: push the bans an agent takes locally to the other agents.
    #[serde(default = "yes")]
    pub share_bans: bool,
    /// Agent: most events kept unshipped while the server is away; the oldest beyond are
    /// dropped (never bans) and a `gap` is reported.
    #[serde(default = "default_spool_events")]
    pub spool_max_events: u64,
    /// Agent: unshipped events older than this are dropped the same way.
    #[serde(default = "default_spool_age")]
    pub spool_max_age: Dur,
    /// Agent: how often it reports the checksum of its fleet ban set.
    #[serde(default = "default_checksum")]
    pub checksum_interval: Dur,
    /// Agent: the access logs (paths or globs) `palisade analyze --agents` may have it
    /// analyze; default: the files of its `nginx_access` / `apache_access` jails.
    #[serde(default)]
    pub analyze_files: Option<Vec<String>>,
    /// Server: connections in their TLS/WebSocket handshake at once beyond which new ones
    /// are asked to come back later (HTTP 503 + `Retry-After`); 0 = no limit.
    #[serde(default = "default_max_handshakes")]
    pub max_handshakes: usize,
}

fn default_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 7443))
}
fn yes() -> bool {
    true
}
fn default_spool_events() -> u64 {
    1_000_000
}
fn default_spool_age() -> Dur {
    Dur(Duration::from_secs(7 * 86_400))
}
fn default_max_handshakes() -> usize {
    128
}
fn default_checksum() -> Dur {
    Dur(Duration::from_secs(120))
}

/// Whether `name` is a usable agent name: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_agent_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl FleetSection {
    /// The problems of this section (messages start with `[fleet]`).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self.role {
            FleetRole::Server => {
                if !self.server.is_empty() {
                    out.push("[fleet] server is the agents' key; a server has `listen`".into());
                }
            }
            FleetRole::Agent | FleetRole::Forwarder => {
                if self.server.is_empty() {
                    out.push(format!(
                        "[fleet] role = \"{}\" needs `server = \"wss://HOST:7443\"`",
                        self.role.as_str()
                    ));
                }
                for u in &self.server {
                    let ok = u.strip_prefix("wss://").is_some_and(|rest| {
                        !rest.is_empty() && !rest.contains(char::is_whitespace)
                    });
                    if !ok {
                        out.push(format!(
                            "[fleet] server {u:?}: expected a wss:// URL such as \"wss://fleet.example.org:7443\""
                        ));
                    }
                }
            }
        }
        if let Some(n) = &self.name {
            if !valid_agent_name(n) {
                out.push(format!(
                    "[fleet] name {n:?}: 1 to 64 letters, digits, '.', '_' or '-'"
                ));
            }
        }
        if self.spool_max_events == 0 {
            out.push("[fleet] spool_max_events must be at least 1".into());
        }
        if self.checksum_interval.0 < Duration::from_secs(1) {
            out.push("[fleet] checksum_interval must be at least 1s".into());
        }
        out
    }
}

/// A jail without a source is allowed on a fleet server: it filters forwarders' lines only.
pub(crate) fn sourceless_jail_ok(cfg: &crate::Config, sources: u8) -> bool {
    sources == 0 && cfg.fleet.as_ref().map(|f| f.role) == Some(FleetRole::Server)
}

/// A forwarder's jails ship file lines only.
pub(crate) fn jail_source_problem(
    cfg: &crate::Config,
    j: &crate::JailSection,
    sources: u8,
) -> Option<String> {
    if cfg.fleet.as_ref().map(|f| f.role) != Some(FleetRole::Forwarder) || sources != 1 {
        return None;
    }
    (j.files.is_empty()).then(|| {
        format!(
            "jail {:?}: a forwarder ships the lines of files only (`files = [\"/var/log/auth.log\"]`); journald and stdin lines carry no position the server could resume from",
            j.name.get_ref()
        )
    })
}

impl FleetSection {
    /// Problems that need the rest of the configuration (messages start with `[fleet]`).
    pub fn problems_with(&self, cfg: &crate::Config) -> Vec<String> {
        let mut out = Vec::new();
        if self.role == FleetRole::Forwarder
            && !cfg.jails.iter().any(|j| j.enabled && !j.files.is_empty())
        {
            out.push("[fleet] role = \"forwarder\" needs at least one enabled [[jail]] with `files` to forward".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("t.toml"), &["sshd"]).map_err(|e| {
            e.problems
                .iter()
                .map(|p| p.message.clone())
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    fn server_and_agent_sections() {
        let c = parse("[fleet]\nrole = \"server\"\nlisten = \"127.0.0.1:7443\"\n").unwrap();
        let f = c.fleet.unwrap();
        assert_eq!(f.role, super::FleetRole::Server);
        assert_eq!(f.listen.port(), 7443);
        assert!(f.share_bans);
        assert!(c.jails.is_empty(), "a server needs no [[jail]]");

        let c = parse(
            "[fleet]\nrole = \"agent\"\nserver = \"wss://10.0.0.1:7443\"\nname = \"web1\"\nspool_max_age = \"1d\"\nchecksum_interval = \"30s\"\n",
        )
        .unwrap();
        let f = c.fleet.unwrap();
        assert_eq!(f.server, vec!["wss://10.0.0.1:7443".to_string()]);
        assert_eq!(f.name.as_deref(), Some("web1"));
        assert_eq!(f.spool_max_age.0.as_secs(), 86_400);
        assert_eq!(f.checksum_interval.0.as_secs(), 30);
        let c = parse("[fleet]\nrole = \"agent\"\nserver = [\"wss://a:7443\", \"wss://b:7443\"]\n")
            .unwrap();
        assert_eq!(c.fleet.unwrap().server.len(), 2);
    }

    #[test]
    fn forwarder_and_sourceless_server_jails() {
        let c = parse(
            "[fleet]\nrole = \"forwarder\"\nserver = \"wss://10.0.0.1:7443\"\n[[jail]]\nname = \"sshd\"\nfilter = \"sshd\"\nfiles = [\"/var/log/auth.log\"]\n",
        )
        .unwrap();
        assert_eq!(c.fleet.unwrap().role, super::FleetRole::Forwarder);
        // A server's jail may have no source: it filters forwarded lines only.
        let c = parse(
            "[fleet]\nrole = \"server\"\n[[jail]]\nname = \"sshd\"\nfilter = \"sshd\"\nmax_retry = 3\n",
        )
        .unwrap();
        assert!(c.jails[0].files.is_empty());
    }

    #[test]
    fn bad_fleet_sections_are_explained() {
        for (text, want) in [
            ("[fleet]\nrole = \"agent\"\n", "needs `server"),
            (
                "[fleet]\nrole = \"agent\"\nserver = \"http://x:1\"\n",
                "expected a wss:// URL",
            ),
            ("[fleet]\nrole = \"boss\"\n", "unknown variant `boss`"),
            (
                "[fleet]\nrole = \"forwarder\"\nserver = \"wss://x:1\"\n",
                "needs at least one enabled [[jail]] with `files`",
            ),
            (
                "[fleet]\nrole = \"forwarder\"\nserver = \"wss://x:1\"\n[[jail]]\nname = \"s\"\nfilter = \"sshd\"\njournal = []\n",
                "a forwarder ships the lines of files only",
            ),
            (
                "[fleet]\nrole = \"agent\"\nserver = \"wss://x:1\"\n[[jail]]\nname = \"s\"\nfilter = \"sshd\"\n",
                "give exactly one source",
            ),
            (
                "[fleet]\nrole = \"agent\"\nserver = \"wss://x:1\"\nname = \"a b\"\n",
                "[fleet] name",
            ),
            (
                "[fleet]\nrole = \"server\"\nlistn = \"0.0.0.0:1\"\n",
                "listn",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
