//! Remote access-log analysis (issue 16 item 7): what the server asks an agent
//! ([`AnalyzeQuery`], in the `analyze` fleet message), what the agent streams back
//! ([`AnalyzeRow`] chunks, [`AnalyzeProgress`], then one [`AnalyzeSummary`] or an error), and
//! what `palisade analyze --agents` reads from the fleet server's admin socket
//! ([`AdminRequest`] one line, then [`AdminLine`]s).
//!
//! The agent only ever reads the logs its own configuration allows; a query's `files` can
//! narrow that set, never widen it. Every list here is bounded by the receiver
//! ([`MAX_ROWS`], [`MAX_ROWS_PER_MSG`], [`MAX_FILES`]).

use palisade_core::Timestamp;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The capability an agent announces in `hello` when it answers `analyze`.
pub const CAPABILITY: &str = "analyze";

/// Most address rows one agent returns for one query.
pub const MAX_ROWS: u32 = 10_000;

/// Most rows in one `analyze_rows` message (a row is well under 1 KiB, so a message stays far
/// below [`crate::fleet::MAX_MESSAGE`]).
pub const MAX_ROWS_PER_MSG: usize = 500;

/// Most files a query may name, and a summary may list.
pub const MAX_FILES: usize = 256;

/// Longest run the server waits for one agent, in seconds (the agent stops itself then too).
pub const MAX_TIMEOUT_SECS: u64 = 3600;

/// One analysis request, server → agent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeQuery {
    /// Only lines at or after this time (µs since the Unix epoch).
    #[serde(default)]
    pub since_us: Option<i64>,
    /// Only lines before this time (µs).
    #[serde(default)]
    pub until_us: Option<i64>,
    /// Suspicious hits from which an address is proposed for blocking.
    pub threshold: u64,
    /// Threat level thresholds (yellow, red, critical).
    pub levels: [u64; 3],
    /// Rows wanted (addresses with suspicious hits, most suspicious first); 0 or more than
    /// [`MAX_ROWS`] = [`MAX_ROWS`].
    #[serde(default)]
    pub top: u32,
    /// Narrow the agent's allowed logs to these paths (each must be one of them); empty =
    /// every allowed log.
    #[serde(default)]
    pub files: Vec<String>,
    /// The agent gives up after this many seconds (at most [`MAX_TIMEOUT_SECS`]).
    pub timeout_secs: u64,
}

impl AnalyzeQuery {
    /// Rows the agent sends at most.
    pub fn row_limit(&self) -> usize {
        if self.top == 0 || self.top > MAX_ROWS {
            MAX_ROWS as usize
        } else {
            self.top as usize
        }
    }
}

/// One address as one agent saw it (the fields of a local `palisade analyze --format json`
/// address, same names and encoding).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRow {
    /// The client.
    pub ip: IpAddr,
    /// Requests in the window.
    pub requests: u64,
    /// Suspicious hits.
    pub suspicious: u64,
    /// Rule name → lines.
    pub rules: Vec<(String, u64)>,
    /// Requests answered with a 4xx.
    pub client_errors: u64,
    /// Busiest minute.
    pub peak_per_minute: u32,
    /// First request.
    pub first_seen: Option<Timestamp>,
    /// Last request.
    pub last_seen: Option<Timestamp>,
    /// Country code, when the agent has a GeoIP database.
    pub country: Option<String>,
    /// Proposed for blocking.
    pub proposed: bool,
    /// In the agent's allowlist.
    pub allowlisted: bool,
}

/// One log in an agent's summary.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeFile {
    /// The path on the agent.
    pub path: String,
    /// Lines read.
    pub lines: u64,
    /// Requests in the window.
    pub requests: u64,
    /// Requests outside the window.
    pub outside_window: u64,
    /// Lines that were not access-log lines.
    pub unparsed: u64,
    /// Suspicious hits.
    pub suspicious: u64,
    /// Threat level (`GREEN` … `CRITICAL`).
    pub level: String,
}

/// Requests of addresses beyond the agent's tracking bound.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeUntracked {
    /// Requests.
    pub requests: u64,
    /// Of which matched a strong rule.
    pub strong_hits: u64,
}

/// The end of one agent's analysis.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeSummary {
    /// The logs read.
    pub files: Vec<AnalyzeFile>,
    /// Lines read.
    pub lines: u64,
    /// Requests in the window.
    pub requests: u64,
    /// Suspicious hits.
    pub suspicious: u64,
    /// Overall threat level.
    pub level: String,
    /// Distinct addresses.
    pub distinct_ips: u64,
    /// Beyond the tracking bound.
    pub untracked: AnalyzeUntracked,
    /// Rule name → suspicious hits.
    pub rule_totals: Vec<(String, u64)>,
    /// Addresses with suspicious hits the agent did not send (over the row limit).
    #[serde(default)]
    pub rows_left_out: u64,
    /// Rows sent.
    pub rows: u64,
    /// Every address proposed for blocking (whether or not its row was sent; at most
    /// [`MAX_ROWS`]), as a local analysis lists them.
    #[serde(default)]
    pub proposed: Vec<IpAddr>,
    /// Seconds the agent spent.
    pub seconds: f64,
}

/// Progress of one agent (bytes of its logs read so far).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeProgress {
    /// Bytes read.
    pub done: u64,
    /// Bytes in all the logs.
    pub total: u64,
}

/// One part of an agent's answer to an `analyze` request (the `analyze_result` message):
/// any number of `progress` and `rows`, then one `done` or `error`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AnalyzePart {
    /// Bytes read so far.
    Progress(AnalyzeProgress),
    /// Address rows (at most [`MAX_ROWS_PER_MSG`]).
    Rows {
        /// Rows.
        rows: Vec<AnalyzeRow>,
    },
    /// Finished.
    Done(AnalyzeSummary),
    /// Refused or failed.
    Error {
        /// Why, for people.
        error: String,
    },
}

/// `palisade analyze --agents` → the fleet server's admin socket: one JSON line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminRequest {
    /// Run `query` on each of `agents` (names as enrolled).
    Analyze {
        /// Agent names, in the order wanted.
        agents: Vec<String>,
        /// The query (sent unchanged to each agent).
        query: AnalyzeQuery,
    },
}

/// One line of the admin socket's answer, per agent, in arrival order; the stream ends with
/// one `done` or `error` per agent named.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminLine {
    /// Bytes read so far.
    Progress {
        /// Agent.
        host: String,
        /// Bytes read.
        done: u64,
        /// Bytes in all its logs.
        total: u64,
    },
    /// Address rows.
    Rows {
        /// Agent.
        host: String,
        /// Rows.
        rows: Vec<AnalyzeRow>,
    },
    /// The agent finished.
    Done {
        /// Agent.
        host: String,
        /// Its totals.
        summary: AnalyzeSummary,
    },
    /// The agent could not answer: unknown, revoked, not connected, too old, refused the
    /// files, failed or timed out.
    Error {
        /// Agent.
        host: String,
        /// Why, for people.
        error: String,
    },
}

/// The fleet server's admin socket, next to the control socket `control_socket`
/// (`/run/palisade/palisade.sock` → `/run/palisade/palisade.fleet.sock`).
pub fn admin_socket_path(control_socket: &std::path::Path) -> std::path::PathBuf {
    let stem = control_socket
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("palisade");
    control_socket.with_file_name(format!("{stem}.fleet.sock"))
}

/// Whether `rows` is within the per-message bound.
pub fn rows_within_bounds(rows: &[AnalyzeRow]) -> bool {
    rows.len() <= MAX_ROWS_PER_MSG
        && rows
            .iter()
            .all(|r| r.rules.len() <= 32 && r.country.as_ref().is_none_or(|c| c.len() <= 8))
}

/// Whether an agent's part is within the bounds (rows per message, files and proposed
/// addresses per summary, text lengths).
pub fn part_within_bounds(p: &AnalyzePart) -> bool {
    match p {
        AnalyzePart::Rows { rows } => rows_within_bounds(rows),
        AnalyzePart::Done(s) => {
            s.files.len() <= MAX_FILES
                && s.files.iter().all(|f| f.path.len() <= 4096)
                && s.proposed.len() <= MAX_ROWS as usize
                && s.rule_totals.len() <= 32
        }
        AnalyzePart::Error { error } => error.len() <= 4096,
        AnalyzePart::Progress(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> AnalyzeRow {
        AnalyzeRow {
            ip: "203.0.113.9".parse().unwrap(),
            requests: 10,
            suspicious: 4,
            rules: vec![("probe".into(), 4)],
            client_errors: 2,
            peak_per_minute: 3,
            first_seen: Some(Timestamp::from_secs(1_700_000_000)),
            last_seen: None,
            country: None,
            proposed: true,
            allowlisted: false,
        }
    }

    #[test]
    fn admin_lines_round_trip_and_are_tagged() {
        let lines = [
            AdminLine::Progress {
                host: "web1".into(),
                done: 1,
                total: 2,
            },
            AdminLine::Rows {
                host: "web1".into(),
                rows: vec![row()],
            },
            AdminLine::Error {
                host: "web2".into(),
                error: "not connected".into(),
            },
        ];
        for l in lines {
            let s = serde_json::to_string(&l).unwrap();
            assert_eq!(serde_json::from_str::<AdminLine>(&s).unwrap(), l, "{s}");
        }
        let s = serde_json::to_string(&AdminLine::Progress {
            host: "a".into(),
            done: 1,
            total: 2,
        })
        .unwrap();
        assert_eq!(s, r#"{"kind":"progress","host":"a","done":1,"total":2}"#);
    }

    #[test]
    fn admin_socket_sits_next_to_the_control_socket() {
        assert_eq!(
            admin_socket_path(std::path::Path::new("/run/palisade/palisade.sock")),
            std::path::Path::new("/run/palisade/palisade.fleet.sock")
        );
    }

    #[test]
    fn agent_parts_round_trip() {
        for p in [
            AnalyzePart::Progress(AnalyzeProgress { done: 3, total: 9 }),
            AnalyzePart::Rows { rows: vec![row()] },
            AnalyzePart::Error { error: "no".into() },
        ] {
            let s = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<AnalyzePart>(&s).unwrap(), p, "{s}");
        }
    }

    #[test]
    fn queries_refuse_unknown_fields_and_bound_rows() {
        let q = r#"{"threshold":1,"levels":[1,2,3],"timeout_secs":5,"path":"/etc/shadow"}"#;
        assert!(serde_json::from_str::<AnalyzeQuery>(q).is_err());
        let q: AnalyzeQuery =
            serde_json::from_str(r#"{"threshold":1,"levels":[1,2,3],"timeout_secs":5}"#).unwrap();
        assert_eq!(q.row_limit(), MAX_ROWS as usize);
        assert!(rows_within_bounds(&vec![row(); MAX_ROWS_PER_MSG]));
        assert!(!rows_within_bounds(&vec![row(); MAX_ROWS_PER_MSG + 1]));
    }
}
