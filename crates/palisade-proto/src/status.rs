//! The daemon's state as one typed report: what `palisade status` prints, what `/metrics`
//! exports and what the HTTP API and the dashboard show.
//!
//! JSON field names of the parts the API already published (`counters`, `engine`, `jails`,
//! `jail_names`, `active_bans`, `bans`) are kept; everything else was added around them.

use palisade_core::{Decision, Timestamp};
use serde::{Deserialize, Serialize};

/// Everything `palisade status` knows about the running daemon.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    /// Palisade version of the daemon.
    pub version: String,
    /// When the daemon started.
    pub started: Timestamp,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Where the configuration came from (file, `+ fail2ban DIR`).
    pub config: String,
    /// Time zone used to read log dates (`UTC`, `Europe/Paris`).
    pub time_zone: String,
    /// Daemon-wide counters.
    pub counters: Counters,
    /// Detection engine counters.
    pub engine: EngineCounters,
    /// Per-jail counters.
    pub jails: Vec<JailStatus>,
    /// Names of the jails running (in configuration order).
    pub jail_names: Vec<String>,
    /// Bans in force.
    pub active_bans: u64,
    /// The bans in force, newest first (at most 1000).
    pub bans: Vec<Decision>,
    /// The newest ban decided since start, if any.
    pub last_ban: Option<Decision>,
    /// Log lines read per second, over the last few seconds.
    pub lines_per_sec: f64,
    /// How far detection runs behind the logs.
    pub lag: Lag,
    /// Each log source (files: each file).
    pub sources: Vec<SourceStatus>,
    /// The store's health.
    pub store: StoreHealth,
    /// Each responder's health.
    pub responders: Vec<ResponderHealth>,
}

/// Daemon-wide counters (since start; `reloads` too).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    /// Lines read by all sources.
    pub lines: u64,
    /// Events produced by filters.
    pub events: u64,
    /// Events lost in a failed store write (under lag the store writer slows reading instead).
    pub events_dropped: u64,
    /// Decisions taken.
    pub decisions: u64,
    /// Responder failures.
    pub responder_errors: u64,
    /// Store failures.
    pub store_errors: u64,
    /// Source failures.
    pub source_errors: u64,
    /// Jails skipped because their filter could not be built (at start or reload).
    pub filter_errors: u64,
    /// Successful configuration reloads (`SIGHUP`, `palisade reload`).
    pub reloads: u64,
    /// Reloads refused (the configuration did not validate; the old one kept running).
    pub reload_failures: u64,
    /// Log lines whose syslog header could not be read (counted per source, the largest of
    /// its jails' figures; `palisade check` shows them per reason).
    pub header_rejects: u64,
    /// Log lines refused because the offender could not be told apart from attacker text in
    /// the same line (framing attempts; never blamed).
    #[serde(default)]
    pub ambiguous_lines: u64,
    /// Why each skipped jail of the running configuration was skipped (`jail "x": …`).
    pub jail_errors: Vec<String>,
    /// Responder applies retried after a failure.
    #[serde(default)]
    pub responder_retries: u64,
    /// Bans waiting for a retry now.
    #[serde(default)]
    pub responder_pending: u64,
    /// Bans whose retries ran out (the periodic reconcile still puts them back).
    #[serde(default)]
    pub responder_given_up: u64,
    /// Source positions committed together with the events they cover.
    #[serde(default)]
    pub positions_acked: u64,
    /// Source positions stopped moving after a store failure (until restart).
    #[serde(default)]
    pub positions_held: bool,
}

/// Detection engine counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EngineCounters {
    /// Events from allowlisted addresses (ignored).
    pub allowlisted: u64,
    /// Events from addresses already banned.
    pub while_banned: u64,
    /// Bans decided.
    pub bans: u64,
}

/// One jail's counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct JailStatus {
    /// Jail name.
    pub name: String,
    /// Failures counted.
    pub failures: u64,
    /// Detections (bans decided).
    pub detections: u64,
    /// Addresses tracked now.
    pub tracked: u64,
    /// Addresses forgotten early because the jail's tracking table was full.
    pub evicted: u64,
    /// Failures that trigger a ban.
    #[serde(default)]
    pub max_retry: u32,
    /// Window for counting failures, in seconds.
    #[serde(default)]
    pub find_time: u64,
    /// Ban length before escalation, in seconds (`None` = permanent).
    #[serde(default)]
    pub ban_time: Option<u64>,
    /// Decisions of this jail are simulated.
    #[serde(default)]
    pub dry_run: bool,
}

/// How far detection runs behind the logs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Lag {
    /// Event batches waiting for the engine.
    pub queued_batches: u64,
    /// At the newest event: seconds between the time in its log line and when the engine saw
    /// it (`None` before the first event).
    pub last_event_delay_secs: Option<f64>,
}

/// What a source is doing.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    /// Being read.
    #[default]
    Ok,
    /// The file does not exist (yet): waited for.
    Missing,
    /// The file exists but cannot be opened or read (permissions): retried.
    Unreadable,
    /// The file was just replaced under its path; the new one is read from its start.
    Rotated,
    /// The source ended (stdin, `--once`) or failed (see `error`).
    Stopped,
}

impl SourceState {
    /// Lower-case name as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Ok => "ok",
            SourceState::Missing => "missing",
            SourceState::Unreadable => "unreadable",
            SourceState::Rotated => "rotated",
            SourceState::Stopped => "stopped",
        }
    }
}

/// One input of a source: a file, the journal, standard input.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SourceStatus {
    /// The file's path, `journald …` or `stdin`.
    pub path: String,
    /// What it is doing.
    pub state: SourceState,
    /// Lines read from it since start.
    pub lines: u64,
    /// When its last line was read (wall clock).
    pub last_line: Option<Timestamp>,
    /// The last problem (unreadable, source failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The store's health.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoreHealth {
    /// `sqlite` or `postgres`.
    pub kind: String,
    /// Whether the last write succeeded.
    pub ok: bool,
    /// Failed writes since start.
    pub failures: u64,
    /// The last failure.
    pub last_error: Option<String>,
}

/// One responder's health.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResponderHealth {
    /// Responder name.
    pub name: String,
    /// Whether its last apply or revoke succeeded.
    pub ok: bool,
    /// The last failure.
    pub last_error: Option<String>,
    /// Failed applies and revokes since start.
    pub failures: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_and_keeps_published_names() {
        let r = StatusReport {
            version: "0.1.0".into(),
            started: Timestamp::from_secs(1_700_000_000),
            uptime_secs: 5,
            config: "/etc/palisade/palisade.toml".into(),
            time_zone: "UTC".into(),
            counters: Counters {
                lines: 12,
                reloads: 1,
                jail_errors: vec!["jail \"x\": broken".into()],
                ..Counters::default()
            },
            jails: vec![JailStatus {
                name: "sshd".into(),
                failures: 3,
                ..JailStatus::default()
            }],
            active_bans: 1,
            lines_per_sec: 2.5,
            sources: vec![SourceStatus {
                path: "/var/log/auth.log".into(),
                state: SourceState::Missing,
                ..SourceStatus::default()
            }],
            responders: vec![ResponderHealth {
                name: "nft".into(),
                ok: true,
                ..ResponderHealth::default()
            }],
            ..StatusReport::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["counters"]["lines"], 12);
        assert_eq!(v["counters"]["reloads"], 1);
        assert_eq!(v["jails"][0]["name"], "sshd");
        assert_eq!(v["active_bans"], 1);
        assert_eq!(v["engine"]["allowlisted"], 0);
        assert_eq!(v["sources"][0]["state"], "missing");
        assert_eq!(v["started"], "2023-11-14T22:13:20Z");
        let back: StatusReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}
