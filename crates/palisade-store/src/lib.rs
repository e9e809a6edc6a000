//! Persistence of events, decisions and IP history behind one [`Store`] trait.
//!
//! Backends: SQLite (embedded default, WAL) and PostgreSQL (by URL). Both apply forward-only
//! migrations on open and refuse a database whose schema is newer than this binary.
//! The same storage story test runs against both (`tests/story.rs`; PostgreSQL under
//! `scripts/with-postgres.sh`).
//!
//! Open with [`open`] and a URL (forms: see [`StoreUrl`]).
//!
//! # Data model (identical on both backends)
//!
//! - Times are `i64` microseconds since the Unix epoch ([`Timestamp`]'s representation).
//! - Addresses are stored as canonical text (IPv4-mapped IPv6 as IPv4); `ip_history` also keeps
//!   a sortable binary key (family byte + address bytes) so a network is a key range.
//! - Decision targets are stored canonical (host bits cleared, mapped IPv6 as IPv4); "decisions
//!   covering X" looks up the indexed `target` column for each of X's supernets.
//! - `events`: id, time, jail, filter, rule, ip, failure, username, fields (JSON object text, in
//!   capture order), evidence (sampled, see [`EVIDENCE_SAMPLE`]). Indexed by time, (ip, time),
//!   (jail, time), (ip, id). On PostgreSQL partitioned by UTC day of `time` (`events_pYYYYMMDD`
//!   plus a default partition), created ahead and on demand; see [`Store::maintain`].
//! - `decisions`: id, target, jail, origin, reason, created, expires (NULL = permanent),
//!   simulated, level, status (`active`/`expired`/`revoked`), updated (last status change).
//!   Indexed by (status, expires), (target, created), created.
//! - `ip_history`: ip (key), ip_key, first_seen, last_seen, events, failures, times_banned, and
//!   the evidence sampling state: all-time totals, written in the same transaction as the
//!   events, so they stay exact when retention removes old events.
//! - `schema_version`: one row per applied migration.
//!
//! Text is stored as given except NUL, which becomes U+FFFD (PostgreSQL cannot store NUL in
//! TEXT; SQLite does the same so both backends read back identical values).

#![warn(missing_docs)]

use ipnet::IpNet;
use palisade_core::{Decision, Event, Origin, Timestamp};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

pub mod audit;
pub mod cluster;
mod common;
pub mod fleet;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

/// How many events per address per hour (UTC hour buckets of event time) keep their evidence
/// line; later ones in that hour are stored with `evidence` NULL (read back as empty).
///
/// The counter lives in the `ip_history` row of the address (columns `sample_hour`,
/// `sample_count`), so sampling is exact across batches, restarts and processes sharing the
/// database, and costs nothing beyond the history upsert each batch already does. Events that
/// arrive for an hour earlier than the one being sampled are stored without evidence.
pub const EVIDENCE_SAMPLE: u32 = 5;

/// One UTC day, in microseconds (the PostgreSQL event partition size).
pub const DAY_MICROS: i64 = 86_400 * Timestamp::MICROS;

/// Days after today whose PostgreSQL event partitions [`Store::maintain`] creates ahead.
pub const PARTITIONS_AHEAD: i64 = 2;

/// Event rows SQLite retention deletes per transaction.
pub const RETENTION_BATCH: usize = 10_000;

/// Batches one [`Store::maintain`] call deletes at most (of events, then of timeline rows);
/// past it the call returns with [`Maintenance::more`] set, so a large backlog (the first run
/// after an upgrade) is worked off in calls that each end soon, and a shutdown waits for one.
pub const RETENTION_MAX_BATCHES: usize = 50;

/// Pause between two SQLite retention batches, so the daemon's writer gets the lock.
pub const RETENTION_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// The instant before which [`Store::maintain`] removes events: the start of the UTC day that
/// holds `now - retention`, so both backends remove whole days (PostgreSQL drops a day's
/// partition) and an event is kept at least `retention`, at most a day longer. `None` when
/// `retention` is `None` or zero (keep forever).
pub fn retention_cutoff(
    now: Timestamp,
    retention: Option<std::time::Duration>,
) -> Option<Timestamp> {
    let keep = retention.filter(|d| !d.is_zero())?;
    let t = now.minus(keep).0;
    Some(Timestamp(t - t.rem_euclid(DAY_MICROS)))
}

/// What one [`Store::maintain`] run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Maintenance {
    /// Events before this instant were removed (`None`: retention is off).
    pub cutoff: Option<Timestamp>,
    /// Event rows deleted one by one (SQLite; on PostgreSQL, the default partition's).
    pub rows_deleted: u64,
    /// Per-address hourly timeline rows deleted with them.
    pub timeline_rows_deleted: u64,
    /// Day partitions dropped (PostgreSQL).
    pub partitions_dropped: u64,
    /// Day partitions created (PostgreSQL).
    pub partitions_created: u64,
    /// Database pages given back to the file system (SQLite incremental vacuum).
    pub pages_freed: u64,
    /// The call stopped at [`RETENTION_MAX_BATCHES`]: more is left to remove, call again.
    pub more: bool,
}

/// Everything that can go wrong talking to a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database schema is newer than this binary knows.
    #[error("database schema version {found} is newer than this binary supports ({supported}); upgrade palisade")]
    TooNew {
        /// Version found in the database.
        found: i64,
        /// Newest version this binary knows.
        supported: i64,
    },
    /// `[store] password_file` could not be read.
    #[error("[store] password_file {path}: {message}")]
    PasswordFile {
        /// The file, as the configuration names it.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The URL names no supported backend or is malformed.
    #[error("bad store URL {0:?}: expected sqlite:PATH, sqlite::memory:, or postgres://…")]
    BadUrl(String),
    /// A backend was asked for that this build does not include.
    #[error("store backend {0} is not compiled into this binary")]
    NotCompiled(&'static str),
    /// A row failed to decode.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The backend failed.
    #[error("{backend}: {message}")]
    Backend {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// The driver's message (never contains credentials).
        message: String,
    },
}

/// Lifecycle of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionStatus {
    /// In force (or simulated and not yet over).
    Active,
    /// Ran out.
    Expired,
    /// Lifted early (operator unban, or replaced by a longer escalated ban).
    Revoked,
}

/// A decision with its stored status.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StoredDecision {
    /// The decision (with `id` set).
    #[serde(flatten)]
    pub decision: Decision,
    /// Current status.
    pub status: DecisionStatus,
}

/// An event as stored: the jail it was counted in plus the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Store id (0 before insert).
    pub id: i64,
    /// Jail name.
    pub jail: String,
    /// The event (evidence is kept only for a sample, see [`Store::record_events`]).
    pub event: Event,
}

/// What Palisade remembers about one address.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IpHistory {
    /// The address.
    pub ip: IpAddr,
    /// First event seen.
    pub first_seen: Timestamp,
    /// Last event seen.
    pub last_seen: Timestamp,
    /// Failures counted (events with `failure = true`).
    pub failures: u64,
    /// How many bans it has received (all origins, simulated included).
    pub times_banned: u64,
    /// Events seen (all time: kept in the rollup, so exact after retention removed old
    /// event rows).
    pub events: u64,
}

/// Filter for listing decisions.
#[derive(Clone, Debug, Default)]
pub struct DecisionQuery {
    /// Only decisions whose target contains or equals this address/network.
    pub target: Option<IpNet>,
    /// Only this jail.
    pub jail: Option<String>,
    /// Only this origin.
    pub origin: Option<Origin>,
    /// Only in force at this instant (status active and not expired).
    pub active_at: Option<Timestamp>,
    /// Newest first, at most this many (default 1000).
    pub limit: Option<u32>,
}

/// Filter for listing events (newest first, cursor = id strictly below).
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    /// Only this address.
    pub ip: Option<IpAddr>,
    /// Only this jail.
    pub jail: Option<String>,
    /// Only at or after.
    pub since: Option<Timestamp>,
    /// Only before.
    pub until: Option<Timestamp>,
    /// Only ids below this (cursor pagination).
    pub before_id: Option<i64>,
    /// At most this many (default 100).
    pub limit: Option<u32>,
}

/// Persistence. Synchronous; the daemon calls it from one store-writer thread, batched.
pub trait Store: Send {
    /// Backend name (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
    /// Schema version of the open database.
    fn schema_version(&mut self) -> Result<i64, StoreError>;
    /// Records events (one transaction), updating IP history. Evidence lines are kept for a
    /// sample only: the first [`EVIDENCE_SAMPLE`] per address per hour; the rest are stored
    /// without evidence. Failures count towards `failures`; every event moves first/last seen.
    fn record_events(&mut self, jail: &str, events: &[Event]) -> Result<(), StoreError>;
    /// Records events of several jails (as [`Store::record_events`]) and the source positions
    /// they bring the sources to, all in one transaction: either the events and the positions
    /// are stored, or neither (the daemon's acknowledged positions).
    fn record_batch(
        &mut self,
        events: &[(&str, &[Event])],
        positions: &[(&str, &str)],
    ) -> Result<(), StoreError>;
    /// The stored source positions: (source key, position document).
    fn source_positions(&mut self) -> Result<Vec<(String, String)>, StoreError>;
    /// The fleet read views on this same connection (events with their host, per-host
    /// counts, the fleet ban log; [`fleet::views`]), for the HTTP API.
    fn fleet_views(&mut self) -> &mut dyn fleet::views::FleetViews;
    /// Housekeeping, run by the daemon at start and hourly (see [`Maintenance`]). On
    /// PostgreSQL it creates the event partitions of today and the next
    /// [`PARTITIONS_AHEAD`] days. With a `retention` (`None` or zero = keep events forever)
    /// it removes the events before [`retention_cutoff`]: PostgreSQL drops whole day
    /// partitions, SQLite deletes in batches of [`RETENTION_BATCH`] rows, one transaction
    /// each with a pause between them, and then gives the freed pages back to the file
    /// system (incremental vacuum). One call does a bounded amount of work: when
    /// [`Maintenance::more`] is set, call again. The per-address hourly timeline ([`Store::ip_activity`]'s
    /// `hours`) loses the same hours; the totals ([`IpHistory`], per-address per-jail counts,
    /// [`Store::event_hours`], [`Store::top_offenders`]) are never reduced, so they stay exact.
    fn maintain(
        &mut self,
        now: Timestamp,
        retention: Option<std::time::Duration>,
    ) -> Result<Maintenance, StoreError>;
    /// Lists events.
    fn events(&mut self, q: &EventQuery) -> Result<Vec<StoredEvent>, StoreError>;
    /// Inserts a decision (status active), bumps `times_banned` of the address; returns its id.
    ///
    /// The target is stored canonical (host bits cleared: `1.2.3.4/24` → `1.2.3.0/24`), and is
    /// read back that way. A single-address target (/32, /128) creates the address's history
    /// row if needed (first/last seen = `created`). A network target (an IPv6 /64 from prefix
    /// aggregation, a manual /24) credits every address *already in history* inside the
    /// network and creates no row for the network itself.
    fn insert_decision(&mut self, d: &Decision) -> Result<i64, StoreError>;
    /// Lists decisions, newest (`created`, then id) first. With `target`, returns the decisions
    /// whose target equals it or contains it (a /64 ban is found by any address inside).
    fn decisions(&mut self, q: &DecisionQuery) -> Result<Vec<StoredDecision>, StoreError>;
    /// Decisions in force at `now` (status active and `expires` later than `now` or never),
    /// newest (`created`, then id) first. Backends read them with one query that leaves
    /// expired rows out in SQL (start-up restores up to 100k+ of them).
    fn active_decisions(&mut self, now: Timestamp) -> Result<Vec<Decision>, StoreError> {
        Ok(self
            .decisions(&DecisionQuery {
                active_at: Some(now),
                limit: Some(u32::MAX),
                ..Default::default()
            })?
            .into_iter()
            .map(|s| s.decision)
            .collect())
    }
    /// Marks one decision revoked; returns it if it was active (`None` if unknown, expired or
    /// already revoked). The row's `updated` column records the wall-clock revocation time.
    fn revoke_decision(&mut self, id: i64) -> Result<Option<Decision>, StoreError>;
    /// Marks every active decision whose `expires <= now` expired; returns them.
    fn expire_decisions(&mut self, now: Timestamp) -> Result<Vec<Decision>, StoreError>;
    /// [`Store::expire_decisions`] without reading the rows back: how many were marked.
    fn expire_decisions_quietly(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        Ok(self.expire_decisions(now)?.len() as u64)
    }
    /// How many bans `target` received since `since` (escalation across restarts).
    ///
    /// Counts decisions whose target is exactly `target` (canonical), created at or after
    /// `since`, of any status, origin, or simulation flag: the same population as
    /// [`IpHistory::times_banned`], so a dry run escalates exactly as the live run would.
    fn ban_count(&mut self, target: &IpNet, since: Timestamp) -> Result<u32, StoreError>;
    /// [`Store::ban_count`] since `since` of every distinct target with a decision in force
    /// at `now` (start-up restores the escalation memory of 100k bans with this: one query,
    /// not one per ban). Targets without a ban since `since` may be left out (count 0).
    fn active_ban_counts(
        &mut self,
        now: Timestamp,
        since: Timestamp,
    ) -> Result<Vec<(IpNet, u32)>, StoreError> {
        let mut targets: Vec<IpNet> = self
            .active_decisions(now)?
            .into_iter()
            .map(|d| d.target)
            .collect();
        targets.sort_unstable();
        targets.dedup();
        targets
            .into_iter()
            .map(|t| Ok((t, self.ban_count(&t, since)?)))
            .collect()
    }
    /// History of one address.
    fn ip_history(&mut self, ip: IpAddr) -> Result<Option<IpHistory>, StoreError>;

    // --- server queries --- (HTTP API and dashboard; see the types in `server_types`)
    /// Events per UTC hour and jail with `since <= hour start < until`, from the hourly
    /// rollup (kept by a trigger on `events`), oldest first.
    fn event_hours(
        &mut self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<HourCount>, StoreError>;
    /// Decisions created per UTC hour in `[since, until)`, oldest first (jail = "").
    fn ban_hours(
        &mut self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<HourCount>, StoreError>;
    /// Addresses last seen at or after `since`, most failures (all time) first.
    fn top_offenders(&mut self, since: Timestamp, limit: u32)
        -> Result<Vec<IpHistory>, StoreError>;
    /// How many decisions match `q` (its `limit` ignored): the total behind a page of
    /// [`Store::decisions`].
    fn decision_count(&mut self, q: &DecisionQuery) -> Result<u64, StoreError>;
    /// Decisions in force at `now` (not simulated or simulated alike).
    fn active_decision_count(&mut self, now: Timestamp) -> Result<u64, StoreError>;
    /// One decision by id.
    fn decision(&mut self, id: i64) -> Result<Option<StoredDecision>, StoreError>;
    /// Per-jail event counts and per-hour counts of one address since `since`.
    fn ip_activity(&mut self, ip: IpAddr, since: Timestamp) -> Result<IpActivity, StoreError>;
    /// Allowlist entries kept in the database, oldest first.
    fn allowlist(&mut self) -> Result<Vec<AllowEntry>, StoreError>;
    /// Adds an allowlist entry (canonical network); an existing entry gets the new comment.
    fn allowlist_add(
        &mut self,
        net: &IpNet,
        comment: &str,
        now: Timestamp,
    ) -> Result<AllowEntry, StoreError>;
    /// Removes an allowlist entry; whether it existed.
    fn allowlist_remove(&mut self, id: i64) -> Result<bool, StoreError>;
    /// Number of dashboard accounts.
    fn user_count(&mut self) -> Result<u64, StoreError>;
    /// One account by name.
    fn user(&mut self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Creates an account or replaces its password hash.
    fn user_set(
        &mut self,
        name: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// All accounts, by name.
    fn users(&mut self) -> Result<Vec<UserRecord>, StoreError>;
    /// Deletes an account; whether it existed.
    fn user_remove(&mut self, name: &str) -> Result<bool, StoreError>;
    /// Records a successful login.
    fn user_logged_in(&mut self, name: &str, now: Timestamp) -> Result<(), StoreError>;
    /// Stores a new API token (its SHA-256 hex only); returns its id.
    fn token_add(
        &mut self,
        name: &str,
        scope: &str,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<i64, StoreError>;
    /// The token whose SHA-256 hex is `token_hash`.
    fn token_by_hash(&mut self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// All tokens (hashes included), oldest first.
    fn tokens(&mut self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Deletes a token; whether it existed.
    fn token_remove(&mut self, id: i64) -> Result<bool, StoreError>;
    // --- end server queries ---

    // --- report queries --- (digest: `palisade report`)
    /// Aggregates of `[since, until)` for the digest: events per jail, top addresses by
    /// events, decisions created (newest first, at most `limit`) and repeat offenders
    /// (targets banned in the period that have more than one ban up to `until`; at most
    /// `limit`, most bans first).
    fn period_summary(
        &mut self,
        since: Timestamp,
        until: Timestamp,
        limit: u32,
    ) -> Result<PeriodSummary, StoreError>;
    // --- end report queries ---
}

// --- server queries --- (types)
/// A count in one UTC hour (`jail` is empty when not split by jail).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HourCount {
    /// Start of the hour.
    pub hour: Timestamp,
    /// Jail, or empty.
    pub jail: String,
    /// Events (or decisions).
    pub count: u64,
    /// Failures among the events (0 for decisions).
    pub failures: u64,
}

/// Activity of one address: where and when it was seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IpActivity {
    /// Events per jail, most first.
    pub jails: Vec<(String, u64)>,
    /// Events per UTC hour, oldest first.
    pub hours: Vec<(Timestamp, u64)>,
}

/// An allowlist entry kept in the database.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AllowEntry {
    /// Store id.
    pub id: i64,
    /// The network (canonical).
    pub net: IpNet,
    /// Free text.
    pub comment: String,
    /// When it was added.
    pub created: Timestamp,
}

/// A dashboard account.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Store id.
    pub id: i64,
    /// Login name.
    pub name: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// Created.
    pub created: Timestamp,
    /// Last successful login.
    pub last_login: Option<Timestamp>,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("password_hash", &"***")
            .finish_non_exhaustive()
    }
}

/// An API token (only its hash is stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Store id.
    pub id: i64,
    /// Label.
    pub name: String,
    /// `read` or `admin`.
    pub scope: String,
    /// SHA-256 of the token, lower-case hex.
    pub token_hash: String,
    /// Created.
    pub created: Timestamp,
}
// --- end server queries --- (types)

// --- report queries --- (types)
/// What [`Store::period_summary`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PeriodSummary {
    /// Events in the period.
    pub events: u64,
    /// Failures among them.
    pub failures: u64,
    /// Events per jail, most first.
    pub events_per_jail: Vec<(String, u64)>,
    /// Addresses with the most events in the period, most first.
    pub top_ips: Vec<(IpAddr, u64)>,
    /// Decisions created in the period.
    pub decisions_total: u64,
    /// Decisions created in the period, newest first (at most the limit).
    pub decisions: Vec<StoredDecision>,
    /// Targets banned in the period with more than one ban so far: (target, bans in the
    /// period, bans up to the end of the period).
    pub repeat_offenders: Vec<(IpNet, u64, u64)>,
}
// --- end report queries --- (types)

/// A parsed store location. Parsing is pure, so configuration can be validated before any I/O.
///
/// Accepted forms:
/// - `sqlite:PATH` and `sqlite://PATH` — a database file (`sqlite:///var/lib/palisade/p.db`
///   and `sqlite:/var/lib/palisade/p.db` are absolute, `sqlite://data/p.db` is relative). The
///   file is created if missing; its directory must exist.
/// - `sqlite::memory:` — a private in-memory database (gone when closed).
/// - `postgres://user:pass@host:port/db?…` and `postgresql://…` — PostgreSQL.
/// - `host=… port=… user=… dbname=…` — PostgreSQL key/value form.
///
/// `Debug` and `Display` redact passwords (see [`redact_url`]).
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A private in-memory SQLite database.
    SqliteMemory,
    /// A PostgreSQL connection string (URL or key/value), verbatim for the driver.
    Postgres(String),
}

impl StoreUrl {
    /// Parses a store URL. Errors carry the URL with its password redacted.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let url = url.trim();
        let bad = || StoreError::BadUrl(redact_url(url));
        if url == "sqlite::memory:" || url == "sqlite://:memory:" {
            return Ok(StoreUrl::SqliteMemory);
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            return if path.is_empty() {
                Err(bad())
            } else {
                Ok(StoreUrl::Sqlite(PathBuf::from(path)))
            };
        }
        let is_pg_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let is_pg_kv = !url.contains("://")
            && url
                .split_whitespace()
                .next()
                .is_some_and(|first| first.contains('=') && !first.starts_with('='));
        if !(is_pg_url || is_pg_kv) {
            return Err(bad());
        }
        #[cfg(feature = "postgres")]
        if url.parse::<::postgres::Config>().is_err() {
            return Err(bad());
        }
        Ok(StoreUrl::Postgres(url.to_owned()))
    }

    /// Opens (creating or migrating as needed) the store this URL names.
    pub fn open(&self) -> Result<Box<dyn Store>, StoreError> {
        match self {
            StoreUrl::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open(path)?)),
            StoreUrl::SqliteMemory => Ok(Box::new(sqlite::SqliteStore::open_in_memory()?)),
            #[cfg(feature = "postgres")]
            StoreUrl::Postgres(conn) => Ok(Box::new(self::postgres::PgStore::connect(conn)?)),
            #[cfg(not(feature = "postgres"))]
            StoreUrl::Postgres(_) => Err(StoreError::NotCompiled("postgres")),
        }
    }

    /// Backend this URL selects (`sqlite`, `postgres`).
    pub fn backend(&self) -> &'static str {
        match self {
            StoreUrl::Sqlite(_) | StoreUrl::SqliteMemory => "sqlite",
            StoreUrl::Postgres(_) => "postgres",
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreUrl::SqliteMemory => f.write_str("sqlite::memory:"),
            StoreUrl::Postgres(s) => f.write_str(&redact_url(s)),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

/// Opens the store named by `url` (see [`StoreUrl`] for the forms), applying pending
/// migrations. Refuses a database newer than this binary with [`StoreError::TooNew`].
pub fn open(url: &str) -> Result<Box<dyn Store>, StoreError> {
    StoreUrl::parse(url)?.open()
}

/// The URL of a configured store: `url`, with the password read from `password_file` (first
/// line, surrounding white space dropped) filled in when one is given. `shown` is how the
/// file is named in messages (as the configuration wrote it).
pub fn url_with_password_file(
    url: &str,
    password_file: Option<(&str, &std::path::Path)>,
) -> Result<String, StoreError> {
    let Some((shown, path)) = password_file else {
        return Ok(url.to_string());
    };
    let pw = std::fs::read_to_string(path).map_err(|e| StoreError::PasswordFile {
        path: shown.to_string(),
        message: e.to_string(),
    })?;
    with_password(url, pw.trim())
}

/// Opens (and migrates) a configured store; see [`url_with_password_file`].
pub fn open_with_password_file(
    url: &str,
    password_file: Option<(&str, &std::path::Path)>,
) -> Result<Box<dyn Store>, StoreError> {
    open(&url_with_password_file(url, password_file)?)
}

pub use palisade_core::redact_url;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        assert_eq!(
            StoreUrl::parse("sqlite::memory:").unwrap(),
            StoreUrl::SqliteMemory
        );
        assert_eq!(
            StoreUrl::parse("sqlite:/var/lib/p.db").unwrap(),
            StoreUrl::Sqlite("/var/lib/p.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///var/lib/p.db").unwrap(),
            StoreUrl::Sqlite("/var/lib/p.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite://data/p.db").unwrap(),
            StoreUrl::Sqlite("data/p.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:p.db").unwrap(),
            StoreUrl::Sqlite("p.db".into())
        );
        for pg in [
            "postgres://u:p@localhost:5432/db",
            "postgresql://localhost/db",
            "host=127.0.0.1 port=5432 user=u dbname=db",
        ] {
            let u = StoreUrl::parse(pg).unwrap();
            assert_eq!(u.backend(), "postgres", "{pg}");
        }
        for bad in [
            "",
            "sqlite:",
            "sqlite://",
            "mysql://x/y",
            "/var/lib/p.db",
            "=x",
        ] {
            assert!(
                matches!(StoreUrl::parse(bad), Err(StoreError::BadUrl(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn passwords_never_appear() {
        let cases = [
            (
                "postgres://alice:s3cret@db:5432/pal",
                "postgres://alice:***@db:5432/pal",
            ),
            (
                "postgresql://alice:p@ss/w0rd@db/pal?sslmode=disable&password=s3cret",
                "postgresql://alice:***@db/pal?sslmode=disable&password=***",
            ),
            ("postgres://db/pal", "postgres://db/pal"),
            (
                "host=db password=s3cret user=alice",
                "host=db password=*** user=alice",
            ),
            (
                "host=db password = 'with \\' spaces s3cret' user=alice",
                "host=db password = *** user=alice",
            ),
            ("host=db mypassword=x", "host=db mypassword=x"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
        #[cfg(feature = "postgres")]
        {
            let err = StoreUrl::parse("postgres://alice:s3cret@db:notaport/pal").unwrap_err();
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
        let u = StoreUrl::parse("postgres://alice:s3cret@db/pal").unwrap();
        assert!(!format!("{u} {u:?}").contains("s3cret"));
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let err = match open("sqlite:/nonexistent-palisade-dir/sub/p.db") {
            Err(e) => e.to_string(),
            Ok(_) => panic!("opened a database in a missing directory"),
        };
        assert!(err.contains("does not exist"), "{err}");
    }
}

/// Puts `password` into a `postgres://user@host/db` URL (percent-encoded), for
/// `[store] password_file`. SQLite URLs are refused.
pub fn with_password(url: &str, password: &str) -> Result<String, StoreError> {
    let bad = || StoreError::BadUrl(redact_url(url));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if scheme != "postgres" && scheme != "postgresql" {
        return Err(bad());
    }
    let (auth, host) = rest.rsplit_once('@').ok_or_else(bad)?;
    let user = auth.split(':').next().unwrap_or(auth);
    let mut enc = String::new();
    for b in password.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(format!("{scheme}://{user}:{enc}@{host}"))
}

#[cfg(test)]
mod password_tests {
    #[test]
    fn password_is_encoded() {
        assert_eq!(
            super::with_password("postgres://pal@db:5432/p", "a b@c").unwrap(),
            "postgres://pal:a%20b%40c@db:5432/p"
        );
        assert!(super::with_password("sqlite:/x.db", "p").is_err());
    }
}
