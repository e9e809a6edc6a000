//! Fleet-mode persistence (schema 5), on the same database as the rest (SQLite or
//! PostgreSQL) through the [`FleetStore`] trait, opened with [`open`].
//!
//! - Agent side: `fleet_state` (key/value: epoch, acked sequence, ban cursor) and reading its
//!   own local events (`host IS NULL`) by id, the spool of the shipper; the spool cap deletes
//!   the oldest unshipped events only (never decisions).
//! - Server side: `fleet_tokens` (SHA-256 of enrollment secrets, uses left, expiry),
//!   `fleet_agents` (identity with the SHA-256 of its key, revoked flag, live state for
//!   `palisade fleet agents`, the high-water mark of its current epoch), agents' events in
//!   `events` with `host` = the agent's name, stored with the mark in ONE transaction
//!   ([`FleetStore::ingest`]), and the fleet ban log `fleet_decisions` (`seq` ascending).
//!
//! The SQL is written once in PostgreSQL's `$N` form; SQLite reads the same text with `?N`.

use crate::{StoreError, StoreUrl, StoredEvent};

pub mod admin;
pub mod views;
use ipnet::IpNet;
use palisade_core::{Event, Timestamp};

/// One agent as the server knows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FleetAgent {
    /// Agent id (random, hex).
    pub id: String,
    /// Name (unique among agents not revoked).
    pub name: String,
    /// SHA-256 hex of its key.
    #[serde(skip)]
    pub key_hash: String,
    /// Enrolled at.
    pub created: Timestamp,
    /// Cut off.
    pub revoked: bool,
    /// A connection is open (as the server last wrote it).
    pub connected: bool,
    /// Last message or connection.
    pub last_seen: Option<Timestamp>,
    /// Its Palisade version.
    pub version: String,
    /// Protocol version of its connection.
    pub protocol: u16,
    /// Its store epoch.
    pub epoch: u64,
    /// High-water mark of stored events (this epoch).
    pub acked_seq: u64,
    /// Its newest event sequence, as last reported.
    pub head_seq: u64,
    /// Events received and stored.
    pub events: u64,
    /// Events it reported dropped by its spool cap.
    pub gaps: u64,
    /// Its clock minus the server's, in ms (ping/pong).
    pub clock_offset_ms: Option<i64>,
    /// Last fleet ban log entry it reported applied.
    pub ban_cursor: u64,
}

/// Live fields the server updates on an agent's row (`None` = leave as is).
#[derive(Clone, Debug, Default)]
pub struct AgentUpdate {
    /// Connection state.
    pub connected: Option<bool>,
    /// Last seen.
    pub last_seen: Option<Timestamp>,
    /// Software version.
    pub version: Option<String>,
    /// Protocol version.
    pub protocol: Option<u16>,
    /// Newest event sequence.
    pub head_seq: Option<u64>,
    /// Clock offset (ms).
    pub clock_offset_ms: Option<i64>,
    /// Ban cursor.
    pub ban_cursor: Option<u64>,
}

/// One entry of the fleet ban log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FleetLogEntry {
    /// Sequence (0 before append).
    pub seq: i64,
    /// `ban` or `unban`.
    pub action: String,
    /// Target (canonical).
    pub target: IpNet,
    /// Jail or fleet jail.
    pub jail: String,
    /// Why.
    pub reason: String,
    /// When.
    pub created: Timestamp,
    /// End; `None` = permanent.
    pub expires: Option<Timestamp>,
    /// The agent whose local ban this was (`None` = the server's own).
    pub origin: Option<String>,
    /// Agents it applies to (`None` = all).
    pub scope: Option<Vec<String>>,
}

impl FleetLogEntry {
    /// Whether it applies to the agent `name`.
    pub fn applies_to(&self, name: &str) -> bool {
        self.scope
            .as_ref()
            .is_none_or(|s| s.iter().any(|n| n == name))
    }
}

/// An agent counts as connected when the server saw it within this (3 of its 15 s pings).
pub const CONNECTED_WITHIN_US: i64 = 45_000_000;
/// A clock offset beyond this (ms) is flagged `skewed`.
pub const SKEW_LIMIT_MS: i64 = 30_000;

/// One line of `palisade fleet agents` (and of `GET /api/v1/fleet/agents`).
#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq)]
pub struct AgentReport {
    /// Name.
    pub name: String,
    /// Id.
    pub id: String,
    /// Connected now.
    pub connected: bool,
    /// Revoked.
    pub revoked: bool,
    /// Last seen (RFC 3339), if ever.
    pub last_seen: Option<String>,
    /// Palisade version.
    pub version: String,
    /// Protocol version of its connection.
    pub protocol: u16,
    /// Events received.
    pub events: u64,
    /// Events it has that the server has not stored yet (as last reported).
    pub backlog: u64,
    /// Events it dropped (spool cap).
    pub gaps: u64,
    /// Its clock minus the server's (ms), if measured.
    pub clock_offset_ms: Option<i64>,
    /// |offset| over 30 s.
    pub skewed: bool,
    /// Fleet ban log cursor it applied.
    pub ban_cursor: u64,
}

impl AgentReport {
    /// From a stored agent at `now` (connected = the server says so and saw it recently).
    pub fn of(a: &FleetAgent, now: Timestamp) -> AgentReport {
        let recent = a
            .last_seen
            .is_some_and(|t| now.0 - t.0 <= CONNECTED_WITHIN_US);
        AgentReport {
            name: a.name.clone(),
            id: a.id.clone(),
            connected: a.connected && recent && !a.revoked,
            revoked: a.revoked,
            last_seen: a.last_seen.map(|t| t.to_string()),
            version: a.version.clone(),
            protocol: a.protocol,
            events: a.events,
            backlog: a.head_seq.saturating_sub(a.acked_seq),
            gaps: a.gaps,
            clock_offset_ms: a.clock_offset_ms,
            skewed: a.clock_offset_ms.is_some_and(|o| o.abs() > SKEW_LIMIT_MS),
            ban_cursor: a.ban_cursor,
        }
    }
}

/// Every agent (revoked ones included), by name, as reported at `now`.
pub fn agent_reports(
    store: &mut dyn FleetStore,
    now: Timestamp,
) -> Result<Vec<AgentReport>, StoreError> {
    Ok(store
        .agents()?
        .iter()
        .map(|a| AgentReport::of(a, now))
        .collect())
}

/// Why an enrollment was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnrollRefused {
    /// Unknown, used up or expired token.
    #[error("the enrollment token is unknown, used up or expired")]
    BadToken,
    /// The name is taken by an agent not revoked (and no `--force`).
    #[error("an agent named {0:?} is already enrolled (re-enroll with --force to replace it)")]
    NameTaken(String),
}

/// An agent's events as one shipped batch: (sequence, jail, event).
pub type ShippedEvent = (u64, String, Event);

/// One agent's batch in [`FleetStore::ingest_many`].
#[derive(Clone, Copy, Debug)]
pub struct IngestJob<'a> {
    /// The agent's id.
    pub id: &'a str,
    /// The agent's epoch.
    pub epoch: u64,
    /// The batch's last sequence (the new mark).
    pub last_seq: u64,
    /// The batch.
    pub events: &'a [ShippedEvent],
}

/// What [`FleetStore::ingest`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ingested {
    /// Events stored (those above the previous mark).
    pub stored: u64,
    /// The agent's high-water mark now.
    pub mark: u64,
}

/// Fleet persistence (both sides). Synchronous, like [`crate::Store`].
pub trait FleetStore: Send {
    // --- agent side ---
    /// A `fleet_state` value.
    fn state(&mut self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets a `fleet_state` value.
    fn set_state(&mut self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Local events (`host` NULL) with id > `after`, oldest first, at most `limit`.
    fn local_events_after(
        &mut self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// The newest local event id (0 when none).
    fn local_head(&mut self) -> Result<i64, StoreError>;
    /// Spool cap: among local events with id > `after`, deletes the oldest beyond
    /// `max_events` and those older than `older_than`; returns the id range dropped.
    fn spool_trim(
        &mut self,
        after: i64,
        max_events: u64,
        older_than: Timestamp,
    ) -> Result<Option<(i64, i64)>, StoreError>;

    // --- server side ---
    /// Stores an enrollment token (its SHA-256 hex).
    fn token_add(
        &mut self,
        hash: &str,
        uses: u32,
        expires: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<i64, StoreError>;
    /// In one transaction: spends one use of the token and creates the agent (with
    /// `force`, an agent of the same name is revoked first).
    fn enroll(
        &mut self,
        token_hash: &str,
        name: &str,
        agent_id: &str,
        key_hash: &str,
        now: Timestamp,
        force: bool,
    ) -> Result<Result<(), EnrollRefused>, StoreError>;
    /// One agent by id.
    fn agent(&mut self, id: &str) -> Result<Option<FleetAgent>, StoreError>;
    /// All agents, by name then creation.
    fn agents(&mut self) -> Result<Vec<FleetAgent>, StoreError>;
    /// Revokes the (non-revoked) agent named `name`; whether there was one.
    fn revoke(&mut self, name: &str) -> Result<bool, StoreError>;
    /// Updates live fields.
    fn agent_update(&mut self, id: &str, u: &AgentUpdate) -> Result<(), StoreError>;
    /// Marks every agent disconnected (server start).
    fn disconnect_all(&mut self) -> Result<(), StoreError>;
    /// The high-water mark of `epoch` for the agent; a new epoch starts at 0 (and is stored).
    fn high_water(&mut self, id: &str, epoch: u64) -> Result<u64, StoreError>;
    /// Stores a batch and the new mark in ONE transaction; events with seq <= the stored mark
    /// are skipped (a resend after a reconnect). Events are stored with `host` = the agent's
    /// name. An epoch other than the stored one is refused.
    fn ingest(
        &mut self,
        id: &str,
        epoch: u64,
        last_seq: u64,
        events: &[ShippedEvent],
    ) -> Result<Ingested, StoreError>;
    /// Stores several agents' batches, each as [`FleetStore::ingest`] would, in order (a
    /// second batch of one agent sees the first one's mark); the server's group commit: on a
    /// store that overrides it (PostgreSQL) in ONE transaction, all or none, so many small
    /// batches share one commit. By default one transaction per batch, stopping at the first
    /// error (the batches before it are stored).
    fn ingest_many(&mut self, jobs: &[IngestJob<'_>]) -> Result<Vec<Ingested>, StoreError> {
        jobs.iter()
            .map(|j| self.ingest(j.id, j.epoch, j.last_seq, j.events))
            .collect()
    }
    /// Records a gap reported by the agent and moves the mark past it.
    fn gap(&mut self, id: &str, epoch: u64, from: u64, to: u64) -> Result<(), StoreError>;
    /// Events stored per host (`host` not NULL).
    fn host_event_count(&mut self, host: &str) -> Result<u64, StoreError>;
    /// Appends to the fleet ban log; returns the sequence.
    fn log_append(&mut self, e: &FleetLogEntry) -> Result<i64, StoreError>;
    /// Log entries with seq > `after`, oldest first, at most `limit`.
    fn log_since(&mut self, after: i64, limit: u32) -> Result<Vec<FleetLogEntry>, StoreError>;
    /// The newest sequence (0 when empty).
    fn log_head(&mut self) -> Result<i64, StoreError>;
    /// Fleet bans in force at `now`: per target the latest entry, when it is a ban not
    /// expired.
    fn active_bans(&mut self, now: Timestamp) -> Result<Vec<FleetLogEntry>, StoreError>;
    /// Appends several entries in ONE transaction (all or none); returns their sequences.
    fn log_append_all(&mut self, entries: &[FleetLogEntry]) -> Result<Vec<i64>, StoreError>;
    /// Fleet bans in force at `now` for the agent `name` as of the log entry `upto`: per
    /// target the latest entry with seq <= `upto` whose scope includes the agent, when it is a
    /// ban not expired.
    fn active_bans_for(
        &mut self,
        now: Timestamp,
        name: &str,
        upto: i64,
    ) -> Result<Vec<FleetLogEntry>, StoreError>;

    // --- server side: a forwarder's streams of raw lines ---
    /// The mark of a forwarder's `stream` (one file of one jail) under `epoch`: the last line
    /// sequence whose events are stored; 0 for a new stream or another epoch.
    fn stream_mark(&mut self, id: &str, stream: &str, epoch: u64) -> Result<u64, StoreError>;
    /// Events stored for `host` at or after `since`, oldest first, at most `limit` (the
    /// newest ones when there are more).
    fn host_events_since(
        &mut self,
        host: &str,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;
    /// Stores the events made of one batch of lines of a forwarder's `stream` (each event's
    /// sequence is its line's) and the stream's new mark `last_seq` in ONE transaction; events
    /// at or below the stored mark are skipped (a resend). Events are stored with `host` = the
    /// agent's name and counted in its `events`. A new epoch starts the stream's mark at 0.
    fn ingest_stream(
        &mut self,
        id: &str,
        stream: &str,
        epoch: u64,
        last_seq: u64,
        events: &[ShippedEvent],
    ) -> Result<StreamIngested, StoreError>;
    // --- several servers on one store (issue 18; see [`crate::cluster`]) ---
    /// The `fleet_state` value of `key`, storing `value` first when there is none (atomic:
    /// of several servers starting at once, one value wins and all of them read it).
    fn state_init(&mut self, key: &str, value: &str) -> Result<String, StoreError>;
    /// Whether several servers can share this store (PostgreSQL): the ban log is then tailed
    /// with LISTEN/NOTIFY and one server holds the correlator lock.
    fn is_shared(&self) -> bool {
        false
    }
    /// The server's batched liveness write, in ONE transaction: `last_seen = now` for the
    /// agents `seen`, then each of `updates`.
    fn agents_liveness(
        &mut self,
        seen: &[String],
        now: Timestamp,
        updates: &[(String, AgentUpdate)],
    ) -> Result<(), StoreError>;
    /// Ids of the revoked agents (the server's poller cuts their sessions; reading every
    /// agent's row every 500 ms instead cost ~20 % CPU at 10,000 agents).
    fn revoked_agent_ids(&mut self) -> Result<Vec<String>, StoreError>;
    /// The networks of the runtime allowlist (added over the API or the dashboard): the
    /// correlator checks a detection against them as well as the configuration's.
    fn allowlist_nets(&mut self) -> Result<Vec<ipnet::IpNet>, StoreError>;
}

/// What [`FleetStore::ingest_stream`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamIngested {
    /// The stream's mark before: the events with a sequence above it were stored.
    pub before: u64,
    /// Events stored.
    pub stored: u64,
    /// The stream's mark now.
    pub mark: u64,
}

/// The `fleet_state` key of a forwarder stream's mark (value: `"EPOCH MARK"`). No agent-side
/// key (`epoch`, `acked_seq`, `ban_cursor`, `forward/…`) starts with `fwd` and a tab.
fn stream_key(id: &str, stream: &str) -> String {
    format!("fwd\t{id}\t{stream}")
}

fn q_stream_mark(db: &mut dyn Sql, id: &str, stream: &str, epoch: u64) -> Result<u64, StoreError> {
    let Some(v) = q_state(db, &stream_key(id, stream))? else {
        return Ok(0);
    };
    let bad = || StoreError::Corrupt(format!("fleet_state mark of stream {stream:?}: {v:?}"));
    let (e, m) = v.split_once(' ').ok_or_else(bad)?;
    let (e, m): (u64, u64) = (e.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    Ok(if e == epoch { m } else { 0 })
}

/// Inside the ingest transaction: the agent's name, the stream's mark; after writing the
/// events, [`q_stream_done`].
fn q_stream_begin(
    db: &mut dyn Sql,
    id: &str,
    stream: &str,
    epoch: u64,
) -> Result<(String, u64), StoreError> {
    let rows = db.rows(
        "SELECT name FROM fleet_agents WHERE id = $1",
        &[Val::T(id.into())],
    )?;
    let Some(r) = rows.first() else {
        return Err(StoreError::Corrupt(format!("no fleet agent {id}")));
    };
    let name = r[0].t()?;
    Ok((name, q_stream_mark(db, id, stream, epoch)?))
}

fn q_stream_done(
    db: &mut dyn Sql,
    id: &str,
    stream: &str,
    epoch: u64,
    mark: u64,
    stored: u64,
) -> Result<(), StoreError> {
    q_set_state(db, &stream_key(id, stream), &format!("{epoch} {mark}"))?;
    if stored > 0 {
        db.exec(
            "UPDATE fleet_agents SET events = events + $2 WHERE id = $1",
            &[Val::T(id.into()), Val::I(stored as i64)],
        )?;
    }
    Ok(())
}

/// Opens (and migrates) the fleet tables of the store `url` names.
pub fn open(url: &str) -> Result<Box<dyn FleetStore>, StoreError> {
    match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(p) => Ok(Box::new(crate::sqlite::SqliteStore::open(&p)?)),
        StoreUrl::SqliteMemory => Ok(Box::new(crate::sqlite::SqliteStore::open_in_memory()?)),
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres(c) => Ok(Box::new(crate::postgres::PgStore::connect(&c)?)),
        #[cfg(not(feature = "postgres"))]
        StoreUrl::Postgres(_) => Err(StoreError::NotCompiled("postgres")),
    }
}

// ---- a two-backend SQL layer: values, one trait, one implementation per driver ----

#[derive(Clone, Debug)]
enum Val {
    I(i64),
    T(String),
    NullI,
    NullT,
}

impl Val {
    fn i(&self) -> Result<i64, StoreError> {
        match self {
            Val::I(i) => Ok(*i),
            other => Err(StoreError::Corrupt(format!(
                "expected an integer, got {other:?}"
            ))),
        }
    }
    fn oi(&self) -> Result<Option<i64>, StoreError> {
        match self {
            Val::NullI | Val::NullT => Ok(None),
            v => v.i().map(Some),
        }
    }
    fn t(&self) -> Result<String, StoreError> {
        match self {
            Val::T(s) => Ok(s.clone()),
            other => Err(StoreError::Corrupt(format!("expected text, got {other:?}"))),
        }
    }
    fn ot(&self) -> Result<Option<String>, StoreError> {
        match self {
            Val::NullI | Val::NullT => Ok(None),
            v => v.t().map(Some),
        }
    }
}

fn oi(v: Option<i64>) -> Val {
    v.map_or(Val::NullI, Val::I)
}
fn ot(v: Option<String>) -> Val {
    v.map_or(Val::NullT, Val::T)
}

type Rows = Vec<Vec<Val>>;

trait Sql {
    fn exec(&mut self, sql: &str, p: &[Val]) -> Result<u64, StoreError>;
    fn rows(&mut self, sql: &str, p: &[Val]) -> Result<Rows, StoreError>;
    fn one_i(&mut self, sql: &str, p: &[Val]) -> Result<i64, StoreError> {
        self.rows(sql, p)?
            .first()
            .and_then(|r| r.first().cloned())
            .map_or(Ok(0), |v| v.oi().map(|o| o.unwrap_or(0)))
    }
    /// Runs first in every ban log append's transaction (PostgreSQL: serialises appends and
    /// notifies the listeners, see [`crate::cluster`]).
    fn before_log_append(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

struct Lite<'a>(&'a rusqlite::Connection);

fn lite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value};
        Ok(match self {
            Val::I(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            Val::T(s) => ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(s.as_bytes())),
            Val::NullI | Val::NullT => ToSqlOutput::Owned(Value::Null),
        })
    }
}

impl Sql for Lite<'_> {
    fn exec(&mut self, sql: &str, p: &[Val]) -> Result<u64, StoreError> {
        let mut st = self.0.prepare_cached(&lite_sql(sql))?;
        Ok(st.execute(rusqlite::params_from_iter(p.iter()))? as u64)
    }
    fn rows(&mut self, sql: &str, p: &[Val]) -> Result<Rows, StoreError> {
        use rusqlite::types::ValueRef;
        let mut st = self.0.prepare_cached(&lite_sql(sql))?;
        let n = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(p.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i)? {
                    ValueRef::Null => Val::NullI,
                    ValueRef::Integer(x) => Val::I(x),
                    ValueRef::Real(x) => Val::I(x as i64),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Val::T(String::from_utf8_lossy(t).into_owned())
                    }
                });
            }
            out.push(row);
        }
        Ok(out)
    }
}

#[cfg(feature = "postgres")]
struct Pg<'a, C: ::postgres::GenericClient>(&'a mut C);

#[cfg(feature = "postgres")]
fn pg_params(p: &[Val]) -> Vec<&(dyn ::postgres::types::ToSql + Sync)> {
    const NI: Option<i64> = None;
    const NT: Option<String> = None;
    p.iter()
        .map(|v| -> &(dyn ::postgres::types::ToSql + Sync) {
            match v {
                Val::I(i) => i,
                Val::T(s) => s,
                Val::NullI => &NI,
                Val::NullT => &NT,
            }
        })
        .collect()
}

#[cfg(feature = "postgres")]
impl<C: ::postgres::GenericClient> Sql for Pg<'_, C> {
    fn exec(&mut self, sql: &str, p: &[Val]) -> Result<u64, StoreError> {
        Ok(self.0.execute(sql, &pg_params(p))?)
    }
    fn before_log_append(&mut self) -> Result<(), StoreError> {
        crate::cluster::before_log_append(self.0)
    }
    fn rows(&mut self, sql: &str, p: &[Val]) -> Result<Rows, StoreError> {
        use ::postgres::types::Type;
        let rows = self.0.query(sql, &pg_params(p))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut row = Vec::with_capacity(r.len());
            for (i, c) in r.columns().iter().enumerate() {
                let t = c.type_();
                row.push(if *t == Type::BOOL {
                    oi(r.try_get::<_, Option<bool>>(i)?.map(i64::from))
                } else if *t == Type::INT8 {
                    oi(r.try_get::<_, Option<i64>>(i)?)
                } else if *t == Type::INT4 {
                    oi(r.try_get::<_, Option<i32>>(i)?.map(i64::from))
                } else if *t == Type::NUMERIC {
                    return Err(StoreError::Corrupt("unexpected NUMERIC column".into()));
                } else {
                    ot(r.try_get::<_, Option<String>>(i)?)
                });
            }
            out.push(row);
        }
        Ok(out)
    }
}

// ---- the queries, once for both backends ----

const AGENT_COLS: &str = "id, name, key_hash, created, revoked, connected, last_seen, version,
     protocol, epoch, acked_seq, head_seq, events, gaps, clock_offset_ms, ban_cursor";

fn agent_row(r: &[Val]) -> Result<FleetAgent, StoreError> {
    Ok(FleetAgent {
        id: r[0].t()?,
        name: r[1].t()?,
        key_hash: r[2].t()?,
        created: Timestamp(r[3].i()?),
        revoked: r[4].i()? != 0,
        connected: r[5].i()? != 0,
        last_seen: r[6].oi()?.map(Timestamp),
        version: r[7].t()?,
        protocol: r[8].i()? as u16,
        epoch: r[9].i()? as u64,
        acked_seq: r[10].i()? as u64,
        head_seq: r[11].i()? as u64,
        events: r[12].i()? as u64,
        gaps: r[13].i()? as u64,
        clock_offset_ms: r[14].oi()?,
        ban_cursor: r[15].i()? as u64,
    })
}

const LOG_COLS: &str = "seq, action, target, jail, reason, created, expires, origin, scope";

fn log_row(r: &[Val]) -> Result<FleetLogEntry, StoreError> {
    let target = r[2].t()?;
    let scope = match r[8].ot()? {
        Some(s) => Some(
            serde_json::from_str::<Vec<String>>(&s)
                .map_err(|e| StoreError::Corrupt(format!("fleet_decisions.scope: {e}")))?,
        ),
        None => None,
    };
    Ok(FleetLogEntry {
        seq: r[0].i()?,
        action: r[1].t()?,
        target: target
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("fleet_decisions.target {target:?}")))?,
        jail: r[3].t()?,
        reason: r[4].t()?,
        created: Timestamp(r[5].i()?),
        expires: r[6].oi()?.map(Timestamp),
        origin: r[7].ot()?,
        scope,
    })
}

fn q_state(db: &mut dyn Sql, key: &str) -> Result<Option<String>, StoreError> {
    let rows = db.rows(
        "SELECT value FROM fleet_state WHERE key = $1",
        &[Val::T(key.into())],
    )?;
    rows.first().map(|r| r[0].t()).transpose()
}

fn q_set_state(db: &mut dyn Sql, key: &str, value: &str) -> Result<(), StoreError> {
    db.exec(
        "INSERT INTO fleet_state (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[Val::T(key.into()), Val::T(value.into())],
    )?;
    Ok(())
}

fn q_host_events(
    db: &mut dyn Sql,
    host: &str,
    since: Timestamp,
    limit: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    let rows = db.rows(
        "SELECT id, time, jail, filter, rule, ip, failure, username, fields, evidence
         FROM events WHERE host = $1 AND time >= $2 ORDER BY id DESC LIMIT $3",
        &[
            Val::T(host.into()),
            Val::I(since.0),
            Val::I(i64::from(limit)),
        ],
    )?;
    let mut out = rows
        .iter()
        .map(|r| {
            crate::common::RawEvent {
                id: r[0].i()?,
                time: r[1].i()?,
                jail: r[2].t()?,
                filter: r[3].t()?,
                rule: r[4].t()?,
                ip: r[5].t()?,
                failure: r[6].i()? != 0,
                user: r[7].ot()?,
                fields: r[8].ot()?.unwrap_or_else(|| "{}".into()),
                evidence: r[9].ot()?,
            }
            .decode()
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.reverse();
    Ok(out)
}

fn q_local_events(
    db: &mut dyn Sql,
    after: i64,
    limit: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    let rows = db.rows(
        "SELECT id, time, jail, filter, rule, ip, failure, username, fields, evidence
         FROM events WHERE id > $1 AND host IS NULL ORDER BY id LIMIT $2",
        &[Val::I(after), Val::I(i64::from(limit))],
    )?;
    rows.iter()
        .map(|r| {
            crate::common::RawEvent {
                id: r[0].i()?,
                time: r[1].i()?,
                jail: r[2].t()?,
                filter: r[3].t()?,
                rule: r[4].t()?,
                ip: r[5].t()?,
                failure: r[6].i()? != 0,
                user: r[7].ot()?,
                fields: r[8].ot()?.unwrap_or_else(|| "{}".into()),
                evidence: r[9].ot()?,
            }
            .decode()
        })
        .collect()
}

fn q_spool_trim(
    db: &mut dyn Sql,
    after: i64,
    max_events: u64,
    older_than: Timestamp,
) -> Result<Option<(i64, i64)>, StoreError> {
    let n = db.one_i(
        "SELECT COUNT(*) FROM events WHERE id > $1 AND host IS NULL",
        &[Val::I(after)],
    )? as u64;
    let mut cut = 0i64;
    if n > max_events {
        let skip = (n - max_events - 1) as i64;
        cut = db.one_i(
            "SELECT id FROM events WHERE id > $1 AND host IS NULL ORDER BY id LIMIT 1 OFFSET $2",
            &[Val::I(after), Val::I(skip)],
        )?;
    }
    let old = db.one_i(
        "SELECT COALESCE(MAX(id), 0) FROM events WHERE id > $1 AND host IS NULL AND time < $2",
        &[Val::I(after), Val::I(older_than.0)],
    )?;
    cut = cut.max(old);
    if cut <= after {
        return Ok(None);
    }
    db.exec(
        "DELETE FROM events WHERE id > $1 AND id <= $2 AND host IS NULL",
        &[Val::I(after), Val::I(cut)],
    )?;
    Ok(Some((after + 1, cut)))
}

fn q_enroll(
    db: &mut dyn Sql,
    token_hash: &str,
    name: &str,
    agent_id: &str,
    key_hash: &str,
    now: Timestamp,
    force: bool,
) -> Result<Result<(), EnrollRefused>, StoreError> {
    let spent = db.exec(
        "UPDATE fleet_tokens SET uses_left = uses_left - 1
         WHERE token_hash = $1 AND uses_left > 0 AND (expires IS NULL OR expires > $2)",
        &[Val::T(token_hash.into()), Val::I(now.0)],
    )?;
    if spent != 1 {
        return Ok(Err(EnrollRefused::BadToken));
    }
    let taken = db.one_i(
        "SELECT COUNT(*) FROM fleet_agents WHERE name = $1 AND revoked = 0",
        &[Val::T(name.into())],
    )?;
    if taken > 0 {
        if !force {
            return Ok(Err(EnrollRefused::NameTaken(name.into())));
        }
        db.exec(
            "UPDATE fleet_agents SET revoked = 1, connected = 0 WHERE name = $1 AND revoked = 0",
            &[Val::T(name.into())],
        )?;
    }
    db.exec(
        "INSERT INTO fleet_agents (id, name, key_hash, created) VALUES ($1, $2, $3, $4)",
        &[
            Val::T(agent_id.into()),
            Val::T(name.into()),
            Val::T(key_hash.into()),
            Val::I(now.0),
        ],
    )?;
    Ok(Ok(()))
}

fn q_agent_update(db: &mut dyn Sql, id: &str, u: &AgentUpdate) -> Result<(), StoreError> {
    let mut sets = Vec::new();
    let mut p = vec![Val::T(id.into())];
    let mut add = |col: &str, v: Val, sets: &mut Vec<String>| {
        p.push(v);
        sets.push(format!("{col} = ${}", p.len()));
    };
    if let Some(c) = u.connected {
        add("connected", Val::I(i64::from(c)), &mut sets);
    }
    if let Some(t) = u.last_seen {
        add("last_seen", Val::I(t.0), &mut sets);
    }
    if let Some(v) = &u.version {
        add("version", Val::T(v.clone()), &mut sets);
    }
    if let Some(v) = u.protocol {
        add("protocol", Val::I(i64::from(v)), &mut sets);
    }
    if let Some(v) = u.head_seq {
        add("head_seq", Val::I(v as i64), &mut sets);
    }
    if let Some(v) = u.clock_offset_ms {
        add("clock_offset_ms", Val::I(v), &mut sets);
    }
    if let Some(v) = u.ban_cursor {
        add("ban_cursor", Val::I(v as i64), &mut sets);
    }
    if sets.is_empty() {
        return Ok(());
    }
    db.exec(
        &format!("UPDATE fleet_agents SET {} WHERE id = $1", sets.join(", ")),
        &p,
    )?;
    Ok(())
}

// ---- the server's batched liveness write (issue 18: idle cost) ----

/// Agents per `last_seen` statement (well under SQLite's bound-parameter limit).
const LIVENESS_CHUNK: usize = 500;

fn q_liveness(
    db: &mut dyn Sql,
    seen: &[String],
    now: Timestamp,
    updates: &[(String, AgentUpdate)],
) -> Result<(), StoreError> {
    for chunk in seen.chunks(LIVENESS_CHUNK) {
        let mut p = Vec::with_capacity(chunk.len() + 1);
        p.push(Val::I(now.0));
        p.extend(chunk.iter().map(|id| Val::T(id.clone())));
        let list: Vec<String> = (2..=p.len()).map(|i| format!("${i}")).collect();
        db.exec(
            &format!(
                "UPDATE fleet_agents SET last_seen = $1 WHERE id IN ({})",
                list.join(", ")
            ),
            &p,
        )?;
    }
    for (id, u) in updates {
        q_agent_update(db, id, u)?;
    }
    Ok(())
}

fn q_revoked_ids(db: &mut dyn Sql) -> Result<Vec<String>, StoreError> {
    db.rows("SELECT id FROM fleet_agents WHERE revoked = 1", &[])?
        .iter()
        .map(|r| r[0].t())
        .collect()
}

fn q_high_water(db: &mut dyn Sql, id: &str, epoch: u64) -> Result<u64, StoreError> {
    let rows = db.rows(
        "SELECT epoch, acked_seq FROM fleet_agents WHERE id = $1",
        &[Val::T(id.into())],
    )?;
    let Some(r) = rows.first() else {
        return Err(StoreError::Corrupt(format!("no fleet agent {id}")));
    };
    if r[0].i()? as u64 == epoch {
        return Ok(r[1].i()? as u64);
    }
    db.exec(
        "UPDATE fleet_agents SET epoch = $2, acked_seq = 0 WHERE id = $1",
        &[Val::T(id.into()), Val::I(epoch as i64)],
    )?;
    Ok(0)
}

/// Reads the mark (checking the epoch) and the agent's name inside an ingest transaction.
fn q_mark_for_ingest(db: &mut dyn Sql, id: &str, epoch: u64) -> Result<(u64, String), StoreError> {
    let rows = db.rows(
        "SELECT epoch, acked_seq, name FROM fleet_agents WHERE id = $1",
        &[Val::T(id.into())],
    )?;
    let Some(r) = rows.first() else {
        return Err(StoreError::Corrupt(format!("no fleet agent {id}")));
    };
    if r[0].i()? as u64 != epoch {
        return Err(StoreError::Corrupt(format!(
            "batch of epoch {epoch} for agent {id}, whose current epoch is {}",
            r[0].i()?
        )));
    }
    Ok((r[1].i()? as u64, r[2].t()?))
}

fn q_set_mark(db: &mut dyn Sql, id: &str, mark: u64, stored: u64) -> Result<(), StoreError> {
    db.exec(
        "UPDATE fleet_agents SET acked_seq = $2, events = events + $3 WHERE id = $1",
        &[
            Val::T(id.into()),
            Val::I(mark as i64),
            Val::I(stored as i64),
        ],
    )?;
    Ok(())
}

fn q_log_append(db: &mut dyn Sql, e: &FleetLogEntry) -> Result<i64, StoreError> {
    db.before_log_append()?;
    let scope = e
        .scope
        .as_ref()
        .map(|s| serde_json::to_string(s).expect("a list of names serialises"));
    let rows = db.rows(
        "INSERT INTO fleet_decisions (action, target, jail, reason, created, expires, origin, scope)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
        &[
            Val::T(e.action.clone()),
            Val::T(crate::common::canonical_net(&e.target).to_string()),
            Val::T(crate::common::clean(&e.jail).into_owned()),
            Val::T(crate::common::clean(&e.reason).into_owned()),
            Val::I(e.created.0),
            oi(e.expires.map(|t| t.0)),
            ot(e.origin.clone()),
            ot(scope),
        ],
    )?;
    rows.first()
        .ok_or_else(|| StoreError::Corrupt("INSERT … RETURNING gave no row".into()))?[0]
        .i()
}

fn q_log_since(db: &mut dyn Sql, after: i64, limit: u32) -> Result<Vec<FleetLogEntry>, StoreError> {
    db.rows(
        &format!("SELECT {LOG_COLS} FROM fleet_decisions WHERE seq > $1 ORDER BY seq LIMIT $2"),
        &[Val::I(after), Val::I(i64::from(limit))],
    )?
    .iter()
    .map(|r| log_row(r))
    .collect()
}

fn q_active_bans(db: &mut dyn Sql, now: Timestamp) -> Result<Vec<FleetLogEntry>, StoreError> {
    db.rows(
        &format!(
            "SELECT {LOG_COLS} FROM fleet_decisions d
             WHERE seq = (SELECT MAX(seq) FROM fleet_decisions x WHERE x.target = d.target)
               AND action = 'ban' AND (expires IS NULL OR expires > $1)
             ORDER BY seq"
        ),
        &[Val::I(now.0)],
    )?
    .iter()
    .map(|r| log_row(r))
    .collect()
}

fn q_active_bans_for(
    db: &mut dyn Sql,
    now: Timestamp,
    name: &str,
    upto: i64,
) -> Result<Vec<FleetLogEntry>, StoreError> {
    // Candidates: unscoped entries and those whose JSON scope contains the quoted name (a
    // superset: LIKE wildcards in a name only add rows, which `applies_to` then drops).
    let quoted = serde_json::to_string(name).expect("a string serialises");
    let rows = db.rows(
        &format!(
            "SELECT {LOG_COLS} FROM fleet_decisions
             WHERE seq <= $2 AND (scope IS NULL OR scope LIKE $1) ORDER BY seq"
        ),
        &[Val::T(format!("%{quoted}%")), Val::I(upto)],
    )?;
    let mut latest: std::collections::HashMap<IpNet, FleetLogEntry> =
        std::collections::HashMap::new();
    for r in &rows {
        let e = log_row(r)?;
        if e.applies_to(name) {
            latest.insert(e.target, e);
        }
    }
    let mut out: Vec<FleetLogEntry> = latest
        .into_values()
        .filter(|e| e.action == "ban" && e.expires.is_none_or(|t| t > now))
        .collect();
    out.sort_by_key(|e| e.seq);
    Ok(out)
}

/// The trait over a [`Sql`] connection: every method but `ingest`, which needs the backend's
/// own event writer.
macro_rules! fleet_common {
    ($db:expr, $tx:expr) => {
        fn allowlist_nets(&mut self) -> Result<Vec<ipnet::IpNet>, StoreError> {
            Ok(crate::Store::allowlist(self)?
                .into_iter()
                .map(|a| a.net)
                .collect())
        }
        fn state(&mut self, key: &str) -> Result<Option<String>, StoreError> {
            q_state(&mut $db(self)?, key)
        }
        fn set_state(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
            q_set_state(&mut $db(self)?, key, value)
        }
        fn local_events_after(
            &mut self,
            after: i64,
            limit: u32,
        ) -> Result<Vec<StoredEvent>, StoreError> {
            q_local_events(&mut $db(self)?, after, limit)
        }
        fn local_head(&mut self) -> Result<i64, StoreError> {
            $db(self)?.one_i(
                "SELECT COALESCE(MAX(id), 0) FROM events WHERE host IS NULL",
                &[],
            )
        }
        fn spool_trim(
            &mut self,
            after: i64,
            max_events: u64,
            older_than: Timestamp,
        ) -> Result<Option<(i64, i64)>, StoreError> {
            $tx(self, &mut |db: &mut dyn Sql| {
                q_spool_trim(db, after, max_events, older_than)
            })
        }
        fn token_add(
            &mut self,
            hash: &str,
            uses: u32,
            expires: Option<Timestamp>,
            now: Timestamp,
        ) -> Result<i64, StoreError> {
            let rows = $db(self)?.rows(
                "INSERT INTO fleet_tokens (token_hash, uses_left, created, expires)
                 VALUES ($1, $2, $3, $4) RETURNING id",
                &[
                    Val::T(hash.into()),
                    Val::I(i64::from(uses)),
                    Val::I(now.0),
                    oi(expires.map(|t| t.0)),
                ],
            )?;
            rows.first()
                .ok_or_else(|| StoreError::Corrupt("INSERT … RETURNING gave no row".into()))?[0]
                .i()
        }
        fn enroll(
            &mut self,
            token_hash: &str,
            name: &str,
            agent_id: &str,
            key_hash: &str,
            now: Timestamp,
            force: bool,
        ) -> Result<Result<(), EnrollRefused>, StoreError> {
            $tx(self, &mut |db: &mut dyn Sql| {
                q_enroll(db, token_hash, name, agent_id, key_hash, now, force)
            })
        }
        fn agent(&mut self, id: &str) -> Result<Option<FleetAgent>, StoreError> {
            let rows = $db(self)?.rows(
                &format!("SELECT {AGENT_COLS} FROM fleet_agents WHERE id = $1"),
                &[Val::T(id.into())],
            )?;
            rows.first().map(|r| agent_row(r)).transpose()
        }
        fn agents(&mut self) -> Result<Vec<FleetAgent>, StoreError> {
            $db(self)?
                .rows(
                    &format!("SELECT {AGENT_COLS} FROM fleet_agents ORDER BY name, created"),
                    &[],
                )?
                .iter()
                .map(|r| agent_row(r))
                .collect()
        }
        fn revoke(&mut self, name: &str) -> Result<bool, StoreError> {
            Ok($db(self)?.exec(
                "UPDATE fleet_agents SET revoked = 1 WHERE name = $1 AND revoked = 0",
                &[Val::T(name.into())],
            )? > 0)
        }
        fn agent_update(&mut self, id: &str, u: &AgentUpdate) -> Result<(), StoreError> {
            q_agent_update(&mut $db(self)?, id, u)
        }
        fn disconnect_all(&mut self) -> Result<(), StoreError> {
            $db(self)?.exec("UPDATE fleet_agents SET connected = 0", &[])?;
            Ok(())
        }
        fn high_water(&mut self, id: &str, epoch: u64) -> Result<u64, StoreError> {
            $tx(self, &mut |db: &mut dyn Sql| q_high_water(db, id, epoch))
        }
        fn gap(&mut self, id: &str, epoch: u64, from: u64, to: u64) -> Result<(), StoreError> {
            $tx(self, &mut |db: &mut dyn Sql| {
                let (mark, _) = q_mark_for_ingest(db, id, epoch)?;
                let dropped = to.saturating_sub(from.max(mark + 1) - 1);
                db.exec(
                    "UPDATE fleet_agents SET gaps = gaps + $2, acked_seq = $3 WHERE id = $1",
                    &[
                        Val::T(id.into()),
                        Val::I(dropped as i64),
                        Val::I(mark.max(to) as i64),
                    ],
                )?;
                Ok(())
            })
        }
        fn host_event_count(&mut self, host: &str) -> Result<u64, StoreError> {
            Ok($db(self)?.one_i(
                "SELECT COUNT(*) FROM events WHERE host = $1",
                &[Val::T(host.into())],
            )? as u64)
        }
        fn log_append(&mut self, e: &FleetLogEntry) -> Result<i64, StoreError> {
            // In a transaction: on PostgreSQL the append lock is held until the commit.
            $tx(self, &mut |db: &mut dyn Sql| q_log_append(db, e))
        }
        fn log_since(&mut self, after: i64, limit: u32) -> Result<Vec<FleetLogEntry>, StoreError> {
            q_log_since(&mut $db(self)?, after, limit)
        }
        fn log_head(&mut self) -> Result<i64, StoreError> {
            $db(self)?.one_i("SELECT COALESCE(MAX(seq), 0) FROM fleet_decisions", &[])
        }
        fn active_bans(&mut self, now: Timestamp) -> Result<Vec<FleetLogEntry>, StoreError> {
            q_active_bans(&mut $db(self)?, now)
        }
        fn log_append_all(&mut self, entries: &[FleetLogEntry]) -> Result<Vec<i64>, StoreError> {
            $tx(self, &mut |db: &mut dyn Sql| {
                entries.iter().map(|e| q_log_append(db, e)).collect()
            })
        }
        fn active_bans_for(
            &mut self,
            now: Timestamp,
            name: &str,
            upto: i64,
        ) -> Result<Vec<FleetLogEntry>, StoreError> {
            q_active_bans_for(&mut $db(self)?, now, name, upto)
        }
        fn stream_mark(&mut self, id: &str, stream: &str, epoch: u64) -> Result<u64, StoreError> {
            q_stream_mark(&mut $db(self)?, id, stream, epoch)
        }
        fn host_events_since(
            &mut self,
            host: &str,
            since: Timestamp,
            limit: u32,
        ) -> Result<Vec<StoredEvent>, StoreError> {
            q_host_events(&mut $db(self)?, host, since, limit)
        }

        // --- several servers on one store (issue 18) ---
        fn state_init(&mut self, key: &str, value: &str) -> Result<String, StoreError> {
            $tx(self, &mut |db: &mut dyn Sql| {
                db.exec(
                    "INSERT INTO fleet_state (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                    &[Val::T(key.into()), Val::T(value.into())],
                )?;
                let rows = db.rows(
                    "SELECT value FROM fleet_state WHERE key = $1",
                    &[Val::T(key.into())],
                )?;
                rows.first()
                    .ok_or_else(|| StoreError::Corrupt(format!("fleet_state {key} vanished")))?[0]
                    .t()
            })
        }
    };
}

/// A batch's events above `mark` grouped by jail (the event writers take one jail at a time),
/// keeping order; and how many there are.
fn fresh_by_jail(events: &[ShippedEvent], mark: u64) -> (Vec<(&str, Vec<Event>)>, u64) {
    let mut out: Vec<(&str, Vec<Event>)> = Vec::new();
    let mut n = 0;
    for (_, jail, e) in events.iter().filter(|e| e.0 > mark) {
        n += 1;
        match out.iter_mut().find(|(j, _)| *j == jail.as_str()) {
            Some((_, v)) => v.push(e.clone()),
            None => out.push((jail.as_str(), vec![e.clone()])),
        }
    }
    (out, n)
}

mod lite_impl {
    use super::*;
    use crate::sqlite::SqliteStore;
    use rusqlite::TransactionBehavior;

    fn db(s: &mut SqliteStore) -> Result<Lite<'_>, StoreError> {
        Ok(Lite(&s.conn))
    }

    /// Writes a batch's events above `mark` as `host`'s; returns how many.
    fn write_fresh(
        tx: &rusqlite::Transaction<'_>,
        events: &[ShippedEvent],
        mark: u64,
        host: &str,
    ) -> Result<u64, StoreError> {
        let (by_jail, n) = fresh_by_jail(events, mark);
        for (jail, evs) in by_jail {
            crate::sqlite::write_events(tx, jail, &evs, Some(host))?;
        }
        Ok(n)
    }

    fn tx<T>(
        s: &mut SqliteStore,
        f: &mut dyn FnMut(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = s
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&mut Lite(&tx))?;
        tx.commit()?;
        Ok(out)
    }

    impl FleetStore for SqliteStore {
        fleet_common!(db, tx);

        fn ingest(
            &mut self,
            id: &str,
            epoch: u64,
            last_seq: u64,
            events: &[ShippedEvent],
        ) -> Result<Ingested, StoreError> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (mark, host) = q_mark_for_ingest(&mut Lite(&tx), id, epoch)?;
            let stored = write_fresh(&tx, events, mark, &host)?;
            let new_mark = mark.max(last_seq);
            q_set_mark(&mut Lite(&tx), id, new_mark, stored)?;
            tx.commit()?;
            Ok(Ingested {
                stored,
                mark: new_mark,
            })
        }

        fn ingest_stream(
            &mut self,
            id: &str,
            stream: &str,
            epoch: u64,
            last_seq: u64,
            events: &[ShippedEvent],
        ) -> Result<StreamIngested, StoreError> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (host, mark) = q_stream_begin(&mut Lite(&tx), id, stream, epoch)?;
            let stored = write_fresh(&tx, events, mark, &host)?;
            let new_mark = mark.max(last_seq);
            q_stream_done(&mut Lite(&tx), id, stream, epoch, new_mark, stored)?;
            tx.commit()?;
            Ok(StreamIngested {
                before: mark,
                stored,
                mark: new_mark,
            })
        }

        fn agents_liveness(
            &mut self,
            seen: &[String],
            now: Timestamp,
            updates: &[(String, AgentUpdate)],
        ) -> Result<(), StoreError> {
            tx(self, &mut |db: &mut dyn Sql| {
                q_liveness(db, seen, now, updates)
            })
        }

        fn revoked_agent_ids(&mut self) -> Result<Vec<String>, StoreError> {
            q_revoked_ids(&mut db(self)?)
        }
    }
}

#[cfg(feature = "postgres")]
mod pg_impl {
    use super::*;
    use crate::postgres::PgStore;
    use std::collections::HashMap;

    fn db(s: &mut PgStore) -> Result<Pg<'_, ::postgres::Client>, StoreError> {
        s.ensure_connected()?;
        Ok(Pg(&mut s.client))
    }

    /// Writes a batch's events above `mark` as `host`'s; returns how many.
    fn write_fresh(
        tx: &mut ::postgres::Transaction<'_>,
        stmts: &crate::postgres::EventStatements,
        events: &[ShippedEvent],
        mark: u64,
        host: &str,
    ) -> Result<u64, StoreError> {
        let (by_jail, n) = fresh_by_jail(events, mark);
        for (jail, evs) in by_jail {
            crate::postgres::write_events(
                tx,
                stmts,
                jail,
                &evs,
                crate::postgres::Hosts::All(Some(host)),
            )?;
        }
        Ok(n)
    }

    fn tx<T>(
        s: &mut PgStore,
        f: &mut dyn FnMut(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        s.ensure_connected()?;
        let mut tx = s.client.transaction()?;
        let out = f(&mut Pg(&mut tx))?;
        tx.commit()?;
        Ok(out)
    }

    impl FleetStore for PgStore {
        fleet_common!(db, tx);

        fn is_shared(&self) -> bool {
            true
        }

        fn ingest(
            &mut self,
            id: &str,
            epoch: u64,
            last_seq: u64,
            events: &[ShippedEvent],
        ) -> Result<Ingested, StoreError> {
            // Partitions for the batch's days first (retention's on-demand partitions; each
            // in its own short transaction), like `record_events`.
            self.ensure_partitions(events.iter().map(|e| e.2.time.0));
            let stmts = self.event_statements()?;
            let mut tx = self.client.transaction()?;
            // The agent's row is locked for the transaction: two connections of one agent
            // (a reconnect racing the old one) cannot both store the same range.
            tx.execute(
                "SELECT 1 FROM fleet_agents WHERE id = $1 FOR UPDATE",
                &[&id],
            )?;
            let (mark, host) = q_mark_for_ingest(&mut Pg(&mut tx), id, epoch)?;
            let stored = write_fresh(&mut tx, &stmts, events, mark, &host)?;
            let new_mark = mark.max(last_seq);
            q_set_mark(&mut Pg(&mut tx), id, new_mark, stored)?;
            tx.commit()?;
            Ok(Ingested {
                stored,
                mark: new_mark,
            })
        }

        fn ingest_many(&mut self, jobs: &[IngestJob<'_>]) -> Result<Vec<Ingested>, StoreError> {
            if jobs.len() == 1 {
                let j = &jobs[0];
                return Ok(vec![self.ingest(j.id, j.epoch, j.last_seq, j.events)?]);
            }
            self.ensure_partitions(
                jobs.iter()
                    .flat_map(|j| j.events.iter().map(|e| e.2.time.0)),
            );
            let stmts = self.event_statements()?;
            let mut tx = self.client.transaction()?;
            // Every agent's row locked at once, in id order (two groups never wait on each
            // other in a cycle), with its epoch, mark and name: one round trip for the group.
            let mut ids: Vec<&str> = jobs.iter().map(|j| j.id).collect();
            ids.sort_unstable();
            ids.dedup();
            let rows = tx.query(
                "SELECT id, epoch, acked_seq, name FROM fleet_agents
                 WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &[&ids],
            )?;
            // Per agent: epoch, current mark, name, events stored by this group.
            let mut agents: HashMap<String, (i64, u64, String, u64)> = HashMap::new();
            for r in &rows {
                let acked: i64 = r.try_get(2)?;
                agents.insert(
                    r.try_get(0)?,
                    (r.try_get(1)?, acked as u64, r.try_get(3)?, 0),
                );
            }
            let mut out = Vec::with_capacity(jobs.len());
            // Per jail (in name order, so concurrent groups lock address rows alike): the
            // fresh events and the agent each came from.
            let mut jails: std::collections::BTreeMap<&str, (Vec<Event>, Vec<&str>)> =
                Default::default();
            for j in jobs {
                let Some(a) = agents.get_mut(j.id) else {
                    return Err(StoreError::Corrupt(format!("no fleet agent {}", j.id)));
                };
                if a.0 as u64 != j.epoch {
                    return Err(StoreError::Corrupt(format!(
                        "batch of epoch {} for agent {}, whose current epoch is {}",
                        j.epoch, j.id, a.0
                    )));
                }
                let mark = a.1;
                let mut stored = 0u64;
                for (seq, jail, e) in j.events {
                    if *seq > mark {
                        let (evs, hosts) = jails.entry(jail.as_str()).or_default();
                        evs.push(e.clone());
                        hosts.push(j.id);
                        stored += 1;
                    }
                }
                a.1 = mark.max(j.last_seq);
                a.3 += stored;
                out.push(Ingested { stored, mark: a.1 });
            }
            for (jail, (evs, from)) in &jails {
                let hosts: Vec<&str> = from
                    .iter()
                    .map(|id| agents.get(*id).map_or("", |a| a.2.as_str()))
                    .collect();
                crate::postgres::write_events(
                    &mut tx,
                    &stmts,
                    jail,
                    evs,
                    crate::postgres::Hosts::Each(&hosts),
                )?;
            }
            let (mut mid, mut mmark, mut mn) = (Vec::new(), Vec::new(), Vec::new());
            for id in &ids {
                if let Some(a) = agents.get(*id) {
                    mid.push(*id);
                    mmark.push(a.1 as i64);
                    mn.push(a.3 as i64);
                }
            }
            tx.execute(
                "UPDATE fleet_agents SET acked_seq = u.mark, events = fleet_agents.events + u.n
                 FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) AS u(id, mark, n)
                 WHERE fleet_agents.id = u.id",
                &[&mid, &mmark, &mn],
            )?;
            tx.commit()?;
            Ok(out)
        }

        fn ingest_stream(
            &mut self,
            id: &str,
            stream: &str,
            epoch: u64,
            last_seq: u64,
            events: &[ShippedEvent],
        ) -> Result<StreamIngested, StoreError> {
            self.ensure_partitions(events.iter().map(|e| e.2.time.0));
            let stmts = self.event_statements()?;
            let mut tx = self.client.transaction()?;
            // As in `ingest`: the agent's row is locked, so two connections of one forwarder
            // cannot both store the same lines.
            tx.execute(
                "SELECT 1 FROM fleet_agents WHERE id = $1 FOR UPDATE",
                &[&id],
            )?;
            let (host, mark) = q_stream_begin(&mut Pg(&mut tx), id, stream, epoch)?;
            let stored = write_fresh(&mut tx, &stmts, events, mark, &host)?;
            let new_mark = mark.max(last_seq);
            q_stream_done(&mut Pg(&mut tx), id, stream, epoch, new_mark, stored)?;
            tx.commit()?;
            Ok(StreamIngested {
                before: mark,
                stored,
                mark: new_mark,
            })
        }

        fn agents_liveness(
            &mut self,
            seen: &[String],
            now: Timestamp,
            updates: &[(String, AgentUpdate)],
        ) -> Result<(), StoreError> {
            tx(self, &mut |db: &mut dyn Sql| {
                q_liveness(db, seen, now, updates)
            })
        }

        fn revoked_agent_ids(&mut self) -> Result<Vec<String>, StoreError> {
            q_revoked_ids(&mut db(self)?)
        }
    }
}
