//! Fleet mode's wire messages (agents ↔ central server). JSON text frames, each an
//! [`Envelope`] `{v, msg}` whose `msg` is tagged by `type`.
//!
//! Versions: [`PROTOCOL_VERSION`] is 2. Version 1 is the same message set without the `gap`
//! and `checksum` messages (a v1 agent never sends them, and the server never asks a v1 agent
//! to resync from a checksum); a v2 server speaks v1 to a v1 agent ([`accepts`]).
//!
//! Bounds: a frame is at most [`MAX_MESSAGE`] bytes, an `events` batch at most
//! [`MAX_BATCH`] events, a `bans`/`snapshot` message at most [`MAX_BANS`] entries; the
//! receiver refuses anything larger ([`FleetMessageError`]).

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The fleet protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 2;

/// The first version that has `gap` and `checksum`.
pub const V_CHECKSUM: u16 = 2;

/// Largest frame either side accepts (1 MiB).
pub const MAX_MESSAGE: usize = 1 << 20;

/// Most events in one `events` batch.
pub const MAX_BATCH: usize = 1000;

/// Most entries in one `bans` or `snapshot` message (a bigger snapshot is split).
pub const MAX_BANS: usize = 2000;

/// Whether a peer speaking `v` is understood: the current version and the one before it (so
/// agents and server can be upgraded one after the other).
pub fn accepts(v: u16) -> bool {
    v == PROTOCOL_VERSION || (PROTOCOL_VERSION > 1 && v == PROTOCOL_VERSION - 1)
}

/// Any fleet message, tagged with the protocol version it was written in.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Envelope<M> {
    /// Protocol version of `msg` (check with [`accepts`] before reading it).
    pub v: u16,
    /// The message.
    pub msg: M,
}

impl<M> Envelope<M> {
    /// `msg` in the current protocol version.
    pub fn new(msg: M) -> Self {
        Envelope {
            v: PROTOCOL_VERSION,
            msg,
        }
    }
}

/// The first message of an agent: who it is and what it can do.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version the agent speaks (its highest).
    pub protocol_version: u16,
    /// Optional features the agent supports (`"ban"`, `"events"`, `"checksum"`…); unknown
    /// names are ignored by the receiver.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The agent's name (host name by default). Informative: the server takes the agent's
    /// identity from its credentials, never from this.
    pub agent: String,
    /// The agent's Palisade version.
    pub software_version: String,
    /// Random number fixed per agent store: a new store (new sequence numbers) has a new one.
    #[serde(default)]
    pub epoch: u64,
    /// Last fleet ban log sequence the agent applied.
    #[serde(default)]
    pub ban_cursor: u64,
    /// The agent's clock (µs since the Unix epoch) when it sent this.
    #[serde(default)]
    pub agent_time_us: i64,
}

/// One event as shipped: `seq` is the agent store's event id (monotonic).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireEvent {
    /// Agent store event id.
    pub seq: u64,
    /// Jail the event was counted in.
    pub jail: String,
    /// Event time (µs since the Unix epoch, agent clock).
    pub time_us: i64,
    /// The offender.
    pub ip: IpAddr,
    /// Filter.
    pub filter: String,
    /// Rule inside the filter.
    pub rule: String,
    /// Counted as a failure.
    pub failure: bool,
    /// User name, if captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The log line (may be empty when the agent's store did not keep it).
    #[serde(default)]
    pub evidence: String,
}

/// One entry of the fleet ban log.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BanEntry {
    /// Log sequence.
    pub seq: u64,
    /// `ban` or `unban`.
    pub action: BanAction,
    /// The address or network.
    pub target: IpNet,
    /// Jail (or fleet jail) that asked.
    #[serde(default)]
    pub jail: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// End (µs since the Unix epoch); `None` = permanent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_us: Option<i64>,
}

/// What a ban log entry does.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BanAction {
    /// Ban the target.
    Ban,
    /// Lift the fleet ban of the target.
    Unban,
}

impl BanAction {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            BanAction::Ban => "ban",
            BanAction::Unban => "unban",
        }
    }
}

/// Agent → server.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMsg {
    /// First message.
    Hello(Hello),
    /// A batch of events `first_seq..=last_seq` (only the ones that exist in that range).
    Events {
        /// Agent store epoch.
        epoch: u64,
        /// First sequence covered.
        first_seq: u64,
        /// Last sequence covered (the high-water mark once stored).
        last_seq: u64,
        /// At most [`MAX_BATCH`].
        events: Vec<WireEvent>,
    },
    /// Events dropped by the spool cap (v2).
    Gap {
        /// Agent store epoch.
        epoch: u64,
        /// First dropped sequence.
        from_seq: u64,
        /// Last dropped sequence.
        to_seq: u64,
        /// Why (`spool_max_events`, `spool_max_age`).
        reason: String,
    },
    /// A ban the agent took itself.
    LocalBan {
        /// The address or network.
        target: IpNet,
        /// Local jail.
        jail: String,
        /// Why.
        reason: String,
        /// When (µs).
        created_us: i64,
        /// End (µs); `None` = permanent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_us: Option<i64>,
    },
    /// A local ban was lifted early.
    LocalUnban {
        /// The address or network.
        target: IpNet,
    },
    /// The agent's fleet ban set (v2): `sum` = hex SHA-256 of the sorted active targets.
    Checksum {
        /// Ban log cursor the set reflects.
        cursor: u64,
        /// Targets in the set.
        count: u64,
        /// The checksum ([`ban_set_checksum`]).
        sum: String,
    },
    /// Answer to `ping`.
    Pong {
        /// The ping's nonce.
        nonce: u64,
        /// The agent's clock when answering (µs).
        agent_time_us: i64,
        /// The agent's newest event sequence (for the backlog shown by `fleet agents`).
        #[serde(default)]
        head_seq: u64,
    },
    /// Part of the answer to [`ServerMsg::Analyze`] `id` (capability `analyze`).
    AnalyzeResult {
        /// The request's id.
        id: u64,
        /// The part.
        part: crate::fleet_analyze::AnalyzePart,
    },
}

/// Server → agent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMsg {
    /// Answer to `hello`.
    Welcome {
        /// Version the server will speak on this connection.
        protocol_version: u16,
        /// Server clock (µs).
        server_time_us: i64,
        /// The server's high-water mark for this agent and epoch.
        acked_seq: u64,
        /// Batches the agent may have in flight.
        credit: u32,
    },
    /// Events up to `seq` are stored.
    Ack {
        /// Agent store epoch.
        epoch: u64,
        /// High-water mark.
        seq: u64,
        /// Batches the agent may now have in flight.
        credit: u32,
    },
    /// New fleet ban log entries, in order.
    Bans {
        /// The entries.
        entries: Vec<BanEntry>,
    },
    /// The whole fleet ban set: the agent replaces its own with it.
    Snapshot {
        /// Ban log position the set reflects.
        cursor: u64,
        /// Bans in force (action always `ban`).
        bans: Vec<BanEntry>,
        /// More parts follow (a big set is split in [`MAX_BANS`] entries).
        #[serde(default)]
        more: bool,
    },
    /// Clock probe.
    Ping {
        /// Echoed in the pong.
        nonce: u64,
        /// Server clock when sent (µs).
        server_time_us: i64,
    },
    /// Come back later.
    RetryLater {
        /// Seconds.
        after_secs: u64,
    },
    /// Answer to an enrollment (then the server closes).
    Enrolled {
        /// The agent's id.
        agent_id: String,
        /// Its secret key (only ever sent here; the server keeps its hash).
        key: String,
    },
    /// Analyze your own access logs (only to an agent whose `hello` has the `analyze`
    /// capability); answered by [`AgentMsg::AnalyzeResult`] parts with the same `id`.
    Analyze {
        /// Request id.
        id: u64,
        /// What to analyze.
        query: crate::fleet_analyze::AnalyzeQuery,
    },
}

/// Why a frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FleetMessageError {
    /// Bigger than [`MAX_MESSAGE`].
    #[error("message of {0} bytes is over the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    /// Not a known message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A version we do not speak.
    #[error("protocol version {0} is not supported (this build speaks {PROTOCOL_VERSION} and {prev})", prev = PROTOCOL_VERSION - 1)]
    Version(u16),
    /// Over a count limit.
    #[error("{0}")]
    OverLimit(String),
    /// Not allowed in the version spoken.
    #[error("message `{0}` does not exist in protocol version {1}")]
    NotInVersion(&'static str, u16),
}

fn version_of(text: &str) -> Result<u16, FleetMessageError> {
    #[derive(Deserialize)]
    struct V {
        v: u16,
    }
    serde_json::from_str::<V>(text)
        .map(|v| v.v)
        .map_err(|e| FleetMessageError::Malformed(short(&e.to_string())))
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Reads an agent message: size, version ([`accepts`]) and limits checked. Returns the
/// version it was written in.
pub fn decode_agent(text: &str) -> Result<(u16, AgentMsg), FleetMessageError> {
    if text.len() > MAX_MESSAGE {
        return Err(FleetMessageError::TooLarge(text.len()));
    }
    let v = version_of(text)?;
    if !accepts(v) {
        return Err(FleetMessageError::Version(v));
    }
    let env: Envelope<AgentMsg> = serde_json::from_str(text)
        .map_err(|e| FleetMessageError::Malformed(short(&e.to_string())))?;
    match &env.msg {
        AgentMsg::Events {
            events,
            first_seq,
            last_seq,
            ..
        } => {
            if events.len() > MAX_BATCH {
                return Err(FleetMessageError::OverLimit(format!(
                    "batch of {} events is over the {MAX_BATCH}-event limit",
                    events.len()
                )));
            }
            if first_seq > last_seq
                || events
                    .iter()
                    .any(|e| e.seq < *first_seq || e.seq > *last_seq)
                || events.windows(2).any(|w| w[0].seq >= w[1].seq)
            {
                return Err(FleetMessageError::OverLimit(
                    "batch sequence numbers out of order or outside first_seq..=last_seq".into(),
                ));
            }
        }
        AgentMsg::Gap { .. } if v < V_CHECKSUM => {
            return Err(FleetMessageError::NotInVersion("gap", v))
        }
        AgentMsg::Checksum { .. } if v < V_CHECKSUM => {
            return Err(FleetMessageError::NotInVersion("checksum", v))
        }
        AgentMsg::AnalyzeResult { part, .. } if !crate::fleet_analyze::part_within_bounds(part) => {
            return Err(FleetMessageError::OverLimit(
                "analyze result over its bounds".into(),
            ))
        }
        _ => {}
    }
    Ok((v, env.msg))
}

/// Reads a server message: size, version and limits checked.
pub fn decode_server(text: &str) -> Result<(u16, ServerMsg), FleetMessageError> {
    if text.len() > MAX_MESSAGE {
        return Err(FleetMessageError::TooLarge(text.len()));
    }
    let v = version_of(text)?;
    if !accepts(v) {
        return Err(FleetMessageError::Version(v));
    }
    let env: Envelope<ServerMsg> = serde_json::from_str(text)
        .map_err(|e| FleetMessageError::Malformed(short(&e.to_string())))?;
    match &env.msg {
        ServerMsg::Bans { entries } if entries.len() > MAX_BANS => {
            return Err(FleetMessageError::OverLimit("too many ban entries".into()))
        }
        ServerMsg::Snapshot { bans, .. } if bans.len() > MAX_BANS => {
            return Err(FleetMessageError::OverLimit(
                "too many snapshot entries".into(),
            ))
        }
        ServerMsg::Analyze { query, .. }
            if query.files.len() > crate::fleet_analyze::MAX_FILES
                || query.files.iter().any(|f| f.len() > 4096) =>
        {
            return Err(FleetMessageError::OverLimit(
                "analyze request names too many files".into(),
            ))
        }
        _ => {}
    }
    Ok((v, env.msg))
}

/// Writes a message in version `v`.
pub fn encode<M: Serialize>(v: u16, msg: &M) -> String {
    #[derive(Serialize)]
    struct E<'a, M> {
        v: u16,
        msg: &'a M,
    }
    serde_json::to_string(&E { v, msg }).expect("fleet messages always serialise")
}

/// The text whose SHA-256 is a ban set's checksum: the canonical targets, sorted, one per
/// line (each line ends with `\n`). Hashing is left to the caller (this crate has no
/// digest dependency).
pub fn ban_set_text<'a>(targets: impl IntoIterator<Item = &'a IpNet>) -> String {
    let mut v: Vec<IpNet> = targets.into_iter().map(|t| t.trunc()).collect();
    v.sort_unstable();
    v.dedup();
    let mut s = String::with_capacity(v.len() * 20);
    for t in v {
        s.push_str(&t.to_string());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_in_an_envelope() {
        let h = Envelope::new(Hello {
            protocol_version: PROTOCOL_VERSION,
            capabilities: vec!["ban".into(), "events".into()],
            agent: "web1".into(),
            software_version: "0.1.0".into(),
            epoch: 7,
            ban_cursor: 3,
            agent_time_us: 1,
        });
        let s = serde_json::to_string(&h).unwrap();
        assert!(
            s.starts_with(r#"{"v":2,"msg":{"protocol_version":2"#),
            "{s}"
        );
        let back: Envelope<Hello> = serde_json::from_str(&s).unwrap();
        assert_eq!(back, h);
        // Capabilities and the v2 fields may be left out by an older agent.
        let old: Hello = serde_json::from_str(
            r#"{"protocol_version":1,"agent":"a","software_version":"0.0.9"}"#,
        )
        .unwrap();
        assert!(old.capabilities.is_empty());
        assert_eq!(old.epoch, 0);
    }

    #[test]
    fn accepts_current_and_previous_only() {
        assert_eq!(PROTOCOL_VERSION, 2);
        assert!(accepts(2));
        assert!(accepts(1));
        assert!(!accepts(3));
        assert!(!accepts(0));
    }

    #[test]
    fn v1_hello_decodes_and_v1_has_no_checksum_or_gap() {
        let hello = r#"{"v":1,"msg":{"type":"hello","protocol_version":1,"agent":"old","software_version":"0.0.9"}}"#;
        let (v, m) = decode_agent(hello).unwrap();
        assert_eq!(v, 1);
        assert!(matches!(m, AgentMsg::Hello(h) if h.agent == "old"));
        let sum = r#"{"v":1,"msg":{"type":"checksum","cursor":1,"count":0,"sum":"x"}}"#;
        assert_eq!(
            decode_agent(sum).unwrap_err(),
            FleetMessageError::NotInVersion("checksum", 1)
        );
        let gap = r#"{"v":1,"msg":{"type":"gap","epoch":1,"from_seq":1,"to_seq":2,"reason":"x"}}"#;
        assert!(matches!(
            decode_agent(gap),
            Err(FleetMessageError::NotInVersion("gap", 1))
        ));
        let sum2 = sum.replace(r#""v":1"#, r#""v":2"#);
        assert!(decode_agent(&sum2).is_ok());
    }

    #[test]
    fn refuses_unknown_versions_oversize_and_malformed() {
        let v3 = r#"{"v":3,"msg":{"type":"pong","nonce":1,"agent_time_us":0}}"#;
        assert_eq!(decode_agent(v3).unwrap_err(), FleetMessageError::Version(3));
        assert!(matches!(
            decode_agent(&"x".repeat(MAX_MESSAGE + 1)),
            Err(FleetMessageError::TooLarge(_))
        ));
        assert!(matches!(
            decode_agent(r#"{"v":2,"msg":{"type":"launch_missiles"}}"#),
            Err(FleetMessageError::Malformed(_))
        ));
        // The agent is never taken from a batch: a field naming one is refused.
        assert!(matches!(
            decode_agent(
                r#"{"v":2,"msg":{"type":"events","agent":"other","epoch":1,"first_seq":1,"last_seq":1,"events":[]}}"#
            ),
            Err(FleetMessageError::Malformed(_))
        ));
    }

    #[test]
    fn batches_are_bounded_and_ordered() {
        let ev = |seq| WireEvent {
            seq,
            jail: "sshd".into(),
            time_us: 1,
            ip: "192.0.2.1".parse().unwrap(),
            filter: "sshd".into(),
            rule: "r".into(),
            failure: true,
            user: None,
            evidence: String::new(),
        };
        let batch = |first, last, events| {
            encode(
                PROTOCOL_VERSION,
                &AgentMsg::Events {
                    epoch: 1,
                    first_seq: first,
                    last_seq: last,
                    events,
                },
            )
        };
        assert!(decode_agent(&batch(1, 3, vec![ev(1), ev(3)])).is_ok());
        assert!(decode_agent(&batch(1, 3, vec![ev(3), ev(1)])).is_err());
        assert!(decode_agent(&batch(2, 3, vec![ev(1)])).is_err());
        let big: Vec<_> = (1..=MAX_BATCH as u64 + 1).map(ev).collect();
        assert!(matches!(
            decode_agent(&batch(1, MAX_BATCH as u64 + 1, big)),
            Err(FleetMessageError::OverLimit(_))
        ));
    }

    #[test]
    fn server_messages_round_trip() {
        let m = ServerMsg::Bans {
            entries: vec![BanEntry {
                seq: 4,
                action: BanAction::Ban,
                target: "203.0.113.0/24".parse().unwrap(),
                jail: "fleet-ssh".into(),
                reason: "r".into(),
                expires_us: Some(5),
            }],
        };
        let s = encode(PROTOCOL_VERSION, &m);
        assert!(s.contains(r#""type":"bans""#), "{s}");
        assert!(s.contains(r#""action":"ban""#), "{s}");
        assert_eq!(decode_server(&s).unwrap(), (2, m));
    }

    #[test]
    fn ban_set_text_is_canonical() {
        let a: IpNet = "10.0.0.9/24".parse().unwrap();
        let b: IpNet = "192.0.2.1/32".parse().unwrap();
        assert_eq!(ban_set_text([&b, &a, &b]), "10.0.0.0/24\n192.0.2.1/32\n");
    }
}
